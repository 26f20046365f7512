//! The audit record of one exchange: filled in as the request passes the phases,
//! written when a refusal is sent or, for an allowed request, when the response
//! body ends (or the client goes away), with the bytes that passed.

use super::body::{BoxError, ProxyBody};
use crate::audit::{Audit, RequestRecord};
use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// One exchange's record, emitted once, on drop.
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

impl Drop for Exchange {
    fn drop(&mut self) {
        let record = &mut self.record;
        record.bytes_up = self.up.load(Ordering::Relaxed);
        record.bytes_down = self.down.load(Ordering::Relaxed);
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
            .request_done(record.decision, record.reason, elapsed);
        self.audit.record(std::mem::take(record));
    }
}

/// A body that counts the data passing through it and, for responses, owns the
/// exchange record so that it is written when the body is done.
struct Counted {
    inner: ProxyBody,
    counter: Arc<AtomicU64>,
    _guard: Option<Exchange>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
