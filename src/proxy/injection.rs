//! The secrets phase of the pipeline, in two halves around the approval wait:
//! [`check`] binds the placeholders a request carries to its rule before
//! anything is fetched; [`inject`] fetches the permitted values, substitutes
//! them and returns the scrubber the response must pass through.

use super::context::RequestCtx;
use super::destination::Target;
use super::signing;
use crate::body::{
    empty_body, full_body, read_whole, stream_body, ProxyBody, ReadWholeError, RequestBody,
};
use crate::error::{Reason, Refusal};
use crate::inject::{self, InjectionPermit, Scrubber};
use crate::policy::{Policy, Rule};
use crate::secrets::SecretValue;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Request};
use std::sync::Arc;

/// A request body on its way through the pipeline.
#[derive(Debug)]
pub enum PendingBody {
    /// Read whole for an `inject_body` rule (at most 1 MiB).
    Buffered(Vec<u8>),
    /// Not read yet: streamed upstream as it arrives.
    Streamed(RequestBody),
    /// Read whole while its request waited for approval.
    Held(crate::approvals::spool::HeldBody),
    /// Read whole to hash it for a SigV4 signature (at most
    /// [`super::signing::MAX_HASHED_BODY`]); nothing is injected into it.
    Hashed(Vec<u8>),
    /// Read whole (at most 1 MiB) for a content rule to match on.
    Inspected(Vec<u8>),
}

/// A request checked for its placeholders: its head, its body and what may
/// be injected into it.
pub type Checked<'p> = (Parts, PendingBody, InjectionPermit<'p>);

/// First half: binds the placeholders the request carries to the rule (403
/// `secret_not_allowed`), reading the body first when an `inject_body` rule
/// may inject into it, and checks the SigV4 signature a request made with an
/// `aws` secret's placeholder ([`signing`]). Nothing is fetched yet.
pub async fn check<'p>(
    policy: &'p Policy,
    rule: &Rule,
    target: &Target,
    (parts, body): (Parts, PendingBody),
    keys: &crate::sigv4::SigningKeys,
) -> Result<Checked<'p>, Refusal> {
    signing::refuse_foreign_key_ids(policy, &parts)?;
    let mut body = match body {
        PendingBody::Streamed(body) if rule.inject_body && is_textual(&parts.headers) => {
            PendingBody::Buffered(
                read_limited(
                    &parts.headers,
                    body,
                    inject::MAX_INJECT_BODY,
                    "an inject_body rule",
                )
                .await?,
            )
        }
        PendingBody::Inspected(bytes) if rule.inject_body && is_textual(&parts.headers) => {
            PendingBody::Buffered(bytes)
        }
        other => other,
    };
    let buffered = match &body {
        PendingBody::Buffered(bytes) => Some(bytes.as_slice()),
        _ => None,
    };
    let mut permit =
        inject::check_request(policy, rule, &target.host, target.scheme, &parts, buffered)?;
    if let Some(signed) = signing::read(&parts, &permit)? {
        body = match (&signed.payload, body) {
            (crate::sigv4::Payload::Body, PendingBody::Streamed(stream)) => PendingBody::Hashed(
                read_limited(
                    &parts.headers,
                    stream,
                    signing::MAX_HASHED_BODY,
                    "a SigV4-signed body whose hash tollgate computes (declare x-amz-content-sha256, or use UNSIGNED-PAYLOAD or aws-chunked, for larger ones)",
                )
                .await?,
            ),
            (_, other) => other,
        };
        let whole = match &body {
            PendingBody::Buffered(bytes)
            | PendingBody::Hashed(bytes)
            | PendingBody::Inspected(bytes) => Some(bytes.as_slice()),
            _ => None,
        };
        signing::verify(&parts, signed, whole, &mut permit, keys)?;
    }
    Ok((parts, body, permit))
}

/// Second half: fetches the permitted values (503 `secret_unavailable`) and
/// substitutes them. Returns the request to forward and, when this task has
/// ever had a secret injected, the scrubber for its response.
pub async fn inject(
    ctx: &mut RequestCtx<'_>,
    policy: &Policy,
    target: &Target,
    (mut parts, body, mut permit): Checked<'_>,
) -> Result<(Request<ProxyBody>, Option<Arc<Scrubber>>), Refusal> {
    let (mut buffered, rest) = match body {
        PendingBody::Buffered(bytes) => (Some(bytes), None),
        other => (None, Some(other)),
    };
    let mut scrubber = ctx.state.injected.scrubber(&ctx.task().id);
    let mut signer = None;
    if !permit.is_empty() {
        // An ended task's leases are being revoked: fetching now would make one
        // nobody ends.
        ctx.ensure_current()?;
        let values = fetch(ctx, policy, &permit).await?;
        scrubber = remember(ctx, &permit, &values);
        let names: Vec<String> = permit
            .secrets()
            .iter()
            .map(|s| s.name.as_str().to_string())
            .collect();
        let only_signs = permit.only_signs();
        if let (Some(verified), Some(spec)) = (permit.take_verified(), permit.signer()) {
            let at = permit.secrets().iter().position(|s| s.name == spec.name);
            signer = at
                .and_then(|i| values.get(i).cloned())
                .map(|v| (verified, v));
        }
        let rewritten = permit.apply(&mut parts, buffered.as_mut(), &values)?;
        ctx.log.record.secrets = names;
        if !rewritten.is_empty() {
            scrubber = match scrubber {
                Some(task) => task.with_whole(rewritten),
                None => Scrubber::new(rewritten),
            }
            .map(Arc::new);
        }
        // SECURITY: a secret must not be fetched in parts (`bytes=0-19`, then
        // `bytes=20-`) and put together again in the sandbox. AWS credentials
        // are only signed with, never written into a request to be echoed,
        // and S3 downloads need their ranges.
        if !only_signs {
            parts.headers.remove(header::RANGE);
            parts.headers.remove(header::IF_RANGE);
        }
    }
    if let Some(cut) = ctx.log.budget_cut() {
        parts.extensions.insert(cut);
    }
    if scrubber.is_some() {
        // An uncompressed answer can be scrubbed as it streams.
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let Some((verified, value)) = signer else {
        let body = upstream_body(ctx, buffered, rest).await?;
        return Ok((Request::from_parts(parts, body), scrubber));
    };
    // Last: any header changed after this would break the new signature.
    let whole = match (&buffered, &rest) {
        (Some(bytes), _)
        | (None, Some(PendingBody::Hashed(bytes) | PendingBody::Inspected(bytes))) => {
            Some(signing::sha256_hex(bytes))
        }
        _ => None,
    };
    let body = upstream_body(ctx, buffered, rest).await?;
    let body = signing::resign(
        &mut parts,
        &target.authority(),
        verified,
        &value,
        whole,
        body,
        &ctx.state.sigv4_keys,
    )?;
    Ok((Request::from_parts(parts, body), scrubber))
}

/// The body that goes upstream, counted into the record as it goes.
async fn upstream_body(
    ctx: &RequestCtx<'_>,
    buffered: Option<Vec<u8>>,
    rest: Option<PendingBody>,
) -> Result<ProxyBody, Refusal> {
    Ok(match (buffered, rest) {
        (Some(bytes), _) => ctx.log.count_up(full_body(bytes)),
        (None, Some(PendingBody::Streamed(body))) => ctx.log.count_up(stream_body(body)),
        (None, Some(PendingBody::Hashed(bytes) | PendingBody::Inspected(bytes))) => {
            ctx.log.count_up(full_body(bytes))
        }
        (None, Some(PendingBody::Held(held))) => {
            // Reading back what was spooled: whatever fails here is the spool's.
            let body = held
                .into_body()
                .await
                .map_err(|err| Refusal::new(Reason::SpoolUnavailable, err.to_string()))?;
            ctx.log.count_up(body)
        }
        _ => empty_body(),
    })
}

/// The permitted secrets' values, from their backends.
async fn fetch(
    ctx: &RequestCtx<'_>,
    policy: &Policy,
    permit: &InjectionPermit<'_>,
) -> Result<Vec<Arc<SecretValue>>, Refusal> {
    let mut values = Vec::with_capacity(permit.secrets().len());
    for spec in permit.secrets() {
        let value = if spec.source.is_minted() {
            ctx.state.minter.get(ctx.task(), &policy.name, spec).await?
        } else {
            ctx.state
                .secrets
                .get(&ctx.task().id, &policy.name, spec)
                .await?
        };
        values.push(value);
    }
    Ok(values)
}

/// Every later response to this task is scrubbed of these values too: the
/// upstream may store one and hand it back to a request without placeholders.
fn remember(
    ctx: &RequestCtx<'_>,
    permit: &InjectionPermit<'_>,
    values: &[Arc<SecretValue>],
) -> Option<Arc<Scrubber>> {
    let lasting: Vec<_> = permit
        .secrets()
        .iter()
        .zip(values)
        .flat_map(|(spec, value)| {
            let placeholder = spec.name.placeholder();
            match crate::sigv4::Credentials::parse(value.expose()) {
                // Each part of AWS credentials is scrubbed on its own.
                Some(creds)
                    if matches!(spec.source, crate::policy::model::SecretSource::Aws(_)) =>
                {
                    [creds.access_key_id, creds.secret_access_key]
                        .into_iter()
                        .chain(creds.session_token)
                        .flat_map(|part| inject::value_forms(&placeholder, part))
                        .collect::<Vec<_>>()
                }
                _ => inject::value_forms(&placeholder, value.expose()),
            }
        })
        .collect();
    ctx.state.injected.remember(&ctx.task().id, lasting)
}

/// Whether an `inject_body` rule reads this body: a textual, uncompressed type.
fn is_textual(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::CONTENT_ENCODING) {
        return false;
    }
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/")
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
        || matches!(
            mime.as_str(),
            "application/json"
                | "application/x-www-form-urlencoded"
                | "application/xml"
                | "application/graphql"
                | "application/javascript"
        )
}

/// Reads a body of at most `limit` bytes; larger is 413 naming `what` reads it.
async fn read_limited(
    headers: &HeaderMap,
    body: RequestBody,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, Refusal> {
    read_whole(headers, body, limit)
        .await
        .map_err(|err| match err {
            ReadWholeError::TooLarge => Refusal::new(
                Reason::BodyTooLarge,
                format!("the body is over the {limit} byte limit of {what}"),
            ),
            ReadWholeError::Unreadable => {
                Refusal::new(Reason::BadRequest, "the request body could not be read")
            }
        })
}
