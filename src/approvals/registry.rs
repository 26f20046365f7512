//! The hold registry: pending holds, the seats of requests whose bodies are
//! still arriving, and live `--for` grants.

use super::api::{Answer, AnswerError, GrantView, HoldDetail, HoldView, RequestSummary};
use super::notify;
use super::spool;
use crate::audit::event::ApprovalOutcome;
use crate::error::{Reason, Refusal};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

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
    /// What operators are shown of it.
    pub summary: RequestSummary,
    /// What the rule is: a digest of everything that decides what it matches
    /// and does. `--for` grants are keyed by it, not by the name, which two
    /// rules may share and a reload may move to another rule.
    pub rule_key: String,
    /// Request headers as the sandbox sent them (placeholder form), without
    /// its proxy credentials.
    pub headers: Vec<(String, String)>,
    /// Hex SHA-256 of the body (none when empty).
    pub body_sha256: Option<String>,
    /// The body's first bytes.
    pub body_preview: bytes::Bytes,
    /// How long it may wait.
    pub timeout: Duration,
}

/// How a hold ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may go on.
    pub approved: bool,
    /// How the hold ended.
    pub outcome: ApprovalOutcome,
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
    pub fn ended(hold: &str, outcome: ApprovalOutcome, reason: String) -> Self {
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

/// `Retry-After` when the task has too many holds.
const FULL_RETRY_AFTER: u64 = 5;

impl From<HoldError> for Refusal {
    fn from(err: HoldError) -> Self {
        match err {
            HoldError::TooMany { .. } => {
                let mut refusal = Refusal::new(Reason::RateLimited, err.to_string());
                refusal.retry_after = Some(FULL_RETRY_AFTER);
                refusal
            }
            HoldError::NoRandom => Refusal::new(Reason::SpoolUnavailable, err.to_string()),
        }
    }
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
            outcome: ApprovalOutcome::Approved,
            by: self.by.clone(),
            reason: self.reason.clone(),
            grant: Some(self.id.clone()),
            hold: self.hold.clone(),
        }
    }
}

/// Task, policy, rule key.
type GrantKey = (String, String, String);

/// A live `--for` grant as other replicas learn of it (cluster mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// Task id.
    pub task: String,
    /// Policy name.
    pub policy: String,
    /// What it covers under the policy (rule or budget key).
    pub rule_key: String,
    /// Grant id.
    pub id: String,
    /// The hold whose approval made it.
    pub hold: String,
    /// Who approved.
    pub by: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// How long it has left.
    pub left: Duration,
}

/// The holds a grant for `key` (task, policy, rule key) lets go on.
fn covered_by(holds: &HashMap<String, Pending>, key: &GrantKey) -> Vec<String> {
    holds
        .iter()
        .filter(|(_, p)| {
            p.request.summary.task == key.0
                && p.request.summary.policy == key.1
                && p.request.rule_key == key.2
        })
        .map(|(id, _)| id.clone())
        .collect()
}

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
            .filter(|p| p.request.summary.task == task)
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
                request.summary.task.clone(),
                request.summary.policy.clone(),
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
            let announce = self.notifier.is_some() && inner.may_notify(&request.summary.task);
            if self.notifier.is_some() && !announce {
                tracing::warn!(hold = %id, task = %request.summary.task,
                    "request held for approval; not announced: the task asked more than {MAX_NOTICES_PER_MINUTE} times this minute");
            }
            let notice = announce.then(|| notify::Notice {
                id: id.clone(),
                summary: request.summary.clone(),
                since,
                expires_at: since + request.timeout,
            });
            let r = &request.summary;
            tracing::info!(hold = %id, task = %r.task, rule = %r.rule,
                method = %r.method, host = %r.host, path = %r.path,
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
        HoldView {
            id: id.to_string(),
            summary: p.request.summary.clone(),
            since: crate::text::rfc3339_millis(p.since),
            waited_ms: p.started.elapsed().as_millis() as u64,
            expires_at: crate::text::rfc3339_millis(p.since + p.request.timeout),
            replica: None,
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
            body_preview_truncated: r.summary.body_bytes > r.body_preview.len() as u64,
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
            outcome: ApprovalOutcome::Approved,
            by: by.clone(),
            reason: reason.clone(),
            grant: grant_id.clone(),
            hold: hold.to_string(),
        };
        let key = (
            pending.request.summary.task.clone(),
            pending.request.summary.policy.clone(),
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
        let covered = covered_by(&inner.holds, &key);
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
                outcome: ApprovalOutcome::Denied,
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
            .filter(|(_, p)| !still(&p.request.summary.policy, &p.request.rule_key))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(p) = inner.holds.remove(&id) {
                tracing::info!(hold = %id, policy = %p.request.summary.policy, "hold refused: its policy changed");
                let _ = p.answer.send(Verdict::ended(
                    &id,
                    ApprovalOutcome::PolicyChanged,
                    "the policy changed while the request waited; send it again".into(),
                ));
            }
        }
    }

    /// The live grant `grant_id`, to share with other replicas.
    pub fn grant_record(&self, grant_id: &str) -> Option<GrantRecord> {
        let now = Instant::now();
        let inner = self.lock();
        inner
            .grants
            .iter()
            .find(|(_, g)| g.id == grant_id && g.until > now)
            .map(|((task, policy, rule_key), g)| GrantRecord {
                task: task.clone(),
                policy: policy.clone(),
                rule_key: rule_key.clone(),
                id: g.id.clone(),
                hold: g.hold.clone(),
                by: g.by.clone(),
                reason: g.reason.clone(),
                left: g.until.saturating_duration_since(now),
            })
    }

    /// Takes in a grant made on another replica (cluster mode): it covers
    /// this replica's requests too, the ones pending here now included
    /// (each recorded under its own hold id). A grant lasting longer under
    /// the same key stays.
    pub fn adopt_grant(&self, record: GrantRecord) {
        if record.left.is_zero() {
            return;
        }
        let grant = Grant {
            id: record.id,
            hold: record.hold,
            by: record.by,
            reason: record.reason,
            until: Instant::now() + record.left,
        };
        let key = (record.task, record.policy, record.rule_key);
        let mut inner = self.lock();
        let covered = covered_by(&inner.holds, &key);
        for id in covered {
            if let Some(p) = inner.holds.remove(&id) {
                let mut verdict = grant.verdict();
                verdict.hold = id;
                let _ = p.answer.send(verdict);
            }
        }
        let keep = inner
            .grants
            .get(&key)
            .is_some_and(|g| g.until >= grant.until);
        if !keep {
            inner.grants.insert(key, grant);
        }
    }

    /// Whether hold `id` is pending here.
    pub fn is_pending(&self, id: &str) -> bool {
        self.lock().holds.contains_key(id)
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
            Err(_) => Verdict::ended(
                &self.id,
                ApprovalOutcome::Withdrawn,
                "the hold was withdrawn".into(),
            ),
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
mod tests;
