//! Untrusted text made fit for the operator's terminal: every character
//! [`is_unsafe_to_show`] names is written as an escape instead.

use crate::approvals::text::is_unsafe_to_show;
use std::fmt::Write as _;

/// `text` fit for a terminal: every control, bidi or invisible character
/// written as `\u{..}`.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe_to_show(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Serialized JSON fit for a terminal: the characters serde_json leaves as they
/// are (DEL, C1, bidi, ...) become `\uXXXX` escapes, which keeps it the same JSON.
/// Newlines are left: serde_json escapes those inside strings, so any left are
/// the pretty-printer's.
pub fn sanitize_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && is_unsafe_to_show(c) {
            // serde_json escapes every control character itself; the others
            // this writes are in the Basic Multilingual Plane but the tags
            // (U+E0000..), which take a surrogate pair.
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(sanitize("/plain/path?q=1"), "/plain/path?q=1");
        assert_eq!(sanitize("/a\u{1b}[2J\rb"), "/a\\u{1b}[2J\\u{d}b");
        assert_eq!(sanitize("x\ny\tz\u{7f}"), "x\\u{a}y\\u{9}z\\u{7f}");
        assert_eq!(sanitize("\u{9b}31m"), "\\u{9b}31m");
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}') {
            let out = sanitize(&format!("a{c}b"));
            assert_eq!(out, format!("a\\u{{{:x}}}b", u32::from(c)));
        }
        assert_eq!(sanitize("é中文"), "é中文");
        // Invisible characters that make two requests look alike.
        for c in ['\u{ad}', '\u{180e}', '\u{fe0f}', '\u{e0041}', '\u{3164}'] {
            assert_eq!(
                sanitize(&format!("a{c}b")),
                format!("a\\u{{{:x}}}b", u32::from(c))
            );
        }
    }

    #[test]
    fn json_output_stays_json_and_safe() {
        let value = json!([{"path": "/a\u{202e}b\u{9b}c\u{1b}d\u{e0041}e"}]);
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        let safe = sanitize_json(&text);
        assert!(
            !safe.chars().any(|c| c != '\n' && is_unsafe_to_show(c)),
            "{safe:?}"
        );
        let back: Value = serde_json::from_str(&safe).unwrap_or(Value::Null);
        assert_eq!(back, value);
    }
}
