//! GraphQL requests as sent (POST JSON or the GET query string) and the
//! `graphql` rule.
//!
//! The document is parsed with `apollo-parser` (maintained by Apollo,
//! spec-compliant, hand-written lexer, built-in recursion and token limits); the
//! operation checked is the one `operationName` names, or the only one. A
//! persisted query (`extensions.persistedQuery` without `query`) has no
//! document to check and never matches.

use super::error::{excerpt, ContentError};
use super::json::{parse_strict, refuse_case_variants};
use apollo_parser::{cst, Parser};
use percent_encoding::percent_decode;
use serde_json::{Map, Value};

/// Largest request body or document read.
pub const MAX_DOCUMENT: usize = 1 << 20;
/// Deepest nesting the parser follows.
pub const MAX_DEPTH: usize = 64;
/// Most tokens in a document.
pub const MAX_TOKENS: usize = 200_000;
/// Most definitions (operations and fragments) in a document.
pub const MAX_DEFINITIONS: usize = 1_000;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// `query`, and the anonymous shorthand `{ ... }`.
    Query,
    /// `mutation`.
    Mutation,
    /// `subscription`.
    Subscription,
}

impl OperationKind {
    /// The keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Mutation => "mutation",
            Self::Subscription => "subscription",
        }
    }
}

/// A `graphql` rule: the operation kinds allowed and, when given, the only
/// operation names allowed (an anonymous operation then never matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphQlRule {
    /// Allowed kinds.
    pub operations: Vec<OperationKind>,
    /// When given, the allowed operation names.
    pub names: Option<Vec<String>>,
}

/// A GraphQL request as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphQlRequest {
    /// The document, unless the request is a persisted query.
    pub query: Option<String>,
    /// `operationName`.
    pub operation_name: Option<String>,
}

/// The checked operation, for the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphQlSummary {
    /// Its kind.
    pub operation: OperationKind,
    /// Its name, if it has one.
    pub name: Option<String>,
}

/// Reads a POST body: `{"query": DOC, "operationName": NAME?, "variables": ...}`.
pub fn request_from_json(body: &[u8]) -> Result<GraphQlRequest, ContentError> {
    let value = parse_strict(body, MAX_DOCUMENT)?;
    let object = match value {
        Value::Object(o) => o,
        Value::Array(_) => {
            return Err(ContentError::new(
                "batched GraphQL requests are not supported",
            ))
        }
        _ => return Err(ContentError::new("a GraphQL request must be a JSON object")),
    };
    refuse_case_variants(
        &object,
        &["query", "operationName", "variables", "extensions"],
        "GraphQL request",
    )?;
    let query = optional_string(&object, "query")?;
    let operation_name = optional_string(&object, "operationName")?;
    let persisted = match object.get("extensions") {
        Some(Value::Object(ext)) => ext.contains_key("persistedQuery"),
        _ => false,
    };
    finish(query, operation_name, persisted)
}

/// Reads the GET form from a raw (still percent-encoded) query string:
/// `query=...&operationName=...`. A parameter given twice is an error.
pub fn request_from_query(raw: &str) -> Result<GraphQlRequest, ContentError> {
    let (mut query, mut operation_name, mut extensions) = (None, None, None);
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name)?;
        let slot = match name.as_str() {
            "query" => &mut query,
            "operationName" => &mut operation_name,
            "extensions" => &mut extensions,
            _ => continue,
        };
        if slot.is_some() {
            return Err(ContentError::new(format!(
                "GraphQL GET: parameter {name} is given twice"
            )));
        }
        *slot = Some(decode(value)?);
    }
    let persisted = match &extensions {
        Some(text) => match parse_strict(text.as_bytes(), MAX_DOCUMENT)? {
            Value::Object(ext) => ext.contains_key("persistedQuery"),
            _ => false,
        },
        None => false,
    };
    finish(query, operation_name, persisted)
}

fn decode(text: &str) -> Result<String, ContentError> {
    let plus = text.replace('+', " ");
    percent_decode(plus.as_bytes())
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ContentError::new("GraphQL GET: a parameter is not UTF-8"))
}

fn optional_string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, ContentError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ContentError::new(format!(
            "GraphQL: \"{key}\" must be a string"
        ))),
    }
}

fn finish(
    query: Option<String>,
    operation_name: Option<String>,
    persisted: bool,
) -> Result<GraphQlRequest, ContentError> {
    if operation_name.as_deref() == Some("") {
        return Err(ContentError::new("GraphQL: \"operationName\" is empty"));
    }
    if query.is_none() && !persisted {
        return Err(ContentError::new("GraphQL: no \"query\""));
    }
    Ok(GraphQlRequest {
        query,
        operation_name,
    })
}

/// Checks `request` against `rule`: `Ok(Some(_))` when its operation matches,
/// `Ok(None)` when it does not or is a persisted query, `Err` when the document
/// cannot be read or does not pick one operation.
pub fn matches(
    rule: &GraphQlRule,
    request: &GraphQlRequest,
) -> Result<Option<GraphQlSummary>, ContentError> {
    let Some(summary) = operation(request)? else {
        return Ok(None);
    };
    let kind_ok = rule.operations.contains(&summary.operation);
    let name_ok = match (&rule.names, &summary.name) {
        (None, _) => true,
        (Some(names), Some(name)) => names.contains(name),
        (Some(_), None) => false,
    };
    Ok((kind_ok && name_ok).then_some(summary))
}

/// The operation `request` runs; `None` for a persisted query.
pub fn operation(request: &GraphQlRequest) -> Result<Option<GraphQlSummary>, ContentError> {
    let Some(document) = &request.query else {
        return Ok(None);
    };
    if document.len() > MAX_DOCUMENT {
        return Err(ContentError::new(format!(
            "GraphQL document is larger than {MAX_DOCUMENT} bytes"
        )));
    }
    let operations = match scan::operations(document, MAX_TOKENS, MAX_DEPTH, MAX_DEFINITIONS) {
        Some(operations) => operations,
        None => operations_by_parse(document)?,
    };
    pick(operations, request.operation_name.as_deref()).map(Some)
}

/// The operations of `document` from apollo-parser's full parse: the
/// authority, and the only path that reports errors.
fn operations_by_parse(document: &str) -> Result<Vec<GraphQlSummary>, ContentError> {
    let tree = Parser::new(document)
        .recursion_limit(MAX_DEPTH)
        .token_limit(MAX_TOKENS)
        .parse();
    if let Some(error) = tree.errors().next() {
        let (line, col) = line_col(document, error.index());
        return Err(ContentError::new(format!(
            "GraphQL document, {line}:{col}: {}",
            excerpt(error.message(), 120)
        )));
    }
    let mut operations = Vec::new();
    for (count, definition) in tree.document().definitions().enumerate() {
        if count >= MAX_DEFINITIONS {
            return Err(ContentError::new(format!(
                "GraphQL document has more than {MAX_DEFINITIONS} definitions"
            )));
        }
        if let cst::Definition::OperationDefinition(op) = definition {
            operations.push(summarize(&op));
        }
    }
    Ok(operations)
}

/// The operation that `operation_name` names, or the only one.
fn pick(
    mut operations: Vec<GraphQlSummary>,
    operation_name: Option<&str>,
) -> Result<GraphQlSummary, ContentError> {
    let chosen = match operation_name {
        Some(wanted) => {
            let mut named = operations
                .into_iter()
                .filter(|o| o.name.as_deref() == Some(wanted));
            let first = named.next().ok_or_else(|| {
                ContentError::new(format!(
                    "GraphQL: operationName {:?} names no operation of the document",
                    excerpt(wanted, 60)
                ))
            })?;
            if named.next().is_some() {
                return Err(ContentError::new(format!(
                    "GraphQL: several operations are named {:?}",
                    excerpt(wanted, 60)
                )));
            }
            first
        }
        None => {
            if operations.len() > 1 {
                return Err(ContentError::new(
                    "GraphQL: the document has several operations and no operationName",
                ));
            }
            operations
                .pop()
                .ok_or_else(|| ContentError::new("GraphQL: the document has no operation"))?
        }
    };
    Ok(chosen)
}

fn summarize(op: &cst::OperationDefinition) -> GraphQlSummary {
    let operation = match op.operation_type() {
        Some(t) if t.mutation_token().is_some() => OperationKind::Mutation,
        Some(t) if t.subscription_token().is_some() => OperationKind::Subscription,
        _ => OperationKind::Query,
    };
    GraphQlSummary {
        operation,
        name: op.name().map(|n| n.text().to_string()),
    }
}

/// 1-based line and column (in characters) of byte `index`.
fn line_col(text: &str, index: usize) -> (usize, usize) {
    let before = text.get(..index.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

mod scan;
#[cfg(test)]
mod tests;
