//! Cluster mode: several replicas share their state through Redis (or Valkey).
//!
//! [`Cluster`] owns the connections: one multiplexed connection for commands
//! (every request of every task pipelines over it, so there is no pool to size
//! or drain) and one subscriber connection for the channels that carry
//! revocations and approval answers ([`bus`]). A background check asks Redis
//! the time several times a second (which also keeps [`clock`]); when nothing has answered for [`UNAVAILABLE_AFTER`],
//! or the subscriber is not listening, the cluster is unavailable and every
//! proxied request is refused 503 `cluster_unavailable`: a revocation published
//! meanwhile could otherwise be missed. Service resumes by itself.

pub mod bus;
pub mod clock;
pub mod connect;
pub mod grants;
pub mod holds;
pub mod keys;
pub mod leases;
pub mod ledger;
pub mod mint_lock;
pub mod rate;
pub mod revocations;
pub mod scripts;
pub mod tasks;

use crate::error::{Reason, Refusal};
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long Redis may be silent before requests are refused.
pub const UNAVAILABLE_AFTER: Duration = Duration::from_secs(1);
/// How often the background check asks Redis.
const PING_EVERY: Duration = Duration::from_millis(200);

/// Redis could not be reached: the request is refused rather than let
/// through unchecked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the cluster's shared state (Redis) is unreachable: {0}")]
pub struct ClusterUnavailable(pub String);

impl From<ClusterUnavailable> for Refusal {
    fn from(err: ClusterUnavailable) -> Self {
        Refusal::new(Reason::ClusterUnavailable, err.to_string())
    }
}

impl From<redis::RedisError> for ClusterUnavailable {
    fn from(err: redis::RedisError) -> Self {
        ClusterUnavailable(err.to_string())
    }
}

/// This replica's view of the shared state.
pub struct Cluster {
    replica: String,
    client: redis::Client,
    conn: ConnectionManager,
    started: Instant,
    /// Milliseconds since `started` of the last answer from Redis; 0: none yet.
    last_answer_ms: AtomicU64,
    /// Whether the subscriber connection is listening (and has caught up).
    listening: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// A handle on the command connection (cheap; all handles share it).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The client, for connections of their own (the subscriber).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Notes that Redis answered just now.
    pub fn answered(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_answer_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// Sets whether the subscriber is listening.
    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
    }

    /// `Ok` while Redis answers and the subscriber listens; checked before
    /// every proxied request, without a round trip.
    pub fn ensure_available(&self) -> Result<(), ClusterUnavailable> {
        if !self.listening.load(Ordering::SeqCst) {
            return Err(ClusterUnavailable(
                "not subscribed to revocations".to_string(),
            ));
        }
        let last = self.last_answer_ms.load(Ordering::Relaxed);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if last == 0 || now.saturating_sub(last) > UNAVAILABLE_AFTER.as_millis() as u64 {
            return Err(ClusterUnavailable(format!(
                "no answer for more than {} ms",
                UNAVAILABLE_AFTER.as_millis()
            )));
        }
        Ok(())
    }

    /// Whether [`Self::ensure_available`] passes (for `/readyz`).
    pub fn is_available(&self) -> bool {
        self.ensure_available().is_ok()
    }

    /// Asks Redis the time every [`PING_EVERY`] until `stop`.
    pub async fn watch_health(
        self: std::sync::Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_available = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut conn = self.conn();
            // `TIME` rather than `PING`: the same round trip also keeps this
            // replica's view of Redis's clock ([`clock`]).
            let time = redis::cmd("TIME");
            let (sent, started) = (std::time::SystemTime::now(), Instant::now());
            let answer = tokio::time::timeout(
                UNAVAILABLE_AFTER / 2,
                time.query_async::<(u64, u64)>(&mut conn),
            )
            .await;
            if let Ok(Ok(now)) = answer {
                clock::observe(now, sent, started.elapsed());
                self.answered();
            }
            let available = self.is_available();
            if was_available != Some(available) {
                if available {
                    tracing::info!(replica = %self.replica, "cluster state (Redis) reachable");
                } else {
                    tracing::warn!(replica = %self.replica, "cluster state (Redis) unreachable: proxied requests get 503 cluster_unavailable");
                }
                was_available = Some(available);
            }
        }
    }
}
