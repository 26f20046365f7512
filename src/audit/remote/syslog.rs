//! RFC 5424 syslog over TCP (RFC 6587 octet counting) or UDP (one message per
//! datagram).
//!
//! Each record is one message:
//! `<110>1 TIMESTAMP HOSTNAME tollgate PROCID audit - MSG`.
//! PRI 110 is facility 13 ("log audit") × 8 + severity 6 (informational): every
//! record, denials included, is an audit event rather than an alert. TIMESTAMP
//! is the record's `ts` (RFC 3339 UTC, milliseconds); HOSTNAME is
//! `/proc/sys/kernel/hostname` or `-`; STRUCTURED-DATA is `-`. MSG is the record
//! line itself (or its OCSF rendering) as plain UTF-8 **without a BOM**: RFC 5424
//! allows MSG-ANY, and a BOM in front of the JSON would break collectors that
//! parse the message as JSON.
//!
//! TCP: a batch counts as delivered once written and flushed to the socket (RFC
//! 6587 has no acknowledgement). Before each write the connection is checked for
//! an orderly close by the receiver, so a restarted receiver does not swallow a
//! batch into a dead socket. UDP: records that do not fit in one datagram are
//! dropped (counted) since truncating would break the signature.

use super::delivery::{render, Failure};
use super::queue::Queue;
use super::stamp;
use crate::config::{SinkFormat, SyslogSink, SyslogTransport};
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tracing::error;

/// facility 13 (log audit) * 8 + severity 6 (informational).
pub const PRI: u8 = 110;
/// APP-NAME.
pub const APP_NAME: &str = "tollgate";
/// MSGID.
pub const MSG_ID: &str = "audit";

pub(super) struct Syslog {
    addr: SocketAddr,
    transport: SyslogTransport,
    format: SinkFormat,
    hostname: String,
    procid: String,
    timeout: Duration,
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
}

/// One RFC 5424 message (no framing) for `line`.
pub(super) fn message(line: &[u8], format: SinkFormat, hostname: &str, procid: &str) -> Vec<u8> {
    let ms = match stamp::record_ts_ms(line) {
        Ok(Some(ms)) => ms,
        _ => stamp::now_ms(),
    };
    let body = render(format, line);
    let mut out = format!(
        "<{PRI}>1 {} {hostname} {APP_NAME} {procid} {MSG_ID} - ",
        crate::text::rfc3339_from_epoch_ms(ms)
    )
    .into_bytes();
    out.reserve(body.len());
    out.extend_from_slice(&body);
    out
}

/// Whether a pooled connection still looks open: a receiver that closed it (or
/// reset it) is noticed before a batch is written into the void.
fn still_open(stream: TcpStream) -> io::Result<TcpStream> {
    let std = stream.into_std()?;
    let mut buf = [0u8; 512];
    for _ in 0..16 {
        match std.peek(&mut buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "closed by the receiver",
                ))
            }
            Ok(n) => {
                // A syslog receiver has nothing to say; discard it.
                let mut sink = vec![0u8; n];
                io::Read::read(&mut &std, &mut sink)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    TcpStream::from_std(std)
}

impl Syslog {
    pub(super) fn new(cfg: &SyslogSink, timeout: Duration) -> Result<Syslog, String> {
        let addr = cfg
            .address
            .parse::<SocketAddr>()
            .map_err(|_| format!("audit syslog address `{}` is not ip:port", cfg.address))?;
        Ok(Syslog {
            addr,
            transport: cfg.transport,
            format: cfg.format,
            hostname: stamp::hostname().unwrap_or_else(|| "-".to_string()),
            procid: std::process::id().to_string(),
            timeout,
            tcp: None,
            udp: None,
        })
    }

    pub(super) async fn send(&mut self, batch: &[Bytes], queue: &Queue) -> Result<(), Failure> {
        match self.transport {
            SyslogTransport::Tcp => self.send_tcp(batch).await,
            SyslogTransport::Udp => self.send_udp(batch, queue).await,
        }
    }

    async fn connect(&self) -> io::Result<TcpStream> {
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn send_tcp(&mut self, batch: &[Bytes]) -> Result<(), Failure> {
        let mut frames = Vec::new();
        for line in batch {
            let msg = message(line, self.format, &self.hostname, &self.procid);
            frames.extend_from_slice(msg.len().to_string().as_bytes());
            frames.push(b' ');
            frames.extend_from_slice(&msg);
        }
        let pooled = self.tcp.take().and_then(|s| still_open(s).ok());
        let mut stream = match pooled {
            Some(s) => s,
            None => self.connect().await.map_err(|e| Failure {
                acked: 0,
                reason: format!("syslog tcp {}: {e}", self.addr),
            })?,
        };
        let written = tokio::time::timeout(self.timeout, async {
            stream.write_all(&frames).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {
                self.tcp = Some(stream);
                Ok(())
            }
            Ok(Err(e)) => Err(Failure {
                acked: 0,
                reason: format!("syslog tcp {}: {e}", self.addr),
            }),
            Err(_) => Err(Failure {
                acked: 0,
                reason: format!("syslog tcp {}: write timed out", self.addr),
            }),
        }
    }

    async fn send_udp(&mut self, batch: &[Bytes], queue: &Queue) -> Result<(), Failure> {
        let fail = |acked: usize, e: &dyn std::fmt::Display| Failure {
            acked,
            reason: format!("syslog udp {}: {e}", self.addr),
        };
        let socket = match self.udp.take() {
            Some(s) => s,
            None => {
                let local: SocketAddr = if self.addr.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(local).await.map_err(|e| fail(0, &e))?;
                s.connect(self.addr).await.map_err(|e| fail(0, &e))?;
                s
            }
        };
        // The largest UDP payload over IPv4 / IPv6.
        let max = if self.addr.is_ipv4() { 65_507 } else { 65_527 };
        let mut result = Ok(());
        for (i, line) in batch.iter().enumerate() {
            let msg = message(line, self.format, &self.hostname, &self.procid);
            if msg.len() > max {
                queue.count_dropped(1);
                error!(
                    bytes = msg.len(),
                    "audit record too large for one syslog UDP datagram; not sent to this sink"
                );
                continue;
            }
            match tokio::time::timeout(self.timeout, socket.send(&msg)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    result = Err(fail(i, &e));
                    break;
                }
                Err(_) => {
                    result = Err(fail(i, &"send timed out"));
                    break;
                }
            }
        }
        self.udp = Some(socket);
        result
    }
}
