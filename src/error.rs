//! The single mapping from a refusal to what the client sees: status, JSON body and
//! `X-Tollgate-Reason`.
//!
//! Every refusal the proxy sends is built here, so the wire format of DESIGN.md
//! ("Decisions on the wire") has exactly one implementation.

use crate::audit::Decision;
use crate::body::{full_body, ProxyBody};
use http::{header, HeaderValue, Response, StatusCode};

/// Header carrying the machine-readable reason of every refusal.
pub const REASON_HEADER: &str = "x-tollgate-reason";

/// Why a request was refused. The string forms are part of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No or bad proxy credentials.
    ProxyAuthRequired,
    /// No rule matched.
    NoRule,
    /// A `deny` rule matched.
    DeniedByRule,
    /// A placeholder appeared where its secret may not go.
    SecretNotAllowed,
    /// Ambiguous or malformed request.
    BadRequest,
    /// Body over the limit of an `inject_body` rule.
    BodyTooLarge,
    /// Rate limited.
    RateLimited,
    /// Approval refused or timed out.
    ApprovalDenied,
    /// Destination is private, loopback or link-local.
    PrivateDestination,
    /// Host / `:authority` differs from the CONNECT target.
    HostMismatch,
    /// Upstream unreachable or its TLS did not verify.
    UpstreamError,
    /// Upstream did not answer in time.
    UpstreamTimeout,
    /// Secret backend unavailable.
    SecretUnavailable,
    /// The audit trail cannot be written, so nothing may pass unrecorded.
    AuditUnavailable,
    /// The body of a request held for approval could not be spooled.
    SpoolUnavailable,
    /// A budget of the task is used up (`on_exceed: deny`).
    BudgetExceeded,
    /// Cluster mode and Redis unreachable: nothing passes unchecked.
    ClusterUnavailable,
}

impl Reason {
    /// The reason string used in bodies, headers and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ProxyAuthRequired => "proxy_auth_required",
            Reason::NoRule => "no_rule",
            Reason::DeniedByRule => "denied_by_rule",
            Reason::SecretNotAllowed => "secret_not_allowed",
            Reason::BadRequest => "bad_request",
            Reason::BodyTooLarge => "body_too_large",
            Reason::RateLimited => "rate_limited",
            Reason::ApprovalDenied => "approval_denied",
            Reason::PrivateDestination => "private_destination",
            Reason::HostMismatch => "host_mismatch",
            Reason::UpstreamError => "upstream_error",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::SecretUnavailable => "secret_unavailable",
            Reason::AuditUnavailable => "audit_unavailable",
            Reason::SpoolUnavailable => "spool_unavailable",
            Reason::BudgetExceeded => "budget_exceeded",
            Reason::ClusterUnavailable => "cluster_unavailable",
        }
    }

    /// The audit `decision` of a request refused for this reason.
    pub fn decision(self) -> Decision {
        match self {
            Reason::UpstreamError
            | Reason::UpstreamTimeout
            | Reason::SecretUnavailable
            | Reason::AuditUnavailable
            | Reason::SpoolUnavailable
            | Reason::ClusterUnavailable => Decision::Error,
            Reason::RateLimited => Decision::RateLimited,
            Reason::ApprovalDenied => Decision::ApprovalDenied,
            Reason::ProxyAuthRequired
            | Reason::NoRule
            | Reason::DeniedByRule
            | Reason::SecretNotAllowed
            | Reason::BadRequest
            | Reason::BodyTooLarge
            | Reason::PrivateDestination
            | Reason::HostMismatch
            | Reason::BudgetExceeded => Decision::Deny,
        }
    }

    /// The HTTP status for this reason.
    pub fn status(self) -> StatusCode {
        match self {
            Reason::ProxyAuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Reason::NoRule
            | Reason::DeniedByRule
            | Reason::SecretNotAllowed
            | Reason::ApprovalDenied
            | Reason::PrivateDestination => StatusCode::FORBIDDEN,
            Reason::BadRequest => StatusCode::BAD_REQUEST,
            Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::RateLimited | Reason::BudgetExceeded => StatusCode::TOO_MANY_REQUESTS,
            Reason::HostMismatch => StatusCode::MISDIRECTED_REQUEST,
            Reason::UpstreamError => StatusCode::BAD_GATEWAY,
            Reason::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reason::SecretUnavailable
            | Reason::AuditUnavailable
            | Reason::SpoolUnavailable
            | Reason::ClusterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<crate::audit::AuditUnavailable> for Refusal {
    fn from(err: crate::audit::AuditUnavailable) -> Self {
        Refusal::new(Reason::AuditUnavailable, err.to_string())
    }
}

/// A decision to refuse a request, with what the client is told.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Machine-readable reason.
    pub reason: Reason,
    /// One human sentence. Never contains a secret value.
    pub message: String,
    /// Task id, when the task is known.
    pub task: Option<String>,
    /// Name of the rule that decided, if any.
    pub rule: Option<String>,
    /// Seconds for `Retry-After` (rate limiting).
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal with a reason and message; task and rule are filled in by the caller.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            task: None,
            rule: None,
            retry_after: None,
        }
    }

    /// Sets the task id.
    pub fn with_task(mut self, task: Option<&str>) -> Self {
        self.task = task.map(str::to_owned);
        self
    }

    /// Sets the rule name.
    pub fn with_rule(mut self, rule: Option<&str>) -> Self {
        self.rule = rule.map(str::to_owned);
        self
    }

    /// The JSON body of DESIGN.md: `{"error","message","task","rule"}`.
    pub fn body_json(&self) -> String {
        serde_json::json!({
            "error": self.reason.as_str(),
            "message": self.message,
            "task": self.task,
            "rule": self.rule,
        })
        .to_string()
    }

    /// Builds the response sent to the client.
    pub fn into_response(self) -> Response<ProxyBody> {
        let body = self.body_json();
        let mut response = Response::new(full_body(body));
        *response.status_mut() = self.reason.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            REASON_HEADER,
            HeaderValue::from_static(self.reason.as_str()),
        );
        if self.reason == Reason::ProxyAuthRequired {
            headers.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tollgate\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_body_has_the_contract_fields() {
        let r = Refusal::new(Reason::NoRule, "no rule allows GET a.com/x").with_task(Some("t1"));
        let v: serde_json::Value = serde_json::from_str(&r.body_json()).unwrap_or_default();
        assert_eq!(v["error"], "no_rule");
        assert_eq!(v["task"], "t1");
        assert!(v["rule"].is_null());
        let resp = r.into_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(resp.headers()[REASON_HEADER], "no_rule");
    }

    #[test]
    fn auth_refusal_asks_for_basic() {
        let resp = Refusal::new(Reason::ProxyAuthRequired, "x").into_response();
        assert_eq!(resp.status().as_u16(), 407);
        assert_eq!(
            resp.headers()[header::PROXY_AUTHENTICATE],
            "Basic realm=\"tollgate\""
        );
    }
}
