//! Resolving and connecting to upstreams, with the private-destination check
//! applied to the very address that is connected to.

use super::private::is_permitted;
use crate::config::UpstreamConfig;
use http::Uri;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Why an upstream could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Every address the host resolved to is private and not allowed.
    #[error("{host} resolves to {addr}, a private address that is not in upstream.allow_private")]
    PrivateDestination {
        /// Host asked for.
        host: String,
        /// First refused address.
        addr: IpAddr,
    },
    /// DNS failed.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// Host asked for.
        host: String,
        /// Resolver error.
        source: std::io::Error,
    },
    /// DNS gave nothing.
    #[error("{host} has no address")]
    NoAddress {
        /// Host asked for.
        host: String,
    },
    /// TCP connect failed.
    #[error("cannot connect to {host}: {source}")]
    Connect {
        /// Host asked for.
        host: String,
        /// Socket error.
        source: std::io::Error,
    },
    /// Resolution plus connection took longer than `connect_timeout`.
    #[error("connecting to {host} timed out")]
    Timeout {
        /// Host asked for.
        host: String,
    },
    /// The URI had no host.
    #[error("request has no host")]
    NoHost,
}

/// Connects to upstream hosts: resolve once, check each address, connect to a
/// checked one.
#[derive(Clone, Debug)]
pub struct Dialer {
    resolve: Arc<HashMap<String, SocketAddr>>,
    allow_private: Arc<Vec<IpNet>>,
    connect_timeout: Duration,
}

impl Dialer {
    /// A dialer for the given upstream settings.
    pub fn new(cfg: &UpstreamConfig) -> Self {
        Self {
            resolve: Arc::new(cfg.resolve.clone()),
            allow_private: Arc::new(cfg.allow_private.clone()),
            connect_timeout: cfg.connect_timeout,
        }
    }

    /// The limit on resolving plus connecting.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Opens a TCP connection to `host:port` (host normalized, IPv6 unbracketed).
    pub async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, DialError> {
        match tokio::time::timeout(self.connect_timeout, self.dial_inner(host, port)).await {
            Ok(result) => result,
            Err(_) => Err(DialError::Timeout {
                host: host.to_string(),
            }),
        }
    }

    async fn dial_inner(&self, host: &str, port: u16) -> Result<TcpStream, DialError> {
        let addrs: Vec<SocketAddr> = if let Some(addr) = self.resolve.get(host) {
            vec![*addr]
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| DialError::Resolve {
                    host: host.to_string(),
                    source,
                })?
                .collect()
        };
        let Some(first) = addrs.first() else {
            return Err(DialError::NoAddress {
                host: host.to_string(),
            });
        };
        // SECURITY: only addresses that pass the check are ever connected to; no
        // second lookup happens between check and connect (DNS rebinding).
        let permitted: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| is_permitted(a.ip(), &self.allow_private))
            .collect();
        if permitted.is_empty() {
            return Err(DialError::PrivateDestination {
                host: host.to_string(),
                addr: first.ip(),
            });
        }
        let mut last_err = None;
        for addr in permitted {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(err) => last_err = Some(err),
            }
        }
        Err(DialError::Connect {
            host: host.to_string(),
            source: last_err.unwrap_or_else(|| std::io::Error::other("no address")),
        })
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let raw_host = uri.host().ok_or(DialError::NoHost)?;
            let host = crate::policy::normalize_host(raw_host).ok_or(DialError::NoHost)?;
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("http") => 80,
                _ => 443,
            });
            dialer.dial(&host, port).await.map(TokioIo::new)
        })
    }
}

/// Finds a [`DialError`] in an error's source chain.
pub fn find_dial_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a DialError> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(dial) = e.downcast_ref::<DialError>() {
            return Some(dial);
        }
        current = e.source();
    }
    None
}
