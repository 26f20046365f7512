//! How this replica takes part in a cluster: the channels it listens on and
//! what each message does here, ending a task on this replica (asked by
//! the admin API here, or by a revocation published by another replica),
//! answering holds here (asked by the admin API here, or by an answer another
//! replica forwarded), and withdrawing the holds of replicas that died.

use crate::approvals::{Answer, AnswerError, ApprovalOutcome, Decided, GrantRecord};
use crate::cluster::bus::{self, Subscription};
use crate::cluster::grants::{self, SharedGrant};
use crate::cluster::holds::{self, AnswerMessage, AnswerResult, SharedHold};
use crate::cluster::{keys, revocations, Cluster};
use crate::proxy::state::ProxyState;
use std::sync::Arc;
use std::time::Duration;

/// Ends task `id` (token expiring at `exp`) on this replica: its token stops
/// working, its tunnels and channel close, and what this replica obtained for
/// it (Vault leases, minted tokens) is revoked. Returns the number of leases
/// and minted tokens revoked.
pub async fn end_task_here(state: &ProxyState, id: &str, exp: u64) -> (usize, usize) {
    state.tasks.revoke(id, exp);
    state.task_ends.end(id, exp);
    let leases = state.secrets.end_task(id).await;
    let minted = state.minter.end_task(id).await;
    state.injected.forget(id);
    state.budgets.forget(id);
    (leases, minted)
}

/// Starts listening on the cluster's channels for `state`.
pub fn start_listening(state: &Arc<ProxyState>, cluster: &Arc<Cluster>) {
    let subscriptions = vec![
        revocation_subscription(state),
        answer_subscription(state, cluster),
        grant_subscription(state),
    ];
    tokio::spawn(bus::listen(
        cluster.clone(),
        subscriptions,
        state.shutdown.clone(),
    ));
    tokio::spawn(sweep_holds(Arc::downgrade(state), cluster.clone()));
}

/// Answers hold `id`, pending on this replica, exactly as the admin API
/// does in one process; in cluster mode a `--for` grant it makes is shared
/// with every replica before the answer counts as taken.
pub async fn answer_here(
    state: &ProxyState,
    id: &str,
    approve: bool,
    answer: Answer,
) -> AnswerResult {
    let by = answer.by.clone();
    let decided = if approve {
        state
            .approvals
            .approve(id, answer)
            .map(|grant| (Decided::approved(id, by, grant.clone()), grant))
    } else {
        state
            .approvals
            .deny(id, answer)
            .map(|()| (Decided::denied(id, by), None))
    };
    let (decided, grant) = match decided {
        Ok(done) => done,
        Err(AnswerError::NotPending(_)) => {
            return AnswerResult::NotPending {
                message: AnswerError::NotPending(id.to_string()).to_string(),
            }
        }
        Err(err) => {
            return AnswerResult::Invalid {
                message: err.to_string(),
            }
        }
    };
    let body = serde_json::json!(decided);
    let (Some(cluster), Some(grant)) = (&state.cluster, grant) else {
        return AnswerResult::Decided { body };
    };
    let Some(record) = state.approvals.grant_record(&grant.id) else {
        return AnswerResult::Decided { body };
    };
    let shared = SharedGrant {
        until_ms: holds::now_ms() + u64::try_from(record.left.as_millis()).unwrap_or(u64::MAX),
        task: record.task,
        policy: record.policy,
        rule_key: record.rule_key,
        id: record.id,
        hold: record.hold,
        by: record.by,
        reason: record.reason,
    };
    match grants::share(cluster, &shared).await {
        Ok(()) => AnswerResult::Decided { body },
        Err(err) => AnswerResult::Unavailable {
            message: format!(
                "{id} was approved, but its grant covers only the requests of this replica ({}): {err}",
                cluster.replica()
            ),
        },
    }
}

/// Answers forwarded by other replicas to the holds pending here.
fn answer_subscription(state: &Arc<ProxyState>, cluster: &Arc<Cluster>) -> Subscription {
    let state = Arc::downgrade(state);
    let me = cluster.replica().to_string();
    Subscription {
        channel: keys::ANSWER_CHANNEL,
        on_message: Arc::new(move |payload| {
            let Ok(message) = serde_json::from_str::<AnswerMessage>(payload) else {
                tracing::warn!("malformed answer message ignored");
                return;
            };
            if message.replica != me {
                return;
            }
            let Some(state) = state.upgrade() else {
                return;
            };
            tokio::spawn(async move {
                let result =
                    answer_here(&state, &message.hold, message.approve, message.answer).await;
                let Some(cluster) = &state.cluster else {
                    return;
                };
                if let Err(err) = holds::reply(cluster, &message.reply, &result).await {
                    tracing::warn!(hold = %message.hold, error = %err,
                        "answer applied; its outcome could not be left for the replica that took it");
                }
            });
        }),
        catch_up: None,
    }
}

/// Grants made on other replicas, adopted here.
fn grant_subscription(state: &Arc<ProxyState>) -> Subscription {
    let catch_state = Arc::downgrade(state);
    let state = Arc::downgrade(state);
    Subscription {
        channel: keys::GRANT_CHANNEL,
        on_message: Arc::new(move |payload| {
            let Some(grant) = grants::parse(payload) else {
                tracing::warn!("malformed grant message ignored");
                return;
            };
            let Some(state) = state.upgrade() else {
                return;
            };
            adopt(&state, grant);
        }),
        catch_up: Some(Arc::new(move |cluster| {
            let state = catch_state.clone();
            Box::pin(async move {
                let live = grants::current(&cluster).await?;
                if let Some(state) = state.upgrade() {
                    for grant in live {
                        adopt(&state, grant);
                    }
                }
                Ok(())
            })
        })),
    }
}

/// Takes in a grant another replica made.
fn adopt(state: &ProxyState, grant: SharedGrant) {
    let left = grant.until_ms.saturating_sub(holds::now_ms());
    state.approvals.adopt_grant(GrantRecord {
        task: grant.task,
        policy: grant.policy,
        rule_key: grant.rule_key,
        id: grant.id,
        hold: grant.hold,
        by: grant.by,
        reason: grant.reason,
        left: Duration::from_millis(left),
    });
}

/// Withdraws the holds whose lease ran out (their replica died or lost
/// Redis), each recorded in this replica's audit trail if it took it.
async fn sweep_holds(state: std::sync::Weak<ProxyState>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(holds::RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stop = match state.upgrade() {
            Some(state) => state.shutdown.clone(),
            None => return,
        };
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let taken = match holds::take_expired(&cluster).await {
            Ok(taken) => taken,
            Err(err) => {
                tracing::debug!(error = %err, "expired holds not swept");
                continue;
            }
        };
        let Some(state) = state.upgrade() else {
            return;
        };
        for (id, hold) in taken {
            withdrawn(&state, &id, hold.as_ref());
        }
    }
}

/// Records that hold `id` of another replica was withdrawn.
fn withdrawn(state: &ProxyState, id: &str, hold: Option<&SharedHold>) {
    let replica = hold.map_or("an unknown replica", |h| h.replica.as_str());
    tracing::warn!(hold = %id, replica, "hold withdrawn: its replica stopped renewing its lease");
    let Some(hold) = hold else {
        return;
    };
    let r = &hold.detail.view.summary;
    let client = hold
        .client
        .parse()
        .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let scheme = if r.scheme == "http" { "http" } else { "https" };
    let mut record = crate::audit::RequestRecord::new(client, &r.method, scheme);
    record.at = std::time::UNIX_EPOCH + Duration::from_millis(hold.since_ms);
    record.task = Some(r.task.clone());
    record.policy = Some(r.policy.clone());
    record.host = r.host.clone();
    record.port = r.port;
    record.path = r.path.clone();
    record.query = r.query.clone();
    record.rule = Some(r.rule.clone());
    record.decision = crate::error::Reason::ApprovalDenied.decision();
    record.reason = Some(crate::error::Reason::ApprovalDenied.as_str());
    record.duration_ms = holds::now_ms().saturating_sub(hold.since_ms);
    record.approval = Some(crate::audit::ApprovalInfo {
        id: Some(id.to_string()),
        outcome: ApprovalOutcome::LeaseExpired,
        by: None,
        reason: Some(format!(
            "withdrawn: replica {} holding it stopped renewing its lease",
            hold.replica
        )),
        grant: None,
    });
    state.audit.record(record);
}

/// Lists again every live task created through this replica's admin API
/// (cheap: a `SET` and a `ZADD` each, only on a (re)connection).
async fn relist_created(
    cluster: &Cluster,
    state: &ProxyState,
) -> Result<(), crate::cluster::ClusterUnavailable> {
    for info in state
        .created
        .live(crate::task_token::now_secs(), &state.tasks)
    {
        let text = serde_json::json!(info).to_string();
        crate::cluster::tasks::register(cluster, &info.id, &text, info.expires_at).await?;
    }
    Ok(())
}

fn revocation_subscription(state: &Arc<ProxyState>) -> Subscription {
    let on_state = Arc::downgrade(state);
    let catch_state = Arc::downgrade(state);
    Subscription {
        channel: crate::cluster::keys::REVOKE_CHANNEL,
        on_message: Arc::new(move |payload| {
            let Some((id, exp)) = revocations::parse(payload) else {
                tracing::warn!(payload, "malformed revocation message ignored");
                return;
            };
            let Some(state) = on_state.upgrade() else {
                return;
            };
            // Refused from this moment; the rest (revoking what this replica
            // obtained for the task) may take a round trip to an issuer.
            state.tasks.revoke(id, exp);
            state.task_ends.end(id, exp);
            let id = id.to_string();
            tokio::spawn(async move {
                let (leases, minted) = end_task_here(&state, &id, exp).await;
                tracing::info!(task = %id, leases, minted, "task ended by another replica");
            });
        }),
        catch_up: Some(Arc::new(move |cluster| {
            let state = catch_state.clone();
            Box::pin(async move {
                let revoked = revocations::current(&cluster).await?;
                if let Some(state) = state.upgrade() {
                    for (id, exp) in revoked {
                        state.tasks.revoke(&id, exp);
                        state.task_ends.end(&id, exp);
                    }
                    // A Redis that came back empty gets them back, and the
                    // tasks made here are listed again for every replica.
                    revocations::restore(&cluster, &state.tasks.revocations()).await?;
                    relist_created(&cluster, &state).await?;
                }
                Ok(())
            })
        })),
    }
}
