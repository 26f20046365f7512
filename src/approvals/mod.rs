//! Human approval gates: requests under an `action: approve` rule wait here until
//! an operator approves or denies them (admin API, `tollgate approvals`), their
//! rule's `approval_timeout` passes, their task ends or their client hangs up.
//!
//! The registry ([`Approvals`]) only keeps the pending holds and the `--for`
//! grants; the request itself waits in the proxy pipeline on its [`Ticket`], and
//! its body waits in a [`spool::HeldBody`]. [`api`] holds what the admin API and
//! the webhook ([`notify`]) say about holds.

pub mod api;
pub mod notify;
mod registry;
pub mod spool;
pub mod text;

pub use crate::audit::event::ApprovalOutcome;
pub use api::{Answer, AnswerError, Decided, GrantView, HoldDetail, HoldView, RequestSummary};
pub use registry::{
    Approvals, GrantRecord, HoldError, HoldRequest, Seat, Ticket, Verdict, MAX_GRANT,
    MAX_NOTICES_PER_MINUTE,
};
