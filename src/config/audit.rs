//! Audit settings: validated now, written by the audit subsystem.

use super::wire::{AuditWire, SinkWire};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    Stdout(EmptySink),
    /// RFC 5424 syslog.
    Syslog(SyslogSink),
    /// HTTP POST (Splunk HEC, Elastic, ...).
    Http(HttpSink),
}

/// A sink without settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptySink {}

/// File sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    /// JSONL path (relative to the config file until resolved).
    pub path: PathBuf,
    /// Rotate after this many bytes.
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
}

/// Syslog sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSink {
    /// `ip:port`.
    pub address: String,
    /// `tcp`, `udp` or `tls`.
    #[serde(default)]
    pub transport: Option<String>,
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
}

/// Validates the `audit` block; sink file paths resolve with `rel`.
pub(super) fn audit_config(
    wire: AuditWire,
    state_dir: &Path,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> Result<AuditConfig, String> {
    let mut sinks = wire
        .sinks
        .into_iter()
        .map(SinkWire::into_sink)
        .collect::<Result<Vec<_>, _>>()?;
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
            AuditSink::Syslog(s) => {
                if s.address.parse::<SocketAddr>().is_err() {
                    return Err(format!(
                        "audit syslog address `{}` is not ip:port",
                        s.address
                    ));
                }
                if let Some(t) = &s.transport {
                    if !matches!(t.as_str(), "tcp" | "udp" | "tls") {
                        return Err(format!(
                            "audit syslog transport `{t}` must be tcp, udp or tls"
                        ));
                    }
                }
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
    })
}
