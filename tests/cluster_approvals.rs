//! Cluster mode, approvals and minting: a real redis-server and tollgate
//! replicas on loopback. A hold on one replica is listed and answerable on
//! every replica, its answer reaches the holder, `--for` grants cover the
//! task everywhere, a dead replica's holds are withdrawn and audited once,
//! and one replica at a time mints a task's GitHub App token.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::github::{AppKey, FakeGitHub, GitHubSpec, ACME_INSTALLATION, APP_ID};
use common::redis::{start_replicas, via, RedisServer, SharedKeys};
use common::upstream::{start_upstream, TestCa, Upstream};
use common::{admin_addr, admin_call, create_task, curl_raw, CurlOut, ProxyProc, ProxySetup};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn setup(ca: &TestCa, api: &Upstream) -> ProxySetup {
    let yaml = format!(
        r#"name: main
rules:
  - name: merge needs a person
    host: api.test
    port: {p}
    methods: [PUT]
    action: approve
  - name: read
    host: api.test
    port: {p}
    methods: [GET]
"#,
        p = api.port
    );
    let mut setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    let metered = format!(
        "name: metered\nbudgets: {{ requests: 1, on_exceed: approve }}\nrules:\n  - name: read\n    host: api.test\n    port: {}\n",
        api.port
    );
    setup.policies.push(("metered".into(), metered));
    setup
}

struct World {
    redis: RedisServer,
    keys: SharedKeys,
    setup: ProxySetup,
    api: Upstream,
    replicas: Vec<ProxyProc>,
    proxy_url: String,
}

async fn world(test: &str) -> Option<World> {
    let redis = RedisServer::start(test)?;
    let keys = SharedKeys::new();
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let setup = setup(&ca, &api);
    let replicas = start_replicas(3, &setup, &redis, &keys);
    common::redis::wait_ready(&replicas, 200, Duration::from_secs(10)).await;
    let (_, proxy_url) = create_task(&replicas[0], r#"{"policy":"main","ttl":"10m"}"#).await;
    Some(World {
        redis,
        keys,
        setup,
        api,
        replicas,
        proxy_url,
    })
}

impl World {
    /// A PUT (held by the approve rule) sent through replica `i`, in the background.
    fn held_put(&self, i: usize, path: &str) -> tokio::task::JoinHandle<CurlOut> {
        let replica = &self.replicas[i];
        let args: Vec<String> = vec![
            "--proxy".into(),
            via(&self.proxy_url, replica),
            "--cacert".into(),
            replica.ca_pem.to_str().unwrap().into(),
            "-X".into(),
            "PUT".into(),
            format!("https://api.test:{}{path}", self.api.port),
        ];
        tokio::spawn(async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            curl_raw(&refs).await
        })
    }
}

async fn admin(proxy: &ProxyProc, method: &str, path: &str, body: Option<Value>) -> CurlOut {
    let body = body.map(|b| b.to_string());
    admin_call(proxy, method, path, body.as_deref()).await
}

async fn pending(proxy: &ProxyProc) -> Vec<Value> {
    let out = admin(proxy, "GET", "/v1/approvals", None).await;
    assert_eq!(out.status, 200, "{out:?}");
    out.json().as_array().cloned().unwrap_or_default()
}

/// Waits (up to `limit`) until `proxy` lists `n` holds, and returns them.
async fn wait_pending(proxy: &ProxyProc, n: usize, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let holds = pending(proxy).await;
        if holds.len() == n {
            return holds;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} holds, have {holds:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn finished(call: tokio::task::JoinHandle<CurlOut>) -> CurlOut {
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_hold_on_one_replica_is_listed_everywhere_and_approved_through_another() {
    let Some(w) = world("cluster hold approve test").await else {
        return;
    };
    let call = w.held_put(0, "/repos/acme/x/merge");
    let holds = wait_pending(&w.replicas[1], 1, Duration::from_secs(10)).await;
    let hold = &holds[0];
    assert_eq!(hold["replica"], "tollgate-0");
    assert_eq!(hold["method"], "PUT");
    assert_eq!(hold["path"], "/repos/acme/x/merge");
    assert_eq!(hold["rule"], "merge needs a person");
    let id = hold["id"].as_str().unwrap().to_string();
    let on_c = wait_pending(&w.replicas[2], 1, Duration::from_secs(2)).await;
    assert_eq!(on_c[0]["id"], id.as_str());
    assert_eq!(on_c[0]["replica"], "tollgate-0");
    let detail = admin(&w.replicas[2], "GET", &format!("/v1/approvals/{id}"), None).await;
    assert_eq!(detail.status, 200, "{detail:?}");
    assert_eq!(detail.json()["replica"], "tollgate-0");
    assert!(detail.json()["headers"].is_array(), "{detail:?}");
    assert_eq!(w.api.hits(), 0, "nothing goes out while it waits");
    // `tollgate approvals show` against C says where it is held.
    let shown = std::process::Command::new(common::tollgate_bin())
        .args(["approvals", "show", &id, "--admin"])
        .arg(format!("http://{}", admin_addr(&w.replicas[2])))
        .env("TOLLGATE_ADMIN_TOKEN", common::admin_token(&w.replicas[2]))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{shown:?}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("replica:") && l.ends_with("tollgate-0")),
        "{stdout}"
    );

    let answer = admin(
        &w.replicas[1],
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(json!({"by": "bob", "reason": "ship it"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.json(),
        json!({"id": id, "decision": "approved", "by": "bob", "grant": null})
    );
    let out = finished(call).await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(w.api.hits(), 1);
    let record = common::wait_record(&w.replicas[0], |r| r["decision"] == "approved").await;
    assert_eq!(record["approval"]["id"], id.as_str());
    assert_eq!(record["approval"]["by"], "bob");
    assert_eq!(record["approval"]["reason"], "ship it");
    assert_eq!(record["status"], 200);

    // Answered: gone from every list, and a second answer anywhere is a 404.
    for replica in &w.replicas {
        wait_pending(replica, 0, Duration::from_secs(2)).await;
    }
    let again = admin(
        &w.replicas[2],
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        None,
    )
    .await;
    assert_eq!(again.status, 404, "{again:?}");
    let unknown = admin(
        &w.replicas[1],
        "GET",
        "/v1/approvals/a-0000000000000000",
        None,
    )
    .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
}

#[tokio::test]
async fn a_denial_through_another_replica_is_a_403_at_the_holder() {
    let Some(w) = world("cluster hold deny test").await else {
        return;
    };
    let call = w.held_put(0, "/repos/acme/x/merge");
    let holds = wait_pending(&w.replicas[2], 1, Duration::from_secs(10)).await;
    let id = holds[0]["id"].as_str().unwrap().to_string();
    // Its replica renews the lease (5 s) while it waits: still listed after it.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let still = pending(&w.replicas[2]).await;
    assert_eq!(still.len(), 1, "{still:?}");
    assert_eq!(still[0]["id"], id.as_str());
    assert!(still[0]["waited_ms"].as_u64().unwrap() >= 6000, "{still:?}");
    let answer = admin(
        &w.replicas[2],
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some(json!({"by": "carol", "reason": "not today"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["decision"], "denied");
    let out = finished(call).await;
    assert_eq!(out.status, 403, "{out:?}");
    assert_eq!(
        out.header("x-tollgate-reason").as_deref(),
        Some("approval_denied")
    );
    assert!(out.body.contains("not today"), "{out:?}");
    assert_eq!(w.api.hits(), 0);
    let record = common::wait_record(&w.replicas[0], |r| r["decision"] == "approval_denied").await;
    assert_eq!(record["approval"]["outcome"], "denied");
    assert_eq!(record["approval"]["by"], "carol");
}

#[tokio::test]
async fn a_grant_given_through_one_replica_covers_the_task_on_every_replica() {
    let Some(w) = world("cluster grant test").await else {
        return;
    };
    let call = w.held_put(0, "/repos/acme/x/merge");
    wait_pending(&w.replicas[1], 1, Duration::from_secs(10)).await;
    let on_c = w.held_put(2, "/repos/acme/z/merge");
    let holds = wait_pending(&w.replicas[1], 2, Duration::from_secs(10)).await;
    let replica_of = |h: &Value| h["replica"].as_str().unwrap().to_string();
    let on_a = holds
        .iter()
        .find(|h| replica_of(h) == "tollgate-0")
        .unwrap();
    let id = on_a["id"].as_str().unwrap().to_string();
    let c_hold = holds
        .iter()
        .find(|h| replica_of(h) == "tollgate-2")
        .unwrap();
    let c_id = c_hold["id"].as_str().unwrap().to_string();
    let answer = admin(
        &w.replicas[1],
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(json!({"by": "bob", "for": "1m"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let grant = answer.json()["grant"]["id"].as_str().unwrap().to_string();
    assert_eq!(finished(call).await.status, 200);
    // The hold waiting on C under the same rule is covered by the grant too,
    // recorded there under its own hold id.
    assert_eq!(finished(on_c).await.status, 200);
    let record =
        common::wait_record(&w.replicas[2], |r| r["approval"]["id"] == c_id.as_str()).await;
    assert_eq!(record["decision"], "approved");
    assert_eq!(record["approval"]["grant"], grant.as_str());
    assert_eq!(w.api.hits(), 2);

    // The next matching request on C goes through without a hold.
    let next = w.held_put(2, "/repos/acme/y/merge");
    let out = tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("not held")
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(w.api.hits(), 3);
    let record = common::wait_record(&w.replicas[2], |r| r["path"] == "/repos/acme/y/merge").await;
    assert_eq!(record["decision"], "approved");
    assert_eq!(record["approval"]["grant"], grant.as_str());
    assert!(pending(&w.replicas[2]).await.is_empty());

    // A replica started after the announcement finds the grant in Redis.
    let mut w = w;
    let late = common::redis::start_replica(&w.setup, &w.redis, &w.keys, "tollgate-late");
    common::redis::wait_ready(std::slice::from_ref(&late), 200, Duration::from_secs(10)).await;
    w.replicas.push(late);
    let out = tokio::time::timeout(Duration::from_secs(5), w.held_put(3, "/late/merge"))
        .await
        .expect("not held on the late replica")
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(w.api.hits(), 4);
    let record = common::wait_record(&w.replicas[3], |r| r["decision"] == "approved").await;
    assert_eq!(record["approval"]["grant"], grant.as_str());
}

/// A GET through `replica` as the task of `proxy_url`, given up after 5 s
/// (a request held for an operator never comes back in that time).
async fn get_within_5s(replica: &ProxyProc, proxy_url: &str, url: &str) -> Option<CurlOut> {
    let out = common::curl_via(replica, &via(proxy_url, replica), &["-m", "5", url]).await;
    (out.exit != 28).then_some(out)
}

#[tokio::test]
async fn a_grant_lifting_a_budget_reaches_every_replica_even_one_started_later() {
    let Some(mut w) = world("cluster budget grant test").await else {
        return;
    };
    let (_, proxy_url) = create_task(&w.replicas[0], r#"{"policy":"metered","ttl":"10m"}"#).await;
    let url = format!("https://api.test:{}/read", w.api.port);
    let first = get_within_5s(&w.replicas[0], &proxy_url, &url)
        .await
        .unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    // The budget is used up on A: the next request there waits for an operator.
    let replica = &w.replicas[0];
    let args: Vec<String> = vec![
        "--proxy".into(),
        via(&proxy_url, replica),
        "--cacert".into(),
        replica.ca_pem.to_str().unwrap().into(),
        url.clone(),
    ];
    let held = tokio::spawn(async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl_raw(&refs).await
    });
    let holds = wait_pending(&w.replicas[1], 1, Duration::from_secs(10)).await;
    assert_eq!(holds[0]["budget"], "requests", "{holds:?}");
    let id = holds[0]["id"].as_str().unwrap().to_string();
    let answer = admin(
        &w.replicas[1],
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(json!({"for": "1m"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let grant = answer.json()["grant"]["id"].as_str().unwrap().to_string();
    assert_eq!(finished(held).await.status, 200);

    // On C, and on a replica started after the grant, the used-up budget is
    // lifted by the grant (the budget check asks the local registry).
    let late = common::redis::start_replica(&w.setup, &w.redis, &w.keys, "tollgate-late");
    common::redis::wait_ready(std::slice::from_ref(&late), 200, Duration::from_secs(10)).await;
    w.replicas.push(late);
    for i in [2, 3] {
        for _ in 0..2 {
            let out = get_within_5s(&w.replicas[i], &proxy_url, &url).await;
            let out = out.unwrap_or_else(|| panic!("held on replica {i}"));
            assert_eq!(out.status, 200, "{out:?}");
        }
        let lifted =
            common::wait_record(&w.replicas[i], |r| r["approval"]["grant"] == grant.as_str()).await;
        assert_eq!(lifted["budget"], "requests", "{lifted}");
    }
    assert!(pending(&w.replicas[1]).await.is_empty());
}

#[tokio::test]
async fn a_dead_replicas_hold_is_withdrawn_and_audited_once() {
    let Some(mut w) = world("cluster withdrawn hold test").await else {
        return;
    };
    let call = w.held_put(0, "/repos/acme/x/merge");
    let holds = wait_pending(&w.replicas[1], 1, Duration::from_secs(10)).await;
    let id = holds[0]["id"].as_str().unwrap().to_string();
    w.replicas[0].kill_now();
    let out = finished(call).await;
    assert_ne!(out.status, 200, "{out:?}");
    // The lease (5 s) runs out; then the hold is gone from every list.
    let killed = Instant::now();
    for replica in &w.replicas[1..] {
        wait_pending(replica, 0, Duration::from_secs(10)).await;
    }
    assert!(
        killed.elapsed() > Duration::from_secs(2),
        "listed while its lease lasted"
    );
    let withdrawn = |replica: &ProxyProc| {
        common::audit_records(replica)
            .into_iter()
            .filter(|r| r["approval"]["id"] == id.as_str())
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        let records: Vec<Value> = w.replicas[1..].iter().flat_map(withdrawn).collect();
        if !records.is_empty() || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Let a second sweep have its chance to record it again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records_later: Vec<Value> = w.replicas[1..].iter().flat_map(withdrawn).collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records_later.len(),
        1,
        "recorded exactly once: {records_later:?}"
    );
    let record = &records[0];
    assert_eq!(record["decision"], "approval_denied");
    assert_eq!(record["approval"]["outcome"], "lease_expired");
    assert!(
        record["approval"]["reason"]
            .as_str()
            .unwrap()
            .contains("tollgate-0"),
        "{record}"
    );
    assert_eq!(record["path"], "/repos/acme/x/merge");
    assert_eq!(w.api.hits(), 0);
    let gone = admin(
        &w.replicas[2],
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(gone.status, 404, "{gone:?}");
    drop(w.redis);
}

#[tokio::test]
async fn a_held_request_whose_shared_state_is_lost_gets_503_and_never_goes_out() {
    let Some(mut w) = world("cluster hold outage test").await else {
        return;
    };
    let call = w.held_put(0, "/repos/acme/x/merge");
    let holds = wait_pending(&w.replicas[1], 1, Duration::from_secs(10)).await;
    let id = holds[0]["id"].as_str().unwrap().to_string();
    w.redis.stop();
    let out = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("refused within a few seconds")
        .unwrap();
    assert_eq!(out.status, 503, "{out:?}");
    assert_eq!(
        out.header("x-tollgate-reason").as_deref(),
        Some("cluster_unavailable")
    );
    assert_eq!(w.api.hits(), 0);
    // Answers cannot be taken meanwhile either.
    let answer = admin(
        &w.replicas[1],
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    let record = common::wait_record(&w.replicas[0], |r| r["approval"]["id"] == id.as_str()).await;
    assert_eq!(record["reason"], "cluster_unavailable");
    assert_eq!(record["approval"]["outcome"], "lease_expired");
    w.redis.restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_at_a_time_mints_a_tasks_token_and_each_gets_its_own() {
    let Some(redis) = RedisServer::start("cluster mint lock test") else {
        return;
    };
    const NAMES: &[&str] = &["api.github.test"];
    let ca = TestCa::new("github test CA");
    let key = AppKey::generate();
    let gh = FakeGitHub::start(GitHubSpec::standard(&key), ca.server_config(NAMES)).await;
    gh.set_mint_delay(Duration::from_millis(300));
    let policy = format!(
        r#"name: coder
secrets:
  GITHUB_TOKEN:
    github_app:
      app_id: {APP_ID}
      installation_id: {ACME_INSTALLATION}
      private_key: {{ env: GH_APP_KEY }}
      repositories: [widgets]
      permissions: {{ contents: read }}
      api: {api}
    hosts: [api.github.test]
rules:
  - name: github api
    host: api.github.test
    port: {port}
    inject: [GITHUB_TOKEN]
"#,
        api = gh.api_base("api.github.test"),
        port = gh.port
    );
    let mut setup = ProxySetup::with_policy("coder", &policy)
        .trust(&ca.cert_pem)
        .resolve("api.github.test", gh.port);
    setup.env = vec![("TOLLGATE_SECRET_GH_APP_KEY".into(), key.pem.clone())];
    let keys = SharedKeys::new();
    let replicas = start_replicas(3, &setup, &redis, &keys);
    common::redis::wait_ready(&replicas, 200, Duration::from_secs(10)).await;
    let (_, proxy_url) = create_task(&replicas[0], r#"{"policy":"coder","ttl":"10m"}"#).await;
    let url = format!("https://api.github.test:{}/repos/acme/widgets", gh.port);

    let mut calls = Vec::new();
    for replica in &replicas {
        for _ in 0..2 {
            let args: Vec<String> = vec![
                "--proxy".into(),
                via(&proxy_url, replica),
                "--cacert".into(),
                replica.ca_pem.to_str().unwrap().into(),
                "-H".into(),
                "Authorization: Bearer __GITHUB_TOKEN__".into(),
                url.clone(),
            ];
            calls.push(tokio::spawn(async move {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                curl_raw(&refs).await
            }));
        }
    }
    for call in calls {
        let out = call.await.unwrap();
        assert_eq!(
            out.status, 200,
            "every replica got a working token: {out:?}"
        );
    }
    let mut mints: Vec<_> = gh
        .mints()
        .into_iter()
        .filter(|m| m.token.is_some())
        .collect();
    // Each replica mints its own copy (the value never goes through Redis).
    assert_eq!(mints.len(), 3, "one mint per replica: {mints:?}");
    let tokens: std::collections::BTreeSet<_> = mints.iter().map(|m| m.token.clone()).collect();
    assert_eq!(tokens.len(), 3);
    mints.sort_by_key(|m| m.started);
    for pair in mints.windows(2) {
        assert!(
            pair[1].started >= pair[0].ended,
            "two replicas minted for the task at the same time: {:?} began {:?} before {:?} ended",
            pair[1].token,
            pair[0].ended.saturating_duration_since(pair[1].started),
            pair[0].token
        );
    }
    // Every lock was released by its owner (none left to expire).
    assert_eq!(
        redis
            .command("EVAL \"return #redis.call('KEYS','tollgate:mint:*')\" 0")
            .as_deref(),
        Some(":0")
    );
}
