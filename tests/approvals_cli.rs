//! `tollgate approvals` against a real `tollgate serve`: where it finds the admin
//! API and its token (never from a `tollgate.yaml` it was not pointed at), what
//! `show` prints of a held request, and the one-line errors it gives. (Answers
//! to held requests are tested with the proxy, in tests of the approval gate
//! itself.)

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::{admin_addr, admin_token, start_proxy, tollgate_bin, ProxyProc, ProxySetup};
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

const POLICY: &str = "name: agent\nrules:\n  - name: api\n    host: api.test\n";

/// What one `tollgate approvals ...` run did.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `tollgate approvals ARGS` in an empty directory (no stray tollgate.yaml),
/// with no admin token in its environment unless `env` gives one.
fn approvals(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let cwd = tempfile::tempdir().unwrap();
    approvals_in(cwd.path(), args, env)
}

/// Runs `tollgate approvals ARGS` in `cwd`, as [`approvals`] does.
fn approvals_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let output = Command::new(tollgate_bin())
        .arg("approvals")
        .args(args)
        .current_dir(cwd)
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env_remove("TEST_AGENT_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

fn proxy() -> ProxyProc {
    start_proxy(&ProxySetup::with_policy("agent", POLICY))
}

fn token_file(proxy: &ProxyProc) -> String {
    proxy
        .dir
        .path()
        .join("state/admin.token")
        .to_str()
        .unwrap()
        .to_string()
}

/// Exit 1 and exactly one `tollgate: ...` line on stderr containing `needle`.
fn assert_fails_with(ran: &Ran, needle: &str) {
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stderr.contains(needle), "wanted {needle:?}: {ran:?}");
    assert!(ran.stderr.starts_with("tollgate: "), "{ran:?}");
    assert_eq!(ran.stderr.trim_end().lines().count(), 1, "{ran:?}");
    assert!(!ran.stderr.contains("panicked"), "{ran:?}");
}

#[test]
fn list_finds_the_token_in_a_file_or_the_environment() {
    let proxy = proxy();
    let admin = format!("http://{}", admin_addr(&proxy));
    let file = token_file(&proxy);

    let ran = approvals(
        &["list", "--admin", &admin, "--admin-token-file", &file],
        &[],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(ran.stdout.trim(), "no requests are waiting for approval");

    // HOST:PORT without the scheme, options before the subcommand, token in the env.
    let token = admin_token(&proxy);
    let bare = admin_addr(&proxy);
    let ran = approvals(
        &["--admin", &bare, "list"],
        &[("TOLLGATE_ADMIN_TOKEN", &token)],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(ran.stdout.trim(), "no requests are waiting for approval");

    let ran = approvals(
        &["list", "--json", "--admin", &admin],
        &[("TOLLGATE_ADMIN_TOKEN", &token)],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let listed: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(listed, serde_json::json!([]));

    // The file wins over the environment.
    let ran = approvals(
        &["list", "--admin", &admin, "--admin-token-file", &file],
        &[("TOLLGATE_ADMIN_TOKEN", "wrong-token-wrong-token")],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
}

#[test]
fn without_admin_the_config_gives_the_address_and_the_token() {
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("admin.sock");
    let setup = ProxySetup {
        admin_listen: Some(format!("unix:{}", socket.display())),
        ..ProxySetup::with_policy("agent", POLICY)
    };
    let proxy = start_proxy(&setup);
    let config = proxy.dir.path().join("tollgate.yaml");
    let config = config.to_str().unwrap();
    // The socket is bound just after the proxy listener is logged.
    admin_addr(&proxy);

    // The static task's token variable is the proxy's business, not the CLI's.
    let ran = approvals(&["list", "--config", config], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(ran.stdout.trim(), "no requests are waiting for approval");

    // A token given explicitly is used instead of the config's.
    let ran = approvals(
        &["list", "--config", config],
        &[("TOLLGATE_ADMIN_TOKEN", "wrong-token-wrong-token")],
    );
    assert_fails_with(&ran, "refused the token");

    // The config's token file is read only if no one else can read or write it.
    let token = proxy.dir.path().join("state/admin.token");
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
        let ran = approvals(&["list", "--config", config], &[]);
        assert_fails_with(&ran, &token.display().to_string());
        assert!(ran.stderr.contains("open to group or others"), "{ran:?}");
        assert!(ran.stderr.contains(&format!("mode 0{mode:o}")), "{ran:?}");
    }
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Nor through a symlink, even to the right file.
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("admin.token");
    std::os::unix::fs::symlink(&token, &link).unwrap();
    let linked = elsewhere.path().join("tollgate.yaml");
    std::fs::write(
        &linked,
        format!(
            "admin: {{ listen: \"unix:{}\", token_file: admin.token }}\n",
            socket.display()
        ),
    )
    .unwrap();
    let ran = approvals(&["list", "--config", linked.to_str().unwrap()], &[]);
    assert_fails_with(&ran, &format!("{} is a symlink", link.display()));
    // A token given explicitly is still the operator's choice.
    let ran = approvals(
        &[
            "list",
            "--config",
            linked.to_str().unwrap(),
            "--admin-token-file",
            link.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");

    // With --admin, the config's token is never sent elsewhere.
    let ran = approvals(
        &[
            "list",
            "--config",
            config,
            "--admin",
            &format!("unix:{}", socket.display()),
        ],
        &[],
    );
    assert_fails_with(&ran, "--admin-token-file FILE or $TOLLGATE_ADMIN_TOKEN");
}

#[test]
fn a_wrong_token_is_refused() {
    let proxy = proxy();
    let admin = admin_addr(&proxy);
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("token");
    std::fs::write(&wrong, "not-the-admin-token\n").unwrap();
    let ran = approvals(
        &[
            "list",
            "--admin",
            &admin,
            "--admin-token-file",
            wrong.to_str().unwrap(),
        ],
        &[],
    );
    assert_fails_with(
        &ran,
        "the admin API refused the token (give it with --admin-token-file or $TOLLGATE_ADMIN_TOKEN)",
    );
    let ran = approvals(
        &["deny", "a-1", "--admin", &admin],
        &[("TOLLGATE_ADMIN_TOKEN", "not-the-admin-token")],
    );
    assert_fails_with(&ran, "refused the token");
}

#[test]
fn an_unreachable_admin_api_is_named() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("http://{closed}");
    let ran = approvals(&["list", "--admin", &url], &[("TOLLGATE_ADMIN_TOKEN", "x")]);
    assert_fails_with(&ran, "cannot reach the tollgate admin API");
    assert!(ran.stderr.contains(&url), "{ran:?}");
    assert_eq!(
        ran.stderr.matches("refused").count(),
        1,
        "said once: {ran:?}"
    );

    let ran = approvals(
        &[
            "approve",
            "a-1",
            "--admin",
            "unix:/nonexistent/tollgate/admin.sock",
        ],
        &[("TOLLGATE_ADMIN_TOKEN", "x")],
    );
    assert_fails_with(&ran, "cannot reach the tollgate admin API");
}

#[test]
fn answering_an_unknown_id_says_it_is_not_pending() {
    let proxy = proxy();
    let admin = admin_addr(&proxy);
    let file = token_file(&proxy);
    let common = [
        "--admin",
        admin.as_str(),
        "--admin-token-file",
        file.as_str(),
    ];
    let ran = approvals(
        &[
            &["approve", "a-doesnotexist", "--reason", "ok", "--by", "ops"][..],
            &common,
        ]
        .concat(),
        &[],
    );
    assert_fails_with(
        &ran,
        "no pending approval a-doesnotexist (already answered, timed out or withdrawn)",
    );
    let ran = approvals(
        &[&["approve", "a-doesnotexist", "--for", "10m"][..], &common].concat(),
        &[],
    );
    assert_fails_with(&ran, "no pending approval a-doesnotexist");
    let ran = approvals(&[&["deny", "a-doesnotexist"][..], &common].concat(), &[]);
    assert_fails_with(&ran, "no pending approval a-doesnotexist");
    for show in [
        &["show", "a-doesnotexist"][..],
        &["show", "a-doesnotexist", "--json"],
    ] {
        let ran = approvals(&[show, &common].concat(), &[]);
        assert_fails_with(
            &ran,
            "no pending approval a-doesnotexist (already answered, timed out or withdrawn)",
        );
    }
    // An ID cannot reach another endpoint.
    let ran = approvals(&[&["deny", "../../tasks"][..], &common].concat(), &[]);
    assert_fails_with(&ran, "no pending approval ../../tasks");
}

#[test]
fn bad_input_is_refused_before_any_network() {
    // Port 9 (discard) is not listening; the errors must come first.
    let ran = approvals(
        &[
            "approve",
            "a-1",
            "--for",
            "nonsense",
            "--admin",
            "http://127.0.0.1:9",
        ],
        &[("TOLLGATE_ADMIN_TOKEN", "x")],
    );
    assert_fails_with(&ran, "--for: duration `nonsense`");
    assert!(!ran.stderr.contains("cannot reach"), "{ran:?}");

    let ran = approvals(&["list", "--admin", "http://127.0.0.1:9"], &[]);
    assert_fails_with(&ran, "needs the admin token");

    let ran = approvals(
        &["list", "--admin", "https://127.0.0.1:9"],
        &[("TOLLGATE_ADMIN_TOKEN", "x")],
    );
    assert_fails_with(&ran, "give http://HOST:PORT or unix:/PATH");

    for with_path in [
        "http://127.0.0.1:9/v1/",
        "http://127.0.0.1:9/v1",
        "127.0.0.1:9/x",
    ] {
        let ran = approvals(
            &["show", "a-1", "--admin", with_path],
            &[("TOLLGATE_ADMIN_TOKEN", "x")],
        );
        assert_fails_with(&ran, "the admin URL takes no path");
        assert!(!ran.stderr.contains("cannot reach"), "{ran:?}");
    }

    let ran = approvals(
        &["show", " ", "--admin", "http://127.0.0.1:9"],
        &[("TOLLGATE_ADMIN_TOKEN", "x")],
    );
    assert_fails_with(&ran, "the approval ID is empty");

    let missing = Path::new("/nonexistent/admin.token");
    let ran = approvals(
        &[
            "list",
            "--admin",
            "http://127.0.0.1:9",
            "--admin-token-file",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert_fails_with(&ran, "/nonexistent/admin.token");

    // No --admin and a config whose admin port is not fixed.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tollgate.yaml");
    std::fs::write(&config, "admin: { listen: \"127.0.0.1:0\" }\n").unwrap();
    let ran = approvals(
        &["list", "--config", config.to_str().unwrap()],
        &[("TOLLGATE_ADMIN_TOKEN", "x")],
    );
    assert_fails_with(&ran, "give --admin URL");
}

/// A TCP listener standing in for one the sandbox controls; `connections()`
/// counts what connected to it (and reads what was sent, to show in failures).
struct Trap {
    listener: std::net::TcpListener,
}

impl Trap {
    fn new() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Trap { listener }
    }

    fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    /// What was sent on each connection accepted so far.
    fn connections(&self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok((mut stream, _)) = self.listener.accept() {
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        seen
    }
}

#[test]
fn a_tollgate_yaml_planted_in_the_working_directory_is_not_read() {
    // What a sandbox sharing the operator's filesystem could leave in their
    // working directory: its own admin address, and a token file that is some
    // other secret of the operator's (private, so it would pass the checks).
    let trap = Trap::new();
    let cwd = tempfile::tempdir().unwrap();
    let secret = cwd.path().join("vault-token");
    std::fs::write(&secret, "hvs.operators-vault-token\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        cwd.path().join("tollgate.yaml"),
        format!(
            "admin: {{ listen: \"{}\", token_file: {} }}\n",
            trap.addr(),
            secret.display()
        ),
    )
    .unwrap();

    for args in [
        &["list"][..],
        &["list", "--json"],
        &["show", "a-1"],
        &["approve", "a-1"],
        &["deny", "a-1"],
    ] {
        let ran = approvals_in(cwd.path(), args, &[]);
        assert_fails_with(
            &ran,
            "approvals needs the admin token: --admin-token-file FILE or $TOLLGATE_ADMIN_TOKEN",
        );
        assert!(ran.stderr.contains("--config FILE"), "{ran:?}");
        assert!(!ran.stderr.contains(&trap.addr()), "{ran:?}");
        assert_eq!(trap.connections(), Vec::<String>::new(), "{args:?}");
    }

    // With a token, the built-in default address is asked, not the planted one.
    let ran = approvals_in(
        cwd.path(),
        &["list"],
        &[("TOLLGATE_ADMIN_TOKEN", "operator-token")],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(!ran.stderr.contains(&trap.addr()), "{ran:?}");
    assert_eq!(trap.connections(), Vec::<String>::new());

    // Given explicitly, the same file is the operator's choice and is used.
    let ran = approvals_in(cwd.path(), &["list", "--config", "tollgate.yaml"], &[]);
    let seen = trap.connections();
    assert_eq!(seen.len(), 1, "{ran:?}");
    assert!(
        seen[0].contains("Bearer hvs.operators-vault-token"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn show_prints_what_the_operator_approves() {
    use common::upstream::{start_upstream, TestCa};
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let policy = format!(
        "name: gh\nrules:\n  - name: merge needs a person\n    host: api.test\n    port: {}\n    methods: [PUT]\n    action: approve\n",
        api.port
    );
    let setup = ProxySetup::with_policy("gh", &policy)
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    let proxy = start_proxy(&setup);
    let admin = admin_addr(&proxy);
    let file = token_file(&proxy);
    let common = [
        "--admin",
        admin.as_str(),
        "--admin-token-file",
        file.as_str(),
    ];

    // A long path whose end is what matters, a query, a header with a terminal
    // escape in it, and a body longer than the preview with one in it too.
    let path = format!("/repos/acme/web/{}/pulls/412/merge", "x".repeat(150));
    let url = format!(
        "https://api.test:{}{path}?merge_method=squash&sha=abc",
        api.port
    );
    let body = format!(
        "{{\"commit_title\":\"ship \u{1b}[2J it\"}}\n{}",
        "A".repeat(3000)
    );
    let held = {
        let proxy_url = proxy.url();
        let ca = proxy.ca_pem.to_str().unwrap().to_string();
        let body = body.clone();
        let url = url.clone();
        tokio::spawn(async move {
            common::curl_raw(&[
                "--proxy",
                &proxy_url,
                "--cacert",
                &ca,
                "-X",
                "PUT",
                "-H",
                "X-Note: a\u{202e}b",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
                &url,
            ])
            .await
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let ran = approvals(&[&["list", "--json"][..], &common].concat(), &[]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        let listed: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        if listed.as_array().is_some_and(|a| !a.is_empty()) {
            break listed;
        }
        assert!(std::time::Instant::now() < deadline, "nothing held");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["scheme"], "https");
    assert_eq!(listed[0]["query"], "merge_method=squash&sha=abc");

    // The table keeps the end of the path and the query.
    let ran = approvals(&[&["list"][..], &common].concat(), &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout
            .contains("x/pulls/412/merge?merge_method=squash&sha=abc  "),
        "{ran:?}"
    );
    assert!(
        ran.stdout.contains(&format!(" api.test:{} ", api.port)),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("/repos/acme/web/xxx"), "{ran:?}");
    assert!(ran.stdout.contains('…'), "{ran:?}");
    assert!(ran.stdout.contains("approvals show"), "{ran:?}");

    let ran = approvals(&[&["show", id.as_str()][..], &common].concat(), &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let out = &ran.stdout;
    assert!(
        !out.chars()
            .any(|c| c.is_control() && c != '\n' || ('\u{202a}'..='\u{202e}').contains(&c)),
        "{out:?}"
    );
    assert!(out.contains(&format!("id:      {id}\n")), "{out}");
    assert!(
        out.contains(&format!("task:    {}\n", common::TASK)),
        "{out}"
    );
    assert!(out.contains("policy:  gh\n"), "{out}");
    assert!(out.contains("rule:    merge needs a person\n"), "{out}");
    assert!(
        out.contains(&format!("request: PUT {url}\n")),
        "the whole URL: {out}"
    );
    assert!(out.contains("\nheaders:\n"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("\n  x-note: a\\u{202e}b\n"),
        "{out}"
    );
    assert!(
        !out.to_ascii_lowercase().contains("proxy-authorization"),
        "{out}"
    );
    assert!(!out.contains(common::TOKEN), "{out}");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        out.contains(&format!(
            "body:    {} bytes, application/json, sha256 {hex}\n",
            body.len()
        )),
        "{out}"
    );
    assert!(
        out.contains("  | {\"commit_title\":\"ship \\u{1b}[2J it\"}\n  | AAAA"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("\n  (preview truncated)"), "{out}");

    let ran = approvals(
        &[&["show", id.as_str(), "--json"][..], &common].concat(),
        &[],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(!ran.stdout.contains('\u{1b}'), "{ran:?}");
    let detail: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(detail["id"], id.as_str());
    assert_eq!(detail["body_sha256"], hex.as_str());
    assert_eq!(detail["body_preview_truncated"], true);
    assert_eq!(detail["body_preview"].as_str().map(str::len), Some(2048));

    let ran = approvals(&[&["deny", id.as_str()][..], &common].concat(), &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let answered = tokio::time::timeout(std::time::Duration::from_secs(20), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answered.status, 403, "{answered:?}");
}
