//! Key material tollgate uses itself (a GitHub App key, an OAuth client secret,
//! a refresh token, a service-account key), read from any backend, and a
//! rotated refresh token written back where it came from.

use super::{EnvBackend, SecretError, SecretValue, VaultBackend};
use crate::policy::model::KeySource;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads [`KeySource`]s. Nothing read here is cached: key material is read when
/// a token is minted, which is rare.
#[derive(Debug, Clone)]
pub struct KeyReader {
    env: EnvBackend,
    vault: Option<Arc<VaultBackend>>,
    /// Files (and directories) a `file:` source may not read: tollgate's own
    /// keys, which a policy must not be able to send to an issuer.
    forbidden: Vec<PathBuf>,
}

impl KeyReader {
    /// A reader over the env backend and, when configured, Vault.
    pub fn new(env: EnvBackend, vault: Option<Arc<VaultBackend>>) -> Self {
        Self {
            env,
            vault,
            forbidden: Vec::new(),
        }
    }

    /// Refuses `file:` sources at or under any of `paths`
    /// ([`crate::config::Config::own_secret_paths`]).
    pub fn forbid(mut self, paths: &[PathBuf]) -> Self {
        self.forbidden = paths
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect();
        self
    }

    /// Whether `path` (canonical) is one of tollgate's own key files.
    fn is_forbidden(&self, path: &Path) -> bool {
        self.forbidden.iter().any(|own| path.starts_with(own))
    }

    /// The Vault backend, or why there is none (for the secret `name`).
    pub fn vault(&self, name: &str) -> Result<&VaultBackend, SecretError> {
        self.vault
            .as_deref()
            .ok_or_else(|| SecretError::Unavailable {
                name: name.to_string(),
                reason: "no `secrets.vault` is configured".into(),
            })
    }

    /// The value at `source`, for the secret `name` (used in errors only).
    pub async fn read(&self, name: &str, source: &KeySource) -> Result<SecretValue, SecretError> {
        match source {
            KeySource::Vault { mount, path, field } => {
                self.vault(name)?.read_kv(name, mount, path, field).await
            }
            KeySource::Env { name: var } => self.env.read(name, var),
            KeySource::File { path } => {
                // SECURITY: through symlinks too, a policy may not make tollgate
                // read its own CA key or tokens and hand them to an issuer.
                let real =
                    tokio::fs::canonicalize(path)
                        .await
                        .map_err(|e| SecretError::Missing {
                            name: name.to_string(),
                            reason: format!("cannot read {}: {}", path.display(), e.kind()),
                        })?;
                if self.is_forbidden(&real) {
                    return Err(SecretError::Unavailable {
                        name: name.to_string(),
                        reason: format!(
                            "{} is one of tollgate's own key files or state; a policy may not read it",
                            path.display()
                        ),
                    });
                }
                let text =
                    tokio::fs::read_to_string(&real)
                        .await
                        .map_err(|e| SecretError::Missing {
                            name: name.to_string(),
                            reason: format!("cannot read {}: {}", path.display(), e.kind()),
                        })?;
                let value = text.trim_end_matches(['\n', '\r']).to_string();
                if value.is_empty() {
                    return Err(SecretError::Missing {
                        name: name.to_string(),
                        reason: format!("{} is empty", path.display()),
                    });
                }
                Ok(SecretValue::new(value))
            }
        }
    }

    /// Writes `value` back to `source` (a rotated refresh token): a KV v2 patch
    /// of that one field, or a file replaced whole. An env variable cannot be
    /// written; that is an error the caller logs.
    pub async fn write_back(
        &self,
        name: &str,
        source: &KeySource,
        value: &SecretValue,
    ) -> Result<(), SecretError> {
        match source {
            KeySource::Vault { mount, path, field } => {
                self.vault(name)?
                    .patch_kv(name, mount, path, field, value.expose())
                    .await
            }
            KeySource::Env { name: var } => Err(SecretError::Unavailable {
                name: name.to_string(),
                reason: format!("the rotated refresh token cannot be written to env {var}"),
            }),
            KeySource::File { path } => {
                if std::fs::canonicalize(path).is_ok_and(|real| self.is_forbidden(&real)) {
                    return Err(SecretError::Unavailable {
                        name: name.to_string(),
                        reason: format!("{} is one of tollgate's own files", path.display()),
                    });
                }
                let path = path.clone();
                let value = value.clone();
                tokio::task::spawn_blocking(move || replace_file(&path, value.expose().as_bytes()))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .map_err(|reason| SecretError::Unavailable {
                        name: name.to_string(),
                        reason,
                    })
            }
        }
    }
}

/// Replaces `path` atomically (a sibling temp file renamed over it), readable by
/// its owner only.
fn replace_file(path: &std::path::Path, contents: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let fail = |e: std::io::Error| format!("cannot write {}: {}", path.display(), e.kind());
    let mut tmp = tempfile_in(dir).map_err(fail)?;
    tmp.1.write_all(contents).map_err(fail)?;
    tmp.1.write_all(b"\n").map_err(fail)?;
    tmp.1.sync_all().map_err(fail)?;
    std::fs::rename(&tmp.0, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp.0);
        fail(e)
    })
}

fn tempfile_in(dir: &std::path::Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| std::io::Error::other("no randomness"))?;
    let path = dir.join(format!(".tollgate-{}.tmp", crate::text::hex(&random)));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(forbidden: &[PathBuf]) -> KeyReader {
        KeyReader::new(EnvBackend::new("TOLLGATE_KEYS_TEST_"), None).forbid(forbidden)
    }

    #[tokio::test]
    async fn a_file_source_cannot_read_tollgates_own_keys_even_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(state.join("task.key"), "own").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("ca.key"), "ca").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("app.pem"), "app key\n").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(dir.path().join("ca.key"), dir.path().join("innocent.pem"))
            .unwrap_or_else(|e| panic!("{e}"));
        let keys = reader(&[state.clone(), dir.path().join("ca.key")]);
        let file = |p: PathBuf| KeySource::File { path: p };
        for refused in [
            state.join("task.key"),
            dir.path().join("ca.key"),
            dir.path().join("innocent.pem"),
            dir.path().join("state/../ca.key"),
        ] {
            let err = keys.read("T", &file(refused.clone())).await.err();
            let err = err.unwrap_or_else(|| panic!("{} was read", refused.display()));
            assert!(err.to_string().contains("tollgate's own"), "{err}");
        }
        let ok = keys.read("T", &file(dir.path().join("app.pem"))).await;
        assert_eq!(
            ok.map(|v| v.expose().to_string()).ok().as_deref(),
            Some("app key")
        );
        let rotated = SecretValue::new("r2".into());
        assert!(keys
            .write_back("T", &file(dir.path().join("ca.key")), &rotated)
            .await
            .is_err());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ca.key"))
                .ok()
                .as_deref(),
            Some("ca")
        );
    }
}
