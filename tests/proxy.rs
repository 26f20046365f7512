//! End-to-end behaviour of the proxy, driven by real clients (curl, reqwest,
//! tungstenite) against real local upstreams.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::fixture::ApiUpstream;
use common::upstream::{start_upstream, TestCa, Upstream};
use common::{curl, curl_raw, start_proxy, ProxyProc, ProxySetup, TASK, TOKEN};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Names the test upstream certificate covers.
const UPSTREAM_NAMES: &[&str] = &[
    "api.test",
    "a.wild.test",
    "wild.test",
    "private.test",
    "pass.test",
    "127.0.0.1",
];

/// What this file starts besides the `api.test` upstream.
struct More {
    /// A plain-HTTP upstream for `plain.test`.
    plain: Upstream,
    /// A TLS upstream for `untrusted.test` whose CA the proxy does not trust.
    untrusted: Upstream,
}

type Fixture = common::fixture::Fixture<More>;

fn policy(tls: u16, plain: u16, untrusted: u16) -> String {
    format!(
        r#"name: main
description: test policy
rules:
  - name: block admin
    host: api.test
    port: {tls}
    paths: ["/admin/**"]
    action: deny
  - name: echo
    host: api.test
    port: {tls}
    methods: [GET, HEAD, POST]
    paths: ["/echo", "/echo/**", "/bytes/*", "/ws", "/ws-forged", "/slow", "/small", "/upload"]
  - name: one
    host: api.test
    port: {tls}
    methods: [GET]
    paths: ["/one/*"]
  - name: many
    host: api.test
    port: {tls}
    methods: [GET]
    paths: ["/many/**"]
  - name: wild
    host: "*.wild.test"
    port: {tls}
  - name: plain
    host: plain.test
    port: {plain}
  - name: private
    host: private.test
    port: {tls}
  - name: metadata
    host: 169.254.169.254
    port: 80
  - name: untrusted
    host: untrusted.test
    port: {untrusted}
tunnel:
  - {{ host: pass.test, port: {tls} }}
"#
    )
}

async fn fixture() -> Fixture {
    let up = ApiUpstream::start(UPSTREAM_NAMES).await;
    let tls = up.api.port;
    let plain = start_upstream(None).await;
    let rogue = TestCa::new("rogue CA");
    let untrusted = start_upstream(Some(rogue.server_config(&["untrusted.test"]))).await;
    let setup = up
        .setup("main", &policy(tls, plain.port, untrusted.port))
        .resolve("a.wild.test", tls)
        .resolve("wild.test", tls)
        .resolve("pass.test", tls)
        .resolve("plain.test", plain.port)
        .resolve("untrusted.test", untrusted.port);
    up.serve(More { plain, untrusted }, setup)
}

fn assert_refusal(out: &common::CurlOut, status: u16, reason: &str) {
    assert_eq!(out.status, status, "{out:?}");
    assert_eq!(
        out.header("x-tollgate-reason").as_deref(),
        Some(reason),
        "{out:?}"
    );
    let json = out.json();
    assert_eq!(json["error"], reason, "{out:?}");
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{out:?}"
    );
    assert!(
        json.get("task").is_some() && json.get("rule").is_some(),
        "{out:?}"
    );
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_407() {
    let f = fixture().await;
    let target = format!("http://plain.test:{}/echo", f.more.plain.port);
    let none = curl_raw(&["--proxy", &format!("http://{}", f.proxy.addr), &target]).await;
    assert_refusal(&none, 407, "proxy_auth_required");
    assert_eq!(
        none.header("proxy-authenticate").as_deref(),
        Some("Basic realm=\"tollgate\"")
    );
    assert!(none.json()["task"].is_null());

    let wrong = curl_raw(&[
        "--proxy",
        &format!("http://{TASK}:wrong@{}", f.proxy.addr),
        &target,
    ])
    .await;
    assert_refusal(&wrong, 407, "proxy_auth_required");

    let other_user = curl_raw(&[
        "--proxy",
        &format!("http://nobody:{TOKEN}@{}", f.proxy.addr),
        &target,
    ])
    .await;
    assert_refusal(&other_user, 407, "proxy_auth_required");

    // CONNECT is authenticated too.
    let ca = f.proxy.ca_pem.to_str().unwrap();
    let connect = curl_raw(&[
        "--proxy",
        &format!("http://{TASK}:wrong@{}", f.proxy.addr),
        "--cacert",
        ca,
        &f.url("/echo"),
    ])
    .await;
    assert_eq!(connect.connect_status, 407, "{connect:?}");
    assert_eq!(
        f.more.plain.hits() + f.api.hits(),
        0,
        "nothing may reach an upstream"
    );
}

#[tokio::test]
async fn allowed_request_reaches_upstream_without_proxy_credentials() {
    let f = fixture().await;
    let out = curl(&f.proxy, &["--http1.1", &f.url("/echo/x?q=1")]).await;
    assert_eq!(out.status, 200, "{out:?}");
    let json = out.json();
    assert_eq!(json["path"], "/echo/x?q=1");
    assert_eq!(json["authority"], format!("api.test:{}", f.api.port));
    assert!(
        json["headers"].get("proxy-authorization").is_none(),
        "task token leaked upstream"
    );
    assert_eq!(f.api.hits(), 1);
    // Logged when the exchange ends, which may be just after curl returns.
    let line = common::wait_log(&f.proxy, &["path=/echo/x", "status="]).await;
    let logs = f.proxy.logs().join("\n");
    for field in [
        "INFO",
        "task=agent",
        "method=GET",
        "host=api.test",
        "rule=echo",
        "decision=allow",
        "status=200",
        "duration_ms=",
    ] {
        assert!(
            line.contains(field),
            "`{field}` missing from the request log line: {line}"
        );
    }
    assert!(!logs.contains(TOKEN), "the task token must never be logged");
}

#[tokio::test]
async fn refusals_no_rule_deny_rule_and_unlisted_method() {
    let f = fixture().await;
    let no_rule = curl(&f.proxy, &[&f.url("/nothing/here")]).await;
    assert_refusal(&no_rule, 403, "no_rule");
    assert_eq!(no_rule.json()["task"], TASK);
    assert!(no_rule.json()["rule"].is_null());

    let denied = curl(&f.proxy, &[&f.url("/admin/users")]).await;
    assert_refusal(&denied, 403, "denied_by_rule");
    assert_eq!(denied.json()["rule"], "block admin");

    let method = curl(&f.proxy, &["-X", "DELETE", &f.url("/echo")]).await;
    assert_refusal(&method, 403, "no_rule");

    let connect_no_rule = curl(
        &f.proxy,
        &[&format!("https://nowhere.test:{}/", f.api.port)],
    )
    .await;
    assert_eq!(connect_no_rule.connect_status, 403, "{connect_no_rule:?}");
    assert_eq!(
        f.api.hits(),
        0,
        "refused requests must not reach the upstream"
    );
}

#[tokio::test]
async fn single_star_and_double_star_paths() {
    let f = fixture().await;
    for (path, status) in [
        ("/one/x", 200),
        ("/one/x/y", 403),
        ("/one/", 403),
        ("/many", 200),
        ("/many/", 200),
        ("/many/x/y/z", 200),
        ("/manyx", 403),
    ] {
        let out = curl(&f.proxy, &[&f.url(path)]).await;
        assert_eq!(out.status, status, "{path}: {out:?}");
    }
}

#[tokio::test]
async fn host_case_trailing_dot_and_wildcard_apex() {
    let f = fixture().await;
    let upper = curl(
        &f.proxy,
        &[&format!("https://API.TEST:{}/echo", f.api.port)],
    )
    .await;
    assert_eq!(upper.status, 200, "{upper:?}");
    let dotted = curl(
        &f.proxy,
        &[
            "-H",
            &format!("Host: api.test.:{}", f.api.port),
            &format!("https://api.test.:{}/echo", f.api.port),
        ],
    )
    .await;
    assert_eq!(dotted.status, 200, "{dotted:?}");
    let sub = curl(
        &f.proxy,
        &[&format!("https://a.wild.test:{}/echo", f.api.port)],
    )
    .await;
    assert_eq!(sub.status, 200, "{sub:?}");
    let apex = curl(
        &f.proxy,
        &[&format!("https://wild.test:{}/echo", f.api.port)],
    )
    .await;
    assert_eq!(
        apex.connect_status, 403,
        "*.wild.test must not match wild.test: {apex:?}"
    );
}

#[tokio::test]
async fn ambiguous_paths_get_400_and_reach_nothing() {
    let f = fixture().await;
    for path in [
        "/echo/../admin/x",
        "/echo/%2e%2e/admin",
        "/echo%2Fadmin",
        "/echo/.%2E/admin",
        "/echo//x",
        "/echo;jsessionid=1",
        "/echo/..;/admin/x",
        "/echo/%5c",
    ] {
        let out = curl(&f.proxy, &["--path-as-is", &f.url(path)]).await;
        assert_refusal(&out, 400, "bad_request");
    }
    let plain = curl(
        &f.proxy,
        &[
            "--path-as-is",
            &format!("http://plain.test:{}/a/../b", f.more.plain.port),
        ],
    )
    .await;
    assert_refusal(&plain, 400, "bad_request");
    assert_eq!(
        f.api.hits() + f.more.plain.hits(),
        0,
        "the upstream saw a refused request"
    );
}

#[tokio::test]
async fn host_header_other_than_connect_target_gets_421() {
    let f = fixture().await;
    let out = curl(
        &f.proxy,
        &[
            "--http1.1",
            "-H",
            &format!("Host: a.wild.test:{}", f.api.port),
            &f.url("/echo"),
        ],
    )
    .await;
    assert_refusal(&out, 421, "host_mismatch");
    let port = curl(
        &f.proxy,
        &["--http1.1", "-H", "Host: api.test:1", &f.url("/echo")],
    )
    .await;
    assert_refusal(&port, 421, "host_mismatch");
    // HTTP/2: curl turns the Host header into :authority.
    let h2 = curl(
        &f.proxy,
        &[
            "--http2",
            "-H",
            &format!("Host: a.wild.test:{}", f.api.port),
            &f.url("/echo"),
        ],
    )
    .await;
    assert_eq!(h2.version, "2", "{h2:?}");
    assert_refusal(&h2, 421, "host_mismatch");
    assert_eq!(f.api.hits(), 0);
}

#[tokio::test]
async fn private_destinations_get_403() {
    let ca = TestCa::new("upstream test CA");
    let tls = start_upstream(Some(ca.server_config(&["private.test", "api.test"]))).await;
    let yaml = format!(
        "name: main\nrules:\n  - {{ host: private.test, port: {p} }}\n  - {{ host: api.test, port: {p} }}\n  - {{ host: 169.254.169.254, port: 80 }}\n  - {{ host: 169.254.169.253, port: 80 }}\n  - {{ host: 10.0.0.1 }}\ntunnel:\n  - {{ host: tunnel.test, port: {p} }}\n",
        p = tls.port
    );
    // 127.0.0.2 is loopback but outside the allowed 127.0.0.1/32; nothing listens there.
    let setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", tls.port)
        .resolve_addr("private.test", &format!("127.0.0.2:{}", tls.port))
        .resolve_addr("tunnel.test", &format!("127.0.0.2:{}", tls.port));
    let proxy = start_proxy(&setup);

    let private = curl(&proxy, &[&format!("https://private.test:{}/", tls.port)]).await;
    assert_refusal(&private, 403, "private_destination");
    let link_local = curl(&proxy, &["http://169.254.169.253/latest/meta-data/"]).await;
    assert_refusal(&link_local, 403, "private_destination");
    // The metadata address is answered by the emulation (tests/metadata.rs),
    // whatever the rules say: 404 under a policy without cloud secrets.
    let metadata = curl(&proxy, &["http://169.254.169.254/latest/meta-data/"]).await;
    assert_eq!(metadata.status, 404, "{metadata:?}");
    assert_eq!(metadata.header("x-tollgate-reason"), None, "{metadata:?}");
    let rfc1918 = curl(&proxy, &["https://10.0.0.1/"]).await;
    assert_refusal(&rfc1918, 403, "private_destination");
    let tunnel = curl(&proxy, &[&format!("https://tunnel.test:{}/", tls.port)]).await;
    assert_eq!(tunnel.connect_status, 403, "{tunnel:?}");
    assert_eq!(tls.hits(), 0);
    // The allowed loopback address still works.
    let ok = curl(&proxy, &[&format!("https://api.test:{}/echo", tls.port)]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

#[tokio::test]
async fn untrusted_upstream_certificate_gets_502() {
    let f = fixture().await;
    let out = curl(
        &f.proxy,
        &[&format!(
            "https://untrusted.test:{}/echo",
            f.more.untrusted.port
        )],
    )
    .await;
    assert_refusal(&out, 502, "upstream_error");
    assert_eq!(
        f.more.untrusted.hits(),
        0,
        "no request may be sent over an unverified connection"
    );
}

#[tokio::test]
async fn curl_http2_negotiates_h2_end_to_end() {
    let f = fixture().await;
    let out = curl(&f.proxy, &["--http2", &f.url("/echo")]).await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.version, "2", "client side should be h2: {out:?}");
    assert_eq!(
        out.json()["version"],
        "HTTP/2.0",
        "upstream side negotiated h2 by ALPN"
    );
    // Several requests on one h2 connection are each matched on their own.
    let a = f.url("/echo");
    let b = f.url("/admin/x");
    let both = curl(&f.proxy, &["--http2", &a, &b]).await;
    assert!(both.headers.contains("HTTP/2 200"), "{both:?}");
    assert!(
        both.headers.contains("HTTP/2 403"),
        "second stream must be refused on its own: {both:?}"
    );
}

#[tokio::test]
async fn an_http1_client_gets_an_http1_upstream() {
    let f = fixture().await;
    let out = curl(&f.proxy, &["--http1.1", &f.url("/echo")]).await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(
        out.json()["version"],
        "HTTP/1.1",
        "an HTTP/1.1 client's request goes upstream over HTTP/1.1, though the upstream offers h2"
    );
}

#[tokio::test]
async fn plain_http_absolute_form_works() {
    let f = fixture().await;
    let out = curl(
        &f.proxy,
        &[&format!("http://plain.test:{}/echo?x=1", f.more.plain.port)],
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.json()["path"], "/echo?x=1");
    assert!(out.json()["headers"].get("proxy-authorization").is_none());
    let denied = curl(
        &f.proxy,
        &[&format!("http://plain.test:{}/echo", f.more.plain.port + 1)],
    )
    .await;
    assert_refusal(&denied, 403, "no_rule");
}

#[tokio::test]
async fn tunnel_passthrough_shows_the_upstream_certificate() {
    let f = fixture().await;
    let url = format!("https://pass.test:{}/echo", f.api.port);
    let upstream_ca =
        common::write_file(f.proxy.dir.path(), "only-upstream-ca.pem", &f.ca.cert_pem);
    // Trusting only the upstream's CA works: the client talks TLS with the upstream itself.
    let direct = curl_raw(&[
        "--proxy",
        &f.proxy.url(),
        "--cacert",
        upstream_ca.to_str().unwrap(),
        &url,
    ])
    .await;
    assert_eq!(direct.status, 200, "{direct:?}");
    // Trusting only tollgate's CA fails: nothing was intercepted.
    let mitm = curl(&f.proxy, &[&url]).await;
    assert_eq!(mitm.exit, 60, "expected a certificate error: {mitm:?}");
    // And an intercepted host is the other way round.
    let intercepted = curl_raw(&[
        "--proxy",
        &f.proxy.url(),
        "--cacert",
        upstream_ca.to_str().unwrap(),
        &f.url("/echo"),
    ])
    .await;
    assert_eq!(intercepted.exit, 60, "{intercepted:?}");
}

/// A WebSocket to `api.test/ws` (the echo) through an intercepted tunnel
/// opened with `task`'s credentials.
async fn websocket_as(
    f: &Fixture,
    task: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut tcp = tokio::net::TcpStream::connect(f.proxy.addr).await.unwrap();
    let auth = base64_basic(task, token);
    let target = format!("api.test:{}", f.api.port);
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let tls = tls_to(&f.proxy, "api.test", tcp, &[b"http/1.1"]).await;
    let (ws, resp) = tokio_tungstenite::client_async(format!("wss://{target}/ws"), tls)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

#[tokio::test]
async fn websocket_echo_through_intercepted_tunnel() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let f = fixture().await;
    let mut ws = websocket_as(&f, TASK, TOKEN).await;
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.close(None).await.unwrap();
    drop(ws);
    // The exchange is audited when the socket closes, with the frames' bytes.
    let record = common::wait_record(&f.proxy, |r| r["path"] == "/ws").await;
    assert_eq!(record["status"], 101, "{record}");
    assert_eq!(record["decision"], "allow");
    // Three masked client frames of 7 bytes (13 on the wire each) plus the close.
    assert!(record["bytes_up"].as_u64().unwrap() >= 39, "{record}");
    assert!(record["bytes_down"].as_u64().unwrap() >= 27, "{record}");
}

#[tokio::test]
async fn ending_the_task_closes_its_open_websocket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let f = fixture().await;
    let (task, proxy_url) = common::create_task(&f.proxy, r#"{"policy":"main"}"#).await;
    let token = proxy_url
        .trim_start_matches("http://")
        .split('@')
        .next()
        .and_then(|creds| creds.split_once(':'))
        .map(|(_, token)| token.to_string())
        .unwrap();
    let mut ws = websocket_as(&f, &task, &token).await;
    ws.send(Message::text("before")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "before");

    assert_eq!(common::delete_task(&f.proxy, &task).await, 200);
    // The session ends with its task: nothing more is echoed.
    let _ = ws.send(Message::text("after")).await;
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the websocket was closed, not left open");
    assert!(
        !matches!(&next, Some(Ok(Message::Text(t))) if t.as_str() == "after"),
        "{next:?}"
    );
}

#[tokio::test]
async fn websocket_to_a_refused_path_is_refused() {
    let f = fixture().await;
    let out = curl(
        &f.proxy,
        &[
            "--http1.1",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Connection: Upgrade",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "-H",
            "Sec-WebSocket-Version: 13",
            &f.url("/admin/ws"),
        ],
    )
    .await;
    assert_refusal(&out, 403, "denied_by_rule");
}

#[tokio::test]
async fn large_download_streams_with_bounded_memory() {
    let f = fixture().await;
    const SIZE: u64 = 64 * 1024 * 1024;
    let client = common::reqwest_client(&f.proxy);
    let baseline = f.proxy.peak_rss_kib();
    let mut resp = client
        .get(f.url(&format!("/bytes/{SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut expected = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut received = 0u64;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        let pattern: Vec<u8> = (received..received + chunk.len() as u64)
            .map(common::upstream::pattern_byte)
            .collect();
        expected.update(&pattern);
        ctx.update(&chunk);
        received += chunk.len() as u64;
    }
    assert_eq!(received, SIZE);
    assert_eq!(
        ctx.finish().as_ref(),
        expected.finish().as_ref(),
        "sha256 of the download differs"
    );
    let peak = f.proxy.peak_rss_kib();
    eprintln!("proxy peak RSS: baseline {baseline} KiB, after 64 MiB download {peak} KiB");
    assert!(
        peak < 48 * 1024,
        "peak RSS {peak} KiB suggests the body was buffered"
    );
}

#[tokio::test]
async fn garbage_on_the_proxy_port_does_not_stop_good_requests() {
    let f = fixture().await;
    for garbage in [
        &b"\x16\x03\x01\x00\xff garbage \x00\x01\x02\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"\xff\xfe\xfd\r\n\r\n",
        b"CONNECT\r\n\r\n",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(f.proxy.addr).await.unwrap();
        let _ = tcp.write_all(garbage).await;
        let mut buf = vec![0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    }
    // Garbage inside an accepted CONNECT tunnel, instead of a TLS ClientHello.
    let mut tcp = tokio::net::TcpStream::connect(f.proxy.addr).await.unwrap();
    let target = format!("api.test:{}", f.api.port);
    tcp.write_all(
        format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {}\r\n\r\n",
            base64_basic(TASK, TOKEN)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp.write_all(b"this is not TLS at all\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;

    let out = curl(&f.proxy, &[&f.url("/echo")]).await;
    assert_eq!(out.status, 200, "{out:?}");
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let mut f = fixture().await;
    let url = f.url("/slow");
    let proxy_url = f.proxy.url();
    let ca = f.proxy.ca_pem.to_str().unwrap().to_string();
    let slow =
        tokio::spawn(
            async move { curl_raw(&["--proxy", &proxy_url, "--cacert", &ca, &url]).await },
        );
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.proxy.terminate();
    let out = slow.await.unwrap();
    assert_eq!(out.status, 200, "in-flight request must finish: {out:?}");
    assert_eq!(out.body, "slow done");
    let status = f
        .proxy
        .wait_exit(Duration::from_secs(15))
        .expect("proxy did not exit");
    assert!(
        status.success(),
        "serve must exit 0 after a clean drain: {status:?}"
    );
    // It no longer accepts.
    assert!(tokio::net::TcpStream::connect(f.proxy.addr).await.is_err());
}

#[tokio::test]
async fn reqwest_client_through_the_proxy() {
    let f = fixture().await;
    let client = common::reqwest_client(&f.proxy);
    for _ in 0..3 {
        let resp = client
            .post(f.url("/echo"))
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let json: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(json["method"], "POST");
    }
    let denied = client.get(f.url("/admin/x")).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.headers()["x-tollgate-reason"], "denied_by_rule");
}

fn base64_basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

async fn read_head(tcp: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).to_string()
}

async fn tls_to(
    proxy: &ProxyProc,
    name: &str,
    tcp: tokio::net::TcpStream,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    try_tls_to(proxy, name, tcp, alpn).await.unwrap()
}

async fn try_tls_to(
    proxy: &ProxyProc,
    name: &str,
    tcp: tokio::net::TcpStream,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(&proxy.ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    connector
        .connect(
            rustls_pki_types::ServerName::try_from(name.to_string()).unwrap(),
            tcp,
        )
        .await
}

#[tokio::test]
async fn source_binding_and_source_only_tasks() {
    let ca = TestCa::new("upstream test CA");
    let tls = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let yaml = format!(
        "name: main\nrules:\n  - {{ host: api.test, port: {} }}\n",
        tls.port
    );
    let mut setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", tls.port);
    setup.extra_tasks = vec![
        "{ id: elsewhere, policy: main, token_env: TEST_AGENT_TOKEN, source: 10.9.9.9 }".into(),
        "{ id: local, policy: main, source: 127.0.0.1 }".into(),
    ];
    let proxy = start_proxy(&setup);
    let ca_pem = proxy.ca_pem.to_str().unwrap().to_string();
    let url = format!("https://api.test:{}/echo", tls.port);

    // Right token, wrong source address: 407.
    let bound = curl_raw(&[
        "--proxy",
        &format!("http://elsewhere:{TOKEN}@{}", proxy.addr),
        "--cacert",
        &ca_pem,
        &url,
    ])
    .await;
    assert_eq!(bound.connect_status, 407, "{bound:?}");
    // No credentials at all, from the source-only task's address: allowed.
    let by_source = curl_raw(&[
        "--proxy",
        &format!("http://{}", proxy.addr),
        "--cacert",
        &ca_pem,
        &url,
    ])
    .await;
    assert_eq!(by_source.status, 200, "{by_source:?} {:?}", proxy.logs());
    // The exchange is logged and audited when it ends, just after curl returns.
    let record = common::wait_record(&proxy, |r| r["task"] == "local").await;
    assert_eq!(record["status"], 200);
    assert_eq!(tls.hits(), 1);
}

#[tokio::test]
async fn upstream_that_stalls_the_handshake_gets_504() {
    // Accepts TCP and then says nothing: the TLS handshake never completes.
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = stall.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = stall.accept().await {
            conns.push(c);
        }
    });
    let yaml = format!("name: main\nrules:\n  - {{ host: stall.test, port: {port} }}\n");
    let proxy = start_proxy(&ProxySetup::with_policy("main", &yaml).resolve("stall.test", port));
    let started = std::time::Instant::now();
    let out = curl(&proxy, &[&format!("https://stall.test:{port}/")]).await;
    assert_refusal(&out, 504, "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "connect_timeout (3s) must bound the handshake"
    );
    held.abort();
}

#[tokio::test]
async fn method_and_url_override_headers_are_refused() {
    let f = fixture().await;
    for header in [
        "X-HTTP-Method-Override: DELETE",
        "X-Original-URL: /admin/users",
        "X-Rewrite-URL: /admin/users",
        "X-HTTP-Method: DELETE",
    ] {
        let out = curl(&f.proxy, &["-X", "POST", "-H", header, &f.url("/echo")]).await;
        assert_refusal(&out, 400, "bad_request");
    }
    assert_eq!(f.api.hits(), 0);
}

#[tokio::test]
async fn forged_protocol_switch_is_not_spliced() {
    let f = fixture().await;
    let ws_headers = [
        "-H",
        "Upgrade: websocket",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "-H",
        "Sec-WebSocket-Version: 13",
    ];
    let mut args: Vec<&str> = vec!["--http1.1"];
    args.extend_from_slice(&ws_headers);
    let url = f.url("/ws-forged");
    args.push(&url);
    let out = curl(&f.proxy, &args).await;
    assert_refusal(&out, 502, "upstream_error");
}

#[tokio::test]
async fn sni_other_than_connect_target_gets_no_certificate_for_it() {
    let f = fixture().await;
    let mut tcp = tokio::net::TcpStream::connect(f.proxy.addr).await.unwrap();
    let target = format!("api.test:{}", f.api.port);
    tcp.write_all(
        format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {}\r\n\r\n",
            base64_basic(TASK, TOKEN)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert!(read_head(&mut tcp).await.starts_with("HTTP/1.1 200"));
    let result = try_tls_to(&f.proxy, "a.wild.test", tcp, &[b"http/1.1"]).await;
    let Err(err) = result else {
        panic!("a certificate for another name than the CONNECT target must not be minted");
    };
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn tunnel_refuses_a_client_hello_for_another_host() {
    let f = fixture().await;
    let target = format!("pass.test:{}", f.api.port);
    let connect = |sni: &'static str| {
        let target = target.clone();
        let proxy_addr = f.proxy.addr;
        let pem = f.ca.cert_pem.clone();
        async move {
            let mut tcp = tokio::net::TcpStream::connect(proxy_addr).await.unwrap();
            tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {}\r\n\r\n", base64_basic(TASK, TOKEN)).as_bytes())
                .await
                .unwrap();
            assert!(read_head(&mut tcp).await.starts_with("HTTP/1.1 200"));
            // Trust the upstream's own CA: this is a passthrough tunnel.
            tls_with_roots(pem.as_bytes(), sni, tcp).await
        }
    };
    assert!(
        connect("pass.test").await.is_ok(),
        "the tunnel's own host must work"
    );
    // The upstream's certificate also covers api.test, so only tollgate can stop this.
    assert!(
        connect("api.test").await.is_err(),
        "SNI for another host must be cut"
    );
    let record = common::wait_record(&f.proxy, |r| {
        r["method"] == "CONNECT" && r["host"] == "pass.test" && r["decision"] == "deny"
    })
    .await;
    assert_eq!(record["reason"], "host_mismatch", "{record}");
}

async fn tls_with_roots(
    pem: &[u8],
    name: &str,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from(name.to_string()).unwrap(),
            tcp,
        )
        .await
}

#[tokio::test]
async fn one_task_cannot_hold_unbounded_tunnels() {
    const LIMIT: usize = 256; // the default max_concurrent
    assert_eq!(LIMIT, tollgate::policy::DEFAULT_MAX_CONCURRENT);
    let f = fixture().await;
    let target = format!("api.test:{}", f.api.port);
    let request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {}\r\n\r\n",
        base64_basic(TASK, TOKEN)
    );
    let mut held = Vec::with_capacity(LIMIT);
    for _ in 0..LIMIT {
        let mut tcp = tokio::net::TcpStream::connect(f.proxy.addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(tcp);
    }
    let mut extra = tokio::net::TcpStream::connect(f.proxy.addr).await.unwrap();
    extra.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut extra).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 429"), "{head}");
    assert!(
        head.contains("x-tollgate-reason: rate_limited") && head.contains("retry-after: 1"),
        "{head}"
    );
    drop(held);
    // Slots come back when tunnels close.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = curl(&f.proxy, &[&f.url("/echo")]).await;
        if out.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slots were not released: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn large_upload_streams_with_bounded_memory() {
    let f = fixture().await;
    const SIZE: usize = 48 * 1024 * 1024;
    let data: Vec<u8> = (0..SIZE as u64)
        .map(common::upstream::pattern_byte)
        .collect();
    let expected: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file = common::write_file_bytes(f.proxy.dir.path(), "upload.bin", &data);
    drop(data);
    for version in ["--http1.1", "--http2"] {
        let out = curl(
            &f.proxy,
            &[
                version,
                "--data-binary",
                &format!("@{}", file.display()),
                &f.url("/upload"),
            ],
        )
        .await;
        assert_eq!(out.status, 200, "{version}: {out:?}");
        assert_eq!(
            out.body,
            format!("{SIZE} {expected}"),
            "{version}: upload arrived changed"
        );
    }
    let peak = f.proxy.peak_rss_kib();
    eprintln!("proxy peak RSS after two 48 MiB uploads: {peak} KiB");
    assert!(
        peak < 48 * 1024,
        "peak RSS {peak} KiB suggests the upload was buffered"
    );
}

#[tokio::test]
async fn non_proxy_request_forms_get_400() {
    let f = fixture().await;
    // Origin-form sent to the proxy port, and absolute-form https without CONNECT.
    for head in [
        "GET /echo HTTP/1.1\r\nHost: api.test\r\n",
        "GET https://api.test/echo HTTP/1.1\r\nHost: api.test\r\n",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(f.proxy.addr).await.unwrap();
        tcp.write_all(
            format!(
                "{head}Proxy-Authorization: Basic {}\r\n\r\n",
                base64_basic(TASK, TOKEN)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let response = read_head(&mut tcp).await.to_ascii_lowercase();
        assert!(response.starts_with("http/1.1 400"), "{head}: {response}");
        assert!(
            response.contains("x-tollgate-reason: bad_request"),
            "{response}"
        );
    }
    assert_eq!(f.api.hits(), 0);
}
