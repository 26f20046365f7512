//! Rules that look inside the request (DESIGN.md "Request content rules"): a
//! rule with `jsonrpc` or `graphql` matches only when the body (or, for a
//! GraphQL GET, the query string) matches too; otherwise the next rule is
//! tried. What cannot be read as the rule's protocol is an error (400).
//!
//! The protocol readers are in [`crate::content`]; this module decides which
//! rule governs a request given what they read, reading each protocol at most
//! once however many rules ask.

use super::content_rule::is_query_form;
pub use super::content_rule::ContentRule;
use super::matcher::RequestFacts;
use super::model::{Policy, Rule};
use crate::content::error::ContentError;
use crate::content::graphql::{self, GraphQlRequest, GraphQlSummary};
use crate::content::jsonrpc::{self, RpcSummary};
use http::Method;

/// Largest body read for a content rule; a larger one is 400.
pub const MAX_CONTENT_BODY: usize = jsonrpc::MAX_BODY;

/// What content rules are matched against, besides the [`RequestFacts`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ContentInput<'a> {
    /// The raw (percent-encoded) query string, if any.
    pub query: Option<&'a str>,
    /// The request's Content-Type, if any.
    pub content_type: Option<&'a str>,
    /// The request body, when it was read (see [`Policy::needs_body`]).
    pub body: Option<&'a [u8]>,
}

/// What was read inside a request, for the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSummary {
    /// A JSON-RPC body.
    Rpc(RpcSummary),
    /// A GraphQL operation.
    GraphQl(GraphQlSummary),
}

impl ContentSummary {
    /// What was read, in a few words: `JSON-RPC tools/call (tool add)`,
    /// `JSON-RPC batch: initialize, tools/call (tool rm)`, `GraphQL mutation M`.
    /// Names are cut short: they come from the sandbox.
    pub fn describe(&self) -> String {
        let cut = |s: &str| crate::content::error::excerpt(s, 60);
        match self {
            ContentSummary::Rpc(rpc) => {
                let calls: Vec<String> = rpc
                    .messages
                    .iter()
                    .take(8)
                    .map(|m| match (&m.method, &m.tool) {
                        (Some(method), Some(tool)) => {
                            format!("{} (tool {})", cut(method), cut(tool))
                        }
                        (Some(method), None) => cut(method),
                        (None, _) => "a response".into(),
                    })
                    .collect();
                let more = if rpc.messages.len() > calls.len() {
                    ", …"
                } else {
                    ""
                };
                let batch = if rpc.batch { "batch: " } else { "" };
                format!("JSON-RPC {batch}{}{more}", calls.join(", "))
            }
            ContentSummary::GraphQl(op) => format!(
                "GraphQL {}{}",
                op.operation.as_str(),
                op.name
                    .as_deref()
                    .map(|n| format!(" {}", cut(n)))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The outcome of matching a request against a policy's rules.
#[derive(Debug)]
pub struct Decided<'p> {
    /// The rule that decides; `None`: default deny.
    pub rule: Option<&'p Rule>,
    /// What content rules read of the request (also when none matched).
    pub content: Option<ContentSummary>,
}

/// A request a content rule could not read: 400 `bad_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRefusal {
    /// The rule that tried to read it.
    pub rule: String,
    /// What was wrong.
    pub error: ContentError,
}

impl std::fmt::Display for ContentRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule `{}` reads the request: {}", self.rule, self.error)
    }
}

/// Each protocol read once, on first use.
#[derive(Default)]
struct Reads {
    rpc: Option<RpcSummary>,
    graphql: Option<Option<GraphQlSummary>>,
}

impl Policy {
    /// Whether matching this request may need its body: a content rule that
    /// reads the body comes before the first plain rule that matches.
    pub fn needs_body(&self, facts: &RequestFacts<'_>) -> bool {
        if self.rules.iter().all(|r| r.content.is_none()) {
            return false;
        }
        for rule in self.rules.iter().filter(|r| r.matches(facts)) {
            match &rule.content {
                None => return false,
                Some(content) if content.reads_body(facts.method) => return true,
                Some(_) => {}
            }
        }
        false
    }

    /// The first rule that matches the request, content rules included (default
    /// deny when none does); an error when a content rule on the way cannot read
    /// the request.
    pub fn decide(
        &self,
        facts: &RequestFacts<'_>,
        input: &ContentInput<'_>,
    ) -> Result<Decided<'_>, ContentRefusal> {
        let mut reads = Reads::default();
        for rule in self.rules.iter().filter(|r| r.matches(facts)) {
            let Some(content) = &rule.content else {
                return Ok(Decided {
                    rule: Some(rule),
                    content: reads.summary(),
                });
            };
            let matched = reads
                .matches(content, facts.method, input)
                .map_err(|error| ContentRefusal {
                    rule: rule.name.clone(),
                    error,
                })?;
            if matched {
                return Ok(Decided {
                    rule: Some(rule),
                    content: reads.summary(),
                });
            }
        }
        Ok(Decided {
            rule: None,
            content: reads.summary(),
        })
    }
}

impl Reads {
    fn matches(
        &mut self,
        content: &ContentRule,
        method: &Method,
        input: &ContentInput<'_>,
    ) -> Result<bool, ContentError> {
        match content {
            ContentRule::JsonRpc(rule) => {
                let body = match input.body {
                    Some(body) if !body.is_empty() => body,
                    // No body, no JSON-RPC message: not this rule's request.
                    _ => return Ok(false),
                };
                if self.rpc.is_none() {
                    self.rpc = Some(jsonrpc::read(body)?);
                }
                Ok(self.rpc.as_ref().is_some_and(|s| rule.accepts(s)))
            }
            ContentRule::GraphQl(rule) => {
                if self.graphql.is_none() {
                    self.graphql = Some(match graphql_request(method, input)? {
                        Some(request) => graphql::operation(&request)?,
                        None => None,
                    });
                }
                Ok(matches!(&self.graphql, Some(Some(s)) if rule.accepts(s)))
            }
        }
    }

    fn summary(self) -> Option<ContentSummary> {
        match (self.rpc, self.graphql) {
            (Some(rpc), _) => Some(ContentSummary::Rpc(rpc)),
            (None, Some(Some(op))) => Some(ContentSummary::GraphQl(op)),
            _ => None,
        }
    }
}

/// The GraphQL request carried by the query string (GET) or the body (POST:
/// JSON, or the bare document under `application/graphql`); `None` when there
/// is none (an empty body).
fn graphql_request(
    method: &Method,
    input: &ContentInput<'_>,
) -> Result<Option<GraphQlRequest>, ContentError> {
    let query = input.query.unwrap_or("");
    if is_query_form(method) {
        return graphql::request_from_query(query).map(Some);
    }
    // SECURITY: some servers take `query` from the URL when the body lacks it;
    // a document in both places could be checked in one and run from the other.
    let in_url = query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        matches!(&*name, "query" | "operationName" | "extensions")
    });
    if in_url {
        return Err(ContentError::new(
            "GraphQL: a POST carries query, operationName or extensions in its URL; send them in the body only",
        ));
    }
    let body = match input.body {
        Some(body) if !body.is_empty() => body,
        _ => return Ok(None),
    };
    let mime = input
        .content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    if mime.as_deref() == Some("application/graphql") {
        let document = std::str::from_utf8(body)
            .map_err(|_| ContentError::new("GraphQL: the document is not UTF-8"))?;
        return Ok(Some(GraphQlRequest {
            query: Some(document.to_owned()),
            operation_name: None,
        }));
    }
    graphql::request_from_json(body).map(Some)
}

#[cfg(test)]
mod tests;
