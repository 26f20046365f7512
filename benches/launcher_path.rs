//! The launcher's added latency: the same keep-alive HTTPS GETs made by curl
//! (N URLs in one invocation, so one tunnel) directly against `tollgate serve`,
//! and from inside `tollgate run` sandboxes: through the forwarder and the
//! task's channel (`--admin`), transparently caught (`--noproxy '*'`), and with
//! the proxy in-process. Also the wall time of `tollgate run -- true`.
//! Needs root, `ip`, `nft` and curl; loopback and the sandbox's own namespace only.
//!
//!     sudo cargo bench --bench launcher_path
//!
//! Knobs (env): LAUNCHER_REQS (GETs per measurement, default 500),
//! LAUNCHER_STARTS (runs of `tollgate run -- true`, default 20).

#![expect(
    clippy::unwrap_used,
    reason = "a failed setup stops the bench with its message"
)]

#[path = "../tests/common/upstream.rs"]
mod upstream;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOST: &str = "api.bench.test";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tollgate() -> &'static str {
    env!("CARGO_BIN_EXE_tollgate")
}

/// Per-request times (µs) printed by curl's `-w '%{time_total}\n'`, first dropped
/// (it carries the tunnel and TLS setup).
fn times(out: &std::process::Output) -> Vec<f64> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .map(|s| s * 1e6)
        .skip(1)
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn report(name: &str, t: &[f64], base: Option<f64>) -> f64 {
    let median = pct(t, 0.5);
    let delta = base.map_or(String::new(), |b| format!("  (+{:.0} µs)", median - b));
    println!(
        "{name:<44} median {median:>7.0} µs  p90 {:>7.0} µs{delta}",
        pct(t, 0.9)
    );
    median
}

/// `curl` with `extra` options and `reqs` URLs, printing each request's time.
fn curl_args(reqs: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["curl", "-sS", "-w", "%{time_total}\\n"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
    for _ in 0..reqs {
        args.extend([
            "-o".into(),
            "/dev/null".into(),
            format!("https://{HOST}/small"),
        ]);
    }
    args
}

fn main() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("launcher_path: needs root (it creates network namespaces); skipped");
        return;
    }
    let reqs = env_num("LAUNCHER_REQS", 500);
    let starts = env_num("LAUNCHER_STARTS", 20);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ca = upstream::TestCa::new("bench CA");
    let up = runtime.block_on(upstream::start_upstream(Some(ca.server_config(&[HOST]))));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(
        d.join("policies/bench.yaml"),
        format!("name: bench\nrules:\n  - name: all\n    host: {HOST}\n"),
    )
    .unwrap();
    std::fs::write(d.join("upstream-ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(
        d.join("tollgate.yaml"),
        format!(
            "listen: 127.0.0.1:0\nadmin: {{ listen: \"127.0.0.1:0\" }}\nstate_dir: state\npolicies: policies\n\
             upstream:\n  extra_roots: [upstream-ca.pem]\n  resolve: {{ \"{HOST}\": \"127.0.0.1:{}\" }}\n  allow_private: [127.0.0.1/32]\n\
             tasks:\n  - {{ id: bench, policy: bench, token_env: BENCH_TOKEN }}\n",
            up.port
        ),
    )
    .unwrap();
    // In-process runs get a state directory of their own: the served proxy
    // holds the audit log of `state`.
    let served_config = std::fs::read_to_string(d.join("tollgate.yaml")).unwrap();
    std::fs::write(
        d.join("embedded.yaml"),
        served_config.replace("state_dir: state\n", "state_dir: state-embedded\n"),
    )
    .unwrap();
    let (proxy_addr, admin_addr, serve) = start_serve(d);
    let _serve = KillOnDrop(serve);
    let url = format!("http://bench:bench-token@{proxy_addr}");
    let ca_path = d.join("state/ca.pem").display().to_string();
    let direct_args = curl_args(reqs, &["--proxy", &url, "--cacert", &ca_path]);
    let direct = Command::new(&direct_args[0])
        .args(&direct_args[1..])
        .output()
        .unwrap();
    println!("{reqs} keep-alive GETs through one tunnel, curl's time_total per request:");
    let base = report("direct to tollgate serve", &times(&direct), None);
    let admin = [
        "--admin".to_string(),
        format!("http://{admin_addr}"),
        "--admin-token-file".into(),
        d.join("state/admin.token").display().to_string(),
        "--policy".into(),
        "bench".into(),
        "--user".into(),
        "root".into(),
    ];
    let in_sandbox = |launcher_args: &[String], extra: &[&str]| {
        let mut cmd = Command::new(tollgate());
        if !launcher_args.iter().any(|a| a == "--admin") {
            cmd.arg("--config").arg(d.join("embedded.yaml"));
        }
        cmd.arg("run")
            .args(launcher_args)
            .arg("--")
            .args(curl_args(reqs, extra))
            .env("BENCH_TOKEN", "bench-token")
            .current_dir(d)
            .stderr(Stdio::inherit())
            .output()
            .unwrap()
    };
    report(
        "tollgate run --admin (forwarder + channel)",
        &times(&in_sandbox(&admin, &[])),
        Some(base),
    );
    report(
        "tollgate run --admin, transparent (--noproxy)",
        &times(&in_sandbox(&admin, &["--noproxy", "*"])),
        Some(base),
    );
    let embedded = [
        "--policy".to_string(),
        "bench".into(),
        "--user".into(),
        "root".into(),
    ];
    report(
        "tollgate run, in-process proxy",
        &times(&in_sandbox(&embedded, &[])),
        Some(base),
    );
    let mut walls: Vec<f64> = (0..starts)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new(tollgate())
                .args(["--config"])
                .arg(d.join("embedded.yaml"))
                .args(["run", "--policy", "bench", "--user", "root", "--", "true"])
                .env("BENCH_TOKEN", "bench-token")
                .current_dir(d)
                .status()
                .unwrap();
            assert!(status.success());
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    walls.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "`tollgate run --policy bench -- true` wall time: median {:.1} ms, p90 {:.1} ms ({starts} runs, in-process proxy)",
        pct(&walls, 0.5),
        pct(&walls, 0.9)
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_serve(dir: &Path) -> (String, String, std::process::Child) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(tollgate())
        .args(["serve", "--config"])
        .arg(dir.join("tollgate.yaml"))
        .env("BENCH_TOKEN", "bench-token")
        .env("RUST_LOG", "warn,tollgate=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut proxy = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("tollgate listening on ") {
                proxy = line[i + 22..].split_whitespace().next().map(str::to_string);
            }
            if let Some(i) = line.find("tollgate admin API on ") {
                let admin = line[i + 22..].split_whitespace().next().map(str::to_string);
                let _ = tx.send((proxy.clone().unwrap_or_default(), admin.unwrap_or_default()));
            }
        }
    });
    let (proxy, admin) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    (proxy, admin, child)
}
