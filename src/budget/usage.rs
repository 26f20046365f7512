//! Reads the token usage an LLM provider reports in its own response, for the
//! `llm.tokens` and `llm.usd` budgets (DESIGN.md "Budgets").
//!
//! Feed a [`UsageReader`] the response body as it streams; at the end it gives
//! the [`Usage`] or why it is [`Missing`]. Understood, whatever the host:
//! - OpenAI chat completions (`usage.prompt_tokens`, `usage.completion_tokens`)
//!   and Responses (`usage.input_tokens`, `usage.output_tokens`), as JSON; as
//!   SSE, the chunk a chat stream ends with when the request set
//!   `stream_options.include_usage`, and the Responses stream's
//!   `response.completed` event (`response.usage`);
//! - Anthropic messages (`usage.input_tokens` plus
//!   `cache_creation_input_tokens` and `cache_read_input_tokens`,
//!   `usage.output_tokens`), as JSON; as SSE, `message_start` (`message.usage`)
//!   then the cumulative counts of each `message_delta` (`usage`);
//! - Gemini `usageMetadata` (`promptTokenCount`, `candidatesTokenCount`,
//!   `thoughtsTokenCount`, `toolUsePromptTokenCount`, `totalTokenCount`), as one
//!   JSON object, a JSON array of chunks, or SSE (`alt=sse`); the last wins.
//!
//! The format comes from the Content-Type (`text/event-stream`, or
//! `application/json` and `+json` types); for any other or none, from the body's
//! first non-blank byte (`{` or `[` is JSON, else SSE).
//!
//! The body must already be decoded: the caller undoes any `Content-Encoding`
//! (gzip, br) before pushing bytes here.
//!
//! Memory is bounded: a JSON body is kept up to [`MAX_JSON`] bytes (beyond that
//! the reader gives up: [`Missing::TooLarge`]); an event stream is read one event
//! at a time, an event's data kept up to [`MAX_EVENT`] bytes (a larger event is
//! skipped, so a stream whose usage rode in it reads as [`Missing::NoUsage`]).
//! Keys written with JSON escapes (`"\u0075sage"`) are not recognised in streams.

mod fields;
mod outcome;
mod price;
mod sse;

pub use outcome::{Missing, Usage};
pub use price::{cost_usd, BadPrice, Price, Prices};

use fields::Tally;
use sse::Framer;

/// The largest JSON body read, in bytes.
pub const MAX_JSON: usize = 4 << 20;

/// The largest event (its partial line and data together) read from a stream.
pub const MAX_EVENT: usize = 4 << 20;

/// Reads one response's usage from its body, piece by piece.
#[derive(Debug)]
pub struct UsageReader {
    state: State,
}

#[derive(Debug)]
enum State {
    /// No Content-Type said which; the body so far is blank (kept, bounded).
    Sniffing(Vec<u8>),
    Json(Vec<u8>),
    TooLarge,
    Sse(Framer, Tally),
}

impl UsageReader {
    /// A reader for a response with this Content-Type header value, if any.
    pub fn new(content_type: Option<&str>) -> UsageReader {
        let media = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        let state = match media.as_deref() {
            Some("text/event-stream") => State::Sse(Framer::new(MAX_EVENT), Tally::default()),
            Some(m) if m == "application/json" || m.ends_with("+json") => State::Json(Vec::new()),
            _ => State::Sniffing(Vec::new()),
        };
        UsageReader { state }
    }

    /// Reads the next piece of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        match &mut self.state {
            State::Sniffing(kept) => {
                let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
                    self.keep_json(bytes);
                    return;
                };
                let kept = std::mem::take(kept);
                if matches!(first, b'{' | b'[') {
                    self.state = State::Json(kept);
                    self.keep_json(bytes);
                } else {
                    let mut framer = Framer::new(MAX_EVENT);
                    let mut tally = Tally::default();
                    framer.push(&kept, &mut |data| event(&mut tally, data));
                    framer.push(bytes, &mut |data| event(&mut tally, data));
                    self.state = State::Sse(framer, tally);
                }
            }
            State::Json(_) => self.keep_json(bytes),
            State::TooLarge => {}
            State::Sse(framer, tally) => framer.push(bytes, &mut |data| event(tally, data)),
        }
    }

    /// The body ended: the usage it reported, or why there is none.
    pub fn finish(self) -> Result<Usage, Missing> {
        match self.state {
            State::Sniffing(_) => Err(Missing::NoUsage),
            State::TooLarge => Err(Missing::TooLarge { limit: MAX_JSON }),
            State::Json(body) => {
                let mut tally = Tally::default();
                tally.read_body(&body)?;
                tally.finish()
            }
            State::Sse(mut framer, mut tally) => {
                framer.finish(&mut |data| event(&mut tally, data));
                tally.finish()
            }
        }
    }

    /// Reads a whole body at once.
    pub fn read(content_type: Option<&str>, body: &[u8]) -> Result<Usage, Missing> {
        let mut reader = UsageReader::new(content_type);
        reader.push(body);
        reader.finish()
    }

    fn keep_json(&mut self, bytes: &[u8]) {
        let (State::Json(kept) | State::Sniffing(kept)) = &mut self.state else {
            return;
        };
        if kept.len() + bytes.len() > MAX_JSON {
            self.state = State::TooLarge;
        } else {
            kept.extend_from_slice(bytes);
        }
    }
}

/// One event's data: only an event that names usage is parsed (most of a
/// stream is text deltas).
fn event(tally: &mut Tally, data: &[u8]) {
    if memchr::memmem::find(data, b"\"usage").is_some() {
        tally.read_event(data);
    }
}

#[cfg(test)]
mod tests;
