//! The subscriber: one connection listening on tollgate's channels. On every
//! (re)connection it subscribes first and then lets each channel catch up from
//! the state kept in Redis, so nothing published while it was away is missed;
//! only then does the replica count as available again.

use super::Cluster;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Called with each message's payload.
pub type OnMessage = Arc<dyn Fn(&str) + Send + Sync>;
/// Reads what was published while the subscriber was away.
pub type CatchUp = Arc<
    dyn Fn(Arc<Cluster>) -> BoxFuture<'static, Result<(), super::ClusterUnavailable>> + Send + Sync,
>;

/// One channel and what to do with it.
#[derive(Clone)]
pub struct Subscription {
    /// Channel name.
    pub channel: &'static str,
    /// Handler of each message.
    pub on_message: OnMessage,
    /// Run after subscribing, on every (re)connection.
    pub catch_up: Option<CatchUp>,
}

/// Pause between reconnection attempts.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// Listens until `stop`, reconnecting as needed.
pub async fn listen(
    cluster: Arc<Cluster>,
    subscriptions: Vec<Subscription>,
    stop: CancellationToken,
) {
    loop {
        let session = listen_once(&cluster, &subscriptions, &stop);
        match session.await {
            Ok(()) => return,
            Err(err) => {
                cluster.set_listening(false);
                tracing::debug!(error = %err, "cluster subscriber reconnecting");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

/// One connection's life: `Ok` when stopped, `Err` when it broke.
async fn listen_once(
    cluster: &Arc<Cluster>,
    subscriptions: &[Subscription],
    stop: &CancellationToken,
) -> Result<(), String> {
    let connect = cluster.client().get_async_pubsub();
    let mut pubsub = tokio::time::timeout(super::connect::RESPONSE_TIMEOUT * 2, connect)
        .await
        .map_err(|_| "connection timed out".to_string())?
        .map_err(|e| e.to_string())?;
    for sub in subscriptions {
        pubsub
            .subscribe(sub.channel)
            .await
            .map_err(|e| e.to_string())?;
    }
    for sub in subscriptions {
        if let Some(catch_up) = &sub.catch_up {
            catch_up(cluster.clone()).await.map_err(|e| e.to_string())?;
        }
    }
    cluster.answered();
    cluster.set_listening(true);
    let mut messages = pubsub.into_on_message();
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            msg = messages.next() => msg,
        };
        let Some(msg) = msg else {
            return Err("subscriber connection closed".into());
        };
        let payload: String = match msg.get_payload() {
            Ok(payload) => payload,
            Err(err) => {
                tracing::warn!(error = %err, "cluster message not text; ignored");
                continue;
            }
        };
        let channel = msg.get_channel_name();
        if let Some(sub) = subscriptions.iter().find(|s| s.channel == channel) {
            (sub.on_message)(&payload);
        }
    }
}
