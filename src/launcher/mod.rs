//! `tollgate run`: runs a command in a sandbox whose only way out is tollgate.
//!
//! The order of a run: register a task (in-process proxy, or `--admin`), start
//! CMD's first process in a new network namespace (see [`netns`]), wire the
//! namespace, start the forwarder and DNS stub, let CMD run, pass signals
//! through, and on CMD's exit end the task. Whatever CMD left running dies with
//! it (see [`reaper`]).

pub mod dns;
pub mod env;
mod error;
pub mod init;
pub mod link;
pub mod netns;
pub mod reaper;
pub mod seccomp;

pub use error::{LaunchError, SETUP_FAILED};
use link::TaskLink;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// What `tollgate run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--config` (used without `--admin`).
    pub config: Option<PathBuf>,
    /// `--admin URL` of a running proxy.
    pub admin: Option<String>,
    /// `--admin-token-file`.
    pub admin_token_file: Option<PathBuf>,
    /// `--policy`.
    pub policy: String,
    /// `--ttl`.
    pub ttl: Option<String>,
    /// `--user`: who CMD runs as.
    pub user: Option<String>,
    /// `--env K=V`, in order.
    pub env: Vec<(String, String)>,
    /// CMD and its arguments.
    pub command: Vec<OsString>,
}

/// Runs CMD in a sandbox; returns CMD's exit status (128+N if killed by signal
/// N), or 125 if the sandbox could not be set up.
pub fn run(opts: RunOptions) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tollgate run: cannot start the async runtime: {err}");
            return SETUP_FAILED;
        }
    };
    match runtime.block_on(run_async(opts)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tollgate run: {err}");
            SETUP_FAILED
        }
    }
}

async fn run_async(opts: RunOptions) -> Result<u8, LaunchError> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LaunchError::Sandbox(
            "`tollgate run` needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create the \
             sandbox's namespaces; run it with sudo, and CMD runs as you"
                .into(),
        ));
    }
    netns::preflight()?;
    crate::proxy::fdlimit::raise_fd_limit();
    let user = cmd_user(opts.user.as_deref())?;
    let link = match &opts.admin {
        Some(url) => {
            let token = crate::admin::client::admin_token(opts.admin_token_file.as_deref())?;
            TaskLink::remote(url, token, &opts.policy, opts.ttl.clone()).await?
        }
        None => {
            let config = crate::config::Config::load(opts.config.as_deref())?;
            TaskLink::embedded(&config, &opts.policy, opts.ttl.clone()).await?
        }
    };
    let link = Arc::new(link);
    let outcome = run_sandbox(&opts, &link, user).await;
    link.close().await;
    outcome
}

async fn run_sandbox(
    opts: &RunOptions,
    link: &Arc<TaskLink>,
    user: Option<(u32, u32)>,
) -> Result<u8, LaunchError> {
    let bundle = env::write_ca_bundle(&link.ca_pem)
        .map_err(|e| LaunchError::Sandbox(format!("cannot write the CA bundle: {e}")))?;
    let proxy_url = format!(
        "http://{}:{}@127.0.0.1:{}",
        link.id,
        link.token,
        netns::SANDBOX_PROXY_PORT
    );
    let mut vars = env::sandbox_env(
        std::env::vars_os(),
        &proxy_url,
        &bundle,
        &link.id,
        &opts.env,
    );
    if let Some((uid, _)) = user {
        // CMD runs as the invoking user: give it that user's home and name, not
        // root's (unless --env says otherwise).
        for (key, value) in env::user_identity(uid) {
            if !opts.env.iter().any(|(k, _)| *k == key) {
                vars.retain(|(k, _)| k != key);
                vars.push((key.into(), value.into()));
            }
        }
    }
    let mut sandbox = netns::create(&opts.command, vars, user).await?;
    let stop = CancellationToken::new();
    let served = serve_sandbox_side(&mut sandbox, link, &stop);
    let status = match served {
        Ok(()) => {
            sandbox.go()?;
            wait_passing_signals(&mut sandbox.child, sandbox.pid).await
        }
        Err(err) => {
            let _ = sandbox.child.start_kill();
            let _ = sandbox.child.wait().await;
            Err(err)
        }
    };
    stop.cancel();
    status
}

/// Starts the forwarder and the DNS stub on the sandbox's sockets.
fn serve_sandbox_side(
    sandbox: &mut netns::Sandbox,
    link: &Arc<TaskLink>,
    stop: &CancellationToken,
) -> Result<(), LaunchError> {
    let err = |e: std::io::Error| LaunchError::Sandbox(format!("sandbox sockets: {e}"));
    let proxy =
        tokio::net::TcpListener::from_std(sandbox.proxy.try_clone().map_err(err)?).map_err(err)?;
    let dns =
        tokio::net::UdpSocket::from_std(sandbox.dns.try_clone().map_err(err)?).map_err(err)?;
    tokio::spawn(dns::serve(Arc::new(dns), stop.clone()));
    let link = link.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = proxy.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => link.carry(stream, peer),
                Err(err) => {
                    tracing::warn!(error = %err, "sandbox accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(())
}

/// Waits for CMD, passing SIGINT, SIGTERM and SIGHUP on to it.
async fn wait_passing_signals(
    child: &mut tokio::process::Child,
    pid: i32,
) -> Result<u8, LaunchError> {
    let watch = |kind: SignalKind| {
        signal(kind).map_err(|e| LaunchError::Sandbox(format!("cannot watch signals: {e}")))
    };
    let (mut int, mut term, mut hup) = (
        watch(SignalKind::interrupt())?,
        watch(SignalKind::terminate())?,
        watch(SignalKind::hangup())?,
    );
    loop {
        let forwarded = tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| LaunchError::Sandbox(format!("waiting for CMD: {e}")))?;
                return Ok(exit_code(status));
            }
            _ = int.recv() => {
                // Ctrl-C at a terminal already reached CMD, which shares our
                // foreground process group: passing it on would deliver it twice.
                if interrupted_at_terminal() {
                    continue;
                }
                libc::SIGINT
            }
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
        };
        // SAFETY: kill with integer arguments; pid is our own unreaped child.
        unsafe {
            libc::kill(pid, forwarded);
        }
    }
}

/// Whether stdin is the terminal and we are its foreground process group.
fn interrupted_at_terminal() -> bool {
    // SAFETY: isatty, tcgetpgrp and getpgrp take integers and touch no memory.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        _ => 1,
    }
}

/// Who CMD runs as: `Some((uid, gid))` to switch to, `None` to stay (root,
/// without the capabilities that would undo the sandbox; or the caller itself
/// when not root, where creating the namespace fails anyway).
fn cmd_user(spec: Option<&str>) -> Result<Option<(u32, u32)>, LaunchError> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let chosen = match spec {
        Some(spec) => Some(env::resolve_user(spec).map_err(LaunchError::Sandbox)?),
        None => sudo_user(),
    };
    match chosen {
        Some((0, _)) => {
            eprintln!(
                "tollgate run: warning: CMD runs as root. Its network is sandboxed, but root can \
                 read tollgate's keys, rewrite its policies and trace its processes; prefer sudo \
                 from your own account or --user NAME."
            );
            Ok(None)
        }
        Some(user) => Ok(Some(user)),
        None if root => Err(LaunchError::Sandbox(
            "say which user CMD runs as: run tollgate through sudo from your own account \
             (CMD then runs as you), or give --user NAME (--user root keeps root, which the \
             sandbox cannot contain)"
                .into(),
        )),
        None => Ok(None),
    }
}

/// The invoking user when the launcher runs as root through sudo.
fn sudo_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |var: &str| std::env::var(var).ok()?.parse::<u32>().ok();
    match (id("SUDO_UID"), id("SUDO_GID")) {
        (Some(uid), Some(gid)) if uid != 0 => Some((uid, gid)),
        _ => None,
    }
}
