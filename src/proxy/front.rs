//! The proxy port: authenticate the task, then CONNECT or absolute-form HTTP.

use super::body::ProxyBody;
use super::connect::handle_connect;
use super::exchange::Exchange;
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
        return refuse_early(
            &state,
            client,
            &req,
            None,
            Refusal::new(
                Reason::ProxyAuthRequired,
                "proxy credentials are missing or wrong",
            ),
        );
    };
    let Some(policy) = state.policies.current().get(&task.policy) else {
        let refusal = Refusal::new(
            Reason::NoRule,
            format!("policy {} is not loaded", task.policy),
        );
        return refuse_early(&state, client, &req, Some(&task), refusal);
    };
    if req.method() == Method::CONNECT {
        return handle_connect(state.clone(), task, policy, client, req).await;
    }
    if req.uri().scheme().is_none() {
        let refusal = Refusal::new(
            Reason::BadRequest,
            "tollgate is a forward proxy: send absolute-form http:// URLs, or CONNECT for https",
        );
        return refuse_early(&state, client, &req, Some(&task), refusal);
    }
    let conn = ConnCtx {
        task,
        policy,
        client,
        tunnel_target: None,
    };
    handle_request(&state, &conn, req).await
}

/// Refuses a request before it reaches a policy (no task, no policy, wrong form)
/// and audits it with what the request line says.
fn refuse_early(
    state: &ProxyState,
    client: SocketAddr,
    req: &Request<Incoming>,
    task: Option<&crate::tasks::Task>,
    refusal: Refusal,
) -> Response<ProxyBody> {
    let scheme = if req.method() == Method::CONNECT || req.uri().scheme_str() == Some("https") {
        "https"
    } else {
        "http"
    };
    let mut record = crate::audit::RequestRecord::new(client, req.method().as_str(), scheme);
    record.task = task.map(|t| t.id.clone());
    record.policy = task.map(|t| t.policy.clone());
    if let Some(authority) = req.uri().authority() {
        record.host = authority.host().to_ascii_lowercase();
        record.port = authority
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
    }
    if req.method() != Method::CONNECT {
        record.path = req.uri().path().to_string();
        record.query = req.uri().query().map(str::to_string);
    }
    let mut exchange = Exchange::new(state.audit.clone(), record);
    let reason = refusal.reason;
    let response = refusal
        .with_task(task.map(|t| t.id.as_str()))
        .into_response();
    exchange.refused(reason, response.status().as_u16());
    response
}
