//! Fuzz target `sigv4_chunked`: re-signing `aws-chunked` bodies
//! ([`crate::sigv4::chunked::Resigner`]), both variants, pushed in arbitrary
//! pieces. Also [`signed_body`], the client side (signing a body from
//! scratch), which the unit tests and the bench use too.
//!
//! The first byte picks the mode: bit 0 the variant (with a trailer or not),
//! bit 1 whether the rest is a body as is (raw) or the description of a body
//! that is then signed properly (built), so that the fuzzer gets past the
//! signature checks. Then come two cut points (two bytes each).
//!
//! Invariants: never a panic; what comes out is never longer than what went
//! in, and for an accepted body it is exactly as long; the result does not
//! depend on how the body is cut; a body signed with one chain and re-signed
//! with another verifies under the second and comes out of it unchanged; a
//! changed byte of chunk data or of a signature is always refused.

use crate::sigv4::chunked::{Chain, ChunkError, Resigner};
use crate::sigv4::{Scope, SigningKeys};

/// The date of every chain here.
const AMZ_DATE: &str = "20261205T080936Z";
/// Trailing header names a built body picks from.
const TRAILER_NAMES: [&str; 4] = [
    "x-amz-checksum-crc32",
    "x-amz-checksum-sha256",
    "X-Amz-Checksum-Crc32c",
    "x-amz-meta-note",
];

/// A chain for `secret` from `seed`, scoped to us-east-1/s3 on [`AMZ_DATE`].
pub fn chain(secret: &str, seed: &str) -> Chain {
    let scope = Scope {
        access_key: "__AWS__".into(),
        date: AMZ_DATE[..8].into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    };
    Chain::new(
        SigningKeys::default().key(secret, &scope),
        AMZ_DATE,
        &scope.credential_scope(),
        seed,
    )
}

/// An `aws-chunked` body as a client writes it: each of `chunks` (each
/// non-empty) signed with `chain`, the last empty chunk, and with `trailer`
/// the trailing header lines (`name:value`, as they are to be written) and
/// their signature.
pub fn signed_body(chain: &mut Chain, chunks: &[&[u8]], trailer: Option<&[&str]>) -> Vec<u8> {
    signed_body_and_protected(chain, chunks, trailer).0
}

/// [`signed_body`], and the ranges of the body that no change may pass:
/// chunk data and signatures.
fn signed_body_and_protected(
    chain: &mut Chain,
    chunks: &[&[u8]],
    trailer: Option<&[&str]>,
) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let mut body = Vec::new();
    let mut protected = Vec::new();
    for data in chunks.iter().copied().chain([&[][..]]) {
        let signature = chain.sign_chunk(data);
        body.extend_from_slice(format!("{:x};chunk-signature=", data.len()).as_bytes());
        protected.push(body.len()..body.len() + 64);
        body.extend_from_slice(signature.as_bytes());
        body.extend_from_slice(b"\r\n");
        if data.is_empty() && trailer.is_some() {
            break;
        }
        protected.push(body.len()..body.len() + data.len());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    if let Some(lines) = trailer {
        let mut canonical: Vec<(String, String)> = lines
            .iter()
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
                (name.to_ascii_lowercase(), value)
            })
            .collect();
        canonical.sort();
        let canonical: String = canonical
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        for line in lines {
            body.extend_from_slice(line.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        let signature = chain.sign_trailer(canonical.as_bytes());
        body.extend_from_slice(b"x-amz-trailer-signature:");
        protected.push(body.len()..body.len() + 64);
        body.extend_from_slice(signature.as_bytes());
        body.extend_from_slice(b"\r\n\r\n");
    }
    (body, protected)
}

/// A fresh re-signer of the chosen variant.
fn resigner(trailer: bool, check: Chain, sign: Chain) -> Resigner {
    if trailer {
        Resigner::with_trailer(check, sign)
    } else {
        Resigner::new(check, sign)
    }
}

/// Pushes `body` cut at `cuts` (any order, any values); checks that the output
/// never outgrows the input.
fn run_cut(resigner: &mut Resigner, body: &[u8], cuts: &[usize]) -> Result<Vec<u8>, ChunkError> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts.into_iter().chain([body.len()]) {
        resigner.push(&body[at..cut], &mut out)?;
        at = cut;
        assert!(out.len() <= at, "{} bytes out for {at} in", out.len());
    }
    resigner.finish()?;
    Ok(out)
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let trailer = mode & 1 == 1;
    let (cuts, rest) = match rest.split_at_checked(4) {
        Some((cuts, rest)) => (
            [
                usize::from(u16::from_le_bytes([cuts[0], cuts[1]])),
                usize::from(u16::from_le_bytes([cuts[2], cuts[3]])),
            ],
            rest,
        ),
        None => ([0, 0], rest),
    };
    let seed = "0".repeat(64);
    let real_seed = "1".repeat(64);
    if mode & 2 == 0 {
        raw(trailer, rest, &cuts, &seed, &real_seed);
    } else {
        built(trailer, rest, &cuts, &seed, &real_seed);
    }
}

/// The input as a body: refused or re-signed, the same whatever the cuts.
fn raw(trailer: bool, body: &[u8], cuts: &[usize], seed: &str, real_seed: &str) {
    let cut = run_cut(
        &mut resigner(trailer, chain("__AWS__", seed), chain("real", real_seed)),
        body,
        cuts,
    );
    let whole = run_cut(
        &mut resigner(trailer, chain("__AWS__", seed), chain("real", real_seed)),
        body,
        &[],
    );
    assert_eq!(cut, whole, "the result depends on the cuts");
    if let Ok(out) = whole {
        assert_eq!(out.len(), body.len(), "an accepted body changed length");
    }
}

/// The input describes a body, which is signed and then re-signed.
fn built(trailer: bool, rest: &[u8], cuts: &[usize], seed: &str, real_seed: &str) {
    let (&shape, rest) = rest.split_first().unwrap_or((&0, &[]));
    // Up to four chunks of up to 300 bytes taken from the input, in turn.
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut pool = rest;
    for i in 0..usize::from(shape % 5) {
        let len = (usize::from(shape >> 3) * 37 + i * 101) % 300 + 1;
        let take = len.min(pool.len());
        if take == 0 {
            break;
        }
        chunks.push(&pool[..take]);
        pool = &pool[take..];
    }
    // Trailing headers: values made printable from the input.
    let value: String = rest
        .iter()
        .take(24)
        .map(|b| char::from(b' ' + b % 95))
        .collect();
    let lines: Vec<String> = (0..usize::from((shape >> 5) % 3))
        .map(|i| format!("{}:{}", TRAILER_NAMES[(usize::from(shape) + i) % 4], value))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (body, protected) = signed_body_and_protected(
        &mut chain("__AWS__", seed),
        &chunks,
        trailer.then_some(&lines[..]),
    );
    let resign = || resigner(trailer, chain("__AWS__", seed), chain("real", real_seed));
    let whole = run_cut(&mut resign(), &body, &[]);
    assert!(
        whole.is_ok(),
        "a properly signed body was refused: {whole:?}"
    );
    let Ok(whole) = whole else { return };
    assert_eq!(whole.len(), body.len());
    assert_eq!(
        run_cut(&mut resign(), &body, cuts).as_ref(),
        Ok(&whole),
        "the result depends on the cuts"
    );
    let verified = run_cut(
        &mut resigner(trailer, chain("real", real_seed), chain("real", real_seed)),
        &whole,
        cuts,
    );
    assert_eq!(
        verified.as_ref(),
        Ok(&whole),
        "the real chain does not verify"
    );
    // One changed byte of data or signature is refused.
    let at = cuts[0] % body.len();
    if protected.iter().any(|r| r.contains(&at)) {
        let mut changed = body.clone();
        changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
        assert!(
            run_cut(&mut resign(), &changed, cuts).is_err(),
            "a changed byte at {at} passed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw seeds are bodies signed as a Python client would sign them
    /// (`hmac`, `hashlib`): the fuzzer starts from bodies that pass.
    #[test]
    fn the_raw_seeds_are_accepted() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/sigv4_chunked");
        for (name, trailer) in [
            ("raw-plain", false),
            ("raw-trailer", true),
            ("raw-trailer-two", true),
        ] {
            let data = std::fs::read(dir.join(name)).unwrap_or_default();
            let body = data.get(5..).unwrap_or_default();
            let seed = "0".repeat(64);
            let mut resigner = resigner(trailer, chain("__AWS__", &seed), chain("__AWS__", &seed));
            assert_eq!(
                run_cut(&mut resigner, body, &[]).as_deref(),
                Ok(body),
                "{name}"
            );
        }
    }
}
