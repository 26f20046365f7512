//! Python parts of the tests: whether the packages a test needs are here, a
//! test server from `tests/` started with a JSON config (announcing its port
//! on stdout), and the proxy variables a client must not inherit.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Proxy variables of the machine that a test's client must not inherit.
pub const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Whether `python3 -c "import {imports}"` works; skips loudly naming
/// `needed` when not.
pub fn has_modules(imports: &str, needed: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {imports}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        super::skip::skipped(&format!(
            "needs python3 with {needed} (.ci/run installs them)"
        ));
    }
    ok
}

/// A Python server from `tests/`, given `config` as a JSON file, its stderr
/// in `server.log` of its own directory; killed on drop.
pub struct PyServer {
    child: Child,
    /// The port it announced.
    pub port: u16,
    /// Its directory: config, log, and whatever the test puts there.
    pub dir: tempfile::TempDir,
}

impl PyServer {
    /// Starts `script` (relative to the crate root) in `dir`; panics with its
    /// log when it does not announce a port.
    pub fn start(script: &str, dir: tempfile::TempDir, config: &Value) -> PyServer {
        let config = super::write_file(dir.path(), "config.json", &config.to_string());
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let port = super::announced_port(&mut child);
        let server = PyServer {
            child,
            port: port.unwrap_or(0),
            dir,
        };
        if port.is_none() {
            panic!("{script} did not start: {}", server.log());
        }
        server
    }

    /// What it wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `name` in its directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The JSON lines of `name` in its directory (a record the server keeps).
    pub fn json_lines(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
