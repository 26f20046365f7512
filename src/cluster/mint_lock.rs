//! Single flight of minting across replicas: one replica at a time mints a
//! given task's (or policy's) secret. The lock is a Redis key set with
//! `NX PX` to a random owner token, released only by its owner (compare and
//! delete in one script), and expiring by itself should the owner die. The
//! minted value is never written to Redis: a replica that waited mints its
//! own copy once the lock is free.

use super::{keys, Cluster, ClusterUnavailable};
use std::sync::Arc;
use std::time::Duration;

/// How long a lock lasts if its owner never releases it.
pub const LOCK_TTL: Duration = Duration::from_secs(10);
/// Longest wait for the lock (a little more than one lock's life).
pub const MAX_WAIT: Duration = Duration::from_secs(12);
/// Pause between attempts while another replica holds the lock.
const RETRY_EVERY: Duration = Duration::from_millis(25);

/// Deletes the lock only if it is still the caller's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Redis did not answer.
    #[error(transparent)]
    Unavailable(#[from] ClusterUnavailable),
    /// Another replica held it for longer than [`MAX_WAIT`].
    #[error("another replica held the minting lock for more than {}s", MAX_WAIT.as_secs())]
    Busy,
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct MintLock {
    cluster: Arc<Cluster>,
    key: String,
    owner: String,
}

/// Takes the lock for minting `name` for `scope`, waiting (bounded) while
/// another replica holds it.
pub async fn acquire(
    cluster: &Arc<Cluster>,
    scope: &str,
    name: &str,
) -> Result<MintLock, LockError> {
    let key = keys::mint_lock(scope, name);
    let mut owner = [0u8; 16];
    aws_lc_rs::rand::fill(&mut owner)
        .map_err(|_| ClusterUnavailable("random bytes unavailable".into()))?;
    let owner = format!("{}:{}", cluster.replica(), crate::text::hex(&owner));
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    loop {
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&owner)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.as_millis() as u64)
            .query_async(&mut cluster.conn())
            .await
            .map_err(ClusterUnavailable::from)?;
        cluster.answered();
        if taken.is_some() {
            return Ok(MintLock {
                cluster: cluster.clone(),
                key,
                owner,
            });
        }
        if tokio::time::Instant::now() + RETRY_EVERY > deadline {
            return Err(LockError::Busy);
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

impl MintLock {
    /// Releases the lock now (if it is still ours).
    pub async fn release(mut self) {
        let key = std::mem::take(&mut self.key);
        release(&self.cluster, &key, &self.owner).await;
    }
}

async fn release(cluster: &Cluster, key: &str, owner: &str) {
    let released: Result<i64, _> = redis::Script::new(RELEASE)
        .key(key)
        .arg(owner)
        .invoke_async(&mut cluster.conn())
        .await;
    if let Err(err) = released {
        // It expires on its own within LOCK_TTL.
        tracing::warn!(error = %err, "minting lock not released");
    }
}

impl Drop for MintLock {
    fn drop(&mut self) {
        if self.key.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cluster, key, owner) = (
            self.cluster.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.owner),
        );
        runtime.spawn(async move { release(&cluster, &key, &owner).await });
    }
}
