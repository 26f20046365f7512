use super::*;
use crate::sigv4::{canonical_request, string_to_sign, CanonicalInput, Scope, SigningKeys};
use http::HeaderMap;
use proptest::prelude::*;

/// The S3 documentation's example key (not the IAM example's: `/bPxR`, not `+bPxR`).
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const DATE: &str = "20130524T000000Z";
const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
/// AWS's worked example ("Signature calculation: transfer payload in multiple
/// chunks"): 66560 bytes of `a` in a 64 KiB and a 1 KiB chunk.
const CHUNK_SIGNATURES: [&str; 3] = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];

fn scope(access_key: &str) -> Scope {
    Scope {
        access_key: access_key.into(),
        date: "20130524".into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    }
}

fn example_body() -> Vec<u8> {
    let mut body = Vec::new();
    for (size, sig) in [65536usize, 1024, 0].iter().zip(CHUNK_SIGNATURES) {
        body.extend_from_slice(format!("{size:x};chunk-signature={sig}\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b'a', *size));
        body.extend_from_slice(b"\r\n");
    }
    body
}

fn chain(secret: &str, seed: &str) -> Chain {
    let scope = scope("AKIAIOSFODNN7EXAMPLE");
    Chain::new(
        SigningKeys::default().key(secret, &scope),
        DATE,
        &scope.credential_scope(),
        seed,
    )
}

fn run(resigner: &mut Resigner, body: &[u8], cuts: &[usize]) -> Result<Vec<u8>, ChunkError> {
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts
        .iter()
        .map(|c| c % (body.len() + 1))
        .chain([body.len()])
    {
        let cut = cut.max(at);
        resigner.push(&body[at..cut], &mut out)?;
        at = cut;
    }
    resigner.finish()?;
    Ok(out)
}

#[test]
fn the_seed_of_aws_example_is_the_documented_one() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-encoding", "aws-chunked"),
        ("content-length", "66824"),
        ("host", "s3.amazonaws.com"),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("x-amz-date", DATE),
        ("x-amz-decoded-content-length", "66560"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ] {
        headers.insert(name, value.parse().unwrap_or_else(|e| panic!("{e}")));
    }
    let signed: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
    let mut signed = signed;
    signed.sort();
    let canonical = canonical_request(&CanonicalInput {
        method: "PUT",
        path: "/examplebucket/chunkObject.txt",
        query: "",
        headers: &headers,
        host: "s3.amazonaws.com",
        signed_headers: &signed,
        payload_hash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        service: "s3",
        exclude_query: &[],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let scope = scope("AKIAIOSFODNN7EXAMPLE");
    let key = SigningKeys::default().key(SECRET, &scope);
    assert_eq!(
        signature(&key, &string_to_sign(DATE, &scope, &canonical)),
        SEED
    );
    assert_eq!(example_body().len(), 66824);
}

#[test]
fn aws_example_checks_and_signing_again_with_the_same_key_changes_nothing() {
    let body = example_body();
    let mut same = Resigner::new(chain(SECRET, SEED), chain(SECRET, SEED));
    assert_eq!(
        run(&mut same, &body, &[]).unwrap_or_else(|e| panic!("{e}")),
        body
    );
}

#[test]
fn signing_again_with_real_credentials_gives_a_body_they_verify() {
    let body = example_body();
    let real_seed = "1".repeat(64);
    let mut resigner = Resigner::new(chain(SECRET, SEED), chain("real-secret", &real_seed));
    let resigned = run(&mut resigner, &body, &[7, 65600]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resigned.len(), body.len(), "Content-Length stays right");
    assert_ne!(resigned, body);
    let mut verify = Resigner::new(
        chain("real-secret", &real_seed),
        chain("real-secret", &real_seed),
    );
    assert_eq!(
        run(&mut verify, &resigned, &[]).unwrap_or_else(|e| panic!("{e}")),
        resigned
    );
}

#[test]
fn altered_or_broken_bodies_are_refused() {
    let body = example_body();
    let mut flipped = body.clone();
    flipped[100] = b'b';
    let mut resigner = Resigner::new(chain(SECRET, SEED), chain(SECRET, SEED));
    assert_eq!(
        run(&mut resigner, &flipped, &[]),
        Err(ChunkError::Signature(1))
    );
    // Chunks swapped with their signatures: the chain does not follow.
    let wrong_seed = "2".repeat(64);
    let mut resigner = Resigner::new(chain(SECRET, &wrong_seed), chain(SECRET, SEED));
    assert_eq!(
        run(&mut resigner, &body, &[]),
        Err(ChunkError::Signature(1))
    );
    let truncated = &body[..body.len() - 10];
    let mut resigner = Resigner::new(chain(SECRET, SEED), chain(SECRET, SEED));
    assert!(matches!(
        run(&mut resigner, truncated, &[]),
        Err(ChunkError::Malformed(_))
    ));
    let mut extra = body.clone();
    extra.extend_from_slice(b"x");
    let mut resigner = Resigner::new(chain(SECRET, SEED), chain(SECRET, SEED));
    assert!(matches!(
        run(&mut resigner, &extra, &[]),
        Err(ChunkError::Malformed(_))
    ));
    let huge = format!("{:x};chunk-signature={}\r\n", MAX_CHUNK + 1, "a".repeat(64));
    let mut resigner = Resigner::new(chain(SECRET, SEED), chain(SECRET, SEED));
    assert_eq!(
        run(&mut resigner, huge.as_bytes(), &[]),
        Err(ChunkError::TooLarge)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// However the body is cut into reads, the output is the same.
    #[test]
    fn the_result_does_not_depend_on_how_the_body_arrives(cuts in prop::collection::vec(0usize..70_000, 0..8)) {
        let body = example_body();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let real_seed = "3".repeat(64);
        let mut whole = Resigner::new(chain(SECRET, SEED), chain("real", &real_seed));
        let mut pieces = Resigner::new(chain(SECRET, SEED), chain("real", &real_seed));
        prop_assert_eq!(run(&mut whole, &body, &[]), run(&mut pieces, &body, &cuts));
    }

    /// Arbitrary bytes are refused or re-signed, never a panic.
    #[test]
    fn any_body_is_refused_or_resigned(body in prop::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b';'), Just(b'0'), any::<u8>()], 0..300)) {
        let mut resigner = Resigner::new(chain(SECRET, SEED), chain("real", SEED));
        let _ = run(&mut resigner, &body, &[3, 40]);
    }
}
