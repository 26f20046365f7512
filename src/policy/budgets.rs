//! A policy's `budgets` block, checked: the limits per meter, where LLM usage
//! is read, and what a request past a used-up budget gets.

use super::model::{LlmMetering, OnExceed};
use super::wire::BudgetsWire;
use crate::budget::ledger::{Limits, Meter};
use crate::budget::usage::{Price, Prices};

/// The limits, the LLM metering and `on_exceed` of a `budgets` block; an error
/// names the key at fault.
pub fn budget_spec(
    wire: BudgetsWire,
) -> Result<(Limits, Option<LlmMetering>, OnExceed), (&'static str, String)> {
    let on_exceed = match wire.on_exceed.as_deref() {
        None | Some("deny") => OnExceed::Deny,
        Some("approve") => OnExceed::Approve,
        Some(other) => {
            return Err((
                "on_exceed",
                format!("budgets.on_exceed `{other}` must be deny or approve"),
            ))
        }
    };
    let mut limits = Limits::none();
    if let Some(n) = wire.requests {
        limits = limits.with(Meter::Requests, n);
    }
    for (key, meter, value) in [
        ("bytes_up", Meter::BytesUp, wire.bytes_up),
        ("bytes_down", Meter::BytesDown, wire.bytes_down),
    ] {
        let Some(value) = value else { continue };
        let bytes = match &value {
            serde_yaml_ng::Value::Number(n) => n.as_u64(),
            serde_yaml_ng::Value::String(text) => crate::budget::size::parse_size(text).ok(),
            _ => None,
        }
        .ok_or_else(|| {
            (
                key,
                format!("budgets.{key} must be a number of bytes or a size such as 64MiB (KiB, MiB, GiB, TiB)"),
            )
        })?;
        limits = limits.with(meter, bytes);
    }
    let mut metering = None;
    if let Some(llm) = wire.llm {
        if llm.hosts.is_empty() {
            return Err((
                "llm",
                "budgets.llm.hosts is empty: name the LLM API hosts whose answers are read for usage".into(),
            ));
        }
        if llm.tokens.is_none() && llm.usd.is_none() {
            return Err(("llm", "budgets.llm sets neither tokens nor usd".into()));
        }
        if let Some(tokens) = llm.tokens {
            limits = limits.with(Meter::LlmTokens, tokens);
        }
        let mut prices = Prices::new();
        for (model, price) in &llm.prices {
            let price = Price::new(price.input, price.output)
                .map_err(|e| ("llm", format!("budgets.llm.prices `{model}`: {e}")))?;
            prices.insert(model.clone(), price);
        }
        if let Some(usd) = llm.usd {
            if !(0.0..=1e12).contains(&usd) {
                return Err((
                    "llm",
                    "budgets.llm.usd must be a number of US dollars, 0 or more".into(),
                ));
            }
            if llm.prices.is_empty() {
                return Err((
                    "llm",
                    "budgets.llm.usd needs prices: { MODEL: { input: USD, output: USD } } per million tokens".into(),
                ));
            }
            // Kept in millionths of a dollar; the cast cannot overflow below 1e12.
            limits = limits.with(Meter::LlmMicroUsd, (usd * 1e6).round() as u64);
        }
        metering = Some(LlmMetering {
            hosts: llm.hosts,
            prices: std::sync::Arc::new(prices),
        });
    }
    Ok((limits, metering, on_exceed))
}
