//! Self-verifying task tokens: `tg1.<claims>.<mac>`, both base64url. The claims
//! (task id, policy, expiry, optional source) are signed with HMAC-SHA256 under the
//! task key in `state_dir`, so any replica holding the key accepts a task another
//! created, without a shared task table. Revocation is a deny-list kept until the
//! token would have expired anyway.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const PREFIX: &str = "tg1.";

/// What a task token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Task id.
    pub id: String,
    /// Policy name.
    pub policy: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Required source address, if bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
}

/// The HMAC key that signs and checks task tokens.
pub struct TaskKey {
    key: hmac::Key,
}

impl std::fmt::Debug for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskKey(..)")
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl TaskKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// Loads the key at `path` (base64 text), creating it (0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes)
                .map_err(|_| "random bytes unavailable".to_string())?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::tls::ca::create_private_dir(dir).map_err(|e| e.to_string())?;
            }
            let text = format!("{}\n", URL_SAFE_NO_PAD.encode(bytes));
            crate::tls::ca::write_new_file(path, text.as_bytes(), 0o600)
                .map_err(|e| e.to_string())?;
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| format!("{}: not a base64url task key", path.display()))?;
        if bytes.len() < 32 {
            return Err(format!("{}: a task key needs 32 bytes", path.display()));
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// Signs `claims` into a token.
    pub fn mint(&self, claims: &Claims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mac = hmac::sign(&self.key, body.as_bytes());
        format!("{PREFIX}{body}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    }

    /// The claims of a genuine, unexpired token, or `None`.
    pub fn verify(&self, token: &str, now: u64) -> Option<Claims> {
        let rest = token.strip_prefix(PREFIX)?;
        let (body, mac) = rest.split_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        // SECURITY: constant-time check before the claims are even parsed.
        hmac::verify(&self.key, body.as_bytes(), &mac).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (claims.exp > now).then_some(claims)
    }
}

/// Whether `token` looks like a task token (as opposed to a static task's token).
pub fn is_task_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            id: "t-1".into(),
            policy: "p".into(),
            exp: 1000,
            src: None,
        }
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let key = TaskKey::from_bytes(&[7; 32]);
        let token = key.mint(&claims());
        assert!(is_task_token(&token));
        assert_eq!(key.verify(&token, 999), Some(claims()));
        assert_eq!(key.verify(&token, 1000), None);
    }

    #[test]
    fn forged_or_foreign_tokens_fail() {
        let key = TaskKey::from_bytes(&[7; 32]);
        let other = TaskKey::from_bytes(&[8; 32]);
        let token = key.mint(&claims());
        assert_eq!(other.verify(&token, 0), None, "another key");
        // Claims changed (another policy), MAC kept.
        let (_, mac) = token.rsplit_once('.').unwrap();
        let mut forged = claims();
        forged.policy = "admin".into();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(key.verify(&format!("tg1.{body}.{mac}"), 0), None);
        assert_eq!(key.verify("tg1.garbage", 0), None);
        assert_eq!(key.verify("not-a-token", 0), None);
    }

    #[test]
    fn the_key_file_is_created_0600_and_reloads_the_same() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/task.key");
        let key = TaskKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = TaskKey::load_or_create(&path).unwrap();
        let token = key.mint(&claims());
        assert_eq!(again.verify(&token, 0), Some(claims()));
    }
}

#[cfg(test)]
mod props;
