//! Secret values and where they come from.
//!
//! A value lives only in memory, inside [`SecretValue`], whose `Debug` prints no
//! value and whose bytes are zeroed on drop. Logs, audit records and error bodies
//! only ever see secret *names*. This module must never format a value.

mod env;
mod keys;
mod store;
pub mod vault;

pub use env::EnvBackend;
pub use keys::KeyReader;
pub use store::SecretStore;
pub(crate) use store::DEFAULT_SECRET_TTL;
pub use vault::VaultBackend;

use std::fmt;
use zeroize::Zeroizing;

/// A secret value. Cloning is deliberate and rare; prefer `Arc<SecretValue>`.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The value, for the one place that injects it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(..)")
    }
}

/// Why a secret could not be had. Messages name the secret, never a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    /// The backend has no such secret.
    #[error("secret {name} is not available: {reason}")]
    Missing {
        /// Secret name.
        name: String,
        /// What is missing.
        reason: String,
    },
    /// The backend could not be reached.
    #[error("secret backend unavailable for {name}: {reason}")]
    Unavailable {
        /// Secret name.
        name: String,
        /// What failed.
        reason: String,
    },
    /// The issuer refused to mint, or could not be reached.
    #[error("secret {name} could not be minted: {reason}")]
    Minting {
        /// Secret name.
        name: String,
        /// What the issuer said (its own message or error code), or what failed.
        reason: String,
    },
}

impl SecretError {
    /// A mint that failed for the secret `name`.
    pub fn minting(name: &str, reason: impl Into<String>) -> Self {
        SecretError::Minting {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// What went wrong, without the secret's name.
    pub fn reason(&self) -> String {
        match self {
            SecretError::Missing { reason, .. }
            | SecretError::Unavailable { reason, .. }
            | SecretError::Minting { reason, .. } => reason.clone(),
        }
    }
}

impl From<SecretError> for crate::error::Refusal {
    fn from(err: SecretError) -> Self {
        crate::error::Refusal::new(crate::error::Reason::SecretUnavailable, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_value() {
        let v = SecretValue::new("hunter2".into());
        assert_eq!(format!("{v:?}"), "SecretValue(..)");
        assert_eq!(format!("{:?}", Some(v)), "Some(SecretValue(..))");
    }
}
