//! The admin API: bearer auth, tasks with self-verifying tokens, and ending them.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

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

/// The value of the sample `series` (name and labels exactly as exposed) in a
/// scrape, if present.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

async fn scrape(proxy: &ProxyProc) -> common::CurlOut {
    admin(proxy, "GET", "/metrics", None, None).await
}

#[tokio::test]
async fn metrics_count_decisions_and_cache_use_and_never_show_a_secret() {
    const SECRET: &str = "ghs_metrics-secret-value-789";
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let yaml = format!(
        r#"name: main
secrets:
  TOKEN:
    env: TOKEN
    hosts: [api.test]
rules:
  - name: blocked
    host: api.test
    port: {port}
    paths: ["/admin/**"]
    action: deny
  - name: api
    host: api.test
    port: {port}
    inject: [TOKEN]
"#,
        port = api.port
    );
    let mut setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    setup.env = vec![("TOLLGATE_SECRET_TOKEN".into(), SECRET.into())];
    let proxy = start_proxy(&setup);

    // No auth needed, like /healthz; every family is there from the start.
    let first = scrape(&proxy).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(
        first
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{first:?}"
    );
    for family in [
        "# TYPE tollgate_requests counter",
        "# TYPE tollgate_request_duration_seconds histogram",
        "# TYPE tollgate_cert_cache_hits counter",
        "# TYPE tollgate_cert_cache_misses counter",
        "# TYPE tollgate_secret_cache_hits counter",
        "# TYPE tollgate_secret_cache_misses counter",
        "# TYPE tollgate_audit_queue_depth gauge",
        "# TYPE tollgate_audit_refusing gauge",
        "# TYPE tollgate_policy_reloads counter",
        "# TYPE tollgate_policies_loaded gauge",
    ] {
        assert!(first.body.contains(family), "no {family}:\n{}", first.body);
    }
    assert!(first.body.ends_with("# EOF\n"), "{}", first.body);
    assert_eq!(sample(&first.body, "tollgate_policies_loaded"), Some(1.0));
    assert_eq!(sample(&first.body, "tollgate_audit_refusing"), Some(0.0));
    assert!(sample(&first.body, "tollgate_audit_queue_depth").is_some());

    // One allowed request (with the secret injected) and one denied, same host.
    let allowed = common::curl(
        &proxy,
        &[
            "-H",
            "Authorization: Bearer __TOKEN__",
            &format!("https://api.test:{}/echo", api.port),
        ],
    )
    .await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let sent = api.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        sent["headers"]["authorization"],
        format!("Bearer {SECRET}"),
        "the secret was injected"
    );
    let denied = common::curl(&proxy, &[&format!("https://api.test:{}/admin/x", api.port)]).await;
    assert_eq!(denied.status, 403, "{denied:?}");

    // The allowed record is written when its exchange ends, which may be just
    // after curl is done.
    let allow = r#"tollgate_requests_total{decision="allow",reason="none"}"#;
    let deny = r#"tollgate_requests_total{decision="deny",reason="denied_by_rule"}"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let body = scrape(&proxy).await.body;
        if sample(&body, allow).unwrap_or(0.0) >= 1.0 && sample(&body, deny).is_some() {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no decisions:\n{body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&body, allow), Some(1.0), "{body}");
    assert_eq!(sample(&body, deny), Some(1.0), "{body}");
    let requests: usize = body
        .lines()
        .filter(|l| l.starts_with("tollgate_requests_total{"))
        .count();
    assert_eq!(requests, 2, "only the two decisions made:\n{body}");
    for decision in ["allow", "deny"] {
        assert_eq!(
            sample(
                &body,
                &format!(r#"tollgate_request_duration_seconds_count{{decision="{decision}"}}"#)
            ),
            Some(1.0),
            "{body}"
        );
        assert_eq!(
            sample(
                &body,
                &format!(
                    r#"tollgate_request_duration_seconds_bucket{{le="+Inf",decision="{decision}"}}"#
                )
            ),
            Some(1.0),
            "{body}"
        );
    }
    // The second tunnel to api.test reused the leaf minted for the first.
    assert_eq!(
        sample(&body, "tollgate_cert_cache_misses_total"),
        Some(1.0),
        "{body}"
    );
    assert!(
        sample(&body, "tollgate_cert_cache_hits_total").unwrap() >= 1.0,
        "{body}"
    );
    assert!(
        sample(&body, "tollgate_secret_cache_misses_total").unwrap() >= 1.0,
        "{body}"
    );

    // A 407 is a decision too.
    let stranger = format!("http://{}:wrong-token@{}", common::TASK, proxy.addr);
    let refused = through(
        &stranger,
        &proxy.ca_pem,
        &format!("https://api.test:{}/echo", api.port),
    )
    .await;
    assert_eq!(refused.connect_status, 407, "{refused:?}");
    let auth = r#"tollgate_requests_total{decision="deny",reason="proxy_auth_required"}"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let body = scrape(&proxy).await.body;
        if sample(&body, auth).is_some() {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "407 not counted:\n{body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&body, auth), Some(1.0), "{body}");
    assert_eq!(sample(&body, allow), Some(1.0), "{body}");

    // Names only: no secret value, token, host or path in any label.
    assert!(!body.contains(SECRET), "{body}");
    assert!(!body.contains(common::TOKEN), "{body}");
    assert!(
        !body.contains("api.test") && !body.contains("/admin"),
        "{body}"
    );
}

#[tokio::test]
async fn editing_a_policy_file_reloads_it_and_a_broken_edit_keeps_the_old_set() {
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
    let policies = proxy.dir.path().join("policies");
    let policy_file = policies.join("main.yaml");
    let small = format!("https://api.test:{}/small", api.port);
    let status_becomes = |want: u16, why: &'static str| {
        let small = small.clone();
        let proxy = &proxy;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let got = common::curl(proxy, &[&small]).await.status;
                if got == want {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{why}: still {got}; logs:\n{}",
                    proxy.logs().join("\n")
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(common::curl(&proxy, &[&small]).await.status, 403);

    // A plain edit in place: no SIGHUP, no API call.
    std::fs::write(&policy_file, rule("\"/echo\", \"/small\"")).unwrap();
    status_becomes(200, "the edited policy was not reloaded").await;

    // Reloading reads the files, which must not count as a change: no loop.
    let reloads = |proxy: &ProxyProc| {
        proxy
            .logs()
            .iter()
            .filter(|l| l.contains("policies reloaded"))
            .count()
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let settled = reloads(&proxy);
    assert!(settled >= 1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(reloads(&proxy), settled, "reloads go on with no change");

    // A broken edit: refused, logged, counted, and the old set stays.
    std::fs::write(
        &policy_file,
        "name: main\nrules:\n  - host: api.test\n    methods: [get]\n",
    )
    .unwrap();
    common::wait_log(&proxy, &["policy reload refused", "main.yaml"]).await;
    assert_eq!(common::curl(&proxy, &[&small]).await.status, 200);
    let body = scrape(&proxy).await.body;
    assert!(
        sample(&body, r#"tollgate_policy_reloads_total{result="error"}"#).unwrap() >= 1.0,
        "{body}"
    );
    assert!(
        sample(&body, r#"tollgate_policy_reloads_total{result="ok"}"#).unwrap() >= 1.0,
        "{body}"
    );
    assert_eq!(
        sample(&body, "tollgate_policies_loaded"),
        Some(1.0),
        "{body}"
    );

    // An atomic replace (write a temporary file, rename it over), as editors and
    // config tools do, is seen too, after the error.
    let temporary = policies.join(".main.yaml.tmp");
    std::fs::write(&temporary, rule("\"/echo\"")).unwrap();
    std::fs::rename(&temporary, &policy_file).unwrap();
    status_becomes(403, "the renamed policy was not reloaded").await;

    // A new policy file is picked up; removing it drops it again.
    let token = admin_token(&proxy);
    std::fs::write(policies.join("extra.yml"), "name: extra\nrules: []\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sample(&scrape(&proxy).await.body, "tollgate_policies_loaded") != Some(2.0) {
        assert!(std::time::Instant::now() < deadline, "extra.yml not loaded");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let created = admin(
        &proxy,
        "POST",
        "/v1/tasks",
        Some(&token),
        Some(r#"{"policy":"extra"}"#),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    std::fs::remove_file(policies.join("extra.yml")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sample(&scrape(&proxy).await.body, "tollgate_policies_loaded") != Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "extra.yml not dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_kept_alive_intercepted_connection_ends_with_its_task_ttl() {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;

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
    let (id, proxy_url) = common::create_task(&proxy, r#"{"policy":"main","ttl":"3s"}"#).await;
    let created = std::time::Instant::now();
    let token = proxy_url
        .split_once(&format!("{id}:"))
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(token, _)| token.to_string())
        .unwrap();

    // One intercepted tunnel, one HTTP/1.1 connection inside it, kept alive.
    let target = format!("api.test:{}", api.port);
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{id}:{token}"),
    );
    tokio::io::AsyncWriteExt::write_all(
        &mut tcp,
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {basic}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut byte)
            .await
            .unwrap();
        assert_eq!(n, 1, "proxy closed during CONNECT");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let tls = common::tls_via_proxy(&proxy, "api.test", tcp).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let connection = tokio::spawn(conn);
    let request = || {
        http::Request::get("/echo")
            .header(http::header::HOST, target.as_str())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let first = sender.send_request(request()).await.unwrap();
    assert_eq!(first.status(), 200);
    first.into_body().collect().await.unwrap();
    assert!(
        created.elapsed() < std::time::Duration::from_secs(2),
        "the first request must be well within the TTL"
    );

    tokio::time::sleep(std::time::Duration::from_millis(3500).saturating_sub(created.elapsed()))
        .await;
    // The same connection, after expiry: closed by the proxy, or refused.
    let after = match sender.ready().await {
        Ok(()) => sender
            .send_request(request())
            .await
            .map(|response| response.status().as_u16()),
        Err(err) => Err(err),
    };
    assert!(
        !matches!(after, Ok(200)),
        "a request after the task's expiry succeeded"
    );
    if let Ok(status) = after {
        assert_eq!(status, 407, "{after:?}");
        wait_record(&proxy, |r| {
            r["task"] == id.as_str() && r["reason"] == "proxy_auth_required"
        })
        .await;
    } else {
        common::wait_log(&proxy, &["tunnel closed: the task expired", &id]).await;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), connection).await;

    // A new tunnel is refused, and audited.
    assert_eq!(
        through(
            &proxy_url,
            &proxy.ca_pem,
            &format!("https://api.test:{}/echo", api.port)
        )
        .await
        .connect_status,
        407
    );
    wait_record(&proxy, |r| {
        r["method"] == "CONNECT" && r["reason"] == "proxy_auth_required"
    })
    .await;
}

#[tokio::test]
async fn a_channel_closes_connections_beyond_its_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tollgate::admin::channel;

    // max_concurrent 1: the cap is the floor of the range.
    let cap = channel::CHANNEL_CONNECTIONS_RANGE.0;
    assert_eq!(channel::connection_cap(1), cap);
    assert_eq!(channel::connection_cap(256), 1024);
    let setup = ProxySetup::with_policy(
        "main",
        "name: main\nmax_concurrent: 1\nrules:\n  - name: any\n    host: api.test\n",
    );
    let proxy = start_proxy(&setup);
    let token = admin_token(&proxy);
    let created = admin(
        &proxy,
        "POST",
        "/v1/tasks",
        Some(&token),
        Some(r#"{"policy":"main","channel":true}"#),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let name = created.json()["channel"].as_str().unwrap().to_string();
    let mut control = channel::connect(&name).await.unwrap();
    control.write_all(&[channel::CONTROL]).await.unwrap();
    let peer: std::net::SocketAddr = "10.0.0.2:4000".parse().unwrap();
    let open = || async {
        let mut stream = channel::connect(&name).await.unwrap();
        let _ = channel::write_data_preamble(&mut stream, peer).await;
        stream
    };
    // Idle connections (no ClientHello yet) up to the cap are held open...
    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(open().await);
    }
    // ...and one just beyond is closed at once. (Slots are taken in spawned
    // tasks, so under load the cap may be reached one or two connections late.)
    let mut buf = [0u8; 16];
    let mut refused = false;
    for _ in 0..3 {
        let mut beyond = open().await;
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(2), beyond.read(&mut buf)).await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            refused = true;
            break;
        }
        held.push(beyond);
    }
    assert!(refused, "a connection beyond the cap is closed at once");
    common::wait_log(
        &proxy,
        &[&format!("the task already has {cap} connections open")],
    )
    .await;
    for stream in &mut held[1..cap - 2] {
        let still_open =
            tokio::time::timeout(std::time::Duration::from_millis(20), stream.read(&mut buf)).await;
        assert!(still_open.is_err(), "a held connection was closed");
    }

    // A closed connection frees its slot.
    drop(held.remove(0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut next = open().await;
        let read =
            tokio::time::timeout(std::time::Duration::from_millis(300), next.read(&mut buf)).await;
        if read.is_err() {
            break; // still open: served
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no slot was freed: {read:?}"
        );
    }
    drop(control);
}
