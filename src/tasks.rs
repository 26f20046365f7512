//! Tasks and proxy authentication: who is speaking, and under which policy.

use crate::config::StaticTask;
use crate::error::{Reason, Refusal};
use base64::Engine;
use http::HeaderValue;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A task created through this process's admin API (listing only; tokens
/// are never kept).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskInfo {
    /// Task id.
    pub id: String,
    /// Policy name.
    pub policy: String,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// Bound source address.
    pub source: Option<IpAddr>,
}

/// The tasks created through this process's admin API.
#[derive(Debug, Default)]
pub struct CreatedTasks(Mutex<std::collections::BTreeMap<String, TaskInfo>>);

impl CreatedTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, TaskInfo>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists a new task.
    pub fn insert(&self, info: TaskInfo) {
        self.lock().insert(info.id.clone(), info);
    }

    /// Takes task `id` off the list.
    pub fn remove(&self, id: &str) -> Option<TaskInfo> {
        self.lock().remove(id)
    }

    /// The tasks that have neither expired by `now` nor been revoked (here or,
    /// in cluster mode, by another replica); the others are forgotten.
    pub fn live(&self, now: u64, registry: &TaskRegistry) -> Vec<TaskInfo> {
        let mut tasks = self.lock();
        tasks.retain(|id, t| t.expires_at > now && !registry.is_revoked(id));
        tasks.values().cloned().collect()
    }
}

/// A task that was revoked or has expired: its requests get 407.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this task has ended")]
pub struct TaskEnded;

impl From<TaskEnded> for Refusal {
    fn from(ended: TaskEnded) -> Self {
        Refusal::new(Reason::ProxyAuthRequired, ended.to_string())
    }
}

/// One sandbox run under one policy.
#[derive(Clone)]
pub struct Task {
    /// Task id (the proxy user name).
    pub id: String,
    /// Policy name.
    pub policy: String,
    token: Option<String>,
    /// Required source address.
    pub source: Option<IpAddr>,
    /// Expiry (Unix seconds) of a token-based task.
    pub expires_at: Option<u64>,
}

impl Task {
    /// Time until the task expires (zero once it has), or `None` for a task
    /// without expiry (a static one).
    pub fn time_left(&self) -> Option<Duration> {
        let exp = self.expires_at?;
        let Some(at) = UNIX_EPOCH.checked_add(Duration::from_secs(exp)) else {
            return Some(Duration::MAX);
        };
        Some(
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("policy", &self.policy)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl From<&StaticTask> for Task {
    fn from(t: &StaticTask) -> Self {
        Self {
            id: t.id.clone(),
            policy: t.policy.clone(),
            token: t.token.clone(),
            source: t.source,
            expires_at: None,
        }
    }
}

/// The known tasks: static ones from the config, and any holder of a valid
/// self-verifying task token.
#[derive(Debug, Default)]
pub struct TaskRegistry {
    by_id: HashMap<String, Arc<Task>>,
    by_source: HashMap<IpAddr, Arc<Task>>,
    signer: Option<crate::task_token::TaskKey>,
    /// Revoked task ids, with the expiry after which they can be forgotten.
    revoked: Mutex<HashMap<String, u64>>,
    /// `revoked.len()`, updated under its lock: checked first on every request,
    /// so that the common case (nothing revoked) takes no lock at all.
    revoked_count: AtomicUsize,
}

impl TaskRegistry {
    /// Builds the registry from static tasks.
    pub fn from_static(tasks: &[StaticTask]) -> Self {
        let mut registry = Self::default();
        for t in tasks {
            let task = Arc::new(Task::from(t));
            if task.token.is_none() {
                if let Some(src) = task.source {
                    registry.by_source.insert(src, task.clone());
                }
            }
            registry.by_id.insert(task.id.clone(), task);
        }
        registry
    }

    /// Also accepts task tokens signed with `key`.
    pub fn with_signer(mut self, key: crate::task_token::TaskKey) -> Self {
        self.signer = Some(key);
        self
    }

    /// The key that signs task tokens, if any.
    pub fn signer(&self) -> Option<&crate::task_token::TaskKey> {
        self.signer.as_ref()
    }

    /// Ends a token-based task: its token stops working at once. The entry is kept
    /// until `exp`, when the token would have expired anyway.
    pub fn revoke(&self, id: &str, exp: u64) {
        let now = crate::task_token::now_secs();
        let mut revoked = self
            .revoked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        revoked.retain(|_, until| *until > now);
        revoked.insert(id.to_string(), exp);
        self.revoked_count.store(revoked.len(), Ordering::SeqCst);
    }

    /// Forgets revocations of tasks whose tokens have expired anyway (their
    /// expiry refuses them), so that the revocation check is lock-free again
    /// once none is left. Called periodically.
    pub fn forget_expired_revocations(&self) {
        let now = crate::task_token::now_secs();
        let mut revoked = self
            .revoked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        revoked.retain(|_, until| *until > now);
        self.revoked_count.store(revoked.len(), Ordering::SeqCst);
    }

    /// Every revocation still in force: `(id, expiry)`.
    pub fn revocations(&self) -> Vec<(String, u64)> {
        let now = crate::task_token::now_secs();
        self.revoked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(id, until)| (id.clone(), *until))
            .collect()
    }

    /// Whether task `id` was revoked (here, or by another replica).
    pub fn is_revoked(&self, id: &str) -> bool {
        // Cheap common case: no revocation at all. The count is stored under the
        // lock after the map changes, so once `revoke` has returned it is non-zero.
        if self.revoked_count.load(Ordering::SeqCst) == 0 {
            return false;
        }
        self.revoked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(id)
    }

    /// Whether `task` may still act: not revoked, not expired. Cheap enough for
    /// every request: no lock unless some task has been revoked.
    pub fn is_current(&self, task: &Task) -> bool {
        match task.expires_at {
            None => true,
            Some(exp) => exp > crate::task_token::now_secs() && !self.is_revoked(&task.id),
        }
    }

    /// `Ok` while `task` may still act ([`Self::is_current`]); every place that
    /// lets a request of a task go on asks this.
    pub fn ensure_current(&self, task: &Task) -> Result<(), TaskEnded> {
        if self.is_current(task) {
            Ok(())
        } else {
            Err(TaskEnded)
        }
    }

    /// All static tasks.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.by_id.values()
    }

    /// Identifies the task behind a request from `client`, or `None` (407).
    ///
    /// With credentials: the id must exist, the token must match (constant time),
    /// and a bound source must equal `client`. Without credentials: only a task that
    /// has a source and no token, bound to `client`.
    pub fn authenticate(
        &self,
        proxy_auth: Option<&HeaderValue>,
        client: IpAddr,
    ) -> Option<Arc<Task>> {
        let client = canonical_ip(client);
        let Some(header) = proxy_auth else {
            return self.by_source.get(&client).cloned();
        };
        let (id, token) = parse_basic(header)?;
        let Some(task) = self.by_id.get(&id) else {
            return self.authenticate_signed(&id, &token, client);
        };
        let expected = task.token.as_deref()?;
        // SECURITY: constant-time comparison, so the token cannot be guessed byte by byte.
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), token.as_bytes())
            .ok()?;
        if task.source.is_some_and(|src| canonical_ip(src) != client) {
            return None;
        }
        Some(task.clone())
    }
}

impl TaskRegistry {
    /// A task token: genuine, unexpired, for this id, not revoked, from its source.
    pub fn verify_token(&self, id: &str, token: &str, client: IpAddr) -> Option<Arc<Task>> {
        self.authenticate_signed(id, token, canonical_ip(client))
    }

    fn authenticate_signed(&self, id: &str, token: &str, client: IpAddr) -> Option<Arc<Task>> {
        if !crate::task_token::is_task_token(token) {
            return None;
        }
        let claims = self
            .signer
            .as_ref()?
            .verify(token, crate::task_token::now_secs())?;
        if claims.id != id || self.is_revoked(id) {
            return None;
        }
        if claims.src.is_some_and(|src| canonical_ip(src) != client) {
            return None;
        }
        Some(Arc::new(Task {
            id: claims.id,
            policy: claims.policy,
            token: None,
            source: claims.src,
            expires_at: Some(claims.exp),
        }))
    }
}

/// An IPv4-mapped IPv6 peer address (dual-stack sockets) compares as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Decodes `Basic base64(id:token)`.
fn parse_basic(header: &HeaderValue) -> Option<(String, String)> {
    let text = header.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, token) = decoded.split_once(':')?;
    Some((id.to_string(), token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> TaskRegistry {
        TaskRegistry::from_static(&[
            StaticTask {
                id: "a".into(),
                policy: "p".into(),
                token: Some("s3cret".into()),
                source: None,
                line: None,
            },
            StaticTask {
                id: "b".into(),
                policy: "p".into(),
                token: Some("tok".into()),
                source: Some("10.0.0.2".parse().unwrap()),
                line: None,
            },
            StaticTask {
                id: "c".into(),
                policy: "p".into(),
                token: None,
                source: Some("10.0.0.3".parse().unwrap()),
                line: None,
            },
        ])
    }

    fn basic(s: &str) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        ))
        .unwrap()
    }

    #[test]
    fn token_must_match() {
        let r = registry();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            r.authenticate(Some(&basic("a:s3cret")), ip)
                .map(|t| t.id.clone()),
            Some("a".into())
        );
        assert!(r.authenticate(Some(&basic("a:wrong")), ip).is_none());
        assert!(r.authenticate(Some(&basic("a:")), ip).is_none());
        assert!(r.authenticate(Some(&basic("zz:s3cret")), ip).is_none());
        assert!(r.authenticate(None, ip).is_none());
        assert!(r
            .authenticate(Some(&HeaderValue::from_static("Bearer x")), ip)
            .is_none());
    }

    #[test]
    fn source_binding_is_enforced() {
        let r = registry();
        assert!(r
            .authenticate(Some(&basic("b:tok")), "10.0.0.9".parse().unwrap())
            .is_none());
        assert!(r
            .authenticate(Some(&basic("b:tok")), "10.0.0.2".parse().unwrap())
            .is_some());
        assert!(r
            .authenticate(Some(&basic("b:tok")), "::ffff:10.0.0.2".parse().unwrap())
            .is_some());
    }

    #[test]
    fn source_only_task_needs_no_credentials() {
        let r = registry();
        assert_eq!(
            r.authenticate(None, "10.0.0.3".parse().unwrap())
                .map(|t| t.id.clone()),
            Some("c".into())
        );
        assert!(r.authenticate(None, "10.0.0.4".parse().unwrap()).is_none());
        assert!(r
            .authenticate(Some(&basic("c:")), "10.0.0.3".parse().unwrap())
            .is_none());
    }
}

#[cfg(test)]
mod signed_tests {
    use super::*;
    use crate::task_token::{now_secs, Claims, TaskKey};

    fn basic(id: &str, token: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{token}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn task_tokens_work_until_revoked_and_only_for_their_id_and_source() {
        let registry = TaskRegistry::from_static(&[]).with_signer(TaskKey::from_bytes(&[1; 32]));
        let client: IpAddr = "10.0.0.9".parse().unwrap();
        let claims = Claims {
            id: "t-1".into(),
            policy: "p".into(),
            exp: now_secs() + 60,
            src: Some(client),
        };
        let token = registry.signer().unwrap().mint(&claims);
        let task = registry
            .authenticate(Some(&basic("t-1", &token)), client)
            .unwrap();
        assert_eq!((task.id.as_str(), task.policy.as_str()), ("t-1", "p"));
        assert!(
            registry
                .authenticate(Some(&basic("t-2", &token)), client)
                .is_none(),
            "another id"
        );
        let elsewhere: IpAddr = "10.0.0.10".parse().unwrap();
        assert!(
            registry
                .authenticate(Some(&basic("t-1", &token)), elsewhere)
                .is_none(),
            "another source"
        );
        registry.revoke("t-1", claims.exp);
        assert!(
            registry
                .authenticate(Some(&basic("t-1", &token)), client)
                .is_none(),
            "revoked"
        );
        let unsigned = TaskRegistry::from_static(&[]);
        assert!(
            unsigned
                .authenticate(Some(&basic("t-1", &token)), client)
                .is_none(),
            "no key"
        );
    }

    fn api_task(id: &str, expires_at: u64) -> Task {
        Task {
            id: id.into(),
            policy: "p".into(),
            token: None,
            source: None,
            expires_at: Some(expires_at),
        }
    }

    #[test]
    fn a_task_is_current_until_it_expires_or_is_revoked() {
        let registry = TaskRegistry::from_static(&[]);
        let now = now_secs();
        let live = api_task("live", now + 60);
        let other = api_task("other", now + 60);
        assert!(registry.is_current(&live) && registry.is_current(&other));
        assert!(!registry.is_current(&api_task("old", now)), "expired");
        assert!(live.time_left().unwrap() > Duration::from_secs(58));
        assert_eq!(api_task("old", now - 1).time_left(), Some(Duration::ZERO));

        registry.revoke("live", now + 60);
        assert!(!registry.is_current(&live), "revoked");
        assert!(registry.is_current(&other), "only the revoked task");
        registry.forget_expired_revocations();
        assert!(!registry.is_current(&live), "kept until its expiry");

        registry.revoke("gone", now - 1);
        registry.forget_expired_revocations();
        assert_eq!(registry.revoked_count.load(Ordering::SeqCst), 1);

        let static_task = Task {
            id: "s".into(),
            policy: "p".into(),
            token: Some("t".into()),
            source: None,
            expires_at: None,
        };
        assert!(registry.is_current(&static_task));
        assert_eq!(static_task.time_left(), None);
    }
}
