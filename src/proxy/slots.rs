//! A task's `max_concurrent` places, for requests in flight and for open
//! tunnels: counted in this process ([`super::limits::TaskSlots`]), or in
//! cluster mode across every replica ([`crate::cluster::leases`]). Either way
//! the holder keeps a [`Slot`] and the place is free again when it drops.

use super::state::ProxyState;
use crate::cluster::{keys, ClusterUnavailable};
use crate::error::Refusal;
use tokio::sync::OwnedSemaphorePermit;

/// One place, held until dropped.
#[derive(Debug)]
pub enum Slot {
    /// Counted in this process.
    Local(OwnedSemaphorePermit),
    /// A lease counted across replicas.
    Shared(crate::cluster::leases::Lease),
}

/// Requests in flight, or open tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Requests in flight (HTTP/2 streams included).
    Request,
    /// Open tunnels.
    Tunnel,
}

/// Takes one of `task`'s `max_concurrent` places of `kind` under `policy`:
/// `Ok(None)` when all are taken. In cluster mode Redis counts a cap the
/// policy set (a Redis error is an error, 503, never a pass); the default cap
/// is counted by each replica.
pub async fn take(
    state: &ProxyState,
    kind: Kind,
    task: &str,
    policy: &crate::policy::Policy,
) -> Result<Option<Slot>, ClusterUnavailable> {
    let max = policy.max_concurrent;
    let shared = state.leases.as_ref().filter(|_| policy.max_concurrent_set);
    let Some(leases) = shared else {
        let slots = match kind {
            Kind::Request => &state.request_slots,
            Kind::Tunnel => &state.tunnel_slots,
        };
        return Ok(slots.try_acquire(task, max).map(Slot::Local));
    };
    let key = match kind {
        Kind::Request => keys::request_leases(task),
        Kind::Tunnel => keys::tunnel_leases(task),
    };
    Ok(leases.acquire(key, max).await?.map(Slot::Shared))
}

/// [`take`] for a request: no place is 429 (`max_concurrent`).
pub async fn take_for_request(
    state: &ProxyState,
    task: &str,
    policy: &crate::policy::Policy,
) -> Result<Slot, Refusal> {
    take(state, Kind::Request, task, policy)
        .await?
        .ok_or_else(|| {
            super::limits::InFlightCap {
                task: task.to_string(),
                max: policy.max_concurrent,
            }
            .into()
        })
}
