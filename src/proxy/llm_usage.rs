//! Charging LLM usage to the `llm` budgets: the answer of an LLM host named in
//! `budgets.llm.hosts` is read as it streams to the sandbox
//! ([`crate::budget::usage::UsageReader`]), and when it ends (or the sandbox
//! stops reading) its tokens, and their price at the policy's `prices`, are
//! charged to the task and put in the record. A successful answer without
//! usage is recorded as `llm: {usage: "missing"}`.

use super::context::RequestCtx;
use super::destination::Target;
use super::exchange::{LlmCharge, LlmSlot};
use crate::audit::LlmInfo;
use crate::body::{BoxError, ProxyBody};
use crate::budget::ledger::{Account, Meter};
use crate::budget::usage::{cost_usd, Prices, UsageReader};
use crate::error::Refusal;
use crate::policy::Policy;
use bytes::Bytes;
use http::{header, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Whether answers from `target` are read for usage under `policy`.
pub fn metered(policy: &Policy, target: &Target) -> bool {
    policy
        .llm_metering
        .as_ref()
        .is_some_and(|m| m.hosts.iter().any(|h| h.matches(&target.host)))
}

/// Asks for an uncompressed answer, which can be read as it streams.
pub fn prepare<B>(req: &mut Request<B>) {
    req.headers_mut().insert(
        header::ACCEPT_ENCODING,
        http::HeaderValue::from_static("identity"),
    );
}

/// The answer, read for usage as it streams; charged when it ends.
pub async fn meter(
    ctx: &RequestCtx<'_>,
    policy: &Policy,
    response: Response<ProxyBody>,
) -> Result<Response<ProxyBody>, Refusal> {
    let (Some(metering), Some(account)) = (&policy.llm_metering, ctx.log.account()) else {
        return Ok(response);
    };
    if !response.status().is_success() {
        // Errors carry no usage and are not billed.
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    if parts.headers.contains_key(header::CONTENT_ENCODING) {
        // Decoded, it has another length.
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let body = crate::inject::decoded(&mut parts, body).await?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let tap = Tap {
        inner: body,
        reader: Some(UsageReader::new(content_type)),
        charge: Charger {
            account: account.clone(),
            prices: metering.prices.clone(),
            slot: ctx.log.llm_slot(),
        },
    };
    Ok(Response::from_parts(parts, tap.boxed()))
}

/// Charges what was read, once.
struct Charger {
    account: Arc<dyn Account>,
    prices: Arc<Prices>,
    slot: LlmSlot,
}

impl Charger {
    fn charge(&self, reader: UsageReader) {
        let charge = match reader.finish() {
            Ok(usage) => {
                let tokens = usage.total_tokens();
                let cost = cost_usd(&usage, &self.prices);
                // Rounded up: a budget is never under-charged.
                let micro_usd = cost.map_or(0, |usd| (usd * 1e6).ceil() as u64);
                if cost.is_none() {
                    tracing::warn!(
                        model = usage.model.as_deref().unwrap_or("-"),
                        "no price is listed for this model; its tokens count, its cost does not"
                    );
                }
                self.account.charge(Meter::LlmTokens, tokens);
                self.account.charge(Meter::LlmMicroUsd, micro_usd);
                LlmCharge {
                    info: LlmInfo {
                        model: usage.model,
                        input_tokens: Some(usage.input_tokens),
                        output_tokens: Some(usage.output_tokens),
                        usage: None,
                    },
                    tokens,
                    micro_usd,
                }
            }
            Err(missing) => {
                tracing::warn!("an LLM answer was not charged: {missing}");
                LlmCharge {
                    info: LlmInfo {
                        usage: Some("missing"),
                        ..LlmInfo::default()
                    },
                    tokens: 0,
                    micro_usd: 0,
                }
            }
        };
        self.slot.put(charge);
    }
}

/// An answer body that feeds a [`UsageReader`] as it passes.
struct Tap {
    inner: ProxyBody,
    reader: Option<UsageReader>,
    charge: Charger,
}

impl http_body::Body for Tap {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let (Some(data), Some(reader)) = (frame.data_ref(), this.reader.as_mut()) {
                    reader.push(data);
                }
            }
            Some(Err(_)) => {}
            None => {
                if let Some(reader) = this.reader.take() {
                    this.charge.charge(reader);
                }
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // The sandbox stopped reading, or the body ended without a last poll:
        // what was read so far is charged (a stream's input tokens come first).
        if let Some(reader) = self.reader.take() {
            self.charge.charge(reader);
        }
    }
}
