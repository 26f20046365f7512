//! What the proxy reports about one request decision. The writer adds `v`, `type`,
//! `seq`, `key_id`, `prev` and `sig`.

use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// The approval block of `approved` / `approval_denied` records.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalInfo {
    /// Hold id (for a request under a `--for` grant that did not wait: the
    /// hold whose approval made the grant; null when it ended before it was held).
    pub id: Option<String>,
    /// How the hold ended.
    pub outcome: ApprovalOutcome,
    /// Who answered (null on timeout).
    pub by: Option<String>,
    /// Why, if given.
    pub reason: Option<String>,
    /// The `--for` grant that covered the request, if any.
    pub grant: Option<String>,
}

/// How a hold ended: the approval block's `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalOutcome {
    /// An operator approved it, or a `--for` grant covered it.
    Approved,
    /// An operator denied it.
    Denied,
    /// No answer within the rule's `approval_timeout`.
    Timeout,
    /// Its task ended or expired while it waited.
    TaskEnded,
    /// Its client went away while it waited.
    Withdrawn,
    /// tollgate shut down while it waited.
    Shutdown,
    /// Its policy file changed while it waited.
    PolicyChanged,
}

impl ApprovalOutcome {
    /// The name the audit record and the admin API use.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalOutcome::Approved => "approved",
            ApprovalOutcome::Denied => "denied",
            ApprovalOutcome::Timeout => "timeout",
            ApprovalOutcome::TaskEnded => "task_ended",
            ApprovalOutcome::Withdrawn => "withdrawn",
            ApprovalOutcome::Shutdown => "shutdown",
            ApprovalOutcome::PolicyChanged => "policy_changed",
        }
    }
}

impl std::fmt::Display for ApprovalOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request decision, in the field names of the contract.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// When the request arrived.
    #[serde(skip)]
    pub at: SystemTime,
    /// Task id (null when authentication failed).
    pub task: Option<String>,
    /// Policy name (null when authentication failed).
    pub policy: Option<String>,
    /// Client `ip:port`.
    pub client: String,
    /// Method, `CONNECT` for tunnels.
    pub method: String,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// Destination host, normalized.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Path in placeholder form (as the sandbox sent it).
    pub path: String,
    /// Query in placeholder form, or null.
    pub query: Option<String>,
    /// `allow`, `deny`, `rate_limited`, `approved`, `approval_denied` or `error`.
    pub decision: &'static str,
    /// Rule that decided, if any.
    pub rule: Option<String>,
    /// Refusal reason, null when allowed.
    pub reason: Option<&'static str>,
    /// Names of the secrets injected.
    pub secrets: Vec<String>,
    /// Status sent to the client.
    pub status: u16,
    /// Request body bytes sent upstream (client to upstream for tunnels).
    pub bytes_up: u64,
    /// Response body bytes sent to the client.
    pub bytes_down: u64,
    /// Milliseconds from arrival to the end of the exchange.
    pub duration_ms: u64,
    /// Set for approval decisions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalInfo>,
}

impl RequestRecord {
    /// A record with the request's identity filled in and everything else empty.
    pub fn new(client: std::net::SocketAddr, method: &str, scheme: &'static str) -> Self {
        Self {
            at: SystemTime::now(),
            client: client.to_string(),
            method: method.to_string(),
            scheme,
            ..Self::default()
        }
    }
}

impl Default for RequestRecord {
    /// An empty record (no allocation), for moving a filled one out.
    fn default() -> Self {
        Self {
            at: SystemTime::UNIX_EPOCH,
            task: None,
            policy: None,
            client: String::new(),
            method: String::new(),
            scheme: "https",
            host: String::new(),
            port: 0,
            path: String::new(),
            query: None,
            decision: "deny",
            rule: None,
            reason: None,
            secrets: Vec::new(),
            status: 0,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
            approval: None,
        }
    }
}
