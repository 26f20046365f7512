//! Secrets from a real OpenBao dev server: KV reads, rotation, AppRole login,
//! dynamic tokens revoked when the task ends, and a Vault outage.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::bao::{Bao, ROOT_TOKEN};
use common::fixture::ApiUpstream;
use common::upstream::Upstream;
use common::{curl, ProxyProc};
use std::time::Duration;

const KV_VALUE: &str = "ghp_fromVault0001";

fn policy(port: u16) -> String {
    format!(
        r#"name: main
secrets:
  GITHUB_TOKEN:
    vault: {{ mount: secret, path: agents/github, field: token }}
    hosts: [api.test]
    ttl: 1s
  DEPLOY_KEY:
    vault: {{ path: auth/token/create, method: POST, data: {{ ttl: 15m, policies: [default] }}, field: auth.client_token }}
    hosts: [api.test]
  SHORT_KEY:
    vault: {{ path: auth/token/create, method: POST, data: {{ ttl: 1h, policies: [default] }}, field: auth.client_token }}
    hosts: [api.test]
    ttl: 9s
rules:
  - name: api
    host: api.test
    port: {port}
    inject: [GITHUB_TOKEN, DEPLOY_KEY, SHORT_KEY]
"#
    )
}

async fn setup(bao: &Bao, auth_yaml: &str) -> (Upstream, ProxyProc) {
    let up = ApiUpstream::start(&["api.test"]).await;
    let mut setup = up.setup("main", &policy(up.api.port));
    setup.extra_yaml = format!(
        "secrets:\n  vault:\n    address: {}\n    auth: {auth_yaml}\n",
        bao.addr()
    );
    let f = up.serve((), setup);
    (f.api, f.proxy)
}

fn token_file(proxy_dir: &std::path::Path) -> String {
    let path = proxy_dir.join("vault-token");
    std::fs::write(&path, ROOT_TOKEN).unwrap();
    path.display().to_string()
}

fn last_auth(up: &Upstream) -> String {
    up.seen
        .lock()
        .unwrap()
        .last()
        .and_then(|r| r["headers"]["authorization"].as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn bearer(proxy: &ProxyProc, api: &Upstream, placeholder: &str) -> common::CurlOut {
    curl(
        proxy,
        &[
            "-H",
            &format!("Authorization: Bearer __{placeholder}__"),
            &format!("https://api.test:{}/echo", api.port),
        ],
    )
    .await
}

/// The proxy's config needs the token file inside its own directory, which exists
/// only once the proxy does; so tests write it to a fixed temp path first.
fn token_auth(dir: &tempfile::TempDir) -> String {
    format!(
        "{{ method: token, token_file: {} }}",
        token_file(dir.path())
    )
}

#[tokio::test]
async fn kv_secret_is_injected_rotates_and_is_never_echoed() {
    let bao = Bao::start();
    bao.cli(&[
        "kv",
        "put",
        "secret/agents/github",
        &format!("token={KV_VALUE}"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let (api, proxy) = setup(&bao, &token_auth(&tmp)).await;

    let out = bearer(&proxy, &api, "GITHUB_TOKEN").await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(last_auth(&api), format!("Bearer {KV_VALUE}"));
    assert_eq!(
        out.json()["headers"]["authorization"],
        "Bearer __GITHUB_TOKEN__"
    );
    assert!(!out.body.contains(KV_VALUE));

    // The same KV value inside Basic credentials and in the query.
    let basic = curl(
        &proxy,
        &[
            "-u",
            "x-access-token:__GITHUB_TOKEN__",
            &format!("https://api.test:{}/echo?t=__GITHUB_TOKEN__", api.port),
        ],
    )
    .await;
    assert_eq!(basic.status, 200, "{basic:?}");
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{KV_VALUE}"))
    );
    assert_eq!(last_auth(&api), expected);
    let seen_path = api.seen.lock().unwrap().last().unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(seen_path, format!("/echo?t={KV_VALUE}"));
    assert!(!basic.body.contains(KV_VALUE));

    // Rotation: after the 1s ttl the new value is used.
    bao.cli(&["kv", "put", "secret/agents/github", "token=ghp_rotated0002"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = bearer(&proxy, &api, "GITHUB_TOKEN").await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(last_auth(&api), "Bearer ghp_rotated0002");
    let logs = proxy.logs().join("\n");
    assert!(
        !logs.contains(KV_VALUE) && !logs.contains("ghp_rotated0002"),
        "secret in logs"
    );
}

#[tokio::test]
async fn approle_login_reads_secrets() {
    let bao = Bao::start();
    bao.cli(&[
        "kv",
        "put",
        "secret/agents/github",
        &format!("token={KV_VALUE}"),
    ]);
    bao.cli(&["auth", "enable", "approle"]);
    let policy_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy_file.path(),
        "path \"secret/data/agents/*\" { capabilities = [\"read\"] }\n",
    )
    .unwrap();
    bao.cli(&[
        "policy",
        "write",
        "tollgate-reader",
        policy_file.path().to_str().unwrap(),
    ]);
    bao.cli(&[
        "write",
        "auth/approle/role/tollgate",
        "token_policies=tollgate-reader",
        // A 3s token: still working after 5s means tollgate renewed it.
        "token_ttl=3s",
        "token_max_ttl=1h",
    ]);
    let role_id = bao.cli(&[
        "read",
        "-field=role_id",
        "auth/approle/role/tollgate/role-id",
    ]);
    let secret_id = bao.cli(&[
        "write",
        "-f",
        "-field=secret_id",
        "auth/approle/role/tollgate/secret-id",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let secret_file = tmp.path().join("secret-id");
    std::fs::write(&secret_file, secret_id).unwrap();
    let auth = format!(
        "{{ method: approle, role_id: {role_id}, secret_id_file: {} }}",
        secret_file.display()
    );
    let (api, proxy) = setup(&bao, &auth).await;
    let out = bearer(&proxy, &api, "GITHUB_TOKEN").await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(last_auth(&api), format!("Bearer {KV_VALUE}"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    bao.cli(&[
        "kv",
        "put",
        "secret/agents/github",
        "token=ghp_afterRenewal",
    ]);
    let later = bearer(&proxy, &api, "GITHUB_TOKEN").await;
    assert_eq!(
        later.status, 200,
        "tollgate's own token was renewed: {later:?}"
    );
    assert_eq!(last_auth(&api), "Bearer ghp_afterRenewal");
    assert!(
        !proxy.logs().join("\n").contains("renewal failed"),
        "{:?}",
        proxy.logs()
    );
}

#[tokio::test]
async fn dynamic_token_is_valid_and_revoked_when_the_task_ends() {
    let bao = Bao::start();
    let tmp = tempfile::tempdir().unwrap();
    let (api, mut proxy) = setup(&bao, &token_auth(&tmp)).await;
    let out = bearer(&proxy, &api, "DEPLOY_KEY").await;
    assert_eq!(out.status, 200, "{out:?}");
    let token = last_auth(&api).trim_start_matches("Bearer ").to_string();
    assert!(
        !token.is_empty() && !token.contains("DEPLOY_KEY"),
        "{token}"
    );
    assert!(
        bao.token_is_valid(&token),
        "the injected token is a real, live token"
    );
    assert_eq!(
        out.json()["headers"]["authorization"],
        "Bearer __DEPLOY_KEY__"
    );
    // A second request of the same task reuses the lease.
    bearer(&proxy, &api, "DEPLOY_KEY").await;
    assert_eq!(last_auth(&api), format!("Bearer {token}"));

    // Static tasks end with the proxy.
    proxy.terminate();
    assert!(proxy
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
    assert!(
        !bao.token_is_valid(&token),
        "the lease must be revoked when the task ends"
    );
}

#[tokio::test]
async fn deleting_a_task_revokes_its_dynamic_lease() {
    let bao = Bao::start();
    let tmp = tempfile::tempdir().unwrap();
    let (api, proxy) = setup(&bao, &token_auth(&tmp)).await;
    let (id, proxy_url) = common::create_task(&proxy, r#"{"policy":"main","ttl":"10m"}"#).await;
    let out = common::curl_raw(&[
        "--proxy",
        &proxy_url,
        "--cacert",
        proxy.ca_pem.to_str().unwrap(),
        "-H",
        "Authorization: Bearer __DEPLOY_KEY__",
        &format!("https://api.test:{}/echo", api.port),
    ])
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    let token = last_auth(&api).trim_start_matches("Bearer ").to_string();
    assert!(
        bao.token_is_valid(&token),
        "a live lease while the task runs"
    );
    assert_eq!(common::delete_task(&proxy, &id).await, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bao.token_is_valid(&token) {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease of a deleted task must be revoked"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn vault_outage_gives_503_and_recovers() {
    let mut bao = Bao::start();
    bao.cli(&[
        "kv",
        "put",
        "secret/agents/github",
        &format!("token={KV_VALUE}"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let (api, proxy) = setup(&bao, &token_auth(&tmp)).await;
    assert_eq!(bearer(&proxy, &api, "GITHUB_TOKEN").await.status, 200);

    bao.stop();
    tokio::time::sleep(Duration::from_millis(1200)).await; // past the 1s ttl
    let down = bearer(&proxy, &api, "GITHUB_TOKEN").await;
    assert_eq!(down.status, 503, "{down:?}");
    assert_eq!(down.json()["error"], "secret_unavailable");
    let plain = curl(&proxy, &[&format!("https://api.test:{}/echo", api.port)]).await;
    assert_eq!(plain.status, 200, "requests without secrets are unaffected");

    bao.restart();
    bao.cli(&[
        "kv",
        "put",
        "secret/agents/github",
        &format!("token={KV_VALUE}"),
    ]);
    let back = bearer(&proxy, &api, "GITHUB_TOKEN").await;
    assert_eq!(back.status, 200, "service recovers by itself: {back:?}");
    assert_eq!(last_auth(&api), format!("Bearer {KV_VALUE}"));
}

#[tokio::test]
async fn dynamic_secret_is_refreshed_ahead_and_the_old_lease_revoked() {
    let bao = Bao::start();
    let tmp = tempfile::tempdir().unwrap();
    let (api, proxy) = setup(&bao, &token_auth(&tmp)).await;
    let token_of = |api: &Upstream| last_auth(api).trim_start_matches("Bearer ").to_string();

    bearer(&proxy, &api, "SHORT_KEY").await;
    let first = token_of(&api);
    assert!(bao.token_is_valid(&first));
    // Past two thirds of the 9s ttl (and well before the 8.1s the entry is kept):
    // this request is served at once with the current value, and starts the refresh.
    tokio::time::sleep(Duration::from_millis(6300)).await;
    bearer(&proxy, &api, "SHORT_KEY").await;
    assert_eq!(
        token_of(&api),
        first,
        "no request waits for the refresh: {:?}",
        proxy.logs()
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    bearer(&proxy, &api, "SHORT_KEY").await;
    let second = token_of(&api);
    assert_ne!(second, first, "a fresh token replaced the old one");
    assert!(bao.token_is_valid(&second));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while bao.token_is_valid(&first) {
        assert!(
            std::time::Instant::now() < deadline,
            "the replaced token must be revoked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
