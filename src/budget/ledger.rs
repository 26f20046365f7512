//! What each task has used of its budgets, behind one small interface
//! ([`Ledger`], [`Account`]) so that cluster mode can keep the same numbers in
//! Redis. [`LocalLedger`] keeps them in this process: one set of atomic
//! counters per task, found once per request and then charged without a lock.
//!
//! A budget is checked before a request goes out and charged as the exchange
//! goes: a request is refused when the use before it has reached the limit
//! (use ≥ limit), so `requests: 3` lets exactly three out, and the request that
//! crosses a byte or token limit finishes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One thing a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Meter {
    /// Requests that went upstream.
    Requests,
    /// Request body bytes sent upstream.
    BytesUp,
    /// Response body bytes sent to the sandbox.
    BytesDown,
    /// LLM tokens, input and output.
    LlmTokens,
    /// LLM spend, in millionths of a US dollar.
    LlmMicroUsd,
}

impl Meter {
    /// Every meter, in the order budgets are reported.
    pub const ALL: [Meter; 5] = [
        Meter::Requests,
        Meter::BytesUp,
        Meter::BytesDown,
        Meter::LlmTokens,
        Meter::LlmMicroUsd,
    ];

    /// The name in `GET /v1/tasks/{id}`, metrics and audit records.
    pub fn name(self) -> &'static str {
        match self {
            Meter::Requests => "requests",
            Meter::BytesUp => "bytes_up",
            Meter::BytesDown => "bytes_down",
            Meter::LlmTokens => "llm_tokens",
            Meter::LlmMicroUsd => "llm_usd",
        }
    }

    /// Its place in [`Meter::ALL`].
    pub fn index(self) -> usize {
        match self {
            Meter::Requests => 0,
            Meter::BytesUp => 1,
            Meter::BytesDown => 2,
            Meter::LlmTokens => 3,
            Meter::LlmMicroUsd => 4,
        }
    }
}

/// A task's limits; `None`: that meter is not limited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits([Option<u64>; 5]);

impl Limits {
    /// No limit at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// These limits with `meter` limited to `limit`.
    pub fn with(mut self, meter: Meter, limit: u64) -> Self {
        self.0[meter.index()] = Some(limit);
        self
    }

    /// The limit of `meter`.
    pub fn get(&self, meter: Meter) -> Option<u64> {
        self.0[meter.index()]
    }

    /// Whether nothing is limited (no counting is needed).
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

/// Use and limit of one meter, as `GET /v1/tasks/{id}` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Used {
    /// Used so far.
    pub used: u64,
    /// The limit.
    pub limit: u64,
}

/// One task's account.
pub trait Account: Send + Sync + std::fmt::Debug {
    /// The first limited meter whose use has reached its limit, skipping the
    /// meters `lifted` says an operator's grant lifts for now.
    fn exceeded(&self, limits: &Limits, lifted: &dyn Fn(Meter) -> bool) -> Option<Meter> {
        Meter::ALL.into_iter().find(|&meter| {
            limits
                .get(meter)
                .is_some_and(|limit| self.used(meter) >= limit && !lifted(meter))
        })
    }
    /// Adds `amount` to `meter`.
    fn charge(&self, meter: Meter, amount: u64);
    /// What has been used of `meter`.
    fn used(&self, meter: Meter) -> u64;
}

/// Where accounts live: this process, or (cluster mode) a shared store.
pub trait Ledger: Send + Sync + std::fmt::Debug {
    /// The account of `task`, created empty on first use.
    fn account(&self, task: &str) -> Arc<dyn Account>;
    /// Drops `task`'s account (it ended).
    fn forget(&self, task: &str);
    /// Cluster mode: takes `task`'s use as just read from the shared store
    /// (`totals`, one per meter in [`Meter::ALL`] order), and the task's
    /// expiry (Unix seconds) if it has one. Nothing to do for accounts kept
    /// in this process.
    fn observe(&self, _task: &str, _expires_at: Option<u64>, _totals: &[u64; 5]) {}
}

/// Use and limit of every limited meter of `account`.
pub fn report(account: &dyn Account, limits: &Limits) -> Vec<(Meter, Used)> {
    Meter::ALL
        .iter()
        .filter_map(|&meter| {
            limits.get(meter).map(|limit| {
                (
                    meter,
                    Used {
                        used: account.used(meter),
                        limit,
                    },
                )
            })
        })
        .collect()
}

/// Counters of one task in this process.
#[derive(Debug, Default)]
struct Counters([AtomicU64; 5]);

impl Account for Counters {
    fn charge(&self, meter: Meter, amount: u64) {
        saturating_add(&self.0[meter.index()], amount);
    }

    fn used(&self, meter: Meter) -> u64 {
        self.0[meter.index()].load(Ordering::Relaxed)
    }
}

/// Adds `amount` to `counter` without wrapping: a counter pinned at the top
/// stays refused.
pub fn saturating_add(counter: &AtomicU64, amount: u64) {
    let mut current = counter.load(Ordering::Relaxed);
    loop {
        let next = current.saturating_add(amount);
        match counter.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

/// Accounts kept in this process's memory (without `cluster:`; in cluster
/// mode `crate::cluster::ledger::SharedLedger` keeps them in Redis).
#[derive(Default)]
pub struct LocalLedger {
    accounts: Mutex<HashMap<String, Arc<Counters>>>,
}

impl std::fmt::Debug for LocalLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLedger").finish_non_exhaustive()
    }
}

impl Ledger for LocalLedger {
    fn account(&self, task: &str) -> Arc<dyn Account> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = accounts.get(task) {
            return found.clone();
        }
        let fresh = Arc::new(Counters::default());
        accounts.insert(task.to_string(), fresh.clone());
        fresh
    }

    fn forget(&self, task: &str) {
        self.accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none_lifted(_: Meter) -> bool {
        false
    }

    #[test]
    fn three_requests_let_exactly_three_out() {
        let ledger = LocalLedger::default();
        let limits = Limits::none().with(Meter::Requests, 3);
        let account = ledger.account("t1");
        let mut sent = 0;
        for _ in 0..10 {
            if account.exceeded(&limits, &none_lifted).is_some() {
                break;
            }
            account.charge(Meter::Requests, 1);
            sent += 1;
        }
        assert_eq!(sent, 3);
        assert_eq!(
            account.exceeded(&limits, &none_lifted),
            Some(Meter::Requests)
        );
        // A grant lifts that budget; another task has its own account.
        assert_eq!(account.exceeded(&limits, &|m| m == Meter::Requests), None);
        assert_eq!(ledger.account("t2").exceeded(&limits, &none_lifted), None);
        // The same account is found again; a forgotten task starts over.
        assert_eq!(ledger.account("t1").used(Meter::Requests), 3);
        ledger.forget("t1");
        assert_eq!(ledger.account("t1").used(Meter::Requests), 0);
    }

    #[test]
    fn the_request_that_crosses_a_byte_limit_finishes_and_the_next_is_refused() {
        let limits = Limits::none().with(Meter::BytesUp, 100);
        let account = LocalLedger::default().account("t");
        assert_eq!(account.exceeded(&limits, &none_lifted), None);
        account.charge(Meter::BytesUp, 99);
        assert_eq!(account.exceeded(&limits, &none_lifted), None);
        account.charge(Meter::BytesUp, 5_000);
        assert_eq!(
            account.exceeded(&limits, &none_lifted),
            Some(Meter::BytesUp)
        );
        account.charge(Meter::BytesUp, u64::MAX);
        assert_eq!(account.used(Meter::BytesUp), u64::MAX, "saturates");
        let shown = report(&*account, &limits);
        assert_eq!(
            shown,
            vec![(
                Meter::BytesUp,
                Used {
                    used: u64::MAX,
                    limit: 100
                }
            )]
        );
        assert!(Limits::none().is_empty() && !limits.is_empty());
    }

    #[test]
    fn charges_from_many_threads_all_count() {
        let account = LocalLedger::default().account("t");
        std::thread::scope(|s| {
            for _ in 0..4 {
                let account = account.clone();
                s.spawn(move || {
                    for _ in 0..10_000 {
                        account.charge(Meter::LlmTokens, 3);
                    }
                });
            }
        });
        assert_eq!(account.used(Meter::LlmTokens), 120_000);
    }
}
