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
//! The body is read as strictly as [`super::json::parse_strict`] reads (in one
//! pass that keeps only the fields looked at): duplicate keys
//! anywhere, and keys of a message or of `tools/call` params that differ from
//! the keys read here only in case, are errors, so the matcher and the upstream
//! cannot see two different messages.

use super::error::{excerpt, ContentError};
use super::json::{
    case_variant, case_variant_error, child_depth, forward_scalars, KeySeed, Keys, Shape, Skip,
};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

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
    if body.len() > MAX_BODY {
        return Err(ContentError::new(format!(
            "JSON body is larger than {MAX_BODY} bytes"
        )));
    }
    // One pass that checks the whole body as strictly as `parse_strict`
    // (grammar, duplicate keys, depth) but keeps only the fields read below;
    // what they mean is checked after, so the errors come in the same order.
    let mut keys = Keys::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let raw = BodySeed { keys: &mut keys }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| ContentError::new(format!("invalid JSON: {e}")))?;
    let (batch, messages) = match raw {
        Raw::Batch(items) if items.is_empty() => {
            return Err(ContentError::new("JSON-RPC: empty batch"))
        }
        Raw::Batch(items) => (
            true,
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    read_message(item).map_err(|e| {
                        ContentError::new(format!("JSON-RPC batch item {i}: {}", e.message()))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Raw::Single(item) => (false, vec![read_message(item)?]),
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

fn read_message(raw: Option<RawMessage<'_>>) -> Result<RpcMessage, ContentError> {
    let Some(message) = raw else {
        return Err(ContentError::new("JSON-RPC: a message must be an object"));
    };
    if let Some(error) = message.case_variant {
        return Err(error);
    }
    match &message.jsonrpc {
        Some(Shape::Str(v)) if v == "2.0" => {}
        Some(_) => return Err(ContentError::new("JSON-RPC: \"jsonrpc\" must be \"2.0\"")),
        None => {
            return Err(ContentError::new(
                "JSON-RPC: \"jsonrpc\": \"2.0\" is missing",
            ))
        }
    }
    let id = &message.id;
    if !matches!(id, None | Some(Shape::Str(_) | Shape::Number | Shape::Null)) {
        return Err(ContentError::new(
            "JSON-RPC: \"id\" must be a string, a number or null",
        ));
    }
    let answer = message.result || message.error;
    let Some(method) = message.method else {
        if message.result && message.error {
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
    let Shape::Str(method) = method else {
        return Err(ContentError::new("JSON-RPC: \"method\" must be a string"));
    };
    if answer {
        return Err(ContentError::new(
            "JSON-RPC: a message has both \"method\" and \"result\" or \"error\"",
        ));
    }
    let has_params = message.params.is_some();
    let params = match message.params {
        None => None,
        Some(p) if p.shape == Shape::Object => Some(p),
        Some(p) if p.shape == Shape::Array => None,
        Some(_) => {
            return Err(ContentError::new(
                "JSON-RPC: \"params\" must be an object or an array",
            ))
        }
    };
    let tool = if method == "tools/call" {
        Some(tool_name(params, has_params)?)
    } else {
        None
    };
    Ok(RpcMessage {
        kind: if id.is_some() {
            MessageKind::Request
        } else {
            MessageKind::Notification
        },
        method: Some(method.into_owned()),
        tool,
    })
}

fn tool_name(params: Option<RawParams<'_>>, has_params: bool) -> Result<String, ContentError> {
    let Some(params) = params else {
        return Err(ContentError::new(if has_params {
            "JSON-RPC: tools/call \"params\" must be an object"
        } else {
            "JSON-RPC: tools/call without \"params\""
        }));
    };
    if let Some(error) = params.case_variant {
        return Err(error);
    }
    match params.name {
        Some(Shape::Str(name)) => Ok(name.into_owned()),
        Some(_) => Err(ContentError::new(
            "JSON-RPC: tools/call \"params.name\" must be a string",
        )),
        None => Err(ContentError::new(
            "JSON-RPC: tools/call without \"params.name\"",
        )),
    }
}

/// A body as the first pass read it: each message, or `None` for a batch
/// item or body that is not an object.
enum Raw<'de> {
    Single(Option<RawMessage<'de>>),
    Batch(Vec<Option<RawMessage<'de>>>),
}

/// The fields of one message that [`read_message`] looks at.
#[derive(Default)]
struct RawMessage<'de> {
    /// The first key that differs from one of [`MESSAGE_KEYS`] only in case.
    case_variant: Option<ContentError>,
    jsonrpc: Option<Shape<'de>>,
    id: Option<Shape<'de>>,
    method: Option<Shape<'de>>,
    params: Option<RawParams<'de>>,
    result: bool,
    error: bool,
}

/// `params`: its shape and, for an object, `name`.
struct RawParams<'de> {
    shape: Shape<'de>,
    /// The first key that differs from `name` only in case.
    case_variant: Option<ContentError>,
    name: Option<Shape<'de>>,
}

struct BodySeed<'k, 'de> {
    keys: &'k mut Keys<'de>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_, 'de> {
    type Value = Raw<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_, 'de> {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message or batch")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(MessageSeed {
            keys: &mut *self.keys,
            depth: 1,
        })? {
            items.push(item);
        }
        Ok(Raw::Batch(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        message_from_map(map, self.keys, 0).map(|m| Raw::Single(Some(m)))
    }

    forward_scalars!(Raw::Single(None));
}

/// One message (an object) or a batch item that is something else (`None`).
struct MessageSeed<'k, 'de> {
    keys: &'k mut Keys<'de>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_, 'de> {
    type Value = Option<RawMessage<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_, 'de> {
    type Value = Option<RawMessage<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip {
            keys: self.keys,
            depth: self.depth,
        }
        .visit_seq(seq)
        .map(|_| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        message_from_map(map, self.keys, self.depth).map(Some)
    }

    forward_scalars!(None);
}

fn message_from_map<'de, A: MapAccess<'de>>(
    mut map: A,
    keys: &mut Keys<'de>,
    depth: usize,
) -> Result<RawMessage<'de>, A::Error> {
    let mut message = RawMessage::default();
    let start = keys.begin();
    while let Some(key) = map.next_key_seed(KeySeed)? {
        let slot = match &*key {
            "jsonrpc" => Some(&mut message.jsonrpc),
            "id" => Some(&mut message.id),
            "method" => Some(&mut message.method),
            "result" => {
                message.result = true;
                None
            }
            "error" => {
                message.error = true;
                None
            }
            "params" => None,
            other => {
                if message.case_variant.is_none() {
                    message.case_variant = case_variant(other, &MESSAGE_KEYS)
                        .map(|name| case_variant_error(other, name, "JSON-RPC message"));
                }
                None
            }
        };
        let is_params = key == "params";
        keys.add(start, key)?;
        let depth = child_depth(depth)?;
        if is_params {
            message.params = Some(map.next_value_seed(ParamsSeed {
                keys: &mut *keys,
                depth,
            })?);
            continue;
        }
        let shape = map.next_value_seed(Skip {
            keys: &mut *keys,
            depth,
        })?;
        if let Some(slot) = slot {
            *slot = Some(shape);
        }
    }
    keys.end(start)?;
    Ok(message)
}

struct ParamsSeed<'k, 'de> {
    keys: &'k mut Keys<'de>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ParamsSeed<'_, 'de> {
    type Value = RawParams<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed<'_, 'de> {
    type Value = RawParams<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON-RPC params")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let shape = Skip {
            keys: self.keys,
            depth: self.depth,
        }
        .visit_seq(seq)?;
        Ok(RawParams {
            shape,
            case_variant: None,
            name: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut params = RawParams {
            shape: Shape::Object,
            case_variant: None,
            name: None,
        };
        let start = self.keys.begin();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let is_name = key == "name";
            if !is_name && params.case_variant.is_none() {
                params.case_variant = case_variant(&key, &["name"])
                    .map(|name| case_variant_error(&key, name, "tools/call params"));
            }
            self.keys.add(start, key)?;
            let shape = map.next_value_seed(Skip {
                depth: child_depth(self.depth)?,
                keys: &mut *self.keys,
            })?;
            if is_name {
                params.name = Some(shape);
            }
        }
        self.keys.end(start)?;
        Ok(params)
    }

    forward_scalars!(RawParams {
        shape: Shape::Null,
        case_variant: None,
        name: None,
    });
}

#[cfg(test)]
mod tests;
