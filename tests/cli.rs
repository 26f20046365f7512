//! The command line: `policy check`, `policy explain`, `ca init`, and start-up
//! errors of `serve`, run as the real binary.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::{tollgate_bin, write_file};
use std::process::{Command, Output};

fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(tollgate_bin())
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

const GOOD: &str = "name: good\nsecrets:\n  TOKEN:\n    env: TOKEN\n    hosts: [api.test]\nrules:\n  - name: read\n    host: api.test\n    methods: [GET]\n    paths: [\"/repos/*/pulls/**\"]\n    inject: [TOKEN]\n  - name: nope\n    host: api.test\n    paths: [\"/admin/**\"]\n    action: deny\n";

#[test]
fn policy_check_accepts_the_shipped_policies() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run(root, &["policy", "check", "policies"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("policies ok"));
}

#[test]
fn policy_check_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    write_file(p, "good.yaml", GOOD);
    write_file(
        p,
        "unknown-key.yaml",
        "name: unknown-key\nrules:\n  - host: a.test\n    pathz: [\"/x\"]\n",
    );
    write_file(
        p,
        "bad-path.yaml",
        "name: bad-path\nrules:\n  - host: a.test\n    paths:\n      - \"/a/**/b\"\n",
    );
    write_file(p, "undeclared.yaml", "name: undeclared\nsecrets:\n  A:\n    env: A\n    hosts: [a.test]\nrules:\n  - name: first\n    host: a.test\n  - name: second\n    host: a.test\n    inject: [B]\n");
    write_file(
        p,
        "wrong-name.yaml",
        "description: x\nname: other\nrules: []\n",
    );
    write_file(
        p,
        "bad-host.yaml",
        "name: bad-host\nrules:\n  - host: \"a.*.test\"\n",
    );
    write_file(
        p,
        "bad-secret.yaml",
        "name: bad-secret\nsecrets:\n  lower:\n    env: X\n    hosts: [a.test]\n",
    );
    write_file(
        p,
        "no-hosts.yaml",
        "name: no-hosts\nsecrets:\n  A:\n    env: A\nrules: []\n",
    );
    write_file(
        p,
        "bad-rate.yaml",
        "name: bad-rate\nrules:\n  - host: a.test\n    rate: { requests: 0, per: 1s }\n",
    );
    write_file(
        p,
        "bad-yaml.yaml",
        "name: bad-yaml\nrules:\n  - host: [unclosed\n",
    );
    let out = run(p, &["policy", "check", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for expected in [
        "unknown-key.yaml:4: ",
        "bad-path.yaml:5: ",
        "undeclared.yaml:11: ",
        "wrong-name.yaml:2: ",
        "bad-host.yaml:3: ",
        "bad-secret.yaml:3: ",
        "no-hosts.yaml:3: ",
        "bad-rate.yaml:4: ",
        "bad-yaml.yaml:",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    assert!(err.contains("pathz"), "the unknown key is named:\n{err}");
    assert!(
        err.contains("`B`"),
        "the undeclared secret is named:\n{err}"
    );
    assert!(!err.contains("good.yaml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn policy_check_warns_about_plaintext_injection() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "plain.yaml", "name: plain\nsecrets:\n  A:\n    env: A\n    hosts: [a.test]\nrules:\n  - host: a.test\n    port: 80\n    inject: [A]\n    allow_plaintext: true\n");
    let out = run(dir.path(), &["policy", "check", "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("plain.yaml:10: warning"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_explain_reports_rule_decision_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    write_file(&dir.path().join("policies"), "good.yaml", GOOD);
    let allowed = run(
        dir.path(),
        &[
            "policy",
            "explain",
            "--policy",
            "good",
            "GET",
            "https://API.test/repos/x/pulls/1",
            "-H",
            "Authorization: Bearer __TOKEN__",
        ],
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    let text = stdout(&allowed);
    assert!(text.contains("rule: read"), "{text}");
    assert!(text.contains("decision: allow"), "{text}");
    assert!(text.contains("inject: TOKEN"), "{text}");

    let denied = run(
        dir.path(),
        &[
            "policy",
            "explain",
            "--policy",
            "good",
            "GET",
            "https://api.test/admin/x",
        ],
    );
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        stdout(&denied).contains("denied_by_rule"),
        "{}",
        stdout(&denied)
    );

    let none = run(
        dir.path(),
        &[
            "policy",
            "explain",
            "--policy",
            "good",
            "POST",
            "https://api.test/repos/x/pulls",
        ],
    );
    assert_eq!(none.status.code(), Some(1));
    assert!(stdout(&none).contains("no_rule"));

    let ambiguous = run(
        dir.path(),
        &[
            "policy",
            "explain",
            "--policy",
            "good",
            "GET",
            "https://api.test/repos/x/pulls/%2e%2e/admin",
        ],
    );
    assert_eq!(ambiguous.status.code(), Some(1));
    assert!(stdout(&ambiguous).contains("bad_request"));

    let wrong_host = run(
        dir.path(),
        &[
            "policy",
            "explain",
            "--policy",
            "good",
            "GET",
            "https://other.test/repos/x/pulls",
            "-H",
            "X: __TOKEN__",
        ],
    );
    assert_eq!(wrong_host.status.code(), Some(1));

    let missing = run(
        dir.path(),
        &[
            "policy",
            "explain",
            "--policy",
            "absent",
            "GET",
            "https://api.test/",
        ],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("absent"), "{}", stderr(&missing));
    let bad_url = run(
        dir.path(),
        &[
            "policy",
            "explain",
            "--policy",
            "good",
            "GET",
            "ftp://api.test/",
        ],
    );
    assert_eq!(bad_url.status.code(), Some(2));
}

#[test]
fn ca_init_creates_a_private_key_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["ca", "init", "--dir", "ca"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).trim().ends_with("ca/ca.pem"),
        "{}",
        stdout(&out)
    );
    let key = dir.path().join("ca/ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("ca"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let before = std::fs::read(&key).unwrap();
    let again = run(dir.path(), &["ca", "init", "--dir", "ca"]);
    assert!(again.status.success());
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "an existing CA must never be replaced"
    );

    let pem = std::fs::read(dir.path().join("ca/ca.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert!(cert.is_ca());
}

#[test]
fn ca_init_without_dir_uses_default_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["ca", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join(".tollgate/ca.key").exists());
}

#[test]
fn serve_refuses_bad_config_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "tollgate.yaml",
        "listen: 127.0.0.1:0\nupstream:\n  alow_private: []\n",
    );
    let out = run(dir.path(), &["serve"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("tollgate.yaml:3:") && err.contains("alow_private"),
        "{err}"
    );
    assert!(!err.contains("listening on"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
}

#[test]
fn serve_refuses_broken_policies_and_unknown_task_policies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    write_file(
        &dir.path().join("policies"),
        "p.yaml",
        "name: p\nrules:\n  - host: a.test\n    methods: [get]\n",
    );
    write_file(dir.path(), "tollgate.yaml", "listen: 127.0.0.1:0\n");
    let out = run(dir.path(), &["serve"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("p.yaml:4:"), "{}", stderr(&out));

    write_file(
        &dir.path().join("policies"),
        "p.yaml",
        "name: p\nrules: []\n",
    );
    write_file(
        dir.path(),
        "tollgate.yaml",
        "listen: 127.0.0.1:0\ntasks:\n  - { id: t, policy: missing, source: 10.9.9.9 }\n",
    );
    let out = run(dir.path(), &["serve"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}

#[test]
fn policy_explain_names_a_minted_secret_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/github-app.yaml"),
    )
    .unwrap();
    write_file(&dir.path().join("policies"), "github-app.yaml", &example);
    let out = run(
        dir.path(),
        &[
            "policy",
            "explain",
            "--policy",
            "github-app",
            "POST",
            "https://github.com/acme/widgets/git-upload-pack",
            "-H",
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46X19HSVRIVUJfVE9LRU5fXw==",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("inject: GITHUB_TOKEN (github_app: minted per task, repos widgets, docs)"),
        "{text}"
    );
}

#[test]
fn policy_check_locates_errors_in_minted_secret_blocks() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "app.yaml",
        "name: app\nsecrets:\n  GITHUB_TOKEN:\n    github_app:\n      app_id: 1\n      private_key: { vault: { path: github/app, field: private_key } }\n    hosts: [api.github.com]\n",
    );
    write_file(
        dir.path(),
        "crm.yaml",
        "name: crm\nsecrets:\n  CRM_TOKEN:\n    oauth2:\n      token_url: https://login.example.com/token\n      grant: password\n    hosts: [api.example.com]\n",
    );
    write_file(
        dir.path(),
        "keyless.yaml",
        "name: keyless\nsecrets:\n  CRM_TOKEN:\n    oauth2:\n      token_url: https://login.example.com/token\n      grant: jwt_bearer\n      scopes: [a]\n    hosts: [api.example.com]\n",
    );
    let out = run(dir.path(), &["policy", "check", "."]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for expected in [
        "app.yaml:4: secret `GITHUB_TOKEN`: github_app needs `installation_id` or `owner`",
        "crm.yaml:6:",
        "unknown variant `password`",
        "keyless.yaml:6: secret `CRM_TOKEN`: grant jwt_bearer needs `service_account`",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
}

#[test]
fn policy_explain_reads_the_body_a_content_rule_matches_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    write_file(
        &dir.path().join("policies"),
        "mcp.yaml",
        "name: mcp\nrules:\n  - name: tools\n    host: mcp.test\n    methods: [POST]\n    paths: [/mcp]\n    jsonrpc: { methods: [tools/call], tools: [add] }\n  - name: graphql reads\n    host: api.test\n    paths: [/graphql]\n    graphql: { operations: [query] }\n",
    );
    write_file(
        dir.path(),
        "call.json",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#,
    );
    let explain = |url: &str, data: &str| {
        let mut args = vec!["policy", "explain", "--policy", "mcp", "POST", url];
        if !data.is_empty() {
            args.extend(["--data", data]);
        }
        run(dir.path(), &args)
    };
    let allowed = explain("https://mcp.test/mcp", "@call.json");
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    let text = stdout(&allowed);
    assert!(
        text.contains("content: JSON-RPC tools/call (tool add)"),
        "{text}"
    );
    assert!(text.contains("rule: tools"), "{text}");

    let other = explain(
        "https://mcp.test/mcp",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}"#,
    );
    assert_eq!(other.status.code(), Some(1));
    assert!(
        stdout(&other).contains("tool rm") && stdout(&other).contains("no_rule"),
        "{}",
        stdout(&other)
    );

    let malformed = explain("https://mcp.test/mcp", "not json");
    assert_eq!(malformed.status.code(), Some(1));
    assert!(
        stdout(&malformed).contains("bad_request, 400"),
        "{}",
        stdout(&malformed)
    );

    let no_body = explain("https://mcp.test/mcp", "");
    assert!(
        stdout(&no_body).contains("pass it with --data"),
        "{}",
        stdout(&no_body)
    );

    let mutation = explain(
        "https://api.test/graphql",
        r#"{"query":"mutation M { x }"}"#,
    );
    assert_eq!(mutation.status.code(), Some(1));
    assert!(
        stdout(&mutation).contains("content: GraphQL mutation M"),
        "{}",
        stdout(&mutation)
    );

    let missing = explain("https://mcp.test/mcp", "@nope.json");
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("--data @nope.json"),
        "{}",
        stderr(&missing)
    );
}
