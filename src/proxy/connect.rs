//! `CONNECT host:port`: refuse, pass through (`tunnel:` entries), or intercept TLS
//! and serve the requests inside one by one.

use super::context::ConnCtx;
use super::exchange::Exchange;
use super::limits::until_expiry;
use super::passthrough::{splice_tunnel, TunnelOutcome};
use super::pipeline::handle_request;
use super::state::ProxyState;
use super::{serve_with_shutdown, CLIENT_HELLO_TIMEOUT};
use crate::body::{empty_body, ProxyBody, RequestBody};
use crate::error::{Reason, Refusal};
use crate::net::{Authority, DialError};
use crate::policy::{normalize_host, ConnectDecision, Policy};
use crate::tasks::Task;
use http::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;

/// Handles a CONNECT from an authenticated task.
pub async fn handle_connect(
    state: Arc<ProxyState>,
    task: Arc<Task>,
    policy: Arc<Policy>,
    client: SocketAddr,
    req: Request<RequestBody>,
) -> Response<ProxyBody> {
    let (host, port) = match Authority::from_connect_uri(req.uri()) {
        Ok(target) => target.into_parts(),
        Err(err) => {
            return refuse(
                &state,
                &task,
                client,
                "",
                0,
                Refusal::new(
                    Reason::BadRequest,
                    format!("CONNECT needs host:port, and this target {err}"),
                ),
            )
            .await
        }
    };
    let admitted = match admit_tunnel(&state, &task, &policy, &host, port).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refuse(&state, &task, client, &host, port, refusal).await,
    };
    let on_upgrade = hyper::upgrade::on(req);
    let stream = async move { on_upgrade.await.ok().map(TokioIo::new) };
    spawn_tunnel(state, task, policy, client, (host, port), admitted, stream);
    Response::new(empty_body())
}

/// A tunnel that passed the policy, audit and concurrency checks.
#[derive(Debug)]
pub struct Admitted {
    kind: TunnelKind,
    slot: super::slots::Slot,
}

#[derive(Debug)]
enum TunnelKind {
    /// Dialled, with the budget account its bytes are charged to.
    Passthrough(
        tokio::net::TcpStream,
        Option<Arc<dyn crate::budget::ledger::Account>>,
    ),
    Intercept,
}

/// Decides a tunnel to `host:port` for `task`: refused (the caller audits the
/// refusal), passed through (upstream already dialled), or intercepted.
pub async fn admit_tunnel(
    state: &ProxyState,
    task: &Task,
    policy: &Policy,
    host: &str,
    port: u16,
) -> Result<Admitted, Refusal> {
    let decision = policy.decide_connect(host, port);
    if decision == ConnectDecision::NoRule {
        return Err(Refusal::new(
            Reason::NoRule,
            format!(
                "policy {} has no rule or tunnel for {host}:{port}",
                policy.name
            ),
        ));
    }
    if decision == ConnectDecision::Passthrough && state.audit.refusing() {
        return Err(Refusal::new(
            Reason::AuditUnavailable,
            "the audit trail cannot be written, so tollgate opens no tunnel until it can",
        ));
    }
    let slot = super::slots::take(state, super::slots::Kind::Tunnel, &task.id, policy).await?;
    let Some(slot) = slot else {
        let mut refusal = Refusal::new(
            Reason::RateLimited,
            format!(
                "task {} already holds {} open tunnels (max_concurrent)",
                task.id, policy.max_concurrent
            ),
        );
        refusal.retry_after = Some(1);
        return Err(refusal);
    };
    let kind = match decision {
        ConnectDecision::Passthrough => {
            let account = super::budgets::admit_tunnel(state, task, policy).await?;
            let upstream = state
                .dialer
                .dial(host, port)
                .await
                .map_err(|err| dial_refusal(&err))?;
            TunnelKind::Passthrough(upstream, account)
        }
        _ => TunnelKind::Intercept,
    };
    Ok(Admitted { kind, slot })
}

/// Runs an admitted tunnel in the background once `stream` yields the client's
/// bytes: spliced for passthrough (one audit record at close), or intercepted
/// and served request by request. Ending the task, or its expiry, closes it.
pub fn spawn_tunnel<S, F>(
    state: Arc<ProxyState>,
    task: Arc<Task>,
    policy: Arc<Policy>,
    client: SocketAddr,
    (host, port): (String, u16),
    admitted: Admitted,
    stream: F,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = Option<S>> + Send + 'static,
{
    let tracker = state.tracker.clone();
    let ended = state.task_ends.signal(&task.id, task.expires_at);
    let expired = until_expiry(task.time_left());
    let Admitted { kind, slot } = admitted;
    match kind {
        TunnelKind::Passthrough(upstream, account) => {
            let mut exchange = connect_exchange(&state, &task, client, &host, port);
            if let Some(account) = account {
                exchange.charge_to(account, policy.budgets.clone());
            }
            exchange.record.decision = crate::audit::Decision::Allow;
            exchange.record.status = 200;
            tracker.spawn(async move {
                let _slot = slot;
                let spliced = async {
                    match stream.await {
                        // The client has its 200 only once the upgrade went through.
                        Some(io) => {
                            exchange.answered();
                            splice_tunnel(io, upstream, &host).await
                        }
                        None => TunnelOutcome::default(),
                    }
                };
                let outcome = tokio::select! {
                    outcome = spliced => outcome,
                    _ = ended.cancelled() => {
                        tracing::info!(task = %task.id, host = %host, "tunnel closed: the task was ended");
                        TunnelOutcome::default()
                    }
                    () = expired => {
                        tracing::info!(task = %task.id, host = %host, "tunnel closed: the task expired");
                        TunnelOutcome::default()
                    }
                };
                exchange.add_up(outcome.bytes_up);
                exchange.add_down(outcome.bytes_down);
                if let Some(sni) = &outcome.refused_sni {
                    // The 200 was sent; the refusal happened inside the tunnel.
                    exchange.record.decision = crate::audit::Decision::Deny;
                    exchange.record.reason = Some("host_mismatch");
                    tracing::info!(task = %task.id, host = %host, sni = %sni, "tunnel cut: the ClientHello named another host");
                }
                drop(exchange); // writes the tunnel's record
            });
        }
        TunnelKind::Intercept => {
            let conn = Arc::new(ConnCtx::new(task, policy, client, Some((host, port))));
            tracker.spawn(async move {
                let _slot = slot;
                let task = conn.task.id.clone();
                let served = async {
                    match stream.await {
                        Some(io) => intercept(state, conn, io).await,
                        None => tracing::debug!("CONNECT upgrade failed"),
                    }
                };
                tokio::pin!(served);
                let why = tokio::select! {
                    () = &mut served => return,
                    _ = ended.cancelled() => "the task was ended",
                    () = expired => "the task expired",
                };
                // Requests in flight (held ones above all) are refused by now;
                // give those answers a moment to reach the client, then cut.
                let _ = tokio::time::timeout(TASK_END_GRACE, served).await;
                tracing::info!(task = %task, "tunnel closed: {why}");
            });
        }
    }
}

/// How long an intercepted tunnel of an ended task stays open for the answers
/// to requests already in flight (the 403 of a held request, say).
const TASK_END_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The audit record of a CONNECT (refused, or a passthrough tunnel).
fn connect_exchange(
    state: &ProxyState,
    task: &Task,
    client: SocketAddr,
    host: &str,
    port: u16,
) -> Exchange {
    let mut record = crate::audit::RequestRecord::new(client, "CONNECT", "https");
    record.task = Some(task.id.clone());
    record.policy = Some(task.policy.clone());
    record.host = host.to_string();
    record.port = port;
    Exchange::new(state, record)
}

/// Audits a refused tunnel (the record in the file first) and builds its response.
pub async fn refuse(
    state: &ProxyState,
    task: &Task,
    client: SocketAddr,
    host: &str,
    port: u16,
    refusal: Refusal,
) -> Response<ProxyBody> {
    connect_exchange(state, task, client, host, port)
        .refuse(refusal.with_task(Some(&task.id)))
        .await
}

/// Audits a refused connection that gets no response, only closed (TLS caught
/// without CONNECT): status 0.
pub async fn refuse_unanswered(
    state: &ProxyState,
    task: &Task,
    client: SocketAddr,
    (host, port): (&str, u16),
    refusal: Refusal,
) {
    tracing::info!(task = %task.id, host = %host, reason = %refusal.reason.as_str(), "connection closed: {}", refusal.message);
    connect_exchange(state, task, client, host, port)
        .refuse_unanswered(refusal.reason)
        .await;
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
async fn intercept<S>(state: Arc<ProxyState>, conn: Arc<ConnCtx>, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
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
        async move {
            Ok::<_, std::convert::Infallible>(
                handle_request(&state, &conn, req.map(RequestBody::new)).await,
            )
        }
    });
    serve_with_shutdown(TokioIo::new(tls), service, &state.shutdown, true).await;
}
