//! The sealed line of a request record, serialized straight from the record.
//!
//! RFC 8785 sorts an object's keys. [`Line`] declares its fields in that order,
//! so `serde_json` writes them sorted without building a `Value` map first; for
//! the rest (string escapes, integers below 2^53) plain `serde_json` output is
//! already canonical for these records, as [`super::chain::canonical_own`]
//! explains. [`super::chain::Sealer::seal_request`] takes this path only while
//! that holds, and [`request_object`] otherwise.

use super::event::{ApprovalInfo, ApprovalOutcome, GraphQlInfo, LlmInfo, RequestRecord, RpcInfo};
use super::key::SigningKey;
use crate::text::{rfc3339_millis, Millis};
use serde::Serialize;
use serde_json::{Map, Value};

/// What sealing adds to a request record, besides `sig`.
pub struct Seal<'a> {
    /// The record's `seq`.
    pub seq: u64,
    /// The signing key's id.
    pub key_id: &'a str,
    /// Hex SHA-256 of the record before.
    pub prev: &'a str,
}

/// Writes the sealed line of `record` to `out` (replacing what it held). With
/// `sign`, the line carries a `sig` over the line without it.
pub fn write_request_line(
    record: &RequestRecord,
    seal: &Seal<'_>,
    sign: Option<&SigningKey>,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let ts = Millis::new(record.at);
    let mut line = line(record, seal, ts.as_str());
    out.clear();
    serde_json::to_writer(&mut *out, &line)?;
    if let Some(key) = sign {
        let sig = key.sign_b64(out);
        line.sig = Some(&sig);
        out.clear();
        serde_json::to_writer(&mut *out, &line)?;
    }
    Ok(())
}

/// The JSON object of a request record before sealing: the general path, for
/// when plain `serde_json` output is not canonical.
pub fn request_object(record: &RequestRecord) -> Map<String, Value> {
    let mut map = match serde_json::to_value(record) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    map.insert("v".into(), Value::from(1));
    map.insert("type".into(), Value::from("request"));
    map.insert("ts".into(), Value::from(rfc3339_millis(record.at)));
    map
}

/// A sealed request record, fields in canonical (sorted) key order. `D` is
/// whatever type `RequestRecord::decision` has: it serializes as itself.
#[derive(Serialize)]
struct Line<'a, D> {
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<Approval<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<&'a str>,
    bytes_down: u64,
    bytes_up: u64,
    client: &'a str,
    decision: &'a D,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    graphql: Option<GraphQl<'a>>,
    host: &'a str,
    key_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    llm: Option<Llm<'a>>,
    method: &'a str,
    path: &'a str,
    policy: Option<&'a str>,
    port: u16,
    prev: &'a str,
    query: Option<&'a str>,
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc: Option<Rpc<'a>>,
    rule: Option<&'a str>,
    scheme: &'a str,
    secrets: &'a [String],
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sig: Option<&'a str>,
    status: u16,
    task: Option<&'a str>,
    ts: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    v: u8,
}

/// [`ApprovalInfo`], fields in canonical order.
#[derive(Serialize)]
struct Approval<'a> {
    by: Option<&'a str>,
    grant: Option<&'a str>,
    id: Option<&'a str>,
    outcome: ApprovalOutcome,
    reason: Option<&'a str>,
}

/// [`RpcInfo`], fields in canonical order.
#[derive(Serialize)]
struct Rpc<'a> {
    method: Option<&'a str>,
    tool: Option<&'a str>,
}

/// [`GraphQlInfo`], fields in canonical order.
#[derive(Serialize)]
struct GraphQl<'a> {
    name: Option<&'a str>,
    operation: &'a str,
}

/// [`LlmInfo`], fields in canonical order.
#[derive(Serialize)]
struct Llm<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a str>,
}

/// The line of `record`; its `decision` type is the record's.
fn line<'a>(record: &'a RequestRecord, seal: &Seal<'a>, ts: &'a str) -> Line<'a, impl Serialize> {
    // Every field named, so that a field added to the record does not compile
    // until it is added here too.
    let RequestRecord {
        at: _,
        task,
        policy,
        client,
        method,
        scheme,
        host,
        port,
        path,
        query,
        decision,
        rule,
        reason,
        secrets,
        status,
        bytes_up,
        bytes_down,
        duration_ms,
        approval,
        rpc,
        graphql,
        llm,
        budget,
    } = record;
    Line {
        approval: approval.as_ref().map(Approval::new),
        budget: *budget,
        bytes_down: *bytes_down,
        bytes_up: *bytes_up,
        client,
        decision,
        duration_ms: *duration_ms,
        graphql: graphql
            .as_ref()
            .map(|GraphQlInfo { operation, name }| GraphQl {
                name: name.as_deref(),
                operation,
            }),
        host,
        key_id: seal.key_id,
        llm: llm.as_ref().map(
            |LlmInfo {
                 model,
                 input_tokens,
                 output_tokens,
                 usage,
             }| Llm {
                input_tokens: *input_tokens,
                model: model.as_deref(),
                output_tokens: *output_tokens,
                usage: *usage,
            },
        ),
        method,
        path,
        policy: policy.as_deref(),
        port: *port,
        prev: seal.prev,
        query: query.as_deref(),
        reason: *reason,
        rpc: rpc.as_ref().map(|RpcInfo { method, tool }| Rpc {
            method: method.as_deref(),
            tool: tool.as_deref(),
        }),
        rule: rule.as_deref(),
        scheme,
        secrets,
        seq: seal.seq,
        sig: None,
        status: *status,
        task: task.as_deref(),
        ts,
        kind: "request",
        v: 1,
    }
}

impl<'a> Approval<'a> {
    fn new(approval: &'a ApprovalInfo) -> Self {
        let ApprovalInfo {
            id,
            outcome,
            by,
            reason,
            grant,
        } = approval;
        Self {
            by: by.as_deref(),
            grant: grant.as_deref(),
            id: id.as_deref(),
            outcome: *outcome,
            reason: reason.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests;
