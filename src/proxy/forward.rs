//! The forward phase of the pipeline: the request goes to its upstream through
//! the pooled clients ([`super::upstream`]), and the response comes back through
//! the task's scrubber, and a `tools/list` answer through its narrowing
//! ([`super::tools_list`]).

use super::context::RequestCtx;
use super::destination::Target;
use super::llm_usage;
use crate::body::ProxyBody;
use crate::error::Refusal;
use crate::inject::Scrubber;
use crate::policy::Policy;
use http::{Request, Response};
use std::sync::Arc;

/// The forward phase of the pipeline: `req` to its target, the response
/// scrubbed as it streams back when the task has had secrets injected, and
/// narrowed to `tools_filter` when it answers `tools/list`, and read for LLM
/// usage when it comes from a host of the `llm` budgets.
pub async fn send(
    ctx: &RequestCtx<'_>,
    policy: &Policy,
    req: Request<ProxyBody>,
    target: &Target,
    scrubber: Option<Arc<Scrubber>>,
    tools_filter: Option<Vec<String>>,
) -> Result<Response<ProxyBody>, Refusal> {
    let state = ctx.state;
    let head = req.method() == http::Method::HEAD;
    let mut req = req;
    let metered = llm_usage::metered(policy, target);
    if tools_filter.is_some() || metered {
        // The answer is read, so it had better not come compressed.
        llm_usage::prepare(&mut req);
    }
    let response = state
        .upstream
        .forward(
            req,
            target.scheme,
            &target.authority(),
            &state.tracker,
            scrubber.clone(),
            (&state.task_ends, &ctx.conn.task),
        )
        .await?;
    let response = match scrubber {
        Some(scrubber) if head => crate::inject::scrub_head(response, &scrubber),
        Some(scrubber) => crate::inject::scrub_response(response, scrubber).await?,
        None => response,
    };
    let response = match tools_filter {
        Some(allowed) if !head => super::tools_list::narrow(response, allowed).await?,
        _ => response,
    };
    if metered && !head {
        return llm_usage::meter(ctx, policy, response).await;
    }
    Ok(response)
}
