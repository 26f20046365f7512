//! Budgets per task (requests, bytes up and down, `on_exceed: deny`): a
//! request is refused once the use before it has reached the limit, so
//! `requests: 3` lets exactly three out and the request that crosses a byte
//! limit finishes; the next gets 429 `budget_exceeded` without `Retry-After`,
//! and never reaches the upstream. The admin API shows use and limit.

mod common;

use common::upstream::{start_upstream, TestCa};
use common::{
    admin_call, audit_records, create_task, curl, curl_via, start_proxy, ProxySetup, TOKEN,
};

#[tokio::test]
async fn three_requests_let_exactly_three_out_then_429_without_retry_after() {
    let ca = TestCa::new("budget test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let yaml = format!(
        "name: main\nbudgets: {{ requests: 3, on_exceed: deny }}\nrules:\n  - host: api.test\n    port: {}\n",
        api.port
    );
    let mut setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    setup.extra_tasks = vec!["{ id: second, policy: main, token_env: TEST_AGENT_TOKEN }".into()];
    let proxy = start_proxy(&setup);
    let url = format!("https://api.test:{}/echo", api.port);

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(curl(&proxy, &[&url]).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(api.hits(), 3, "refused requests never reach the upstream");
    let refused = curl(&proxy, &[&url]).await;
    assert_eq!(refused.json()["error"], "budget_exceeded", "{refused:?}");
    assert_eq!(
        refused.header("x-tollgate-reason").as_deref(),
        Some("budget_exceeded")
    );
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("requests budget is used up (3 of 3)"),
        "{refused:?}"
    );
    assert_eq!(refused.header("retry-after"), None, "waiting does not help");
    let records = audit_records(&proxy);
    assert!(records
        .iter()
        .any(|r| r["reason"] == "budget_exceeded" && r["status"] == 429));

    // Another task has budgets of its own.
    let second = format!("http://second:{TOKEN}@{}", proxy.addr);
    let other = curl_via(&proxy, &second, &[&url]).await;
    assert_eq!(other.status, 200, "{other:?}");

    // A task made through the admin API shows its use and limit there.
    let (id, proxy_url) = create_task(&proxy, r#"{"policy":"main"}"#).await;
    let via_task = curl_via(&proxy, &proxy_url, &[&url]).await;
    assert_eq!(via_task.status, 200, "{via_task:?}");
    let shown = admin_call(&proxy, "GET", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    assert_eq!(
        shown.json()["budgets"],
        serde_json::json!({"requests": {"used": 1, "limit": 3}}),
        "{shown:?}"
    );
    // /metrics sums the policy's tasks: 3 + 1 (second) + 1 (the created one).
    let metrics = admin_call(&proxy, "GET", "/metrics", None).await;
    assert!(
        metrics
            .body
            .contains(r#"tollgate_budget_used_total{policy="main",budget="requests"} 5"#),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn an_upload_that_would_cross_bytes_up_is_cut_and_the_next_request_is_refused() {
    let ca = TestCa::new("budget test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let yaml = format!(
        "name: main\nbudgets:\n  bytes_up: 1KiB\n  bytes_down: 1GiB\nrules:\n  - host: api.test\n    port: {}\n",
        api.port
    );
    let setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    let proxy = start_proxy(&setup);
    let upload = format!("https://api.test:{}/upload", api.port);
    let body = "x".repeat(700);
    let first = curl(&proxy, &["--data-binary", &body, &upload]).await;
    assert_eq!(first.status, 200, "{first:?}");
    // SECURITY: 700 + 700 would cross 1 KiB: an exfiltration ceiling is not
    // crossed by letting the upload that crosses it finish.
    let second = curl(&proxy, &["--data-binary", &body, &upload]).await;
    assert_eq!(second.status, 429, "{second:?}");
    assert_eq!(second.json()["error"], "budget_exceeded", "{second:?}");
    assert!(
        second.json()["message"]
            .as_str()
            .unwrap()
            .contains("cut off"),
        "{second:?}"
    );
    // The cut used the budget up: the next request, even without a body, is refused.
    let third = curl(&proxy, &[&upload]).await;
    assert_eq!(third.status, 429, "{third:?}");
    assert!(
        third.json()["message"]
            .as_str()
            .unwrap()
            .contains("bytes_up budget is used up (1024 of 1024)"),
        "{third:?}"
    );
    let records = audit_records(&proxy);
    let cut = records
        .iter()
        .find(|r| r["status"] == 429 && r["bytes_up"] == 0 && r["budget"] == "bytes_up");
    assert!(
        cut.is_some(),
        "the cut upload's record names the budget: {records:?}"
    );
}

#[tokio::test]
async fn broken_budgets_are_refused_with_the_line_at_fault() {
    for (budgets, needle, line) in [
        (
            "budgets:\n  requests: 10\n  llm: { tokens: 1000 }\n",
            "budgets.llm.hosts is empty",
            4,
        ),
        (
            "budgets:\n  requests: 10\n  llm: { hosts: [api.openai.com], usd: 5 }\n",
            "budgets.llm.usd needs prices",
            4,
        ),
        (
            "budgets:\n  llm:\n    hosts: [api.openai.com]\n    tokens: 5\n    prices: { m: { input: -1, output: 1 } }\n",
            "budgets.llm.prices `m`",
            3,
        ),
        (
            "budgets:\n  requests: 10\n  on_exceed: ask\n",
            "must be deny or approve",
            4,
        ),
        (
            "budgets:\n  bytes_up: 64 megabytes\n",
            "budgets.bytes_up must be a number of bytes",
            3,
        ),
        ("budgets:\n  requests: -1\n", "budgets", 3),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.yaml"),
            format!("name: p\n{budgets}rules:\n  - host: api.test\n"),
        )
        .unwrap();
        let out = std::process::Command::new(common::tollgate_bin())
            .args(["policy", "check"])
            .arg(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{budgets}: {text}");
        assert!(text.contains(needle), "{budgets}: {text}");
        assert!(
            text.contains(&format!("p.yaml:{line}")),
            "{budgets}: {text}"
        );
    }
}

#[tokio::test]
async fn a_passthrough_tunnel_is_charged_when_it_closes_and_none_opens_past_the_budget() {
    let ca = TestCa::new("budget test CA");
    let api = start_upstream(Some(ca.server_config(&["pass.test"]))).await;
    let yaml = format!(
        "name: main\nbudgets: {{ bytes_down: 2KiB }}\nrules:\n  - host: api.test\n    port: {p}\ntunnel:\n  - {{ host: pass.test, port: {p} }}\n",
        p = api.port
    );
    let setup = ProxySetup::with_policy("main", &yaml).resolve("pass.test", api.port);
    let proxy = start_proxy(&setup);
    let upstream_ca = common::write_file(proxy.dir.path(), "upstream-ca.pem", &ca.cert_pem);
    let through_tunnel = |path: &str| {
        let url = format!("https://pass.test:{}{path}", api.port);
        let (proxy_url, ca) = (proxy.url(), upstream_ca.clone());
        async move {
            common::curl_raw(&[
                "--proxy",
                &proxy_url,
                "--cacert",
                ca.to_str().unwrap(),
                &url,
            ])
            .await
        }
    };
    // Nothing in a tunnel is read, so the one that crosses the budget finishes.
    let first = through_tunnel("/bytes/4096").await;
    assert_eq!(first.status, 200, "{first:?}");
    let record = common::wait_record(&proxy, |r| {
        r["method"] == "CONNECT" && r["host"] == "pass.test"
    })
    .await;
    assert_eq!(
        record["budget"], "bytes_down",
        "the tunnel's record names the budget it used up: {record}"
    );
    let second = through_tunnel("/bytes/10").await;
    assert_eq!(second.connect_status, 429, "{second:?}");
    assert_eq!(api.hits(), 1, "no second tunnel reached the upstream");
    let refused = common::wait_record(&proxy, |r| {
        r["method"] == "CONNECT" && r["reason"] == "budget_exceeded"
    })
    .await;
    assert_eq!(refused["status"], 429, "{refused}");
}
