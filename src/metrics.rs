//! Prometheus metrics, served without auth on the admin API's `GET /metrics`
//! (OpenMetrics text).
//!
//! Labels hold only values from small fixed sets (decisions, reasons, reload
//! results) or names the loaded policies declare (policy and secret names of
//! minted credentials); never a host, path, task or secret value, so the series
//! count stays bounded and nothing secret can reach a scrape.
//!
//! Each proxy ([`crate::proxy::state::ProxyState`]) has its own [`Metrics`];
//! requests are counted where their audit record is emitted.

use crate::body::{full_body, ProxyBody};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the request duration buckets: 1 ms to 60 s.
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Labels of `tollgate_requests_total`: the audit record's decision and reason
/// (both from fixed sets of static strings).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    decision: &'static str,
    reason: &'static str,
}

/// Labels of `tollgate_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

/// Labels of `tollgate_policy_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// Labels of the minted-credential counters: names from the policies, never a
/// value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MintLabels {
    policy: String,
    secret: String,
}

/// Labels of `tollgate_budget_used_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    policy: String,
    budget: &'static str,
}

/// Budget use, summed over a policy's tasks, per budget.
#[derive(Debug, Clone, Default)]
pub struct BudgetCounters {
    used: Family<BudgetLabels, Counter>,
}

impl BudgetCounters {
    /// The counter of `budget` (a meter's name) under `policy`.
    pub fn counter(&self, policy: &str, budget: &'static str) -> Counter {
        self.used
            .get_or_create(&BudgetLabels {
                policy: policy.to_string(),
                budget,
            })
            .clone()
    }
}

/// Counters of minted credentials, per policy and secret name.
#[derive(Debug, Clone, Default)]
pub struct MintCounters {
    mints: Family<MintLabels, Counter>,
    failures: Family<MintLabels, Counter>,
    hits: Family<MintLabels, Counter>,
}

impl MintCounters {
    fn labels(policy: &str, secret: &str) -> MintLabels {
        MintLabels {
            policy: policy.to_string(),
            secret: secret.to_string(),
        }
    }

    /// Counts a credential minted.
    pub fn minted(&self, policy: &str, secret: &str) {
        self.mints
            .get_or_create(&Self::labels(policy, secret))
            .inc();
    }

    /// Counts a mint that failed.
    pub fn failed(&self, policy: &str, secret: &str) {
        self.failures
            .get_or_create(&Self::labels(policy, secret))
            .inc();
    }

    /// The counter of requests served a cached credential of `secret`: kept by
    /// the cache entry, so a hit is one atomic add.
    pub fn hit_counter(&self, policy: &str, secret: &str) -> Counter {
        self.hits
            .get_or_create(&Self::labels(policy, secret))
            .clone()
    }
}

type DurationFamily = Family<DecisionLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Hit and miss counters of one cache. Cheap to clone (the clones count
/// together); counting is one relaxed atomic add.
#[derive(Debug, Clone, Default)]
pub struct CacheCounters {
    hits: Counter,
    misses: Counter,
}

impl CacheCounters {
    /// Counts a lookup answered from the cache (including one that waited for a
    /// concurrent first lookup to fill it).
    pub fn hit(&self) {
        self.hits.inc();
    }

    /// Counts a lookup that had to fill the cache (or failed to).
    pub fn miss(&self) {
        self.misses.inc();
    }

    /// Hits so far.
    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    /// Misses so far.
    pub fn misses(&self) -> u64 {
        self.misses.get()
    }
}

/// The gauges of a scrape, read from the proxy's state at that moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Audit records queued and not yet written.
    pub audit_queue_depth: u64,
    /// Whether requests are refused because the audit trail cannot be written.
    pub audit_refusing: bool,
    /// Requests held for an operator's approval.
    pub approvals_pending: u64,
    /// Bytes of held request bodies in spool files.
    pub approvals_spooled: u64,
    /// Policies loaded.
    pub policies_loaded: u64,
    /// Cluster mode, and the shared state (Redis) is unreachable now.
    pub cluster_unavailable: bool,
}

/// The registry and every metric family tollgate exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: DurationFamily,
    policy_reloads: Family<ReloadLabels, Counter>,
    policies_loaded: Gauge,
    audit_queue_depth: Gauge,
    audit_refusing: Gauge,
    cluster_unavailable: Gauge,
    approvals_pending: Gauge,
    approvals_spooled: Gauge,
    /// Lookups of the minted-leaf cache.
    pub cert_cache: CacheCounters,
    /// Lookups of the secret store's cache.
    pub secret_cache: CacheCounters,
    /// Minted credentials.
    pub mints: MintCounters,
    /// Budget use per policy.
    pub budgets: BudgetCounters,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tollgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Request decisions, one per audit record, by decision and reason",
            requests.clone(),
        );
        let request_duration: DurationFamily =
            Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to the end of its exchange, by decision",
            Unit::Seconds,
            request_duration.clone(),
        );
        // The allowed series exist from the start, so both families are shown
        // (an empty family is left out of a scrape) and rates over them are defined.
        let _ = requests.get_or_create(&RequestLabels {
            decision: "allow",
            reason: "none",
        });
        let _ = request_duration.get_or_create(&DecisionLabels { decision: "allow" });
        let cert_cache = CacheCounters::default();
        registry.register(
            "cert_cache_hits",
            "Minted-leaf cache lookups answered from the cache",
            cert_cache.hits.clone(),
        );
        registry.register(
            "cert_cache_misses",
            "Minted-leaf cache lookups that minted a certificate",
            cert_cache.misses.clone(),
        );
        let secret_cache = CacheCounters::default();
        registry.register(
            "secret_cache_hits",
            "Secret lookups answered from the cache",
            secret_cache.hits.clone(),
        );
        registry.register(
            "secret_cache_misses",
            "Secret lookups that called a backend",
            secret_cache.misses.clone(),
        );
        let budgets = BudgetCounters::default();
        registry.register(
            "budget_used",
            "Budget use summed over a policy's tasks: requests, bytes_up, bytes_down (bytes)",
            budgets.used.clone(),
        );
        let mints = MintCounters::default();
        registry.register(
            "mints",
            "Credentials minted (GitHub App tokens, OAuth access tokens)",
            mints.mints.clone(),
        );
        registry.register(
            "mint_failures",
            "Mints that failed (the request got 503 secret_unavailable)",
            mints.failures.clone(),
        );
        registry.register(
            "mint_cache_hits",
            "Requests served a minted credential from the cache",
            mints.hits.clone(),
        );
        let policy_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy reloads (API, SIGHUP, file change) by result",
            policy_reloads.clone(),
        );
        // Both results are shown from the start, so a rate over them is defined.
        for result in ["ok", "error"] {
            let _ = policy_reloads.get_or_create(&ReloadLabels { result });
        }
        let policies_loaded = Gauge::default();
        registry.register(
            "policies_loaded",
            "Policies currently loaded",
            policies_loaded.clone(),
        );
        let audit_queue_depth = Gauge::default();
        registry.register(
            "audit_queue_depth",
            "Audit records queued and not yet written",
            audit_queue_depth.clone(),
        );
        let audit_refusing = Gauge::default();
        registry.register(
            "audit_refusing",
            "1 while requests are refused because the audit trail cannot be written",
            audit_refusing.clone(),
        );
        let cluster_unavailable = Gauge::default();
        registry.register(
            "cluster_unavailable",
            "1 while cluster mode's shared state (Redis) is unreachable and requests are refused",
            cluster_unavailable.clone(),
        );
        let approvals_pending = Gauge::default();
        registry.register(
            "approvals_pending",
            "Requests held for an operator's approval now",
            approvals_pending.clone(),
        );
        let approvals_spooled = Gauge::default();
        registry.register_with_unit(
            "approvals_spooled",
            "Bytes of held request bodies in spool files now",
            Unit::Bytes,
            approvals_spooled.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            policy_reloads,
            policies_loaded,
            audit_queue_depth,
            audit_refusing,
            cluster_unavailable,
            approvals_pending,
            approvals_spooled,
            cert_cache,
            secret_cache,
            mints,
            budgets,
        }
    }

    /// Counts one request decision (called once per audit record).
    pub fn request_done(
        &self,
        decision: &'static str,
        reason: Option<&'static str>,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                decision,
                reason: reason.unwrap_or("none"),
            })
            .inc();
        self.request_duration
            .get_or_create(&DecisionLabels { decision })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one policy reload.
    pub fn policy_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.policy_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// The OpenMetrics text of every family, with the gauges set to `now`.
    pub fn render(&self, now: &Gauges) -> Result<String, std::fmt::Error> {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.audit_queue_depth.set(gauge(now.audit_queue_depth));
        self.audit_refusing.set(i64::from(now.audit_refusing));
        self.cluster_unavailable
            .set(i64::from(now.cluster_unavailable));
        self.approvals_pending.set(gauge(now.approvals_pending));
        self.approvals_spooled.set(gauge(now.approvals_spooled));
        self.policies_loaded.set(gauge(now.policies_loaded));
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The answer to `GET /metrics`.
    pub fn response(&self, now: &Gauges) -> Response<ProxyBody> {
        let (status, body, content_type) = match self.render(now) {
            Ok(text) => (StatusCode::OK, text, CONTENT_TYPE),
            Err(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics could not be encoded\n".to_string(),
                "text/plain; charset=utf-8",
            ),
        };
        let mut response = Response::new(full_body(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn encoded(metrics: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &metrics.registry).unwrap();
        out
    }

    #[test]
    fn families_have_their_contract_names() {
        let metrics = Metrics::new();
        metrics.request_done("allow", None, Duration::from_millis(3));
        metrics.request_done("deny", Some("no_rule"), Duration::from_secs(120));
        metrics.cert_cache.hit();
        metrics.secret_cache.miss();
        metrics.policy_reloaded(false);
        let text = encoded(&metrics);
        for line in [
            r#"tollgate_requests_total{decision="allow",reason="none"} 1"#,
            r#"tollgate_requests_total{decision="deny",reason="no_rule"} 1"#,
            r#"tollgate_request_duration_seconds_bucket{le="0.005",decision="allow"} 1"#,
            r#"tollgate_request_duration_seconds_bucket{le="60.0",decision="deny"} 0"#,
            r#"tollgate_request_duration_seconds_bucket{le="+Inf",decision="deny"} 1"#,
            "tollgate_cert_cache_hits_total 1",
            "tollgate_cert_cache_misses_total 0",
            "tollgate_secret_cache_misses_total 1",
            r#"tollgate_policy_reloads_total{result="error"} 1"#,
            r#"tollgate_policy_reloads_total{result="ok"} 0"#,
            "tollgate_policies_loaded 0",
            "tollgate_audit_queue_depth 0",
            "tollgate_audit_refusing 0",
            "tollgate_cluster_unavailable 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn counter_clones_count_together() {
        let metrics = Metrics::new();
        let counters = metrics.cert_cache.clone();
        counters.miss();
        counters.hit();
        counters.hit();
        assert_eq!(
            (metrics.cert_cache.hits(), metrics.cert_cache.misses()),
            (2, 1)
        );
    }
}
