//! What every connection shares: policies, tasks, the certificate issuer, the
//! upstream pool, and the shutdown signal.

use super::upstream::Upstream;
use crate::net::Dialer;
use crate::policy::PolicySet;
use crate::tasks::TaskRegistry;
use crate::tls::LeafIssuer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A value replaced whole at runtime (policies on reload); readers take a
/// snapshot that stays valid while they use it.
#[derive(Debug)]
pub struct Swap<T>(std::sync::RwLock<std::sync::Arc<T>>);

impl<T> Swap<T> {
    /// Holds `value`.
    pub fn new(value: T) -> Self {
        Self(std::sync::RwLock::new(std::sync::Arc::new(value)))
    }

    /// The current value.
    pub fn current(&self) -> std::sync::Arc<T> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = std::sync::Arc::new(value);
    }
}

/// Shared proxy state.
#[derive(Debug)]
pub struct ProxyState {
    /// Loaded policies (replaced whole on reload).
    pub policies: Swap<PolicySet>,
    /// Where policies are loaded from.
    pub policies_dir: std::path::PathBuf,
    /// Known tasks.
    pub tasks: TaskRegistry,
    /// Tasks created through this replica's admin API.
    pub created: crate::tasks::CreatedTasks,
    /// Mints and caches leaf certificates.
    pub leaves: LeafIssuer,
    /// Resolves and connects with the private-address check (tunnels).
    pub dialer: Dialer,
    /// Pooled upstream clients.
    pub upstream: Upstream,
    /// Cancelled when the proxy should stop accepting and drain.
    pub shutdown: CancellationToken,
    /// Tracks every connection and spliced stream, for the drain.
    pub tracker: TaskTracker,
    /// Secret values, cached per policy.
    pub secrets: std::sync::Arc<crate::secrets::SecretStore>,
    /// Credentials minted per task (GitHub App tokens, OAuth access tokens).
    pub minter: std::sync::Arc<crate::mint::Minter>,
    /// Secret forms injected per task, scrubbed from all its responses.
    pub injected: crate::inject::InjectedForms,
    /// Request rate limits per task (and rule).
    pub rate_limits: Swap<crate::ratelimit::RateLimits>,
    /// Per-task caps on open tunnels.
    pub tunnel_slots: super::limits::TaskSlots,
    /// Per-task caps on requests in flight (HTTP/2 streams included).
    pub request_slots: super::limits::TaskSlots,
    /// Fired when a task is ended, to close its tunnels.
    pub task_ends: super::limits::TaskEnds,
    /// The audit trail.
    pub audit: crate::audit::Audit,
    /// Requests held for an operator's approval, and `--for` grants.
    pub approvals: crate::approvals::Approvals,
    /// Prometheus metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// What each task has used of its budgets.
    pub budgets: Box<dyn crate::budget::ledger::Ledger>,
    /// SigV4 signing keys, derived once per key, date, region and service.
    pub sigv4_keys: crate::sigv4::SigningKeys,
    /// The emulated cloud metadata services (IMDSv2 session key, GCP identities).
    pub metadata: crate::metadata::MetadataService,
    /// Cluster mode: the state shared with the other replicas (Redis).
    pub cluster: Option<std::sync::Arc<crate::cluster::Cluster>>,
    /// Cluster mode: this replica's `max_concurrent` leases (then the slots
    /// above are unused).
    pub leases: Option<std::sync::Arc<crate::cluster::leases::Leases>>,
}

impl ProxyState {
    /// In cluster mode, `Err` while the shared state is unreachable: nothing
    /// may pass then, since a revocation could be missed.
    pub fn ensure_cluster(&self) -> Result<(), crate::cluster::ClusterUnavailable> {
        match &self.cluster {
            Some(cluster) => cluster.ensure_available(),
            None => Ok(()),
        }
    }

    /// The gauges of a metrics scrape, read now. Takes no lock the request path
    /// holds for more than a counter update.
    pub fn gauges(&self) -> crate::metrics::Gauges {
        crate::metrics::Gauges {
            audit_queue_depth: self.audit.depth(),
            audit_refusing: self.audit.refusing(),
            approvals_pending: self.approvals.pending_count() as u64,
            approvals_spooled: self.approvals.spool_budget().used(),
            policies_loaded: self.policies.current().len() as u64,
            cluster_unavailable: self.ensure_cluster().is_err(),
        }
    }
}
