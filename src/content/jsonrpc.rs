//! JSON-RPC 2.0 request bodies (MCP over HTTP) and the `jsonrpc` rule.
//!
//! A body is one message or a non-empty batch (array) of messages; every
//! message must carry `"jsonrpc": "2.0"`. A message is a request (`method` and
//! `id`), a notification (`method`, no `id`) or a response the client sends
//! (`result` or `error`, and `id`, no `method`).
//!
//! A rule matches a body when every message of it matches: a request or a
//! notification when one of the rule's method patterns matches its method, and,
//! for `tools/call` with a `tools` list, when `params.name` is listed. Client
//! responses (answers to the server's sampling, roots or elicitation requests)
//! carry no method; they match only a rule whose `methods` list holds the
//! pseudo-pattern `responses`. An empty `methods` list matches nothing. (So a
//! real method literally named `responses` cannot be allowed by name.)
//!
//! The body is read strictly ([`super::json::parse_strict`]): duplicate keys
//! anywhere, and keys of a message or of `tools/call` params that differ from
//! the keys read here only in case, are errors, so the matcher and the upstream
//! cannot see two different messages.

use super::error::{excerpt, ContentError};
use super::json::{parse_strict, refuse_case_variants};
use serde_json::{Map, Value};

/// Largest request body read.
pub const MAX_BODY: usize = 1 << 20;

/// The pseudo-pattern that lets client-sent responses through.
pub const RESPONSES: &str = "responses";

/// One entry of a rule's `methods`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodPattern {
    /// This method name exactly.
    Exact(String),
    /// `prefix/*`: the prefix with its `/` (held here), then one or more characters.
    Prefix(String),
    /// [`RESPONSES`]: responses the client sends to the server's requests.
    Responses,
}

impl MethodPattern {
    /// Reads a pattern as written in a policy: a method name, `prefix/*`, or
    /// `responses`.
    pub fn parse(text: &str) -> Result<Self, ContentError> {
        if text == RESPONSES {
            return Ok(Self::Responses);
        }
        if let Some(prefix) = text.strip_suffix("/*") {
            if !prefix.is_empty() && !prefix.contains('*') {
                return Ok(Self::Prefix(format!("{prefix}/")));
            }
        } else if !text.is_empty() && !text.contains('*') {
            return Ok(Self::Exact(text.to_owned()));
        }
        Err(ContentError::new(format!(
            "method pattern {:?}: expected a method name or prefix/* (a `*` only as a whole last segment)",
            excerpt(text, 60)
        )))
    }

    fn matches_method(&self, method: &str) -> bool {
        match self {
            Self::Exact(name) => name == method,
            Self::Prefix(prefix) => method.len() > prefix.len() && method.starts_with(prefix),
            Self::Responses => false,
        }
    }
}

/// A `jsonrpc` rule: the methods allowed and, when given, the tools `tools/call`
/// may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRpcRule {
    /// Allowed methods; see [`MethodPattern`].
    pub methods: Vec<MethodPattern>,
    /// When given, the only tool names a `tools/call` may carry.
    pub tools: Option<Vec<String>>,
}

impl JsonRpcRule {
    /// Whether every message of a body read by [`read`] matches this rule.
    pub fn accepts(&self, summary: &RpcSummary) -> bool {
        summary.messages.iter().all(|m| self.allows(m))
    }

    fn allows(&self, message: &RpcMessage) -> bool {
        match &message.method {
            None => self.methods.contains(&MethodPattern::Responses),
            Some(method) => {
                self.methods.iter().any(|p| p.matches_method(method))
                    && match (&self.tools, &message.tool) {
                        (Some(tools), Some(tool)) => tools.contains(tool),
                        _ => true,
                    }
            }
        }
    }
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `method` and `id`.
    Request,
    /// `method`, no `id`.
    Notification,
    /// `result` or `error`, and `id`, sent by the client.
    Response,
}

/// One message as the matcher read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcMessage {
    /// Request, notification or response.
    pub kind: MessageKind,
    /// The method; `None` for a response.
    pub method: Option<String>,
    /// For `tools/call`, `params.name`.
    pub tool: Option<String>,
}

/// What the audit record carries about a matched body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcSummary {
    /// The method of the first message that has one.
    pub method: Option<String>,
    /// The tool of that message, for `tools/call`.
    pub tool: Option<String>,
    /// Whether the body was a batch.
    pub batch: bool,
    /// Every message, in order.
    pub messages: Vec<RpcMessage>,
}

/// Reads `body` and checks it against `rule`: `Ok(Some(_))` when every message
/// matches, `Ok(None)` when the body is valid JSON-RPC 2.0 but does not match,
/// `Err` when it is not valid JSON-RPC 2.0 (or larger than [`MAX_BODY`]).
pub fn matches(rule: &JsonRpcRule, body: &[u8]) -> Result<Option<RpcSummary>, ContentError> {
    let summary = read(body)?;
    Ok(rule.accepts(&summary).then_some(summary))
}

/// Reads `body` as JSON-RPC 2.0, without a rule.
pub fn read(body: &[u8]) -> Result<RpcSummary, ContentError> {
    let value = parse_strict(body, MAX_BODY)?;
    let (batch, messages) = match &value {
        Value::Array(items) if items.is_empty() => {
            return Err(ContentError::new("JSON-RPC: empty batch"))
        }
        Value::Array(items) => (
            true,
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    read_message(item).map_err(|e| {
                        ContentError::new(format!("JSON-RPC batch item {i}: {}", e.message()))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        single => (false, vec![read_message(single)?]),
    };
    let first = messages.iter().find(|m| m.method.is_some());
    Ok(RpcSummary {
        method: first.and_then(|m| m.method.clone()),
        tool: first.and_then(|m| m.tool.clone()),
        batch,
        messages,
    })
}

const MESSAGE_KEYS: [&str; 6] = ["jsonrpc", "method", "id", "params", "result", "error"];

fn read_message(value: &Value) -> Result<RpcMessage, ContentError> {
    let Value::Object(message) = value else {
        return Err(ContentError::new("JSON-RPC: a message must be an object"));
    };
    refuse_case_variants(message, &MESSAGE_KEYS, "JSON-RPC message")?;
    match message.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => return Err(ContentError::new("JSON-RPC: \"jsonrpc\" must be \"2.0\"")),
        None => {
            return Err(ContentError::new(
                "JSON-RPC: \"jsonrpc\": \"2.0\" is missing",
            ))
        }
    }
    let id = message.get("id");
    if !matches!(
        id,
        None | Some(Value::String(_) | Value::Number(_) | Value::Null)
    ) {
        return Err(ContentError::new(
            "JSON-RPC: \"id\" must be a string, a number or null",
        ));
    }
    let answer = message.contains_key("result") || message.contains_key("error");
    let Some(method) = message.get("method") else {
        if message.contains_key("result") && message.contains_key("error") {
            return Err(ContentError::new(
                "JSON-RPC: a response has both \"result\" and \"error\"",
            ));
        }
        if !answer {
            return Err(ContentError::new(
                "JSON-RPC: a message needs \"method\", or \"result\" or \"error\"",
            ));
        }
        if id.is_none() {
            return Err(ContentError::new("JSON-RPC: a response needs an \"id\""));
        }
        return Ok(RpcMessage {
            kind: MessageKind::Response,
            method: None,
            tool: None,
        });
    };
    let Value::String(method) = method else {
        return Err(ContentError::new("JSON-RPC: \"method\" must be a string"));
    };
    if answer {
        return Err(ContentError::new(
            "JSON-RPC: a message has both \"method\" and \"result\" or \"error\"",
        ));
    }
    let params = match message.get("params") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        Some(Value::Array(_)) => None,
        Some(_) => {
            return Err(ContentError::new(
                "JSON-RPC: \"params\" must be an object or an array",
            ))
        }
    };
    let tool = if method == "tools/call" {
        Some(tool_name(params, message)?)
    } else {
        None
    };
    Ok(RpcMessage {
        kind: if id.is_some() {
            MessageKind::Request
        } else {
            MessageKind::Notification
        },
        method: Some(method.clone()),
        tool,
    })
}

fn tool_name(
    params: Option<&Map<String, Value>>,
    message: &Map<String, Value>,
) -> Result<String, ContentError> {
    let Some(params) = params else {
        return Err(ContentError::new(if message.contains_key("params") {
            "JSON-RPC: tools/call \"params\" must be an object"
        } else {
            "JSON-RPC: tools/call without \"params\""
        }));
    };
    refuse_case_variants(params, &["name"], "tools/call params")?;
    match params.get("name") {
        Some(Value::String(name)) => Ok(name.clone()),
        Some(_) => Err(ContentError::new(
            "JSON-RPC: tools/call \"params.name\" must be a string",
        )),
        None => Err(ContentError::new(
            "JSON-RPC: tools/call without \"params.name\"",
        )),
    }
}

#[cfg(test)]
mod tests;
