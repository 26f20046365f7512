//! One request signed by the sandbox: how it carries its signature (the
//! `Authorization` header or a presigned query), what its payload hash is,
//! whether the signature holds for the placeholder key, and the same request
//! signed again with real credentials.

use super::auth::{parse_authorization, Authorization, Scope};
use super::canonical::{canonical_request, string_to_sign, CanonicalInput};
use super::presigned::{parse_presigned, requery, Presigned};
use super::sign::{signature, SigningKeys};
use super::{Credentials, SigV4Error};
use aws_lc_rs::hmac;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::request::Parts;
use http::Uri;

/// `x-amz-content-sha256`.
pub const CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
/// `x-amz-security-token`.
pub const SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
const AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
/// Hex SHA-256 of an empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Where the signature is.
#[derive(Debug, Clone)]
pub enum Form {
    /// `Authorization: AWS4-HMAC-SHA256 …`.
    Header(Authorization),
    /// `?X-Amz-Algorithm=AWS4-HMAC-SHA256&…`.
    Query(Presigned),
}

/// What the payload hash of the signature is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A hex SHA-256 the request declares in `x-amz-content-sha256`.
    Declared(String),
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
    /// Declared nowhere (services other than S3): the hash of the body.
    Body,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: every chunk signed.
    SignedChunks {
        /// Whether a signed trailer follows the last chunk.
        trailer: bool,
    },
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: chunks not signed.
    UnsignedTrailer,
}

impl Payload {
    /// The hash in the canonical request; `body_sha256` is used for [`Payload::Body`].
    pub fn canonical<'a>(&'a self, body_sha256: &'a str) -> &'a str {
        match self {
            Payload::Declared(hash) => hash,
            Payload::Unsigned => "UNSIGNED-PAYLOAD",
            Payload::Body => body_sha256,
            Payload::SignedChunks { trailer: false } => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            Payload::SignedChunks { trailer: true } => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            Payload::UnsignedTrailer => "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        }
    }
}

/// A request as the sandbox signed it.
#[derive(Debug, Clone)]
pub struct Signed {
    /// Header or query.
    pub form: Form,
    /// Its payload hash.
    pub payload: Payload,
    /// `X-Amz-Date`, `YYYYMMDDTHHMMSSZ`.
    pub amz_date: String,
}

/// A sandbox signature found to hold: what signing the request again needs.
pub struct Verified {
    /// The signature as read.
    pub signed: Signed,
    /// The sandbox's signing key (the placeholder's), for an `aws-chunked`
    /// body's chain.
    pub key: hmac::Key,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("signed", &self.signed)
            .finish_non_exhaustive()
    }
}

/// The real chain of an `aws-chunked` body: the key and seed signature the
/// chunks are signed again with.
pub struct Reseeded {
    /// Signing key of the real credentials.
    pub key: hmac::Key,
    /// The request's new signature, the chain's seed.
    pub seed: String,
}

/// Why a signed request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    /// The request's SigV4 parts cannot be read.
    #[error(transparent)]
    Form(#[from] SigV4Error),
    /// `x-amz-content-sha256` names a payload form tollgate does not sign.
    #[error("the payload form `{0}` is not supported (supported: a hex SHA-256, UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER)")]
    Variant(String),
    /// The signature is not the one the request's content makes: it was
    /// changed after it was signed.
    #[error("the SigV4 signature does not match the request: it was changed after it was signed, or signed with another secret key")]
    Mismatch,
}

impl Signed {
    /// The signature the request carries, `None` when it carries none.
    pub fn read(parts: &Parts) -> Result<Option<Signed>, SignedError> {
        let presigned = match parts.uri.query() {
            Some(query) => parse_presigned(query)?,
            None => None,
        };
        let header = parts.headers.get(AUTHORIZATION);
        let form = match (header, presigned) {
            (Some(_), Some(_)) => {
                return Err(SigV4Error::Malformed(
                    "the request is signed both in a header and in its query",
                )
                .into())
            }
            (Some(value), None) => {
                let text = value
                    .to_str()
                    .map_err(|_| SigV4Error::Malformed("Authorization is not text"))?;
                if !text.trim_start().starts_with("AWS4-") {
                    return Ok(None);
                }
                Form::Header(parse_authorization(text)?)
            }
            (None, Some(presigned)) => Form::Query(presigned),
            (None, None) => return Ok(None),
        };
        let amz_date = match &form {
            Form::Query(p) => p.amz_date.clone(),
            Form::Header(auth) => {
                let date = parts
                    .headers
                    .get(AMZ_DATE)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(SigV4Error::Malformed("no X-Amz-Date header"))?;
                if date.len() != 16 || !date.starts_with(&auth.scope.date) {
                    return Err(SigV4Error::Malformed(
                        "X-Amz-Date does not match the credential's date",
                    )
                    .into());
                }
                date.to_string()
            }
        };
        let payload = payload(parts, &form)?;
        Ok(Some(Signed {
            form,
            payload,
            amz_date,
        }))
    }

    /// The scope it was signed for.
    pub fn scope(&self) -> &Scope {
        match &self.form {
            Form::Header(auth) => &auth.scope,
            Form::Query(p) => &p.scope,
        }
    }

    fn signed_headers(&self) -> &[String] {
        match &self.form {
            Form::Header(auth) => &auth.signed_headers,
            Form::Query(p) => &p.signed_headers,
        }
    }

    /// The signature it carries (the seed of an `aws-chunked` body's chain).
    pub fn claimed(&self) -> &str {
        match &self.form {
            Form::Header(auth) => &auth.signature,
            Form::Query(p) => &p.signature,
        }
    }

    /// Checks the signature against `secret` (the placeholder); `body_sha256`
    /// is the body's hash when the payload is [`Payload::Body`]. Returns the
    /// signing key, for an `aws-chunked` body's chain.
    pub fn verify(
        &self,
        parts: &Parts,
        secret: &str,
        body_sha256: &str,
        keys: &SigningKeys,
    ) -> Result<hmac::Key, SignedError> {
        let scope = self.scope();
        let canonical = canonical_request(&CanonicalInput {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            host: &authority(&parts.uri),
            signed_headers: self.signed_headers(),
            payload_hash: self.payload.canonical(body_sha256),
            service: &scope.service,
            exclude_query: &["X-Amz-Signature"],
        })?;
        let key = keys.key(secret, scope);
        let expected = signature(&key, &string_to_sign(&self.amz_date, scope, &canonical));
        // SECURITY: constant time, like every signature comparison.
        aws_lc_rs::constant_time::verify_slices_are_equal(
            expected.as_bytes(),
            self.claimed().as_bytes(),
        )
        .map_err(|_| SignedError::Mismatch)?;
        Ok(key)
    }

    /// Signs `parts` again with `creds`, in the form it came in: the real
    /// access key id in the credential, the real session token in
    /// `X-Amz-Security-Token` (removed for static keys), a presigned URL's
    /// expiry capped to the credentials' life. Returns the new chain of an
    /// `aws-chunked` body.
    ///
    /// `upstream` is the `host[:port]` the request goes to, which is the Host
    /// header it leaves with (and signs, when `host` is a signed header).
    pub fn resign(
        &self,
        parts: &mut Parts,
        upstream: &str,
        creds: &Credentials<'_>,
        body_sha256: &str,
        keys: &SigningKeys,
    ) -> Result<Reseeded, SignedError> {
        let scope = Scope {
            access_key: creds.access_key_id.to_string(),
            ..self.scope().clone()
        };
        let host = upstream.to_string();
        if parts.headers.contains_key(http::header::HOST) {
            let value = HeaderValue::from_str(upstream).map_err(|_| {
                SigV4Error::Malformed("the upstream authority is not a header value")
            })?;
            parts.headers.insert(http::header::HOST, value);
        }
        let key = keys.key(creds.secret_access_key, &scope);
        let seed = match &self.form {
            Form::Header(auth) => {
                let mut signed_headers = auth.signed_headers.clone();
                let token_name = SECURITY_TOKEN.as_str().to_string();
                signed_headers.retain(|h| *h != token_name);
                parts.headers.remove(SECURITY_TOKEN);
                if let Some(token) = creds.session_token {
                    let value = HeaderValue::from_str(token).map_err(|_| {
                        SigV4Error::Malformed("the session token cannot be a header value")
                    })?;
                    parts.headers.insert(SECURITY_TOKEN, value);
                    signed_headers.push(token_name);
                    signed_headers.sort();
                }
                let canonical = canonical_request(&CanonicalInput {
                    method: parts.method.as_str(),
                    path: parts.uri.path(),
                    query: parts.uri.query().unwrap_or(""),
                    headers: &parts.headers,
                    host: &host,
                    signed_headers: &signed_headers,
                    payload_hash: self.payload.canonical(body_sha256),
                    service: &scope.service,
                    exclude_query: &[],
                })?;
                let fresh = signature(&key, &string_to_sign(&self.amz_date, &scope, &canonical));
                let value = format!(
                    "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={fresh}",
                    scope.access_key,
                    scope.credential_scope(),
                    signed_headers.join(";"),
                );
                let value = HeaderValue::from_str(&value).map_err(|_| {
                    SigV4Error::Malformed("the access key id cannot be a header value")
                })?;
                parts.headers.insert(AUTHORIZATION, value);
                fresh
            }
            Form::Query(presigned) => {
                let expires = match creds.remaining() {
                    Some(left) => presigned.expires.min(left.max(1)),
                    None => presigned.expires,
                };
                let query = requery(
                    parts.uri.query().unwrap_or(""),
                    &scope,
                    creds.session_token,
                    expires,
                );
                let canonical = canonical_request(&CanonicalInput {
                    method: parts.method.as_str(),
                    path: parts.uri.path(),
                    query: &query,
                    headers: &parts.headers,
                    host: &host,
                    signed_headers: &presigned.signed_headers,
                    payload_hash: self.payload.canonical(body_sha256),
                    service: &scope.service,
                    exclude_query: &[],
                })?;
                let fresh = signature(&key, &string_to_sign(&self.amz_date, &scope, &canonical));
                let path_and_query =
                    format!("{}?{query}&X-Amz-Signature={fresh}", parts.uri.path());
                let mut uri = parts.uri.clone().into_parts();
                uri.path_and_query = Some(path_and_query.parse().map_err(|_| {
                    SigV4Error::Malformed("the re-signed query is not a valid URI")
                })?);
                parts.uri = Uri::from_parts(uri)
                    .map_err(|_| SigV4Error::Malformed("the re-signed query is not a valid URI"))?;
                fresh
            }
        };
        Ok(Reseeded { key, seed })
    }
}

/// `host[:port]` as the client addressed it (HTTP/2 has no Host header).
fn authority(uri: &Uri) -> String {
    uri.authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default()
}

/// The payload hash form: `x-amz-content-sha256` when sent, else
/// `UNSIGNED-PAYLOAD` for a presigned S3 URL, else the body's hash.
fn payload(parts: &Parts, form: &Form) -> Result<Payload, SignedError> {
    let Some(value) = parts.headers.get(CONTENT_SHA256) else {
        return Ok(match form {
            Form::Query(p) if p.scope.service == "s3" => Payload::Unsigned,
            _ => Payload::Body,
        });
    };
    let text = value.to_str().unwrap_or("");
    Ok(match text {
        "UNSIGNED-PAYLOAD" => Payload::Unsigned,
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => Payload::SignedChunks { trailer: false },
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Payload::SignedChunks { trailer: true },
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Payload::UnsignedTrailer,
        hash if hash.len() == 64
            && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Payload::Declared(hash.to_string())
        }
        other => {
            let shown: String = other
                .chars()
                .take(64)
                .filter(|c| c.is_ascii_graphic())
                .collect();
            return Err(SignedError::Variant(shown));
        }
    })
}
