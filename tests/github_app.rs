//! GitHub App installation tokens minted per task (`github_app` secrets), end to
//! end: the real binary, the App key in a real OpenBao (or env, or a file), a
//! fake GitHub speaking the documented App API (tests/common/github.rs) with
//! the real `git http-backend` behind it, and real clients (git, curl, reqwest).
//!
//! The fake runs on the test's own runtime, and parts of the harness block
//! (waiting for tollgate to exit, the `bao` CLI): the tests run on a
//! multi-threaded runtime so the fake keeps answering meanwhile.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::bao::{Bao, ROOT_TOKEN};
use common::github::{
    AppKey, FakeGitHub, GitHubSpec, Outage, ACME_INSTALLATION, APP_ID, BAD_CREDENTIALS,
    JWT_NOT_DECODED, OCTO_INSTALLATION, PERMISSIONS_NOT_GRANTED, REPOSITORY_NOT_ACCESSIBLE,
};
use common::upstream::{start_upstream, TestCa, Upstream};
use common::{admin_call, create_task, curl_raw, CurlOut, ProxyProc, ProxySetup};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The names the fake GitHub's certificate carries.
const GITHUB_NAMES: &[&str] = &["api.github.test", "github.test", "ghe.test"];

/// Whether every one of `tools` runs here; a loud skip (a failure under
/// `TOLLGATE_TESTS_REQUIRE_ALL=1`) when not.
fn needs(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            let arg = if *tool == "git" {
                "--version"
            } else {
                "version"
            };
            !std::process::Command::new(tool)
                .arg(arg)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    common::skip::skipped(&format!(
        "needs {} (the fake GitHub runs git http-backend, keys come from openssl, the App key lives in OpenBao)",
        missing.join(", ")
    ));
    false
}

/// Where the App's private key comes from.
enum KeySource {
    /// Real OpenBao KV `secret/github/app`, field `private_key`.
    Vault,
    /// `{ env: GH_APP_KEY }` (`TOLLGATE_SECRET_GH_APP_KEY`).
    Env,
}

/// The fake GitHub, an unrelated upstream (`other.test`), the App key, and the
/// OpenBao holding it when the test uses one.
struct World {
    ca: TestCa,
    key: AppKey,
    gh: FakeGitHub,
    other: Upstream,
    bao: Option<Bao>,
    tmp: tempfile::TempDir,
}

impl World {
    async fn start(customize: impl FnOnce(&mut GitHubSpec)) -> World {
        let ca = TestCa::new("github test CA");
        let key = AppKey::generate();
        let mut spec = GitHubSpec::standard(&key);
        customize(&mut spec);
        let gh = FakeGitHub::start(spec, ca.server_config(GITHUB_NAMES)).await;
        let other = start_upstream(Some(ca.server_config(&["other.test"]))).await;
        World {
            ca,
            key,
            gh,
            other,
            bao: None,
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    /// `https://api.github.test:PORT` (plus the prefix of a GHES-style fake).
    fn api(&self) -> String {
        self.gh.api_base("api.github.test")
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.gh.port)
    }

    fn other_url(&self) -> String {
        format!("https://other.test:{}/echo", self.other.port)
    }

    /// The `private_key:` value for `source`, storing the key there (OpenBao
    /// is started on first use).
    fn key_yaml(&mut self, source: &KeySource, setup: &mut ProxySetup) -> String {
        match source {
            KeySource::Vault => {
                let pem = self.key.pem.clone();
                self.vault_key(&pem, setup);
                "{ vault: { mount: secret, path: github/app, field: private_key } }".into()
            }
            KeySource::Env => {
                setup
                    .env
                    .push(("TOLLGATE_SECRET_GH_APP_KEY".into(), self.key.pem.clone()));
                "{ env: GH_APP_KEY }".into()
            }
        }
    }

    /// Puts `pem` into OpenBao KV and points the proxy's config at OpenBao.
    fn vault_key(&mut self, pem: &str, setup: &mut ProxySetup) {
        if self.bao.is_none() {
            self.bao = Some(Bao::start());
        }
        let bao = self.bao.as_ref().unwrap();
        let key_file = self.tmp.path().join("key-for-bao.pem");
        std::fs::write(&key_file, pem).unwrap();
        bao.cli(&[
            "kv",
            "put",
            "secret/github/app",
            &format!("private_key=@{}", key_file.display()),
        ]);
        let token_file = self.tmp.path().join("vault-token");
        std::fs::write(&token_file, ROOT_TOKEN).unwrap();
        setup.extra_yaml = format!(
            "secrets:\n  vault:\n    address: {}\n    auth: {{ method: token, token_file: {} }}\n",
            bao.addr(),
            token_file.display()
        );
    }

    /// A proxy setup resolving the fake's names and `other.test`, trusting
    /// the test CA, with `policy`.
    fn setup(&self, policy: &str) -> ProxySetup {
        let mut setup = ProxySetup::with_policy("coder", policy).trust(&self.ca.cert_pem);
        for host in GITHUB_NAMES {
            setup = setup.resolve(host, self.gh.port);
        }
        setup.resolve("other.test", self.other.port)
    }

    /// Starts tollgate with `setup`, with the App key in PKCS#8 form at
    /// `policies/app-key.pem` for policies that say `{ file: app-key.pem }`.
    fn serve(&self, setup: &ProxySetup) -> ProxyProc {
        let dir = common::write_setup(setup);
        std::fs::write(dir.path().join("policies/app-key.pem"), &self.key.pkcs8_pem).unwrap();
        common::spawn_serve(dir, &setup.env)
    }

    /// The policy with one `github_app` secret per `(name, body)` (the lines
    /// under `github_app:`, indented six spaces), each bound to the fake's
    /// hosts and injected by the rules for them; `other.test` has a rule
    /// without secrets.
    fn policy(&self, secrets: &[(&str, String)]) -> String {
        let port = self.gh.port;
        let mut yaml = String::from("name: coder\nsecrets:\n");
        for (name, body) in secrets {
            yaml.push_str(&format!(
                "  {name}:\n    github_app:\n{body}    hosts: [api.github.test, github.test, ghe.test]\n"
            ));
        }
        let names: Vec<&str> = secrets.iter().map(|(n, _)| *n).collect();
        let inject = names.join(", ");
        yaml.push_str(&format!(
            r#"rules:
  - name: github api
    host: api.github.test
    port: {port}
    inject: [{inject}]
  - name: git
    host: github.test
    port: {port}
    methods: [GET, POST]
    paths: ["/acme/**", "/octo/**"]
    inject: [{inject}]
  - name: ghe
    host: ghe.test
    port: {port}
    methods: [GET, POST]
    inject: [{inject}]
  - name: other
    host: other.test
    port: {other}
"#,
            other = self.other.port
        ));
        yaml
    }

    /// The lines under `github_app:` for the acme installation, repositories
    /// widgets and docs, contents read and pull_requests write.
    fn acme_app(&self, key: &str) -> String {
        format!(
            "      app_id: {APP_ID}\n      installation_id: {ACME_INSTALLATION}\n      private_key: {key}\n      repositories: [widgets, docs]\n      permissions: {{ contents: read, pull_requests: write }}\n      api: {}\n",
            self.api()
        )
    }

    /// The common case: one `GITHUB_TOKEN` for acme with its key from `source`.
    async fn proxy(&mut self, source: KeySource) -> ProxyProc {
        let mut setup = ProxySetup::default();
        let key = self.key_yaml(&source, &mut setup);
        let policy = self.policy(&[("GITHUB_TOKEN", self.acme_app(&key))]);
        let mut full = self.setup(&policy);
        full.env = setup.env;
        full.extra_yaml = setup.extra_yaml;
        self.serve(&full)
    }
}

/// GET `url` through the proxy as the task of `proxy_url`, with
/// `Authorization: Bearer __NAME__`.
async fn get_as(proxy: &ProxyProc, proxy_url: &str, url: &str, placeholder: &str) -> CurlOut {
    curl_raw(&[
        "--proxy",
        proxy_url,
        "--cacert",
        proxy.ca_pem.to_str().unwrap(),
        "-H",
        &format!("Authorization: Bearer __{placeholder}__"),
        url,
    ])
    .await
}

/// GET `url` as the static task with `Authorization: Bearer __GITHUB_TOKEN__`.
async fn get(proxy: &ProxyProc, url: &str) -> CurlOut {
    get_as(proxy, &proxy.url(), url, "GITHUB_TOKEN").await
}

/// `git clone URL DEST` through the proxy as the task of `proxy_url`, trusting
/// tollgate's CA only.
async fn clone_via(
    proxy: &ProxyProc,
    proxy_url: &str,
    url: &str,
    dest: &Path,
) -> std::process::Output {
    let run = tokio::process::Command::new("git")
        .args(["clone", "-q", url])
        .arg(dest)
        .env("HTTPS_PROXY", proxy_url)
        .env("https_proxy", proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env("GIT_SSL_CAINFO", &proxy.ca_pem)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("git clone took over 60 s")
        .unwrap()
}

/// A reqwest client going through the proxy as the task of `proxy_url`.
fn client_as(proxy: &ProxyProc, proxy_url: &str) -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy_url).unwrap())
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&proxy.ca_pem).unwrap()).unwrap(),
        )
        .tls_built_in_root_certs(false)
        // GitHub refuses API requests without a User-Agent; reqwest sends none.
        .user_agent("agent-in-sandbox/1.0")
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The sum of the samples of metric `name` whose labels include
/// `secret="SECRET"`.
fn metric(scrape: &str, name: &str, secret: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| l.contains(&format!("secret=\"{secret}\"")))
        .filter_map(|l| l.rsplit_once("} "))
        .filter_map(|(_, v)| v.split_whitespace().next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (up to `limit`) until `check` holds.
async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts a 503 `secret_unavailable` naming `secret` and containing `quote`.
fn assert_unavailable(out: &CurlOut, secret: &str, quote: &str) {
    assert_eq!(out.status, 503, "{out:?}");
    assert_eq!(
        out.header("x-tollgate-reason").as_deref(),
        Some("secret_unavailable"),
        "{out:?}"
    );
    let json = out.json();
    assert_eq!(json["error"], "secret_unavailable", "{out:?}");
    let message = json["message"].as_str().unwrap();
    assert!(message.contains(secret), "names the secret: {message}");
    assert!(
        message.contains(quote),
        "quotes GitHub ({quote}): {message}"
    );
}

/// Asserts that `text` holds none of the App's key, the JWTs GitHub saw, or
/// the tokens it minted.
fn assert_no_credentials(w: &World, text: &str, where_: &str) {
    let key_line = w.key.pem.lines().nth(1).unwrap();
    assert!(!text.contains(key_line), "the App key is in {where_}");
    let pkcs8_line = w.key.pkcs8_pem.lines().nth(1).unwrap();
    assert!(!text.contains(pkcs8_line), "the App key is in {where_}");
    for jwt in w.gh.jwts() {
        assert!(!text.contains(&jwt), "an App JWT is in {where_}");
        // The signature alone is as good as the JWT.
        let sig = jwt.rsplit('.').next().unwrap();
        assert!(!text.contains(sig), "an App JWT signature is in {where_}");
    }
    for token in w.gh.tokens() {
        assert!(!text.contains(&token), "a minted token is in {where_}");
    }
}

// ---------------------------------------------------------------------------
// The fake itself, driven directly: it must refuse what GitHub refuses, or the
// end-to-end tests below prove nothing.
// ---------------------------------------------------------------------------

fn direct_client(w: &World) -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(w.ca.cert_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .no_proxy()
        .user_agent("fake-github-check");
    for host in GITHUB_NAMES {
        builder = builder.resolve(host, ([127, 0, 0, 1], w.gh.port).into());
    }
    builder.build().unwrap()
}

/// Status and JSON body of a direct call to the fake.
async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    auth: Option<String>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client
        .request(method, url)
        .header("accept", "application/vnd.github+json");
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `git clone` straight to the fake (no proxy), resolving its names.
async fn clone_direct(w: &World, url: &str, dest: &Path) -> std::process::Output {
    let ca = w.tmp.path().join("github-ca.pem");
    std::fs::write(&ca, &w.ca.cert_pem).unwrap();
    let run = tokio::process::Command::new("git")
        .arg("-c")
        .arg(format!(
            "http.curloptResolve=github.test:{}:127.0.0.1",
            w.gh.port
        ))
        .args(["clone", "-q", url])
        .arg(dest)
        .env("GIT_SSL_CAINFO", &ca)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_github_checks_jwts_scopes_tokens_and_serves_git() {
    if !needs(&["git", "openssl"]) {
        return;
    }
    let w = World::start(|_| {}).await;
    let c = direct_client(&w);
    let api = w.api();
    let jwt = Some(format!("Bearer {}", w.key.app_jwt(APP_ID)));
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    // Installation lookups: an org's under /orgs, a user's under /users.
    let (status, org) = call(
        &c,
        get.clone(),
        &format!("{api}/orgs/acme/installation"),
        jwt.clone(),
        None,
    )
    .await;
    assert_eq!(
        (status, &org["id"]),
        (200, &json!(ACME_INSTALLATION)),
        "{org}"
    );
    assert_eq!(org["account"]["type"], "Organization");
    let (status, user) = call(
        &c,
        get.clone(),
        &format!("{api}/users/octo/installation"),
        jwt.clone(),
        None,
    )
    .await;
    assert_eq!(
        (status, &user["id"]),
        (200, &json!(OCTO_INSTALLATION)),
        "{user}"
    );
    assert_eq!(user["account"]["login"], "octo");
    for path in [
        "/orgs/octo/installation",
        "/users/acme/installation",
        "/orgs/nobody/installation",
    ] {
        let (status, body) =
            call(&c, get.clone(), &format!("{api}{path}"), jwt.clone(), None).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (404, Some("Not Found")),
            "{path}"
        );
    }
    assert_eq!(w.gh.lookups().len(), 5);

    // App JWTs GitHub would refuse.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let other_key = AppKey::generate();
    let b64 =
        |v: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v);
    let refused = [
        ("no JWT", None),
        ("another key", Some(other_key.app_jwt(APP_ID))),
        (
            "exp 11 min ahead",
            Some(
                w.key
                    .jwt(&json!({"iat": now - 60, "exp": now + 660, "iss": APP_ID.to_string()})),
            ),
        ),
        (
            "exp passed",
            Some(
                w.key
                    .jwt(&json!({"iat": now - 600, "exp": now - 5, "iss": APP_ID.to_string()})),
            ),
        ),
        (
            "iat in the future",
            Some(
                w.key
                    .jwt(&json!({"iat": now + 120, "exp": now + 300, "iss": APP_ID.to_string()})),
            ),
        ),
        (
            "another App",
            Some(
                w.key
                    .jwt(&json!({"iat": now - 60, "exp": now + 300, "iss": "999"})),
            ),
        ),
        (
            "no iat",
            Some(
                w.key
                    .jwt(&json!({"exp": now + 300, "iss": APP_ID.to_string()})),
            ),
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(
                    &json!({"iat": now - 60, "exp": now + 300, "iss": APP_ID.to_string()})
                        .to_string()
                )
            )),
        ),
        (
            "tampered claims",
            Some({
                let good = w.key.app_jwt(APP_ID);
                let parts: Vec<&str> = good.split('.').collect();
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64(&json!({"iat": now - 60, "exp": now + 300, "iss": "1"}).to_string()),
                    parts[2]
                )
            }),
        ),
    ];
    for (what, token) in refused {
        let (status, body) = call(
            &c,
            post.clone(),
            &format!("{api}/app/installations/{ACME_INSTALLATION}/access_tokens"),
            token.map(|t| format!("Bearer {t}")),
            None,
        )
        .await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            body["message"].is_string() && body["documentation_url"].is_string(),
            "{what}: {body}"
        );
    }
    let (status, body) = call(
        &c,
        post.clone(),
        &format!("{api}/app/installations/{ACME_INSTALLATION}/access_tokens"),
        Some(format!("Bearer {}", other_key.app_jwt(APP_ID))),
        None,
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some(JWT_NOT_DECODED))
    );
    // `iss` as a number is accepted too.
    let numeric = w
        .key
        .jwt(&json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID}));
    let (status, _) = call(
        &c,
        get.clone(),
        &format!("{api}/orgs/acme/installation"),
        Some(format!("Bearer {numeric}")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(w.gh.mints().is_empty(), "no token for a refused JWT");

    // Scope checks.
    let mint_url = format!("{api}/app/installations/{ACME_INSTALLATION}/access_tokens");
    for (body, message) in [
        (
            json!({"permissions": {"administration": "write"}}),
            PERMISSIONS_NOT_GRANTED,
        ),
        (
            json!({"permissions": {"contents": "admin"}}),
            PERMISSIONS_NOT_GRANTED,
        ),
        (
            json!({"permissions": {"contents": "owner"}}),
            PERMISSIONS_NOT_GRANTED,
        ),
        (
            json!({"repositories": ["widgets", "nope"]}),
            REPOSITORY_NOT_ACCESSIBLE,
        ),
        (
            json!({"repositories": ["dotfiles"]}),
            REPOSITORY_NOT_ACCESSIBLE,
        ),
    ] {
        let (status, answer) =
            call(&c, post.clone(), &mint_url, jwt.clone(), Some(body.clone())).await;
        assert_eq!(
            (status, answer["message"].as_str()),
            (422, Some(message)),
            "{body}"
        );
    }
    let (status, _) = call(
        &c,
        post.clone(),
        &format!("{api}/app/installations/999/access_tokens"),
        jwt.clone(),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert!(w.gh.live_tokens().is_empty());

    // A scoped token.
    let (status, minted) = call(
        &c,
        post.clone(),
        &mint_url,
        jwt.clone(),
        Some(json!({"repositories": ["widgets"], "permissions": {"contents": "read"}})),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ghs_"), "{minted}");
    let expires = minted["expires_at"].as_str().unwrap();
    assert!(expires.len() == 20 && expires.ends_with('Z'), "{expires}");
    assert_eq!(minted["repository_selection"], "selected");
    assert_eq!(minted["permissions"], json!({"contents": "read"}));
    assert_eq!(minted["repositories"][0]["full_name"], "acme/widgets");
    let mints = w.gh.mints();
    assert_eq!(mints.len(), 1);
    assert_eq!(mints[0].repositories, Some(vec!["widgets".to_string()]));
    assert_eq!(w.gh.live_tokens(), vec![token.clone()]);

    let repo = |name: &str| format!("{api}/repos/acme/{name}");
    assert_eq!(
        call(
            &c,
            get.clone(),
            &repo("widgets"),
            Some(format!("Bearer {token}")),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &c,
            get.clone(),
            &repo("widgets"),
            Some(format!("token {token}")),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &c,
            get.clone(),
            &repo("docs"),
            Some(format!("token {token}")),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &c,
            get.clone(),
            &repo("widgets"),
            Some("token ghs_madeup".into()),
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(&c, get.clone(), &repo("widgets"), None, None).await.0,
        401
    );

    // git: only a live token reaching the repository.
    let work = tempfile::tempdir().unwrap();
    let at = |t: &str, r: &str| {
        format!(
            "https://x-access-token:{t}@github.test:{}/acme/{r}.git",
            w.gh.port
        )
    };
    let ok = clone_direct(&w, &at(&token, "widgets"), &work.path().join("a")).await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(work.path().join("a/README")).unwrap(),
        "acme/widgets\n"
    );
    for (t, r, dest) in [
        (token.as_str(), "docs", "b"),
        ("ghs_madeup", "widgets", "c"),
    ] {
        let refused = clone_direct(&w, &at(t, r), &work.path().join(dest)).await;
        assert!(!refused.status.success(), "clone of {r} with {t} must fail");
        assert!(!work.path().join(dest).join("README").exists());
    }

    // A second mint, failed on purpose.
    w.gh.fail_next_mints(1, 500, "Server Error");
    assert_eq!(
        call(&c, post.clone(), &mint_url, jwt.clone(), None).await.0,
        500
    );
    let (status, all) = call(&c, post.clone(), &mint_url, jwt.clone(), None).await;
    assert_eq!((status, &all["repository_selection"]), (201, &json!("all")));
    assert_eq!(
        all["permissions"]["contents"], "write",
        "all of the installation's"
    );

    // Revocation.
    let revoke = format!("{api}/installation/token");
    let delete = reqwest::Method::DELETE;
    assert_eq!(
        call(
            &c,
            delete.clone(),
            &revoke,
            Some(format!("Bearer {token}")),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(w.gh.revoked(), vec![token.clone()]);
    let (status, body) = call(
        &c,
        delete.clone(),
        &revoke,
        Some(format!("token {token}")),
        None,
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some(BAD_CREDENTIALS))
    );
    assert_eq!(
        call(
            &c,
            get.clone(),
            &repo("widgets"),
            Some(format!("Bearer {token}")),
            None
        )
        .await
        .0,
        401
    );
    let dead = clone_direct(&w, &at(&token, "widgets"), &work.path().join("d")).await;
    assert!(!dead.status.success(), "a revoked token clones nothing");
    assert!(w.gh.stale_uses().len() >= 2, "{:?}", w.gh.stale_uses());
    assert!(!w.gh.live_tokens().contains(&token));

    // Outages.
    w.gh.set_outage(Outage::Unavailable);
    assert_eq!(
        call(
            &c,
            get.clone(),
            &format!("{api}/orgs/acme/installation"),
            jwt.clone(),
            None
        )
        .await
        .0,
        503
    );
    w.gh.set_outage(Outage::Refuse);
    let fresh = direct_client(&w);
    assert!(fresh
        .get(format!("{api}/orgs/acme/installation"))
        .send()
        .await
        .is_err());
    w.gh.set_outage(Outage::Up);
    assert_eq!(
        call(
            &fresh,
            get.clone(),
            &format!("{api}/orgs/acme/installation"),
            jwt.clone(),
            None
        )
        .await
        .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_github_expires_tokens_and_serves_ghes_paths() {
    if !needs(&["openssl", "git"]) {
        return;
    }
    let w = World::start(|spec| {
        spec.prefix = "/api/v3".into();
        spec.token_life = Duration::from_secs(2);
    })
    .await;
    let c = direct_client(&w);
    let jwt = Some(format!("Bearer {}", w.key.app_jwt(APP_ID)));
    let base = w.gh.api_base("ghe.test");
    assert!(base.ends_with("/api/v3"));
    let bare = w.url("ghe.test", "/orgs/acme/installation");
    assert_eq!(
        call(&c, reqwest::Method::GET, &bare, jwt.clone(), None)
            .await
            .0,
        404,
        "GHES serves the API under /api/v3 only"
    );
    let (status, _) = call(
        &c,
        reqwest::Method::GET,
        &format!("{base}/orgs/acme/installation"),
        jwt.clone(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, minted) = call(
        &c,
        reqwest::Method::POST,
        &format!("{base}/app/installations/{ACME_INSTALLATION}/access_tokens"),
        jwt,
        None,
    )
    .await;
    assert_eq!(status, 201);
    let token = minted["token"].as_str().unwrap();
    let repo = format!("{base}/repos/acme/widgets");
    assert_eq!(
        call(
            &c,
            reqwest::Method::GET,
            &repo,
            Some(format!("Bearer {token}")),
            None
        )
        .await
        .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        call(
            &c,
            reqwest::Method::GET,
            &repo,
            Some(format!("Bearer {token}")),
            None
        )
        .await
        .0,
        401,
        "expired"
    );
    assert_eq!(
        w.gh.stale_uses(),
        vec!["/api/v3/repos/acme/widgets".to_string()]
    );
    assert!(w.gh.live_tokens().is_empty());
}

// ---------------------------------------------------------------------------
// End to end through tollgate.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_clone_through_tollgate_reaches_only_the_policys_repositories() {
    if !needs(&["git", "openssl", "bao"]) {
        return;
    }
    let mut w = World::start(|_| {}).await;
    let proxy = w.proxy(KeySource::Vault).await;
    let work = tempfile::tempdir().unwrap();
    let url = |repo: &str| {
        format!(
            "https://x-access-token:__GITHUB_TOKEN__@github.test:{}/acme/{repo}.git",
            w.gh.port
        )
    };

    let cloned = clone_via(
        &proxy,
        &proxy.url(),
        &url("widgets"),
        &work.path().join("widgets"),
    )
    .await;
    assert!(
        cloned.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&cloned.stderr),
        proxy.logs().join("\n")
    );
    assert_eq!(
        std::fs::read_to_string(work.path().join("widgets/README")).unwrap(),
        "acme/widgets\n"
    );
    let remote = std::process::Command::new("git")
        .args(["config", "remote.origin.url"])
        .current_dir(work.path().join("widgets"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&remote.stdout).contains("__GITHUB_TOKEN__"),
        "the clone keeps the placeholder"
    );

    // A repository of the installation that the policy does not list.
    let outside = clone_via(
        &proxy,
        &proxy.url(),
        &url("secret-plans"),
        &work.path().join("plans"),
    )
    .await;
    assert!(
        !outside.status.success(),
        "secret-plans is outside `repositories`"
    );
    assert!(!work.path().join("plans/README").exists());
    assert_eq!(
        get(
            &proxy,
            &w.url("api.github.test", "/repos/acme/secret-plans")
        )
        .await
        .status,
        404
    );
    assert_eq!(
        get(&proxy, &w.url("api.github.test", "/repos/acme/docs"))
            .await
            .status,
        200
    );

    // The placeholder to a host outside the secret's `hosts`: refused, and
    // nothing minted for it.
    let elsewhere = get(&proxy, &w.other_url()).await;
    assert_eq!(elsewhere.status, 403, "{elsewhere:?}");
    assert_eq!(elsewhere.json()["error"], "secret_not_allowed");
    assert_eq!(w.other.hits(), 0);

    // GitHub saw exactly what the policy asks for, the documented way.
    let mints = w.gh.mints();
    assert_eq!(mints.len(), 1, "one token for the task: {mints:?}");
    let mint = &mints[0];
    assert_eq!(mint.installation, ACME_INSTALLATION);
    assert_eq!(
        mint.repositories,
        Some(vec!["widgets".to_string(), "docs".to_string()])
    );
    assert_eq!(
        mint.permissions,
        Some(json!({"contents": "read", "pull_requests": "write"}))
    );
    assert_eq!(
        mint.headers.get("accept").map(String::as_str),
        Some("application/vnd.github+json")
    );
    assert_eq!(
        mint.headers.get("x-github-api-version").map(String::as_str),
        Some("2022-11-28")
    );
    assert!(
        mint.headers
            .get("user-agent")
            .is_some_and(|ua| ua.starts_with("tollgate")),
        "{mint:?}"
    );
    assert!(w.gh.stale_uses().is_empty());
    // The App JWT as specified: RS256, `iat` a minute back, `exp` nine minutes
    // ahead, `iss` the App id as a string.
    use base64::Engine;
    let jwt = w.gh.jwts().pop().unwrap();
    let part = |i: usize| -> Value {
        let raw = jwt.split('.').nth(i).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(raw)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(part(0)["alg"], "RS256");
    let claims = part(1);
    assert_eq!(claims["iss"], APP_ID.to_string(), "{claims}");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 600, "{claims}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - 120..=now - 55).contains(&iat), "{claims} at {now}");
    // The sandbox never held the token: every git request with credentials
    // carried the real one, put there by tollgate.
    let token = mint.token.clone().unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
    );
    let git_auth: Vec<String> =
        w.gh.requests()
            .iter()
            .filter(|r| r["path"].as_str().unwrap().contains(".git/"))
            .filter_map(|r| r["headers"]["authorization"].as_str().map(str::to_string))
            .collect();
    assert!(
        !git_auth.is_empty() && git_auth.iter().all(|a| *a == basic),
        "{git_auth:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_minted_once_per_task_even_under_fifty_concurrent_first_requests() {
    if !needs(&["git", "openssl", "bao"]) {
        return;
    }
    let mut w = World::start(|_| {}).await;
    let proxy = w.proxy(KeySource::Vault).await;
    let widgets = w.url("api.github.test", "/repos/acme/widgets");

    // The static task: two requests, one mint.
    for _ in 0..2 {
        let out = get(&proxy, &widgets).await;
        assert_eq!(out.status, 200, "{out:?}");
    }
    assert_eq!(w.gh.mints().len(), 1);

    // A new task: fifty concurrent first requests, one mint.
    let (_, burst_url) = create_task(&proxy, r#"{"policy":"coder","ttl":"10m"}"#).await;
    let client = client_as(&proxy, &burst_url);
    let requests = (0..50).map(|_| {
        let client = client.clone();
        let url = widgets.clone();
        async move {
            client
                .get(url)
                .header("authorization", "Bearer __GITHUB_TOKEN__")
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "{statuses:?}"
    );
    let tokens = w.gh.tokens();
    assert_eq!(
        tokens.len(),
        2,
        "one mint for the fifty: {:?}",
        w.gh.mints()
    );
    let burst_token = format!("Bearer {}", tokens[1]);
    let carried =
        w.gh.requests()
            .iter()
            .filter(|r| r["headers"]["authorization"] == burst_token.as_str())
            .count();
    assert_eq!(carried, 50, "all fifty carried the burst task's token");

    // A third task gets its own token.
    let (_, third_url) = create_task(&proxy, r#"{"policy":"coder","ttl":"10m"}"#).await;
    assert_eq!(
        get_as(&proxy, &third_url, &widgets, "GITHUB_TOKEN")
            .await
            .status,
        200
    );
    let tokens = w.gh.tokens();
    assert_eq!(tokens.len(), 3);
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2] && tokens[0] != tokens[2]);
    assert!(w.gh.stale_uses().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_minted_again_and_never_forwarded_expired() {
    if !needs(&["git", "openssl"]) {
        return;
    }
    let mut w = World::start(|spec| spec.token_life = Duration::from_secs(3)).await;
    let proxy = w.proxy(KeySource::Env).await;
    let widgets = w.url("api.github.test", "/repos/acme/widgets");
    // Requests every 150 ms for 8 s: several token lives, and requests close
    // to every expiry.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut sent = 0;
    while Instant::now() < deadline {
        let out = get(&proxy, &widgets).await;
        assert_eq!(out.status, 200, "request {sent}: {out:?}");
        sent += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        w.gh.stale_uses().is_empty(),
        "an expired token was forwarded: {:?}",
        w.gh.stale_uses()
    );
    let mints = w.gh.mints().len();
    assert!(mints >= 3, "re-minted as tokens expired: {mints} mints");
    assert!(
        mints * 3 <= sent,
        "cached between mints: {mints} mints for {sent} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_has_already_expired_is_refused_not_forwarded() {
    if !needs(&["git", "openssl"]) {
        return;
    }
    // A GitHub whose clock runs behind: every token it hands out has expired.
    let mut w = World::start(|spec| spec.token_life = Duration::ZERO).await;
    let proxy = w.proxy(KeySource::Env).await;
    let widgets = w.url("api.github.test", "/repos/acme/widgets");
    for _ in 0..2 {
        let out = get(&proxy, &widgets).await;
        assert_unavailable(&out, "GITHUB_TOKEN", "already expired");
    }
    assert!(w.gh.stale_uses().is_empty(), "{:?}", w.gh.stale_uses());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_revoked_when_their_task_ends_and_at_shutdown() {
    if !needs(&["git", "openssl", "bao"]) {
        return;
    }
    let mut w = World::start(|_| {}).await;
    let mut proxy = w.proxy(KeySource::Vault).await;
    let widgets = w.url("api.github.test", "/repos/acme/widgets");

    assert_eq!(get(&proxy, &widgets).await.status, 200);
    let static_token = w.gh.tokens()[0].clone();
    let (id, task_url) = create_task(&proxy, r#"{"policy":"coder","ttl":"10m"}"#).await;
    assert_eq!(
        get_as(&proxy, &task_url, &widgets, "GITHUB_TOKEN")
            .await
            .status,
        200
    );
    let task_token = w.gh.tokens()[1].clone();
    assert!(w.gh.revoked().is_empty());

    // A task whose TTL runs out ends as well.
    let (_, short_url) = create_task(&proxy, r#"{"policy":"coder","ttl":"2s"}"#).await;
    assert_eq!(
        get_as(&proxy, &short_url, &widgets, "GITHUB_TOKEN")
            .await
            .status,
        200
    );
    let short_token = w.gh.tokens()[2].clone();

    assert_eq!(common::delete_task(&proxy, &id).await, 200);
    eventually(
        Duration::from_secs(10),
        "the ended task's token revoked",
        || w.gh.revoked().contains(&task_token),
    )
    .await;
    assert!(!w.gh.live_tokens().contains(&task_token));
    assert!(
        w.gh.live_tokens().contains(&static_token),
        "the other task keeps its token"
    );
    assert_eq!(get(&proxy, &widgets).await.status, 200);
    eventually(
        Duration::from_secs(10),
        "the token of a task past its TTL revoked",
        || w.gh.revoked().contains(&short_token),
    )
    .await;

    // Static tasks end with the process.
    proxy.terminate();
    let exit = proxy.wait_exit(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| s.success()),
        "{exit:?}\n{}",
        proxy.logs().join("\n")
    );
    assert!(
        w.gh.revoked().contains(&static_token),
        "revoked at shutdown: {:?}\n{}",
        w.gh.revoked(),
        proxy.logs().join("\n")
    );
    assert!(w.gh.live_tokens().is_empty());
    assert_eq!(w.gh.revoked().len(), 3, "each token revoked once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_down_gives_503_naming_the_secret_and_recovers_without_restart() {
    if !needs(&["git", "openssl", "bao"]) {
        return;
    }
    let mut w = World::start(|_| {}).await;
    let proxy = w.proxy(KeySource::Vault).await;
    let widgets = w.url("api.github.test", "/repos/acme/widgets");

    w.gh.set_outage(Outage::Refuse);
    let refused = get(&proxy, &widgets).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.json()["error"], "secret_unavailable");
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("GITHUB_TOKEN"),
        "{refused:?}"
    );
    let other = get(&proxy, &w.other_url()).await;
    assert_eq!(
        other.status, 403,
        "a placeholder to a host outside `hosts`: {other:?}"
    );
    let plain = curl_raw(&[
        "--proxy",
        &proxy.url(),
        "--cacert",
        proxy.ca_pem.to_str().unwrap(),
        &w.other_url(),
    ])
    .await;
    assert_eq!(plain.status, 200, "other rules keep working: {plain:?}");

    w.gh.set_outage(Outage::Unavailable);
    let unavailable = get(&proxy, &widgets).await;
    assert_unavailable(&unavailable, "GITHUB_TOKEN", "");
    assert_no_credentials(&w, &unavailable.body, "the 503 body");

    w.gh.set_outage(Outage::Up);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = get(&proxy, &widgets).await;
        if out.status == 200 {
            break;
        }
        assert_eq!(out.status, 503, "{out:?}");
        assert!(Instant::now() < deadline, "no recovery: {out:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(w.gh.mints().len(), 1);
    let scrape = admin_call(&proxy, "GET", "/metrics", None).await.body;
    assert!(
        metric(&scrape, "tollgate_mint_failures_total", "GITHUB_TOKEN") >= 2.0,
        "{scrape}"
    );
    assert_eq!(
        metric(&scrape, "tollgate_mints_total", "GITHUB_TOKEN"),
        1.0,
        "{scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_beyond_the_apps_give_503_quoting_github() {
    if !needs(&["git", "openssl"]) {
        return;
    }
    let mut w = World::start(|_| {}).await;
    let mut setup = ProxySetup::default();
    let key = w.key_yaml(&KeySource::Env, &mut setup);
    let greedy = w.acme_app(&key).replace(
        "pull_requests: write",
        "pull_requests: write, administration: write",
    );
    let mut full = w.setup(&w.policy(&[("GITHUB_TOKEN", greedy)]));
    full.env = setup.env;
    let proxy = w.serve(&full);

    let out = get(&proxy, &w.url("api.github.test", "/repos/acme/widgets")).await;
    assert_unavailable(&out, "GITHUB_TOKEN", PERMISSIONS_NOT_GRANTED);
    assert_no_credentials(&w, &out.body, "the 503 body");
    let attempts = w.gh.mint_attempts();
    assert!(
        !attempts.is_empty() && attempts.iter().all(|m| m.status == 422),
        "{attempts:?}"
    );
    assert!(w.gh.live_tokens().is_empty());
    let plain = curl_raw(&[
        "--proxy",
        &proxy.url(),
        "--cacert",
        proxy.ca_pem.to_str().unwrap(),
        &w.other_url(),
    ])
    .await;
    assert_eq!(plain.status, 200, "other rules keep working: {plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_app_key_gives_503_with_githubs_401_message() {
    if !needs(&["git", "openssl", "bao"]) {
        return;
    }
    let mut w = World::start(|_| {}).await;
    let wrong = AppKey::generate();
    let mut setup = ProxySetup::default();
    w.vault_key(&wrong.pem, &mut setup);
    let key = "{ vault: { mount: secret, path: github/app, field: private_key } }";
    let mut full = w.setup(&w.policy(&[("GITHUB_TOKEN", w.acme_app(key))]));
    full.extra_yaml = setup.extra_yaml;
    let proxy = w.serve(&full);

    let out = get(&proxy, &w.url("api.github.test", "/repos/acme/widgets")).await;
    assert_unavailable(&out, "GITHUB_TOKEN", JWT_NOT_DECODED);
    assert_no_credentials(&w, &out.body, "the 503 body");
    assert!(!out.body.contains(wrong.pem.lines().nth(1).unwrap()));
    assert!(!w.gh.jwts().is_empty(), "tollgate did try");
    assert!(w.gh.mints().is_empty());
    let plain = curl_raw(&[
        "--proxy",
        &proxy.url(),
        "--cacert",
        proxy.ca_pem.to_str().unwrap(),
        &w.other_url(),
    ])
    .await;
    assert_eq!(plain.status, 200, "other rules keep working: {plain:?}");
    let logs = proxy.logs().join("\n");
    assert!(
        !logs.contains(wrong.pem.lines().nth(1).unwrap()),
        "the key is in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_is_looked_up_once_for_an_org_and_for_a_user() {
    if !needs(&["git", "openssl"]) {
        return;
    }
    let w = World::start(|_| {}).await;
    // The key from a file next to the policy, in PKCS#8 form this time.
    let acme = format!(
        "      app_id: {APP_ID}\n      owner: acme\n      private_key: {{ file: app-key.pem }}\n      repositories: [widgets]\n      api: {}\n",
        w.api()
    );
    let octo = format!(
        "      app_id: {APP_ID}\n      owner: octo\n      private_key: {{ file: app-key.pem }}\n      api: {}\n",
        w.api()
    );
    let setup = w.setup(&w.policy(&[("ACME_TOKEN", acme), ("OCTO_TOKEN", octo)]));
    let proxy = w.serve(&setup);
    let (_, second) = create_task(&proxy, r#"{"policy":"coder","ttl":"10m"}"#).await;

    for task in [proxy.url(), second] {
        let acme = get_as(
            &proxy,
            &task,
            &w.url("api.github.test", "/repos/acme/widgets"),
            "ACME_TOKEN",
        )
        .await;
        assert_eq!(acme.status, 200, "{acme:?}");
        let octo = get_as(
            &proxy,
            &task,
            &w.url("api.github.test", "/repos/octo/dotfiles"),
            "OCTO_TOKEN",
        )
        .await;
        assert_eq!(octo.status, 200, "{octo:?}");
        let crossed = get_as(
            &proxy,
            &task,
            &w.url("api.github.test", "/repos/acme/widgets"),
            "OCTO_TOKEN",
        )
        .await;
        assert_eq!(
            crossed.status, 404,
            "the user's token does not reach the org's repo"
        );
    }
    let lookups = w.gh.lookups();
    let count = |l: &str| lookups.iter().filter(|x| *x == l).count();
    assert_eq!(count("orgs/acme"), 1, "{lookups:?}");
    assert_eq!(count("users/octo"), 1, "{lookups:?}");
    assert!(count("orgs/octo") <= 1, "{lookups:?}");
    assert_eq!(
        count("users/acme"),
        0,
        "an org is found under /orgs: {lookups:?}"
    );
    assert_eq!(w.gh.mint_count(ACME_INSTALLATION), 2);
    assert_eq!(w.gh.mint_count(OCTO_INSTALLATION), 2);
    let octo_mint =
        w.gh.mints()
            .into_iter()
            .find(|m| m.installation == OCTO_INSTALLATION)
            .unwrap();
    assert_eq!(
        (octo_mint.repositories, octo_mint.permissions),
        (None, None),
        "keys the policy omits are not sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ghes_api_base_with_api_v3_and_a_key_from_env() {
    if !needs(&["git", "openssl"]) {
        return;
    }
    let mut w = World::start(|spec| spec.prefix = "/api/v3".into()).await;
    let mut setup = ProxySetup::default();
    let key = w.key_yaml(&KeySource::Env, &mut setup);
    let ghe = w.gh.api_base("ghe.test");
    let app = w.acme_app(&key).replace(&w.api(), &ghe);
    assert!(app.contains("/api/v3"));
    let mut full = w.setup(&w.policy(&[("GITHUB_TOKEN", app)]));
    full.env = setup.env;
    let proxy = w.serve(&full);

    let (id, task) = create_task(&proxy, r#"{"policy":"coder","ttl":"10m"}"#).await;
    let out = get_as(
        &proxy,
        &task,
        &format!("{ghe}/repos/acme/widgets"),
        "GITHUB_TOKEN",
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    let work = tempfile::tempdir().unwrap();
    let url = format!(
        "https://x-access-token:__GITHUB_TOKEN__@ghe.test:{}/acme/docs.git",
        w.gh.port
    );
    let cloned = clone_via(&proxy, &task, &url, &work.path().join("docs")).await;
    assert!(
        cloned.status.success(),
        "{}",
        String::from_utf8_lossy(&cloned.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(work.path().join("docs/README")).unwrap(),
        "acme/docs\n"
    );
    assert_eq!(w.gh.mints().len(), 1);
    assert!(w.gh.requests().iter().any(|r| r["method"] == "POST"
        && r["path"]
            == format!("/api/v3/app/installations/{ACME_INSTALLATION}/access_tokens").as_str()));
    let shown = admin_call(&proxy, "GET", &format!("/v1/tasks/{id}"), None)
        .await
        .json();
    assert_eq!(shown["minted"][0]["issuer"], ghe.as_str(), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_is_scrubbed_and_never_in_logs_audit_admin_or_metrics() {
    if !needs(&["git", "openssl", "bao"]) {
        return;
    }
    let mut w = World::start(|_| {}).await;
    let mut setup = ProxySetup::default();
    let key = w.key_yaml(&KeySource::Vault, &mut setup);
    let mut full = w.setup(&w.policy(&[("GITHUB_TOKEN", w.acme_app(&key))]));
    full.extra_yaml = setup.extra_yaml;
    full.env = vec![("RUST_LOG".into(), "debug".into())];
    let proxy = w.serve(&full);
    let (id, task) = create_task(&proxy, r#"{"policy":"coder","ttl":"10m"}"#).await;

    // GitHub echoes the Authorization header it got: the task sees the
    // placeholder back, not the token.
    let echoed = get_as(
        &proxy,
        &task,
        &w.url("api.github.test", "/test/echo-auth"),
        "GITHUB_TOKEN",
    )
    .await;
    assert_eq!(echoed.status, 200, "{echoed:?}");
    assert_eq!(
        echoed.json()["authorization"],
        "Bearer __GITHUB_TOKEN__",
        "{echoed:?}"
    );
    assert_eq!(echoed.json()["token_live"], true, "GitHub got a live token");
    let token = w.gh.tokens()[0].clone();
    assert!(!echoed.body.contains(&token) && !echoed.headers.contains(&token));

    // More uses of the cached token: the API and a git clone.
    assert_eq!(
        get_as(
            &proxy,
            &task,
            &w.url("api.github.test", "/repos/acme/widgets"),
            "GITHUB_TOKEN"
        )
        .await
        .status,
        200
    );
    let work = tempfile::tempdir().unwrap();
    let url = format!(
        "https://x-access-token:__GITHUB_TOKEN__@github.test:{}/acme/widgets.git",
        w.gh.port
    );
    let cloned = clone_via(&proxy, &task, &url, &work.path().join("w")).await;
    assert!(
        cloned.status.success(),
        "{}",
        String::from_utf8_lossy(&cloned.stderr)
    );
    assert_eq!(w.gh.tokens(), vec![token.clone()], "one mint for the task");
    let git_out = format!(
        "{}{}",
        String::from_utf8_lossy(&cloned.stdout),
        String::from_utf8_lossy(&cloned.stderr)
    );
    assert_no_credentials(&w, &git_out, "git's output");

    // The admin API names the credential, its issuer and expiry, never the value.
    let shown = admin_call(&proxy, "GET", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    let minted = &shown.json()["minted"];
    assert_eq!(minted.as_array().map(Vec::len), Some(1), "{}", shown.body);
    assert_eq!(minted[0]["name"], "GITHUB_TOKEN");
    assert_eq!(minted[0]["issuer"], w.api().as_str());
    // The same instant GitHub answered (tollgate writes milliseconds, as for
    // every time in the admin API).
    let instant = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert_eq!(
        instant(minted[0]["expires_at"].as_str().unwrap()),
        instant(w.gh.mints()[0].expires_at.as_deref().unwrap())
    );
    assert_no_credentials(&w, &shown.body, "the admin API");
    let listed = admin_call(&proxy, "GET", "/v1/tasks", None).await;
    assert_no_credentials(&w, &listed.body, "the task list");

    // Metrics count one mint and the cache hits after it.
    let scrape = admin_call(&proxy, "GET", "/metrics", None).await.body;
    assert_eq!(
        metric(&scrape, "tollgate_mints_total", "GITHUB_TOKEN"),
        1.0,
        "{scrape}"
    );
    assert!(
        metric(&scrape, "tollgate_mint_cache_hits_total", "GITHUB_TOKEN") >= 2.0,
        "{scrape}"
    );
    assert_eq!(
        metric(&scrape, "tollgate_mint_failures_total", "GITHUB_TOKEN"),
        0.0
    );
    assert_no_credentials(&w, &scrape, "the metrics");

    // The audit trail names the secret only.
    let record = common::wait_record(&proxy, |r| {
        r["task"] == id.as_str() && r["path"].as_str().is_some_and(|p| p.contains("echo-auth"))
    })
    .await;
    assert_eq!(record["secrets"], json!(["GITHUB_TOKEN"]), "{record}");
    let mut audit = String::new();
    for entry in std::fs::read_dir(proxy.dir.path().join("state/audit")).unwrap() {
        audit.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry.unwrap().path()).unwrap_or_default(),
        ));
    }
    assert!(audit.contains("GITHUB_TOKEN"));
    assert_no_credentials(&w, &audit, "the audit trail");

    // Nor in the logs, at debug level, before or after the task ends.
    assert_eq!(common::delete_task(&proxy, &id).await, 200);
    eventually(Duration::from_secs(10), "revoked", || {
        w.gh.revoked().contains(&token)
    })
    .await;
    let logs = proxy.logs().join("\n");
    assert!(!logs.is_empty());
    assert_no_credentials(&w, &logs, "tollgate's logs");
}
