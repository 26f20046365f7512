//! Presigned URLs: SigV4 in the query string (`X-Amz-Algorithm`,
//! `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`,
//! `X-Amz-Security-Token`, `X-Amz-Signature`).

use super::auth::Scope;
use super::SigV4Error;
use crate::text::percent_encode_unreserved;
use percent_encoding::percent_decode_str;

/// Longest `X-Amz-Expires` SigV4 allows: seven days.
pub const MAX_EXPIRES: u64 = 7 * 24 * 3600;

/// The signature parameters of a presigned URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// Who signed, and for what.
    pub scope: Scope,
    /// `X-Amz-Date`.
    pub amz_date: String,
    /// `X-Amz-Expires`, seconds.
    pub expires: u64,
    /// Lower-case signed header names.
    pub signed_headers: Vec<String>,
    /// Lower-case hex signature.
    pub signature: String,
    /// Whether it carries `X-Amz-Security-Token`.
    pub has_token: bool,
}

fn param(query: &str, name: &str) -> Result<Option<String>, SigV4Error> {
    let mut found = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // SECURITY: by the decoded name, as the canonical query reads it: an
        // encoded `X-Amz-Signatur%65` is the signature too.
        if percent_decode_str(key).decode_utf8_lossy() == name {
            if found.is_some() {
                return Err(SigV4Error::Malformed("a presigning parameter is repeated"));
            }
            let value = percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| SigV4Error::Malformed("a presigning parameter is not UTF-8"))?;
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

/// The presigning parameters of `query`, `None` when it has none (no
/// `X-Amz-Algorithm` and no `X-Amz-Signature`).
pub fn parse_presigned(query: &str) -> Result<Option<Presigned>, SigV4Error> {
    let algorithm = param(query, "X-Amz-Algorithm")?;
    let signature = param(query, "X-Amz-Signature")?;
    if algorithm.is_none() && signature.is_none() {
        return Ok(None);
    }
    match algorithm.as_deref() {
        Some("AWS4-HMAC-SHA256") => {}
        Some(other) => {
            let shown: String = other
                .chars()
                .take(32)
                .filter(|c| c.is_ascii_graphic())
                .collect();
            return Err(SigV4Error::Algorithm(shown));
        }
        None => {
            return Err(SigV4Error::Malformed(
                "X-Amz-Signature without X-Amz-Algorithm",
            ))
        }
    }
    let need = |name: &'static str, what: &'static str| {
        param(query, name)?.ok_or(SigV4Error::Malformed(what))
    };
    let scope = Scope::parse(&need("X-Amz-Credential", "no X-Amz-Credential")?)?;
    let amz_date = need("X-Amz-Date", "no X-Amz-Date")?;
    if amz_date.len() != 16 || !amz_date.starts_with(&scope.date) {
        return Err(SigV4Error::Malformed(
            "X-Amz-Date does not match the credential's date",
        ));
    }
    let expires: u64 = need("X-Amz-Expires", "no X-Amz-Expires")?
        .parse()
        .map_err(|_| SigV4Error::Malformed("X-Amz-Expires is not a number of seconds"))?;
    if expires == 0 || expires > MAX_EXPIRES {
        return Err(SigV4Error::Malformed(
            "X-Amz-Expires must be 1 to 604800 seconds",
        ));
    }
    let signed_headers: Vec<String> = need("X-Amz-SignedHeaders", "no X-Amz-SignedHeaders")?
        .split(';')
        .map(str::to_string)
        .collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
        || !signed_headers.windows(2).all(|w| w[0] < w[1])
    {
        return Err(SigV4Error::Malformed(
            "X-Amz-SignedHeaders is not a sorted list of lower-case names",
        ));
    }
    let signature = signature.ok_or(SigV4Error::Malformed("no X-Amz-Signature"))?;
    if !super::is_signature(&signature) {
        return Err(SigV4Error::Malformed(
            "X-Amz-Signature is not 64 lower-case hex digits",
        ));
    }
    Ok(Some(Presigned {
        scope,
        amz_date,
        expires,
        signed_headers,
        signature,
        has_token: param(query, "X-Amz-Security-Token")?.is_some(),
    }))
}

/// `query` with the credential, the security token and the expiry replaced and
/// the signature removed: what is signed again with the real credentials (and
/// then gets `&X-Amz-Signature=…` appended). Other parameters keep their order
/// and encoding.
pub fn requery(query: &str, credential: &Scope, token: Option<&str>, expires: u64) -> String {
    let credential = format!(
        "{}/{}",
        credential.access_key,
        credential.credential_scope()
    );
    let mut out: Vec<String> = Vec::new();
    let mut token_written = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let raw = pair.split_once('=').map_or(pair, |(k, _)| k);
        let key = percent_decode_str(raw).decode_utf8_lossy();
        match &*key {
            "X-Amz-Signature" => {}
            "X-Amz-Credential" => {
                out.push(format!("{key}={}", percent_encode_unreserved(&credential)))
            }
            "X-Amz-Expires" => out.push(format!("{key}={expires}")),
            "X-Amz-Security-Token" => {
                if let Some(token) = token {
                    out.push(format!("{key}={}", percent_encode_unreserved(token)));
                    token_written = true;
                }
            }
            _ => out.push(pair.to_string()),
        }
    }
    if let (Some(token), false) = (token, token_written) {
        out.push(format!(
            "X-Amz-Security-Token={}",
            percent_encode_unreserved(token)
        ));
    }
    out.join("&")
}
