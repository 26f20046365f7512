use super::*;

fn rule(methods: &[&str], tools: Option<&[&str]>) -> JsonRpcRule {
    JsonRpcRule {
        methods: methods
            .iter()
            .map(|m| MethodPattern::parse(m).unwrap())
            .collect(),
        tools: tools.map(|t| t.iter().map(|s| s.to_string()).collect()),
    }
}

fn mcp_rule() -> JsonRpcRule {
    rule(
        &["initialize", "notifications/*", "tools/list", "tools/call"],
        Some(&["search_issues", "get_file"]),
    )
}

fn call(tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"q":"x"}}}}}}"#
    )
}

fn err(body: &str) -> String {
    matches(&mcp_rule(), body.as_bytes())
        .unwrap_err()
        .message()
        .to_owned()
}

#[test]
fn patterns_parse() {
    assert_eq!(
        MethodPattern::parse("tools/list").unwrap(),
        MethodPattern::Exact("tools/list".into())
    );
    assert_eq!(
        MethodPattern::parse("notifications/*").unwrap(),
        MethodPattern::Prefix("notifications/".into())
    );
    assert_eq!(
        MethodPattern::parse("responses").unwrap(),
        MethodPattern::Responses
    );
    for bad in ["", "*", "/*", "a*", "a/*/b", "a/**", "*/x"] {
        assert!(MethodPattern::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn prefix_needs_one_more_character() {
    let r = rule(&["notifications/*"], None);
    let n = |m: &str| format!(r#"{{"jsonrpc":"2.0","method":"{m}"}}"#);
    assert!(matches(&r, n("notifications/initialized").as_bytes())
        .unwrap()
        .is_some());
    assert!(matches(&r, n("notifications/").as_bytes())
        .unwrap()
        .is_none());
    assert!(matches(&r, n("notifications").as_bytes())
        .unwrap()
        .is_none());
    assert!(matches(&r, n("notificationsX/a").as_bytes())
        .unwrap()
        .is_none());
}

#[test]
fn request_notification_and_tool() {
    let s = matches(&mcp_rule(), call("get_file").as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(s.method.as_deref(), Some("tools/call"));
    assert_eq!(s.tool.as_deref(), Some("get_file"));
    assert!(!s.batch);
    assert_eq!(s.messages[0].kind, MessageKind::Request);
    let s = matches(
        &mcp_rule(),
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.messages[0].kind, MessageKind::Notification);
    assert_eq!(s.tool, None);
    assert!(matches(&mcp_rule(), call("delete_repo").as_bytes())
        .unwrap()
        .is_none());
    assert!(matches(
        &mcp_rule(),
        br#"{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{}}"#
    )
    .unwrap()
    .is_none());
}

#[test]
fn without_tools_any_tool_is_allowed() {
    let r = rule(&["tools/call"], None);
    assert!(matches(&r, call("anything").as_bytes()).unwrap().is_some());
}

#[test]
fn a_disallowed_tool_hidden_in_a_batch_fails_the_batch() {
    let body = format!(
        r#"[{},{{"jsonrpc":"2.0","method":"notifications/x"}},{}]"#,
        call("get_file"),
        call("delete_repo")
    );
    assert!(matches(&mcp_rule(), body.as_bytes()).unwrap().is_none());
    let body = format!("[{},{}]", call("get_file"), call("search_issues"));
    let s = matches(&mcp_rule(), body.as_bytes()).unwrap().unwrap();
    assert!(s.batch);
    assert_eq!(s.messages.len(), 2);
    assert_eq!(s.tool.as_deref(), Some("get_file"));
}

#[test]
fn empty_batch_and_bad_items_are_errors() {
    assert!(err("[]").contains("empty batch"));
    assert!(err(r#"[1]"#).contains("batch item 0"));
    assert!(err(&format!("[{},[]]", call("get_file"))).contains("batch item 1"));
}

#[test]
fn client_responses_need_the_responses_pattern() {
    let body = br#"{"jsonrpc":"2.0","id":7,"result":{"roots":[]}}"#;
    assert!(matches(&mcp_rule(), body).unwrap().is_none());
    let r = rule(&["tools/list", "responses"], None);
    let s = matches(&r, body).unwrap().unwrap();
    assert_eq!(s.messages[0].kind, MessageKind::Response);
    assert_eq!(s.method, None);
    let e = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"no"}}"#;
    assert!(matches(&r, e).unwrap().is_some());
    assert!(matches(&rule(&[], None), e).unwrap().is_none());
    // A batch's summary names its first call, not the response before it.
    let batch =
        br#"[{"jsonrpc":"2.0","id":7,"result":{}},{"jsonrpc":"2.0","id":8,"method":"tools/list"}]"#;
    let s = matches(&r, batch).unwrap().unwrap();
    assert_eq!(s.method.as_deref(), Some("tools/list"));
}

#[test]
fn malformed_messages_are_errors() {
    assert!(err(r#"{"id":1,"method":"tools/list"}"#).contains("\"jsonrpc\": \"2.0\" is missing"));
    assert!(err(r#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#).contains("must be \"2.0\""));
    assert!(err(r#"{"jsonrpc":2.0,"id":1,"method":"tools/list"}"#).contains("must be \"2.0\""));
    assert!(err(r#"{"jsonrpc":"2.0","id":1,"method":5}"#).contains("\"method\" must be a string"));
    assert!(err(r#"{"jsonrpc":"2.0","id":{},"method":"a"}"#).contains("\"id\""));
    assert!(err(r#"{"jsonrpc":"2.0","id":1}"#).contains("needs \"method\""));
    assert!(err(r#"{"jsonrpc":"2.0","result":1}"#).contains("needs an \"id\""));
    assert!(err(r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#).contains("both"));
    assert!(err(r#"{"jsonrpc":"2.0","id":1,"method":"a","result":1}"#).contains("both"));
    assert!(err(r#"{"jsonrpc":"2.0","id":1,"method":"a","params":3}"#).contains("params"));
    assert!(err("\"hello\"").contains("must be an object"));
    assert!(err("not json").contains("invalid JSON"));
    assert!(err("").contains("invalid JSON"));
}

#[test]
fn tool_name_must_be_a_string() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["get_file"]}}"#;
    assert!(err(body).contains("params.name\" must be a string"));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#;
    assert!(err(body).contains("without \"params.name\""));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;
    assert!(err(body).contains("without \"params\""));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["get_file"]}"#;
    assert!(err(body).contains("must be an object"));
}

#[test]
fn duplicate_keys_are_refused_at_every_level() {
    assert!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#)
            .contains("duplicate key \"method\"")
    );
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_file","name":"delete_repo"}}"#;
    assert!(err(body).contains("duplicate key \"name\""));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_file","arguments":{"a":1,"a":2}}}"#;
    assert!(err(body).contains("duplicate key"));
}

#[test]
fn case_variants_of_read_keys_are_refused() {
    // A case-insensitive decoder upstream could take METHOD for method.
    assert!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","METHOD":"tools/call"}"#)
            .contains("only in case")
    );
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_file","Name":"delete_repo"}}"#;
    assert!(err(body).contains("only in case"));
    let body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"paramſ\":{}}";
    assert!(err(body).contains("only in case"));
}

#[test]
fn deep_and_large_bodies_are_errors() {
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"x":{}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(err(&deep).contains("nested deeper"));
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"x":"{}"}}}}"#,
        "a".repeat(MAX_BODY)
    );
    assert!(err(&big).contains("larger than"));
}

#[test]
fn error_messages_do_not_echo_long_input() {
    let key = "K".repeat(10_000);
    let body = format!(r#"{{"jsonrpc":"2.0","{key}":1,"{key}":2}}"#);
    assert!(err(&body).len() < 300);
}

#[test]
fn duplicate_keys_are_refused_in_large_objects_too() {
    // Past the first keys an object is checked at its end (sorted), not key by key.
    let many: String = (0..40).map(|i| format!(r#""k{i}":{i},"#)).collect();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"get_file","arguments":{{{many}"k3":0}}}}}}"#
    );
    assert!(
        err(&body).contains("duplicate key \"k3\""),
        "{}",
        err(&body)
    );
    let body = format!(r#"{{{many}"jsonrpc":"2.0","id":1,"method":"tools/list","k39":1}}"#);
    assert!(err(&body).contains("duplicate key \"k39\""));
    let ok = format!(r#"{{{many}"jsonrpc":"2.0","id":1,"method":"tools/list"}}"#);
    assert!(matches(&mcp_rule(), ok.as_bytes()).unwrap().is_some());
    // Keys with escapes are compared by what they decode to.
    assert!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"a","m\u0065thod":"b"}"#).contains("duplicate key")
    );
}
