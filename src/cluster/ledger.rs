//! Budgets shared by every replica: each task's use is a Redis hash (one
//! field per meter), added to with `HINCRBY`, so charges from any number of
//! replicas all count.
//!
//! Charging stays where it was, in the byte-counting and usage-reading paths
//! that run synchronously: a charge only adds to this replica's unsent
//! amount (an atomic, no lock, no I/O), and a background task sends the unsent
//! amounts of every task in one transaction every [`FLUSH_EVERY`]. When Redis
//! does not answer, the amounts stay unsent and go with the next flush: nothing
//! charged is lost (an answer lost after Redis applied the transaction counts
//! twice, which errs on the refusing side).
//!
//! Before a request the task's totals are read from Redis (in the same round
//! trip as its rate limit: [`read`]) and [`Ledger::observe`]d, so a budget used
//! up through one replica is refused on every other one, give or take what
//! the fleet charged in the last [`FLUSH_EVERY`].

use super::{keys, Cluster, ClusterUnavailable};
use crate::budget::ledger::{saturating_add, Account, Ledger, Meter};
use redis::Cmd;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often unsent charges are sent.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// How long a task's hash is kept past its expiry.
const KEEP_AFTER_EXPIRY_SECS: u64 = 3600;
/// How long the hash of a task without expiry (a static task) is kept after
/// its last charge.
const KEEP_WITHOUT_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);

/// The accounts of every task this replica has seen, in Redis.
#[derive(Clone, Default)]
pub struct SharedLedger {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    accounts: Mutex<HashMap<String, Arc<SharedAccount>>>,
    /// Whether some account has unsent charges.
    dirty: Arc<AtomicBool>,
}

impl std::fmt::Debug for SharedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLedger").finish_non_exhaustive()
    }
}

/// One task's account on this replica.
#[derive(Debug, Default)]
struct SharedAccount {
    task: String,
    /// The totals last read from (or written to) Redis.
    seen: [AtomicU64; 5],
    /// Amounts in a flush that has not been answered yet.
    sending: [AtomicU64; 5],
    /// Amounts charged here and not sent yet.
    unsent: [AtomicU64; 5],
    /// Whether `unsent` holds anything.
    dirty: AtomicBool,
    /// The ledger's flag of the same name.
    ledger_dirty: Arc<AtomicBool>,
    /// Task expiry (Unix seconds); 0: none known.
    expires_at: AtomicU64,
}

impl Account for SharedAccount {
    fn charge(&self, meter: Meter, amount: u64) {
        if amount == 0 {
            return;
        }
        saturating_add(&self.unsent[meter.index()], amount);
        if !self.dirty.load(Ordering::SeqCst) {
            self.dirty.store(true, Ordering::SeqCst);
            self.ledger_dirty.store(true, Ordering::SeqCst);
        }
    }

    fn used(&self, meter: Meter) -> u64 {
        let i = meter.index();
        // While a flush is answered this may count its amounts twice, never
        // not at all.
        self.seen[i]
            .load(Ordering::Relaxed)
            .saturating_add(self.sending[i].load(Ordering::Relaxed))
            .saturating_add(self.unsent[i].load(Ordering::Relaxed))
    }
}

impl SharedAccount {
    /// Moves the unsent amounts to `sending` and returns them.
    fn take_unsent(&self) -> [u64; 5] {
        self.dirty.store(false, Ordering::SeqCst);
        std::array::from_fn(|i| {
            let amount = self.unsent[i].load(Ordering::Acquire);
            // Counted in `sending` before it leaves `unsent`.
            saturating_add(&self.sending[i], amount);
            self.unsent[i].fetch_sub(amount, Ordering::AcqRel);
            amount
        })
    }

    /// A flush of `amounts` failed: they are unsent again.
    fn restore(&self, amounts: &[u64; 5]) {
        for (i, &amount) in amounts.iter().enumerate() {
            saturating_add(&self.unsent[i], amount);
            self.sending[i].fetch_sub(amount, Ordering::AcqRel);
        }
        self.dirty.store(true, Ordering::SeqCst);
        self.ledger_dirty.store(true, Ordering::SeqCst);
    }

    fn saw(&self, meter: usize, total: u64) {
        self.seen[meter].fetch_max(total, Ordering::AcqRel);
    }
}

impl Ledger for SharedLedger {
    fn account(&self, task: &str) -> Arc<dyn Account> {
        self.shared(task)
    }

    fn forget(&self, task: &str) {
        self.accounts().remove(task);
    }

    fn observe(&self, task: &str, expires_at: Option<u64>, totals: &[u64; 5]) {
        let account = self.shared(task);
        if let Some(exp) = expires_at {
            account.expires_at.store(exp, Ordering::Relaxed);
        }
        for (i, &total) in totals.iter().enumerate() {
            account.saw(i, total);
        }
    }
}

impl SharedLedger {
    fn accounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SharedAccount>>> {
        self.inner
            .accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn shared(&self, task: &str) -> Arc<SharedAccount> {
        let mut accounts = self.accounts();
        if let Some(found) = accounts.get(task) {
            return found.clone();
        }
        let fresh = Arc::new(SharedAccount {
            task: task.to_string(),
            ledger_dirty: self.inner.dirty.clone(),
            ..SharedAccount::default()
        });
        accounts.insert(task.to_string(), fresh.clone());
        fresh
    }

    /// Sends the unsent charges of every task every [`FLUSH_EVERY`], until
    /// `stop` and then for `drain` more (the exchanges that finish during a
    /// drain are charged too).
    pub fn spawn_flusher(&self, cluster: Arc<Cluster>, stop: CancellationToken, drain: Duration) {
        let ledger = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut until = None;
            loop {
                tick.tick().await;
                if until.is_none() && stop.is_cancelled() {
                    until = Some(tokio::time::Instant::now() + drain);
                }
                if let Err(err) = ledger.flush(&cluster).await {
                    tracing::warn!(error = %err, "budget charges not sent to the cluster yet; kept for the next try");
                }
                if until.is_some_and(|u| tokio::time::Instant::now() >= u) {
                    return;
                }
            }
        });
    }

    /// Sends every unsent charge in one transaction.
    pub async fn flush(&self, cluster: &Cluster) -> Result<(), ClusterUnavailable> {
        if !self.inner.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let dirty: Vec<Arc<SharedAccount>> = self
            .accounts()
            .values()
            .filter(|a| a.dirty.load(Ordering::SeqCst))
            .cloned()
            .collect();
        let batch: Vec<(Arc<SharedAccount>, [u64; 5])> = dirty
            .into_iter()
            .map(|a| {
                let amounts = a.take_unsent();
                (a, amounts)
            })
            .filter(|(_, amounts)| amounts.iter().any(|&n| n > 0))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (account, amounts) in &batch {
            let key = keys::budget(&account.task);
            for (meter, &amount) in Meter::ALL.iter().zip(amounts) {
                if amount > 0 {
                    // HINCRBY takes a signed 64-bit amount.
                    let amount = i64::try_from(amount).unwrap_or(i64::MAX);
                    pipe.hincr(&key, meter.name(), amount);
                }
            }
            match account.expires_at.load(Ordering::Relaxed) {
                0 => pipe.expire(&key, KEEP_WITHOUT_EXPIRY.as_secs() as i64),
                exp => pipe.expire_at(
                    &key,
                    i64::try_from(exp.saturating_add(KEEP_AFTER_EXPIRY_SECS)).unwrap_or(i64::MAX),
                ),
            }
            .ignore();
        }
        let totals: Result<Vec<i64>, _> = pipe.query_async(&mut cluster.conn()).await;
        let totals = match totals {
            Ok(totals) => totals,
            Err(err) => {
                for (account, amounts) in &batch {
                    account.restore(amounts);
                }
                return Err(err.into());
            }
        };
        cluster.answered();
        let mut totals = totals.into_iter();
        for (account, amounts) in &batch {
            for (i, &amount) in amounts.iter().enumerate() {
                if amount > 0 {
                    let total = totals.next().unwrap_or_default();
                    account.saw(i, u64::try_from(total).unwrap_or(0));
                    account.sending[i].fetch_sub(amount, Ordering::AcqRel);
                }
            }
        }
        Ok(())
    }
}

/// The command that reads `task`'s totals (an `HMGET`; see [`totals`]).
pub fn read(task: &str) -> Cmd {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(keys::budget(task));
    for meter in Meter::ALL {
        cmd.arg(meter.name());
    }
    cmd
}

/// The totals in the answer to [`read`]; a missing field is 0.
pub fn totals(fields: &[Option<u64>]) -> [u64; 5] {
    std::array::from_fn(|i| fields.get(i).copied().flatten().unwrap_or(0))
}

/// Reads `task`'s totals from Redis into `ledger` (one round trip).
pub async fn refresh(
    cluster: &Cluster,
    ledger: &dyn Ledger,
    task: &str,
    expires_at: Option<u64>,
) -> Result<(), ClusterUnavailable> {
    let fields: Vec<Option<u64>> = read(task).query_async(&mut cluster.conn()).await?;
    cluster.answered();
    ledger.observe(task, expires_at, &totals(&fields));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_counts_unsent_sending_and_seen_amounts_and_a_failed_flush_keeps_them() {
        let ledger = SharedLedger::default();
        let account = ledger.shared("t");
        account.charge(Meter::Requests, 2);
        assert_eq!(account.used(Meter::Requests), 2);
        assert!(ledger.inner.dirty.load(Ordering::Relaxed));
        let amounts = account.take_unsent();
        assert_eq!(amounts[Meter::Requests.index()], 2);
        assert_eq!(account.used(Meter::Requests), 2, "in flight still counts");
        account.restore(&amounts);
        assert_eq!(account.used(Meter::Requests), 2, "nothing lost");
        assert_eq!(
            account.unsent[Meter::Requests.index()].load(Ordering::Relaxed),
            2
        );
        ledger.observe("t", Some(10), &[5, 0, 0, 0, 0]);
        assert_eq!(account.used(Meter::Requests), 7, "others' use and ours");
        ledger.observe("t", None, &[4, 0, 0, 0, 0]);
        assert_eq!(account.used(Meter::Requests), 7, "totals never go back");
        assert_eq!(totals(&[Some(3), None]), [3, 0, 0, 0, 0]);
    }
}
