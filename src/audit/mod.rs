//! The signed, hash-chained audit trail and its sinks.

pub mod record;
pub mod remote;

pub use record::SealedRecord;
