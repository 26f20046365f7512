//! Holds across replicas. The request waits on the replica that holds its
//! connection; what operators are shown of it is kept in Redis under
//! [`keys::hold`], and its id in the sorted set [`keys::HOLDS`] scored by the
//! end of a short lease ([`LEASE`]) that the holding replica renews while it
//! waits. Any replica lists and shows every live hold from there.
//!
//! An answer taken on another replica travels on [`keys::ANSWER_CHANNEL`] to
//! the holder, which applies it exactly as a local answer and leaves the
//! outcome under [`keys::answer_result`] for the replica that took it
//! ([`forward`] waits up to [`ANSWER_WAIT`] for it).
//!
//! A replica that dies stops renewing: its holds' leases run out, and the
//! first replica whose sweep removes one ([`take_expired`]; `ZREM` answering 1
//! decides which) audits it as withdrawn.

use super::{keys, Cluster, ClusterUnavailable};
use crate::approvals::api::{Answer, HoldDetail};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long a hold stays listed without a renewal.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often the holding replica renews a hold's lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long the replica that took an answer waits for the holder's outcome.
pub const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// Pause between looks for the holder's outcome.
const ANSWER_POLL: Duration = Duration::from_millis(20);
/// How long an outcome is kept for the replica that took the answer.
const RESULT_TTL: Duration = Duration::from_secs(10);
/// Expired holds removed per sweep.
const SWEEP_BATCH: usize = 100;

/// Milliseconds since the Unix epoch, on Redis's clock ([`super::clock`]),
/// which every replica shares.
pub fn now_ms() -> u64 {
    super::clock::now_ms()
}

/// A hold as every replica sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedHold {
    /// The replica holding the request's connection.
    pub replica: String,
    /// The client's `ip:port`, for the record of a withdrawal.
    pub client: String,
    /// When it was held (Unix milliseconds).
    pub since_ms: u64,
    /// What the admin API shows of it.
    pub detail: HoldDetail,
}

impl SharedHold {
    /// The detail, `waited_ms` as of now, with the holding replica.
    pub fn shown(&self) -> HoldDetail {
        let mut detail = self.detail.clone();
        detail.view.waited_ms = now_ms().saturating_sub(self.since_ms);
        detail.view.replica = Some(self.replica.clone());
        detail
    }
}

fn encode<T: Serialize>(value: &T) -> Result<String, ClusterUnavailable> {
    serde_json::to_string(value).map_err(|e| ClusterUnavailable(e.to_string()))
}

/// Lists hold `id` for every replica, for at most `keep` (its timeout).
pub async fn register(
    cluster: &Cluster,
    id: &str,
    hold: &SharedHold,
    keep: Duration,
) -> Result<(), ClusterUnavailable> {
    let text = encode(hold)?;
    let keep_ms = u64::try_from((keep + LEASE).as_millis()).unwrap_or(u64::MAX);
    let lease_end = now_ms() + LEASE.as_millis() as u64;
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("SET")
        .arg(keys::hold(id))
        .arg(text)
        .arg("PX")
        .arg(keep_ms)
        .ignore()
        .zadd(keys::HOLDS, id, lease_end)
        .ignore();
    pipe.query_async::<()>(&mut cluster.conn()).await?;
    cluster.answered();
    Ok(())
}

/// Renews hold `id`'s lease; `false` when it is no longer listed (another
/// replica took it for withdrawn).
pub async fn renew(cluster: &Cluster, id: &str) -> Result<bool, ClusterUnavailable> {
    let lease_end = now_ms() + LEASE.as_millis() as u64;
    let changed: i64 = redis::cmd("ZADD")
        .arg(keys::HOLDS)
        .arg("XX")
        .arg("CH")
        .arg(lease_end)
        .arg(id)
        .query_async(&mut cluster.conn())
        .await?;
    cluster.answered();
    Ok(changed == 1)
}

/// Takes hold `id` off the list (it ended here); whether it was listed.
pub async fn release(cluster: &Cluster, id: &str) -> Result<bool, ClusterUnavailable> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .zrem(keys::HOLDS, id)
        .del(keys::hold(id))
        .ignore();
    let (removed,): (i64,) = pipe.query_async(&mut cluster.conn()).await?;
    cluster.answered();
    Ok(removed == 1)
}

/// Every live hold, oldest first.
pub async fn list(cluster: &Cluster) -> Result<Vec<SharedHold>, ClusterUnavailable> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys::HOLDS)
        .arg(now_ms())
        .arg("+inf")
        .arg("BYSCORE")
        .query_async(&mut cluster.conn())
        .await?;
    cluster.answered();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = ids.iter().map(|id| keys::hold(id)).collect();
    let texts: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&names)
        .query_async(&mut cluster.conn())
        .await?;
    let mut holds: Vec<SharedHold> = texts
        .into_iter()
        .flatten()
        .filter_map(|text| serde_json::from_str(&text).ok())
        .collect();
    holds.sort_by_key(|h| h.since_ms);
    Ok(holds)
}

/// Hold `id`, if it is live.
pub async fn lookup(cluster: &Cluster, id: &str) -> Result<Option<SharedHold>, ClusterUnavailable> {
    let mut pipe = redis::pipe();
    pipe.zscore(keys::HOLDS, id).get(keys::hold(id));
    let (lease_end, text): (Option<u64>, Option<String>) =
        pipe.query_async(&mut cluster.conn()).await?;
    cluster.answered();
    if lease_end.is_none_or(|end| end < now_ms()) {
        return Ok(None);
    }
    Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
}

/// Removes holds whose lease ran out; returns those this replica removed
/// (each is removed by exactly one replica), with what was shown of them.
pub async fn take_expired(
    cluster: &Cluster,
) -> Result<Vec<(String, Option<SharedHold>)>, ClusterUnavailable> {
    let expired: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys::HOLDS)
        .arg("-inf")
        .arg(format!("({}", now_ms()))
        .arg("BYSCORE")
        .arg("LIMIT")
        .arg(0)
        .arg(SWEEP_BATCH)
        .query_async(&mut cluster.conn())
        .await?;
    cluster.answered();
    let mut taken = Vec::new();
    for id in expired {
        let removed: i64 = redis::cmd("ZREM")
            .arg(keys::HOLDS)
            .arg(&id)
            .query_async(&mut cluster.conn())
            .await?;
        if removed != 1 {
            // Another replica took it, or its holder released it just now.
            continue;
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .get(keys::hold(&id))
            .del(keys::hold(&id))
            .ignore();
        let (text,): (Option<String>,) = pipe.query_async(&mut cluster.conn()).await?;
        taken.push((id, text.and_then(|t| serde_json::from_str(&t).ok())));
    }
    Ok(taken)
}

/// Keeps hold `id` listed while it lives; dropping it takes the hold off the
/// list (answered, timed out, client gone).
#[derive(Debug)]
pub struct Listed {
    cluster: Arc<Cluster>,
    id: String,
}

impl Listed {
    /// Lists hold `id` (see [`register`]) and returns its guard.
    pub async fn new(
        cluster: Arc<Cluster>,
        id: &str,
        hold: &SharedHold,
        keep: Duration,
    ) -> Result<Listed, ClusterUnavailable> {
        let listed = Listed {
            cluster,
            id: id.to_string(),
        };
        // Should this fail half-way, the guard still takes it off the list.
        register(&listed.cluster, id, hold, keep).await?;
        Ok(listed)
    }

    /// Renews the lease every [`RENEW_EVERY`]; returns only when that fails
    /// (Redis unreachable, or the hold no longer listed).
    pub async fn keep_alive(&self) -> ClusterUnavailable {
        let mut tick = tokio::time::interval(RENEW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match renew(&self.cluster, &self.id).await {
                Ok(true) => {}
                Ok(false) => {
                    return ClusterUnavailable(
                        "the hold's lease in Redis ran out; it was withdrawn".into(),
                    )
                }
                Err(err) => return err,
            }
        }
    }
}

impl Listed {
    /// Takes the hold off the list now (it was answered or ended here), so
    /// that no other replica takes it for withdrawn, even if this process
    /// exits right after (shutdown).
    pub async fn end(mut self) {
        let id = std::mem::take(&mut self.id);
        if let Err(err) = release(&self.cluster, &id).await {
            tracing::warn!(hold = %id, error = %err, "hold not taken off the cluster's list");
        }
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cluster, id) = (self.cluster.clone(), std::mem::take(&mut self.id));
        runtime.spawn(async move {
            if let Err(err) = release(&cluster, &id).await {
                // Its lease runs out on its own; another replica then audits it.
                tracing::warn!(hold = %id, error = %err, "hold not taken off the cluster's list");
            }
        });
    }
}

/// An answer on its way to the replica holding the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerMessage {
    /// The hold answered.
    pub hold: String,
    /// The replica holding it: only that one applies the answer.
    pub replica: String,
    /// Approve (else deny).
    pub approve: bool,
    /// The operator's answer, as given.
    pub answer: Answer,
    /// Random nonce naming where the outcome goes ([`keys::answer_result`]).
    pub reply: String,
}

/// What became of a forwarded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AnswerResult {
    /// Taken: the admin API's reply body.
    Decided {
        /// The body.
        body: serde_json::Value,
    },
    /// Not pending there (any more).
    NotPending {
        /// Why.
        message: String,
    },
    /// The answer itself is malformed.
    Invalid {
        /// Why.
        message: String,
    },
    /// Taken, but its grant could not be shared.
    Unavailable {
        /// Why.
        message: String,
    },
}

/// A fresh nonce for [`AnswerMessage::reply`].
pub fn reply_nonce() -> Option<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(crate::text::hex(&bytes))
}

/// Sends `message` to the holding replica and waits up to [`ANSWER_WAIT`]
/// for its outcome; `None` when none came in time.
pub async fn forward(
    cluster: &Cluster,
    message: &AnswerMessage,
) -> Result<Option<AnswerResult>, ClusterUnavailable> {
    let text = encode(message)?;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(keys::ANSWER_CHANNEL)
        .arg(text)
        .query_async(&mut cluster.conn())
        .await?;
    cluster.answered();
    let key = keys::answer_result(&message.reply);
    let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    // A blocking pop would stall the one multiplexed connection: poll instead.
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(ANSWER_POLL).await;
        let text: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut cluster.conn())
            .await?;
        if let Some(text) = text {
            let result = serde_json::from_str(&text)
                .map_err(|e| ClusterUnavailable(format!("unreadable answer outcome: {e}")))?;
            return Ok(Some(result));
        }
    }
    Ok(None)
}

/// Leaves the outcome of a forwarded answer for the replica that took it.
pub async fn reply(
    cluster: &Cluster,
    reply: &str,
    result: &AnswerResult,
) -> Result<(), ClusterUnavailable> {
    redis::cmd("SET")
        .arg(keys::answer_result(reply))
        .arg(encode(result)?)
        .arg("PX")
        .arg(RESULT_TTL.as_millis() as u64)
        .query_async::<()>(&mut cluster.conn())
        .await?;
    cluster.answered();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_messages_round_trip() {
        let result = AnswerResult::NotPending {
            message: "gone".into(),
        };
        let text = serde_json::to_string(&result).unwrap();
        assert!(text.contains(r#""result":"not_pending""#), "{text}");
        assert_eq!(serde_json::from_str::<AnswerResult>(&text).unwrap(), result);
        let message = AnswerMessage {
            hold: "a-1".into(),
            replica: "r-0".into(),
            approve: true,
            answer: Answer {
                grant_for: Some("1m".into()),
                ..Answer::default()
            },
            reply: "n".into(),
        };
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(
            serde_json::from_str::<AnswerMessage>(&text).unwrap(),
            message
        );
    }
}
