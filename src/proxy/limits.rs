//! Caps on what one client can hold open, so a single task cannot exhaust the
//! proxy's file descriptors for everyone else, and so that long-lived tunnels and
//! streams, which request rate limits never see again, are bounded too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Client connections the proxy holds at once; beyond this it stops accepting
/// and new connections wait in the kernel's backlog.
pub const MAX_CLIENT_CONNECTIONS: usize = 16_384;

/// Per-task slots (tunnels, or requests in flight), at most the policy's
/// `max_concurrent` each.
#[derive(Debug, Default)]
pub struct TaskSlots {
    per_task: Mutex<HashMap<String, (Arc<Semaphore>, usize)>>,
}

impl TaskSlots {
    /// Takes a slot for `task`, or `None` when it already holds `max`. The slot is
    /// released when the permit is dropped.
    pub fn try_acquire(&self, task: &str, max: usize) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut map = self
                .per_task
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let entry = map
                .entry(task.to_string())
                .or_insert_with(|| (Arc::new(Semaphore::new(max)), max));
            if entry.1 != max && entry.0.available_permits() == entry.1 {
                // The policy changed its cap and nothing is held: start afresh.
                *entry = (Arc::new(Semaphore::new(max)), max);
            }
            entry.0.clone()
        };
        semaphore.try_acquire_owned().ok()
    }

    /// Frees the state of tasks that hold nothing.
    pub fn forget_idle(&self) {
        let mut map = self
            .per_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.retain(|_, (semaphore, max)| semaphore.available_permits() != *max);
    }

    /// Tasks with state.
    pub fn tracked(&self) -> usize {
        self.per_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

/// One cancellation signal per task, fired when the task is ended (admin
/// `DELETE`), so that its open tunnels close at once instead of living on.
#[derive(Debug, Default)]
pub struct TaskEnds {
    per_task: Mutex<HashMap<String, tokio_util::sync::CancellationToken>>,
}

impl TaskEnds {
    /// The signal of `task`.
    pub fn signal(&self, task: &str) -> tokio_util::sync::CancellationToken {
        self.per_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(task.to_string())
            .or_default()
            .clone()
    }

    /// Fires and forgets the signal of `task`.
    pub fn end(&self, task: &str) {
        let token = self
            .per_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(task);
        if let Some(token) = token {
            token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_task_released_on_drop_and_forgotten_when_idle() {
        let slots = TaskSlots::default();
        let held: Vec<_> = (0..4).map(|_| slots.try_acquire("a", 4).unwrap()).collect();
        assert!(slots.try_acquire("a", 4).is_none());
        let other = slots.try_acquire("b", 4);
        assert!(other.is_some(), "another task is not affected");
        drop(other);
        slots.forget_idle();
        assert_eq!(
            slots.tracked(),
            1,
            "b holds nothing and is forgotten; a is kept"
        );
        drop(held);
        assert!(slots.try_acquire("a", 4).is_some());
        slots.forget_idle();
        assert_eq!(slots.tracked(), 0);
    }
}
