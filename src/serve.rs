//! Starting tollgate: CA, policies, tasks, the proxy and admin listeners, the
//! background sweeps; and the graceful drain.

use crate::admin::listen::{serve_admin, ListenError};
use crate::config::Config;
use crate::net::Dialer;
use crate::policy::load_policy_dir;
use crate::proxy::front::handle_front;
use crate::proxy::limits::MAX_CLIENT_CONNECTIONS;
use crate::proxy::state::{ProxyState, Swap};
use crate::proxy::upstream::Upstream;
use crate::proxy::{serve_with_shutdown, ACCEPT_BACKOFF, DRAIN_TIMEOUT};
use crate::tasks::TaskRegistry;
use crate::tls::{self, ca::create_private_dir, LeafIssuer};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the proxy could not start. Printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// CA problem.
    #[error(transparent)]
    Ca(#[from] tls::ca::CaError),
    /// Invalid policy files (each `file:line: message`).
    #[error("invalid policies:\n{0}")]
    Policies(String),
    /// Extra roots unusable.
    #[error(transparent)]
    Roots(#[from] tls::upstream::RootsError),
    /// A task names a missing policy.
    #[error("{0}")]
    Task(String),
    /// The approval webhooks are unusable.
    #[error("approvals: {0}")]
    Approvals(String),
    /// The admin API could not start.
    #[error(transparent)]
    Admin(#[from] ListenError),
    /// The metadata emulation has no randomness for its session key.
    #[error("the metadata emulation's session key: the system gave no random bytes")]
    MetadataKey,
    /// The cluster settings are unusable.
    #[error("{0}")]
    Cluster(String),
    /// The audit trail could not start.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Error.
        source: std::io::Error,
    },
}

/// Builds the shared state from a validated config: creates the state directory
/// and CA if absent, loads policies, checks tasks.
pub fn build_state(config: &Config, shutdown: CancellationToken) -> Result<ProxyState, StartError> {
    create_private_dir(&config.state_dir)?;
    if tls::ensure_ca(&config.ca_cert, &config.ca_key)? == tls::CaStatus::Created {
        tracing::info!(cert = %config.ca_cert.display(), "created MITM CA");
    }
    let ca = tls::load_ca(&config.ca_cert, &config.ca_key)?;
    let report = load_policy_dir(&config.policies_dir);
    if !report.errors.is_empty() {
        let lines: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        return Err(StartError::Policies(lines.join("\n")));
    }
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    for task in &config.tasks {
        if report.policies.get(&task.policy).is_none() {
            let at = config
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(StartError::Task(format!(
                "{at}:{}: task `{}` uses policy `{}`, which is not in {}",
                task.line.unwrap_or(0),
                task.id,
                task.policy,
                config.policies_dir.display()
            )));
        }
    }
    let vault = config
        .vault
        .clone()
        .map(|v| Arc::new(crate::secrets::VaultBackend::new(v)));
    if let Some(vault) = &vault {
        vault.clone().spawn_renewal(shutdown.clone());
    }
    let dialer = Dialer::new(&config.upstream);
    let client_tls = tls::upstream_client_config(&config.upstream.extra_roots)?;
    let audit = crate::audit::Audit::start(
        &config.audit,
        &config.state_dir,
        Arc::new(client_tls.clone()),
    )?;
    let notifier = if config.approvals.notify.is_empty() {
        None
    } else {
        Some(
            crate::approvals::notify::Notifier::new(&config.approvals.notify, &client_tls)
                .map_err(StartError::Approvals)?,
        )
    };
    let approvals = crate::approvals::Approvals::new(
        config.approvals.max_pending_per_task,
        config.state_dir.join("held"),
        notifier,
    );
    let cluster = config
        .cluster
        .as_ref()
        .map(|c| crate::cluster::connect::start(c, shutdown.clone()))
        .transpose()
        .map_err(StartError::Cluster)?;
    let (leases, budgets) = shared_limits(cluster.as_ref(), &shutdown);
    let rate_limits = crate::ratelimit::RateLimits::from_policies(&report.policies);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    Ok(ProxyState {
        policies: Swap::new(report.policies),
        policies_dir: config.policies_dir.clone(),
        tasks: TaskRegistry::from_static(&config.tasks).with_signer(
            crate::task_token::TaskKey::load_or_create(&config.task_key)
                .map_err(StartError::Task)?,
        ),
        leaves: LeafIssuer::new(ca, tls::leaf::DEFAULT_CACHE_CAPACITY)
            .with_cache_counters(metrics.cert_cache.clone()),
        minter: Arc::new(
            crate::mint::Minter::new(
                crate::secrets::KeyReader::new(
                    crate::secrets::EnvBackend::new(config.env_prefix.clone()),
                    vault.clone(),
                )
                .forbid(&config.own_secret_paths()),
                crate::mint::IssuerClient::new(dialer.clone(), client_tls.clone()),
                metrics.mints.clone(),
            )
            .with_cluster(cluster.clone()),
        ),
        upstream: Upstream::new(dialer.clone(), client_tls),
        dialer,
        shutdown,
        tracker: TaskTracker::new(),
        created: Default::default(),
        tunnel_slots: Default::default(),
        request_slots: Default::default(),
        task_ends: Default::default(),
        rate_limits: Swap::new(rate_limits),
        audit,
        approvals,
        injected: Default::default(),
        secrets: Arc::new(
            crate::secrets::SecretStore::new(
                crate::secrets::EnvBackend::new(config.env_prefix.clone()),
                vault,
            )
            .with_cache_counters(metrics.secret_cache.clone()),
        ),
        metrics,
        budgets,
        sigv4_keys: crate::sigv4::SigningKeys::default(),
        metadata: crate::metadata::MetadataService::new().ok_or(StartError::MetadataKey)?,
        cluster,
        leases,
    })
}

/// Where `max_concurrent` places and budgets are counted: in this process, or
/// in cluster mode in Redis (with this replica's lease renewal and budget
/// flusher started).
fn shared_limits(
    cluster: Option<&Arc<crate::cluster::Cluster>>,
    shutdown: &CancellationToken,
) -> (
    Option<Arc<crate::cluster::leases::Leases>>,
    Box<dyn crate::budget::ledger::Ledger>,
) {
    let Some(cluster) = cluster else {
        return (
            None,
            Box::new(crate::budget::ledger::LocalLedger::default()),
        );
    };
    let leases = crate::cluster::leases::Leases::new(cluster.clone());
    leases.spawn_renewal(shutdown.clone());
    let ledger = crate::cluster::ledger::SharedLedger::default();
    // Exchanges that end during the drain are charged too.
    ledger.spawn_flusher(
        cluster.clone(),
        shutdown.clone(),
        DRAIN_TIMEOUT + Duration::from_secs(1),
    );
    (Some(leases), Box::new(ledger))
}

/// A started proxy.
#[derive(Debug)]
pub struct Running {
    /// Bound proxy addresses.
    pub addrs: Vec<SocketAddr>,
    /// Where the admin API listens (`ip:port` or `unix:/path`).
    pub admin: String,
    state: Arc<ProxyState>,
}

impl Running {
    /// Waits until shutdown is signalled, then drains in-flight work for up to
    /// [`DRAIN_TIMEOUT`]. Returns whether everything finished in time.
    pub async fn wait_and_drain(self) -> bool {
        self.state.shutdown.cancelled().await;
        self.state.tracker.close();
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, self.state.tracker.wait())
            .await
            .is_ok();
        // Static tasks end with the proxy: their leases and tokens go with them.
        let revoked = self.state.secrets.revoke_all().await;
        if revoked > 0 {
            tracing::info!(revoked, "revoked Vault leases of ended tasks");
        }
        let revoked = self.state.minter.revoke_all().await;
        if revoked > 0 {
            tracing::info!(revoked, "revoked minted tokens");
        }
        let audit = self.state.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.shutdown(Duration::from_secs(5))).await;
        drained
    }
}

/// Starts the proxy on every `listen` address. Returns once listening.
pub async fn run(config: &Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let state = Arc::new(build_state(config, shutdown)?);
    if let Some(cluster) = &state.cluster {
        crate::replicas::start_listening(&state, cluster);
    }
    tokio::spawn(forget_idle_limits(state.clone()));
    state.minter.spawn_sweeper(state.shutdown.clone());
    crate::reload::spawn_reloaders(&state);
    let mut addrs = Vec::new();
    let connection_slots = Arc::new(Semaphore::new(MAX_CLIENT_CONNECTIONS));
    for addr in &config.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: *addr,
                source,
            })?;
        addrs.push(listener.local_addr().unwrap_or(*addr));
        tokio::spawn(accept_loop(
            state.clone(),
            listener,
            connection_slots.clone(),
        ));
    }
    let admin_token =
        crate::admin::load_or_create_token(&config.admin_token_file).map_err(StartError::Task)?;
    let proxy_addr = addrs
        .first()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3128)));
    let admin = Arc::new(crate::admin::Admin::new(
        state.clone(),
        admin_token,
        proxy_addr,
    ));
    let admin_addr = serve_admin(admin, &config.admin_listen).await?;
    Ok(Running {
        addrs,
        admin: admin_addr,
        state,
    })
}

/// Serves the proxy port: one connection per slot, until shutdown.
async fn accept_loop(state: Arc<ProxyState>, listener: TcpListener, slots: Arc<Semaphore>) {
    loop {
        let permit = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_state = state.clone();
        state.tracker.spawn(async move {
            let service_state = conn_state.clone();
            let service = hyper::service::service_fn(move |req| {
                let state = service_state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle_front(state, client, req).await) }
            });
            serve_with_shutdown(TokioIo::new(stream), service, &conn_state.shutdown, false).await;
            drop(permit);
        });
    }
}

/// Frees rate-limit state of tasks that have been idle long enough to be back at
/// full budget (ended tasks included), the slots of tasks that hold none, the end
/// signals of expired tasks and the ones nobody listens to, and revocations of
/// expired tasks.
async fn forget_idle_limits(state: Arc<ProxyState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {
                state.rate_limits.current().forget_idle();
                state.tunnel_slots.forget_idle();
                state.request_slots.forget_idle();
                state.task_ends.forget();
                state.tasks.forget_expired_revocations();
            }
        }
    }
}
