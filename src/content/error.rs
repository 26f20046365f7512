//! The one error type of the content matchers.

/// Why a body could not be read as the rule's protocol. Its text says what was
/// wrong, never echoes more than a short piece of the input, and is meant for a
/// 400 `bad_request` answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContentError(String);

impl ContentError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// At most `max` characters of `text`, with `…` when cut: for quoting input.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
