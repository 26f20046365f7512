//! The process chain inside a sandbox: relay → init (PID 1 of the sandbox's PID
//! namespace) → CMD.
//!
//! - The relay is the launcher's child, in the host's PID namespace: it passes
//!   the launcher's signals to init and exits with init's status.
//! - Init mounts the sandbox's own /proc, starts CMD, passes signals on to it,
//!   reaps orphans, and exits with CMD's status. When it exits, the kernel kills
//!   everything left in the namespace: nothing CMD started outlives it, however
//!   it detached.
//! - Each level dies with the one above (`PR_SET_PDEATHSIG`), so a launcher
//!   killed with -9 takes the whole sandbox with it.
//!
//! Signals the terminal sent to the whole foreground group (Ctrl-C) reach CMD
//! directly, so only signals sent by a process are passed on.
//!
//! This runs in the single-threaded `__sandbox-init` process, where `fork` is safe.

/// Signals passed on, and SIGCHLD; all are blocked and taken with `sigwaitinfo`.
const RELAYED: [i32; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];
/// Exit status when the chain itself fails.
const FAILED: u8 = super::error::SETUP_FAILED;

/// Runs `cmd` (which execs CMD, and returns an exit status only on failure) as
/// the second process of a new PID namespace; returns the status to exit with.
/// The calling process must already have unshared the PID namespace.
pub fn run_contained(cmd: impl FnOnce() -> u8) -> u8 {
    let signals = signal_set();
    // SAFETY: a valid, initialised sigset; no old set is asked for.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut());
    }
    let Some((alive_read, alive_write)) = pipe() else {
        eprintln!("tollgate run: pipe: {}", std::io::Error::last_os_error());
        return FAILED;
    };
    match fork() {
        Fork::Failed => FAILED,
        Fork::Child => {
            close(alive_write);
            exit(init(cmd, alive_read, &signals))
        }
        Fork::Parent(init_pid) => {
            close(alive_read);
            let status = relay(init_pid, &signals);
            close(alive_write);
            status
        }
    }
}

/// PID 1 of the sandbox.
fn init(cmd: impl FnOnce() -> u8, alive: i32, signals: &libc::sigset_t) -> u8 {
    if !die_with_parent(alive) {
        return FAILED;
    }
    mount_proc();
    match fork() {
        Fork::Failed => FAILED,
        Fork::Child => {
            close(alive);
            // SAFETY: a valid, initialised sigset.
            unsafe {
                libc::sigprocmask(libc::SIG_UNBLOCK, signals, std::ptr::null_mut());
            }
            exit(cmd())
        }
        Fork::Parent(cmd_pid) => relay(cmd_pid, signals),
    }
}

/// Passes signals to `target` and reaps children until `target` exits; returns
/// its status (128+N if signal N killed it).
fn relay(target: i32, signals: &libc::sigset_t) -> u8 {
    loop {
        // SAFETY: siginfo_t is plain data that sigwaitinfo fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid sigset and siginfo pointers.
        let sig = unsafe { libc::sigwaitinfo(signals, &mut info) };
        if sig < 0 {
            continue; // EINTR
        }
        if sig == libc::SIGCHLD {
            if let Some(status) = reap(target) {
                return status;
            }
        } else if info.si_code <= 0 {
            // Sent by a process (kill, sigqueue, tkill), not by the terminal.
            // SAFETY: kill with integer arguments.
            unsafe {
                libc::kill(target, sig);
            }
        }
    }
}

/// Reaps every exited child; returns `target`'s status if it was among them.
fn reap(target: i32) -> Option<u8> {
    loop {
        let mut status = 0;
        // SAFETY: a valid pointer to an int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return None;
        }
        if pid == target {
            return Some(if libc::WIFEXITED(status) {
                u8::try_from(libc::WEXITSTATUS(status)).unwrap_or(FAILED)
            } else if libc::WIFSIGNALED(status) {
                u8::try_from(128 + libc::WTERMSIG(status)).unwrap_or(FAILED)
            } else {
                FAILED
            });
        }
    }
}

/// The sandbox's own /proc, so CMD sees (and can reach through /proc) only its
/// own processes. Where procfs cannot be mounted (a container that masks parts
/// of the host's /proc refuses it), CMD keeps the old /proc with a warning: it
/// still cannot signal or trace processes outside its PID namespace.
fn mount_proc() {
    // SAFETY: mount with valid C strings and a null data pointer.
    let mounted = unsafe {
        libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if mounted != 0 {
        eprintln!(
            "tollgate run: warning: cannot mount the sandbox's /proc ({}); CMD sees the host's process list",
            std::io::Error::last_os_error()
        );
    }
}

/// Dies with the parent; `alive` is the read end of a pipe the parent holds
/// open, which reads EOF once the parent is gone (covering a parent that died
/// before the death signal was armed).
fn die_with_parent(alive: i32) -> bool {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return false;
    }
    let mut poll = libc::pollfd {
        fd: alive,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    // Readable or hung up means EOF: nothing is ever written to this pipe.
    ready == 0
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid sigset pointer and valid signal numbers.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        for sig in RELAYED {
            libc::sigaddset(&mut set, sig);
        }
    }
    set
}

enum Fork {
    Failed,
    Child,
    Parent(i32),
}

fn fork() -> Fork {
    // SAFETY: the process is single-threaded (see the module comment).
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("tollgate run: fork: {}", std::io::Error::last_os_error());
            Fork::Failed
        }
        0 => Fork::Child,
        pid => Fork::Parent(pid),
    }
}

fn pipe() -> Option<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: a valid two-int array.
    (unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0).then_some((fds[0], fds[1]))
}

fn close(fd: i32) {
    // SAFETY: closing a descriptor this process owns.
    unsafe {
        libc::close(fd);
    }
}

fn exit(status: u8) -> ! {
    std::process::exit(i32::from(status))
}
