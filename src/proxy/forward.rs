//! The forward phase of the pipeline: the request goes to its upstream through
//! the pooled clients ([`super::upstream`]), and the response comes back through
//! the task's scrubber.

use super::context::RequestCtx;
use super::destination::Target;
use crate::body::ProxyBody;
use crate::error::Refusal;
use crate::inject::Scrubber;
use http::{Request, Response};
use std::sync::Arc;

/// The forward phase of the pipeline: `req` to its target, the response
/// scrubbed as it streams back when the task has had secrets injected.
pub async fn send(
    ctx: &RequestCtx<'_>,
    req: Request<ProxyBody>,
    target: &Target,
    scrubber: Option<Arc<Scrubber>>,
) -> Result<Response<ProxyBody>, Refusal> {
    let state = ctx.state;
    let head = req.method() == http::Method::HEAD;
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
    match scrubber {
        Some(scrubber) if head => Ok(crate::inject::scrub_head(response, &scrubber)),
        Some(scrubber) => crate::inject::scrub_response(response, scrubber).await,
        None => Ok(response),
    }
}
