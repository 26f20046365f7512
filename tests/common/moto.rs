//! A local AWS for the SigV4 tests: moto in server mode (`python3 -m
//! moto.server`, PyPI `moto[server]`) on a free loopback port, serving TLS with a
//! certificate for `moto.test`, `*.moto.test` and `127.0.0.1` from a test CA,
//! with request authentication switched on after setup (tests/aws/moto_setup.py),
//! so it checks SigV4 signatures against the keys it issued. Then the AWS
//! secrets engine in front of a real `bao server -dev` (tests/aws/aws_engine.py,
//! see there why it stands in for OpenBao's plugin), minting IAM users and STS
//! sessions in that moto.

#![allow(
    dead_code,
    reason = "each test crate uses its own part of the harness, and some use all of it (so `expect` would be unfulfilled there)"
)]

use super::bao::{Bao, ROOT_TOKEN};
use super::upstream::TestCa;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The names moto's certificate covers. tollgate resolves each to moto.
pub const MOTO_NAMES: &[&str] = &[
    "moto.test",
    "*.moto.test",
    "s3.moto.test",
    "sqs.moto.test",
    "sts.moto.test",
    "iam.moto.test",
    "127.0.0.1",
];

/// The policy document of the `agent-s3` role: S3 and SQS, nothing else.
pub const S3_SQS_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","sqs:*"],"Resource":"*"}]}"#;

/// Path of a script under tests/aws/.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/aws")
        .join(name)
}

/// Whether python3 with moto (server mode), boto3 and the AWS CLI is here;
/// skips loudly when not.
pub fn aws_tools_ready() -> bool {
    let python = Command::new("python3")
        .args(["-c", "import moto.server, boto3, flask_cors"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let cli = Command::new("aws")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let bao = Command::new("bao")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !(python && cli && bao) {
        super::skip::skipped(
            "needs python3 with moto[server] and boto3, the AWS CLI (`aws`) and `bao` (.ci/run installs them)",
        );
    }
    python && cli && bao
}

/// A free port on 127.0.0.1 (for servers that want one on their command line).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What `moto_setup.py` created while moto accepted anything.
#[derive(Clone, Debug)]
pub struct MotoKeys {
    /// The AWS secrets engine's root user (may do anything).
    pub root_access_key_id: String,
    /// Its secret.
    pub root_secret_access_key: String,
    /// The role `assumed_role` credentials are minted for.
    pub role_arn: String,
    /// A long-lived key of the user `static-agent` (S3 and SQS).
    pub static_access_key_id: String,
    /// Its secret.
    pub static_secret_access_key: String,
}

/// A running moto server, killed on drop.
pub struct Moto {
    child: Child,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The CA of its certificate.
    pub ca: TestCa,
    /// That CA as a PEM file.
    pub ca_file: PathBuf,
    /// Keys issued during setup.
    pub keys: MotoKeys,
    /// Working directory (certificate, logs).
    pub dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto with TLS, prepares it and switches its authentication on.
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("moto test CA");
        let (cert, key) = ca.leaf_pem(MOTO_NAMES);
        let cert_path = super::write_file(dir.path(), "moto.pem", &cert);
        let key_path = super::write_file(dir.path(), "moto.key", &key);
        let ca_file = super::write_file(dir.path(), "ca.pem", &ca.cert_pem);
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1"])
            .arg("-p")
            .arg(port.to_string())
            .arg("--ssl-cert")
            .arg(&cert_path)
            .arg("--ssl-key")
            .arg(&key_path)
            // `s3.moto.test` is not an S3 endpoint name moto knows, so it would
            // take `s3` for a virtual-hosted bucket: path-style only.
            .env("S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("python3 -m moto.server");
        let mut moto = Moto {
            child,
            port,
            ca,
            ca_file,
            keys: MotoKeys {
                root_access_key_id: String::new(),
                root_secret_access_key: String::new(),
                role_arn: String::new(),
                static_access_key_id: String::new(),
                static_secret_access_key: String::new(),
            },
            dir,
        };
        moto.wait_ready();
        let out = Command::new("python3")
            .arg(script("moto_setup.py"))
            .arg(moto.endpoint())
            .arg(&moto.ca_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "moto_setup.py failed: {}\nmoto log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            moto.log()
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let text = |k: &str| v[k].as_str().unwrap().to_string();
        moto.keys = MotoKeys {
            root_access_key_id: text("root_access_key_id"),
            root_secret_access_key: text("root_secret_access_key"),
            role_arn: text("role_arn"),
            static_access_key_id: text("static_access_key_id"),
            static_secret_access_key: text("static_secret_access_key"),
        };
        moto
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "--max-time", "2", "--cacert"])
                .arg(&self.ca_file)
                .arg(format!("{}/moto-api/", self.endpoint()))
                .env_remove("HTTPS_PROXY")
                .env_remove("https_proxy")
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "moto did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// moto's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// `https://127.0.0.1:PORT`, for direct calls (the certificate covers the IP).
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `https://HOST:PORT`, the URL a client behind tollgate uses for `host`.
    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }

    /// Whether moto still has the access key `access_key_id` (asked with the
    /// root key, directly).
    pub fn has_access_key(&self, access_key_id: &str) -> bool {
        let v = run_client(
            "key-exists",
            &json!({
                "endpoint": self.endpoint(),
                "ca": self.ca_file,
                "root_access_key_id": self.keys.root_access_key_id,
                "root_secret_access_key": self.keys.root_secret_access_key,
                "access_key_id": access_key_id,
            }),
            &[],
        );
        v["exists"].as_bool().unwrap()
    }

    /// ListBuckets sent straight to moto with these keys (no proxy): the bucket
    /// names, or moto's error.
    pub fn list_buckets_directly(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Value {
        run_client(
            "list-buckets",
            &json!({
                "endpoint": self.endpoint(),
                "ca": self.ca_file,
                "access_key_id": access_key_id,
                "secret_access_key": secret_access_key,
                "session_token": session_token,
            }),
            &[],
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tests/aws/client.py COMMAND ARGS` with `env` added to an environment
/// stripped of proxies and AWS settings; returns the JSON it printed.
pub fn run_client(command: &str, args: &Value, env: &[(String, String)]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(script("client.py"))
        .arg(command)
        .arg(args.to_string());
    clean_env(&mut cmd);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "client.py {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("client.py {command}: {e}: {:?}", out.stdout))
}

/// Removes proxy and AWS variables the machine might have.
pub fn clean_env(cmd: &mut Command) {
    for var in super::python::PROXY_VARS.into_iter().chain([
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CA_BUNDLE",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
    ]) {
        cmd.env_remove(var);
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
}

/// The AWS secrets engine over a real OpenBao dev server: `addr()` is what
/// tollgate's `secrets.vault.address` points at.
pub struct AwsVault {
    /// The real OpenBao (KV, tokens).
    pub bao: Bao,
    child: Child,
    /// Port of the engine on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl AwsVault {
    /// Starts OpenBao and the engine with the roles `agent-s3` (iam_user, S3 and
    /// SQS) and `agent-sts` (assumed_role, `moto.keys.role_arn`); leases last
    /// `lease_secs`.
    pub fn start(moto: &Moto, lease_secs: u64) -> AwsVault {
        let bao = Bao::start();
        let dir = tempfile::tempdir().unwrap();
        let config = json!({
            "bao": bao.addr(),
            "endpoint": moto.endpoint(),
            "ca": moto.ca_file,
            "root": {
                "access_key": moto.keys.root_access_key_id,
                "secret_key": moto.keys.root_secret_access_key,
            },
            "roles": {
                "agent-s3": { "credential_type": "iam_user", "policy_document": S3_SQS_POLICY },
                "agent-sts": { "credential_type": "assumed_role", "role_arn": moto.keys.role_arn },
            },
            "lease_duration": lease_secs,
        });
        let config_path = super::write_file(dir.path(), "engine.json", &config.to_string());
        let log = std::fs::File::create(dir.path().join("engine.log")).unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(script("aws_engine.py")).arg(&config_path);
        clean_env(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let Some(port) = super::announced_port(&mut child) else {
            panic!(
                "aws_engine.py did not start: {}",
                std::fs::read_to_string(dir.path().join("engine.log")).unwrap_or_default()
            );
        };
        AwsVault {
            bao,
            child,
            port,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The engine's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("engine.log")).unwrap_or_default()
    }

    /// `secrets.vault` config for tollgate: token auth with the root token,
    /// written to a file in `dir`.
    pub fn tollgate_yaml(&self, dir: &Path) -> String {
        let token = super::write_file(dir, "vault-token", ROOT_TOKEN);
        format!(
            "secrets:\n  vault:\n    address: {}\n    auth: {{ method: token, token_file: {} }}\n",
            self.addr(),
            token.display()
        )
    }

    /// `GET /v1/PATH` (or `LIST` with `list`) as root through the engine: status
    /// and JSON body.
    pub fn read(&self, path: &str, list: bool) -> (u16, Value) {
        let url = format!("{}/v1/{path}", self.addr());
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "-X"])
            .arg(if list { "LIST" } else { "GET" })
            .arg("-H")
            .arg(format!("X-Vault-Token: {ROOT_TOKEN}"))
            .arg(&url)
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            status.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    /// The lease ids of `role` still live (`LIST sys/leases/lookup/aws/creds/ROLE`).
    pub fn live_leases(&self, role: &str) -> Vec<String> {
        let (_, v) = self.read(&format!("sys/leases/lookup/aws/creds/{role}"), true);
        v["data"]["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every credential the engine has handed out and not revoked:
    /// `(access_key, secret_key, security_token)`.
    pub fn issued(&self) -> Vec<(String, String, Option<String>)> {
        let (_, v) = self.read("aws-engine/issued", false);
        v["data"]["issued"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|c| {
                (
                    c["access_key"].as_str().unwrap().to_string(),
                    c["secret_key"].as_str().unwrap().to_string(),
                    c["security_token"].as_str().map(str::to_string),
                )
            })
            .collect()
    }
}

impl Drop for AwsVault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
