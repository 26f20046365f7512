//! Approval gates: requests under `action: approve` rules wait for an operator.
//! Real `tollgate serve`, real TLS upstream, real curl as the sandbox's client,
//! the admin API over HTTP, a real webhook listener.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::fixture::{ApiUpstream, Fixture};
use common::upstream::{start_upstream, TestCa};
use common::{
    admin_addr, admin_token, audit_records, curl, curl_raw, start_proxy, wait_record, CurlOut,
    ProxyProc, ProxySetup,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "ghp_real-secret-value-0123456789";

/// A GitHub-like policy: reads and pull requests allowed, merges need a person.
fn policy(port: u16) -> String {
    format!(
        r#"name: gh
secrets:
  GITHUB_TOKEN:
    env: GITHUB_TOKEN
    hosts: [api.test]
rules:
  - name: read
    host: api.test
    port: {port}
    methods: [GET]
    inject: [GITHUB_TOKEN]
  - name: merge needs a person
    host: api.test
    port: {port}
    methods: [PUT]
    paths: ["/repos/*/*/pulls/*/merge"]
    inject: [GITHUB_TOKEN]
    action: approve
  - name: quick
    host: api.test
    port: {port}
    methods: [PUT]
    paths: ["/quick/**"]
    action: approve
    approval_timeout: 1s
  - name: upload
    host: api.test
    port: {port}
    methods: [POST]
    paths: ["/upload"]
    action: approve
  - name: stall
    host: api.test
    port: {port}
    methods: [POST]
    paths: ["/stall"]
    action: approve
    approval_timeout: 2s
  - name: slow
    host: api.test
    port: {port}
    methods: [PUT]
    paths: ["/slow"]
    action: approve
  # Same name as the merge rule, another rule: a grant for one is not for the other.
  - name: merge needs a person
    host: api.test
    port: {port}
    methods: [DELETE]
    paths: ["/repos/**"]
    action: approve
"#
    )
}

async fn fixture(extra_yaml: &str) -> Fixture {
    let up = ApiUpstream::start(&["api.test"]).await;
    let mut setup = up.setup("gh", &policy(up.api.port));
    setup.env = vec![("TOLLGATE_SECRET_GITHUB_TOKEN".into(), SECRET.into())];
    setup.extra_tasks = vec!["{ id: other, policy: gh, token_env: TEST_AGENT_TOKEN }".into()];
    setup.extra_yaml = extra_yaml.to_string();
    up.serve((), setup)
}

/// Calls the admin API with the admin token.
async fn admin(proxy: &ProxyProc, method: &str, path: &str, body: Option<Value>) -> CurlOut {
    let body = body.map(|b| b.to_string());
    common::admin_call(proxy, method, path, body.as_deref()).await
}

async fn pending(proxy: &ProxyProc) -> Vec<Value> {
    let out = admin(proxy, "GET", "/v1/approvals", None).await;
    assert_eq!(out.status, 200, "{out:?}");
    out.json().as_array().cloned().unwrap_or_default()
}

/// Waits (up to 10 s) until `n` holds are pending, and returns them.
async fn wait_pending(proxy: &ProxyProc, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let holds = pending(proxy).await;
        if holds.len() == n {
            return holds;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} pending holds, have {holds:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the only pending hold and returns its id.
async fn only_hold_id(proxy: &ProxyProc) -> String {
    wait_pending(proxy, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `POST /v1/approvals/{id}/{verb}` with an optional JSON answer.
async fn respond(proxy: &ProxyProc, id: &str, verb: &str, body: Option<Value>) -> CurlOut {
    admin(proxy, "POST", &format!("/v1/approvals/{id}/{verb}"), body).await
}

/// Waits (up to 10 s) until the pending holds satisfy `pred`, and returns them.
async fn wait_holds_where(proxy: &ProxyProc, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let holds = pending(proxy).await;
        if pred(&holds) {
            return holds;
        }
        assert!(
            Instant::now() < deadline,
            "holds never as expected: {holds:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a sandbox request in the background (as `user` through the proxy).
fn sandbox(proxy: &ProxyProc, user: &str, args: &[&str]) -> tokio::task::JoinHandle<CurlOut> {
    let proxy_url = format!("http://{user}:{}@{}", common::TOKEN, proxy.addr);
    let ca = proxy.ca_pem.to_str().unwrap().to_string();
    let mut full: Vec<String> = vec!["--proxy".into(), proxy_url, "--cacert".into(), ca];
    full.extend(args.iter().map(|a| a.to_string()));
    tokio::spawn(async move {
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        curl_raw(&refs).await
    })
}

async fn finished(call: tokio::task::JoinHandle<CurlOut>) -> CurlOut {
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the held request was answered")
        .unwrap()
}

fn metric(proxy_metrics: &str, name: &str) -> Option<f64> {
    proxy_metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn pending_gauge(proxy: &ProxyProc) -> Option<f64> {
    let out = curl_raw(&[&format!("http://{}/metrics", admin_addr(proxy))]).await;
    metric(&out.body, "tollgate_approvals_pending")
}

#[tokio::test]
async fn an_approved_request_goes_upstream_with_the_secret_and_is_audited() {
    let f = fixture("").await;
    let url = format!("{}/repos/acme/x/pulls/7/merge?method=squash", f.base());
    let call = sandbox(
        &f.proxy,
        common::TASK,
        &[
            "-X",
            "PUT",
            "-H",
            "Authorization: Bearer __GITHUB_TOKEN__",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"merge_method":"squash"}"#,
            &url,
        ],
    );
    let holds = wait_pending(&f.proxy, 1).await;
    let hold = &holds[0];
    assert_eq!(hold["task"], common::TASK);
    assert_eq!(hold["policy"], "gh");
    assert_eq!(hold["rule"], "merge needs a person");
    assert_eq!(hold["method"], "PUT");
    assert_eq!(hold["host"], "api.test");
    assert_eq!(hold["path"], "/repos/acme/x/pulls/7/merge");
    assert_eq!(hold["body_bytes"], 25);
    assert_eq!(hold["content_type"], "application/json");
    assert!(!hold.to_string().contains(SECRET));
    // Nothing has gone upstream while the request waits.
    assert_eq!(f.api.hits(), 0);
    assert_eq!(pending_gauge(&f.proxy).await, Some(1.0));

    assert_eq!(hold["scheme"], "https");
    assert_eq!(hold["query"], "method=squash");
    let id = hold["id"].as_str().unwrap().to_string();
    // In full: the headers as sent (placeholders, no proxy credentials) and the body.
    let detail = admin(&f.proxy, "GET", &format!("/v1/approvals/{id}"), None).await;
    assert_eq!(detail.status, 200, "{detail:?}");
    let detail = detail.json();
    let headers = detail["headers"].as_array().unwrap();
    assert!(
        headers.contains(&json!(["authorization", "Bearer __GITHUB_TOKEN__"])),
        "{headers:?}"
    );
    assert!(
        !headers.iter().any(|h| h[0] == "proxy-authorization"),
        "{headers:?}"
    );
    assert_eq!(detail["body_preview"], r#"{"merge_method":"squash"}"#);
    assert_eq!(detail["body_preview_truncated"], false);
    let sha =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, br#"{"merge_method":"squash"}"#);
    let sha: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(detail["body_sha256"], sha);
    assert!(!detail.to_string().contains(SECRET));
    let answer = respond(
        &f.proxy,
        &id,
        "approve",
        Some(json!({"by": "alice", "reason": "release 1.2"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["decision"], "approved");

    let out = finished(call).await;
    assert_eq!(out.status, 200, "{out:?}");
    let seen = f.api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0]["headers"]["authorization"],
        format!("Bearer {SECRET}")
    );
    assert_eq!(seen[0]["path"], "/repos/acme/x/pulls/7/merge?method=squash");
    // The echo came back scrubbed, as for any allowed request.
    assert!(!out.body.contains(SECRET));

    let record = wait_record(&f.proxy, |r| r["decision"] == "approved").await;
    assert_eq!(record["status"], 200);
    assert_eq!(record["reason"], Value::Null);
    assert_eq!(record["rule"], "merge needs a person");
    assert_eq!(record["secrets"], json!(["GITHUB_TOKEN"]));
    assert_eq!(record["approval"]["id"], id.as_str());
    assert_eq!(record["approval"]["by"], "alice");
    assert_eq!(record["approval"]["reason"], "release 1.2");
    assert_eq!(record["approval"]["outcome"], "approved");
    assert_eq!(record["approval"]["grant"], Value::Null);
    assert_eq!(record["bytes_up"], 25);

    assert!(pending(&f.proxy).await.is_empty());
    assert_eq!(pending_gauge(&f.proxy).await, Some(0.0));
    // A hold is answered once.
    let again = respond(&f.proxy, &id, "deny", None).await;
    assert_eq!(again.status, 404, "{again:?}");
    // Allowed rules never wait.
    let read = curl(&f.proxy, &[&format!("{}/repos/acme/x", f.base())]).await;
    assert_eq!(read.status, 200);
}

#[tokio::test]
async fn denial_and_timeout_answer_403_approval_denied_and_send_nothing() {
    let f = fixture("").await;
    let url = format!("{}/repos/acme/x/pulls/8/merge", f.base());
    let call = sandbox(&f.proxy, common::TASK, &["-X", "PUT", &url]);
    let id = only_hold_id(&f.proxy).await;
    let answer = respond(
        &f.proxy,
        &id,
        "deny",
        Some(json!({"by": "bob", "reason": "not on a Friday"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let out = finished(call).await;
    assert_eq!(out.status, 403, "{out:?}");
    assert_eq!(
        out.header("x-tollgate-reason").as_deref(),
        Some("approval_denied")
    );
    let body = out.json();
    assert_eq!(body["error"], "approval_denied");
    assert_eq!(body["rule"], "merge needs a person");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("not on a Friday"), "{message}");
    assert!(
        !message.contains("bob"),
        "who denied it is not the sandbox's business: {message}"
    );
    let record = wait_record(&f.proxy, |r| r["decision"] == "approval_denied").await;
    assert_eq!(record["status"], 403);
    assert_eq!(record["reason"], "approval_denied");
    assert_eq!(record["approval"]["id"], id.as_str());
    assert_eq!(record["approval"]["outcome"], "denied");
    assert_eq!(record["approval"]["by"], "bob");
    assert_eq!(record["approval"]["reason"], "not on a Friday");
    // Secrets are not even fetched for a denied request.
    assert_eq!(record["secrets"], json!([]));

    // The `quick` rule waits 1 s, then refuses on its own.
    let out = curl(
        &f.proxy,
        &["-X", "PUT", &format!("{}/quick/deploy", f.base())],
    )
    .await;
    assert_eq!(out.status, 403, "{out:?}");
    assert_eq!(out.json()["error"], "approval_denied");
    let record = wait_record(&f.proxy, |r| {
        r["decision"] == "approval_denied" && r["approval"]["outcome"] == "timeout"
    })
    .await;
    assert_eq!(record["status"], 403);
    assert_eq!(record["approval"]["by"], Value::Null);
    assert!(record["duration_ms"].as_u64().unwrap() >= 1000);
    assert_eq!(f.api.hits(), 0, "nothing reached the upstream");
    assert!(pending(&f.proxy).await.is_empty());
}

#[tokio::test]
async fn a_grant_covers_the_same_task_and_rule_for_its_window_only() {
    let f = fixture("").await;
    let merge = |n: u32| format!("{}/repos/acme/x/pulls/{n}/merge", f.base());
    let first = sandbox(&f.proxy, common::TASK, &["-X", "PUT", &merge(1)]);
    let id = only_hold_id(&f.proxy).await;
    let answer = respond(
        &f.proxy,
        &id,
        "approve",
        Some(json!({"by": "carol", "for": "3s"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let grant = answer.json()["grant"]["id"].as_str().unwrap().to_string();
    assert!(grant.starts_with("g-"), "{answer:?}");
    assert_eq!(finished(first).await.status, 200);

    // Inside the window: the same task and rule pass without waiting.
    let second = curl(&f.proxy, &["-X", "PUT", &merge(2)]).await;
    assert_eq!(second.status, 200, "{second:?}");
    let record = wait_record(&f.proxy, |r| {
        r["decision"] == "approved" && r["path"] == "/repos/acme/x/pulls/2/merge"
    })
    .await;
    assert_eq!(record["approval"]["grant"], grant.as_str());
    assert_eq!(record["approval"]["id"], id.as_str());
    assert_eq!(record["approval"]["by"], "carol");

    // Another task, another approve rule, or another rule of the same name is
    // not covered.
    let other_task = sandbox(&f.proxy, "other", &["-X", "PUT", &merge(3)]);
    let other_rule = sandbox(
        &f.proxy,
        common::TASK,
        &["-X", "PUT", &format!("{}/quick/x", f.base())],
    );
    let same_name = sandbox(
        &f.proxy,
        common::TASK,
        &["-X", "DELETE", &format!("{}/repos/acme/x", f.base())],
    );
    // (The `quick` hold may have timed out already; it need not be seen.)
    let holds = wait_holds_where(&f.proxy, |holds| {
        holds.iter().any(|h| h["method"] == "DELETE") && holds.iter().any(|h| h["task"] == "other")
    })
    .await;
    let namesake = holds.iter().find(|h| h["method"] == "DELETE").unwrap();
    assert_eq!(namesake["rule"], "merge needs a person");
    let answer = respond(&f.proxy, namesake["id"].as_str().unwrap(), "deny", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(finished(same_name).await.status, 403);
    let theirs = holds.iter().find(|h| h["task"] == "other").unwrap();
    let answer = respond(&f.proxy, theirs["id"].as_str().unwrap(), "deny", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(finished(other_task).await.status, 403);
    assert_eq!(finished(other_rule).await.status, 403, "quick times out");

    // After the window, the same request waits again.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let late = sandbox(&f.proxy, common::TASK, &["-X", "PUT", &merge(4)]);
    let holds = wait_pending(&f.proxy, 1).await;
    assert_eq!(holds[0]["path"], "/repos/acme/x/pulls/4/merge");
    let answer = respond(&f.proxy, holds[0]["id"].as_str().unwrap(), "deny", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(finished(late).await.status, 403);
}

#[tokio::test]
async fn the_pending_cap_answers_429_and_ending_the_task_denies_its_holds() {
    let f = fixture("approvals:\n  max_pending_per_task: 2\n").await;
    let (task, proxy_url) = common::create_task(&f.proxy, r#"{"policy":"gh"}"#).await;
    let ca = f.proxy.ca_pem.to_str().unwrap().to_string();
    let held: Vec<_> = (1..=2)
        .map(|n| {
            let (proxy_url, ca) = (proxy_url.clone(), ca.clone());
            let url = format!("{}/repos/acme/x/pulls/{n}/merge", f.base());
            tokio::spawn(async move {
                curl_raw(&["--proxy", &proxy_url, "--cacert", &ca, "-X", "PUT", &url]).await
            })
        })
        .collect();
    wait_pending(&f.proxy, 2).await;
    let third = curl_raw(&[
        "--proxy",
        &proxy_url,
        "--cacert",
        &ca,
        "-X",
        "PUT",
        &format!("{}/repos/acme/x/pulls/3/merge", f.base()),
    ])
    .await;
    assert_eq!(third.status, 429, "{third:?}");
    assert_eq!(third.json()["error"], "rate_limited");
    assert!(third.header("retry-after").is_some());
    // The cap is per task: the static task may still ask.
    let other = sandbox(
        &f.proxy,
        common::TASK,
        &["-X", "PUT", &format!("{}/quick/y", f.base())],
    );
    assert_eq!(finished(other).await.status, 403, "held, then timed out");

    assert_eq!(common::delete_task(&f.proxy, &task).await, 200);
    for call in held {
        let out = finished(call).await;
        assert_eq!(out.status, 403, "{out:?}");
        assert_eq!(out.json()["error"], "approval_denied");
    }
    let ended: Vec<Value> = audit_records(&f.proxy)
        .into_iter()
        .filter(|r| r["approval"]["outcome"] == "task_ended")
        .collect();
    assert_eq!(ended.len(), 2, "{ended:?}");
    assert!(pending(&f.proxy).await.is_empty());
    assert_eq!(f.api.hits(), 0);
}

#[tokio::test]
async fn a_client_that_hangs_up_withdraws_its_hold() {
    let f = fixture("").await;
    // HTTP/2 (a stream reset) and HTTP/1.1 (the connection closes) alike.
    for (n, version) in [(9, "--http2"), (10, "--http1.1")] {
        let url = format!("{}/repos/acme/x/pulls/{n}/merge", f.base());
        let call = sandbox(
            &f.proxy,
            common::TASK,
            &[version, "--max-time", "2", "-X", "PUT", &url],
        );
        let id = only_hold_id(&f.proxy).await;
        let out = finished(call).await;
        assert_eq!(out.exit, 28, "curl gave up: {out:?}");
        wait_pending(&f.proxy, 0).await;
        let record = wait_record(&f.proxy, |r| r["approval"]["id"] == id.as_str()).await;
        assert_eq!(record["decision"], "approval_denied");
        assert_eq!(record["approval"]["outcome"], "withdrawn");
        // Nothing was sent: status 0, with the reason.
        assert_eq!(record["status"], 0);
        assert_eq!(record["reason"], "approval_denied");
        let late = respond(&f.proxy, &id, "approve", None).await;
        assert_eq!(late.status, 404, "{late:?}");
    }
    assert_eq!(f.api.hits(), 0);
}

#[tokio::test]
async fn a_large_upload_waits_on_disk_and_arrives_whole() {
    let f = fixture("").await;
    let size = 24 * 1024 * 1024;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
    let file = common::write_file_bytes(f.proxy.dir.path(), "upload.bin", &data);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let upload = format!("@{}", file.display());
    let call = sandbox(
        &f.proxy,
        common::TASK,
        &[
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &upload,
            &format!("{}/upload", f.base()),
        ],
    );
    let hold = wait_pending(&f.proxy, 1).await.remove(0);
    assert_eq!(hold["body_bytes"], size as u64);
    assert_eq!(hold["content_type"], "application/octet-stream");
    // The body waits in an unlinked spool file, not in the proxy's memory.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", f.proxy.pid())).unwrap();
    let spooled: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .filter(|p| p.contains("/held/held-") && p.ends_with("(deleted)"))
        .collect();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let held_dir = f.proxy.dir.path().join("state/held");
    assert_eq!(std::fs::read_dir(&held_dir).unwrap().count(), 0);
    let scrape = |proxy: &ProxyProc| {
        let url = format!("http://{}/metrics", admin_addr(proxy));
        async move {
            metric(
                &curl_raw(&[&url]).await.body,
                "tollgate_approvals_spooled_bytes",
            )
        }
    };
    assert_eq!(scrape(&f.proxy).await, Some(size as f64));

    let id = hold["id"].as_str().unwrap();
    let answer = respond(&f.proxy, id, "approve", None).await;
    assert_eq!(answer.status, 200);
    let out = finished(call).await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.body, format!("{size} {hex}"));
    let record = wait_record(&f.proxy, |r| r["decision"] == "approved").await;
    assert_eq!(record["bytes_up"], size as u64);
    assert_eq!(
        scrape(&f.proxy).await,
        Some(0.0),
        "the spool space is given back"
    );
    assert_eq!(record["approval"]["by"], "admin-api");
}

#[tokio::test]
async fn the_sandbox_cannot_answer_its_own_hold_through_the_proxy() {
    let f = fixture("").await;
    let call = sandbox(
        &f.proxy,
        common::TASK,
        &[
            "-X",
            "PUT",
            &format!("{}/repos/a/b/pulls/1/merge", f.base()),
        ],
    );
    let id = only_hold_id(&f.proxy).await;
    // Even knowing the id and the admin address, the proxy refuses the call:
    // no rule of its policy names the admin API.
    let sneaky = curl(
        &f.proxy,
        &[
            "-X",
            "POST",
            &format!("http://{}/v1/approvals/{id}/approve", admin_addr(&f.proxy)),
        ],
    )
    .await;
    assert_eq!(sneaky.status, 403, "{sneaky:?}");
    assert_eq!(pending(&f.proxy).await.len(), 1, "still waiting");
    // Without the admin token the API itself refuses too.
    let url = format!("http://{}/v1/approvals/{id}/approve", admin_addr(&f.proxy));
    let unauthenticated = curl_raw(&["-X", "POST", &url]).await;
    assert_eq!(unauthenticated.status, 401);
    let answer = respond(&f.proxy, &id, "deny", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(finished(call).await.status, 403);
}

/// A webhook receiver: a real HTTP/1 server that answers 500 to the first
/// `failures` posts, then 200, and hands every body it gets to the test.
async fn webhook_receiver(
    failures: usize,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<(String, Value)>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (tx, seen) = (tx.clone(), seen.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (tx, seen) = (tx.clone(), seen.clone());
                        async move {
                            let content_type = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let status = if n < failures { 500 } else { 200 };
                            let _ = tx.send((
                                content_type,
                                serde_json::from_slice(&body).unwrap_or(Value::Null),
                            ));
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                        b"ok",
                                    )))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn a_webhook_hears_of_each_hold_and_its_approve_url_works() {
    let (port, mut posts) = webhook_receiver(1).await;
    let f = fixture(&format!(
        "approvals:\n  notify: [\"http://127.0.0.1:{port}/hooks/tollgate\"]\n"
    ))
    .await;
    let call = sandbox(
        &f.proxy,
        common::TASK,
        &[
            "-X",
            "PUT",
            "-H",
            "Authorization: token __GITHUB_TOKEN__",
            &format!("{}/repos/acme/x/pulls/7&x/merge", f.base()),
        ],
    );
    let hold = wait_pending(&f.proxy, 1).await.remove(0);
    let id = hold["id"].as_str().unwrap();
    // The first post is answered 500; the retry (after about a second) lands.
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let (content_type, body) = tokio::time::timeout(Duration::from_secs(15), posts.recv())
            .await
            .expect("the webhook was called")
            .unwrap();
        assert_eq!(content_type, "application/json");
        bodies.push(body);
    }
    assert_eq!(bodies[0], bodies[1], "a retry sends the same message");
    let note = &bodies[1];
    assert_eq!(note["id"], id);
    assert_eq!(note["task"], common::TASK);
    assert_eq!(note["policy"], "gh");
    assert_eq!(note["rule"], "merge needs a person");
    assert_eq!(note["method"], "PUT");
    assert_eq!(note["host"], "api.test");
    assert_eq!(note["path"], hold["path"]);
    let text = note["text"].as_str().unwrap();
    assert!(text.contains(id) && text.contains("PUT"), "{text}");
    // Sandbox-chosen text is escaped for Slack (`&`, `<`, `>` would be markup).
    assert!(text.contains("7&amp;x"), "{text}");
    assert_eq!(note["path"], "/repos/acme/x/pulls/7&x/merge");
    assert!(!note.to_string().contains(SECRET));
    let admin_base = format!("http://{}", admin_addr(&f.proxy));
    assert_eq!(
        note["approve_url"],
        format!("{admin_base}/v1/approvals/{id}/approve")
    );
    assert_eq!(
        note["deny_url"],
        format!("{admin_base}/v1/approvals/{id}/deny")
    );

    // A bot holding the admin token answers through the URL it was given.
    let auth = format!("Authorization: Bearer {}", admin_token(&f.proxy));
    let answer = curl_raw(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "--data-binary",
        r#"{"by":"slack:U024BE7LH"}"#,
        note["approve_url"].as_str().unwrap(),
    ])
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(finished(call).await.status, 200);
    let record = wait_record(&f.proxy, |r| r["decision"] == "approved").await;
    assert_eq!(record["approval"]["by"], "slack:U024BE7LH");
}

#[tokio::test]
async fn a_webhook_that_is_down_does_not_hold_anything_up() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = fixture(&format!(
        "approvals:\n  notify: [\"http://127.0.0.1:{port}/hook\"]\n"
    ))
    .await;
    let call = sandbox(
        &f.proxy,
        common::TASK,
        &[
            "-X",
            "PUT",
            &format!("{}/repos/a/b/pulls/1/merge", f.base()),
        ],
    );
    let id = only_hold_id(&f.proxy).await;
    let answer = respond(&f.proxy, &id, "approve", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(finished(call).await.status, 200);
}

#[tokio::test]
async fn shutting_down_denies_the_holds_and_records_them() {
    let mut f = fixture("").await;
    let call = sandbox(
        &f.proxy,
        common::TASK,
        &[
            "-X",
            "PUT",
            &format!("{}/repos/a/b/pulls/5/merge", f.base()),
        ],
    );
    wait_pending(&f.proxy, 1).await;
    f.proxy.terminate();
    let out = finished(call).await;
    assert_eq!(out.status, 403, "{out:?}");
    assert_eq!(out.json()["error"], "approval_denied");
    let status = f.proxy.wait_exit(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "a clean drain");
    let records = audit_records(&f.proxy);
    let held = records
        .iter()
        .find(|r| r["type"] == "request" && r["approval"]["outcome"] == "shutdown")
        .unwrap_or_else(|| panic!("no shutdown record in {records:?}"));
    assert_eq!(held["status"], 403);
    assert_eq!(f.api.hits(), 0);
}

#[tokio::test]
async fn a_task_that_expires_while_waiting_is_refused_then() {
    let f = fixture("").await;
    let (task, proxy_url) = common::create_task(&f.proxy, r#"{"policy":"gh","ttl":"2s"}"#).await;
    let ca = f.proxy.ca_pem.to_str().unwrap().to_string();
    let url = format!("{}/repos/acme/x/pulls/1/merge", f.base());
    let out = curl_raw(&["--proxy", &proxy_url, "--cacert", &ca, "-X", "PUT", &url]).await;
    assert_eq!(out.status, 403, "{out:?}");
    assert_eq!(out.json()["error"], "approval_denied");
    let record = wait_record(&f.proxy, |r| r["task"] == task.as_str()).await;
    assert_eq!(record["approval"]["outcome"], "task_ended");
    assert_eq!(record["approval"]["reason"], "the task expired");
    assert!(pending(&f.proxy).await.is_empty());
}

/// `tollgate approvals ARGS` against `proxy`; `token` is how the token is given.
async fn approvals_cli(proxy: &ProxyProc, args: &[&str], token: CliToken) -> std::process::Output {
    let mut command = tokio::process::Command::new(common::tollgate_bin());
    command
        .arg("approvals")
        .args(args)
        .arg("--admin")
        .arg(admin_addr(proxy))
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env("USER", "dana");
    match token {
        CliToken::File => {
            command
                .arg("--admin-token-file")
                .arg(proxy.dir.path().join("state/admin.token"));
        }
        CliToken::Env => {
            command.env("TOLLGATE_ADMIN_TOKEN", admin_token(proxy));
        }
    }
    command.output().await.unwrap()
}

#[derive(Clone, Copy)]
enum CliToken {
    File,
    Env,
}

#[tokio::test]
async fn operators_answer_with_the_cli_using_a_token_file_or_the_environment() {
    let f = fixture("").await;
    let url = format!("{}/repos/acme/web/pulls/412/merge", f.base());
    let body = r#"{"commit_title":"__GITHUB_TOKEN__"}"#;
    let first = sandbox(
        &f.proxy,
        common::TASK,
        &[
            "-X",
            "PUT",
            "-H",
            "Authorization: Bearer __GITHUB_TOKEN__",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            &url,
        ],
    );
    let id = only_hold_id(&f.proxy).await;

    // The table, with the token from a file.
    let listed = approvals_cli(&f.proxy, &["list"], CliToken::File).await;
    assert!(listed.status.success(), "{listed:?}");
    let table = String::from_utf8_lossy(&listed.stdout).to_string();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "TASK", "METHOD", "HOST", "PATH", "RULE", "WAITED", "BODY"]
    );
    let row = lines.next().unwrap();
    for cell in [
        id.as_str(),
        common::TASK,
        "PUT",
        "/repos/acme/web/pulls/412/merge",
        "merge needs a person",
        "application/json",
    ] {
        assert!(row.contains(cell), "{cell} not in {row}");
    }
    assert!(row.contains(&format!("api.test:{}", f.api.port)), "{row}");
    assert!(!table.contains(SECRET), "{table}");
    // The same with the token from the environment, as JSON.
    let json = approvals_cli(&f.proxy, &["list", "--json"], CliToken::Env).await;
    assert!(json.status.success(), "{json:?}");
    let parsed: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed[0]["id"], id.as_str());

    let approved = approvals_cli(
        &f.proxy,
        &["approve", &id, "--for", "1m", "--reason", "release 2.4"],
        CliToken::Env,
    )
    .await;
    assert!(approved.status.success(), "{approved:?}");
    let said = String::from_utf8_lossy(&approved.stdout).to_string();
    assert!(said.starts_with(&format!("approved {id}")), "{said}");
    assert!(said.contains("grant g-"), "{said}");
    assert_eq!(finished(first).await.status, 200);
    let record = wait_record(&f.proxy, |r| r["decision"] == "approved").await;
    assert_eq!(record["approval"]["by"], "dana", "--by defaults to $USER");
    assert_eq!(record["approval"]["reason"], "release 2.4");
    assert!(record["approval"]["grant"]
        .as_str()
        .unwrap()
        .starts_with("g-"));
    // The body went upstream as the sandbox sent it (no inject_body here).
    assert!(!f.api.seen.lock().unwrap().is_empty());

    // Deny from the CLI, with the token file.
    let second = sandbox(
        &f.proxy,
        common::TASK,
        &["-X", "PUT", &format!("{}/quick/prod", f.base())],
    );
    let id = only_hold_id(&f.proxy).await;
    let denied = approvals_cli(
        &f.proxy,
        &["deny", &id, "--reason", "prod is frozen", "--by", "erin"],
        CliToken::File,
    )
    .await;
    assert!(denied.status.success(), "{denied:?}");
    assert_eq!(
        String::from_utf8_lossy(&denied.stdout).trim(),
        format!("denied {id}")
    );
    let out = finished(second).await;
    assert_eq!(out.status, 403);
    assert!(out.body.contains("prod is frozen"), "{out:?}");
    let record = wait_record(&f.proxy, |r| r["approval"]["id"] == id.as_str()).await;
    assert_eq!(record["approval"]["by"], "erin");
    assert_eq!(record["approval"]["outcome"], "denied");

    // Answering again fails clearly.
    let again = approvals_cli(&f.proxy, &["deny", &id], CliToken::Env).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no pending approval"),
        "{again:?}"
    );
}

#[tokio::test]
async fn bodies_still_arriving_take_places_and_give_up_at_the_timeout() {
    let f = fixture("approvals:\n  max_pending_per_task: 2\n").await;
    let proxy_url = format!("http://{}:{}@{}", common::TASK, common::TOKEN, f.proxy.addr);
    let ca = f.proxy.ca_pem.to_str().unwrap().to_string();
    // Two uploads that never finish (curl waits on an open stdin).
    let stall = || {
        tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--noproxy",
                "",
                "--max-time",
                "20",
                "-o",
                "/dev/null",
            ])
            .args(["-w", "%{http_code}", "--proxy", &proxy_url, "--cacert", &ca])
            .args(["-H", "Transfer-Encoding: chunked", "-T", "-"])
            .args(["-X", "POST", &format!("{}/stall", f.base())])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut stalled = [stall(), stall()];
    // Kept open (and silent) until the end of the test.
    let _stdins: Vec<_> = stalled.iter_mut().map(|c| c.stdin.take()).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        pending(&f.proxy).await.is_empty(),
        "not held before the body is in"
    );
    // Yet they take the task's places: a third request is refused at once.
    let third = curl(
        &f.proxy,
        &[
            "-X",
            "PUT",
            &format!("{}/repos/a/b/pulls/1/merge", f.base()),
        ],
    )
    .await;
    assert_eq!(third.status, 429, "{third:?}");
    // The stall rule's 2 s cover reading the body too; then the places are free.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let refused = audit_records(&f.proxy)
            .into_iter()
            .filter(|r| r["path"] == "/stall" && r["status"] == 400)
            .count();
        if refused == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", audit_records(&f.proxy));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stalled);
    let after = sandbox(
        &f.proxy,
        common::TASK,
        &["-X", "PUT", &format!("{}/quick/z", f.base())],
    );
    assert_eq!(wait_pending(&f.proxy, 1).await[0]["path"], "/quick/z");
    assert_eq!(finished(after).await.status, 403, "held, then timed out");
    assert_eq!(f.api.hits(), 0);
}

#[tokio::test]
async fn an_approved_request_is_recorded_as_approved_even_if_the_client_leaves_early() {
    let f = fixture("").await;
    let proxy_url = format!("http://{}:{}@{}", common::TASK, common::TOKEN, f.proxy.addr);
    // The upstream takes 1.5 s to answer; the client is killed while it waits.
    let mut client = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "",
            "--max-time",
            "30",
            "--proxy",
            &proxy_url,
        ])
        .arg("--cacert")
        .arg(&f.proxy.ca_pem)
        .args(["-X", "PUT", &format!("{}/slow", f.base())])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let id = only_hold_id(&f.proxy).await;
    let answer = respond(&f.proxy, &id, "approve", None).await;
    assert_eq!(answer.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.api.hits() == 0 {
        assert!(
            Instant::now() < deadline,
            "the approved request never went upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.kill().await.unwrap();
    let record = wait_record(&f.proxy, |r| r["approval"]["id"] == id.as_str()).await;
    assert_eq!(record["decision"], "approved", "{record}");
    // The client got nothing: status 0, and the reason says why.
    assert_eq!(record["status"], 0, "{record}");
    assert_eq!(record["reason"], "client_closed");
    assert_eq!(record["approval"]["outcome"], "approved");
}

#[tokio::test]
async fn a_reload_that_adds_a_gate_reaches_an_open_connection() {
    let f = fixture("").await;
    let client = common::reqwest_client(&f.proxy);
    let url = format!("{}/repos/acme/x/pulls/1", f.base());
    let first = client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    // The same rule now asks for approval; the kept-alive tunnel gets the news.
    let gated = policy(f.api.port).replace(
        "    methods: [GET]\n    inject: [GITHUB_TOKEN]\n",
        "    methods: [GET]\n    inject: [GITHUB_TOKEN]\n    action: approve\n    approval_timeout: 1s\n",
    );
    std::fs::write(f.proxy.dir.path().join("policies/gh.yaml"), gated).unwrap();
    assert_eq!(
        admin(&f.proxy, "POST", "/v1/reload", None).await.status,
        200
    );
    let second = client.get(&url).send().await.unwrap();
    assert_eq!(second.status(), 403);
    assert_eq!(
        second.headers()["x-tollgate-reason"].to_str().unwrap(),
        "approval_denied"
    );
    assert_eq!(f.api.hits(), 1);
}

#[tokio::test]
async fn a_tunnel_entry_that_would_bypass_an_approval_gate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: p\nrules:\n  - name: merge\n    host: api.github.com\n    methods: [PUT]\n    action: approve\ntunnel:\n  - { host: api.github.com }\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::tollgate_bin())
        .args(["policy", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("p.yaml:8"), "{stderr}");
    assert!(stderr.contains("never wait for an operator"), "{stderr}");
}

/// Rewrites the fixture's policy file with `edit` applied and reloads.
async fn edit_policy(f: &Fixture, edit: impl Fn(String) -> String) {
    let path = f.proxy.dir.path().join("policies/gh.yaml");
    let text = edit(std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, text).unwrap();
    let out = admin(&f.proxy, "POST", "/v1/reload", None).await;
    assert_eq!(out.status, 200, "{out:?}");
}

#[tokio::test]
async fn a_policy_edit_refuses_waiting_holds_and_ends_grants() {
    let f = fixture("").await;
    let merge = |n: u32| format!("{}/repos/acme/x/pulls/{n}/merge", f.base());
    // A grant, then a request waiting under the same policy.
    let first = sandbox(&f.proxy, common::TASK, &["-X", "PUT", &merge(1)]);
    let id = only_hold_id(&f.proxy).await;
    let answer = respond(&f.proxy, &id, "approve", Some(json!({"for": "1h"}))).await;
    assert_eq!(answer.status, 200);
    assert_eq!(finished(first).await.status, 200);
    let held = sandbox(
        &f.proxy,
        common::TASK,
        &["-X", "PUT", &format!("{}/slow", f.base())],
    );
    wait_pending(&f.proxy, 1).await;

    // The secret may now go to another host only: what was approved no longer
    // holds. The waiting request is refused, and the grant is gone.
    edit_policy(&f, |p| {
        p.replace("hosts: [api.test]", "hosts: [elsewhere.test]")
    })
    .await;
    let out = finished(held).await;
    assert_eq!(out.status, 403, "{out:?}");
    assert!(out.body.contains("policy changed"), "{out:?}");
    let record = wait_record(&f.proxy, |r| r["approval"]["outcome"] == "policy_changed").await;
    assert_eq!(record["decision"], "approval_denied");
    let again = sandbox(&f.proxy, common::TASK, &["-X", "PUT", &merge(2)]);
    let hold = wait_pending(&f.proxy, 1).await.remove(0);
    assert_eq!(
        hold["path"], "/repos/acme/x/pulls/2/merge",
        "the grant ended"
    );
    respond(&f.proxy, hold["id"].as_str().unwrap(), "deny", None).await;
    assert_eq!(finished(again).await.status, 403);
    // Nothing went out with the secret after the edit.
    let seen = f.api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
}

#[tokio::test]
async fn a_wildcard_tunnel_does_not_pass_a_gated_host_through() {
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["sub.api.test"]))).await;
    let yaml = format!(
        "name: gh\nrules:\n  - name: deploy\n    host: sub.api.test\n    port: {p}\n    methods: [PUT]\n    action: approve\ntunnel:\n  - {{ host: \"*.api.test\", port: {p} }}\n",
        p = api.port
    );
    let setup = ProxySetup::with_policy("gh", &yaml)
        .trust(&ca.cert_pem)
        .resolve("sub.api.test", api.port);
    let proxy = start_proxy(&setup);
    let url = format!("https://sub.api.test:{}/deploy/prod", api.port);
    let call = sandbox(&proxy, common::TASK, &["-X", "PUT", &url]);
    // Intercepted and held, not passed through.
    let id = only_hold_id(&proxy).await;
    assert_eq!(api.hits(), 0);
    let answer = admin(&proxy, "POST", &format!("/v1/approvals/{id}/deny"), None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(finished(call).await.status, 403);
    assert_eq!(api.hits(), 0);
}
