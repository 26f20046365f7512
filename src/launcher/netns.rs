//! The sandbox's network: a fresh namespace whose only interface is loopback.
//!
//! Why this shape (and not a veth pair to the host): nothing is created on the
//! host side, no host route, no host rule, no named namespace, so a launcher
//! that dies (kill -9 included) leaves nothing behind, and two sandboxes cannot
//! see each other. Inside the namespace:
//! - a default route through `lo`, so connects to any IPv4 address reach the
//!   output hook instead of failing with "network unreachable";
//! - nft: TCP to ports 80 and 443 anywhere is redirected to the forwarder, DNS
//!   (UDP 53) anywhere to the stub; then a default-drop filter lets only
//!   loopback TCP and the stub through: all other UDP (QUIC included), ICMP and
//!   every other port are refused;
//! - IPv6 disabled;
//! - the forwarder's listener (127.0.0.1:3128, the proxy address CMD is given)
//!   and the DNS stub's socket, both created here but served by the launcher,
//!   which carries each connection to tollgate over the task's channel.
//!
//! Sockets are created by a short-lived thread of the launcher that joins the
//! namespace (`setns`); the `ip` and `nft` it spawns inherit that namespace.

use super::error::LaunchError;
use super::init::{CONTROL_FD, SUBCOMMAND};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;

/// The proxy port CMD sees on its loopback.
pub const SANDBOX_PROXY_PORT: u16 = 3128;
/// How long the sandbox's first process has to report in.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A started sandbox, waiting for [`Sandbox::go`].
#[derive(Debug)]
pub struct Sandbox {
    /// The sandbox's first process (the relay to CMD, see [`super::reaper`]).
    pub child: tokio::process::Child,
    /// Its pid.
    pub pid: i32,
    /// The forwarder's listener inside the namespace.
    pub proxy: TcpListener,
    /// The DNS stub's socket inside the namespace.
    pub dns: UdpSocket,
    control: UnixStream,
}

impl Sandbox {
    /// Lets CMD run.
    pub fn go(&mut self) -> Result<(), LaunchError> {
        writeln!(self.control, "go").map_err(|e| LaunchError::Sandbox(format!("start CMD: {e}")))
    }
}

/// Checks that the tools the sandbox needs are installed.
pub fn preflight() -> Result<(), LaunchError> {
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|dir| dir.join(tool).is_file());
        if !found {
            return Err(LaunchError::Sandbox(format!(
                "`{tool}` is not installed: `tollgate run` needs it (apt-get install {package})"
            )));
        }
    }
    Ok(())
}

/// Starts `command` in a new network namespace, wires the namespace, and
/// returns with CMD held before exec.
pub async fn create(
    command: &[OsString],
    env: Vec<(OsString, OsString)>,
    user: Option<(u32, u32)>,
) -> Result<Sandbox, LaunchError> {
    let sandbox_err = |what: &str, e: std::io::Error| LaunchError::Sandbox(format!("{what}: {e}"));
    let (control, child_end) = UnixStream::pair().map_err(|e| sandbox_err("socketpair", e))?;
    let exe = std::env::current_exe().map_err(|e| sandbox_err("locate tollgate", e))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(SUBCOMMAND)
        .arg("--parent")
        .arg(std::process::id().to_string());
    if let Some((uid, gid)) = user {
        cmd.arg("--user").arg(format!("{uid}:{gid}"));
    }
    cmd.arg("--").args(command).env_clear().envs(env);
    let child_fd = child_end.as_raw_fd();
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if child_fd == CONTROL_FD {
                let flags = libc::fcntl(CONTROL_FD, libc::F_GETFD);
                libc::fcntl(CONTROL_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(child_fd, CONTROL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| sandbox_err("start the sandbox", e))?;
    drop(child_end);
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| LaunchError::Sandbox("the sandbox exited at once".into()))?;
    let reader = control
        .try_clone()
        .map_err(|e| sandbox_err("socketpair", e))?;
    let report = tokio::task::spawn_blocking(move || {
        reader.set_read_timeout(Some(READY_TIMEOUT))?;
        let mut line = String::new();
        BufReader::new(reader).read_line(&mut line)?;
        Ok::<_, std::io::Error>(line)
    })
    .await
    .map_err(|e| LaunchError::Sandbox(e.to_string()))?
    .map_err(|e| sandbox_err("the sandbox did not report in", e))?;
    match report.trim_end().split_once(' ') {
        _ if report.trim_end() == "ready" => {}
        Some(("error", message)) => return Err(LaunchError::Sandbox(message.to_string())),
        _ => {
            return Err(LaunchError::Sandbox(
                "the sandbox's first process exited before reporting in".into(),
            ))
        }
    }
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| sandbox_err("open the sandbox's namespace", e))?;
    let (proxy, dns) = std::thread::spawn(move || wire(ns))
        .join()
        .map_err(|_| LaunchError::Sandbox("wiring the namespace failed".into()))??;
    Ok(Sandbox {
        child,
        pid,
        proxy,
        dns,
        control,
    })
}

/// Runs on a thread of its own: joins the namespace, configures it, and creates
/// the two sockets in it. The thread ends afterwards, so no other work ever
/// runs in the sandbox's namespace.
fn wire(ns: std::fs::File) -> Result<(TcpListener, UdpSocket), LaunchError> {
    let err = |what: &str, e: std::io::Error| LaunchError::Sandbox(format!("{what}: {e}"));
    // SAFETY: setns on an open namespace descriptor; affects this thread only.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(err("join the namespace", std::io::Error::last_os_error()));
    }
    for knob in ["all", "default", "lo"] {
        let path = format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6");
        match std::fs::write(&path, "1") {
            Ok(()) => {}
            // No IPv6 in this kernel: nothing to turn off.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&path, e)),
        }
    }
    run("ip", &["link", "set", "lo", "up"], None)?;
    run(
        "ip",
        &["route", "add", "default", "dev", "lo", "src", "127.0.0.1"],
        None,
    )?;
    run("nft", &["-f", "-"], Some(&rules(SANDBOX_PROXY_PORT)))?;
    let proxy = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, SANDBOX_PROXY_PORT)))
        .map_err(|e| err("the forwarder's listener", e))?;
    proxy
        .set_nonblocking(true)
        .map_err(|e| err("the forwarder's listener", e))?;
    let dns = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 53)))
        .map_err(|e| err("the DNS stub", e))?;
    dns.set_nonblocking(true)
        .map_err(|e| err("the DNS stub", e))?;
    drop(ns);
    Ok((proxy, dns))
}

/// The sandbox's nftables ruleset.
pub fn rules(proxy_port: u16) -> String {
    format!(
        "table inet tollgate_sandbox {{
  chain nat_out {{
    type nat hook output priority -100; policy accept;
    meta nfproto ipv4 tcp dport {{ 80, 443 }} redirect to :{proxy_port}
    meta nfproto ipv4 udp dport 53 redirect to :53
  }}
  chain filter_out {{
    type filter hook output priority 0; policy drop;
    ct state established,related accept
    meta nfproto ipv4 ip daddr 127.0.0.0/8 meta l4proto tcp accept
    meta nfproto ipv4 ip daddr 127.0.0.1 udp dport 53 accept
    meta l4proto tcp reject with tcp reset
    reject
  }}
}}
"
    )
}

fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> Result<(), LaunchError> {
    let shown = format!("{tool} {}", args.join(" "));
    let mut child = std::process::Command::new(tool)
        .args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LaunchError::Sandbox(format!("{shown}: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| LaunchError::Sandbox(format!("{shown}: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| LaunchError::Sandbox(format!("{shown}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LaunchError::Sandbox(format!(
            "`{shown}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
