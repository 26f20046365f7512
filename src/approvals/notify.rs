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
//! The message ([`message`]) never contains a secret: the path and query are in placeholder
//! form as the sandbox sent them, and `approve_url` / `deny_url` need the admin Bearer token,
//! which is not included. Webhook URLs themselves often carry a secret (Slack's
//! do, in the path), so logs name only their scheme, host and port.

mod message;

pub use message::Notice;

use crate::audit::remote::error_chain;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use message::render_body;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
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
enum Attempt {
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
                Attempt::Delivered(status) => {
                    debug!(
                        id = %self.id,
                        url = %target.origin,
                        %status,
                        attempts = attempt + 1,
                        "approval notification delivered"
                    );
                    return;
                }
                Attempt::GiveUp(status) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        id = %self.id,
                        url = %target.origin,
                        %status,
                        "approval notification refused by the receiver; not retried"
                    );
                    return;
                }
                Attempt::Retry(reason) => last = reason,
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

    async fn attempt(&self, uri: &Uri) -> Attempt {
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
            Ok(Err(e)) => return Attempt::Retry(error_chain(&e)),
            Err(_) => return Attempt::Retry(format!("no response within {limit:?}")),
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
            Attempt::Delivered(status)
        } else if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Attempt::Retry(format!("receiver answered {status}"))
        } else {
            Attempt::GiveUp(status)
        }
    }
}

#[cfg(test)]
mod tests;
