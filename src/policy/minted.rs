//! Validated types of minted secrets: a GitHub App installation token or an
//! OAuth 2.0 access token, made by tollgate for a task from key material that
//! never leaves it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Where key material that tollgate itself uses (an App key, a client secret, a
/// refresh token, a service-account key) comes from. It is never injected.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// A field of a KV v2 secret in Vault / OpenBao.
    Vault {
        /// KV v2 mount.
        mount: String,
        /// Path under the mount.
        path: String,
        /// Field of the secret.
        field: String,
    },
    /// `$<prefix><name>`, as the `env` secret source reads.
    Env {
        /// Variable name after the prefix.
        name: String,
    },
    /// A file, read whole (trailing newlines kept off).
    File {
        /// Absolute path (relative ones were resolved against the policy file).
        path: PathBuf,
    },
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Vault { mount, path, field } => write!(f, "vault {mount}/{path} `{field}`"),
            KeySource::Env { name } => write!(f, "env {name}"),
            KeySource::File { path } => write!(f, "file {}", path.display()),
        }
    }
}

/// Which installation of a GitHub App mints the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installation {
    /// Known by id.
    Id(u64),
    /// Looked up once by the org or user that installed the App.
    Owner(String),
}

/// A GitHub App whose installation tokens are minted per task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubApp {
    /// The App's id (`iss` of its JWT).
    pub app_id: u64,
    /// The installation that mints.
    pub installation: Installation,
    /// The App's private key (PEM, PKCS#1 or PKCS#8).
    pub private_key: KeySource,
    /// Repository names the token reaches; empty: all the installation has.
    pub repositories: Vec<String>,
    /// Permission name → `read`, `write` or `admin`; empty: the App's own.
    pub permissions: BTreeMap<String, String>,
    /// REST API base without a trailing slash (`https://api.github.com`, or
    /// `https://HOST/api/v3` for GitHub Enterprise Server).
    pub api: String,
}

/// The OAuth 2.0 grant that gets the access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OAuthGrant {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 6749 §6, from a stored refresh token (a rotated one is written back).
    RefreshToken(KeySource),
    /// RFC 7523, with an assertion signed by a Google service-account JSON key.
    JwtBearer(KeySource),
}

impl OAuthGrant {
    /// The name used in policy files.
    pub fn name(&self) -> &'static str {
        match self {
            OAuthGrant::ClientCredentials => "client_credentials",
            OAuthGrant::RefreshToken(_) => "refresh_token",
            OAuthGrant::JwtBearer(_) => "jwt_bearer",
        }
    }
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// Whom a minted token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MintScope {
    /// One token per task, revoked when the task ends.
    Task,
    /// One token shared by the policy's tasks.
    Policy,
}

/// An OAuth 2.0 client whose access tokens tollgate gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2 {
    /// Token endpoint (https).
    pub token_url: String,
    /// The grant.
    pub grant: OAuthGrant,
    /// Client id; `None` only for `jwt_bearer`.
    pub client_id: Option<String>,
    /// Client secret; `None` for public clients and `jwt_bearer`.
    pub client_secret: Option<KeySource>,
    /// How the secret is presented.
    pub client_auth: ClientAuth,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// `audience` parameter, passed through.
    pub audience: Option<String>,
    /// RFC 7009 endpoint where the task's tokens are revoked when it ends.
    pub revocation_url: Option<String>,
    /// Per task or per policy.
    pub per: MintScope,
    /// The emulated metadata service that hands out this token's placeholder.
    pub metadata: Option<MetadataFlavor>,
}

/// Which emulated metadata service hands out an `oauth2` placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataFlavor {
    /// GCP (`Metadata-Flavor: Google`).
    Gcp,
    /// Azure IMDS (`Metadata: true`).
    Azure,
}

/// Where real AWS credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwsCredentials {
    /// The AWS secrets engine of Vault / OpenBao: `{mount}/sts/{role}`, else
    /// `{mount}/creds/{role}`, leased per task.
    Vault {
        /// Mount of the engine.
        mount: String,
        /// Role name.
        role: String,
    },
    /// A long-lived access key.
    Static {
        /// The access key id.
        access_key_id: KeySource,
        /// The secret access key.
        secret_access_key: KeySource,
    },
}

/// An `aws` secret: tollgate checks the sandbox's SigV4 signature (made with
/// the placeholder as key) and signs the request again with these credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aws {
    /// Where the credentials come from.
    pub credentials: AwsCredentials,
    /// Regions it may sign for; empty: any.
    pub regions: Vec<String>,
    /// Services it may sign for; empty: any.
    pub services: Vec<String>,
}

impl Aws {
    /// `policy explain`'s account: `aws: vault aws/agent-s3, leased per task, regions us-east-1`.
    pub fn describe(&self) -> String {
        let mut text = match &self.credentials {
            AwsCredentials::Vault { mount, role } => {
                format!("aws: vault {mount}/{role}, leased per task")
            }
            AwsCredentials::Static { access_key_id, .. } => {
                format!("aws: static key from {access_key_id}")
            }
        };
        if !self.regions.is_empty() {
            text.push_str(", regions ");
            text.push_str(&self.regions.join(" "));
        }
        if !self.services.is_empty() {
            text.push_str(", services ");
            text.push_str(&self.services.join(" "));
        }
        text
    }
}

impl GithubApp {
    /// `policy explain`'s account: `github_app: minted per task, repos widgets, docs`.
    pub fn describe(&self) -> String {
        let mut text = "github_app: minted per task".to_string();
        if !self.repositories.is_empty() {
            text.push_str(", repos ");
            text.push_str(&self.repositories.join(", "));
        }
        text
    }
}

impl OAuth2 {
    /// `policy explain`'s account: `oauth2 client_credentials: minted per task`.
    pub fn describe(&self) -> String {
        let per = match self.per {
            MintScope::Task => "task",
            MintScope::Policy => "policy",
        };
        let mut text = format!("oauth2 {}: minted per {per}", self.grant.name());
        if !self.scopes.is_empty() {
            text.push_str(", scopes ");
            text.push_str(&self.scopes.join(" "));
        }
        text
    }
}
