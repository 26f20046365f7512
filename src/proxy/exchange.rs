//! The audit record of one exchange: filled in as the request passes the phases,
//! written before a refusal is sent (and in the file by then, so a crash right
//! after a 403 cannot lose it) or, for an allowed request, when the response
//! body ends (or the client goes away), with the bytes that passed.
//!
//! `status` is what the client got: a response that never reached hyper's
//! connection (the client went away first) is recorded with status 0.

use super::splice::SpliceDone;
use crate::audit::{Audit, RequestRecord};
use crate::body::{BoxError, ProxyBody};
use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio_util::task::TaskTracker;

/// `reason` of a record whose client went away before it got any response.
pub const CLIENT_CLOSED: &str = "client_closed";

/// One exchange's record, emitted once: by [`Exchange::refuse`], or on drop.
#[derive(Debug)]
pub struct Exchange {
    /// The record being filled in.
    pub record: RequestRecord,
    started: Instant,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    audit: Audit,
    metrics: Arc<crate::metrics::Metrics>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The task's budget account, charged with the bytes when the record is written.
    account: Option<std::sync::Arc<dyn crate::budget::ledger::Account>>,
    /// Whether the client's connection took a response (hyper looked at its body).
    answered: AtomicBool,
    emitted: bool,
}

impl Exchange {
    /// Starts the record of a request that arrived now at the proxy of `state`.
    pub fn new(state: &crate::proxy::state::ProxyState, record: RequestRecord) -> Self {
        Self {
            record,
            started: Instant::now(),
            up: Arc::default(),
            down: Arc::default(),
            audit: state.audit.clone(),
            metrics: state.metrics.clone(),
            slot: None,
            account: None,
            answered: AtomicBool::new(false),
            emitted: false,
        }
    }

    /// Records a refusal that cannot be answered (inside a TLS handshake, where
    /// no HTTP response fits): written through like any refusal, with status 0,
    /// since the client gets only a closed connection.
    pub async fn refuse_unanswered(mut self, reason: crate::error::Reason) {
        self.refused(reason, 0);
        let record = self.finish();
        self.audit.record_written(record).await;
    }

    /// Marks the response as handed to the client (tunnels, WebSocket switches).
    pub fn answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
    }

    /// Records a refusal and returns its response once the record is in the
    /// audit file (written through, not batched), so that a crash right after
    /// the client got it cannot lose the record.
    pub async fn refuse(mut self, refusal: crate::error::Refusal) -> Response<ProxyBody> {
        let reason = refusal.reason;
        let response = refusal.into_response();
        self.refused(reason, response.status().as_u16());
        self.answered();
        let record = self.finish();
        self.audit.record_written(record).await;
        response
    }

    /// Charges the exchange's bytes to `account` when it ends.
    pub fn charge_to(&mut self, account: std::sync::Arc<dyn crate::budget::ledger::Account>) {
        self.account = Some(account);
    }

    /// Charges one request that goes upstream.
    pub fn charge_request(&self) {
        if let Some(account) = &self.account {
            account.charge(crate::budget::ledger::Meter::Requests, 1);
        }
    }

    /// Holds a concurrency slot until the exchange ends.
    pub fn hold(&mut self, slot: tokio::sync::OwnedSemaphorePermit) {
        self.slot = Some(slot);
    }

    /// Marks the record refused with `reason` and `status`.
    pub fn refused(&mut self, reason: crate::error::Reason, status: u16) {
        self.record.decision = reason.decision();
        self.record.reason = Some(reason.as_str());
        self.record.status = status;
    }

    /// Counts `body`'s bytes as sent upstream.
    pub fn count_up(&self, body: ProxyBody) -> ProxyBody {
        Counted {
            inner: body,
            counter: self.up.clone(),
            _guard: None,
        }
        .boxed()
    }

    /// Adds bytes sent upstream outside a counted body (tunnels, buffered bodies).
    pub fn add_up(&self, n: u64) {
        self.up.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds bytes sent to the client outside a counted body (tunnels).
    pub fn add_down(&self, n: u64) {
        self.down.fetch_add(n, Ordering::Relaxed);
    }

    /// Hands the upstream's `response` to the client. The record is written
    /// when its body has been sent or dropped, or, for a WebSocket, when the
    /// splice ends, with the bytes it moved.
    pub fn deliver(
        mut self,
        mut response: Response<ProxyBody>,
        tracker: &TaskTracker,
    ) -> Response<ProxyBody> {
        self.record.status = response.status().as_u16();
        let spliced = response
            .extensions_mut()
            .remove::<SpliceDone>()
            .and_then(|done| done.take());
        let Some(done) = spliced else {
            return self.attach(response);
        };
        self.answered();
        tracker.spawn(async move {
            if let Ok((up, down)) = done.await {
                self.add_up(up);
                self.add_down(down);
            }
            drop(self);
        });
        response
    }

    /// Ties the record to `response`: it is written when the body has been sent
    /// or dropped.
    pub fn attach(self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        let counter = self.down.clone();
        response.map(|inner| {
            Counted {
                inner,
                counter,
                _guard: Some(self),
            }
            .boxed()
        })
    }
}

impl Exchange {
    /// Completes the record (bytes, duration, what the client got), logs it and
    /// counts it; the record is then the caller's to write.
    fn finish(&mut self) -> RequestRecord {
        self.emitted = true;
        let record = &mut self.record;
        if !self.answered.load(Ordering::Relaxed) {
            record.status = 0;
            record.reason = record.reason.or(Some(CLIENT_CLOSED));
        }
        record.bytes_up = self.up.load(Ordering::Relaxed);
        record.bytes_down = self.down.load(Ordering::Relaxed);
        if let Some(account) = &self.account {
            use crate::budget::ledger::Meter;
            account.charge(Meter::BytesUp, record.bytes_up);
            account.charge(Meter::BytesDown, record.bytes_down);
        }
        let elapsed = self.started.elapsed();
        record.duration_ms = elapsed.as_millis() as u64;
        tracing::info!(
            task = %record.task.as_deref().unwrap_or("-"),
            client = %record.client,
            method = %record.method,
            host = %record.host,
            port = record.port,
            path = %record.path,
            rule = %record.rule.as_deref().unwrap_or("-"),
            decision = %record.decision,
            secrets = %record.secrets.join(","),
            status = record.status,
            bytes_up = record.bytes_up,
            bytes_down = record.bytes_down,
            duration_ms = record.duration_ms,
            "request"
        );
        // Every decision (refused CONNECTs and 407s included) passes here once.
        self.metrics
            .request_done(record.decision.as_str(), record.reason, elapsed);
        std::mem::take(record)
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.emitted {
            let record = self.finish();
            self.audit.record(record);
        }
    }
}

/// A body that counts the data passing through it and, for responses, owns the
/// exchange record so that it is written when the body is done.
struct Counted {
    inner: ProxyBody,
    counter: Arc<AtomicU64>,
    _guard: Option<Exchange>,
}

impl Counted {
    /// hyper looks at a response's body (its length, whether it is empty, its
    /// first frame) only once it is writing the response out.
    fn mark_answered(&self) {
        if let Some(exchange) = &self._guard {
            exchange.answered();
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.mark_answered();
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                // The head went out; the body broke off (an upstream that reset,
                // a coding that stopped decoding): the client got a cut body.
                if let Some(exchange) = &mut self._guard {
                    exchange.record.decision = crate::audit::Decision::Error;
                    exchange.record.reason = Some(crate::error::Reason::UpstreamError.as_str());
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.mark_answered();
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.mark_answered();
        self.inner.size_hint()
    }
}
