//! The forms in which an injected secret can come back from an upstream, each with
//! what the sandbox gets in its place.
//!
//! A form holds secret bytes: they live in zeroized memory, are never printed
//! (`Debug` shows lengths only), and are compared, never copied, by the scrubber.

use zeroize::Zeroizing;

/// How much of a form counts as an echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Echo {
    /// The whole form only: a header value tollgate rewrote (`Basic …`,
    /// `Bearer …`), replaced by the value the sandbox sent.
    Whole,
    /// Any run of half the form or more (at least [`MIN_PIECE`] bytes), and the
    /// whole form: a secret value in one of its encodings, replaced by its
    /// placeholder. An upstream that hands a secret back in pieces (a `Range`
    /// read, a message cut at N characters) hands back no piece that long.
    Pieces,
}

/// Shortest run of a secret that counts as a piece of it.
pub const MIN_PIECE: usize = 12;

/// One form: the bytes an upstream may echo and their replacement.
pub struct SecretForm {
    echo: Zeroizing<Vec<u8>>,
    replacement: Vec<u8>,
    kind: Echo,
}

impl SecretForm {
    /// A form whose `echo` bytes become `replacement`.
    pub fn new(echo: Vec<u8>, replacement: Vec<u8>, kind: Echo) -> Self {
        Self {
            echo: Zeroizing::new(echo),
            replacement,
            kind,
        }
    }

    /// The secret bytes, for comparing only.
    pub fn echo(&self) -> &[u8] {
        &self.echo
    }

    /// What the sandbox gets instead (placeholder form, never a secret).
    pub fn replacement(&self) -> &[u8] {
        &self.replacement
    }

    /// Whether pieces count.
    pub fn kind(&self) -> Echo {
        self.kind
    }

    /// The shortest run of this form that is replaced: half of it, rounded up,
    /// and at least [`MIN_PIECE`]; the whole form if it is shorter than that, or
    /// if only whole echoes count.
    pub fn shortest_piece(&self) -> usize {
        let len = self.echo.len();
        match self.kind {
            Echo::Whole => len,
            Echo::Pieces => len.div_ceil(2).max(MIN_PIECE).min(len),
        }
    }

    /// Whether this form is worth scrubbing at all.
    pub fn is_scrubbable(&self) -> bool {
        !self.echo.is_empty() && self.echo[..] != self.replacement[..]
    }
}

impl PartialEq for SecretForm {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.echo[..] == other.echo[..]
            && self.replacement == other.replacement
    }
}

impl Eq for SecretForm {}

impl std::fmt::Debug for SecretForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretForm({:?}, {} bytes -> {} bytes)",
            self.kind,
            self.echo.len(),
            self.replacement.len()
        )
    }
}

/// The forms in which an upstream may echo a secret value, each replaced by the
/// placeholder: raw, JSON-escaped (`/` as `\/`) and percent-encoded. Pieces of
/// each count.
pub fn value_forms(placeholder: &str, value: &str) -> Vec<SecretForm> {
    let raw = value.as_bytes();
    let json_escaped = Zeroizing::new(value.replace('/', "\\/"));
    let encoded = Zeroizing::new(crate::text::percent_encode_unreserved(value));
    let mut forms = vec![SecretForm::new(
        raw.to_vec(),
        placeholder.as_bytes().to_vec(),
        Echo::Pieces,
    )];
    for form in [&json_escaped, &encoded] {
        if form.as_bytes() != raw {
            forms.push(SecretForm::new(
                form.as_bytes().to_vec(),
                placeholder.as_bytes().to_vec(),
                Echo::Pieces,
            ));
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_secret_bytes() {
        let form = SecretForm::new(b"hunter2-hunter2".to_vec(), b"__P__".to_vec(), Echo::Pieces);
        let shown = format!("{form:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("15 bytes"), "{shown}");
    }

    #[test]
    fn shortest_piece_is_half_and_at_least_twelve() {
        let form = |n: usize, kind| SecretForm::new(vec![b'a'; n], b"__P__".to_vec(), kind);
        assert_eq!(form(40, Echo::Pieces).shortest_piece(), 20);
        assert_eq!(form(41, Echo::Pieces).shortest_piece(), 21);
        assert_eq!(form(20, Echo::Pieces).shortest_piece(), 12);
        assert_eq!(form(8, Echo::Pieces).shortest_piece(), 8);
        assert_eq!(form(40, Echo::Whole).shortest_piece(), 40);
    }

    #[test]
    fn value_forms_cover_escaped_and_encoded_values_once() {
        let forms = value_forms("__T__", "a/b c");
        let echoes: Vec<&[u8]> = forms.iter().map(SecretForm::echo).collect();
        assert_eq!(echoes, vec![&b"a/b c"[..], b"a\\/b c", b"a%2Fb%20c"]);
        assert_eq!(value_forms("__T__", "plain").len(), 1);
    }
}
