//! The policy decision of one request: its path read strictly, no header that
//! would make the upstream act on another method or path, then the first rule
//! of the policy that matches method, scheme, host, port and path.

use super::context::RequestCtx;
use super::destination::Target;
use super::headers::rerouting_header;
use crate::body::RequestBody;
use crate::error::{Reason, Refusal};
use crate::policy::{Action, Policy, RequestFacts, RequestPath, Rule};
use http::Request;

/// The rule that lets `req` through (`allow`) or holds it (`approve`); a
/// `deny` rule or no rule is a refusal. The rule's name goes into the record.
pub fn matching_rule<'p>(
    ctx: &mut RequestCtx<'_>,
    policy: &'p Policy,
    target: &Target,
    req: &Request<RequestBody>,
) -> Result<&'p Rule, Refusal> {
    let path = RequestPath::parse(req.uri().path())
        .map_err(|e| Refusal::new(Reason::BadRequest, format!("ambiguous request path: {e}")))?;
    if let Some(header) = rerouting_header(req.headers()) {
        return Err(Refusal::new(
            Reason::BadRequest,
            format!("the request carries {header}, which would let the upstream act on another method or path than the one checked"),
        ));
    }
    let facts = RequestFacts {
        scheme: target.scheme,
        host: &target.host,
        port: target.port,
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
                target.scheme.as_str(),
                target.host,
                target.port,
                req.uri().path()
            ),
        ));
    };
    ctx.log.record.rule = Some(rule.name.clone());
    match rule.action {
        Action::Allow | Action::Approve => Ok(rule),
        Action::Deny => Err(Refusal::new(
            Reason::DeniedByRule,
            format!("rule `{}` denies this request", rule.name),
        )),
    }
}
