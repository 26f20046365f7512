//! tests/oauth/server.py (an authorization server and protected resource built
//! from authlib) run for a test, and the key material its `jwt_bearer` grant
//! checks: RSA keys from openssl and Google service-account JSON key files.

use super::upstream::TestCa;
use super::{curl_raw, CurlOut};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Whether python3 with authlib and Flask is here; skips loudly when not.
pub fn python_ready() -> bool {
    super::python::has_modules(
        "authlib, flask",
        "authlib and flask for tests/oauth/server.py",
    )
}

/// tests/oauth/server.py, killed on drop.
pub struct AuthServer {
    child: Option<Child>,
    /// Port (the same after a restart).
    pub port: u16,
    /// Loopback address it listens on.
    pub bind: String,
    dir: tempfile::TempDir,
}

impl AuthServer {
    /// Starts the server with a certificate from `ca` for `login.test` and
    /// `api.crm.test`; `config` gives its clients, service accounts, refresh
    /// tokens and `expires_in`.
    pub fn start(ca: &TestCa, mut config: Value) -> AuthServer {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.leaf_pem(&["login.test", "api.crm.test"]);
        let cert_path = super::write_file(dir.path(), "cert.pem", &cert);
        let key_path = super::write_file(dir.path(), "key.pem", &key);
        super::write_file(dir.path(), "ca.pem", &ca.cert_pem);
        config["cert"] = json!(cert_path);
        config["key"] = json!(key_path);
        config["host"] = json!("login.test");
        config["port"] = json!(0);
        let bind = config["bind"].as_str().unwrap_or("127.0.0.1").to_string();
        let mut server = AuthServer {
            child: None,
            port: 0,
            bind,
            dir,
        };
        server.launch(&config);
        server
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    fn launch(&mut self, config: &Value) {
        std::fs::write(self.config_path(), config.to_string()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth/server.py");
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let mut child = Command::new("python3")
            .arg(script)
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let port = super::announced_port(&mut child);
        self.child = Some(child);
        let Some(port) = port else {
            panic!("tests/oauth/server.py did not start: {}", self.server_log());
        };
        self.port = port;
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops it (the token endpoint is down: connections are refused).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with a fresh memory.
    pub fn restart(&mut self) {
        self.stop();
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(self.config_path()).unwrap()).unwrap();
        config["port"] = json!(self.port);
        self.launch(&config);
    }

    pub fn token_url(&self) -> String {
        format!("https://login.test:{}/oauth/token", self.port)
    }

    pub fn revocation_url(&self) -> String {
        format!("https://login.test:{}/oauth/revoke", self.port)
    }

    /// `https://api.crm.test:PORT{path}`.
    pub fn api(&self, path: &str) -> String {
        format!("https://api.crm.test:{}{path}", self.port)
    }

    /// A request straight to the server (not through tollgate).
    pub async fn direct(&self, args: &[&str]) -> CurlOut {
        let ca = self.dir.path().join("ca.pem");
        let login = format!("login.test:{}:{}", self.port, self.bind);
        let api = format!("api.crm.test:{}:{}", self.port, self.bind);
        let mut full = vec![
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &login,
            "--resolve",
            &api,
        ];
        full.extend_from_slice(args);
        curl_raw(&full).await
    }

    /// `POST` to the token endpoint with curl `args`.
    pub async fn token_call(&self, args: &[&str]) -> CurlOut {
        let url = self.token_url();
        let mut full = args.to_vec();
        full.push(&url);
        self.direct(&full).await
    }

    /// `GET /api/whoami` straight to the resource with `bearer`.
    pub async fn whoami(&self, bearer: &str) -> CurlOut {
        let header = format!("Authorization: Bearer {bearer}");
        self.direct(&["-H", &header, &self.api("/api/whoami")])
            .await
    }

    /// What the server counted: `token_calls` per grant, `token_errors`,
    /// `token_requests`, `issued` access tokens, live `refresh_tokens`, `revoked`.
    pub async fn stats(&self) -> Value {
        let url = format!("https://login.test:{}/stats", self.port);
        let out = self.direct(&[&url]).await;
        assert_eq!(out.status, 200, "{out:?}\n{}", self.server_log());
        out.json()
    }

    /// Token calls made for `grant` so far.
    pub async fn token_calls(&self, grant: &str) -> u64 {
        self.stats().await["token_calls"][grant]
            .as_u64()
            .unwrap_or(0)
    }

    /// Access tokens issued so far, with their client ids.
    pub async fn issued(&self) -> Vec<(String, String)> {
        self.stats().await["issued"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["access_token"].as_str().unwrap().to_string(),
                    t["client_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh RSA key from `openssl genpkey`: (PKCS#8 PEM, public key PEM).
pub fn rsa_key(dir: &Path, name: &str) -> (String, String) {
    let key_path = dir.join(format!("{name}.pem"));
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key_path)
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(status.success());
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(public.status.success());
    let private_key = std::fs::read_to_string(&key_path).unwrap();
    assert!(
        private_key.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8"
    );
    (private_key, String::from_utf8(public.stdout).unwrap())
}

/// A Google service-account JSON key file (`dir/name.json`) for `private_key`,
/// naming `email` in project `tollgate-test`.
pub fn service_account(
    dir: &Path,
    name: &str,
    email: &str,
    private_key: &str,
    token_uri: &str,
) -> PathBuf {
    let json = json!({
        "type": "service_account",
        "project_id": "tollgate-test",
        "private_key_id": "0f3c9a1be2d47c5a8e6b",
        "private_key": private_key,
        "client_email": email,
        "client_id": "104729000000000000001",
        "auth_uri": "https://accounts.google.test/o/oauth2/auth",
        "token_uri": token_uri,
    });
    super::write_file(dir, &format!("{name}.json"), &json.to_string())
}
