//! `tollgate approvals`: list, show, approve and deny held requests over the
//! admin API.
//!
//! Where the admin API is and which token it takes is
//! [`crate::admin::client::discover`]'s business; a `./tollgate.yaml` is never
//! read on its own. The admin API's answers are parsed into the types it
//! serializes ([`crate::approvals::api`]); [`render`] prints them, every value
//! from the sandbox or a policy escaped for the terminal.

pub mod render;

use crate::admin::client::{discover, AdminClient, AdminError};
use crate::approvals::{Answer, Decided, HoldDetail, HoldView};
use crate::cli::terminal::{sanitize, sanitize_json};
use crate::cli::{ApprovalsArgs, ApprovalsCommand};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// Why `tollgate approvals` failed; each prints as the one line after `tollgate: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--for` is not a duration.
    #[error("--for: {0}")]
    BadFor(String),
    /// The approval id is blank.
    #[error("the approval ID is empty (see `tollgate approvals list`)")]
    EmptyId,
    /// The admin API could not be found, reached or read.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// No async runtime could be started.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// A success answer that is not what the call returns.
    #[error("{url} answered {call} with something other than {what}")]
    Unexpected {
        /// The admin URL.
        url: String,
        /// The call, e.g. `GET /v1/approvals`.
        call: &'static str,
        /// What it should have answered.
        what: &'static str,
    },
    /// The admin API refused the token.
    #[error(
        "the admin API refused the token (give it with --admin-token-file or $TOLLGATE_ADMIN_TOKEN)"
    )]
    TokenRefused,
    /// The hold asked about is not pending (the id is sanitized).
    #[error("no pending approval {0} (already answered, timed out or withdrawn)")]
    NotPending(String),
    /// Any other refusal, with the admin API's message (sanitized) if it gave one.
    #[error("{url} answered {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Refused {
        /// The admin URL.
        url: String,
        /// Its status.
        status: StatusCode,
        /// Its `message`.
        message: Option<String>,
    },
}

/// The body of an admin API refusal.
#[derive(Debug, Deserialize)]
struct Refusal {
    message: Option<String>,
}

/// Runs `tollgate approvals ...` and prints what it did.
///
/// `config` is the `--config` given on the command line, if any; no config is
/// looked for otherwise.
pub fn run(config: Option<&Path>, args: &ApprovalsArgs) -> Result<(), CliError> {
    // What can be checked here is, before anything goes over the network.
    match &args.command {
        ApprovalsCommand::Approve { id, for_, .. } => {
            check_id(id)?;
            if let Some(dur) = for_ {
                crate::duration::parse_duration(dur).map_err(CliError::BadFor)?;
            }
        }
        ApprovalsCommand::Deny { id, .. } | ApprovalsCommand::Show { id, .. } => check_id(id)?,
        ApprovalsCommand::List { .. } => {}
    }
    let client = discover(
        args.admin.as_deref(),
        args.admin_token_file.as_deref(),
        config,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let out = runtime.block_on(execute(&client, &args.command))?;
    println!("{out}");
    Ok(())
}

fn check_id(id: &str) -> Result<(), CliError> {
    if id.trim().is_empty() {
        return Err(CliError::EmptyId);
    }
    Ok(())
}

/// Does the command; returns what to print on stdout.
async fn execute(client: &AdminClient, command: &ApprovalsCommand) -> Result<String, CliError> {
    let unexpected = |call, what| CliError::Unexpected {
        url: client.url().to_string(),
        call,
        what,
    };
    match command {
        ApprovalsCommand::List { json } => {
            let (status, answer) = client.call(Method::GET, "/v1/approvals", None).await?;
            if !status.is_success() {
                return Err(refusal(client.url(), status, answer, None));
            }
            let holds: Vec<HoldView> = serde_json::from_value(answer.clone())
                .map_err(|_| unexpected("GET /v1/approvals", "a JSON array of held requests"))?;
            if *json {
                Ok(pretty(&answer))
            } else if holds.is_empty() {
                Ok("no requests are waiting for approval".to_string())
            } else {
                Ok(render::table(&holds))
            }
        }
        ApprovalsCommand::Show { id, json } => {
            let path = format!(
                "/v1/approvals/{}",
                crate::text::percent_encode_path_segment(id)
            );
            let (status, answer) = client.call(Method::GET, &path, None).await?;
            if !status.is_success() {
                return Err(refusal(client.url(), status, answer, Some(id)));
            }
            let hold: HoldDetail = serde_json::from_value(answer.clone()).map_err(|_| {
                unexpected("GET /v1/approvals/{id}", "a JSON object of a held request")
            })?;
            if *json {
                Ok(pretty(&answer))
            } else {
                Ok(render::detail(&hold))
            }
        }
        ApprovalsCommand::Approve {
            id,
            for_,
            reason,
            by,
        } => {
            let answer = Answer {
                by: Some(by.clone().unwrap_or_else(env_by)),
                reason: reason.clone(),
                grant_for: for_.clone(),
            };
            let decided = match decide(client, id, "approve", &answer).await? {
                Reply::Decided(decided) => decided,
                Reply::Unconfirmed(line) => return Ok(line),
            };
            let mut line = format!("approved {}", answered_id(decided.as_ref(), id));
            if let Some(grant) = decided.as_ref().and_then(Decided::grant) {
                let _ = write!(
                    line,
                    " (grant {} until {})",
                    sanitize(&grant.id),
                    sanitize(&grant.until)
                );
            }
            Ok(line)
        }
        ApprovalsCommand::Deny { id, reason, by } => {
            let answer = Answer {
                by: Some(by.clone().unwrap_or_else(env_by)),
                reason: reason.clone(),
                grant_for: None,
            };
            let decided = match decide(client, id, "deny", &answer).await? {
                Reply::Decided(decided) => decided,
                Reply::Unconfirmed(line) => return Ok(line),
            };
            Ok(format!("denied {}", answered_id(decided.as_ref(), id)))
        }
    }
}

/// The admin API's JSON as it was sent, pretty-printed and fit for a terminal.
fn pretty(answer: &Value) -> String {
    // Serializing a parsed `Value` does not fail.
    sanitize_json(&serde_json::to_string_pretty(answer).unwrap_or_default())
}

/// What became of an answer the admin API accepted.
enum Reply {
    /// Taken (`None` when the reply does not read as one: taken all the same).
    Decided(Option<Decided>),
    /// Cluster mode, 202: sent to the replica holding the request, which did
    /// not confirm it in time; what to print.
    Unconfirmed(String),
}

/// `POST /v1/approvals/{id}/{verb}`.
async fn decide(
    client: &AdminClient,
    id: &str,
    verb: &str,
    answer: &Answer,
) -> Result<Reply, CliError> {
    let path = format!(
        "/v1/approvals/{}/{verb}",
        crate::text::percent_encode_path_segment(id)
    );
    let body = serde_json::to_value(answer).ok();
    let (status, reply) = client.call(Method::POST, &path, body).await?;
    if status == StatusCode::ACCEPTED {
        let replica = reply["replica"].as_str().unwrap_or("another replica");
        return Ok(Reply::Unconfirmed(format!(
            "{verb} of {} sent to {}, which has not confirmed it yet; see `tollgate approvals show {}`",
            sanitize(id),
            sanitize(replica),
            sanitize(id)
        )));
    }
    if status.is_success() {
        Ok(Reply::Decided(serde_json::from_value(reply).ok()))
    } else {
        Err(refusal(client.url(), status, reply, Some(id)))
    }
}

/// The id the reply names, else the one asked about; sanitized.
fn answered_id(decided: Option<&Decided>, asked: &str) -> String {
    sanitize(decided.map_or(asked, |d| d.id.as_str()))
}

/// The error for a non-success answer.
fn refusal(url: &str, status: StatusCode, answer: Value, id: Option<&str>) -> CliError {
    match (status, id) {
        (StatusCode::UNAUTHORIZED, _) => CliError::TokenRefused,
        (StatusCode::NOT_FOUND, Some(id)) => CliError::NotPending(sanitize(id)),
        _ => CliError::Refused {
            url: url.to_string(),
            status,
            message: serde_json::from_value::<Refusal>(answer)
                .ok()
                .and_then(|r| r.message)
                .map(|m| sanitize(&m)),
        },
    }
}

/// `--by` when not given: `$SUDO_USER`, else `$USER`, else `cli`.
fn env_by() -> String {
    default_by(|name| std::env::var(name).ok())
}

/// `--by` when not given, from the environment `var` reads.
pub fn default_by(var: impl Fn(&str) -> Option<String>) -> String {
    ["SUDO_USER", "USER"]
        .iter()
        .find_map(|name| var(name).filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "cli".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_defaults_to_the_invoking_user() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_by(env(&[("SUDO_USER", "alice"), ("USER", "root")])),
            "alice"
        );
        assert_eq!(default_by(env(&[("USER", "bob")])), "bob");
        assert_eq!(
            default_by(env(&[("SUDO_USER", ""), ("USER", "bob")])),
            "bob"
        );
        assert_eq!(default_by(env(&[])), "cli");
    }

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(crate::text::percent_encode_path_segment("a-1f2e"), "a-1f2e");
        assert_eq!(
            crate::text::percent_encode_path_segment("../tasks?x=1"),
            "%2E%2E%2Ftasks%3Fx%3D1"
        );
    }

    #[test]
    fn refusals_name_the_problem_in_one_line() {
        let url = "http://127.0.0.1:3129";
        let message = |status, answer, id| refusal(url, status, answer, id).to_string();
        assert!(message(StatusCode::UNAUTHORIZED, Value::Null, None).contains("refused the token"));
        assert_eq!(
            message(StatusCode::NOT_FOUND, Value::Null, Some("a-\u{1b}x")),
            "no pending approval a-\\u{1b}x (already answered, timed out or withdrawn)"
        );
        assert_eq!(
            message(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "bad_request", "message": "bad\u{202e}"}),
                Some("a-1")
            ),
            "http://127.0.0.1:3129 answered 400 Bad Request: bad\\u{202e}"
        );
        assert_eq!(
            message(StatusCode::BAD_GATEWAY, Value::Null, None),
            "http://127.0.0.1:3129 answered 502 Bad Gateway"
        );
    }
}
