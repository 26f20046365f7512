//! Shared test harness: the real `tollgate` binary with its own config and policy
//! directory, real upstreams, and real clients (curl, reqwest). No fixed ports; every
//! process is killed on drop.

#![expect(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "each test crate uses part of the harness; a failed setup panics the test"
)]

pub mod bao;
pub mod fixture;
pub mod github;
pub mod hostile;
pub mod moto;
pub mod oauth;
pub mod python;
pub mod redis;
pub mod skip;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The task every test uses unless it says otherwise.
pub const TASK: &str = "agent";
/// Its token.
pub const TOKEN: &str = "s3cret-token";

/// How to configure one proxy.
#[derive(Default, Clone)]
pub struct ProxySetup {
    /// `admin.listen` (default `127.0.0.1:0`).
    pub admin_listen: Option<String>,
    /// `(name, yaml)` policy files.
    pub policies: Vec<(String, String)>,
    /// Host name -> `ip:port` overrides.
    pub resolve: Vec<(String, String)>,
    /// Extra root PEM trusted for upstreams.
    pub extra_root_pem: Option<String>,
    /// `allow_private` CIDRs (default: 127.0.0.1/32).
    pub allow_private: Option<Vec<String>>,
    /// Policy of the `agent` task (default: first policy).
    pub task_policy: Option<String>,
    /// Extra task entries (flow-style YAML maps) after the `agent` task.
    /// `token_env: TEST_AGENT_TOKEN` gives them the same token as `agent`.
    pub extra_tasks: Vec<String>,
    /// Verbatim extra YAML appended to the config.
    pub extra_yaml: String,
    /// Extra environment for the proxy process (e.g. `TOLLGATE_SECRET_*`).
    pub env: Vec<(String, String)>,
}

impl ProxySetup {
    /// A setup with one policy.
    pub fn with_policy(name: &str, yaml: &str) -> Self {
        Self {
            policies: vec![(name.to_string(), yaml.to_string())],
            ..Self::default()
        }
    }

    /// Routes `host` to the upstream on 127.0.0.1:`port`.
    pub fn resolve(self, host: &str, port: u16) -> Self {
        self.resolve_addr(host, &format!("127.0.0.1:{port}"))
    }

    /// Routes `host` to `addr` (`ip:port`).
    pub fn resolve_addr(mut self, host: &str, addr: &str) -> Self {
        self.resolve.push((host.to_string(), addr.to_string()));
        self
    }

    /// Trusts `pem` for upstream TLS.
    pub fn trust(mut self, pem: &str) -> Self {
        self.extra_root_pem = Some(pem.to_string());
        self
    }
}

/// A running `tollgate serve`.
pub struct ProxyProc {
    child: Child,
    /// Proxy address.
    pub addr: SocketAddr,
    /// Its working directory (config, state, policies).
    pub dir: tempfile::TempDir,
    /// tollgate's MITM CA certificate (PEM file).
    pub ca_pem: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ProxyProc {
    /// The proxy URL with the default task's credentials.
    pub fn url(&self) -> String {
        format!("http://{TASK}:{TOKEN}@{}", self.addr)
    }

    /// Process id (for /proc measurements).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Kills the process with SIGKILL right now (std `Child::kill`: no fork or
    /// exec in between) and reaps it.
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Stops the proxy gracefully (SIGTERM) and starts it again in the same
    /// directory with the same config.
    pub fn restart(mut self, env: &[(String, String)]) -> ProxyProc {
        self.terminate();
        assert!(
            self.wait_exit(Duration::from_secs(20)).is_some(),
            "tollgate did not stop"
        );
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        drop(self);
        spawn_serve(dir, env)
    }

    /// Peak resident set size in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:")
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/PID/status` in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Path of the built binary.
pub fn tollgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tollgate")
}

/// Writes the config and policies into a temp dir and starts `tollgate serve`.
pub fn start_proxy(setup: &ProxySetup) -> ProxyProc {
    spawn_serve(write_setup(setup), &setup.env)
}

/// Writes `tollgate.yaml` and `policies/` for `setup` into a new temp dir.
pub fn write_setup(setup: &ProxySetup) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    for (name, yaml) in &setup.policies {
        std::fs::write(
            dir.path().join("policies").join(format!("{name}.yaml")),
            yaml,
        )
        .unwrap();
    }
    let admin = setup.admin_listen.as_deref().unwrap_or("127.0.0.1:0");
    let mut config = format!("listen: 127.0.0.1:0\nadmin: {{ listen: \"{admin}\" }}\nstate_dir: state\npolicies: policies\nupstream:\n");
    if let Some(pem) = &setup.extra_root_pem {
        std::fs::write(dir.path().join("upstream-ca.pem"), pem).unwrap();
        config.push_str("  extra_roots: [upstream-ca.pem]\n");
    }
    config.push_str("  resolve:\n");
    for (host, addr) in &setup.resolve {
        config.push_str(&format!("    \"{host}\": \"{addr}\"\n"));
    }
    if setup.resolve.is_empty() {
        config.push_str("    {}\n");
    }
    let allow = setup
        .allow_private
        .clone()
        .unwrap_or_else(|| vec!["127.0.0.1/32".into()]);
    config.push_str(&format!("  allow_private: [{}]\n", allow.join(", ")));
    config.push_str("  connect_timeout: 3s\n");
    let policy = setup
        .task_policy
        .clone()
        .or_else(|| setup.policies.first().map(|p| p.0.clone()))
        .unwrap_or_else(|| "none".into());
    config.push_str(&format!(
        "tasks:\n  - {{ id: {TASK}, policy: {policy}, token_env: TEST_AGENT_TOKEN }}\n"
    ));
    for task in &setup.extra_tasks {
        config.push_str(&format!("  - {task}\n"));
    }
    config.push_str(&setup.extra_yaml);
    std::fs::write(dir.path().join("tollgate.yaml"), &config).unwrap();
    dir
}

/// Starts `tollgate serve` in `dir` (which holds tollgate.yaml) and waits until it listens.
pub fn spawn_serve(dir: tempfile::TempDir, env: &[(String, String)]) -> ProxyProc {
    let mut child = Command::new(tollgate_bin())
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("tollgate.yaml"))
        .env("TEST_AGENT_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(idx) = line.find("tollgate listening on ") {
                let addr = line[idx + 22..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send(addr);
            }
            sink.lock().unwrap().push(line);
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => addr.parse().unwrap(),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "tollgate did not start; logs:\n{}",
                logs.lock().unwrap().join("\n")
            );
        }
    };
    let ca_pem = dir.path().join("state").join("ca.pem");
    ProxyProc {
        child,
        addr,
        dir,
        ca_pem,
        logs,
    }
}

/// What curl reported.
#[derive(Debug)]
pub struct CurlOut {
    /// Final HTTP status (0 if none).
    pub status: u16,
    /// Status of the CONNECT (0 if none).
    pub connect_status: u16,
    /// HTTP version used (`1.1`, `2`).
    pub version: String,
    /// Response body.
    pub body: String,
    /// Raw response headers.
    pub headers: String,
    /// curl's exit code.
    pub exit: i32,
    /// curl's stderr.
    pub stderr: String,
}

impl CurlOut {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A response header (last occurrence, case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().rev().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Runs curl through the proxy with tollgate's CA trusted, plus `args`.
pub async fn curl(proxy: &ProxyProc, args: &[&str]) -> CurlOut {
    curl_via(proxy, &proxy.url(), args).await
}

/// Runs curl through `proxy_url` (another task's proxy URL), trusting
/// `proxy`'s CA.
pub async fn curl_via(proxy: &ProxyProc, proxy_url: &str, args: &[&str]) -> CurlOut {
    let ca = proxy.ca_pem.to_str().unwrap().to_string();
    let mut full = vec!["--proxy", proxy_url, "--cacert", ca.as_str()];
    full.extend_from_slice(args);
    curl_raw(&full).await
}

/// Runs curl with exactly `args` (plus output capture flags).
pub async fn curl_raw(args: &[&str]) -> CurlOut {
    let out_dir = tempfile::tempdir().unwrap();
    let body_path = out_dir.path().join("body");
    let head_path = out_dir.path().join("headers");
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "--noproxy", "", "-o"])
        .arg(&body_path)
        .arg("-D")
        .arg(&head_path)
        .args(["-w", "%{http_code} %{http_connect} %{http_version}"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .await
        .expect("curl must be installed");
    let written = String::from_utf8_lossy(&output.stdout).to_string();
    let mut parts = written.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let connect_status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = parts.next().unwrap_or("").to_string();
    CurlOut {
        status,
        connect_status,
        version,
        body: std::fs::read_to_string(&body_path).unwrap_or_default(),
        headers: std::fs::read_to_string(&head_path).unwrap_or_default(),
        exit: output.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// reqwest (a real Rust HTTP client) configured with the proxy and tollgate's CA only.
pub fn reqwest_client(proxy: &ProxyProc) -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&proxy.ca_pem).unwrap()).unwrap(),
        )
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
}

/// The port a helper server (spawned with piped stdout) prints as its first
/// line once it listens; `None` when it prints none within 30 s.
pub fn announced_port(child: &mut Child) -> Option<u16> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).ok()?;
    line.trim().parse().ok()
}

/// Writes bytes to `dir/name` and returns the path.
pub fn write_file_bytes(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Opens a CONNECT tunnel to `target` (`host:port`) as the default task.
pub async fn connect_tunnel(proxy: &ProxyProc, target: &str) -> tokio::net::TcpStream {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{TASK}:{TOKEN}"));
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            tcp.read(&mut byte).await.unwrap(),
            1,
            "proxy closed during CONNECT"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// TLS over `tcp` to `name`, trusting only tollgate's CA, offering HTTP/1.1.
pub async fn tls_via_proxy(
    proxy: &ProxyProc,
    name: &str,
    tcp: tokio::net::TcpStream,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(&proxy.ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from(name.to_string()).unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// The records in the proxy's audit log so far (default file sink).
pub fn audit_records(proxy: &ProxyProc) -> Vec<serde_json::Value> {
    let path = proxy.dir.path().join("state/audit/audit.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (up to 10 s) for an audit record that `pred` accepts, and returns it.
pub async fn wait_record(
    proxy: &ProxyProc,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = audit_records(proxy).into_iter().find(|r| pred(r)) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no such audit record; log:\n{}",
            audit_records(proxy)
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 10 s) for a log line containing every one of `needles`.
pub async fn wait_log(proxy: &ProxyProc, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = proxy
            .logs()
            .into_iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?}:\n{}",
            proxy.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The admin API address the proxy logged.
pub fn admin_addr(proxy: &ProxyProc) -> String {
    // Logged just after the proxy address, which is what start_proxy waits for.
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(line) = proxy
            .logs()
            .into_iter()
            .find(|l| l.contains("tollgate admin API on "))
        {
            break line;
        }
        assert!(Instant::now() < deadline, "admin address not logged");
        std::thread::sleep(Duration::from_millis(20));
    };
    let idx = line.find("tollgate admin API on ").unwrap() + 22;
    line[idx..].split_whitespace().next().unwrap().to_string()
}

/// The generated admin token.
pub fn admin_token(proxy: &ProxyProc) -> String {
    std::fs::read_to_string(proxy.dir.path().join("state/admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// Calls the admin API with the admin token; `body` is sent as JSON.
pub async fn admin_call(
    proxy: &ProxyProc,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> CurlOut {
    let url = format!("http://{}{path}", admin_addr(proxy));
    let auth = format!("Authorization: Bearer {}", admin_token(proxy));
    let mut args = vec!["-X", method, "-H", auth.as_str(), url.as_str()];
    if let Some(body) = body {
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    curl_raw(&args).await
}

/// Creates a task over the admin API: `(id, proxy_url)`.
pub async fn create_task(proxy: &ProxyProc, body: &str) -> (String, String) {
    let out = admin_call(proxy, "POST", "/v1/tasks", Some(body)).await;
    assert_eq!(out.status, 201, "{out:?}");
    let json = out.json();
    (
        json["id"].as_str().unwrap().to_string(),
        json["proxy_url"].as_str().unwrap().to_string(),
    )
}

/// `DELETE /v1/tasks/{id}`; returns the status.
pub async fn delete_task(proxy: &ProxyProc, id: &str) -> u16 {
    admin_call(proxy, "DELETE", &format!("/v1/tasks/{id}"), None)
        .await
        .status
}
