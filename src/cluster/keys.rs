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

/// Sorted set of pending holds, every replica's, scored by the end of their
/// lease (Unix milliseconds); the holding replica renews it.
pub const HOLDS: &str = "tollgate:holds";
/// Channel carrying operators' answers to the replica holding the request
/// (JSON, [`crate::cluster::holds::AnswerMessage`]).
pub const ANSWER_CHANNEL: &str = "tollgate:answers";
/// Sorted set of the digests of live grants ([`grant`]), scored by their end
/// (Unix milliseconds): what a (re)connecting replica reads to catch up.
pub const GRANTS: &str = "tollgate:grants";
/// Channel announcing a `--for` grant to every replica (JSON).
pub const GRANT_CHANNEL: &str = "tollgate:grant-announcements";

/// What is shown of hold `id`, and which replica holds it (JSON).
pub fn hold(id: &str) -> String {
    format!("tollgate:hold:{id}")
}

/// Where the holding replica leaves the outcome of a forwarded answer for the
/// replica that took it (`reply` is that answer's random nonce).
pub fn answer_result(reply: &str) -> String {
    format!("tollgate:answer:{reply}")
}

/// A live `--for` grant; `digest` is the hex SHA-256 of task, policy and
/// rule key (so no id can be read as part of another).
pub fn grant(digest: &str) -> String {
    format!("tollgate:grant:{digest}")
}

/// The lock one replica holds while it mints secret `name` for `scope`
/// (`t` + task id or `p` + policy).
pub fn mint_lock(scope: &str, name: &str) -> String {
    format!(
        "tollgate:mint:{}:{name}",
        crate::text::hex(scope.as_bytes())
    )
}
