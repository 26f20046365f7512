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

/// AWS's worked example with a trailer ("Signature calculations for trailing
/// headers (chunked uploads)"): the same 66560 bytes of `a`, a CRC-32C trailer.
const TRAILER_SEED: &str = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
const TRAILER_CHUNK_SIGNATURES: [&str; 3] = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
];
const TRAILER_SIGNATURE: &str = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";

/// The example's body as the AWS SDKs write it: the last chunk's header, the
/// trailing header, the trailer's signature, an empty line.
fn trailer_example_body() -> Vec<u8> {
    let mut body = Vec::new();
    for (size, sig) in [65536usize, 1024, 0].iter().zip(TRAILER_CHUNK_SIGNATURES) {
        body.extend_from_slice(format!("{size:x};chunk-signature={sig}\r\n").as_bytes());
        if *size > 0 {
            body.extend(std::iter::repeat_n(b'a', *size));
            body.extend_from_slice(b"\r\n");
        }
    }
    body.extend_from_slice(b"x-amz-checksum-crc32c:sOO8/Q==\r\n");
    body.extend_from_slice(
        format!("x-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n\r\n").as_bytes(),
    );
    body
}

#[test]
fn the_seed_of_aws_trailer_example_is_the_documented_one() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-encoding", "aws-chunked"),
        ("host", "s3.amazonaws.com"),
        (
            "x-amz-content-sha256",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        ),
        ("x-amz-date", DATE),
        ("x-amz-decoded-content-length", "66560"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-trailer", "x-amz-checksum-crc32c"),
    ] {
        headers.insert(name, value.parse().unwrap_or_else(|e| panic!("{e}")));
    }
    let mut signed: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
    signed.sort();
    let canonical = canonical_request(&CanonicalInput {
        method: "PUT",
        path: "/examplebucket/chunkObject.txt",
        query: "",
        headers: &headers,
        host: "s3.amazonaws.com",
        signed_headers: &signed,
        payload_hash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        service: "s3",
        exclude_query: &[],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let scope = scope("AKIAIOSFODNN7EXAMPLE");
    let key = SigningKeys::default().key(SECRET, &scope);
    assert_eq!(
        signature(&key, &string_to_sign(DATE, &scope, &canonical)),
        TRAILER_SEED
    );
}

#[test]
fn aws_trailer_example_checks_and_signing_again_with_the_same_key_changes_nothing() {
    let body = trailer_example_body();
    // 66560 bytes of data in 66946 on the wire.
    assert_eq!(body.len(), 66946);
    let mut same = Resigner::with_trailer(chain(SECRET, TRAILER_SEED), chain(SECRET, TRAILER_SEED));
    assert_eq!(
        run(&mut same, &body, &[66700, 66860, 66930]).unwrap_or_else(|e| panic!("{e}")),
        body
    );
    // The chain's own client side gives the documented signatures.
    let mut client = chain(SECRET, TRAILER_SEED);
    let a = vec![b'a'; 65536];
    assert_eq!(client.sign_chunk(&a), TRAILER_CHUNK_SIGNATURES[0]);
    assert_eq!(client.sign_chunk(&a[..1024]), TRAILER_CHUNK_SIGNATURES[1]);
    assert_eq!(client.sign_chunk(b""), TRAILER_CHUNK_SIGNATURES[2]);
    assert_eq!(
        client.sign_trailer(b"x-amz-checksum-crc32c:sOO8/Q==\n"),
        TRAILER_SIGNATURE
    );
}

/// A body signed by the sandbox's chain, as a client writes it.
fn sandbox_body(chunks: &[&[u8]], trailer: &[&str]) -> Vec<u8> {
    crate::fuzzing::sigv4_chunked::signed_body(&mut chain("__AWS__", SEED), chunks, Some(trailer))
}

fn trailer_resigner() -> Resigner {
    Resigner::with_trailer(
        chain("__AWS__", SEED),
        chain("real-secret", &"1".repeat(64)),
    )
}

#[test]
fn a_trailer_body_signed_again_verifies_under_the_real_chain_and_keeps_its_length() {
    let data = vec![7u8; 70_000];
    let body = sandbox_body(
        &[&data[..65536], &data[65536..]],
        &[
            "x-amz-checksum-crc32:AAAAAA==",
            "x-amz-meta-note:  two  words ",
        ],
    );
    let resigned = run(&mut trailer_resigner(), &body, &[3, 65600, body.len() - 40])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resigned.len(), body.len(), "Content-Length stays right");
    assert_ne!(resigned, body);
    // Only signatures changed: the trailing headers pass as they came.
    let text = String::from_utf8_lossy(&resigned[70_000..]).to_string();
    assert!(text.contains("\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-amz-meta-note:  two  words \r\nx-amz-trailer-signature:"), "{text}");
    let real = "1".repeat(64);
    let mut verify =
        Resigner::with_trailer(chain("real-secret", &real), chain("real-secret", &real));
    assert_eq!(
        run(&mut verify, &resigned, &[]).unwrap_or_else(|e| panic!("{e}")),
        resigned
    );
    // The sandbox's chain does not verify the new body.
    assert!(run(&mut trailer_resigner(), &resigned, &[]).is_err());
}

#[test]
fn altered_trailer_bodies_are_refused() {
    let body = sandbox_body(&[b"hello world"], &["x-amz-checksum-crc32:DUoRhQ=="]);
    let text = String::from_utf8_lossy(&body).to_string();
    let replace = |from: &str, to: &str| {
        assert!(text.contains(from), "{text}");
        run(
            &mut trailer_resigner(),
            text.replacen(from, to, 1).as_bytes(),
            &[],
        )
    };
    assert_eq!(replace("hello", "jello"), Err(ChunkError::Signature(1)));
    assert_eq!(
        replace("DUoRhQ==", "AAAAAA=="),
        Err(ChunkError::TrailerSignature)
    );
    let signature = text
        .split("x-amz-trailer-signature:")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        replace(&signature, &"f".repeat(64)),
        Err(ChunkError::TrailerSignature)
    );
    // A trailing header added, or removed, changes what the signature covers.
    assert_eq!(
        replace(
            "x-amz-trailer-signature",
            "x-amz-meta-evil:1\r\nx-amz-trailer-signature"
        ),
        Err(ChunkError::TrailerSignature)
    );
    assert_eq!(
        replace("x-amz-checksum-crc32:DUoRhQ==\r\n", ""),
        Err(ChunkError::TrailerSignature)
    );
    // Extra bytes after the end.
    let mut extra = body.clone();
    extra.extend_from_slice(b"x");
    assert!(matches!(
        run(&mut trailer_resigner(), &extra, &[]),
        Err(ChunkError::Malformed(_))
    ));
    // A line after the trailer's signature.
    assert!(matches!(
        replace("\r\n\r\n", "\r\nx-amz-meta-late:1\r\n\r\n"),
        Err(ChunkError::Malformed(_))
    ));
}

#[test]
fn a_trailer_body_cut_short_anywhere_is_refused() {
    let body = sandbox_body(&[b"hello world"], &["x-amz-checksum-crc32:DUoRhQ=="]);
    for end in 0..body.len() {
        let outcome = run(&mut trailer_resigner(), &body[..end], &[]);
        // Only the closing empty line may be missing.
        if end == body.len() - 2 {
            assert!(outcome.is_ok(), "{outcome:?}");
        } else {
            assert!(outcome.is_err(), "accepted the first {end} bytes");
        }
    }
}

#[test]
fn trailers_are_bounded_and_well_formed() {
    let many: Vec<String> = (0..=MAX_TRAILERS)
        .map(|i| format!("x-amz-meta-{i}:v"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        run(&mut trailer_resigner(), &sandbox_body(&[b"x"], &many), &[]),
        Err(ChunkError::Malformed("too many trailing headers"))
    );
    assert_eq!(
        run(
            &mut trailer_resigner(),
            &sandbox_body(&[b"x"], &many[..MAX_TRAILERS]),
            &[]
        )
        .map(|o| o.len()),
        Ok(sandbox_body(&[b"x"], &many[..MAX_TRAILERS]).len())
    );
    let long = format!("x-amz-meta-long:{}", "v".repeat(MAX_TRAILER_LINE));
    assert_eq!(
        run(
            &mut trailer_resigner(),
            &sandbox_body(&[b"x"], &[&long]),
            &[]
        ),
        Err(ChunkError::Malformed("a trailing header is too long"))
    );
    for (lines, expected) in [
        (
            &["x-amz-checksum-crc32:a", "X-Amz-Checksum-Crc32:a"][..],
            "a trailing header is repeated",
        ),
        (&["no colon"][..], "a trailing header has no colon"),
        (&["bad name:v"][..], "a trailing header name is not a token"),
        (
            &["x-amz-meta-x:a\u{1}b"][..],
            "a trailing header value has control characters",
        ),
    ] {
        assert_eq!(
            run(&mut trailer_resigner(), &sandbox_body(&[b"x"], lines), &[]),
            Err(ChunkError::Malformed(expected)),
            "{lines:?}"
        );
    }
    // No signature: the empty line comes first.
    let body = sandbox_body(&[b"x"], &["x-amz-checksum-crc32:a"]);
    let text = String::from_utf8_lossy(&body).to_string();
    let cut = text.find("x-amz-trailer-signature").unwrap_or_default();
    let unsigned = format!("{}\r\n", &text[..cut]);
    assert_eq!(
        run(&mut trailer_resigner(), unsigned.as_bytes(), &[]),
        Err(ChunkError::Malformed(
            "the trailer has no x-amz-trailer-signature"
        ))
    );
    // A body without a trailer, given to the trailer variant.
    let plain =
        crate::fuzzing::sigv4_chunked::signed_body(&mut chain("__AWS__", SEED), &[b"x"], None);
    assert!(run(&mut trailer_resigner(), &plain, &[]).is_err());
}

#[test]
fn chunk_sizes_keep_the_digits_they_were_written_with() {
    // `00000b` and `B` both say 11: the body keeps its length either way.
    let mut client = chain("__AWS__", SEED);
    let mut body = Vec::new();
    for (size_text, data) in [
        ("00000b", &b"hello world"[..]),
        ("B", &b"hello world"[..]),
        ("000", &b""[..]),
    ] {
        let sig = client.sign_chunk(data);
        body.extend_from_slice(format!("{size_text};chunk-signature={sig}\r\n").as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    let mut resigner = Resigner::new(chain("__AWS__", SEED), chain("real", SEED));
    let out = run(&mut resigner, &body, &[5]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.len(), body.len());
    assert!(out.starts_with(b"00000b;chunk-signature="));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// However a trailer body is cut into reads, the output is the same.
    #[test]
    fn a_trailer_body_resigns_the_same_however_it_arrives(cuts in prop::collection::vec(0usize..3_000, 0..8), sizes in prop::collection::vec(1usize..900, 0..4)) {
        let data = vec![b'z'; 3_000];
        let chunks: Vec<&[u8]> = sizes.iter().map(|n| &data[..*n]).collect();
        let body = sandbox_body(&chunks, &["x-amz-checksum-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]);
        let whole = run(&mut trailer_resigner(), &body, &[]);
        prop_assert!(whole.is_ok());
        prop_assert_eq!(&whole, &run(&mut trailer_resigner(), &body, &cuts));
    }
}
