//! API-created tasks, listed for every replica: any replica's admin API can
//! show or end a task another one created. Tokens are never stored; a task is
//! described by its id, policy, expiry and source only.

use super::{keys, Cluster, ClusterUnavailable};
use crate::task_token::now_secs;

/// Lists task `id` (described by `info`, JSON) until `exp`.
pub async fn register(
    cluster: &Cluster,
    id: &str,
    info: &str,
    exp: u64,
) -> Result<(), ClusterUnavailable> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("SET")
        .arg(keys::task(id))
        .arg(info)
        .arg("EXAT")
        .arg(exp)
        .ignore()
        .zadd(keys::TASKS, id, exp)
        .ignore()
        .zrembyscore(keys::TASKS, "-inf", format!("({}", now_secs()))
        .ignore();
    pipe.query_async::<()>(&mut cluster.conn()).await?;
    cluster.answered();
    Ok(())
}

/// The description of task `id`, if it is listed.
pub async fn lookup(cluster: &Cluster, id: &str) -> Result<Option<String>, ClusterUnavailable> {
    let info: Option<String> = redis::cmd("GET")
        .arg(keys::task(id))
        .query_async(&mut cluster.conn())
        .await?;
    cluster.answered();
    Ok(info)
}

/// Every listed task's description.
pub async fn list(cluster: &Cluster) -> Result<Vec<String>, ClusterUnavailable> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys::TASKS)
        .arg(now_secs())
        .arg("+inf")
        .arg("BYSCORE")
        .query_async(&mut cluster.conn())
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| keys::task(id)).collect();
    let infos: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut cluster.conn())
        .await?;
    cluster.answered();
    Ok(infos.into_iter().flatten().collect())
}

/// Takes task `id` off the list (it ended).
pub async fn unlist(cluster: &Cluster, id: &str) -> Result<(), ClusterUnavailable> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .del(keys::task(id))
        .ignore()
        .zrem(keys::TASKS, id)
        .ignore();
    pipe.query_async::<()>(&mut cluster.conn()).await?;
    cluster.answered();
    Ok(())
}
