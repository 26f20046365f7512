//! Policy files as written: serde structs that reject unknown keys.
//!
//! Field-level validation (host and path patterns, methods, durations, names) runs
//! during deserialization through the model types, so serde reports the line.
//! Cross-field checks run in [`super::load`].

use super::model::{HostPattern, PathPattern, PlaceholderName, RuleMethod};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A whole policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyWire {
    /// The policy's name; required, and must equal the file stem.
    pub name: Option<String>,
    /// Free text for operators.
    #[serde(default)]
    pub description: Option<String>,
    /// Placeholder name → where its value comes from.
    #[serde(default)]
    pub secrets: BTreeMap<PlaceholderName, SecretWire>,
    /// What the task may reach.
    #[serde(default)]
    pub rules: Vec<RuleWire>,
    /// Destinations passed through uninspected.
    #[serde(default)]
    pub tunnel: Vec<TunnelWire>,
    /// A rate ceiling for the whole task.
    #[serde(default)]
    pub rate: Option<RateWire>,
    /// At most this many requests in flight for the task.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// What the task may use over its life.
    #[serde(default)]
    pub budgets: Option<BudgetsWire>,
}

/// A `budgets` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetsWire {
    /// Requests that go upstream.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Request body bytes: a number or a size such as `64MiB`.
    #[serde(default)]
    pub bytes_up: Option<serde_yaml_ng::Value>,
    /// Response body bytes.
    #[serde(default)]
    pub bytes_down: Option<serde_yaml_ng::Value>,
    /// LLM tokens and spend.
    #[serde(default)]
    pub llm: Option<LlmBudgetWire>,
    /// `deny` (default) or `approve`.
    #[serde(default)]
    pub on_exceed: Option<String>,
}

/// `budgets.llm`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmBudgetWire {
    /// Hosts whose answers are read for usage.
    #[serde(default)]
    pub hosts: Vec<HostPattern>,
    /// Input and output tokens together.
    #[serde(default)]
    pub tokens: Option<u64>,
    /// US dollars, at `prices`.
    #[serde(default)]
    pub usd: Option<f64>,
    /// USD per million tokens, by model.
    #[serde(default)]
    pub prices: BTreeMap<String, PriceWire>,
}

/// One model's price, USD per million tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceWire {
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
}

/// One secret declaration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretWire {
    /// Read from Vault / OpenBao.
    #[serde(default)]
    pub vault: Option<VaultSecretWire>,
    /// Read from `TOLLGATE_SECRET_<env>`.
    #[serde(default)]
    pub env: Option<String>,
    /// A GitHub App installation token, minted per task.
    #[serde(default)]
    pub github_app: Option<GithubAppWire>,
    /// An OAuth 2.0 access token, minted per task.
    #[serde(default)]
    pub oauth2: Option<OAuth2Wire>,
    /// AWS credentials that tollgate signs with (SigV4 re-signing).
    #[serde(default)]
    pub aws: Option<AwsWire>,
    /// The only hosts the value may be sent to.
    #[serde(default)]
    pub hosts: Vec<HostPattern>,
    /// Re-fetch after this (or the lease, whichever is shorter).
    #[serde(default, with = "crate::duration::serde_str::option")]
    pub ttl: Option<Duration>,
}

/// Where a secret lives in Vault: a KV v2 read or a dynamic-secret call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSecretWire {
    /// KV v2 mount (a KV read when given).
    #[serde(default)]
    pub mount: Option<String>,
    /// Path under the mount, or the API path of a dynamic secret.
    pub path: String,
    /// Dotted path of the value in the answer.
    pub field: String,
    /// HTTP method of a dynamic-secret call (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// JSON body of a dynamic-secret call.
    #[serde(default)]
    pub data: Option<serde_yaml_ng::Value>,
}

/// Where key material tollgate uses comes from: exactly one of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySourceWire {
    /// A KV v2 field in Vault / OpenBao.
    #[serde(default)]
    pub vault: Option<VaultKvWire>,
    /// `$<prefix><env>`.
    #[serde(default)]
    pub env: Option<String>,
    /// A file (relative to the policy file's directory).
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
}

/// A KV v2 field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultKvWire {
    /// KV v2 mount (default `secret`).
    #[serde(default)]
    pub mount: Option<String>,
    /// Path under the mount.
    pub path: String,
    /// Field of the secret.
    pub field: String,
}

/// A `github_app` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAppWire {
    /// The App's id.
    pub app_id: u64,
    /// The installation's id.
    #[serde(default)]
    pub installation_id: Option<u64>,
    /// Or the org or user that installed the App.
    #[serde(default)]
    pub owner: Option<String>,
    /// The App's private key.
    #[serde(default)]
    pub private_key: Option<KeySourceWire>,
    /// Repository names the token reaches.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Permission name → level.
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    /// REST API base (default `https://api.github.com`).
    #[serde(default)]
    pub api: Option<String>,
}

/// OAuth 2.0 grants tollgate can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantWire {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 6749 §6.
    RefreshToken,
    /// RFC 7523.
    JwtBearer,
}

/// Client authentication methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthWire {
    /// HTTP Basic.
    ClientSecretBasic,
    /// In the form body.
    ClientSecretPost,
}

/// Per task or per policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerWire {
    /// One token per task.
    Task,
    /// One token per policy.
    Policy,
}

/// An `oauth2` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Wire {
    /// Token endpoint.
    pub token_url: String,
    /// The grant.
    pub grant: GrantWire,
    /// Client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Client secret.
    #[serde(default)]
    pub client_secret: Option<KeySourceWire>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    pub client_auth: Option<ClientAuthWire>,
    /// Refresh token (grant `refresh_token`).
    #[serde(default)]
    pub refresh_token: Option<KeySourceWire>,
    /// Service-account JSON key (grant `jwt_bearer`).
    #[serde(default)]
    pub service_account: Option<KeySourceWire>,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `audience` parameter.
    #[serde(default)]
    pub audience: Option<String>,
    /// RFC 7009 revocation endpoint.
    #[serde(default)]
    pub revocation_url: Option<String>,
    /// `task` (default) or `policy`.
    #[serde(default)]
    pub per: Option<PerWire>,
    /// Hand this token's placeholder out in the emulated metadata service.
    #[serde(default)]
    pub metadata: Option<MetadataWire>,
}

/// Which emulated metadata service hands out an `oauth2` placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataWire {
    /// GCP's `computeMetadata/v1`.
    Gcp,
    /// Azure's IMDS `metadata/identity/oauth2/token`.
    Azure,
}

/// An `aws` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsWire {
    /// Where the real credentials come from.
    pub credentials: AwsCredentialsWire,
    /// Regions the credentials may sign for (empty: any).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Services the credentials may sign for (empty: any).
    #[serde(default)]
    pub services: Vec<String>,
}

/// `{ vault: { mount, role } }`, or static keys from any key source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCredentialsWire {
    /// The AWS secrets engine of Vault / OpenBao.
    #[serde(default)]
    pub vault: Option<AwsVaultWire>,
    /// A static access key id.
    #[serde(default)]
    pub access_key_id: Option<KeySourceWire>,
    /// Its secret access key.
    #[serde(default)]
    pub secret_access_key: Option<KeySourceWire>,
}

/// A role of the AWS secrets engine.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsVaultWire {
    /// Mount of the engine (default `aws`).
    #[serde(default)]
    pub mount: Option<String>,
    /// Role name.
    pub role: String,
}

/// One rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleWire {
    /// Name in audit records and refusals.
    #[serde(default)]
    pub name: Option<String>,
    /// Host pattern.
    pub host: HostPattern,
    /// Port (default: 443 for https, 80 for http).
    #[serde(default)]
    pub port: Option<u16>,
    /// Methods (default: any).
    #[serde(default)]
    pub methods: Option<Vec<RuleMethod>>,
    /// Path patterns (default: any).
    #[serde(default)]
    pub paths: Option<Vec<PathPattern>>,
    /// Secrets whose placeholders are swapped in.
    #[serde(default)]
    pub inject: Vec<PlaceholderName>,
    /// Swap placeholders in the request body too.
    #[serde(default)]
    pub inject_body: bool,
    /// Allow plain HTTP for this rule.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// A rate limit for this rule.
    #[serde(default)]
    pub rate: Option<RateWire>,
    /// `allow` (default), `deny` or `approve`.
    #[serde(default)]
    pub action: Option<ActionWire>,
    /// How long an `approve` request waits for an operator.
    #[serde(default, with = "crate::duration::serde_str::option")]
    pub approval_timeout: Option<Duration>,
    /// Match JSON-RPC 2.0 bodies (MCP over HTTP).
    #[serde(default)]
    pub jsonrpc: Option<JsonRpcWire>,
    /// Match GraphQL operations.
    #[serde(default)]
    pub graphql: Option<GraphQlWire>,
}

/// A rule's `jsonrpc` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonRpcWire {
    /// Method names, `prefix/*`, or `responses` (client-sent responses).
    pub methods: Vec<String>,
    /// The only tools `tools/call` may name; `tools/list` answers are narrowed to them.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
}

/// A rule's `graphql` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphQlWire {
    /// Operation kinds allowed.
    pub operations: Vec<OperationWire>,
    /// When given, the only operation names allowed.
    #[serde(default)]
    pub names: Option<Vec<String>>,
}

/// A GraphQL operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationWire {
    /// `query`.
    Query,
    /// `mutation`.
    Mutation,
    /// `subscription`.
    Subscription,
}

/// `allow` (default), `deny` or `approve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionWire {
    /// Forward the request.
    Allow,
    /// Refuse it.
    Deny,
    /// Hold it until an operator decides.
    Approve,
}

/// A CONNECT passthrough entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelWire {
    /// Host pattern.
    pub host: HostPattern,
    /// Port (default 443).
    #[serde(default)]
    pub port: Option<u16>,
}

/// A token-bucket rate: `requests` per `per`, bursting to `burst`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateWire {
    /// Requests allowed per `per`.
    pub requests: u32,
    /// The window.
    #[serde(with = "crate::duration::serde_str")]
    pub per: Duration,
    /// Burst size (default: `requests`).
    #[serde(default)]
    pub burst: Option<u32>,
}
