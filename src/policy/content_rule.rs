//! The `jsonrpc` / `graphql` part of a rule, as loaded; matching is in
//! [`super::content`].

use crate::content::graphql::GraphQlRule;
use crate::content::jsonrpc::JsonRpcRule;
use http::Method;

/// What a rule reads inside the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentRule {
    /// JSON-RPC 2.0 (MCP over HTTP).
    JsonRpc(JsonRpcRule),
    /// GraphQL, POST JSON (or `application/graphql`) and the GET form.
    GraphQl(GraphQlRule),
}

impl ContentRule {
    /// The tools a `tools/list` answer through this rule is narrowed to.
    pub fn allowed_tools(&self) -> Option<&[String]> {
        match self {
            ContentRule::JsonRpc(rule) => rule.tools.as_deref(),
            ContentRule::GraphQl(_) => None,
        }
    }

    /// Whether a request with `method` is matched on its body (else on its
    /// query string: the GraphQL GET form).
    pub fn reads_body(&self, method: &Method) -> bool {
        match self {
            ContentRule::JsonRpc(_) => true,
            ContentRule::GraphQl(_) => !is_query_form(method),
        }
    }
}

/// The GraphQL GET form: `GET /graphql?query=...` (and HEAD alike).
pub fn is_query_form(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}
