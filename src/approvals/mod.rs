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

/// What the pipeline tells the registry about a request it holds.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    /// Task id.
    pub task: String,
    /// Its policy.
    pub policy: String,
    /// The `approve` rule that matched.
    pub rule: String,
    /// Method.
    pub method: String,
    /// Destination host.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Path in placeholder form.
    pub path: String,
    /// Body size.
    pub body_bytes: u64,
    /// The body's `Content-Type`, if any.
    pub content_type: Option<String>,
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
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path in placeholder form.
    pub path: String,
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

/// How a hold ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may go on.
    pub approved: bool,
    /// `approved`, `denied`, `timeout`, `task_ended`, `withdrawn` or `shutdown`.
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
            id: self.hold.clone(),
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

type GrantKey = (String, String, String);

#[derive(Debug, Default)]
struct Inner {
    holds: HashMap<String, Pending>,
    grants: HashMap<GrantKey, Grant>,
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
            spool_budget: spool::SpoolBudget::new(spool::MAX_SPOOLED),
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

    /// The live `--for` grant covering `task`'s requests under `rule` of `policy`.
    pub fn granted(&self, task: &str, policy: &str, rule: &str) -> Option<Verdict> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.grants.retain(|_, g| g.until > now);
        let key = (task.to_string(), policy.to_string(), rule.to_string());
        inner.grants.get(&key).map(|g| Verdict {
            approved: true,
            outcome: "approved",
            by: g.by.clone(),
            reason: g.reason.clone(),
            grant: Some(g.id.clone()),
            hold: g.hold.clone(),
        })
    }

    /// Holds a request; the ticket waits for its verdict and withdraws the hold
    /// when dropped.
    pub fn hold(&self, request: HoldRequest) -> Result<Ticket<'_>, HoldError> {
        let id = random_id("a").ok_or(HoldError::NoRandom)?;
        let (tx, rx) = oneshot::channel();
        let since = SystemTime::now();
        let notice = {
            let mut inner = self.lock();
            let pending = inner
                .holds
                .values()
                .filter(|p| p.request.task == request.task)
                .count();
            if pending >= self.max_pending_per_task {
                return Err(HoldError::TooMany {
                    task: request.task,
                    max: self.max_pending_per_task,
                });
            }
            let notice = self.notifier.as_ref().map(|_| notify::Notice {
                id: id.clone(),
                task: request.task.clone(),
                policy: request.policy.clone(),
                rule: request.rule.clone(),
                method: request.method.clone(),
                host: request.host.clone(),
                port: request.port,
                path: request.path.clone(),
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

    /// Pending holds, oldest first.
    pub fn pending(&self) -> Vec<HoldView> {
        let inner = self.lock();
        let mut views: Vec<(Instant, HoldView)> = inner
            .holds
            .iter()
            .map(|(id, p)| {
                let r = &p.request;
                (
                    p.started,
                    HoldView {
                        id: id.clone(),
                        task: r.task.clone(),
                        policy: r.policy.clone(),
                        rule: r.rule.clone(),
                        method: r.method.clone(),
                        host: r.host.clone(),
                        port: r.port,
                        path: r.path.clone(),
                        since: crate::audit::chain::rfc3339_millis(p.since),
                        waited_ms: p.started.elapsed().as_millis() as u64,
                        expires_at: crate::audit::chain::rfc3339_millis(p.since + r.timeout),
                        body_bytes: r.body_bytes,
                        content_type: r.content_type.clone(),
                    },
                )
            })
            .collect();
        views.sort_by_key(|(started, _)| *started);
        views.into_iter().map(|(_, v)| v).collect()
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
        let verdict = Verdict {
            approved: true,
            outcome: "approved",
            by: by.clone(),
            reason: reason.clone(),
            grant: grant_id.clone(),
            hold: id.to_string(),
        };
        let key = (
            pending.request.task.clone(),
            pending.request.policy.clone(),
            pending.request.rule.clone(),
        );
        if pending.answer.send(verdict).is_err() {
            // The request stopped waiting (timed out, withdrawn) just now.
            return Err(AnswerError::NotPending(id.to_string()));
        }
        tracing::info!(hold = %id, by = by.as_deref().unwrap_or("-"), "approved");
        let (Some(window), Some(grant_id)) = (grant_for, grant_id) else {
            return Ok(None);
        };
        inner.grants.insert(
            key.clone(),
            Grant {
                id: grant_id.clone(),
                hold: id.to_string(),
                by: by.clone(),
                reason: reason.clone(),
                until: Instant::now() + window,
            },
        );
        let covered: Vec<String> = inner
            .holds
            .iter()
            .filter(|(_, p)| {
                p.request.task == key.0 && p.request.policy == key.1 && p.request.rule == key.2
            })
            .map(|(other, _)| other.clone())
            .collect();
        for other in covered {
            if let Some(p) = inner.holds.remove(&other) {
                let _ = p.answer.send(Verdict {
                    approved: true,
                    outcome: "approved",
                    by: by.clone(),
                    reason: reason.clone(),
                    grant: Some(grant_id.clone()),
                    hold: id.to_string(),
                });
            }
        }
        Ok(Some(GrantView {
            id: grant_id,
            until: crate::audit::chain::rfc3339_millis(SystemTime::now() + window),
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

    fn withdraw(&self, id: &str) {
        self.lock().holds.remove(id);
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
    Some(format!("{prefix}-{}", crate::audit::chain::hex(&bytes)))
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
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn request(task: &str, rule: &str) -> HoldRequest {
        HoldRequest {
            task: task.into(),
            policy: "p".into(),
            rule: rule.into(),
            method: "PUT".into(),
            host: "api.test".into(),
            port: 443,
            path: "/merge".into(),
            body_bytes: 0,
            content_type: None,
            timeout: Duration::from_secs(60),
        }
    }

    fn registry(max: usize) -> Approvals {
        Approvals::new(max, std::env::temp_dir(), None)
    }

    #[tokio::test]
    async fn approve_and_deny_reach_the_waiting_ticket() {
        let approvals = registry(8);
        let mut ticket = approvals.hold(request("t1", "merge")).unwrap();
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

        let mut ticket = approvals.hold(request("t1", "merge")).unwrap();
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
        let a = approvals.hold(request("t1", "r")).unwrap();
        let _b = approvals.hold(request("t1", "r")).unwrap();
        assert!(approvals.hold(request("t1", "r")).is_err());
        let _other = approvals.hold(request("t2", "r")).unwrap();
        drop(a);
        assert_eq!(approvals.pending_count(), 2);
        let _c = approvals.hold(request("t1", "r")).unwrap();
    }

    #[tokio::test]
    async fn a_grant_covers_the_same_task_and_rule_only_and_releases_pending_ones() {
        let approvals = registry(8);
        let first = approvals.hold(request("t1", "merge")).unwrap();
        let mut second = approvals.hold(request("t1", "merge")).unwrap();
        let mut other_rule = approvals.hold(request("t1", "deploy")).unwrap();
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
        assert_eq!(verdict.hold, first.id());
        assert!(approvals.granted("t1", "p", "merge").is_some());
        assert!(approvals.granted("t2", "p", "merge").is_none());
        assert!(approvals.granted("t1", "p", "deploy").is_none());
        assert_eq!(approvals.pending().len(), 1, "the other rule still waits");
        let still = tokio::time::timeout(Duration::from_millis(50), other_rule.verdict()).await;
        assert!(still.is_err());
    }

    #[test]
    fn an_answer_that_races_a_timeout_wins_and_bad_answers_are_refused() {
        let approvals = registry(8);
        let ticket = approvals.hold(request("t1", "r")).unwrap();
        let id = ticket.id().to_string();
        approvals.approve(&id, Answer::default()).unwrap();
        let verdict = ticket.close(Verdict::ended(&id, "timeout", "late".into()));
        assert!(verdict.approved, "the operator's answer counts");

        let ticket = approvals.hold(request("t1", "r")).unwrap();
        let id = ticket.id().to_string();
        let verdict = ticket.close(Verdict::ended(&id, "timeout", "late".into()));
        assert_eq!(verdict.outcome, "timeout");
        assert!(matches!(
            approvals.approve(&id, Answer::default()),
            Err(AnswerError::NotPending(_))
        ));

        let _ticket = approvals.hold(request("t1", "r")).unwrap();
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
