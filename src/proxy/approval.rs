//! The approval phase of the pipeline: a request under an `action: approve`
//! rule, past the policy, rate-limit and secret checks, waits here for an
//! operator (or goes on at once under a live `--for` grant). Its body is read
//! into the spool first, so the client is not left mid-upload while it waits,
//! a large upload does not sit in memory, and what is forwarded is exactly
//! what the operator was shown.

use super::exchange::Exchange;
use super::pipeline::{ConnCtx, PendingBody};
use super::state::ProxyState;
use crate::approvals::spool::{HeldBody, SpoolError, MAX_HELD_BODY};
use crate::approvals::{HoldError, HoldRequest, Seat, Verdict};
use crate::error::{Reason, Refusal};
use crate::policy::{Policy, Rule};
use http::header;
use http::request::Parts;
use std::time::Duration;
use tokio::time::Instant;

/// `Retry-After` when the task has too many holds.
const FULL_RETRY_AFTER: u64 = 5;

/// What the approval phase decided before the secrets phase.
#[derive(Debug)]
pub(super) enum Admission<'a> {
    /// A live `--for` grant covers the request.
    Granted(Verdict),
    /// The request will wait, in this seat, until the deadline at the latest
    /// (reading its body included).
    Wait(Seat<'a>, String, Instant),
}

/// Before anything is read: a live grant lets the request through; otherwise
/// it takes one of its task's places for holds (429 when there is none), so
/// that bodies still arriving count towards the cap too.
pub(super) fn admit<'s>(
    state: &'s ProxyState,
    conn: &ConnCtx,
    policy: &Policy,
    rule: &Rule,
) -> Result<Admission<'s>, Refusal> {
    let key = rule_key(policy, rule);
    if let Some(verdict) = state.approvals.granted(&conn.task.id, &policy.name, &key) {
        return Ok(Admission::Granted(verdict));
    }
    let seat = state.approvals.seat(&conn.task.id).map_err(hold_refusal)?;
    let wait = conn.task.time_left().map_or(rule.approval_timeout, |left| {
        left.min(rule.approval_timeout)
    });
    Ok(Admission::Wait(seat, key, Instant::now() + wait))
}

/// Refusal of a request whose body did not arrive before its deadline.
pub(super) fn body_too_slow() -> Refusal {
    Refusal::new(
        Reason::BadRequest,
        "the request body did not arrive within the approval timeout",
    )
}

/// Waits for the verdict on this request; returns its body to forward when
/// approved, else the 403 `approval_denied` (or 413 / 503) refusal. The body
/// is read, and the verdict awaited, within the rule's `approval_timeout` (or
/// what is left of the task, if less).
#[expect(
    clippy::too_many_arguments,
    reason = "until the request context carries these (issue 13)"
)]
pub(super) async fn await_approval(
    state: &ProxyState,
    conn: &ConnCtx,
    policy: &Policy,
    rule: &Rule,
    (seat, rule_key, deadline): (Seat<'_>, String, Instant),
    parts: &Parts,
    body: PendingBody,
    log: &mut Exchange,
) -> Result<PendingBody, Refusal> {
    let timeout = rule.approval_timeout;
    let task_left = conn.task.time_left();
    let ended = state.task_ends.signal(&conn.task.id, conn.task.expires_at);

    let body = match body {
        PendingBody::Streamed(incoming) => {
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > MAX_HELD_BODY) {
                return Err(spool_refusal(SpoolError::TooLarge));
            }
            let read = HeldBody::read(
                incoming,
                state.approvals.spool_dir(),
                MAX_HELD_BODY,
                state.approvals.spool_budget(),
                &conn.task.id,
            );
            tokio::select! {
                            held = read => PendingBody::Held(held.map_err(spool_refusal)?),
                            () = tokio::time::sleep_until(deadline) => return Err(body_too_slow()),
                            () = ended.cancelled() => {
                                return Err(Refusal::new(Reason::ProxyAuthRequired, "this task has ended"))
                            }
                            () = state.shutdown.cancelled() => {
            // Never held, so the block has no id.
                                log.record.approval = Some(crate::audit::ApprovalInfo {
                                    id: None,
                                    outcome: "shutdown",
                                    by: None,
                                    reason: Some("tollgate is shutting down".into()),
                                    grant: None,
                                });
                                return Err(Refusal::new(Reason::ApprovalDenied, "tollgate is shutting down"));
                            }
                        }
        }
        other => other,
    };
    let (body_bytes, body_sha256, body_preview) = match &body {
        PendingBody::Buffered(bytes) if !bytes.is_empty() => (
            bytes.len() as u64,
            Some(crate::text::hex(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref(),
            )),
            bytes::Bytes::copy_from_slice(
                &bytes[..bytes.len().min(crate::approvals::spool::PREVIEW_BYTES)],
            ),
        ),
        PendingBody::Held(held) if !held.is_empty() => (
            held.len(),
            Some(held.sha256().to_string()),
            held.preview().clone(),
        ),
        _ => (0, None, bytes::Bytes::new()),
    };
    let request = HoldRequest {
        task: conn.task.id.clone(),
        policy: policy.name.clone(),
        rule: rule.name.clone(),
        rule_key,
        method: parts.method.to_string(),
        scheme: log.record.scheme,
        host: log.record.host.clone(),
        port: log.record.port,
        path: log.record.path.clone(),
        query: log.record.query.clone(),
        headers: shown_headers(&parts.headers),
        body_bytes,
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body_sha256,
        body_preview,
        // What is left after reading the body.
        timeout: deadline.saturating_duration_since(Instant::now()),
    };
    let mut ticket = state.approvals.hold(seat, request).map_err(hold_refusal)?;
    let id = ticket.id().to_string();
    // Should the client hang up now, this future is dropped, the ticket with it
    // (withdrawing the hold), and the exchange is recorded as it stands here.
    log.record.approval = Some(
        Verdict::ended(
            &id,
            "withdrawn",
            "the client went away while waiting".into(),
        )
        .audit(),
    );
    // Nothing was sent to the client then: the record says status 0.
    log.refused(Reason::ApprovalDenied, 0);

    let woke = tokio::select! {
        verdict = ticket.verdict() => Woke::Answered(verdict),
        () = tokio::time::sleep_until(deadline) => Woke::Timeout,
        () = ended.cancelled() => Woke::TaskEnded,
        () = state.shutdown.cancelled() => Woke::Shutdown,
    };
    let mut verdict = match woke {
        Woke::Answered(verdict) => {
            drop(ticket);
            verdict
        }
        // An operator's answer that raced the timeout is the one that counts.
        Woke::Timeout if task_left.is_some_and(|left| left < timeout) => {
            ticket.close(Verdict::ended(&id, "task_ended", "the task expired".into()))
        }
        Woke::Timeout => ticket.close(Verdict::ended(
            &id,
            "timeout",
            format!("no answer within {}", human(timeout)),
        )),
        // Not so for an ended task or a shutdown: nothing of it may go out now.
        Woke::TaskEnded => {
            drop(ticket);
            Verdict::ended(&id, "task_ended", "the task ended".into())
        }
        Woke::Shutdown => {
            drop(ticket);
            Verdict::ended(&id, "shutdown", "tollgate is shutting down".into())
        }
    };
    if verdict.approved && !state.tasks.is_current(&conn.task) {
        // Ended while the answer was on its way: its leases are gone already.
        verdict = Verdict::ended(&id, "task_ended", "the task ended".into());
    }
    let current = state.policies.current().get(&policy.name);
    if verdict.approved && current.is_none_or(|now| now.digest != policy.digest) {
        // What was approved is not what the policy says now (a secret's hosts,
        // an earlier deny rule): the request must be asked again.
        verdict = Verdict::ended(
            &id,
            "policy_changed",
            "the policy changed while the request waited; send it again".into(),
        );
    }
    log.record.approval = Some(verdict.audit());
    log.record.reason = None;
    log.record.status = 0;
    if verdict.approved {
        tracing::info!(hold = %id, task = %conn.task.id, "approved request goes on");
        return Ok(body);
    }
    // The operator's reason is meant for the agent; who they are is not.
    let why = match (verdict.outcome, &verdict.reason) {
        ("denied", Some(reason)) => format!("denied: {reason}"),
        ("denied", None) => "denied".to_string(),
        (_, Some(reason)) => reason.clone(),
        (outcome, None) => outcome.to_string(),
    };
    Err(Refusal::new(
        Reason::ApprovalDenied,
        format!("rule `{}` needs an approval ({id}): {why}", rule.name),
    ))
}

enum Woke {
    Answered(Verdict),
    Timeout,
    TaskEnded,
    Shutdown,
}

/// What grants are keyed by: the policy file's digest and the rule's place in
/// it. What a rule lets through depends on the rules before it and on the
/// secrets it injects, so any edit of the file ends the grants under it
/// ([`crate::approvals::Approvals::policies_reloaded`]).
pub fn rule_key(policy: &Policy, rule: &Rule) -> String {
    let index = policy
        .rules
        .iter()
        .position(|r| std::ptr::eq(r, rule))
        .unwrap_or(usize::MAX);
    format!("{}:{index}", policy.digest)
}

/// Headers as operators see them: everything the sandbox sent except its
/// proxy credentials (placeholders stay placeholders; nothing is injected yet).
fn shown_headers(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| *name != header::PROXY_AUTHORIZATION)
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn hold_refusal(err: HoldError) -> Refusal {
    match err {
        HoldError::TooMany { .. } => {
            let mut refusal = Refusal::new(Reason::RateLimited, err.to_string());
            refusal.retry_after = Some(FULL_RETRY_AFTER);
            refusal
        }
        HoldError::NoRandom => Refusal::new(Reason::SpoolUnavailable, err.to_string()),
    }
}

fn spool_refusal(err: SpoolError) -> Refusal {
    let reason = match err {
        SpoolError::TooLarge => Reason::BodyTooLarge,
        SpoolError::Client => Reason::BadRequest,
        SpoolError::Disk(_) | SpoolError::Full => Reason::SpoolUnavailable,
    };
    Refusal::new(reason, err.to_string())
}

/// `5m`, `90s`, `1h30m`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}
