//! A fake GitHub: a real HTTPS listener on 127.0.0.1 speaking the documented
//! GitHub App REST API (App JWT checked against the App's public key,
//! installation lookups, installation access tokens scoped to repositories and
//! permissions, token revocation) and git smart HTTP served by the real
//! `git http-backend` over bare repositories it creates, accepting only a live
//! installation token. Everything it sees is kept for the tests to assert on.
//!
//! GitHub itself cannot run here; this is the one test double, and it follows
//! GitHub's REST documentation ("Create an installation access token for an
//! app", "Get an organization installation for the authenticated app", "Get a
//! user installation for the authenticated app", "Revoke an installation access
//! token").

#![allow(
    dead_code,
    reason = "each test crate uses its own part of the harness, and some use all of it (so `expect` would be unfulfilled there)"
)]

use aws_lc_rs::signature::{KeyPair, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

/// Where GitHub's error bodies point.
const DOCS: &str = "https://docs.github.com/rest";
/// GitHub's answer to a token asking for more than the installation has.
pub const PERMISSIONS_NOT_GRANTED: &str =
    "The permissions requested are not granted to this installation.";
/// GitHub's answer to a token asking for a repository the installation lacks.
pub const REPOSITORY_NOT_ACCESSIBLE: &str =
    "There is at least one repository that does not exist or is not accessible to the parent installation.";
/// GitHub's answer to an App JWT it cannot verify.
pub const JWT_NOT_DECODED: &str = "A JSON web token could not be decoded";
/// GitHub's answer to a bad installation token.
pub const BAD_CREDENTIALS: &str = "Bad credentials";

/// A GitHub App private key, generated the way GitHub hands it out.
pub struct AppKey {
    /// PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`).
    pub pem: String,
    /// The same key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub pkcs8_pem: String,
    /// PKCS#1 `RSAPrivateKey` DER.
    pub der: Vec<u8>,
    /// PKCS#1 `RSAPublicKey` DER, what the fake verifies App JWTs with.
    pub public_der: Vec<u8>,
}

impl AppKey {
    /// A fresh 2048-bit key from `openssl genrsa -traditional` (PKCS#1 PEM, as
    /// GitHub's "Generate a private key" gives), its PKCS#8 form from `openssl
    /// pkcs8 -topk8`, and its public half.
    pub fn generate() -> AppKey {
        let pem = openssl(&["genrsa", "-traditional", "2048"], b"");
        let pkcs8_pem = openssl(&["pkcs8", "-topk8", "-nocrypt"], pem.as_bytes());
        let parsed = pem::parse(&pem).unwrap();
        assert_eq!(parsed.tag(), "RSA PRIVATE KEY", "PKCS#1 PEM expected");
        let der = parsed.contents().to_vec();
        let pair = RsaKeyPair::from_der(&der).unwrap();
        let public_der = pair.public_key().as_ref().to_vec();
        AppKey {
            pem,
            pkcs8_pem,
            der,
            public_der,
        }
    }

    /// An App JWT (RS256) with `claims`, signed with this key.
    pub fn jwt(&self, claims: &Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let body = b64.encode(claims.to_string());
        let input = format!("{header}.{body}");
        let pair = RsaKeyPair::from_der(&self.der).unwrap();
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{input}.{}", b64.encode(sig))
    }

    /// The JWT tollgate is specified to send: `iat` 60 s ago, `exp` in 9 min,
    /// `iss` the App id as a string.
    pub fn app_jwt(&self, app_id: u64) -> String {
        let now = unix_now() as i64;
        self.jwt(&json!({"iat": now - 60, "exp": now + 540, "iss": app_id.to_string()}))
    }
}

fn openssl(args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl must be installed (.ci/run installs it)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Seconds since the epoch, with fractions.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// RFC 3339 UTC with whole seconds and `Z`, as GitHub writes `expires_at`.
pub fn rfc3339(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An account (organization or user) that installed the App.
#[derive(Clone, Debug)]
pub struct Account {
    /// Login, e.g. `acme`.
    pub login: String,
    /// Whether it is an organization (else a user).
    pub org: bool,
    /// Its installation id.
    pub installation: u64,
    /// The permissions the installation granted the App (`contents` → `read`).
    pub permissions: BTreeMap<String, String>,
    /// Its repositories (names), each a bare git repository with a commit.
    pub repos: Vec<String>,
}

impl Account {
    /// An account with `permissions` as `(name, level)` pairs and `repos`.
    pub fn new(
        login: &str,
        org: bool,
        installation: u64,
        permissions: &[(&str, &str)],
        repos: &[&str],
    ) -> Self {
        Self {
            login: login.into(),
            org,
            installation,
            permissions: permissions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            repos: repos.iter().map(|r| r.to_string()).collect(),
        }
    }
}

/// What the fake GitHub serves.
#[derive(Clone, Debug)]
pub struct GitHubSpec {
    /// The App id JWTs must name in `iss`.
    pub app_id: u64,
    /// The App's public key (PKCS#1 `RSAPublicKey` DER).
    pub public_key_der: Vec<u8>,
    /// API path prefix: `""` (api.github.com style) or `"/api/v3"` (GitHub
    /// Enterprise Server style). git is served at the root either way.
    pub prefix: String,
    /// The App's installations.
    pub accounts: Vec<Account>,
    /// How long a minted token lives.
    pub token_life: Duration,
}

/// The App id of [`GitHubSpec::standard`].
pub const APP_ID: u64 = 123_456;
/// The installation on the `acme` organization.
pub const ACME_INSTALLATION: u64 = 7_890_123;
/// The installation on the user `octo`.
pub const OCTO_INSTALLATION: u64 = 4_242;

impl GitHubSpec {
    /// App 123456, installed on the organization `acme` (installation 7890123:
    /// contents write, pull_requests write, metadata read; repos widgets, docs,
    /// secret-plans) and the user `octo` (installation 4242: contents read,
    /// metadata read; repo dotfiles). Tokens live 1 h.
    pub fn standard(key: &AppKey) -> Self {
        Self {
            app_id: APP_ID,
            public_key_der: key.public_der.clone(),
            prefix: String::new(),
            accounts: vec![
                Account::new(
                    "acme",
                    true,
                    ACME_INSTALLATION,
                    &[
                        ("contents", "write"),
                        ("pull_requests", "write"),
                        ("metadata", "read"),
                    ],
                    &["widgets", "docs", "secret-plans"],
                ),
                Account::new(
                    "octo",
                    false,
                    OCTO_INSTALLATION,
                    &[("contents", "read"), ("metadata", "read")],
                    &["dotfiles"],
                ),
            ],
            token_life: Duration::from_secs(3600),
        }
    }
}

/// How the fake behaves toward new connections and requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// Serving.
    Up,
    /// Every request answered 503.
    Unavailable,
    /// Connections accepted and closed at once, before TLS.
    Refuse,
}

/// One call to the access-token endpoint.
#[derive(Clone, Debug)]
pub struct Mint {
    /// Installation id in the path.
    pub installation: u64,
    /// `repositories` of the request body, if given.
    pub repositories: Option<Vec<String>>,
    /// `permissions` of the request body, if given.
    pub permissions: Option<Value>,
    /// The token minted (`None` when refused).
    pub token: Option<String>,
    /// Its `expires_at` as answered.
    pub expires_at: Option<String>,
    /// Status answered.
    pub status: u16,
    /// The request's headers (lowercase names).
    pub headers: BTreeMap<String, String>,
    /// When the request arrived.
    pub started: std::time::Instant,
    /// When it was answered.
    pub ended: std::time::Instant,
}

#[derive(Debug)]
struct Token {
    installation: u64,
    /// `owner/name` of each repository it reaches; `None`: all of the account's.
    repos: Option<Vec<String>>,
    expires: i64,
    revoked: bool,
}

#[derive(Debug)]
struct State {
    outage: Outage,
    fail_next: Option<(usize, u16, String)>,
    /// How long each mint takes to answer.
    mint_delay: Duration,
    mints: Vec<Mint>,
    revoked: Vec<String>,
    lookups: Vec<String>,
    tokens: BTreeMap<String, Token>,
    /// Uses of a known token after it expired or was revoked (`path`).
    stale_uses: Vec<String>,
    jwts: Vec<String>,
    requests: Vec<Value>,
}

/// A running fake GitHub.
pub struct FakeGitHub {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// What it serves.
    pub spec: GitHubSpec,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    _repos: tempfile::TempDir,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGitHub {
    /// Creates the accounts' bare repositories and starts serving `spec` over
    /// TLS with `tls` (a certificate for the host names the tests use).
    pub async fn start(spec: GitHubSpec, tls: Arc<ServerConfig>) -> FakeGitHub {
        let repos = tempfile::tempdir().unwrap();
        for account in &spec.accounts {
            for repo in &account.repos {
                make_repo(repos.path(), &account.login, repo);
            }
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            outage: Outage::Up,
            fail_next: None,
            mint_delay: Duration::ZERO,
            mints: Vec::new(),
            revoked: Vec::new(),
            lookups: Vec::new(),
            tokens: BTreeMap::new(),
            stale_uses: Vec::new(),
            jwts: Vec::new(),
            requests: Vec::new(),
        }));
        let server = Arc::new(Server {
            spec: spec.clone(),
            root: repos.path().to_path_buf(),
            state: state.clone(),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if server.state.lock().unwrap().outage == Outage::Refuse {
                    drop(stream);
                    continue;
                }
                let server = server.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeGitHub {
            port,
            spec,
            state,
            task,
            _repos: repos,
        }
    }

    /// The API base URL for `host`: `https://host:PORT{prefix}`.
    pub fn api_base(&self, host: &str) -> String {
        format!("https://{host}:{}{}", self.port, self.spec.prefix)
    }

    /// Successful mints, in order.
    pub fn mints(&self) -> Vec<Mint> {
        self.mint_attempts()
            .into_iter()
            .filter(|m| m.token.is_some())
            .collect()
    }

    /// Every call to the access-token endpoint, refused ones included.
    pub fn mint_attempts(&self) -> Vec<Mint> {
        self.state.lock().unwrap().mints.clone()
    }

    /// Successful mints for `installation`.
    pub fn mint_count(&self, installation: u64) -> usize {
        self.mints()
            .iter()
            .filter(|m| m.installation == installation)
            .count()
    }

    /// The tokens minted, in order.
    pub fn tokens(&self) -> Vec<String> {
        self.mints().into_iter().filter_map(|m| m.token).collect()
    }

    /// Tokens revoked with `DELETE /installation/token`, in order.
    pub fn revoked(&self) -> Vec<String> {
        self.state.lock().unwrap().revoked.clone()
    }

    /// Installation lookups, as `orgs/LOGIN` or `users/LOGIN`, in order.
    pub fn lookups(&self) -> Vec<String> {
        self.state.lock().unwrap().lookups.clone()
    }

    /// Tokens neither expired nor revoked.
    pub fn live_tokens(&self) -> Vec<String> {
        let now = unix_now();
        self.state
            .lock()
            .unwrap()
            .tokens
            .iter()
            .filter(|(_, t)| !t.revoked && now < t.expires as f64)
            .map(|(v, _)| v.clone())
            .collect()
    }

    /// Paths of requests that carried a minted token after it expired or was
    /// revoked.
    pub fn stale_uses(&self) -> Vec<String> {
        self.state.lock().unwrap().stale_uses.clone()
    }

    /// Every App JWT presented, valid or not.
    pub fn jwts(&self) -> Vec<String> {
        self.state.lock().unwrap().jwts.clone()
    }

    /// Every request: `{"method","path","headers"}`.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Makes every later mint take `delay` before it is answered, so that
    /// mints running at the same time overlap visibly.
    pub fn set_mint_delay(&self, delay: Duration) {
        self.state.lock().unwrap().mint_delay = delay;
    }

    /// Sets how the fake treats what comes next.
    pub fn set_outage(&self, outage: Outage) {
        self.state.lock().unwrap().outage = outage;
    }

    /// The next `n` calls to the access-token endpoint are answered `status`
    /// with `message`, as GitHub writes errors.
    pub fn fail_next_mints(&self, n: usize, status: u16, message: &str) {
        self.state.lock().unwrap().fail_next = Some((n, status, message.to_string()));
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git must be installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `root/OWNER/NAME.git`, bare, holding two commits; `README` says `OWNER/NAME`.
fn make_repo(root: &Path, owner: &str, name: &str) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path();
    git(src, &["init", "-q", "-b", "main"]);
    for (i, text) in ["first\n".to_string(), format!("{owner}/{name}\n")]
        .iter()
        .enumerate()
    {
        std::fs::write(src.join("README"), text).unwrap();
        git(src, &["add", "README"]);
        git(
            src,
            &[
                "-c",
                "user.name=fake",
                "-c",
                "user.email=fake@github.test",
                "commit",
                "-q",
                "-m",
                &format!("commit {i}"),
            ],
        );
    }
    let dest = root.join(owner).join(format!("{name}.git"));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    git(src, &["clone", "-q", "--bare", ".", dest.to_str().unwrap()]);
}

struct Server {
    spec: GitHubSpec,
    root: PathBuf,
    state: Arc<Mutex<State>>,
}

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        "application/json; charset=utf-8".parse().unwrap(),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    reply(
        status,
        json!({"message": message, "documentation_url": DOCS, "status": status.as_u16().to_string()}),
    )
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The credential of `Authorization: Bearer X` or `Authorization: token X`.
fn token_credential(req: &Request<Incoming>) -> Option<String> {
    let auth = header(req, "authorization")?;
    let (scheme, value) = auth.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| value.trim().to_string())
}

fn int_claim(claims: &Value, name: &str) -> Option<i64> {
    claims[name]
        .as_i64()
        .or_else(|| claims[name].as_f64().map(|f| f as i64))
}

impl Server {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        {
            let headers: BTreeMap<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        Value::from(v.to_str().unwrap_or("<bin>")),
                    )
                })
                .collect();
            let mut state = self.state.lock().unwrap();
            state.requests.push(json!({
                "method": req.method().as_str(),
                "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                "headers": headers,
            }));
            if state.outage == Outage::Unavailable {
                return error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
            }
        }
        if let Some((owner, repo)) = git_repo(&path) {
            return self.git(req, &owner, &repo).await;
        }
        let Some(api) = path.strip_prefix(self.spec.prefix.as_str()) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let parts: Vec<String> = api
            .trim_start_matches('/')
            .split('/')
            .map(str::to_string)
            .collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        if header(&req, "user-agent").is_none() {
            // As GitHub does: no User-Agent, no API.
            return error(
                StatusCode::FORBIDDEN,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
            );
        }
        match (req.method().clone(), parts.as_slice()) {
            (Method::GET, ["orgs", login, "installation"]) => {
                if let Err(message) = self.check_jwt(&req) {
                    return error(StatusCode::UNAUTHORIZED, &message);
                }
                self.lookup(login, true)
            }
            (Method::GET, ["users", login, "installation"]) => {
                if let Err(message) = self.check_jwt(&req) {
                    return error(StatusCode::UNAUTHORIZED, &message);
                }
                self.lookup(login, false)
            }
            (Method::POST, ["app", "installations", id, "access_tokens"]) => {
                if let Err(message) = self.check_jwt(&req) {
                    return error(StatusCode::UNAUTHORIZED, &message);
                }
                let id = id.to_string();
                self.mint(req, &id).await
            }
            (Method::DELETE, ["installation", "token"]) => self.revoke(&req),
            (Method::GET, ["repos", owner, repo]) => {
                let full = format!("{owner}/{repo}");
                match self.token_for(&req, &full, &path) {
                    Ok(()) => reply(
                        StatusCode::OK,
                        json!({"name": repo, "full_name": full, "private": true}),
                    ),
                    Err((status, message)) => error(status, message),
                }
            }
            (Method::GET, ["test", "echo-auth"]) => {
                let auth = header(&req, "authorization").unwrap_or_default();
                let live = token_credential(&req).is_some_and(|t| {
                    let state = self.state.lock().unwrap();
                    state
                        .tokens
                        .get(&t)
                        .is_some_and(|t| !t.revoked && unix_now() < t.expires as f64)
                });
                if let Some(t) = token_credential(&req) {
                    self.note_stale(&t, &path);
                }
                reply(
                    StatusCode::OK,
                    json!({"authorization": auth, "token_live": live}),
                )
            }
            _ => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    }

    /// Checks the App JWT of `req` as GitHub documents it: RS256 signed with the
    /// App's key, `iat` not in the future (60 s of clock drift allowed), `exp` in
    /// the future and at most 10 minutes ahead, `iss` the App id.
    fn check_jwt(&self, req: &Request<Incoming>) -> Result<(), String> {
        let unauthorized = |m: &str| m.to_string();
        let Some(auth) = header(req, "authorization") else {
            return Err(unauthorized(
                "You must authenticate with a JSON web token (JWT) to access this endpoint.",
            ));
        };
        let Some(jwt) = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
        else {
            return Err(unauthorized(JWT_NOT_DECODED));
        };
        let jwt = jwt.trim().to_string();
        self.state.lock().unwrap().jwts.push(jwt.clone());
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = jwt.split('.').collect();
        let [head, body, sig] = parts.as_slice() else {
            return Err(unauthorized(JWT_NOT_DECODED));
        };
        let decode = |s: &str| -> Option<Value> {
            serde_json::from_slice(&b64.decode(s.as_bytes()).ok()?).ok()
        };
        let (Some(head_json), Some(claims), Ok(sig)) =
            (decode(head), decode(body), b64.decode(sig.as_bytes()))
        else {
            return Err(unauthorized(JWT_NOT_DECODED));
        };
        if head_json["alg"] != "RS256" {
            return Err(unauthorized(JWT_NOT_DECODED));
        }
        let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.spec.public_key_der);
        if key
            .verify(format!("{head}.{body}").as_bytes(), &sig)
            .is_err()
        {
            return Err(unauthorized(JWT_NOT_DECODED));
        }
        let now = unix_now() as i64;
        let Some(iat) = int_claim(&claims, "iat") else {
            return Err(unauthorized(
                "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued.",
            ));
        };
        if iat > now + 60 {
            return Err(unauthorized(
                "'Issued at' claim ('iat') must be an Integer representing a time in the past.",
            ));
        }
        let Some(exp) = int_claim(&claims, "exp") else {
            return Err(unauthorized("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires."));
        };
        if exp <= now {
            return Err(unauthorized("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires."));
        }
        if exp > now + 600 {
            return Err(unauthorized(
                "'Expiration time' claim ('exp') is too far in the future.",
            ));
        }
        let iss = match &claims["iss"] {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        if iss != Some(self.spec.app_id) {
            return Err(unauthorized("'Issuer' claim ('iss') must be an Integer"));
        }
        Ok(())
    }

    fn installation_json(&self, account: &Account) -> Value {
        json!({
            "id": account.installation,
            "app_id": self.spec.app_id,
            "account": {
                "login": account.login,
                "type": if account.org { "Organization" } else { "User" },
            },
            "target_type": if account.org { "Organization" } else { "User" },
            "permissions": account.permissions,
            "repository_selection": "all",
            "access_tokens_url": format!("{}/app/installations/{}/access_tokens", self.spec.prefix, account.installation),
        })
    }

    fn lookup(&self, login: &str, org: bool) -> Response<Body> {
        let kind = if org { "orgs" } else { "users" };
        self.state
            .lock()
            .unwrap()
            .lookups
            .push(format!("{kind}/{login}"));
        match self
            .spec
            .accounts
            .iter()
            .find(|a| a.login.eq_ignore_ascii_case(login) && a.org == org)
        {
            Some(account) => reply(StatusCode::OK, self.installation_json(account)),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    }

    async fn mint(&self, req: Request<Incoming>, id: &str) -> Response<Body> {
        let started = std::time::Instant::now();
        let delay = self.state.lock().unwrap().mint_delay;
        tokio::time::sleep(delay).await;
        let headers: BTreeMap<String, String> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or("<bin>").to_string(),
                )
            })
            .collect();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let mut record = Mint {
            installation: id.parse().unwrap_or(0),
            repositories: None,
            permissions: None,
            token: None,
            expires_at: None,
            status: 0,
            headers,
            started,
            ended: started,
        };
        let response = self.mint_answer(&body, &mut record);
        record.status = response.status().as_u16();
        record.ended = std::time::Instant::now();
        self.state.lock().unwrap().mints.push(record);
        response
    }

    fn mint_answer(&self, body: &[u8], record: &mut Mint) -> Response<Body> {
        let Some(account) = self
            .spec
            .accounts
            .iter()
            .find(|a| a.installation == record.installation)
        else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let request: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            match serde_json::from_slice(body) {
                Ok(v @ Value::Object(_)) => v,
                _ => return error(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
            }
        };
        let repositories: Option<Vec<String>> = match &request["repositories"] {
            Value::Null => None,
            Value::Array(items) => {
                let names: Option<Vec<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect();
                let Some(names) = names else {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid request.\n\nFor 'properties/repositories', items must be strings.",
                    );
                };
                Some(names)
            }
            _ => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid request.\n\nFor 'properties/repositories', it is not an array.",
                )
            }
        };
        record.repositories = repositories.clone();
        record.permissions =
            (!request["permissions"].is_null()).then(|| request["permissions"].clone());
        {
            let mut state = self.state.lock().unwrap();
            if let Some((n, status, message)) = state.fail_next.take() {
                if n > 1 {
                    state.fail_next = Some((n - 1, status, message.clone()));
                }
                return error(StatusCode::from_u16(status).unwrap(), &message);
            }
        }
        let rank = |level: &str| match level {
            "read" => Some(1),
            "write" => Some(2),
            "admin" => Some(3),
            _ => None,
        };
        let granted = match &request["permissions"] {
            Value::Null => account.permissions.clone(),
            Value::Object(asked) => {
                let mut granted = BTreeMap::new();
                for (name, level) in asked {
                    let asked_rank = level.as_str().and_then(rank);
                    let have_rank = account.permissions.get(name).and_then(|l| rank(l));
                    match (asked_rank, have_rank) {
                        (Some(a), Some(h)) if a <= h => {
                            granted.insert(name.clone(), level.as_str().unwrap().to_string());
                        }
                        _ => {
                            return error(StatusCode::UNPROCESSABLE_ENTITY, PERMISSIONS_NOT_GRANTED)
                        }
                    }
                }
                granted
            }
            _ => return error(StatusCode::UNPROCESSABLE_ENTITY, PERMISSIONS_NOT_GRANTED),
        };
        if let Some(names) = &repositories {
            if names.iter().any(|n| !account.repos.contains(n)) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, REPOSITORY_NOT_ACCESSIBLE);
            }
        }
        let mut random = [0u8; 18];
        aws_lc_rs::rand::fill(&mut random).unwrap();
        let token = format!(
            "ghs_{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let expires = unix_now() as i64 + self.spec.token_life.as_secs() as i64;
        let full: Option<Vec<String>> = repositories.as_ref().map(|names| {
            names
                .iter()
                .map(|n| format!("{}/{n}", account.login))
                .collect()
        });
        self.state.lock().unwrap().tokens.insert(
            token.clone(),
            Token {
                installation: account.installation,
                repos: full.clone(),
                expires,
                revoked: false,
            },
        );
        record.token = Some(token.clone());
        record.expires_at = Some(rfc3339(expires));
        let mut answer = json!({
            "token": token,
            "expires_at": rfc3339(expires),
            "permissions": granted,
            "repository_selection": if repositories.is_some() { "selected" } else { "all" },
        });
        if let Some(names) = &repositories {
            answer["repositories"] = names
                .iter()
                .enumerate()
                .map(|(i, n)| json!({"id": 1000 + i, "name": n, "full_name": format!("{}/{n}", account.login), "private": true}))
                .collect();
        }
        reply(StatusCode::CREATED, answer)
    }

    fn revoke(&self, req: &Request<Incoming>) -> Response<Body> {
        let Some(token) = token_credential(req) else {
            return error(StatusCode::UNAUTHORIZED, "Requires authentication");
        };
        let mut state = self.state.lock().unwrap();
        let now = unix_now();
        match state.tokens.get_mut(&token) {
            Some(t) if !t.revoked && now < t.expires as f64 => {
                t.revoked = true;
                state.revoked.push(token);
                let mut r = Response::new(Full::new(Bytes::new()).boxed());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            _ => error(StatusCode::UNAUTHORIZED, BAD_CREDENTIALS),
        }
    }

    /// Records `path` as a stale use when `token` is known but dead.
    fn note_stale(&self, token: &str, path: &str) {
        let mut state = self.state.lock().unwrap();
        let now = unix_now();
        if state
            .tokens
            .get(token)
            .is_some_and(|t| t.revoked || now >= t.expires as f64)
        {
            state.stale_uses.push(path.to_string());
        }
    }

    /// Whether `token` is live and reaches the repository `full` (`owner/name`).
    fn covers(&self, token: &str, full: &str) -> Result<(), StatusCode> {
        let state = self.state.lock().unwrap();
        let Some(t) = state.tokens.get(token) else {
            return Err(StatusCode::UNAUTHORIZED);
        };
        if t.revoked || unix_now() >= t.expires as f64 {
            return Err(StatusCode::UNAUTHORIZED);
        }
        let Some(account) = self
            .spec
            .accounts
            .iter()
            .find(|a| a.installation == t.installation)
        else {
            return Err(StatusCode::UNAUTHORIZED);
        };
        let reaches = match &t.repos {
            Some(repos) => repos.iter().any(|r| r == full),
            None => account
                .repos
                .iter()
                .any(|r| format!("{}/{r}", account.login) == full),
        };
        if reaches {
            Ok(())
        } else {
            Err(StatusCode::NOT_FOUND)
        }
    }

    /// An API request needing an installation token that reaches `full`.
    fn token_for(
        &self,
        req: &Request<Incoming>,
        full: &str,
        path: &str,
    ) -> Result<(), (StatusCode, &'static str)> {
        let Some(token) = token_credential(req) else {
            return Err((StatusCode::UNAUTHORIZED, "Requires authentication"));
        };
        self.note_stale(&token, path);
        match self.covers(&token, full) {
            Ok(()) => Ok(()),
            Err(StatusCode::NOT_FOUND) => Err((StatusCode::NOT_FOUND, "Not Found")),
            Err(_) => Err((StatusCode::UNAUTHORIZED, BAD_CREDENTIALS)),
        }
    }

    /// git smart HTTP: Basic auth whose password is a live token reaching the
    /// repository, then `git http-backend` as a CGI.
    async fn git(&self, req: Request<Incoming>, owner: &str, repo: &str) -> Response<Body> {
        let full = format!("{owner}/{repo}");
        let password = header(&req, "authorization").and_then(|auth| {
            let (scheme, value) = auth.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            Some(text.split_once(':')?.1.to_string())
        });
        let path = req.uri().path().to_string();
        let allowed = password.is_some_and(|p| {
            self.note_stale(&p, &path);
            self.covers(&p, &full).is_ok()
        });
        if !allowed {
            let mut r = error(StatusCode::UNAUTHORIZED, "Invalid username or token.");
            r.headers_mut().insert(
                "www-authenticate",
                "Basic realm=\"GitHub\"".parse().unwrap(),
            );
            return r;
        }
        self.cgi(req).await
    }

    async fn cgi(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let content_type = header(&req, "content-type").unwrap_or_default();
        let encoding = header(&req, "content-encoding").unwrap_or_default();
        let protocol = header(&req, "git-protocol").unwrap_or_default();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let mut child = tokio::process::Command::new("git")
            .arg("http-backend")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", &path)
            .env("REQUEST_METHOD", &method)
            .env("QUERY_STRING", &query)
            .env("CONTENT_TYPE", &content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", &encoding)
            .env("GIT_PROTOCOL", &protocol)
            .env("REMOTE_USER", "x-access-token")
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feeder = tokio::spawn(async move {
            let _ = stdin.write_all(&body).await;
        });
        let out = child.wait_with_output().await.unwrap();
        let _ = feeder.await;
        let (head, rest) = split_cgi(&out.stdout);
        let mut status = StatusCode::OK;
        let mut builder = Response::builder();
        for line in String::from_utf8_lossy(head).lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("status") {
                let code = value.split_whitespace().next().unwrap_or("500");
                status = code
                    .parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            } else {
                builder = builder.header(name.trim(), value);
            }
        }
        builder
            .status(status)
            .body(Full::new(Bytes::copy_from_slice(rest)).boxed())
            .unwrap()
    }
}

/// `(owner, name)` of a git smart HTTP path `/OWNER/NAME.git/...`.
fn git_repo(path: &str) -> Option<(String, String)> {
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let owner = parts.next()?;
    let repo = parts.next()?.strip_suffix(".git")?;
    parts.next()?;
    (!owner.is_empty() && !repo.is_empty()).then(|| (owner.to_string(), repo.to_string()))
}

/// A CGI answer split into its header block and body.
fn split_cgi(out: &[u8]) -> (&[u8], &[u8]) {
    let find = |sep: &[u8]| {
        out.windows(sep.len())
            .position(|w| w == sep)
            .map(|i| (i, i + sep.len()))
    };
    match [find(b"\r\n\r\n"), find(b"\n\n")]
        .into_iter()
        .flatten()
        .min()
    {
        Some((end, start)) => (&out[..end], &out[start..]),
        None => (&[], out),
    }
}
