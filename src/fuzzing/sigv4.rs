//! Fuzz target `sigv4`: what a sandbox's SigV4 request controls, read by
//! [`crate::sigv4`]. The first byte picks the parser (mod 8; seeds use
//! `'0'`..`'7'`), the rest is its input as text (lossy UTF-8):
//! - 0: an `Authorization` header ([`parse_authorization`]);
//! - 1: a `Credential` ([`Scope::parse`]);
//! - 2, 3: a query string ([`parse_presigned`], then [`requery`] with a new
//!   security token (2) or none (3));
//! - 4, 5: a request for [`canonical_request`]: `PATH\nQUERY\nname:value\n…`,
//!   for S3 (4) or SQS (5); a line `signed=a;b` adds signed header names
//!   that need not be headers (as a presigned URL's `X-Amz-SignedHeaders`);
//! - 6: any bytes for [`find_access_key_id`];
//! - 7: a request, `METHOD TARGET\nname:value\n…`, read as signed
//!   ([`Signed::read`]), checked with the placeholder, and signed again with
//!   real credentials ([`Signed::resign`]).
//!
//! Invariants: never a panic; an accepted `Authorization` or `Credential` is
//! well formed and written out again reads the same; a presigned query
//! re-queried with other credentials, token and expiry reads back with
//! exactly those and keeps every other parameter, in order and as written;
//! the canonical query of a canonical query is itself (sorting and encoding
//! are idempotent), and S3 paths are signed as sent; the access key id found
//! is the first one a plain scan finds; a request signed again reads back as
//! signed by the real access key id, with the same payload form, and its new
//! signature verifies under the real secret key.

use crate::sigv4::request::{Signed, EMPTY_SHA256};
use crate::sigv4::{
    canonical_request, find_access_key_id, parse_authorization, parse_presigned, requery,
    CanonicalInput, Scope,
};
use crate::sigv4::{Credentials, SigningKeys};
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::percent_decode_str;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match selector % 8 {
        0 => authorization(&text),
        1 => credential(&text),
        2 => presigned(&text, true),
        3 => presigned(&text, false),
        4 => canonical(&text, true),
        5 => canonical(&text, false),
        6 => access_key_id(rest),
        _ => request(&text),
    }
}

fn authorization(text: &str) {
    let Ok(auth) = parse_authorization(text) else {
        return;
    };
    assert!(
        auth.signature.len() == 64
            && auth
                .signature
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    );
    assert!(!auth.signed_headers.is_empty());
    assert!(auth.signed_headers.windows(2).all(|w| w[0] < w[1]));
    let again = format!(
        "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
        auth.scope.access_key,
        auth.scope.credential_scope(),
        auth.signed_headers.join(";"),
        auth.signature
    );
    assert_eq!(parse_authorization(&again).as_ref(), Ok(&auth), "{again}");
}

fn credential(text: &str) {
    let Ok(scope) = Scope::parse(text) else {
        return;
    };
    assert_eq!(scope.date.len(), 8);
    let again = format!("{}/{}", scope.access_key, scope.credential_scope());
    assert_eq!(Scope::parse(&again).as_ref(), Ok(&scope), "{again}");
}

/// The parameters `requery` replaces or removes.
const REPLACED: [&str; 4] = [
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Expires",
    "X-Amz-Security-Token",
];

/// The pairs of `query` that `requery` must keep as they are.
fn kept(query: &str) -> Vec<&str> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !REPLACED.contains(&&*percent_decode_str(key).decode_utf8_lossy())
        })
        .collect()
}

fn presigned(query: &str, with_token: bool) {
    let Ok(Some(presigned)) = parse_presigned(query) else {
        return;
    };
    let real = Scope {
        access_key: "ASIAREALKEYEXAMPLE01".into(),
        ..presigned.scope.clone()
    };
    let token = with_token.then_some("FwoGZXIvYXdz/real+token==");
    let expires = presigned.expires.min(900);
    let rewritten = requery(query, &real, token, expires);
    assert_eq!(kept(&rewritten), kept(query), "{query} → {rewritten}");
    let signed = format!("{rewritten}&X-Amz-Signature={}", "a".repeat(64));
    let again = parse_presigned(&signed);
    assert!(
        matches!(again, Ok(Some(_))),
        "{query} re-queried as {rewritten} reads as {again:?}"
    );
    let Ok(Some(again)) = again else { return };
    assert_eq!(again.scope, real);
    assert_eq!(again.expires, expires);
    assert_eq!(again.has_token, token.is_some());
    assert_eq!(again.amz_date, presigned.amz_date);
    assert_eq!(again.signed_headers, presigned.signed_headers);
}

fn canonical(text: &str, s3: bool) {
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or_default();
    let query = lines.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    // Signed names as a presigned URL may give them: any text.
    let mut extra: Vec<String> = Vec::new();
    for line in lines {
        if let Some(names) = line.strip_prefix("signed=") {
            extra.extend(names.split(';').map(str::to_string));
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    let mut signed: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
    signed.push("host".into());
    let only_present = extra.is_empty();
    signed.extend(extra);
    signed.sort();
    signed.dedup();
    let service = if s3 { "s3" } else { "sqs" };
    let build = |query: &str| {
        canonical_request(&CanonicalInput {
            method: "GET",
            path,
            query,
            headers: &headers,
            host: "bucket.s3.test",
            signed_headers: &signed,
            payload_hash: "UNSIGNED-PAYLOAD",
            service,
            exclude_query: &["X-Amz-Signature"],
        })
    };
    let first = build(query);
    assert!(
        first.is_ok() || !only_present,
        "every signed header is there: {first:?}"
    );
    let Ok(first) = first else { return };
    assert_eq!(build(query).as_ref(), Ok(&first), "not deterministic");
    let mut parts = first.split(|b| *b == b'\n');
    assert_eq!(parts.next(), Some(&b"GET"[..]));
    let uri = parts.next().unwrap_or_default();
    if s3 {
        let expected = if path.is_empty() { "/" } else { path };
        assert_eq!(uri, expected.as_bytes(), "S3 signs the path as sent");
    } else {
        assert!(uri.starts_with(b"/") || !path.starts_with('/'));
    }
    let canonical_query = String::from_utf8_lossy(parts.next().unwrap_or_default()).to_string();
    let again = build(&canonical_query).unwrap_or_default();
    let mut again = again.split(|b| *b == b'\n').skip(2);
    assert_eq!(
        again.next(),
        Some(canonical_query.as_bytes()),
        "the canonical query of {query:?} is not canonical"
    );
}

/// The first bounded `AKIA`/`ASIA` + 16 `[A-Z0-9]`, by a plain scan.
fn scan(text: &[u8]) -> Option<&[u8]> {
    let word = |b: &u8| b.is_ascii_alphanumeric();
    (0..text.len()).find_map(|at| {
        let candidate = text.get(at..at + 20)?;
        let ok = (candidate.starts_with(b"AKIA") || candidate.starts_with(b"ASIA"))
            && candidate[4..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && (at == 0 || !word(&text[at - 1]))
            && text.get(at + 20).is_none_or(|b| !word(b));
        ok.then_some(candidate)
    })
}

fn access_key_id(bytes: &[u8]) {
    let found = find_access_key_id(bytes);
    assert_eq!(found, scan(bytes));
    if let Some(found) = found {
        // A slice of the input, not a copy.
        let start = found.as_ptr() as usize - bytes.as_ptr() as usize;
        assert!(start + 20 <= bytes.len());
    }
}

fn request(text: &str) {
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let mut builder = http::Request::builder().method(method).uri(target);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name, value.trim_start());
        }
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (mut parts, ()) = request.into_parts();
    let Ok(Some(signed)) = Signed::read(&parts) else {
        return;
    };
    let keys = SigningKeys::default();
    // Whether or not it holds, checking never panics.
    let _ = signed.verify(&parts, "__AWS__", EMPTY_SHA256, &keys);
    let creds = Credentials {
        access_key_id: "ASIAREALKEYEXAMPLE01",
        secret_access_key: "real/secret+key",
        session_token: text.contains("token").then_some("real+token/=="),
        expires_at: None,
    };
    // The Host the request leaves with: its own authority (which the
    // signature covers when it has no Host header); none, no request.
    let Some(upstream) = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
    else {
        return;
    };
    let Ok(reseeded) = signed.resign(&mut parts, &upstream, &creds, EMPTY_SHA256, &keys) else {
        return;
    };
    let again = Signed::read(&parts);
    assert!(
        matches!(again, Ok(Some(_))),
        "{text:?} signed again reads as {again:?}"
    );
    let Ok(Some(again)) = again else { return };
    assert_eq!(again.scope().access_key, creds.access_key_id);
    assert_eq!(again.claimed(), reseeded.seed);
    assert_eq!(again.payload, signed.payload);
    let verified = again.verify(&parts, creds.secret_access_key, EMPTY_SHA256, &keys);
    assert!(
        verified.is_ok(),
        "{text:?} signed again as {:?} {:?} does not verify: {verified:?}",
        parts.uri,
        parts.headers
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request seeds get as far as signing again (else the fuzzer would
    /// start from inputs that stop at the first check).
    #[test]
    fn the_request_seeds_are_signed_again() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/sigv4");
        for name in ["request-header", "request-presigned", "request-sqs"] {
            let data = std::fs::read(dir.join(name)).unwrap_or_default();
            let text = String::from_utf8_lossy(data.get(1..).unwrap_or_default()).to_string();
            let mut lines = text.split('\n');
            let first = lines.next().unwrap_or_default();
            let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
            let mut builder = http::Request::builder().method(method).uri(target);
            for line in lines {
                if let Some((n, v)) = line.split_once(':') {
                    builder = builder.header(n, v.trim_start());
                }
            }
            let (mut parts, ()) = builder
                .body(())
                .map(|r| r.into_parts())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let signed = Signed::read(&parts)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .unwrap_or_else(|| panic!("{name}: not signed"));
            let creds = Credentials {
                access_key_id: "ASIAREALKEYEXAMPLE01",
                secret_access_key: "s",
                session_token: None,
                expires_at: None,
            };
            assert!(
                signed
                    .resign(
                        &mut parts,
                        "bucket.s3.test",
                        &creds,
                        EMPTY_SHA256,
                        &SigningKeys::default()
                    )
                    .is_ok(),
                "{name}"
            );
            run(&data);
        }
    }
}
