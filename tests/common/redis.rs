//! A real `redis-server` (Debian's package) on a free loopback port, with its
//! own config and no persistence; and tollgate replicas sharing it.

use super::{skip, spawn_serve, write_setup, ProxyProc, ProxySetup};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One redis-server process; stopped (SIGKILL) on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one, or reports a loud skip (`None`) if redis-server is missing.
    pub fn start(test: &str) -> Option<RedisServer> {
        if !skip::has_tool("redis-server") {
            skip::skipped(&format!(
                "{test} needs redis-server (apt install redis-server)"
            ));
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode yes\nsave \"\"\nappendonly no\ndir {}\ndaemonize no\nlogfile \"\"\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("redis.conf"), conf).unwrap();
        let mut server = RedisServer {
            child: None,
            port,
            dir,
        };
        server.spawn();
        Some(server)
    }

    /// One that speaks only TLS (certificate from `ca` for 127.0.0.1) and
    /// wants `password`; `None` as for [`Self::start`].
    pub fn start_tls(
        test: &str,
        ca: &super::upstream::TestCa,
        password: &str,
    ) -> Option<RedisServer> {
        if !skip::has_tool("redis-server") {
            skip::skipped(&format!(
                "{test} needs redis-server (apt install redis-server)"
            ));
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.leaf_pem(&["127.0.0.1"]);
        std::fs::write(dir.path().join("server.pem"), cert).unwrap();
        std::fs::write(dir.path().join("server.key"), key).unwrap();
        let port = free_port();
        let conf = format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {d}/server.pem\ntls-key-file {d}/server.key\ntls-auth-clients no\nrequirepass {password}\nsave \"\"\nappendonly no\ndir {d}\ndaemonize no\nlogfile \"\"\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("redis.conf"), conf).unwrap();
        let child = Command::new("redis-server")
            .arg(dir.path().join("redis.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server (TLS) did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(RedisServer {
            child: Some(child),
            port,
            dir,
        })
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .arg(self.dir.path().join("redis.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (SIGKILL): nothing is saved.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Sends one inline command and returns the first reply line, if any.
    pub fn command(&self, line: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        text.lines().next().map(str::to_string)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Files every replica shares: the task key, the CA and the audit key.
pub struct SharedKeys {
    dir: tempfile::TempDir,
}

impl SharedKeys {
    /// A fresh task key; the CA and audit key are created by the first replica.
    pub fn new() -> SharedKeys {
        let dir = tempfile::tempdir().unwrap();
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut key)
            .unwrap();
        let encoded = base64_url(&key);
        std::fs::write(dir.path().join("task.key"), encoded).unwrap();
        SharedKeys { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The audit public key, for `tollgate audit verify`.
    pub fn audit_pub(&self) -> PathBuf {
        self.path("audit.key.pub")
    }

    /// The CA certificate clients must trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.path("ca.pem")
    }
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The config lines that make a proxy replica `id` of the cluster on `redis`,
/// sharing `keys`. `extra` is the rest of the test's own `extra_yaml`.
pub fn cluster_yaml(redis: &RedisServer, keys: &SharedKeys, id: &str) -> String {
    format!(
        "task_key: {}\nca: {{ cert: {}, key: {} }}\naudit: {{ key: {} }}\ncluster: {{ redis: \"{}\", replica_id: {id} }}\n",
        keys.path("task.key").display(),
        keys.path("ca.pem").display(),
        keys.path("ca.key").display(),
        keys.path("audit.key").display(),
        redis.url(),
    )
}

/// Like [`cluster_yaml`], with a `rediss://` URL, the Redis CA in `ca_file`
/// and the password in `password_file`.
pub fn cluster_tls_yaml(
    redis: &RedisServer,
    keys: &SharedKeys,
    id: &str,
    ca_file: &std::path::Path,
    password_file: &std::path::Path,
) -> String {
    let plain = cluster_yaml(redis, keys, id);
    let head = plain.split("cluster:").next().unwrap();
    format!(
        "{head}cluster: {{ redis: \"rediss://127.0.0.1:{}/0\", replica_id: {id}, redis_ca_file: {}, redis_password_file: {} }}\n",
        redis.port,
        ca_file.display(),
        password_file.display(),
    )
}

/// Starts `n` replicas of `setup` (names `tollgate-0`...) on `redis`, one
/// after the other (the first creates the shared CA and audit key).
pub fn start_replicas(
    n: usize,
    setup: &ProxySetup,
    redis: &RedisServer,
    keys: &SharedKeys,
) -> Vec<ProxyProc> {
    (0..n)
        .map(|i| start_replica(setup, redis, keys, &format!("tollgate-{i}")))
        .collect()
}

/// Starts one replica named `id`.
pub fn start_replica(
    setup: &ProxySetup,
    redis: &RedisServer,
    keys: &SharedKeys,
    id: &str,
) -> ProxyProc {
    let mut setup = setup.clone();
    setup.extra_yaml = format!("{}{}", setup.extra_yaml, cluster_yaml(redis, keys, id));
    let dir = write_setup(&setup);
    let mut proxy = spawn_serve(dir, &setup.env);
    proxy.ca_pem = keys.ca_pem();
    proxy
}

/// `proxy_url` (as the admin API of one replica wrote it) pointed at `replica`.
pub fn via(proxy_url: &str, replica: &ProxyProc) -> String {
    let (creds, _) = proxy_url
        .trim_start_matches("http://")
        .rsplit_once('@')
        .unwrap();
    format!("http://{creds}@{}", replica.addr)
}

/// The status of `proxy`'s `/readyz`.
pub async fn readyz(proxy: &ProxyProc) -> u16 {
    super::curl_raw(&[&format!("http://{}/readyz", super::admin_addr(proxy))])
        .await
        .status
}

/// Waits (up to `limit`) until every replica's `/readyz` answers `status`.
pub async fn wait_ready(replicas: &[ProxyProc], status: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    for replica in replicas {
        loop {
            if readyz(replica).await == status {
                break;
            }
            assert!(Instant::now() < deadline, "/readyz never answered {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
