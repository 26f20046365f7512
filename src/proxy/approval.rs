//! The approval phase of the pipeline: a request under an `action: approve`
//! rule, past the policy, rate-limit and secret checks, waits here for an
//! operator (or goes on at once under a live `--for` grant). Its body is read
//! into the spool first, so the client is not left mid-upload while it waits and
//! a large upload does not sit in memory.

use super::exchange::Exchange;
use super::pipeline::{ConnCtx, PendingBody};
use super::state::ProxyState;
use crate::approvals::spool::{HeldBody, SpoolError, MAX_HELD_BODY};
use crate::approvals::{HoldError, HoldRequest, Verdict};
use crate::error::{Reason, Refusal};
use crate::policy::Rule;
use http::header;
use http::request::Parts;
use std::time::Duration;

/// Status recorded for a hold its client withdrew by hanging up: nothing was
/// sent, and 499 is what proxies log for "client closed request".
pub const WITHDRAWN_STATUS: u16 = 499;
/// `Retry-After` when the task has too many holds.
const FULL_RETRY_AFTER: u64 = 5;

/// Waits for the verdict on this request; returns its body to forward when
/// approved, else the 403 `approval_denied` (or 429 / 413 / 503) refusal.
pub(super) async fn await_approval(
    state: &ProxyState,
    conn: &ConnCtx,
    rule: &Rule,
    parts: &Parts,
    body: PendingBody,
    log: &mut Exchange,
) -> Result<PendingBody, Refusal> {
    if let Some(verdict) = state
        .approvals
        .granted(&conn.task.id, &conn.policy.name, &rule.name)
    {
        log.record.approval = Some(verdict.audit());
        return Ok(body);
    }
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
            let held = HeldBody::read(
                incoming,
                state.approvals.spool_dir(),
                MAX_HELD_BODY,
                state.approvals.spool_budget(),
            )
            .await
            .map_err(spool_refusal)?;
            PendingBody::Held(held)
        }
        other => other,
    };
    let body_bytes = match &body {
        PendingBody::Buffered(bytes) => bytes.len() as u64,
        PendingBody::Held(held) => held.len(),
        PendingBody::Streamed(_) => 0,
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let timeout = rule.approval_timeout;
    let task_left = conn.task.time_left();
    let request = HoldRequest {
        task: conn.task.id.clone(),
        policy: conn.policy.name.clone(),
        rule: rule.name.clone(),
        method: parts.method.to_string(),
        host: log.record.host.clone(),
        port: log.record.port,
        path: log.record.path.clone(),
        body_bytes,
        content_type,
        timeout: task_left.map_or(timeout, |left| left.min(timeout)),
    };
    let mut ticket = state.approvals.hold(request).map_err(|err| {
        let mut refusal = Refusal::new(Reason::RateLimited, err.to_string());
        if matches!(err, HoldError::TooMany { .. }) {
            refusal.retry_after = Some(FULL_RETRY_AFTER);
        }
        refusal
    })?;
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
    log.refused(Reason::ApprovalDenied, WITHDRAWN_STATUS);

    let ended = state.task_ends.signal(&conn.task.id, conn.task.expires_at);
    let wait = task_left.map_or(timeout, |left| left.min(timeout));
    let woke = tokio::select! {
        verdict = ticket.verdict() => Woke::Answered(verdict),
        () = tokio::time::sleep(wait) => Woke::Timeout,
        () = ended.cancelled() => Woke::TaskEnded,
        () = state.shutdown.cancelled() => Woke::Shutdown,
    };
    let verdict = match woke {
        Woke::Answered(verdict) => verdict,
        Woke::Timeout if task_left.is_some_and(|left| left < timeout) => {
            ticket.close(Verdict::ended(&id, "task_ended", "the task expired".into()))
        }
        Woke::Timeout => ticket.close(Verdict::ended(
            &id,
            "timeout",
            format!("no answer within {}", human(timeout)),
        )),
        Woke::TaskEnded => ticket.close(Verdict::ended(&id, "task_ended", "the task ended".into())),
        Woke::Shutdown => ticket.close(Verdict::ended(
            &id,
            "shutdown",
            "tollgate is shutting down".into(),
        )),
    };
    log.record.approval = Some(verdict.audit());
    log.record.reason = None;
    log.record.status = 0;
    if verdict.approved {
        tracing::info!(hold = %id, task = %conn.task.id, "approved request goes on");
        return Ok(body);
    }
    let why = match (verdict.outcome, &verdict.by, &verdict.reason) {
        ("denied", Some(by), Some(reason)) => format!("denied by {by}: {reason}"),
        ("denied", Some(by), None) => format!("denied by {by}"),
        ("denied", None, Some(reason)) => format!("denied: {reason}"),
        ("denied", None, None) => "denied".to_string(),
        (_, _, Some(reason)) => reason.clone(),
        (outcome, _, None) => outcome.to_string(),
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
