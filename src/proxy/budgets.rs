//! The budget phase of the pipeline: a task whose budget is used up gets 429
//! `budget_exceeded` (no `Retry-After`: waiting does not help), checked before
//! the request goes out; otherwise the exchange is tied to the task's account,
//! which is charged the request when it goes upstream and its bytes when it
//! ends, so the request that crosses a limit finishes and the next is refused.

use super::context::RequestCtx;
use crate::budget::ledger::{Account, Limits, Meter};
use crate::error::{Reason, Refusal};
use crate::metrics::Counter;
use crate::policy::Policy;
use std::sync::Arc;

/// Refuses the request when a budget of its task is used up.
pub fn admit(ctx: &mut RequestCtx<'_>, policy: &Policy) -> Result<(), Refusal> {
    if policy.budgets.is_empty() {
        return Ok(());
    }
    let account = ctx.state.budgets.account(&ctx.task().id);
    if let Some(meter) = account.exceeded(&policy.budgets, &|_| false) {
        let limit = policy.budgets.get(meter).unwrap_or_default();
        return Err(Refusal::new(
            Reason::BudgetExceeded,
            format!(
                "the task's {} budget is used up ({} of {limit})",
                meter.name(),
                account.used(meter)
            ),
        ));
    }
    let counters = Meter::ALL
        .into_iter()
        .filter(|&m| policy.budgets.get(m).is_some())
        .map(|m| (m, ctx.state.metrics.budgets.counter(&policy.name, m.name())))
        .collect();
    ctx.log.charge_to(Arc::new(Metered { account, counters }));
    Ok(())
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
