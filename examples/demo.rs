//! The main job end to end, on an embedded default, with no outside services:
//! a local HTTPS upstream (certificate from a CA made on the spot), tollgate
//! in-process with a demo policy, and curl sending requests through it.
//!
//!     cargo run --example demo

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/upstream.rs"]
mod upstream;

use std::path::Path;
use std::process::Command;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter("tollgate=info")
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ca = upstream::TestCa::new("demo upstream CA");
    let api = upstream::start_upstream(Some(ca.server_config(&["api.demo.test"]))).await;
    std::fs::write(root.join("upstream-ca.pem"), &ca.cert_pem).unwrap();
    std::fs::create_dir(root.join("policies")).unwrap();
    std::fs::write(
        root.join("policies/demo.yaml"),
        format!(
            "name: demo\nrules:\n  - name: block admin\n    host: api.demo.test\n    port: {p}\n    paths: [\"/admin/**\"]\n    action: deny\n  - name: read hello\n    host: api.demo.test\n    port: {p}\n    methods: [GET]\n    paths: [\"/hello/**\"]\n",
            p = api.port
        ),
    )
    .unwrap();
    std::env::set_var("DEMO_TASK_TOKEN", "demo-token");
    let config_text = format!(
        "listen: 127.0.0.1:0\nstate_dir: state\nupstream:\n  extra_roots: [upstream-ca.pem]\n  resolve: {{ api.demo.test: \"127.0.0.1:{}\" }}\n  allow_private: [127.0.0.1/32]\ntasks:\n  - {{ id: demo, policy: demo, token_env: DEMO_TASK_TOKEN }}\n",
        api.port
    );
    std::fs::write(root.join("tollgate.yaml"), &config_text).unwrap();
    let config = tollgate::config::Config::load_file(&root.join("tollgate.yaml")).unwrap();

    let shutdown = CancellationToken::new();
    let running = tollgate::proxy::run(&config, shutdown.clone())
        .await
        .unwrap();
    let proxy = running.addrs[0];
    println!(
        "tollgate listening on {proxy}; MITM CA at {}",
        config.ca_cert.display()
    );

    let base = format!("https://api.demo.test:{}", api.port);
    let auth = format!("http://demo:demo-token@{proxy}");
    let show = |title: &str, proxy_url: &str, url: &str| {
        println!("\n$ curl --proxy {proxy_url} --cacert state/ca.pem {url}");
        let out = curl(proxy_url, &config.ca_cert, url);
        println!("# {title}\n{out}");
    };
    show(
        "allowed by rule `read hello`",
        &auth,
        &format!("{base}/hello/world"),
    );
    show(
        "refused by rule `block admin`",
        &auth,
        &format!("{base}/admin/users"),
    );
    show(
        "no rule matches (default deny)",
        &auth,
        &format!("{base}/other"),
    );
    show(
        "ambiguous path refused before matching",
        &auth,
        &format!("{base}/hello/../admin/users"),
    );
    show(
        "no proxy credentials",
        &format!("http://{proxy}"),
        &format!("{base}/hello/world"),
    );

    shutdown.cancel();
    running.wait_and_drain().await;
    println!(
        "\nupstream received {} request(s); every refused one stopped at tollgate.",
        api.hits()
    );
}

fn curl(proxy: &str, ca: &Path, url: &str) -> String {
    let out = Command::new("curl")
        .args([
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
        .arg(ca)
        .args(["-w", "\n[HTTP %{http_code}]", url])
        .output()
        .expect("curl is needed for the demo (apt-get install curl)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
