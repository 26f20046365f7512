//! The signed, hash-chained audit trail and its sinks.
//!
//! The request path builds a [`RequestRecord`] and hands it to [`Audit::record`],
//! which only queues it, or, for a denial, to [`Audit::record_written`], whose
//! future resolves once the record is in the file. One writer thread seals records
//! in order (RFC 8785 canonical form, SHA-256 chain, ed25519 signature), appends
//! them to the file sink, and then gives them to the remote sinks, each of which
//! delivers on its own.

pub mod chain;
pub mod event;
pub mod file;
pub mod key;
pub mod line;
pub mod record;
pub mod remote;
pub mod verify;
pub mod writer;

/// The audit trail cannot take records now, so nothing may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail cannot be written, so tollgate lets nothing through until it can")]
pub struct AuditUnavailable;

pub use event::{ApprovalInfo, Decision, GraphQlInfo, LlmInfo, RequestRecord, RpcInfo};
pub use record::SealedRecord;

use crate::config::{AuditConfig, AuditSink, OnFailure};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use writer::{Msg, Status, Writer};

/// Records waiting for the writer beyond which requests are refused (the writer
/// cannot keep up, and memory would otherwise grow without bound).
const MAX_QUEUED: u64 = writer::MAX_BACKLOG as u64;

/// Why the audit trail could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The signing key.
    #[error(transparent)]
    Key(#[from] key::KeyError),
    /// The file sink.
    #[error(transparent)]
    File(#[from] file::FileLogError),
    /// A remote sink.
    #[error("audit sink: {0}")]
    Sink(String),
    /// The writer.
    #[error("audit: {0}")]
    Writer(String),
}

/// The handle the proxy holds. Cheap to clone.
#[derive(Clone, Default)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    status: Arc<Status>,
    fail_closed: bool,
    has_file: bool,
    /// The writer, to unpark when a record must not wait for the batch window.
    writer: std::thread::Thread,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Audit(on)"
        } else {
            "Audit(off)"
        })
    }
}

impl Audit {
    /// An audit trail that records nothing (no sinks configured).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Loads or creates the key, recovers the log, starts the sinks and the writer
    /// thread, and writes the start checkpoint. Must run inside a tokio runtime
    /// (remote sinks deliver on it). `tls` verifies `https` collectors.
    pub fn start(
        config: &AuditConfig,
        state_dir: &Path,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, AuditError> {
        if config.sinks.is_empty() {
            tracing::warn!("audit.sinks is empty: no audit records are written");
            return Ok(Self::disabled());
        }
        if key::ensure_key(&config.key)? == key::KeyStatus::Created {
            tracing::info!(key = %config.key.display(), "created the audit signing key");
        }
        let signing = Arc::new(key::SigningKey::load(&config.key)?);
        let mut file_log = None;
        let mut recovered = None;
        let mut remotes = Vec::new();
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| AuditError::Writer("needs a tokio runtime".into()))?;
        let spool_dir = state_dir.join("spool");
        for sink in &config.sinks {
            match sink {
                AuditSink::File(f) => {
                    let (log, found) = file::FileLog::open(f)?;
                    file_log = Some(log);
                    recovered = Some(found);
                }
                other => remotes.push(
                    remote::RemoteSink::start(other, &spool_dir, &runtime, tls.clone())
                        .map_err(AuditError::Sink)?,
                ),
            }
        }
        if file_log.is_none() {
            tracing::warn!("no audit file sink: seq and the chain start over at every start");
        }
        let (head, torn) = match recovered {
            Some(r) => (r.head, r.torn),
            None => (chain::ChainHead::genesis(), None),
        };
        let status = Arc::new(Status::default());
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer::new(
            rx,
            writer::WriterParts {
                sealer: chain::Sealer::new(signing.clone(), head),
                sign: config.sign,
                checkpoint_every: config.checkpoint_every,
                file: file_log,
                remotes,
                status: status.clone(),
                torn,
                stream: config.stream.clone(),
            },
        );
        writer
            .start_checkpoint()
            .map_err(|e| AuditError::Writer(e.to_string()))?;
        tracing::info!(
            key_id = %signing.key_id(),
            next_seq = head.next_seq,
            sign = ?config.sign,
            "audit trail started"
        );
        let thread = std::thread::Builder::new()
            .name("tollgate-audit".into())
            .spawn(move || writer.run())
            .map_err(|e| AuditError::Writer(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            inner: Some(Arc::new(Inner {
                tx,
                status,
                fail_closed: config.on_failure == OnFailure::Closed,
                has_file: config.sinks.iter().any(|s| matches!(s, AuditSink::File(_))),
                writer: thread.thread().clone(),
                thread: Mutex::new(Some(thread)),
            })),
        })
    }

    /// Queues one request record. Never blocks.
    pub fn record(&self, record: RequestRecord) {
        if let Some(inner) = &self.inner {
            inner.status.depth.fetch_add(1, Ordering::AcqRel);
            if inner.tx.send(Msg::Request(Box::new(record))).is_err() {
                inner.status.depth.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Hands one request record to the writer now and returns a future that
    /// resolves once the record has been appended to the file sink (`write(2)`
    /// returned, no fsync: a process killed with -9 leaves it in the page cache).
    /// For denials, whose record must be in the file before the response is sent.
    ///
    /// The hand-over happens in this call, not at the first poll, so records keep
    /// the order of the calls, mixed with [`Audit::record`] ones, in one chain.
    /// Awaiting does not block the runtime, and the writer does not wait out its
    /// batch window for such a record: it writes whatever is queued at once.
    ///
    /// The future never hangs. It resolves at once when the audit is disabled or
    /// has no file sink (the record is then queued for the other sinks as by
    /// [`Audit::record`]), or when the writer is gone. When the write fails it
    /// resolves too, and the record stays in the writer's memory and is written,
    /// in order, once the file is writable again (meanwhile [`Audit::refusing`]
    /// says so under `on_failure: closed`). A record dropped because the
    /// writer's backlog is full resolves it as well.
    pub fn record_written(
        &self,
        record: RequestRecord,
    ) -> impl Future<Output = ()> + Send + 'static {
        let waiting = self.hand_over_written(record);
        async move {
            if let Some(written) = waiting {
                // An error only means the writer is gone: nothing left to wait for.
                let _ = written.await;
            }
        }
    }

    /// Sends a record that a sender waits for; the receiver to await, if any.
    fn hand_over_written(
        &self,
        record: RequestRecord,
    ) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let inner = self.inner.as_ref()?;
        if !inner.has_file {
            self.record(record);
            return None;
        }
        let (reply, written) = tokio::sync::oneshot::channel();
        inner.status.depth.fetch_add(1, Ordering::AcqRel);
        if inner
            .tx
            .send(Msg::Written(Box::new(record), reply))
            .is_err()
        {
            inner.status.depth.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        // The writer may be parked in its batch window: this record must not wait.
        inner.writer.unpark();
        Some(written)
    }

    /// `Err` while [`Self::refusing`]: the request must get 503.
    pub fn ensure_writable(&self) -> Result<(), AuditUnavailable> {
        if self.refusing() {
            Err(AuditUnavailable)
        } else {
            Ok(())
        }
    }

    /// Whether new requests must be refused (503): the file sink cannot be written
    /// and `on_failure` is `closed`, or the writer is too far behind.
    pub fn refusing(&self) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let unwritable = inner.has_file && !inner.status.writable.load(Ordering::Acquire);
        (inner.fail_closed && unwritable)
            || inner.status.depth.load(Ordering::Acquire) >= MAX_QUEUED
    }

    /// Records queued and not yet written.
    pub fn depth(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.status.depth.load(Ordering::Acquire))
    }

    /// Writes the shutdown checkpoint and stops the writer, waiting at most
    /// `timeout`. Blocking.
    pub fn shutdown(&self, timeout: Duration) {
        let Some(inner) = &self.inner else { return };
        let (reply_tx, reply_rx) = mpsc::channel();
        if inner.tx.send(Msg::Shutdown(reply_tx)).is_ok() && reply_rx.recv_timeout(timeout).is_err()
        {
            tracing::error!(
                "the audit writer did not finish in time; the shutdown checkpoint may be missing"
            );
            return;
        }
        if let Ok(mut thread) = inner.thread.lock() {
            if let Some(handle) = thread.take() {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests;
