//! Criterion benches: leaf certificate minting (cold and cached) and policy
//! matching, the per-connection and per-request costs tollgate adds.

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented pub fn"
)]
#![expect(
    clippy::unwrap_used,
    reason = "a failed setup stops the bench with its message"
)]

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

fn injection(c: &mut Criterion) {
    use std::sync::Arc;
    use tollgate::inject::check_request;
    use tollgate::secrets::SecretValue;
    let text = "name: p\nsecrets:\n  GITHUB_TOKEN:\n    env: GH\n    hosts: [api.github.com]\n  NPM_TOKEN:\n    env: NPM\n    hosts: [registry.npmjs.org]\nrules:\n  - host: api.github.com\n    inject: [GITHUB_TOKEN]\n";
    let (policy, _) = parse_policy(Path::new("p.yaml"), text).unwrap();
    let rule = &policy.rules[0];
    let request = || {
        http::Request::get("https://api.github.com/repos/acme/x/pulls?state=open&per_page=100")
            .header("host", "api.github.com")
            .header("user-agent", "gh/2.40.0 (linux)")
            .header("accept", "application/vnd.github+json")
            .header("accept-encoding", "gzip, deflate, br")
            .header("x-github-api-version", "2022-11-28")
            .header("authorization", "Bearer __GITHUB_TOKEN__")
            .header("content-type", "application/json")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    let value = vec![Arc::new(SecretValue::new(
        "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB".into(),
    ))];
    c.bench_function(
        "inject: check + substitute, 8 typical headers, one Bearer secret",
        |b| {
            b.iter_batched(
                request,
                |mut parts| {
                    let permit = check_request(
                        &policy,
                        rule,
                        "api.github.com",
                        tollgate::policy::Scheme::Https,
                        &parts,
                        None,
                    )
                    .unwrap();
                    black_box(permit.apply(&mut parts, None, &value))
                },
                criterion::BatchSize::SmallInput,
            )
        },
    );
    c.bench_function("inject: check only, no placeholder present", |b| {
        b.iter_batched(
            || {
                let mut p = request();
                p.headers.remove("authorization");
                p
            },
            |parts| {
                black_box(
                    check_request(
                        &policy,
                        rule,
                        "api.github.com",
                        tollgate::policy::Scheme::Https,
                        &parts,
                        None,
                    )
                    .unwrap()
                    .is_empty(),
                )
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn scrubbing(c: &mut Criterion) {
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use tollgate::inject::{value_forms, Echo, Scrubber, SecretForm};
    const VALUE: &str = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    // What a task that injected one token has: the value's forms (pieces of
    // half or more count) and the Authorization header it rewrote (whole only).
    let header = SecretForm::new(
        format!("Bearer {VALUE}").into_bytes(),
        b"Bearer __GITHUB_TOKEN__".to_vec(),
        Echo::Whole,
    );
    let mut forms = value_forms("__GITHUB_TOKEN__", VALUE);
    forms.push(header);
    let pieces = Arc::new(Scrubber::new(forms).unwrap());
    // The same, matched whole only: what scrubbing cost before pieces counted.
    let whole = Arc::new(
        Scrubber::new(vec![
            SecretForm::new(VALUE.into(), b"__GITHUB_TOKEN__".to_vec(), Echo::Whole),
            SecretForm::new(
                format!("Bearer {VALUE}").into_bytes(),
                b"Bearer __GITHUB_TOKEN__".to_vec(),
                Echo::Whole,
            ),
        ])
        .unwrap(),
    );
    // 10 MiB of JSON-ish text in 16 KiB chunks, with the secret echoed a few
    // times, whole and in halves.
    let mut body = Vec::with_capacity(10 << 20);
    while body.len() < (10 << 20) {
        body.extend_from_slice(br#"{"id":123456,"title":"Fix the flaky test in the proxy","state":"open","user":{"login":"octocat"}},"#);
        if body.len() % (1 << 20) < 100 {
            body.extend_from_slice(VALUE.as_bytes());
            body.extend_from_slice(b" and ");
            body.extend_from_slice(&VALUE.as_bytes()[..21]);
        }
    }
    let chunks: Vec<Bytes> = body.chunks(16 * 1024).map(Bytes::copy_from_slice).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("scrub");
    group.throughput(criterion::Throughput::Bytes(body.len() as u64));
    group.sample_size(20);
    for (name, scrubber) in [
        (
            "10 MiB streamed body, 16 KiB chunks, pieces of half count",
            &pieces,
        ),
        (
            "10 MiB streamed body, 16 KiB chunks, whole values only",
            &whole,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let stream = futures_util::stream::iter(
                    chunks
                        .clone()
                        .into_iter()
                        .map(|c| Ok::<_, tollgate::body::BoxError>(http_body::Frame::data(c))),
                );
                let body = http_body_util::StreamBody::new(stream).boxed();
                let out = rt
                    .block_on(scrubber.clone().scrub_body(body).collect())
                    .unwrap();
                black_box(out.to_bytes().len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, minting, matching, injection, scrubbing);
criterion_main!(benches);
