//! The approval phase of the pipeline: a request under an `action: approve`
//! rule, past the policy, rate-limit and secret checks, waits here for an
//! operator (or goes on at once under a live `--for` grant). Its body is read
//! into the spool first, so the client is not left mid-upload while it waits,
//! a large upload does not sit in memory, and what is forwarded is exactly
//! what the operator was shown.

use super::context::RequestCtx;
use super::injection::PendingBody;
use crate::approvals::spool::{HeldBody, SpoolError, MAX_HELD_BODY};
use crate::approvals::{ApprovalOutcome, HoldRequest, RequestSummary, Seat, Ticket, Verdict};
use crate::budget::ledger::Meter;
use crate::error::{Reason, Refusal};
use crate::policy::{Action, Policy, Rule};
use crate::tasks::TaskEnded;
use http::header;
use http::request::Parts;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the approval phase decided before the secrets phase.
#[derive(Debug)]
pub enum Admission<'a> {
    /// A live `--for` grant covers the request.
    Granted(Verdict),
    /// The request will wait until the deadline at the latest (reading its
    /// body included).
    Wait(Wait<'a>),
}

/// A place among the task's holds, taken before the body is read.
#[derive(Debug)]
pub struct Wait<'a> {
    seat: Seat<'a>,
    rule_key: String,
    deadline: Instant,
    /// The used-up budget that holds the request, if that is what holds it.
    budget: Option<Meter>,
}

/// Before anything is read, for a request under an `approve` rule, or past a
/// used-up budget under `on_exceed: approve` (`over`; `None` otherwise): a
/// live grant lets it through; else it takes one of its task's places for
/// holds (429 when there is none), so that bodies still arriving count
/// towards the cap too. (A grant lifting the budget was looked for already.)
pub async fn admit<'s>(
    ctx: &RequestCtx<'s>,
    policy: &Policy,
    rule: &Rule,
    over: Option<Meter>,
) -> Result<Option<Admission<'s>>, Refusal> {
    let task = ctx.task();
    let rule_key = match over {
        Some(meter) => super::budgets::budget_key(policy, meter),
        None if rule.action == Action::Approve => rule_key(policy, rule),
        None => return Ok(None),
    };
    if over.is_none() {
        if let Some(verdict) = ctx
            .state
            .approvals
            .granted(&task.id, &policy.name, &rule_key)
        {
            return Ok(Some(Admission::Granted(verdict)));
        }
        if let Some(cluster) = &ctx.state.cluster {
            if let Some(verdict) = shared_grant(cluster, &task.id, &policy.name, &rule_key).await? {
                return Ok(Some(Admission::Granted(verdict)));
            }
        }
    }
    let seat = ctx.state.approvals.seat(&task.id)?;
    let wait = task.time_left().map_or(rule.approval_timeout, |left| {
        left.min(rule.approval_timeout)
    });
    Ok(Some(Admission::Wait(Wait {
        seat,
        rule_key,
        deadline: Instant::now() + wait,
        budget: over,
    })))
}

/// Cluster mode: a `--for` grant another replica made (read from Redis, so
/// a grant made a moment ago counts even before its announcement arrives).
async fn shared_grant(
    cluster: &crate::cluster::Cluster,
    task: &str,
    policy: &str,
    rule_key: &str,
) -> Result<Option<Verdict>, Refusal> {
    let grant = crate::cluster::grants::lookup(cluster, task, policy, rule_key).await?;
    Ok(grant.map(|g| Verdict {
        approved: true,
        outcome: ApprovalOutcome::Approved,
        by: g.by,
        reason: g.reason,
        grant: Some(g.id),
        hold: g.hold,
    }))
}

/// Runs `phase` (the placeholder check, which may read the body) within the
/// deadline of a request that will wait; others are not limited here.
pub async fn within_deadline<T>(
    admission: Option<&Admission<'_>>,
    phase: impl Future<Output = Result<T, Refusal>>,
) -> Result<T, Refusal> {
    match admission {
        Some(Admission::Wait(wait)) => tokio::time::timeout_at(wait.deadline, phase)
            .await
            .map_err(|_| body_too_slow())?,
        _ => phase.await,
    }
}

/// The approval phase: a granted request goes on with its grant recorded; a
/// held one waits for its verdict ([`await_approval`]).
pub async fn settle(
    ctx: &mut RequestCtx<'_>,
    policy: &Policy,
    rule: &Rule,
    admission: Option<Admission<'_>>,
    parts: &Parts,
    body: PendingBody,
) -> Result<PendingBody, Refusal> {
    match admission {
        None => Ok(body),
        Some(Admission::Granted(verdict)) => {
            ctx.log.record.approval = Some(verdict.audit());
            Ok(body)
        }
        Some(Admission::Wait(wait)) => await_approval(ctx, policy, rule, wait, parts, body).await,
    }
}

/// Refusal of a request whose body did not arrive before its deadline.
fn body_too_slow() -> Refusal {
    Refusal::new(
        Reason::BadRequest,
        "the request body did not arrive within the approval timeout",
    )
}

/// Waits for the verdict on this request; returns its body to forward when
/// approved, else the 403 `approval_denied` (or 413 / 503) refusal. The body
/// is read, and the verdict awaited, within the rule's `approval_timeout` (or
/// what is left of the task, if less).
async fn await_approval(
    ctx: &mut RequestCtx<'_>,
    policy: &Policy,
    rule: &Rule,
    Wait {
        seat,
        rule_key,
        deadline,
        budget,
    }: Wait<'_>,
    parts: &Parts,
    body: PendingBody,
) -> Result<PendingBody, Refusal> {
    let task = ctx.conn.task.clone();
    let ended = ctx.state.task_ends.signal(&task.id, task.expires_at);
    let body = match body {
        PendingBody::Streamed(incoming) => {
            PendingBody::Held(spool(ctx, parts, incoming, deadline, &ended).await?)
        }
        other => other,
    };
    let mut request = hold_request(ctx, policy, rule, rule_key, parts, &body, deadline);
    request.summary.budget = budget.map(|m| m.name().to_string());
    let timeout = request.timeout;
    let ticket = ctx.state.approvals.hold(seat, request)?;
    let id = ticket.id().to_string();
    // Cluster mode: listed for every replica while it waits (dropped: unlisted).
    let listed = list_in_cluster(ctx, &id, timeout).await?;
    // Should the client hang up now, this future is dropped, the ticket with it
    // (withdrawing the hold), and the exchange is recorded as it stands here.
    ctx.log.record.approval = Some(
        Verdict::ended(
            &id,
            ApprovalOutcome::Withdrawn,
            "the client went away while waiting".into(),
        )
        .audit(),
    );
    // Nothing was sent to the client then: the record says status 0.
    ctx.log.refused(Reason::ApprovalDenied, 0);

    let verdict = wait_for_verdict(ctx, rule, ticket, &id, deadline, &ended, listed.as_ref());
    let verdict = match verdict.await {
        Ok(verdict) => verdict,
        Err(lost) => {
            // SECURITY: a hold whose shared state is lost is never let through
            // unanswered: its answer might be waiting on another replica.
            ctx.log.record.approval =
                Some(Verdict::ended(&id, ApprovalOutcome::LeaseExpired, lost.to_string()).audit());
            return Err(lost.into());
        }
    };
    if let Some(listed) = listed {
        listed.end().await;
    }
    let verdict = still_valid(ctx, policy, verdict, &id);
    ctx.log.record.approval = Some(verdict.audit());
    ctx.log.record.reason = None;
    ctx.log.record.status = 0;
    if verdict.approved {
        tracing::info!(hold = %id, task = %task.id, "approved request goes on");
        return Ok(body);
    }
    Err(denied(rule, budget, &id, &verdict))
}

/// Cluster mode: lists hold `id` in Redis for every replica's admin API.
async fn list_in_cluster(
    ctx: &RequestCtx<'_>,
    id: &str,
    timeout: Duration,
) -> Result<Option<crate::cluster::holds::Listed>, Refusal> {
    let Some(cluster) = &ctx.state.cluster else {
        return Ok(None);
    };
    // Answered already (a grant covered it while its body arrived).
    let Some(detail) = ctx.state.approvals.detail(id) else {
        return Ok(None);
    };
    let hold = crate::cluster::holds::SharedHold {
        replica: cluster.replica().to_string(),
        client: ctx.conn.client.to_string(),
        since_ms: crate::cluster::holds::now_ms(),
        detail,
    };
    let listed = crate::cluster::holds::Listed::new(cluster.clone(), id, &hold, timeout).await?;
    Ok(Some(listed))
}

/// Reads a body to be held into the spool, before the deadline and while the
/// task and tollgate last.
async fn spool(
    ctx: &mut RequestCtx<'_>,
    parts: &Parts,
    incoming: crate::body::RequestBody,
    deadline: Instant,
    ended: &CancellationToken,
) -> Result<HeldBody, Refusal> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_HELD_BODY) {
        return Err(SpoolError::TooLarge.into());
    }
    let approvals = &ctx.state.approvals;
    let read = HeldBody::read(
        incoming,
        approvals.spool_dir(),
        MAX_HELD_BODY,
        approvals.spool_budget(),
        &ctx.task().id,
    );
    tokio::select! {
        held = read => Ok(held?),
        () = tokio::time::sleep_until(deadline) => Err(body_too_slow()),
        () = ended.cancelled() => Err(TaskEnded.into()),
        () = ctx.state.shutdown.cancelled() => {
            // Never held, so the block has no id.
            ctx.log.record.approval = Some(crate::audit::ApprovalInfo {
                id: None,
                outcome: ApprovalOutcome::Shutdown,
                by: None,
                reason: Some("tollgate is shutting down".into()),
                grant: None,
            });
            Err(Refusal::new(Reason::ApprovalDenied, "tollgate is shutting down"))
        }
    }
}

/// What operators are shown of the held request.
fn hold_request(
    ctx: &RequestCtx<'_>,
    policy: &Policy,
    rule: &Rule,
    rule_key: String,
    parts: &Parts,
    body: &PendingBody,
    deadline: Instant,
) -> HoldRequest {
    let (body_bytes, body_sha256, body_preview) = match body {
        PendingBody::Buffered(bytes)
        | PendingBody::Hashed(bytes)
        | PendingBody::Inspected(bytes)
            if !bytes.is_empty() =>
        {
            (
                bytes.len() as u64,
                Some(crate::text::hex(
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref(),
                )),
                bytes::Bytes::copy_from_slice(
                    &bytes[..bytes.len().min(crate::approvals::spool::PREVIEW_BYTES)],
                ),
            )
        }
        PendingBody::Held(held) if !held.is_empty() => (
            held.len(),
            Some(held.sha256().to_string()),
            held.preview().clone(),
        ),
        _ => (0, None, bytes::Bytes::new()),
    };
    let record = &ctx.log.record;
    HoldRequest {
        summary: RequestSummary {
            task: ctx.task().id.clone(),
            policy: policy.name.clone(),
            rule: rule.name.clone(),
            method: parts.method.to_string(),
            scheme: record.scheme.to_string(),
            host: record.host.clone(),
            port: record.port,
            path: record.path.clone(),
            query: record.query.clone(),
            body_bytes,
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            budget: None,
        },
        rule_key,
        headers: shown_headers(&parts.headers),
        body_sha256,
        body_preview,
        // What is left after reading the body.
        timeout: deadline.saturating_duration_since(Instant::now()),
    }
}

/// The first of: an operator's answer, the deadline, the task's end, shutdown;
/// in cluster mode `Err` when the hold's lease cannot be renewed.
async fn wait_for_verdict(
    ctx: &RequestCtx<'_>,
    rule: &Rule,
    mut ticket: Ticket<'_>,
    id: &str,
    deadline: Instant,
    ended: &CancellationToken,
    listed: Option<&crate::cluster::holds::Listed>,
) -> Result<Verdict, crate::cluster::ClusterUnavailable> {
    let timeout = rule.approval_timeout;
    let task_left = ctx.task().time_left();
    let lease_lost = async {
        match listed {
            Some(listed) => listed.keep_alive().await,
            None => std::future::pending().await,
        }
    };
    let woke = tokio::select! {
        verdict = ticket.verdict() => Woke::Answered(verdict),
        () = tokio::time::sleep_until(deadline) => Woke::Timeout,
        () = ended.cancelled() => Woke::TaskEnded,
        () = ctx.state.shutdown.cancelled() => Woke::Shutdown,
        lost = lease_lost => return Err(lost),
    };
    Ok(match woke {
        Woke::Answered(verdict) => verdict,
        // An operator's answer that raced the timeout is the one that counts.
        Woke::Timeout if task_left.is_some_and(|left| left < timeout) => ticket.close(
            Verdict::ended(id, ApprovalOutcome::TaskEnded, "the task expired".into()),
        ),
        Woke::Timeout => ticket.close(Verdict::ended(
            id,
            ApprovalOutcome::Timeout,
            format!("no answer within {}", human(timeout)),
        )),
        // Not so for an ended task or a shutdown: nothing of it may go out now.
        Woke::TaskEnded => Verdict::ended(id, ApprovalOutcome::TaskEnded, "the task ended".into()),
        Woke::Shutdown => Verdict::ended(
            id,
            ApprovalOutcome::Shutdown,
            "tollgate is shutting down".into(),
        ),
    })
}

/// An approval stands only if the task is still current and the policy is
/// still the one the operator approved under.
fn still_valid(ctx: &RequestCtx<'_>, policy: &Policy, verdict: Verdict, id: &str) -> Verdict {
    if !verdict.approved {
        return verdict;
    }
    if ctx.ensure_current().is_err() {
        // Ended while the answer was on its way: its leases are gone already.
        return Verdict::ended(id, ApprovalOutcome::TaskEnded, "the task ended".into());
    }
    let current = ctx.state.policies.current().get(&policy.name);
    if current.is_none_or(|now| now.digest != policy.digest) {
        // What was approved is not what the policy says now (a secret's hosts,
        // an earlier deny rule): the request must be asked again.
        return Verdict::ended(
            id,
            ApprovalOutcome::PolicyChanged,
            "the policy changed while the request waited; send it again".into(),
        );
    }
    verdict
}

/// The 403 of a request that was not approved. The operator's reason is meant
/// for the agent; who they are is not.
fn denied(rule: &Rule, budget: Option<Meter>, id: &str, verdict: &Verdict) -> Refusal {
    let why = match (verdict.outcome, &verdict.reason) {
        (ApprovalOutcome::Denied, Some(reason)) => format!("denied: {reason}"),
        (ApprovalOutcome::Denied, None) => "denied".to_string(),
        (_, Some(reason)) => reason.clone(),
        (outcome, None) => outcome.to_string(),
    };
    let gate = match budget {
        Some(meter) => format!("the task's {} budget is used up; going on", meter.name()),
        None => format!("rule `{}`", rule.name),
    };
    Refusal::new(
        Reason::ApprovalDenied,
        format!("{gate} needs an approval ({id}): {why}"),
    )
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
