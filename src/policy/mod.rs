//! Policies: which requests a task may make, and which secrets they may carry.
//!
//! `wire` parses files, `model` holds validated types, `load` turns one into the
//! other, `matcher` decides. Nothing here does I/O on the request path.

pub mod budgets;
pub mod content;
pub mod content_rule;
pub mod host;
pub mod load;
pub mod matcher;
pub mod minted;
pub mod model;
pub mod path;
pub mod wire;

pub use content::{ContentInput, ContentRule, ContentSummary, Decided};
pub use host::normalize_host;
pub use load::{load_policy_dir, load_policy_file, parse_policy, LoadReport, PolicySet};
pub use matcher::{ConnectDecision, RequestFacts};
pub use model::{Action, LlmMetering, OnExceed, Policy, Rule, Scheme, DEFAULT_MAX_CONCURRENT};
pub use path::{PathError, RequestPath};
