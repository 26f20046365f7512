//! `tollgate.yaml`: the wire structs of [`wire`] turned into a validated
//! [`Config`], with every relative path resolved against the config file's directory.

mod audit;
mod cluster;
mod wire;

pub use audit::{
    AuditConfig, AuditSink, FileSink, HttpEnvelope, HttpSink, OnFailure, SignMode, SinkFormat,
    StdoutSink, SyslogSink, SyslogTransport, DEFAULT_ROTATE_BYTES,
};

use crate::yaml::{locate_item, locate_key, parse_yaml, FileError};
pub use cluster::ClusterConfig;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wire::{ConfigWire, OneOrMany, TaskWire, UpstreamWire, VaultWire};

/// Default proxy listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";
/// Default admin listener.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:3129";
/// Default upstream TCP connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default env-backend prefix.
pub const DEFAULT_ENV_PREFIX: &str = "TOLLGATE_SECRET_";
/// Approval holds one task may have pending when the config does not say.
pub const DEFAULT_MAX_PENDING_PER_TASK: usize = 8;

/// How tollgate reaches Vault / OpenBao.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// `http(s)://host:port`.
    pub address: String,
    /// How tollgate logs in.
    pub auth: VaultAuth,
}

/// tollgate's own Vault login.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    /// A token read from a file.
    Token {
        /// File holding the token.
        token_file: PathBuf,
    },
    /// AppRole login.
    AppRole {
        /// Role id.
        role_id: String,
        /// File holding the secret id.
        secret_id_file: PathBuf,
    },
}

/// Upstream connection settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// PEM files trusted besides the webpki roots.
    pub extra_roots: Vec<PathBuf>,
    /// Host -> address overrides (any port of the host goes there).
    pub resolve: HashMap<String, SocketAddr>,
    /// CIDRs of private destinations that may be reached.
    pub allow_private: Vec<IpNet>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
}

/// A task defined in the config file.
#[derive(Debug, Clone)]
pub struct StaticTask {
    /// Task id (the proxy user name).
    pub id: String,
    /// Policy name.
    pub policy: String,
    /// Proxy token, read from `token_env` at start.
    pub token: Option<String>,
    /// Required source address.
    pub source: Option<IpAddr>,
    /// Line in the config file, for errors about it.
    pub line: Option<usize>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    /// Proxy listeners.
    pub listen: Vec<SocketAddr>,
    /// Admin listener (`host:port` or `unix:/path`).
    pub admin_listen: String,
    /// Admin bearer token file.
    pub admin_token_file: PathBuf,
    /// State directory (mode 0700).
    pub state_dir: PathBuf,
    /// CA certificate path.
    pub ca_cert: PathBuf,
    /// CA key path.
    pub ca_key: PathBuf,
    /// Policy directory.
    pub policies_dir: PathBuf,
    /// Upstream settings.
    pub upstream: UpstreamConfig,
    /// Env-backend prefix.
    pub env_prefix: String,
    /// Vault / OpenBao, when configured.
    pub vault: Option<VaultConfig>,
    /// Audit settings.
    pub audit: AuditConfig,
    /// Static tasks.
    pub tasks: Vec<StaticTask>,
    /// Approval holds.
    pub approvals: ApprovalsConfig,
    /// HMAC key file of the self-verifying task tokens (the same on every replica).
    pub task_key: PathBuf,
    /// Shared state in Redis, for several replicas; `None`: one process.
    pub cluster: Option<ClusterConfig>,
}

/// `approvals:` settings.
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// Webhooks told of each held request.
    pub notify: Vec<String>,
    /// Holds one task may have pending at once.
    pub max_pending_per_task: usize,
}

impl Config {
    /// tollgate's own key material and state: the CA key, the audit key, the
    /// admin token, Vault login files and the state directory. A policy's
    /// `file:` key source may not name any of them (or anything under them).
    pub fn own_secret_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![
            self.state_dir.clone(),
            self.ca_key.clone(),
            self.audit.key.clone(),
            self.admin_token_file.clone(),
            self.task_key.clone(),
        ];
        if let Some(file) = self.cluster.as_ref().and_then(|c| c.password_file.clone()) {
            paths.push(file);
        }
        if let Some(vault) = &self.vault {
            match &vault.auth {
                VaultAuth::Token { token_file } => paths.push(token_file.clone()),
                VaultAuth::AppRole { secret_id_file, .. } => paths.push(secret_id_file.clone()),
            }
        }
        paths
    }

    /// Loads `path` if given; else `./tollgate.yaml` if present; else defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, FileError> {
        Self::load_as(path, TaskTokens::Read)
    }

    /// Like [`Config::load`], for commands that only talk to a running proxy
    /// (`tollgate approvals`): static tasks' `token_env` variables, which only
    /// the proxy's own environment has, are not read (their tokens stay unset).
    pub fn load_settings(path: Option<&Path>) -> Result<Config, FileError> {
        Self::load_as(path, TaskTokens::Skip)
    }

    fn load_as(path: Option<&Path>, tokens: TaskTokens) -> Result<Config, FileError> {
        match path {
            Some(p) => Self::load_file_as(p, tokens),
            None => {
                let default = Path::new("tollgate.yaml");
                if default.exists() {
                    Self::load_file_as(default, tokens)
                } else {
                    Self::from_text(Path::new("<defaults>"), "", Path::new("."), None)
                }
            }
        }
    }

    /// Loads and validates the config file at `path`.
    pub fn load_file(path: &Path) -> Result<Config, FileError> {
        Self::load_file_as(path, TaskTokens::Read)
    }

    fn load_file_as(path: &Path, tokens: TaskTokens) -> Result<Config, FileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| FileError::at(path, None, format!("cannot read config: {err}")))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::from_text_as(path, &text, base, Some(path.to_path_buf()), tokens)
    }

    /// Validates config text; relative paths resolve against `base`.
    pub fn from_text(
        file: &Path,
        text: &str,
        base: &Path,
        source: Option<PathBuf>,
    ) -> Result<Config, FileError> {
        Self::from_text_as(file, text, base, source, TaskTokens::Read)
    }

    fn from_text_as(
        file: &Path,
        text: &str,
        base: &Path,
        source: Option<PathBuf>,
        tokens: TaskTokens,
    ) -> Result<Config, FileError> {
        let wire: ConfigWire = parse_yaml(file, text)?;
        let at_key = |key: &str, msg: String| FileError::at(file, locate_key(text, key), msg);
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        let listen_raw = match wire.listen {
            None => vec![DEFAULT_LISTEN.to_string()],
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        };
        if listen_raw.is_empty() {
            return Err(at_key(
                "listen",
                "`listen` needs at least one address".into(),
            ));
        }
        let listen = listen_raw
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .map_err(|_| at_key("listen", format!("listen address `{s}` is not ip:port")))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let state_dir = rel(wire.state_dir.as_deref().unwrap_or(Path::new(".tollgate")));
        let admin = wire.admin.unwrap_or_default();
        let admin_listen = admin
            .listen
            .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
        if !admin_listen.starts_with("unix:") && admin_listen.parse::<SocketAddr>().is_err() {
            return Err(at_key(
                "admin",
                format!("admin listen `{admin_listen}` is neither ip:port nor unix:/path"),
            ));
        }
        let admin_token_file = admin
            .token_file
            .map(|p| rel(&p))
            .unwrap_or_else(|| state_dir.join("admin.token"));

        let ca = wire.ca.unwrap_or_default();
        let ca_cert = ca
            .cert
            .map(|p| rel(&p))
            .unwrap_or_else(|| state_dir.join("ca.pem"));
        let ca_key = ca
            .key
            .map(|p| rel(&p))
            .unwrap_or_else(|| state_dir.join("ca.key"));
        let policies_dir = rel(wire.policies.as_deref().unwrap_or(Path::new("policies")));

        let upstream = upstream_config(wire.upstream.unwrap_or_default(), &rel)
            .map_err(|msg| at_key("upstream", msg))?;

        let secrets = wire.secrets.unwrap_or_default();
        let env_prefix = secrets
            .env
            .and_then(|e| e.prefix)
            .unwrap_or_else(|| DEFAULT_ENV_PREFIX.to_string());
        let vault = secrets
            .vault
            .map(|v| vault_config(v, &rel))
            .transpose()
            .map_err(|msg| at_key("secrets", msg))?;

        let audit = audit::audit_config(wire.audit.unwrap_or_default(), &state_dir, &rel)
            .map_err(|msg| at_key("audit", msg))?;
        let approvals_wire = wire.approvals.unwrap_or_default();
        {
            let approvals = &approvals_wire;
            for url in &approvals.notify {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(at_key(
                        "approvals",
                        format!("approvals notify `{url}` is not an http(s) URL"),
                    ));
                }
            }
            if approvals.max_pending_per_task == Some(0) {
                return Err(at_key(
                    "approvals",
                    "max_pending_per_task must be at least 1".into(),
                ));
            }
        }
        let approvals = ApprovalsConfig {
            notify: approvals_wire.notify,
            max_pending_per_task: approvals_wire
                .max_pending_per_task
                .map_or(DEFAULT_MAX_PENDING_PER_TASK, |n| n as usize),
        };

        let task_key = wire
            .task_key
            .map(|p| rel(&p))
            .unwrap_or_else(|| state_dir.join("task.key"));
        let cluster = wire
            .cluster
            .map(|c| cluster::cluster_config(c, &rel))
            .transpose()
            .map_err(|msg| at_key("cluster", msg))?;
        let mut audit = audit;
        // Each replica signs its own chain, named after it.
        audit.stream = cluster.as_ref().map(|c| c.replica_id.clone());
        let tasks = static_tasks(file, text, wire.tasks, tokens)?;
        Ok(Config {
            task_key,
            cluster,
            source,
            listen,
            admin_listen,
            admin_token_file,
            state_dir,
            ca_cert,
            ca_key,
            policies_dir,
            upstream,
            env_prefix,
            vault,
            audit,
            tasks,
            approvals,
        })
    }
}

fn upstream_config(
    wire: UpstreamWire,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> Result<UpstreamConfig, String> {
    let mut resolve = HashMap::new();
    for (host, addr) in wire.resolve {
        let norm = crate::policy::normalize_host(&host)
            .ok_or_else(|| format!("upstream.resolve: `{host}` is not a host name"))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("upstream.resolve: `{addr}` for `{host}` is not ip:port"))?;
        resolve.insert(norm, addr);
    }
    let allow_private = wire
        .allow_private
        .iter()
        .map(|c| {
            c.parse::<IpNet>()
                .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("upstream.allow_private: `{c}` is not a CIDR"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let connect_timeout = wire.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    if connect_timeout.is_zero() {
        return Err("upstream.connect_timeout must be more than zero".into());
    }
    Ok(UpstreamConfig {
        extra_roots: wire.extra_roots.iter().map(|p| rel(p)).collect(),
        resolve,
        allow_private,
        connect_timeout,
    })
}

fn vault_config(v: VaultWire, rel: &dyn Fn(&Path) -> PathBuf) -> Result<VaultConfig, String> {
    if !(v.address.starts_with("http://") || v.address.starts_with("https://")) {
        return Err(format!(
            "secrets.vault.address `{}` is not an http(s) URL",
            v.address
        ));
    }
    let auth = match (
        v.auth.method.as_str(),
        v.auth.token_file,
        v.auth.role_id,
        v.auth.secret_id_file,
    ) {
        ("token", Some(token_file), None, None) => VaultAuth::Token {
            token_file: rel(&token_file),
        },
        ("token", _, _, _) => {
            return Err("secrets.vault.auth method token needs `token_file` only".into())
        }
        ("approle", None, Some(role_id), Some(secret_id_file)) => VaultAuth::AppRole {
            role_id,
            secret_id_file: rel(&secret_id_file),
        },
        ("approle", _, _, _) => {
            return Err(
                "secrets.vault.auth method approle needs `role_id` and `secret_id_file`".into(),
            )
        }
        (other, _, _, _) => {
            return Err(format!(
                "secrets.vault.auth method `{other}` is not supported (token or approle)"
            ))
        }
    };
    Ok(VaultConfig {
        address: v.address,
        auth,
    })
}

/// Whether loading a config reads static tasks' tokens from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskTokens {
    Read,
    Skip,
}

fn static_tasks(
    file: &Path,
    text: &str,
    wire: Vec<TaskWire>,
    tokens: TaskTokens,
) -> Result<Vec<StaticTask>, FileError> {
    let mut seen = std::collections::HashSet::new();
    let mut tasks = Vec::with_capacity(wire.len());
    for (index, t) in wire.into_iter().enumerate() {
        let line = locate_item(text, "tasks", index, None);
        let err = |field: Option<&str>, msg: String| {
            FileError::at(file, locate_item(text, "tasks", index, field).or(line), msg)
        };
        if t.id.is_empty() || t.id.contains(':') || t.id.chars().any(char::is_control) {
            return Err(err(
                Some("id"),
                format!("task id `{}` must be non-empty and contain no `:`", t.id),
            ));
        }
        if !seen.insert(t.id.clone()) {
            return Err(err(
                Some("id"),
                format!("task id `{}` is defined twice", t.id),
            ));
        }
        let token = match &t.token_env {
            None => None,
            Some(_) if tokens == TaskTokens::Skip => None,
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(v),
                _ => {
                    return Err(err(
                        Some("token_env"),
                        format!("task `{}`: environment variable `{var}` is not set", t.id),
                    ))
                }
            },
        };
        if t.token_env.is_none() && t.source.is_none() {
            return Err(err(
                None,
                format!(
                    "task `{}` has neither `token_env` nor `source`: nothing identifies it",
                    t.id
                ),
            ));
        }
        tasks.push(StaticTask {
            id: t.id,
            policy: t.policy,
            token,
            source: t.source,
            line,
        });
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
