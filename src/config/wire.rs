//! `tollgate.yaml` as written: serde structs that reject unknown keys. Only
//! [`super`] turns them into the validated [`super::Config`].

use super::audit::{FileSink, HttpSink, OnFailure, SignMode, StdoutSink, SyslogSink};
use crate::duration::serde_str;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigWire {
    #[serde(default)]
    pub(super) listen: Option<OneOrMany>,
    #[serde(default)]
    pub(super) admin: Option<AdminWire>,
    #[serde(default)]
    pub(super) state_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) ca: Option<CaWire>,
    #[serde(default)]
    pub(super) policies: Option<PathBuf>,
    #[serde(default)]
    pub(super) upstream: Option<UpstreamWire>,
    #[serde(default)]
    pub(super) secrets: Option<SecretsWire>,
    #[serde(default)]
    pub(super) audit: Option<AuditWire>,
    #[serde(default)]
    pub(super) approvals: Option<ApprovalsWire>,
    #[serde(default)]
    pub(super) tasks: Vec<TaskWire>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminWire {
    #[serde(default)]
    pub(super) listen: Option<String>,
    #[serde(default)]
    pub(super) token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaWire {
    #[serde(default)]
    pub(super) cert: Option<PathBuf>,
    #[serde(default)]
    pub(super) key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamWire {
    #[serde(default)]
    pub(super) extra_roots: Vec<PathBuf>,
    #[serde(default)]
    pub(super) resolve: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) allow_private: Vec<String>,
    #[serde(default, with = "serde_str::option")]
    pub(super) connect_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretsWire {
    #[serde(default)]
    pub(super) vault: Option<VaultWire>,
    #[serde(default)]
    pub(super) env: Option<EnvWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VaultWire {
    pub(super) address: String,
    pub(super) auth: VaultAuthWire,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VaultAuthWire {
    pub(super) method: String,
    #[serde(default)]
    pub(super) token_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) role_id: Option<String>,
    #[serde(default)]
    pub(super) secret_id_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvWire {
    #[serde(default)]
    pub(super) prefix: Option<String>,
}

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
    pub(super) fn into_sink(self) -> Result<super::audit::AuditSink, String> {
        let mut sinks = Vec::with_capacity(1);
        sinks.extend(self.file.map(super::audit::AuditSink::File));
        sinks.extend(self.stdout.map(super::audit::AuditSink::Stdout));
        sinks.extend(self.syslog.map(super::audit::AuditSink::Syslog));
        sinks.extend(self.http.map(super::audit::AuditSink::Http));
        match (sinks.pop(), sinks.is_empty()) {
            (Some(sink), true) => Ok(sink),
            _ => Err("each audit sink names exactly one of file, stdout, syslog, http".into()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApprovalsWire {
    #[serde(default)]
    pub(super) notify: Vec<String>,
    #[serde(default)]
    pub(super) max_pending_per_task: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskWire {
    pub(super) id: String,
    pub(super) policy: String,
    #[serde(default)]
    pub(super) token_env: Option<String>,
    #[serde(default)]
    pub(super) source: Option<IpAddr>,
}
