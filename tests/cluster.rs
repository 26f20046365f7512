//! Cluster mode with a real redis-server and three tollgate replicas on
//! loopback, sharing the task key, the CA and the audit key.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::redis::{start_replicas, RedisServer, SharedKeys};
use common::upstream::{start_upstream, TestCa, Upstream};
use common::{admin_addr, admin_call, create_task, curl_raw, curl_via, ProxyProc, ProxySetup};
use std::time::{Duration, Instant};

fn setup(ca: &TestCa, api: &Upstream, policy_extra: &str) -> ProxySetup {
    let yaml = format!(
        "name: main\n{policy_extra}rules:\n  - name: api\n    host: api.test\n    port: {p}\n",
        p = api.port
    );
    ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port)
}

/// `proxy_url` (as the admin API of one replica wrote it) pointed at `replica`.
fn via(proxy_url: &str, replica: &ProxyProc) -> String {
    let (creds, _) = proxy_url
        .trim_start_matches("http://")
        .rsplit_once('@')
        .unwrap();
    format!("http://{creds}@{}", replica.addr)
}

async fn readyz(proxy: &ProxyProc) -> u16 {
    curl_raw(&[&format!("http://{}/readyz", admin_addr(proxy))])
        .await
        .status
}

/// Waits (up to `limit`) until every replica's `/readyz` answers `status`.
async fn wait_ready(replicas: &[ProxyProc], status: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    for replica in replicas {
        loop {
            if readyz(replica).await == status {
                break;
            }
            assert!(Instant::now() < deadline, "/readyz never answered {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_task_made_on_one_replica_works_on_all_and_ends_on_all() {
    let Some(redis) = RedisServer::start("cluster task test") else {
        return;
    };
    let keys = SharedKeys::new();
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let replicas = start_replicas(3, &setup(&ca, &api, ""), &redis, &keys);
    wait_ready(&replicas, 200, Duration::from_secs(10)).await;
    let url = format!("https://api.test:{}/x", api.port);

    let (id, proxy_url) = create_task(&replicas[0], r#"{"policy":"main","ttl":"10m"}"#).await;
    for replica in &replicas {
        let out = curl_via(replica, &via(&proxy_url, replica), &[&url]).await;
        assert_eq!(out.status, 200, "{out:?}");
    }
    // Every replica's admin API knows the task.
    let shown = admin_call(&replicas[2], "GET", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    assert_eq!(shown.json()["policy"], "main");
    let listed = admin_call(&replicas[1], "GET", "/v1/tasks", None).await;
    assert!(listed.body.contains(&id), "{listed:?}");

    // Ended on C: refused on A and B within a second.
    let ended = admin_call(&replicas[2], "DELETE", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(ended.status, 200, "{ended:?}");
    let deadline = Instant::now() + Duration::from_secs(1);
    for replica in &replicas[..2] {
        loop {
            let out = curl_via(replica, &via(&proxy_url, replica), &[&url]).await;
            if out.status == 407 || out.connect_status == 407 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still served {}s after the DELETE: {out:?}",
                1
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let gone = admin_call(&replicas[0], "GET", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(gone.status, 404, "{gone:?}");
}

#[tokio::test]
async fn a_replica_that_starts_after_a_revocation_refuses_the_task() {
    let Some(redis) = RedisServer::start("cluster late replica test") else {
        return;
    };
    let keys = SharedKeys::new();
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let setup = setup(&ca, &api, "");
    let first = start_replicas(1, &setup, &redis, &keys);
    wait_ready(&first, 200, Duration::from_secs(10)).await;
    let (id, proxy_url) = create_task(&first[0], r#"{"policy":"main"}"#).await;
    assert_eq!(
        admin_call(&first[0], "DELETE", &format!("/v1/tasks/{id}"), None)
            .await
            .status,
        200
    );
    let late = common::redis::start_replica(&setup, &redis, &keys, "tollgate-late");
    wait_ready(std::slice::from_ref(&late), 200, Duration::from_secs(10)).await;
    let url = format!("https://api.test:{}/x", api.port);
    let out = curl_via(&late, &via(&proxy_url, &late), &[&url]).await;
    assert!(
        out.status == 407 || out.connect_status == 407,
        "the deny-list in Redis reached the new replica: {out:?}"
    );
    assert_eq!(api.hits(), 0);
}

#[tokio::test]
async fn redis_down_fails_closed_and_service_resumes_when_it_returns() {
    let Some(mut redis) = RedisServer::start("cluster outage test") else {
        return;
    };
    let keys = SharedKeys::new();
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let replicas = start_replicas(2, &setup(&ca, &api, ""), &redis, &keys);
    wait_ready(&replicas, 200, Duration::from_secs(10)).await;
    let url = format!("https://api.test:{}/x", api.port);
    let (_, proxy_url) = create_task(&replicas[0], r#"{"policy":"main"}"#).await;
    let ok = curl_via(&replicas[1], &via(&proxy_url, &replicas[1]), &[&url]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let hits = api.hits();

    redis.stop();
    wait_ready(&replicas, 503, Duration::from_secs(5)).await;
    let ready = curl_raw(&[&format!("http://{}/readyz", admin_addr(&replicas[0]))]).await;
    assert!(ready.body.contains("cluster"), "{ready:?}");
    let health = curl_raw(&[&format!("http://{}/healthz", admin_addr(&replicas[0]))]).await;
    assert_eq!(health.status, 200, "liveness stays green: {health:?}");
    for replica in &replicas {
        // The static task and the API task alike; CONNECT is refused up front.
        for proxy in [replica.url(), via(&proxy_url, replica)] {
            let out = curl_via(replica, &proxy, &[&url]).await;
            let status = if out.connect_status != 0 && out.connect_status != 200 {
                out.connect_status
            } else {
                out.status
            };
            assert_eq!(status, 503, "{out:?}");
            assert!(out.headers.contains("cluster_unavailable"), "{out:?}");
        }
        let plain = curl_via(replica, &replica.url(), &["http://api.test:1/"]).await;
        assert_eq!(plain.status, 503, "{plain:?}");
    }
    assert_eq!(api.hits(), hits, "nothing went out while Redis was away");
    let records = common::audit_records(&replicas[0]);
    assert!(
        records.iter().any(|r| r["reason"] == "cluster_unavailable"),
        "refusals are audited"
    );

    // Back, empty (a restarted Redis without persistence): service resumes
    // without restarting tollgate. The task token still verifies anywhere.
    redis.restart();
    wait_ready(&replicas, 200, Duration::from_secs(10)).await;
    for replica in &replicas {
        let out = curl_via(replica, &via(&proxy_url, replica), &[&url]).await;
        assert_eq!(out.status, 200, "{out:?}");
    }
}
