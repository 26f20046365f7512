//! Processes left in a sandbox: CMD's own background children when CMD exits,
//! and, after a launcher was killed (-9), whatever its sandbox still ran.
//!
//! The namespace, listener and channel need no cleaning: the namespace has no
//! name and vanishes with its last process, the sockets close with the
//! launcher, and a running proxy ends the task when the channel's control
//! connection drops. What can linger is a process CMD started in the
//! background: it has no network left, but it is found and killed here.

/// Marks every sandbox process with its launcher's pid (inherited by children).
pub const LAUNCHER_VAR: &str = "TOLLGATE_LAUNCHER_PID";

/// Kills (SIGKILL) every process in the network namespace with inode
/// `netns_inode`. Returns how many were killed.
pub fn kill_namespace_members(netns_inode: u64) -> usize {
    let wanted = format!("net:[{netns_inode}]");
    let mut killed = 0;
    for pid in pids() {
        let Ok(link) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if link.as_os_str() == wanted.as_str() && kill(pid) {
            killed += 1;
        }
    }
    killed
}

/// Kills processes of sandboxes whose launcher is gone: marked with
/// [`LAUNCHER_VAR`], in another network namespace than ours, and whose launcher
/// pid no longer exists. Returns how many were killed.
pub fn clean_stale() -> usize {
    let Ok(own_ns) = std::fs::read_link("/proc/self/ns/net") else {
        return 0;
    };
    let marker = format!("{LAUNCHER_VAR}=");
    let mut killed = 0;
    for pid in pids() {
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if ns == own_ns {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let launcher = environ
            .split(|b| *b == 0)
            .filter_map(|var| std::str::from_utf8(var).ok())
            .find_map(|var| var.strip_prefix(&marker))
            .and_then(|p| p.parse::<i32>().ok());
        let Some(launcher) = launcher else { continue };
        if !std::path::Path::new(&format!("/proc/{launcher}")).exists() && kill(pid) {
            tracing::warn!(
                pid,
                launcher,
                "killed a process left by a sandbox whose launcher is gone"
            );
            killed += 1;
        }
    }
    killed
}

fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
}

fn kill(pid: i32) -> bool {
    // SAFETY: kill with integer arguments only.
    unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
}
