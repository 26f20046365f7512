//! GitHub App installation tokens: the App JWT (RS256, signed here), the
//! installation looked up by owner once, the token minted for the policy's
//! repositories and permissions, and revoked with `DELETE /installation/token`.

use super::answer::{github_installation_id, github_refusal, github_token};
use super::http::{Answer, IssuerClient};
use super::issued::Fresh;
use super::jwt::RsaSigner;
use crate::policy::model::{GithubApp, Installation, KeySource};
use crate::secrets::{KeyReader, SecretError, SecretValue};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::Full;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far back `iat` is set, for clocks that run behind GitHub's.
const IAT_BACKDATE: u64 = 60;
/// JWT lifetime from now; GitHub refuses an `exp` more than 10 minutes ahead.
const JWT_LIFETIME: u64 = 540;
/// A cached JWT is signed again once less than this is left.
const JWT_RESIGN_BEFORE: Duration = Duration::from_secs(60);

type JwtKey = (String, u64, KeySource);

/// App JWTs and installation ids, cached across tasks.
#[derive(Default)]
pub(super) struct Apps {
    jwts: Mutex<HashMap<JwtKey, (Arc<SecretValue>, SystemTime)>>,
    installations: Mutex<HashMap<(String, u64, String), u64>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Apps {
    /// The App's JWT, from the cache or signed now.
    async fn jwt(
        &self,
        keys: &KeyReader,
        name: &str,
        app: &GithubApp,
    ) -> Result<Arc<SecretValue>, SecretError> {
        let key = (app.api.clone(), app.app_id, app.private_key.clone());
        if let Some((jwt, until)) = lock(&self.jwts).get(&key) {
            if SystemTime::now() + JWT_RESIGN_BEFORE < *until {
                return Ok(jwt.clone());
            }
        }
        let pem = keys.read(name, &app.private_key).await?;
        let signer = RsaSigner::from_pem(pem.expose()).map_err(|e| {
            SecretError::minting(
                name,
                format!("the GitHub App key ({}): {e}", app.private_key),
            )
        })?;
        let now = unix_now();
        let jwt = signer
            .sign(
                &serde_json::json!({"alg": "RS256", "typ": "JWT"}),
                &serde_json::json!({
                    "iat": now.saturating_sub(IAT_BACKDATE),
                    "exp": now + JWT_LIFETIME,
                    "iss": app.app_id.to_string(),
                }),
            )
            .map_err(|e| SecretError::minting(name, e))?;
        let jwt = Arc::new(SecretValue::new(jwt));
        let until = UNIX_EPOCH + Duration::from_secs(now + JWT_LIFETIME);
        lock(&self.jwts).insert(key, (jwt.clone(), until));
        Ok(jwt)
    }

    /// Forgets a JWT GitHub refused, so the next mint signs a new one.
    fn forget_jwt(&self, app: &GithubApp) {
        lock(&self.jwts).remove(&(app.api.clone(), app.app_id, app.private_key.clone()));
    }

    /// The installation id: given, or looked up by owner once (an org first,
    /// then a user).
    async fn installation(
        &self,
        http: &IssuerClient,
        name: &str,
        app: &GithubApp,
        jwt: &SecretValue,
    ) -> Result<u64, SecretError> {
        let owner = match &app.installation {
            Installation::Id(id) => return Ok(*id),
            Installation::Owner(owner) => owner,
        };
        let key = (app.api.clone(), app.app_id, owner.clone());
        if let Some(id) = lock(&self.installations).get(&key) {
            return Ok(*id);
        }
        let mut last = None;
        for kind in ["orgs", "users"] {
            let url = format!("{}/{kind}/{owner}/installation", app.api);
            let answer = call(http, Method::GET, &url, jwt.expose(), None)
                .await
                .map_err(|e| SecretError::minting(name, e))?;
            if answer.status == StatusCode::OK {
                let id = github_installation_id(&answer.body).ok_or_else(|| {
                    SecretError::minting(
                        name,
                        format!("GitHub's answer for {url} has no installation id"),
                    )
                })?;
                lock(&self.installations).insert(key, id);
                return Ok(id);
            }
            if answer.status != StatusCode::NOT_FOUND {
                return Err(refused(name, &answer, jwt));
            }
            last = Some(answer);
        }
        let detail = last.map(|a| refused_text(&a, jwt)).unwrap_or_default();
        Err(SecretError::minting(
            name,
            format!("the App is not installed for {owner} ({detail})"),
        ))
    }

    /// Mints an installation token for the policy's repositories and
    /// permissions.
    pub(super) async fn mint(
        &self,
        http: &IssuerClient,
        keys: &KeyReader,
        name: &str,
        app: &GithubApp,
    ) -> Result<Fresh, SecretError> {
        let jwt = self.jwt(keys, name, app).await?;
        let id = self.installation(http, name, app, &jwt).await;
        let id = id.inspect_err(|_| self.forget_jwt(app))?;
        let mut body = serde_json::Map::new();
        if !app.repositories.is_empty() {
            body.insert("repositories".into(), serde_json::json!(app.repositories));
        }
        if !app.permissions.is_empty() {
            body.insert("permissions".into(), serde_json::json!(app.permissions));
        }
        let url = format!("{}/app/installations/{id}/access_tokens", app.api);
        let answer = call(
            http,
            Method::POST,
            &url,
            jwt.expose(),
            Some(serde_json::Value::Object(body).to_string()),
        )
        .await
        .map_err(|e| SecretError::minting(name, e))?;
        if answer.status == StatusCode::UNAUTHORIZED {
            self.forget_jwt(app);
        }
        github_token(
            answer.status,
            &answer.body,
            &[jwt.expose()],
            SystemTime::now(),
        )
        .map_err(|e| SecretError::minting(name, e.to_string()))
    }
}

/// Revokes an installation token with itself.
pub(super) async fn revoke(
    http: &IssuerClient,
    app: &GithubApp,
    token: &SecretValue,
) -> Result<(), String> {
    let url = format!("{}/installation/token", app.api);
    let answer = call(http, Method::DELETE, &url, token.expose(), None).await?;
    if answer.status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "GitHub answered {} to revoking an installation token",
            answer.status.as_u16()
        ))
    }
}

/// One REST call with a bearer credential and GitHub's headers.
async fn call(
    http: &IssuerClient,
    method: Method,
    url: &str,
    bearer: &str,
    body: Option<String>,
) -> Result<Answer, String> {
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header(header::ACCEPT, "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header(header::USER_AGENT, "tollgate")
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"));
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|_| format!("{url} is not a usable URL"))?;
    http.send(req).await
}

/// GitHub's refusal: its status and its own `message`.
fn refused(name: &str, answer: &Answer, jwt: &SecretValue) -> SecretError {
    SecretError::minting(name, refused_text(answer, jwt))
}

fn refused_text(answer: &Answer, jwt: &SecretValue) -> String {
    github_refusal(answer.status, &answer.body, &[jwt.expose()]).to_string()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
