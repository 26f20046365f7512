//! Real local upstreams for tests, benches and the demo: HTTPS (HTTP/1.1 and h2 by
//! ALPN) or plain HTTP on 127.0.0.1 port 0, with certificates from a CA generated
//! on the spot.

#![expect(dead_code, reason = "each test crate uses part of the harness")]

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

/// A CA generated inside the test, standing in for a public CA.
pub struct TestCa {
    /// PEM of the CA certificate (give it to clients or `extra_roots`).
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A fresh CA.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert, key)
    }

    /// A leaf for `names` as PEM `(certificate, private key)`, for servers
    /// outside this process.
    pub fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let (cert, key) = self.leaf(names);
        (cert.pem(), key.serialize_pem())
    }

    /// A server config for `names` (DNS names or IPs), offering h2 and http/1.1.
    pub fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        let (cert, key) = self.leaf(names);
        let mut config = ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A running upstream.
pub struct Upstream {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Requests received so far (any path).
    pub hits: Arc<AtomicUsize>,
    /// Every request seen: method, path and headers, as the echo body shows them.
    pub seen: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Number of requests the upstream has seen.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an upstream; TLS when `tls` is given.
pub async fn start_upstream(tls: Option<Arc<ServerConfig>>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let log = seen.clone();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            let log = log.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let readback = {
                        let mut seen = log.lock().unwrap();
                        let previous = seen.last().and_then(|r| {
                            r["headers"]["authorization"].as_str().map(str::to_string)
                        });
                        seen.push(describe(&req));
                        previous
                    };
                    async move { Ok::<_, Infallible>(route(req, readback).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    Upstream {
        port,
        hits,
        seen,
        task,
    }
}

/// Byte `i` of a `/bytes/N` download.
pub fn pattern_byte(i: u64) -> u8 {
    ((i * 31 + 7) % 251) as u8
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r
}

/// Method, path and headers of a request, as JSON.
fn describe(req: &Request<Incoming>) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::from(v.to_str().unwrap_or("<bin>")),
            )
        })
        .collect();
    serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", req.version()),
        "authority": req.uri().authority().map(|a| a.to_string())
            .or_else(|| req.headers().get("host").and_then(|h| h.to_str().ok()).map(str::to_string)),
        "headers": headers,
    })
}

/// `readback`: the Authorization header of the request before this one, which
/// `/readback` returns, like an API handing back something it stored.
async fn route(mut req: Request<Incoming>, readback: Option<String>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/ws" || path == "/ws-auth" {
        // /ws-auth first sends back the Authorization header it received.
        let greeting = (path == "/ws-auth").then(|| {
            req.headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        });
        return websocket_echo(&mut req, greeting);
    }
    if path == "/ws-forged" {
        // A 101 that does not complete the handshake: a smuggling attempt.
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", "Zm9yZ2VkIGFjY2VwdCB2YWx1ZQ==")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap();
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let total: u64 = n.parse().unwrap_or(0);
        return download(total);
    }
    if path == "/upload" {
        // Reads the body frame by frame and answers its length and SHA-256.
        let mut body = req.into_body();
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return full(StatusCode::BAD_REQUEST, "body error");
            };
            if let Some(data) = frame.data_ref() {
                ctx.update(data);
                len += data.len() as u64;
            }
        }
        let hex: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        return full(StatusCode::OK, format!("{len} {hex}"));
    }
    if path == "/readback" {
        return full(
            StatusCode::OK,
            format!("stored: {}", readback.unwrap_or_default()),
        );
    }
    if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        return full(StatusCode::OK, "slow done");
    }
    if path == "/small" {
        return full(StatusCode::OK, "ok");
    }
    let body = describe(&req);
    if path == "/echo-header" {
        let mut r = full(StatusCode::OK, "see headers");
        if let Some(auth) = req.headers().get("authorization") {
            r.headers_mut().insert("x-echo-auth", auth.clone());
        }
        r.headers_mut().insert(
            "set-cookie",
            format!("q={}", req.uri().query().unwrap_or(""))
                .parse()
                .unwrap(),
        );
        return r;
    }
    if path == "/echo-gzip" {
        // Compressed whatever the client asked for.
        use tokio::io::AsyncReadExt;
        let text = body.to_string();
        let mut encoder = async_compression::tokio::bufread::GzipEncoder::new(text.as_bytes());
        let mut gz = Vec::new();
        encoder.read_to_end(&mut gz).await.unwrap();
        let mut r = full(StatusCode::OK, gz);
        r.headers_mut()
            .insert("content-encoding", "gzip".parse().unwrap());
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return r;
    }
    if path == "/echo-body" {
        let declared = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let data = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return full(
            StatusCode::OK,
            format!(
                "content-length={declared} actual={} body={}",
                data.len(),
                String::from_utf8_lossy(&data)
            ),
        );
    }
    let mut r = full(StatusCode::OK, body.to_string());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn download(total: u64) -> Response<Body> {
    const CHUNK: u64 = 64 * 1024;
    let stream = futures_util::stream::unfold(0u64, move |offset| async move {
        if offset >= total {
            return None;
        }
        let len = CHUNK.min(total - offset);
        let chunk: Vec<u8> = (offset..offset + len).map(pattern_byte).collect();
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))),
            offset + len,
        ))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert("content-length", total.into());
    r
}

fn websocket_echo(req: &mut Request<Incoming>, greeting: Option<String>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return full(StatusCode::BAD_REQUEST, "not a websocket request");
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        if let Some(greeting) = greeting {
            if ws
                .send(tokio_tungstenite::tungstenite::Message::text(greeting))
                .await
                .is_err()
            {
                return;
            }
        }
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}
