//! How this replica takes part in a cluster: the channels it listens on and
//! what each message does here, and ending a task on this replica (asked by
//! the admin API here, or by a revocation published by another replica).

use crate::cluster::bus::{self, Subscription};
use crate::cluster::{revocations, Cluster};
use crate::proxy::state::ProxyState;
use std::sync::Arc;

/// Ends task `id` (token expiring at `exp`) on this replica: its token stops
/// working, its tunnels and channel close, and what this replica obtained for
/// it (Vault leases, minted tokens) is revoked. Returns the number of leases
/// and minted tokens revoked.
pub async fn end_task_here(state: &ProxyState, id: &str, exp: u64) -> (usize, usize) {
    state.tasks.revoke(id, exp);
    state.task_ends.end(id, exp);
    let leases = state.secrets.end_task(id).await;
    let minted = state.minter.end_task(id).await;
    state.injected.forget(id);
    state.budgets.forget(id);
    (leases, minted)
}

/// Starts listening on the cluster's channels for `state`.
pub fn start_listening(state: &Arc<ProxyState>, cluster: &Arc<Cluster>) {
    let subscriptions = vec![revocation_subscription(state)];
    tokio::spawn(bus::listen(
        cluster.clone(),
        subscriptions,
        state.shutdown.clone(),
    ));
}

fn revocation_subscription(state: &Arc<ProxyState>) -> Subscription {
    let on_state = Arc::downgrade(state);
    let catch_state = Arc::downgrade(state);
    Subscription {
        channel: crate::cluster::keys::REVOKE_CHANNEL,
        on_message: Arc::new(move |payload| {
            let Some((id, exp)) = revocations::parse(payload) else {
                tracing::warn!(payload, "malformed revocation message ignored");
                return;
            };
            let Some(state) = on_state.upgrade() else {
                return;
            };
            // Refused from this moment; the rest (revoking what this replica
            // obtained for the task) may take a round trip to an issuer.
            state.tasks.revoke(id, exp);
            state.task_ends.end(id, exp);
            let id = id.to_string();
            tokio::spawn(async move {
                let (leases, minted) = end_task_here(&state, &id, exp).await;
                tracing::info!(task = %id, leases, minted, "task ended by another replica");
            });
        }),
        catch_up: Some(Arc::new(move |cluster| {
            let state = catch_state.clone();
            Box::pin(async move {
                let revoked = revocations::current(&cluster).await?;
                if let Some(state) = state.upgrade() {
                    for (id, exp) in revoked {
                        state.tasks.revoke(&id, exp);
                        state.task_ends.end(&id, exp);
                    }
                }
                Ok(())
            })
        })),
    }
}
