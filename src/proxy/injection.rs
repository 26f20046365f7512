//! The secrets phase of the pipeline, in two halves around the approval wait:
//! [`check`] binds the placeholders a request carries to its rule before
//! anything is fetched; [`inject`] fetches the permitted values, substitutes
//! them and returns the scrubber the response must pass through.

use super::context::RequestCtx;
use super::destination::Target;
use crate::body::{empty_body, full_body, stream_body, ProxyBody, RequestBody};
use crate::error::{Reason, Refusal};
use crate::inject::{self, InjectionPermit, Scrubber};
use crate::policy::{Policy, Rule};
use crate::secrets::SecretValue;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Request};
use http_body_util::BodyExt;
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
}

/// A request checked for its placeholders: its head, its body and what may
/// be injected into it.
pub type Checked<'p> = (Parts, PendingBody, InjectionPermit<'p>);

/// First half: binds the placeholders the request carries to the rule (403
/// `secret_not_allowed`), reading the body first when an `inject_body` rule
/// may inject into it. Nothing is fetched yet.
pub async fn check<'p>(
    policy: &'p Policy,
    rule: &Rule,
    target: &Target,
    req: Request<RequestBody>,
) -> Result<Checked<'p>, Refusal> {
    let (parts, body) = req.into_parts();
    let body = if rule.inject_body && is_textual(&parts.headers) {
        PendingBody::Buffered(read_limited(&parts.headers, body).await?)
    } else {
        PendingBody::Streamed(body)
    };
    let buffered = match &body {
        PendingBody::Buffered(bytes) => Some(bytes.as_slice()),
        _ => None,
    };
    let permit =
        inject::check_request(policy, rule, &target.host, target.scheme, &parts, buffered)?;
    Ok((parts, body, permit))
}

/// Second half: fetches the permitted values (503 `secret_unavailable`) and
/// substitutes them. Returns the request to forward and, when this task has
/// ever had a secret injected, the scrubber for its response.
pub async fn inject(
    ctx: &mut RequestCtx<'_>,
    policy: &Policy,
    (mut parts, body, permit): Checked<'_>,
) -> Result<(Request<ProxyBody>, Option<Arc<Scrubber>>), Refusal> {
    let (mut buffered, rest) = match body {
        PendingBody::Buffered(bytes) => (Some(bytes), None),
        other => (None, Some(other)),
    };
    let mut scrubber = ctx.state.injected.scrubber(&ctx.task().id);
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
        // `bytes=20-`) and put together again in the sandbox.
        parts.headers.remove(header::RANGE);
        parts.headers.remove(header::IF_RANGE);
    }
    if scrubber.is_some() {
        // An uncompressed answer can be scrubbed as it streams.
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let body = upstream_body(ctx, buffered, rest).await?;
    Ok((Request::from_parts(parts, body), scrubber))
}

/// The body that goes upstream, counted into the record as it goes.
async fn upstream_body(
    ctx: &RequestCtx<'_>,
    buffered: Option<Vec<u8>>,
    rest: Option<PendingBody>,
) -> Result<ProxyBody, Refusal> {
    Ok(match (buffered, rest) {
        (Some(bytes), _) => {
            ctx.log.add_up(bytes.len() as u64);
            full_body(bytes)
        }
        (None, Some(PendingBody::Streamed(body))) => ctx.log.count_up(stream_body(body)),
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
        .flat_map(|(spec, value)| inject::value_forms(&spec.name.placeholder(), value.expose()))
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

/// Reads a body of at most [`inject::MAX_INJECT_BODY`] bytes; larger is 413.
async fn read_limited(headers: &HeaderMap, body: RequestBody) -> Result<Vec<u8>, Refusal> {
    let too_large = || {
        Refusal::new(
            Reason::BodyTooLarge,
            format!(
                "the body is over the {} byte limit of an inject_body rule",
                inject::MAX_INJECT_BODY
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > inject::MAX_INJECT_BODY as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, inject::MAX_INJECT_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(Refusal::new(
            Reason::BadRequest,
            "the request body could not be read",
        )),
    }
}
