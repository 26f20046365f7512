//! `max_concurrent` across replicas: a task's requests in flight (and,
//! separately, its open tunnels) are leases in a sorted set, one member
//! `REPLICA:NONCE:N` per slot, scored by when it expires (Unix ms, Redis time).
//!
//! A lease is taken by one script (drop expired leases, count, add when under
//! the cap), released when its guard drops, and kept alive by this replica's
//! renewal every [`RENEW_EVERY`]. A replica that dies stops renewing, so its
//! slots come back at most [`LEASE_TTL`] later.
//!
//! The TTL is three renewal periods: a live lease survives two renewals lost
//! to a Redis hiccup (each gives up after the 500 ms response timeout), while
//! a dead replica's slots are back within 15 s, short next to the requests and
//! tunnels that hold slots for long.

use super::{scripts, Cluster, ClusterUnavailable};
use redis::Script;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often this replica renews its live leases.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// KEYS[1]: the task's leases. ARGV: the cap, the new member, the TTL (ms).
/// Returns 1 when the lease was taken, 0 when the task is at its cap.
const ACQUIRE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- Leases nobody renewed (their replica died) give their slots back.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[2])
-- No lease outlives now + TTL, so the set may go when they would.
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// KEYS[1]: a task's leases. ARGV: the TTL (ms), then this replica's live
/// leases in it. `XX`: a lease released or dropped meanwhile stays gone.
const RENEW: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expiry = string.format('%.0f', now + tonumber(ARGV[1]))
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
";

static ACQUIRE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE));
static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));

fn ttl_ms() -> u64 {
    LEASE_TTL.as_millis() as u64
}

/// This replica's leases.
pub struct Leases {
    cluster: Arc<Cluster>,
    /// `REPLICA:NONCE:`: a restarted replica does not reuse its members.
    prefix: String,
    next: AtomicU64,
    /// Live leases: member → the set it is in.
    live: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// One slot, held until dropped.
#[derive(Debug)]
pub struct Lease {
    leases: Arc<Leases>,
    key: String,
    member: String,
}

impl Leases {
    /// The leases of this replica of `cluster`.
    pub fn new(cluster: Arc<Cluster>) -> Arc<Self> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Arc::new(Self {
            prefix: format!("{}:{nonce:x}-{}:", cluster.replica(), std::process::id()),
            cluster,
            next: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot in the set `key` (of [`super::keys::request_leases`] or
    /// [`super::keys::tunnel_leases`]) unless it holds `cap` live leases
    /// already (`Ok(None)`).
    pub async fn acquire(
        self: &Arc<Self>,
        key: String,
        cap: usize,
    ) -> Result<Option<Lease>, ClusterUnavailable> {
        let member = format!(
            "{}{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        // Listed before it exists: a renewal meanwhile keeps it, not loses it.
        self.live().insert(member.clone(), key.clone());
        let lease = Lease {
            leases: self.clone(),
            key,
            member,
        };
        let mut pipe = redis::pipe();
        pipe.add_command(scripts::evalsha(
            &ACQUIRE_SCRIPT,
            &[&lease.key],
            (cap, &lease.member, ttl_ms()),
        ));
        // On an error the lease may or may not exist: dropping it removes it.
        let (taken,): (i64,) = scripts::query(&self.cluster, &pipe, &[&ACQUIRE_SCRIPT]).await?;
        if taken == 1 {
            return Ok(Some(lease));
        }
        let mut refused = lease;
        self.live().remove(&refused.member);
        refused.member.clear();
        Ok(None)
    }

    /// Renews every live lease of this replica, every [`RENEW_EVERY`] until
    /// `stop`.
    pub fn spawn_renewal(self: &Arc<Self>, stop: CancellationToken) {
        let leases = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(err) = leases.renew().await {
                    tracing::warn!(error = %err, "could not renew this replica's max_concurrent leases");
                }
            }
        });
    }

    async fn renew(&self) -> Result<(), ClusterUnavailable> {
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        for (member, key) in self.live().iter() {
            by_key.entry(key.clone()).or_default().push(member.clone());
        }
        if by_key.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (key, members) in &by_key {
            pipe.add_command(scripts::evalsha(&RENEW_SCRIPT, &[key], (ttl_ms(), members)))
                .ignore();
        }
        scripts::query::<()>(&self.cluster, &pipe, &[&RENEW_SCRIPT]).await
    }

    /// Live leases of this replica.
    pub fn held(&self) -> usize {
        self.live().len()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.member.is_empty() {
            return; // never taken
        }
        self.leases.live().remove(&self.member);
        // Best effort: a lease not removed expires anyway.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut conn = self.leases.cluster.conn();
        let key = std::mem::take(&mut self.key);
        let member = std::mem::take(&mut self.member);
        runtime.spawn(async move {
            let removed: Result<i64, _> = redis::cmd("ZREM")
                .arg(&key)
                .arg(&member)
                .query_async(&mut conn)
                .await;
            if let Err(err) = removed {
                tracing::debug!(error = %err, "lease not released; it expires");
            }
        });
    }
}
