//! AWS Signature Version 4 (header form): reading the `Authorization` header a
//! client signed with, rebuilding the canonical request it signed, and signing
//! it (the checks and the re-signing of issue 15 build on this).
//!
//! `auth` parses `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`;
//! `canonical` builds the canonical request and the string to sign, with S3's
//! rule for paths (as sent) and every other service's (normalized, then encoded
//! again); `sign` derives signing keys (cached per date, region and service) and
//! computes signatures; `chunked` re-signs `aws-chunked` bodies as they stream;
//! `presigned` reads and rewrites the query form; `keyid`
//! finds real-looking access key ids. Nothing here does I/O.

pub mod auth;
pub mod body;
pub mod canonical;
pub mod chunked;
pub mod credentials;
pub mod keyid;
pub mod presigned;
pub mod request;
pub mod sign;

pub use auth::{parse_authorization, Authorization, Scope};
pub use canonical::{canonical_request, string_to_sign, CanonicalInput};
pub use credentials::Credentials;
pub use keyid::find_access_key_id;
pub use presigned::{parse_presigned, requery, Presigned};
pub use request::{Payload, Signed, SignedError};
pub use sign::{signature, SigningKeys};

/// Whether `s` has the form of a SigV4 signature: 64 lower-case hex digits.
fn is_signature(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why a SigV4 header could not be read. Messages never quote a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// Not `AWS4-HMAC-SHA256 …`: another algorithm (SigV4a, SigV2) or none.
    #[error("unsupported signing algorithm `{0}`")]
    Algorithm(String),
    /// A part is missing or malformed.
    #[error("malformed SigV4 Authorization header: {0}")]
    Malformed(&'static str),
}

#[cfg(test)]
mod tests;
