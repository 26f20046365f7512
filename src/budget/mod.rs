//! Budgets: what one task may use over its life (requests, bytes each way,
//! LLM tokens and spend) and what it has used. This part is not wired into
//! policies or the request path yet (issue 16).
//!
//! `ledger` keeps the accounts behind one small interface; `size` reads byte
//! sizes as policies write them.

pub mod ledger;
pub mod size;
