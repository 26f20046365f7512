//! Fetching secrets, cached: static ones (env, KV) per policy for their `ttl`;
//! dynamic (leased) ones per task, so each task gets its own lease, revoked when
//! the task or tollgate ends. A dynamic secret is refreshed in the background once
//! two thirds of `min(ttl, lease)` have passed, while requests go on using the
//! still-valid value, so no request waits on a refresh that could have started
//! earlier. Concurrent misses for one secret make one backend call.

use super::vault::Lease;
use super::{EnvBackend, SecretError, SecretValue, VaultBackend};
use crate::metrics::CacheCounters;
use crate::policy::model::{SecretSource, SecretSpec};
use moka::future::Cache;
use moka::Expiry;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a secret without `ttl` is cached.
pub(crate) const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);

/// Cache key: (scope, secret name); scope is the policy, or task and policy for
/// dynamic secrets.
type Key = (String, String);

#[derive(Clone)]
struct Entry {
    value: Arc<SecretValue>,
    ttl: Duration,
    lease: Option<Lease>,
    /// When a background refresh should start (dynamic secrets only).
    refresh_at: Option<Instant>,
}

struct EntryTtl;

impl Expiry<Key, Entry> for EntryTtl {
    fn expire_after_create(&self, _key: &Key, entry: &Entry, _now: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Resolves secrets from their backends.
pub struct SecretStore {
    env: EnvBackend,
    vault: Option<Arc<VaultBackend>>,
    cache: Cache<Key, Entry>,
    /// Keys with a background refresh under way.
    refreshing: Mutex<HashSet<Key>>,
    counters: CacheCounters,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    /// A store over the env backend and, when configured, Vault.
    pub fn new(env: EnvBackend, vault: Option<Arc<VaultBackend>>) -> Self {
        let revoker = vault.clone();
        let cache = Cache::builder()
            .max_capacity(10_000)
            .expire_after(EntryTtl)
            .eviction_listener(move |_key, entry: Entry, _cause| {
                // A replaced or expired dynamic secret's lease is revoked at once
                // rather than left to run out.
                if let (Some(vault), Some(lease)) = (revoker.clone(), entry.lease) {
                    if let Ok(handle) = tokio::runtime::Handle::try_current() {
                        handle.spawn(async move { vault.revoke(&lease).await });
                    }
                }
            })
            .build();
        Self {
            env,
            vault,
            cache,
            refreshing: Mutex::default(),
            counters: CacheCounters::default(),
        }
    }

    /// Counts cache hits and misses into `counters` (the metrics' own).
    pub fn with_cache_counters(mut self, counters: CacheCounters) -> Self {
        self.counters = counters;
        self
    }

    /// The value of `spec` for `task` under `policy`, from cache or its backend.
    pub async fn get(
        self: &Arc<Self>,
        task: &str,
        policy: &str,
        spec: &SecretSpec,
    ) -> Result<Arc<SecretValue>, SecretError> {
        let dynamic = matches!(
            &spec.source,
            SecretSource::Vault {
                method: Some(_),
                ..
            }
        );
        let scope = if dynamic {
            format!("{task}\u{0}{policy}")
        } else {
            policy.to_string()
        };
        let key = (scope, spec.name.as_str().to_string());
        let entry = self
            .cache
            .entry_by_ref(&key)
            .or_try_insert_with(self.fetch(spec))
            .await;
        match &entry {
            Ok(entry) if !entry.is_fresh() => self.counters.hit(),
            _ => self.counters.miss(),
        }
        let entry = entry
            .map(moka::Entry::into_value)
            .map_err(|e: Arc<SecretError>| (*e).clone())?;
        if entry.refresh_at.is_some_and(|at| Instant::now() >= at) {
            self.refresh_in_background(key, spec.clone());
        }
        Ok(entry.value)
    }

    /// Fetches a new value for `key` and swaps it in; the eviction listener then
    /// revokes the old lease. On failure the old value stays until it expires.
    fn refresh_in_background(self: &Arc<Self>, key: Key, spec: SecretSpec) {
        if !self
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            match store.fetch(&spec).await {
                Ok(fresh) => store.cache.insert(key.clone(), fresh).await,
                Err(err) => tracing::warn!(
                    secret = %spec.name, error = %err,
                    "refreshing a dynamic secret failed; the current one stays in use"
                ),
            }
            store
                .refreshing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }

    async fn fetch(&self, spec: &SecretSpec) -> Result<Entry, SecretError> {
        let name = spec.name.as_str();
        let ttl = spec.ttl.unwrap_or(DEFAULT_SECRET_TTL);
        let plain = |value: SecretValue| Entry {
            value: Arc::new(value),
            ttl,
            lease: None,
            refresh_at: None,
        };
        match &spec.source {
            SecretSource::GithubApp(_) | SecretSource::OAuth2(_) | SecretSource::Aws(_) => {
                Err(SecretError::Unavailable {
                    name: name.to_string(),
                    reason: "a minted secret is not stored; it is minted per task".into(),
                })
            }
            SecretSource::Env { name: var } => Ok(plain(self.env.read(name, var)?)),
            SecretSource::Vault {
                mount,
                path,
                field,
                method,
                data,
            } => {
                let vault = self
                    .vault
                    .as_ref()
                    .ok_or_else(|| SecretError::Unavailable {
                        name: name.to_string(),
                        reason: "no `secrets.vault` is configured".into(),
                    })?;
                let Some(method) = method else {
                    let mount = mount.as_deref().unwrap_or("secret");
                    return Ok(plain(vault.read_kv(name, mount, path, field).await?));
                };
                let (value, lease) = vault.call(name, method, path, data.as_ref(), field).await?;
                let lifetime = if lease.duration.is_zero() {
                    ttl
                } else {
                    ttl.min(lease.duration)
                };
                // Kept until just before it runs out; refreshed from two thirds on.
                let keep = lifetime
                    .saturating_sub(lifetime / 10)
                    .max(Duration::from_secs(1));
                Ok(Entry {
                    value: Arc::new(value),
                    ttl: keep,
                    lease: Some(lease),
                    refresh_at: Some(Instant::now() + lifetime * 2 / 3),
                })
            }
        }
    }

    /// Drops a task's dynamic secrets; their leases are revoked by the eviction
    /// listener. Returns how many entries went.
    pub async fn end_task(&self, task: &str) -> usize {
        let prefix = format!("{task}\u{0}");
        let keys: Vec<Key> = self
            .cache
            .iter()
            .filter(|(key, _)| key.0.starts_with(&prefix))
            .map(|(key, _)| (*key).clone())
            .collect();
        for key in &keys {
            self.cache.invalidate(key).await;
        }
        keys.len()
    }

    /// Revokes every lease still held (on shutdown). Returns how many.
    pub async fn revoke_all(&self) -> usize {
        let Some(vault) = &self.vault else { return 0 };
        let leases: Vec<Lease> = self
            .cache
            .iter()
            .filter_map(|(_, entry)| entry.lease)
            .collect();
        for lease in &leases {
            vault.revoke(lease).await;
        }
        leases.len()
    }
}
