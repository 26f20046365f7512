//! The Vault / OpenBao backend, through vaultrs.
//!
//! vaultrs covers login (token, AppRole), token renewal and KV v2 reads. It has no
//! generic logical call that keeps `lease_id` / `lease_duration` (its issue #144)
//! and no `sys/leases` calls, so dynamic secrets and lease revocation go through
//! direct HTTP on vaultrs's own HTTP client (marked "direct HTTP" below).

use super::{SecretError, SecretValue};
use crate::config::{VaultAuth, VaultConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};

/// Longest wait for one Vault call.
const VAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the renewal task looks for a session that needs renewing.
const SESSION_POLL: Duration = Duration::from_secs(1);
/// Pause before logging in again after a failed renewal and login.
const RELOGIN_BACKOFF: Duration = Duration::from_secs(5);

/// A lease (or token) tollgate must revoke when the task that got it ends.
#[derive(Debug, Clone)]
pub struct Lease {
    /// `lease_id` of a dynamic secret, when it has one.
    pub lease_id: Option<String>,
    /// Accessor of a token created through `auth/token/create`.
    pub accessor: Option<String>,
    /// How long the lease lasts (0: no expiry given).
    pub duration: Duration,
}

struct Session {
    client: Arc<VaultClient>,
    /// When the current TTL started (login or last renewal).
    since: tokio::time::Instant,
    /// TTL of tollgate's own token; zero for tokens that never expire.
    ttl: Duration,
    renewable: bool,
}

/// A logged-in Vault client that logs in again when its token stops working.
pub struct VaultBackend {
    config: VaultConfig,
    session: Mutex<Option<Session>>,
}

impl std::fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultBackend")
            .field("address", &self.config.address)
            .finish_non_exhaustive()
    }
}

fn unavailable(name: &str, reason: impl std::fmt::Display) -> SecretError {
    SecretError::Unavailable {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

impl VaultBackend {
    /// A backend for `config`; it logs in on first use, so tollgate starts even
    /// while Vault is down.
    pub fn new(config: VaultConfig) -> Self {
        Self {
            config,
            session: Mutex::new(None),
        }
    }

    fn new_client(&self, token: &str) -> Result<VaultClient, String> {
        let settings = VaultClientSettingsBuilder::default()
            .address(&self.config.address)
            .token(token)
            .verify(true)
            .timeout(Some(VAULT_TIMEOUT))
            .build()
            .map_err(|e| e.to_string())?;
        VaultClient::new(settings).map_err(|e| e.to_string())
    }

    async fn login(&self) -> Result<Session, String> {
        match &self.config.auth {
            VaultAuth::Token { token_file } => {
                let token = std::fs::read_to_string(token_file)
                    .map_err(|e| format!("cannot read {}: {e}", token_file.display()))?;
                let client = self.new_client(token.trim())?;
                let info = vaultrs::token::lookup_self(&client)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Session {
                    since: tokio::time::Instant::now(),
                    client: Arc::new(client),
                    ttl: Duration::from_secs(info.ttl),
                    renewable: info.renewable.unwrap_or(false),
                })
            }
            VaultAuth::AppRole {
                role_id,
                secret_id_file,
            } => {
                let secret_id = std::fs::read_to_string(secret_id_file)
                    .map_err(|e| format!("cannot read {}: {e}", secret_id_file.display()))?;
                let mut client = self.new_client("")?;
                let auth =
                    vaultrs::auth::approle::login(&client, "approle", role_id, secret_id.trim())
                        .await
                        .map_err(|e| e.to_string())?;
                client.set_token(&auth.client_token);
                Ok(Session {
                    since: tokio::time::Instant::now(),
                    client: Arc::new(client),
                    ttl: Duration::from_secs(auth.lease_duration),
                    renewable: auth.renewable,
                })
            }
        }
    }

    async fn client(&self, name: &str) -> Result<Arc<VaultClient>, SecretError> {
        let mut session = self.session.lock().await;
        if let Some(s) = session.as_ref() {
            return Ok(s.client.clone());
        }
        let fresh = self
            .login()
            .await
            .map_err(|e| unavailable(name, format!("Vault login failed: {e}")))?;
        let client = fresh.client.clone();
        *session = Some(fresh);
        Ok(client)
    }

    /// Forgets the session after a failure, so the next call logs in again.
    async fn reset(&self) {
        *self.session.lock().await = None;
    }

    /// Reads `field` of the KV v2 secret at `mount`/`path`.
    pub async fn read_kv(
        &self,
        name: &str,
        mount: &str,
        path: &str,
        field: &str,
    ) -> Result<SecretValue, SecretError> {
        let client = self.client(name).await?;
        let data: serde_json::Value = match vaultrs::kv2::read(&*client, mount, path).await {
            Ok(data) => data,
            Err(vaultrs::error::ClientError::APIError { code: 404, .. }) => {
                return Err(SecretError::Missing {
                    name: name.into(),
                    reason: format!("no secret at {mount}/{path}"),
                })
            }
            Err(err) => {
                self.reset().await;
                return Err(unavailable(name, err));
            }
        };
        pick_field(&data, field).ok_or_else(|| SecretError::Missing {
            name: name.into(),
            reason: format!("{mount}/{path} has no field `{field}`"),
        })
    }

    /// Sets `field` of the KV v2 secret at `mount`/`path` to `value`, keeping
    /// its other fields (a JSON merge patch; direct HTTP: vaultrs has no patch).
    pub async fn patch_kv(
        &self,
        name: &str,
        mount: &str,
        path: &str,
        field: &str,
        value: &str,
    ) -> Result<(), SecretError> {
        let client = self.client(name).await?;
        let body = serde_json::json!({ "data": { field: value } });
        let api_path = format!(
            "{}/data/{}",
            mount.trim_matches('/'),
            path.trim_start_matches('/')
        );
        if let Err(err) = self.raw(&client, "PATCH", &api_path, Some(&body)).await {
            self.reset().await;
            return Err(unavailable(name, err));
        }
        Ok(())
    }

    /// Calls a dynamic-secret endpoint and takes `field` (dotted, from the top of
    /// the response) plus the lease to revoke later. Direct HTTP: vaultrs drops
    /// `lease_id` and `lease_duration` from responses.
    pub async fn call(
        &self,
        name: &str,
        method: &str,
        path: &str,
        data: Option<&serde_json::Value>,
        field: &str,
    ) -> Result<(SecretValue, Lease), SecretError> {
        let (response, lease) = self.call_whole(name, method, path, data).await?;
        let value = pick_field(&response, field).ok_or_else(|| SecretError::Missing {
            name: name.into(),
            reason: format!("the response of {path} has no field `{field}`"),
        })?;
        Ok((value, lease))
    }

    /// Calls a dynamic-secret endpoint and returns its whole answer, with the
    /// lease to revoke later. The answer holds secret values: the caller takes
    /// what it needs and drops the rest.
    pub async fn call_whole(
        &self,
        name: &str,
        method: &str,
        path: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<(serde_json::Value, Lease), SecretError> {
        let client = self.client(name).await?;
        let response = match self.raw(&client, method, path, data).await {
            Ok(response) => response,
            Err(err) => {
                self.reset().await;
                return Err(unavailable(name, err));
            }
        };
        let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let lease_secs = response["lease_duration"]
            .as_u64()
            .filter(|d| *d > 0)
            .or_else(|| response["auth"]["lease_duration"].as_u64())
            .unwrap_or(0);
        let lease = Lease {
            lease_id: text(&response["lease_id"]),
            accessor: text(&response["auth"]["accessor"]),
            duration: Duration::from_secs(lease_secs),
        };
        Ok((response, lease))
    }

    /// Revokes a lease (direct HTTP: `sys/leases/revoke`) or a created token (by
    /// accessor, through vaultrs). Failures are logged; the lease then runs out.
    pub async fn revoke(&self, lease: &Lease) {
        let Ok(client) = self.client("lease").await else {
            return;
        };
        let result = if let Some(id) = &lease.lease_id {
            self.raw(
                &client,
                "PUT",
                "sys/leases/revoke",
                Some(&serde_json::json!({ "lease_id": id })),
            )
            .await
            .map(|_| ())
        } else if let Some(accessor) = &lease.accessor {
            vaultrs::token::revoke_accessor(&*client, accessor)
                .await
                .map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "revoking a Vault lease failed; it will expire on its own");
        }
    }

    async fn raw(
        &self,
        client: &VaultClient,
        method: &str,
        path: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let url = format!(
            "{}/v1/{}",
            self.config.address.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let http = &client.http.http;
        let (builder, content_type) = match method {
            "GET" => (http.get(&url), "application/json"),
            "PUT" => (http.put(&url), "application/json"),
            "PATCH" => (http.patch(&url), "application/merge-patch+json"),
            _ => (http.post(&url), "application/json"),
        };
        let mut builder = builder
            .header("X-Vault-Token", client.settings.token.as_str())
            .timeout(VAULT_TIMEOUT);
        if let Some(data) = data {
            builder = builder
                .header("Content-Type", content_type)
                .body(serde_json::to_vec(data).map_err(|e| e.to_string())?);
        }
        let response = builder.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path} answered HTTP {}", status.as_u16()));
        }
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{path} answered invalid JSON: {e}"))
    }

    /// Keeps tollgate's own token alive: renews it at two thirds of its TTL, and
    /// logs in again when renewal fails.
    pub fn spawn_renewal(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                let due = {
                    let session = self.session.lock().await;
                    session
                        .as_ref()
                        .filter(|s| !s.ttl.is_zero())
                        .map(|s| (s.since + s.ttl * 2 / 3, s.renewable))
                };
                // Not logged in yet (login happens on first use), or a token that
                // never expires: look again shortly.
                let Some((due, renewable)) = due else {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(SESSION_POLL) => continue,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
                let Ok(client) = self.client("renewal").await else {
                    continue;
                };
                let renewed = if renewable {
                    vaultrs::token::renew_self(&*client, None)
                        .await
                        .map_err(|e| e.to_string())
                } else {
                    Err("token is not renewable".to_string())
                };
                match renewed {
                    Ok(info) => {
                        if let Some(s) = self.session.lock().await.as_mut() {
                            s.ttl = Duration::from_secs(info.lease_duration);
                            s.since = tokio::time::Instant::now();
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "Vault token renewal failed; logging in again");
                        self.reset().await;
                        if let Err(err) = self.client("renewal").await {
                            tracing::warn!(error = %err, "Vault login failed");
                            tokio::time::sleep(RELOGIN_BACKOFF).await;
                        }
                    }
                }
            }
        });
    }
}

/// Follows a dotted path (`data.password`, `auth.client_token`) to a string or
/// number.
fn pick_field(value: &serde_json::Value, field: &str) -> Option<SecretValue> {
    let leaf = field.split('.').try_fold(value, |v, key| v.get(key))?;
    match leaf {
        serde_json::Value::String(s) if !s.is_empty() => Some(SecretValue::new(s.clone())),
        serde_json::Value::Number(n) => Some(SecretValue::new(n.to_string())),
        _ => None,
    }
}
