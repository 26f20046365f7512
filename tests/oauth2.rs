//! OAuth 2.0 access tokens minted by tollgate (`oauth2` secrets), end to end: the
//! real binary, a real authorization server from authlib (tests/oauth/server.py,
//! HTTPS for `login.test` and the protected resource `api.crm.test`), client
//! secrets and refresh tokens in real OpenBao KV, and curl or reqwest as clients.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::bao::{Bao, ROOT_TOKEN};
use common::oauth::{python_ready, rsa_key, service_account, AuthServer};
use common::upstream::{start_upstream, TestCa, Upstream};
use common::{
    admin_call, audit_records, create_task, curl, curl_raw, delete_task, start_proxy, CurlOut,
    ProxyProc, ProxySetup, TASK, TOKEN,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BASIC_SECRET: &str = "basic-client-secret-Zq81";
const POST_SECRET: &str = "post-client-secret-Wm42";
const SEED_REFRESH: &str = "rt-seed-Hk29fQ0xLr";
const SA_EMAIL: &str = "agent@tollgate-test.iam.gserviceaccount.test";
const SA_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform.read-only";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The two confidential clients, one per client authentication method.
fn server_config(expires_in: u64) -> Value {
    json!({
        "expires_in": expires_in,
        "clients": [
            {"client_id": "basic-client", "client_secret": BASIC_SECRET,
             "auth_method": "client_secret_basic", "scope": "api.read api.write"},
            {"client_id": "post-client", "client_secret": POST_SECRET,
             "auth_method": "client_secret_post", "scope": "api.read api.write"},
        ],
    })
}

/// One `oauth2` secret bound to the protected resource and the echo upstream;
/// `body` holds the lines under `oauth2:` after `token_url`.
fn secret(name: &str, token_url: &str, body: &str) -> String {
    let mut text = format!("  {name}:\n    oauth2:\n      token_url: {token_url}\n");
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        text.push_str(&format!("      {}\n", line.trim()));
    }
    text.push_str("    hosts: [api.crm.test, api.test]\n");
    text
}

/// Policy `crm`: the secrets, a rule injecting `inject` on `api.crm.test`, and a
/// plain rule for `api.test` (the echo upstream) that uses no secret.
fn policy(secrets: &[String], inject: &[&str], auth_port: u16, api_port: u16) -> String {
    format!(
        r#"name: crm
secrets:
{}rules:
  - name: plain
    host: api.test
    port: {api_port}
    paths: ["/plain/**"]
  - name: crm api
    host: api.crm.test
    port: {auth_port}
    inject: [{}]
  - name: echo api
    host: api.test
    port: {api_port}
    inject: [{}]
"#,
        secrets.concat(),
        inject.join(", "),
        inject.join(", ")
    )
}

/// OpenBao with the client secrets at `secret/crm/oauth` (fields `basic`,
/// `post`), and the token file tollgate logs in with.
struct Vault {
    bao: Bao,
    _tmp: tempfile::TempDir,
    yaml: String,
}

fn vault() -> Vault {
    let bao = Bao::start();
    bao.cli(&[
        "kv",
        "put",
        "secret/crm/oauth",
        &format!("basic={BASIC_SECRET}"),
        &format!("post={POST_SECRET}"),
        "wrong=not-the-secret-Jt55",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let token_file = common::write_file(tmp.path(), "vault-token", ROOT_TOKEN);
    let yaml = format!(
        "secrets:\n  vault:\n    address: {}\n    auth: {{ method: token, token_file: {} }}\n",
        bao.addr(),
        token_file.display()
    );
    Vault {
        bao,
        _tmp: tmp,
        yaml,
    }
}

/// Everything one test runs: the authorization server, the plain echo upstream
/// (`api.test`), OpenBao and tollgate.
struct Crm {
    auth: AuthServer,
    api: Upstream,
    vault: Vault,
    setup: ProxySetup,
    proxy: ProxyProc,
}

impl Crm {
    /// Starts it all; `secrets(token_url, revocation_url)` gives the policy's
    /// secrets and `inject` their names.
    async fn start(
        config: Value,
        inject: &[&str],
        secrets: impl FnOnce(&AuthServer) -> Vec<String>,
        tweak: impl FnOnce(&mut ProxySetup),
    ) -> Crm {
        let ca = TestCa::new("oauth test CA");
        let auth = AuthServer::start(&ca, config);
        let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
        let vault = vault();
        let yaml = policy(&secrets(&auth), inject, auth.port, api.port);
        let mut setup = ProxySetup::with_policy("crm", &yaml)
            .trust(&ca.cert_pem)
            .resolve("api.test", api.port)
            .resolve_addr("login.test", &format!("{}:{}", auth.bind, auth.port))
            .resolve_addr("api.crm.test", &format!("{}:{}", auth.bind, auth.port));
        setup.extra_yaml = vault.yaml.clone();
        tweak(&mut setup);
        let proxy = start_proxy(&setup);
        Crm {
            auth,
            api,
            vault,
            setup,
            proxy,
        }
    }

    /// `GET api.crm.test/api/whoami` through tollgate with the placeholder of `name`.
    async fn whoami(&self, name: &str) -> CurlOut {
        let auth = format!("Authorization: Bearer __{name}__");
        curl(&self.proxy, &["-H", &auth, &self.auth.api("/api/whoami")]).await
    }

    /// `GET api.test/plain/x` through tollgate: a rule without secrets.
    async fn plain(&self) -> CurlOut {
        let url = format!("https://api.test:{}/plain/x", self.api.port);
        curl(&self.proxy, &[&url]).await
    }
}

/// The client_credentials secret for `client` (`basic` or `post`).
fn client_credentials(name: &str, auth: &AuthServer, client: &str, extra: &str) -> String {
    secret(
        name,
        &auth.token_url(),
        &format!(
            "grant: client_credentials\nclient_id: {client}-client\n\
             client_secret: {{ vault: {{ mount: secret, path: crm/oauth, field: {client} }} }}\n\
             client_auth: client_secret_{client}\n{extra}"
        ),
    )
}

/// Asserts that none of `values` appears in tollgate's logs or audit file.
async fn assert_not_leaked(proxy: &ProxyProc, values: &[String]) {
    common::wait_record(proxy, |r| r["secrets"].is_array()).await;
    let logs = proxy.logs().join("\n");
    let audit = std::fs::read_to_string(proxy.dir.path().join("state/audit/audit.jsonl")).unwrap();
    for value in values.iter().filter(|v| !v.is_empty()) {
        assert!(!logs.contains(value.as_str()), "{value} in tollgate's logs");
        assert!(!audit.contains(value.as_str()), "{value} in the audit file");
    }
}

/// The 503 body of a mint failure: `secret_unavailable`, naming `name`.
fn assert_unavailable(out: &CurlOut, name: &str) -> String {
    assert_eq!(out.status, 503, "{out:?}");
    let body = out.json();
    assert_eq!(body["error"], "secret_unavailable", "{body}");
    let message = body["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(name),
        "the message names {name}: {message}"
    );
    message
}

#[tokio::test]
async fn client_credentials_with_basic_and_post_reach_the_protected_resource() {
    if !python_ready() {
        return;
    }
    let f = Crm::start(
        server_config(3600),
        &["CRM_BASIC", "CRM_POST"],
        |auth| {
            vec![
                client_credentials(
                    "CRM_BASIC",
                    auth,
                    "basic",
                    "scopes: [api.read]\naudience: https://api.crm.test",
                ),
                client_credentials("CRM_POST", auth, "post", "scopes: [api.read, api.write]"),
            ]
        },
        |_| {},
    )
    .await;

    let basic = f.whoami("CRM_BASIC").await;
    assert_eq!(basic.status, 200, "{basic:?}");
    let who = basic.json();
    assert_eq!(who["client_id"], "basic-client");
    assert_eq!(who["grant_type"], "client_credentials");
    // The client may have api.read and api.write: only the asked-for scope is granted.
    assert_eq!(who["scope"], "api.read", "scopes are passed: {who}");
    assert_eq!(who["audience"], "https://api.crm.test", "{who}");

    let post = f.whoami("CRM_POST").await;
    assert_eq!(post.status, 200, "{post:?}");
    assert_eq!(post.json()["client_id"], "post-client");
    assert_eq!(post.json()["scope"], "api.read api.write");
    assert_eq!(
        post.json()["audience"],
        Value::Null,
        "no audience configured"
    );

    let stats = f.auth.stats().await;
    let requests = stats["token_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "one token call each: {stats}");
    let auth_of = |scope: &str| {
        requests
            .iter()
            .find(|r| r["scope"] == scope)
            .map(|r| r["client_auth"].clone())
    };
    assert_eq!(auth_of("api.read"), Some(json!("basic")), "{stats}");
    assert_eq!(
        auth_of("api.read api.write"),
        Some(json!("post")),
        "{stats}"
    );

    // The echo upstream on the other host bound to the secret sees the real token.
    let echo = curl(
        &f.proxy,
        &[
            "-H",
            "Authorization: Bearer __CRM_BASIC__",
            &format!("https://api.test:{}/echo", f.api.port),
        ],
    )
    .await;
    assert_eq!(echo.status, 200, "{echo:?}");
    let seen = f.api.seen.lock().unwrap().last().unwrap()["headers"]["authorization"].clone();
    let issued = f.auth.issued().await;
    let basic_token = issued
        .iter()
        .find(|(_, c)| c == "basic-client")
        .map(|(t, _)| t.clone())
        .unwrap();
    assert_eq!(
        seen,
        json!(format!("Bearer {basic_token}")),
        "cached token reused"
    );
    assert_eq!(f.auth.token_calls("client_credentials").await, 2);
    assert_eq!(
        echo.json()["headers"]["authorization"],
        "Bearer __CRM_BASIC__",
        "the echoed token is scrubbed"
    );

    let records = audit_records(&f.proxy);
    assert!(
        records.iter().any(|r| r["secrets"] == json!(["CRM_BASIC"])),
        "the audit names the secret: {records:?}"
    );
    let mut values: Vec<String> = issued.into_iter().map(|(t, _)| t).collect();
    values.extend([BASIC_SECRET.to_string(), POST_SECRET.to_string()]);
    assert_not_leaked(&f.proxy, &values).await;
}

#[tokio::test]
async fn echoed_access_token_is_scrubbed() {
    if !python_ready() {
        return;
    }
    let f = Crm::start(
        server_config(3600),
        &["CRM_TOKEN"],
        |auth| vec![client_credentials("CRM_TOKEN", auth, "basic", "")],
        |_| {},
    )
    .await;
    let out = curl(
        &f.proxy,
        &[
            "-H",
            "Authorization: Bearer __CRM_TOKEN__",
            &f.auth.api("/api/echo-auth"),
        ],
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    let issued = f.auth.issued().await;
    assert_eq!(issued.len(), 1);
    let token = &issued[0].0;
    assert_eq!(out.json()["authorization"], "Bearer __CRM_TOKEN__");
    assert!(!out.body.contains(token.as_str()), "{}", out.body);
    assert!(!out.headers.contains(token.as_str()), "{}", out.headers);
    // It was the real token the resource received (it accepted it): the same
    // token works when sent directly.
    let direct = f
        .auth
        .direct(&[
            "-H",
            &format!("Authorization: Bearer {token}"),
            &f.auth.api("/api/echo-auth"),
        ])
        .await;
    assert_eq!(direct.json()["authorization"], format!("Bearer {token}"));
    // Echoed in a response header of the other host bound to the secret.
    let header = curl(
        &f.proxy,
        &[
            "-H",
            "Authorization: Bearer __CRM_TOKEN__",
            &format!("https://api.test:{}/echo-header", f.api.port),
        ],
    )
    .await;
    assert_eq!(header.status, 200, "{header:?}");
    assert_eq!(
        header.header("x-echo-auth").as_deref(),
        Some("Bearer __CRM_TOKEN__")
    );
    assert!(
        !header.headers.contains(token.as_str()),
        "{}",
        header.headers
    );
    assert_not_leaked(&f.proxy, &[token.clone(), BASIC_SECRET.to_string()]).await;
}

/// A server with one seeded refresh token for `basic-client`, and tollgate with
/// `CRM_TOKEN` minted by the refresh_token grant from OpenBao.
async fn refresh_grant_crm(tweak: impl FnOnce(&mut ProxySetup)) -> Crm {
    let mut config = server_config(3600);
    config["refresh_tokens"] =
        json!([{"token": SEED_REFRESH, "client_id": "basic-client", "scope": "api.read"}]);
    Crm::start(
        config,
        &["CRM_TOKEN"],
        |auth| {
            vec![secret(
                "CRM_TOKEN",
                &auth.token_url(),
                "grant: refresh_token\nclient_id: basic-client\n\
                 client_secret: { vault: { mount: secret, path: crm/oauth, field: basic } }\n\
                 refresh_token: { vault: { mount: secret, path: crm/refresh, field: token } }",
            )]
        },
        tweak,
    )
    .await
}

#[tokio::test]
async fn rotated_refresh_token_is_written_back_to_openbao_and_survives_a_restart() {
    if !python_ready() {
        return;
    }
    // Debug logs too: nothing secret in them either.
    let f = refresh_grant_crm(|setup| setup.env.push(("RUST_LOG".into(), "debug".into()))).await;
    f.vault.bao.cli(&[
        "kv",
        "put",
        "secret/crm/refresh",
        &format!("token={SEED_REFRESH}"),
        "owner=crm-team",
    ]);
    let field = |name: &str| {
        f.vault
            .bao
            .cli(&["kv", "get", &format!("-field={name}"), "secret/crm/refresh"])
    };

    let out = f.whoami("CRM_TOKEN").await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.json()["grant_type"], "refresh_token");
    assert_eq!(out.json()["client_id"], "basic-client");
    let stats = f.auth.stats().await;
    let live = stats["refresh_tokens"].as_array().unwrap().clone();
    assert_eq!(live.len(), 1, "the seed was rotated: {stats}");
    let rotated = live[0].as_str().unwrap().to_string();
    assert_ne!(rotated, SEED_REFRESH);
    // Written back in place, the other field kept. The write may follow the
    // response by a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while field("token") != rotated {
        assert!(
            Instant::now() < deadline,
            "the rotated refresh token must land in OpenBao; it holds {}",
            field("token")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        field("owner"),
        "crm-team",
        "other fields of the secret kept"
    );
    // The seed is dead at the server: using it again is invalid_grant.
    let reuse = f
        .auth
        .direct(&[
            "-u",
            &format!("basic-client:{BASIC_SECRET}"),
            "-d",
            "grant_type=refresh_token",
            "-d",
            &format!("refresh_token={SEED_REFRESH}"),
            &f.auth.token_url(),
        ])
        .await;
    assert_eq!(reuse.status, 400, "{reuse:?}");
    assert_eq!(reuse.json()["error"], "invalid_grant");
    assert_eq!(f.auth.token_calls("refresh_token").await, 2);

    // A new tollgate has nothing cached: it must use the rotated token.
    let Crm {
        auth,
        vault,
        setup,
        proxy,
        api: _api,
    } = f;
    let env = setup.env.clone();
    let mut values = vec![BASIC_SECRET.to_string(), SEED_REFRESH.to_string()];
    values.extend(auth.issued().await.into_iter().map(|(t, _)| t));
    values.push(rotated.clone());
    assert_not_leaked(&proxy, &values).await;
    let proxy = proxy.restart(&env);
    let again = curl(
        &proxy,
        &[
            "-H",
            "Authorization: Bearer __CRM_TOKEN__",
            &auth.api("/api/whoami"),
        ],
    )
    .await;
    assert_eq!(again.status, 200, "after a restart: {again:?}");
    let stats = auth.stats().await;
    let requests = stats["token_requests"].as_array().unwrap();
    assert_eq!(requests.last().unwrap()["status"], 200, "{stats}");
    let live = stats["refresh_tokens"].as_array().unwrap();
    assert_eq!(live.len(), 1, "{stats}");
    let second = live[0].as_str().unwrap().to_string();
    assert_ne!(second, rotated, "rotated once more");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = vault
            .bao
            .cli(&["kv", "get", "-field=token", "secret/crm/refresh"]);
        if stored == second {
            break;
        }
        assert!(Instant::now() < deadline, "OpenBao holds {stored}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    values.push(second);
    values.extend(auth.issued().await.into_iter().map(|(t, _)| t));
    assert_not_leaked(&proxy, &values).await;
}

#[tokio::test]
async fn jwt_bearer_with_a_google_service_account_key() {
    if !python_ready() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (good_key, public) = rsa_key(keys.path(), "good");
    let (forged_key, _) = rsa_key(keys.path(), "forged");
    let mut config = server_config(3600);
    config["service_accounts"] = json!([{
        "client_email": SA_EMAIL, "public_key": public, "private_key_id": "0f3c9a1be2d47c5a8e6b",
        "scope": format!("{SA_SCOPE} https://www.googleapis.com/auth/devstorage.read_only"),
    }]);
    let mut good_json = PathBuf::new();
    let f = Crm::start(
        config,
        &["GCP_TOKEN", "GCP_FORGED"],
        |auth| {
            // The real key lives in OpenBao; one signed by another key under the
            // same email and key id comes from a file.
            good_json =
                service_account(keys.path(), "good", SA_EMAIL, &good_key, &auth.token_url());
            let forged = service_account(
                keys.path(),
                "forged",
                SA_EMAIL,
                &forged_key,
                &auth.token_url(),
            );
            let sa = |name: &str, source: &str| {
                secret(
                    name,
                    &auth.token_url(),
                    &format!("grant: jwt_bearer\nservice_account: {source}\nscopes: [{SA_SCOPE}]"),
                )
            };
            vec![
                sa(
                    "GCP_TOKEN",
                    "{ vault: { mount: secret, path: gcp/agent, field: key_json } }",
                ),
                sa("GCP_FORGED", &format!("{{ file: {} }}", forged.display())),
            ]
        },
        |_| {},
    )
    .await;
    f.vault.bao.cli(&[
        "kv",
        "put",
        "secret/gcp/agent",
        &format!("key_json=@{}", good_json.display()),
    ]);

    let out = f.whoami("GCP_TOKEN").await;
    assert_eq!(out.status, 200, "{out:?}\n{}", f.auth.server_log());
    let who = out.json();
    assert_eq!(who["client_id"], SA_EMAIL);
    assert_eq!(who["grant_type"], JWT_BEARER);
    assert_eq!(who["scope"], SA_SCOPE, "the assertion's scope claim");
    let stats = f.auth.stats().await;
    let request = &stats["token_requests"][0];
    assert_eq!(request["grant_type"], JWT_BEARER, "{stats}");
    assert_eq!(
        request["client_auth"], "none",
        "no client authentication: {stats}"
    );

    // The server checks the signature: the forged key is refused.
    let bad = f.whoami("GCP_FORGED").await;
    let message = assert_unavailable(&bad, "GCP_FORGED");
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(
        !bad.body.contains("eyJ"),
        "no JWT in the message: {}",
        bad.body
    );
    assert_eq!(
        f.whoami("GCP_TOKEN").await.status,
        200,
        "the good one is cached"
    );
    assert_eq!(f.auth.token_calls(JWT_BEARER).await, 2);

    let mut values: Vec<String> = [&good_key, &forged_key]
        .iter()
        .map(|k| k.lines().nth(1).unwrap().to_string())
        .collect();
    values.extend(f.auth.issued().await.into_iter().map(|(t, _)| t));
    assert_not_leaked(&f.proxy, &values).await;
}

#[tokio::test]
async fn fifty_concurrent_first_requests_make_one_token_call() {
    if !python_ready() {
        return;
    }
    let f = Crm::start(
        server_config(3600),
        &["CRM_TOKEN"],
        |auth| vec![client_credentials("CRM_TOKEN", auth, "basic", "")],
        |_| {},
    )
    .await;
    let client = common::reqwest_client(&f.proxy);
    let url = f.auth.api("/api/whoami");
    let requests = (0..50).map(|_| {
        client
            .get(&url)
            .header("authorization", "Bearer __CRM_TOKEN__")
            .send()
    });
    let answers = futures_util::future::join_all(requests).await;
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200);
        let who: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(who["client_id"], "basic-client");
    }
    assert_eq!(
        f.auth.token_calls("client_credentials").await,
        1,
        "single flight: {}",
        f.auth.stats().await
    );
    // One more from the cache.
    assert_eq!(f.whoami("CRM_TOKEN").await.status, 200);
    assert_eq!(f.auth.token_calls("client_credentials").await, 1);
    let metrics = admin_call(&f.proxy, "GET", "/metrics", None).await;
    assert!(
        metrics
            .body
            .contains(r#"tollgate_mints_total{policy="crm",secret="CRM_TOKEN"} 1"#),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l
                .starts_with(r#"tollgate_mint_cache_hits_total{policy="crm",secret="CRM_TOKEN"}"#)),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn per_policy_shares_one_token_across_tasks_and_per_task_does_not() {
    if !python_ready() {
        return;
    }
    let f = Crm::start(
        server_config(3600),
        &["CRM_TASK", "CRM_SHARED"],
        |auth| {
            vec![
                client_credentials("CRM_TASK", auth, "basic", "per: task"),
                client_credentials("CRM_SHARED", auth, "post", "per: policy"),
            ]
        },
        |setup| {
            setup.extra_tasks =
                vec!["{ id: second, policy: crm, token_env: TEST_AGENT_TOKEN }".into()];
        },
    )
    .await;
    let ca = f.proxy.ca_pem.to_str().unwrap().to_string();
    let url = f.auth.api("/api/whoami");
    for task in [TASK, "second"] {
        let proxy_url = format!("http://{task}:{TOKEN}@{}", f.proxy.addr);
        for name in ["CRM_TASK", "CRM_SHARED"] {
            for _ in 0..2 {
                let out = curl_raw(&[
                    "--proxy",
                    &proxy_url,
                    "--cacert",
                    &ca,
                    "-H",
                    &format!("Authorization: Bearer __{name}__"),
                    &url,
                ])
                .await;
                assert_eq!(out.status, 200, "{task} {name}: {out:?}");
            }
        }
    }
    let issued = f.auth.issued().await;
    let count = |client: &str| issued.iter().filter(|(_, c)| c == client).count();
    assert_eq!(
        count("basic-client"),
        2,
        "per: task mints one per task: {issued:?}"
    );
    assert_eq!(
        count("post-client"),
        1,
        "per: policy shares one: {issued:?}"
    );
    assert_eq!(f.auth.token_calls("client_credentials").await, 3);
}

#[tokio::test]
async fn a_short_lived_token_is_minted_again_after_expires_in() {
    if !python_ready() {
        return;
    }
    let f = Crm::start(
        server_config(3),
        &["CRM_TOKEN"],
        |auth| vec![client_credentials("CRM_TOKEN", auth, "basic", "")],
        |_| {},
    )
    .await;
    assert_eq!(f.whoami("CRM_TOKEN").await.status, 200);
    assert_eq!(f.whoami("CRM_TOKEN").await.status, 200);
    assert_eq!(
        f.auth.token_calls("client_credentials").await,
        1,
        "cached while fresh"
    );
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let out = f.whoami("CRM_TOKEN").await;
    assert_eq!(
        out.status, 200,
        "an expired token is never forwarded: {out:?}"
    );
    assert_eq!(f.auth.token_calls("client_credentials").await, 2);
    let issued = f.auth.issued().await;
    assert_eq!(issued.len(), 2);
    assert_ne!(issued[0].0, issued[1].0);
}

#[tokio::test]
async fn invalid_client_and_invalid_grant_are_503_naming_the_secret_and_the_error() {
    if !python_ready() {
        return;
    }
    let f = Crm::start(
        server_config(3600),
        &["CRM_WRONG", "CRM_STALE", "CRM_TOKEN"],
        |auth| {
            vec![
                secret(
                    "CRM_WRONG",
                    &auth.token_url(),
                    "grant: client_credentials\nclient_id: basic-client\n\
                     client_secret: { vault: { mount: secret, path: crm/oauth, field: wrong } }",
                ),
                secret(
                    "CRM_STALE",
                    &auth.token_url(),
                    "grant: refresh_token\nclient_id: basic-client\n\
                     client_secret: { vault: { mount: secret, path: crm/oauth, field: basic } }\n\
                     refresh_token: { vault: { mount: secret, path: crm/oauth, field: stale } }",
                ),
                client_credentials("CRM_TOKEN", auth, "basic", ""),
            ]
        },
        |_| {},
    )
    .await;
    f.vault.bao.cli(&[
        "kv",
        "patch",
        "secret/crm/oauth",
        "stale=rt-never-issued-Yq20",
    ]);
    let wrong = f.whoami("CRM_WRONG").await;
    let message = assert_unavailable(&wrong, "CRM_WRONG");
    assert!(message.contains("invalid_client"), "{message}");
    assert!(
        !wrong.body.contains("not-the-secret-Jt55"),
        "{}",
        wrong.body
    );

    let stale = f.whoami("CRM_STALE").await;
    let message = assert_unavailable(&stale, "CRM_STALE");
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(!stale.body.contains("rt-never-issued"), "{}", stale.body);

    // Other secrets and rules of the policy keep working.
    assert_eq!(f.whoami("CRM_TOKEN").await.status, 200);
    assert_eq!(f.plain().await.status, 200);
    let errors = f.auth.stats().await["token_errors"].clone();
    assert_eq!(errors["invalid_client"], 1, "{errors}");
    assert_eq!(errors["invalid_grant"], 1, "{errors}");
    let metrics = admin_call(&f.proxy, "GET", "/metrics", None).await;
    assert!(
        metrics
            .body
            .contains(r#"tollgate_mint_failures_total{policy="crm",secret="CRM_WRONG"} 1"#),
        "{}",
        metrics.body
    );
    assert_not_leaked(
        &f.proxy,
        &[
            "not-the-secret-Jt55".into(),
            "rt-never-issued-Yq20".into(),
            BASIC_SECRET.into(),
        ],
    )
    .await;
}

#[tokio::test]
async fn token_endpoint_down_is_503_and_recovers_without_a_restart() {
    if !python_ready() {
        return;
    }
    let mut f = Crm::start(
        server_config(3),
        &["CRM_TOKEN"],
        |auth| vec![client_credentials("CRM_TOKEN", auth, "basic", "")],
        |_| {},
    )
    .await;
    assert_eq!(f.whoami("CRM_TOKEN").await.status, 200);
    f.auth.stop();
    tokio::time::sleep(Duration::from_millis(3200)).await; // past expires_in
    let echo = format!("https://api.test:{}/echo", f.api.port);
    let down = curl(
        &f.proxy,
        &["-H", "Authorization: Bearer __CRM_TOKEN__", &echo],
    )
    .await;
    assert_unavailable(&down, "CRM_TOKEN");
    let hits = f.api.hits();
    assert_eq!(hits, 0, "nothing forwarded without a token");
    assert_eq!(f.plain().await.status, 200, "other rules keep working");

    f.auth.restart();
    let back = f.whoami("CRM_TOKEN").await;
    assert_eq!(back.status, 200, "recovers by itself: {back:?}");
    assert_eq!(back.json()["client_id"], "basic-client");
}

#[tokio::test]
async fn the_access_token_is_revoked_when_the_task_ends() {
    if !python_ready() {
        return;
    }
    let f = Crm::start(
        server_config(3600),
        &["CRM_TOKEN"],
        |auth| {
            let revoke = format!("revocation_url: {}", auth.revocation_url());
            vec![client_credentials("CRM_TOKEN", auth, "basic", &revoke)]
        },
        |_| {},
    )
    .await;
    let (id, proxy_url) = create_task(&f.proxy, r#"{"policy":"crm","ttl":"10m"}"#).await;
    let out = curl_raw(&[
        "--proxy",
        &proxy_url,
        "--cacert",
        f.proxy.ca_pem.to_str().unwrap(),
        "-H",
        "Authorization: Bearer __CRM_TOKEN__",
        &f.auth.api("/api/whoami"),
    ])
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    let issued = f.auth.issued().await;
    assert_eq!(issued.len(), 1);
    let token = issued[0].0.clone();

    let task = admin_call(&f.proxy, "GET", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(task.status, 200, "{task:?}");
    let minted = task.json()["minted"].clone();
    assert_eq!(minted[0]["name"], "CRM_TOKEN", "{minted}");
    assert_eq!(minted[0]["issuer"], f.auth.token_url(), "{minted}");
    assert!(minted[0]["expires_at"].is_string(), "{minted}");
    assert!(
        !task.body.contains(&token),
        "never the value: {}",
        task.body
    );

    // The static task's token is another one and stays valid.
    assert_eq!(f.whoami("CRM_TOKEN").await.status, 200);
    assert_eq!(f.auth.issued().await.len(), 2);
    assert_eq!(f.auth.stats().await["revocations"], 0);

    assert_eq!(delete_task(&f.proxy, &id).await, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = f.auth.stats().await;
        if stats["revoked"] == json!([token]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the task's token must be revoked at the revocation_url: {stats}\n{}",
            f.auth.server_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let direct = f
        .auth
        .direct(&[
            "-H",
            &format!("Authorization: Bearer {token}"),
            &f.auth.api("/api/whoami"),
        ])
        .await;
    assert_eq!(direct.status, 401, "a revoked token is refused: {direct:?}");
    assert_eq!(
        f.whoami("CRM_TOKEN").await.status,
        200,
        "the static task's token is untouched"
    );
    assert_eq!(f.auth.stats().await["revocations"], 1);

    // A task whose TTL runs out: its token is revoked too.
    let (_, short_url) = create_task(&f.proxy, r#"{"policy":"crm","ttl":"2s"}"#).await;
    let out = curl_raw(&[
        "--proxy",
        &short_url,
        "--cacert",
        f.proxy.ca_pem.to_str().unwrap(),
        "-H",
        "Authorization: Bearer __CRM_TOKEN__",
        &f.auth.api("/api/whoami"),
    ])
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    let issued = f.auth.issued().await;
    assert_eq!(issued.len(), 3);
    let short_token = issued[2].0.clone();
    let static_token = issued[1].0.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    while f.auth.stats().await["revoked"] != json!([token, short_token]) {
        assert!(
            Instant::now() < deadline,
            "the expired task's token must be revoked: {}",
            f.auth.stats().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut values: Vec<String> = issued.into_iter().map(|(t, _)| t).collect();
    values.push(BASIC_SECRET.into());
    assert_not_leaked(&f.proxy, &values).await;

    // Static tasks end at shutdown: their tokens are revoked then.
    let Crm {
        auth,
        mut proxy,
        api: _api,
        vault: _vault,
        setup: _setup,
    } = f;
    proxy.terminate();
    assert!(proxy
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    assert_eq!(
        auth.stats().await["revoked"],
        json!([token, short_token, static_token]),
        "revoked at shutdown"
    );
}

#[tokio::test]
async fn a_token_endpoint_on_a_private_address_outside_allow_private_is_refused() {
    if !python_ready() {
        return;
    }
    // The token endpoint listens on 127.0.0.2; write_setup allows only
    // 127.0.0.1/32 unless told otherwise.
    let mut config = server_config(3600);
    config["bind"] = json!("127.0.0.2");
    let start = |allow: Option<Vec<String>>, config: Value| {
        Crm::start(
            config,
            &["CRM_TOKEN"],
            |auth| vec![client_credentials("CRM_TOKEN", auth, "basic", "")],
            move |setup| setup.allow_private = allow,
        )
    };
    let f = start(None, config.clone()).await;
    let echo = format!("https://api.test:{}/echo", f.api.port);
    let refused = curl(
        &f.proxy,
        &["-H", "Authorization: Bearer __CRM_TOKEN__", &echo],
    )
    .await;
    let message = assert_unavailable(&refused, "CRM_TOKEN");
    assert!(
        message.to_lowercase().contains("private"),
        "names the private destination: {message}"
    );
    assert_eq!(
        f.auth.stats().await["token_calls"],
        json!({}),
        "no token call"
    );
    assert_eq!(f.api.hits(), 0);
    assert_eq!(f.plain().await.status, 200);

    // The same with 127.0.0.2 allowed works: the refusal above was the check.
    let allowed = start(
        Some(vec!["127.0.0.1/32".into(), "127.0.0.2/32".into()]),
        config,
    )
    .await;
    let echo = format!("https://api.test:{}/echo", allowed.api.port);
    let out = curl(
        &allowed.proxy,
        &["-H", "Authorization: Bearer __CRM_TOKEN__", &echo],
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(allowed.auth.token_calls("client_credentials").await, 1);
}

/// The test double itself, without tollgate: it grants what it should and
/// refuses what it must, so the tests above can fail.
#[tokio::test]
async fn the_authorization_server_grants_and_refuses_like_the_rfcs_say() {
    if !python_ready() {
        return;
    }
    let ca = TestCa::new("oauth test CA");
    let mut config = server_config(3600);
    config["refresh_tokens"] =
        json!([{"token": SEED_REFRESH, "client_id": "basic-client", "scope": "api.read"}]);
    let auth = AuthServer::start(&ca, config);
    let basic = format!("basic-client:{BASIC_SECRET}");
    let ok = auth
        .token_call(&["-u", &basic, "-d", "grant_type=client_credentials"])
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["expires_in"], 3600);
    let access = ok.json()["access_token"].as_str().unwrap().to_string();
    let wrong = auth
        .token_call(&[
            "-u",
            "basic-client:nope",
            "-d",
            "grant_type=client_credentials",
        ])
        .await;
    assert_eq!(wrong.json()["error"], "invalid_client", "{wrong:?}");
    // A client_secret_post client cannot use Basic, and the reverse.
    let post_as_basic = format!("post-client:{POST_SECRET}");
    let mismatch = auth
        .token_call(&["-u", &post_as_basic, "-d", "grant_type=client_credentials"])
        .await;
    assert_eq!(mismatch.json()["error"], "invalid_client", "{mismatch:?}");
    let post_form = format!("client_secret={POST_SECRET}");
    let post = auth
        .token_call(&[
            "-d",
            "grant_type=client_credentials",
            "-d",
            "client_id=post-client",
            "-d",
            &post_form,
        ])
        .await;
    assert_eq!(post.status, 200, "{post:?}");

    // Rotation: the seed works once.
    let refresh = format!("refresh_token={SEED_REFRESH}");
    let first = auth
        .token_call(&[
            "-u",
            &basic,
            "-d",
            "grant_type=refresh_token",
            "-d",
            &refresh,
        ])
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let rotated = first.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rotated, SEED_REFRESH);
    let again = auth
        .token_call(&[
            "-u",
            &basic,
            "-d",
            "grant_type=refresh_token",
            "-d",
            &refresh,
        ])
        .await;
    assert_eq!(again.json()["error"], "invalid_grant", "{again:?}");
    assert_eq!(auth.stats().await["refresh_tokens"], json!([rotated]));

    // The resource takes a live token only; revocation kills it.
    assert_eq!(auth.whoami(&access).await.status, 200);
    assert_eq!(auth.whoami("made-up").await.status, 401);
    let revoke_form = format!("token={access}");
    let revoke = auth
        .direct(&["-u", &basic, "-d", &revoke_form, &auth.revocation_url()])
        .await;
    assert_eq!(revoke.status, 200, "{revoke:?}");
    assert_eq!(auth.whoami(&access).await.status, 401);
    assert_eq!(auth.stats().await["revoked"], json!([access]));
}

#[tokio::test]
async fn a_token_endpoint_with_an_untrusted_certificate_gets_no_client_secret() {
    if !python_ready() {
        return;
    }
    // The authorization server's certificate comes from a CA tollgate does not
    // trust (it trusts only the echo upstream's).
    let impostor_ca = TestCa::new("impostor CA");
    let auth = AuthServer::start(&impostor_ca, server_config(3600));
    let ca = TestCa::new("oauth test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let vault = vault();
    let yaml = policy(
        &[client_credentials("CRM_TOKEN", &auth, "basic", "")],
        &["CRM_TOKEN"],
        auth.port,
        api.port,
    );
    let mut setup = ProxySetup::with_policy("crm", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port)
        .resolve("login.test", auth.port);
    setup.extra_yaml = vault.yaml.clone();
    let proxy = start_proxy(&setup);
    let echo = format!("https://api.test:{}/echo", api.port);
    let out = curl(
        &proxy,
        &["-H", "Authorization: Bearer __CRM_TOKEN__", &echo],
    )
    .await;
    assert_unavailable(&out, "CRM_TOKEN");
    assert_eq!(api.hits(), 0);
    assert_eq!(
        auth.stats().await["token_calls"],
        json!({}),
        "no token request reached the impostor"
    );
}

#[tokio::test]
async fn a_refresh_token_grant_serves_several_tasks_through_rotations() {
    if !python_ready() {
        return;
    }
    let f = refresh_grant_crm(|setup| {
        setup.extra_tasks = (1..=4)
            .map(|i| format!("{{ id: task{i}, policy: crm, token_env: TEST_AGENT_TOKEN }}"))
            .collect();
    })
    .await;
    f.vault.bao.cli(&[
        "kv",
        "put",
        "secret/crm/refresh",
        &format!("token={SEED_REFRESH}"),
    ]);
    let ca = f.proxy.ca_pem.to_str().unwrap().to_string();
    let url = f.auth.api("/api/whoami");
    let as_task = |task: String| {
        let proxy_url = format!("http://{task}:{TOKEN}@{}", f.proxy.addr);
        let (ca, url) = (ca.clone(), url.clone());
        async move {
            curl_raw(&[
                "--proxy",
                &proxy_url,
                "--cacert",
                &ca,
                "-H",
                "Authorization: Bearer __CRM_TOKEN__",
                &url,
            ])
            .await
        }
    };
    // One task after the other: each mints with the refresh token the one
    // before left.
    for task in [TASK, "task1"] {
        let out = as_task(task.to_string()).await;
        assert_eq!(out.status, 200, "{task}: {out:?}\n{}", f.auth.stats().await);
    }
    // Three at once.
    let outs = futures_util::future::join_all((2..=4).map(|i| as_task(format!("task{i}")))).await;
    for out in outs {
        assert_eq!(out.status, 200, "{out:?}\n{}", f.auth.stats().await);
    }
    let stats = f.auth.stats().await;
    assert_eq!(stats["token_calls"]["refresh_token"], 5, "{stats}");
    assert_eq!(stats["token_errors"], json!({}), "{stats}");
    let live = stats["refresh_tokens"][0].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = f
            .vault
            .bao
            .cli(&["kv", "get", "-field=token", "secret/crm/refresh"]);
        if stored == live {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "OpenBao holds {stored}, live is {live}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
