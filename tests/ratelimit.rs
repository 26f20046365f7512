//! Rate limits: a burst, then 429 with Retry-After, per task, refilled over time.

mod common;

use common::upstream::{start_upstream, TestCa};
use common::{curl, curl_via, start_proxy, ProxySetup, TOKEN};
use std::time::Duration;

#[tokio::test]
async fn burst_then_429_with_retry_after_then_refill() {
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let yaml = format!(
        "name: main\nrate: {{ requests: 100, per: 1s }}\nrules:\n  - name: limited\n    host: api.test\n    port: {p}\n    paths: [\"/echo\"]\n    rate: {{ requests: 2, per: 2s }}\n  - name: other path\n    host: api.test\n    port: {p}\n",
        p = api.port
    );
    let mut setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    setup.extra_tasks = vec!["{ id: second, policy: main, token_env: TEST_AGENT_TOKEN }".into()];
    let proxy = start_proxy(&setup);
    let url = format!("https://api.test:{}/echo", api.port);

    // One client connection, so the requests arrive back to back.
    let burst = curl(&proxy, &[&url, &url, &url]).await;
    assert!(
        burst.headers.matches("HTTP/2 200").count() == 2,
        "{burst:?}"
    );
    assert!(burst.headers.contains("HTTP/2 429"), "{burst:?}");
    assert_eq!(
        burst.header("retry-after").as_deref(),
        Some("1"),
        "{burst:?}"
    );
    assert_eq!(
        burst.header("x-tollgate-reason").as_deref(),
        Some("rate_limited")
    );
    assert_eq!(
        api.hits(),
        2,
        "the refused request never reached the upstream"
    );
    assert!(proxy
        .logs()
        .iter()
        .any(|l| l.contains("decision=rate_limited")));

    // Another rule and another task have budgets of their own.
    let other_rule = curl(
        &proxy,
        &[&format!("https://api.test:{}/elsewhere", api.port)],
    )
    .await;
    assert_eq!(other_rule.status, 200, "{other_rule:?}");
    let second = format!("http://second:{TOKEN}@{}", proxy.addr);
    let other_task = curl_via(&proxy, &second, &[&url]).await;
    assert_eq!(other_task.status, 200, "{other_task:?}");

    // One request per second refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = curl(&proxy, &[&url]).await;
    assert_eq!(again.status, 200, "{again:?}");
}

#[tokio::test]
async fn max_concurrent_caps_tunnels_and_streams_in_flight() {
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let yaml = format!(
        "name: main\nmax_concurrent: 2\nrules:\n  - name: any\n    host: api.test\n    port: {p}\n",
        p = api.port
    );
    let setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    let proxy = start_proxy(&setup);
    let slow = format!("https://api.test:{}/slow", api.port);

    // Three HTTP/2 streams on one tunnel: the third is over the cap.
    let streams = curl(
        &proxy,
        &["--parallel", "--parallel-max", "3", &slow, &slow, &slow],
    )
    .await;
    assert_eq!(
        streams.headers.matches("HTTP/2 200").count(),
        2,
        "{streams:?}"
    );
    assert!(streams.headers.contains("HTTP/2 429"), "{streams:?}");
    assert!(
        streams.headers.matches("HTTP/2 ").count() == 3,
        "one connection, three streams: {streams:?}"
    );

    // Three tunnels at once: the third CONNECT is over the cap.
    let args = [slow.as_str()];
    let (a, b, c) = tokio::join!(curl(&proxy, &args), curl(&proxy, &args), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        curl(&proxy, &args).await
    });
    let mut statuses = vec![a.connect_status, b.connect_status, c.connect_status];
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 429], "{a:?} {b:?} {c:?}");
    let record =
        common::wait_record(&proxy, |r| r["method"] == "CONNECT" && r["status"] == 429).await;
    assert_eq!(record["decision"], "rate_limited");

    // Slots come back when the exchanges end.
    let again = curl(&proxy, &[&format!("https://api.test:{}/small", api.port)]).await;
    assert_eq!(again.status, 200, "{again:?}");
}
