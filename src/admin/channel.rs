//! A task's own channel: an abstract unix socket that `tollgate run --admin`
//! carries its sandbox's connections over.
//!
//! SECURITY: abstract sockets belong to a network namespace, so a sandbox in
//! its own namespace cannot reach any channel, its own included; only the
//! launcher (in the proxy's namespace) can, and only as root or as the proxy's
//! own user (checked with `SO_PEERCRED`). The name carries 96 random bits, so
//! one task's launcher cannot guess another's.
//!
//! Every connection starts with one byte: `C` for the launcher's control
//! connection, `D` for sandbox traffic, followed by one length byte and the
//! sandbox-side peer address (for the audit trail). When the control
//! connection closes, the launcher is gone (kill -9 included), so the task is
//! ended at once: token revoked, tunnels closed, leases revoked.
//!
//! A channel serves at most [`connection_cap`] data connections at once; more
//! are closed as they arrive.

use crate::policy::DEFAULT_MAX_CONCURRENT;
use crate::proxy::channel::serve_channel;
use crate::proxy::limits::{until_expiry, Held};
use crate::proxy::state::ProxyState;
use crate::proxy::ACCEPT_BACKOFF;
use crate::tasks::Task;
use std::future::Future;
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// First byte of the launcher's control connection.
pub const CONTROL: u8 = b'C';
/// First byte of a sandbox connection.
pub const DATA: u8 = b'D';
/// How long a new channel waits for its control connection before ending the task.
pub const CONTROL_WAIT: Duration = Duration::from_secs(30);
/// How long a connection has to send its preamble.
const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Fewest and most data connections one channel serves at once (see
/// [`connection_cap`]).
pub const CHANNEL_CONNECTIONS_RANGE: (usize, usize) = (16, 4096);
/// Least time between two warnings about a channel at its connection cap.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Data connections one channel serves at once, for a policy with
/// `max_concurrent`: four times that (tunnels and requests in flight are each
/// capped at `max_concurrent`; the rest is room for idle keep-alive
/// connections and ones still sending their preamble or ClientHello), within
/// [`CHANNEL_CONNECTIONS_RANGE`]: 1024 for the default of 256. Beyond it a
/// connection is closed at once, so one sandbox cannot exhaust the proxy's
/// file descriptors with idle connections. Fixed when the channel opens.
pub fn connection_cap(max_concurrent: usize) -> usize {
    let (least, most) = CHANNEL_CONNECTIONS_RANGE;
    max_concurrent.saturating_mul(4).clamp(least, most)
}

/// Opens the channel of `task` and serves it in the background until the task
/// ends, expires, or its launcher goes away; then awaits `end_task`, which ends
/// the task (the admin API's task table owns that). Returns the name to connect
/// to (`@` + the abstract socket name).
pub fn open(
    state: Arc<ProxyState>,
    task: Arc<Task>,
    end_task: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<String> {
    let mut random = [0u8; 12];
    aws_lc_rs::rand::fill(&mut random)
        .map_err(|_| std::io::Error::other("random bytes unavailable"))?;
    let name = format!("tollgate/{}/{}", task.id, crate::text::hex(&random));
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    tokio::spawn(serve(state, task, listener, end_task));
    Ok(format!("@{name}"))
}

/// Connects to the channel `name` (as returned by [`open`]).
pub async fn connect(name: &str) -> std::io::Result<UnixStream> {
    let abstract_name = name.strip_prefix('@').ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a channel name starts with @",
        )
    })?;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())?;
    let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    stream.set_nonblocking(true)?;
    UnixStream::from_std(stream)
}

/// Writes the preamble of a sandbox connection from `peer`.
pub async fn write_data_preamble(stream: &mut UnixStream, peer: SocketAddr) -> std::io::Result<()> {
    let peer = peer.to_string();
    let mut preamble = Vec::with_capacity(2 + peer.len());
    preamble.push(DATA);
    preamble.push(u8::try_from(peer.len()).unwrap_or(0));
    preamble.extend_from_slice(peer.as_bytes());
    stream.write_all(&preamble).await
}

async fn serve(
    state: Arc<ProxyState>,
    task: Arc<Task>,
    listener: UnixListener,
    end_task: impl Future<Output = ()>,
) {
    let ended = state.task_ends.signal(&task.id, task.expires_at);
    let max_concurrent = state
        .policies
        .current()
        .get(&task.policy)
        .map_or(DEFAULT_MAX_CONCURRENT, |p| p.max_concurrent);
    let cap = connection_cap(max_concurrent);
    let slots = Arc::new(Semaphore::new(cap));
    let mut last_cap_warning: Option<Instant> = None;
    let launcher_gone = CancellationToken::new();
    // Cancelled when this loop ends, so the control connection is closed and the
    // launcher learns that its task is over.
    let closed = CancellationToken::new();
    let _close_on_exit = closed.clone().drop_guard();
    let mut has_control = false;
    let expiry = until_expiry(task.time_left());
    let control_deadline = tokio::time::sleep(CONTROL_WAIT);
    tokio::pin!(expiry, control_deadline);
    // Preambles are read off the accept loop, so a slow peer delays only itself.
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<UnixStream>(1);
    let end_reason = loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ended.cancelled() => return,
            () = &mut expiry => break "the task expired",
            () = &mut control_deadline, if !has_control => break "no launcher connected to its channel in time",
            _ = launcher_gone.cancelled() => break "its launcher went away",
            control = control_rx.recv() => {
                if let Some(stream) = control.filter(|_| !has_control) {
                    has_control = true;
                    tokio::spawn(watch_control(stream, launcher_gone.clone(), closed.clone()));
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let mut stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(task = %task.id, error = %err, "channel accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if !peer_may_connect(&stream) {
            tracing::warn!(task = %task.id, "channel connection refused: the peer is neither root nor tollgate's user");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL) {
                last_cap_warning = Some(Instant::now());
                tracing::warn!(task = %task.id, cap, "channel connection closed: the task already has {cap} connections open");
            }
            continue;
        };
        let task = task.clone();
        let conn_state = state.clone();
        let control_tx = control_tx.clone();
        state.tracker.spawn(async move {
            let preamble = tokio::time::timeout(PREAMBLE_TIMEOUT, read_preamble(&mut stream)).await;
            match preamble {
                Ok(Ok(Preamble::Control)) => {
                    // The control connection does not count against the cap.
                    drop(slot);
                    let _ = control_tx.try_send(stream);
                }
                Ok(Ok(Preamble::Data(client))) => {
                    // The slot is held as long as the connection is open, also
                    // when it becomes a tunnel served by a task of its own.
                    serve_channel(conn_state, task, client, Held::new(stream, slot)).await;
                }
                _ => {
                    tracing::debug!(task = %task.id, "channel connection without a valid preamble")
                }
            }
        });
    };
    drop(listener);
    tracing::info!(task = %task.id, "ending the task: {end_reason}");
    end_task.await;
}

/// Holds the launcher's control connection: its end (EOF, error) means the
/// launcher is gone; `closed` (the channel ended first) drops it, which tells
/// the launcher.
async fn watch_control(mut stream: UnixStream, gone: CancellationToken, closed: CancellationToken) {
    let mut byte = [0u8; 1];
    loop {
        tokio::select! {
            _ = closed.cancelled() => return,
            read = stream.read(&mut byte) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    gone.cancel();
}

enum Preamble {
    Control,
    Data(SocketAddr),
}

async fn read_preamble(stream: &mut UnixStream) -> std::io::Result<Preamble> {
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad channel preamble");
    match stream.read_u8().await? {
        CONTROL => Ok(Preamble::Control),
        DATA => {
            let len = usize::from(stream.read_u8().await?);
            let mut peer = vec![0u8; len];
            stream.read_exact(&mut peer).await?;
            let peer = std::str::from_utf8(&peer)
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
            Ok(Preamble::Data(peer))
        }
        _ => Err(invalid()),
    }
}

fn peer_may_connect(stream: &UnixStream) -> bool {
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own = unsafe { libc::geteuid() };
    cred.uid() == 0 || cred.uid() == own
}
