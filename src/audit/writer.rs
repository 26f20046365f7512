//! The audit writer: one OS thread that seals records in order, appends them to the
//! file (the record of truth), then hands them to the remote sinks. Signing and
//! disk writes never run on a request's task.

use super::chain::Sealer;
use super::event::RequestRecord;
use super::file::{FileLog, TornTail};
pub use super::line::request_object;
use super::record::SealedRecord;
use super::remote::RemoteSink;
use crate::config::SignMode;
use crate::text::rfc3339_millis;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// A checkpoint is written after this long without any record.
pub const IDLE_CHECKPOINT: Duration = Duration::from_secs(60);
/// In checkpoint mode, at most this many unsigned records between checkpoints.
pub const CHECKPOINT_RECORDS: u64 = 1000;
/// Records held in memory while the file cannot be written; beyond this the newest
/// are dropped (and counted in the next checkpoint).
pub const MAX_BACKLOG: usize = 100_000;
/// How often a failed file write is retried.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Most records sealed into one file write.
const MAX_BATCH: usize = 4096;
/// After the first record of a batch, how long the writer waits for more. While it
/// waits it is parked, not blocked on the channel, so senders do not have to wake
/// it, and a busy proxy pays one wake-up and one `write` per batch instead of per
/// record. A record whose sender waits for it to be written ([`Msg::Written`])
/// cuts the window short: its sender unparks the writer.
const BATCH_WINDOW: Duration = Duration::from_millis(2);

/// Messages to the writer thread.
pub enum Msg {
    /// A request decision.
    Request(Box<RequestRecord>),
    /// A request decision whose sender waits until it is in the file: answered
    /// right after the write that holds it, or after that write failed (the
    /// record is then held and retried like any other), or dropped unanswered if
    /// the record is dropped. The writer does not wait out the batch window for it.
    Written(Box<RequestRecord>, oneshot::Sender<()>),
    /// Write the shutdown checkpoint, flush, close sinks, then answer.
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// State shared between the writer and the request path.
#[derive(Debug, Default)]
pub struct Status {
    /// False while the file sink cannot be written.
    pub writable: AtomicBool,
    /// Records handed to the writer and not yet written.
    pub depth: AtomicU64,
    /// Records dropped because the backlog was full.
    pub dropped: AtomicU64,
}

enum Pending {
    Request(Box<RequestRecord>),
    Checkpoint(Map<String, Value>),
}

/// What the writer is built from.
pub struct WriterParts {
    /// Continues the chain.
    pub sealer: Sealer,
    /// Signing mode.
    pub sign: SignMode,
    /// Longest gap between checkpoints while records flow (checkpoint mode).
    pub checkpoint_every: Duration,
    /// The record of truth, if configured.
    pub file: Option<FileLog>,
    /// Other sinks.
    pub remotes: Vec<RemoteSink>,
    /// Shared with the request path.
    pub status: Arc<Status>,
    /// A torn tail found at start, for the start checkpoint.
    pub torn: Option<TornTail>,
    /// This replica's stream name (cluster mode), put in every checkpoint.
    pub stream: Option<String>,
}

/// The writer thread's state.
pub struct Writer {
    rx: Receiver<Msg>,
    sealer: Sealer,
    sign: SignMode,
    checkpoint_every: Duration,
    file: Option<FileLog>,
    remotes: Vec<RemoteSink>,
    status: Arc<Status>,
    torn: Option<TornTail>,
    stream: Option<String>,
    backlog: VecDeque<Pending>,
    last_write: Instant,
    unsigned_since: Option<Instant>,
    unsigned_count: u64,
    failing_since: Option<Instant>,
    last_attempt: Instant,
    dropped_unreported: u64,
    /// Senders of [`Msg::Written`] records in the backlog, answered after the
    /// next write attempt.
    waiting: Vec<oneshot::Sender<()>>,
}

impl Writer {
    /// A writer ready to run.
    pub fn new(rx: Receiver<Msg>, parts: WriterParts) -> Self {
        parts.status.writable.store(true, Ordering::Release);
        Self {
            rx,
            sealer: parts.sealer,
            sign: parts.sign,
            checkpoint_every: parts.checkpoint_every,
            file: parts.file,
            remotes: parts.remotes,
            status: parts.status,
            torn: parts.torn,
            stream: parts.stream,
            backlog: VecDeque::new(),
            last_write: Instant::now(),
            unsigned_since: None,
            unsigned_count: 0,
            failing_since: None,
            last_attempt: Instant::now(),
            dropped_unreported: 0,
            waiting: Vec::new(),
        }
    }

    /// Writes the start checkpoint synchronously, so a log that cannot be written
    /// is reported before the proxy listens.
    pub fn start_checkpoint(&mut self) -> std::io::Result<()> {
        let mut cp = self.checkpoint("start");
        cp.insert("version".into(), Value::from(env!("CARGO_PKG_VERSION")));
        if let Some(torn) = self.torn.take() {
            cp.insert(
                "torn_tail".into(),
                serde_json::json!({"bytes": torn.bytes, "saved_to": torn.saved_to.display().to_string()}),
            );
        }
        self.backlog.push_back(Pending::Checkpoint(cp));
        self.flush();
        match self.failing_since {
            Some(_) => Err(std::io::Error::other("the audit log cannot be written")),
            None => Ok(()),
        }
    }

    /// Runs until shutdown or until every sender is gone.
    pub fn run(mut self) {
        loop {
            match self.rx.recv_timeout(self.next_wake()) {
                Ok(first) => match self.take(first) {
                    Err(reply) => return self.stop(reply),
                    Ok(urgent) => {
                        if let Some(reply) = self.gather(urgent) {
                            return self.stop(reply);
                        }
                    }
                },
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return;
                }
            }
            self.tick();
            self.flush();
            self.answer();
        }
    }

    fn stop(mut self, reply: std::sync::mpsc::Sender<()>) {
        self.finish();
        let _ = reply.send(());
    }

    /// Fills the batch that began with one record: whatever is queued, and, while
    /// no sender is waiting for its record (`urgent`), what comes within the
    /// batch window. Returns a shutdown request, if one came.
    fn gather(&mut self, mut urgent: bool) -> Option<std::sync::mpsc::Sender<()>> {
        let deadline = Instant::now() + BATCH_WINDOW;
        let mut taken = 1;
        loop {
            while taken <= MAX_BATCH {
                match self.rx.try_recv().map(|msg| self.take(msg)) {
                    Ok(Ok(waited)) => {
                        urgent |= waited;
                        taken += 1;
                    }
                    Ok(Err(reply)) => return Some(reply),
                    Err(_) => break,
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if urgent || taken > MAX_BATCH || left.is_zero() {
                return None;
            }
            // Woken early by a `Written` sender (or spuriously): look again.
            std::thread::park_timeout(left);
        }
    }

    /// Accepts a request message: `Ok(true)` if its sender waits for the write,
    /// or the reply channel of a shutdown request.
    fn take(&mut self, msg: Msg) -> Result<bool, std::sync::mpsc::Sender<()>> {
        match msg {
            Msg::Request(record) => {
                self.accept(record);
                Ok(false)
            }
            Msg::Written(record, reply) => {
                // A dropped record drops `reply`, which answers its sender too.
                if self.accept(record) {
                    self.waiting.push(reply);
                }
                Ok(true)
            }
            Msg::Shutdown(reply) => Err(reply),
        }
    }

    /// Answers the senders waiting for records of the last write attempt, written
    /// or held after a failure alike: a request must not hang on a broken disk.
    fn answer(&mut self) {
        for reply in self.waiting.drain(..) {
            let _ = reply.send(());
        }
    }

    fn accept(&mut self, record: Box<RequestRecord>) -> bool {
        if self.backlog.len() >= MAX_BACKLOG {
            self.status.depth.fetch_sub(1, Ordering::AcqRel);
            self.status.dropped.fetch_add(1, Ordering::AcqRel);
            self.dropped_unreported += 1;
            return false;
        }
        self.backlog.push_back(Pending::Request(record));
        true
    }

    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        let mut due = self.last_write + IDLE_CHECKPOINT;
        if let Some(since) = self.unsigned_since {
            due = due.min(since + self.checkpoint_every);
        }
        if self.failing_since.is_some() {
            due = due.min(self.last_attempt + RETRY_EVERY);
        }
        due.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    /// Queues the checkpoints that are due.
    fn tick(&mut self) {
        let now = Instant::now();
        if self
            .unsigned_since
            .is_some_and(|since| now.duration_since(since) >= self.checkpoint_every)
        {
            let cp = self.checkpoint("interval");
            self.backlog.push_back(Pending::Checkpoint(cp));
        } else if self.backlog.is_empty() && now.duration_since(self.last_write) >= IDLE_CHECKPOINT
        {
            let cp = self.checkpoint("idle");
            self.backlog.push_back(Pending::Checkpoint(cp));
        }
    }

    fn checkpoint(&self, event: &str) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("v".into(), Value::from(1));
        map.insert("type".into(), Value::from("checkpoint"));
        map.insert("ts".into(), Value::from(rfc3339_millis(SystemTime::now())));
        map.insert("event".into(), Value::from(event));
        map.insert(
            "sign".into(),
            Value::from(match self.sign {
                SignMode::Record => "record",
                SignMode::Checkpoint => "checkpoint",
            }),
        );
        // Every checkpoint (start, shutdown, rotate, idle, interval, dropped)
        // names the stream, so `audit verify` can tell replicas' chains apart.
        if let Some(stream) = &self.stream {
            map.insert("stream".into(), Value::from(stream.as_str()));
        }
        map
    }

    /// Seals and writes everything in the backlog, in order; on failure rewinds
    /// the chain and keeps the backlog for the next attempt.
    fn flush(&mut self) {
        if self.backlog.is_empty() {
            return;
        }
        if self.failing_since.is_some() && self.last_attempt.elapsed() < RETRY_EVERY {
            return;
        }
        self.last_attempt = Instant::now();
        if self.file.as_ref().is_some_and(FileLog::needs_rotation) {
            self.rotate();
        }
        let head = self.sealer.head();
        let unsigned_count = self.unsigned_count;
        let mut buf = Vec::with_capacity(self.backlog.len() * 512);
        let mut sealed: Vec<SealedRecord> = Vec::with_capacity(self.backlog.len() + 1);
        let mut requests = 0u64;
        let mut signed_checkpoint = false;
        let mut unsigned_after_checkpoint = false;
        if self.dropped_unreported > 0 {
            let mut cp = self.checkpoint("dropped");
            cp.insert("dropped".into(), Value::from(self.dropped_unreported));
            self.backlog.push_front(Pending::Checkpoint(cp));
        }
        for pending in &self.backlog {
            let is_checkpoint = matches!(pending, Pending::Checkpoint(_));
            let sign = is_checkpoint || self.sign == SignMode::Record;
            let sealed_one = match pending {
                Pending::Request(record) => {
                    requests += 1;
                    self.sealer.seal_request(record, sign)
                }
                Pending::Checkpoint(map) => self.sealer.seal(map.clone(), sign),
            };
            match sealed_one {
                Ok(record) => push_line(&mut buf, &mut sealed, record),
                Err(e) => {
                    tracing::error!(error = %e, "cannot serialize an audit record; skipped");
                    continue;
                }
            }
            if is_checkpoint {
                signed_checkpoint = true;
                self.unsigned_count = 0;
                unsigned_after_checkpoint = false;
            } else {
                if self.sign == SignMode::Checkpoint {
                    self.unsigned_count += 1;
                    unsigned_after_checkpoint = true;
                    if self.unsigned_count >= CHECKPOINT_RECORDS {
                        let cp = self.checkpoint("interval");
                        if let Ok(record) = self.sealer.seal(cp, true) {
                            push_line(&mut buf, &mut sealed, record);
                            signed_checkpoint = true;
                            self.unsigned_count = 0;
                            unsigned_after_checkpoint = false;
                        }
                    }
                }
            }
        }
        let first_seq = sealed.first().map(|r| r.seq).unwrap_or(head.next_seq);
        let written = match &mut self.file {
            Some(file) => file.append(&buf, first_seq).and_then(|()| {
                if signed_checkpoint {
                    file.sync()
                } else {
                    Ok(())
                }
            }),
            None => Ok(()),
        };
        match written {
            Ok(()) => {
                self.backlog.clear();
                self.status.depth.fetch_sub(requests, Ordering::AcqRel);
                self.dropped_unreported = 0;
                self.recovered();
                for record in &sealed {
                    for remote in &self.remotes {
                        remote.push(record);
                    }
                }
                self.last_write = Instant::now();
                if unsigned_after_checkpoint {
                    self.unsigned_since.get_or_insert(self.last_write);
                } else if signed_checkpoint {
                    self.unsigned_since = None;
                }
            }
            Err(e) => {
                self.sealer.restore(head);
                self.unsigned_count = unsigned_count;
                if self.dropped_unreported > 0 {
                    self.backlog.pop_front();
                }
                self.failed(&e);
            }
        }
    }

    fn rotate(&mut self) {
        let head = self.sealer.head();
        let cp = self.checkpoint("rotate");
        let Ok(record) = self.sealer.seal(cp, true) else {
            return;
        };
        let Some(file) = &mut self.file else { return };
        let mut line = record.line.to_vec();
        line.push(b'\n');
        if let Err(e) = file.append(&line, record.seq) {
            self.sealer.restore(head);
            self.failed(&e);
            return;
        }
        match file.rotate() {
            Ok(to) => tracing::info!(rotated_to = %to.display(), "audit log rotated"),
            Err(e) => {
                tracing::error!(path = %file.path().display(), error = %e, "cannot rotate the audit log; writing on to the same file")
            }
        }
        for remote in &self.remotes {
            remote.push(&record);
        }
        self.unsigned_count = 0;
        self.unsigned_since = None;
    }

    fn failed(&mut self, error: &std::io::Error) {
        let path = self
            .file
            .as_ref()
            .map(|f| f.path().display().to_string())
            .unwrap_or_default();
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            tracing::error!(
                path = %path,
                error = %error,
                held = self.backlog.len(),
                "AUDIT LOG CANNOT BE WRITTEN: records are held in memory and retried every second"
            );
            self.status.writable.store(false, Ordering::Release);
        }
    }

    fn recovered(&mut self) {
        if let Some(since) = self.failing_since.take() {
            tracing::warn!(
                down_for_ms = since.elapsed().as_millis() as u64,
                "the audit log is writable again; held records were written in order"
            );
            self.status.writable.store(true, Ordering::Release);
        }
    }

    fn finish(&mut self) {
        let cp = self.checkpoint("shutdown");
        self.backlog.push_back(Pending::Checkpoint(cp));
        self.failing_since = None;
        self.flush();
        self.answer();
        if let Some(file) = &self.file {
            let _ = file.sync();
        }
        // In parallel: each may wait for its receiver before spooling the rest.
        std::thread::scope(|scope| {
            for remote in &self.remotes {
                scope.spawn(move || remote.close(Duration::from_secs(1)));
            }
        });
    }
}

fn push_line(buf: &mut Vec<u8>, sealed: &mut Vec<SealedRecord>, record: SealedRecord) {
    buf.extend_from_slice(&record.line);
    buf.push(b'\n');
    sealed.push(record);
}
