use super::*;

fn reads() -> GraphQlRule {
    GraphQlRule {
        operations: vec![OperationKind::Query],
        names: None,
    }
}

fn post(body: &str) -> Result<Option<GraphQlSummary>, ContentError> {
    matches(&reads(), &request_from_json(body.as_bytes())?)
}

fn post_err(body: &str) -> String {
    post(body).unwrap_err().message().to_owned()
}

#[test]
fn a_single_query_matches_and_a_mutation_does_not() {
    let s = post(r#"{"query":"query Viewer { viewer { login } }"}"#)
        .unwrap()
        .unwrap();
    assert_eq!(s.operation, OperationKind::Query);
    assert_eq!(s.name.as_deref(), Some("Viewer"));
    assert!(post(r#"{"query":"mutation { deleteRepo(id: 1) { id } }"}"#)
        .unwrap()
        .is_none());
    assert!(post(r#"{"query":"subscription S { x }"}"#)
        .unwrap()
        .is_none());
}

#[test]
fn anonymous_shorthand_is_a_query() {
    let s = post(r#"{"query":"{ viewer { login } }","variables":{"a":1}}"#)
        .unwrap()
        .unwrap();
    assert_eq!(s.operation, OperationKind::Query);
    assert_eq!(s.name, None);
}

#[test]
fn operation_name_picks_the_operation_checked() {
    let doc = "query Q { a } mutation M { del }";
    let body = |name: &str| serde_json::json!({"query": doc, "operationName": name}).to_string();
    assert!(post(&body("Q")).unwrap().is_some());
    // The mutation hidden behind a query in the same document is what runs.
    assert!(post(&body("M")).unwrap().is_none());
    assert!(post_err(&body("X")).contains("names no operation"));
    let none = serde_json::json!({"query": doc}).to_string();
    assert!(post_err(&none).contains("several operations and no operationName"));
    assert!(post_err(&body("")).contains("empty"));
    let twice = serde_json::json!({"query": "query Q { a } query Q { b }", "operationName": "Q"});
    assert!(post_err(&twice.to_string()).contains("several operations are named"));
}

#[test]
fn fragments_are_not_operations() {
    let s = post(r#"{"query":"fragment F on User { login } query Q { viewer { ...F } }"}"#)
        .unwrap()
        .unwrap();
    assert_eq!(s.name.as_deref(), Some("Q"));
    assert!(post_err(r#"{"query":"fragment F on User { login }"}"#).contains("no operation"));
}

#[test]
fn names_restrict_the_rule() {
    let rule = GraphQlRule {
        operations: vec![OperationKind::Query, OperationKind::Mutation],
        names: Some(vec!["AddComment".into()]),
    };
    let m = |q: &str| {
        matches(
            &rule,
            &GraphQlRequest {
                query: Some(q.into()),
                operation_name: None,
            },
        )
        .unwrap()
    };
    assert!(m("mutation AddComment { add }").is_some());
    assert!(m("mutation DeleteRepo { del }").is_none());
    assert!(m("{ anonymous }").is_none());
}

#[test]
fn request_shape_errors() {
    assert!(post_err(r#"[{"query":"{a}"}]"#).contains("batched GraphQL requests are not supported"));
    assert!(post_err(r#""{a}""#).contains("JSON object"));
    assert!(post_err(r#"{"query":5}"#).contains("\"query\" must be a string"));
    assert!(post_err(r#"{"query":"{a}","operationName":1}"#).contains("operationName"));
    assert!(post_err(r#"{"variables":{}}"#).contains("no \"query\""));
    assert!(post_err("nope").contains("invalid JSON"));
    // Which query runs must not depend on the upstream's JSON parser.
    assert!(post_err(r#"{"query":"{a}","query":"mutation{b}"}"#).contains("duplicate key"));
    assert!(post_err(r#"{"query":"{a}","Query":"mutation{b}"}"#).contains("only in case"));
    assert!(post_err(
        r#"{"query":"query A{a} mutation B{b}","operationName":"A","OperationName":"B"}"#
    )
    .contains("only in case"));
}

#[test]
fn persisted_queries_never_match() {
    let body =
        r#"{"operationName":"Q","extensions":{"persistedQuery":{"version":1,"sha256Hash":"ab"}}}"#;
    assert_eq!(post(body).unwrap(), None);
    let get = "operationName=Q&extensions=%7B%22persistedQuery%22%3A%7B%22version%22%3A1%7D%7D";
    assert_eq!(
        matches(&reads(), &request_from_query(get).unwrap()).unwrap(),
        None
    );
}

#[test]
fn parse_errors_name_the_place() {
    let e = post_err(r#"{"query":"query Q {\n  a(\n}"}"#);
    assert!(e.starts_with("GraphQL document, 3:"), "{e}");
    let e = post_err(r#"{"query":"query { a } }"}"#);
    assert!(e.starts_with("GraphQL document, 1:"), "{e}");
}

#[test]
fn the_get_form_is_read_the_same() {
    let req =
        request_from_query("query=query+Q%7Ba%7D+mutation+M%7Bb%7D&operationName=M&x=1").unwrap();
    assert_eq!(req.query.as_deref(), Some("query Q{a} mutation M{b}"));
    assert!(matches(&reads(), &req).unwrap().is_none());
    let req = request_from_query("query=%7Ba%7D").unwrap();
    assert!(matches(&reads(), &req).unwrap().is_some());
    assert!(request_from_query("query=%7Ba%7D&query=mutation%7Bb%7D")
        .unwrap_err()
        .message()
        .contains("twice"));
    assert!(request_from_query("query=%FF").is_err());
    assert!(request_from_query("x=1").is_err());
}

#[test]
fn work_is_bounded() {
    let deep = format!(
        "{{\"query\":\"{}{}\"}}",
        "{a".repeat(5_000),
        "}".repeat(5_000)
    );
    assert!(post(&deep).is_err());
    let list = format!(
        "{{\"query\":\"{{ a(x: {}1{}) }}\"}}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    assert!(post(&list).is_err());
    let many: String = (0..MAX_DEFINITIONS + 1)
        .map(|i| format!("fragment F{i} on T {{ a }} "))
        .collect();
    let body = serde_json::json!({"query": format!("{many} {{ a }}")}).to_string();
    assert!(post_err(&body).contains("definitions"));
    let big = GraphQlRequest {
        query: Some(format!("{{ a }} #{}", "x".repeat(MAX_DOCUMENT))),
        operation_name: None,
    };
    assert!(operation(&big)
        .unwrap_err()
        .message()
        .contains("larger than"));
}
