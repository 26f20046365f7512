//! Sending an allowed request upstream over a pooled, verified connection, and
//! splicing WebSocket upgrades.

use super::budget_cut::BudgetCut;
use super::headers::{
    is_websocket_upgrade, set_websocket_upgrade, strip_hop_by_hop, websocket_accept,
};
use super::limits::TaskEnds;
use super::splice::{splice, SpliceDone, SPLICE_IDLE_TIMEOUT};
use super::ws_scrub::splice_scrubbed;
use super::UPSTREAM_RESPONSE_TIMEOUT;
use crate::body::{empty_body, stream_body, ProxyBody};
use crate::error::{Reason, Refusal};
use crate::inject::Scrubber;
use crate::net::{find_dial_error, DialError, Dialer};
use crate::policy::Scheme;
use crate::tasks::Task;
use http::{header, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type UpstreamClient = Client<BoundedConnect, ProxyBody>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bounds a whole upstream connect, TCP and TLS handshake together, by
/// `upstream.connect_timeout`, so an upstream that accepts and then stalls the
/// handshake answers 504 instead of holding the request.
#[derive(Clone, Debug)]
pub struct BoundedConnect {
    inner: HttpsConnector<Dialer>,
    limit: Duration,
}

impl tower_service::Service<Uri> for BoundedConnect {
    type Response = <HttpsConnector<Dialer> as tower_service::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = uri.host().unwrap_or_default().to_string();
        let connect = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connect).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(DialError::Timeout { host }) as BoxError),
            }
        })
    }
}

/// `scheme://authority` followed by the request's own path and query, which
/// is reused as it was parsed.
fn upstream_uri(uri: &Uri, scheme: Scheme, authority: &str) -> Option<Uri> {
    let path_and_query = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let scheme = match scheme {
        Scheme::Https => http::uri::Scheme::HTTPS,
        Scheme::Http => http::uri::Scheme::HTTP,
    };
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .ok()
}

/// Pooled upstream clients: one negotiating h2 or HTTP/1.1 by ALPN, one HTTP/1.1
/// only for upgrades (WebSocket over h2 is a different protocol).
#[derive(Clone, Debug)]
pub struct Upstream {
    any_version: UpstreamClient,
    http1_only: UpstreamClient,
}

/// Idle pooled connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Upstream {
    /// Clients that dial through `dialer` and verify with `tls`.
    pub fn new(dialer: Dialer, tls: rustls::ClientConfig) -> Self {
        let build = |h2: bool| {
            let builder = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
                .enable_http1();
            let inner = if h2 {
                builder.enable_http2().wrap_connector(dialer.clone())
            } else {
                builder.wrap_connector(dialer.clone())
            };
            let connector = BoundedConnect {
                inner,
                limit: dialer.connect_timeout(),
            };
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .build(connector)
        };
        Self {
            any_version: build(true),
            http1_only: build(false),
        }
    }

    /// Forwards `req` to `scheme://authority` and returns the upstream response
    /// with hop-by-hop headers removed. The body streams both ways.
    pub async fn forward(
        &self,
        mut req: Request<ProxyBody>,
        scheme: Scheme,
        authority: &str,
        tracker: &TaskTracker,
        scrubber: Option<Arc<Scrubber>>,
        task: (&TaskEnds, &Task),
    ) -> Result<Response<ProxyBody>, Refusal> {
        let client_version = req.version();
        let websocket = client_version == Version::HTTP_11 && is_websocket_upgrade(req.headers());
        // What a genuine WebSocket server must answer; `None` refuses any 101.
        let expected_accept = websocket
            .then(|| req.headers().get(header::SEC_WEBSOCKET_KEY))
            .flatten()
            .map(|key| websocket_accept(key.as_bytes()));
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let cutoff = req
            .extensions()
            .get::<crate::sigv4::body::Cutoff>()
            .cloned();
        let budget_cut = req.extensions().get::<BudgetCut>().cloned();
        let (mut parts, body) = req.into_parts();
        parts.uri = upstream_uri(&parts.uri, scheme, authority).ok_or_else(|| {
            Refusal::new(Reason::BadRequest, "the request target is not a valid URI")
        })?;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        parts.version = Version::HTTP_11;
        if websocket {
            set_websocket_upgrade(&mut parts.headers);
            if scrubber.is_some() {
                // Frames must be scrubbed, so they must not be compressed.
                parts.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
            }
        }
        let upstream_req = Request::from_parts(parts, body);
        // An HTTP/1.x client gets an HTTP/1.1 upstream: it needs nothing h2
        // offers, and h2's framing, HPACK and connection task cost more CPU per
        // request than a pooled HTTP/1.1 connection. h2 clients keep h2 (gRPC).
        let client = if websocket || client_version != Version::HTTP_2 {
            &self.http1_only
        } else {
            &self.any_version
        };
        let response =
            match tokio::time::timeout(UPSTREAM_RESPONSE_TIMEOUT, client.request(upstream_req))
                .await
            {
                Err(_) => {
                    return Err(Refusal::new(
                        Reason::UpstreamTimeout,
                        format!("{authority} did not answer in time"),
                    ))
                }
                Ok(Err(err)) => {
                    // A signed body cut off on its way: the request never
                    // completed upstream, and it was the client's doing.
                    if let Some(why) = cutoff.as_ref().and_then(|c| c.reason()) {
                        return Err(Refusal::new(Reason::BadRequest, why));
                    }
                    if let Some(why) = budget_cut.as_ref().and_then(|c| c.reason()) {
                        return Err(Refusal::new(Reason::BudgetExceeded, why));
                    }
                    return Err(upstream_refusal(&err, authority));
                }
                Ok(Ok(response)) => response,
            };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let (ends, task) = task;
            let lifetime = (ends.signal(&task.id, task.expires_at), task.time_left());
            return splice_websocket(
                response,
                client_upgrade,
                expected_accept,
                tracker,
                scrubber,
                lifetime,
            );
        }

        let (mut parts, body) = response.into_parts();
        let body =
            crate::inject::decode::remove_transfer_codings(&mut parts.headers, stream_body(body))
                .await?;
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body))
    }
}

/// Accepts an upstream 101 only if it completes the WebSocket handshake that was
/// asked for, then splices client and upstream both ways.
///
/// SECURITY: a 101 turns the connection into a raw byte stream that no rule sees
/// again. Any other switch (or a forged one without the right
/// `Sec-WebSocket-Accept`) would let a client smuggle unchecked requests through.
fn splice_websocket(
    mut response: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    expected_accept: Option<String>,
    tracker: &TaskTracker,
    scrubber: Option<Arc<Scrubber>>,
    (ended, time_left): (Arc<CancellationToken>, Option<std::time::Duration>),
) -> Result<Response<ProxyBody>, Refusal> {
    let is_websocket = response
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    let accept_ok = match (
        &expected_accept,
        response.headers().get(header::SEC_WEBSOCKET_ACCEPT),
    ) {
        (Some(expected), Some(got)) => got.as_bytes() == expected.as_bytes(),
        _ => false,
    };
    let Some(client_upgrade) = client_upgrade.filter(|_| is_websocket && accept_ok) else {
        return Err(Refusal::new(
            Reason::UpstreamError,
            "the upstream switched protocols without completing the WebSocket handshake that was asked for",
        ));
    };
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tracker.spawn(async move {
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((client_io, upstream_io)) => {
                let (client_io, upstream_io) = (TokioIo::new(client_io), TokioIo::new(upstream_io));
                let spliced = async {
                    match scrubber {
                        Some(scrubber) => {
                            splice_scrubbed(client_io, upstream_io, scrubber, SPLICE_IDLE_TIMEOUT)
                                .await
                        }
                        None => splice(client_io, upstream_io, SPLICE_IDLE_TIMEOUT).await,
                    }
                };
                // A session lives no longer than its task: ending the task (or its
                // expiry) closes it, approved WebSockets included.
                let (up, down) = tokio::select! {
                    moved = spliced => moved,
                    () = ended.cancelled() => {
                        tracing::info!("websocket closed: the task was ended");
                        (0, 0)
                    }
                    () = super::limits::until_expiry(time_left) => {
                        tracing::info!("websocket closed: the task expired");
                        (0, 0)
                    }
                };
                tracing::debug!(bytes_up = up, bytes_down = down, "websocket closed");
                let _ = done_tx.send((up, down));
            }
            Err(err) => tracing::debug!(error = %err, "websocket upgrade failed"),
        }
    });
    let (mut parts, _) = response.into_parts();
    parts
        .extensions
        .insert(SpliceDone(Arc::new(std::sync::Mutex::new(Some(done_rx)))));
    strip_hop_by_hop(&mut parts.headers);
    set_websocket_upgrade(&mut parts.headers);
    Ok(Response::from_parts(parts, empty_body()))
}

/// Maps a client error to the refusal of DESIGN.md: a refused private address is
/// 403, a timeout 504, anything else (including TLS verification) 502.
fn upstream_refusal(err: &hyper_util::client::legacy::Error, authority: &str) -> Refusal {
    match find_dial_error(err) {
        Some(DialError::PrivateDestination { .. }) => Refusal::new(
            Reason::PrivateDestination,
            format!("{authority} resolves to a private address"),
        ),
        Some(DialError::Timeout { .. }) => Refusal::new(
            Reason::UpstreamTimeout,
            format!("connecting to {authority} timed out"),
        ),
        Some(other) => Refusal::new(Reason::UpstreamError, other.to_string()),
        None => {
            let mut detail = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(s) = source {
                detail = format!("{detail}: {s}");
                source = s.source();
            }
            Refusal::new(
                Reason::UpstreamError,
                format!("upstream {authority} failed: {detail}"),
            )
        }
    }
}

#[cfg(test)]
mod uri_tests {
    use super::*;

    #[test]
    fn upstream_uris_keep_the_path_and_query_and_take_the_authority() {
        let origin: Uri = "/a/b%2F?x=1&y".parse().unwrap();
        let uri = upstream_uri(&origin, Scheme::Https, "api.test").unwrap();
        assert_eq!(uri.to_string(), "https://api.test/a/b%2F?x=1&y");
        let absolute: Uri = "http://other.test:8080/p".parse().unwrap();
        let uri = upstream_uri(&absolute, Scheme::Http, "[::1]:8080").unwrap();
        assert_eq!(uri.to_string(), "http://[::1]:8080/p");
        let bare: Uri = "http://a.test".parse().unwrap();
        assert_eq!(
            upstream_uri(&bare, Scheme::Http, "a.test")
                .unwrap()
                .to_string(),
            "http://a.test/"
        );
        assert!(upstream_uri(&origin, Scheme::Http, "a b").is_none());
    }
}
