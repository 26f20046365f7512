//! The proxy port: authenticate the task, then CONNECT or absolute-form HTTP.

use super::connect::handle_connect;
use super::context::ConnCtx;
use super::exchange::Exchange;
use super::pipeline::handle_request;
use super::state::ProxyState;
use crate::body::{ProxyBody, RequestBody};
use crate::error::{Reason, Refusal};
use crate::net::authority::{host_header, Authority, AuthorityError, PortRule};
use crate::policy::Scheme;
use crate::tasks::Task;
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
    serve_front(state, client, req.map(RequestBody::new), None).await
}

/// Handles one plain-HTTP request that arrived on `channel`'s own connection
/// (see [`super::channel`]): proxy-form requests must carry that task's
/// credentials; origin-form ones are transparent and belong to the channel's task.
pub async fn handle_channel_request(
    state: Arc<ProxyState>,
    channel: Arc<Task>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let req = req.map(RequestBody::new);
    if req.method() == Method::CONNECT || req.uri().scheme().is_some() {
        return serve_front(state, client, req, Some(&channel)).await;
    }
    transparent_http(state, channel, client, req).await
}

async fn serve_front(
    state: Arc<ProxyState>,
    client: SocketAddr,
    req: Request<RequestBody>,
    channel: Option<&Task>,
) -> Response<ProxyBody> {
    let authenticated = state
        .tasks
        .authenticate(req.headers().get(header::PROXY_AUTHORIZATION), client.ip())
        // SECURITY: on a task's channel only that task's credentials count, so a
        // token copied from another sandbox is useless here.
        .filter(|task| channel.is_none_or(|c| c.id == task.id));
    let Some(task) = authenticated else {
        return refuse_early(
            &state,
            client,
            &req,
            None,
            Refusal::new(
                Reason::ProxyAuthRequired,
                "proxy credentials are missing or wrong",
            ),
        )
        .await;
    };
    if let Err(unavailable) = state.ensure_cluster() {
        return refuse_early(&state, client, &req, Some(&task), unavailable.into()).await;
    }
    let Some(policy) = state.policies.current().get(&task.policy) else {
        let refusal = Refusal::new(
            Reason::NoRule,
            format!("policy {} is not loaded", task.policy),
        );
        return refuse_early(&state, client, &req, Some(&task), refusal).await;
    };
    if req.method() == Method::CONNECT {
        return handle_connect(state.clone(), task, policy, client, req).await;
    }
    if req.uri().scheme().is_none() {
        let refusal = Refusal::new(
            Reason::BadRequest,
            "tollgate is a forward proxy: send absolute-form http:// URLs, or CONNECT for https",
        );
        return refuse_early(&state, client, &req, Some(&task), refusal).await;
    }
    let conn = ConnCtx::new(task, policy, client, None);
    handle_request(&state, &conn, req).await
}

/// A request that ignored the proxy settings and was redirected here: the Host
/// header names the destination, the channel names the task.
async fn transparent_http(
    state: Arc<ProxyState>,
    task: Arc<Task>,
    client: SocketAddr,
    mut req: Request<RequestBody>,
) -> Response<ProxyBody> {
    if let Err(ended) = state.tasks.ensure_current(&task) {
        return refuse_early(&state, client, &req, None, ended.into()).await;
    }
    if let Err(unavailable) = state.ensure_cluster() {
        return refuse_early(&state, client, &req, Some(&task), unavailable.into()).await;
    }
    let Some(policy) = state.policies.current().get(&task.policy) else {
        let refusal = Refusal::new(
            Reason::NoRule,
            format!("policy {} is not loaded", task.policy),
        );
        return refuse_early(&state, client, &req, Some(&task), refusal).await;
    };
    // SECURITY: the Host header is the destination here, so it is parsed as
    // strictly as a CONNECT target: exactly one, naming one host and a valid port.
    let authority = host_header(req.headers()).and_then(|value| {
        let value = value.ok_or(AuthorityError::Empty)?;
        Authority::parse(value, PortRule::Default(Scheme::Http.default_port()))
    });
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let absolute = authority.and_then(|a| {
        format!("http://{a}{path}")
            .parse::<http::Uri>()
            .map_err(|_| AuthorityError::NotAuthorityForm)
    });
    let uri = match absolute {
        Ok(uri) => uri,
        Err(err) => {
            let refusal = Refusal::new(
                Reason::BadRequest,
                format!(
                    "the Host header of a request caught on port 80 {err}; it must name one host"
                ),
            );
            return refuse_early(&state, client, &req, Some(&task), refusal).await;
        }
    };
    *req.uri_mut() = uri;
    let conn = ConnCtx::new(task, policy, client, None);
    handle_request(&state, &conn, req).await
}

/// Refuses a request before it reaches a policy (no task, no policy, wrong form)
/// and audits it with what the request line says.
async fn refuse_early(
    state: &ProxyState,
    client: SocketAddr,
    req: &Request<RequestBody>,
    task: Option<&Task>,
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
    // What the request line names, if it parses; a malformed target is
    // recorded as no host rather than as the peer wrote it.
    let named = if req.method() == Method::CONNECT {
        Authority::from_connect_uri(req.uri()).ok()
    } else {
        let ports = PortRule::Default(if scheme == "https" { 443 } else { 80 });
        req.uri()
            .authority()
            .and_then(|a| Authority::parse(a.as_str(), ports).ok())
    };
    if let Some((host, port)) = named.map(Authority::into_parts) {
        record.host = host;
        record.port = port;
    }
    if req.method() != Method::CONNECT {
        record.path = req.uri().path().to_string();
        record.query = req.uri().query().map(str::to_string);
    }
    Exchange::new(state, record)
        .refuse(refusal.with_task(task.map(|t| t.id.as_str())))
        .await
}
