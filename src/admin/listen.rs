//! Where the admin API listens: `admin.listen` is `ip:port` or `unix:/path`, and
//! one accept loop serves either until shutdown.

use super::Admin;
use crate::proxy::state::ProxyState;
use crate::proxy::{serve_with_shutdown, ACCEPT_BACKOFF};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Why the admin API could not listen. Printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("admin API: {0}")]
pub struct ListenError(String);

/// Binds `listen` (TCP or `unix:` socket) and serves `admin` there until
/// shutdown. Returns where it listens; webhooks learn it as the base of their
/// approve / deny URLs.
pub async fn serve_admin(admin: Arc<Admin>, listen: &str) -> Result<String, ListenError> {
    if let Some(path) = listen.strip_prefix("unix:") {
        let listener = bind_unix(listen, Path::new(path))?;
        spawn_accept_loop(admin, listener);
        return Ok(listen.to_string());
    }
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| ListenError(format!("{listen} is not ip:port")))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError(format!("{listen}: {source}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let state = admin.state.clone();
    spawn_accept_loop(admin, listener);
    if let Some(notifier) = state.approvals.notifier() {
        notifier.set_admin_base(format!("http://{bound}"));
    }
    Ok(bound.to_string())
}

/// Binds a unix socket at `path`, replacing a stale socket from an earlier run
/// but never a live one, nor anything that is not a socket.
fn bind_unix(listen: &str, path: &Path) -> Result<UnixListener, ListenError> {
    let bind_error = |source: std::io::Error| ListenError(format!("{listen}: {source}"));
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            return Err(ListenError(format!(
                "{listen}: the path exists and is not a socket; refusing to replace it"
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ListenError(format!(
                "{listen}: another process is listening"
            )));
        }
        std::fs::remove_file(path).map_err(bind_error)?;
    }
    UnixListener::bind(path).map_err(bind_error)
}

/// A listener the admin API takes connections from.
trait Acceptor: Send + 'static {
    /// One accepted connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Waits for the next connection.
    fn next_stream(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Acceptor for TcpListener {
    type Stream = TcpStream;
    async fn next_stream(&self) -> std::io::Result<TcpStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

impl Acceptor for UnixListener {
    type Stream = UnixStream;
    async fn next_stream(&self) -> std::io::Result<UnixStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

/// Serves each connection `listener` accepts, until shutdown.
fn spawn_accept_loop(admin: Arc<Admin>, listener: impl Acceptor) {
    tokio::spawn(async move {
        let state = admin.state.clone();
        loop {
            let accepted = tokio::select! {
                _ = state.shutdown.cancelled() => return,
                accepted = listener.next_stream() => accepted,
            };
            match accepted {
                Ok(stream) => spawn_connection(&state, &admin, TokioIo::new(stream)),
                Err(err) => {
                    tracing::warn!(error = %err, "admin accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    });
}

fn spawn_connection<I>(state: &ProxyState, admin: &Arc<Admin>, io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let admin = admin.clone();
    let shutdown = state.shutdown.clone();
    state.tracker.spawn(async move {
        let service = hyper::service::service_fn(move |req| {
            let admin = admin.clone();
            async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
        });
        serve_with_shutdown(io, service, &shutdown, false).await;
    });
}
