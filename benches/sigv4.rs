//! Criterion bench: what checking a sandbox's SigV4 signature and signing the
//! request again costs on the request path (`Signed::read`, `verify`, `resign`;
//! issue 15's target: ≤ 10 µs for a header-auth GET). Both signatures use cached
//! signing keys, as in steady state.

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
    canonical_request, signature, string_to_sign, CanonicalInput, Credentials, Scope, Signed,
    SigningKeys,
};

fn sigv4(c: &mut Criterion) {
    let path = "/reports/2026/12/summary.csv?versionId=3HL4kqtJlcpXroDTDmJ";
    let host = "bucket.s3.amazonaws.com";
    let amz_date = "20261205T080936Z";
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let mut headers = HeaderMap::new();
    headers.insert("host", host.parse().unwrap());
    headers.insert("x-amz-date", amz_date.parse().unwrap());
    headers.insert("x-amz-content-sha256", empty.parse().unwrap());
    headers.insert("x-amz-security-token", "__AWS__".parse().unwrap());
    headers.insert(
        "user-agent",
        "Boto3/1.40 md/Botocore#1.40 ua/2.1 os/linux"
            .parse()
            .unwrap(),
    );
    let keys = SigningKeys::default();
    // The sandbox's request, signed with the placeholder as secret key.
    let scope = Scope {
        access_key: "__AWS__".into(),
        date: "20261205".into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    };
    let signed_headers: Vec<String> = [
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-security-token",
    ]
    .map(String::from)
    .to_vec();
    let (p, q) = path.split_once('?').unwrap();
    let canonical = canonical_request(&CanonicalInput {
        method: "GET",
        path: p,
        query: q,
        headers: &headers,
        host,
        signed_headers: &signed_headers,
        payload_hash: empty,
        service: "s3",
        exclude_query: &[],
    })
    .unwrap();
    let seed = signature(
        &keys.key("__AWS__", &scope),
        &string_to_sign(amz_date, &scope, &canonical),
    );
    headers.insert(
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential=__AWS__/{}, SignedHeaders={}, Signature={seed}",
            scope.credential_scope(),
            signed_headers.join(";")
        )
        .parse()
        .unwrap(),
    );
    let creds = Credentials {
        access_key_id: "ASIAEXAMPLEEXAMPLE01",
        secret_access_key: "real-secret-key-0123456789",
        session_token: Some("IQoJb3JpZ2luX2VjE//real+session/token=="),
        expires_at: None,
    };
    c.bench_function(
        "sigv4: check the sandbox's signature and sign again (header GET)",
        |b| {
            b.iter(|| {
                // The request head as it arrives, then what the proxy does to it.
                let mut parts = http::Request::get(path).body(()).unwrap().into_parts().0;
                parts.headers = headers.clone();
                let signed = Signed::read(black_box(&parts)).unwrap().unwrap();
                signed.verify(&parts, "__AWS__", empty, &keys).unwrap();
                signed
                    .resign(&mut parts, host, &creds, empty, &keys)
                    .unwrap();
                black_box(parts)
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
