//! What the admin API (`/v1/approvals`) and the webhook say about held
//! requests, and what operators send back. The proxy serializes these types and
//! `tollgate approvals` parses them, so both sides read one definition.

use crate::audit::event::ApprovalOutcome;
use serde::{Deserialize, Serialize};

/// What operators are shown of a held request wherever they see it (the
/// admin API's list and detail, the webhook notice): whose request it is, the
/// rule that holds it and where it goes. Path and query are in placeholder
/// form, as the sandbox sent them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSummary {
    /// Task id.
    pub task: String,
    /// The task's policy.
    pub policy: String,
    /// The `action: approve` rule that matched.
    pub rule: String,
    /// Method.
    pub method: String,
    /// `https` or `http`, as the proxy saw the request.
    pub scheme: String,
    /// Destination host.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Path (without the query) in placeholder form.
    pub path: String,
    /// Query without `?`, in placeholder form; `None` when the request had none.
    pub query: Option<String>,
    /// Body size in bytes.
    pub body_bytes: u64,
    /// The body's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The used-up budget (`llm_tokens`, ...) that holds it, under
    /// `budgets.on_exceed: approve`; `None` when its rule holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
}

/// A pending hold as operators see it (`GET /v1/approvals`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    /// Hold id.
    pub id: String,
    /// The held request.
    #[serde(flatten)]
    pub summary: RequestSummary,
    /// When it was held (RFC 3339).
    pub since: String,
    /// Milliseconds waited so far.
    pub waited_ms: u64,
    /// When it times out (RFC 3339).
    pub expires_at: String,
    /// Cluster mode: the replica holding the request (absent in one process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

/// One pending hold in full (`GET /v1/approvals/{id}`): what the operator
/// approves, headers and the start of the body included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub view: HoldView,
    /// Request headers, placeholder form, without the proxy credentials.
    pub headers: Vec<(String, String)>,
    /// Hex SHA-256 of the body (null when empty).
    pub body_sha256: Option<String>,
    /// The first [`super::spool::PREVIEW_BYTES`] bytes of the body as UTF-8 (lossy).
    pub body_preview: Option<String>,
    /// Whether the body is longer than the preview.
    pub body_preview_truncated: bool,
}

/// An operator's answer (`POST /v1/approvals/{id}/approve|deny`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Approve: also allow the same task's requests under the same rule for this long.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub grant_for: Option<String>,
}

/// A `--for` grant created by an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    /// Grant id.
    pub id: String,
    /// When it lapses (RFC 3339).
    pub until: String,
}

/// The admin API's reply to an answer that was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    /// The hold answered.
    pub id: String,
    /// `approved` or `denied`.
    pub decision: ApprovalOutcome,
    /// Who answered.
    pub by: Option<String>,
    /// Approvals only: the `--for` grant made, or null when none was asked
    /// for. Denials leave the field out (the outer `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Option<GrantView>>,
}

impl Decided {
    /// The reply to an approval of `id`.
    pub fn approved(id: &str, by: Option<String>, grant: Option<GrantView>) -> Self {
        Decided {
            id: id.to_string(),
            decision: ApprovalOutcome::Approved,
            by,
            grant: Some(grant),
        }
    }

    /// The reply to a denial of `id`.
    pub fn denied(id: &str, by: Option<String>) -> Self {
        Decided {
            id: id.to_string(),
            decision: ApprovalOutcome::Denied,
            by,
            grant: None,
        }
    }

    /// The grant the approval made, if any.
    pub fn grant(&self) -> Option<&GrantView> {
        self.grant.as_ref().and_then(Option::as_ref)
    }
}

/// Why an answer was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    /// No such hold is pending.
    #[error("no pending approval {0} (already answered, timed out or withdrawn)")]
    NotPending(String),
    /// The answer itself is malformed.
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary() -> RequestSummary {
        RequestSummary {
            task: "t-1".into(),
            policy: "p".into(),
            rule: "merge".into(),
            method: "PUT".into(),
            scheme: "https".into(),
            host: "api.test".into(),
            port: 443,
            path: "/merge".into(),
            query: None,
            body_bytes: 2,
            content_type: Some("application/json".into()),
            budget: None,
        }
    }

    #[test]
    fn the_list_item_keeps_its_flat_field_names_and_reads_back() {
        let view = HoldView {
            id: "a-1".into(),
            summary: summary(),
            since: "2026-01-01T00:00:00.000Z".into(),
            waited_ms: 5,
            expires_at: "2026-01-01T00:05:00.000Z".into(),
            replica: None,
        };
        let detail = HoldDetail {
            view: view.clone(),
            headers: vec![("accept".into(), "*/*".into())],
            body_sha256: None,
            body_preview: Some("{}".into()),
            body_preview_truncated: false,
        };
        let value = json!(detail);
        assert_eq!(
            value,
            json!({
                "id": "a-1", "task": "t-1", "policy": "p", "rule": "merge",
                "method": "PUT", "scheme": "https", "host": "api.test", "port": 443,
                "path": "/merge", "query": null, "since": "2026-01-01T00:00:00.000Z",
                "waited_ms": 5, "expires_at": "2026-01-01T00:05:00.000Z",
                "body_bytes": 2, "content_type": "application/json",
                "headers": [["accept", "*/*"]], "body_sha256": null,
                "body_preview": "{}", "body_preview_truncated": false,
            })
        );
        assert_eq!(serde_json::from_value::<HoldDetail>(value).unwrap(), detail);
        let listed: HoldView = serde_json::from_value(json!(view)).unwrap();
        assert_eq!(listed, view);
    }

    #[test]
    fn replies_say_grant_null_for_a_plain_approval_and_nothing_for_a_denial() {
        let grant = GrantView {
            id: "g-1".into(),
            until: "later".into(),
        };
        assert_eq!(
            json!(Decided::approved("a-1", Some("ops".into()), None)),
            json!({"id": "a-1", "decision": "approved", "by": "ops", "grant": null})
        );
        let granted = Decided::approved("a-1", None, Some(grant.clone()));
        assert_eq!(
            json!(granted),
            json!({"id": "a-1", "decision": "approved", "by": null,
                   "grant": {"id": "g-1", "until": "later"}})
        );
        assert_eq!(
            serde_json::from_value::<Decided>(json!(granted))
                .unwrap()
                .grant(),
            Some(&grant)
        );
        assert_eq!(
            json!(Decided::denied("a-1", None)),
            json!({"id": "a-1", "decision": "denied", "by": null})
        );
    }

    #[test]
    fn an_answer_sends_only_what_was_given() {
        let answer = Answer {
            by: Some("ops".into()),
            grant_for: Some("10m".into()),
            ..Answer::default()
        };
        assert_eq!(json!(answer), json!({"by": "ops", "for": "10m"}));
        assert_eq!(json!(Answer::default()), json!({}));
    }
}
