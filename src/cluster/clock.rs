//! Redis's clock, as this replica sees it. Hold leases and grants are scored
//! in Unix milliseconds that every replica compares; read off each replica's
//! own clock, a replica whose clock ran ahead would withdraw the others' holds
//! early. So the health check reads Redis's `TIME` several times a second and
//! keeps the difference; [`now_ms`] is this machine's clock plus it (good to
//! within half a round trip). Until Redis has answered once it is the
//! machine's own clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Redis's clock minus this machine's, in milliseconds.
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

fn local_ms(at: SystemTime) -> i64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch on Redis's clock.
pub fn now_ms() -> u64 {
    let now = local_ms(SystemTime::now()).saturating_add(OFFSET_MS.load(Ordering::Relaxed));
    u64::try_from(now).unwrap_or(0)
}

/// Records that Redis said `(seconds, microseconds)` (its `TIME`) to a
/// request sent at `sent` and answered after `rtt`.
pub fn observe(time: (u64, u64), sent: SystemTime, rtt: Duration) {
    OFFSET_MS.store(offset(time, sent, rtt), Ordering::Relaxed);
}

/// Redis's time minus the local time at the middle of the round trip.
fn offset((secs, micros): (u64, u64), sent: SystemTime, rtt: Duration) -> i64 {
    let redis =
        i64::try_from(secs.saturating_mul(1000).saturating_add(micros / 1000)).unwrap_or(i64::MAX);
    let middle = local_ms(sent + rtt / 2);
    redis.saturating_sub(middle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_taken_at_the_middle_of_the_round_trip() {
        let sent = UNIX_EPOCH + Duration::from_millis(1_000_000);
        // Redis 5 s ahead, answering 10 ms after the request left.
        let time = (1_005, 5_000);
        assert_eq!(offset(time, sent, Duration::from_millis(10)), 5_000);
        // Redis behind.
        assert_eq!(offset((990, 0), sent, Duration::ZERO), -10_000);
    }
}
