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

/// The rate-limit bucket (GCRA theoretical arrival time, µs) of a task's
/// policy-wide `rate`. Task ids contain no `:`.
pub fn rate_policy(task: &str, policy: &str) -> String {
    format!("tollgate:rate:{task}:{policy}")
}

/// The rate-limit bucket of one rule's `rate` for a task. The rule is named
/// by its `name`, not its place in the file: a reload that adds or moves
/// other rules keeps the bucket (rules that share a name share it).
pub fn rate_rule(task: &str, policy: &str, rule: &str) -> String {
    format!("tollgate:rate-rule:{task}:{policy}:{rule}")
}

/// Sorted set of a task's requests in flight, fleet-wide: members
/// `REPLICA:LEASE`, scored by the lease's expiry (Unix ms, Redis time).
pub fn request_leases(task: &str) -> String {
    format!("tollgate:inflight:{task}")
}

/// Like [`request_leases`], for a task's open tunnels.
pub fn tunnel_leases(task: &str) -> String {
    format!("tollgate:tunnels:{task}")
}

/// Hash of a task's budget use: one field per meter name.
pub fn budget(task: &str) -> String {
    format!("tollgate:budget:{task}")
}
