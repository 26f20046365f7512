//! The path of one request, in order:
//!
//! authenticate (done by the caller, per connection; the task's expiry and
//! revocation are checked again here, per request) → audit writable? → the
//! policy as loaded now → check target → check path → policy decision → rate
//! limit → check placeholders → (`approve` rules: wait for an operator,
//! [`super::approval`]) → fetch and inject secrets → forward upstream → scrub
//! response → audit record (when the exchange ends).
//!
//! Every request inside an intercepted tunnel passes through here on its own;
//! the CONNECT decision never stands in for it.

use super::destination::{authority_for, request_destination};
use super::exchange::Exchange;
use super::state::ProxyState;
use crate::body::{empty_body, full_body, stream_body, ProxyBody, RequestBody};
use crate::error::{Reason, Refusal};
use crate::inject::{self, Scrubber};
use crate::policy::{Action, Policy, RequestFacts, RequestPath, Rule, Scheme};
use crate::tasks::Task;
use http::request::Parts;
use http::{header, Request, Response};
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;

/// What is known about the client connection a request arrived on.
#[derive(Debug)]
pub struct ConnCtx {
    /// The authenticated task.
    pub task: Arc<Task>,
    /// Its policy.
    pub policy: Arc<Policy>,
    /// Client address.
    pub client: SocketAddr,
    /// For an intercepted tunnel: the CONNECT target every request must name.
    pub tunnel_target: Option<(String, u16)>,
}

impl ConnCtx {
    fn scheme(&self) -> Scheme {
        if self.tunnel_target.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    /// The audit record of a request on this connection, identity filled in.
    pub fn record(&self, method: &str) -> crate::audit::RequestRecord {
        let mut record =
            crate::audit::RequestRecord::new(self.client, method, self.scheme().as_str());
        record.task = Some(self.task.id.clone());
        record.policy = Some(self.policy.name.clone());
        if let Some((host, port)) = &self.tunnel_target {
            record.host.clone_from(host);
            record.port = *port;
        }
        record
    }
}

/// Handles one request from an authenticated connection.
pub async fn handle_request(
    state: &ProxyState,
    conn: &ConnCtx,
    req: Request<RequestBody>,
) -> Response<ProxyBody> {
    let mut record = conn.record(req.method().as_str());
    // Placeholder form: the path and query as the sandbox sent them.
    record.path = req.uri().path().to_string();
    record.query = req.uri().query().map(str::to_string);
    let mut log = Exchange::new(state, record);
    // The task is checked again on every request, not only when its connection
    // was authenticated: a kept-alive connection or an intercepted tunnel must
    // not outlive the task's expiry or revocation. This comes first, as
    // authentication does in the pipeline: an ended task is told so (407) even
    // while the audit trail refuses everything. `is_current` takes no lock
    // unless some task has been revoked.
    let outcome = if !state.tasks.is_current(&conn.task) {
        Err(Refusal::new(
            Reason::ProxyAuthRequired,
            "this task has ended",
        ))
    } else if state.audit.refusing() {
        Err(Refusal::new(
            Reason::AuditUnavailable,
            "the audit trail cannot be written, so tollgate lets nothing through until it can",
        ))
    } else if let Some(policy) = state.policies.current().get(&conn.task.policy) {
        // The policy as loaded now: a reload reaches open tunnels and kept-alive
        // connections at their next request.
        if let Some(slot) = state
            .request_slots
            .try_acquire(&conn.task.id, policy.max_concurrent)
        {
            log.hold(slot);
            decide_and_forward(state, conn, &policy, req, &mut log).await
        } else {
            let mut refusal = Refusal::new(
                Reason::RateLimited,
                format!(
                    "task {} already has {} requests in flight (max_concurrent)",
                    conn.task.id, policy.max_concurrent
                ),
            );
            refusal.retry_after = Some(1);
            Err(refusal)
        }
    } else {
        Err(Refusal::new(
            Reason::NoRule,
            format!("policy {} is no longer loaded", conn.task.policy),
        ))
    };
    match outcome {
        Ok(mut response) => {
            log.record.decision = if log.record.approval.is_some() {
                "approved"
            } else {
                "allow"
            };
            log.record.status = response.status().as_u16();
            let spliced = response
                .extensions_mut()
                .remove::<super::forward::SpliceDone>()
                .and_then(|done| done.take());
            match spliced {
                // A WebSocket: the exchange ends when the splice does.
                Some(done) => {
                    log.answered();
                    state.tracker.spawn(async move {
                        if let Ok((up, down)) = done.await {
                            log.add_up(up);
                            log.add_down(down);
                        }
                        drop(log);
                    });
                    response
                }
                None => log.attach(response),
            }
        }
        Err(refusal) => {
            let refusal = refusal
                .with_task(Some(&conn.task.id))
                .with_rule(log.record.rule.as_deref());
            log.refuse(refusal).await
        }
    }
}

async fn decide_and_forward(
    state: &ProxyState,
    conn: &ConnCtx,
    policy: &Policy,
    req: Request<RequestBody>,
    log: &mut Exchange,
) -> Result<Response<ProxyBody>, Refusal> {
    let scheme = conn.scheme();
    let (host, port) = request_destination(conn, &req)?;
    log.record.host.clone_from(&host);
    log.record.port = port;

    let path = RequestPath::parse(req.uri().path())
        .map_err(|e| Refusal::new(Reason::BadRequest, format!("ambiguous request path: {e}")))?;
    if let Some(header) = super::headers::rerouting_header(req.headers()) {
        return Err(Refusal::new(
            Reason::BadRequest,
            format!("the request carries {header}, which would let the upstream act on another method or path than the one checked"),
        ));
    }

    let facts = RequestFacts {
        scheme,
        host: &host,
        port,
        method: req.method(),
        path: &path,
    };
    let Some(rule) = policy.match_request(&facts) else {
        return Err(Refusal::new(
            Reason::NoRule,
            format!(
                "no rule of policy {} allows {} {}://{}:{}{}",
                policy.name,
                req.method(),
                scheme.as_str(),
                host,
                port,
                req.uri().path()
            ),
        ));
    };
    log.record.rule = Some(rule.name.clone());
    let needs_approval = match rule.action {
        Action::Allow => false,
        Action::Approve => true,
        Action::Deny => {
            return Err(Refusal::new(
                Reason::DeniedByRule,
                format!("rule `{}` denies this request", rule.name),
            ))
        }
    };

    if let Err(limited) = state
        .rate_limits
        .current()
        .check(policy, rule, &conn.task.id)
    {
        let mut refusal = Refusal::new(
            Reason::RateLimited,
            format!(
                "the rate limit of {} is used up; retry in {} s",
                limited.limit, limited.retry_after_secs
            ),
        );
        refusal.retry_after = Some(limited.retry_after_secs);
        return Err(refusal);
    }
    let authority = authority_for(&host, port, scheme);
    let admission = if needs_approval {
        Some(super::approval::admit(state, conn, policy, rule)?)
    } else {
        None
    };
    let checked = check_secrets(policy, rule, &host, scheme, req);
    let (parts, body, permit) = match &admission {
        // An `inject_body` rule reads the body here: within the deadline too.
        Some(super::approval::Admission::Wait(_, _, deadline)) => {
            tokio::time::timeout_at(*deadline, checked)
                .await
                .map_err(|_| super::approval::body_too_slow())??
        }
        _ => checked.await?,
    };
    let body = match admission {
        Some(super::approval::Admission::Granted(verdict)) => {
            log.record.approval = Some(verdict.audit());
            body
        }
        Some(super::approval::Admission::Wait(seat, key, deadline)) => {
            super::approval::await_approval(
                state,
                conn,
                policy,
                rule,
                (seat, key, deadline),
                &parts,
                body,
                log,
            )
            .await?
        }
        None => body,
    };
    let (req, scrubber) = inject_secrets(state, conn, policy, parts, body, permit, log).await?;
    if !state.tasks.is_current(&conn.task) {
        // Ended while this request was on its way (a held one above all).
        return Err(Refusal::new(
            Reason::ProxyAuthRequired,
            "this task has ended",
        ));
    }
    // From here on the request goes upstream: should the client hang up
    // mid-exchange, the record must say it was let through.
    log.record.decision = if log.record.approval.is_some() {
        "approved"
    } else {
        "allow"
    };
    log.record.reason = None;
    let response = state
        .upstream
        .forward(
            req,
            scheme,
            &authority,
            &state.tracker,
            scrubber.clone(),
            (&state.task_ends, &conn.task),
        )
        .await?;
    match scrubber {
        Some(scrubber) => inject::scrub_response(response, scrubber).await,
        None => Ok(response),
    }
}

/// A request body on its way through the pipeline.
#[derive(Debug)]
pub(super) enum PendingBody {
    /// Read whole for an `inject_body` rule (at most 1 MiB).
    Buffered(Vec<u8>),
    /// Not read yet: streamed upstream as it arrives.
    Streamed(RequestBody),
    /// Read whole while its request waited for approval.
    Held(crate::approvals::spool::HeldBody),
}

/// First half of the secrets phase: binds the placeholders the request carries
/// to the rule (403 `secret_not_allowed`), reading the body first when an
/// `inject_body` rule may inject into it. Nothing is fetched yet.
async fn check_secrets<'p>(
    policy: &'p Policy,
    rule: &Rule,
    host: &str,
    scheme: Scheme,
    req: Request<RequestBody>,
) -> Result<(Parts, PendingBody, inject::InjectionPermit<'p>), Refusal> {
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
    let permit = inject::check_request(policy, rule, host, scheme, &parts, buffered)?;
    Ok((parts, body, permit))
}

/// Second half of the secrets phase: fetches the permitted values (503
/// `secret_unavailable`) and substitutes them. Returns the request to forward
/// and, when this task has ever had a secret injected, the scrubber for its
/// response.
async fn inject_secrets(
    state: &ProxyState,
    conn: &ConnCtx,
    policy: &Policy,
    mut parts: Parts,
    body: PendingBody,
    permit: inject::InjectionPermit<'_>,
    log: &mut Exchange,
) -> Result<(Request<ProxyBody>, Option<Arc<Scrubber>>), Refusal> {
    let (mut buffered, rest) = match body {
        PendingBody::Buffered(bytes) => (Some(bytes), None),
        other => (None, Some(other)),
    };
    let mut scrubber = state.injected.scrubber(&conn.task.id);
    if !permit.is_empty() && !state.tasks.is_current(&conn.task) {
        // Its leases are being revoked: fetching now would make one nobody ends.
        return Err(Refusal::new(
            Reason::ProxyAuthRequired,
            "this task has ended",
        ));
    }
    if !permit.is_empty() {
        let mut values = Vec::with_capacity(permit.secrets().len());
        for spec in permit.secrets() {
            let value = state
                .secrets
                .get(&conn.task.id, &policy.name, spec)
                .await
                .map_err(|err| Refusal::new(Reason::SecretUnavailable, err.to_string()))?;
            values.push(value);
        }
        // Every later response to this task is scrubbed of these values too: the
        // upstream may store one and hand it back to a request without placeholders.
        let lasting: Vec<_> = permit
            .secrets()
            .iter()
            .zip(&values)
            .flat_map(|(spec, value)| inject::value_forms(&spec.name.placeholder(), value.expose()))
            .collect();
        scrubber = state.injected.remember(&conn.task.id, lasting);
        let names: Vec<String> = permit
            .secrets()
            .iter()
            .map(|s| s.name.as_str().to_string())
            .collect();
        let rewritten = permit.apply(&mut parts, buffered.as_mut(), &values)?;
        log.record.secrets = names;
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
    let body = match (buffered, rest) {
        (Some(bytes), _) => {
            log.add_up(bytes.len() as u64);
            full_body(bytes)
        }
        (None, Some(PendingBody::Streamed(body))) => log.count_up(stream_body(body)),
        (None, Some(PendingBody::Held(held))) => {
            let body = held
                .into_body()
                .await
                .map_err(|err| Refusal::new(Reason::SpoolUnavailable, err.to_string()))?;
            log.count_up(body)
        }
        _ => empty_body(),
    };
    Ok((Request::from_parts(parts, body), scrubber))
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
