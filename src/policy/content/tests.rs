use super::*;
use crate::policy::{parse_policy, RequestPath, Scheme};

const POLICY: &str = r#"name: p
rules:
  - name: mcp tools
    host: mcp.test
    methods: [POST]
    paths: ["/mcp"]
    jsonrpc:
      methods: [initialize, "notifications/*", tools/list, tools/call]
      tools: [add, echo]
  - name: graphql reads
    host: api.test
    paths: ["/graphql"]
    graphql: { operations: [query] }
  - name: graphql writes need a person
    host: api.test
    methods: [POST]
    paths: ["/graphql"]
    graphql: { operations: [mutation] }
    action: approve
  - name: anything else on the API
    host: api.test
    methods: [GET]
"#;

fn policy() -> Policy {
    parse_policy(std::path::Path::new("p.yaml"), POLICY)
        .unwrap()
        .0
}

fn decide<'p>(
    policy: &'p Policy,
    method: &str,
    host: &str,
    path: &str,
    input: ContentInput<'_>,
) -> Result<Decided<'p>, ContentRefusal> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let path = RequestPath::parse(path).unwrap();
    let facts = RequestFacts {
        scheme: Scheme::Https,
        host,
        port: 443,
        method: &method,
        path: &path,
    };
    policy.decide(&facts, &input)
}

fn body(text: &str) -> ContentInput<'_> {
    ContentInput {
        body: Some(text.as_bytes()),
        content_type: Some("application/json"),
        query: None,
    }
}

fn rule_name(decided: &Decided<'_>) -> Option<String> {
    decided.rule.map(|r| r.name.clone())
}

#[test]
fn an_allowed_tool_matches_and_is_summarized() {
    let p = policy();
    let d = decide(
        &p,
        "POST",
        "mcp.test",
        "/mcp",
        body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{}}}"#),
    )
    .unwrap();
    assert_eq!(rule_name(&d).as_deref(), Some("mcp tools"));
    let Some(ContentSummary::Rpc(rpc)) = d.content else {
        panic!("no summary")
    };
    assert_eq!(rpc.method.as_deref(), Some("tools/call"));
    assert_eq!(rpc.tool.as_deref(), Some("add"));
}

#[test]
fn another_tool_falls_through_to_default_deny_but_is_still_summarized() {
    let p = policy();
    let d = decide(
        &p,
        "POST",
        "mcp.test",
        "/mcp",
        body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_everything"}}"#),
    )
    .unwrap();
    assert!(d.rule.is_none());
    let Some(ContentSummary::Rpc(rpc)) = d.content else {
        panic!("no summary")
    };
    assert_eq!(rpc.tool.as_deref(), Some("delete_everything"));
}

#[test]
fn a_batch_hiding_one_disallowed_call_does_not_match() {
    let p = policy();
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}},
                    {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_everything"}}]"#;
    assert!(decide(&p, "POST", "mcp.test", "/mcp", body(batch))
        .unwrap()
        .rule
        .is_none());
}

#[test]
fn a_non_json_body_on_a_content_rule_is_an_error_naming_the_rule() {
    let p = policy();
    let err = decide(&p, "POST", "mcp.test", "/mcp", body("hello")).unwrap_err();
    assert_eq!(err.rule, "mcp tools");
    assert!(err.to_string().contains("mcp tools"), "{err}");
}

#[test]
fn no_body_is_no_json_rpc_request() {
    let p = policy();
    let d = decide(&p, "POST", "mcp.test", "/mcp", ContentInput::default()).unwrap();
    assert!(d.rule.is_none());
}

#[test]
fn a_mutation_skips_the_read_rule_and_reaches_the_approve_rule() {
    let p = policy();
    let d = decide(
        &p,
        "POST",
        "api.test",
        "/graphql",
        body(r#"{"query":"mutation Del { deleteRepo(name: \"x\") }"}"#),
    )
    .unwrap();
    assert_eq!(
        rule_name(&d).as_deref(),
        Some("graphql writes need a person")
    );
    let Some(ContentSummary::GraphQl(op)) = d.content else {
        panic!("no summary")
    };
    assert_eq!(op.name.as_deref(), Some("Del"));
}

#[test]
fn a_mutation_hidden_behind_operation_name_is_the_one_checked() {
    let p = policy();
    let hidden = r#"{"query":"query A { a } mutation B { b }","operationName":"B"}"#;
    let d = decide(&p, "POST", "api.test", "/graphql", body(hidden)).unwrap();
    assert_eq!(
        rule_name(&d).as_deref(),
        Some("graphql writes need a person")
    );
    let picked = r#"{"query":"query A { a } mutation B { b }","operationName":"A"}"#;
    let d = decide(&p, "POST", "api.test", "/graphql", body(picked)).unwrap();
    assert_eq!(rule_name(&d).as_deref(), Some("graphql reads"));
}

#[test]
fn the_get_form_is_read_from_the_query_string() {
    let p = policy();
    let get = |q| {
        decide(
            &p,
            "GET",
            "api.test",
            "/graphql",
            ContentInput {
                query: Some(q),
                ..ContentInput::default()
            },
        )
    };
    assert_eq!(
        rule_name(&get("query=%7B%20viewer%20%7D").unwrap()).as_deref(),
        Some("graphql reads")
    );
    // A GET mutation is not a read; the plain GET rule after it decides.
    assert_eq!(
        rule_name(&get("query=mutation%20%7B%20b%20%7D").unwrap()).as_deref(),
        Some("anything else on the API")
    );
}

#[test]
fn a_post_with_graphql_parameters_in_its_url_is_refused() {
    let p = policy();
    let input = ContentInput {
        query: Some("query=mutation%7Bb%7D"),
        ..body(r#"{"query":"{ a }"}"#)
    };
    let err = decide(&p, "POST", "api.test", "/graphql", input).unwrap_err();
    assert!(err.error.message().contains("URL"), "{err}");
}

#[test]
fn the_bare_document_content_type_is_read() {
    let p = policy();
    let input = ContentInput {
        content_type: Some("application/graphql; charset=utf-8"),
        ..body("mutation { b }")
    };
    let d = decide(&p, "POST", "api.test", "/graphql", input).unwrap();
    assert_eq!(
        rule_name(&d).as_deref(),
        Some("graphql writes need a person")
    );
}

#[test]
fn a_persisted_query_matches_no_graphql_rule() {
    let p = policy();
    let d = decide(
        &p,
        "POST",
        "api.test",
        "/graphql",
        body(r#"{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}"#),
    )
    .unwrap();
    assert!(d.rule.is_none());
}

#[test]
fn the_body_is_needed_only_when_a_content_rule_comes_first() {
    let p = policy();
    let facts = |method: &'static str, host: &'static str| (method, host);
    for ((method, host), needed) in [
        (facts("POST", "mcp.test"), true),
        (facts("GET", "mcp.test"), false),
        (facts("POST", "api.test"), true),
        // The GET form reads the query string, and a plain rule decides after it.
        (facts("GET", "api.test"), false),
        (facts("POST", "other.test"), false),
    ] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let path = RequestPath::parse("/graphql").unwrap();
        let path_mcp = RequestPath::parse("/mcp").unwrap();
        let f = RequestFacts {
            scheme: Scheme::Https,
            host,
            port: 443,
            method: &m,
            path: if host == "mcp.test" { &path_mcp } else { &path },
        };
        assert_eq!(p.needs_body(&f), needed, "{method} {host}");
    }
}

#[test]
fn policy_errors_name_what_is_wrong() {
    let cases = [
        (
            "jsonrpc: { methods: [tools/call], tools: [a] }\n    graphql: { operations: [query] }",
            "both jsonrpc and graphql",
        ),
        ("jsonrpc: { methods: [\"to*ls\"] }", "jsonrpc.methods"),
        (
            "jsonrpc: { methods: [initialize], tools: [a] }",
            "does not allow tools/call",
        ),
        ("graphql: { operations: [] }", "never match"),
        ("graphql: { operations: [delete] }", "unknown variant"),
        ("jsonrpc: { methods: [a], extra: 1 }", "unknown field"),
    ];
    for (block, expected) in cases {
        let text = format!("name: p\nrules:\n  - host: a.test\n    {block}\n");
        let err = parse_policy(std::path::Path::new("p.yaml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{block}: {err}");
        assert!(err.contains("p.yaml:"), "names the file and line: {err}");
    }
}

#[test]
fn a_tunnel_over_a_content_rule_is_refused() {
    let text = "name: p\nrules:\n  - host: mcp.test\n    jsonrpc: { methods: [ping] }\ntunnel:\n  - { host: mcp.test }\n";
    let err = parse_policy(std::path::Path::new("p.yaml"), text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("uninspected"), "{err}");
}
