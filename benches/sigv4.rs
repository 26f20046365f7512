//! Criterion bench: what checking a sandbox's SigV4 signature and signing the
//! request again costs (issue 15's target: ≤ 10 µs for a header-auth GET). Both
//! signatures use cached signing keys, as in steady state.

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented pub fn"
)]
#![expect(
    clippy::unwrap_used,
    reason = "a failed setup stops the bench with its message"
)]

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use std::hint::black_box;
use tollgate::sigv4::{
    canonical_request, parse_authorization, signature, string_to_sign, CanonicalInput, Scope,
    SigningKeys,
};

fn sigv4(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert("host", "bucket.s3.amazonaws.com".parse().unwrap());
    headers.insert("x-amz-date", "20261205T080936Z".parse().unwrap());
    headers.insert(
        "x-amz-content-sha256",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "user-agent",
        "Boto3/1.40 md/Botocore#1.40 ua/2.1 os/linux"
            .parse()
            .unwrap(),
    );
    let header = format!(
        "AWS4-HMAC-SHA256 Credential=__AWS__/20261205/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
        "0".repeat(64)
    );
    let keys = SigningKeys::default();
    let real = Scope {
        access_key: "ASIAEXAMPLEEXAMPLE01".into(),
        ..parse_authorization(&header).unwrap().scope
    };
    c.bench_function(
        "sigv4: check the sandbox's signature and sign again (header GET)",
        |b| {
            b.iter(|| {
                let auth = parse_authorization(black_box(&header)).unwrap();
                let canonical = canonical_request(&CanonicalInput {
                    method: "GET",
                    path: "/reports/2026/12/summary.csv",
                    query: "versionId=3HL4kqtJlcpXroDTDmJ",
                    headers: &headers,
                    host: "bucket.s3.amazonaws.com",
                    signed_headers: &auth.signed_headers,
                    payload_hash:
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    service: &auth.scope.service,
                    exclude_query: &[],
                })
                .unwrap();
                let to_sign = string_to_sign("20261205T080936Z", &auth.scope, &canonical);
                let check = signature(&keys.key("__AWS__", &auth.scope), &to_sign);
                let to_sign = string_to_sign("20261205T080936Z", &real, &canonical);
                let fresh = signature(&keys.key("real-secret-key-0123456789", &real), &to_sign);
                black_box((check, fresh))
            })
        },
    );
}

/// Re-signing a 64 MiB `aws-chunked` upload in 64 KiB chunks, fed in 16 KiB
/// reads as it would arrive (issue 15's target: ≥ 500 MiB/s).
fn chunked(c: &mut Criterion) {
    use tollgate::sigv4::chunked::{Chain, Resigner};
    let scope = Scope {
        access_key: "__AWS__".into(),
        date: "20261205".into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    };
    let keys = SigningKeys::default();
    let chain = |secret: &str| {
        Chain::new(
            keys.key(secret, &scope),
            "20261205T080936Z",
            &scope.credential_scope(),
            &"0".repeat(64),
        )
    };
    // The body the sandbox sends: signed by the placeholder's chain.
    let data = vec![b'x'; 64 * 1024];
    let mut plain = Vec::new();
    for _ in 0..1024 {
        plain.extend_from_slice(format!("10000;chunk-signature={}\r\n", "0".repeat(64)).as_bytes());
        plain.extend_from_slice(&data);
        plain.extend_from_slice(b"\r\n");
    }
    plain.extend_from_slice(format!("0;chunk-signature={}\r\n\r\n", "0".repeat(64)).as_bytes());
    // Signed once, chunk by chunk, with the placeholder's chain.
    let body = {
        let mut signed = Vec::with_capacity(plain.len());
        let mut offset = 0;
        let mut previous = "0".repeat(64);
        while offset < plain.len() {
            let end = plain[offset..].iter().position(|b| *b == b'\n').unwrap() + offset + 1;
            let size = usize::from_str_radix(
                std::str::from_utf8(&plain[offset..end])
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap(),
                16,
            )
            .unwrap();
            let chunk = &plain[end..end + size];
            let hash = tollgate::text::hex(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, chunk).as_ref(),
            );
            let to_sign = format!(
                "AWS4-HMAC-SHA256-PAYLOAD\n20261205T080936Z\n{}\n{previous}\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n{hash}",
                scope.credential_scope()
            );
            previous = signature(&keys.key("__AWS__", &scope), &to_sign);
            signed.extend_from_slice(format!("{size:x};chunk-signature={previous}\r\n").as_bytes());
            signed.extend_from_slice(chunk);
            signed.extend_from_slice(b"\r\n");
            offset = end + size + 2;
        }
        signed
    };
    let mut group = c.benchmark_group("sigv4 aws-chunked");
    group.throughput(criterion::Throughput::Bytes(body.len() as u64));
    group.sample_size(10);
    group.bench_function("check and sign again, 64 MiB in 64 KiB chunks", |b| {
        let mut out = Vec::with_capacity(body.len());
        b.iter(|| {
            out.clear();
            let mut resigner = Resigner::new(chain("__AWS__"), chain("real-secret"));
            for piece in body.chunks(16 * 1024) {
                resigner.push(piece, &mut out).unwrap();
            }
            resigner.finish().unwrap();
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, sigv4, chunked);
criterion_main!(benches);
