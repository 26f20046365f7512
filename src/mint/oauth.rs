//! OAuth 2.0 access tokens from a token endpoint: `client_credentials`
//! (RFC 6749 §4.4), `refresh_token` (§6, a rotated refresh token written back
//! where it came from) and `jwt_bearer` (RFC 7523, a Google service-account
//! assertion), with `client_secret_basic` or `client_secret_post`, and RFC 7009
//! revocation.

use super::answer::{oauth_token, service_account};
use super::http::{Answer, IssuerClient};
use super::issued::Fresh;
use crate::policy::model::{ClientAuth, KeySource, OAuth2, OAuthGrant};
use crate::secrets::{KeyReader, SecretError, SecretValue};
use crate::text::percent_encode_unreserved as form_encode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// `grant_type` of RFC 7523.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime of a service-account assertion (Google accepts at most 1 h).
const ASSERTION_LIFETIME: u64 = 3600;

/// What refresh-token grants share across tasks.
#[derive(Default)]
pub(super) struct Clients {
    /// One refresh at a time per stored refresh token: a server that rotates
    /// them accepts each only once, so two at once would lose one.
    refresh_locks: Mutex<HashMap<KeySource, Arc<tokio::sync::Mutex<()>>>>,
    /// Rotated refresh tokens that could not be written back yet.
    rotated: Mutex<HashMap<KeySource, Arc<SecretValue>>>,
}

/// A form body being built; zeroed on drop, since it carries credentials.
#[derive(Default)]
struct Form(Zeroizing<String>);

impl Form {
    fn add(&mut self, key: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&form_encode(value));
    }
}

/// Credentials read for one call, quoted nowhere.
struct ClientCredentials {
    id: Option<String>,
    secret: Option<SecretValue>,
}

impl Clients {
    /// Gets an access token for `client`. `fallback` is its life when the
    /// answer has no `expires_in`.
    pub(super) async fn mint(
        &self,
        http: &IssuerClient,
        keys: &KeyReader,
        name: &str,
        client: &OAuth2,
        fallback: Duration,
    ) -> Result<Fresh, SecretError> {
        let credentials = read_client(keys, name, client).await?;
        let mut form = Form::default();
        let mut sent: Vec<Arc<SecretValue>> = Vec::new();
        let mut refresh_source = None;
        let _refresh_lock;
        match &client.grant {
            OAuthGrant::ClientCredentials => form.add("grant_type", "client_credentials"),
            OAuthGrant::RefreshToken(source) => {
                _refresh_lock = self.refresh_lock(source).lock_owned().await;
                let token = self.refresh_token(keys, name, source).await?;
                form.add("grant_type", "refresh_token");
                form.add("refresh_token", token.expose());
                sent.push(token);
                refresh_source = Some(source);
            }
            OAuthGrant::JwtBearer(source) => {
                let assertion = Arc::new(assertion(keys, name, client, source).await?);
                form.add("grant_type", JWT_BEARER);
                form.add("assertion", assertion.expose());
                sent.push(assertion);
            }
        }
        if !client.scopes.is_empty() {
            form.add("scope", &client.scopes.join(" "));
        }
        if let Some(audience) = &client.audience {
            form.add("audience", audience);
        }
        let answer = post_form(http, &client.token_url, client, &credentials, form)
            .await
            .map_err(|e| SecretError::minting(name, e))?;
        let mut quoted: Vec<&str> = sent.iter().map(|s| s.expose()).collect();
        if let Some(secret) = &credentials.secret {
            quoted.push(secret.expose());
        }
        let answer = oauth_token(
            answer.status,
            &answer.body,
            &quoted,
            SystemTime::now(),
            fallback,
        )
        .map_err(|e| SecretError::minting(name, e.to_string()))?;
        if let (Some(source), Some(rotated)) = (refresh_source, &answer.refresh_token) {
            self.keep_rotated(keys, name, source, rotated.expose(), &sent)
                .await;
        }
        Ok(answer.fresh)
    }

    fn refresh_lock(&self, source: &KeySource) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.refresh_locks)
            .entry(source.clone())
            .or_default()
            .clone()
    }

    /// The current refresh token: one rotated but not yet written back, or
    /// what the source holds.
    async fn refresh_token(
        &self,
        keys: &KeyReader,
        name: &str,
        source: &KeySource,
    ) -> Result<Arc<SecretValue>, SecretError> {
        if let Some(rotated) = lock(&self.rotated).get(source) {
            return Ok(rotated.clone());
        }
        Ok(Arc::new(keys.read(name, source).await?))
    }

    /// A server that rotated the refresh token handed out a new one: it goes
    /// back where the old one came from, or the next start would fail. Until
    /// that works, it is kept in memory.
    async fn keep_rotated(
        &self,
        keys: &KeyReader,
        name: &str,
        source: &KeySource,
        rotated: &str,
        sent: &[Arc<SecretValue>],
    ) {
        if rotated.is_empty() || sent.iter().any(|s| s.expose() == rotated) {
            return;
        }
        let rotated = SecretValue::new(rotated.to_string());
        match keys.write_back(name, source, &rotated).await {
            Ok(()) => {
                lock(&self.rotated).remove(source);
                tracing::info!(secret = %name, source = %source, "rotated refresh token written back");
            }
            Err(err) => {
                tracing::error!(secret = %name, source = %source, error = %err,
                    "the rotated refresh token could not be written back; it is kept in memory only");
                lock(&self.rotated).insert(source.clone(), Arc::new(rotated));
            }
        }
    }
}

async fn read_client(
    keys: &KeyReader,
    name: &str,
    client: &OAuth2,
) -> Result<ClientCredentials, SecretError> {
    let secret = match &client.client_secret {
        Some(source) => Some(keys.read(name, source).await?),
        None => None,
    };
    Ok(ClientCredentials {
        id: client.client_id.clone(),
        secret,
    })
}

/// RFC 7523 assertion signed with a Google service-account JSON key:
/// `iss` = its `client_email`, `aud` = the token URL, `scope` the scopes.
async fn assertion(
    keys: &KeyReader,
    name: &str,
    client: &OAuth2,
    source: &KeySource,
) -> Result<SecretValue, SecretError> {
    let text = keys.read(name, source).await?;
    let account = service_account(text.expose())
        .map_err(|e| SecretError::minting(name, e.describe(source)))?;
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &account.key_id {
        header["kid"] = kid.as_str().into();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut claims = serde_json::json!({
        "iss": account.email,
        "aud": client.token_url,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    });
    if !client.scopes.is_empty() {
        claims["scope"] = client.scopes.join(" ").into();
    }
    account
        .signer
        .sign(&header, &claims)
        .map(SecretValue::new)
        .map_err(|e| SecretError::minting(name, e))
}

/// POSTs a form with the client's authentication.
async fn post_form(
    http: &IssuerClient,
    url: &str,
    client: &OAuth2,
    credentials: &ClientCredentials,
    mut form: Form,
) -> Result<Answer, String> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, "tollgate")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    match (&credentials.id, &credentials.secret, client.client_auth) {
        (Some(id), Some(secret), ClientAuth::Basic) => {
            // RFC 6749 §2.3.1: each part form-encoded before base64.
            let pair = Zeroizing::new(format!(
                "{}:{}",
                form_encode(id),
                form_encode(secret.expose())
            ));
            let value = Zeroizing::new(format!("Basic {}", STANDARD.encode(pair.as_bytes())));
            req = req.header(header::AUTHORIZATION, value.as_str());
        }
        (Some(id), Some(secret), ClientAuth::Post) => {
            form.add("client_id", id);
            form.add("client_secret", secret.expose());
        }
        (Some(id), None, _) if !matches!(client.grant, OAuthGrant::JwtBearer(_)) => {
            form.add("client_id", id);
        }
        _ => {}
    }
    let body = Bytes::from(form.0.as_bytes().to_vec());
    let req = req
        .body(Full::new(body))
        .map_err(|_| format!("{url} is not a usable URL"))?;
    http.send(req).await
}

/// Revokes an access token at the client's `revocation_url` (RFC 7009).
/// Returns whether there was one to revoke it at.
pub(super) async fn revoke(
    http: &IssuerClient,
    keys: &KeyReader,
    client: &OAuth2,
    token: &SecretValue,
) -> Result<bool, String> {
    let Some(url) = &client.revocation_url else {
        return Ok(false);
    };
    let credentials = read_client(keys, "revocation", client)
        .await
        .map_err(|e| e.reason())?;
    let mut form = Form::default();
    form.add("token", token.expose());
    form.add("token_type_hint", "access_token");
    let answer = post_form(http, url, client, &credentials, form).await?;
    if answer.status.is_success() {
        Ok(true)
    } else {
        Err(format!(
            "the revocation endpoint answered {}",
            answer.status.as_u16()
        ))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
