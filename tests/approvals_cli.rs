//! `tollgate approvals` against a real `tollgate serve`: where it finds the admin
//! API and its token, and the one-line errors it gives. (Held requests and their
//! answers are tested with the proxy, in tests of the approval gate itself.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{admin_addr, admin_token, start_proxy, tollgate_bin, ProxyProc, ProxySetup};
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
    let output = Command::new(tollgate_bin())
        .arg("approvals")
        .args(args)
        .current_dir(cwd.path())
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
