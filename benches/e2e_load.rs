//! End-to-end load bench: small GETs over keep-alive connections through tollgate
//! and direct to the same local HTTPS upstream, in one run; the same through
//! tollgate with one injected (cached) secret, and the latency of both on one
//! connection; then new TLS connections through tollgate. Reports requests per second, tollgate's own CPU
//! time (utime+stime from /proc/PID/stat) per request and per new connection, and
//! its peak RSS; and, through a fresh proxy each, the CPU per request with the audit
//! trail off, with `sign: record` and with `sign: checkpoint`. Loopback only; every
//! loop is bounded.
//!
//!     cargo bench --bench e2e_load
//!
//! Knobs (env): E2E_CONNS (default 16), E2E_REQS per connection (default 2000),
//! E2E_NEW_CONNS (default 1000), E2E_LOG (tollgate's RUST_LOG, default `info`,
//! i.e. with its per-request log line), E2E_UPSTREAM_H1 (set: the upstream offers
//! only HTTP/1.1, so tollgate pools one upstream connection per client connection),
//! E2E_AUDIT_ONLY (set: only the audit section), E2E_CLUSTER_ONLY (set: only the
//! cluster section: single process against cluster mode on a local
//! redis-server, one replica and three, with a rate limit and a budget checked
//! on every request).

#![expect(
    clippy::unwrap_used,
    reason = "a failed setup stops the bench with its message"
)]

#[path = "../tests/common/upstream.rs"]
mod upstream;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const HOST: &str = "api.bench.test";
const TOKEN: &str = "bench-token";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Proxy {
    child: Child,
    addr: SocketAddr,
    ca_pem: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// utime + stime in seconds.
    fn cpu_seconds(&self) -> f64 {
        cpu_of(self.child.id())
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }
}

/// utime + stime of process `pid`, in seconds.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of /proc/PID/stat; index 11 and 12 after the comm.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / clock_ticks() as f64
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn start_proxy(upstream_port: u16, upstream_ca: &str, audit_yaml: &str) -> Proxy {
    start_proxy_with(upstream_port, upstream_ca, audit_yaml, "")
}

/// [`start_proxy`] with `policy_extra` (top-level policy keys) in the policy.
fn start_proxy_with(
    upstream_port: u16,
    upstream_ca: &str,
    audit_yaml: &str,
    policy_extra: &str,
) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir(p.join("policies")).unwrap();
    std::fs::write(
        p.join("policies/bench.yaml"),
        format!("name: bench\n{policy_extra}secrets:\n  BENCH_TOKEN:\n    env: BENCH\n    hosts: [{HOST}]\nrules:\n  - name: small\n    host: {HOST}\n    port: {upstream_port}\n    methods: [GET]\n    paths: [\"/small\"]\n    inject: [BENCH_TOKEN]\n"),
    )
    .unwrap();
    std::fs::write(p.join("upstream-ca.pem"), upstream_ca).unwrap();
    std::fs::write(
        p.join("tollgate.yaml"),
        format!("listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nstate_dir: state\nupstream:\n  extra_roots: [upstream-ca.pem]\n  resolve: {{ {HOST}: \"127.0.0.1:{upstream_port}\" }}\n  allow_private: [127.0.0.1/32]\ntasks:\n  - {{ id: bench, policy: bench, token_env: BENCH_TOKEN }}\n{audit_yaml}"),
    )
    .unwrap();
    let log = std::fs::File::create(p.join("tollgate.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(p.join("tollgate.yaml"))
        .env("BENCH_TOKEN", TOKEN)
        .env(
            "TOLLGATE_SECRET_BENCH",
            "bench-secret-0123456789abcdefghijklmnop",
        )
        .env(
            "RUST_LOG",
            std::env::var("E2E_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let log_path = p.join("tollgate.log");
    let ca_pem = p.join("state/ca.pem");
    // Owned by `Proxy` at once, so that any panic below still kills the child.
    let mut proxy = Proxy {
        child,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        ca_pem,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(idx) = text.find("tollgate listening on ") {
            proxy.addr = text[idx + 22..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            return proxy;
        }
        assert!(Instant::now() < deadline, "tollgate did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tls_connector(pem: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

#[derive(Clone, Copy)]
enum Route {
    Direct(SocketAddr),
    Proxy(SocketAddr),
}

async fn open(route: Route, target_port: u16, tls: &TlsConnector) -> SendRequest<Empty<Bytes>> {
    let addr = match route {
        Route::Direct(a) | Route::Proxy(a) => a,
    };
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    if let Route::Proxy(_) = route {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("bench:{TOKEN}"));
        tcp.write_all(format!("CONNECT {HOST}:{target_port} HTTP/1.1\r\nHost: {HOST}:{target_port}\r\nProxy-Authorization: Basic {auth}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                tcp.read(&mut byte).await.unwrap(),
                1,
                "proxy closed during CONNECT"
            );
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
    }
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let stream = tls.connect(name, tcp).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// What each request of a run asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// `GET /small`, allowed.
    Plain,
    /// `GET /small` with a placeholder to inject.
    Inject,
    /// `GET /denied`: no rule, 403, its record written through before the answer.
    Denied,
}

async fn get_small(sender: &mut SendRequest<Empty<Bytes>>, target_port: u16, ask: Ask) {
    sender.ready().await.unwrap();
    let path = if ask == Ask::Denied {
        "/denied"
    } else {
        "/small"
    };
    let mut req = http::Request::get(path)
        .header("host", format!("{HOST}:{target_port}"))
        .body(Empty::new())
        .unwrap();
    if ask == Ask::Inject {
        req.headers_mut().insert(
            "authorization",
            http::HeaderValue::from_static("Bearer __BENCH_TOKEN__"),
        );
    }
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), if ask == Ask::Denied { 403 } else { 200 });
    resp.into_body().collect().await.unwrap();
}

/// `conns` keep-alive connections, `reqs` GETs each. Returns requests per second.
async fn keepalive_run(
    route: Route,
    target_port: u16,
    tls: &TlsConnector,
    conns: usize,
    reqs: usize,
    ask: Ask,
) -> f64 {
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        senders.push(open(route, target_port, tls).await);
    }
    let start = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            tokio::spawn(async move {
                for _ in 0..reqs {
                    get_small(&mut sender, target_port, ask).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (conns * reqs) as f64 / start.elapsed().as_secs_f64()
}

/// `total` new connections (8 at a time), one GET each. Returns connections per second.
async fn new_conn_run(route: Route, target_port: u16, tls: &TlsConnector, total: usize) -> f64 {
    let start = Instant::now();
    let per_worker = total / 8;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let tls = tls.clone();
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    let mut sender = open(route, target_port, &tls).await;
                    get_small(&mut sender, target_port, Ask::Plain).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (per_worker * 8) as f64 / start.elapsed().as_secs_f64()
}

/// Median latency of sequential GETs on one connection, plain and injected,
/// interleaved so that both see the same machine.
async fn latency_pair(proxy: &Proxy, target_port: u16, tls: &TlsConnector, n: usize) -> (f64, f64) {
    let mut plain_sender = open(Route::Proxy(proxy.addr), target_port, tls).await;
    let mut inject_sender = open(Route::Proxy(proxy.addr), target_port, tls).await;
    let mut plain = Vec::with_capacity(n);
    let mut injected = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        get_small(&mut plain_sender, target_port, Ask::Plain).await;
        plain.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        get_small(&mut inject_sender, target_port, Ask::Inject).await;
        injected.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    (median(&mut plain), median(&mut injected))
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` asks benches to list themselves; nothing to do.
    }
    let conns = env_num("E2E_CONNS", 16);
    let reqs = env_num("E2E_REQS", 2000);
    let new_conns = env_num("E2E_NEW_CONNS", 1000);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ca = upstream::TestCa::new("bench upstream CA");
        let mut server_config = (*ca.server_config(&[HOST])).clone();
        if std::env::var("E2E_UPSTREAM_H1").is_ok() {
            server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        let up = upstream::start_upstream(Some(Arc::new(server_config))).await;
        let proxy = start_proxy(up.port, &ca.cert_pem, "");
        let direct_tls = tls_connector(ca.cert_pem.as_bytes());
        let proxy_tls = tls_connector(&std::fs::read(&proxy.ca_pem).unwrap());

        if std::env::var("E2E_CLUSTER_ONLY").is_ok() {
            cluster::section(&up, &ca, conns, reqs).await;
            return;
        }
        if std::env::var("E2E_AUDIT_ONLY").is_ok() {
            audit_section(&up, &ca, conns, reqs).await;
            return;
        }
        // Warm up both paths (certificate mint, upstream pool).
        keepalive_run(Route::Direct(up.addr()), up.port, &direct_tls, 2, 50, Ask::Plain).await;
        keepalive_run(Route::Proxy(proxy.addr), up.port, &proxy_tls, 2, 50, Ask::Inject).await;

        let direct_rps = keepalive_run(Route::Direct(up.addr()), up.port, &direct_tls, conns, reqs, Ask::Plain).await;
        let cpu0 = proxy.cpu_seconds();
        let proxy_rps = keepalive_run(Route::Proxy(proxy.addr), up.port, &proxy_tls, conns, reqs, Ask::Plain).await;
        let cpu1 = proxy.cpu_seconds();
        let per_req_us = (cpu1 - cpu0) / (conns * reqs) as f64 * 1e6;
        let inject_rps = keepalive_run(Route::Proxy(proxy.addr), up.port, &proxy_tls, conns, reqs, Ask::Inject).await;
        let cpu1b = proxy.cpu_seconds();
        let per_inject_us = (cpu1b - cpu1) / (conns * reqs) as f64 * 1e6;
        let (plain_lat, inject_lat) = latency_pair(&proxy, up.port, &proxy_tls, 2000).await;

        let cpu2 = proxy.cpu_seconds();
        let conn_rate = new_conn_run(Route::Proxy(proxy.addr), up.port, &proxy_tls, new_conns).await;
        let cpu3 = proxy.cpu_seconds();
        let per_conn_ms = (cpu3 - cpu2) / (new_conns / 8 * 8) as f64 * 1e3;

        println!("e2e_load: {conns} keep-alive connections x {reqs} GET /small (HTTP/1.1 over TLS)");
        println!("  direct to upstream:      {direct_rps:>10.0} req/s");
        println!("  through tollgate:        {proxy_rps:>10.0} req/s  ({:.0}% of direct)", proxy_rps / direct_rps * 100.0);
        println!("  tollgate CPU/request:    {per_req_us:>10.1} µs  (utime+stime over the run / requests)");
        println!("  with one injected secret:{inject_rps:>10.0} req/s, {per_inject_us:.1} µs CPU/request (Bearer placeholder, cached, response scrubbed)");
        println!("  one connection, sequential: median latency {plain_lat:.1} µs plain, {inject_lat:.1} µs with one injected secret");
        println!("new connections through tollgate (CONNECT + TLS + 1 GET), 8 at a time, {new_conns} total:");
        println!("  rate:                    {conn_rate:>10.0} conn/s");
        println!("  tollgate CPU/connection: {per_conn_ms:>10.3} ms  (includes its one request and the pooled upstream hop)");
        println!("tollgate peak RSS:         {:>10.1} MiB", proxy.peak_rss_mib());
        drop(proxy);
        audit_section(&up, &ca, conns, reqs).await;
        cluster::section(&up, &ca, conns, reqs).await;
    });
}

/// A keep-alive run through `proxy`: requests per second, and tollgate's CPU per
/// request (once the writer thread's work has landed).
async fn measured_run(
    proxy: &Proxy,
    target_port: u16,
    tls: &TlsConnector,
    conns: usize,
    reqs: usize,
    ask: Ask,
) -> (f64, f64) {
    let cpu0 = proxy.cpu_seconds();
    let rps = keepalive_run(Route::Proxy(proxy.addr), target_port, tls, conns, reqs, ask).await;
    // The writer may still be sealing: wait for its thread's work to land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu1 = proxy.cpu_seconds();
    (rps, (cpu1 - cpu0) / (conns * reqs) as f64 * 1e6)
}

/// The audit trail's cost: the same keep-alive load through one fresh proxy per
/// setting, each measured the same way.
async fn audit_section(up: &upstream::Upstream, ca: &upstream::TestCa, conns: usize, reqs: usize) {
    println!("audit trail, {conns} x {reqs} GET /small through a fresh proxy per setting:");
    for (name, yaml) in [
        ("audit off", "audit: { sinks: [] }\n"),
        ("sign: record", "audit: { sign: record }\n"),
        ("sign: checkpoint", "audit: { sign: checkpoint }\n"),
    ] {
        let proxy = start_proxy(up.port, &ca.cert_pem, yaml);
        let proxy_tls = tls_connector(&std::fs::read(&proxy.ca_pem).unwrap());
        keepalive_run(
            Route::Proxy(proxy.addr),
            up.port,
            &proxy_tls,
            2,
            50,
            Ask::Plain,
        )
        .await;
        let (rps, per_req_us) =
            measured_run(&proxy, up.port, &proxy_tls, conns, reqs, Ask::Plain).await;
        println!("  {name:<17} {rps:>10.0} req/s, {per_req_us:>6.1} µs CPU/request");
        if yaml.contains("sign: record") {
            // Denials: each record is in the file before its 403 is sent.
            let (rps, per_req_us) =
                measured_run(&proxy, up.port, &proxy_tls, conns, reqs, Ask::Denied).await;
            let mut one = open(Route::Proxy(proxy.addr), up.port, &proxy_tls).await;
            let mut lat = Vec::with_capacity(2000);
            for _ in 0..2000 {
                let t = Instant::now();
                get_small(&mut one, up.port, Ask::Denied).await;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            lat.sort_by(|a, b| a.total_cmp(b));
            println!(
                "  {:<17} {rps:>10.0} req/s, {per_req_us:>6.1} µs CPU/request, median {:.1} µs on one connection",
                "  denied (403)",
                lat[lat.len() / 2]
            );
        }
    }
}

/// Cluster mode's cost: the same load through a single process and through
/// replicas sharing a local redis-server, with a policy whose rate limit and
/// request budget are checked on every request (the Redis round trips a
/// cluster adds; without them a replica asks Redis nothing per request).
mod cluster {
    use super::*;

    /// Checked per request, never reached: the work, not a refusal, is measured.
    const POLICY_LIMITS: &str =
        "rate: { requests: 100000000, per: 1s, burst: 100000000 }\nbudgets: { requests: 1000000000 }\n";

    struct Redis {
        child: Child,
        port: u16,
        _dir: tempfile::TempDir,
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Redis {
        fn start() -> Option<Redis> {
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let conf = format!(
                "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\nlogfile \"\"\n",
                dir.path().display()
            );
            std::fs::write(dir.path().join("redis.conf"), conf).unwrap();
            let child = Command::new("redis-server")
                .arg(dir.path().join("redis.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(Redis {
                child,
                port,
                _dir: dir,
            })
        }

        fn cpu_seconds(&self) -> f64 {
            cpu_of(self.child.id())
        }
    }

    fn replica_yaml(redis: &Redis, id: &str) -> String {
        format!(
            "cluster: {{ redis: \"redis://127.0.0.1:{}/0\", replica_id: {id} }}\n",
            redis.port
        )
    }

    /// Waits until the replica's subscriber and health check see Redis.
    async fn settle(proxy: &Proxy, port: u16, tls: &TlsConnector) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = tokio::time::timeout(Duration::from_secs(2), async {
                let mut sender = open(Route::Proxy(proxy.addr), port, tls).await;
                sender.ready().await.is_ok()
            })
            .await
            .unwrap_or(false);
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "replica never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `conns` connections spread over `proxies`, `reqs` GETs each: requests
    /// per second, tollgate CPU µs per request (all replicas), Redis CPU µs
    /// per request.
    async fn spread_run(
        proxies: &[(Proxy, TlsConnector)],
        redis: Option<&Redis>,
        port: u16,
        conns: usize,
        reqs: usize,
    ) -> (f64, f64, f64) {
        let mut senders = Vec::with_capacity(conns);
        for i in 0..conns {
            let (proxy, tls) = &proxies[i % proxies.len()];
            senders.push(open(Route::Proxy(proxy.addr), port, tls).await);
        }
        let cpu =
            |ps: &[(Proxy, TlsConnector)]| ps.iter().map(|(p, _)| p.cpu_seconds()).sum::<f64>();
        let cpu0 = cpu(proxies);
        let redis0 = redis.map_or(0.0, Redis::cpu_seconds);
        let start = Instant::now();
        let tasks: Vec<_> = senders
            .into_iter()
            .map(|mut sender| {
                tokio::spawn(async move {
                    for _ in 0..reqs {
                        get_small(&mut sender, port, Ask::Plain).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let rps = (conns * reqs) as f64 / start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = (conns * reqs) as f64;
        let proxy_us = (cpu(proxies) - cpu0) / n * 1e6;
        let redis_us = (redis.map_or(0.0, Redis::cpu_seconds) - redis0) / n * 1e6;
        (rps, proxy_us, redis_us)
    }

    async fn median_latency(proxy: &Proxy, port: u16, tls: &TlsConnector, n: usize) -> f64 {
        let mut one = open(Route::Proxy(proxy.addr), port, tls).await;
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            get_small(&mut one, port, Ask::Plain).await;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        lat.sort_by(|a, b| a.total_cmp(b));
        lat[lat.len() / 2]
    }

    pub(super) async fn section(
        up: &upstream::Upstream,
        ca: &upstream::TestCa,
        conns: usize,
        reqs: usize,
    ) {
        let Some(redis) = Redis::start() else {
            println!("cluster: skipped (redis-server is not installed)");
            return;
        };
        println!("cluster mode, {conns} x {reqs} GET /small, a rate limit and a request budget checked per request:");
        let start = |config: String| {
            let proxy = start_proxy_with(up.port, &ca.cert_pem, &config, POLICY_LIMITS);
            let tls = tls_connector(&std::fs::read(&proxy.ca_pem).unwrap());
            (proxy, tls)
        };
        for (name, replicas) in [
            ("single process", 0usize),
            ("cluster, 1 replica", 1),
            ("cluster, 3 replicas", 3),
        ] {
            let proxies: Vec<(Proxy, TlsConnector)> = if replicas == 0 {
                vec![start(String::new())]
            } else {
                (0..replicas)
                    .map(|i| start(replica_yaml(&redis, &format!("bench-{i}"))))
                    .collect()
            };
            for (proxy, tls) in &proxies {
                settle(proxy, up.port, tls).await;
                keepalive_run(Route::Proxy(proxy.addr), up.port, tls, 2, 50, Ask::Plain).await;
            }
            let shared = (replicas > 0).then_some(&redis);
            let (rps, proxy_us, redis_us) =
                spread_run(&proxies, shared, up.port, conns, reqs).await;
            // The audit writer finishes the run's records first.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let lat = median_latency(&proxies[0].0, up.port, &proxies[0].1, 2000).await;
            println!(
                "  {name:<20} {rps:>9.0} req/s, tollgate {proxy_us:>6.1} µs CPU/request, redis {redis_us:>5.1} µs CPU/request, median {lat:.1} µs on one connection"
            );
        }
    }
}
