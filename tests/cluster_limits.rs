//! Cluster mode's shared limits, with a real redis-server and three tollgate
//! replicas on loopback: rate limits, `max_concurrent` and budgets hold for
//! the fleet, not per replica; a dead replica's slots come back; and a Redis
//! that cannot answer one of these checks refuses (503), never lets through.

mod common;

use common::redis::{start_replicas, via, wait_ready, RedisServer, SharedKeys};
use common::upstream::{start_upstream, Upstream};
use common::{admin_call, create_task, curl_raw, curl_via, CurlOut, ProxyProc, ProxySetup};
use std::time::{Duration, Instant};

/// A policy `main` over a plain-HTTP upstream `api.test` (no CONNECT: each
/// request is one request slot and nothing else).
fn setup(api: &Upstream, policy_extra: &str, rules_extra: &str) -> ProxySetup {
    let yaml = format!(
        "name: main\n{policy_extra}rules:\n  - name: api\n    host: api.test\n    port: {p}\n    paths: [\"/x\", \"/slow\"]\n{rules_extra}",
        p = api.port
    );
    ProxySetup::with_policy("main", &yaml).resolve("api.test", api.port)
}

/// Three replicas of `setup` on a fresh Redis, ready.
async fn fleet(
    test: &str,
    setup: &ProxySetup,
) -> Option<(RedisServer, SharedKeys, Vec<ProxyProc>)> {
    let redis = RedisServer::start(test)?;
    let keys = SharedKeys::new();
    let replicas = start_replicas(3, setup, &redis, &keys);
    wait_ready(&replicas, 200, Duration::from_secs(10)).await;
    Some((redis, keys, replicas))
}

async fn get(replica: &ProxyProc, proxy_url: &str, url: &str) -> CurlOut {
    curl_via(replica, &via(proxy_url, replica), &[url]).await
}

fn reason(out: &CurlOut) -> String {
    out.header("X-Tollgate-Reason").unwrap_or_default()
}

fn retry_after(out: &CurlOut) -> u64 {
    out.header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_rate_limit_holds_for_the_fleet_with_its_burst() {
    let api = start_upstream(None).await;
    let burst_rule = "  - name: burst\n    host: api.test\n    port: PORT\n    paths: [\"/b\"]\n    rate: { requests: 60, per: 1m, burst: 3 }\n"
        .replace("PORT", &api.port.to_string());
    let setup = setup(&api, "rate: { requests: 10, per: 1m }\n", &burst_rule);
    let Some((_redis, _keys, replicas)) = fleet("cluster rate-limit test", &setup).await else {
        return;
    };
    let x = format!("http://api.test:{}/x", api.port);
    let b = format!("http://api.test:{}/b", api.port);

    // 10 a minute, burst defaulting to 10: 30 requests spread over three
    // replicas admit 10, not 30.
    let (_, proxy_url) = create_task(&replicas[0], r#"{"policy":"main"}"#).await;
    let started = Instant::now();
    let mut admitted = 0;
    let mut refused = Vec::new();
    for i in 0..30 {
        let out = get(&replicas[i % 3], &proxy_url, &x).await;
        match out.status {
            200 => admitted += 1,
            429 => refused.push(out),
            _ => panic!("{out:?}"),
        }
    }
    // One more every 6 s: a slow run may see one refilled.
    let refilled = (started.elapsed().as_secs() / 6) as usize;
    assert!(
        (10..=10 + refilled).contains(&admitted),
        "admitted {admitted} in {:?}",
        started.elapsed()
    );
    for out in &refused {
        assert_eq!(reason(out), "rate_limited", "{out:?}");
        assert_eq!(
            out.json()["message"]
                .as_str()
                .map(|m| m.contains("policy main")),
            Some(true),
            "{out:?}"
        );
        let wait = retry_after(out);
        assert!((1..=6).contains(&wait), "Retry-After {wait}: {out:?}");
    }

    // A rule's own rate, burst 3 then one a second, for the fleet; a request
    // the rule refuses takes nothing from the policy-wide limit.
    let (_, proxy_url) = create_task(&replicas[1], r#"{"policy":"main"}"#).await;
    for (i, replica) in replicas.iter().enumerate() {
        let out = get(replica, &proxy_url, &b).await;
        assert_eq!(out.status, 200, "burst {i}: {out:?}");
    }
    for replica in &replicas {
        let out = get(replica, &proxy_url, &b).await;
        assert_eq!(out.status, 429, "{out:?}");
        assert!(out.body.contains("rule `burst`"), "{out:?}");
        assert_eq!(retry_after(&out), 1, "{out:?}");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&replicas[2], &proxy_url, &b).await.status,
        200,
        "refilled"
    );
    assert_eq!(get(&replicas[0], &proxy_url, &b).await.status, 429);
    // 4 of the policy's 10 are used; the 4 refusals took none of the rest.
    let mut left = 0;
    for i in 0..8 {
        if get(&replicas[i % 3], &proxy_url, &x).await.status == 200 {
            left += 1;
        }
    }
    assert_eq!(
        left, 6,
        "refused requests must not use the policy-wide limit"
    );
}

#[tokio::test]
async fn max_concurrent_counts_the_fleet_and_a_dead_replica_gives_its_slots_back() {
    let api = start_upstream(None).await;
    let setup = setup(&api, "max_concurrent: 2\n", "");
    let Some((_redis, _keys, mut replicas)) = fleet("cluster max_concurrent test", &setup).await
    else {
        return;
    };
    let slow = format!("http://api.test:{}/slow", api.port);
    let x = format!("http://api.test:{}/x", api.port);
    let (_, proxy_url) = create_task(&replicas[0], r#"{"policy":"main"}"#).await;

    // Two slow requests in flight on A and B: the third, on C, is over the cap.
    let (a, b, c) = tokio::join!(
        get(&replicas[0], &proxy_url, &slow),
        get(&replicas[1], &proxy_url, &slow),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            get(&replicas[2], &proxy_url, &slow).await
        }
    );
    assert_eq!((a.status, b.status), (200, 200), "{a:?} {b:?}");
    assert_eq!(c.status, 429, "{c:?}");
    assert_eq!(retry_after(&c), 1, "{c:?}");
    assert!(c.body.contains("max_concurrent"), "{c:?}");
    // Released when they ended.
    assert_eq!(get(&replicas[2], &proxy_url, &x).await.status, 200);

    // A holds both places and dies (SIGKILL): they stay taken until the
    // leases expire, then come back.
    let hits = api.hits();
    let holders = {
        let a = via(&proxy_url, &replicas[0]);
        let ca = replicas[0].ca_pem.to_str().unwrap().to_string();
        let slow = slow.clone();
        tokio::spawn(async move {
            let one = [
                "--proxy",
                a.as_str(),
                "--cacert",
                ca.as_str(),
                slow.as_str(),
            ];
            tokio::join!(curl_raw(&one), curl_raw(&one))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while api.hits() < hits + 2 {
        assert!(Instant::now() < deadline, "the slow requests never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicas[0].kill_now();
    let killed = Instant::now();
    let _ = holders.await;
    let out = get(&replicas[1], &proxy_url, &x).await;
    assert_eq!(
        out.status, 429,
        "the dead replica's slots still count: {out:?}"
    );
    let back = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let out = get(&replicas[1], &proxy_url, &x).await;
        if out.status == 200 {
            break killed.elapsed();
        }
        assert_eq!(out.status, 429, "{out:?}");
        assert!(
            killed.elapsed() < Duration::from_secs(25),
            "the dead replica's slots never came back"
        );
    };
    assert!(
        back >= Duration::from_secs(8),
        "slots came back after {back:?}: before the leases could expire"
    );
}

#[tokio::test]
async fn a_budget_used_up_through_two_replicas_is_refused_on_the_third() {
    let api = start_upstream(None).await;
    let setup = setup(&api, "budgets: { requests: 5 }\n", "");
    let Some((redis, _keys, replicas)) = fleet("cluster budget test", &setup).await else {
        return;
    };
    let x = format!("http://api.test:{}/x", api.port);
    let (id, proxy_url) = create_task(&replicas[2], r#"{"policy":"main"}"#).await;
    for i in 0..5 {
        let out = get(&replicas[i % 2], &proxy_url, &x).await;
        assert_eq!(out.status, 200, "request {i}: {out:?}");
    }
    // Charges reach Redis in the background, within a flush or two. (Read
    // from Redis itself: C's own view is what is tested next.)
    let deadline = Instant::now() + Duration::from_secs(3);
    let used = format!(
        "EVAL \"return tonumber(redis.call('HGET', KEYS[1], 'requests') or 0)\" 1 tollgate:budget:{id}"
    );
    while redis.command(&used).as_deref() != Some(":5") {
        assert!(Instant::now() < deadline, "{:?}", redis.command(&used));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hits = api.hits();
    for replica in [&replicas[2], &replicas[0], &replicas[1]] {
        let out = get(replica, &proxy_url, &x).await;
        assert_eq!(out.status, 429, "{out:?}");
        assert_eq!(reason(&out), "budget_exceeded", "{out:?}");
        assert_eq!(out.header("Retry-After"), None, "{out:?}");
    }
    assert_eq!(api.hits(), hits, "nothing more went out");
    for replica in &replicas {
        let shown = admin_call(replica, "GET", &format!("/v1/tasks/{id}"), None).await;
        assert_eq!(shown.status, 200, "{shown:?}");
        let used = &shown.json()["budgets"]["requests"];
        assert_eq!(
            (&used["used"], &used["limit"]),
            (&5.into(), &5.into()),
            "{shown:?}"
        );
    }
}

#[tokio::test]
async fn a_redis_that_cannot_answer_a_limit_refuses_instead_of_skipping_it() {
    let api = start_upstream(None).await;
    let setup = setup(
        &api,
        "rate: { requests: 100, per: 1m }\nmax_concurrent: 4\nbudgets: { requests: 100 }\n",
        "",
    );
    let Some((mut redis, _keys, replicas)) = fleet("cluster limits outage test", &setup).await
    else {
        return;
    };
    let x = format!("http://api.test:{}/x", api.port);
    let (id, proxy_url) = create_task(&replicas[0], r#"{"policy":"main"}"#).await;
    assert_eq!(get(&replicas[1], &proxy_url, &x).await.status, 200);

    // Redis answers PING, but each check in turn fails (a key of the wrong
    // type): that check refuses 503, and nothing goes out.
    let hits = api.hits();
    for key in [
        format!("tollgate:rate:{id}:main"),
        format!("tollgate:inflight:{id}"),
        format!("tollgate:budget:{id}"),
    ] {
        let set = redis.command(&format!("SET {key} wrong-type"));
        assert_eq!(set.as_deref(), Some("+OK"));
        for replica in &replicas {
            let out = get(replica, &proxy_url, &x).await;
            assert_eq!(out.status, 503, "{key}: {out:?}");
            assert_eq!(reason(&out), "cluster_unavailable", "{key}: {out:?}");
        }
        redis.command(&format!("DEL {key}"));
        assert_eq!(get(&replicas[2], &proxy_url, &x).await.status, 200, "{key}");
    }
    assert_eq!(
        api.hits(),
        hits + 3,
        "only the requests after each repair went out"
    );

    // Redis gone: refused, not passed.
    redis.stop();
    let hits = api.hits();
    for replica in &replicas {
        let out = get(replica, &proxy_url, &x).await;
        assert_eq!(out.status, 503, "{out:?}");
        assert_eq!(reason(&out), "cluster_unavailable", "{out:?}");
    }
    assert_eq!(api.hits(), hits);
}

#[tokio::test]
async fn a_live_lease_is_renewed_past_its_ttl() {
    let api = start_upstream(None).await;
    let setup = setup(&api, "max_concurrent: 1\n", "");
    let Some((_redis, _keys, replicas)) = fleet("cluster lease renewal test", &setup).await else {
        return;
    };
    let target = format!("api.test:{}", api.port);
    // Inside an intercepted tunnel (the upstream speaks plain HTTP, so only
    // the CONNECT's answer matters).
    let through = format!("https://{target}/x");

    // A tunnel held open on A, idle, longer than a lease lives unrenewed
    // (15 s), still counts on B.
    let tcp = common::connect_tunnel(&replicas[0], &target).await;
    let held = common::tls_via_proxy(&replicas[0], "api.test", tcp).await;
    let early = tunnel_on(&replicas[1], &through).await;
    assert_eq!(early.connect_status, 429, "{early:?}");
    tokio::time::sleep(Duration::from_secs(18)).await;
    let out = tunnel_on(&replicas[1], &through).await;
    assert_eq!(out.connect_status, 429, "renewed: {out:?}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let out = tunnel_on(&replicas[1], &through).await;
        if out.connect_status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never freed: {out:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A request to `url` through a CONNECT tunnel opened on `replica` as its
/// default task.
async fn tunnel_on(replica: &ProxyProc, url: &str) -> CurlOut {
    curl_via(replica, &replica.url(), &[url]).await
}
