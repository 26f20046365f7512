//! `tollgate run`: real clients inside the launcher's sandbox, escape attempts
//! that must fail, and the run's lifecycle. Needs root, `ip` and `nft` (CI has
//! them); elsewhere every test here skips with a loud message.
//!
//! All traffic goes to loopback listeners the test starts, or stays inside the
//! sandbox namespaces the launcher creates.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::upstream::{start_upstream, TestCa, Upstream};
use common::{tollgate_bin, write_setup, ProxySetup};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The secret the env backend holds; it must reach the upstream and nothing else.
const SECRET: &str = "real-api-secret-7f3a";

/// Whether this machine can run the launcher; when not, the test says so on
/// stderr and is skipped (see `common::skip`).
fn can_launch() -> bool {
    common::skip::needs_root_and_tools(
        &["ip", "nft"],
        "the launcher makes network namespaces and nftables rules",
    )
}

/// A TLS upstream for `api.test` (and `git.test`), plus a plain one for `plain.test`.
struct Upstreams {
    ca: TestCa,
    tls: Upstream,
    plain: Upstream,
}

async fn upstreams() -> Upstreams {
    let ca = TestCa::new("launcher test CA");
    let tls = start_upstream(Some(ca.server_config(&["api.test", "other.test"]))).await;
    let plain = start_upstream(None).await;
    Upstreams { ca, tls, plain }
}

fn agent_policy(name: &str, paths: &[&str]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        r#"name: {name}
secrets:
  API_TOKEN:
    env: API_TOKEN
    hosts: [api.test, plain.test]
rules:
  - name: blocked
    host: api.test
    paths: ["/admin/**"]
    action: deny
  - name: api
    host: api.test
    paths: [{paths}]
    inject: [API_TOKEN]
  - name: plain
    host: plain.test
    port: 80
    inject: [API_TOKEN]
    allow_plaintext: true
"#,
        paths = paths.join(", ")
    )
}

/// A config dir for an in-process run: policies, upstream trust, resolution.
fn setup(up: &Upstreams, policies: &[(&str, String)]) -> tempfile::TempDir {
    let mut setup = ProxySetup::default()
        .trust(&up.ca.cert_pem)
        .resolve("api.test", up.tls.port)
        .resolve("other.test", up.tls.port)
        .resolve("plain.test", up.plain.port);
    setup.policies = policies
        .iter()
        .map(|(n, y)| (n.to_string(), y.clone()))
        .collect();
    write_setup(&setup)
}

/// What a run printed and how it ended.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `tollgate run --config DIR/tollgate.yaml ARGS -- CMD` to completion.
async fn run(dir: &Path, args: &[&str], cmd: &[&str]) -> Ran {
    finish(launcher(dir, args, cmd), Duration::from_secs(60)).await
}

/// `tollgate run ARGS -- CMD`, CMD as root (the tests run as root without sudo).
fn launcher(dir: &Path, args: &[&str], cmd: &[&str]) -> Command {
    let mut with_user = vec!["--user", "root"];
    with_user.extend_from_slice(args);
    launcher_bare(dir, &with_user, cmd)
}

/// `tollgate run ARGS -- CMD` with no `--user`.
fn launcher_bare(dir: &Path, args: &[&str], cmd: &[&str]) -> Command {
    let mut command = Command::new(tollgate_bin());
    if !args.contains(&"--admin") {
        command.arg("--config").arg(dir.join("tollgate.yaml"));
    }
    command
        .arg("run")
        .args(args)
        .arg("--")
        .args(cmd)
        .current_dir(dir)
        .env("TOLLGATE_SECRET_API_TOKEN", SECRET)
        .env("TEST_AGENT_TOKEN", common::TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

/// Runs `command` to completion (killed after `limit`) off the async runtime.
async fn finish(mut command: Command, limit: Duration) -> Ran {
    tokio::task::spawn_blocking(move || {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, limit)
    })
    .await
    .unwrap()
}

fn wait_output(mut child: std::process::Child, limit: Duration) -> Ran {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        code: status.and_then(|s| s.code()),
        stdout: reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

#[tokio::test]
async fn curl_in_the_sandbox_gets_the_secret_injected() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let dir = setup(&up, &[("agent", agent_policy("agent", &["/echo"]))]);
    let ran = run(
        dir.path(),
        &["--policy", "agent"],
        &[
            "curl",
            "-sS",
            "-H",
            "Authorization: Bearer __API_TOKEN__",
            "https://api.test/echo",
        ],
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let seen = up.tls.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{ran:?}");
    assert_eq!(
        seen[0]["headers"]["authorization"],
        format!("Bearer {SECRET}"),
        "the upstream got the real secret"
    );
    assert!(
        !ran.stdout.contains(SECRET),
        "the echo reaches the sandbox scrubbed: {}",
        ran.stdout
    );
}

/// Audit records of an in-process run (its state dir is in the config dir).
fn run_audit(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("state/audit/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["type"] == "request")
        .collect()
}

#[tokio::test]
async fn programs_that_ignore_the_proxy_are_caught_policed_and_injected() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let dir = setup(&up, &[("agent", agent_policy("agent", &["/echo"]))]);
    let script = r#"
curl -sS --noproxy '*' -H 'Authorization: Bearer __API_TOKEN__' https://api.test/echo; echo " tls-exit=$?"
curl -sS --noproxy '*' -o /dev/null -w 'admin=%{http_code}\n' https://api.test/admin/x
curl -sS --noproxy '*' -H 'Authorization: Bearer __API_TOKEN__' http://plain.test/echo; echo " plain-exit=$?"
curl -sS --noproxy '*' -o /dev/null https://other.test/echo; echo "other-exit=$?"
getent hosts anything.example
"#;
    let ran = run(dir.path(), &["--policy", "agent"], &["sh", "-c", script]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("tls-exit=0"), "{ran:?}");
    assert!(
        ran.stdout.contains("admin=403"),
        "deny rule applies: {ran:?}"
    );
    assert!(ran.stdout.contains("plain-exit=0"), "{ran:?}");
    assert!(
        !ran.stdout.contains("other-exit=0"),
        "a host no rule names gets no connection: {ran:?}"
    );
    assert!(
        ran.stdout.contains("192.0.2.1"),
        "names resolve to the sandbox address: {ran:?}"
    );
    assert!(!ran.stdout.contains(SECRET), "{ran:?}");
    let tls_seen = up.tls.seen.lock().unwrap().clone();
    assert_eq!(
        tls_seen.len(),
        1,
        "only the allowed request arrived: {tls_seen:?}"
    );
    assert_eq!(
        tls_seen[0]["headers"]["authorization"],
        format!("Bearer {SECRET}")
    );
    let plain_seen = up.plain.seen.lock().unwrap().clone();
    assert_eq!(plain_seen.len(), 1, "{plain_seen:?} {ran:?}");
    assert_eq!(
        plain_seen[0]["headers"]["authorization"],
        format!("Bearer {SECRET}")
    );
    let records = run_audit(dir.path());
    let find = |host: &str, path: &str| {
        records
            .iter()
            .find(|r| r["host"] == host && (path.is_empty() || r["path"] == path))
            .cloned()
            .unwrap_or_else(|| panic!("no record for {host}{path}: {records:#?}"))
    };
    assert_eq!(find("api.test", "/echo")["decision"], "allow");
    assert_eq!(find("api.test", "/admin/x")["decision"], "deny");
    assert_eq!(find("plain.test", "/echo")["decision"], "allow");
    let other = find("other.test", "");
    assert_eq!(other["decision"], "deny");
    assert_eq!(other["reason"], "no_rule");
}

/// The host's own IPv4 addresses (loopback included).
fn host_addresses() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .nth(3)?
                .split('/')
                .next()
                .map(str::to_string)
        })
        .collect()
}

const ESCAPES: &str = r#"
import json, socket, subprocess, sys
ips, tcp_port, udp_port = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
out = {}
def attempt(name, fn):
    try:
        out[name] = "OK " + str(fn())
    except Exception as e:
        out[name] = "failed " + type(e).__name__
def dns_query(server, port):
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x01\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(q, (server, port))
    return s.recv(512)[-4:].hex()
for ip in ips:
    attempt("tcp " + ip, lambda: socket.create_connection((ip, tcp_port), timeout=2).getpeername())
    attempt("udp " + ip, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"leak", (ip, udp_port)))
    attempt("dns-to-decoy " + ip, lambda: dns_query(ip, udp_port))
    attempt("dns-53 " + ip, lambda: dns_query(ip, 53))
attempt("tcp6 loopback", lambda: socket.create_connection(("::1", tcp_port), timeout=2))
attempt("tcp6 global", lambda: socket.create_connection(("2001:db8::1", 443), timeout=2))
attempt("udp6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b"x", ("2001:db8::1", 443)))
attempt("icmp", lambda: subprocess.run(["ping", "-c1", "-W1", ips[0]], capture_output=True).returncode)
attempt("nft flush", lambda: subprocess.run(["nft", "flush", "ruleset"], capture_output=True).returncode)
attempt("ip link add", lambda: subprocess.run(["ip", "link", "add", "x0", "type", "veth", "peer", "x1"], capture_output=True).returncode)
attempt("vsock", lambda: socket.socket(40, socket.SOCK_STREAM))
attempt("setns host", lambda: subprocess.run(["nsenter", "--net=/proc/1/ns/net", "true"], capture_output=True).returncode)
import os
visible = [p for p in os.listdir("/proc") if p.isdigit()]
out["see host processes"] = "failed" if len(visible) < 10 else "OK %d visible" % len(visible)
out["see host init"] = "failed" if b"__sandbox-init" in open("/proc/1/cmdline", "rb").read() else "OK"
print(json.dumps(out))
"#;

#[tokio::test]
async fn escape_attempts_fail_while_the_proxy_path_works() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let dir = setup(&up, &[("agent", agent_policy("agent", &["/echo"]))]);
    // Decoys on every host address: anything that reaches one escaped.
    let tcp = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let ips = host_addresses();
    assert!(!ips.is_empty());
    // Control: from the host the decoys are reachable, so a failure inside is the sandbox's doing.
    drop(std::net::TcpStream::connect(("127.0.0.1", tcp.local_addr().unwrap().port())).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    tcp.accept()
        .expect("the control connection reached the decoy");
    let script_path = dir.path().join("escapes.py");
    std::fs::write(&script_path, ESCAPES).unwrap();
    let script = format!(
        "python3 {} {} {} {} && curl -sS -o /dev/null -w 'proxy=%{{http_code}}\\n' https://api.test/echo",
        script_path.display(),
        ips.join(","),
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port()
    );
    let ran = run(dir.path(), &["--policy", "agent"], &["sh", "-c", &script]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let json_line = ran.stdout.lines().find(|l| l.starts_with('{')).unwrap();
    let results: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json_line).unwrap();
    for (name, result) in &results {
        let result = result.as_str().unwrap();
        if name.starts_with("dns-53") {
            // Answered by the sandbox's stub, never by a real resolver.
            assert_eq!(result, "OK c0000201", "{name}: {result}");
        } else if ["icmp", "nft flush", "ip link add", "setns host"].contains(&name.as_str()) {
            assert!(
                result.starts_with("failed") || (result.starts_with("OK ") && result != "OK 0"),
                "{name} must fail: {result}"
            );
        } else {
            assert!(result.starts_with("failed"), "{name} must fail: {result}");
        }
    }
    assert!(
        ran.stdout.contains("proxy=200"),
        "the proxy path still works: {ran:?}"
    );
    assert!(tcp.accept().is_err(), "a TCP connection reached the decoy");
    let mut buf = [0u8; 64];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "a datagram reached the decoy"
    );
}

#[tokio::test]
async fn sudo_runs_cmd_as_the_invoking_user_without_capabilities_or_tollgate_variables() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let dir = setup(&up, &[("agent", agent_policy("agent", &["/echo"]))]);
    let script = "id -u; id -G; grep CapEff /proc/self/status; env | grep -c -e TOLLGATE_SECRET -e real-api-secret -e s3cret-token; \
                  echo \"proxy=$HTTPS_PROXY no_proxy=[$NO_PROXY] node=$NODE_USE_ENV_PROXY\"; \
                  for v in SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS GIT_SSL_CAINFO PIP_CERT CARGO_HTTP_CAINFO; do eval \"test -r \\\"\\${$v}\\\"\" && echo \"$v readable\"; done; \
                  curl -sS -o /dev/null -w 'status=%{http_code}\\n' https://api.test/echo; echo \"user=$USER home=$HOME\"";
    let mut command = launcher_bare(dir.path(), &["--policy", "agent"], &["sh", "-c", script]);
    command.env("SUDO_UID", "65534").env("SUDO_GID", "65534");
    let ran = finish(command, Duration::from_secs(60)).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines[0], "65534", "{ran:?}");
    assert_eq!(lines[1], "65534", "no supplementary groups: {ran:?}");
    assert!(
        lines[2].ends_with("0000000000000000"),
        "no capabilities: {ran:?}"
    );
    assert_eq!(lines[3], "0", "tollgate's variables stay out: {ran:?}");
    assert!(
        lines[4].starts_with("proxy=http://t-")
            && lines[4].contains("@127.0.0.1:3128 no_proxy=[] node=1"),
        "{ran:?}"
    );
    assert_eq!(
        ran.stdout.matches(" readable").count(),
        7,
        "every CA variable names a readable bundle: {ran:?}"
    );
    assert!(ran.stdout.contains("status=200"), "{ran:?}");
    let nobody_home = String::from_utf8_lossy(
        &Command::new("getent")
            .args(["passwd", "65534"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .split(':')
    .nth(5)
    .unwrap_or_default()
    .to_string();
    assert!(
        ran.stdout.contains(&format!("home={nobody_home}")) && ran.stdout.contains("user=nobody"),
        "the invoking user's identity: {ran:?}"
    );
}

#[tokio::test]
async fn exit_status_passes_through_and_errors_are_clear() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let dir = setup(&up, &[("agent", agent_policy("agent", &["/echo"]))]);
    let ran = run(dir.path(), &["--policy", "agent"], &["sh", "-c", "exit 7"]).await;
    assert_eq!(ran.code, Some(7), "{ran:?}");
    let ran = run(
        dir.path(),
        &["--policy", "agent"],
        &["sh", "-c", "kill -TERM $$"],
    )
    .await;
    assert_eq!(
        ran.code,
        Some(128 + 15),
        "killed by a signal: 128+N: {ran:?}"
    );
    let ran = {
        let command = launcher_bare(dir.path(), &["--policy", "agent"], &["true"]);
        finish(command, Duration::from_secs(30)).await
    };
    assert_eq!(
        ran.code,
        Some(125),
        "root without sudo must say who CMD runs as: {ran:?}"
    );
    assert!(ran.stderr.contains("--user"), "{ran:?}");
    let ran = run(dir.path(), &["--policy", "nope"], &["true"]).await;
    assert_eq!(ran.code, Some(125), "{ran:?}");
    assert!(
        ran.stderr.contains("unknown policy") && ran.stderr.contains("agent"),
        "names the policy and the loaded ones: {ran:?}"
    );
    let ran = run(dir.path(), &["--policy", "agent"], &["no-such-command-xyz"]).await;
    assert_eq!(ran.code, Some(127), "{ran:?}");
    assert!(ran.stderr.contains("no-such-command-xyz"), "{ran:?}");
    let ran = run(
        dir.path(),
        &["--admin", "http://127.0.0.1:9", "--policy", "agent"],
        &["true"],
    )
    .await;
    let mut command = launcher(
        dir.path(),
        &["--admin", "http://127.0.0.1:9", "--policy", "agent"],
        &["true"],
    );
    command.env("TOLLGATE_ADMIN_TOKEN", "x".repeat(20));
    let unreachable = finish(command, Duration::from_secs(30)).await;
    assert_eq!(ran.code, Some(125), "{ran:?}");
    assert!(
        ran.stderr.contains("admin token"),
        "no token given: {ran:?}"
    );
    assert_eq!(unreachable.code, Some(125), "{unreachable:?}");
    assert!(
        unreachable
            .stderr
            .contains("cannot reach the tollgate admin API"),
        "{unreachable:?}"
    );
}

#[tokio::test]
async fn python_requests_and_node_fetch_work_in_the_sandbox() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let dir = setup(
        &up,
        &[("agent", agent_policy("agent", &["/echo", "/node"]))],
    );
    let has_requests = Command::new("python3")
        .args(["-c", "import requests"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_requests,
        "python3 with requests is needed (pip install requests)"
    );
    let py = "import requests; r = requests.get('https://api.test/echo', headers={'Authorization': 'Bearer __API_TOKEN__'}); print('requests', r.status_code)";
    let ran = run(dir.path(), &["--policy", "agent"], &["python3", "-c", py]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("requests 200"), "{ran:?}");
    let has_node = Command::new("node")
        .arg("--version")
        .status()
        .is_ok_and(|s| s.success());
    if has_node {
        let js = "fetch('https://api.test/node', {headers: {authorization: 'Bearer __API_TOKEN__'}}).then(r => console.log('node', r.status)).catch(e => { console.log('node failed', e.cause || e); process.exit(1) })";
        let ran = run(dir.path(), &["--policy", "agent"], &["node", "-e", js]).await;
        assert_eq!(ran.code, Some(0), "{ran:?}");
        assert!(ran.stdout.contains("node 200"), "{ran:?}");
    } else {
        common::skip::skipped("the node fetch part needs node");
    }
    let seen = up.tls.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|r| r["headers"]["authorization"] == format!("Bearer {SECRET}")),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 1 + usize::from(has_node), "{seen:?}");
}

const GIT_SERVER: &str = r#"
import base64, os, ssl, subprocess, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
root, cert, key, token, portfile = sys.argv[1:6]
expected = "Basic " + base64.b64encode(("x-access-token:" + token).encode()).decode()
class Git(BaseHTTPRequestHandler):
    def do_GET(self): self.cgi()
    def do_POST(self): self.cgi()
    def log_message(self, *args): pass
    def cgi(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = dict(os.environ, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_USER="agent",
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(length),
                   HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""),
                   GIT_PROTOCOL=self.headers.get("Git-Protocol", ""))
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, rest = out.partition(sep)
        status, headers = 200, []
        for line in head.decode().splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)
server = ThreadingHTTPServer(("127.0.0.1", 0), Git)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
"#;

/// Kills the child on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[tokio::test]
async fn git_clone_over_https_gets_its_token_injected() {
    if !can_launch() {
        return;
    }
    const GIT_SECRET: &str = "ghs_realgittoken42";
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repos/demo.git");
    std::fs::create_dir_all(&repo).unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    std::fs::write(src.join("README"), "hello from the git server\n").unwrap();
    git(&src, &["add", "README"]);
    git(
        &src,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "first",
        ],
    );
    git(
        work.path(),
        &["clone", "-q", "--bare", "src", "repos/demo.git"],
    );
    let ca = TestCa::new("git test CA");
    let (cert, key) = ca.leaf_pem(&["git.test"]);
    std::fs::write(work.path().join("git.pem"), cert).unwrap();
    std::fs::write(work.path().join("git.key"), key).unwrap();
    std::fs::write(work.path().join("git_server.py"), GIT_SERVER).unwrap();
    let portfile = work.path().join("port");
    let _server = Reaped(
        Command::new("python3")
            .arg(work.path().join("git_server.py"))
            .arg(work.path().join("repos"))
            .arg(work.path().join("git.pem"))
            .arg(work.path().join("git.key"))
            .arg(GIT_SECRET)
            .arg(&portfile)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let port: u16 = loop {
        if let Ok(p) = std::fs::read_to_string(&portfile) {
            break p.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "the git server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut setup = ProxySetup::default()
        .trust(&ca.cert_pem)
        .resolve("git.test", port);
    setup.policies = vec![(
        "coder".into(),
        "name: coder\nsecrets:\n  GIT_TOKEN:\n    env: GIT_TOKEN\n    hosts: [git.test]\nrules:\n  - name: clone\n    host: git.test\n    methods: [GET, POST]\n    paths: [\"/demo.git/**\"]\n    inject: [GIT_TOKEN]\n".into(),
    )];
    let dir = write_setup(&setup);
    let clone_to = dir.path().join("clone");
    let mut command = launcher(
        dir.path(),
        &[
            "--policy",
            "coder",
            "--env",
            "GIT_CONFIG_GLOBAL=/dev/null",
            "--env",
            "GIT_TERMINAL_PROMPT=0",
        ],
        &[
            "git",
            "clone",
            "-q",
            "https://x-access-token:__GIT_TOKEN__@git.test/demo.git",
            clone_to.to_str().unwrap(),
        ],
    );
    command.env("TOLLGATE_SECRET_GIT_TOKEN", GIT_SECRET);
    let ran = finish(command, Duration::from_secs(60)).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        std::fs::read_to_string(clone_to.join("README")).unwrap(),
        "hello from the git server\n"
    );
    let remote = Command::new("git")
        .args(["remote", "get-url", "origin"])
        .current_dir(&clone_to)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&remote.stdout).contains("__GIT_TOKEN__"),
        "the clone holds the placeholder, never the token"
    );
}

#[tokio::test]
async fn curl_gets_a_secret_from_a_real_openbao() {
    if !can_launch() {
        return;
    }
    let bao = common::bao::Bao::start();
    bao.cli(&["kv", "put", "secret/agents/api", "token=bao-secret-0001"]);
    let up = upstreams().await;
    let mut setup = ProxySetup::default()
        .trust(&up.ca.cert_pem)
        .resolve("api.test", up.tls.port);
    setup.policies = vec![(
        "vaulted".into(),
        "name: vaulted\nsecrets:\n  API_TOKEN:\n    vault: { mount: secret, path: agents/api, field: token }\n    hosts: [api.test]\nrules:\n  - name: api\n    host: api.test\n    inject: [API_TOKEN]\n".into(),
    )];
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("vault-token");
    std::fs::write(&token_file, common::bao::ROOT_TOKEN).unwrap();
    setup.extra_yaml = format!(
        "secrets:\n  vault:\n    address: {}\n    auth: {{ method: token, token_file: {} }}\n",
        bao.addr(),
        token_file.display()
    );
    let dir = write_setup(&setup);
    let ran = run(
        dir.path(),
        &["--policy", "vaulted"],
        &[
            "curl",
            "-sS",
            "-H",
            "X-Api-Key: __API_TOKEN__",
            "https://api.test/echo",
        ],
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let seen = up.tls.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{ran:?}");
    assert_eq!(seen[0]["headers"]["x-api-key"], "bao-secret-0001");
    assert!(!ran.stdout.contains("bao-secret-0001"), "{ran:?}");
}

/// A launcher running in the background, its stdout collected line by line.
struct Background {
    child: Option<std::process::Child>,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Background {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child: Some(child),
            lines,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    async fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needle:?}: {:?}",
                self.lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait(&mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    return status.code();
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill with integer arguments.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// A proxy started with `tollgate serve`, for `run --admin`.
async fn served(up: &Upstreams, policies: &[(&str, String)]) -> common::ProxyProc {
    let mut setup = ProxySetup::default()
        .trust(&up.ca.cert_pem)
        .resolve("api.test", up.tls.port)
        .resolve("plain.test", up.plain.port);
    setup.policies = policies
        .iter()
        .map(|(n, y)| (n.to_string(), y.clone()))
        .collect();
    setup.env = vec![("TOLLGATE_SECRET_API_TOKEN".into(), SECRET.into())];
    common::start_proxy(&setup)
}

fn admin_args(proxy: &common::ProxyProc, policy: &str) -> Vec<String> {
    vec![
        "--admin".into(),
        format!("http://{}", common::admin_addr(proxy)),
        "--admin-token-file".into(),
        proxy
            .dir
            .path()
            .join("state/admin.token")
            .display()
            .to_string(),
        "--policy".into(),
        policy.into(),
    ]
}

async fn listed_tasks(proxy: &common::ProxyProc) -> Vec<String> {
    let out = common::admin_call(proxy, "GET", "/v1/tasks", None).await;
    out.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn three_concurrent_runs_each_see_only_their_own_policy() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let names = ["red", "green", "blue"];
    let policies: Vec<(&str, String)> = names
        .iter()
        .map(|n| (*n, agent_policy(n, &[&format!("/{n}")])))
        .collect();
    let proxy = served(&up, &policies).await;
    let script = "for p in red green blue; do printf '%s=%s ' $p $(curl -sS -o /dev/null -w '%{http_code}' https://api.test/$p); done; echo";
    let runs = names.map(|name| {
        let args = admin_args(&proxy, name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let command = launcher(proxy.dir.path(), &args, &["sh", "-c", script]);
        tokio::spawn(finish(command, Duration::from_secs(60)))
    });
    for (name, run) in names.iter().zip(runs) {
        let ran = run.await.unwrap();
        assert_eq!(ran.code, Some(0), "{ran:?}");
        for other in names {
            let expected = if other == *name { 200 } else { 403 };
            assert!(
                ran.stdout.contains(&format!("{other}={expected}")),
                "{name} sees {other} as {expected}: {ran:?}"
            );
        }
    }
    assert!(listed_tasks(&proxy).await.is_empty(), "every task ended");
}

#[tokio::test]
async fn sigterm_reaches_cmd_and_another_tasks_token_is_useless_in_a_second_sandbox() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let proxy = served(&up, &[("agent", agent_policy("agent", &["/echo"]))]).await;
    let args = admin_args(&proxy, "agent");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = Background::start(launcher(
        proxy.dir.path(),
        &args,
        &["sh", "-c", "trap 'echo got-term; exit 3' TERM; echo \"url=$HTTPS_PROXY\"; sleep 307.1 & while :; do sleep 0.0917; done"],
    ));
    let stolen = first
        .line_with("url=")
        .await
        .trim_start_matches("url=")
        .to_string();
    let first_task = stolen
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert!(listed_tasks(&proxy).await.contains(&first_task));
    // A second sandbox replays the first one's credentials: refused on its channel.
    let script = format!(
        "curl -sS -o /dev/null -w 'stolen=%{{http_connect}}\\n' -x '{stolen}' https://api.test/echo; \
         curl -sS -o /dev/null -w 'own=%{{http_code}}\\n' https://api.test/echo"
    );
    let ran = {
        let command = launcher(proxy.dir.path(), &args, &["sh", "-c", &script]);
        finish(command, Duration::from_secs(60)).await
    };
    assert!(ran.stdout.contains("stolen=407"), "{ran:?}");
    assert!(ran.stdout.contains("own=200"), "{ran:?}");
    let mut first = first;
    let launcher_pid = first.pid();
    signal(launcher_pid, libc::SIGTERM);
    assert_eq!(
        first.wait().await,
        Some(3),
        "CMD's own exit status after its trap"
    );
    first.line_with("got-term").await;
    assert!(
        !listed_tasks(&proxy).await.contains(&first_task),
        "the task ended with the run"
    );
    assert_eq!(
        pids_with_arg("307.1"),
        Vec::<i32>::new(),
        "CMD's background process died with it"
    );
    assert_eq!(pids_with_arg("0.0917"), Vec::<i32>::new());
}

/// Host pids of the live processes with `arg` among their arguments.
fn pids_with_arg(arg: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|cmdline| cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
                && alive(*p)
        })
        .collect()
}

#[tokio::test]
async fn kill_9_of_the_launcher_ends_the_task_and_leaves_nothing_running() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let proxy = served(&up, &[("agent", agent_policy("agent", &["/echo"]))]).await;
    let args = admin_args(&proxy, "agent");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run_a = Background::start(launcher(
        proxy.dir.path(),
        &args,
        &["sh", "-c", "setsid sleep 301.7 & nohup sleep 302.3 >/dev/null 2>&1 & echo \"task=$TOLLGATE_TASK\"; while :; do sleep 0.0931; done"],
    ));
    let task = run_a.line_with("task=").await[5..].to_string();
    assert!(listed_tasks(&proxy).await.contains(&task));
    assert_eq!(pids_with_arg("301.7").len(), 1, "the detached process runs");
    let launcher_pid = run_a.pid();
    signal(launcher_pid, libc::SIGKILL);
    let _ = run_a.wait().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i32> = ["301.7", "302.3", "0.0931"]
            .iter()
            .flat_map(|arg| pids_with_arg(arg))
            .collect();
        let listed = listed_tasks(&proxy).await.contains(&task);
        if left.is_empty() && !listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running: {left:?}; task still listed: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    common::wait_log(&proxy, &["its launcher went away"]).await;
    // Nothing was left for the next run to clean up; it just works.
    let ran = run(proxy.dir.path(), &args, &["true"]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
}

const HOLD_TUNNEL: &str = r#"
import base64, os, socket, ssl, subprocess
auth = os.environ["HTTPS_PROXY"].split("//")[1].split("@")[0]
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(("CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\nProxy-Authorization: Basic "
           + base64.b64encode(auth.encode()).decode() + "\r\n\r\n").encode())
assert s.recv(4096).startswith(b"HTTP/1.1 200")
ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
t = ctx.wrap_socket(s, server_hostname="api.test")
t.sendall(b"GET /echo HTTP/1.1\r\nHost: api.test\r\n\r\n")
print("open", t.recv(4096).split(b"\r\n")[0].decode(), flush=True)
try:
    while t.recv(4096):
        pass
    print("closed", flush=True)
except Exception as e:
    print("closed", type(e).__name__, flush=True)
code = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "https://api.test/echo"], capture_output=True, text=True).stdout
print("after=" + code, flush=True)
"#;

#[tokio::test]
async fn deleting_the_task_closes_its_open_connections() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let proxy = served(&up, &[("agent", agent_policy("agent", &["/echo"]))]).await;
    let script = proxy.dir.path().join("hold.py");
    std::fs::write(&script, HOLD_TUNNEL).unwrap();
    let args = admin_args(&proxy, "agent");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut held = Background::start(launcher(
        proxy.dir.path(),
        &args,
        &[
            "sh",
            "-c",
            &format!("echo task=$TOLLGATE_TASK; python3 {}", script.display()),
        ],
    ));
    let task = held.line_with("task=").await[5..].to_string();
    assert!(held.line_with("open").await.contains("200"));
    assert_eq!(common::delete_task(&proxy, &task).await, 200);
    held.line_with("closed").await;
    // The channel is gone with the task: new connections from the sandbox go nowhere.
    assert_eq!(
        held.line_with("after=").await,
        "after=000",
        "no way out any more"
    );
    assert_eq!(held.wait().await, Some(0));
}

#[tokio::test]
async fn without_root_the_launcher_says_what_it_needs() {
    if !can_launch() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/agent.yaml"),
        "name: agent\nrules:\n  - host: api.test\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tollgate.yaml"),
        "state_dir: state\npolicies: policies\n",
    )
    .unwrap();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(tollgate_bin())
        .arg("--config")
        .arg(dir.path().join("tollgate.yaml"))
        .args(["run", "--policy", "agent", "--", "true"])
        .current_dir(dir.path())
        .stdin(Stdio::null());
    let ran = finish(command, Duration::from_secs(30)).await;
    assert_eq!(ran.code, Some(125), "{ran:?}");
    assert!(
        ran.stderr.contains("needs root") && ran.stderr.contains("sudo"),
        "{ran:?}"
    );
}

#[tokio::test]
async fn a_second_in_process_run_on_the_same_state_dir_is_refused_not_interleaved() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let dir = setup(&up, &[("agent", agent_policy("agent", &["/echo"]))]);
    let first = Background::start(launcher(
        dir.path(),
        &["--policy", "agent"],
        &["sh", "-c", "echo running; sleep 30"],
    ));
    first.line_with("running").await;
    let ran = run(dir.path(), &["--policy", "agent"], &["true"]).await;
    assert_eq!(ran.code, Some(125), "{ran:?}");
    assert!(
        ran.stderr
            .contains("another tollgate process is writing this log")
            && ran.stderr.contains("--admin"),
        "{ran:?}"
    );
}

/// `tollgate approvals ARGS` against `proxy`, with its token file.
fn approvals_cli(proxy: &common::ProxyProc, args: &[&str]) -> std::process::Output {
    Command::new(tollgate_bin())
        .arg("approvals")
        .args(args)
        .arg("--admin")
        .arg(format!("http://{}", common::admin_addr(proxy)))
        .arg("--admin-token-file")
        .arg(proxy.dir.path().join("state/admin.token"))
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .output()
        .unwrap()
}

async fn wait_holds(proxy: &common::ProxyProc, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let holds = common::admin_call(proxy, "GET", "/v1/approvals", None)
            .await
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default();
        if holds.len() == n {
            return holds;
        }
        assert!(Instant::now() < deadline, "want {n} holds, have {holds:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_operator_approves_while_the_run_goes_on_and_the_launchers_exit_ends_the_hold() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let policy = format!(
        "{}  - name: merge needs a person\n    host: api.test\n    methods: [PUT]\n    paths: [\"/merge/*\"]\n    inject: [API_TOKEN]\n    action: approve\n",
        agent_policy("agent", &["/echo"])
    );
    let proxy = served(&up, &[("agent", policy)]).await;
    let args = admin_args(&proxy, "agent");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let script = "for n in 1 2; do curl -sS -o /dev/null -w \"merge$n=%{http_code}\\n\" -H 'Authorization: Bearer __API_TOKEN__' -X PUT https://api.test/merge/$n; done";
    let mut run = Background::start(launcher(proxy.dir.path(), &args, &["sh", "-c", script]));

    let hold = wait_holds(&proxy, 1).await.remove(0);
    assert_eq!(hold["path"], "/merge/1");
    let out = approvals_cli(&proxy, &["approve", hold["id"].as_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(run.line_with("merge1=").await, "merge1=200");
    let seen = up.tls.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0]["headers"]["authorization"],
        format!("Bearer {SECRET}")
    );

    // The second request waits; the launcher goes away (SIGTERM) meanwhile.
    let hold = wait_holds(&proxy, 1).await.remove(0);
    assert_eq!(hold["path"], "/merge/2");
    signal(run.pid(), libc::SIGTERM);
    assert!(run.wait().await.is_some(), "the launcher exited");
    wait_holds(&proxy, 0).await;
    let id = hold["id"].as_str().unwrap().to_string();
    let record = common::wait_record(&proxy, |r| r["approval"]["id"] == id.as_str()).await;
    assert_eq!(record["decision"], "approval_denied", "{record}");
    assert_eq!(
        up.tls.seen.lock().unwrap().len(),
        1,
        "nothing more went upstream"
    );
    let late = approvals_cli(&proxy, &["approve", &id]);
    assert!(!late.status.success(), "{late:?}");
}

#[tokio::test]
async fn an_in_process_run_serves_approvals_to_the_cli_given_only_the_config() {
    if !can_launch() {
        return;
    }
    let up = upstreams().await;
    let policy = format!(
        "{}  - name: deploy\n    host: api.test\n    methods: [POST]\n    paths: [\"/deploy\"]\n    action: approve\n",
        agent_policy("agent", &["/echo"])
    );
    let admin_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut config = ProxySetup::default()
        .trust(&up.ca.cert_pem)
        .resolve("api.test", up.tls.port);
    config.policies = vec![("agent".into(), policy)];
    config.admin_listen = Some(format!("127.0.0.1:{admin_port}"));
    let dir = write_setup(&config);
    let config_file = dir.path().join("tollgate.yaml");
    let script =
        "curl -sS -o /dev/null -w 'deploy=%{http_code}\\n' -X POST https://api.test/deploy";
    let mut run = Background::start(launcher(
        dir.path(),
        &["--policy", "agent"],
        &["sh", "-c", script],
    ));

    // The operator has only the config file: address and token come from it.
    let cli = |args: &[&str]| {
        Command::new(tollgate_bin())
            .arg("approvals")
            .args(args)
            .arg("--config")
            .arg(&config_file)
            .env_remove("TOLLGATE_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let listed = cli(&["list", "--json"]);
        let holds: serde_json::Value =
            serde_json::from_slice(&listed.stdout).unwrap_or(serde_json::Value::Null);
        if let Some(id) = holds[0]["id"].as_str() {
            assert_eq!(holds[0]["path"], "/deploy");
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "no hold listed: {listed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let approved = cli(&["approve", &id]);
    assert!(approved.status.success(), "{approved:?}");
    assert_eq!(run.line_with("deploy=").await, "deploy=200");
    assert_eq!(run.wait().await, Some(0));
    let records = run_audit(dir.path());
    let record = records
        .iter()
        .find(|r| r["path"] == "/deploy")
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(record["decision"], "approved");
}
