//! Validated policy types. A value of these types cannot be invalid: everything
//! that could be wrong with a policy file was refused while loading it.

pub use super::host::HostPattern;
pub use super::minted::{
    Aws, AwsCredentials, ClientAuth, GithubApp, Installation, KeySource, MetadataFlavor, MintScope,
    OAuth2, OAuthGrant,
};
pub use super::path::PathPattern;
use http::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Default time a request waits for an operator under `action: approve`.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

/// A secret name `NAME` (placeholder `__NAME__`), matching `[A-Z][A-Z0-9_]{0,63}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlaceholderName(String);

impl PlaceholderName {
    /// The bare name, without underscores around it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The placeholder text as it appears in requests: `__NAME__`.
    pub fn placeholder(&self) -> String {
        format!("__{}__", self.0)
    }
}

impl TryFrom<String> for PlaceholderName {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        let mut bytes = raw.bytes();
        let valid = matches!(bytes.next(), Some(b'A'..=b'Z'))
            && raw.len() <= 64
            && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(Self(raw))
        } else {
            Err(format!(
                "secret name `{raw}` must match [A-Z][A-Z0-9_]{{0,63}} (placeholder __NAME__)"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for PlaceholderName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PlaceholderName::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PlaceholderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An HTTP method named in a rule (upper-case token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMethod(pub Method);

impl<'de> Deserialize<'de> for RuleMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom(format!(
                "method `{raw}` must be an upper-case HTTP method such as GET"
            )));
        }
        Method::from_bytes(raw.as_bytes())
            .map(RuleMethod)
            .map_err(|_| {
                serde::de::Error::custom(format!("method `{raw}` is not a valid HTTP method"))
            })
    }
}

/// The scheme a request leaves tollgate with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (absolute-form proxy requests).
    Http,
    /// HTTPS (intercepted CONNECT tunnels).
    Https,
}

impl Scheme {
    /// Default port of the scheme.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Forward the request.
    Allow,
    /// Refuse with 403 `denied_by_rule`.
    Deny,
    /// Hold for an operator.
    Approve,
}

/// A token-bucket rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests per `per`.
    pub requests: u32,
    /// Window.
    pub per: Duration,
    /// Bucket size; defaults to `requests`.
    pub burst: u32,
}

/// Where a secret comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum SecretSource {
    /// Vault / OpenBao: KV v2 read (`mount` + `path`) or a call (`method`, `data`).
    Vault {
        /// KV v2 mount, for reads.
        mount: Option<String>,
        /// Secret path.
        path: String,
        /// Field to take, dotted for nested JSON (`auth.client_token`).
        field: String,
        /// HTTP method of a dynamic-secret call (`POST`); `None` for a KV read.
        method: Option<String>,
        /// Request body of a dynamic-secret call.
        data: Option<serde_json::Value>,
    },
    /// The env backend: reads `$<prefix><name>`.
    Env {
        /// Variable name after the prefix.
        name: String,
    },
    /// A GitHub App installation token, minted per task.
    GithubApp(Box<GithubApp>),
    /// An OAuth 2.0 access token, minted per task (or policy).
    OAuth2(Box<OAuth2>),
    /// AWS credentials tollgate re-signs SigV4 requests with, per task.
    Aws(Box<Aws>),
}

impl SecretSource {
    /// Whether tollgate mints the value itself (per task or policy).
    pub fn is_minted(&self) -> bool {
        matches!(
            self,
            SecretSource::GithubApp(_) | SecretSource::OAuth2(_) | SecretSource::Aws(_)
        )
    }

    /// Where the value comes from, in a few words (never a value):
    /// `github_app: minted per task, repos widgets, docs`.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Vault {
                mount: Some(mount),
                path,
                method: None,
                ..
            } => format!("vault kv {mount}/{path}"),
            SecretSource::Vault { path, method, .. } => format!(
                "vault {} {path}: leased per task",
                method.as_deref().unwrap_or("GET")
            ),
            SecretSource::Env { name } => format!("env {name}"),
            SecretSource::GithubApp(app) => app.describe(),
            SecretSource::OAuth2(client) => client.describe(),
            SecretSource::Aws(aws) => aws.describe(),
        }
    }
}

/// A declared secret.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretSpec {
    /// Its name.
    pub name: PlaceholderName,
    /// Its source.
    pub source: SecretSource,
    /// The only hosts it may ever be sent to.
    pub hosts: Vec<HostPattern>,
    /// Re-fetch interval.
    pub ttl: Option<Duration>,
}

/// One rule of a policy.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Name (from the file, or `rule N`).
    pub name: String,
    /// 1-based line of the rule in its file, for explanations.
    pub line: Option<usize>,
    /// Host pattern.
    pub host: HostPattern,
    /// Port; `None` means the scheme's default.
    pub port: Option<u16>,
    /// Methods; `None` means any.
    pub methods: Option<Vec<Method>>,
    /// Path patterns; `None` means any.
    pub paths: Option<Vec<PathPattern>>,
    /// Secrets this rule may inject.
    pub inject: Vec<PlaceholderName>,
    /// Also replace placeholders in the request body.
    pub inject_body: bool,
    /// Allow injection into plain `http://` requests.
    pub allow_plaintext: bool,
    /// Per-rule rate.
    pub rate: Option<Rate>,
    /// What the rule does.
    pub action: Action,
    /// Hold time for `approve`.
    pub approval_timeout: Duration,
    /// What the rule reads inside the request (`jsonrpc` or `graphql`).
    pub content: Option<super::content_rule::ContentRule>,
}

/// A CONNECT passthrough entry.
#[derive(Clone, Debug)]
pub struct TunnelEntry {
    /// Host pattern.
    pub host: HostPattern,
    /// Port (default 443).
    pub port: u16,
}

/// A loaded, validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Unique name, equal to the file stem.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Declared secrets by name.
    pub secrets: BTreeMap<PlaceholderName, SecretSpec>,
    /// Rules in order.
    pub rules: Vec<Rule>,
    /// Passthrough tunnels.
    pub tunnels: Vec<TunnelEntry>,
    /// Task-wide rate ceiling.
    pub rate: Option<Rate>,
    /// Most tunnels, and most requests in flight, one task may hold at once.
    pub max_concurrent: usize,
    /// Whether the policy set `max_concurrent` itself. In cluster mode such a
    /// cap counts across every replica; the default one guards each process's
    /// file descriptors, so each replica counts it on its own.
    pub max_concurrent_set: bool,
    /// What one task may use over its life (empty: unlimited).
    pub budgets: crate::budget::ledger::Limits,
    /// Where LLM usage is read from answers, for the `llm` budgets.
    pub llm_metering: Option<LlmMetering>,
    /// What a request past a used-up budget gets.
    pub on_exceed: OnExceed,
    /// Hex digest of the file it was loaded from: any edit changes it, and
    /// approvals given under one version do not carry over to another.
    pub digest: String,
}

/// The hosts whose answers are read for LLM usage, and the prices of models.
#[derive(Clone, Debug)]
pub struct LlmMetering {
    /// Hosts of LLM APIs (`budgets.llm.hosts`).
    pub hosts: Vec<HostPattern>,
    /// USD per million tokens, by model (`budgets.llm.prices`).
    pub prices: std::sync::Arc<crate::budget::usage::Prices>,
}

/// `budgets.on_exceed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnExceed {
    /// 429 `budget_exceeded`.
    #[default]
    Deny,
    /// Hold the request for an operator.
    Approve,
}

/// `max_concurrent` when a policy does not set it.
pub const DEFAULT_MAX_CONCURRENT: usize = 256;
