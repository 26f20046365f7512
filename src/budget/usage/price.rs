//! What a response cost: its tokens at the listed per-model prices.

use super::outcome::Usage;
use std::collections::HashMap;

/// USD per million tokens for one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    input: f64,
    output: f64,
}

/// A price that is negative, not a number or infinite.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("a price must be a finite number of USD per million tokens, 0 or more")]
pub struct BadPrice;

impl Price {
    /// A price of `input` and `output` USD per million tokens.
    pub fn new(input: f64, output: f64) -> Result<Price, BadPrice> {
        let ok = |p: f64| p.is_finite() && p >= 0.0;
        if ok(input) && ok(output) {
            Ok(Price { input, output })
        } else {
            Err(BadPrice)
        }
    }
}

/// Prices by model name, as a policy lists them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    by_model: HashMap<String, Price>,
}

impl Prices {
    /// No prices.
    pub fn new() -> Prices {
        Prices::default()
    }

    /// Lists `model` at `price`, replacing an earlier price for it.
    pub fn insert(&mut self, model: impl Into<String>, price: Price) {
        self.by_model.insert(model.into(), price);
    }

    /// The price for `model`: its own, else that of the longest listed name
    /// that, followed by `-`, begins it (`gpt-4.1` prices
    /// `gpt-4.1-2025-04-14`, not `gpt-4.1o`).
    pub fn for_model(&self, model: &str) -> Option<Price> {
        if let Some(price) = self.by_model.get(model) {
            return Some(*price);
        }
        self.by_model
            .iter()
            .filter(|(name, _)| {
                model
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, price)| *price)
    }
}

/// What `usage` cost in USD, or `None` when its model is unnamed or has no
/// price (the caller then charges tokens only and says the price is unknown).
pub fn cost_usd(usage: &Usage, prices: &Prices) -> Option<f64> {
    let price = prices.for_model(usage.model.as_deref()?)?;
    // u64 → f64 rounds above 2^53 tokens, far beyond any real response.
    let per_token = |count: u64, usd_per_million: f64| count as f64 * usd_per_million / 1e6;
    Some(per_token(usage.input_tokens, price.input) + per_token(usage.output_tokens, price.output))
}
