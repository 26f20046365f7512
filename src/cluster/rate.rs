//! Rate limits shared by every replica: GCRA, as governor computes it in a
//! single process, in one Lua script per request that takes the request from
//! the task's policy-wide bucket and its rule's bucket together, and updates
//! both only when both have room. Time is Redis's own (`TIME`), so the
//! replicas' clocks do not matter.

use super::keys;
use crate::policy::model::Rate;
use crate::policy::{Policy, Rule};
use crate::ratelimit::{round_up_secs, Limited};
use redis::{Cmd, Script};
use std::sync::LazyLock;
use std::time::Duration;

/// GCRA over up to two buckets. A bucket holds its theoretical arrival time
/// (TAT, Unix µs); a request at `now` conforms when `now >= tat - tau`, where
/// `t` is the emission interval (`per / requests`) and `tau = t * (burst - 1)`,
/// after which `tat = max(tat, now) + t`. A missing bucket is a full one
/// (`tat = now`); a bucket expires when its TAT passes, which is when it is
/// full again, so idle tasks leave nothing behind.
///
/// KEYS: the buckets. ARGV: `t` and `tau` (µs) of each, in order.
/// Returns `{0, 0}` (taken from every bucket), or `{i, wait_us}`: bucket `i`
/// (1-based) refuses, nothing was taken, and it has room in `wait_us`.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local next_tat = {}
for i, key in ipairs(KEYS) do
  local t = tonumber(ARGV[2 * i - 1])
  local tau = tonumber(ARGV[2 * i])
  local stored = redis.call('GET', key)
  local tat = now
  if stored then
    tat = tonumber(stored)
    -- A bucket that is not a number is an error, not a full bucket.
    if not tat then
      return redis.error_reply('tollgate: unreadable rate bucket ' .. key)
    end
  end
  if now < tat - tau then
    return {i, tat - tau - now}
  end
  next_tat[i] = math.max(tat, now) + t
end
-- Every bucket had room: only now is any of them updated.
for i, key in ipairs(KEYS) do
  -- %.0f: tostring would print a 16-digit number in exponent form.
  local ttl_ms = math.ceil((next_tat[i] - now) / 1000)
  redis.call('SET', key, string.format('%.0f', next_tat[i]), 'PX', ttl_ms)
end
return {0, 0}
";

/// The script (sent by hash; see [`super::scripts`]).
pub static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA));

/// One bucket a request is taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Its key.
    pub key: String,
    /// Emission interval, µs.
    pub interval_us: u64,
    /// Tolerance (`interval * (burst - 1)`), µs.
    pub tolerance_us: u64,
    /// `policy NAME` or ``rule `NAME` ``, as a refusal names it.
    pub label: String,
}

/// The interval and tolerance of `rate`, as governor's
/// `Quota::with_period(per / requests).allow_burst(burst)`; `None` where
/// governor makes no limiter either. The interval is rounded up to whole µs
/// (governor counts ns): never more admitted than in a single process.
fn gcra(rate: &Rate) -> Option<(u64, u64)> {
    if rate.requests == 0 || rate.burst == 0 {
        return None;
    }
    let period = rate.per / rate.requests;
    if period.is_zero() {
        return None;
    }
    let interval = period.as_nanos().div_ceil(1000).max(1);
    let interval = u64::try_from(interval).ok()?;
    Some((interval, interval.saturating_mul(u64::from(rate.burst - 1))))
}

/// The buckets a request of `task` under `rule` of `policy` is taken from:
/// the policy's, then the rule's.
pub fn buckets(policy: &Policy, rule: &Rule, task: &str) -> Vec<Bucket> {
    let mut out = Vec::new();
    if let Some((interval_us, tolerance_us)) = policy.rate.as_ref().and_then(gcra) {
        out.push(Bucket {
            key: keys::rate_policy(task, &policy.name),
            interval_us,
            tolerance_us,
            label: format!("policy {}", policy.name),
        });
    }
    if let Some((interval_us, tolerance_us)) = rule.rate.as_ref().and_then(gcra) {
        out.push(Bucket {
            key: keys::rate_rule(task, &policy.name, &rule.name),
            interval_us,
            tolerance_us,
            label: format!("rule `{}`", rule.name),
        });
    }
    out
}

/// The script's call for `buckets` (not empty).
pub fn command(buckets: &[Bucket]) -> Cmd {
    let keys: Vec<&str> = buckets.iter().map(|b| b.key.as_str()).collect();
    let args: Vec<u64> = buckets
        .iter()
        .flat_map(|b| [b.interval_us, b.tolerance_us])
        .collect();
    super::scripts::evalsha(&SCRIPT, &keys, args)
}

/// What the script's answer `(bucket, wait_us)` means for `buckets`.
pub fn verdict(buckets: &[Bucket], (bucket, wait_us): (i64, i64)) -> Result<(), Limited> {
    let Some(index) = usize::try_from(bucket).ok().and_then(|i| i.checked_sub(1)) else {
        return Ok(());
    };
    let label = buckets
        .get(index)
        .map_or_else(|| "the task".to_string(), |b| b.label.clone());
    let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
    Err(Limited {
        limit: label,
        retry_after_secs: round_up_secs(wait),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_follow_governor_quotas() {
        let rate = |requests, per_secs, burst| Rate {
            requests,
            per: Duration::from_secs(per_secs),
            burst,
        };
        // 10 a minute, burst 10: one every 6 s, nine more at once.
        assert_eq!(gcra(&rate(10, 60, 10)), Some((6_000_000, 54_000_000)));
        assert_eq!(gcra(&rate(3, 1, 1)), Some((333_334, 0)), "rounded up");
        assert_eq!(gcra(&rate(0, 1, 1)), None);
    }

    #[test]
    fn the_refusing_bucket_is_named_with_a_whole_second_wait() {
        let b = |label: &str| Bucket {
            key: String::new(),
            interval_us: 1,
            tolerance_us: 0,
            label: label.into(),
        };
        let buckets = [b("policy p"), b("rule `r`")];
        assert_eq!(verdict(&buckets, (0, 0)), Ok(()));
        let refused = verdict(&buckets, (2, 1_500_000)).unwrap_err();
        assert_eq!(refused.limit, "rule `r`");
        assert_eq!(refused.retry_after_secs, 2);
        assert_eq!(verdict(&buckets, (1, 0)).unwrap_err().retry_after_secs, 1);
    }
}
