//! `tollgate.yaml` as written: serde structs that reject unknown keys. Only
//! [`super`] turns them into the validated [`super::Config`]. The `audit`
//! block's wire form is in [`super::audit`], next to the sinks it reads.

use super::audit::AuditWire;
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
    #[serde(default)]
    pub(super) task_key: Option<PathBuf>,
    #[serde(default)]
    pub(super) cluster: Option<super::cluster::ClusterWire>,
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
