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
    /// Cluster mode: the replica holding it stopped renewing its lease (it
    /// died or lost Redis); recorded by the replica that saw the lease run out.
    LeaseExpired,
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
            ApprovalOutcome::LeaseExpired => "lease_expired",
        }
    }
}

impl std::fmt::Display for ApprovalOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record's `decision`: the contract's list, complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Let through by an `allow` rule (or a tunnel/passthrough entry).
    Allow,
    /// Refused by the policy, the placeholder checks or the request's form.
    Deny,
    /// Refused by a rate limit or a concurrency cap.
    RateLimited,
    /// Let through by an operator or a `--for` grant.
    Approved,
    /// Held for approval and not approved.
    ApprovalDenied,
    /// tollgate or the upstream failed (secret backend, upstream, audit, spool).
    Error,
}

impl Decision {
    /// Every decision, in the contract's order.
    pub const ALL: [Decision; 6] = [
        Decision::Allow,
        Decision::Deny,
        Decision::RateLimited,
        Decision::Approved,
        Decision::ApprovalDenied,
        Decision::Error,
    ];

    /// The name the audit record and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::RateLimited => "rate_limited",
            Decision::Approved => "approved",
            Decision::ApprovalDenied => "approval_denied",
            Decision::Error => "error",
        }
    }

    /// The decision named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Whether the request was let through.
    pub fn let_through(self) -> bool {
        matches!(self, Decision::Allow | Decision::Approved)
    }
}

impl std::fmt::Display for Decision {
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
    pub decision: Decision,
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
    /// What a `jsonrpc` rule read of the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc: Option<RpcInfo>,
    /// What a `graphql` rule read of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graphql: Option<GraphQlInfo>,
    /// The LLM usage charged to an `llm` budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmInfo>,
    /// The budget (`requests`, `bytes_up`, `llm_tokens`, ...) this exchange
    /// used up, or that an operator's grant lifted for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<&'static str>,
}

/// The `rpc` block: the JSON-RPC method and, for `tools/call`, the tool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RpcInfo {
    /// The method of the first message that has one.
    pub method: Option<String>,
    /// Its tool, for `tools/call`.
    pub tool: Option<String>,
}

/// The `graphql` block: the operation checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphQlInfo {
    /// `query`, `mutation` or `subscription`.
    pub operation: &'static str,
    /// Its name, if it has one.
    pub name: Option<String>,
}

/// The `llm` block: the usage read from an LLM answer, or `usage: "missing"`
/// when the answer did not report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LlmInfo {
    /// The model the answer names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Input (prompt) tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Output (completion) tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// `missing` when the answer carried no usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<&'static str>,
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
            decision: Decision::Deny,
            rule: None,
            reason: None,
            secrets: Vec::new(),
            status: 0,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
            approval: None,
            rpc: None,
            graphql: None,
            llm: None,
            budget: None,
        }
    }
}
