//! Cloud metadata emulation, end to end: real, unmodified SDKs (botocore,
//! google-auth, azure-identity; tests/metadata/clients.py) ask
//! `169.254.169.254` / `metadata.google.internal` for credentials and get
//! placeholders, answered by tollgate and never forwarded. The real tokens are
//! minted by tollgate from the authorization server of tests/oauth/server.py
//! (jwt_bearer with a service-account key, client_credentials), and its
//! protected resource accepts only those.
//!
//! Through the proxy (HTTP_PROXY set) without root; inside `tollgate run`
//! (port-80 redirect, DNS stub) as root only, like tests/launcher.rs. All
//! traffic stays on loopback or in the sandbox's namespace.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::oauth::{rsa_key, service_account, AuthServer};
use common::upstream::{start_upstream, TestCa, Upstream};
use common::{curl, start_proxy, write_setup, ProxyProc, ProxySetup, TOKEN};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SA_EMAIL: &str = "agent@tollgate-test.iam.gserviceaccount.test";
const SA_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform.read-only";
const AZURE_CLIENT: &str = "basic-client";
const AZURE_SECRET: &str = "azure-client-secret-Pw83";
/// The static AWS key behind the `aws` secret; never handed out.
const AWS_KEY_ID: &str = "TESTKEYIDNOTREAL0001";
const AWS_SECRET_KEY: &str = "test-secret-access-key-Lq5Zr";
const TOKEN_TTL: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const IMDS: &str = "http://169.254.169.254";
const GCE: &str = "http://metadata.google.internal";

/// The Python that has the SDKs (its absolute path: the runs below clear the
/// environment), or `None` after a loud skip.
fn python_with_sdks() -> Option<String> {
    let found = Command::new("python3")
        .args([
            "-c",
            "import sys, botocore, google.auth, azure.identity, authlib, flask; print(sys.executable)",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if found.is_none() {
        common::skip::skipped(
            "needs python3 with botocore, google-auth, azure-identity, authlib and flask (.ci/run installs them)",
        );
    }
    found
}

fn clients_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metadata/clients.py")
}

/// The authorization server with the service account and the Azure client.
fn auth_server(ca: &TestCa, keys: &Path) -> (AuthServer, PathBuf) {
    let (private_key, public) = rsa_key(keys, "sa");
    let auth = AuthServer::start(
        ca,
        json!({
            "expires_in": 3600,
            "clients": [{"client_id": AZURE_CLIENT, "client_secret": AZURE_SECRET,
                         "auth_method": "client_secret_basic", "scope": "api.read"}],
            "service_accounts": [{"client_email": SA_EMAIL, "public_key": public,
                                  "private_key_id": "0f3c9a1be2d47c5a8e6b", "scope": SA_SCOPE}],
        }),
    );
    let key = service_account(keys, "sa", SA_EMAIL, &private_key, &auth.token_url());
    (auth, key)
}

/// Policy `cloud`: an `aws` secret (static keys, one region) used on the S3
/// stand-in `s3.aws.test`, the GCP and Azure tokens marked for the metadata
/// services, injected on the resource; and a rule that allows plain http to `metadata.google.internal`, which
/// must make no difference.
fn cloud_policy(auth: &AuthServer, sa_key: &Path, s3_port: u16) -> String {
    format!(
        r#"name: cloud
secrets:
  AWS:
    aws:
      credentials: {{ access_key_id: {{ env: AKID }}, secret_access_key: {{ env: SAK }} }}
      regions: [eu-west-3]
    hosts: ["*.aws.test"]
  GCP_TOKEN:
    oauth2:
      token_url: {token_url}
      grant: jwt_bearer
      service_account: {{ file: {sa_key} }}
      scopes: [{SA_SCOPE}]
      metadata: gcp
    hosts: [api.crm.test]
  AZURE_TOKEN:
    oauth2:
      token_url: {token_url}
      grant: client_credentials
      client_id: {AZURE_CLIENT}
      client_secret: {{ env: AZURE_SECRET }}
      client_auth: client_secret_basic
      scopes: [api.read]
      metadata: azure
    hosts: [api.crm.test]
rules:
  - name: crm
    host: api.crm.test
    port: {port}
    inject: [GCP_TOKEN, AZURE_TOKEN]
  - name: s3
    host: s3.aws.test
    port: {s3_port}
    inject: [AWS]
  - name: lookalike
    host: metadata.google.internal
    port: 80
"#,
        token_url = auth.token_url(),
        sa_key = sa_key.display(),
        port = auth.port,
    )
}

/// A policy with no cloud secret, and the same lookalike rule.
const BARE_POLICY: &str = r#"name: bare
rules:
  - name: lookalike
    host: metadata.google.internal
    port: 80
"#;

/// The proxy's environment: the static AWS key and the Azure client secret.
fn proxy_env() -> Vec<(String, String)> {
    [
        ("TOLLGATE_SECRET_AKID", AWS_KEY_ID),
        ("TOLLGATE_SECRET_SAK", AWS_SECRET_KEY),
        ("TOLLGATE_SECRET_AZURE_SECRET", AZURE_SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Everything the proxy tests run: the authorization server (and resource),
/// a TLS echo upstream standing in for S3, a plain upstream that
/// `metadata.google.internal` resolves to, and tollgate.
struct Cloud {
    auth: AuthServer,
    s3: Upstream,
    lookalike: Upstream,
    proxy: ProxyProc,
    _keys: tempfile::TempDir,
}

impl Cloud {
    async fn start() -> Cloud {
        let ca = TestCa::new("metadata test CA");
        let keys = tempfile::tempdir().unwrap();
        let (auth, sa_key) = auth_server(&ca, keys.path());
        let s3 = start_upstream(Some(ca.server_config(&["s3.aws.test"]))).await;
        let lookalike = start_upstream(None).await;
        let mut setup = ProxySetup::default()
            .trust(&ca.cert_pem)
            .resolve_addr("api.crm.test", &format!("{}:{}", auth.bind, auth.port))
            .resolve_addr("login.test", &format!("{}:{}", auth.bind, auth.port))
            .resolve("s3.aws.test", s3.port)
            .resolve("metadata.google.internal", lookalike.port);
        setup.policies = vec![
            ("cloud".into(), cloud_policy(&auth, &sa_key, s3.port)),
            ("bare".into(), BARE_POLICY.into()),
        ];
        setup.extra_tasks = vec!["{ id: bare, policy: bare, token_env: TEST_AGENT_TOKEN }".into()];
        setup.env = proxy_env();
        let proxy = start_proxy(&setup);
        Cloud {
            auth,
            s3,
            lookalike,
            proxy,
            _keys: keys,
        }
    }

    /// Runs clients.py `args` with `python` through the proxy, in an
    /// environment with nothing but the proxy, the CA and an empty HOME
    /// (awaited: the upstreams of this test run on its runtime).
    async fn sdk(&self, python: &str, args: &[&str]) -> Value {
        let home = tempfile::tempdir().unwrap();
        let url = self.proxy.url();
        let output = tokio::process::Command::new(python)
            .arg(clients_py())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("HTTP_PROXY", &url)
            .env("HTTPS_PROXY", &url)
            .env("REQUESTS_CA_BUNDLE", &self.proxy.ca_pem)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        parse_client(&output.stdout, &output.stderr, output.status.success())
    }
}

fn parse_client(stdout: &[u8], stderr: &[u8], ok: bool) -> Value {
    let stdout = String::from_utf8_lossy(stdout);
    let stderr = String::from_utf8_lossy(stderr);
    assert!(ok, "clients.py failed:\n{stdout}\n{stderr}");
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// Asserts that the S3 stand-in got one request, signed again by tollgate with
/// the real (static) key for the policy's region: not the placeholder.
fn assert_resigned(s3: &Upstream, client: &Value) {
    let seen = s3.seen.lock().unwrap().clone();
    // botocore tries again when the stand-in's answer is no S3 answer.
    assert!(
        !seen.is_empty(),
        "nothing reached the S3 stand-in: {client}"
    );
    for request in &seen {
        assert_resigned_request(request);
    }
}

fn assert_resigned_request(request: &Value) {
    let headers = &request["headers"];
    let authorization = headers["authorization"].as_str().unwrap_or_default();
    assert!(
        authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/"))
            && authorization.contains("/eu-west-3/s3/aws4_request"),
        "{authorization}"
    );
    assert!(
        headers.get("x-amz-security-token").is_none(),
        "the placeholder session token is removed for static keys: {headers}"
    );
    assert!(!request.to_string().contains("__AWS__"), "{request}");
}

/// The audit record of `method` `path` on `host` (the first), or a panic listing all.
fn record(records: &[Value], method: &str, host: &str, path: &str) -> Value {
    records
        .iter()
        .find(|r| r["method"] == method && r["host"] == host && r["path"] == path)
        .cloned()
        .unwrap_or_else(|| panic!("no record of {method} {host}{path}: {records:#?}"))
}

#[tokio::test]
async fn botocore_finds_the_placeholders_through_imdsv2_via_the_proxy() {
    let Some(python) = python_with_sdks() else {
        return;
    };
    let cloud = Cloud::start().await;
    let endpoint = format!("https://s3.aws.test:{}", cloud.s3.port);
    let got = cloud.sdk(&python, &["botocore", &endpoint]).await;
    assert_eq!(got["method"], "iam-role", "{got}");
    for field in ["access_key", "secret_key", "token"] {
        assert_eq!(got[field], "__AWS__", "{field}: {got}");
    }
    assert_eq!(got["region"], "eu-west-3", "the policy's one region");
    assert_resigned(&cloud.s3, &got);

    common::wait_record(&cloud.proxy, |r| {
        r["path"] == "/latest/meta-data/iam/security-credentials/AWS"
    })
    .await;
    let records = common::audit_records(&cloud.proxy);
    let token = record(&records, "PUT", "169.254.169.254", "/latest/api/token");
    assert_eq!(token["status"], 200, "{token}");
    assert_eq!(token["task"], "agent");
    assert_eq!(
        token["secrets"],
        json!([]),
        "no secret in a metadata answer"
    );
    let creds = record(
        &records,
        "GET",
        "169.254.169.254",
        "/latest/meta-data/iam/security-credentials/AWS",
    );
    assert_eq!(creds["status"], 200, "{creds}");
    let audit =
        std::fs::read_to_string(cloud.proxy.dir.path().join("state/audit/audit.jsonl")).unwrap();
    assert!(!audit.contains(AWS_SECRET_KEY) && !audit.contains(AWS_KEY_ID));
    assert!(!got.to_string().contains(AWS_SECRET_KEY));
}

#[tokio::test]
async fn imdsv1_other_paths_and_missing_headers_are_refused_and_nothing_is_forwarded() {
    if !common::skip::has_tool("curl") {
        common::skip::skipped("needs curl");
        return;
    }
    let cloud = Cloud::start().await;
    let p = &cloud.proxy;
    let token_header = format!("{TOKEN_TTL}: 60");
    let put = curl(
        p,
        &[
            "-X",
            "PUT",
            "-H",
            &token_header,
            &format!("{IMDS}/latest/api/token"),
        ],
    )
    .await;
    assert_eq!(put.status, 200, "{put:?}");
    let token = put.body.clone();
    let with_token = format!("X-aws-ec2-metadata-token: {token}");
    let creds = format!("{IMDS}/latest/meta-data/iam/security-credentials/AWS");

    // IMDSv1: a plain GET is 401, and says nothing of the role.
    let v1 = curl(p, &[&creds]).await;
    assert_eq!(v1.status, 401, "{v1:?}");
    assert!(!v1.body.contains("__AWS__"));
    let v1_list = curl(
        p,
        &[&format!(
            "{IMDS}/latest/meta-data/iam/security-credentials/"
        )],
    )
    .await;
    assert_eq!(v1_list.status, 401);
    // A forged token, and a token PUT that came through a forwarding proxy.
    let forged = curl(
        p,
        &["-H", "X-aws-ec2-metadata-token: 9999999999.AAAA", &creds],
    )
    .await;
    assert_eq!(forged.status, 401);
    let forwarded = curl(
        p,
        &[
            "-X",
            "PUT",
            "-H",
            &token_header,
            "-H",
            "X-Forwarded-For: 10.1.2.3",
            &format!("{IMDS}/latest/api/token"),
        ],
    )
    .await;
    assert_eq!(forwarded.status, 403, "{forwarded:?}");
    // With the token: the role, and 404 for everything else.
    let ok = curl(p, &["-H", &with_token, &creds]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["AccessKeyId"], "__AWS__");
    for path in [
        "/latest/user-data",
        "/latest/dynamic/instance-identity/document",
        "/latest/meta-data/instance-id",
        "/latest/meta-data/iam/security-credentials/OTHER",
        "/latest/meta-data/iam/info",
    ] {
        let out = curl(p, &["-H", &with_token, &format!("{IMDS}{path}")]).await;
        assert_eq!(out.status, 404, "{path}: {out:?}");
    }

    // GCP needs its header (403 without), Azure its own (400 without).
    let gcp_token = format!("{GCE}/computeMetadata/v1/instance/service-accounts/default/token");
    let no_flavor = curl(p, &[&gcp_token]).await;
    assert_eq!(no_flavor.status, 403, "{no_flavor:?}");
    assert_eq!(
        no_flavor.header("metadata-flavor").as_deref(),
        Some("Google")
    );
    assert!(!no_flavor.body.contains("__GCP_TOKEN__"));
    let flavored = curl(p, &["-H", "Metadata-Flavor: Google", &gcp_token]).await;
    assert_eq!(flavored.status, 200, "{flavored:?}");
    assert_eq!(flavored.json()["access_token"], "__GCP_TOKEN__");
    let attributes = curl(
        p,
        &[
            "-H",
            "Metadata-Flavor: Google",
            &format!("{GCE}/computeMetadata/v1/instance/attributes/"),
        ],
    )
    .await;
    assert_eq!(attributes.status, 404);
    let azure_token =
        format!("{IMDS}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fapi.crm.test");
    let no_metadata = curl(p, &[&azure_token]).await;
    assert_eq!(no_metadata.status, 400, "{no_metadata:?}");
    assert!(!no_metadata.body.contains("__AZURE_TOKEN__"));
    let with_metadata = curl(p, &["-H", "Metadata: true", &azure_token]).await;
    assert_eq!(with_metadata.status, 200, "{with_metadata:?}");
    assert_eq!(with_metadata.json()["access_token"], "__AZURE_TOKEN__");
    let instance = curl(
        p,
        &[
            "-H",
            "Metadata: true",
            &format!("{IMDS}/metadata/instance?api-version=2021-02-01"),
        ],
    )
    .await;
    assert_eq!(instance.status, 404);

    // A policy without cloud secrets: 404, and its rule for the name changes nothing.
    let bare = format!("http://bare:{TOKEN}@{}", p.addr);
    let ca = p.ca_pem.to_str().unwrap().to_string();
    for url in [
        format!("{GCE}/computeMetadata/v1/instance/service-accounts/default/token"),
        format!("{GCE}/anything"),
        format!("{IMDS}/latest/meta-data/"),
    ] {
        let out = common::curl_raw(&[
            "--proxy",
            &bare,
            "--cacert",
            &ca,
            "-H",
            "Metadata-Flavor: Google",
            &url,
        ])
        .await;
        assert_eq!(out.status, 404, "{url}: {out:?}");
    }
    assert_eq!(
        cloud.lookalike.hits(),
        0,
        "nothing reached the upstream metadata.google.internal resolves to"
    );
    let records = common::audit_records(p);
    let refused = record(&records, "GET", "metadata.google.internal", "/anything");
    assert_eq!(refused["status"], 404);
    assert_eq!(refused["task"], "bare");
}

#[tokio::test]
async fn google_auth_and_azure_identity_get_placeholders_and_the_api_gets_real_tokens() {
    let Some(python) = python_with_sdks() else {
        return;
    };
    let cloud = Cloud::start().await;
    let whoami = cloud.auth.api("/api/whoami");

    let gcp = cloud.sdk(&python, &["google", &whoami]).await;
    assert_eq!(
        gcp["token"],
        "__GCP_TOKEN__",
        "{gcp}\n{}",
        cloud.auth.server_log()
    );
    assert_eq!(gcp["email"], SA_EMAIL, "from the service-account key");
    assert_eq!(gcp["project"], "tollgate-test");
    assert_eq!(gcp["api_status"], 200, "{gcp}\n{}", cloud.auth.server_log());
    assert_eq!(
        gcp["api_body"]["client_id"], SA_EMAIL,
        "minted by jwt_bearer"
    );
    assert_eq!(
        gcp["api_body"]["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );

    let azure = cloud
        .sdk(
            &python,
            &["azure", "https://api.crm.test/.default", &whoami],
        )
        .await;
    assert_eq!(azure["token"], "__AZURE_TOKEN__", "{azure}");
    assert_eq!(
        azure["api_status"],
        200,
        "{azure}\n{}",
        cloud.auth.server_log()
    );
    assert_eq!(azure["api_body"]["client_id"], AZURE_CLIENT);
    assert_eq!(azure["api_body"]["grant_type"], "client_credentials");

    // The resource accepts only tokens its server issued: the placeholder is refused.
    let direct = cloud.auth.whoami("__GCP_TOKEN__").await;
    assert_eq!(direct.status, 401, "{direct:?}");
    let issued = cloud.auth.issued().await;
    assert_eq!(issued.len(), 2, "{issued:?}");
    for (token, _) in &issued {
        assert!(!gcp.to_string().contains(token.as_str()));
        assert!(!azure.to_string().contains(token.as_str()));
    }
    let records = common::audit_records(&cloud.proxy);
    let gcp_token = record(
        &records,
        "GET",
        "metadata.google.internal",
        "/computeMetadata/v1/instance/service-accounts/default/token",
    );
    assert_eq!(gcp_token["status"], 200);
    let azure_token = record(
        &records,
        "GET",
        "169.254.169.254",
        "/metadata/identity/oauth2/token",
    );
    assert_eq!(azure_token["status"], 200);
    assert_eq!(azure_token["secrets"], json!([]));
}

/// Whether this machine can run the launcher (root, `ip`, `nft`).
fn can_launch() -> bool {
    common::skip::needs_root_and_tools(
        &["ip", "nft"],
        "the launcher makes network namespaces and nftables rules",
    )
}

#[tokio::test]
async fn inside_tollgate_run_the_sdks_find_credentials_with_no_configuration() {
    if !can_launch() {
        return;
    }
    let Some(python) = python_with_sdks() else {
        return;
    };
    let ca = TestCa::new("metadata launcher CA");
    let keys = tempfile::tempdir().unwrap();
    let (auth, sa_key) = auth_server(&ca, keys.path());
    let s3 = start_upstream(Some(ca.server_config(&["s3.aws.test"]))).await;
    let mut setup = ProxySetup::default()
        .trust(&ca.cert_pem)
        .resolve_addr("api.crm.test", &format!("{}:{}", auth.bind, auth.port))
        .resolve_addr("login.test", &format!("{}:{}", auth.bind, auth.port))
        .resolve("s3.aws.test", s3.port);
    setup.policies = vec![("cloud".into(), cloud_policy(&auth, &sa_key, s3.port))];
    let dir = write_setup(&setup);
    let home = tempfile::tempdir().unwrap();
    let clients = clients_py();
    let clients = clients.to_str().unwrap();
    let whoami = auth.api("/api/whoami");
    // The SDKs reach the metadata address directly (NO_PROXY names it): the
    // launcher's port-80 redirect and DNS stub bring them to tollgate. Their API
    // calls use the proxy.
    let script = format!(
        r#"set -e
getent hosts metadata.google.internal
echo "v1=$(curl -sS --noproxy '*' -o /dev/null -w '%{{http_code}}' http://169.254.169.254/latest/meta-data/iam/security-credentials/)"
env | grep -c '^AWS_' || true
'{python}' '{clients}' botocore 'https://s3.aws.test:{s3_port}'
'{python}' '{clients}' google '{whoami}'
'{python}' '{clients}' azure https://api.crm.test/.default '{whoami}'
"#,
        s3_port = s3.port,
    );
    let no_proxy = "169.254.169.254,metadata.google.internal";
    let home_env = format!("HOME={}", home.path().display());
    let mut command = Command::new(common::tollgate_bin());
    command
        .arg("--config")
        .arg(dir.path().join("tollgate.yaml"))
        .args(["run", "--user", "root", "--policy", "cloud"])
        .args(["--env", &format!("NO_PROXY={no_proxy}")])
        .args(["--env", &format!("no_proxy={no_proxy}")])
        .args(["--env", &home_env])
        .args(["--", "sh", "-c", &script])
        .current_dir(dir.path())
        .envs(proxy_env())
        .env("TEST_AGENT_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output =
        tokio::task::spawn_blocking(move || run_limited(command, Duration::from_secs(120)))
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&output.0).to_string();
    let stderr = String::from_utf8_lossy(&output.1).to_string();
    assert!(
        output.2,
        "the run failed:\n{stdout}\n{stderr}\n{}",
        auth.server_log()
    );
    let mut lines = stdout.lines();
    let resolved = lines.next().unwrap_or_default();
    assert!(
        resolved.starts_with("169.254.169.254 "),
        "the DNS stub: {stdout}"
    );
    assert_eq!(lines.next(), Some("v1=401"), "IMDSv1 refused: {stdout}");
    assert_eq!(lines.next(), Some("0"), "no AWS variable inside: {stdout}");
    let aws: Value = serde_json::from_str(lines.next().unwrap_or_default()).unwrap();
    assert_eq!(aws["method"], "iam-role", "{stdout}");
    assert_eq!(aws["access_key"], "__AWS__");
    assert_eq!(aws["token"], "__AWS__");
    assert_eq!(aws["region"], "eu-west-3");
    assert_resigned(&s3, &aws);
    let gcp: Value = serde_json::from_str(lines.next().unwrap_or_default()).unwrap();
    assert_eq!(gcp["token"], "__GCP_TOKEN__", "{stdout}");
    assert_eq!(gcp["api_status"], 200, "{stdout}\n{}", auth.server_log());
    assert_eq!(gcp["api_body"]["client_id"], SA_EMAIL);
    let azure: Value = serde_json::from_str(lines.next().unwrap_or_default()).unwrap();
    assert_eq!(azure["token"], "__AZURE_TOKEN__", "{stdout}");
    assert_eq!(azure["api_status"], 200, "{stdout}\n{}", auth.server_log());
    assert_eq!(azure["api_body"]["client_id"], AZURE_CLIENT);

    // The metadata requests came through the redirect (origin-form, no proxy).
    let records: Vec<Value> = std::fs::read_to_string(dir.path().join("state/audit/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r: &Value| r["type"] == "request")
        .collect();
    let token = record(&records, "PUT", "169.254.169.254", "/latest/api/token");
    assert_eq!(token["status"], 200);
    let gce = record(
        &records,
        "GET",
        "metadata.google.internal",
        "/computeMetadata/v1/instance/service-accounts/default/token",
    );
    assert_eq!(gce["status"], 200);
}

/// Runs `command` (piped) to completion, killed after `limit`: (stdout,
/// stderr, success).
fn run_limited(mut command: Command, limit: Duration) -> (Vec<u8>, Vec<u8>, bool) {
    use std::io::Read;
    let mut child = command.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let success = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        out_reader.join().unwrap(),
        err_reader.join().unwrap(),
        success,
    )
}
