//! Validating `github_app` and `oauth2` secret blocks.

use crate::policy::minted::{
    Aws, AwsCredentials, ClientAuth, GithubApp, Installation, KeySource, MetadataFlavor, MintScope,
    OAuth2, OAuthGrant,
};
use crate::policy::model::PlaceholderName;
use crate::policy::wire::{
    AwsWire, ClientAuthWire, GithubAppWire, GrantWire, KeySourceWire, MetadataWire, OAuth2Wire,
    PerWire,
};
use std::path::Path;

/// GitHub's public API, when a `github_app` names no `api`.
const GITHUB_API: &str = "https://api.github.com";

/// A refusal: the key whose line it is about, and the message.
pub(super) type Bad = (&'static str, String);

/// A `github_app` block; `dir` is the policy file's directory.
pub(super) fn github_app(
    name: &PlaceholderName,
    wire: GithubAppWire,
    dir: &Path,
) -> Result<GithubApp, Bad> {
    let installation = match (wire.installation_id, wire.owner) {
        (Some(_), Some(_)) => {
            return Err(("github_app", format!(
                "secret `{name}`: github_app names both `installation_id` and `owner`; pick one"
            )))
        }
        (None, None) => {
            return Err(("github_app", format!(
                "secret `{name}`: github_app needs `installation_id` or `owner` (the org or user that installed the App)"
            )))
        }
        (Some(id), None) => Installation::Id(id),
        (None, Some(owner)) => {
            if !is_github_name(&owner) {
                return Err(("owner", format!(
                    "secret `{name}`: github_app owner `{owner}` is not a GitHub account name"
                )));
            }
            Installation::Owner(owner)
        }
    };
    let Some(key) = wire.private_key else {
        return Err(("github_app", format!(
            "secret `{name}`: github_app needs `private_key` ({{ vault: ... }}, {{ env: NAME }} or {{ file: PATH }})"
        )));
    };
    let private_key = key_source(name, "private_key", key, dir)?;
    for repo in &wire.repositories {
        if !is_github_name(repo) || repo.contains('/') {
            return Err(("repositories", format!(
                "secret `{name}`: github_app repository `{repo}` must be a bare repository name (no owner/)"
            )));
        }
    }
    for (permission, level) in &wire.permissions {
        if !matches!(level.as_str(), "read" | "write" | "admin") {
            return Err(("permissions", format!(
                "secret `{name}`: github_app permission `{permission}: {level}` must be read, write or admin"
            )));
        }
        if permission.is_empty()
            || !permission
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(("permissions", format!(
                "secret `{name}`: github_app permission `{permission}` is not a permission name such as contents"
            )));
        }
    }
    let api = https_url(name, "api", wire.api.as_deref().unwrap_or(GITHUB_API))?;
    Ok(GithubApp {
        app_id: wire.app_id,
        installation,
        private_key,
        repositories: wire.repositories,
        permissions: wire.permissions,
        api: api.trim_end_matches('/').to_string(),
    })
}

/// An `oauth2` block; `dir` is the policy file's directory.
pub(super) fn oauth2(name: &PlaceholderName, wire: OAuth2Wire, dir: &Path) -> Result<OAuth2, Bad> {
    let token_url = https_url(name, "token_url", &wire.token_url)?;
    let revocation_url = wire
        .revocation_url
        .map(|url| https_url(name, "revocation_url", &url))
        .transpose()?;
    let client_secret = wire
        .client_secret
        .map(|s| key_source(name, "client_secret", s, dir))
        .transpose()?;
    if wire.grant != GrantWire::RefreshToken && wire.refresh_token.is_some() {
        return Err((
            "refresh_token",
            format!("secret `{name}`: `refresh_token` is only used by grant refresh_token"),
        ));
    }
    if wire.grant != GrantWire::JwtBearer && wire.service_account.is_some() {
        return Err((
            "service_account",
            format!("secret `{name}`: `service_account` is only used by grant jwt_bearer"),
        ));
    }
    let grant = match wire.grant {
        GrantWire::ClientCredentials => {
            if wire.client_id.is_none() || client_secret.is_none() {
                return Err(("grant", format!(
                    "secret `{name}`: grant client_credentials needs `client_id` and `client_secret`"
                )));
            }
            OAuthGrant::ClientCredentials
        }
        GrantWire::RefreshToken => {
            let Some(token) = wire.refresh_token else {
                return Err(("grant", format!(
                    "secret `{name}`: grant refresh_token needs `refresh_token` (where the refresh token is stored)"
                )));
            };
            if wire.client_id.is_none() {
                return Err((
                    "grant",
                    format!("secret `{name}`: grant refresh_token needs `client_id`"),
                ));
            }
            OAuthGrant::RefreshToken(key_source(name, "refresh_token", token, dir)?)
        }
        GrantWire::JwtBearer => {
            let Some(key) = wire.service_account else {
                return Err(("grant", format!(
                    "secret `{name}`: grant jwt_bearer needs `service_account` (a Google service-account JSON key)"
                )));
            };
            OAuthGrant::JwtBearer(key_source(name, "service_account", key, dir)?)
        }
    };
    if wire.client_auth.is_some() && client_secret.is_none() {
        return Err((
            "client_auth",
            format!("secret `{name}`: `client_auth` needs a `client_secret`"),
        ));
    }
    for scope in &wire.scopes {
        // RFC 6749 §3.3: scope tokens are printable ASCII without space, `"` or `\`.
        if scope.is_empty()
            || !scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return Err((
                "scopes",
                format!("secret `{name}`: scope `{scope}` is not a valid OAuth scope token"),
            ));
        }
    }
    Ok(OAuth2 {
        token_url,
        grant,
        client_id: wire.client_id,
        client_secret,
        client_auth: match wire.client_auth {
            Some(ClientAuthWire::ClientSecretPost) => ClientAuth::Post,
            Some(ClientAuthWire::ClientSecretBasic) | None => ClientAuth::Basic,
        },
        scopes: wire.scopes,
        audience: wire.audience,
        revocation_url,
        per: match wire.per {
            Some(PerWire::Policy) => MintScope::Policy,
            Some(PerWire::Task) | None => MintScope::Task,
        },
        metadata: wire.metadata.map(|m| match m {
            MetadataWire::Gcp => MetadataFlavor::Gcp,
            MetadataWire::Azure => MetadataFlavor::Azure,
        }),
    })
}

/// An `aws` block; `dir` is the policy file's directory.
pub(super) fn aws(name: &PlaceholderName, wire: AwsWire, dir: &Path) -> Result<Aws, Bad> {
    let c = wire.credentials;
    let credentials = match (c.vault, c.access_key_id, c.secret_access_key) {
        (Some(v), None, None) => {
            let mount = v.mount.unwrap_or_else(|| "aws".to_string());
            for (what, value) in [("mount", &mount), ("role", &v.role)] {
                if !is_path_segment(value) {
                    return Err(("credentials", format!(
                        "secret `{name}`: aws credentials vault {what} `{value}` must be one path segment (letters, digits, - _ .)"
                    )));
                }
            }
            AwsCredentials::Vault {
                mount,
                role: v.role,
            }
        }
        (None, Some(id), Some(secret)) => AwsCredentials::Static {
            access_key_id: key_source(name, "access_key_id", id, dir)?,
            secret_access_key: key_source(name, "secret_access_key", secret, dir)?,
        },
        (None, None, None) => {
            return Err(("credentials", format!(
                "secret `{name}`: aws credentials need {{ vault: {{ mount, role }} }} or {{ access_key_id, secret_access_key }}"
            )))
        }
        (Some(_), _, _) => {
            return Err(("credentials", format!(
                "secret `{name}`: aws credentials name both a vault role and static keys; pick one"
            )))
        }
        _ => {
            return Err(("credentials", format!(
                "secret `{name}`: static aws credentials need both `access_key_id` and `secret_access_key`"
            )))
        }
    };
    for (key, list) in [("regions", &wire.regions), ("services", &wire.services)] {
        for item in list {
            let valid = !item.is_empty()
                && item.len() <= 64
                && item
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err((key, format!(
                    "secret `{name}`: aws {key} entry `{item}` must be lower-case letters, digits and - (as in us-east-1 or s3)"
                )));
            }
        }
    }
    Ok(Aws {
        credentials,
        regions: wire.regions,
        services: wire.services,
    })
}

/// One segment of a Vault API path: nothing that could climb or add segments.
fn is_path_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn key_source(
    name: &PlaceholderName,
    what: &'static str,
    wire: KeySourceWire,
    dir: &Path,
) -> Result<KeySource, Bad> {
    match (wire.vault, wire.env, wire.file) {
        (Some(v), None, None) => {
            if v.path.is_empty() || v.field.is_empty() {
                return Err((what, format!(
                    "secret `{name}`: {what} vault `path` and `field` must not be empty"
                )));
            }
            Ok(KeySource::Vault {
                mount: v.mount.unwrap_or_else(|| "secret".to_string()),
                path: v.path,
                field: v.field,
            })
        }
        (None, Some(env), None) => {
            if env.is_empty() || !env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err((what, format!(
                    "secret `{name}`: {what} env name `{env}` must be letters, digits and _"
                )));
            }
            Ok(KeySource::Env { name: env })
        }
        (None, None, Some(file)) => {
            if file.as_os_str().is_empty() {
                return Err((what, format!("secret `{name}`: {what} file must not be empty")));
            }
            Ok(KeySource::File {
                path: dir.join(file),
            })
        }
        (None, None, None) => Err((what, format!(
            "secret `{name}`: {what} needs a source: {{ vault: ... }}, {{ env: NAME }} or {{ file: PATH }}"
        ))),
        _ => Err((what, format!(
            "secret `{name}`: {what} names more than one source; pick one of vault, env, file"
        ))),
    }
}

/// An `https://` URL with a host, as written (no trailing-slash changes).
fn https_url(name: &PlaceholderName, key: &'static str, raw: &str) -> Result<String, Bad> {
    let uri: http::Uri = raw
        .parse()
        .map_err(|_| (key, format!("secret `{name}`: {key} `{raw}` is not a URL")))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none_or(str::is_empty) {
        return Err((key, format!(
            "secret `{name}`: {key} `{raw}` must be an https:// URL (issuers are reached over verified TLS)"
        )));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err((
            key,
            format!("secret `{name}`: {key} `{raw}` must not carry credentials"),
        ));
    }
    // The scheme as written may be `Https`; it is kept lower-case, as it is
    // compared and signed (the JWT `aud` of jwt_bearer).
    Ok(format!(
        "https{}",
        raw.get("https".len()..).unwrap_or_default()
    ))
}

/// Letters, digits, `-`, `_` and `.`: what GitHub account and repository names use.
fn is_github_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

#[cfg(test)]
mod tests;
