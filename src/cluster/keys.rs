//! The names of everything tollgate keeps in Redis, in one place.
//!
//! Every key starts with `tollgate:`; a fleet that shares a Redis server with
//! another one picks its own database number in `cluster.redis`.

/// Sorted set of revoked task ids, scored by the expiry of their tokens.
pub const REVOKED: &str = "tollgate:revoked";
/// Channel announcing a revocation: `ID EXPIRY`.
pub const REVOKE_CHANNEL: &str = "tollgate:revocations";
/// Sorted set of live API-created tasks, scored by expiry.
pub const TASKS: &str = "tollgate:tasks";

/// The description of one API-created task (JSON).
pub fn task(id: &str) -> String {
    format!("tollgate:task:{id}")
}
