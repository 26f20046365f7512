//! Audit settings: the `audit` block as written and validated, used by the audit
//! subsystem. The sink structs are their own wire form.

use crate::duration::serde_str;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to do when the file sink (the record of truth) cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Refuse new requests with 503 until records can be written again.
    #[default]
    Closed,
    /// Keep serving; records wait in memory (bounded) until the file is writable.
    Open,
}

/// How a sink renders each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    /// The native signed record, byte for byte as in the file.
    #[default]
    Native,
    /// An OCSF HTTP Activity event (class 4002) with the native record under
    /// `unmapped.tollgate`.
    Ocsf,
}

/// The body shape of an HTTP sink's POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HttpEnvelope {
    /// A JSON array of records.
    #[default]
    None,
    /// Splunk HEC: one `{"time":..,"event":<record>}` object per line.
    SplunkHec,
}

/// Syslog transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    /// RFC 6587 octet counting over TCP.
    #[default]
    Tcp,
    /// One message per datagram.
    Udp,
}

/// Which audit records are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignMode {
    /// Every record signed.
    #[default]
    Record,
    /// Only checkpoints signed.
    Checkpoint,
}

/// One audit sink as configured (validated; implemented by the audit subsystem).
#[derive(Debug, Clone)]
pub enum AuditSink {
    /// Append to a JSONL file, rotating at `rotate_bytes`.
    File(FileSink),
    /// Write to stdout.
    Stdout(StdoutSink),
    /// RFC 5424 syslog.
    Syslog(SyslogSink),
    /// HTTP POST (Splunk HEC, Elastic, ...).
    Http(HttpSink),
}

/// Stdout sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSink {
    /// Record rendering.
    #[serde(default)]
    pub format: SinkFormat,
}

/// File sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    /// JSONL path (relative to the config file until resolved).
    pub path: PathBuf,
    /// Rotate after this many bytes (default 100 MiB).
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
}

/// Syslog sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSink {
    /// `ip:port`.
    pub address: String,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub transport: SyslogTransport,
    /// Record rendering.
    #[serde(default)]
    pub format: SinkFormat,
}

/// HTTP sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    /// Collector URL.
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body shape.
    #[serde(default)]
    pub envelope: HttpEnvelope,
    /// Record rendering.
    #[serde(default)]
    pub format: SinkFormat,
}

/// Audit settings (validated now, used by the audit subsystem).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// ed25519 signing key path.
    pub key: PathBuf,
    /// Signing mode.
    pub sign: SignMode,
    /// Longest gap between checkpoints in checkpoint mode.
    pub checkpoint_every: Duration,
    /// Configured sinks, file paths resolved.
    pub sinks: Vec<AuditSink>,
    /// Behaviour when the file sink cannot be written.
    pub on_failure: OnFailure,
    /// The replica's stream name, written into every checkpoint; set from
    /// `cluster.replica_id` in cluster mode, `None` otherwise (not a key of `audit:`).
    pub stream: Option<String>,
}

/// The default rotation size of the file sink.
pub const DEFAULT_ROTATE_BYTES: u64 = 100 * 1024 * 1024;

/// The `audit` block as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditWire {
    #[serde(default)]
    pub(super) key: Option<PathBuf>,
    #[serde(default)]
    pub(super) sign: Option<SignMode>,
    #[serde(default, with = "serde_str::option")]
    pub(super) checkpoint_every: Option<Duration>,
    #[serde(default)]
    pub(super) sinks: Option<Vec<SinkWire>>,
    #[serde(default)]
    pub(super) on_failure: Option<OnFailure>,
}

/// A sink entry as written: a map with exactly one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SinkWire {
    #[serde(default)]
    pub(super) file: Option<FileSink>,
    #[serde(default)]
    pub(super) stdout: Option<StdoutSink>,
    #[serde(default)]
    pub(super) syslog: Option<SyslogSink>,
    #[serde(default)]
    pub(super) http: Option<HttpSink>,
}

impl SinkWire {
    pub(super) fn into_sink(self) -> Result<AuditSink, String> {
        let mut sinks = Vec::with_capacity(1);
        sinks.extend(self.file.map(AuditSink::File));
        sinks.extend(self.stdout.map(AuditSink::Stdout));
        sinks.extend(self.syslog.map(AuditSink::Syslog));
        sinks.extend(self.http.map(AuditSink::Http));
        match (sinks.pop(), sinks.is_empty()) {
            (Some(sink), true) => Ok(sink),
            _ => Err("each audit sink names exactly one of file, stdout, syslog, http".into()),
        }
    }
}

/// Validates the `audit` block; sink file paths resolve with `rel`.
pub(super) fn audit_config(
    wire: AuditWire,
    state_dir: &Path,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> Result<AuditConfig, String> {
    let mut sinks = match wire.sinks {
        Some(sinks) => sinks
            .into_iter()
            .map(SinkWire::into_sink)
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![AuditSink::File(FileSink {
            path: state_dir.join("audit").join("audit.jsonl"),
            rotate_bytes: None,
        })],
    };
    for sink in &mut sinks {
        if let AuditSink::File(f) = sink {
            f.path = rel(&f.path);
        }
    }
    for sink in &sinks {
        match sink {
            AuditSink::File(f) if f.rotate_bytes == Some(0) => {
                return Err("audit file sink: rotate_bytes must be more than zero".into())
            }
            AuditSink::Syslog(s) if s.address.parse::<SocketAddr>().is_err() => {
                return Err(format!(
                    "audit syslog address `{}` is not ip:port",
                    s.address
                ))
            }
            AuditSink::Http(h)
                if !(h.url.starts_with("http://") || h.url.starts_with("https://")) =>
            {
                return Err(format!(
                    "audit http sink url `{}` is not an http(s) URL",
                    h.url
                ))
            }
            _ => {}
        }
    }
    if sinks
        .iter()
        .filter(|s| matches!(s, AuditSink::File(_)))
        .count()
        > 1
    {
        return Err("audit: at most one file sink (it is the record of truth)".into());
    }
    let checkpoint_every = wire.checkpoint_every.unwrap_or(Duration::from_secs(1));
    if checkpoint_every.is_zero() {
        return Err("audit.checkpoint_every must be more than zero".into());
    }
    Ok(AuditConfig {
        key: wire
            .key
            .map(|p| rel(&p))
            .unwrap_or_else(|| state_dir.join("audit.key")),
        sign: wire.sign.unwrap_or_default(),
        checkpoint_every,
        sinks,
        on_failure: wire.on_failure.unwrap_or_default(),
        stream: None,
    })
}
