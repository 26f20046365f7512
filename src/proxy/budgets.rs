//! The budget phase of the pipeline: a task whose budget is used up gets 429
//! `budget_exceeded` (no `Retry-After`: waiting does not help), or, under
//! `on_exceed: approve`, waits for an operator; checked before the request
//! goes out. The exchange is tied to the task's account, which is charged the
//! request when it goes upstream, its bytes as they flow, and LLM usage when
//! the answer ends ([`super::llm_usage`]), so the request that crosses a limit
//! finishes (an upload crossing `bytes_up` excepted: it is cut) and the next
//! is refused. A passthrough tunnel is checked before it opens and charged
//! its bytes when it closes ([`admit_tunnel`]).

use super::context::RequestCtx;
use super::state::ProxyState;
use crate::budget::ledger::{Account, Limits, Meter};
use crate::error::{Reason, Refusal};
use crate::metrics::Counter;
use crate::policy::{OnExceed, Policy};
use std::sync::Arc;

/// Checks the task's budgets before the request goes out. A used-up budget
/// is 429 under `on_exceed: deny`; under `approve` its meter is returned and
/// the request is held ([`super::approval::admit`]), unless an operator's
/// `--for` grant lifts that budget now (the record then says so).
pub fn admit(ctx: &mut RequestCtx<'_>, policy: &Policy) -> Result<Option<Meter>, Refusal> {
    if policy.budgets.is_empty() {
        return Ok(None);
    }
    let task = &ctx.task().id;
    let account = ctx.state.budgets.account(task);
    let standing = standing(ctx.state, task, policy, &*account);
    ctx.log.record.budget = standing.meter.map(Meter::name);
    if let Some(verdict) = standing.lifted_by {
        ctx.log.record.approval = Some(verdict.audit());
    }
    match standing.exceeded {
        Some(meter) if policy.on_exceed == OnExceed::Deny => Err(used_up(policy, meter, &*account)),
        over => {
            let metered = metered(ctx.state, policy, account);
            ctx.log.charge_to(metered, policy.budgets.clone());
            Ok(over)
        }
    }
}

/// Checks the task's budgets before a passthrough tunnel opens: past a
/// used-up budget it is 429 whatever `on_exceed` says (a tunnel cannot wait
/// for an operator). Returns the account its bytes are charged to when it
/// closes (they are not cut as they flow: nothing in a tunnel is read).
pub async fn admit_tunnel(
    state: &ProxyState,
    task: &crate::tasks::Task,
    policy: &Policy,
) -> Result<Option<Arc<dyn Account>>, Refusal> {
    if policy.budgets.is_empty() {
        return Ok(None);
    }
    if let Some(cluster) = &state.cluster {
        crate::cluster::ledger::refresh(cluster, &*state.budgets, &task.id, task.expires_at)
            .await?;
    }
    let task = &task.id;
    let account = state.budgets.account(task);
    if let Some(meter) = standing(state, task, policy, &*account).exceeded {
        return Err(used_up(policy, meter, &*account));
    }
    Ok(Some(metered(state, policy, account)))
}

/// Where a task stands against its budgets before a request.
struct Standing {
    /// The used-up budget nothing lifts.
    exceeded: Option<Meter>,
    /// The budget the record names: the used-up one, or the one a grant lifts.
    meter: Option<Meter>,
    /// The grant that lifts a used-up budget, if one does.
    lifted_by: Option<crate::approvals::Verdict>,
}

fn standing(state: &ProxyState, task: &str, policy: &Policy, account: &dyn Account) -> Standing {
    let grant = |meter: Meter| {
        (policy.on_exceed == OnExceed::Approve)
            .then(|| {
                state
                    .approvals
                    .granted(task, &policy.name, &budget_key(policy, meter))
            })
            .flatten()
    };
    let exceeded = account.exceeded(&policy.budgets, &|meter| grant(meter).is_some());
    if exceeded.is_some() {
        return Standing {
            exceeded,
            meter: exceeded,
            lifted_by: None,
        };
    }
    let lifted = Meter::ALL.into_iter().find_map(|meter| {
        let limit = policy.budgets.get(meter)?;
        (account.used(meter) >= limit)
            .then(|| grant(meter).map(|verdict| (meter, verdict)))
            .flatten()
    });
    Standing {
        exceeded: None,
        meter: lifted.as_ref().map(|(meter, _)| *meter),
        lifted_by: lifted.map(|(_, verdict)| verdict),
    }
}

/// The 429 of a used-up budget.
fn used_up(policy: &Policy, meter: Meter, account: &dyn Account) -> Refusal {
    let limit = policy.budgets.get(meter).unwrap_or_default();
    Refusal::new(
        Reason::BudgetExceeded,
        format!(
            "the task's {} budget is used up ({} of {})",
            meter.name(),
            shown(meter, account.used(meter)),
            shown(meter, limit)
        ),
    )
}

/// What grants of a budget hold are keyed by: like a rule's key
/// ([`super::approval::rule_key`]), the policy file's digest, then the meter.
pub fn budget_key(policy: &Policy, meter: Meter) -> String {
    format!("{}:budget:{}", policy.digest, meter.name())
}

/// An amount as people read it: US dollars for `llm_usd`, else the count.
fn shown(meter: Meter, amount: u64) -> String {
    match meter {
        Meter::LlmMicroUsd => format!("${:.6}", amount as f64 / 1e6),
        _ => amount.to_string(),
    }
}

/// The task's account, with its charges summed per policy for `/metrics`.
fn metered(state: &ProxyState, policy: &Policy, account: Arc<dyn Account>) -> Arc<dyn Account> {
    let counters = Meter::ALL
        .into_iter()
        .filter(|&m| policy.budgets.get(m).is_some())
        .map(|m| (m, state.metrics.budgets.counter(&policy.name, m.name())))
        .collect();
    Arc::new(Metered { account, counters })
}

/// A task's account whose charges are also summed per policy for `/metrics`
/// (`tollgate_budget_used_total{policy,budget}`).
#[derive(Debug)]
struct Metered {
    account: Arc<dyn Account>,
    counters: Vec<(Meter, Counter)>,
}

impl Account for Metered {
    fn exceeded(&self, limits: &Limits, lifted: &dyn Fn(Meter) -> bool) -> Option<Meter> {
        self.account.exceeded(limits, lifted)
    }

    fn charge(&self, meter: Meter, amount: u64) {
        self.account.charge(meter, amount);
        if let Some((_, counter)) = self.counters.iter().find(|(m, _)| *m == meter) {
            counter.inc_by(amount);
        }
    }

    fn used(&self, meter: Meter) -> u64 {
        self.account.used(meter)
    }
}
