//! The env backend: `env: NAME` reads `$<prefix>NAME`, so a policy in git can read
//! only variables meant for tollgate, never the proxy's own environment.

use super::{SecretError, SecretValue};

/// Reads secrets from prefixed environment variables.
#[derive(Debug, Clone)]
pub struct EnvBackend {
    prefix: String,
}

impl EnvBackend {
    /// A backend reading `$<prefix>NAME`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// Reads `$<prefix><var>` for the secret `name`.
    pub fn read(&self, name: &str, var: &str) -> Result<SecretValue, SecretError> {
        let full = format!("{}{}", self.prefix, var);
        match std::env::var(&full) {
            Ok(value) if !value.is_empty() => Ok(SecretValue::new(value)),
            _ => Err(SecretError::Missing {
                name: name.to_string(),
                reason: format!("environment variable {full} is not set"),
            }),
        }
    }
}
