//! The budget phase of the pipeline: a task whose budget is used up gets 429
//! `budget_exceeded` (no `Retry-After`: waiting does not help), checked before
//! the request goes out; otherwise the exchange is tied to the task's account,
//! which is charged the request when it goes upstream and its bytes when it
//! ends, so the request that crosses a limit finishes and the next is refused.

use super::context::RequestCtx;
use crate::error::{Reason, Refusal};
use crate::policy::Policy;

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
    ctx.log.charge_to(account);
    Ok(())
}
