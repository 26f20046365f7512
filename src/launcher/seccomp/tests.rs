//! The socket-family filter run through a small classic-BPF interpreter, and
//! installed in forked children, on every architecture it is built for.

use super::imp::{LEN, PROGRAM};
use super::*;

// <linux/audit.h>, for the simulated foreign ABIs.
const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
const AUDIT_ARCH_ARM: u32 = 40 | 0x4000_0000;
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xC000_00B7;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const EAFNOSUPPORT: u32 = libc::SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

// Families that must be refused (<linux/socket.h>).
const DENIED: [i32; 12] = [
    0,  // AF_UNSPEC
    4,  // AF_IPX
    15, // AF_KEY
    17, // AF_PACKET
    21, // AF_RDS
    29, // AF_CAN
    30, // AF_TIPC
    31, // AF_BLUETOOTH
    38, // AF_ALG
    40, // AF_VSOCK
    42, // AF_QIPCRTR
    44, // AF_XDP
];

/// Runs the program on one `seccomp_data`, as the kernel would; handles
/// exactly the instructions the filter uses and fails on any other.
fn run(arch: u32, nr: i64, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&(nr as i32).to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    data[8..16].copy_from_slice(&0x1234u64.to_le_bytes());
    for (i, arg) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
    }
    let (mut pc, mut a, mut steps) = (0usize, 0u32, 0);
    loop {
        steps += 1;
        assert!(steps <= LEN, "the program loops");
        let insn = PROGRAM[pc];
        let code = u32::from(insn.code);
        let k = insn.k;
        if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
            let k = k as usize;
            assert!(
                k.is_multiple_of(4) && k + 4 <= data.len(),
                "bad load at {pc}"
            );
            a = u32::from_le_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]]);
            pc += 1;
        } else if code == libc::BPF_RET | libc::BPF_K {
            return k;
        } else if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K
            || code == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K
        {
            let taken = if code & 0xf0 == libc::BPF_JEQ {
                a == k
            } else {
                a >= k
            };
            let off = if taken { insn.jt } else { insn.jf };
            pc += 1 + usize::from(off);
        } else {
            panic!("unexpected opcode {code:#x} at {pc}");
        }
        assert!(pc < LEN, "jump out of the program");
    }
}

fn native(nr: i64, arg0: u64) -> u32 {
    run(NATIVE_ARCH, nr, [arg0, 1, 0, 0, 0, 0])
}

#[test]
fn program_is_well_formed() {
    assert!(LEN <= libc::BPF_MAXINSNS as usize);
    assert_eq!(LEN, if cfg!(target_arch = "x86_64") { 20 } else { 18 });
    for (pc, insn) in PROGRAM.iter().enumerate() {
        let code = u32::from(insn.code);
        if code & 0x07 == libc::BPF_JMP {
            assert!(
                pc + 1 + usize::from(insn.jt) < LEN,
                "jt out of range at {pc}"
            );
            assert!(
                pc + 1 + usize::from(insn.jf) < LEN,
                "jf out of range at {pc}"
            );
        }
    }
    let last = PROGRAM[LEN - 1];
    assert_eq!(u32::from(last.code), libc::BPF_RET | libc::BPF_K);
    // The first thing the filter does is check the ABI.
    assert_eq!(
        u32::from(PROGRAM[0].code),
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS
    );
    assert_eq!(PROGRAM[0].k, 4);
}

#[test]
fn program_verdicts() {
    for call in [libc::SYS_socket, libc::SYS_socketpair] {
        for family in [
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_NETLINK,
        ] {
            assert_eq!(native(call, family as u64), ALLOW, "{call} {family}");
            // The kernel truncates the family to an int: so does the filter.
            let high = (7u64 << 32) | family as u64;
            assert_eq!(native(call, high), ALLOW, "{call} {family} high");
        }
        for family in DENIED {
            assert_eq!(native(call, family as u64), EAFNOSUPPORT, "{call} {family}");
            let high = (1u64 << 32) | family as u64;
            assert_eq!(native(call, high), EAFNOSUPPORT, "{call} {family} high");
        }
        assert_eq!(native(call, u64::MAX), EAFNOSUPPORT);
        assert_eq!(native(call, 0xffff_ffff_0000_0002), ALLOW); // AF_INET
    }
    for call in [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        assert_eq!(native(call, 0), EPERM, "{call}");
    }
    for call in [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_connect,
        libc::SYS_bind,
        libc::SYS_execve,
        libc::SYS_getpid,
    ] {
        // Other calls pass whatever their first argument.
        assert_eq!(native(call, 40), ALLOW, "{call}");
    }
    assert_eq!(native(-1, 0), {
        if cfg!(target_arch = "x86_64") {
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        } else {
            ALLOW
        }
    });
    for arch in [AUDIT_ARCH_I386, AUDIT_ARCH_ARM, 0, NATIVE_ARCH ^ 1] {
        for call in [libc::SYS_getpid, libc::SYS_socket] {
            assert_eq!(run(arch, call, [2, 1, 0, 0, 0, 0]), KILL, "{arch:#x}");
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_calls_are_refused() {
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    for call in [libc::SYS_socket, libc::SYS_getpid, libc::SYS_io_uring_setup] {
        assert_eq!(native(0x4000_0000 | call, 40), enosys, "{call}");
        assert_eq!(native(0x4000_0000 | call, 2), enosys, "{call}");
    }
}

/// Forks; the child installs the filter, runs `body` and leaves with its
/// result. Returns the child's wait status.
fn in_filtered_child(install: bool, body: fn() -> i32) -> i32 {
    // SAFETY: the child makes only raw system calls and `_exit`s; it never
    // returns into the (multi-threaded) test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // No core files from the deliberate SIGSYS.
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit with a valid struct; _exit never returns.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            if install && restrict_socket_families().is_err() {
                libc::_exit(99);
            }
            libc::_exit(body());
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    status
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The child's checks; the exit code is 1 + the number of the first one
/// that failed (an exit code has only 8 bits, too few for a mask), or 0.
fn live_checks() -> i32 {
    let mut failed = 0;
    let mut check = |number: i32, ok: bool| {
        if !ok && failed == 0 {
            failed = 1 + number;
        }
    };
    // SAFETY: plain system calls with integer arguments or pointers to
    // live locals; every descriptor made is closed.
    unsafe {
        let socket = |family: i32, kind: i32, proto: i32| {
            let fd = libc::socket(family, kind, proto);
            let err = errno();
            if fd >= 0 {
                libc::close(fd);
            }
            (fd >= 0, err)
        };
        let (ok, err) = socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0);
        check(0, !ok && err == libc::EAFNOSUPPORT);
        let (ok, err) = socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0);
        check(1, !ok && err == libc::EAFNOSUPPORT);
        let (ok, _) = socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        check(2, ok);
        let (ok, _) = socket(libc::AF_INET6, libc::SOCK_DGRAM, 0);
        check(3, ok);
        let (ok, _) = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE);
        check(4, ok);

        let mut pair = [-1; 2];
        let made = libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr());
        check(5, made == 0);
        if made == 0 {
            libc::close(pair[0]);
            libc::close(pair[1]);
        }
        let made = libc::socketpair(libc::AF_VSOCK, libc::SOCK_STREAM, 0, pair.as_mut_ptr());
        check(6, made == -1 && errno() == libc::EAFNOSUPPORT);

        // High bits in the family register: the kernel and the filter both
        // look at the low 32 bits only.
        let fd = libc::syscall(libc::SYS_socket, (1i64 << 32) | 40, 1, 0);
        check(7, fd == -1 && errno() == libc::EAFNOSUPPORT);
        let fd = libc::syscall(libc::SYS_socket, (1i64 << 32) | 2, 1, 0);
        check(8, fd >= 0);
        if fd >= 0 {
            libc::close(fd as i32);
        }

        let mut params = [0u8; 120]; // struct io_uring_params
        let ring = libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr());
        check(9, ring == -1 && errno() == libc::EPERM);
        // Without the filter these would fail with EBADF.
        let r = libc::syscall(libc::SYS_io_uring_enter, -1, 0, 0, 0, 0, 0);
        check(10, r == -1 && errno() == libc::EPERM);
        let r = libc::syscall(libc::SYS_io_uring_register, -1, 0, 0, 0);
        check(11, r == -1 && errno() == libc::EPERM);

        check(12, libc::getpid() > 0);
        #[cfg(target_arch = "x86_64")]
        {
            // x32 getpid: ENOSYS, whether or not the kernel has x32.
            let r = libc::syscall(0x4000_0000 | libc::SYS_getpid);
            check(13, r == -1 && errno() == libc::ENOSYS);
        }
        check(14, libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
        check(15, libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) == 2);
    }
    failed
}

#[test]
fn filter_in_a_child() {
    let status = in_filtered_child(true, live_checks);
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "1 + number of the first failed check (99: install failed)"
    );
}

/// i386 `int 0x80` getpid.
#[cfg(target_arch = "x86_64")]
fn int80_getpid() -> i32 {
    let ret: i64;
    // SAFETY: i386 getpid (20) through the compat gate: no memory is
    // touched. The compat entry clobbers no registers but eax (and the
    // r8-r11 it zeroes), which are declared.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") 20i64 => ret,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack)
        );
    }
    if ret > 0 {
        0
    } else {
        1
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn foreign_abi_is_killed() {
    // Only meaningful if the kernel runs i386 calls at all.
    let plain = in_filtered_child(false, int80_getpid);
    if !(libc::WIFEXITED(plain) && libc::WEXITSTATUS(plain) == 0) {
        eprintln!("no i386 emulation here ({plain:#x}); skipping");
        return;
    }
    let status = in_filtered_child(true, int80_getpid);
    assert!(libc::WIFSIGNALED(status), "child survived: {status:#x}");
    assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
}
