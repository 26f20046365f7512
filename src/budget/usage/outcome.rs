//! What reading a response's usage ends with: the tokens, or why there are none.

/// The tokens one LLM response reports, as its provider counts them for billing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The model the response names (`model`, or Gemini's `modelVersion`), if any.
    pub model: Option<String>,
    /// Prompt tokens, cached and cache-written ones included.
    pub input_tokens: u64,
    /// Generated tokens, reasoning ("thinking") tokens included.
    pub output_tokens: u64,
}

impl Usage {
    /// Input and output tokens together (what `llm.tokens` counts).
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Why a response's usage could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// The response was read but names no token counts.
    #[error("usage: missing (the response carries no usage)")]
    NoUsage,
    /// A JSON body larger than the reader keeps.
    #[error("usage: missing (the JSON body is larger than {limit} bytes)")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is not the JSON it claims to be. (serde_json's own message is
    /// not kept: it can quote the body.)
    #[error("usage: missing (the body is not {what}, at line {line} column {column})")]
    NotJson {
        /// What was wrong, in a few words.
        what: &'static str,
        /// Where, 1-based.
        line: usize,
        /// Where, 1-based.
        column: usize,
    },
    /// A usage section is there but is not what the providers send.
    #[error("usage: missing ({0})")]
    Malformed(&'static str),
}
