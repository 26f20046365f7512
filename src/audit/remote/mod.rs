//! Sinks other than the file: stdout, syslog and HTTP. Each has a bounded memory
//! queue backed by a disk spool, and delivers on its own task so that traffic never
//! waits on a receiver.

use super::record::SealedRecord;
use crate::config::AuditSink;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A running non-file sink.
pub struct RemoteSink {}

impl RemoteSink {
    /// Starts delivery for `sink` (stdout, syslog or http) on `rt`; its spool lives
    /// in `spool_dir`; `https` collectors are verified with `tls`. Records spooled by an earlier run are delivered first.
    pub fn start(
        _sink: &AuditSink,
        _spool_dir: &Path,
        _rt: &tokio::runtime::Handle,
        _tls: Arc<rustls::ClientConfig>,
    ) -> Result<RemoteSink, String> {
        Err("not built yet".into())
    }

    /// A stable name for logs, metrics and the spool file (`syslog-1a2b3c4d`).
    pub fn name(&self) -> &str {
        ""
    }

    /// Queues one record. Never waits on the network.
    pub fn push(&self, _record: &SealedRecord) {}

    /// Records queued in memory and in the spool, not yet acknowledged.
    pub fn depth(&self) -> u64 {
        0
    }

    /// Waits up to `grace` for the queue to drain, then writes what is left to the
    /// spool and stops delivery. Blocking: call it off the async runtime.
    pub fn close(&self, _grace: Duration) {}
}
