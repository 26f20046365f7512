//! Policy files as written: serde structs that reject unknown keys.
//!
//! Field-level validation (host and path patterns, methods, durations, names) runs
//! during deserialization through the model types, so serde reports the line.
//! Cross-field checks run in [`super::load`].

use super::model::{HostPattern, PathPattern, PlaceholderName, RuleMethod};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A whole policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyWire {
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub secrets: BTreeMap<PlaceholderName, SecretWire>,
    #[serde(default)]
    pub rules: Vec<RuleWire>,
    #[serde(default)]
    pub tunnel: Vec<TunnelWire>,
    #[serde(default)]
    pub rate: Option<RateWire>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// One secret declaration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretWire {
    #[serde(default)]
    pub vault: Option<VaultSecretWire>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub hosts: Vec<HostPattern>,
    #[serde(default, with = "crate::duration::serde_str::option")]
    pub ttl: Option<Duration>,
}

/// Where a secret lives in Vault: a KV v2 read or a dynamic-secret call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSecretWire {
    #[serde(default)]
    pub mount: Option<String>,
    pub path: String,
    pub field: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub data: Option<serde_yaml_ng::Value>,
}

/// One rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleWire {
    #[serde(default)]
    pub name: Option<String>,
    pub host: HostPattern,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub methods: Option<Vec<RuleMethod>>,
    #[serde(default)]
    pub paths: Option<Vec<PathPattern>>,
    #[serde(default)]
    pub inject: Vec<PlaceholderName>,
    #[serde(default)]
    pub inject_body: bool,
    #[serde(default)]
    pub allow_plaintext: bool,
    #[serde(default)]
    pub rate: Option<RateWire>,
    #[serde(default)]
    pub action: Option<ActionWire>,
    #[serde(default, with = "crate::duration::serde_str::option")]
    pub approval_timeout: Option<Duration>,
}

/// `allow` (default), `deny` or `approve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionWire {
    Allow,
    Deny,
    Approve,
}

/// A CONNECT passthrough entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelWire {
    pub host: HostPattern,
    #[serde(default)]
    pub port: Option<u16>,
}

/// A token-bucket rate: `requests` per `per`, bursting to `burst`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateWire {
    pub requests: u32,
    #[serde(with = "crate::duration::serde_str")]
    pub per: Duration,
    #[serde(default)]
    pub burst: Option<u32>,
}
