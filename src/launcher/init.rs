//! `tollgate __sandbox-init`: the sandbox's first process. The launcher starts
//! it; it moves into new network, PID and mount namespaces, waits while the
//! launcher wires the network, and then starts CMD inside through
//! [`reaper::run_contained`]: CMD's processes live in a PID namespace of their
//! own, with their own /proc, so they cannot see or trace processes outside, and
//! every one of them dies when CMD exits or the launcher dies.
//!
//! It is a separate exec rather than a `pre_exec` hook because it must talk to
//! the launcher between `unshare` and `exec`, which a forked copy of a
//! multi-threaded process cannot safely do.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;

use super::error::SETUP_FAILED;
use super::reaper;

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "__sandbox-init";
/// The descriptor of the control socket the launcher hands over.
pub const CONTROL_FD: i32 = 3;

/// Capabilities a root CMD loses: with them it could rewrite the sandbox's
/// rules, open raw sockets, or join another namespace.
const DROPPED_CAPS: [u32; 7] = [
    12, // CAP_NET_ADMIN
    13, // CAP_NET_RAW
    21, // CAP_SYS_ADMIN
    19, // CAP_SYS_PTRACE
    16, // CAP_SYS_MODULE
    39, // CAP_BPF
    38, // CAP_PERFMON
];

/// Parsed arguments: `--parent PID [--user UID:GID] -- CMD [ARGS...]`.
#[derive(Debug)]
struct InitArgs {
    parent: i32,
    user: Option<(u32, u32)>,
    command: Vec<OsString>,
}

fn parse(args: &[OsString]) -> Option<InitArgs> {
    let mut parent = None;
    let mut user = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.to_str()? {
            "--parent" => parent = rest.next()?.to_str()?.parse().ok(),
            "--user" => {
                let (uid, gid) = rest.next()?.to_str()?.split_once(':')?;
                user = Some((uid.parse().ok()?, gid.parse().ok()?));
            }
            "--" => break,
            _ => return None,
        }
    }
    let command: Vec<OsString> = rest.cloned().collect();
    (!command.is_empty()).then_some(InitArgs {
        parent: parent?,
        user,
        command,
    })
}

/// Runs the sandbox's first process; returns the exit status to leave with.
pub fn main(args: &[OsString]) -> u8 {
    let Some(args) = parse(args) else {
        eprintln!("tollgate: {SUBCOMMAND} is internal to `tollgate run`");
        return 2;
    };
    // SAFETY: the launcher put its end of a socketpair at CONTROL_FD for us, and
    // nothing else in this process owns it.
    let control = unsafe { UnixStream::from_raw_fd(CONTROL_FD) };
    set_cloexec(CONTROL_FD);
    if let Err(message) = prepare(&args, &control) {
        let _ = writeln!(&control, "error {message}");
        return SETUP_FAILED;
    }
    drop(control);
    reaper::run_contained(|| exec_cmd(&args))
}

/// In CMD's own process: gives up privileges and becomes CMD. Returns only on
/// failure, with the exit status.
fn exec_cmd(args: &InitArgs) -> u8 {
    let dropped = match args.user {
        Some((uid, gid)) => become_user(uid, gid),
        None => drop_root_powers(),
    };
    // Only unix, IP and netlink sockets, and no io_uring: other families
    // (vsock above all) are not confined by the network namespace.
    if let Err(message) = dropped.and_then(|()| super::seccomp::restrict_socket_families()) {
        eprintln!("tollgate run: {message}");
        return SETUP_FAILED;
    }
    let err = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    let name = args.command[0].to_string_lossy();
    eprintln!("tollgate run: cannot run `{name}`: {err}");
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

/// Everything between start and the launcher's go: new network, PID and mount
/// namespaces (the PID namespace applies to the children from here on).
fn prepare(args: &InitArgs, control: &UnixStream) -> Result<(), String> {
    die_with_parent(args.parent)?;
    let flags = libc::CLONE_NEWNET | libc::CLONE_NEWPID | libc::CLONE_NEWNS;
    // SAFETY: unshare has no memory-safety preconditions.
    if unsafe { libc::unshare(flags) } != 0 {
        let err = std::io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::EPERM) {
            "creating the sandbox's namespaces was refused (EPERM): `tollgate run` needs root \
             (CAP_SYS_ADMIN and CAP_NET_ADMIN); run it with sudo, and CMD runs as you"
                .to_string()
        } else {
            format!("cannot create the sandbox's namespaces: {err}")
        });
    }
    // Mounts made in the sandbox (its /proc) must not reach the host.
    // SAFETY: mount with valid C strings and null pointers where allowed.
    let private = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if private != 0 {
        return Err(format!(
            "cannot make the sandbox's mounts private: {}",
            std::io::Error::last_os_error()
        ));
    }
    writeln!(&mut &*control, "ready").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(control)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.trim() != "go" {
        // The launcher gave up (or died): never run CMD unwired.
        std::process::exit(i32::from(SETUP_FAILED));
    }
    Ok(())
}

/// CMD is killed if the launcher dies (kill -9 included), so it never outlives
/// the forwarder that is its only way out.
fn die_with_parent(parent: i32) -> Result<(), String> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(format!(
            "prctl(PR_SET_PDEATHSIG): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != parent {
        std::process::exit(i32::from(SETUP_FAILED));
    }
    Ok(())
}

/// Runs CMD as `uid:gid` with no supplementary groups, no capabilities, and no
/// way to regain them (no_new_privs: setuid binaries do not elevate).
fn become_user(uid: u32, gid: u32) -> Result<(), String> {
    let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain syscalls; the group list is one valid gid_t.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(os("setgroups"));
        }
        if libc::setgid(gid) != 0 {
            return Err(os("setgid"));
        }
        if libc::setuid(uid) != 0 {
            return Err(os("setuid"));
        }
        if uid != 0 && libc::setuid(0) == 0 {
            return Err("privileges could not be dropped".into());
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(os("prctl(PR_SET_NO_NEW_PRIVS)"));
        }
    }
    Ok(())
}

/// CMD stays root (the caller asked for that) but without the capabilities
/// that would let it undo the sandbox.
fn drop_root_powers() -> Result<(), String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    for cap in DROPPED_CAPS {
        // SAFETY: prctl with integer arguments only. EINVAL means the kernel
        // does not know this capability, which is then nothing to drop.
        let dropped = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if dropped != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(format!(
                "cannot drop capability {cap}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    clear_caps(&DROPPED_CAPS)
}

/// `struct __user_cap_header_struct` of <linux/capability.h>.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct` of <linux/capability.h>.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Removes `caps` from this process's effective, permitted and inheritable sets.
fn clear_caps(caps: &[u32]) -> Result<(), String> {
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as version 3 requires.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(format!("capget: {}", std::io::Error::last_os_error()));
    }
    for &cap in caps {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        if let Some(set) = data.get_mut(word) {
            set.effective &= !bit;
            set.permitted &= !bit;
            set.inheritable &= !bit;
        }
    }
    // SAFETY: as above.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn set_cloexec(fd: i32) {
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let args: Vec<OsString> = [
            "--parent",
            "42",
            "--user",
            "1000:1001",
            "--",
            "sh",
            "-c",
            "x",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let parsed = parse(&args).unwrap();
        assert_eq!(parsed.parent, 42);
        assert_eq!(parsed.user, Some((1000, 1001)));
        assert_eq!(parsed.command.len(), 3);
        assert!(parse(&args[..5]).is_none(), "no command");
        assert!(parse(&[OsString::from("--bogus")]).is_none());
    }
}
