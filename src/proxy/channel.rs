//! Connections on a task's own channel: what the launcher's sandbox sends.
//!
//! The channel itself names the task (the sandbox cannot reach another task's
//! channel), so besides proxy-form requests carrying that task's credentials it
//! also serves programs that ignore `HTTPS_PROXY` and were redirected here:
//! TLS is told apart by its first byte and routed by SNI, as if it had been a
//! `CONNECT sni:443`; plain HTTP is routed by its Host header. The same policy,
//! limits, injection and audit apply as on the proxy port.

use super::connect::{admit_tunnel, refuse_unanswered, spawn_tunnel};
use super::front::handle_channel_request;
use super::passthrough::read_client_hello;
use super::prefixed::Prefixed;
use super::state::ProxyState;
use super::{serve_with_shutdown, CLIENT_HELLO_TIMEOUT};
use crate::error::{Reason, Refusal};
use crate::net::authority::parse_host;
use crate::tasks::Task;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// The port a redirected TLS connection is taken to have been for.
const TRANSPARENT_TLS_PORT: u16 = 443;

/// Serves one connection from `task`'s channel until it ends. `client` is the
/// sandbox-side peer address, for the audit trail.
pub async fn serve_channel<S>(
    state: Arc<ProxyState>,
    task: Arc<Task>,
    client: SocketAddr,
    mut io: S,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut first = Vec::with_capacity(2048);
    let sniffed =
        tokio::time::timeout(CLIENT_HELLO_TIMEOUT, read_client_hello(&mut io, &mut first)).await;
    match sniffed {
        Ok(Ok(Some(sni))) => {
            transparent_tls(state, task, client, sni, Prefixed::new(first, io)).await
        }
        Ok(Ok(None)) => {
            let io = TokioIo::new(Prefixed::new(first, io));
            let service_state = state.clone();
            let service = hyper::service::service_fn(move |req| {
                let state = service_state.clone();
                let task = task.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        handle_channel_request(state, task, client, req).await,
                    )
                }
            });
            serve_with_shutdown(io, service, &state.shutdown, false).await;
        }
        Ok(Err(err)) => {
            tracing::debug!(task = %task.id, error = %err, "channel connection ended before its first request")
        }
        Err(_) => tracing::debug!(task = %task.id, "channel connection sent nothing in time"),
    }
}

/// TLS that did not go through `CONNECT`: the ClientHello's SNI is the destination.
async fn transparent_tls<S>(
    state: Arc<ProxyState>,
    task: Arc<Task>,
    client: SocketAddr,
    sni: Option<String>,
    io: Prefixed<S>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if !state.tasks.is_current(&task) {
        return tracing::info!(task = %task.id, "channel connection refused: the task has ended");
    }
    let host = sni.as_deref().and_then(|name| parse_host(name).ok());
    let port = TRANSPARENT_TLS_PORT;
    let Some(host) = host else {
        let refusal = Refusal::new(
            Reason::BadRequest,
            "TLS without SNI cannot be routed: tollgate needs the server name",
        );
        refuse_unanswered(&state, &task, client, ("", port), refusal).await;
        return;
    };
    let Some(policy) = state.policies.current().get(&task.policy) else {
        let refusal = Refusal::new(
            Reason::NoRule,
            format!("policy {} is not loaded", task.policy),
        );
        refuse_unanswered(&state, &task, client, (&host, port), refusal).await;
        return;
    };
    match admit_tunnel(&state, &task, &policy, &host, port).await {
        // No HTTP response can be sent inside a TLS handshake: the refusal is
        // audited and the connection closed.
        Err(refusal) => refuse_unanswered(&state, &task, client, (&host, port), refusal).await,
        Ok(admitted) => spawn_tunnel(
            state,
            task,
            policy,
            client,
            (host, port),
            admitted,
            std::future::ready(Some(io)),
        ),
    }
}
