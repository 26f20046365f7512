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
/// reads as it would arrive (issue 15's target: ≥ 500 MiB/s), without and
/// with a signed trailer (a CRC-32 checksum).
fn chunked(c: &mut Criterion) {
    use tollgate::fuzzing::sigv4_chunked::{chain, signed_body};
    use tollgate::sigv4::chunked::Resigner;
    let seed = "0".repeat(64);
    let data = vec![b'x'; 64 * 1024 * 1024];
    let chunks: Vec<&[u8]> = data.chunks(64 * 1024).collect();
    let mut group = c.benchmark_group("sigv4 aws-chunked");
    group.sample_size(10);
    for trailer in [false, true] {
        // The body the sandbox sends: signed by the placeholder's chain.
        let lines = ["x-amz-checksum-crc32:5CqqZw=="];
        let body = signed_body(
            &mut chain("__AWS__", &seed),
            &chunks,
            trailer.then_some(&lines[..]),
        );
        group.throughput(criterion::Throughput::Bytes(body.len() as u64));
        let name = if trailer {
            "check and sign again, 64 MiB in 64 KiB chunks, with a trailer"
        } else {
            "check and sign again, 64 MiB in 64 KiB chunks"
        };
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(body.len());
            b.iter(|| {
                out.clear();
                let (check, sign) = (chain("__AWS__", &seed), chain("real-secret", &seed));
                let mut resigner = if trailer {
                    Resigner::with_trailer(check, sign)
                } else {
                    Resigner::new(check, sign)
                };
                for piece in body.chunks(16 * 1024) {
                    resigner.push(piece, &mut out).unwrap();
                }
                resigner.finish().unwrap();
                assert_eq!(out.len(), body.len());
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sigv4, chunked);
criterion_main!(benches);
