//! Request content rules (DESIGN.md "Request content rules"): pure matchers that
//! look inside a request body, JSON-RPC 2.0 ([`jsonrpc`]) and GraphQL
//! ([`graphql`]), and the filter that narrows `tools/list` answers to the allowed
//! tools, in JSON ([`tools_filter`]) and in `text/event-stream` ([`sse`]).
//!
//! Nothing here does I/O or knows about policies; the request path calls these
//! with a body it has already read (bounded by the caller). Every reader refuses
//! what a different parser upstream could read differently: duplicate JSON keys
//! at any level, and keys that differ from a key we read only in case (some
//! decoders match field names case-insensitively).

pub mod error;
pub mod graphql;
pub mod json;
pub mod jsonrpc;
pub mod sse;
pub mod tools_filter;
