//! `graphql` rules end to end (issue 16) with a real server: strawberry-graphql
//! (tests/graphql/server.py, over TLS) records every mutation it runs, so each
//! refusal is also checked at the server: a refused mutation never ran. Clients
//! are curl through tollgate, POST JSON and the GET `?query=` form.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::python::PyServer;
use common::upstream::TestCa;
use common::{curl, start_proxy, wait_record, CurlOut, ProxyProc, ProxySetup};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Whether python3 with strawberry-graphql and uvicorn is here; skips loudly when not.
fn python_ready() -> bool {
    common::python::has_modules(
        "strawberry.asgi, uvicorn",
        "strawberry-graphql and uvicorn for tests/graphql/server.py",
    )
}

/// tests/graphql/server.py for `gql.test`, killed on drop.
struct GqlServer(PyServer);

impl std::ops::Deref for GqlServer {
    type Target = PyServer;

    fn deref(&self) -> &PyServer {
        &self.0
    }
}

impl GqlServer {
    fn start(ca: &TestCa) -> GqlServer {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.leaf_pem(&["gql.test"]);
        let config = json!({
            "cert": common::write_file(dir.path(), "cert.pem", &cert),
            "key": common::write_file(dir.path(), "key.pem", &key),
            "record": dir.path().join("mutations.jsonl"),
            "port": 0,
        });
        GqlServer(PyServer::start("tests/graphql/server.py", dir, &config))
    }

    /// The repositories `deleteRepo` deleted, in order.
    fn deleted(&self) -> Vec<String> {
        self.json_lines("mutations.jsonl")
            .iter()
            .map(|m| m["name"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// Reads only; `extra` rules follow (a later `approve` rule for mutations).
fn policy(port: u16, extra: &str) -> String {
    format!(
        r#"name: gql
rules:
  - name: graphql reads
    host: gql.test
    port: {port}
    methods: [GET, POST]
    paths: ["/graphql"]
    graphql: {{ operations: [query] }}
{extra}"#
    )
}

struct Gql {
    server: GqlServer,
    proxy: ProxyProc,
    _ca: TestCa,
}

impl Gql {
    fn start(extra_rules: &str) -> Option<Gql> {
        if !python_ready() {
            return None;
        }
        let ca = TestCa::new("graphql test CA");
        let server = GqlServer::start(&ca);
        let setup = ProxySetup::with_policy("gql", &policy(server.port, extra_rules))
            .trust(&ca.cert_pem)
            .resolve("gql.test", server.port);
        let proxy = start_proxy(&setup);
        Some(Gql {
            server,
            proxy,
            _ca: ca,
        })
    }

    fn url(&self) -> String {
        format!("https://gql.test:{}/graphql", self.server.port)
    }

    /// POSTs `body` (JSON) through tollgate.
    async fn post(&self, body: &Value) -> CurlOut {
        let body = body.to_string();
        curl(
            &self.proxy,
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
                &self.url(),
            ],
        )
        .await
    }

    /// GET `?query=DOCUMENT` through tollgate.
    async fn get(&self, document: &str) -> CurlOut {
        let query = format!("query={document}");
        curl(
            &self.proxy,
            &["-G", "--data-urlencode", &query, &self.url()],
        )
        .await
    }
}

/// Asserts tollgate refused with `status` and `reason` (its own error body).
fn refused(out: &CurlOut, status: u16, reason: &str) {
    assert_eq!(out.status, status, "{out:?}");
    assert_eq!(out.json()["error"], reason, "{out:?}");
}

const DELETE_X: &str = r#"mutation Wipe { deleteRepo(name: "x") }"#;

#[tokio::test]
async fn a_query_passes_and_its_record_names_the_operation() {
    let Some(g) = Gql::start("") else { return };
    let out = g
        .post(&json!({"query": "query ListIssues { issues { number title } }"}))
        .await;
    assert_eq!(out.status, 200, "{out:?}\n{}", g.server.log());
    assert_eq!(
        out.json()["data"]["issues"][1]["title"],
        "second",
        "{out:?}"
    );
    let record = wait_record(&g.proxy, |r| r["graphql"]["name"] == "ListIssues").await;
    assert_eq!(
        record["graphql"],
        json!({"operation": "query", "name": "ListIssues"})
    );
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["rule"], "graphql reads", "{record}");
    // An anonymous query is recorded without a name.
    let out = g.post(&json!({"query": "{ hello }"})).await;
    assert_eq!(out.json()["data"]["hello"], "hello world", "{out:?}");
    let record = wait_record(&g.proxy, |r| {
        r["graphql"]["operation"] == "query" && r["graphql"]["name"].is_null()
    })
    .await;
    assert_eq!(record["status"], 200, "{record}");
}

#[tokio::test]
async fn a_mutation_is_refused_and_never_runs() {
    let Some(g) = Gql::start("") else { return };
    let out = g.post(&json!({"query": DELETE_X})).await;
    refused(&out, 403, "no_rule");
    let record = wait_record(&g.proxy, |r| r["reason"] == "no_rule").await;
    assert_eq!(record["status"], 403, "{record}");
    assert!(g.server.deleted().is_empty(), "{:?}", g.server.deleted());
    // The server would have run it: asked directly through a query, nothing.
    let out = g.post(&json!({"query": "{ deleted }"})).await;
    assert_eq!(out.json()["data"]["deleted"], json!([]), "{out:?}");
}

#[tokio::test]
async fn a_later_approve_rule_holds_the_mutation_until_a_person_says_yes() {
    let approve = "  - name: mutations need a person
    host: gql.test
    port: PORT
    methods: [POST]
    paths: [\"/graphql\"]
    action: approve
";
    // The port is only known once the server runs: start it first, then
    // write the rule with it.
    if !python_ready() {
        return;
    }
    let ca = TestCa::new("graphql test CA");
    let server = GqlServer::start(&ca);
    let rules = approve.replace("PORT", &server.port.to_string());
    let setup = ProxySetup::with_policy("gql", &policy(server.port, &rules))
        .trust(&ca.cert_pem)
        .resolve("gql.test", server.port);
    let proxy = start_proxy(&setup);
    let g = Gql {
        server,
        proxy,
        _ca: ca,
    };

    // Queries still go straight through.
    let out = g.post(&json!({"query": "{ hello }"})).await;
    assert_eq!(out.status, 200, "{out:?}");

    let body = json!({"query": DELETE_X}).to_string();
    let ca_pem = g.proxy.ca_pem.to_str().unwrap().to_string();
    let proxy_url = g.proxy.url();
    let url = g.url();
    let call = tokio::spawn(async move {
        common::curl_raw(&[
            "--proxy",
            &proxy_url,
            "--cacert",
            &ca_pem,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &url,
        ])
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let hold = loop {
        let out = common::admin_call(&g.proxy, "GET", "/v1/approvals", None).await;
        assert_eq!(out.status, 200, "{out:?}");
        if let Some(hold) = out.json().as_array().and_then(|h| h.first().cloned()) {
            break hold;
        }
        assert!(Instant::now() < deadline, "the mutation was never held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(hold["rule"], "mutations need a person", "{hold}");
    // Held, not run.
    assert!(g.server.deleted().is_empty(), "{:?}", g.server.deleted());
    let id = hold["id"].as_str().unwrap();
    let answer = common::admin_call(
        &g.proxy,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(r#"{"by":"alice","reason":"cleanup"}"#),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let out = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the held mutation was answered")
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.json()["data"]["deleteRepo"], "deleted x", "{out:?}");
    assert_eq!(g.server.deleted(), ["x"]);
    let record = wait_record(&g.proxy, |r| r["decision"] == "approved").await;
    assert_eq!(
        record["graphql"],
        json!({"operation": "mutation", "name": "Wipe"})
    );
}

#[tokio::test]
async fn operation_name_picks_the_operation_that_is_checked() {
    let Some(g) = Gql::start("") else { return };
    let document = r#"query Look { hello } mutation Wipe { deleteRepo(name: "y") }"#;
    let out = g
        .post(&json!({"query": document, "operationName": "Look"}))
        .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.json()["data"]["hello"], "hello world", "{out:?}");
    wait_record(&g.proxy, |r| {
        r["graphql"] == json!({"operation": "query", "name": "Look"})
    })
    .await;
    // The same document naming the mutation: a mutation behind a query.
    let out = g
        .post(&json!({"query": document, "operationName": "Wipe"}))
        .await;
    refused(&out, 403, "no_rule");
    assert!(g.server.deleted().is_empty(), "{:?}", g.server.deleted());
    // Mutation first in the document, query named: the query is what runs.
    let flipped = r#"mutation Wipe { deleteRepo(name: "z") } query Look { hello }"#;
    let out = g
        .post(&json!({"query": flipped, "operationName": "Look"}))
        .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert!(g.server.deleted().is_empty(), "{:?}", g.server.deleted());
}

#[tokio::test]
async fn several_operations_without_a_name_are_400() {
    let Some(g) = Gql::start("") else { return };
    let document = r#"query Look { hello } mutation Wipe { deleteRepo(name: "y") }"#;
    let out = g.post(&json!({"query": document})).await;
    refused(&out, 400, "bad_request");
    // An operationName naming no operation in the document is no better.
    let out = g
        .post(&json!({"query": document, "operationName": "Other"}))
        .await;
    assert_ne!(out.status, 200, "{out:?}");
    // Neither is a document that does not parse.
    let out = g.post(&json!({"query": "query { hello "})).await;
    refused(&out, 400, "bad_request");
    let out = g
        .post(&json!({"query": "mutation { deleteRepo(name: \"q\") "}))
        .await;
    refused(&out, 400, "bad_request");
    assert!(g.server.deleted().is_empty(), "{:?}", g.server.deleted());
}

#[tokio::test]
async fn the_get_form_is_matched_the_same_way() {
    let Some(g) = Gql::start("") else { return };
    let out = g.get("query Peek { hello(name: \"get\") }").await;
    assert_eq!(out.status, 200, "{out:?}\n{}", g.server.log());
    assert_eq!(out.json()["data"]["hello"], "hello get", "{out:?}");
    let record = wait_record(&g.proxy, |r| r["graphql"]["name"] == "Peek").await;
    assert_eq!(record["method"], "GET", "{record}");
    // A mutation in the query string: tollgate's refusal (strawberry would
    // answer a GET mutation itself, with another status and body).
    let out = g.get(DELETE_X).await;
    refused(&out, 403, "no_rule");
    // Hidden behind an operationName in the query string too.
    let document = r#"query Look { hello } mutation Wipe { deleteRepo(name: "g") }"#;
    let query = format!("query={document}");
    let out = curl(
        &g.proxy,
        &[
            "-G",
            "--data-urlencode",
            &query,
            "--data-urlencode",
            "operationName=Wipe",
            &g.url(),
        ],
    )
    .await;
    refused(&out, 403, "no_rule");
    assert!(g.server.deleted().is_empty(), "{:?}", g.server.deleted());
}

#[tokio::test]
async fn a_persisted_query_without_a_document_does_not_match() {
    let Some(g) = Gql::start("") else { return };
    let out = g
        .post(&json!({"extensions": {"persistedQuery": {
            "version": 1,
            "sha256Hash": "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38",
        }}}))
        .await;
    refused(&out, 403, "no_rule");
    let record = wait_record(&g.proxy, |r| r["reason"] == "no_rule").await;
    assert_eq!(record["path"], "/graphql", "{record}");
    assert!(g.server.deleted().is_empty());
}
