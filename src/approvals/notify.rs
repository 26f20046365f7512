//! Webhook notifications of held requests.
//!
//! When a request is held for approval, every URL in `approvals.notify` receives
//! one JSON `POST`: a Slack-compatible one-line `text` plus the structured fields
//! of the hold (see [`Notice`]). Delivery happens in spawned tasks and never
//! blocks or slows the held request: each (notice, URL) pair is tried with a
//! 10 s timeout and retried on connect errors, timeouts, 5xx, 408 and 429 with an
//! exponential backoff (1 s, 2 s, 4 s, 8 s, 16 s: at most 6 attempts). Any other
//! answer outside 2xx gives up at once. Each URL has its own budget of 64
//! deliveries in flight (retries and backoff waits included), so a slow or
//! blackholed receiver cannot starve the others; beyond it, new deliveries to
//! that URL are dropped. Give-ups and drops (over all URLs) are counted in
//! [`Notifier::failed`].
//!
//! The message never contains a secret: the path and query are in placeholder
//! form as the sandbox sent them, and `approve_url` / `deny_url` need the admin Bearer token,
//! which is not included. Webhook URLs themselves often carry a secret (Slack's
//! do, in the path), so logs name only their scheme, host and port.

use crate::audit::remote::error_chain;
use crate::text::rfc3339_millis;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

/// Default time allowed for one attempt (connect, send, response headers), and
/// again for reading the answer's body.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries after the first attempt; the n-th waits `backoff_base * 2^(n-1)`.
const RETRIES: u32 = 5;
/// Default backoff base: waits of 1, 2, 4, 8 and 16 s.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Deliveries (attempts and backoff waits included) in flight at once, per URL.
const MAX_IN_FLIGHT_PER_URL: usize = 64;
/// How much of a receiver's answer is read (and then discarded).
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Longest rendering of one interpolated value in `text`, in characters (the
/// structured fields always hold the full value).
const MAX_TEXT_VALUE_CHARS: usize = 1000;
/// A URL in `text` longer than [`MAX_TEXT_VALUE_CHARS`] keeps this many leading
/// characters...
const URL_HEAD_CHARS: usize = 600;
/// ...and this many trailing ones, with `…` between: the end of a long path or
/// query (often where the operation is) stays in sight.
const URL_TAIL_CHARS: usize = 300;

/// What a notification says about one held request (never a secret value: the
/// path and query are in placeholder form as the sandbox sent them).
#[derive(Debug, Clone)]
pub struct Notice {
    /// The hold id, e.g. `a-1f2e3d4c5b6a7980`.
    pub id: String,
    /// The task whose request is held.
    pub task: String,
    /// The task's policy.
    pub policy: String,
    /// The `action: approve` rule that matched.
    pub rule: String,
    /// The request method.
    pub method: String,
    /// `https` or `http`, as the proxy saw the request.
    pub scheme: String,
    /// The upstream host.
    pub host: String,
    /// The upstream port.
    pub port: u16,
    /// The request path (without the query), in placeholder form.
    pub path: String,
    /// The query string without `?`, in placeholder form; `None` when the
    /// request had none.
    pub query: Option<String>,
    /// When the request was held.
    pub since: SystemTime,
    /// When the hold times out (and the request is denied).
    pub expires_at: SystemTime,
    /// Size of the request body in bytes.
    pub body_bytes: u64,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
}

/// One configured webhook.
struct Target {
    uri: Uri,
    /// Scheme, host and port only: safe to log.
    origin: String,
    /// This URL's budget of deliveries in flight.
    permits: Arc<Semaphore>,
}

/// Sends [`Notice`]s to the `approvals.notify` webhooks.
pub struct Notifier {
    client: crate::tls::client::HttpsClient,
    targets: Vec<Arc<Target>>,
    admin_base: OnceLock<String>,
    failed: Arc<AtomicU64>,
    backoff_base: Duration,
    attempt_timeout: Duration,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Webhook URLs may embed a secret: show only how many there are.
        f.debug_struct("Notifier")
            .field("urls", &self.targets.len())
            .field("admin_base_set", &self.admin_base.get().is_some())
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Builds a notifier for `urls` (from config: `http://` or `https://`);
    /// `tls` is the client config tollgate already uses for upstreams (system or
    /// webpki roots plus `upstream.extra_roots`). With no URLs, notifications are
    /// no-ops.
    pub fn new(urls: &[String], tls: &rustls::ClientConfig) -> Result<Notifier, String> {
        let mut targets = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let uri: Uri = url
                .parse()
                .map_err(|_| format!("approvals.notify[{i}] is not a valid URL"))?;
            let scheme = match uri.scheme_str() {
                Some(s @ ("http" | "https")) => s.to_string(),
                _ => {
                    return Err(format!(
                        "approvals.notify[{i}] must be an http:// or https:// URL"
                    ))
                }
            };
            let Some(host) = uri.host() else {
                return Err(format!("approvals.notify[{i}] has no host"));
            };
            let origin = match uri.port_u16() {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            };
            targets.push(Arc::new(Target {
                uri,
                origin,
                permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_URL)),
            }));
        }
        let client = crate::tls::client::https_client(tls, ATTEMPT_TIMEOUT);
        Ok(Notifier {
            client,
            targets,
            admin_base: OnceLock::new(),
            failed: Arc::new(AtomicU64::new(0)),
            backoff_base: BACKOFF_BASE,
            attempt_timeout: ATTEMPT_TIMEOUT,
        })
    }

    /// Sets the admin API base URL, e.g. `http://127.0.0.1:3129`, once the admin
    /// listener is bound; notices then carry `approve_url` and `deny_url`. May
    /// never be called (admin API on a unix socket, or an in-process run); only
    /// the first call has an effect.
    pub fn set_admin_base(&self, base: String) {
        let base = base.trim_end_matches('/').to_string();
        if self.admin_base.set(base).is_err() {
            debug!("approval notifier: admin base already set; later value ignored");
        }
    }

    /// Queues delivery of `notice` to every URL and returns at once (never waits
    /// on the network). Must be called from within a tokio runtime; outside one,
    /// the notice is dropped and counted as failed.
    pub fn notify(&self, notice: Notice) {
        if self.targets.is_empty() {
            return;
        }
        let body = Bytes::from(render_body(
            &notice,
            self.admin_base.get().map(String::as_str),
        ));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let n = self.targets.len() as u64;
            self.failed.fetch_add(n, Ordering::Relaxed);
            warn!(id = %notice.id, "approval notification dropped: no async runtime");
            return;
        };
        for target in &self.targets {
            let Ok(permit) = target.permits.clone().try_acquire_owned() else {
                self.failed.fetch_add(1, Ordering::Relaxed);
                warn!(
                    id = %notice.id,
                    url = %target.origin,
                    "approval notification dropped: too many deliveries to this URL already in flight"
                );
                continue;
            };
            let delivery = Delivery {
                client: self.client.clone(),
                target: target.clone(),
                body: body.clone(),
                id: notice.id.clone(),
                failed: self.failed.clone(),
                backoff_base: self.backoff_base,
                attempt_timeout: self.attempt_timeout,
                _permit: permit,
            };
            runtime.spawn(delivery.run());
        }
    }

    /// Notifications given up, over all URLs: after all retries, after an answer
    /// that is not worth retrying, or dropped because too many to their URL were
    /// in flight.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Shrinks the backoff base (tests).
    #[cfg(test)]
    fn with_backoff_base(mut self, base: Duration) -> Notifier {
        self.backoff_base = base;
        self
    }

    /// Shrinks the time allowed for one attempt (tests).
    #[cfg(test)]
    fn with_attempt_timeout(mut self, timeout: Duration) -> Notifier {
        self.attempt_timeout = timeout;
        self
    }

    /// Caps deliveries in flight per URL lower (tests).
    #[cfg(test)]
    fn with_max_in_flight(mut self, max: usize) -> Notifier {
        for target in &mut self.targets {
            *target = Arc::new(Target {
                uri: target.uri.clone(),
                origin: target.origin.clone(),
                permits: Arc::new(Semaphore::new(max)),
            });
        }
        self
    }
}

/// One (notice, URL) delivery, run in its own task.
struct Delivery {
    client: crate::tls::client::HttpsClient,
    target: Arc<Target>,
    body: Bytes,
    id: String,
    failed: Arc<AtomicU64>,
    backoff_base: Duration,
    attempt_timeout: Duration,
    /// Held until the delivery ends, retries included.
    _permit: OwnedSemaphorePermit,
}

/// How one attempt ended.
enum Outcome {
    Delivered(StatusCode),
    Retry(String),
    GiveUp(StatusCode),
}

impl Delivery {
    async fn run(self) {
        let target = &self.target;
        let mut last = String::new();
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                let wait = self.backoff_base.saturating_mul(1 << (attempt - 1));
                debug!(
                    id = %self.id,
                    url = %target.origin,
                    error = %last,
                    "approval notification failed; retrying in {wait:?}"
                );
                tokio::time::sleep(wait).await;
            }
            match self.attempt(&target.uri).await {
                Outcome::Delivered(status) => {
                    debug!(
                        id = %self.id,
                        url = %target.origin,
                        %status,
                        attempts = attempt + 1,
                        "approval notification delivered"
                    );
                    return;
                }
                Outcome::GiveUp(status) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        id = %self.id,
                        url = %target.origin,
                        %status,
                        "approval notification refused by the receiver; not retried"
                    );
                    return;
                }
                Outcome::Retry(reason) => last = reason,
            }
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        warn!(
            id = %self.id,
            url = %target.origin,
            error = %last,
            attempts = RETRIES + 1,
            "approval notification given up"
        );
    }

    async fn attempt(&self, uri: &Uri) -> Outcome {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri.clone();
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        let limit = self.attempt_timeout;
        let resp = match tokio::time::timeout(limit, self.client.request(req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Outcome::Retry(error_chain(&e)),
            Err(_) => return Outcome::Retry(format!("no response within {limit:?}")),
        };
        let status = resp.status();
        // Read (and discard) the answer so the connection can be reused; its
        // content is never logged.
        let _ = tokio::time::timeout(
            limit,
            Limited::new(resp.into_body(), MAX_RESPONSE_BODY).collect(),
        )
        .await;
        if status.is_success() {
            Outcome::Delivered(status)
        } else if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Outcome::Retry(format!("receiver answered {status}"))
        } else {
            Outcome::GiveUp(status)
        }
    }
}

/// The JSON message for `notice`.
fn render_body(notice: &Notice, admin_base: Option<&str>) -> Vec<u8> {
    let action_url = |action: &str| {
        admin_base.map(|base| {
            format!(
                "{base}/v1/approvals/{}/{action}",
                crate::text::percent_encode_path_segment(&notice.id)
            )
        })
    };
    let value = serde_json::json!({
        "text": render_text(notice),
        "id": notice.id,
        "task": notice.task,
        "policy": notice.policy,
        "rule": notice.rule,
        "method": notice.method,
        "scheme": notice.scheme,
        "host": notice.host,
        "port": notice.port,
        "path": notice.path,
        "query": notice.query,
        "since": rfc3339_millis(notice.since),
        "expires_at": rfc3339_millis(notice.expires_at),
        "body_bytes": notice.body_bytes,
        "content_type": notice.content_type,
        "approve_url": action_url("approve"),
        "deny_url": action_url("deny"),
    });
    // Serializing a `Value` built from strings and numbers does not fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The Slack-compatible one-line message. Every interpolated value is escaped
/// (see [`slack_escape`]): they come from the sandbox or a policy.
fn render_text(n: &Notice) -> String {
    let default_port = match n.scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let port = (default_port != Some(n.port)).then_some(n.port);
    let authority = crate::net::authority::url_authority(&n.host, port);
    let mut url = format!("{}://{authority}", n.scheme);
    url.push_str(&n.path);
    if let Some(query) = &n.query {
        url.push('?');
        url.push_str(query);
    }
    let id = slack_escape(&n.id);
    format!(
        "tollgate: task {} wants {} {} (rule \"{}\", policy {}). Approve: tollgate approvals approve {id} \u{b7} Deny: tollgate approvals deny {id}",
        slack_escape(&n.task),
        slack_escape(&n.method),
        slack_escape_url(&url),
        slack_escape(&n.rule),
        slack_escape(&n.policy),
    )
}

/// Makes an untrusted value safe to put in Slack mrkdwn text: `&`, `<` and `>`
/// become `&amp;`, `&lt;` and `&gt;` (Slack's documented escaping, so no link,
/// mention or `<!channel>` can be forged); control characters and bidirectional
/// overrides become U+FFFD (no line breaks, no text reordered to mislead the
/// reader); values longer than [`MAX_TEXT_VALUE_CHARS`] are cut with `…`.
fn slack_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    if value.chars().count() > MAX_TEXT_VALUE_CHARS {
        escape_into(&mut out, value.chars().take(MAX_TEXT_VALUE_CHARS));
        out.push('\u{2026}');
    } else {
        escape_into(&mut out, value.chars());
    }
    out
}

/// [`slack_escape`] for a URL: one longer than [`MAX_TEXT_VALUE_CHARS`] is cut
/// in the middle instead (first [`URL_HEAD_CHARS`], `…`, last
/// [`URL_TAIL_CHARS`]), so a long path cannot push the end of the path or the
/// query out of sight.
fn slack_escape_url(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let len = value.chars().count();
    if len > MAX_TEXT_VALUE_CHARS {
        // Cut before escaping, so no entity is split.
        escape_into(&mut out, value.chars().take(URL_HEAD_CHARS));
        out.push('\u{2026}');
        escape_into(&mut out, value.chars().skip(len - URL_TAIL_CHARS));
    } else {
        escape_into(&mut out, value.chars());
    }
    out
}

/// Appends `chars` to `out`, escaped as [`slack_escape`] describes.
fn escape_into(out: &mut String, chars: impl Iterator<Item = char>) {
    for c in chars {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() || is_bidi_control(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// Unicode bidirectional formatting characters (marks, embeddings, overrides,
/// isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rustls::RootCertStore;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(10);

    fn tls() -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth()
    }

    /// A received POST.
    struct Received {
        headers: HeaderMap,
        json: serde_json::Value,
    }

    /// A tiny HTTP/1 receiver: answers with `script` in order (then 200) and
    /// sends every request it gets (whatever its answer) into the channel.
    struct Receiver {
        url: String,
        rx: mpsc::UnboundedReceiver<Received>,
        hits: Arc<AtomicUsize>,
    }

    impl Receiver {
        async fn next(&mut self) -> Received {
            timeout(WAIT, self.rx.recv()).await.unwrap().unwrap()
        }
    }

    async fn receiver(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let hits2 = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let script = script.clone();
                let tx = tx.clone();
                let hits = hits2.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let script = script.clone();
                        let tx = tx.clone();
                        let hits = hits.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await.unwrap().to_bytes();
                            let json = serde_json::from_slice(&bytes).unwrap();
                            hits.fetch_add(1, Ordering::SeqCst);
                            let status = script.lock().unwrap().pop_front().unwrap_or(200);
                            let _ = tx.send(Received {
                                headers: parts.headers,
                                json,
                            });
                            let mut resp = hyper::Response::new(Full::new(Bytes::from_static(
                                b"secret receiver answer",
                            )));
                            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            url: format!("http://{addr}/hooks/T000/B000/secret"),
            rx,
            hits,
        }
    }

    fn notice() -> Notice {
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        Notice {
            id: "a-1f2e3d4c5b6a7980".into(),
            task: "t-abc".into(),
            policy: "github-agent".into(),
            rule: "merge needs a person".into(),
            method: "PUT".into(),
            scheme: "https".into(),
            host: "api.github.com".into(),
            port: 443,
            path: "/repos/acme/x/pulls/7/merge".into(),
            query: None,
            since,
            expires_at: since + Duration::from_secs(300),
            body_bytes: 42,
            content_type: Some("application/json".into()),
        }
    }

    async fn wait_failed(n: &Notifier, want: u64) {
        timeout(WAIT, async {
            while n.failed() < want {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
    }

    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn notice_carries_all_fields_and_action_urls() {
        let mut rx = receiver(&[]).await;
        let n = Notifier::new(std::slice::from_ref(&rx.url), &tls()).unwrap();
        n.notify(notice());
        let got = rx.next().await;
        let j = &got.json;
        assert_eq!(got.headers[CONTENT_TYPE], "application/json");
        assert_eq!(
            got.headers[USER_AGENT],
            concat!("tollgate/", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(j["id"], "a-1f2e3d4c5b6a7980");
        assert_eq!(j["task"], "t-abc");
        assert_eq!(j["policy"], "github-agent");
        assert_eq!(j["rule"], "merge needs a person");
        assert_eq!(j["method"], "PUT");
        assert_eq!(j["scheme"], "https");
        assert_eq!(j["host"], "api.github.com");
        assert_eq!(j["port"], 443);
        assert_eq!(j["path"], "/repos/acme/x/pulls/7/merge");
        assert!(j["query"].is_null());
        assert_eq!(j["since"], "2023-11-14T22:13:20.123Z");
        assert_eq!(j["expires_at"], "2023-11-14T22:18:20.123Z");
        assert_eq!(j["body_bytes"], 42);
        assert_eq!(j["content_type"], "application/json");
        assert!(j["approve_url"].is_null());
        assert!(j["deny_url"].is_null());
        assert_eq!(
            j["text"],
            "tollgate: task t-abc wants PUT https://api.github.com/repos/acme/x/pulls/7/merge \
             (rule \"merge needs a person\", policy github-agent). \
             Approve: tollgate approvals approve a-1f2e3d4c5b6a7980 \u{b7} \
             Deny: tollgate approvals deny a-1f2e3d4c5b6a7980"
        );

        n.set_admin_base("http://127.0.0.1:3129/".into());
        let mut other = notice();
        other.port = 8443;
        other.content_type = None;
        other.query = Some("merge_method=squash".into());
        n.notify(other);
        let j = rx.next().await.json;
        assert_eq!(
            j["approve_url"],
            "http://127.0.0.1:3129/v1/approvals/a-1f2e3d4c5b6a7980/approve"
        );
        assert_eq!(
            j["deny_url"],
            "http://127.0.0.1:3129/v1/approvals/a-1f2e3d4c5b6a7980/deny"
        );
        assert!(j["content_type"].is_null());
        assert_eq!(j["query"], "merge_method=squash");
        let text = j["text"].as_str().unwrap();
        assert!(
            text.contains(
                "PUT https://api.github.com:8443/repos/acme/x/pulls/7/merge?merge_method=squash "
            ),
            "{text}"
        );
        assert_eq!(n.failed(), 0);
    }

    #[test]
    fn text_shows_the_real_scheme_port_and_query() {
        let mut n = notice();
        n.scheme = "http".into();
        n.port = 80;
        assert!(render_text(&n).contains("PUT http://api.github.com/repos/acme/x/pulls/7/merge "));
        n.host = "host".into();
        n.port = 8080;
        n.path = "/path".into();
        n.query = Some("x=1".into());
        assert!(render_text(&n).contains("PUT http://host:8080/path?x=1 "));
        // A default port of the other scheme is shown.
        n.port = 443;
        assert!(render_text(&n).contains("PUT http://host:443/path?x=1 "));
        n.scheme = "https".into();
        n.port = 80;
        assert!(render_text(&n).contains("PUT https://host:80/path?x=1 "));
        n.port = 443;
        n.path = "/bucket".into();
        n.query = Some("delete".into());
        assert!(render_text(&n).contains("PUT https://host/bucket?delete "));
        // An empty query (a bare `?`) is still shown.
        n.query = Some(String::new());
        assert!(render_text(&n).contains("PUT https://host/bucket? "));
        n.host = "::1".into();
        n.port = 8443;
        n.query = None;
        assert!(render_text(&n).contains("PUT https://[::1]:8443/bucket "));
    }

    #[tokio::test]
    async fn retries_5xx_until_delivered() {
        let mut rx = receiver(&[500, 500]).await;
        let n = Notifier::new(std::slice::from_ref(&rx.url), &tls())
            .unwrap()
            .with_backoff_base(Duration::from_millis(1));
        n.notify(notice());
        for _ in 0..3 {
            assert_eq!(rx.next().await.json["id"], "a-1f2e3d4c5b6a7980");
        }
        // Nothing more arrives: the third attempt was answered 200.
        assert!(timeout(Duration::from_millis(200), rx.rx.recv())
            .await
            .is_err());
        assert_eq!(rx.hits.load(Ordering::SeqCst), 3);
        assert_eq!(n.failed(), 0);
    }

    #[tokio::test]
    async fn retries_408_and_429() {
        let mut rx = receiver(&[408, 429]).await;
        let n = Notifier::new(std::slice::from_ref(&rx.url), &tls())
            .unwrap()
            .with_backoff_base(Duration::from_millis(1));
        n.notify(notice());
        for _ in 0..3 {
            rx.next().await;
        }
        assert!(timeout(Duration::from_millis(200), rx.rx.recv())
            .await
            .is_err());
        assert_eq!(n.failed(), 0);
    }

    #[tokio::test]
    async fn gives_up_after_six_attempts() {
        let mut rx = receiver(&[503; 10]).await;
        let n = Notifier::new(std::slice::from_ref(&rx.url), &tls())
            .unwrap()
            .with_backoff_base(Duration::from_millis(1));
        n.notify(notice());
        wait_failed(&n, 1).await;
        for _ in 0..6 {
            rx.next().await;
        }
        assert!(timeout(Duration::from_millis(200), rx.rx.recv())
            .await
            .is_err());
        assert_eq!(n.failed(), 1);
    }

    #[tokio::test]
    async fn client_error_is_not_retried() {
        let mut rx = receiver(&[400]).await;
        let n = Notifier::new(std::slice::from_ref(&rx.url), &tls())
            .unwrap()
            .with_backoff_base(Duration::from_millis(1));
        n.notify(notice());
        rx.next().await;
        wait_failed(&n, 1).await;
        assert!(timeout(Duration::from_millis(200), rx.rx.recv())
            .await
            .is_err());
        assert_eq!(rx.hits.load(Ordering::SeqCst), 1);
        assert_eq!(n.failed(), 1);
    }

    #[tokio::test]
    async fn receiver_down_does_not_block_and_eventually_fails() {
        let addr = closed_port().await;
        let n = Notifier::new(&[format!("http://{addr}/hook")], &tls())
            .unwrap()
            .with_backoff_base(Duration::from_millis(1));
        let started = std::time::Instant::now();
        n.notify(notice());
        let took = started.elapsed();
        // Returned before any delivery could have been given up.
        assert_eq!(n.failed(), 0);
        assert!(took < ATTEMPT_TIMEOUT, "notify took {took:?}");
        wait_failed(&n, 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(n.failed(), 1);
    }

    #[tokio::test]
    async fn too_many_in_flight_are_dropped() {
        let mut rx = receiver(&[500; 10]).await;
        let n = Notifier::new(std::slice::from_ref(&rx.url), &tls())
            .unwrap()
            .with_backoff_base(Duration::from_secs(3600))
            .with_max_in_flight(1);
        n.notify(notice());
        // The first delivery now waits an hour before retrying, holding the slot.
        rx.next().await;
        n.notify(notice());
        assert_eq!(n.failed(), 1);
    }

    #[tokio::test]
    async fn hostile_values_are_escaped_in_text_only() {
        let mut rx = receiver(&[]).await;
        let n = Notifier::new(std::slice::from_ref(&rx.url), &tls()).unwrap();
        let hostile_path = "/x/<@U999>";
        let hostile_query = "a=<!channel>&b=<http://evil.example|Click to approve>\n<@U123>";
        let hostile_rule = "r <!here> & <http://x|y>";
        let mut bad = notice();
        bad.path = hostile_path.into();
        bad.query = Some(hostile_query.into());
        bad.rule = hostile_rule.into();
        bad.method = "GET\u{202e}<".into();
        bad.task = "t>\r\n*hi*".into();
        n.notify(bad);
        let j = rx.next().await.json;
        let text = j["text"].as_str().unwrap();
        assert!(!text.contains('<'), "{text}");
        assert!(!text.contains('>'), "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{text}"
        );
        assert!(
            text.contains(
                "/x/&lt;@U999&gt;?a=&lt;!channel&gt;&amp;b=&lt;http://evil.example|Click to approve&gt;"
            ),
            "{text}"
        );
        assert!(
            text.contains("rule \"r &lt;!here&gt; &amp; &lt;http://x|y&gt;\""),
            "{text}"
        );
        // Every `&` in the text starts one of the three entities.
        for (i, _) in text.match_indices('&') {
            let rest = &text[i..];
            assert!(
                rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;"),
                "{text}"
            );
        }
        assert_eq!(j["path"], hostile_path);
        assert_eq!(j["query"], hostile_query);
        assert_eq!(j["rule"], hostile_rule);
        assert_eq!(j["method"], "GET\u{202e}<");
    }

    #[test]
    fn long_values_are_cut_in_text() {
        let mut n = notice();
        n.rule = "r".repeat(5000);
        let text = render_text(&n);
        assert!(text.len() < 2000, "{}", text.len());
        assert!(text.contains(&format!("rule \"{}\u{2026}\"", "r".repeat(1000))));
        assert_eq!(slack_escape(&"x".repeat(1000)), "x".repeat(1000));
        assert_eq!(slack_escape("<&>"), "&lt;&amp;&gt;");
        assert_eq!(
            slack_escape("a\u{0}b\u{7f}c\u{85}"),
            "a\u{fffd}b\u{fffd}c\u{fffd}"
        );
    }

    #[test]
    fn long_url_is_cut_in_the_middle() {
        let mut n = notice();
        n.host = "h".into();
        n.path = format!("/{}/pulls/7/merge", "a".repeat(5000));
        n.query = Some("should_remove_source_branch=true&x=<y>".into());
        let text = render_text(&n);
        assert!(text.len() < 1500, "{}", text.len());
        let url = text
            .split(" wants PUT ")
            .nth(1)
            .unwrap()
            .split(" (rule")
            .next()
            .unwrap();
        let (head, tail) = url.split_once('\u{2026}').unwrap();
        assert_eq!(
            head,
            format!("https://h/{}", "a".repeat(URL_HEAD_CHARS - 10))
        );
        // The tail keeps the end of the path and the query, escaped after the
        // cut (300 raw characters; `<` and `>` grew into entities).
        assert!(
            tail.ends_with("aaaa/pulls/7/merge?should_remove_source_branch=true&amp;x=&lt;y&gt;"),
            "{tail}"
        );
        let raw_tail = tail
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
        assert_eq!(raw_tail.chars().count(), URL_TAIL_CHARS);
        // Exactly at the limit: not cut.
        n.path = "/".into();
        n.query = Some("q".repeat(MAX_TEXT_VALUE_CHARS - "https://h/?".len()));
        assert!(!render_text(&n).contains('\u{2026}'));
        n.query = Some("q".repeat(MAX_TEXT_VALUE_CHARS + 1 - "https://h/?".len()));
        assert!(render_text(&n).contains('\u{2026}'));
    }

    /// A receiver that accepts connections and never answers (nor closes them).
    async fn blackhole() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        format!("http://{addr}/hook")
    }

    #[tokio::test]
    async fn blackholed_url_does_not_starve_another() {
        const CAP: usize = 4;
        const SENT: usize = 3 * CAP;
        let dead = blackhole().await;
        let mut rx = receiver(&[]).await;
        // The blackholed URL comes first: with one budget shared by all URLs,
        // its deliveries would hold every slot and the healthy URL's would be
        // dropped.
        let n = Notifier::new(&[dead, rx.url.clone()], &tls())
            .unwrap()
            .with_backoff_base(Duration::from_millis(1))
            .with_attempt_timeout(Duration::from_millis(200))
            .with_max_in_flight(CAP);
        for i in 0..SENT {
            let mut one = notice();
            one.id = format!("a-{i}");
            n.notify(one);
            // Each delivery to the blackhole holds its slot for 6 attempts of
            // 200 ms; the healthy one is done long before.
            assert_eq!(rx.next().await.json["id"], format!("a-{i}"));
        }
        // The blackhole's budget was full: the notices beyond it were dropped.
        assert!(n.failed() >= (SENT - CAP) as u64, "{}", n.failed());
        // ...and the ones in flight are given up in the end; the healthy URL
        // failed none.
        wait_failed(&n, SENT as u64).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(n.failed(), SENT as u64);
        assert_eq!(rx.hits.load(Ordering::SeqCst), SENT);
    }

    #[tokio::test]
    async fn every_url_receives_it() {
        let mut a = receiver(&[]).await;
        let mut b = receiver(&[]).await;
        let n = Notifier::new(&[a.url.clone(), b.url.clone()], &tls()).unwrap();
        n.notify(notice());
        assert_eq!(a.next().await.json["id"], "a-1f2e3d4c5b6a7980");
        assert_eq!(b.next().await.json["id"], "a-1f2e3d4c5b6a7980");
        assert_eq!(n.failed(), 0);
    }

    #[test]
    fn new_rejects_bad_urls_and_debug_hides_them() {
        assert!(Notifier::new(&["ftp://x/".into()], &tls()).is_err());
        assert!(Notifier::new(&["not a url".into()], &tls()).is_err());
        assert!(Notifier::new(&["/relative".into()], &tls()).is_err());
        let n = Notifier::new(&["https://hooks.example/services/SECRET".into()], &tls()).unwrap();
        let shown = format!("{n:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("hooks.example"), "{shown}");
    }

    #[test]
    fn notify_outside_a_runtime_counts_as_failed() {
        let n = Notifier::new(&["http://127.0.0.1:9/".into()], &tls()).unwrap();
        n.notify(notice());
        assert_eq!(n.failed(), 1);
    }

    #[test]
    fn no_urls_is_a_no_op() {
        let n = Notifier::new(&[], &tls()).unwrap();
        n.notify(notice());
        assert_eq!(n.failed(), 0);
    }
}
