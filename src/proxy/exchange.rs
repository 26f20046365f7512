//! The audit record of one exchange: filled in as the request passes the phases,
//! written before a refusal is sent (and in the file by then, so a crash right
//! after a 403 cannot lose it) or, for an allowed request, when the response
//! body ends (or the client goes away), with the bytes that passed.
//!
//! `status` is what the client got: a response that never reached hyper's
//! connection (the client went away first) is recorded with status 0.

pub use super::budget_cut::BudgetCut;
use super::budget_cut::CutOff;
use super::splice::SpliceDone;
use crate::audit::{Audit, RequestRecord};
use crate::body::{BoxError, ProxyBody};
use crate::budget::ledger::{Account, Limits, Meter};
use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
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
    slot: Option<super::slots::Slot>,
    /// The task's budget account and limits: charged the request, its bytes
    /// as they flow and its LLM usage.
    account: Option<(Arc<dyn Account>, Limits)>,
    /// Whether the request was charged (it went upstream).
    charged_request: bool,
    /// The LLM usage read from the answer, when it was read.
    /// (Both made on first use: most exchanges need neither.)
    llm: OnceLock<LlmSlot>,
    /// Why the upload was cut, when a budget cut it.
    cut: OnceLock<BudgetCut>,
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
            charged_request: false,
            llm: OnceLock::new(),
            cut: OnceLock::new(),
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

    /// Charges the exchange to `account`, whose limits are `limits`: the
    /// request when it goes upstream, its bytes as they flow.
    pub fn charge_to(&mut self, account: Arc<dyn Account>, limits: Limits) {
        self.account = Some((account, limits));
    }

    /// The account the exchange is charged to, if any.
    pub fn account(&self) -> Option<&Arc<dyn Account>> {
        self.account.as_ref().map(|(account, _)| account)
    }

    /// Where the LLM usage of the answer is put when it has been read.
    pub fn llm_slot(&self) -> LlmSlot {
        self.llm.get_or_init(LlmSlot::default).clone()
    }

    /// What the upstream request carries, so that a failed send can tell a
    /// budget's cut from an upstream's fault; `None` when no `bytes_up`
    /// limit can cut it.
    pub fn budget_cut(&self) -> Option<BudgetCut> {
        let (_, limits) = self.account.as_ref()?;
        limits.get(Meter::BytesUp)?;
        Some(self.cut.get_or_init(BudgetCut::default).clone())
    }

    /// Charges one request that goes upstream.
    pub fn charge_request(&mut self) {
        if let Some((account, _)) = &self.account {
            account.charge(Meter::Requests, 1);
            self.charged_request = true;
        }
    }

    /// Holds a concurrency slot until the exchange ends.
    pub fn hold(&mut self, slot: super::slots::Slot) {
        self.slot = Some(slot);
    }

    /// Marks the record refused with `reason` and `status`.
    pub fn refused(&mut self, reason: crate::error::Reason, status: u16) {
        self.record.decision = reason.decision();
        self.record.reason = Some(reason.as_str());
        self.record.status = status;
    }

    /// Counts `body`'s bytes as sent upstream, charging them as they go; an
    /// upload that would take `bytes_up` past its limit is cut off there.
    pub fn count_up(&self, body: ProxyBody) -> ProxyBody {
        Counted {
            inner: body,
            counter: self.up.clone(),
            charge: self.charge(Meter::BytesUp),
            _guard: None,
        }
        .boxed()
    }

    /// Adds bytes sent upstream outside a counted body (tunnels, buffered bodies).
    pub fn add_up(&self, n: u64) {
        self.up.fetch_add(n, Ordering::Relaxed);
        if let Some((account, _)) = &self.account {
            account.charge(Meter::BytesUp, n);
        }
    }

    /// Adds bytes sent to the client outside a counted body (tunnels).
    pub fn add_down(&self, n: u64) {
        self.down.fetch_add(n, Ordering::Relaxed);
        if let Some((account, _)) = &self.account {
            account.charge(Meter::BytesDown, n);
        }
    }

    /// What a counted body in the `meter` direction charges, and where a
    /// `bytes_up` limit cuts it.
    fn charge(&self, meter: Meter) -> Option<Charge> {
        let (account, limits) = self.account.as_ref()?;
        let cut_at = (meter == Meter::BytesUp)
            .then(|| limits.get(Meter::BytesUp))
            .flatten()
            .map(|limit| (limit, self.cut.get_or_init(BudgetCut::default).clone()));
        Some(Charge {
            account: account.clone(),
            meter,
            cut_at,
        })
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
        let charge = self.charge(Meter::BytesDown);
        response.map(|inner| {
            Counted {
                inner,
                counter,
                charge,
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
        let llm = self.llm.get().and_then(LlmSlot::take);
        if let Some((account, limits)) = &self.account {
            let (tokens, micro_usd) = llm.as_ref().map_or((0, 0), |l| (l.tokens, l.micro_usd));
            let mine = |meter: Meter| match meter {
                Meter::Requests => u64::from(self.charged_request),
                Meter::BytesUp => record.bytes_up,
                Meter::BytesDown => record.bytes_down,
                Meter::LlmTokens => tokens,
                Meter::LlmMicroUsd => micro_usd,
            };
            // The budget this exchange used up: it was open before it, not after.
            let crossed = Meter::ALL.into_iter().find(|&meter| {
                limits.get(meter).is_some_and(|limit| {
                    let used = account.used(meter);
                    used >= limit && used.saturating_sub(mine(meter)) < limit
                })
            });
            let cut = self
                .cut
                .get()
                .and_then(BudgetCut::reason)
                .map(|_| Meter::BytesUp);
            record.budget = record.budget.or(cut.or(crossed).map(Meter::name));
        }
        if let Some(llm) = llm {
            record.llm = Some(llm.info);
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

/// LLM usage read from an answer, and what it was charged.
#[derive(Debug, Clone)]
pub struct LlmCharge {
    /// The record's `llm` block.
    pub info: crate::audit::LlmInfo,
    /// Tokens charged.
    pub tokens: u64,
    /// Millionths of a US dollar charged.
    pub micro_usd: u64,
}

/// Where the reader of an answer puts its [`LlmCharge`] for the record.
#[derive(Debug, Clone, Default)]
pub struct LlmSlot(Arc<Mutex<Option<LlmCharge>>>);

impl LlmSlot {
    /// Puts `charge` in the slot.
    pub fn put(&self, charge: LlmCharge) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(charge);
    }

    fn take(&self) -> Option<LlmCharge> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// What a counted body charges to its task's account.
struct Charge {
    account: Arc<dyn Account>,
    meter: Meter,
    /// Bytes up to which the account may be charged (`bytes_up`), and where
    /// the cut is told.
    cut_at: Option<(u64, BudgetCut)>,
}

/// A body that counts the data passing through it and, for responses, owns the
/// exchange record so that it is written when the body is done.
struct Counted {
    inner: ProxyBody,
    counter: Arc<AtomicU64>,
    charge: Option<Charge>,
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
                    let len = data.len() as u64;
                    if let Some(charge) = &self.charge {
                        if let Some((limit, cut)) = &charge.cut_at {
                            let limit = *limit;
                            let used = charge.account.used(charge.meter);
                            if used.saturating_add(len) > limit {
                                // SECURITY: an exfiltration ceiling is not
                                // crossed by finishing the upload that crosses it.
                                let why = format!(
                                    "the task's bytes_up budget is used up: this upload would take it past {limit} bytes ({used} sent before it), so it was cut off"
                                );
                                cut.set(why.clone());
                                // The attempt uses the budget up: the next request is refused.
                                charge
                                    .account
                                    .charge(charge.meter, limit.saturating_sub(used));
                                return Poll::Ready(Some(Err(Box::new(CutOff(why)))));
                            }
                        }
                        charge.account.charge(charge.meter, len);
                    }
                    self.counter.fetch_add(len, Ordering::Relaxed);
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
