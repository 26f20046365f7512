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

/// Choices for the document generator, read from bytes proptest makes up.
struct Choices<'a>(std::slice::Iter<'a, u8>);

impl Choices<'_> {
    fn pick(&mut self, n: usize) -> usize {
        self.0.next().map_or(0, |&b| usize::from(b) % n)
    }

    fn one<'s>(&mut self, items: &[&'s str]) -> &'s str {
        items[self.pick(items.len())]
    }
}

const NAMES: [&str; 10] = [
    "a", "b", "on", "query", "mutation", "fragment", "true", "null", "F", "Q",
];

fn gen_value(c: &mut Choices<'_>, depth: usize, out: &mut Vec<String>) {
    match c.pick(if depth > 2 { 9 } else { 11 }) {
        0 => out.push("1".into()),
        1 => out.push("-1.5e3".into()),
        2 => out.push("\"s\\n\"".into()),
        3 => out.push("\"\"\"block\"\"\"".into()),
        4 | 5 => out.push(c.one(&NAMES).into()),
        6 => out.extend(["$".into(), c.one(&NAMES).into()]),
        7 => out.push("[]".into()),
        8 => out.push("{}".into()),
        9 => {
            out.push("[".into());
            for _ in 0..c.pick(3) {
                gen_value(c, depth + 1, out);
            }
            out.push("]".into());
        }
        _ => {
            out.push("{".into());
            for _ in 0..c.pick(3) {
                out.extend([c.one(&NAMES).into(), ":".into()]);
                gen_value(c, depth + 1, out);
            }
            out.push("}".into());
        }
    }
}

fn gen_arguments(c: &mut Choices<'_>, depth: usize, out: &mut Vec<String>) {
    out.push("(".into());
    for _ in 0..c.pick(3) + 1 {
        out.extend([c.one(&NAMES).into(), ":".into()]);
        gen_value(c, depth, out);
    }
    out.push(")".into());
}

fn gen_directives(c: &mut Choices<'_>, depth: usize, out: &mut Vec<String>) {
    for _ in 0..c.pick(4).saturating_sub(2) {
        out.extend(["@".into(), c.one(&NAMES).into()]);
        if c.pick(2) == 0 {
            gen_arguments(c, depth, out);
        }
    }
}

fn gen_selection_set(c: &mut Choices<'_>, depth: usize, out: &mut Vec<String>) {
    out.push("{".into());
    for _ in 0..c.pick(3) + 1 {
        match c.pick(if depth > 3 { 4 } else { 7 }) {
            0 => out.extend(["...".into(), c.one(&NAMES).into()]),
            1..=3 => {
                if c.pick(3) == 0 {
                    out.extend([c.one(&NAMES).into(), ":".into()]);
                }
                out.push(c.one(&NAMES).into());
                if c.pick(2) == 0 {
                    gen_arguments(c, depth, out);
                }
                gen_directives(c, depth, out);
            }
            4 => {
                out.extend(["...".into(), "on".into(), c.one(&NAMES).into()]);
                gen_directives(c, depth, out);
                gen_selection_set(c, depth + 1, out);
            }
            5 => {
                out.push("...".into());
                gen_directives(c, depth, out);
                gen_selection_set(c, depth + 1, out);
            }
            _ => {
                out.push(c.one(&NAMES).into());
                gen_selection_set(c, depth + 1, out);
            }
        }
    }
    out.push("}".into());
}

fn gen_type(c: &mut Choices<'_>, out: &mut Vec<String>) {
    match c.pick(3) {
        0 => out.extend(["[".into(), "Int".into(), "]".into()]),
        1 => out.extend([
            "[".into(),
            "[".into(),
            "T".into(),
            "!".into(),
            "]".into(),
            "]".into(),
        ]),
        _ => out.push(c.one(&NAMES).into()),
    }
    if c.pick(2) == 0 {
        out.push("!".into());
    }
}

fn gen_document(c: &mut Choices<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..c.pick(3) + 1 {
        match c.pick(6) {
            0 => gen_selection_set(c, 0, &mut out),
            1 => {
                out.extend(["fragment".into(), c.one(&NAMES).into(), "on".into()]);
                out.push(c.one(&NAMES).into());
                gen_directives(c, 0, &mut out);
                gen_selection_set(c, 0, &mut out);
            }
            _ => {
                out.push(c.one(&["query", "mutation", "subscription"]).into());
                if c.pick(3) != 0 {
                    out.push(c.one(&NAMES).into());
                }
                if c.pick(2) == 0 {
                    out.push("(".into());
                    for _ in 0..c.pick(3) + 1 {
                        out.extend(["$".into(), c.one(&NAMES).into(), ":".into()]);
                        gen_type(c, &mut out);
                        if c.pick(2) == 0 {
                            out.push("=".into());
                            gen_value(c, 0, &mut out);
                        }
                        if c.pick(5) == 0 {
                            out.extend(["@".into(), "d".into()]);
                        }
                    }
                    out.push(")".into());
                }
                gen_directives(c, 0, &mut out);
                gen_selection_set(c, 0, &mut out);
            }
        }
    }
    out
}

const ODD_TOKENS: [&str; 16] = [
    "{", "}", "(", ")", "[", "]", ":", "$", "@", "...", "!", "=", "on", "\"s", "1.", "type",
];

fn join(tokens: &[String], c: &mut Choices<'_>) -> String {
    let mut doc = String::new();
    for t in tokens {
        doc.push_str(t);
        doc.push_str(c.one(&[" ", ",", "\n", " #c\n", "\t"]));
    }
    doc
}

/// The fast path vouches for a document only when apollo-parser's full parse
/// reads it without an error and finds the same operations.
fn check_scan_against_parser(doc: &str) -> bool {
    match scan_operations(doc) {
        Some(fast) => {
            assert_eq!(operations_by_parse(doc), Ok(fast), "document: {doc}");
            true
        }
        None => false,
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

    #[test]
    fn the_fast_path_accepts_only_what_apollo_parser_accepts(
        choices in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        edits in proptest::collection::vec(
            (proptest::prelude::any::<u8>(), proptest::prelude::any::<u16>()), 0..3),
    ) {
        let mut c = Choices(choices.iter());
        let mut tokens = gen_document(&mut c);
        for (op, at) in edits {
            let i = usize::from(at) % (tokens.len() + 1);
            match op % 3 {
                0 if i < tokens.len() => { tokens.remove(i); }
                1 => tokens.insert(i, ODD_TOKENS[usize::from(op) % ODD_TOKENS.len()].into()),
                _ if i < tokens.len() => tokens[i] = NAMES[usize::from(op) % NAMES.len()].into(),
                _ => {}
            }
        }
        let doc = join(&tokens, &mut c);
        check_scan_against_parser(&doc);
    }
}

#[test]
fn the_fast_path_takes_common_documents() {
    // Not a vacuous property: most generated documents go the fast way.
    let mut taken = 0;
    for seed in 0u32..500 {
        let bytes: Vec<u8> = (0..300u32)
            .map(|i| (seed.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)).to_le_bytes()[1])
            .collect();
        let mut c = Choices(bytes.iter());
        let doc = join(&gen_document(&mut c), &mut c);
        taken += usize::from(check_scan_against_parser(&doc));
    }
    assert!(taken > 100, "only {taken} of 500 took the fast path");
    for doc in [
        "query Issues($owner: String!, $n: [Int!]! = [1, 2]) { repository(owner: $owner) { a: issues(first: 10, states: [OPEN]) { nodes { ...F ... on Issue { id } } } } } fragment F on Issue { number }",
        "{ viewer { login } }",
        "mutation M @d(x: {a: \"b\"}) { add(input: {id: 1, tags: []}) @skip(if: $no) { id } }",
    ] {
        assert!(check_scan_against_parser(doc), "{doc}");
    }
    // What it does not know goes to the full parse.
    for doc in [
        "type T { a: Int }",
        "\"desc\" query { a }",
        "{ a() }",
        "{}",
        "query ($a: Int @d) { a }",
    ] {
        assert!(scan_operations(doc).is_none(), "{doc}");
    }
}
