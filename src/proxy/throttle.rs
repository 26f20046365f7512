//! Phase 5's shared checks: the rule's rate limit (429 `rate_limited` with
//! `Retry-After`), kept by governor in this process or, in cluster mode, by
//! one script in Redis ([`crate::cluster::rate`]). In cluster mode the task's
//! budget use is read in the same round trip, when its policy has budgets,
//! so that [`super::budgets::admit`] checks the fleet's numbers.

use super::context::RequestCtx;
use crate::cluster::{ledger, rate, scripts, Cluster};
use crate::error::Refusal;
use crate::policy::{Policy, Rule};

/// Takes the request from the task's rate limits under `rule`, and in
/// cluster mode brings its budget account up to date. Any Redis error is
/// 503 `cluster_unavailable`: no limit is ever skipped.
pub async fn check(ctx: &RequestCtx<'_>, policy: &Policy, rule: &Rule) -> Result<(), Refusal> {
    match &ctx.state.cluster {
        None => Ok(ctx
            .state
            .rate_limits
            .current()
            .check(policy, rule, &ctx.task().id)?),
        Some(cluster) => check_shared(ctx, cluster, policy, rule).await,
    }
}

async fn check_shared(
    ctx: &RequestCtx<'_>,
    cluster: &Cluster,
    policy: &Policy,
    rule: &Rule,
) -> Result<(), Refusal> {
    let task = ctx.task();
    let buckets = rate::buckets(policy, rule, &task.id);
    let budgets = !policy.budgets.is_empty();
    if buckets.is_empty() && !budgets {
        return Ok(());
    }
    // One round trip: the rate script, then the budget read.
    let mut pipe = redis::pipe();
    if !buckets.is_empty() {
        pipe.add_command(rate::command(&buckets));
    }
    if budgets {
        pipe.add_command(ledger::read(&task.id));
    }
    let mut answers: Vec<redis::Value> =
        scripts::query::<Vec<redis::Value>>(cluster, &pipe, &[&rate::SCRIPT])
            .await
            .map_err(Refusal::from)?
            .into_iter()
            .rev()
            .collect();
    if !buckets.is_empty() {
        let verdict = answers
            .pop()
            .and_then(|v| redis::from_redis_value_ref::<(i64, i64)>(&v).ok())
            .ok_or_else(|| unreadable("rate limit"))?;
        rate::verdict(&buckets, verdict)?;
    }
    if budgets {
        let fields = answers
            .pop()
            .and_then(|v| redis::from_redis_value_ref::<Vec<Option<u64>>>(&v).ok())
            .ok_or_else(|| unreadable("budget"))?;
        ctx.state
            .budgets
            .observe(&task.id, task.expires_at, &ledger::totals(&fields));
    }
    Ok(())
}

fn unreadable(what: &str) -> Refusal {
    crate::cluster::ClusterUnavailable(format!("unreadable {what} answer from Redis")).into()
}
