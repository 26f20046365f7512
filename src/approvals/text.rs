//! Which characters of untrusted text (from the sandbox or a policy file) may
//! not reach an operator as they are: one list for every place a held request
//! is shown (the terminal of `tollgate approvals`, the webhook's Slack text).

/// Whether `c` could move the cursor, recolour, break or reorder what is shown,
/// or hide in it: C0/C1 controls, DEL, bidi embeddings, overrides, isolates and
/// marks, line and paragraph separators, zero-width and other invisible format
/// characters (Unicode format characters, variation selectors, tags, fillers),
/// with which two different requests could be made to look alike.
pub fn is_unsafe_to_show(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00ad}'
            | '\u{034f}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061c}'
            | '\u{06dd}'
            | '\u{070f}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_invisible_characters_are_unsafe() {
        for c in [
            '\u{0}',
            '\n',
            '\r',
            '\t',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{9b}', // controls
            '\u{61c}',
            '\u{200e}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}', // bidi
            '\u{200b}',
            '\u{200d}',
            '\u{2060}',
            '\u{feff}', // zero-width
            '\u{2028}',
            '\u{2029}', // line and paragraph separators
            '\u{ad}',
            '\u{180e}',
            '\u{fe0f}',
            '\u{e0041}',
            '\u{3164}', // invisible
        ] {
            assert!(is_unsafe_to_show(c), "{:x}", u32::from(c));
        }
        for c in [
            'a', ' ', '/', '?', '&', '<', 'é', '中', '\u{fffd}', '\u{2026}',
        ] {
            assert!(!is_unsafe_to_show(c), "{:x}", u32::from(c));
        }
    }
}
