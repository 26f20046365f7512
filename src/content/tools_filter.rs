//! Narrowing a `tools/list` answer to the allowed tools.
//!
//! Fail-closed: a body that starts like JSON (an object or an array, after an
//! optional byte order mark and whitespace) but cannot be read strictly
//! (duplicate keys, too deep, too large, a case variant of a key read here,
//! syntax a lenient client might still accept) is replaced by a JSON-RPC error,
//! since a client could still find an unfiltered tool list in it.

use super::json::{looks_like_container, parse_strict, refuse_case_variants};
use serde_json::{json, Value};

/// Largest answer body read; a larger JSON answer is replaced.
pub const MAX_RESPONSE: usize = 4 << 20;

/// What to send instead of `body`, a JSON-RPC answer (or a batch of them):
/// `None` when `body` is not JSON-like or holds no `result.tools` list (send
/// it as is); otherwise the answer written again with only the tools whose
/// `name` is in `allowed` (keys may come out in another order), or a JSON-RPC
/// error when the body could not be read safely.
pub fn filter_tools_list(body: &[u8], allowed: &[String]) -> Option<Vec<u8>> {
    if !looks_like_container(body) {
        return None;
    }
    let outcome = parse_strict(body, MAX_RESPONSE).and_then(|mut value| {
        let found = match &mut value {
            Value::Array(items) => {
                let mut found = false;
                for item in items {
                    found |= filter_message(item, allowed)?;
                }
                found
            }
            one => filter_message(one, allowed)?,
        };
        Ok(found.then_some(value))
    });
    match outcome {
        Ok(None) => None,
        Ok(Some(value)) => serde_json::to_vec(&value).ok().or_else(|| Some(refusal())),
        Err(_) => Some(refusal()),
    }
}

/// The JSON-RPC error that replaces an answer that could not be read safely.
pub fn refusal() -> Vec<u8> {
    let error = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32603, "message": "tollgate: a tools/list answer could not be read safely and was withheld"}
    });
    error.to_string().into_bytes()
}

/// Filters `result.tools` of one message in place; whether it had such a list.
fn filter_message(
    message: &mut Value,
    allowed: &[String],
) -> Result<bool, super::error::ContentError> {
    let Value::Object(message) = message else {
        return Ok(false);
    };
    refuse_case_variants(message, &["result"], "JSON-RPC answer")?;
    let Some(Value::Object(result)) = message.get_mut("result") else {
        return Ok(false);
    };
    refuse_case_variants(result, &["tools"], "JSON-RPC result")?;
    let Some(Value::Array(tools)) = result.get_mut("tools") else {
        return Ok(false);
    };
    tools.retain(|tool| is_allowed(tool, allowed));
    Ok(true)
}

fn is_allowed(tool: &Value, allowed: &[String]) -> bool {
    let Value::Object(tool) = tool else {
        return false;
    };
    if refuse_case_variants(tool, &["name"], "tool").is_err() {
        return false;
    }
    matches!(tool.get("name"), Some(Value::String(name)) if allowed.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["get_file".into(), "search_issues".into()]
    }

    fn tools_of(out: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(out).unwrap();
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn keeps_only_allowed_tools() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get_file","inputSchema":{"type":"object"}},{"name":"delete_repo"},{"name":"search_issues"},"junk",{"title":"no name"}],"nextCursor":"c"}}"#;
        let out = filter_tools_list(body, &allowed()).unwrap();
        assert_eq!(tools_of(&out), ["get_file", "search_issues"]);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["nextCursor"], "c");
        assert_eq!(v["id"], 1);
        assert_eq!(v["result"]["tools"][0]["inputSchema"]["type"], "object");
    }

    #[test]
    fn batches_are_filtered_item_by_item() {
        let body = br#"[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"x"},{"name":"get_file"}]}}]"#;
        let out = filter_tools_list(body, &allowed()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[1]["result"]["tools"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn other_bodies_pass() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":"none"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#,
            b"<html>bad gateway</html>",
            b"",
            b"42",
        ] {
            assert_eq!(filter_tools_list(body, &allowed()), None);
        }
    }

    #[test]
    fn unsafe_bodies_are_withheld() {
        for body in [
            // duplicate result: which one a client reads depends on its parser
            &br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[{"name":"x"}]}}"#
                [..],
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"Result":{"tools":[{"name":"x"}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"Tools":[{"name":"x"}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x","y":NaN}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x"}]}} trailing"#,
            b"\xEF\xBB\xBF{\"result\":{\"tools\":[{\"name\":\"x\"}]}}",
        ] {
            assert_eq!(filter_tools_list(body, &allowed()), Some(refusal()));
        }
    }

    #[test]
    fn a_tool_with_a_second_name_is_dropped() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get_file","Name":"delete_repo"},{"name":"get_file","NAME":"x"}]}}"#;
        let out = filter_tools_list(body, &allowed()).unwrap();
        assert!(tools_of(&out).is_empty());
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get_file","name":"delete_repo"}]}}"#;
        assert_eq!(filter_tools_list(body, &allowed()), Some(refusal()));
    }
}
