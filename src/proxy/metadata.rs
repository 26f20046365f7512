//! The metadata hook: a plain-http request for a cloud metadata address
//! (`169.254.169.254`, `metadata.google.internal`, port 80), proxied or caught
//! by the launcher's port-80 redirect, is answered by [`crate::metadata`] from
//! the task's policy. It is never matched against rules and never forwarded.

use super::context::RequestCtx;
use super::destination::Target;
use crate::body::{full_body, ProxyBody, RequestBody};
use crate::metadata::{credentials_expire, Ask, Caller, Flavor, Offer, Reply};
use crate::policy::{Policy, Scheme};
use http::{Request, Response};
use std::time::SystemTime;

/// Whether `target` is a metadata service's address.
pub fn is_for_metadata(target: &Target) -> bool {
    target.scheme == Scheme::Http && crate::metadata::is_metadata_target(&target.host, target.port)
}

/// The emulated service's answer to `req`. The request body is not read.
pub async fn answer(
    ctx: &mut RequestCtx<'_>,
    policy: &Policy,
    req: Request<RequestBody>,
) -> Response<ProxyBody> {
    let state = ctx.state;
    let offer = Offer::from_policy(policy);
    let (parts, _body) = req.into_parts();
    let identity = match (&offer.gcp, Flavor::of(parts.uri.path())) {
        (Some(account), Some(Flavor::Gcp)) => {
            state
                .metadata
                .gcp_identity(state.minter.keys(), account)
                .await
        }
        _ => None,
    };
    let now = SystemTime::now();
    let task = ctx.task();
    let caller = Caller {
        task: &task.id,
        now,
        expires: credentials_expire(now, task.time_left()),
    };
    let ask = Ask {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let reply = crate::metadata::answer(
        &offer,
        identity.as_ref(),
        &ask,
        &caller,
        state.metadata.sessions(),
    );
    // Answered here, whatever the status: nothing of it goes upstream.
    ctx.let_through();
    into_response(reply)
}

fn into_response(reply: Reply) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(reply.body));
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        response.headers_mut().append(name, value);
    }
    response
}
