//! Budgets: what one task may use over its life (requests, bytes each way,
//! LLM tokens and spend) and what it has used.
//!
//! `ledger` keeps the accounts behind one small interface (the request path
//! checks and charges requests and bytes through it); `size` reads byte sizes
//! as policies write them; `usage` reads LLM token usage from providers'
//! responses and prices it (not wired into the request path yet).

pub mod ledger;
pub mod size;
pub mod usage;
