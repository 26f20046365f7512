//! Content rules on the wire, against a plain TLS upstream: the body a rule
//! reads goes upstream unchanged; what a rule cannot read (a compressed body,
//! one over 1 MiB) is 400 and never reaches the upstream; a GraphQL POST that
//! also carries its document in the URL is 400. (The MCP SDK and strawberry
//! end-to-end tests are tests/mcp.rs and tests/graphql.rs.)

mod common;

use common::upstream::{start_upstream, TestCa};
use common::{curl, start_proxy, ProxySetup};

const CALL: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1}}}"#;

async fn fixture() -> (common::ProxyProc, common::upstream::Upstream, String) {
    let ca = TestCa::new("content test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let yaml = format!(
        "name: main\nrules:\n  - name: tools\n    host: api.test\n    port: {p}\n    methods: [POST]\n    paths: [/echo-body]\n    jsonrpc: {{ methods: [tools/call], tools: [add] }}\n  - name: reads\n    host: api.test\n    port: {p}\n    paths: [/graphql]\n    graphql: {{ operations: [query] }}\n",
        p = api.port
    );
    let setup = ProxySetup::with_policy("main", &yaml)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    let base = format!("https://api.test:{}", api.port);
    (start_proxy(&setup), api, base)
}

#[tokio::test]
async fn the_body_a_rule_read_goes_upstream_unchanged() {
    let (proxy, api, base) = fixture().await;
    let url = format!("{base}/echo-body");
    let out = curl(
        &proxy,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            CALL,
            &url,
        ],
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(
        out.body,
        format!(
            "content-length={} actual={} body={CALL}",
            CALL.len(),
            CALL.len()
        )
    );
    assert_eq!(api.hits(), 1);
    // An allowed exchange is recorded when its response body ends.
    let record = common::wait_record(&proxy, |r| r["path"] == "/echo-body").await;
    assert_eq!(record["rpc"]["tool"], "add", "{record}");
    assert_eq!(record["bytes_up"], CALL.len(), "{record}");
}

#[tokio::test]
async fn a_body_the_rule_cannot_read_is_400_and_never_reaches_the_upstream() {
    let (proxy, api, base) = fixture().await;
    let url = format!("{base}/echo-body");
    // SECURITY: the upstream would decompress what tollgate could not read.
    let gzip = curl(
        &proxy,
        &["-H", "Content-Encoding: gzip", "--data-binary", CALL, &url],
    )
    .await;
    assert_eq!(gzip.status, 400, "{gzip:?}");
    assert_eq!(gzip.json()["error"], "bad_request");
    assert!(
        gzip.json()["message"]
            .as_str()
            .unwrap()
            .contains("Content-Encoding gzip"),
        "{gzip:?}"
    );
    // Padding after the call: valid JSON-RPC, but over the 1 MiB a rule reads.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"add","pad":"{}"}}}}"#,
        "x".repeat(1 << 20)
    );
    let file = common::write_file(proxy.dir.path(), "big.json", &big);
    let data = format!("@{}", file.display());
    let large = curl(&proxy, &["--data-binary", &data, &url]).await;
    assert_eq!(large.status, 400, "{large:?}");
    assert!(
        large.json()["message"]
            .as_str()
            .unwrap()
            .contains("byte limit"),
        "{large:?}"
    );
    // The same, without a declared length (chunked).
    let chunked = curl(
        &proxy,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &data,
            &url,
        ],
    )
    .await;
    assert_eq!(chunked.status, 400, "{chunked:?}");
    assert_eq!(api.hits(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn a_graphql_post_with_its_document_in_the_url_too_is_400() {
    let (proxy, api, base) = fixture().await;
    // A server that takes `query` from the URL would run the mutation.
    let url = format!("{base}/graphql?query=mutation%7BdeleteRepo%7D");
    let out = curl(
        &proxy,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"query":"{ viewer }"}"#,
            &url,
        ],
    )
    .await;
    assert_eq!(out.status, 400, "{out:?}");
    assert!(
        out.json()["message"].as_str().unwrap().contains("URL"),
        "{out:?}"
    );
    assert_eq!(api.hits(), 0);
}
