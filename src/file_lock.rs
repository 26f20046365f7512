//! Exclusive file locks that tolerate a lock held a moment too long.

use std::fs::{File, TryLockError};
use std::time::{Duration, Instant};

/// How long a lock held by someone else is retried before giving up.
///
/// A lock taken with `flock` belongs to the open file, and a child process
/// forked by another thread holds a copy of every descriptor until it execs.
/// A file closed a moment ago can therefore still look locked for that long.
const PATIENCE: Duration = Duration::from_millis(300);

/// Takes `file`'s exclusive lock, retrying for a short while if it is held.
pub fn lock_exclusive(file: &File) -> Result<(), TryLockError> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match file.try_lock() {
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}
