//! AWS credentials for the `aws` source: from the AWS secrets engine of Vault /
//! OpenBao (`{mount}/sts/{role}` for temporary credentials with a session
//! token, else `{mount}/creds/{role}`), leased per task and revoked at its
//! end; or a static access key read from any backend.

use super::issued::Fresh;
use crate::policy::model::{Aws, AwsCredentials};
use crate::secrets::{KeyReader, SecretError, SecretValue};
use crate::sigv4::Credentials;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Roles known to answer only on `creds/` (IAM-user roles refuse `sts/`).
#[derive(Default)]
pub(super) struct Roles {
    creds_only: Mutex<HashSet<(String, String)>>,
}

impl Roles {
    fn creds_only(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.creds_only.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Credentials for the secret `name`; `fallback` is how long a static key
    /// (or a lease without a duration) is used before it is read again.
    pub(super) async fn mint(
        &self,
        keys: &KeyReader,
        name: &str,
        aws: &Aws,
        fallback: Duration,
    ) -> Result<Fresh, SecretError> {
        match &aws.credentials {
            AwsCredentials::Vault { mount, role } => {
                self.engine(keys, name, mount, role, fallback).await
            }
            AwsCredentials::Static {
                access_key_id,
                secret_access_key,
            } => {
                let id = keys.read(name, access_key_id).await?;
                let secret = keys.read(name, secret_access_key).await?;
                let creds = Credentials {
                    access_key_id: id.expose().trim(),
                    secret_access_key: secret.expose().trim(),
                    session_token: None,
                    expires_at: None,
                };
                fresh(name, &creds, SystemTime::now() + fallback, None)
            }
        }
    }

    async fn engine(
        &self,
        keys: &KeyReader,
        name: &str,
        mount: &str,
        role: &str,
        fallback: Duration,
    ) -> Result<Fresh, SecretError> {
        let vault = keys.vault(name)?;
        let role_key = (mount.to_string(), role.to_string());
        let sts_first = !self.creds_only().contains(&role_key);
        let answer = if sts_first {
            match vault
                .call_whole(name, "GET", &format!("{mount}/sts/{role}"), None)
                .await
            {
                Ok(answer) => answer,
                Err(sts_err) => {
                    let answer = vault
                        .call_whole(name, "GET", &format!("{mount}/creds/{role}"), None)
                        .await
                        .map_err(|creds_err| {
                            SecretError::minting(
                                name,
                                format!(
                                    "the AWS engine gave no credentials: {}; {}",
                                    sts_err.reason(),
                                    creds_err.reason()
                                ),
                            )
                        })?;
                    self.creds_only().insert(role_key);
                    answer
                }
            }
        } else {
            vault
                .call_whole(name, "GET", &format!("{mount}/creds/{role}"), None)
                .await?
        };
        let (response, lease) = answer;
        let data = &response["data"];
        let text = |field: &str| data[field].as_str().filter(|s| !s.is_empty());
        let (Some(id), Some(secret)) = (text("access_key"), text("secret_key")) else {
            // The answer is dropped unread: it may hold a secret.
            vault.revoke(&lease).await;
            return Err(SecretError::minting(
                name,
                format!("the answer of {mount}/{role} has no access_key and secret_key"),
            ));
        };
        let life = if lease.duration.is_zero() {
            fallback
        } else {
            lease.duration
        };
        let expires_at = SystemTime::now() + life;
        let creds = Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: text("security_token"),
            expires_at: Some(unix(expires_at)),
        };
        fresh(name, &creds, expires_at, Some(lease))
    }
}

fn fresh(
    name: &str,
    creds: &Credentials<'_>,
    expires_at: SystemTime,
    lease: Option<crate::secrets::vault::Lease>,
) -> Result<Fresh, SecretError> {
    let value = creds.encode().ok_or_else(|| {
        SecretError::minting(name, "the AWS credentials are empty or hold a line break")
    })?;
    Ok(Fresh {
        value: SecretValue::new(value),
        expires_at,
        lease,
    })
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}
