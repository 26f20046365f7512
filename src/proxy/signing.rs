//! Requests signed with an `aws` secret's placeholder (SigV4). Before any
//! approval or fetch, [`verify`] checks what the sandbox signed: the key id is
//! the placeholder, the region and service are allowed, and the signature
//! holds with the placeholder as secret key (a request changed after signing
//! is 400). After the credentials are fetched, [`resign`] signs the request
//! again with them and wraps the body so that its hash, or its chunk
//! signatures, are checked and made again as it streams.
//!
//! [`refuse_foreign_key_ids`] keeps real-looking access key ids out of every
//! request of a policy that declares an `aws` secret.

use crate::body::ProxyBody;
use crate::error::{Reason, Refusal};
use crate::inject::InjectionPermit;
use crate::policy::model::{SecretSource, SecretSpec};
use crate::policy::Policy;
use crate::sigv4::body::{Cutoff, HashChecked, Rechunked};
use crate::sigv4::chunked::{Chain, Resigner};
use crate::sigv4::request::{Verified, EMPTY_SHA256};
use crate::sigv4::{find_access_key_id, Credentials, Payload, Signed, SigningKeys};
use http::header::PROXY_AUTHORIZATION;
use http::request::Parts;
use http::HeaderValue;
use http_body_util::BodyExt;

/// Largest body tollgate reads whole to hash it, for services that sign the
/// body's hash without declaring it (everything but S3).
pub const MAX_HASHED_BODY: usize = 8 * 1024 * 1024;

/// 403 `secret_not_allowed` when a header (Proxy-Authorization aside), the
/// path or the query holds a real-looking AWS access key id, under a policy
/// that declares an `aws` secret: the sandbox must not hold real keys, let
/// alone use them past tollgate.
pub fn refuse_foreign_key_ids(policy: &Policy, parts: &Parts) -> Result<(), Refusal> {
    if !policy
        .secrets
        .values()
        .any(|s| matches!(s.source, SecretSource::Aws(_)))
    {
        return Ok(());
    }
    let refuse = |place: &str| {
        Refusal::new(
            Reason::SecretNotAllowed,
            format!(
                "the request carries a real-looking AWS access key id in {place}; sign with the placeholder credentials instead"
            ),
        )
    };
    for (name, value) in &parts.headers {
        if name != PROXY_AUTHORIZATION && find_access_key_id(value.as_bytes()).is_some() {
            return Err(refuse(&format!("its {name} header")));
        }
    }
    if let Some(pq) = parts.uri.path_and_query() {
        // Decoded too: `%41KIA…` is the same key to AWS.
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(pq.as_str()).collect();
        if find_access_key_id(pq.as_str().as_bytes()).is_some()
            || find_access_key_id(&decoded).is_some()
        {
            return Err(refuse("its URL"));
        }
    }
    Ok(())
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::new(Reason::BadRequest, message)
}

/// The sandbox's signature of a request whose permit names an `aws` secret:
/// signed with the placeholder as key id, for an allowed region and service,
/// in a payload form tollgate signs. `None` when the permit names none.
pub fn read(parts: &Parts, permit: &InjectionPermit<'_>) -> Result<Option<Signed>, Refusal> {
    let Some(spec) = permit.signer() else {
        return Ok(None);
    };
    let placeholder = spec.name.placeholder();
    let signed = Signed::read(parts)
        .map_err(|err| bad(format!("secret {}: {err}", spec.name)))?
        .ok_or_else(|| {
            bad(format!(
                "{placeholder} is the placeholder of the aws secret {}: it is only used as SigV4 credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), and this request is not SigV4-signed",
                spec.name
            ))
        })?;
    let scope = signed.scope();
    if scope.access_key != placeholder {
        return Err(bad(format!(
            "the request is SigV4-signed with another access key id than {placeholder}, the placeholder of the aws secret {}",
            spec.name
        )));
    }
    allowed(spec, &scope.region, &scope.service)?;
    Ok(Some(signed))
}

/// Checks `signed` with the placeholder as secret key and records it in the
/// permit. `body` is the body when it was read whole (its hash is computed,
/// and a declared hash checked, here); a streamed body's declared hash is
/// checked as it streams ([`resign`]).
pub fn verify(
    parts: &Parts,
    signed: Signed,
    body: Option<&[u8]>,
    permit: &mut InjectionPermit<'_>,
    keys: &SigningKeys,
) -> Result<(), Refusal> {
    let Some(spec) = permit.signer() else {
        return Ok(());
    };
    let body_sha256 = body.map_or_else(|| EMPTY_SHA256.to_string(), sha256_hex);
    if let (Payload::Declared(declared), Some(_)) = (&signed.payload, body) {
        if *declared != body_sha256 {
            return Err(bad(
                "the body does not hash to the x-amz-content-sha256 it was signed with: it was changed after it was signed",
            ));
        }
    }
    let key = signed
        .verify(parts, &spec.name.placeholder(), &body_sha256, keys)
        .map_err(|err| bad(format!("secret {}: {err}", spec.name)))?;
    permit.set_verified(Verified { signed, key });
    Ok(())
}

/// 403 `no_rule` for a region or service outside the secret's lists.
fn allowed(spec: &SecretSpec, region: &str, service: &str) -> Result<(), Refusal> {
    let SecretSource::Aws(aws) = &spec.source else {
        return Ok(());
    };
    if !aws.regions.is_empty() && !aws.regions.iter().any(|r| r == region) {
        return Err(Refusal::new(
            Reason::NoRule,
            format!(
                "region {region} is not among the regions of the aws secret {} ({})",
                spec.name,
                aws.regions.join(", ")
            ),
        ));
    }
    if !aws.services.is_empty() && !aws.services.iter().any(|s| s == service) {
        return Err(Refusal::new(
            Reason::NoRule,
            format!(
                "service {service} is not among the services of the aws secret {} ({})",
                spec.name,
                aws.services.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Signs the request again with `value` (the real credentials) and wraps its
/// body: `whole_sha256` is the hash of the final body when it was read whole
/// ([`sha256_hex`]), else `body`
/// streams. Header changes after this would break the signature.
pub fn resign(
    parts: &mut Parts,
    upstream: &str,
    verified: Verified,
    value: &crate::secrets::SecretValue,
    whole_sha256: Option<String>,
    body: ProxyBody,
    keys: &SigningKeys,
) -> Result<ProxyBody, Refusal> {
    let creds = Credentials::parse(value.expose()).ok_or_else(|| {
        Refusal::new(
            Reason::SecretUnavailable,
            "the aws credentials tollgate holds are not in their expected form",
        )
    })?;
    let Verified { mut signed, key } = verified;
    let in_memory = whole_sha256.is_some();
    let body_sha256 = whole_sha256.unwrap_or_else(|| EMPTY_SHA256.to_string());
    if let (Payload::Declared(declared), true) = (&signed.payload, in_memory) {
        if *declared != body_sha256 {
            // Placeholders of other secrets were injected into the body
            // (`inject_body`): the real body's hash is declared and signed.
            let value = HeaderValue::from_str(&body_sha256)
                .map_err(|_| bad("the body hash cannot be a header value"))?;
            parts
                .headers
                .insert(crate::sigv4::request::CONTENT_SHA256, value);
            signed.payload = Payload::Declared(body_sha256.clone());
        }
    }
    let reseeded = signed
        .resign(parts, upstream, &creds, &body_sha256, keys)
        .map_err(|err| bad(format!("signing again failed: {err}")))?;
    let cutoff = Cutoff::default();
    parts.extensions.insert(cutoff.clone());
    Ok(match (&signed.payload, in_memory) {
        (Payload::Declared(hash), false) => HashChecked::new(body, hash.clone(), cutoff).boxed(),
        (Payload::SignedChunks { trailer }, false) => {
            let scope = signed.scope().credential_scope();
            let check = Chain::new(key, &signed.amz_date, &scope, signed.claimed());
            let sign = Chain::new(reseeded.key, &signed.amz_date, &scope, &reseeded.seed);
            let resigner = if *trailer {
                Resigner::with_trailer(check, sign)
            } else {
                Resigner::new(check, sign)
            };
            Rechunked::new(body, resigner, cutoff).boxed()
        }
        _ => body,
    })
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::text::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}
