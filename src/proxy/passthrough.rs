//! `tunnel:` entries: bytes pass through uninspected, except that a TLS
//! ClientHello must name the CONNECT target.
//!
//! SECURITY: without the SNI check a tunnel entry for one host on a CDN would let
//! the client reach any other site on that CDN (domain fronting by SNI).

use super::splice::{splice, SPLICE_IDLE_TIMEOUT};
use super::CLIENT_HELLO_TIMEOUT;
use crate::policy::normalize_host;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest ClientHello read before giving up (several records, post-quantum shares).
const MAX_CLIENT_HELLO: usize = 64 * 1024;
/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// How a passthrough tunnel ended.
#[derive(Debug, Default)]
pub struct TunnelOutcome {
    /// Bytes from client to upstream.
    pub bytes_up: u64,
    /// Bytes from upstream to client.
    pub bytes_down: u64,
    /// Set when the tunnel was cut because the ClientHello named another host.
    pub refused_sni: Option<String>,
}

/// Splices client and upstream. If the client starts with TLS, its SNI must equal
/// `target_host` (or be absent when the target is an IP address); otherwise
/// nothing is sent upstream and the client is disconnected.
pub async fn splice_tunnel<S>(
    mut client: S,
    mut upstream: TcpStream,
    target_host: &str,
) -> TunnelOutcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = Vec::with_capacity(2048);
    match tokio::time::timeout(
        CLIENT_HELLO_TIMEOUT,
        read_client_hello(&mut client, &mut hello),
    )
    .await
    {
        Ok(Ok(Some(sni))) => {
            let named = sni.as_deref().and_then(normalize_host);
            let allowed = match &named {
                Some(name) => name == target_host,
                None => target_host.parse::<std::net::IpAddr>().is_ok(),
            };
            if !allowed {
                let shown = sni.unwrap_or_else(|| "(none)".into());
                return TunnelOutcome {
                    refused_sni: Some(shown),
                    ..TunnelOutcome::default()
                };
            }
        }
        Ok(Ok(None)) => {} // not TLS: nothing to check
        Ok(Err(_)) | Err(_) => return TunnelOutcome::default(),
    }
    if upstream.write_all(&hello).await.is_err() {
        return TunnelOutcome::default();
    }
    let (up, down) = splice(client, upstream, SPLICE_IDLE_TIMEOUT).await;
    TunnelOutcome {
        bytes_up: up + hello.len() as u64,
        bytes_down: down,
        refused_sni: None,
    }
}

/// Reads the client's first bytes into `seen`. Returns `Some(sni)` for a TLS
/// ClientHello (SNI may be absent), `None` if the stream is not TLS.
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    client: &mut S,
    seen: &mut Vec<u8>,
) -> std::io::Result<Option<Option<String>>> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if seen.is_empty() && chunk[0] != TLS_HANDSHAKE {
            seen.extend_from_slice(&chunk[..n]);
            return Ok(None);
        }
        seen.extend_from_slice(&chunk[..n]);
        if seen.len() > MAX_CLIENT_HELLO {
            return Err(std::io::Error::other("ClientHello too large"));
        }
        acceptor.read_tls(&mut &chunk[..n])?;
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return Ok(Some(
                    accepted.client_hello().server_name().map(str::to_owned),
                ));
            }
            Ok(None) => continue,
            Err((err, _)) => return Err(std::io::Error::other(err)),
        }
    }
}
