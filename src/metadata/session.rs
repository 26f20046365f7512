//! IMDSv2 session tokens: stateless and unforgeable. A token is its expiry and
//! an HMAC-SHA256 over the task id and that expiry, under a key drawn at random
//! when the process starts; nothing is stored, and a token is worthless to
//! another task, after its expiry, or after a restart.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest session a token may be asked for (AWS's limit: six hours).
pub const MAX_SESSION_TTL: u64 = 21_600;
/// Longer tokens than this are not looked at.
const MAX_TOKEN_LEN: usize = 128;
/// Domain separation: these MACs sign nothing else.
const CONTEXT: &[u8] = b"tollgate imds session v1";

/// The process's session key.
pub struct SessionKey(hmac::Key);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// A fresh random key, or `None` when the system has no randomness to give.
    pub fn random() -> Option<Self> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).ok()?;
        Some(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// A token for `task`, valid for `ttl` seconds from `now`.
    pub fn issue(&self, task: &str, now: SystemTime, ttl: u64) -> String {
        let expires = unix(now).saturating_add(ttl);
        let tag = hmac::sign(&self.0, &message(task, expires));
        format!("{expires}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Whether `token` was issued for `task` by this process and is unexpired at `now`.
    pub fn verify(&self, token: &str, task: &str, now: SystemTime) -> bool {
        if token.len() > MAX_TOKEN_LEN {
            return false;
        }
        let Some((expires, tag)) = token.split_once('.') else {
            return false;
        };
        // Digits only, no leading zero: one expiry has one form.
        if expires.is_empty()
            || expires.starts_with('0')
            || !expires.bytes().all(|b| b.is_ascii_digit())
        {
            return false;
        }
        let (Ok(expires), Ok(tag)) = (expires.parse::<u64>(), URL_SAFE_NO_PAD.decode(tag)) else {
            return false;
        };
        // SECURITY: the MAC binds the task: a token leaked from one sandbox
        // opens no other task's credentials.
        expires > unix(now) && hmac::verify(&self.0, &message(task, expires), &tag).is_ok()
    }
}

fn message(task: &str, expires: u64) -> Vec<u8> {
    let mut message = Vec::with_capacity(CONTEXT.len() + task.len() + 22);
    message.extend_from_slice(CONTEXT);
    message.push(0);
    message.extend_from_slice(task.as_bytes());
    message.push(0);
    message.extend_from_slice(expires.to_string().as_bytes());
    message
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::random().unwrap_or_else(|| panic!("no randomness"))
    }

    #[test]
    fn a_token_opens_its_own_task_until_it_expires() {
        let key = key();
        let now = SystemTime::now();
        let token = key.issue("agent", now, 60);
        assert!(key.verify(&token, "agent", now));
        assert!(key.verify(&token, "agent", now + Duration::from_secs(59)));
        assert!(!key.verify(&token, "agent", now + Duration::from_secs(60)));
        assert!(!key.verify(&token, "other", now), "another task");
        assert!(!key.verify(&token, "agen", now), "a prefix of the task id");
        assert!(!self::key().verify(&token, "agent", now), "another process");
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let key = key();
        let now = SystemTime::now();
        let token = key.issue("agent", now, 60);
        let (expires, tag) = token.split_once('.').unwrap_or_else(|| panic!("{token}"));
        let later: u64 = expires.parse::<u64>().unwrap_or_default() + 3600;
        for forged in [
            format!("{later}.{tag}"),
            format!("+{expires}.{tag}"),
            format!("0{expires}.{tag}"),
            format!("{expires}.{tag}A"),
            format!("{expires}.{}", &tag[1..]),
            format!("{expires}{tag}"),
            format!("{expires}."),
            format!(".{tag}"),
            String::new(),
            "x".repeat(4096),
            format!("{expires}.{tag}.{tag}"),
        ] {
            assert!(!key.verify(&forged, "agent", now), "{forged}");
        }
    }
}
