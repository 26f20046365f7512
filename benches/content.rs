//! Criterion bench: what a request content rule costs on the request path
//! (issue 16's targets: a `jsonrpc` match on a 4 KiB body ≤ 20 µs, a `graphql`
//! match on a 2 KiB document ≤ 30 µs).

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented pub fn"
)]
#![expect(
    clippy::unwrap_used,
    reason = "a failed setup stops the bench with its message"
)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tollgate::content::graphql::{self, GraphQlRule, OperationKind};
use tollgate::content::jsonrpc::{self, JsonRpcRule, MethodPattern};

fn content(c: &mut Criterion) {
    let rule = JsonRpcRule {
        methods: ["initialize", "notifications/*", "tools/list", "tools/call"]
            .iter()
            .map(|m| MethodPattern::parse(m).unwrap())
            .collect(),
        tools: Some(vec!["search_issues".into(), "get_file".into()]),
    };
    let mut body = String::from(
        r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"get_file","arguments":{"owner":"acme","repo":"widgets","path":"src/lib.rs","notes":["#,
    );
    let mut i = 0;
    while body.len() < 4096 - 40 {
        body.push_str(&format!(r#"{{"k{i}":"value number {i} of the notes"}},"#));
        i += 1;
    }
    body.push_str(r#""end"]}}}"#);
    assert!(jsonrpc::matches(&rule, body.as_bytes()).unwrap().is_some());
    eprintln!("jsonrpc body: {} bytes", body.len());
    c.bench_function("jsonrpc match, 4 KiB tools/call", |b| {
        b.iter(|| jsonrpc::matches(black_box(&rule), black_box(body.as_bytes())))
    });

    let reads = GraphQlRule {
        operations: vec![OperationKind::Query],
        names: None,
    };
    let mut doc = String::from("query Issues($owner: String!, $name: String!) {\n  repository(owner: $owner, name: $name) {\n");
    let mut i = 0;
    while doc.len() < 2048 - 120 {
        doc.push_str(&format!(
            "    f{i}: issues(first: 10, states: [OPEN]) {{ nodes {{ number title author {{ login }} }} }}\n"
        ));
        i += 1;
    }
    doc.push_str("  }\n}\nfragment F on Issue { number }\n");
    let request_body = serde_json::json!({"query": doc, "operationName": "Issues", "variables": {"owner": "acme", "name": "widgets"}}).to_string();
    let request = graphql::request_from_json(request_body.as_bytes()).unwrap();
    assert!(graphql::matches(&reads, &request).unwrap().is_some());
    eprintln!("graphql document: {} bytes", doc.len());
    c.bench_function("graphql body read only", |b| {
        b.iter(|| graphql::request_from_json(black_box(request_body.as_bytes())))
    });
    c.bench_function("graphql operation only", |b| {
        b.iter(|| graphql::operation(black_box(&request)))
    });
    c.bench_function("graphql match, 2 KiB query (body read + parse)", |b| {
        b.iter(|| {
            let request = graphql::request_from_json(black_box(request_body.as_bytes())).unwrap();
            graphql::matches(black_box(&reads), &request)
        })
    });
}

criterion_group!(benches, content);
criterion_main!(benches);
