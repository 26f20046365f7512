//! `--for` grants across replicas. The replica that applies an approval with
//! a window stores the grant in Redis, expiring with it ([`keys::grant`]),
//! and announces it on [`keys::GRANT_CHANNEL`]. Every replica looks it up
//! before holding a request ([`lookup`]), and adopts announced grants into
//! its own registry, which releases its own pending holds the grant covers
//! and lets the budget check (which asks the registry) see grants lifting a
//! budget; on every (re)connection it adopts the live ones ([`current`]).

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

/// What names the grant for `task`'s requests under `rule_key` of `policy`.
fn digest(task: &str, policy: &str, rule_key: &str) -> String {
    let joined = [task, policy, rule_key].join("\0");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, joined.as_bytes());
    crate::text::hex(digest.as_ref())
}

/// The Redis key of the grant for `task`'s requests under `rule_key` of `policy`.
fn key(task: &str, policy: &str, rule_key: &str) -> String {
    keys::grant(&digest(task, policy, rule_key))
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
        .zadd(
            keys::GRANTS,
            digest(&grant.task, &grant.policy, &grant.rule_key),
            grant.until_ms,
        )
        .ignore()
        .zrembyscore(keys::GRANTS, "-inf", format!("({}", super::holds::now_ms()))
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

/// Every live grant, for a replica catching up on announcements it missed.
pub async fn current(cluster: &Cluster) -> Result<Vec<SharedGrant>, ClusterUnavailable> {
    let now = super::holds::now_ms();
    let digests: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys::GRANTS)
        .arg(now)
        .arg("+inf")
        .arg("BYSCORE")
        .query_async(&mut cluster.conn())
        .await?;
    cluster.answered();
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = digests.iter().map(|d| keys::grant(d)).collect();
    let texts: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&names)
        .query_async(&mut cluster.conn())
        .await?;
    Ok(texts
        .into_iter()
        .flatten()
        .filter_map(|text| parse(&text))
        .filter(|g| g.until_ms > now)
        .collect())
}

/// Reads an announced grant; `None` for anything else.
pub fn parse(payload: &str) -> Option<SharedGrant> {
    serde_json::from_str(payload).ok()
}
