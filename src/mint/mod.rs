//! Minted credentials: GitHub App installation tokens and OAuth 2.0 access
//! tokens, made by tollgate per task from key material the sandbox never sees,
//! held only in this process's memory, and revoked when the task ends.
//!
//! A token is cached per task (or per policy for `oauth2` with `per: policy`)
//! until min(5 minutes, a tenth of its life) before it expires. However many
//! requests find it missing or stale, one mints while the rest wait for it.
//! A token whose re-mint fails keeps serving until it expires, never after.

pub mod answer;
mod aws;
mod github;
pub mod http;
pub mod issued;
pub mod jwt;
mod oauth;

use crate::metrics::{Counter, MintCounters};
use crate::policy::model::{MintScope, SecretSource, SecretSpec};
use crate::secrets::{KeyReader, SecretError, SecretValue};
use crate::tasks::Task;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

pub use http::IssuerClient;
use issued::Fresh;

/// Longest margin before expiry at which a token is minted again.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// How often tasks past their TTL are looked for, to revoke their tokens.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for revocations at shutdown.
const SHUTDOWN_REVOKE_LIMIT: Duration = Duration::from_secs(5);

/// A cached token.
struct Minted {
    value: Arc<SecretValue>,
    expires_at: SystemTime,
    refresh_at: SystemTime,
    /// What it was minted from: a policy edit that changes it mints anew.
    source: SecretSource,
    /// The Vault lease it came with, revoked with it.
    lease: Option<crate::secrets::vault::Lease>,
}

impl Minted {
    fn new(fresh: Fresh, source: SecretSource) -> Self {
        let now = SystemTime::now();
        let life = fresh.expires_at.duration_since(now).unwrap_or_default();
        let margin = (life / 10).min(MAX_REFRESH_MARGIN);
        Self {
            value: Arc::new(fresh.value),
            refresh_at: fresh.expires_at - margin,
            expires_at: fresh.expires_at,
            source,
            lease: fresh.lease,
        }
    }
}

#[derive(Default)]
struct SlotState {
    current: Option<Arc<Minted>>,
    /// Set when the owning task ended: whatever is minted afterwards is revoked.
    ended: bool,
}

/// One secret of one task (or policy): its token, and the lock one minter holds.
struct Slot {
    name: String,
    issuer: String,
    /// Unix seconds at which the owning task ends; `None` for static tasks and
    /// per-policy tokens.
    task_expires: Option<u64>,
    state: Mutex<SlotState>,
    minting: tokio::sync::Mutex<()>,
    hits: Counter,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value if it is for `source` and not due for a re-mint.
    fn fresh(&self, source: &SecretSource) -> Option<Arc<SecretValue>> {
        let state = self.lock();
        let minted = state.current.as_ref()?;
        (SystemTime::now() < minted.refresh_at && minted.source == *source)
            .then(|| minted.value.clone())
    }

    /// The cached value if it is for `source` and has not expired.
    fn unexpired(&self, source: &SecretSource) -> Option<Arc<SecretValue>> {
        let state = self.lock();
        let minted = state.current.as_ref()?;
        (SystemTime::now() < minted.expires_at && minted.source == *source)
            .then(|| minted.value.clone())
    }
}

/// Cache key: (scope, secret name); the scope is `t` + task id or `p` + policy.
type Key = (String, String);

/// What `GET /v1/tasks/{id}` shows of a minted credential: never its value.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct MintedInfo {
    /// Secret name.
    pub name: String,
    /// Who minted it: the GitHub API base or the token endpoint.
    pub issuer: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

/// Mints, caches and revokes credentials.
pub struct Minter {
    keys: KeyReader,
    http: IssuerClient,
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    github: github::Apps,
    oauth: oauth::Clients,
    aws: aws::Roles,
    counters: MintCounters,
    /// Cluster mode: where the minting lock shared by every replica lives.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter").finish_non_exhaustive()
    }
}

impl Minter {
    /// A minter reading key material through `keys` and reaching issuers
    /// through `http`.
    pub fn new(keys: KeyReader, http: IssuerClient, counters: MintCounters) -> Self {
        Self {
            keys,
            http,
            slots: Mutex::default(),
            github: github::Apps::default(),
            oauth: oauth::Clients::default(),
            aws: aws::Roles::default(),
            counters,
            cluster: None,
        }
    }

    /// In cluster mode: one replica at a time mints a given secret
    /// ([`crate::cluster::mint_lock`]).
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Where key material is read from (the metadata emulation reads a
    /// service-account key's email and project id through it).
    pub fn keys(&self) -> &KeyReader {
        &self.keys
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of the minted secret `spec` for `task` under `policy`: cached,
    /// or minted now (one mint however many ask at once).
    pub async fn get(
        self: &Arc<Self>,
        task: &Task,
        policy: &str,
        spec: &SecretSpec,
    ) -> Result<Arc<SecretValue>, SecretError> {
        let name = spec.name.as_str();
        let per_policy =
            matches!(&spec.source, SecretSource::OAuth2(o) if o.per == MintScope::Policy);
        let key = if per_policy {
            (format!("p{policy}"), name.to_string())
        } else {
            (format!("t{}", task.id), name.to_string())
        };
        let slot = {
            let mut slots = self.slots();
            slots
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Slot {
                        name: name.to_string(),
                        issuer: issuer(&spec.source),
                        task_expires: if per_policy { None } else { task.expires_at },
                        state: Mutex::default(),
                        minting: tokio::sync::Mutex::new(()),
                        hits: self.counters.hit_counter(policy, name),
                    })
                })
                .clone()
        };
        if let Some(value) = slot.fresh(&spec.source) {
            slot.hits.inc();
            return Ok(value);
        }
        let _minting = slot.minting.lock().await;
        if let Some(value) = slot.fresh(&spec.source) {
            slot.hits.inc();
            return Ok(value);
        }
        let cluster_lock = self.cluster_lock(&key).await?;
        let minted = self.mint(spec).await;
        if let Some(lock) = cluster_lock {
            lock.release().await;
        }
        match minted {
            Ok(fresh) => {
                self.counters.minted(policy, name);
                let minted = Arc::new(Minted::new(fresh, spec.source.clone()));
                let value = minted.value.clone();
                let (old, ended) = {
                    let mut state = slot.lock();
                    if state.ended {
                        (Some(minted), true)
                    } else {
                        (state.current.replace(minted), false)
                    }
                };
                if let Some(old) = old {
                    self.revoke_in_background(old);
                }
                if ended {
                    return Err(SecretError::Unavailable {
                        name: name.to_string(),
                        reason: "the task has ended".into(),
                    });
                }
                tracing::info!(secret = %name, policy, "credential minted");
                Ok(value)
            }
            Err(err) => {
                self.counters.failed(policy, name);
                match slot.unexpired(&spec.source) {
                    Some(value) => {
                        tracing::warn!(secret = %name, error = %err,
                            "minting again failed; the current token stays in use until it expires");
                        Ok(value)
                    }
                    None => {
                        tracing::warn!(secret = %name, error = %err, "minting failed");
                        Err(err)
                    }
                }
            }
        }
    }

    /// In cluster mode, the lock that lets this replica mint `key` while no
    /// other does. A lock that cannot be taken fails the request (503
    /// `secret_unavailable`): minting anyway would defeat the single flight.
    async fn cluster_lock(
        &self,
        key: &Key,
    ) -> Result<Option<crate::cluster::mint_lock::MintLock>, SecretError> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        crate::cluster::mint_lock::acquire(cluster, &key.0, &key.1)
            .await
            .map(Some)
            .map_err(|err| SecretError::Unavailable {
                name: key.1.clone(),
                reason: format!("the cluster's minting lock: {err}"),
            })
    }

    /// Mints once. A token that has expired already (an `expires_at` in the
    /// past, `expires_in: 0`) is refused rather than minted again on every
    /// request.
    async fn mint(&self, spec: &SecretSpec) -> Result<Fresh, SecretError> {
        let fresh = self.mint_from_issuer(spec).await?;
        if fresh.expires_at <= SystemTime::now() {
            return Err(SecretError::minting(
                spec.name.as_str(),
                "the issuer handed out a token that has already expired; check the clocks of tollgate and the issuer",
            ));
        }
        Ok(fresh)
    }

    async fn mint_from_issuer(&self, spec: &SecretSpec) -> Result<Fresh, SecretError> {
        let name = spec.name.as_str();
        match &spec.source {
            SecretSource::GithubApp(app) => {
                self.github.mint(&self.http, &self.keys, name, app).await
            }
            SecretSource::OAuth2(client) => {
                let fallback = spec.ttl.unwrap_or(crate::secrets::DEFAULT_SECRET_TTL);
                self.oauth
                    .mint(&self.http, &self.keys, name, client, fallback)
                    .await
            }
            SecretSource::Aws(aws) => {
                let fallback = spec.ttl.unwrap_or(crate::secrets::DEFAULT_SECRET_TTL);
                self.aws.mint(&self.keys, name, aws, fallback).await
            }
            _ => Err(SecretError::Unavailable {
                name: name.to_string(),
                reason: "not a minted secret".into(),
            }),
        }
    }

    /// Revokes a token at its issuer, where the issuer allows it. Failures are
    /// logged: the token then runs out on its own. Returns whether the issuer
    /// confirmed.
    async fn revoke(&self, minted: &Minted) -> bool {
        if let Some(lease) = &minted.lease {
            // A lease outlives what tollgate cached: revoke it even past that.
            return match self.keys.vault("lease") {
                Ok(vault) => {
                    vault.revoke(lease).await;
                    true
                }
                Err(_) => false,
            };
        }
        if SystemTime::now() >= minted.expires_at {
            return false;
        }
        let result = match &minted.source {
            SecretSource::GithubApp(app) => github::revoke(&self.http, app, &minted.value)
                .await
                .map(|()| true),
            SecretSource::OAuth2(client) => {
                oauth::revoke(&self.http, &self.keys, client, &minted.value).await
            }
            _ => Ok(false),
        };
        match result {
            Ok(confirmed) => confirmed,
            Err(err) => {
                tracing::warn!(error = %err, "revoking a minted token failed; it will expire on its own");
                false
            }
        }
    }

    fn revoke_in_background(self: &Arc<Self>, minted: Arc<Minted>) {
        let minter = self.clone();
        tokio::spawn(async move { minter.revoke(&minted).await });
    }

    /// Ends the slots of `keys`: later mints for them are revoked at once, and
    /// their current tokens are revoked now. Returns how many the issuers
    /// confirmed revoked.
    async fn end_slots(&self, keys: impl Fn(&Key, &Slot) -> bool) -> usize {
        let ended: Vec<Arc<Slot>> = {
            let mut slots = self.slots();
            let mut ended = Vec::new();
            slots.retain(|key, slot| {
                let end = keys(key, slot);
                if end {
                    ended.push(slot.clone());
                }
                !end
            });
            ended
        };
        let tokens: Vec<Arc<Minted>> = ended
            .iter()
            .filter_map(|slot| {
                let mut state = slot.lock();
                state.ended = true;
                state.current.take()
            })
            .collect();
        let revocations = tokens.iter().map(|minted| self.revoke(minted));
        let results = futures_util::future::join_all(revocations).await;
        results.into_iter().filter(|revoked| *revoked).count()
    }

    /// Revokes the tokens minted for `task` (it was ended). Returns how many
    /// the issuers confirmed revoked.
    pub async fn end_task(&self, task: &str) -> usize {
        let scope = format!("t{task}");
        self.end_slots(|key, _| key.0 == scope).await
    }

    /// Revokes every token still held (on shutdown), waiting at most a few
    /// seconds. Returns how many tokens were revoked in time.
    pub async fn revoke_all(&self) -> usize {
        let revoke = self.end_slots(|_, _| true);
        match tokio::time::timeout(SHUTDOWN_REVOKE_LIMIT, revoke).await {
            Ok(revoked) => revoked,
            Err(_) => {
                tracing::warn!(
                    limit_s = SHUTDOWN_REVOKE_LIMIT.as_secs(),
                    "revoking minted tokens at shutdown did not finish in time; the rest expire on their own"
                );
                0
            }
        }
    }

    /// What `task` (under `policy`) has minted: names, issuers, expiries.
    pub fn minted_for(&self, task: &str, policy: &str) -> Vec<MintedInfo> {
        let (own, shared) = (format!("t{task}"), format!("p{policy}"));
        let slots = self.slots();
        let mut infos: Vec<MintedInfo> = slots
            .iter()
            .filter(|(key, _)| key.0 == own || key.0 == shared)
            .filter_map(|(_, slot)| {
                let state = slot.lock();
                let minted = state.current.as_ref()?;
                (SystemTime::now() < minted.expires_at).then(|| MintedInfo {
                    name: slot.name.clone(),
                    issuer: slot.issuer.clone(),
                    expires_at: crate::text::rfc3339_millis(minted.expires_at),
                })
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// Revokes the tokens of tasks whose TTL has passed, once a second, until
    /// `shutdown`.
    pub fn spawn_sweeper(self: &Arc<Self>, shutdown: CancellationToken) {
        let minter = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(minter) = minter.upgrade() else {
                    return;
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let ended = minter
                    .end_slots(|_, slot| slot.task_expires.is_some_and(|at| at <= now))
                    .await;
                if ended > 0 {
                    tracing::info!(revoked = ended, "revoked minted tokens of expired tasks");
                }
            }
        });
    }
}

/// The issuer a source names, for listings.
fn issuer(source: &SecretSource) -> String {
    match source {
        SecretSource::GithubApp(app) => app.api.clone(),
        SecretSource::OAuth2(client) => client.token_url.clone(),
        SecretSource::Aws(aws) => match &aws.credentials {
            crate::policy::model::AwsCredentials::Vault { mount, role } => {
                format!("vault {mount}/{role}")
            }
            crate::policy::model::AwsCredentials::Static { .. } => "static key".to_string(),
        },
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
