//! `tollgate.yaml`: wire structs that reject unknown keys, turned into a validated
//! [`Config`] with every relative path resolved against the config file's directory.

use crate::duration::serde_str;
use crate::yaml::{locate_item, locate_key, parse_yaml, FileError};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default proxy listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";
/// Default admin listener.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:3129";
/// Default upstream TCP connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default env-backend prefix.
pub const DEFAULT_ENV_PREFIX: &str = "TOLLGATE_SECRET_";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigWire {
    #[serde(default)]
    listen: Option<OneOrMany>,
    #[serde(default)]
    admin: Option<AdminWire>,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default)]
    ca: Option<CaWire>,
    #[serde(default)]
    policies: Option<PathBuf>,
    #[serde(default)]
    upstream: Option<UpstreamWire>,
    #[serde(default)]
    secrets: Option<SecretsWire>,
    #[serde(default)]
    audit: Option<AuditWire>,
    #[serde(default)]
    approvals: Option<ApprovalsWire>,
    #[serde(default)]
    tasks: Vec<TaskWire>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminWire {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaWire {
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamWire {
    #[serde(default)]
    extra_roots: Vec<PathBuf>,
    #[serde(default)]
    resolve: BTreeMap<String, String>,
    #[serde(default)]
    allow_private: Vec<String>,
    #[serde(default, with = "serde_str::option")]
    connect_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsWire {
    #[serde(default)]
    vault: Option<VaultWire>,
    #[serde(default)]
    env: Option<EnvWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultWire {
    address: String,
    auth: VaultAuthWire,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultAuthWire {
    method: String,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    role_id: Option<String>,
    #[serde(default)]
    secret_id_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvWire {
    #[serde(default)]
    prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditWire {
    #[serde(default)]
    key: Option<PathBuf>,
    #[serde(default)]
    sign: Option<SignMode>,
    #[serde(default, with = "serde_str::option")]
    checkpoint_every: Option<Duration>,
    #[serde(default)]
    sinks: Vec<SinkWire>,
}

/// Which audit records are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignMode {
    /// Every record signed.
    #[default]
    Record,
    /// Only checkpoints signed.
    Checkpoint,
}

/// A sink entry as written: a map with exactly one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkWire {
    #[serde(default)]
    file: Option<FileSink>,
    #[serde(default)]
    stdout: Option<EmptySink>,
    #[serde(default)]
    syslog: Option<SyslogSink>,
    #[serde(default)]
    http: Option<HttpSink>,
}

impl SinkWire {
    fn into_sink(self) -> Result<AuditSink, String> {
        let mut sinks = Vec::with_capacity(1);
        sinks.extend(self.file.map(AuditSink::File));
        sinks.extend(self.stdout.map(AuditSink::Stdout));
        sinks.extend(self.syslog.map(AuditSink::Syslog));
        sinks.extend(self.http.map(AuditSink::Http));
        match (sinks.pop(), sinks.is_empty()) {
            (Some(sink), true) => Ok(sink),
            _ => Err("each audit sink names exactly one of file, stdout, syslog, http".into()),
        }
    }
}

/// One audit sink as configured (validated; implemented by the audit subsystem).
#[derive(Debug, Clone)]
pub enum AuditSink {
    /// Append to a JSONL file, rotating at `rotate_bytes`.
    File(FileSink),
    /// Write to stdout.
    Stdout(EmptySink),
    /// RFC 5424 syslog.
    Syslog(SyslogSink),
    /// HTTP POST (Splunk HEC, Elastic, ...).
    Http(HttpSink),
}

/// A sink without settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptySink {}

/// File sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    /// JSONL path (relative to the config file until resolved).
    pub path: PathBuf,
    /// Rotate after this many bytes.
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
}

/// Syslog sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSink {
    /// `ip:port`.
    pub address: String,
    /// `tcp`, `udp` or `tls`.
    #[serde(default)]
    pub transport: Option<String>,
}

/// HTTP sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    /// Collector URL.
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsWire {
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    max_pending_per_task: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskWire {
    id: String,
    policy: String,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    source: Option<IpAddr>,
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

/// Audit settings (validated now, used by the audit subsystem).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// ed25519 signing key path.
    pub key: PathBuf,
    /// Signing mode.
    pub sign: SignMode,
    /// Longest gap between checkpoints in checkpoint mode.
    pub checkpoint_every: Duration,
    /// Configured sinks, file paths resolved.
    pub sinks: Vec<AuditSink>,
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
    /// Vault address, when configured.
    pub vault_address: Option<String>,
    /// Audit settings.
    pub audit: AuditConfig,
    /// Static tasks.
    pub tasks: Vec<StaticTask>,
}

impl Config {
    /// Loads `path` if given; else `./tollgate.yaml` if present; else defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, FileError> {
        match path {
            Some(p) => Self::load_file(p),
            None => {
                let default = Path::new("tollgate.yaml");
                if default.exists() {
                    Self::load_file(default)
                } else {
                    Self::from_text(Path::new("<defaults>"), "", Path::new("."), None)
                }
            }
        }
    }

    /// Loads and validates the config file at `path`.
    pub fn load_file(path: &Path) -> Result<Config, FileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| FileError::at(path, None, format!("cannot read config: {err}")))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::from_text(path, &text, base, Some(path.to_path_buf()))
    }

    /// Validates config text; relative paths resolve against `base`.
    pub fn from_text(
        file: &Path,
        text: &str,
        base: &Path,
        source: Option<PathBuf>,
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
        let vault_address = match secrets.vault {
            None => None,
            Some(v) => {
                validate_vault(&v).map_err(|msg| at_key("secrets", msg))?;
                Some(v.address)
            }
        };

        let audit = audit_config(wire.audit.unwrap_or_default(), &state_dir, &rel)
            .map_err(|msg| at_key("audit", msg))?;
        if let Some(approvals) = wire.approvals {
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

        let tasks = static_tasks(file, text, wire.tasks)?;
        Ok(Config {
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
            vault_address,
            audit,
            tasks,
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

fn validate_vault(v: &VaultWire) -> Result<(), String> {
    if !(v.address.starts_with("http://") || v.address.starts_with("https://")) {
        return Err(format!(
            "secrets.vault.address `{}` is not an http(s) URL",
            v.address
        ));
    }
    match (
        v.auth.method.as_str(),
        &v.auth.token_file,
        &v.auth.role_id,
        &v.auth.secret_id_file,
    ) {
        ("token", Some(_), None, None) => Ok(()),
        ("token", _, _, _) => Err("secrets.vault.auth method token needs `token_file` only".into()),
        ("approle", None, Some(_), Some(_)) => Ok(()),
        ("approle", _, _, _) => {
            Err("secrets.vault.auth method approle needs `role_id` and `secret_id_file`".into())
        }
        (other, _, _, _) => Err(format!(
            "secrets.vault.auth method `{other}` is not supported (token or approle)"
        )),
    }
}

fn audit_config(
    wire: AuditWire,
    state_dir: &Path,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> Result<AuditConfig, String> {
    let mut sinks = wire
        .sinks
        .into_iter()
        .map(SinkWire::into_sink)
        .collect::<Result<Vec<_>, _>>()?;
    for sink in &mut sinks {
        if let AuditSink::File(f) = sink {
            f.path = rel(&f.path);
        }
    }
    for sink in &sinks {
        match sink {
            AuditSink::File(f) if f.rotate_bytes == Some(0) => {
                return Err("audit file sink: rotate_bytes must be more than zero".into())
            }
            AuditSink::Syslog(s) => {
                if s.address.parse::<SocketAddr>().is_err() {
                    return Err(format!(
                        "audit syslog address `{}` is not ip:port",
                        s.address
                    ));
                }
                if let Some(t) = &s.transport {
                    if !matches!(t.as_str(), "tcp" | "udp" | "tls") {
                        return Err(format!(
                            "audit syslog transport `{t}` must be tcp, udp or tls"
                        ));
                    }
                }
            }
            AuditSink::Http(h)
                if !(h.url.starts_with("http://") || h.url.starts_with("https://")) =>
            {
                return Err(format!(
                    "audit http sink url `{}` is not an http(s) URL",
                    h.url
                ))
            }
            _ => {}
        }
    }
    let checkpoint_every = wire.checkpoint_every.unwrap_or(Duration::from_secs(1));
    if checkpoint_every.is_zero() {
        return Err("audit.checkpoint_every must be more than zero".into());
    }
    Ok(AuditConfig {
        key: wire
            .key
            .map(|p| rel(&p))
            .unwrap_or_else(|| state_dir.join("audit.key")),
        sign: wire.sign.unwrap_or_default(),
        checkpoint_every,
        sinks,
    })
}

fn static_tasks(
    file: &Path,
    text: &str,
    wire: Vec<TaskWire>,
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
        if token.is_none() && t.source.is_none() {
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
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, FileError> {
        Config::from_text(
            Path::new("/etc/tollgate/tollgate.yaml"),
            text,
            Path::new("/etc/tollgate"),
            None,
        )
    }

    #[test]
    fn defaults_work_with_no_file() {
        let c = parse("").unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:3128".parse().unwrap()]);
        assert_eq!(c.admin_listen, "127.0.0.1:3129");
        assert_eq!(c.ca_key, Path::new("/etc/tollgate/.tollgate/ca.key"));
        assert_eq!(c.policies_dir, Path::new("/etc/tollgate/policies"));
        assert_eq!(c.upstream.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("listen: 127.0.0.1:1\nupstream:\n  resolv: {}\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("resolv"), "{err}");
        assert!(
            err.to_string()
                .starts_with("/etc/tollgate/tollgate.yaml:3:"),
            "{err}"
        );
    }

    #[test]
    fn full_design_example_parses() {
        std::env::set_var("CFGTEST_TOKEN", "t0ken");
        let text = r#"
listen: [127.0.0.1:3128, "127.0.0.1:3130"]
admin: { listen: "unix:/run/tollgate/admin.sock", token_file: .tollgate/admin.token }
state_dir: .tollgate
ca: { cert: .tollgate/ca.pem, key: .tollgate/ca.key }
policies: policies
upstream:
  extra_roots: [roots.pem]
  resolve: { api.test: "127.0.0.1:8443" }
  allow_private: [127.0.0.0/8, "::1"]
  connect_timeout: 2s
secrets:
  vault:
    address: http://127.0.0.1:8200
    auth: { method: token, token_file: /run/secrets/vault-token }
  env: { prefix: TG_ }
audit:
  key: .tollgate/audit.key
  sign: checkpoint
  checkpoint_every: 1s
  sinks:
    - file: { path: audit/audit.jsonl, rotate_bytes: 104857600 }
    - stdout: {}
    - syslog: { address: 127.0.0.1:6514, transport: tcp }
    - http: { url: http://127.0.0.1:8088/services/collector, headers: {Authorization: "Splunk x"} }
approvals:
  notify: [http://127.0.0.1:9000/hooks/tollgate]
  max_pending_per_task: 8
tasks:
  - id: ci-42
    policy: github-reader
    token_env: CFGTEST_TOKEN
    source: 172.30.0.5
  - id: builder
    policy: npm-only
    source: 172.30.0.6
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(
            c.upstream.resolve["api.test"],
            "127.0.0.1:8443".parse().unwrap()
        );
        assert_eq!(
            c.upstream.extra_roots,
            vec![PathBuf::from("/etc/tollgate/roots.pem")]
        );
        assert_eq!(c.tasks[0].token.as_deref(), Some("t0ken"));
        assert_eq!(c.audit.sinks.len(), 4);
        assert_eq!(c.env_prefix, "TG_");
    }

    #[test]
    fn task_without_token_or_source_is_an_error() {
        let err = parse("tasks:\n  - id: a\n    policy: p\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            "listen: nope",
            "upstream: { connect_timeout: 10 }",
            "upstream: { allow_private: [banana] }",
            "audit: { sinks: [ { kafka: {} } ] }",
            "secrets: { vault: { address: x, auth: { method: token, token_file: f } } }",
            "tasks: [ { id: a, policy: p, token_env: CFGTEST_DEFINITELY_UNSET } ]",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
