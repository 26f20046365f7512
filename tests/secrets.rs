//! Placeholders swapped for secrets (env backend), bound to their rules and hosts,
//! and scrubbed out of everything the upstream sends back.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::curl;
use common::fixture::ApiUpstream;
use common::upstream::{start_upstream, Upstream};

/// The secret value; it must never reach the sandbox or the logs.
const VALUE: &str = "ghp_R3alT0kenValue+/=42";

/// What this file starts besides `api.test`.
struct More {
    /// A second upstream, `other.test`, signed by the same CA.
    other: Upstream,
}

type Fixture = common::fixture::Fixture<More>;

async fn fixture(env: Vec<(String, String)>) -> Fixture {
    let up = ApiUpstream::start(&["api.test"]).await;
    let other = start_upstream(Some(up.ca.server_config(&["other.test"]))).await;
    let yaml = format!(
        r#"name: main
secrets:
  GH_TOKEN:
    env: GH
    hosts: [api.test]
  MISSING:
    env: NOT_SET_ANYWHERE
    hosts: [api.test]
rules:
  - name: api
    host: api.test
    port: {a}
    paths: ["/echo", "/echo-header", "/echo-gzip", "/echo/**", "/ws-auth", "/readback"]
    inject: [GH_TOKEN, MISSING]
  - name: api body
    host: api.test
    port: {a}
    methods: [POST]
    paths: ["/echo-body"]
    inject: [GH_TOKEN]
    inject_body: true
  - name: api no inject
    host: api.test
    port: {a}
    paths: ["/plain/**"]
  - name: other
    host: other.test
    port: {o}
    inject: [GH_TOKEN]
"#,
        a = up.api.port,
        o = other.port
    );
    let mut setup = up.setup("main", &yaml).resolve("other.test", other.port);
    setup.env = env;
    up.serve(More { other }, setup)
}

async fn default_fixture() -> Fixture {
    fixture(vec![("TOLLGATE_SECRET_GH".into(), VALUE.into())]).await
}

fn seen_header(up: &Upstream, name: &str) -> Vec<String> {
    up.seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r["headers"][name].as_str().map(str::to_string))
        .collect()
}

fn assert_no_leak(f: &Fixture, out: &common::CurlOut) {
    assert!(!out.body.contains(VALUE), "secret in body: {}", out.body);
    assert!(
        !out.headers.contains(VALUE),
        "secret in headers: {}",
        out.headers
    );
    assert!(
        !f.proxy.logs().join("\n").contains(VALUE),
        "secret in tollgate's logs"
    );
}

#[tokio::test]
async fn bearer_header_is_injected_and_scrubbed_from_the_echo() {
    let f = default_fixture().await;
    let out = curl(
        &f.proxy,
        &["-H", "Authorization: Bearer __GH_TOKEN__", &f.url("/echo")],
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(
        seen_header(&f.api, "authorization"),
        vec![format!("Bearer {VALUE}")],
        "upstream got the real value"
    );
    assert_eq!(
        out.json()["headers"]["authorization"],
        "Bearer __GH_TOKEN__",
        "sandbox sees the placeholder"
    );
    assert_no_leak(&f, &out);
    let line = common::wait_log(&f.proxy, &["path=/echo ", "status="]).await;
    assert!(line.contains("secrets=GH_TOKEN"), "{line}");
}

#[tokio::test]
async fn basic_credentials_and_query_are_injected() {
    let f = default_fixture().await;
    let out = curl(
        &f.proxy,
        &[
            "-u",
            "x-access-token:__GH_TOKEN__",
            &f.url("/echo?token=__GH_TOKEN__&keep=__NOT_DECLARED__"),
        ],
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{VALUE}"))
    );
    assert_eq!(seen_header(&f.api, "authorization"), vec![expected]);
    let path = f.api.seen.lock().unwrap()[0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        path,
        "/echo?token=ghp_R3alT0kenValue%2B%2F%3D42&keep=__NOT_DECLARED__"
    );
    let echoed = out.json();
    let placeholder_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("x-access-token:__GH_TOKEN__")
    );
    assert_eq!(
        echoed["headers"]["authorization"],
        placeholder_basic.as_str()
    );
    assert_eq!(
        echoed["path"],
        "/echo?token=__GH_TOKEN__&keep=__NOT_DECLARED__"
    );
    assert_no_leak(&f, &out);
}

#[tokio::test]
async fn echo_in_headers_and_gzip_bodies_is_scrubbed() {
    let f = default_fixture().await;
    let h = curl(
        &f.proxy,
        &[
            "-H",
            "Authorization: token __GH_TOKEN__",
            &f.url("/echo-header?q=__GH_TOKEN__"),
        ],
    )
    .await;
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(
        h.header("x-echo-auth").as_deref(),
        Some("token __GH_TOKEN__")
    );
    assert_eq!(h.header("set-cookie").as_deref(), Some("q=q=__GH_TOKEN__"));
    assert_no_leak(&f, &h);

    // --compressed makes curl ask for gzip; the upstream compresses regardless.
    let gz = curl(
        &f.proxy,
        &[
            "--compressed",
            "-H",
            "Authorization: Bearer __GH_TOKEN__",
            &f.url("/echo-gzip"),
        ],
    )
    .await;
    assert_eq!(gz.status, 200, "{gz:?}");
    assert_eq!(gz.json()["headers"]["authorization"], "Bearer __GH_TOKEN__");
    assert_eq!(
        seen_header(&f.api, "accept-encoding")
            .last()
            .map(String::as_str),
        Some("identity")
    );
    assert_no_leak(&f, &gz);
}

#[tokio::test]
async fn placeholder_where_it_may_not_go_is_refused() {
    let f = default_fixture().await;
    let other = curl(
        &f.proxy,
        &[
            "-H",
            "Authorization: Bearer __GH_TOKEN__",
            &format!("https://other.test:{}/x", f.more.other.port),
        ],
    )
    .await;
    assert_eq!(other.status, 403, "{other:?}");
    assert_eq!(
        other.header("x-tollgate-reason").as_deref(),
        Some("secret_not_allowed")
    );
    assert_eq!(f.more.other.hits(), 0, "the other host saw nothing");

    let no_inject = curl(&f.proxy, &["-H", "X-Key: __GH_TOKEN__", &f.url("/plain/x")]).await;
    assert_eq!(no_inject.status, 403, "{no_inject:?}");
    assert_eq!(no_inject.json()["error"], "secret_not_allowed");
    assert_eq!(no_inject.json()["rule"], "api no inject");

    let in_path = curl(&f.proxy, &[&f.url("/echo/__GH_TOKEN__")]).await;
    assert_eq!(in_path.status, 403, "{in_path:?}");
    assert_eq!(f.api.hits(), 0, "nothing was forwarded");

    let undeclared = curl(
        &f.proxy,
        &["-H", "X-Key: __SOMETHING_ELSE__", &f.url("/plain/x")],
    )
    .await;
    assert_eq!(
        undeclared.status, 200,
        "undeclared placeholders pass through: {undeclared:?}"
    );
    assert_eq!(
        seen_header(&f.api, "x-key"),
        vec!["__SOMETHING_ELSE__".to_string()]
    );
}

#[tokio::test]
async fn inject_body_fixes_content_length_and_limits_size() {
    let f = default_fixture().await;
    let out = curl(
        &f.proxy,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "{\"token\":\"__GH_TOKEN__\"}",
            &f.url("/echo-body"),
        ],
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    let body = format!("{{\"token\":\"{VALUE}\"}}");
    // The upstream saw the real value with a matching Content-Length; the echo comes back scrubbed.
    assert_eq!(
        out.body,
        format!(
            "content-length={n} actual={n} body={{\"token\":\"__GH_TOKEN__\"}}",
            n = body.len()
        )
    );
    assert_no_leak(&f, &out);

    let big = common::write_file(f.proxy.dir.path(), "big.json", &"x".repeat(1024 * 1024 + 1));
    // HTTP/1.1: curl 7.88 reports an early answer plus RST_STREAM(NO_ERROR) on h2 as an error.
    let too_big = curl(
        &f.proxy,
        &[
            "--http1.1",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", big.display()),
            &f.url("/echo-body"),
        ],
    )
    .await;
    assert_eq!(too_big.status, 413, "{too_big:?}");
    assert_eq!(too_big.json()["error"], "body_too_large");
    // Without a Content-Length the limit is enforced while reading.
    let chunked = curl(
        &f.proxy,
        &[
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", big.display()),
            &f.url("/echo-body"),
        ],
    )
    .await;
    assert_eq!(chunked.status, 413, "{chunked:?}");
}

#[tokio::test]
async fn missing_secret_gives_503_and_other_requests_still_work() {
    let f = fixture(vec![]).await;
    let out = curl(
        &f.proxy,
        &["-H", "Authorization: Bearer __GH_TOKEN__", &f.url("/echo")],
    )
    .await;
    assert_eq!(out.status, 503, "{out:?}");
    assert_eq!(out.json()["error"], "secret_unavailable");
    assert!(out.json()["message"].as_str().unwrap().contains("GH_TOKEN"));
    assert_eq!(f.api.hits(), 0);
    let plain = curl(&f.proxy, &[&f.url("/echo")]).await;
    assert_eq!(
        plain.status, 200,
        "requests needing no secret are unaffected: {plain:?}"
    );
}

#[tokio::test]
async fn websocket_frames_echoing_the_secret_are_scrubbed() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let f = default_fixture().await;
    let target = format!("api.test:{}", f.api.port);
    let tcp = common::connect_tunnel(&f.proxy, &target).await;
    let tls = common::tls_via_proxy(&f.proxy, "api.test", tcp).await;
    let mut request = format!("wss://{target}/ws-auth")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer __GH_TOKEN__".parse().unwrap());
    request.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate".parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    let greeting = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        greeting.into_text().unwrap().as_str(),
        "Bearer __GH_TOKEN__",
        "the echoed credential is scrubbed"
    );
    assert_eq!(
        seen_header(&f.api, "authorization"),
        vec![format!("Bearer {VALUE}")]
    );
    assert!(
        seen_header(&f.api, "sec-websocket-extensions").is_empty(),
        "no compression on scrubbed sockets"
    );
    ws.send(Message::text(format!("long {} message", "x".repeat(300))))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().len(), 5 + 300 + 8);
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn a_stored_secret_handed_back_later_is_scrubbed_too() {
    let f = default_fixture().await;
    let put = curl(
        &f.proxy,
        &["-H", "Authorization: Bearer __GH_TOKEN__", &f.url("/echo")],
    )
    .await;
    assert_eq!(put.status, 200, "{put:?}");
    // This request carries no placeholder; the upstream answers with what it stored.
    let got = curl(&f.proxy, &["--compressed", &f.url("/readback")]).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, "stored: Bearer __GH_TOKEN__");
    assert_no_leak(&f, &got);
}
