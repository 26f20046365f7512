//! GraphQL requests as sent (POST JSON or the GET query string) and the
//! `graphql` rule.
//!
//! The document is parsed with `apollo-parser` (maintained by Apollo,
//! spec-compliant, hand-written lexer, built-in recursion and token limits); the
//! operation checked is the one `operationName` names, or the only one. A
//! persisted query (`extensions.persistedQuery` without `query`) has no
//! document to check and never matches.

use super::error::{excerpt, ContentError};
use super::json::{
    case_variant, case_variant_error, child_depth, forward_scalars, parse_strict, KeySeed, Keys,
    Shape, Skip,
};
use apollo_parser::{cst, Parser};
use percent_encoding::percent_decode;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

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
    if body.len() > MAX_DOCUMENT {
        return Err(ContentError::new(format!(
            "JSON body is larger than {MAX_DOCUMENT} bytes"
        )));
    }
    // One pass as strict as `parse_strict` that keeps only the fields read.
    let mut keys = Keys::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let raw = RequestSeed { keys: &mut keys }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| ContentError::new(format!("invalid JSON: {e}")))?;
    let raw = match raw {
        RawBody::Object(raw) => raw,
        RawBody::Array => {
            return Err(ContentError::new(
                "batched GraphQL requests are not supported",
            ))
        }
        RawBody::Other => return Err(ContentError::new("a GraphQL request must be a JSON object")),
    };
    if let Some(error) = raw.case_variant {
        return Err(error);
    }
    let query = optional_string(raw.query, "query")?;
    let operation_name = optional_string(raw.operation_name, "operationName")?;
    finish(query, operation_name, raw.persisted)
}

const REQUEST_KEYS: [&str; 4] = ["query", "operationName", "variables", "extensions"];

enum RawBody<'de> {
    Object(RawRequest<'de>),
    Array,
    Other,
}

#[derive(Default)]
struct RawRequest<'de> {
    /// The first key that differs from one of [`REQUEST_KEYS`] only in case.
    case_variant: Option<ContentError>,
    query: Option<Shape<'de>>,
    operation_name: Option<Shape<'de>>,
    /// `extensions` is an object with a `persistedQuery`.
    persisted: bool,
}

struct RequestSeed<'k, 'de> {
    keys: &'k mut Keys<'de>,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_, 'de> {
    type Value = RawBody<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_, 'de> {
    type Value = RawBody<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GraphQL request")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip {
            keys: self.keys,
            depth: 0,
        }
        .visit_seq(seq)
        .map(|_| RawBody::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawRequest::default();
        let start = self.keys.begin();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let field = REQUEST_KEYS.iter().position(|k| *k == key);
            if field.is_none() && raw.case_variant.is_none() {
                raw.case_variant = case_variant(&key, &REQUEST_KEYS)
                    .map(|name| case_variant_error(&key, name, "GraphQL request"));
            }
            self.keys.add(start, key)?;
            let depth = child_depth(0)?;
            if field == Some(3) {
                raw.persisted = map.next_value_seed(ExtensionsSeed {
                    keys: &mut *self.keys,
                    depth,
                })?;
                continue;
            }
            let shape = map.next_value_seed(Skip {
                keys: &mut *self.keys,
                depth,
            })?;
            match field {
                Some(0) => raw.query = Some(shape),
                Some(1) => raw.operation_name = Some(shape),
                _ => {}
            }
        }
        self.keys.end(start)?;
        Ok(RawBody::Object(raw))
    }

    forward_scalars!(RawBody::Other);
}

/// `extensions`: whether it is an object with a `persistedQuery` key.
struct ExtensionsSeed<'k, 'de> {
    keys: &'k mut Keys<'de>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ExtensionsSeed<'_, 'de> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ExtensionsSeed<'_, 'de> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GraphQL extensions")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip {
            keys: self.keys,
            depth: self.depth,
        }
        .visit_seq(seq)
        .map(|_| false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut persisted = false;
        let start = self.keys.begin();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            persisted |= key == "persistedQuery";
            self.keys.add(start, key)?;
            map.next_value_seed(Skip {
                depth: child_depth(self.depth)?,
                keys: &mut *self.keys,
            })?;
        }
        self.keys.end(start)?;
        Ok(persisted)
    }

    forward_scalars!(false);
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

fn optional_string(value: Option<Shape<'_>>, key: &str) -> Result<Option<String>, ContentError> {
    match value {
        None | Some(Shape::Null) => Ok(None),
        Some(Shape::Str(s)) => Ok(Some(s.into_owned())),
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
    Ok(rule.accepts(&summary).then_some(summary))
}

impl GraphQlRule {
    /// Whether this rule allows the operation [`operation`] picked.
    pub fn accepts(&self, summary: &GraphQlSummary) -> bool {
        let kind_ok = self.operations.contains(&summary.operation);
        let name_ok = match (&self.names, &summary.name) {
            (None, _) => true,
            (Some(names), Some(name)) => names.contains(name),
            (Some(_), None) => false,
        };
        kind_ok && name_ok
    }
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
    let operations = match scan_operations(document) {
        Some(operations) => operations,
        None => operations_by_parse(document)?,
    };
    pick(operations, request.operation_name.as_deref()).map(Some)
}

/// The operations of `document` from the fast path, when it vouches for them.
pub(crate) fn scan_operations(document: &str) -> Option<Vec<GraphQlSummary>> {
    let scanned = scan::operations(document, MAX_TOKENS, MAX_DEPTH, MAX_DEFINITIONS)?;
    Some(
        scanned
            .into_iter()
            .map(|op| GraphQlSummary {
                operation: match op.keyword {
                    Some("mutation") => OperationKind::Mutation,
                    Some("subscription") => OperationKind::Subscription,
                    _ => OperationKind::Query,
                },
                name: op.name.map(str::to_owned),
            })
            .collect(),
    )
}

/// The operations of `document` from apollo-parser's full parse: the
/// authority, and the only path that reports errors.
pub(crate) fn operations_by_parse(document: &str) -> Result<Vec<GraphQlSummary>, ContentError> {
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
