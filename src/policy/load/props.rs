//! Property tests: generated policies load; the same files broken the ways people
//! break them (a line deleted, a key repeated or misspelled, a value of the wrong
//! type) are refused with `file:line`, and nothing panics.
//!
//! Every load goes through `crate::fuzzing::config::check_policy_text`, which also
//! asserts the fuzz target's invariants (located errors, consistent policies).

use crate::fuzzing::config::check_policy_text;
use crate::fuzzing::config::lines::{join, numbered, Line};
use crate::yaml::FileError;
use proptest::prelude::*;
use proptest::sample::{select, Index};

#[derive(Debug, Clone)]
struct Secret {
    name: String,
    /// 0 env, 1 vault, 2 github_app, 3 oauth2, 4 aws.
    kind: u8,
    host: &'static str,
    ttl: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Rule {
    host: &'static str,
    port: Option<u16>,
    methods: Option<Vec<&'static str>>,
    paths: Option<Vec<String>>,
    inject: Vec<Index>,
    action: &'static str,
    rate: Option<(u32, &'static str)>,
    /// 0 none, 1 `jsonrpc`, 2 `graphql`.
    content: u8,
}

#[derive(Debug, Clone)]
struct Generated {
    name: String,
    secrets: Vec<Secret>,
    rules: Vec<Rule>,
    tunnel: bool,
    max_concurrent: Option<u32>,
}

const HOSTS: &[&str] = &[
    "api.example.com",
    "*.svc.example.org",
    "10.0.0.5",
    "registry.npmjs.org",
];
const PORT_WRONG: &[&str] = &["high", "-1", "70000", "[443]", "{a: 1}", "1.5"];
const COUNT_WRONG: &[&str] = &["lots", "-3", "[1]", "4294967296"];
const BOOL_WRONG: &[&str] = &["maybe", "2", "[true]"];
const METHODS_WRONG: &[&str] = &["GET", "[get]", "[G E T]", "{GET: 1}", "[\"\"]"];
const PATHS_WRONG: &[&str] = &["/a", "[a/b]", "[\"/a/**/b\"]", "[\"/a/../b\"]", "[\"/x*\"]"];
const HOST_WRONG: &[&str] = &[
    "\"ex ample.com\"",
    "[a.com]",
    "\"a.*.com\"",
    "\"*\"",
    "\"\"",
];
const ACTION_WRONG: &[&str] = &["permit", "[allow]", "ALLOW", "1"];
const DURATION_WRONG: &[&str] = &["5", "5 minutes", "-5m", "5d", "[5m]"];
const INJECT_WRONG: &[&str] = &["[lower_case]", "[1X]", "NOT_A_LIST", "[UNDECLARED_X]"];

fn generated() -> impl Strategy<Value = Generated> {
    let secret = (
        "[A-Z][A-Z0-9_]{0,8}",
        0u8..5,
        select(HOSTS),
        prop::option::of(select(&["5m", "30s", "1h"][..])),
    )
        .prop_map(|(name, kind, host, ttl)| Secret {
            name,
            kind,
            host,
            ttl,
        });
    let path = prop::collection::vec(
        prop_oneof![3 => "[a-z0-9]{1,5}", 1 => Just("*".to_string()), 1 => Just("%41".to_string())],
        0..4,
    )
    .prop_flat_map(|segs| {
        (Just(segs), any::<bool>()).prop_map(|(segs, rest)| {
            let mut p = format!("/{}", segs.join("/"));
            if rest {
                p = format!("{}/**", p.trim_end_matches('/'));
            }
            p
        })
    });
    let rule = (
        select(HOSTS),
        prop::option::of(1u16..),
        prop::option::of(prop::sample::subsequence(
            vec!["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
            1..4,
        )),
        prop::option::of(prop::collection::vec(path, 1..3)),
        prop::collection::vec(any::<Index>(), 0..3),
        select(&["allow", "deny", "approve"][..]),
        prop::option::of((1u32..1000, select(&["1s", "1m", "500ms"][..]))),
        0u8..3,
    )
        .prop_map(
            |(host, port, methods, paths, inject, action, rate, content)| Rule {
                host,
                port,
                methods,
                paths,
                inject,
                action,
                rate,
                content,
            },
        );
    (
        "[a-z][a-z0-9-]{0,12}",
        prop::collection::btree_map("[A-Z][A-Z0-9_]{0,8}", secret, 0..3),
        prop::collection::vec(rule, 0..4),
        any::<bool>(),
        prop::option::of(1u32..1000),
    )
        .prop_map(|(name, secrets, rules, tunnel, max_concurrent)| Generated {
            name,
            // Unique secret names: the map's keys.
            secrets: secrets
                .into_iter()
                .map(|(name, s)| Secret { name, ..s })
                .collect(),
            rules,
            tunnel,
            max_concurrent,
        })
}

/// Renders a policy file in the block style of DESIGN.md.
fn render(policy: &Generated) -> Vec<Line> {
    let mut lines = vec![
        Line::field(
            0,
            "name",
            format!("name: {}", policy.name),
            &["[a]", "{a: b}"],
        ),
        Line::field(
            0,
            "description",
            "description: generated for a property test".into(),
            &["[a]"],
        ),
    ];
    if !policy.secrets.is_empty() {
        lines.push(Line::plain("secrets:".into()));
    }
    for s in &policy.secrets {
        lines.push(Line::plain(format!("  {}:", s.name)));
        let owner = lines.len();
        match s.kind {
            1 => lines.push(
                Line::field(
                    4,
                    "vault",
                    "    vault: { mount: secret, path: agents/x, field: token }".into(),
                    &["[x]", "7"],
                )
                .of(owner),
            ),
            2 => {
                // Keys of the nested mapping: serde places a repeat at its first line.
                let nested = lines.len() + 1;
                lines.push(
                    Line::field(4, "github_app", "    github_app:".into(), &["7", "[a]"]).of(owner),
                );
                lines.push(
                    Line::field(
                        6,
                        "app_id",
                        "      app_id: 12345".into(),
                        &["[1]", "app", "-1"],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "owner",
                        "      owner: acme".into(),
                        &["[acme]", "{a: b}", "\"a b\""],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "private_key",
                        "      private_key: { vault: { path: github/app, field: private_key } }"
                            .into(),
                        &["[x]", "7", "{ env: K, file: k.pem }", "{}"],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "repositories",
                        "      repositories: [widgets, docs]".into(),
                        &["widgets", "[acme/x]", "{a: b}"],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "permissions",
                        "      permissions: { contents: read, pull_requests: write }".into(),
                        &["[read]", "{ contents: all }", "read"],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "api",
                        "      api: https://ghe.example.com/api/v3".into(),
                        &["[a]", "http://ghe.example.com", "\"not a url\""],
                    )
                    .of(nested),
                );
            }
            3 => {
                let nested = lines.len() + 1;
                lines.push(Line::field(4, "oauth2", "    oauth2:".into(), &["7", "[a]"]).of(owner));
                lines.push(
                    Line::field(
                        6,
                        "token_url",
                        "      token_url: https://login.example.com/token".into(),
                        &["[a]", "http://login.example.com/token"],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "grant",
                        "      grant: client_credentials".into(),
                        &["password", "[client_credentials]", "7"],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "client_id",
                        "      client_id: agents".into(),
                        &["[a]", "{a: b}"],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "client_secret",
                        "      client_secret: { env: CLIENT_SECRET }".into(),
                        &["[x]", "{ env: \"a b\" }", "{}"],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "scopes",
                        "      scopes: [api.read, api.write]".into(),
                        &["{a: b}", "[\"a b\"]"],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(6, "per", "      per: policy".into(), &["tenant", "[task]"])
                        .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "metadata",
                        "      metadata: azure".into(),
                        &["aws", "[gcp]"],
                    )
                    .of(nested),
                );
            }
            4 => {
                let nested = lines.len() + 1;
                lines.push(Line::field(4, "aws", "    aws:".into(), &["7", "[a]"]).of(owner));
                lines.push(
                    Line::field(
                        6,
                        "credentials",
                        "      credentials: { vault: { mount: aws, role: agent-s3 } }".into(),
                        &[
                            "[x]",
                            "7",
                            "{}",
                            "{ vault: { role: a/b } }",
                            "{ access_key_id: { env: A } }",
                        ],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "regions",
                        "      regions: [us-east-1, eu-west-1]".into(),
                        &["us-east-1", "[US_EAST]", "{a: b}"],
                    )
                    .of(nested),
                );
                lines.push(
                    Line::field(
                        6,
                        "services",
                        "      services: [s3, sqs]".into(),
                        &["s3", "[\"s 3\"]", "[\"*\"]"],
                    )
                    .of(nested),
                );
            }
            _ => lines.push(
                Line::field(
                    4,
                    "env",
                    format!("    env: {}_ENV", s.name),
                    &["[A]", "{a: b}"],
                )
                .of(owner),
            ),
        }
        lines.push(
            Line::field(
                4,
                "hosts",
                format!("    hosts: [\"{}\"]", s.host),
                &["[\"a b\"]", "7", "{a: b}"],
            )
            .of(owner),
        );
        if let Some(ttl) = s.ttl {
            lines.push(Line::field(4, "ttl", format!("    ttl: {ttl}"), DURATION_WRONG).of(owner));
        }
    }
    if !policy.rules.is_empty() {
        lines.push(Line::plain("rules:".into()));
    }
    for (i, r) in policy.rules.iter().enumerate() {
        let owner = lines.len();
        lines.push(
            Line::field(4, "name", format!("  - name: rule-{i}"), &["[a]", "{a: b}"]).of(owner),
        );
        lines.push(
            Line::field(4, "host", format!("    host: \"{}\"", r.host), HOST_WRONG).of(owner),
        );
        if let Some(port) = r.port {
            lines.push(Line::field(4, "port", format!("    port: {port}"), PORT_WRONG).of(owner));
        }
        if let Some(methods) = &r.methods {
            lines.push(
                Line::field(
                    4,
                    "methods",
                    format!("    methods: [{}]", methods.join(", ")),
                    METHODS_WRONG,
                )
                .of(owner),
            );
        }
        if let Some(paths) = &r.paths {
            let quoted: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
            lines.push(
                Line::field(
                    4,
                    "paths",
                    format!("    paths: [{}]", quoted.join(", ")),
                    PATHS_WRONG,
                )
                .of(owner),
            );
        }
        if !policy.secrets.is_empty() && !r.inject.is_empty() {
            let names: Vec<&str> = r
                .inject
                .iter()
                .map(|ix| policy.secrets[ix.index(policy.secrets.len())].name.as_str())
                .collect();
            lines.push(
                Line::field(
                    4,
                    "inject",
                    format!("    inject: [{}]", names.join(", ")),
                    INJECT_WRONG,
                )
                .of(owner),
            );
        }
        lines.push(
            Line::field(
                4,
                "action",
                format!("    action: {}", r.action),
                ACTION_WRONG,
            )
            .of(owner),
        );
        if let Some((requests, per)) = r.rate {
            lines.push(
                Line::field(
                    4,
                    "rate",
                    format!("    rate: {{ requests: {requests}, per: {per} }}"),
                    &[
                        "{ requests: 0, per: 1s }",
                        "{ requests: 1, per: 0s }",
                        "{ requests: 1 }",
                        "60",
                    ],
                )
                .of(owner),
            );
        }
        match r.content {
            1 => lines.push(
                Line::field(
                    4,
                    "jsonrpc",
                    "    jsonrpc: { methods: [initialize, \"notifications/*\", tools/call], tools: [search] }"
                        .into(),
                    &[
                        "[tools/call]",
                        "{ methods: [\"a*b\"] }",
                        "{ methods: [initialize], tools: [x] }",
                        "{ tools: [x] }",
                        "{ methods: [a], tool: [x] }",
                        "7",
                    ],
                )
                .of(owner),
            ),
            2 => lines.push(
                Line::field(
                    4,
                    "graphql",
                    "    graphql: { operations: [query], names: [Issues] }".into(),
                    &[
                        "{ operations: [delete] }",
                        "{ operations: [] }",
                        "{ operations: query }",
                        "[query]",
                        "{ operations: [query], names: [\"\"] }",
                    ],
                )
                .of(owner),
            ),
            _ => {}
        }
        lines.push(
            Line::field(
                4,
                "inject_body",
                "    inject_body: false".into(),
                BOOL_WRONG,
            )
            .of(owner),
        );
    }
    if policy.tunnel {
        lines.push(Line::plain("tunnel:".into()));
        let owner = lines.len();
        lines.push(
            Line::field(4, "host", "  - host: pinned.example.net".into(), HOST_WRONG).of(owner),
        );
        lines.push(Line::field(4, "port", "    port: 443".into(), PORT_WRONG).of(owner));
    }
    if let Some(n) = policy.max_concurrent {
        lines.push(Line::field(
            0,
            "max_concurrent",
            format!("max_concurrent: {n}"),
            COUNT_WRONG,
        ));
    }
    lines
}

/// The policy file `text`, which must be refused; returns the error.
fn refused(name: &str, text: &str) -> Result<FileError, TestCaseError> {
    match check_policy_text(name, text) {
        Ok(_) => Err(TestCaseError::fail(format!("accepted:\n{text}"))),
        Err(err) => Ok(err),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn generated_policies_load(policy in generated()) {
        let text = join(&render(&policy));
        let loaded = check_policy_text(&policy.name, &text);
        let loaded = loaded.map_err(|e| TestCaseError::fail(format!("{e}\n{}", numbered(&text))))?;
        prop_assert_eq!(loaded.rules.len(), policy.rules.len());
        prop_assert_eq!(loaded.secrets.len(), policy.secrets.len());
        for (got, want) in loaded.rules.iter().zip(&policy.rules) {
            prop_assert_eq!(got.host.to_string(), want.host);
            prop_assert_eq!(got.port, want.port);
            let paths = got.paths.as_ref().map(|ps| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>());
            prop_assert_eq!(paths.as_ref(), want.paths.as_ref());
        }
    }

    #[test]
    fn deleting_a_line_never_panics_and_errors_are_located(
        policy in generated(),
        which in any::<Index>(),
    ) {
        let mut lines = render(&policy);
        lines.remove(which.index(lines.len()));
        // Either loads or is refused with file:line; check_policy_text asserts both.
        let _ = check_policy_text(&policy.name, &join(&lines));
    }

    #[test]
    fn a_misspelled_key_is_refused_at_its_line(
        policy in generated(),
        which in any::<Index>(),
        key in "[a-z]{3,8}_x",
    ) {
        let mut lines = render(&policy);
        let fields: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].field.is_some()).collect();
        let after = fields[which.index(fields.len())];
        let (column, _) = lines[after].field.unwrap_or_default();
        lines.insert(after + 1, Line::plain(format!("{}{key}: 1", " ".repeat(column))));
        let text = join(&lines);
        let err = refused(&policy.name, &text)?;
        prop_assert_eq!(err.line, Some(after + 2), "{}\n{}", err, numbered(&text));
        prop_assert!(err.message.contains(&key), "{}", err);
    }

    #[test]
    fn a_repeated_key_is_refused_at_a_line_with_that_key(
        policy in generated(),
        which in any::<Index>(),
    ) {
        let mut lines = render(&policy);
        let fields: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].field.is_some()).collect();
        let at = fields[which.index(fields.len())];
        let (column, key) = lines[at].field.unwrap_or_default();
        let value = lines[at].text.split_once(": ").map(|(_, v)| v.to_string()).unwrap_or_default();
        lines.insert(at + 1, Line::plain(format!("{}{key}: {value}", " ".repeat(column))));
        let text = join(&lines);
        let err = refused(&policy.name, &text)?;
        // serde sees the repeat only at the second key, or once the mapping ends.
        let lines_ok = [at + 1, at + 2, lines[at].owner + 1];
        prop_assert!(lines_ok.contains(&err.line.unwrap_or_default()), "{}\n{}", err, numbered(&text));
        prop_assert!(err.message.contains(key), "{}", err);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_at_its_line(
        policy in generated(),
        which in any::<Index>(),
        wrong in any::<Index>(),
    ) {
        let mut lines = render(&policy);
        let typed: Vec<usize> = (0..lines.len()).filter(|&i| !lines[i].wrong.is_empty()).collect();
        let at = typed[which.index(typed.len())];
        let value = lines[at].wrong[wrong.index(lines[at].wrong.len())];
        let (head, _) = lines[at].text.split_once(": ").unwrap_or_default();
        lines[at].text = format!("{head}: {value}");
        let text = join(&lines);
        let err = refused(&policy.name, &text)?;
        // A type error names the value's line; a value the type's own check
        // refuses names the first line of its mapping (the rule, the secret).
        let lines_ok = [at + 1, lines[at].owner + 1];
        prop_assert!(lines_ok.contains(&err.line.unwrap_or_default()), "{}\n{}", err, numbered(&text));
    }
}
