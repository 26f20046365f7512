//! Fetching secrets for a policy, cached for their `ttl`, with concurrent misses
//! for one secret making one backend call.

use super::{EnvBackend, SecretError, SecretValue};
use crate::policy::model::{SecretSource, SecretSpec};
use moka::future::Cache;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a secret without `ttl` is cached.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);

/// Cache key: (policy, secret name).
type Key = (String, String);

#[derive(Clone)]
struct Entry {
    value: Arc<SecretValue>,
    ttl: Duration,
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
    cache: Cache<Key, Entry>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore").finish_non_exhaustive()
    }
}

impl SecretStore {
    /// A store over the env backend.
    pub fn new(env: EnvBackend) -> Self {
        Self {
            env,
            cache: Cache::builder()
                .max_capacity(10_000)
                .expire_after(EntryTtl)
                .build(),
        }
    }

    /// The value of `spec` for `policy`, from cache or its backend.
    pub async fn get(
        &self,
        policy: &str,
        spec: &SecretSpec,
    ) -> Result<Arc<SecretValue>, SecretError> {
        let key = (policy.to_string(), spec.name.as_str().to_string());
        self.cache
            .try_get_with(key, async {
                let value = self.fetch(spec)?;
                Ok::<_, SecretError>(Entry {
                    value: Arc::new(value),
                    ttl: spec.ttl.unwrap_or(DEFAULT_SECRET_TTL),
                })
            })
            .await
            .map(|entry| entry.value)
            .map_err(|e: Arc<SecretError>| (*e).clone())
    }

    fn fetch(&self, spec: &SecretSpec) -> Result<SecretValue, SecretError> {
        match &spec.source {
            SecretSource::Env { name } => self.env.read(spec.name.as_str(), name),
            SecretSource::Vault { .. } => Err(SecretError::Unavailable {
                name: spec.name.as_str().to_string(),
                reason: "the Vault backend is not available in this build".into(),
            }),
        }
    }
}
