//! A seccomp filter that keeps CMD to the socket families the sandbox can
//! police.
//!
//! The sandbox's network namespace and its nftables rules only see families
//! that network namespaces scope. Others do not: `AF_VSOCK` reaches the
//! hypervisor host (CID 2) on Firecracker, Kata and cloud VMs whatever the
//! namespace, and families such as `AF_TIPC`, `AF_RDS`, `AF_CAN`,
//! `AF_BLUETOOTH`, `AF_XDP` or `AF_PACKET` have no business in a sandbox whose
//! only way out is the proxy. io_uring can create sockets without `socket(2)`
//! (`IORING_OP_SOCKET`), so it is refused outright.
//!
//! [`restrict_socket_families`] installs, on the calling process, a classic-BPF
//! filter that:
//!
//! 1. kills the process (`SECCOMP_RET_KILL_PROCESS`) when a system call comes
//!    in through another ABI than the native one (`AUDIT_ARCH_X86_64` or
//!    `AUDIT_ARCH_AARCH64`). This covers i386 `int 0x80` calls on x86_64 —
//!    whose `socketcall(2)` hides the family behind a pointer no filter can
//!    read — and AArch32 tasks on aarch64;
//! 2. on x86_64, fails every x32 system call (number with bit 30,
//!    `__X32_SYSCALL_BIT`, set) with `ENOSYS`: x32 calls carry the x86_64
//!    audit arch, so step 1 lets them through, and `socket` is numbered
//!    differently there;
//! 3. lets `socket(2)` and `socketpair(2)` through only for `AF_UNIX`,
//!    `AF_INET`, `AF_INET6` and `AF_NETLINK`, failing any other family with
//!    `EAFNOSUPPORT` — the errno of a kernel built without that family, which
//!    programs already handle;
//! 4. fails `io_uring_setup`, `io_uring_enter` and `io_uring_register` with
//!    `EPERM`, as the kernel does when `kernel.io_uring_disabled` forbids
//!    io_uring (libuv and liburing users fall back to plain system calls);
//! 5. allows everything else.
//!
//! Seccomp filters are inherited across `fork` and `execve` and cannot be
//! removed, so everything CMD starts stays under the filter. A filter CMD adds
//! can only make things stricter: the kernel takes the most restrictive answer.
//!
//! Supported on x86_64 and little-endian aarch64 (see [`SUPPORTED`]); elsewhere
//! [`restrict_socket_families`] fails rather than run CMD unfiltered.

/// Whether [`restrict_socket_families`] is implemented for this target. Where
/// it is not, the function returns an error (fail closed); a caller that would
/// rather run unfiltered there can check this first.
pub const SUPPORTED: bool = imp::SUPPORTED;

/// Installs the socket-family filter (see the module docs) on the calling
/// process, and everything it later starts.
///
/// It first sets `no_new_privs` (`prctl(PR_SET_NO_NEW_PRIVS, 1)`), which an
/// unprivileged process needs to install a filter at all, and which for a root
/// CMD only stops setuid/setgid bits and file capabilities from granting more
/// than it already has — it keeps its current privileges.
///
/// The filter applies to the calling thread and its future children only (no
/// `SECCOMP_FILTER_FLAG_TSYNC`): call it from a single-threaded process, just
/// before `execve` of CMD. It allocates nothing unless it fails.
///
/// # Errors
///
/// When the kernel refuses `no_new_privs` or the filter (for example a kernel
/// built without `CONFIG_SECCOMP_FILTER`), or on an unsupported architecture.
pub fn restrict_socket_families() -> Result<(), String> {
    imp::install()
}

#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
mod imp {
    use libc::sock_filter;

    pub(super) const SUPPORTED: bool = true;

    /// `AUDIT_ARCH_X86_64` of <linux/audit.h>:
    /// `EM_X86_64 (62) | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    /// `AUDIT_ARCH_AARCH64` of <linux/audit.h>:
    /// `EM_AARCH64 (183) | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

    /// `__X32_SYSCALL_BIT` of <asm/unistd.h> on x86_64: x32 system call
    /// numbers have it set; native x86_64 numbers never reach it.
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    /// One instruction for the x32 check on x86_64, none elsewhere.
    const X32: usize = if cfg!(target_arch = "x86_64") { 1 } else { 0 };

    /// Offsets into `struct seccomp_data` of <linux/seccomp.h>, which the
    /// filter reads with `BPF_LD | BPF_W | BPF_ABS`.
    const OFF_NR: u32 = std::mem::offset_of!(libc::seccomp_data, nr) as u32;
    const OFF_ARCH: u32 = std::mem::offset_of!(libc::seccomp_data, arch) as u32;
    /// The low 32 bits of `args[0]` (this module is built for little-endian
    /// targets only, where they come first). `args` are 64-bit, but the
    /// family is an `int`: the kernel's `socket`/`socketpair` entry points
    /// truncate the register to 32 bits, so the upper word cannot change
    /// which family is created and must not be compared — libc may leave
    /// garbage or a sign extension there.
    const OFF_ARG0_LOW: u32 = std::mem::offset_of!(libc::seccomp_data, args) as u32;

    /// The system calls whose first argument is a socket family.
    const SOCKET_CALLS: [libc::c_long; 2] = [libc::SYS_socket, libc::SYS_socketpair];
    /// Every io_uring system call (Linux 5.1 on). On kernels without them,
    /// the filter only turns `ENOSYS` into `EPERM`.
    const IO_URING_CALLS: [libc::c_long; 3] = [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ];
    /// The families CMD may create sockets of: IP and netlink, which the
    /// network namespace scopes and its rules police, and local `AF_UNIX`
    /// (abstract names are per network namespace; path names reach what the
    /// sandbox's filesystem shows, which is not this filter's business).
    const ALLOWED_FAMILIES: [i32; 4] = [
        libc::AF_UNIX,
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_NETLINK,
    ];

    // `SECCOMP_RET_*` of <linux/seccomp.h>. `SECCOMP_RET_KILL_PROCESS` needs
    // Linux 4.14; older kernels read it as `SECCOMP_RET_KILL` (the thread).
    const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const RET_KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    const RET_EAFNOSUPPORT: u32 = libc::SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32;
    const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    // The program's layout: the index of each instruction or block.
    const LOAD_ARCH: usize = 0;
    const CHECK_ARCH: usize = LOAD_ARCH + 1;
    const LOAD_NR: usize = CHECK_ARCH + 1;
    const CHECK_X32: usize = LOAD_NR + 1;
    const CHECK_SOCKET: usize = CHECK_X32 + X32;
    const CHECK_IO_URING: usize = CHECK_SOCKET + SOCKET_CALLS.len();
    const OTHERWISE_ALLOW: usize = CHECK_IO_URING + IO_URING_CALLS.len();
    const LOAD_FAMILY: usize = OTHERWISE_ALLOW + 1;
    const CHECK_FAMILY: usize = LOAD_FAMILY + 1;
    const DENY_FAMILY: usize = CHECK_FAMILY + ALLOWED_FAMILIES.len();
    const ALLOW: usize = DENY_FAMILY + 1;
    const DENY_EPERM: usize = ALLOW + 1;
    const DENY_ENOSYS: usize = DENY_EPERM + 1;
    const KILL: usize = DENY_ENOSYS + X32;
    /// Number of instructions.
    pub(super) const LEN: usize = KILL + 1;

    // Every jump offset is below LEN, so it fits the u8 of `jt`/`jf`, and the
    // length fits the u16 of `sock_fprog.len`.
    const _: () = assert!(LEN <= u8::MAX as usize);

    /// The filter. Built at compile time; any jump that would go backwards
    /// fails the build (const evaluation rejects the underflow).
    pub(super) const PROGRAM: [sock_filter; LEN] = build();

    const fn stmt(code: u32, k: u32) -> sock_filter {
        sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    /// `BPF_LD | BPF_W | BPF_ABS`: load the 32-bit word at `offset` of
    /// `seccomp_data` into A.
    const fn load(offset: u32) -> sock_filter {
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
    }

    /// `BPF_RET | BPF_K`: the filter's verdict.
    const fn ret(action: u32) -> sock_filter {
        stmt(libc::BPF_RET | libc::BPF_K, action)
    }

    /// A conditional jump at index `at` to index `yes` when A `op` k holds,
    /// to index `no` otherwise.
    const fn jump(op: u32, k: u32, at: usize, yes: usize, no: usize) -> sock_filter {
        sock_filter {
            code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
            jt: (yes - at - 1) as u8,
            jf: (no - at - 1) as u8,
            k,
        }
    }

    const fn build() -> [sock_filter; LEN] {
        let mut p = [ret(RET_KILL_PROCESS); LEN];
        p[LOAD_ARCH] = load(OFF_ARCH);
        p[CHECK_ARCH] = jump(libc::BPF_JEQ, AUDIT_ARCH, CHECK_ARCH, LOAD_NR, KILL);
        p[LOAD_NR] = load(OFF_NR);
        if X32 == 1 {
            p[CHECK_X32] = jump(
                libc::BPF_JGE,
                X32_SYSCALL_BIT,
                CHECK_X32,
                DENY_ENOSYS,
                CHECK_X32 + 1,
            );
        }
        let mut i = 0;
        while i < SOCKET_CALLS.len() {
            let at = CHECK_SOCKET + i;
            p[at] = jump(
                libc::BPF_JEQ,
                SOCKET_CALLS[i] as u32,
                at,
                LOAD_FAMILY,
                at + 1,
            );
            i += 1;
        }
        let mut i = 0;
        while i < IO_URING_CALLS.len() {
            let at = CHECK_IO_URING + i;
            p[at] = jump(
                libc::BPF_JEQ,
                IO_URING_CALLS[i] as u32,
                at,
                DENY_EPERM,
                at + 1,
            );
            i += 1;
        }
        p[OTHERWISE_ALLOW] = ret(RET_ALLOW);
        p[LOAD_FAMILY] = load(OFF_ARG0_LOW);
        let mut i = 0;
        while i < ALLOWED_FAMILIES.len() {
            let at = CHECK_FAMILY + i;
            p[at] = jump(libc::BPF_JEQ, ALLOWED_FAMILIES[i] as u32, at, ALLOW, at + 1);
            i += 1;
        }
        p[DENY_FAMILY] = ret(RET_EAFNOSUPPORT);
        p[ALLOW] = ret(RET_ALLOW);
        p[DENY_EPERM] = ret(RET_EPERM);
        if X32 == 1 {
            p[DENY_ENOSYS] = ret(RET_ENOSYS);
        }
        p[KILL] = ret(RET_KILL_PROCESS);
        p
    }

    pub(super) fn install() -> Result<(), String> {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(format!(
                "prctl(PR_SET_NO_NEW_PRIVS): {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut filter = PROGRAM;
        let prog = libc::sock_fprog {
            len: LEN as u16,
            filter: filter.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `filter`, LEN valid instructions that
        // outlive the call; the kernel copies the program and keeps no pointer.
        let installed = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if installed != 0 {
            let err = std::io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::EINVAL) {
                format!(
                    "cannot install the socket-family seccomp filter ({err}): \
                     the kernel needs CONFIG_SECCOMP_FILTER"
                )
            } else {
                format!("cannot install the socket-family seccomp filter: {err}")
            });
        }
        Ok(())
    }
}

#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
)))]
mod imp {
    pub(super) const SUPPORTED: bool = false;

    pub(super) fn install() -> Result<(), String> {
        Err(format!(
            "the socket-family seccomp filter is not implemented on {}",
            std::env::consts::ARCH
        ))
    }
}

#[cfg(test)]
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
mod tests;
