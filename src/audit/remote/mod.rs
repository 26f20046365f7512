//! Sinks other than the file: stdout, syslog and HTTP. Each has a bounded memory
//! queue backed by a disk spool, and delivers on its own task so that traffic never
//! waits on a receiver.
//!
//! * [`RemoteSink::push`] (the audit writer thread) only appends to memory or to
//!   the spool file under a short lock; see [`queue`] for the ordering rules and
//!   the spool format.
//! * One task per sink takes the oldest records (spool first, then memory), sends
//!   them, and acknowledges them only when the receiver accepted them. On failure
//!   the receiver is marked down, memory is moved to the spool, and the same
//!   records are retried with exponential backoff (100 ms doubling to 5 s, reset
//!   on success). Going down is logged once at `warn` (and again at most once a
//!   minute while it stays down), recovering once at `info`.
//! * Spool files are `<spool_dir>/<name>.spool` and `<name>.offset`, `name` being
//!   [`sink_name`]: `stdout`, `syslog-<8 hex>` (SHA-256 of `address/transport`),
//!   `http-<8 hex>` (SHA-256 of the URL). Spools always hold native records; the
//!   format and envelope are applied at delivery, so changing them does not
//!   orphan a spool.

mod delivery;
mod http;
pub mod ocsf;
mod queue;
mod stamp;
mod stdout;
pub mod syslog;

pub(crate) use delivery::error_chain;
pub use ocsf::render_ocsf;

use super::record::SealedRecord;
use crate::config::{AuditSink, SyslogTransport};
use bytes::Bytes;
use delivery::Failure;
use queue::{Batch, Limits, Queue, Source};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// Tuning of a remote sink; [`SinkOptions::default`] is what `start` uses.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Records held in memory before new ones go to the spool.
    pub memory_records: usize,
    /// Bytes held in memory before new records go to the spool.
    pub memory_bytes: usize,
    /// Most records per delivery (one HTTP POST, one TCP write).
    pub batch_records: usize,
    /// About this many bytes of records per delivery (at least one record).
    pub batch_bytes: usize,
    /// First retry delay after a failure.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Connect / request / write timeout.
    pub timeout: Duration,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            memory_records: 4096,
            memory_bytes: 32 * 1024 * 1024,
            batch_records: 500,
            batch_bytes: 256 * 1024,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

fn short_hash(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    crate::text::hex(&digest.as_ref()[..4])
}

/// The stable name of a non-file sink (logs, spool file): `stdout`,
/// `syslog-<first 8 hex of SHA-256("address/tcp|udp")>`,
/// `http-<first 8 hex of SHA-256(url)>`. `None` for the file sink.
pub fn sink_name(sink: &AuditSink) -> Option<String> {
    match sink {
        AuditSink::File(_) => None,
        AuditSink::Stdout(_) => Some("stdout".to_string()),
        AuditSink::Syslog(s) => {
            let transport = match s.transport {
                SyslogTransport::Tcp => "tcp",
                SyslogTransport::Udp => "udp",
            };
            Some(format!(
                "syslog-{}",
                short_hash(&format!("{}/{transport}", s.address))
            ))
        }
        AuditSink::Http(h) => Some(format!("http-{}", short_hash(&h.url))),
    }
}

enum Transport {
    Stdout(stdout::Stdout),
    Syslog(syslog::Syslog),
    Http(Box<http::Http>),
}

impl Transport {
    async fn send(&mut self, batch: &[Bytes], queue: &Queue) -> Result<(), Failure> {
        match self {
            Transport::Stdout(t) => t.send(batch).await,
            Transport::Syslog(t) => t.send(batch, queue).await,
            Transport::Http(t) => t.send(batch, queue).await,
        }
    }
}

/// Tells `close` that the delivery task is gone (finished, aborted or dropped
/// with its runtime).
struct Exited(mpsc::Sender<()>);

impl Drop for Exited {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// A running non-file sink.
pub struct RemoteSink {
    name: String,
    spool_path: PathBuf,
    queue: Arc<Queue>,
    task: Mutex<Option<(tokio::task::JoinHandle<()>, mpsc::Receiver<()>)>>,
}

impl std::fmt::Debug for RemoteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSink")
            .field("name", &self.name)
            .field("depth", &self.depth())
            .finish()
    }
}

impl RemoteSink {
    /// Starts delivery for `sink` (stdout, syslog or http) on `rt`; its spool lives
    /// in `spool_dir`; `https` collectors are verified with `tls`. Records spooled by an earlier run are delivered first.
    pub fn start(
        sink: &AuditSink,
        spool_dir: &Path,
        rt: &tokio::runtime::Handle,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<RemoteSink, String> {
        Self::start_with(sink, spool_dir, rt, tls, SinkOptions::default())
    }

    /// [`RemoteSink::start`] with explicit tuning.
    pub fn start_with(
        sink: &AuditSink,
        spool_dir: &Path,
        rt: &tokio::runtime::Handle,
        tls: Arc<rustls::ClientConfig>,
        options: SinkOptions,
    ) -> Result<RemoteSink, String> {
        let name = sink_name(sink).ok_or("the file sink is not a remote sink")?;
        let transport = match sink {
            AuditSink::File(_) => return Err("the file sink is not a remote sink".into()),
            AuditSink::Stdout(s) => Transport::Stdout(stdout::Stdout::new(s.format)),
            AuditSink::Syslog(s) => Transport::Syslog(syslog::Syslog::new(s, options.timeout)?),
            AuditSink::Http(h) => {
                Transport::Http(Box::new(http::Http::new(h, &tls, options.timeout)?))
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(spool_dir)
            .map_err(|e| {
                format!(
                    "cannot create the audit spool directory {}: {e}",
                    spool_dir.display()
                )
            })?;
        let queue = Arc::new(Queue::open(
            &name,
            spool_dir,
            Limits {
                records: options.memory_records.max(1),
                bytes: options.memory_bytes,
            },
        )?);
        let spool_path = queue.spool_path();
        let left = queue.depth();
        if left > 0 {
            info!(sink = %name, records = left, path = %spool_path.display(), "audit records spooled by an earlier run are delivered first");
        }
        let (tx, rx) = mpsc::channel();
        let task = deliver(name.clone(), queue.clone(), transport, options);
        let handle = rt.spawn(async move {
            // Declared before the delivery future, so dropped after it (and its
            // hold on the queue): `close` learns the task is entirely gone.
            let _exited = Exited(tx);
            task.await;
        });
        Ok(RemoteSink {
            name,
            spool_path,
            queue,
            task: Mutex::new(Some((handle, rx))),
        })
    }

    /// A stable name for logs, metrics and the spool file (`syslog-1a2b3c4d`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The spool file (`<spool_dir>/<name>.spool`).
    pub fn spool_path(&self) -> &Path {
        &self.spool_path
    }

    /// Queues one record. Never waits on the network.
    pub fn push(&self, record: &SealedRecord) {
        self.queue.push(&record.line);
    }

    /// Records queued in memory and in the spool, not yet acknowledged.
    pub fn depth(&self) -> u64 {
        self.queue.depth()
    }

    /// Records this sink gave up on: the spool could not be written while memory
    /// was full, a record was not JSON (http), or did not fit a UDP datagram.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Waits up to `grace` for the queue to drain, then writes what is left to the
    /// spool and stops delivery. Blocking: call it off the async runtime. Records
    /// pushed afterwards go straight to the spool, for the next run.
    pub fn close(&self, grace: Duration) {
        let deadline = Instant::now().checked_add(grace);
        self.queue.wait_drained(deadline);
        self.stop(Duration::from_secs(2));
    }

    fn stop(&self, wait: Duration) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some((handle, exited)) = task else {
            return;
        };
        self.queue.begin_close();
        handle.abort();
        if !wait.is_zero() {
            let _ = exited.recv_timeout(wait);
        }
        let left = self.queue.finish_close();
        if left > 0 {
            warn!(sink = %self.name, records = left, path = %self.spool_path.display(), "audit sink stopped with undelivered records; they are delivered at the next start");
        } else {
            debug!(sink = %self.name, "audit sink stopped, nothing left to deliver");
        }
    }
}

impl Drop for RemoteSink {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
        // Let a new sink on the same spool start now, even if the aborted task
        // has not been dropped by its runtime yet.
        self.queue.release();
    }
}

/// The delivery task of one sink.
async fn deliver(name: String, queue: Arc<Queue>, mut transport: Transport, options: SinkOptions) {
    const REMIND_EVERY: Duration = Duration::from_secs(60);
    let backoff_min = options.backoff_min.max(Duration::from_millis(1));
    let backoff_max = options.backoff_max.max(backoff_min);
    let mut backoff = backoff_min;
    let mut down_since: Option<Instant> = None;
    let mut reminded = Instant::now();
    let mut spool_unreadable = false;
    loop {
        let Some(batch) = queue.take(options.batch_records, options.batch_bytes) else {
            queue.wake.notified().await;
            continue;
        };
        let (source, records) = match batch {
            Batch::Memory(records) => (Source::Memory, records),
            Batch::Spool(range) => match range.read(options.batch_records, options.batch_bytes) {
                Ok(records) if !records.is_empty() => {
                    if spool_unreadable {
                        spool_unreadable = false;
                        info!(sink = %name, "audit spool is readable again");
                    }
                    (Source::Spool, records)
                }
                read => {
                    if !spool_unreadable {
                        spool_unreadable = true;
                        let why = match read {
                            Err(e) => e.to_string(),
                            Ok(_) => "no whole record where one was expected".to_string(),
                        };
                        error!(sink = %name, error = %why, "cannot read the audit spool; retrying");
                    }
                    tokio::time::sleep(backoff_max).await;
                    continue;
                }
            },
        };
        match transport.send(&records, &queue).await {
            Ok(()) => {
                queue.finish(source, &records, records.len(), false);
                backoff = backoff_min;
                if let Some(since) = down_since.take() {
                    info!(sink = %name, down_for = ?since.elapsed(), queued = queue.depth(), "audit sink recovered; delivering queued records");
                }
            }
            Err(failure) => {
                queue.finish(source, &records, failure.acked, true);
                let now = Instant::now();
                match down_since {
                    None => {
                        down_since = Some(now);
                        reminded = now;
                        warn!(sink = %name, error = %failure.reason, queued = queue.depth(), "audit sink is down; records are spooled to disk and retried with backoff");
                    }
                    Some(since) if now.duration_since(reminded) >= REMIND_EVERY => {
                        reminded = now;
                        warn!(sink = %name, error = %failure.reason, down_for = ?now.duration_since(since), queued = queue.depth(), "audit sink is still down");
                    }
                    Some(_) => {
                        debug!(sink = %name, error = %failure.reason, retry_in = ?backoff, "audit sink delivery failed");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(backoff_max);
            }
        }
    }
}
