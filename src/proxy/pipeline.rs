//! The path of one request. Authentication happened per connection (by the
//! caller); everything else happens here, per request, in this order:
//!
//! 1. the task is still current (407), the cluster's shared state is reachable
//!    (503, cluster mode only) and the audit trail can take records (503);
//! 2. the policy as loaded now, and a `max_concurrent` place ([`RequestCtx`];
//!    in cluster mode a cap the policy set is taken in phase 5's round trip);
//! 3. where the request goes ([`destination`]); a cloud metadata address is
//!    answered right there by the emulated service ([`metadata`]);
//! 4. the rule that decides ([`decision`]), reading the body first when a
//!    `jsonrpc` or `graphql` rule matches on it;
//! 5. the rule's rate limit ([`throttle`]: governor here, or Redis in cluster
//!    mode, which reads the task's budget use in the same round trip), then
//!    the task's budgets ([`budgets`]);
//! 6. an `approve` rule, or a used-up budget under `on_exceed: approve`: a
//!    grant, or a place among the holds ([`approval::admit`]);
//! 7. the placeholders it carries bound to the rule ([`injection::check`]);
//! 8. the operator's verdict, for a held request ([`approval::settle`]);
//! 9. secrets fetched and injected ([`injection::inject`]);
//! 10. the task checked once more, then upstream ([`forward`]), the response
//!     scrubbed as it streams back (and a `tools/list` answer narrowed to the
//!     rule's tools);
//! 11. the audit record: written before a refusal is sent, or when the
//!     response body ends ([`RequestCtx::respond`]).
//!
//! Every request inside an intercepted tunnel passes through here on its own;
//! the CONNECT decision never stands in for it.

use super::approval;
use super::budgets;
use super::context::{ConnCtx, RequestCtx};
use super::decision;
use super::destination;
use super::forward;
use super::injection;
use super::metadata;
use super::state::ProxyState;
use super::throttle;
use crate::body::{ProxyBody, RequestBody};
use crate::error::Refusal;
use http::{Request, Response};

/// Handles one request from an authenticated connection.
pub async fn handle_request(
    state: &ProxyState,
    conn: &ConnCtx,
    req: Request<RequestBody>,
) -> Response<ProxyBody> {
    let mut ctx = RequestCtx::new(state, conn, &req);
    let outcome = phases(&mut ctx, req).await;
    ctx.respond(outcome).await
}

async fn phases(
    ctx: &mut RequestCtx<'_>,
    req: Request<RequestBody>,
) -> Result<Response<ProxyBody>, Refusal> {
    // An ended task is told so (407) even while the audit trail refuses everything.
    ctx.ensure_current()?;
    ctx.state.ensure_cluster()?;
    ctx.state.audit.ensure_writable()?;
    let policy = ctx.current_policy()?;
    ctx.take_slot(&policy).await?;
    let target = destination::request_target(ctx, &req)?;
    // SECURITY: nothing for a metadata address is ever forwarded, whatever the rules say.
    if metadata::is_for_metadata(&target) {
        return Ok(metadata::answer(ctx, &policy, req).await);
    }
    let decided = decision::matching_rule(ctx, &policy, &target, req).await?;
    let rule = decided.rule;
    throttle::check(ctx, &policy, rule).await?;
    let over_budget = budgets::admit(ctx, &policy)?;
    let admission = approval::admit(ctx, &policy, rule, over_budget).await?;
    let request = (decided.parts, decided.body);
    let checked = injection::check(&policy, rule, &target, request, &ctx.state.sigv4_keys);
    let (parts, body, permit) = approval::within_deadline(admission.as_ref(), checked).await?;
    let body = approval::settle(ctx, &policy, rule, admission, &parts, body).await?;
    let (req, scrubber) = injection::inject(ctx, &policy, &target, (parts, body, permit)).await?;
    // Ended while this request was on its way (a held one above all)?
    ctx.ensure_current()?;
    ctx.state.ensure_cluster()?;
    ctx.let_through();
    ctx.log.charge_request();
    forward::send(ctx, &policy, req, &target, scrubber, decided.tools_filter).await
}
