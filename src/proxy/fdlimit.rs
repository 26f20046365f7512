//! The file-descriptor limit: every client connection, tunnel and upstream
//! connection holds one or two, and the usual soft limit (1024) is far below
//! what the proxy's own caps allow.

/// Below this many descriptors the proxy runs out long before its caps
/// ([`super::limits::MAX_CLIENT_CONNECTIONS`]), so it warns.
pub const LOW_FD_LIMIT: libc::rlim_t = 4096;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (which an unprivileged
/// process may do), logs the limit in effect at debug level, and warns when it
/// stays below [`LOW_FD_LIMIT`]. Failures are logged, never fatal.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which is valid.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let err = std::io::Error::last_os_error();
        return tracing::warn!(error = %err, "cannot read the open file limit");
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given, which is valid.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            let err = std::io::Error::last_os_error();
            tracing::debug!(error = %err, "cannot raise the open file limit");
        }
    }
    let soft = limit.rlim_cur;
    tracing::debug!(limit = soft, "open file limit");
    if soft < LOW_FD_LIMIT {
        tracing::warn!(
            limit = soft,
            "the open file limit is {soft}, below {LOW_FD_LIMIT}: busy sandboxes may exhaust it (raise the hard limit, e.g. LimitNOFILE= or ulimit -Hn)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        raise_fd_limit();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
