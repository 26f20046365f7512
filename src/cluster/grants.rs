//! `--for` grants across replicas. The replica that applies an approval with
//! a window stores the grant in Redis, expiring with it ([`keys::grant`]),
//! and announces it on [`keys::GRANT_CHANNEL`]. Every replica looks it up
//! before holding a request ([`lookup`]), and adopts announced grants into
//! its own registry, which releases its own pending holds the grant covers.

use super::{keys, Cluster, ClusterUnavailable};
use serde::{Deserialize, Serialize};

/// A grant as every replica sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedGrant {
    /// Task id.
    pub task: String,
    /// Policy name.
    pub policy: String,
    /// The rule key ([`crate::proxy::approval::rule_key`]) or budget key.
    pub rule_key: String,
    /// Grant id.
    pub id: String,
    /// The hold whose approval made it.
    pub hold: String,
    /// Who approved.
    pub by: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// When it lapses (Unix milliseconds).
    pub until_ms: u64,
}

/// The Redis key of the grant for `task`'s requests under `rule_key` of `policy`.
fn key(task: &str, policy: &str, rule_key: &str) -> String {
    let joined = [task, policy, rule_key].join("\0");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, joined.as_bytes());
    keys::grant(&crate::text::hex(digest.as_ref()))
}

/// Stores `grant` until it lapses and tells every replica.
pub async fn share(cluster: &Cluster, grant: &SharedGrant) -> Result<(), ClusterUnavailable> {
    let left = grant.until_ms.saturating_sub(super::holds::now_ms());
    if left == 0 {
        return Ok(());
    }
    let text = serde_json::to_string(grant).map_err(|e| ClusterUnavailable(e.to_string()))?;
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("SET")
        .arg(key(&grant.task, &grant.policy, &grant.rule_key))
        .arg(&text)
        .arg("PX")
        .arg(left)
        .ignore()
        .publish(keys::GRANT_CHANNEL, &text)
        .ignore();
    pipe.query_async::<()>(&mut cluster.conn()).await?;
    cluster.answered();
    Ok(())
}

/// The live grant for `task`'s requests under `rule_key` of `policy`, if any.
pub async fn lookup(
    cluster: &Cluster,
    task: &str,
    policy: &str,
    rule_key: &str,
) -> Result<Option<SharedGrant>, ClusterUnavailable> {
    let text: Option<String> = redis::cmd("GET")
        .arg(key(task, policy, rule_key))
        .query_async(&mut cluster.conn())
        .await?;
    cluster.answered();
    let grant = text.and_then(|t| serde_json::from_str::<SharedGrant>(&t).ok());
    // SECURITY: the digest names the key, but a grant is honoured only for
    // exactly what it says, and not past its end whatever Redis's clock does.
    Ok(grant.filter(|g| {
        g.task == task
            && g.policy == policy
            && g.rule_key == rule_key
            && g.until_ms > super::holds::now_ms()
    }))
}

/// Reads an announced grant; `None` for anything else.
pub fn parse(payload: &str) -> Option<SharedGrant> {
    serde_json::from_str(payload).ok()
}
