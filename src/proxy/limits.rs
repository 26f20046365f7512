//! Caps on what one client can hold open, so a single task cannot exhaust the
//! proxy's file descriptors for everyone else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open CONNECT tunnels (intercepted or passthrough) one task may hold at once.
pub const MAX_TUNNELS_PER_TASK: usize = 512;
/// Client connections the proxy holds at once; beyond this it stops accepting
/// and new connections wait in the kernel's backlog.
pub const MAX_CLIENT_CONNECTIONS: usize = 16_384;

/// Per-task tunnel slots.
#[derive(Debug, Default)]
pub struct TunnelSlots {
    per_task: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl TunnelSlots {
    /// Takes a slot for `task`, or `None` when it already holds the maximum. The
    /// slot is released when the permit is dropped, i.e. when the tunnel ends.
    pub fn try_acquire(&self, task: &str) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut map = self
                .per_task
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            map.entry(task.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(MAX_TUNNELS_PER_TASK)))
                .clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_task_and_released_on_drop() {
        let slots = TunnelSlots::default();
        let held: Vec<_> = (0..MAX_TUNNELS_PER_TASK)
            .map(|_| slots.try_acquire("a").unwrap())
            .collect();
        assert!(slots.try_acquire("a").is_none());
        assert!(
            slots.try_acquire("b").is_some(),
            "another task is not affected"
        );
        drop(held);
        assert!(slots.try_acquire("a").is_some());
    }
}
