//! Fuzz target `llm_usage`: a response body as an LLM provider (or anything
//! posing as one) could send it, read by [`crate::budget::usage`]. The first
//! byte picks the Content-Type (mod 3: none, `application/json`,
//! `text/event-stream`), the second the size of the pieces the body is pushed
//! in (0 counts as 1); the rest is the body.
//!
//! Invariants: never a panic; the outcome does not depend on how the body is
//! cut (whole, in pieces of the chosen size, or split once in the middle); a
//! model name read is at most 256 bytes; the cost of a reading is finite and
//! not negative.

use crate::budget::usage::{cost_usd, Price, Prices, Usage, UsageReader};

/// Runs one input.
pub fn run(data: &[u8]) {
    let [selector, piece, body @ ..] = data else {
        return;
    };
    let content_type =
        [None, Some("application/json"), Some("text/event-stream")][usize::from(*selector) % 3];
    let whole = UsageReader::read(content_type, body);

    let mut reader = UsageReader::new(content_type);
    for chunk in body.chunks(usize::from(*piece).max(1)) {
        reader.push(chunk);
    }
    assert_eq!(reader.finish(), whole, "in pieces of {piece}");

    let (a, b) = body.split_at(body.len() / 2);
    let mut reader = UsageReader::new(content_type);
    reader.push(a);
    reader.push(b);
    assert_eq!(reader.finish(), whole, "split in the middle");

    if let Ok(usage) = whole {
        check(&usage);
    }
}

fn check(usage: &Usage) {
    assert!(usage.model.as_ref().is_none_or(|m| m.len() <= 256));
    let mut prices = Prices::new();
    if let (Some(model), Ok(price)) = (&usage.model, Price::new(1e6, 1e6)) {
        prices.insert(model.clone(), price);
    }
    if let Some(cost) = cost_usd(usage, &prices) {
        assert!(cost.is_finite() && cost >= 0.0, "{cost}");
    }
}
