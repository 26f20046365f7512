//! The policy decision of one request: its path read strictly, no header that
//! would make the upstream act on another method or path, then the first rule
//! of the policy that matches method, scheme, host, port and path, and, for a
//! rule with `jsonrpc` or `graphql`, what the request carries
//! ([`crate::policy::content`]). The body such a rule reads is read here, once,
//! and goes upstream afterwards as it was.

use super::context::RequestCtx;
use super::destination::Target;
use super::headers::rerouting_header;
use super::injection::PendingBody;
use crate::audit::{GraphQlInfo, RpcInfo};
use crate::body::{read_whole, ReadWholeError, RequestBody};
use crate::error::{Reason, Refusal};
use crate::policy::content::MAX_CONTENT_BODY;
use crate::policy::{
    Action, ContentInput, ContentSummary, Policy, RequestFacts, RequestPath, Rule,
};
use http::request::Parts;
use http::{header, Request};
use std::time::Duration;

/// Longest a content rule waits for the body it reads (400 after).
pub const CONTENT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A request that a rule lets through (`allow`) or holds (`approve`).
pub struct Decided<'p> {
    /// The rule.
    pub rule: &'p Rule,
    /// Its head.
    pub parts: Parts,
    /// Its body: read whole when a content rule read it, else still streaming.
    pub body: PendingBody,
    /// The tools a `tools/list` answer to it must be narrowed to.
    pub tools_filter: Option<Vec<String>>,
}

/// The rule that lets `req` through (`allow`) or holds it (`approve`); a
/// `deny` rule or no rule is a refusal. The rule's name, and what a content
/// rule read, go into the record.
pub async fn matching_rule<'p>(
    ctx: &mut RequestCtx<'_>,
    policy: &'p Policy,
    target: &Target,
    req: Request<RequestBody>,
) -> Result<Decided<'p>, Refusal> {
    let (parts, body) = req.into_parts();
    // Most requests meet no rule that reads the body: decided at once.
    let at_once = with_facts(target, &parts, |facts| {
        (!policy.needs_body(facts)).then(|| policy.decide(facts, &content_input(&parts, None)))
    })?;
    let (body, decided) = match at_once {
        Some(decided) => (PendingBody::Streamed(body), decided),
        None => {
            let bytes = read_for_content(&parts, body).await?;
            let decided = with_facts(target, &parts, |facts| {
                policy.decide(facts, &content_input(&parts, Some(&bytes)))
            })?;
            (PendingBody::Inspected(bytes), decided)
        }
    };
    let decided =
        decided.map_err(|refusal| Refusal::new(Reason::BadRequest, refusal.to_string()))?;
    conclude(ctx, policy, target, parts, body, decided)
}

/// What content rules see of a request besides its facts.
fn content_input<'a>(parts: &'a Parts, body: Option<&'a [u8]>) -> ContentInput<'a> {
    ContentInput {
        query: parts.uri.query(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body,
    }
}

/// Runs `f` on the facts of the request, once its path and headers pass.
fn with_facts<T>(
    target: &Target,
    parts: &Parts,
    f: impl FnOnce(&RequestFacts<'_>) -> T,
) -> Result<T, Refusal> {
    let path = RequestPath::parse(parts.uri.path())
        .map_err(|e| Refusal::new(Reason::BadRequest, format!("ambiguous request path: {e}")))?;
    if let Some(header) = rerouting_header(&parts.headers) {
        return Err(Refusal::new(
            Reason::BadRequest,
            format!("the request carries {header}, which would let the upstream act on another method or path than the one checked"),
        ));
    }
    Ok(f(&RequestFacts {
        scheme: target.scheme,
        host: &target.host,
        port: target.port,
        method: &parts.method,
        path: &path,
    }))
}

/// The decision on a request whose body, if a rule reads it, has been read.
fn conclude<'p>(
    ctx: &mut RequestCtx<'_>,
    policy: &'p Policy,
    target: &Target,
    parts: Parts,
    body: PendingBody,
    decided: crate::policy::Decided<'p>,
) -> Result<Decided<'p>, Refusal> {
    let lists_tools = record_content(ctx, decided.content.as_ref());
    let Some(rule) = decided.rule else {
        return Err(Refusal::new(
            Reason::NoRule,
            format!(
                "no rule of policy {} allows {} {}://{}:{}{}{}",
                policy.name,
                parts.method,
                target.scheme.as_str(),
                target.host,
                target.port,
                parts.uri.path(),
                described(decided.content.as_ref()),
            ),
        ));
    };
    ctx.log.record.rule = Some(rule.name.clone());
    let tools_filter = rule
        .content
        .as_ref()
        .and_then(|c| c.allowed_tools())
        .filter(|_| lists_tools)
        .map(<[String]>::to_vec);
    match rule.action {
        Action::Allow | Action::Approve => Ok(Decided {
            rule,
            parts,
            body,
            tools_filter,
        }),
        Action::Deny => Err(Refusal::new(
            Reason::DeniedByRule,
            format!("rule `{}` denies this request", rule.name),
        )),
    }
}

/// Puts what a content rule read into the record; whether the body asks for
/// `tools/list`.
fn record_content(ctx: &mut RequestCtx<'_>, content: Option<&ContentSummary>) -> bool {
    match content {
        Some(ContentSummary::Rpc(rpc)) => {
            ctx.log.record.rpc = Some(RpcInfo {
                method: rpc.method.clone(),
                tool: rpc.tool.clone(),
            });
            rpc.messages
                .iter()
                .any(|m| m.method.as_deref() == Some("tools/list"))
        }
        Some(ContentSummary::GraphQl(op)) => {
            ctx.log.record.graphql = Some(GraphQlInfo {
                operation: op.operation.as_str(),
                name: op.name.clone(),
            });
            false
        }
        None => false,
    }
}

/// What a refusal adds about the body: ` (JSON-RPC tools/call (tool rm))`.
fn described(content: Option<&ContentSummary>) -> String {
    match content {
        Some(c @ ContentSummary::Rpc(rpc)) if rpc.batch => {
            format!(" ({}; every call of a batch must be allowed)", c.describe())
        }
        Some(c) => format!(" ({})", c.describe()),
        None => String::new(),
    }
}

/// Reads the body a content rule matches on: at most [`MAX_CONTENT_BODY`]
/// bytes, uncompressed, within [`CONTENT_READ_TIMEOUT`]; otherwise 400.
async fn read_for_content(parts: &Parts, body: RequestBody) -> Result<Vec<u8>, Refusal> {
    let bad = |message: String| Refusal::new(Reason::BadRequest, message);
    if let Some(coding) = parts.headers.get(header::CONTENT_ENCODING) {
        let coding = String::from_utf8_lossy(coding.as_bytes());
        return Err(bad(format!(
            "a rule reads this request's body, which is sent with Content-Encoding {}; send it uncompressed",
            crate::content::error::excerpt(&coding, 40)
        )));
    }
    let read = read_whole(&parts.headers, body, MAX_CONTENT_BODY);
    match tokio::time::timeout(CONTENT_READ_TIMEOUT, read).await {
        Err(_) => Err(bad(format!(
            "a rule reads this request's body, and it did not arrive within {}s (the content read timeout)",
            CONTENT_READ_TIMEOUT.as_secs()
        ))),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(ReadWholeError::TooLarge)) => Err(bad(format!(
            "a rule reads this request's body, and it is over the {MAX_CONTENT_BODY} byte limit"
        ))),
        Ok(Err(ReadWholeError::Unreadable)) => {
            Err(bad("the request body could not be read".into()))
        }
    }
}
