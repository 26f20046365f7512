//! Cluster mode with a real redis-server and three tollgate replicas on
//! loopback, sharing the task key, the CA and the audit key.

mod common;

use common::redis::{readyz, start_replicas, via, wait_ready, RedisServer, SharedKeys};
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

    // An open tunnel of the task on B, waiting inside.
    let (creds, _) = proxy_url
        .trim_start_matches("http://")
        .rsplit_once('@')
        .unwrap();
    let mut tunnel = tokio::net::TcpStream::connect(replicas[1].addr)
        .await
        .unwrap();
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, creds);
    let target = format!("api.test:{}", api.port);
    tokio::io::AsyncWriteExt::write_all(
        &mut tunnel,
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {basic}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 512];
    let n = tokio::io::AsyncReadExt::read(&mut tunnel, &mut head)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));

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
                "still served a second after the DELETE: {out:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // B closed the open tunnel too, well before any timeout of its own.
    let closed = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut tunnel, &mut head),
    )
    .await
    .expect("the tunnel on another replica is closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
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
    // A task ended before Redis loses its data.
    let (ended, ended_url) = create_task(&replicas[0], r#"{"policy":"main"}"#).await;
    let deleted = admin_call(&replicas[1], "DELETE", &format!("/v1/tasks/{ended}"), None).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let hits = api.hits();

    redis.stop();
    wait_ready(&replicas, 503, Duration::from_secs(5)).await;
    let ready = curl_raw(&[&format!("http://{}/readyz", admin_addr(&replicas[0]))]).await;
    assert!(ready.body.contains("cluster"), "{ready:?}");
    let metrics = curl_raw(&[&format!("http://{}/metrics", admin_addr(&replicas[0]))]).await;
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l == "tollgate_cluster_unavailable 1"),
        "{}",
        metrics.body
    );
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
    // The task made on A before the wipe is listed again: B's admin API
    // shows and ends it.
    let (live_id, _) = proxy_url
        .trim_start_matches("http://")
        .split_once(':')
        .unwrap();
    let shown = admin_call(&replicas[1], "GET", &format!("/v1/tasks/{live_id}"), None).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    // The replicas put their revocations back into the empty Redis: one that
    // starts now refuses the ended task too.
    let late = common::redis::start_replica(&setup(&ca, &api, ""), &redis, &keys, "tollgate-late");
    wait_ready(std::slice::from_ref(&late), 200, Duration::from_secs(10)).await;
    let out = curl_via(&late, &via(&ended_url, &late), &[&url]).await;
    assert!(
        out.status == 407 || out.connect_status == 407,
        "a revocation survives Redis losing its data: {out:?}"
    );
}

#[tokio::test]
async fn rediss_with_a_password_file_works_and_a_wrong_password_fails_closed() {
    let redis_ca = TestCa::new("redis test CA");
    let Some(redis) =
        RedisServer::start_tls("cluster TLS test", &redis_ca, "correct-horse-battery")
    else {
        return;
    };
    let keys = SharedKeys::new();
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("redis-ca.pem");
    std::fs::write(&ca_file, &redis_ca.cert_pem).unwrap();
    let good = files.path().join("good");
    std::fs::write(&good, "correct-horse-battery\n").unwrap();
    let bad = files.path().join("bad");
    std::fs::write(&bad, "wrong\n").unwrap();
    let url = format!("https://api.test:{}/x", api.port);

    let mut with_good = setup(&ca, &api, "");
    with_good.extra_yaml =
        common::redis::cluster_tls_yaml(&redis, &keys, "tollgate-0", &ca_file, &good);
    let replica = common::spawn_serve(common::write_setup(&with_good), &[]);
    let mut replica = replica;
    replica.ca_pem = keys.ca_pem();
    wait_ready(std::slice::from_ref(&replica), 200, Duration::from_secs(10)).await;
    let out = curl_via(&replica, &replica.url(), &[&url]).await;
    assert_eq!(out.status, 200, "{out:?}");

    let mut with_bad = setup(&ca, &api, "");
    with_bad.extra_yaml =
        common::redis::cluster_tls_yaml(&redis, &keys, "tollgate-1", &ca_file, &bad);
    let mut wrong = common::spawn_serve(common::write_setup(&with_bad), &[]);
    wrong.ca_pem = keys.ca_pem();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(readyz(&wrong).await, 503);
    let out = curl_via(&wrong, &wrong.url(), &[&url]).await;
    let status = if out.connect_status != 0 {
        out.connect_status
    } else {
        out.status
    };
    assert_eq!(
        status, 503,
        "a replica Redis refuses serves nothing: {out:?}"
    );
}

/// Every audit file a replica wrote (rotated ones included).
fn audit_files(replica: &ProxyProc) -> Vec<std::path::PathBuf> {
    let dir = replica.dir.path().join("state/audit");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().contains(".jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn records_of(files: &[std::path::PathBuf]) -> Vec<serde_json::Value> {
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<serde_json::Value>>()
        })
        .collect()
}

#[tokio::test]
async fn a_replica_killed_under_load_loses_no_record_and_every_stream_verifies() {
    let Some(redis) = RedisServer::start("cluster kill -9 test") else {
        return;
    };
    let keys = SharedKeys::new();
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let mut replicas = start_replicas(3, &setup(&ca, &api, ""), &redis, &keys);
    wait_ready(&replicas, 200, Duration::from_secs(10)).await;
    let (_, proxy_url) = create_task(&replicas[0], r#"{"policy":"main"}"#).await;

    // A client that goes round the replicas and, when one fails it, retries
    // the same request on the next one.
    let mut served: Vec<(usize, usize)> = Vec::new();
    let mut killed = false;
    let mut next = 0usize;
    for i in 0..45usize {
        if i == 20 {
            // Killed between two of its requests, once its last record is in.
            let last = served.iter().rev().find(|(_, r)| *r == 1).map(|(i, _)| *i);
            if let Some(last) = last {
                let path = format!("/r/{last}");
                common::wait_record(&replicas[1], |r| r["path"] == path.as_str()).await;
            }
            replicas[1].kill_now();
            killed = true;
        }
        let url = format!("https://api.test:{}/r/{i}", api.port);
        let mut tries = 0;
        loop {
            let at = next % 3;
            next += 1;
            if killed && at == 1 {
                // The client does not know yet: it tries, fails, moves on.
                let out = curl_via(&replicas[1], &via(&proxy_url, &replicas[1]), &[&url]).await;
                assert_ne!(out.status, 200, "a killed replica answered: {out:?}");
                tries += 1;
                continue;
            }
            let out = curl_via(&replicas[at], &via(&proxy_url, &replicas[at]), &[&url]).await;
            tries += 1;
            if out.status == 200 {
                served.push((i, at));
                break;
            }
            assert!(tries < 6, "request {i} failed everywhere: {out:?}");
        }
    }
    assert_eq!(served.len(), 45);
    assert!(
        served.iter().any(|(_, r)| *r == 1),
        "the killed replica served some"
    );

    // The survivors stop cleanly (their streams end with a shutdown checkpoint).
    for at in [0, 2] {
        replicas[at].terminate();
        assert!(replicas[at].wait_exit(Duration::from_secs(20)).is_some());
    }
    let files: Vec<std::path::PathBuf> = replicas.iter().flat_map(audit_files).collect();
    let records = records_of(&files);
    for (i, at) in &served {
        let path = format!("/r/{i}");
        let found: Vec<_> = records
            .iter()
            .filter(|r| {
                r["type"] == "request" && r["path"] == path.as_str() && r["decision"] == "allow"
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "request {i} (served by replica {at}) has exactly one record"
        );
    }
    for (at, replica) in replicas.iter().enumerate() {
        let stream = format!("tollgate-{at}");
        assert!(
            records_of(&audit_files(replica))
                .iter()
                .filter(|r| r["type"] == "checkpoint")
                .all(|r| r["stream"] == stream.as_str()),
            "every checkpoint of replica {at} names its stream"
        );
    }
    let out = std::process::Command::new(common::tollgate_bin())
        .args(["audit", "verify", "--key"])
        .arg(keys.audit_pub())
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stream tollgate-0: ") && stdout.contains("stream tollgate-2: "),
        "{stdout}"
    );
    let killed_line = stdout
        .lines()
        .find(|l| l.starts_with("stream tollgate-1: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        killed_line.contains("after the last checkpoint unconfirmed"),
        "a stream cut by kill -9 is reported unconfirmed: {killed_line}"
    );
    for at in [0, 2] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("stream tollgate-{at}: ")))
            .unwrap();
        assert!(
            line.ends_with("records ok"),
            "a clean stop confirms all: {line}"
        );
    }
}
