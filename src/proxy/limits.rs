//! Caps on what one client can hold open, so a single task cannot exhaust the
//! proxy's file descriptors for everyone else, and so that long-lived tunnels and
//! streams, which request rate limits never see again, are bounded too.

use crate::error::{Reason, Refusal};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Client connections the proxy holds at once; beyond this it stops accepting
/// and new connections wait in the kernel's backlog.
pub const MAX_CLIENT_CONNECTIONS: usize = 16_384;

/// A task already has its policy's `max_concurrent` requests in flight.
#[derive(Debug, Clone, thiserror::Error)]
#[error("task {task} already has {max} requests in flight (max_concurrent)")]
pub struct InFlightCap {
    /// Task id.
    pub task: String,
    /// The cap.
    pub max: usize,
}

impl From<InFlightCap> for Refusal {
    fn from(cap: InFlightCap) -> Self {
        let mut refusal = Refusal::new(Reason::RateLimited, cap.to_string());
        refusal.retry_after = Some(1);
        refusal
    }
}

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
            // Looked up before inserting: the task id is copied only once per task.
            let entry = match map.get_mut(task) {
                Some(entry) => entry,
                None => map
                    .entry(task.to_string())
                    .or_insert_with(|| (Arc::new(Semaphore::new(max)), max)),
            };
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
///
/// An ended task is remembered (its signal stays fired) until its token would
/// have expired anyway, so a tunnel admitted while its task was being ended
/// gets a signal that has already fired instead of a fresh one nobody fires.
/// [`TaskEnds::forget`] drops the signals of expired tasks and the ones nobody
/// listens to.
#[derive(Debug, Default)]
pub struct TaskEnds {
    per_task: Mutex<HashMap<String, TaskEnd>>,
}

#[derive(Debug)]
struct TaskEnd {
    /// Held by every listener too: a count of one means only this map has it.
    token: Arc<CancellationToken>,
    /// When the entry may be forgotten whatever its state (Unix seconds).
    expires_at: Option<u64>,
}

impl TaskEnds {
    /// The signal of `task` (which expires at `expires_at`, Unix seconds, if
    /// ever). Already fired when the task has been ended or has expired.
    pub fn signal(&self, task: &str, expires_at: Option<u64>) -> Arc<CancellationToken> {
        if expires_at.is_some_and(|exp| exp <= crate::task_token::now_secs()) {
            return fired();
        }
        self.per_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(task.to_string())
            .or_insert_with(|| TaskEnd {
                token: Arc::default(),
                expires_at,
            })
            .token
            .clone()
    }

    /// Fires the signal of `task` and remembers that it ended until `until`
    /// (Unix seconds; its token's expiry), after which [`Self::forget`] drops it.
    pub fn end(&self, task: &str, until: u64) {
        let token = {
            let mut map = self
                .per_task
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let entry = map.entry(task.to_string()).or_insert_with(|| TaskEnd {
                token: Arc::default(),
                expires_at: Some(until),
            });
            entry.expires_at = Some(until);
            entry.token.clone()
        };
        token.cancel();
    }

    /// Drops the signals of expired tasks (their listeners close on their own
    /// expiry timers), and of live tasks that nobody listens to. Ended tasks
    /// are kept until their expiry. Called periodically.
    pub fn forget(&self) {
        let now = crate::task_token::now_secs();
        let mut map = self
            .per_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.retain(|_, entry| {
            if entry.expires_at.is_some_and(|exp| exp <= now) {
                return false;
            }
            // Clones are only made under this lock, so the count cannot grow
            // behind our back; it may only shrink, which keeps an entry one
            // round longer.
            entry.token.is_cancelled() || Arc::strong_count(&entry.token) > 1
        });
    }

    /// Tasks with a signal.
    pub fn tracked(&self) -> usize {
        self.per_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

/// A signal that has already fired.
fn fired() -> Arc<CancellationToken> {
    let token = CancellationToken::new();
    token.cancel();
    Arc::new(token)
}

/// Resolves when a task with `time_left` (see [`crate::tasks::Task::time_left`])
/// expires; never for a task without expiry.
pub async fn until_expiry(time_left: Option<std::time::Duration>) {
    match time_left {
        Some(left) => tokio::time::sleep(left).await,
        None => std::future::pending().await,
    }
}

/// A stream that holds a permit (a connection slot) for as long as it is open,
/// wherever it ends up (a keep-alive connection, a spawned tunnel).
#[derive(Debug)]
pub struct Held<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
}

impl<S> Held<S> {
    /// `inner`, holding `permit` until dropped.
    pub fn new(inner: S, permit: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            _permit: permit,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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

    #[test]
    fn an_ended_task_stays_ended_and_signals_are_forgotten() {
        let ends = TaskEnds::default();
        let now = crate::task_token::now_secs();
        let listening = ends.signal("a", Some(now + 60));
        assert!(!listening.is_cancelled());
        ends.end("a", now + 60);
        assert!(listening.is_cancelled(), "a listener learns of the end");
        drop(listening);
        assert!(
            ends.signal("a", Some(now + 60)).is_cancelled(),
            "a tunnel admitted while its task was being ended closes too"
        );
        ends.end("never-listened", now + 60);
        assert!(ends.signal("never-listened", Some(now + 60)).is_cancelled());
        assert!(
            ends.signal("expired", Some(now)).is_cancelled(),
            "an expired task's signal has fired"
        );
        assert_eq!(ends.tracked(), 2, "nothing is stored for an expired task");

        let held = ends.signal("held", Some(now + 60));
        drop(ends.signal("idle", Some(now + 60)));
        drop(ends.signal("static", None));
        let held_static = ends.signal("held-static", None);
        ends.end("over", now - 1);
        ends.forget();
        let mut left: Vec<_> = ends.per_task.lock().unwrap().keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["a", "held", "held-static", "never-listened"]);
        assert!(!held.is_cancelled() && !held_static.is_cancelled());
        drop((held, held_static));
        ends.forget();
        assert_eq!(ends.tracked(), 2, "the ended tasks until their expiry");
    }
}
