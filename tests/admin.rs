//! The admin API: bearer auth, tasks with self-verifying tokens, and ending them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::upstream::{start_upstream, TestCa};
use common::{admin_addr, admin_token, curl_raw, start_proxy, wait_record, ProxyProc, ProxySetup};
use serde_json::Value;

async fn admin(
    proxy: &ProxyProc,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> common::CurlOut {
    let url = format!("http://{}{path}", admin_addr(proxy));
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec!["-X", method, url.as_str()];
    if let Some(auth) = &auth {
        args.extend(["-H", auth.as_str()]);
    }
    if let Some(body) = body {
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    curl_raw(&args).await
}

async fn through(proxy_url: &str, ca: &std::path::Path, url: &str) -> common::CurlOut {
    curl_raw(&["--proxy", proxy_url, "--cacert", ca.to_str().unwrap(), url]).await
}

#[tokio::test]
async fn tasks_created_over_the_admin_api_work_until_deleted() {
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let yaml = format!(
        "name: main\nrules:\n  - name: any\n    host: api.test\n    port: {}\n",
        api.port
    );
    let setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    let proxy = start_proxy(&setup);
    let token = admin_token(&proxy);
    let target = format!("https://api.test:{}/echo", api.port);

    assert_eq!(
        admin(&proxy, "GET", "/healthz", None, None).await.status,
        200
    );
    assert_eq!(
        admin(&proxy, "GET", "/v1/tasks", None, None).await.status,
        401
    );
    assert_eq!(
        admin(
            &proxy,
            "GET",
            "/v1/tasks",
            Some("wrong-token-of-some-length"),
            None
        )
        .await
        .status,
        401
    );
    let unknown = admin(
        &proxy,
        "POST",
        "/v1/tasks",
        Some(&token),
        Some(r#"{"policy":"nope"}"#),
    )
    .await;
    assert_eq!(unknown.status, 422, "{unknown:?}");
    let bad = admin(
        &proxy,
        "POST",
        "/v1/tasks",
        Some(&token),
        Some(r#"{"policy":"main","ttl":"forever"}"#),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");

    let created = admin(
        &proxy,
        "POST",
        "/v1/tasks",
        Some(&token),
        Some(r#"{"policy":"main","ttl":"10m"}"#),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let created = created.json();
    let id = created["id"].as_str().unwrap().to_string();
    let task_token = created["token"].as_str().unwrap().to_string();
    let proxy_url = created["proxy_url"].as_str().unwrap().to_string();
    assert!(
        proxy_url.contains(&format!("{id}:{task_token}@")),
        "{proxy_url}"
    );
    assert!(created["expires_at"].as_str().unwrap().ends_with('Z'));

    let ok = through(&proxy_url, &proxy.ca_pem, &target).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let record = wait_record(&proxy, |r| r["task"] == id.as_str()).await;
    assert_eq!(record["policy"], "main");

    // The listing never shows the token.
    let listed = admin(&proxy, "GET", "/v1/tasks", Some(&token), None).await;
    assert_eq!(listed.status, 200);
    assert!(
        listed.body.contains(&id) && !listed.body.contains(&task_token),
        "{}",
        listed.body
    );
    let shown: Value = admin(
        &proxy,
        "GET",
        &format!("/v1/tasks/{id}"),
        Some(&token),
        None,
    )
    .await
    .json();
    assert_eq!(shown["policy"], "main");

    // The token is bound to its id.
    let stolen = format!("http://someone-else:{task_token}@{}", proxy.addr);
    assert_eq!(
        through(&stolen, &proxy.ca_pem, &target)
            .await
            .connect_status,
        407
    );

    // A task bound to another source address is refused from here.
    let bound = admin(
        &proxy,
        "POST",
        "/v1/tasks",
        Some(&token),
        Some(r#"{"policy":"main","source":"10.9.9.9"}"#),
    )
    .await
    .json();
    let bound_url = bound["proxy_url"].as_str().unwrap();
    assert_eq!(
        through(bound_url, &proxy.ca_pem, &target)
            .await
            .connect_status,
        407
    );

    // An open tunnel of the task, waiting inside.
    let mut tunnel = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{id}:{task_token}"),
    );
    let connect_target = format!("api.test:{}", api.port);
    tokio::io::AsyncWriteExt::write_all(
        &mut tunnel,
        format!("CONNECT {connect_target} HTTP/1.1\r\nHost: {connect_target}\r\nProxy-Authorization: Basic {basic}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 512];
    let n = tokio::io::AsyncReadExt::read(&mut tunnel, &mut head)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));

    // DELETE ends it at once.
    let deleted = admin(
        &proxy,
        "DELETE",
        &format!("/v1/tasks/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    // The open tunnel is closed well before any timeout of its own (10 s).
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut tunnel, &mut head),
    )
    .await
    .expect("the tunnel of an ended task is closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    assert_eq!(
        through(&proxy_url, &proxy.ca_pem, &target)
            .await
            .connect_status,
        407
    );
    assert_eq!(
        admin(
            &proxy,
            "GET",
            &format!("/v1/tasks/{id}"),
            Some(&token),
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        admin(
            &proxy,
            "DELETE",
            &format!("/v1/tasks/{id}"),
            Some(&token),
            None
        )
        .await
        .status,
        404
    );

    // The admin API is not served on the proxy port.
    let on_proxy = curl_raw(&[
        &format!("http://{}/v1/tasks", proxy.addr),
        "-H",
        &format!("Authorization: Bearer {token}"),
    ])
    .await;
    assert_ne!(on_proxy.status, 200, "{on_proxy:?}");
}

#[tokio::test]
async fn the_admin_api_listens_on_a_unix_socket_too() {
    let mut setup = ProxySetup::with_policy("main", "name: main\nrules: []\n");
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("admin.sock");
    // A stale socket from a crashed run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    setup.admin_listen = Some(format!("unix:{}", sock.display()));
    let proxy = start_proxy(&setup);
    let token = admin_token(&proxy);
    let out = curl_raw(&[
        "--unix-socket",
        sock.to_str().unwrap(),
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-d",
        r#"{"policy":"main"}"#,
        "http://admin/v1/tasks",
    ])
    .await;
    assert_eq!(out.status, 201, "{out:?}");
    let health = curl_raw(&[
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://admin/healthz",
    ])
    .await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn policies_reload_over_the_api_and_on_sighup_and_a_broken_file_keeps_the_old_set() {
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let rule = |paths: &str| {
        format!(
            "name: main\nrules:\n  - name: r\n    host: api.test\n    port: {}\n    paths: [{paths}]\n",
            api.port
        )
    };
    let setup = ProxySetup::with_policy("main", &rule("\"/echo\""))
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    let proxy = start_proxy(&setup);
    let token = admin_token(&proxy);
    let policy_file = proxy.dir.path().join("policies/main.yaml");
    let small = format!("https://api.test:{}/small", api.port);
    assert_eq!(common::curl(&proxy, &[&small]).await.status, 403);

    std::fs::write(&policy_file, rule("\"/echo\", \"/small\"")).unwrap();
    let reloaded = admin(&proxy, "POST", "/v1/reload", Some(&token), None).await;
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    assert_eq!(reloaded.json()["policies"], 1);
    assert_eq!(common::curl(&proxy, &[&small]).await.status, 200);

    // A broken file: 422 naming file and line, and the old set stays.
    std::fs::write(
        &policy_file,
        "name: main\nrules:\n  - host: api.test\n    methods: [get]\n",
    )
    .unwrap();
    let refused = admin(&proxy, "POST", "/v1/reload", Some(&token), None).await;
    assert_eq!(refused.status, 422, "{refused:?}");
    let error = &refused.json()["errors"][0];
    assert!(
        error["file"].as_str().unwrap().ends_with("main.yaml"),
        "{error}"
    );
    assert_eq!(error["line"], 4, "{error}");
    assert_eq!(common::curl(&proxy, &[&small]).await.status, 200);

    // SIGHUP reloads too.
    std::fs::write(&policy_file, rule("\"/echo\"")).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while common::curl(&proxy, &[&small]).await.status != 403 {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
