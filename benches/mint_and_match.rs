//! Criterion benches: leaf certificate minting (cold and cached) and policy
//! matching, the per-connection and per-request costs tollgate adds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::Path;
use tollgate::policy::{normalize_host, parse_policy, RequestFacts, RequestPath, Scheme};
use tollgate::tls::{ensure_ca, load_ca, LeafIssuer};

fn issuer() -> (tempfile::TempDir, LeafIssuer) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    ensure_ca(&cert, &key).unwrap();
    (dir, LeafIssuer::new(load_ca(&cert, &key).unwrap(), 10_000))
}

fn minting(c: &mut Criterion) {
    let (_dir, issuer) = issuer();
    c.bench_function("mint leaf cert + server config (cold)", |b| {
        b.iter(|| {
            black_box(
                issuer
                    .build_server_config(black_box("api.example.com"))
                    .unwrap(),
            )
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(issuer.server_config("api.example.com"))
        .unwrap();
    c.bench_function("server config from cache (warm)", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(issuer.server_config(black_box("api.example.com")))
                    .unwrap(),
            )
        })
    });
}

fn policy_text() -> String {
    let mut text = String::from("name: bench\nrules:\n");
    for i in 0..20 {
        text.push_str(&format!(
            "  - name: r{i}\n    host: api{i}.example.com\n    methods: [GET, POST]\n    paths: [\"/repos/acme/*/pulls\", \"/repos/acme/*/pulls/**\"]\n"
        ));
    }
    text.push_str("  - name: last\n    host: \"*.github.com\"\n    methods: [GET]\n    paths: [\"/repos/acme/*/issues/*/comments\"]\n");
    text
}

fn matching(c: &mut Criterion) {
    let (policy, _) = parse_policy(Path::new("bench.yaml"), &policy_text()).unwrap();
    let method = http::Method::GET;
    c.bench_function("policy match: 21 rules, last rule matches", |b| {
        b.iter(|| {
            let host = normalize_host(black_box("API.GitHub.com")).unwrap();
            let path =
                RequestPath::parse(black_box("/repos/acme/tollgate/issues/42/comments")).unwrap();
            let facts = RequestFacts {
                scheme: Scheme::Https,
                host: &host,
                port: 443,
                method: &method,
                path: &path,
            };
            black_box(policy.match_request(&facts).map(|r| r.name.len()))
        })
    });
    c.bench_function("policy match: first rule matches", |b| {
        b.iter(|| {
            let host = normalize_host(black_box("api0.example.com")).unwrap();
            let path = RequestPath::parse(black_box("/repos/acme/x/pulls/7/files")).unwrap();
            let facts = RequestFacts {
                scheme: Scheme::Https,
                host: &host,
                port: 443,
                method: &method,
                path: &path,
            };
            black_box(policy.match_request(&facts).map(|r| r.name.len()))
        })
    });
    c.bench_function("policy match: no rule (default deny)", |b| {
        b.iter(|| {
            let host = normalize_host(black_box("evil.example.net")).unwrap();
            let path = RequestPath::parse(black_box("/a/b/c")).unwrap();
            let facts = RequestFacts {
                scheme: Scheme::Https,
                host: &host,
                port: 443,
                method: &method,
                path: &path,
            };
            black_box(policy.match_request(&facts).is_none())
        })
    });
}

criterion_group!(benches, minting, matching);
criterion_main!(benches);
