//! `tollgate policy explain`: the decision the proxy would make for one request,
//! without sending it.

use crate::error::Reason;
use crate::policy::content::MAX_CONTENT_BODY;
use crate::policy::{
    normalize_host, Action, ContentInput, Policy, RequestFacts, RequestPath, Scheme,
};
use http::{Method, Uri};
use std::fmt::Write;

/// The outcome of an explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Human-readable report, one fact per line.
    pub report: String,
    /// Whether the request would be forwarded.
    pub allowed: bool,
}

/// Explains `method url` with `headers` (and `body`, for rules that read it)
/// under `policy`. `Err` is a usage error.
pub fn explain(
    policy: &Policy,
    method: &str,
    url: &str,
    headers: &[String],
    body: Option<&[u8]>,
) -> Result<Explanation, String> {
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let uri: Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        _ => return Err(format!("`{url}` must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    let host = normalize_host(authority.host())
        .ok_or_else(|| format!("`{}` is not a valid host", authority.host()))?;
    let port = authority.port_u16().unwrap_or(scheme.default_port());
    for h in headers {
        if h.split_once(':').is_none() {
            return Err(format!("header `{h}` must be `Name: value`"));
        }
    }

    let mut report = String::new();
    let _ = writeln!(report, "policy: {}", policy.name);
    let _ = writeln!(
        report,
        "request: {method} {}://{host}:{port}{}",
        scheme.as_str(),
        uri.path()
    );
    let refused = |report: &mut String, reason: Reason, why: &str| {
        let _ = writeln!(
            report,
            "decision: refused ({}, {})",
            reason.as_str(),
            reason.status().as_u16()
        );
        let _ = writeln!(report, "why: {why}");
    };
    let path = match RequestPath::parse(uri.path()) {
        Ok(p) => p,
        Err(e) => {
            refused(
                &mut report,
                Reason::BadRequest,
                &format!("ambiguous path: {e}"),
            );
            return Ok(Explanation {
                report,
                allowed: false,
            });
        }
    };
    let facts = RequestFacts {
        scheme,
        host: &host,
        port,
        method: &method,
        path: &path,
    };
    let content_type = headers.iter().find_map(|h| {
        let (name, value) = h.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-type")
            .then_some(value.trim())
    });
    let too_large = body.is_some_and(|b| b.len() > MAX_CONTENT_BODY);
    if too_large && policy.needs_body(&facts) {
        refused(
            &mut report,
            Reason::BadRequest,
            &format!("a rule reads the body, and it is over the {MAX_CONTENT_BODY} byte limit"),
        );
        return Ok(Explanation {
            report,
            allowed: false,
        });
    }
    let input = ContentInput {
        query: uri.query(),
        content_type,
        body,
    };
    let decided = match policy.decide(&facts, &input) {
        Ok(decided) => decided,
        Err(refusal) => {
            let _ = writeln!(report, "rule: {} (reads the body)", refusal.rule);
            refused(&mut report, Reason::BadRequest, &refusal.to_string());
            return Ok(Explanation {
                report,
                allowed: false,
            });
        }
    };
    if let Some(content) = &decided.content {
        let _ = writeln!(report, "content: {}", content.describe());
    } else if body.is_none() && policy.needs_body(&facts) {
        let _ = writeln!(
            report,
            "content: none given (a rule reads the body: pass it with --data)"
        );
    }
    let Some(rule) = decided.rule else {
        let _ = writeln!(report, "rule: none");
        refused(
            &mut report,
            Reason::NoRule,
            "no rule matches (default deny)",
        );
        return Ok(Explanation {
            report,
            allowed: false,
        });
    };
    let line = rule
        .line
        .map(|l| format!(" (line {l})"))
        .unwrap_or_default();
    let _ = writeln!(report, "rule: {}{line}", rule.name);
    match rule.action {
        Action::Deny => {
            refused(
                &mut report,
                Reason::DeniedByRule,
                "the rule's action is deny",
            );
            return Ok(Explanation {
                report,
                allowed: false,
            });
        }
        Action::Approve => {
            let _ = writeln!(
                report,
                "decision: approve (held for an operator, up to {:?})",
                rule.approval_timeout
            );
        }
        Action::Allow => {
            let _ = writeln!(report, "decision: allow");
        }
    }
    let injectable: Vec<&str> = policy
        .injectable_secrets(rule, &host)
        .map(|n| n.as_str())
        .collect();
    let plaintext_blocked = scheme == Scheme::Http && !rule.allow_plaintext;
    let carried = policy
        .secrets
        .keys()
        .filter(|name| {
            let placeholder = name.placeholder();
            url.contains(&placeholder) || headers.iter().any(|h| h.contains(&placeholder))
        })
        .collect::<Vec<_>>();
    for name in &carried {
        if !injectable.contains(&name.as_str()) || plaintext_blocked {
            let _ = writeln!(report, "inject: -");
            refused(
                &mut report,
                Reason::SecretNotAllowed,
                &format!("the request carries __{name}__, which this rule may not inject here"),
            );
            return Ok(Explanation {
                report,
                allowed: false,
            });
        }
    }
    let shown: Vec<String> = if plaintext_blocked {
        Vec::new()
    } else {
        injectable
            .iter()
            .map(|name| {
                let source = policy
                    .secrets
                    .iter()
                    .find(|(n, _)| n.as_str() == *name)
                    .map(|(_, spec)| spec.source.describe())
                    .unwrap_or_default();
                format!("{name} ({source})")
            })
            .collect()
    };
    let _ = writeln!(
        report,
        "inject: {}",
        if shown.is_empty() {
            "-".to_string()
        } else {
            shown.join(", ")
        }
    );
    Ok(Explanation {
        report,
        allowed: rule.action == Action::Allow,
    })
}
