//! Cloud instance metadata, emulated: a plain-http request for
//! `169.254.169.254` or `metadata.google.internal` (port 80), proxied or caught
//! by the launcher's port-80 redirect, is answered here as AWS's IMDSv2, GCP's
//! metadata server or Azure's IMDS would answer it, for the secrets the task's
//! policy declares and nothing else ([`Offer`]).
//!
//! What is handed out is always a placeholder: the SDK inside then uses it like
//! a credential, and tollgate puts the real one in on the way out. Nothing here
//! is ever forwarded to a real metadata service, and there is no instance
//! identity document, user data or any other path (404).

mod ask;
mod aws;
mod azure;
mod gcp;
mod offer;
mod session;

pub use ask::{Ask, Caller, Reply};
pub use offer::{parse_service_account, AwsRole, AzureIdentity, GcpAccount, GcpIdentity, Offer};
pub use session::SessionKey;

use crate::policy::model::KeySource;
use crate::secrets::KeyReader;
use http::StatusCode;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The link-local address every cloud serves its metadata on.
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// GCP's name for it.
pub const GOOGLE_METADATA_HOST: &str = "metadata.google.internal";
/// Longest life of the credentials handed out (a task that ends sooner ends them sooner).
pub const CREDENTIAL_LIFE: Duration = Duration::from_secs(3600);

/// Whether a plain-http request for `host`:`port` is for a metadata service.
pub fn is_metadata_target(host: &str, port: u16) -> bool {
    port == 80
        && (host == GOOGLE_METADATA_HOST
            || host
                .parse::<Ipv4Addr>()
                .is_ok_and(|ip| ip == METADATA_ADDRESS))
}

/// Which service a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `/latest/…`.
    Aws,
    /// `/computeMetadata/…`, and the ping `/`.
    Gcp,
    /// `/metadata/…`.
    Azure,
}

impl Flavor {
    /// The service `path` is for, if any.
    pub fn of(path: &str) -> Option<Self> {
        if path == "/latest" || path.starts_with("/latest/") {
            Some(Flavor::Aws)
        } else if path == "/" || path.starts_with("/computeMetadata/") {
            Some(Flavor::Gcp)
        } else if path.starts_with("/metadata/") {
            Some(Flavor::Azure)
        } else {
            None
        }
    }
}

/// The answer to `ask` from what `offer` holds; `identity` is the GCP service
/// account's, when known.
pub fn answer(
    offer: &Offer,
    identity: Option<&GcpIdentity>,
    ask: &Ask<'_>,
    caller: &Caller<'_>,
    key: &SessionKey,
) -> Reply {
    match Flavor::of(ask.path) {
        Some(Flavor::Aws) => aws::answer(offer, ask, caller, key),
        Some(Flavor::Gcp) => gcp::answer(offer.gcp.as_ref(), identity, ask, caller),
        Some(Flavor::Azure) => azure::answer(offer.azure.as_ref(), ask, caller),
        None => Reply::new(StatusCode::NOT_FOUND, "text/plain", "Not Found"),
    }
}

/// The emulation's process-wide state: the IMDSv2 session key, and the
/// (non-secret) identities read from service-account keys.
pub struct MetadataService {
    sessions: SessionKey,
    identities: Mutex<HashMap<KeySource, GcpIdentity>>,
}

impl std::fmt::Debug for MetadataService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataService").finish_non_exhaustive()
    }
}

impl MetadataService {
    /// A service with a fresh session key; `None` when the system has no
    /// randomness to give.
    pub fn new() -> Option<Self> {
        Some(Self {
            sessions: SessionKey::random()?,
            identities: Mutex::default(),
        })
    }

    /// The session key.
    pub fn sessions(&self) -> &SessionKey {
        &self.sessions
    }

    /// The email and project id of `account`'s service-account key, read once
    /// through `keys` and kept (they are not secret). `None` when there is no
    /// key or it cannot be read now (logged; tried again next time).
    pub async fn gcp_identity(
        &self,
        keys: &KeyReader,
        account: &GcpAccount,
    ) -> Option<GcpIdentity> {
        let source = account.key.as_ref()?;
        if let Some(known) = self.lock().get(source) {
            return Some(known.clone());
        }
        let identity = match keys.read(&account.secret, source).await {
            Ok(value) => parse_service_account(value.expose()),
            Err(err) => {
                tracing::warn!(secret = %account.secret, error = %err,
                    "the service-account key could not be read; the metadata server answers without its email");
                return None;
            }
        };
        let Some(identity) = identity else {
            tracing::warn!(secret = %account.secret,
                "the service-account key has no client_email; the metadata server answers without it");
            return None;
        };
        self.lock().insert(source.clone(), identity.clone());
        Some(identity)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeySource, GcpIdentity>> {
        self.identities.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When credentials handed out now expire: [`CREDENTIAL_LIFE`] from `now`, or
/// after `task_left` if sooner.
pub fn credentials_expire(now: SystemTime, task_left: Option<Duration>) -> SystemTime {
    now + task_left.map_or(CREDENTIAL_LIFE, |left| left.min(CREDENTIAL_LIFE))
}

#[cfg(test)]
mod tests;
