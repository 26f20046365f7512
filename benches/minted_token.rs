//! Criterion benches: what a minted credential costs a request.
//!
//! - a cached minted GitHub App token against a cached stored secret (the
//!   secret store's hit path): the per-request cost, which should be the same;
//! - the first request of a task, which mints: App JWT from its cache, then a
//!   `POST /app/installations/{id}/access_tokens` over TLS to a local issuer on
//!   loopback (a pooled connection, as in steady state);
//! - signing an App JWT (RS256, 2048-bit key), which happens every 8 minutes.

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented pub fn"
)]
#![expect(
    clippy::unwrap_used,
    reason = "a failed setup stops the bench with its message"
)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate::config::{StaticTask, UpstreamConfig};
use tollgate::metrics::MintCounters;
use tollgate::mint::{IssuerClient, Minter};
use tollgate::net::Dialer;
use tollgate::policy::parse_policy;
use tollgate::secrets::{EnvBackend, KeyReader, SecretStore};
use tollgate::tasks::{Task, TaskRegistry};

const ISSUER_HOST: &str = "api.github.bench.test";

/// A local issuer: answers every request with a fresh installation token.
async fn start_issuer(tls: Arc<rustls::ServerConfig>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |_req| {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async move {
                        let body = format!(
                            r#"{{"token":"ghs_bench{n:031}","expires_at":"2099-01-01T00:00:00Z"}}"#
                        );
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .status(201)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

fn tls_pair() -> (Arc<rustls::ServerConfig>, tempfile::TempDir) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![ISSUER_HOST.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), cert.pem()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (Arc::new(server), dir)
}

fn app_key_pem() -> String {
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der =
        aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&key).unwrap();
    pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()))
}

fn task(id: &str) -> Arc<Task> {
    let registry = TaskRegistry::from_static(&[StaticTask {
        id: id.to_string(),
        policy: "bench".into(),
        token: None,
        source: None,
        line: None,
    }]);
    let task = registry.iter().next().unwrap().clone();
    task
}

fn minted(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (server_tls, roots) = tls_pair();
    let port = rt.block_on(start_issuer(server_tls));
    // SAFETY: set before any other thread of this bench reads the environment.
    unsafe {
        std::env::set_var("TGBENCH_APP_KEY", app_key_pem());
        std::env::set_var("TGBENCH_STORED", "ghp_stored0123456789abcdefghijklmnopqrs");
    }
    let text = format!(
        "name: bench
secrets:
  GITHUB_TOKEN:
    github_app:
      app_id: 1
      installation_id: 7
      private_key: {{ env: APP_KEY }}
      repositories: [widgets]
      api: https://{ISSUER_HOST}:{port}
    hosts: [api.github.com]
  STORED_TOKEN:
    env: STORED
    hosts: [api.github.com]
rules:
  - host: api.github.com
    inject: [GITHUB_TOKEN, STORED_TOKEN]
"
    );
    let (policy, _) = parse_policy(Path::new("bench.yaml"), &text).unwrap();
    let spec = |name: &str| {
        policy
            .secrets
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .unwrap()
            .1
            .clone()
    };
    let (minted_spec, stored_spec) = (spec("GITHUB_TOKEN"), spec("STORED_TOKEN"));

    let upstream = UpstreamConfig {
        extra_roots: vec![roots.path().join("root.pem")],
        resolve: [(
            ISSUER_HOST.to_string(),
            format!("127.0.0.1:{port}").parse().unwrap(),
        )]
        .into(),
        allow_private: vec!["127.0.0.0/8".parse().unwrap()],
        connect_timeout: Duration::from_secs(5),
    };
    let client_tls = tollgate::tls::upstream_client_config(&upstream.extra_roots).unwrap();
    let keys = KeyReader::new(EnvBackend::new("TGBENCH_"), None);
    let minter = Arc::new(Minter::new(
        keys,
        IssuerClient::new(Dialer::new(&upstream), client_tls),
        MintCounters::default(),
    ));
    let store = Arc::new(SecretStore::new(EnvBackend::new("TGBENCH_"), None));

    let warm = task("warm");
    rt.block_on(async {
        minter.get(&warm, "bench", &minted_spec).await.unwrap();
        store.get("warm", "bench", &stored_spec).await.unwrap();
    });

    let mut group = c.benchmark_group("secret for a request");
    // Each measurement loops inside one `block_on`, so that the runtime's
    // entry cost is not part of a lookup that takes well under a microsecond.
    group.bench_function("stored secret, cached (SecretStore::get)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(store.get("warm", "bench", &stored_spec).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("minted GitHub token, cached (Minter::get)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(minter.get(&warm, "bench", &minted_spec).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    let mut n = 0u64;
    group.bench_function(
        "minted GitHub token, first request of a task (mint over TLS, loopback)",
        |b| {
            b.iter_custom(|iters| {
                let tasks: Vec<Arc<Task>> = (0..iters)
                    .map(|_| {
                        n += 1;
                        task(&format!("t{n}"))
                    })
                    .collect();
                rt.block_on(async {
                    let start = Instant::now();
                    for task in &tasks {
                        black_box(minter.get(task, "bench", &minted_spec).await.unwrap());
                    }
                    start.elapsed()
                })
            })
        },
    );
    group.finish();

    let pem = app_key_pem();
    let signer = tollgate::mint::jwt::RsaSigner::from_pem(&pem).unwrap();
    c.bench_function("sign a GitHub App JWT (RS256, 2048-bit)", |b| {
        b.iter(|| {
            black_box(
                signer
                    .sign(
                        &serde_json::json!({"alg": "RS256", "typ": "JWT"}),
                        &serde_json::json!({"iat": 1, "exp": 2, "iss": "1"}),
                    )
                    .unwrap(),
            )
        })
    });
}

criterion_group!(benches, minted);
criterion_main!(benches);
