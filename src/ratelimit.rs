//! Request rate limits with governor: a policy's `rate` applies per task, a
//! rule's `rate` per task and rule. Limiters are built once per policy at start.

use crate::error::{Reason, Refusal};
use crate::policy::model::Rate;
use crate::policy::{Policy, PolicySet, Rule};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

/// Which limiter: the policy's own (`None`) or one rule's (its index).
type Scope = (String, Option<usize>);

/// Every configured limiter, keyed by task id inside.
pub struct RateLimits {
    limiters: HashMap<Scope, DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("limiters", &self.limiters.len())
            .finish()
    }
}

/// A refused request: which limit, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// `policy NAME` or `rule NAME`.
    pub limit: String,
    /// Whole seconds until a request would pass, rounded up, at least 1.
    pub retry_after_secs: u64,
}

impl From<Limited> for Refusal {
    fn from(limited: Limited) -> Self {
        let mut refusal = Refusal::new(
            Reason::RateLimited,
            format!(
                "the rate limit of {} is used up; retry in {} s",
                limited.limit, limited.retry_after_secs
            ),
        );
        refusal.retry_after = Some(limited.retry_after_secs);
        refusal
    }
}

fn quota(rate: &Rate) -> Option<Quota> {
    let period = rate.per / rate.requests;
    Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(rate.burst)?))
}

impl RateLimits {
    /// Limiters for every `rate` in `policies`.
    pub fn from_policies(policies: &PolicySet) -> Self {
        let mut limiters = HashMap::new();
        for policy in policies.iter() {
            if let Some(q) = policy.rate.as_ref().and_then(quota) {
                limiters.insert(
                    (policy.name.clone(), None),
                    DefaultKeyedRateLimiter::keyed(q),
                );
            }
            for (index, rule) in policy.rules.iter().enumerate() {
                if let Some(q) = rule.rate.as_ref().and_then(quota) {
                    limiters.insert(
                        (policy.name.clone(), Some(index)),
                        DefaultKeyedRateLimiter::keyed(q),
                    );
                }
            }
        }
        Self {
            limiters,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from the task's policy-wide budget, then from its budget
    /// for `rule`.
    pub fn check(&self, policy: &Policy, rule: &Rule, task: &str) -> Result<(), Limited> {
        if self.limiters.is_empty() {
            return Ok(());
        }
        let task = task.to_string();
        self.take(&(policy.name.clone(), None), &task, || {
            format!("policy {}", policy.name)
        })?;
        if let Some(index) = policy.rules.iter().position(|r| std::ptr::eq(r, rule)) {
            self.take(&(policy.name.clone(), Some(index)), &task, || {
                format!("rule `{}`", rule.name)
            })?;
        }
        Ok(())
    }

    fn take(
        &self,
        scope: &Scope,
        task: &String,
        label: impl FnOnce() -> String,
    ) -> Result<(), Limited> {
        let Some(limiter) = self.limiters.get(scope) else {
            return Ok(());
        };
        limiter
            .check_key(task)
            .map(|_| ())
            .map_err(|not_until| Limited {
                limit: label(),
                retry_after_secs: round_up_secs(not_until.wait_time_from(self.clock.now())),
            })
    }

    /// Drops state of keys that are back at full capacity (ended or idle tasks).
    pub fn forget_idle(&self) {
        for limiter in self.limiters.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// `wait` in whole seconds, rounded up, at least 1 (a `Retry-After`).
pub fn round_up_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;
    use std::path::Path;

    #[test]
    fn burst_then_refused_per_task_and_rule() {
        let text = "name: p\nrate: { requests: 100, per: 1s }\nrules:\n  - name: limited\n    host: a.test\n    rate: { requests: 2, per: 10s }\n  - name: free\n    host: b.test\n";
        let (policy, _) = parse_policy(Path::new("p.yaml"), text).unwrap();
        let limits = RateLimits::from_policies(&PolicySet::from_policies([policy.clone()]));
        let limited = &policy.rules[0];
        assert!(limits.check(&policy, limited, "t1").is_ok());
        assert!(limits.check(&policy, limited, "t1").is_ok());
        let refused = limits.check(&policy, limited, "t1").unwrap_err();
        assert_eq!(refused.limit, "rule `limited`");
        assert!((1..=5).contains(&refused.retry_after_secs), "{refused:?}");
        assert!(
            limits.check(&policy, limited, "t2").is_ok(),
            "another task has its own budget"
        );
        assert!(
            limits.check(&policy, &policy.rules[1], "t1").is_ok(),
            "another rule has its own budget"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(round_up_secs(Duration::from_millis(1)), 1);
        assert_eq!(round_up_secs(Duration::from_millis(1001)), 2);
        assert_eq!(round_up_secs(Duration::from_secs(3)), 3);
        assert_eq!(round_up_secs(Duration::ZERO), 1);
    }
}
