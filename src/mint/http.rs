//! The HTTP client that reaches issuers (GitHub's API, OAuth token endpoints)
//! the way any upstream is reached: through the [`Dialer`] (`upstream.resolve`
//! and the private-address check) and verified TLS (`upstream.extra_roots`).

use crate::net::{find_dial_error, DialError, Dialer};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// Longest wait for one issuer call, connect included.
const ISSUER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest issuer answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// An issuer's answer, read whole.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON, or `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A pooled HTTPS-only client for issuers.
#[derive(Clone, Debug)]
pub struct IssuerClient {
    client: Client<HttpsConnector<Dialer>, Full<Bytes>>,
}

impl IssuerClient {
    /// A client that dials through `dialer` and verifies with `tls`.
    pub fn new(dialer: Dialer, tls: rustls::ClientConfig) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(dialer);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Self { client }
    }

    /// Sends `req` and reads the answer. The error says what failed in words an
    /// operator can act on; it never quotes the request.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Answer, String> {
        let host = req.uri().host().unwrap_or_default().to_string();
        let call = async {
            let response = self
                .client
                .request(req)
                .await
                .map_err(|err| describe(&err, &host))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer of {host} failed: {e}"))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(ISSUER_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(format!("{host} did not answer in time")))
    }
}

fn describe(err: &hyper_util::client::legacy::Error, host: &str) -> String {
    match find_dial_error(err) {
        Some(DialError::PrivateDestination { .. }) => {
            format!("{host} resolves to a private address that is not in upstream.allow_private")
        }
        Some(other) => other.to_string(),
        None => {
            let mut detail = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(s) = source {
                detail = format!("{detail}: {s}");
                source = s.source();
            }
            format!("{host} could not be reached: {detail}")
        }
    }
}
