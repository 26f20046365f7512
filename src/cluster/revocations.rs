//! Revocations across replicas. The deny-list in Redis (a sorted set of task
//! ids scored by their tokens' expiry) is the source of truth; a message on
//! [`keys::REVOKE_CHANNEL`] tells every replica at once. A replica that
//! (re)connects reads the whole list before it serves again.

use super::{keys, Cluster, ClusterUnavailable};
use crate::task_token::now_secs;

/// Records that task `id` (whose token expires at `exp`) has ended, and tells
/// every replica.
pub async fn publish(cluster: &Cluster, id: &str, exp: u64) -> Result<(), ClusterUnavailable> {
    let now = now_secs();
    let mut pipe = redis::pipe();
    pipe.atomic()
        .zadd(keys::REVOKED, id, exp)
        .ignore()
        // Tokens that expired are refused by their expiry; forget them.
        .zrembyscore(keys::REVOKED, "-inf", format!("({now}"))
        .ignore()
        .publish(keys::REVOKE_CHANNEL, message(id, exp))
        .ignore();
    pipe.query_async::<()>(&mut cluster.conn()).await?;
    cluster.answered();
    Ok(())
}

/// Every revocation whose token has not yet expired: `(id, exp)`.
pub async fn current(cluster: &Cluster) -> Result<Vec<(String, u64)>, ClusterUnavailable> {
    let now = now_secs();
    let listed: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg(keys::REVOKED)
        .arg(now)
        .arg("+inf")
        .arg("BYSCORE")
        .arg("WITHSCORES")
        .query_async(&mut cluster.conn())
        .await?;
    cluster.answered();
    Ok(listed)
}

/// Puts back into the deny-list the revocations this replica knows of
/// (`(id, exp)`), for a Redis that lost them (restarted without its data):
/// a replica that starts later must still refuse those tasks.
pub async fn restore(cluster: &Cluster, known: &[(String, u64)]) -> Result<(), ClusterUnavailable> {
    if known.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (id, exp) in known {
        pipe.cmd("ZADD")
            .arg(keys::REVOKED)
            .arg("NX")
            .arg(*exp)
            .arg(id)
            .ignore();
    }
    pipe.query_async::<()>(&mut cluster.conn()).await?;
    cluster.answered();
    Ok(())
}

/// The announcement of a revocation.
pub fn message(id: &str, exp: u64) -> String {
    format!("{id} {exp}")
}

/// Reads an announcement; `None` for anything else.
pub fn parse(payload: &str) -> Option<(&str, u64)> {
    let (id, exp) = payload.split_once(' ')?;
    if id.is_empty() || id.contains(char::is_whitespace) {
        return None;
    }
    Some((id, exp.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_junk_is_ignored() {
        assert_eq!(parse(&message("t-1", 42)), Some(("t-1", 42)));
        for junk in ["", "t-1", "t-1 x", " 5", "a b 5", "t-1 -1"] {
            assert_eq!(parse(junk), None, "{junk:?}");
        }
    }
}
