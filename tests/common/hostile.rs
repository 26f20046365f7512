//! A hostile upstream: a real TLS server (a [`TestCa`] leaf, ALPN `http/1.1`
//! only) on 127.0.0.1 port 0 that reads each request head raw, records what it
//! saw (request line, headers in order with duplicates kept, body by
//! Content-Length), and lets the test's handler answer with ARBITRARY bytes: a
//! made-up status line, any Transfer-Encoding, a cut body, a hand-made WebSocket
//! handshake and frames. It misbehaves on purpose where hyper would not.
//!
//! Reads are bounded (size and time); every connection task ends when the
//! [`Hostile`] is dropped.

#![expect(dead_code, reason = "each test crate uses part of the harness")]

use super::upstream::TestCa;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Largest request head read.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body read (by Content-Length).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Bound on each wait for the peer.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a [`After::Hold`] connection stays open at most.
const HOLD_LIMIT: Duration = Duration::from_secs(15);
/// Pause after each write but the last, so the pieces reach tollgate as
/// separate TLS records (a piece split across writes stays split).
const BETWEEN_WRITES: Duration = Duration::from_millis(20);

/// One request as the upstream read it off the wire.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `GET /path HTTP/1.1`.
    pub request_line: String,
    /// Headers in wire order, names as sent, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The body (by Content-Length; empty otherwise).
    pub body: Vec<u8>,
}

impl Seen {
    /// The request path (with query).
    pub fn path(&self) -> &str {
        self.request_line.split(' ').nth(1).unwrap_or("")
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// What follows `Bearer ` in the Authorization header ("" if none).
    pub fn bearer(&self) -> String {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_string()
    }
}

/// What the connection does once the reply is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Read the next request on the same connection.
    KeepAlive,
    /// Close (TLS close_notify, then TCP) right away: a cut body stays cut.
    Close,
    /// Keep the connection open, discarding what the peer sends, until it
    /// closes (or [`HOLD_LIMIT`]): for upgraded connections.
    Hold,
}

/// The bytes to write back, each element a separate write.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Written in order, flushed one by one.
    pub writes: Vec<Vec<u8>>,
    /// Then this.
    pub after: After,
}

impl Reply {
    /// One write, then close.
    pub fn close(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            writes: vec![bytes.into()],
            after: After::Close,
        }
    }

    /// Several writes, then `after`.
    pub fn parts(writes: Vec<Vec<u8>>, after: After) -> Self {
        Self { writes, after }
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A running hostile upstream.
pub struct Hostile {
    /// Port on 127.0.0.1.
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    /// Starts a server for `names` (certificate from `ca`) answering every
    /// request with `handler`.
    pub async fn start(
        ca: &TestCa,
        names: &[&str],
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let mut config = (*ca.server_config(names)).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new(handler);
        let (log, count) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        count.fetch_add(1, Ordering::SeqCst);
                        let (acceptor, log, handler) = (acceptor.clone(), log.clone(), handler.clone());
                        conns.spawn(async move {
                            let Ok(Ok(tls)) =
                                tokio::time::timeout(READ_TIMEOUT, acceptor.accept(tcp)).await
                            else {
                                return;
                            };
                            serve(tls, log, handler).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self {
            port,
            seen,
            connections,
            task,
        }
    }

    /// Every request read so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Number of requests read so far.
    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Number of TCP connections accepted so far (dialled or not used).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    log: Arc<Mutex<Vec<Seen>>>,
    handler: Handler,
) {
    let mut buf = Vec::new();
    loop {
        let Some(seen) = read_request(&mut tls, &mut buf).await else {
            return;
        };
        log.lock().unwrap().push(seen.clone());
        let reply = handler(&seen);
        let count = reply.writes.len();
        for (i, bytes) in reply.writes.iter().enumerate() {
            if tls.write_all(bytes).await.is_err() || tls.flush().await.is_err() {
                return;
            }
            if i + 1 < count {
                tokio::time::sleep(BETWEEN_WRITES).await;
            }
        }
        match reply.after {
            After::KeepAlive => continue,
            After::Close => {
                let _ = tls.shutdown().await;
                return;
            }
            After::Hold => {
                let mut sink = [0u8; 4096];
                let _ = tokio::time::timeout(HOLD_LIMIT, async {
                    while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
                let _ = tls.shutdown().await;
                return;
            }
        }
    }
}

/// Reads one request (head, then body by Content-Length) from `io`; `buf`
/// carries bytes read past it. `None` on EOF, timeout, or an oversized request.
async fn read_request<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) -> Option<Seen> {
    let head_end = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at;
        }
        if buf.len() > MAX_HEAD || !fill(io, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    let mut seen = Seen {
        request_line,
        headers,
        body: Vec::new(),
    };
    let length: usize = seen
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return None;
    }
    while buf.len() < length {
        if !fill(io, buf).await {
            return None;
        }
    }
    seen.body = buf.drain(..length).collect();
    Some(seen)
}

/// One bounded read appended to `buf`; false on EOF, error or timeout.
async fn fill<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout(READ_TIMEOUT, io.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response head: `status_line` (e.g. `HTTP/1.1 200 OK`), then `headers`.
pub fn head(status_line: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{status_line}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// One chunk of a chunked body (`data` must not be empty).
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The last chunk of a chunked body, without trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// `data` as a whole chunked body (one chunk, then the last).
pub fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = chunk(data);
    out.extend_from_slice(LAST_CHUNK);
    out
}

/// gzip (RFC 1952) of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    read_now(async_compression::tokio::bufread::GzipEncoder::new(data))
}

/// zlib (RFC 1950: the HTTP `deflate` coding) of `data`.
pub fn zlib(data: &[u8]) -> Vec<u8> {
    read_now(async_compression::tokio::bufread::ZlibEncoder::new(data))
}

/// `data` gunzipped, or `None` if it is not gzip.
pub fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    try_read_now(async_compression::tokio::bufread::GzipDecoder::new(data)).ok()
}

/// `data` zlib-inflated, or `None` if it is not zlib.
pub fn unzlib(data: &[u8]) -> Option<Vec<u8>> {
    try_read_now(async_compression::tokio::bufread::ZlibDecoder::new(data)).ok()
}

fn read_now<R: AsyncRead + Unpin>(reader: R) -> Vec<u8> {
    try_read_now(reader).unwrap()
}

/// Reads an in-memory coder to the end. Its input is a slice, so it is never
/// pending; the loop is bounded anyway.
fn try_read_now<R: AsyncRead + Unpin>(mut reader: R) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = Box::pin(reader.read_to_end(&mut out));
    for _ in 0..1000 {
        if let Poll::Ready(result) = future.as_mut().poll(&mut cx) {
            result?;
            drop(future);
            return Ok(out);
        }
    }
    Err(std::io::Error::other("coder did not finish"))
}

/// The `Sec-WebSocket-Accept` for `key`.
pub fn websocket_accept(key: &str) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// A 101 completing the WebSocket handshake of `seen`.
pub fn websocket_handshake(seen: &Seen) -> Vec<u8> {
    let accept = websocket_accept(seen.header("sec-websocket-key").unwrap_or(""));
    head(
        "HTTP/1.1 101 Switching Protocols",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", &accept),
        ],
    )
}

/// WebSocket opcodes.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Ping frame.
pub const OP_PING: u8 = 0x9;

/// An unmasked (server) WebSocket frame.
pub fn ws_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | (opcode & 0x0f)];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}
