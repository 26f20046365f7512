//! Human approval gates: requests under an `action: approve` rule wait here until
//! an operator approves or denies them (admin API, `tollgate approvals`), their
//! rule's `approval_timeout` passes, their task ends or their client hangs up.
//!
//! The registry only keeps the pending holds and the `--for` grants; the request
//! itself waits in the proxy pipeline on its [`Ticket`], and its body waits in a
//! [`spool::HeldBody`].

pub mod cli;
pub mod notify;
pub mod spool;

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// Holds one task may have pending when the config does not say.
pub const DEFAULT_MAX_PENDING_PER_TASK: usize = 8;
/// Longest `--for` grant.
pub const MAX_GRANT: Duration = Duration::from_secs(24 * 3600);
/// Longest `by` accepted from an operator.
const MAX_BY: usize = 128;
/// Longest `reason` accepted from an operator.
const MAX_REASON: usize = 1024;
/// Webhook notices per task per minute; holds beyond wait unannounced.
pub const MAX_NOTICES_PER_MINUTE: u32 = 20;

/// What the pipeline tells the registry about a request it holds.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    /// Task id.
    pub task: String,
    /// Its policy.
    pub policy: String,
    /// The `approve` rule that matched.
    pub rule: String,
    /// What the rule is: a digest of everything that decides what it matches
    /// and does. `--for` grants are keyed by it, not by the name, which two
    /// rules may share and a reload may move to another rule.
    pub rule_key: String,
    /// Method.
    pub method: String,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// Destination host.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Path in placeholder form.
    pub path: String,
    /// Query in placeholder form.
    pub query: Option<String>,
    /// Request headers as the sandbox sent them (placeholder form), without
    /// its proxy credentials.
    pub headers: Vec<(String, String)>,
    /// Body size.
    pub body_bytes: u64,
    /// The body's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Hex SHA-256 of the body (none when empty).
    pub body_sha256: Option<String>,
    /// The body's first bytes.
    pub body_preview: bytes::Bytes,
    /// How long it may wait.
    pub timeout: Duration,
}

/// A pending hold as operators see it (`GET /v1/approvals`).
#[derive(Debug, Clone, Serialize)]
pub struct HoldView {
    /// Hold id.
    pub id: String,
    /// Task id.
    pub task: String,
    /// Policy name.
    pub policy: String,
    /// Rule name.
    pub rule: String,
    /// Method.
    pub method: String,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path in placeholder form.
    pub path: String,
    /// Query in placeholder form.
    pub query: Option<String>,
    /// When it was held (RFC 3339).
    pub since: String,
    /// Milliseconds waited so far.
    pub waited_ms: u64,
    /// When it times out (RFC 3339).
    pub expires_at: String,
    /// Body size.
    pub body_bytes: u64,
    /// Body type.
    pub content_type: Option<String>,
}

/// One pending hold in full (`GET /v1/approvals/{id}`): what the operator
/// approves, headers and the start of the body included.
#[derive(Debug, Clone, Serialize)]
pub struct HoldDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub view: HoldView,
    /// Request headers, placeholder form, without the proxy credentials.
    pub headers: Vec<(String, String)>,
    /// Hex SHA-256 of the body (null when empty).
    pub body_sha256: Option<String>,
    /// The first [`spool::PREVIEW_BYTES`] bytes of the body as UTF-8 (lossy).
    pub body_preview: Option<String>,
    /// Whether the body is longer than the preview.
    pub body_preview_truncated: bool,
}

/// How a hold ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may go on.
    pub approved: bool,
    /// `approved`, `denied`, `timeout`, `task_ended`, `withdrawn`, `shutdown`
    /// or `policy_changed`.
    pub outcome: &'static str,
    /// Who answered (none for timeouts and the like).
    pub by: Option<String>,
    /// Why: the operator's words, or what ended the hold.
    pub reason: Option<String>,
    /// The `--for` grant that covers it, if any.
    pub grant: Option<String>,
    /// The hold whose approval covers it (itself unless a grant does).
    pub hold: String,
}

impl Verdict {
    /// A refusal not given by an operator.
    pub fn ended(hold: &str, outcome: &'static str, reason: String) -> Self {
        Verdict {
            approved: false,
            outcome,
            by: None,
            reason: Some(reason),
            grant: None,
            hold: hold.to_string(),
        }
    }

    /// The audit block for this verdict.
    pub fn audit(&self) -> crate::audit::ApprovalInfo {
        crate::audit::ApprovalInfo {
            id: Some(self.hold.clone()),
            outcome: self.outcome,
            by: self.by.clone(),
            reason: self.reason.clone(),
            grant: self.grant.clone(),
        }
    }
}

/// An operator's answer (`POST /v1/approvals/{id}/approve|deny`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who.
    #[serde(default)]
    pub by: Option<String>,
    /// Approve: also allow the same task's requests under the same rule for this long.
    #[serde(default, rename = "for")]
    pub grant_for: Option<String>,
}

/// A `--for` grant created by an approval.
#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    /// Grant id.
    pub id: String,
    /// When it lapses (RFC 3339).
    pub until: String,
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

/// Why a request could not be held.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HoldError {
    /// The task is at `approvals.max_pending_per_task`.
    #[error("task {task} already has {max} requests waiting for approval")]
    TooMany {
        /// Task id.
        task: String,
        /// The cap.
        max: usize,
    },
    /// No hold id could be drawn.
    #[error("random bytes unavailable")]
    NoRandom,
}

#[derive(Debug)]
struct Pending {
    request: HoldRequest,
    since: SystemTime,
    started: Instant,
    answer: oneshot::Sender<Verdict>,
}

#[derive(Debug, Clone)]
struct Grant {
    id: String,
    hold: String,
    by: Option<String>,
    reason: Option<String>,
    until: Instant,
}

impl Grant {
    /// The verdict for a request this grant covers.
    fn verdict(&self) -> Verdict {
        Verdict {
            approved: true,
            outcome: "approved",
            by: self.by.clone(),
            reason: self.reason.clone(),
            grant: Some(self.id.clone()),
            hold: self.hold.clone(),
        }
    }
}

/// Task, policy, rule key.
type GrantKey = (String, String, String);

#[derive(Debug, Default)]
struct Inner {
    holds: HashMap<String, Pending>,
    /// Requests of each task between taking a seat and holding (their body
    /// is being read): they count towards the cap like holds.
    seats: HashMap<String, usize>,
    grants: HashMap<GrantKey, Grant>,
    /// Webhook notices sent per task in the current minute.
    notices: HashMap<String, (Instant, u32)>,
}

impl Inner {
    fn taken(&self, task: &str) -> usize {
        let held = self
            .holds
            .values()
            .filter(|p| p.request.task == task)
            .count();
        held + self.seats.get(task).copied().unwrap_or(0)
    }

    fn leave_seat(&mut self, task: &str) {
        if let Some(n) = self.seats.get_mut(task) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.seats.remove(task);
            }
        }
    }

    /// Whether a hold of `task` may be announced: at most
    /// [`MAX_NOTICES_PER_MINUTE`] per task, so that a sandbox holding and
    /// hanging up in a loop cannot flood the operators' channel.
    fn may_notify(&mut self, task: &str) -> bool {
        let now = Instant::now();
        self.notices
            .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        let (_, sent) = self.notices.entry(task.to_string()).or_insert((now, 0));
        *sent += 1;
        *sent <= MAX_NOTICES_PER_MINUTE
    }
}

/// Pending holds and live grants.
#[derive(Debug)]
pub struct Approvals {
    inner: Mutex<Inner>,
    max_pending_per_task: usize,
    spool_dir: std::path::PathBuf,
    spool_budget: spool::SpoolBudget,
    notifier: Option<notify::Notifier>,
}

impl Approvals {
    /// A registry allowing `max_pending_per_task` holds per task, spooling bodies
    /// under `spool_dir` and telling `notifier` of each hold.
    pub fn new(
        max_pending_per_task: usize,
        spool_dir: std::path::PathBuf,
        notifier: Option<notify::Notifier>,
    ) -> Self {
        Self {
            inner: Mutex::default(),
            max_pending_per_task: max_pending_per_task.max(1),
            spool_dir,
            spool_budget: spool::SpoolBudget::new(spool::MAX_SPOOLED, spool::MAX_SPOOLED_PER_TASK),
            notifier,
        }
    }

    /// The disk space held bodies share.
    pub fn spool_budget(&self) -> &spool::SpoolBudget {
        &self.spool_budget
    }

    /// Where held bodies are spooled.
    pub fn spool_dir(&self) -> &std::path::Path {
        &self.spool_dir
    }

    /// The webhook notifier, if any URL is configured.
    pub fn notifier(&self) -> Option<&notify::Notifier> {
        self.notifier.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live `--for` grant covering `task`'s requests under the rule
    /// `rule_key` of `policy`.
    pub fn granted(&self, task: &str, policy: &str, rule_key: &str) -> Option<Verdict> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.grants.retain(|_, g| g.until > now);
        let key = (task.to_string(), policy.to_string(), rule_key.to_string());
        inner.grants.get(&key).map(Grant::verdict)
    }

    /// Takes one of `task`'s places for a hold, before its body is read, so
    /// that requests still sending their bodies count towards the cap too.
    pub fn seat(&self, task: &str) -> Result<Seat<'_>, HoldError> {
        let mut inner = self.lock();
        if inner.taken(task) >= self.max_pending_per_task {
            return Err(HoldError::TooMany {
                task: task.to_string(),
                max: self.max_pending_per_task,
            });
        }
        *inner.seats.entry(task.to_string()).or_default() += 1;
        Ok(Seat {
            approvals: self,
            task: task.to_string(),
            taken: false,
        })
    }

    /// Holds a request in its seat; the ticket waits for its verdict and
    /// withdraws the hold when dropped.
    pub fn hold(&self, mut seat: Seat<'_>, request: HoldRequest) -> Result<Ticket<'_>, HoldError> {
        let id = random_id("a").ok_or(HoldError::NoRandom)?;
        let (tx, rx) = oneshot::channel();
        let since = SystemTime::now();
        let notice = {
            let mut inner = self.lock();
            // The seat becomes the hold, under the same lock.
            inner.leave_seat(&seat.task);
            seat.taken = true;
            // A grant made while this request's body was arriving covers it.
            let key = (
                request.task.clone(),
                request.policy.clone(),
                request.rule_key.clone(),
            );
            if let Some(grant) = inner.grants.get(&key).filter(|g| g.until > Instant::now()) {
                let _ = tx.send(grant.verdict());
                return Ok(Ticket {
                    approvals: self,
                    id,
                    verdict: rx,
                });
            }
            let announce = self.notifier.is_some() && inner.may_notify(&request.task);
            if self.notifier.is_some() && !announce {
                tracing::warn!(hold = %id, task = %request.task,
                    "request held for approval; not announced: the task asked more than {MAX_NOTICES_PER_MINUTE} times this minute");
            }
            let notice = announce.then(|| notify::Notice {
                id: id.clone(),
                task: request.task.clone(),
                policy: request.policy.clone(),
                rule: request.rule.clone(),
                method: request.method.clone(),
                scheme: request.scheme.to_string(),
                host: request.host.clone(),
                port: request.port,
                path: request.path.clone(),
                query: request.query.clone(),
                since,
                expires_at: since + request.timeout,
                body_bytes: request.body_bytes,
                content_type: request.content_type.clone(),
            });
            tracing::info!(hold = %id, task = %request.task, rule = %request.rule,
                method = %request.method, host = %request.host, path = %request.path,
                "request held for approval");
            inner.holds.insert(
                id.clone(),
                Pending {
                    request,
                    since,
                    started: Instant::now(),
                    answer: tx,
                },
            );
            notice
        };
        if let (Some(notifier), Some(notice)) = (&self.notifier, notice) {
            notifier.notify(notice);
        }
        Ok(Ticket {
            approvals: self,
            id,
            verdict: rx,
        })
    }

    fn view(id: &str, p: &Pending) -> HoldView {
        let r = &p.request;
        HoldView {
            id: id.to_string(),
            task: r.task.clone(),
            policy: r.policy.clone(),
            rule: r.rule.clone(),
            method: r.method.clone(),
            scheme: r.scheme,
            host: r.host.clone(),
            port: r.port,
            path: r.path.clone(),
            query: r.query.clone(),
            since: crate::text::rfc3339_millis(p.since),
            waited_ms: p.started.elapsed().as_millis() as u64,
            expires_at: crate::text::rfc3339_millis(p.since + r.timeout),
            body_bytes: r.body_bytes,
            content_type: r.content_type.clone(),
        }
    }

    /// Pending holds, oldest first.
    pub fn pending(&self) -> Vec<HoldView> {
        let inner = self.lock();
        let mut holds: Vec<(&String, &Pending)> = inner.holds.iter().collect();
        holds.sort_by_key(|(_, p)| p.started);
        holds.into_iter().map(|(id, p)| Self::view(id, p)).collect()
    }

    /// One pending hold in full.
    pub fn detail(&self, id: &str) -> Option<HoldDetail> {
        let inner = self.lock();
        let p = inner.holds.get(id)?;
        let r = &p.request;
        Some(HoldDetail {
            view: Self::view(id, p),
            headers: r.headers.clone(),
            body_sha256: r.body_sha256.clone(),
            body_preview: (!r.body_preview.is_empty())
                .then(|| String::from_utf8_lossy(&r.body_preview).into_owned()),
            body_preview_truncated: r.body_bytes > r.body_preview.len() as u64,
        })
    }

    /// Number of pending holds.
    pub fn pending_count(&self) -> usize {
        self.lock().holds.len()
    }

    /// Approves hold `id`. With a grant window, the same task's requests under the
    /// same rule are approved for that long, the ones pending now included.
    pub fn approve(&self, id: &str, answer: Answer) -> Result<Option<GrantView>, AnswerError> {
        let (by, reason) = checked(&answer)?;
        let grant_for = answer
            .grant_for
            .as_deref()
            .map(|text| match crate::duration::parse_duration(text) {
                Ok(d) if !d.is_zero() && d <= MAX_GRANT => Ok(d),
                _ => Err(AnswerError::Invalid(format!(
                    "`for` must be a duration such as 10m, at most {}h",
                    MAX_GRANT.as_secs() / 3600
                ))),
            })
            .transpose()?;
        let grant_id = match grant_for {
            Some(_) => Some(
                random_id("g")
                    .ok_or_else(|| AnswerError::Invalid("random bytes unavailable".into()))?,
            ),
            None => None,
        };
        let mut inner = self.lock();
        let pending = inner
            .holds
            .remove(id)
            .ok_or_else(|| AnswerError::NotPending(id.to_string()))?;
        let approved = |hold: &str| Verdict {
            approved: true,
            outcome: "approved",
            by: by.clone(),
            reason: reason.clone(),
            grant: grant_id.clone(),
            hold: hold.to_string(),
        };
        let key = (
            pending.request.task.clone(),
            pending.request.policy.clone(),
            pending.request.rule_key.clone(),
        );
        if pending.answer.send(approved(id)).is_err() {
            // The request stopped waiting (timed out, withdrawn) just now.
            return Err(AnswerError::NotPending(id.to_string()));
        }
        tracing::info!(hold = %id, by = by.as_deref().unwrap_or("-"), "approved");
        let (Some(window), Some(grant)) = (grant_for, grant_id.clone()) else {
            return Ok(None);
        };
        let covered: Vec<String> = inner
            .holds
            .iter()
            .filter(|(_, p)| {
                p.request.task == key.0 && p.request.policy == key.1 && p.request.rule_key == key.2
            })
            .map(|(other, _)| other.clone())
            .collect();
        for other in covered {
            if let Some(p) = inner.holds.remove(&other) {
                // Recorded under its own hold id, which its operators saw.
                let _ = p.answer.send(approved(&other));
            }
        }
        inner.grants.insert(
            key,
            Grant {
                id: grant.clone(),
                hold: id.to_string(),
                by: by.clone(),
                reason: reason.clone(),
                until: Instant::now() + window,
            },
        );
        Ok(Some(GrantView {
            id: grant,
            until: crate::text::rfc3339_millis(SystemTime::now() + window),
        }))
    }

    /// Denies hold `id`.
    pub fn deny(&self, id: &str, answer: Answer) -> Result<(), AnswerError> {
        if answer.grant_for.is_some() {
            return Err(AnswerError::Invalid(
                "`for` goes with approve, not deny".into(),
            ));
        }
        let (by, reason) = checked(&answer)?;
        let pending = self
            .lock()
            .holds
            .remove(id)
            .ok_or_else(|| AnswerError::NotPending(id.to_string()))?;
        tracing::info!(hold = %id, by = by.as_deref().unwrap_or("-"), "denied");
        pending
            .answer
            .send(Verdict {
                approved: false,
                outcome: "denied",
                by,
                reason,
                grant: None,
                hold: id.to_string(),
            })
            .map_err(|_| AnswerError::NotPending(id.to_string()))
    }

    /// After a reload: grants made under a policy file that changed end, and
    /// holds under one are refused (`policy_changed`), since what the operator
    /// would approve is no longer what the policy says.
    pub fn policies_reloaded(&self, current: &crate::policy::PolicySet) {
        let still = |policy: &str, rule_key: &str| {
            current
                .get(policy)
                .is_some_and(|p| rule_key.split(':').next() == Some(p.digest.as_str()))
        };
        let mut inner = self.lock();
        inner
            .grants
            .retain(|(_, policy, key), _| still(policy, key));
        let stale: Vec<String> = inner
            .holds
            .iter()
            .filter(|(_, p)| !still(&p.request.policy, &p.request.rule_key))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(p) = inner.holds.remove(&id) {
                tracing::info!(hold = %id, policy = %p.request.policy, "hold refused: its policy changed");
                let _ = p.answer.send(Verdict::ended(
                    &id,
                    "policy_changed",
                    "the policy changed while the request waited; send it again".into(),
                ));
            }
        }
    }

    fn withdraw(&self, id: &str) {
        self.lock().holds.remove(id);
    }
}

/// A task's place for one hold, taken before the body is read. Given back
/// when dropped; [`Approvals::hold`] turns it into the hold.
#[derive(Debug)]
pub struct Seat<'a> {
    approvals: &'a Approvals,
    task: String,
    /// Turned into a hold (which counts in its place).
    taken: bool,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if !self.taken {
            self.approvals.lock().leave_seat(&self.task);
        }
    }
}

/// Length-checks an operator's `by` and `reason`.
fn checked(answer: &Answer) -> Result<(Option<String>, Option<String>), AnswerError> {
    let clean = |value: &Option<String>, max: usize, what: &str| match value {
        Some(v) if v.chars().count() > max => Err(AnswerError::Invalid(format!(
            "`{what}` is longer than {max} characters"
        ))),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => Ok(Some(v.trim().to_string())),
        None => Ok(None),
    };
    Ok((
        clean(&answer.by, MAX_BY, "by")?,
        clean(&answer.reason, MAX_REASON, "reason")?,
    ))
}

fn random_id(prefix: &str) -> Option<String> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(format!("{prefix}-{}", crate::text::hex(&bytes)))
}

/// One pending hold, owned by the waiting request. Dropping it (the request
/// timed out, its task ended, its client hung up) withdraws the hold.
#[derive(Debug)]
pub struct Ticket<'a> {
    approvals: &'a Approvals,
    id: String,
    verdict: oneshot::Receiver<Verdict>,
}

impl Ticket<'_> {
    /// The hold id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for an operator's verdict.
    pub async fn verdict(&mut self) -> Verdict {
        match (&mut self.verdict).await {
            Ok(verdict) => verdict,
            Err(_) => Verdict::ended(&self.id, "withdrawn", "the hold was withdrawn".into()),
        }
    }

    /// Stops waiting: the verdict an operator gave in the meantime, if any
    /// (so an answer that raced a timeout is the one that counts), else `ended`.
    pub fn close(mut self, ended: Verdict) -> Verdict {
        self.verdict.close();
        self.verdict.try_recv().unwrap_or(ended)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.approvals.withdraw(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(task: &str, rule: &str) -> HoldRequest {
        HoldRequest {
            task: task.into(),
            policy: "p".into(),
            rule: rule.into(),
            rule_key: format!("key of {rule}"),
            method: "PUT".into(),
            scheme: "https",
            host: "api.test".into(),
            port: 443,
            path: "/merge".into(),
            query: None,
            headers: Vec::new(),
            body_bytes: 0,
            content_type: None,
            body_sha256: None,
            body_preview: bytes::Bytes::new(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Seat and hold, as the pipeline does.
    fn hold(approvals: &Approvals, request: HoldRequest) -> Result<Ticket<'_>, HoldError> {
        let seat = approvals.seat(&request.task)?;
        approvals.hold(seat, request)
    }

    fn registry(max: usize) -> Approvals {
        Approvals::new(max, std::env::temp_dir(), None)
    }

    #[tokio::test]
    async fn approve_and_deny_reach_the_waiting_ticket() {
        let approvals = registry(8);
        let mut ticket = hold(&approvals, request("t1", "merge")).unwrap();
        let id = ticket.id().to_string();
        assert_eq!(approvals.pending().len(), 1);
        approvals
            .approve(
                &id,
                Answer {
                    by: Some("alice".into()),
                    ..Answer::default()
                },
            )
            .unwrap();
        let verdict = ticket.verdict().await;
        assert!(verdict.approved);
        assert_eq!(verdict.by.as_deref(), Some("alice"));
        assert_eq!(approvals.pending_count(), 0);
        assert!(
            matches!(
                approvals.approve(&id, Answer::default()),
                Err(AnswerError::NotPending(ref gone)) if *gone == id
            ),
            "a hold is answered once"
        );

        let mut ticket = hold(&approvals, request("t1", "merge")).unwrap();
        let id = ticket.id().to_string();
        approvals
            .deny(
                &id,
                Answer {
                    reason: Some("no".into()),
                    ..Answer::default()
                },
            )
            .unwrap();
        let verdict = ticket.verdict().await;
        assert_eq!((verdict.approved, verdict.outcome), (false, "denied"));
    }

    #[test]
    fn the_cap_is_per_task_and_a_dropped_ticket_frees_its_place() {
        let approvals = registry(2);
        let a = hold(&approvals, request("t1", "r")).unwrap();
        let _b = hold(&approvals, request("t1", "r")).unwrap();
        assert!(hold(&approvals, request("t1", "r")).is_err());
        let _other = hold(&approvals, request("t2", "r")).unwrap();
        drop(a);
        assert_eq!(approvals.pending_count(), 2);
        // A request still sending its body holds a seat: it counts too.
        let seat = approvals.seat("t1").unwrap();
        assert!(approvals.seat("t1").is_err());
        drop(seat);
        let _c = hold(&approvals, request("t1", "r")).unwrap();
        assert_eq!(approvals.pending_count(), 3);
    }

    #[tokio::test]
    async fn a_grant_covers_the_same_task_and_rule_only_and_releases_pending_ones() {
        let approvals = registry(8);
        let first = hold(&approvals, request("t1", "merge")).unwrap();
        let mut second = hold(&approvals, request("t1", "merge")).unwrap();
        let mut other_rule = hold(&approvals, request("t1", "deploy")).unwrap();
        let grant = approvals
            .approve(
                first.id(),
                Answer {
                    grant_for: Some("10m".into()),
                    ..Answer::default()
                },
            )
            .unwrap()
            .expect("a grant");
        let verdict = second.verdict().await;
        assert!(verdict.approved);
        assert_eq!(verdict.grant.as_deref(), Some(grant.id.as_str()));
        assert_eq!(verdict.hold, second.id(), "recorded under its own id");
        assert!(approvals.granted("t1", "p", "key of merge").is_some());
        assert!(approvals.granted("t2", "p", "key of merge").is_none());
        assert!(approvals.granted("t1", "p", "key of deploy").is_none());
        assert_eq!(approvals.pending().len(), 1, "the other rule still waits");
        let still = tokio::time::timeout(Duration::from_millis(50), other_rule.verdict()).await;
        assert!(still.is_err());
    }

    #[tokio::test]
    async fn a_grant_made_while_a_body_arrives_covers_that_request() {
        let approvals = registry(8);
        let seat = approvals.seat("t1").unwrap();
        let first = hold(&approvals, request("t1", "merge")).unwrap();
        let grant = approvals
            .approve(
                first.id(),
                Answer {
                    grant_for: Some("10m".into()),
                    ..Answer::default()
                },
            )
            .unwrap()
            .unwrap();
        let mut late = approvals.hold(seat, request("t1", "merge")).unwrap();
        let verdict = late.verdict().await;
        assert!(verdict.approved);
        assert_eq!(verdict.grant.as_deref(), Some(grant.id.as_str()));
        assert_eq!(approvals.pending_count(), 0, "never listed as waiting");
    }

    #[test]
    fn an_answer_that_races_a_timeout_wins_and_bad_answers_are_refused() {
        let approvals = registry(8);
        let ticket = hold(&approvals, request("t1", "r")).unwrap();
        let id = ticket.id().to_string();
        approvals.approve(&id, Answer::default()).unwrap();
        let verdict = ticket.close(Verdict::ended(&id, "timeout", "late".into()));
        assert!(verdict.approved, "the operator's answer counts");

        let ticket = hold(&approvals, request("t1", "r")).unwrap();
        let id = ticket.id().to_string();
        let verdict = ticket.close(Verdict::ended(&id, "timeout", "late".into()));
        assert_eq!(verdict.outcome, "timeout");
        assert!(matches!(
            approvals.approve(&id, Answer::default()),
            Err(AnswerError::NotPending(_))
        ));

        let _ticket = hold(&approvals, request("t1", "r")).unwrap();
        let id = _ticket.id().to_string();
        for bad in ["0s", "forever", "48h"] {
            let answer = Answer {
                grant_for: Some(bad.into()),
                ..Answer::default()
            };
            assert!(matches!(
                approvals.approve(&id, answer),
                Err(AnswerError::Invalid(_))
            ));
        }
        let long = Answer {
            by: Some("x".repeat(MAX_BY + 1)),
            ..Answer::default()
        };
        assert!(matches!(
            approvals.deny(&id, long),
            Err(AnswerError::Invalid(_))
        ));
        assert_eq!(
            approvals.pending_count(),
            1,
            "a refused answer leaves the hold"
        );
    }
}
