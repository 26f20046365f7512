//! Fuzz target `content`: request bodies and answer streams read by
//! [`crate::content`]. The first byte picks the reader (mod 4), the rest is its
//! input:
//! - 0: a JSON-RPC body ([`jsonrpc::matches`]);
//! - 1: a GraphQL POST body ([`graphql::request_from_json`], then [`graphql::matches`]);
//! - 2: a GraphQL GET query string ([`graphql::request_from_query`]);
//! - 3: an SSE stream through [`SseToolsFilter`], whole and cut in three.
//!
//! Invariants: never a panic; a matched JSON-RPC body has one message per
//! batch item and names only the allowed tool; whenever the GraphQL fast path
//! answers, apollo-parser's full parse finds the same operations; the SSE
//! output does not depend on how the input is cut.

use crate::content::graphql::{self, GraphQlRule, OperationKind};
use crate::content::jsonrpc::{self, JsonRpcRule, MethodPattern};
use crate::content::sse::SseToolsFilter;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => rpc(rest),
        1 => {
            if let Ok(request) = graphql::request_from_json(rest) {
                fast_path_agrees(&request);
                let _ = graphql::matches(&reads(), &request);
            }
        }
        2 => {
            if let Ok(request) = graphql::request_from_query(&String::from_utf8_lossy(rest)) {
                fast_path_agrees(&request);
                let _ = graphql::matches(&reads(), &request);
            }
        }
        _ => sse(rest),
    }
}

/// Whenever the GraphQL fast path answers, the full parse agrees.
fn fast_path_agrees(request: &graphql::GraphQlRequest) {
    let Some(document) = &request.query else {
        return;
    };
    if let Some(fast) = graphql::scan_operations(document) {
        assert_eq!(Ok(fast), graphql::operations_by_parse(document));
    }
}

fn reads() -> GraphQlRule {
    GraphQlRule {
        operations: vec![OperationKind::Query],
        names: None,
    }
}

fn rpc(body: &[u8]) {
    let rule = JsonRpcRule {
        methods: vec![
            MethodPattern::Exact("tools/call".into()),
            MethodPattern::Prefix("notifications/".into()),
            MethodPattern::Responses,
        ],
        tools: Some(vec!["get_file".into()]),
    };
    if let Ok(Some(summary)) = jsonrpc::matches(&rule, body) {
        assert!(!summary.messages.is_empty());
        assert!(summary
            .messages
            .iter()
            .all(|m| m.tool.is_none() || m.tool.as_deref() == Some("get_file")));
    }
}

fn sse(stream: &[u8]) {
    let allowed = vec!["get_file".to_owned()];
    let mut whole = SseToolsFilter::with_max_event(allowed.clone(), 512);
    let mut one = whole.push(stream);
    one.extend(whole.finish());
    let a = stream.len() / 3;
    let b = stream.len() * 2 / 3;
    let mut cut = SseToolsFilter::with_max_event(allowed, 512);
    let mut two = cut.push(&stream[..a]);
    two.extend(cut.push(&stream[a..b]));
    two.extend(cut.push(&stream[b..]));
    two.extend(cut.finish());
    assert_eq!(one, two, "the output depends on how the input is cut");
}
