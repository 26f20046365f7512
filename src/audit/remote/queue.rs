//! The queue behind one remote sink: a bounded memory queue in front of an
//! append-only disk spool.
//!
//! Ordering rule: every record in the spool is older than every record in memory,
//! and delivery takes the spool first, then memory. A record goes to the spool
//! only when memory is empty, or after memory has been moved to the spool first.
//! Records go to the spool when memory is full, when the receiver is down, and
//! while the spool still holds anything (so a restart finds them on disk).
//!
//! Spool format: `<name>.spool` holds one native record per line (`\n`
//! terminated; canonical JSON never contains a raw newline), so it is itself a
//! valid JSONL audit file. `<name>.offset` holds, in decimal, the byte offset of
//! the first record not yet acknowledged; it is replaced (write + rename) after
//! every acknowledged batch. When everything is acknowledged the spool is
//! truncated to zero. A partial last line (a crash mid-append) is cut off at
//! start. The spool file is locked (`flock`) while a sink uses it, so the same
//! destination configured twice, or two processes on one state directory, are
//! refused instead of delivering twice.

use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::Notify;
use tracing::{error, info, warn};

/// Where a batch came from, so that its acknowledgement removes the right records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Memory,
    Spool,
}

/// The next records to deliver.
pub(super) enum Batch {
    /// The oldest records in memory (still held there until acknowledged).
    Memory(Vec<Bytes>),
    /// Unacknowledged spool bytes; read with [`SpoolRange::read`] outside the lock.
    Spool(SpoolRange),
}

/// A byte range of the spool holding whole records.
pub(super) struct SpoolRange {
    file: Arc<File>,
    from: u64,
    to: u64,
}

impl SpoolRange {
    /// Reads up to `max_records` whole records (about `max_bytes`, at least one).
    pub(super) fn read(&self, max_records: usize, max_bytes: usize) -> io::Result<Vec<Bytes>> {
        let avail = self.to.saturating_sub(self.from);
        let mut want = avail.min(max_bytes.max(1) as u64);
        loop {
            let size = usize::try_from(want).map_err(io::Error::other)?;
            let mut buf = vec![0u8; size];
            self.file.read_exact_at(&mut buf, self.from)?;
            let buf = Bytes::from(buf);
            let mut out = Vec::new();
            let mut start = 0;
            for nl in memchr::memchr_iter(b'\n', &buf) {
                out.push(buf.slice(start..nl));
                start = nl + 1;
                if out.len() >= max_records.max(1) {
                    break;
                }
            }
            if !out.is_empty() || want >= avail {
                return Ok(out);
            }
            // One record longer than `max_bytes`: read further.
            want = avail.min(want.saturating_mul(2));
        }
    }
}

/// Memory bounds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub records: usize,
    pub bytes: usize,
}

pub(super) struct Queue {
    name: String,
    limits: Limits,
    state: Mutex<State>,
    drained: Condvar,
    /// Wakes the delivery task when records arrive or the sink closes.
    pub(super) wake: Notify,
    dropped: AtomicU64,
}

struct State {
    mem: VecDeque<Bytes>,
    mem_bytes: usize,
    /// A memory batch is out for delivery (it is the front of `mem`).
    mem_inflight: bool,
    /// That batch was moved to the spool meanwhile: it is now the first
    /// unacknowledged records of the spool.
    inflight_moved: bool,
    spool: Spool,
    /// The last delivery failed: new records go straight to the spool.
    down: bool,
    closing: bool,
    closed: bool,
    spool_failing: bool,
}

struct Spool {
    path: PathBuf,
    offset_path: PathBuf,
    file: Arc<File>,
    /// Length of the whole records written (the file's length).
    len: u64,
    /// Offset of the first unacknowledged record.
    read_off: u64,
    /// Records between `read_off` and `len`.
    pending: u64,
    offset_failing: bool,
}

fn read_offset(path: &Path) -> u64 {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(off) => off,
            Err(_) => {
                warn!(path = %path.display(), "audit spool offset file is not a number; delivering the spool from its start");
                0
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the audit spool offset; delivering the spool from its start");
            0
        }
    }
}

/// Counts newlines in `file[from..to]`; returns (count, end of the last whole line).
fn scan(file: &File, from: u64, to: u64) -> io::Result<(u64, u64)> {
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = from;
    let mut count = 0u64;
    let mut end = from;
    while pos < to {
        let n = usize::try_from((to - pos).min(buf.len() as u64)).map_err(io::Error::other)?;
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, pos)?;
        for nl in memchr::memchr_iter(b'\n', chunk) {
            count += 1;
            end = pos + nl as u64 + 1;
        }
        pos += n as u64;
    }
    Ok((count, end))
}

impl Spool {
    fn open(dir: &Path, name: &str) -> Result<Spool, String> {
        let path = dir.join(format!("{name}.spool"));
        let offset_path = dir.join(format!("{name}.offset"));
        let shown = path.display();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open audit spool {shown}: {e}"))?;
        match crate::file_lock::lock_exclusive(&file) {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "audit spool {shown} is in use (the same destination configured twice, or another tollgate on this state directory)"
                ))
            }
            Err(TryLockError::Error(e)) => {
                warn!(path = %shown, error = %e, "cannot lock the audit spool; continuing without the lock");
            }
        }
        let mut len = file
            .metadata()
            .map_err(|e| format!("cannot read audit spool {shown}: {e}"))?
            .len();
        let saved_off = read_offset(&offset_path);
        let mut read_off = saved_off;
        if read_off > len {
            // Only after a crash between truncating a drained spool and saving
            // its offset: everything up to the old offset was delivered.
            read_off = 0;
        }
        if read_off > 0 {
            let mut before = [0u8; 1];
            let at_boundary = file
                .read_exact_at(&mut before, read_off - 1)
                .map(|()| before[0] == b'\n')
                .unwrap_or(false);
            if !at_boundary {
                warn!(path = %shown, offset = read_off, "audit spool offset is not at a record boundary; delivering the spool from its start (records may repeat)");
                read_off = 0;
            }
        }
        let (pending, end) = scan(&file, read_off, len)
            .map_err(|e| format!("cannot read audit spool {shown}: {e}"))?;
        if end < len {
            warn!(path = %shown, bytes = len - end, "cutting a partial record off the end of the audit spool (a write was interrupted)");
            file.set_len(end)
                .map_err(|e| format!("cannot repair audit spool {shown}: {e}"))?;
            len = end;
        }
        let mut spool = Spool {
            path,
            offset_path,
            file: Arc::new(file),
            len,
            read_off,
            pending,
            offset_failing: false,
        };
        if pending == 0 && len > 0 {
            spool.ack(0, 0);
        } else if read_off != saved_off {
            // A corrected offset must not come back after the next restart.
            spool.save_offset();
        }
        Ok(spool)
    }

    /// Appends whole records; on failure the file is cut back to its old length.
    fn append(&mut self, buf: &[u8], records: u64) -> io::Result<()> {
        match (&*self.file).write_all(buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.pending += records;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    error!(path = %self.path.display(), error = %cut, "cannot cut a partial write off the audit spool; one record may be unreadable");
                }
                Err(e)
            }
        }
    }

    /// Marks `records` (`bytes` long) at the read offset delivered, truncates a
    /// drained spool, and saves the offset.
    fn ack(&mut self, bytes: u64, records: u64) {
        self.read_off = (self.read_off + bytes).min(self.len);
        self.pending = self.pending.saturating_sub(records);
        if self.pending == 0 {
            match self.file.set_len(0) {
                Ok(()) => {
                    self.len = 0;
                    self.read_off = 0;
                }
                Err(e) => {
                    warn!(path = %self.path.display(), error = %e, "cannot truncate the drained audit spool");
                }
            }
        }
        self.save_offset();
    }

    /// Replaces the offset file (write + rename).
    fn save_offset(&mut self) {
        let tmp = self.offset_path.with_extension("offset.tmp");
        let saved = std::fs::write(&tmp, format!("{}\n", self.read_off))
            .and_then(|()| std::fs::rename(&tmp, &self.offset_path));
        match saved {
            Ok(()) if self.offset_failing => {
                self.offset_failing = false;
                info!(path = %self.offset_path.display(), "audit spool offset is saved again");
            }
            Ok(()) => {}
            Err(e) if !self.offset_failing => {
                self.offset_failing = true;
                error!(path = %self.offset_path.display(), error = %e, "cannot save the audit spool offset; after a restart some records may be delivered twice");
            }
            Err(_) => {}
        }
    }
}

impl State {
    fn depth(&self) -> u64 {
        self.mem.len() as u64 + self.spool.pending
    }

    /// Moves every memory record to the end of the spool (all or nothing).
    fn spill(&mut self) -> io::Result<()> {
        if self.mem.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(self.mem_bytes + self.mem.len());
        for record in &self.mem {
            buf.extend_from_slice(record);
            buf.push(b'\n');
        }
        self.spool.append(&buf, self.mem.len() as u64)?;
        if self.mem_inflight {
            self.inflight_moved = true;
        }
        self.mem.clear();
        self.mem_bytes = 0;
        Ok(())
    }

    fn spool_ok(&mut self, name: &str) {
        if self.spool_failing {
            self.spool_failing = false;
            info!(sink = name, "audit spool is writable again");
        }
    }

    fn spool_failed(&mut self, name: &str, e: &io::Error) {
        if !self.spool_failing {
            self.spool_failing = true;
            error!(sink = name, path = %self.spool.path.display(), error = %e, "cannot write the audit spool; records that do not fit in memory are dropped");
        }
    }
}

impl Queue {
    pub(super) fn open(name: &str, dir: &Path, limits: Limits) -> Result<Queue, String> {
        let spool = Spool::open(dir, name)?;
        Ok(Queue {
            name: name.to_string(),
            limits,
            state: Mutex::new(State {
                mem: VecDeque::new(),
                mem_bytes: 0,
                mem_inflight: false,
                inflight_moved: false,
                spool,
                down: false,
                closing: false,
                closed: false,
                spool_failing: false,
            }),
            drained: Condvar::new(),
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn spool_path(&self) -> PathBuf {
        self.lock().spool.path.clone()
    }

    pub(super) fn depth(&self) -> u64 {
        self.lock().depth()
    }

    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(super) fn count_dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Queues one record: memory when it fits and nothing is waiting on disk,
    /// else the spool. Never waits on the network.
    pub(super) fn push(&self, line: &Bytes) {
        if memchr::memchr(b'\n', line).is_some() {
            self.count_dropped(1);
            error!(sink = %self.name, "audit record contains a raw newline; not queued for this sink");
            return;
        }
        let mut st = self.lock();
        let fits = |st: &State| {
            st.mem.len() < self.limits.records
                && st.mem_bytes + line.len() <= self.limits.bytes.max(line.len())
        };
        if !st.down && !st.closed && st.spool.pending == 0 && fits(&st) {
            st.mem_bytes += line.len();
            st.mem.push_back(line.clone());
            drop(st);
            self.wake.notify_one();
            return;
        }
        let written = st.spill().and_then(|()| {
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line);
            buf.push(b'\n');
            st.spool.append(&buf, 1)
        });
        match written {
            Ok(()) => st.spool_ok(&self.name),
            Err(e) => {
                st.spool_failed(&self.name, &e);
                // Memory records are all newer than the spool's, so keeping the
                // newest record in memory keeps the order.
                if !st.closed && fits(&st) {
                    st.mem_bytes += line.len();
                    st.mem.push_back(line.clone());
                } else {
                    self.count_dropped(1);
                }
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The next batch: the spool first, then memory. `None` when there is
    /// nothing to send or the sink is closing.
    pub(super) fn take(&self, max_records: usize, max_bytes: usize) -> Option<Batch> {
        let mut st = self.lock();
        if st.closing || st.closed {
            return None;
        }
        if st.spool.pending > 0 {
            return Some(Batch::Spool(SpoolRange {
                file: st.spool.file.clone(),
                from: st.spool.read_off,
                to: st.spool.len,
            }));
        }
        let mut bytes = 0usize;
        let mut batch = Vec::new();
        for record in &st.mem {
            if batch.len() >= max_records.max(1)
                || (!batch.is_empty() && bytes + record.len() > max_bytes)
            {
                break;
            }
            bytes += record.len();
            batch.push(record.clone());
        }
        if batch.is_empty() {
            return None;
        }
        st.mem_inflight = true;
        st.inflight_moved = false;
        Some(Batch::Memory(batch))
    }

    /// Acknowledges the first `acked` records of `batch`; when `failed`, marks the
    /// receiver down and moves memory to the spool.
    pub(super) fn finish(&self, source: Source, batch: &[Bytes], acked: usize, failed: bool) {
        let acked = acked.min(batch.len());
        let bytes: u64 = batch[..acked].iter().map(|r| r.len() as u64 + 1).sum();
        let mut st = self.lock();
        if st.closed {
            // Memory went to the spool at close; this acknowledgement is lost
            // (those records are delivered again by the next run).
            return;
        }
        match source {
            Source::Memory if !st.inflight_moved => {
                for _ in 0..acked {
                    if let Some(record) = st.mem.pop_front() {
                        st.mem_bytes = st.mem_bytes.saturating_sub(record.len());
                    }
                }
            }
            _ if acked > 0 => st.spool.ack(bytes, acked as u64),
            _ => {}
        }
        if source == Source::Memory {
            st.mem_inflight = false;
            st.inflight_moved = false;
        }
        st.down = failed;
        if failed {
            match st.spill() {
                Ok(()) => st.spool_ok(&self.name),
                Err(e) => st.spool_failed(&self.name, &e),
            }
        }
        if st.depth() == 0 {
            self.drained.notify_all();
        }
    }

    /// Waits until nothing is queued, or until `deadline` (`None`: no limit).
    pub(super) fn wait_drained(&self, deadline: Option<Instant>) {
        let mut st = self.lock();
        while st.depth() > 0 && !st.closing && !st.closed {
            st = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    self.drained
                        .wait_timeout(st, left)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0)
                }
                None => self
                    .drained
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Stops handing out batches.
    pub(super) fn begin_close(&self) {
        self.lock().closing = true;
        self.wake.notify_one();
    }

    /// Unlocks the spool file (the sink is being dropped, after `finish_close`).
    pub(super) fn release(&self) {
        let st = self.lock();
        if let Err(e) = st.spool.file.unlock() {
            warn!(sink = %self.name, error = %e, "cannot unlock the audit spool");
        }
    }

    /// Writes memory to the spool and syncs it; from now on records go straight
    /// to the spool. Returns the records left for the next run.
    pub(super) fn finish_close(&self) -> u64 {
        let mut st = self.lock();
        if st.closed {
            return st.spool.pending;
        }
        st.closing = true;
        if let Err(e) = st.spill() {
            let lost = st.mem.len() as u64;
            error!(sink = %self.name, path = %st.spool.path.display(), error = %e, records = lost, "cannot write the audit spool at close; records are lost for this sink");
            self.count_dropped(lost);
            st.mem.clear();
            st.mem_bytes = 0;
        }
        if st.spool.pending > 0 {
            if let Err(e) = st.spool.file.sync_data() {
                warn!(sink = %self.name, error = %e, "cannot sync the audit spool");
            }
        }
        st.closed = true;
        self.drained.notify_all();
        st.spool.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> Bytes {
        Bytes::from(format!("{{\"seq\":{n}}}"))
    }

    fn seqs(batch: &[Bytes]) -> Vec<String> {
        batch
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    fn take_all(q: &Queue) -> (Source, Vec<Bytes>) {
        match q.take(100, 1 << 20).unwrap() {
            Batch::Memory(v) => (Source::Memory, v),
            Batch::Spool(r) => (Source::Spool, r.read(100, 1 << 20).unwrap()),
        }
    }

    const LIMITS: Limits = Limits {
        records: 3,
        bytes: 1 << 20,
    };

    #[test]
    fn memory_overflow_spills_in_order_and_drains() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open("t", dir.path(), LIMITS).unwrap();
        for n in 1..=5 {
            q.push(&rec(n));
        }
        assert_eq!(q.depth(), 5);
        // Memory filled with 1..=3, then 4 moved everything to the spool.
        let (src, batch) = take_all(&q);
        assert_eq!(src, Source::Spool);
        assert_eq!(
            seqs(&batch),
            (1..=5)
                .map(|n| format!("{{\"seq\":{n}}}"))
                .collect::<Vec<_>>()
        );
        q.finish(src, &batch, 2, true);
        assert_eq!(q.depth(), 3);
        q.push(&rec(6));
        let (src, batch) = take_all(&q);
        assert_eq!(src, Source::Spool);
        assert_eq!(batch.len(), 4);
        assert_eq!(&batch[0][..], b"{\"seq\":3}");
        q.finish(src, &batch, batch.len(), false);
        assert_eq!(q.depth(), 0);
        assert_eq!(std::fs::metadata(q.spool_path()).unwrap().len(), 0);
        // Drained: memory again.
        q.push(&rec(7));
        let (src, batch) = take_all(&q);
        assert_eq!(src, Source::Memory);
        assert_eq!(seqs(&batch), vec!["{\"seq\":7}"]);
    }

    #[test]
    fn inflight_memory_batch_moved_to_spool_is_acknowledged_there() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open("t", dir.path(), LIMITS).unwrap();
        q.push(&rec(1));
        q.push(&rec(2));
        let (src, batch) = take_all(&q);
        assert_eq!(src, Source::Memory);
        // Memory fills while 1, 2 are out: 3 fits, 4 spills 1..=3 then itself.
        q.push(&rec(3));
        q.push(&rec(4));
        q.finish(src, &batch, 2, false);
        assert_eq!(q.depth(), 2);
        let (src, batch) = take_all(&q);
        assert_eq!(src, Source::Spool);
        assert_eq!(seqs(&batch), vec!["{\"seq\":3}", "{\"seq\":4}"]);
    }

    #[test]
    fn restart_resumes_at_saved_offset_and_cuts_partial_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open("t", dir.path(), LIMITS).unwrap();
            for n in 1..=5 {
                q.push(&rec(n));
            }
            let (src, batch) = take_all(&q);
            q.finish(src, &batch, 2, true);
            assert_eq!(q.finish_close(), 3);
        }
        // A crash mid-append leaves half a record.
        let path = dir.path().join("t.spool");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":").unwrap();
        let q = Queue::open("t", dir.path(), LIMITS).unwrap();
        assert_eq!(q.depth(), 3);
        let (src, batch) = take_all(&q);
        assert_eq!(src, Source::Spool);
        assert_eq!(
            seqs(&batch),
            vec!["{\"seq\":3}", "{\"seq\":4}", "{\"seq\":5}"]
        );
        // A second user of the same spool is refused.
        assert!(Queue::open("t", dir.path(), LIMITS).is_err());
    }

    #[test]
    fn close_spills_memory() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open("t", dir.path(), LIMITS).unwrap();
        q.push(&rec(1));
        q.push(&rec(2));
        assert_eq!(q.finish_close(), 2);
        assert!(q.take(10, 100).is_none());
        // Pushes after close go to the spool.
        q.push(&rec(3));
        assert_eq!(q.depth(), 3);
        drop(q);
        let text = std::fs::read_to_string(dir.path().join("t.spool")).unwrap();
        assert_eq!(text, "{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3}\n");
    }
}
