//! A minimal client of a running tollgate's admin API, shared by the commands
//! that talk to one (`tollgate run --admin`, `tollgate approvals`).
//!
//! One request per connection, JSON in and out, bearer-token auth. The admin API
//! is reached over TCP (`http://HOST:PORT` or `HOST:PORT`) or a Unix socket
//! (`unix:/PATH`); there is no TLS, as the admin API listens on loopback or a
//! socket only.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpStream;

/// Largest admin API answer read.
pub const MAX_ADMIN_ANSWER: usize = 1024 * 1024;
/// Longest wait for one admin API call (connect, request and answer).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The environment variable that holds the admin token.
pub const ADMIN_TOKEN_ENV: &str = "TOLLGATE_ADMIN_TOKEN";

/// Why an admin API call, or finding its token, failed. Each prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The URL is neither `http://HOST:PORT`, `HOST:PORT` nor `unix:/PATH`.
    #[error("--admin {url}: give http://HOST:PORT or unix:/PATH")]
    BadUrl {
        /// The URL as given.
        url: String,
    },
    /// A TCP URL with a path (`http://HOST:PORT/v1`).
    #[error("--admin {url}: the admin URL takes no path; give http://HOST:PORT (the client adds /v1/...)")]
    UrlPath {
        /// The URL as given.
        url: String,
    },
    /// Nothing accepted the connection.
    #[error(
        "cannot reach the tollgate admin API at {url}: {error} (is `tollgate serve` running?)"
    )]
    Unreachable {
        /// The admin URL.
        url: String,
        /// The connect error (in the message, not a `source`: one line says it all).
        error: std::io::Error,
    },
    /// No answer within [`ADMIN_TIMEOUT`].
    #[error("{url}: no answer in time")]
    Timeout {
        /// The admin URL.
        url: String,
    },
    /// The HTTP exchange failed (handshake, request or answer body).
    #[error("{url}: {message}")]
    Http {
        /// The admin URL, or what was being done.
        url: String,
        /// What failed.
        message: String,
    },
    /// The token file could not be read.
    #[error("{}: {error}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The read error (in the message).
        error: std::io::Error,
    },
    /// Neither a token file nor `$TOLLGATE_ADMIN_TOKEN` was given.
    #[error("--admin needs the admin token: --admin-token-file FILE or $TOLLGATE_ADMIN_TOKEN")]
    NoToken,
}

/// Where the admin API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTarget {
    /// `host:port`.
    Tcp(String),
    /// A Unix socket.
    Unix(PathBuf),
}

impl AdminTarget {
    /// Parses `http://host:port`, `host:port` or `unix:/path`. A TCP URL has no
    /// path (a single trailing `/` is allowed), query or fragment: the client
    /// always asks for `/v1/...` itself.
    pub fn parse(url: &str) -> Result<Self, AdminError> {
        let bad = || AdminError::BadUrl {
            url: url.to_string(),
        };
        if let Some(path) = url.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(AdminTarget::Unix(path.into()));
        }
        if url.starts_with("https://") {
            return Err(bad());
        }
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(AdminError::UrlPath {
                url: url.to_string(),
            });
        }
        if authority.is_empty()
            || authority.contains(['?', '#', '@'])
            || authority.chars().any(char::is_whitespace)
        {
            return Err(bad());
        }
        Ok(AdminTarget::Tcp(authority.to_string()))
    }
}

/// A client of one admin API, holding its bearer token.
#[derive(Clone)]
pub struct AdminClient {
    url: String,
    target: AdminTarget,
    token: String,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("url", &self.url)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// `url`: `http://host:port`, `host:port`, or `unix:/path`.
    pub fn new(url: &str, token: String) -> Result<Self, AdminError> {
        Ok(Self {
            url: url.to_string(),
            target: AdminTarget::parse(url)?,
            token,
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one request and reads the answer: its status and its body as JSON
    /// (`Value::Null` when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), AdminError> {
        tokio::time::timeout(ADMIN_TIMEOUT, self.call_once(method, path, body))
            .await
            .map_err(|_| AdminError::Timeout {
                url: self.url.clone(),
            })?
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), AdminError> {
        let unreachable = |error: std::io::Error| AdminError::Unreachable {
            url: self.url.clone(),
            error,
        };
        let (host, mut sender) = match &self.target {
            AdminTarget::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await.map_err(unreachable)?;
                (addr.clone(), handshake(stream).await?)
            }
            AdminTarget::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unreachable)?;
                ("localhost".to_string(), handshake(stream).await?)
            }
        };
        let http_error = |message: String| AdminError::Http {
            url: self.url.clone(),
            message,
        };
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, host)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| http_error(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http_error(e.to_string()))?;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_ADMIN_ANSWER)
            .collect()
            .await
            .map_err(|e| http_error(e.to_string()))?
            .to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }
}

/// HTTP/1.1 handshake over `stream`; the connection is driven in the background.
pub async fn handshake<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, AdminError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| AdminError::Http {
            url: "admin API handshake".into(),
            message: e.to_string(),
        })?;
    tokio::spawn(conn);
    Ok(sender)
}

/// The admin token: the contents of `file` (`--admin-token-file`) if given, else
/// `$TOLLGATE_ADMIN_TOKEN`; trimmed. [`AdminError::NoToken`] if neither is there.
pub fn admin_token(file: Option<&Path>) -> Result<String, AdminError> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|error| AdminError::TokenFile {
            path: path.to_path_buf(),
            error,
        })?,
        None => std::env::var(ADMIN_TOKEN_ENV).map_err(|_| AdminError::NoToken)?,
    };
    Ok(token.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            AdminTarget::parse("http://127.0.0.1:3129").ok(),
            Some(AdminTarget::Tcp("127.0.0.1:3129".into()))
        );
        assert_eq!(
            AdminTarget::parse("127.0.0.1:3129/").ok(),
            Some(AdminTarget::Tcp("127.0.0.1:3129".into()))
        );
        assert_eq!(
            AdminTarget::parse("http://[::1]:3129/").ok(),
            Some(AdminTarget::Tcp("[::1]:3129".into()))
        );
        assert_eq!(
            AdminTarget::parse("unix:/run/tollgate/admin.sock").ok(),
            Some(AdminTarget::Unix("/run/tollgate/admin.sock".into()))
        );
        for bad in [
            "https://127.0.0.1:3129",
            "http://",
            "",
            "unix:",
            "http://h:1?x=1",
            "http://user@h:1",
            "h:1#frag",
        ] {
            let err = AdminTarget::parse(bad).err().map(|e| e.to_string());
            assert_eq!(
                err,
                Some(format!(
                    "--admin {bad}: give http://HOST:PORT or unix:/PATH"
                ))
            );
        }
        for bad in [
            "http://h:1/v1",
            "http://h:1/v1/",
            "h:1/v1/approvals",
            "http://h:1//",
        ] {
            let err = AdminTarget::parse(bad).err().map(|e| e.to_string());
            assert_eq!(
                err,
                Some(format!(
                    "--admin {bad}: the admin URL takes no path; give http://HOST:PORT (the client adds /v1/...)"
                ))
            );
        }
    }
}
