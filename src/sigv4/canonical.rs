//! The canonical request and the string to sign (SigV4, "Create a canonical
//! request"): what a signature covers.

use super::auth::Scope;
use super::SigV4Error;
use http::HeaderMap;
use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes SigV4 leaves unencoded in query names and values: `A-Z a-z 0-9 - _ . ~`.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, plus `/`: the path of services other than S3 is encoded again.
const PATH: &AsciiSet = &QUERY.remove(b'/');

/// What a canonical request is built from: the request as it was sent.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalInput<'a> {
    /// Method, upper case.
    pub method: &'a str,
    /// Path as sent, percent-encoded.
    pub path: &'a str,
    /// Query string as sent, without `?` (empty when none).
    pub query: &'a str,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// `host[:port]` as the client addressed it, for a signed `host` that the
    /// header map does not carry (HTTP/2 `:authority`).
    pub host: &'a str,
    /// The signed header names (lower case, sorted).
    pub signed_headers: &'a [String],
    /// Hex SHA-256 of the payload, or `UNSIGNED-PAYLOAD`, or a streaming tag.
    pub payload_hash: &'a str,
    /// The service of the signature's scope (`s3` keeps its path as sent).
    pub service: &'a str,
    /// Query parameters left out (`X-Amz-Signature` of a presigned URL).
    pub exclude_query: &'a [&'a str],
}

/// The canonical request, as bytes (header values may hold any octet).
pub fn canonical_request(input: &CanonicalInput<'_>) -> Result<Vec<u8>, SigV4Error> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(input.method.as_bytes());
    out.push(b'\n');
    canonical_uri(&mut out, input.path, input.service);
    out.push(b'\n');
    canonical_query(&mut out, input.query, input.exclude_query);
    out.push(b'\n');
    for name in input.signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut values = input.headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_none() {
            if name == "host" {
                out.extend_from_slice(input.host.as_bytes());
            } else {
                return Err(SigV4Error::Malformed(
                    "a signed header is not in the request",
                ));
            }
        }
        let mut first = true;
        for value in values {
            if !first {
                out.push(b',');
            }
            first = false;
            trim_and_collapse(&mut out, value.as_bytes());
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(input.signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(input.payload_hash.as_bytes());
    Ok(out)
}

/// `AWS4-HMAC-SHA256\nAMZ_DATE\nSCOPE\nhex(sha256(canonical request))`.
pub fn string_to_sign(amz_date: &str, scope: &Scope, canonical: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical);
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
        scope.credential_scope(),
        crate::text::hex(digest.as_ref())
    )
}

/// S3 signs its path as sent. Every other service signs the path with dot
/// segments and empty segments removed, then percent-encoded again.
fn canonical_uri(out: &mut Vec<u8>, path: &str, service: &str) {
    if path.is_empty() {
        out.push(b'/');
        return;
    }
    if service == "s3" {
        out.extend_from_slice(path.as_bytes());
        return;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut normalized = String::with_capacity(path.len());
    if path.starts_with('/') {
        normalized.push('/');
    }
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    out.extend(percent_encode(normalized.as_bytes(), PATH).flat_map(str::bytes));
}

/// Names and values decoded and encoded again, sorted by name, then value.
fn canonical_query(out: &mut Vec<u8>, query: &str, exclude: &[&str]) {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (reencode(name), reencode(value))
        })
        .filter(|(name, _)| !exclude.contains(&name.as_str()))
        .collect();
    pairs.sort();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
}

fn reencode(text: &str) -> String {
    let bytes: Vec<u8> = percent_decode_str(text).collect();
    percent_encode(&bytes, QUERY).collect()
}

/// A header value with leading and trailing whitespace removed and each run of
/// whitespace inside made one space.
fn trim_and_collapse(out: &mut Vec<u8>, value: &[u8]) {
    let mut words = value
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    if let Some(first) = words.next() {
        out.extend_from_slice(first);
        for word in words {
            out.push(b' ');
            out.extend_from_slice(word);
        }
    }
}
