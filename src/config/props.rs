//! Property tests: generated `tollgate.yaml` files load with every relative path
//! resolved; the same files broken the ways people break them are refused with
//! `file:line`, and nothing panics.
//!
//! Every load goes through `crate::fuzzing::config::check_config_text`, which also
//! asserts the fuzz target's invariants (located errors, consistent configs).

use crate::fuzzing::config::check_config_text;
use crate::fuzzing::config::lines::{join, numbered, Line};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use std::path::Path;

#[derive(Debug, Clone)]
struct Generated {
    listen: Vec<u16>,
    admin_unix: bool,
    state_dir: &'static str,
    resolve: Vec<(String, u16)>,
    allow_private: Vec<&'static str>,
    timeout: &'static str,
    checkpoint: bool,
    stdout_sink: bool,
    notify: bool,
    tasks: Vec<String>,
}

const ADDR_WRONG: &[&str] = &["nope", "127.0.0.1", "127.0.0.1:99999", "[1]", "{a: b}"];
const DURATION_WRONG: &[&str] = &["10", "0s", "ten seconds", "[1s]"];
const PATH_WRONG: &[&str] = &["[a]", "{a: b}"];

fn generated() -> impl Strategy<Value = Generated> {
    (
        prop::collection::vec(1024u16.., 1..3),
        any::<bool>(),
        select(&[".tollgate", "/var/lib/tollgate", "state"][..]),
        prop::collection::vec(("[a-z]{1,8}\\.test", 1u16..), 0..3),
        prop::sample::subsequence(vec!["127.0.0.0/8", "::1", "10.1.0.0/16"], 0..3),
        select(&["500ms", "2s", "1m"][..]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::btree_set("[a-z][a-z0-9-]{0,8}", 0..3),
    )
        .prop_map(
            |(
                listen,
                admin_unix,
                state_dir,
                resolve,
                allow_private,
                timeout,
                checkpoint,
                stdout_sink,
                notify,
                tasks,
            )| Generated {
                listen,
                admin_unix,
                state_dir,
                // One entry per host: YAML refuses a repeated key.
                resolve: resolve
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>()
                    .into_iter()
                    .collect(),
                allow_private,
                timeout,
                checkpoint,
                stdout_sink,
                notify,
                tasks: tasks.into_iter().collect(),
            },
        )
}

/// Renders a config file in the block style of DESIGN.md.
fn render(c: &Generated) -> Vec<Line> {
    let mut lines = Vec::new();
    if let [one] = c.listen.as_slice() {
        lines.push(Line::field(
            0,
            "listen",
            format!("listen: 127.0.0.1:{one}"),
            ADDR_WRONG,
        ));
    } else {
        let addrs: Vec<String> = c
            .listen
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let text = format!("listen: [{}]", addrs.join(", "));
        lines.push(Line::field(0, "listen", text, &["[nope]", "[]", "{a: b}"]));
    }
    lines.push(Line::plain("admin:".into()));
    let admin = if c.admin_unix {
        "unix:/run/tollgate/admin.sock"
    } else {
        "127.0.0.1:3129"
    };
    lines.push(Line::field(
        2,
        "listen",
        format!("  listen: \"{admin}\""),
        ADDR_WRONG,
    ));
    lines.push(Line::field(
        2,
        "token_file",
        "  token_file: admin.token".into(),
        PATH_WRONG,
    ));
    lines.push(Line::field(
        0,
        "state_dir",
        format!("state_dir: {}", c.state_dir),
        PATH_WRONG,
    ));
    lines.push(Line::field(
        0,
        "policies",
        "policies: policies".into(),
        PATH_WRONG,
    ));
    lines.push(Line::plain("upstream:".into()));
    lines.push(Line::field(
        2,
        "extra_roots",
        "  extra_roots: [roots.pem]".into(),
        &["7", "{a: b}"],
    ));
    if c.resolve.is_empty() {
        lines.push(Line::field(
            2,
            "resolve",
            "  resolve: {}".into(),
            &["[a]", "{\"a b\": \"127.0.0.1:1\"}"],
        ));
    } else {
        lines.push(Line::plain("  resolve:".into()));
        for (host, port) in &c.resolve {
            lines.push(Line::field(
                4,
                "resolve-entry",
                format!("    {host}: \"127.0.0.1:{port}\""),
                &["nope", "\"127.0.0.1\"", "[1]"],
            ));
        }
    }
    let cidrs: Vec<String> = c.allow_private.iter().map(|c| format!("\"{c}\"")).collect();
    lines.push(Line::field(
        2,
        "allow_private",
        format!("  allow_private: [{}]", cidrs.join(", ")),
        &["[banana]", "[\"10.0.0.0/33\"]", "10.0.0.0/8"],
    ));
    lines.push(Line::field(
        2,
        "connect_timeout",
        format!("  connect_timeout: {}", c.timeout),
        DURATION_WRONG,
    ));
    lines.push(Line::plain("audit:".into()));
    let sign = if c.checkpoint { "checkpoint" } else { "record" };
    lines.push(Line::field(
        2,
        "sign",
        format!("  sign: {sign}"),
        &["always", "[record]", "1"],
    ));
    lines.push(Line::field(
        2,
        "checkpoint_every",
        "  checkpoint_every: 1s".into(),
        DURATION_WRONG,
    ));
    lines.push(Line::field(
        2,
        "on_failure",
        "  on_failure: closed".into(),
        &["maybe", "[open]"],
    ));
    lines.push(Line::plain("  sinks:".into()));
    lines.push(Line::field(
        6,
        "file",
        "    - file: { path: audit/audit.jsonl, rotate_bytes: 1048576 }".into(),
        &[
            "{ path: a, rotate_bytes: 0 }",
            "{ rotate_bytes: 5 }",
            "[a]",
            "{ path: a, rotate_bytes: -1 }",
        ],
    ));
    if c.stdout_sink {
        lines.push(Line::field(
            6,
            "stdout",
            "    - stdout: {}".into(),
            &["{ format: xml }", "[1]"],
        ));
    }
    if c.notify {
        lines.push(Line::plain("approvals:".into()));
        lines.push(Line::field(
            2,
            "notify",
            "  notify: [http://127.0.0.1:9000/hooks/tollgate]".into(),
            &["[ftp://x]", "[\"\"]", "7"],
        ));
        lines.push(Line::field(
            2,
            "max_pending_per_task",
            "  max_pending_per_task: 8".into(),
            &["0", "-1", "many"],
        ));
    }
    if !c.tasks.is_empty() {
        lines.push(Line::plain("tasks:".into()));
    }
    for (i, id) in c.tasks.iter().enumerate() {
        lines.push(Line::field(
            4,
            "id",
            format!("  - id: {id}"),
            &["\"a:b\"", "\"\"", "[a]"],
        ));
        lines.push(Line::field(
            4,
            "policy",
            "    policy: github-reader".into(),
            &["[a]", "{a: b}"],
        ));
        lines.push(Line::field(
            4,
            "source",
            format!("    source: 172.30.0.{}", i + 2),
            &["172.30.0.300", "host.test", "[1]"],
        ));
    }
    lines
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn generated_configs_load_with_paths_resolved(config in generated()) {
        let text = join(&render(&config));
        let loaded = check_config_text(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", numbered(&text))))?;
        prop_assert_eq!(loaded.listen.len(), config.listen.len());
        prop_assert_eq!(loaded.tasks.len(), config.tasks.len());
        prop_assert_eq!(loaded.upstream.resolve.len(), config.resolve.len());
        prop_assert_eq!(&loaded.policies_dir, Path::new("/etc/tollgate/policies"));
        prop_assert!(loaded.admin_token_file.starts_with("/etc/tollgate"));
        prop_assert!(loaded.upstream.extra_roots.iter().all(|p| p.starts_with("/etc/tollgate")));
    }

    #[test]
    fn deleting_a_line_never_panics_and_errors_are_located(
        config in generated(),
        which in any::<Index>(),
    ) {
        let mut lines = render(&config);
        lines.remove(which.index(lines.len()));
        let _ = check_config_text(&join(&lines));
    }

    #[test]
    fn a_misspelled_key_is_refused_at_its_line(
        config in generated(),
        which in any::<Index>(),
        key in "[a-z]{3,8}_x",
    ) {
        let mut lines = render(&config);
        // Not inside `resolve`, whose keys are host names, nor `headers`.
        let fields: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].field.is_some_and(|(_, k)| k != "resolve-entry"))
            .collect();
        let after = fields[which.index(fields.len())];
        let (column, _) = lines[after].field.unwrap_or_default();
        lines.insert(after + 1, Line::plain(format!("{}{key}: 1", " ".repeat(column))));
        let text = join(&lines);
        let err = check_config_text(&text).err();
        prop_assert!(err.is_some(), "accepted:\n{}", numbered(&text));
        let err = err.unwrap();
        prop_assert_eq!(err.line, Some(after + 2), "{}\n{}", err, numbered(&text));
        prop_assert!(err.message.contains(&key), "{}", err);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_at_a_line(
        config in generated(),
        which in any::<Index>(),
        wrong in any::<Index>(),
    ) {
        let mut lines = render(&config);
        let typed: Vec<usize> = (0..lines.len()).filter(|&i| !lines[i].wrong.is_empty()).collect();
        let at = typed[which.index(typed.len())];
        let value = lines[at].wrong[wrong.index(lines[at].wrong.len())];
        let (head, _) = lines[at].text.split_once(": ").unwrap_or_default();
        lines[at].text = format!("{head}: {value}");
        let text = join(&lines);
        // check_config_text asserts the line exists; which line depends on whether
        // serde (the value's line) or validation (the block's line) refuses it.
        prop_assert!(check_config_text(&text).is_err(), "accepted:\n{}", numbered(&text));
    }
}
