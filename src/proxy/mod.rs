//! The proxy: serving a client connection, CONNECT handling, the per-request
//! pipeline, forwarding. (Its listeners start in [`crate::serve`].)

pub mod approval;
pub mod budget_cut;
pub mod budgets;
pub mod channel;
pub mod connect;
pub mod context;
pub mod decision;
pub mod destination;
pub mod exchange;
pub mod fdlimit;
pub mod forward;
pub mod front;
pub mod headers;
pub mod injection;
pub mod limits;
pub mod llm_usage;
pub mod metadata;
pub mod passthrough;
pub mod pipeline;
pub mod prefixed;
pub mod signing;
pub mod slots;
pub mod splice;
pub mod state;
pub mod throttle;
pub mod tools_list;
pub mod upstream;
pub mod ws_scrub;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest wait for a client's request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a TLS ClientHello and handshake inside a CONNECT tunnel.
pub const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for an upstream's response headers.
pub const UPSTREAM_RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// Concurrent HTTP/2 streams per intercepted client connection.
pub const H2_MAX_STREAMS: u32 = 100;
/// HTTP/2 PING interval towards clients, so dead peers do not hold connections.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long an HTTP/2 client has to answer a PING.
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest drain on shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (out of file descriptors and the like), so an
/// accept loop backs off instead of spinning.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves one client connection until it ends or shutdown asks it to finish its
/// in-flight requests. `both_versions`: HTTP/1.1 and h2 (intercepted TLS); else
/// HTTP/1.1 only (the proxy port).
pub async fn serve_with_shutdown<I, S>(
    io: I,
    service: S,
    shutdown: &CancellationToken,
    both_versions: bool,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<crate::body::ProxyBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if both_versions {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => log_conn_end(res.err().map(|e| e.to_string())),
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                log_conn_end(conn.await.err().map(|e| e.to_string()));
            }
        }
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(io, service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => log_conn_end(res.err().map(|e| e.to_string())),
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                log_conn_end(conn.await.err().map(|e| e.to_string()));
            }
        }
    }
}

fn log_conn_end(err: Option<String>) {
    if let Some(err) = err {
        tracing::debug!(error = %err, "client connection ended with an error");
    }
}
