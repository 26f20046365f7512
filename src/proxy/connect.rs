//! `CONNECT host:port`: refuse, pass through (`tunnel:` entries), or intercept TLS
//! and serve the requests inside one by one.

use super::body::{empty_body, ProxyBody};
use super::limits::MAX_TUNNELS_PER_TASK;
use super::passthrough::{splice_tunnel, TunnelOutcome};
use super::pipeline::{handle_request, ConnCtx};
use super::state::ProxyState;
use super::{serve_with_shutdown, CLIENT_HELLO_TIMEOUT};
use crate::error::{Reason, Refusal};
use crate::net::DialError;
use crate::policy::{normalize_host, ConnectDecision, Policy};
use crate::tasks::Task;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio_rustls::LazyConfigAcceptor;

/// Handles a CONNECT from an authenticated task.
pub async fn handle_connect(
    state: Arc<ProxyState>,
    task: Arc<Task>,
    policy: Arc<Policy>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let target = req
        .uri()
        .authority()
        .and_then(|a| Some((normalize_host(a.host())?, a.port_u16()?)))
        .filter(|(_, port)| *port != 0);
    let Some((host, port)) = target else {
        return refuse(
            &task,
            client,
            "-",
            0,
            Refusal::new(Reason::BadRequest, "CONNECT needs host:port"),
            started,
        );
    };
    let decision = policy.decide_connect(&host, port);
    let slot = match decision {
        ConnectDecision::NoRule => None,
        _ => match state.tunnel_slots.try_acquire(&task.id) {
            Some(slot) => Some(slot),
            None => {
                let mut refusal = Refusal::new(
                    Reason::RateLimited,
                    format!(
                        "task {} already holds {MAX_TUNNELS_PER_TASK} open tunnels",
                        task.id
                    ),
                );
                refusal.retry_after = Some(1);
                return refuse(&task, client, &host, port, refusal, started);
            }
        },
    };
    match decision {
        ConnectDecision::NoRule => refuse(
            &task,
            client,
            &host,
            port,
            Refusal::new(
                Reason::NoRule,
                format!(
                    "policy {} has no rule or tunnel for {host}:{port}",
                    policy.name
                ),
            ),
            started,
        ),
        ConnectDecision::Passthrough => match state.dialer.dial(&host, port).await {
            Err(err) => refuse(&task, client, &host, port, dial_refusal(&err), started),
            Ok(upstream) => {
                let on_upgrade = hyper::upgrade::on(req);
                let tracker = state.tracker.clone();
                tracker.spawn(async move {
                    let _slot = slot;
                    let outcome = match on_upgrade.await {
                        Ok(upgraded) => splice_tunnel(upgraded, upstream, &host).await,
                        Err(_) => TunnelOutcome::default(),
                    };
                    let decision = if outcome.refused_sni.is_some() { "deny" } else { "allow" };
                    tracing::info!(
                        task = %task.id, client = %client, method = %"CONNECT", host = %host, port,
                        decision = %decision, status = 200, bytes_up = outcome.bytes_up,
                        bytes_down = outcome.bytes_down, sni_refused = outcome.refused_sni.as_deref(),
                        duration_ms = started.elapsed().as_millis() as u64, "tunnel closed"
                    );
                });
                Response::new(empty_body())
            }
        },
        ConnectDecision::Intercept => {
            let on_upgrade = hyper::upgrade::on(req);
            let conn = Arc::new(ConnCtx {
                task,
                policy,
                client,
                tunnel_target: Some((host, port)),
            });
            let tracker = state.tracker.clone();
            tracker.spawn(async move {
                let _slot = slot;
                match on_upgrade.await {
                    Ok(upgraded) => intercept(state, conn, upgraded).await,
                    Err(err) => tracing::debug!(error = %err, "CONNECT upgrade failed"),
                }
            });
            Response::new(empty_body())
        }
    }
}

fn refuse(
    task: &Task,
    client: SocketAddr,
    host: &str,
    port: u16,
    refusal: Refusal,
    started: Instant,
) -> Response<ProxyBody> {
    let decision = refusal.reason.decision();
    let response = refusal.with_task(Some(&task.id)).into_response();
    tracing::info!(
        task = %task.id, client = %client, method = %"CONNECT", host = %host, port, decision = %decision,
        status = response.status().as_u16(), duration_ms = started.elapsed().as_millis() as u64, "request"
    );
    response
}

/// Maps a dial failure to its refusal.
pub fn dial_refusal(err: &DialError) -> Refusal {
    match err {
        DialError::PrivateDestination { .. } => {
            Refusal::new(Reason::PrivateDestination, err.to_string())
        }
        DialError::Timeout { .. } => Refusal::new(Reason::UpstreamTimeout, err.to_string()),
        _ => Refusal::new(Reason::UpstreamError, err.to_string()),
    }
}

/// Terminates the client's TLS with a minted certificate and serves HTTP/1.1 or
/// HTTP/2 (by ALPN) inside, each request through the pipeline.
async fn intercept(state: Arc<ProxyState>, conn: Arc<ConnCtx>, upgraded: Upgraded) {
    let acceptor =
        LazyConfigAcceptor::new(rustls::server::Acceptor::default(), TokioIo::new(upgraded));
    let start = match tokio::time::timeout(CLIENT_HELLO_TIMEOUT, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(err)) => {
            return tracing::debug!(task = %conn.task.id, error = %err, "no TLS ClientHello in tunnel")
        }
        Err(_) => return tracing::debug!(task = %conn.task.id, "ClientHello timed out"),
    };
    let Some((target_host, _)) = conn.tunnel_target.as_ref() else {
        return;
    };
    // SECURITY: the leaf names the CONNECT target, which a rule allowed. A client
    // sending another SNI gets a certificate it will not accept, instead of making
    // tollgate mint (and cache) certificates for arbitrary names. Only a CONNECT
    // to an IP literal takes its name from SNI.
    let sni = start.client_hello().server_name().and_then(normalize_host);
    let cert_host = match sni {
        Some(sni) if target_host.parse::<std::net::IpAddr>().is_ok() => sni,
        _ => target_host.clone(),
    };
    let config = match state.leaves.server_config(&cert_host).await {
        Ok(config) => config,
        Err(err) => {
            return tracing::warn!(task = %conn.task.id, error = %err, "certificate minting failed")
        }
    };
    let tls = match tokio::time::timeout(CLIENT_HELLO_TIMEOUT, start.into_stream(config)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            return tracing::debug!(task = %conn.task.id, error = %err, "client TLS handshake failed")
        }
        Err(_) => return tracing::debug!(task = %conn.task.id, "client TLS handshake timed out"),
    };
    let service_state = state.clone();
    let service = hyper::service::service_fn(move |req| {
        let state = service_state.clone();
        let conn = conn.clone();
        async move { Ok::<_, std::convert::Infallible>(handle_request(&state, &conn, req).await) }
    });
    serve_with_shutdown(TokioIo::new(tls), service, &state.shutdown, true).await;
}
