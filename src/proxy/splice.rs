//! Copying bytes both ways between two streams (passthrough tunnels, WebSocket
//! upgrades), ending after a period with no traffic in either direction.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// A spliced stream with no traffic for this long is closed.
pub const SPLICE_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Bytes moved by [`splice`]: `(a to b, b to a)`.
pub type Moved = (u64, u64);

/// Copies `a` <-> `b` until both sides close, an error occurs, or nothing moves
/// for `idle`. Returns the bytes moved, counted even when the splice is cut.
pub async fn splice<A, B>(a: A, b: B, idle: Duration) -> Moved
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut a = activity.watch(a);
    let mut b = activity.watch(b);
    let (from_a, from_b) = (a.read.clone(), b.read.clone());
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
        () = activity.quiet_for(idle) => {}
    }
    (
        from_a.load(Ordering::Relaxed),
        from_b.load(Ordering::Relaxed),
    )
}

/// When anything last moved through the streams it watches.
#[derive(Clone, Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last: Arc::default(),
        }
    }

    /// Wraps `io` so that its reads and writes count as activity.
    pub fn watch<T>(&self, io: T) -> Watched<T> {
        Watched {
            inner: io,
            read: Arc::default(),
            written: Arc::default(),
            activity: self.clone(),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    pub async fn quiet_for(&self, idle: Duration) {
        loop {
            let quiet = self
                .start
                .elapsed()
                .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)));
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// A stream whose reads and writes are counted and stamp its [`Activity`].
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    /// Bytes read from it.
    pub read: Arc<AtomicU64>,
    /// Bytes written to it.
    pub written: Arc<AtomicU64>,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = poll {
            if n > 0 {
                self.written.fetch_add(n as u64, Ordering::Relaxed);
                self.activity.touch();
            }
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn quiet_splice_is_cut_and_counts_survive() {
        let (client, proxy_side_a) = tokio::io::duplex(1024);
        let (proxy_side_b, mut upstream) = tokio::io::duplex(1024);
        let mut client = client;
        let task = tokio::spawn(splice(proxy_side_a, proxy_side_b, Duration::from_secs(60)));
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        upstream.read_exact(&mut buf).await.unwrap();
        upstream.write_all(b"hi").await.unwrap();
        let mut buf2 = [0u8; 2];
        client.read_exact(&mut buf2).await.unwrap();
        // Traffic keeps it open; then silence longer than the idle limit cuts it.
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!task.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let moved = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("an idle splice must be cut")
            .unwrap();
        assert_eq!(moved, (5, 2));
    }

    #[tokio::test]
    async fn splice_ends_when_both_sides_close() {
        let (mut client, a) = tokio::io::duplex(1024);
        let (b, mut upstream) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(a, b, Duration::from_secs(60)));
        client.write_all(b"abc").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abc");
        upstream.shutdown().await.unwrap();
        drop(upstream);
        assert_eq!(task.await.unwrap(), (3, 0));
    }
}

/// Bytes moved by a splice: (client to upstream, upstream to client).
pub type SpliceBytes = tokio::sync::oneshot::Receiver<(u64, u64)>;

/// Attached to the 101 response of a spliced WebSocket: yields the bytes moved
/// (client to upstream, upstream to client) when the splice ends, so that the
/// exchange's audit record is written then, with them.
#[derive(Clone, Debug)]
pub struct SpliceDone(pub Arc<std::sync::Mutex<Option<SpliceBytes>>>);

impl SpliceDone {
    /// Takes the receiver (once).
    pub fn take(&self) -> Option<SpliceBytes> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}
