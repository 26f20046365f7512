//! AWS SigV4 re-signing end to end (issue 15): real, unmodified clients (boto3,
//! the AWS CLI, curl `--aws-sigv4`) sign with the placeholder `__AWS__`, tollgate
//! checks that signature and signs again with credentials minted per task, and a
//! local AWS (moto in server mode, authentication on: it recomputes every
//! signature with botocore against the keys it issued) must accept the result.
//! Credentials come from the AWS secrets engine over a real OpenBao
//! (tests/common/moto.rs) or from static keys. The attacks try to get a changed
//! request, a real key, a foreign region or service through, or a real credential
//! back out.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::moto::{aws_tools_ready, clean_env, run_client, AwsVault, Moto};
use common::upstream::{start_upstream, Upstream};
use common::{curl, start_proxy, wait_record, ProxyProc, ProxySetup};
use serde_json::{json, Value};
use std::process::Command;

/// Lease length of minted credentials: presigned expiries above it are capped.
const LEASE_SECS: u64 = 900;

/// The SHA-256 of `data`, hex.
fn sha256_hex(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn policy(moto_port: u16, echo_port: u16, credentials: &str) -> String {
    format!(
        r#"name: aws
secrets:
  AWS:
    aws:
      credentials: {credentials}
      regions: [us-east-1]
      services: [s3, sqs]
    hosts: ["*.moto.test", "moto.test"]
rules:
  - name: moto
    host: "*.moto.test"
    port: {moto_port}
    inject: [AWS]
  - name: echo
    host: echo.moto.test
    port: {echo_port}
    inject: [AWS]
"#
    )
}

/// moto, the engine over OpenBao, a TLS echo upstream for `echo.moto.test`, and
/// tollgate in front of them.
struct Aws {
    moto: Moto,
    vault: AwsVault,
    echo: Upstream,
    proxy: ProxyProc,
    home: tempfile::TempDir,
}

/// The `credentials:` of the engine's iam_user role.
const ENGINE_IAM_USER: &str = "{ vault: { mount: aws, role: agent-s3 } }";
/// The `credentials:` of the engine's assumed_role role (session tokens).
const ENGINE_STS: &str = "{ vault: { mount: aws, role: agent-sts } }";

impl Aws {
    /// Everything started, with `credentials` in the policy and `env` for the
    /// proxy; `None` (after a loud skip) without the tools.
    async fn start(credentials: &str, env: Vec<(String, String)>) -> Option<Aws> {
        if !aws_tools_ready() {
            return None;
        }
        let moto = Moto::start();
        let vault = AwsVault::start(&moto, LEASE_SECS);
        let echo = start_upstream(Some(moto.ca.server_config(&["echo.moto.test"]))).await;
        let home = tempfile::tempdir().unwrap();
        let mut setup = ProxySetup::with_policy("aws", &policy(moto.port, echo.port, credentials))
            .trust(&moto.ca.cert_pem)
            .resolve("s3.moto.test", moto.port)
            .resolve("sqs.moto.test", moto.port)
            .resolve("sts.moto.test", moto.port)
            .resolve("echo.moto.test", echo.port);
        setup.extra_yaml = vault.tollgate_yaml(home.path());
        setup.env = env;
        let proxy = start_proxy(&setup);
        // What a user's machine has: a config file with the region and
        // path-style S3 (the `*.moto.test` names are not bucket hosts).
        common::write_file(
            home.path(),
            "config",
            "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n",
        );
        Some(Aws {
            moto,
            vault,
            echo,
            proxy,
            home,
        })
    }

    /// The environment of a sandboxed client: the placeholder credentials,
    /// tollgate as proxy, tollgate's CA, and a HOME of its own.
    fn client_env(&self, proxy_url: &str) -> Vec<(String, String)> {
        let home = self.home.path();
        [
            ("HOME", home.display().to_string()),
            ("AWS_CONFIG_FILE", home.join("config").display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                home.join("no-credentials").display().to_string(),
            ),
            ("AWS_ACCESS_KEY_ID", "__AWS__".into()),
            ("AWS_SECRET_ACCESS_KEY", "__AWS__".into()),
            ("AWS_CA_BUNDLE", self.proxy.ca_pem.display().to_string()),
            ("HTTPS_PROXY", proxy_url.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `client.py COMMAND ARGS` as the sandbox of the default task (plus `more`
    /// environment).
    async fn client(&self, command: &str, args: Value, more: &[(&str, &str)]) -> Value {
        let mut env = self.client_env(&self.proxy.url());
        env.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let command = command.to_string();
        tokio::task::spawn_blocking(move || run_client(&command, &args, &env))
            .await
            .unwrap()
    }

    /// The headers botocore's SigV4 signer adds for this request, signed with
    /// the placeholder (and `more` environment, e.g. a session token).
    async fn sign(
        &self,
        [service, region]: [&str; 2],
        method: &str,
        url: &str,
        body: &str,
        headers: Value,
        more: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let out = self
            .client(
                "sign",
                json!({"service": service, "region": region, "method": method, "url": url,
                       "body": body, "headers": headers}),
                more,
            )
            .await;
        out["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_string(),
                    h[1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Sends a request with exactly these headers and body through tollgate.
    async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> common::CurlOut {
        let body_file = common::write_file(self.home.path(), "request-body", body);
        let body_arg = format!("@{}", body_file.display());
        let mut args: Vec<String> = vec!["-X".into(), method.into()];
        for (k, v) in headers {
            args.push("-H".into());
            args.push(format!("{k}: {v}"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            args.push("--data-binary".into());
            args.push(body_arg);
        }
        args.push(url.into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&self.proxy, &refs).await
    }

    /// The real credentials the engine handed out so far.
    fn issued(&self) -> Vec<(String, String, Option<String>)> {
        self.vault.issued()
    }
}

/// Asserts tollgate's JSON refusal.
fn assert_refused(out: &common::CurlOut, status: u16, reason: &str) -> Value {
    assert_eq!(out.status, status, "{out:?}");
    let body = out.json();
    assert_eq!(body["error"], reason, "{out:?}");
    body
}

#[tokio::test]
async fn moto_checks_signatures_and_the_engine_mints_keys_it_accepts() {
    if !aws_tools_ready() {
        return;
    }
    let moto = Moto::start();
    // Authentication is on: a request signed with a wrong secret is refused by
    // moto itself, sent directly (no tollgate in between).
    let wrong = moto.list_buckets_directly(&moto.keys.static_access_key_id, "wrong-secret", None);
    assert_eq!(wrong["error"], "SignatureDoesNotMatch", "{wrong}");
    let unknown = moto.list_buckets_directly("AKIAIOSFODNN7EXAMPLE", "x", None);
    assert_eq!(unknown["error"], "InvalidAccessKeyId", "{unknown}");
    let right = moto.list_buckets_directly(
        &moto.keys.static_access_key_id,
        &moto.keys.static_secret_access_key,
        None,
    );
    assert!(right["buckets"].is_array(), "{right}");

    // The engine's iam_user role: a key moto accepts, gone once revoked.
    let vault = AwsVault::start(&moto, LEASE_SECS);
    let (status, creds) = vault.read("aws/creds/agent-s3", false);
    assert_eq!(status, 200, "{creds}\n{}", vault.log());
    let akid = creds["data"]["access_key"].as_str().unwrap();
    let secret = creds["data"]["secret_key"].as_str().unwrap();
    assert!(akid.starts_with("AKIA"), "{creds}");
    assert_eq!(creds["lease_duration"], LEASE_SECS);
    let listed = moto.list_buckets_directly(akid, secret, None);
    assert!(listed["buckets"].is_array(), "{listed}");
    assert_eq!(vault.live_leases("agent-s3").len(), 1);
    // STS for an iam_user role is refused, as by the engine.
    assert_eq!(vault.read("aws/sts/agent-s3", false).0, 400);

    // The assumed_role role: a session moto accepts only with its token.
    let (status, sts) = vault.read("aws/sts/agent-sts", false);
    assert_eq!(status, 200, "{sts}");
    let d = &sts["data"];
    let (sakid, ssecret, token) = (
        d["access_key"].as_str().unwrap(),
        d["secret_key"].as_str().unwrap(),
        d["security_token"].as_str().unwrap(),
    );
    assert!(moto.list_buckets_directly(sakid, ssecret, Some(token))["buckets"].is_array());
    let no_token = moto.list_buckets_directly(sakid, ssecret, Some("not-the-token"));
    assert!(no_token["error"].is_string(), "{no_token}");

    // Revocation deletes the IAM user's key.
    let lease = creds["lease_id"].as_str().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-X", "PUT", "-H"])
        .arg(format!("X-Vault-Token: {}", common::bao::ROOT_TOKEN))
        .arg("--data")
        .arg(json!({ "lease_id": lease }).to_string())
        .arg(format!("{}/v1/sys/leases/revoke", vault.addr()))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!moto.has_access_key(akid));
    assert!(vault.live_leases("agent-s3").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_s3_round_trip_and_sqs_through_tollgate() {
    let Some(aws) = Aws::start(ENGINE_IAM_USER, vec![]).await else {
        return;
    };
    let s3 = aws
        .client(
            "s3-roundtrip",
            json!({"endpoint": aws.moto.url("s3.moto.test"), "bucket": "agent-bucket",
                   "key": "notes/hello.txt", "body": "hello through tollgate"}),
            &[],
        )
        .await;
    assert_eq!(s3["body"], "hello through tollgate", "{s3}");
    assert_eq!(s3["keys"], json!(["notes/hello.txt"]));

    let sqs = aws
        .client(
            "sqs",
            json!({"endpoint": aws.moto.url("sqs.moto.test"), "queue": "agent-queue",
                   "message": "from the sandbox"}),
            &[],
        )
        .await;
    assert_eq!(sqs["received"], json!(["from the sandbox"]), "{sqs}");

    // moto saw real keys: the one the engine minted for this task.
    let issued = aws.issued();
    assert_eq!(issued.len(), 1, "one lease per task: {issued:?}");
    assert!(aws.moto.has_access_key(&issued[0].0));
    let record = wait_record(&aws.proxy, |r| {
        r["host"]
            .as_str()
            .is_some_and(|h| h.starts_with("s3.moto.test"))
            && r["status"] == 200
    })
    .await;
    assert_eq!(record["secrets"], json!(["AWS"]), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_multipart_upload_with_aws_chunked_parts_arrives_intact() {
    let Some(aws) = Aws::start(ENGINE_IAM_USER, vec![]).await else {
        return;
    };
    let out = aws
        .client(
            "s3-multipart",
            json!({"endpoint": aws.moto.url("s3.moto.test"), "bucket": "big-bucket",
                   "key": "blob.bin", "parts": 2, "part_mib": 5}),
            &[],
        )
        .await;
    // What boto3 1.43.11 sends for UploadPart over https: an aws-chunked body
    // with a CRC32 trailer and no payload signature.
    for sent in out["sent"].as_array().unwrap_or_else(|| panic!("{out}")) {
        assert_eq!(
            sent["x-amz-content-sha256"],
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        );
        assert_eq!(sent["content-encoding"], "aws-chunked");
        assert_eq!(sent["x-amz-trailer"], "x-amz-checksum-crc32");
    }
    assert_eq!(out["size"], 10 * 1024 * 1024, "{out}");
    assert_eq!(out["sha256"], out["expected_sha256"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_copies_and_lists() {
    let Some(aws) = Aws::start(ENGINE_IAM_USER, vec![]).await else {
        return;
    };
    let endpoint = aws.moto.url("s3.moto.test");
    let file = common::write_file(aws.home.path(), "report.txt", "quarterly numbers\n");
    let env = aws.client_env(&aws.proxy.url());
    let run = |args: Vec<String>| {
        let env = env.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut cmd = Command::new("aws");
                cmd.args(&args);
                clean_env(&mut cmd);
                cmd.envs(env);
                cmd.output().unwrap()
            })
            .await
            .unwrap()
        }
    };
    let mb = run(vec![
        "s3".into(),
        "mb".into(),
        "s3://cli-bucket".into(),
        "--endpoint-url".into(),
        endpoint.clone(),
    ])
    .await;
    assert!(mb.status.success(), "{mb:?}");
    let cp = run(vec![
        "s3".into(),
        "cp".into(),
        file.display().to_string(),
        "s3://cli-bucket/reports/report.txt".into(),
        "--endpoint-url".into(),
        endpoint.clone(),
    ])
    .await;
    assert!(cp.status.success(), "{cp:?}");
    // `aws s3 ls` lists the buckets; objects are listed with s3api and a
    // prefix without `/`, because moto 5.2.1 checks signatures against the
    // decoded query (`prefix=reports/` where SigV4 signs `prefix=reports%2F`)
    // and refuses any listing whose query needs encoding, even one the CLI
    // sends it directly.
    let ls = run(vec![
        "s3".into(),
        "ls".into(),
        "--endpoint-url".into(),
        endpoint.clone(),
    ])
    .await;
    assert!(ls.status.success(), "{ls:?}");
    let buckets = String::from_utf8_lossy(&ls.stdout);
    assert!(buckets.contains("cli-bucket"), "{buckets}");
    let objects = run(vec![
        "s3api".into(),
        "list-objects-v2".into(),
        "--bucket".into(),
        "cli-bucket".into(),
        "--prefix".into(),
        "reports".into(),
        "--endpoint-url".into(),
        endpoint.clone(),
    ])
    .await;
    assert!(objects.status.success(), "{objects:?}");
    let listing: serde_json::Value = serde_json::from_slice(&objects.stdout).unwrap();
    assert_eq!(
        listing["Contents"][0]["Key"], "reports/report.txt",
        "{listing}"
    );
    assert_eq!(listing["Contents"][0]["Size"], 18, "{listing}");
    let back = aws.home.path().join("back.txt");
    let get = run(vec![
        "s3".into(),
        "cp".into(),
        "s3://cli-bucket/reports/report.txt".into(),
        back.display().to_string(),
        "--endpoint-url".into(),
        endpoint,
    ])
    .await;
    assert!(get.status.success(), "{get:?}");
    assert_eq!(
        std::fs::read_to_string(back).unwrap(),
        "quarterly numbers\n"
    );
}

/// curl's `--aws-sigv4` with the placeholder as key and secret. curl 7.88 leaves
/// the payload hash of an S3 request out unless given, so it is (as users of
/// that curl do).
async fn curl_sigv4(
    aws: &Aws,
    region: &str,
    service: &str,
    args: &[&str],
    body: &[u8],
) -> common::CurlOut {
    let provider = format!("aws:amz:{region}:{service}");
    let hash = format!("x-amz-content-sha256: {}", sha256_hex(body));
    let mut full = vec![
        "--aws-sigv4",
        provider.as_str(),
        "--user",
        "__AWS__:__AWS__",
        "-H",
        hash.as_str(),
    ];
    full.extend_from_slice(args);
    curl(&aws.proxy, &full).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_aws_sigv4_puts_and_gets() {
    let Some(aws) = Aws::start(ENGINE_IAM_USER, vec![]).await else {
        return;
    };
    let base = aws.moto.url("s3.moto.test");
    let made = curl_sigv4(
        &aws,
        "us-east-1",
        "s3",
        &["-X", "PUT", &format!("{base}/curl-bucket")],
        b"",
    )
    .await;
    assert_eq!(made.status, 200, "{made:?}");
    let body = b"sent by curl\n";
    let file = common::write_file_bytes(aws.home.path(), "curl.txt", body);
    let put = curl_sigv4(
        &aws,
        "us-east-1",
        "s3",
        &[
            "-T",
            file.to_str().unwrap(),
            &format!("{base}/curl-bucket/curl.txt"),
        ],
        body,
    )
    .await;
    assert_eq!(put.status, 200, "{put:?}");
    let get = curl_sigv4(
        &aws,
        "us-east-1",
        "s3",
        &[&format!("{base}/curl-bucket/curl.txt")],
        b"",
    )
    .await;
    assert_eq!(get.status, 200, "{get:?}");
    assert_eq!(get.body, "sent by curl\n");

    // A streamed body that is not the one whose hash was signed: checked as it
    // streams, cut off before its end (so moto never takes it), and 400.
    let changed =
        common::write_file_bytes(aws.home.path(), "changed.txt", b"sent by curl, CHANGED\n");
    let put = curl_sigv4(
        &aws,
        "us-east-1",
        "s3",
        &[
            "-T",
            changed.to_str().unwrap(),
            &format!("{base}/curl-bucket/curl.txt"),
        ],
        body,
    )
    .await;
    let refusal = assert_refused(&put, 400, "bad_request");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("x-amz-content-sha256"),
        "{refusal}"
    );
    let get = curl_sigv4(
        &aws,
        "us-east-1",
        "s3",
        &[&format!("{base}/curl-bucket/curl.txt")],
        b"",
    )
    .await;
    assert_eq!(get.body, "sent by curl\n", "the object is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_keys_from_env_and_openbao_kv_are_used() {
    if !aws_tools_ready() {
        return;
    }
    // The static form needs the keys before tollgate starts; moto issues them
    // first, so this test starts its parts one by one.
    let moto = Moto::start();
    let vault = AwsVault::start(&moto, LEASE_SECS);
    vault.bao.cli(&[
        "kv",
        "put",
        "secret/aws/static",
        &format!("secret={}", moto.keys.static_secret_access_key),
    ]);
    let echo = start_upstream(Some(moto.ca.server_config(&["echo.moto.test"]))).await;
    let credentials = "{ access_key_id: { env: AKID }, secret_access_key: { vault: { mount: secret, path: aws/static, field: secret } } }";
    let home = tempfile::tempdir().unwrap();
    let mut setup = ProxySetup::with_policy("aws", &policy(moto.port, echo.port, credentials))
        .trust(&moto.ca.cert_pem)
        .resolve("s3.moto.test", moto.port)
        .resolve("echo.moto.test", echo.port);
    setup.extra_yaml = vault.tollgate_yaml(home.path());
    setup.env = vec![(
        "TOLLGATE_SECRET_AKID".into(),
        moto.keys.static_access_key_id.clone(),
    )];
    let proxy = start_proxy(&setup);
    common::write_file(
        home.path(),
        "config",
        "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n",
    );
    let aws = Aws {
        moto,
        vault,
        echo,
        proxy,
        home,
    };
    let out = aws
        .client(
            "s3-roundtrip",
            json!({"endpoint": aws.moto.url("s3.moto.test"), "bucket": "static-bucket",
                   "key": "k", "body": "static keys"}),
            // A session token from the sandbox is removed for static keys
            // (moto refuses an IAM user's key with a token: InvalidToken).
            &[("AWS_SESSION_TOKEN", "__AWS__")],
        )
        .await;
    assert_eq!(out["body"], "static keys", "{out}");
    assert!(aws.issued().is_empty(), "nothing minted for static keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_session_token_replaces_the_placeholder_and_is_scrubbed_from_echoes() {
    let Some(aws) = Aws::start(ENGINE_STS, vec![]).await else {
        return;
    };
    let token_env = [("AWS_SESSION_TOKEN", "__AWS__")];
    // moto accepts the assumed-role key only with its real session token.
    let s3 = aws
        .client(
            "s3-roundtrip",
            json!({"endpoint": aws.moto.url("s3.moto.test"), "bucket": "sts-bucket",
                   "key": "k", "body": "via a role"}),
            &token_env,
        )
        .await;
    assert_eq!(s3["body"], "via a role", "{s3}");
    let issued = aws.issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    let (akid, secret, token) = issued[0].clone();
    let token = token.unwrap();

    // An upstream that echoes the request's headers (the real access key id in
    // Authorization, the real session token) back in its body.
    let url = format!("https://echo.moto.test:{}/echo?x=1", aws.echo.port);
    let headers = aws
        .sign(["s3", "us-east-1"], "GET", &url, "", json!({}), &token_env)
        .await;
    let out = aws.send("GET", &url, &headers, "").await;
    assert_eq!(out.status, 200, "{out:?}");
    // The upstream did get the real values (else this test could not fail)...
    let seen = aws.echo.seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        seen["headers"]["x-amz-security-token"],
        token.as_str(),
        "{seen}"
    );
    assert!(
        seen["headers"]["authorization"]
            .as_str()
            .unwrap()
            .contains(&format!("Credential={akid}/")),
        "{seen}"
    );
    // ...and the sandbox sees none of them.
    for real in [&akid, &secret, &token] {
        assert!(!out.body.contains(real.as_str()), "{}", out.body);
        assert!(!out.headers.contains(real.as_str()), "{}", out.headers);
    }
    // The Authorization echo header too.
    let header_echo = format!("https://echo.moto.test:{}/echo-header", aws.echo.port);
    let headers = aws
        .sign(
            ["s3", "us-east-1"],
            "GET",
            &header_echo,
            "",
            json!({}),
            &token_env,
        )
        .await;
    let out = aws.send("GET", &header_echo, &headers, "").await;
    assert_eq!(out.status, 200, "{out:?}");
    assert!(!out.headers.contains(&akid), "{}", out.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_are_resigned_and_their_expiry_capped() {
    let Some(aws) = Aws::start(ENGINE_STS, vec![]).await else {
        return;
    };
    let token_env = [("AWS_SESSION_TOKEN", "__AWS__")];
    // moto 5.2.1 answers 500 to any presigned request once authentication is on
    // (it reads the Authorization header unconditionally), so the re-signed URL
    // goes to the echo upstream and is checked with botocore's own query
    // signer against the real credentials.
    let url = aws
        .client(
            "presign",
            json!({"endpoint": format!("https://echo.moto.test:{}", aws.echo.port),
                   "bucket": "shared", "key": "a report.pdf", "expires": 604_800}),
            &token_env,
        )
        .await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.contains("X-Amz-Credential=__AWS__"), "{url}");
    let out = curl(&aws.proxy, &[&url]).await;
    assert_eq!(out.status, 200, "{out:?}");
    let seen = aws.echo.seen.lock().unwrap().last().unwrap().clone();
    let forwarded = format!(
        "https://echo.moto.test:{}{}",
        aws.echo.port,
        seen["path"].as_str().unwrap()
    );
    let issued = aws.issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    let (akid, secret, token) = issued[0].clone();
    let check = aws
        .client(
            "verify-presigned",
            json!({"url": forwarded, "access_key": akid, "secret_key": secret, "token": token}),
            &[],
        )
        .await;
    assert_eq!(
        check["valid"], true,
        "not signed with the real key: {check}"
    );
    let expires: u64 = check["query"]["X-Amz-Expires"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        expires <= LEASE_SECS,
        "X-Amz-Expires {expires} outlives the credentials ({LEASE_SECS} s)"
    );
    assert!(!out.body.contains(&akid) && !out.body.contains(token.as_deref().unwrap()));

    // A presigned URL changed after signing (another key) is refused.
    let tampered = url.replace("a%20report.pdf", "other.pdf");
    assert_ne!(tampered, url);
    let hits = aws.echo.hits();
    let out = curl(&aws.proxy, &[&tampered]).await;
    assert_refused(&out, 400, "bad_request");
    assert_eq!(
        aws.echo.hits(),
        hits,
        "a tampered URL must not be forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_or_header_changed_after_signing_is_refused_and_never_reaches_aws() {
    let Some(aws) = Aws::start(ENGINE_IAM_USER, vec![]).await else {
        return;
    };
    let sqs_url = aws.moto.url("sqs.moto.test");
    let queue = aws
        .client(
            "sqs",
            json!({"endpoint": sqs_url, "queue": "payments", "message": "setup"}),
            &[],
        )
        .await;
    let queue_url = queue["queue_url"].as_str().unwrap().to_string();
    let send = |message: &str| json!({"QueueUrl": queue_url, "MessageBody": message}).to_string();
    let json_headers = json!({
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "AmazonSQS.SendMessage",
    });
    let signed_body = send("pay 10 EUR");
    let headers = aws
        .sign(
            ["sqs", "us-east-1"],
            "POST",
            &format!("{sqs_url}/"),
            &signed_body,
            json_headers.clone(),
            &[],
        )
        .await;
    // The body changed after signing (same length). Without the check tollgate
    // would sign the altered body with the real key and moto would take it.
    let out = aws
        .send(
            "POST",
            &format!("{sqs_url}/"),
            &headers,
            &send("pay 99 EUR"),
        )
        .await;
    assert_refused(&out, 400, "bad_request");
    // A signed header changed after signing.
    let mut changed = headers.clone();
    for (k, v) in changed.iter_mut() {
        if k.eq_ignore_ascii_case("x-amz-target") {
            *v = "AmazonSQS.PurgeQueue".into();
        }
    }
    let out = aws
        .send("POST", &format!("{sqs_url}/"), &changed, &signed_body)
        .await;
    assert_refused(&out, 400, "bad_request");
    // The request as signed goes through: the refusals above were for the
    // changes.
    let out = aws
        .send("POST", &format!("{sqs_url}/"), &headers, &signed_body)
        .await;
    assert_eq!(out.status, 200, "{out:?}");
    // moto never saw the altered message: only `setup` (already received) and
    // the one sent as signed are in the queue.
    let check = aws
        .client(
            "sqs",
            json!({"endpoint": sqs_url, "queue": "payments", "message": "last"}),
            &[],
        )
        .await;
    let received = check["received"].to_string();
    assert!(!received.contains("99"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_keys_foreign_regions_and_services_are_refused() {
    let Some(aws) = Aws::start(ENGINE_IAM_USER, vec![]).await else {
        return;
    };
    let base = aws.moto.url("s3.moto.test");
    // A real-looking key as the signing key: without the check tollgate would
    // pass the request on untouched and moto would answer itself.
    let provider = "aws:amz:us-east-1:s3";
    let real = curl(
        &aws.proxy,
        &[
            "--aws-sigv4",
            provider,
            "--user",
            "AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI",
            &format!("{base}/"),
        ],
    )
    .await;
    assert_refused(&real, 403, "secret_not_allowed");
    // In another header of a placeholder-signed request, and in the query.
    let url = format!("{base}/?note=1");
    let headers = aws
        .sign(
            ["s3", "us-east-1"],
            "GET",
            &url,
            "",
            json!({"x-amz-meta-copied": "AKIAIOSFODNN7EXAMPLE"}),
            &[],
        )
        .await;
    assert_refused(
        &aws.send("GET", &url, &headers, "").await,
        403,
        "secret_not_allowed",
    );
    let url = format!("{base}/?leak=AKIAIOSFODNN7EXAMPLE");
    let headers = aws
        .sign(["s3", "us-east-1"], "GET", &url, "", json!({}), &[])
        .await;
    assert_refused(
        &aws.send("GET", &url, &headers, "").await,
        403,
        "secret_not_allowed",
    );

    // A payload variant tollgate does not re-sign (ECDSA streaming, SigV4a's) is
    // refused by name rather than passed on unsigned.
    let variant = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD";
    let out = curl(
        &aws.proxy,
        &[
            "--aws-sigv4",
            provider,
            "--user",
            "__AWS__:__AWS__",
            "-H",
            &format!("x-amz-content-sha256: {variant}"),
            "-X",
            "PUT",
            "--data-binary",
            "0;chunk-signature=00\r\n\r\n",
            &format!("{base}/bucket/key"),
        ],
    )
    .await;
    let body = assert_refused(&out, 400, "bad_request");
    assert!(
        body["message"].as_str().unwrap().contains(variant),
        "{body}"
    );

    // A region outside `regions`.
    let out = curl_sigv4(&aws, "eu-west-1", "s3", &[&format!("{base}/")], b"").await;
    let body = assert_refused(&out, 403, "no_rule");
    assert!(
        body["message"].as_str().unwrap().contains("eu-west-1"),
        "{body}"
    );
    // A service outside `services` (STS on a host the secret covers).
    let sts = aws.moto.url("sts.moto.test");
    let out = curl_sigv4(
        &aws,
        "us-east-1",
        "sts",
        &[
            "--data",
            "Action=GetCallerIdentity&Version=2011-06-15",
            &format!("{sts}/"),
        ],
        b"Action=GetCallerIdentity&Version=2011-06-15",
    )
    .await;
    let body = assert_refused(&out, 403, "no_rule");
    assert!(body["message"].as_str().unwrap().contains("sts"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_task_revokes_its_aws_lease() {
    let Some(aws) = Aws::start(ENGINE_IAM_USER, vec![]).await else {
        return;
    };
    let (id, proxy_url) = common::create_task(&aws.proxy, r#"{"policy":"aws","ttl":"10m"}"#).await;
    let mut env = aws.client_env(&proxy_url);
    let args = json!({"endpoint": aws.moto.url("s3.moto.test"), "bucket": "task-bucket",
                      "key": "k", "body": "task"});
    let out = tokio::task::spawn_blocking({
        let env = std::mem::take(&mut env);
        move || run_client("s3-roundtrip", &args, &env)
    })
    .await
    .unwrap();
    assert_eq!(out["body"], "task", "{out}");
    let issued = aws.issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    let akid = issued[0].0.clone();
    assert!(
        aws.moto.has_access_key(&akid),
        "a live key while the task runs"
    );
    assert_eq!(aws.vault.live_leases("agent-s3").len(), 1);

    assert_eq!(common::delete_task(&aws.proxy, &id).await, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !aws.vault.live_leases("agent-s3").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease of a deleted task must be revoked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        !aws.moto.has_access_key(&akid),
        "moto still has the task's key"
    );
}

/// The README's example, for real: inside `tollgate run`, with no AWS variable
/// and no credentials file, the AWS CLI finds credentials through the emulated
/// IMDSv2 (the placeholder), and moto, which checks every signature, lists the
/// bucket: the request was signed again with the key the engine minted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_tollgate_run_the_aws_cli_lists_buckets_with_imds_credentials() {
    if !common::skip::needs_root_and_tools(
        &["ip", "nft"],
        "the launcher makes network namespaces and nftables rules",
    ) {
        return;
    }
    let Some(aws) = Aws::start(ENGINE_IAM_USER, vec![]).await else {
        return;
    };
    // A bucket made through tollgate by the harness's own client.
    let made = aws
        .client(
            "s3-roundtrip",
            json!({"endpoint": aws.moto.url("s3.moto.test"), "bucket": "run-bucket",
                   "key": "k", "body": "b"}),
            &[],
        )
        .await;
    assert_eq!(made["body"], "b", "{made}");
    // The interpreter itself, not a pyenv shim, which needs the caller's HOME.
    let python = Command::new("python3")
        .args(["-c", "import sys, awscli; print(sys.executable)"])
        .output()
        .unwrap();
    assert!(python.status.success(), "{python:?}");
    let python = String::from_utf8(python.stdout).unwrap().trim().to_string();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    // Path-style S3 only: no credentials here.
    common::write_file(
        &home.path().join(".aws"),
        "config",
        "[default]\ns3 =\n    addressing_style = path\n",
    );
    let token_file = aws.proxy.dir.path().join("state/admin.token");
    let endpoint = aws.moto.url("s3.moto.test");
    let mut command = Command::new(common::tollgate_bin());
    command
        .args(["run", "--user", "root", "--policy", "aws"])
        .arg("--admin")
        .arg(format!("http://{}", common::admin_addr(&aws.proxy)))
        .arg("--admin-token-file")
        .arg(&token_file)
        .args(["--env", &format!("HOME={}", home.path().display())])
        .args(["--", "sh", "-c"])
        .arg(format!(
            "env | grep -c '^AWS_' || true; '{python}' -m awscli s3 ls --endpoint-url '{endpoint}'"
        ))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::task::spawn_blocking(move || command.output().unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("0"), "no AWS variable inside: {stdout}");
    assert!(stdout.contains("run-bucket"), "{stdout}");
    // The credentials came from the metadata service, through the launcher.
    let token = wait_record(&aws.proxy, |r| {
        r["host"] == "169.254.169.254" && r["path"] == "/latest/api/token"
    })
    .await;
    assert_eq!(token["status"], 200, "{token}");
}
