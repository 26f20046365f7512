//! Fetching secrets, cached: static ones (env, KV) per policy for their `ttl`;
//! dynamic (leased) ones per task, so each task gets its own lease, refreshed at
//! two thirds of `min(ttl, lease)` and revoked when the task or tollgate ends.
//! Concurrent misses for one secret make one backend call.

use super::vault::Lease;
use super::{EnvBackend, SecretError, SecretValue, VaultBackend};
use crate::policy::model::{SecretSource, SecretSpec};
use moka::future::Cache;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a secret without `ttl` is cached.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);

/// Cache key: (scope, secret name); scope is the policy, or task and policy for
/// dynamic secrets.
type Key = (String, String);

#[derive(Clone)]
struct Entry {
    value: Arc<SecretValue>,
    ttl: Duration,
    lease: Option<Lease>,
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
        Self { env, vault, cache }
    }

    /// The value of `spec` for `task` under `policy`, from cache or its backend.
    pub async fn get(
        &self,
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
        self.cache
            .try_get_with(key, self.fetch(spec))
            .await
            .map(|entry| entry.value)
            .map_err(|e: Arc<SecretError>| (*e).clone())
    }

    async fn fetch(&self, spec: &SecretSpec) -> Result<Entry, SecretError> {
        let name = spec.name.as_str();
        let ttl = spec.ttl.unwrap_or(DEFAULT_SECRET_TTL);
        match &spec.source {
            SecretSource::Env { name: var } => Ok(Entry {
                value: Arc::new(self.env.read(name, var)?),
                ttl,
                lease: None,
            }),
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
                match method {
                    None => {
                        let mount = mount.as_deref().unwrap_or("secret");
                        let value = vault.read_kv(name, mount, path, field).await?;
                        Ok(Entry {
                            value: Arc::new(value),
                            ttl,
                            lease: None,
                        })
                    }
                    Some(method) => {
                        let (value, lease) =
                            vault.call(name, method, path, data.as_ref(), field).await?;
                        let lifetime = if lease.duration.is_zero() {
                            ttl
                        } else {
                            ttl.min(lease.duration)
                        };
                        // Refreshed before the lease runs out, not at its last second.
                        let refresh = (lifetime * 2 / 3).max(Duration::from_secs(1));
                        Ok(Entry {
                            value: Arc::new(value),
                            ttl: refresh,
                            lease: Some(lease),
                        })
                    }
                }
            }
        }
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
