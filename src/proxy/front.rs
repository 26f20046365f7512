//! The proxy port: authenticate the task, then CONNECT or absolute-form HTTP.

use super::body::ProxyBody;
use super::connect::handle_connect;
use super::pipeline::{handle_request, ConnCtx};
use super::state::ProxyState;
use crate::error::{Reason, Refusal};
use http::{header, Method, Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

/// Handles one request on the proxy listener.
pub async fn handle_front(
    state: Arc<ProxyState>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some(task) = state
        .tasks
        .authenticate(req.headers().get(header::PROXY_AUTHORIZATION), client.ip())
    else {
        tracing::info!(
            client = %client, method = %req.method(), target = %req.uri(), decision = %"deny",
            status = 407, "request: proxy authentication required"
        );
        return Refusal::new(
            Reason::ProxyAuthRequired,
            "proxy credentials are missing or wrong",
        )
        .into_response();
    };
    let Some(policy) = state.policies.get(&task.policy) else {
        return Refusal::new(
            Reason::NoRule,
            format!("policy {} is not loaded", task.policy),
        )
        .with_task(Some(&task.id))
        .into_response();
    };
    if req.method() == Method::CONNECT {
        return handle_connect(state.clone(), task, policy, client, req).await;
    }
    if req.uri().scheme().is_none() {
        return Refusal::new(
            Reason::BadRequest,
            "tollgate is a forward proxy: send absolute-form http:// URLs, or CONNECT for https",
        )
        .with_task(Some(&task.id))
        .into_response();
    }
    let conn = ConnCtx {
        task,
        policy,
        client,
        tunnel_target: None,
    };
    handle_request(&state, &conn, req).await
}
