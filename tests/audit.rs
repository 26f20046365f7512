//! The audit trail: contract fields, signatures and chain, `audit verify` against
//! every kind of tampering, restarts, rotation, torn lines and fail-closed.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected value"
)]

mod common;

use common::fixture::{ApiUpstream, Fixture};
use common::upstream::{start_upstream, TestCa};
use common::{audit_records, curl, start_proxy, tollgate_bin, wait_record, ProxyProc, ProxySetup};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SECRET: &str = "ghs_audit-secret-value-123";

fn policy(port: u16) -> String {
    format!(
        r#"name: main
secrets:
  TOKEN:
    env: TOKEN
    hosts: [api.test]
rules:
  - name: blocked
    host: api.test
    port: {port}
    paths: ["/admin/**"]
    action: deny
  - name: api
    host: api.test
    port: {port}
    inject: [TOKEN]
"#
    )
}

async fn fixture(audit_yaml: &str) -> Fixture {
    fixture_prepared(audit_yaml, |_| {}).await
}

/// A fixture whose working directory `prepare` fills before tollgate starts.
async fn fixture_prepared(audit_yaml: &str, prepare: impl FnOnce(&Path)) -> Fixture {
    let up = ApiUpstream::start(&["api.test"]).await;
    let mut setup = up.setup("main", &policy(up.api.port));
    setup.extra_yaml = audit_yaml.to_string();
    setup.env = vec![("TOLLGATE_SECRET_TOKEN".to_string(), SECRET.to_string())];
    up.serve_prepared((), setup, prepare)
}

fn state(proxy: &ProxyProc) -> PathBuf {
    proxy.dir.path().join("state")
}

fn log_path(proxy: &ProxyProc) -> PathBuf {
    state(proxy).join("audit/audit.jsonl")
}

fn pub_key(proxy: &ProxyProc) -> PathBuf {
    state(proxy).join("audit.key.pub")
}

/// Runs `tollgate audit verify FILES --key KEY`: (exit code, stdout, stderr).
fn verify(files: &[PathBuf], key: &Path) -> (i32, String, String) {
    let out = Command::new(tollgate_bin())
        .args(["audit", "verify"])
        .args(files)
        .arg("--key")
        .arg(key)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn stop(proxy: &mut ProxyProc) {
    proxy.terminate();
    assert!(proxy.wait_exit(Duration::from_secs(20)).is_some());
}

const CONTRACT_FIELDS: &[&str] = &[
    "v",
    "type",
    "seq",
    "ts",
    "task",
    "policy",
    "client",
    "method",
    "scheme",
    "host",
    "port",
    "path",
    "query",
    "decision",
    "rule",
    "reason",
    "secrets",
    "status",
    "bytes_up",
    "bytes_down",
    "duration_ms",
    "key_id",
    "prev",
    "sig",
];

fn keys(record: &Value) -> BTreeSet<String> {
    record.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn allow_and_deny_records_have_exactly_the_contract_fields_and_no_secret() {
    let mut f = fixture("").await;
    let ok = curl(
        &f.proxy,
        &[
            "-H",
            "Authorization: Bearer __TOKEN__",
            "--data-binary",
            "hello",
            &f.url("/echo?t=__TOKEN__&x=1"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(
        ok.body.contains("__TOKEN__"),
        "the response is scrubbed: {}",
        ok.body
    );
    let denied = curl(&f.proxy, &[&f.url("/admin/users")]).await;
    assert_eq!(denied.status, 403);

    let allow = wait_record(&f.proxy, |r| r["decision"] == "allow").await;
    let expected: BTreeSet<String> = CONTRACT_FIELDS.iter().map(|s| s.to_string()).collect();
    assert_eq!(keys(&allow), expected, "{allow}");
    assert_eq!(allow["v"], 1);
    assert_eq!(allow["type"], "request");
    assert_eq!(allow["task"], common::TASK);
    assert_eq!(allow["policy"], "main");
    assert_eq!(allow["method"], "POST");
    assert_eq!(allow["scheme"], "https");
    assert_eq!(allow["host"], "api.test");
    assert_eq!(allow["port"], f.api.port);
    assert_eq!(allow["path"], "/echo");
    assert_eq!(allow["query"], "t=__TOKEN__&x=1", "placeholder form");
    assert_eq!(allow["rule"], "api");
    assert_eq!(allow["reason"], Value::Null);
    assert_eq!(allow["secrets"], serde_json::json!(["TOKEN"]));
    assert_eq!(allow["status"], 200);
    assert_eq!(allow["bytes_up"], 5);
    assert_eq!(allow["bytes_down"].as_u64().unwrap(), ok.body.len() as u64);
    assert!(allow["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let ts = allow["ts"].as_str().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
        "{ts}"
    );
    assert_eq!(allow["key_id"].as_str().unwrap().len(), 16);
    assert_eq!(allow["prev"].as_str().unwrap().len(), 64);

    let deny = wait_record(&f.proxy, |r| r["decision"] == "deny").await;
    assert_eq!(keys(&deny), expected, "{deny}");
    assert_eq!(deny["rule"], "blocked");
    assert_eq!(deny["reason"], "denied_by_rule");
    assert_eq!(deny["status"], 403);
    assert_eq!(deny["secrets"], serde_json::json!([]));

    let first = &audit_records(&f.proxy)[0];
    assert_eq!(first["type"], "checkpoint");
    assert_eq!(first["event"], "start");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], "0".repeat(64));

    stop(&mut f.proxy);
    let text = std::fs::read_to_string(log_path(&f.proxy)).unwrap();
    assert!(
        !text.contains(SECRET),
        "a secret value reached the audit log"
    );
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "shutdown");
    let (code, out, err) = verify(&[log_path(&f.proxy)], &pub_key(&f.proxy));
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(out, format!("{} records ok", text.lines().count()));
}

#[tokio::test]
async fn refusals_before_the_policy_are_audited_too() {
    let f = fixture("").await;
    // No credentials: 407, audited without a task.
    let anon = common::curl_raw(&[
        "--proxy",
        &format!("http://{}", f.proxy.addr),
        "http://plain.test/x",
    ])
    .await;
    assert_eq!(anon.status, 407);
    let record = wait_record(&f.proxy, |r| r["status"] == 407).await;
    assert_eq!(record["task"], Value::Null);
    assert_eq!(record["reason"], "proxy_auth_required");
    // A refused CONNECT is one record.
    let refused = curl(&f.proxy, &["https://nowhere.test/"]).await;
    assert_eq!(refused.connect_status, 403);
    let record = wait_record(&f.proxy, |r| r["method"] == "CONNECT").await;
    assert_eq!(record["host"], "nowhere.test");
    assert_eq!(record["reason"], "no_rule");
    assert_eq!(record["decision"], "deny");
    // A bad path inside an intercepted tunnel.
    let bad = curl(&f.proxy, &["--path-as-is", &f.url("/a/../admin")]).await;
    assert_eq!(bad.status, 400);
    let record = wait_record(&f.proxy, |r| r["reason"] == "bad_request").await;
    assert_eq!(record["path"], "/a/../admin");
}

/// A real log of `n` allowed requests, stopped cleanly.
async fn real_log(n: usize, audit_yaml: &str) -> (Fixture, Vec<String>) {
    let mut f = fixture(audit_yaml).await;
    for i in 0..n {
        let out = curl(&f.proxy, &[&f.url(&format!("/echo?i={i}"))]).await;
        assert_eq!(out.status, 200);
    }
    stop(&mut f.proxy);
    let lines = std::fs::read_to_string(log_path(&f.proxy))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    (f, lines)
}

fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    path
}

fn assert_rejected(f: &Fixture, name: &str, lines: &[String], expect: &str) {
    let path = write_lines(f.proxy.dir.path(), name, lines);
    let (code, out, err) = verify(&[path], &pub_key(&f.proxy));
    assert_eq!(code, 1, "{name} must fail: {out} {err}");
    assert!(
        err.contains(expect),
        "{name}: expected `{expect}` in: {err}"
    );
    assert!(
        err.contains(&format!("{name}:")),
        "{name}: names file:line: {err}"
    );
}

#[tokio::test]
async fn verify_catches_every_kind_of_tampering() {
    let (f, lines) = real_log(4, "").await;
    assert_eq!(lines.len(), 6, "start + 4 requests + shutdown");
    let (code, out, _) = verify(&[log_path(&f.proxy)], &pub_key(&f.proxy));
    assert_eq!((code, out.as_str()), (0, "6 records ok"));

    // One edited field.
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("\"status\":200", "\"status\":201");
    assert_ne!(edited[2], lines[2]);
    assert_rejected(&f, "edited.jsonl", &edited, "seq 3: bad signature");

    // A deleted middle line.
    let mut deleted = lines.clone();
    deleted.remove(2);
    assert_rejected(&f, "deleted.jsonl", &deleted, "seq 4: seq gap");

    // Two swapped lines.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    assert_rejected(&f, "swapped.jsonl", &swapped, "out of order");

    // An inserted forged line (a copy with another path and the next seq).
    let mut forged: Value = serde_json::from_str(&lines[2]).unwrap();
    forged["path"] = "/forged".into();
    forged["seq"] = 4.into();
    let mut inserted = lines.clone();
    inserted.insert(3, forged.to_string());
    let renumbered: Vec<String> = inserted
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["seq"] = (i as u64 + 1).into();
            v.to_string()
        })
        .collect();
    assert_rejected(&f, "inserted.jsonl", &inserted, "duplicate seq");
    assert_rejected(&f, "renumbered.jsonl", &renumbered, "seq 4:");

    // A record re-signed with another key, chained correctly.
    let other_dir = tempfile::tempdir().unwrap();
    let other_key = other_dir.path().join("other.key");
    tollgate::audit::key::ensure_key(&other_key).unwrap();
    let other = std::sync::Arc::new(tollgate::audit::key::SigningKey::load(&other_key).unwrap());
    let last_good: Value = serde_json::from_str(&lines[4]).unwrap();
    let head = tollgate::audit::chain::ChainHead {
        next_seq: 6,
        prev: tollgate::audit::chain::sha256(
            &tollgate::audit::chain::canonical(&last_good).unwrap(),
        ),
    };
    let mut sealer = tollgate::audit::chain::Sealer::new(other, head);
    let mut object: Value = serde_json::from_str(&lines[5]).unwrap();
    object.as_object_mut().unwrap().remove("sig");
    let resealed = sealer
        .seal(object.as_object().unwrap().clone(), true)
        .unwrap();
    let mut other_signed = lines.clone();
    other_signed[5] = String::from_utf8(resealed.line.to_vec()).unwrap();
    assert_rejected(&f, "otherkey.jsonl", &other_signed, "seq 6: unknown key");

    // A truncated last line.
    let torn_path = f.proxy.dir.path().join("torn.jsonl");
    let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    text.truncate(text.len() - 20);
    std::fs::write(&torn_path, text).unwrap();
    let (code, _, err) = verify(&[torn_path], &pub_key(&f.proxy));
    assert_eq!(code, 1);
    assert!(
        err.contains("torn.jsonl:6") && err.contains("cut short"),
        "{err}"
    );

    // A missing first file.
    assert_rejected(&f, "tail.jsonl", &lines[2..], "earlier records are missing");
}

#[tokio::test]
async fn restart_and_rotation_continue_the_chain() {
    let (f, first_run) = real_log(
        3,
        "audit:\n  sinks:\n    - file: { path: state/audit/audit.jsonl, rotate_bytes: 2000 }\n",
    )
    .await;
    let last_seq = |lines: &[String]| -> u64 {
        serde_json::from_str::<Value>(lines.last().unwrap()).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    let before = last_seq(&first_run);
    let Fixture {
        ca: _ca,
        api,
        proxy,
        env,
        ..
    } = f;
    let mut proxy = proxy.restart(&env);
    for i in 0..12 {
        let out = curl(
            &proxy,
            &[&format!("https://api.test:{}/echo?again={i}", api.port)],
        )
        .await;
        assert_eq!(out.status, 200);
    }
    stop(&mut proxy);
    let dir = state(&proxy).join("audit");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert!(files.len() >= 3, "rotation happened: {files:?}");
    let rotated: Vec<_> = files
        .iter()
        .filter_map(|p| {
            p.file_name()?
                .to_str()?
                .strip_prefix("audit-")
                .map(str::to_string)
        })
        .collect();
    assert!(
        rotated
            .iter()
            .all(|n| n.len() == "000000000001.jsonl".len()),
        "{rotated:?}"
    );
    // Any order.
    files.reverse();
    let (code, out, err) = verify(&files, &pub_key(&proxy));
    assert_eq!(code, 0, "{out} {err}");
    let mut all: Vec<Value> = Vec::new();
    for file in &files {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            all.push(serde_json::from_str(line).unwrap());
        }
    }
    all.sort_by_key(|r| r["seq"].as_u64().unwrap());
    assert_eq!(out, format!("{} records ok", all.len()));
    let restart = all
        .iter()
        .find(|r| r["event"] == "start" && r["seq"].as_u64().unwrap() > 1)
        .expect("a second start checkpoint");
    // The first run ended with its shutdown checkpoint; the second run continues
    // right after it (a rotation checkpoint may come first: the file was full).
    assert_eq!(all[before as usize - 1]["event"], "shutdown");
    let restart_seq = restart["seq"].as_u64().unwrap();
    assert!(
        restart_seq == before + 1 || restart_seq == before + 2,
        "{restart}"
    );
    assert!(all.iter().any(|r| r["event"] == "rotate"));
    // Dropping a whole rotated file is a gap.
    let without_first: Vec<PathBuf> = files
        .iter()
        .filter(|p| !p.ends_with("audit-000000000001.jsonl"))
        .cloned()
        .collect();
    let (code, _, err) = verify(&without_first, &pub_key(&proxy));
    assert_eq!(code, 1, "{err}");
}

#[tokio::test]
async fn a_torn_last_line_is_cut_saved_and_reported_at_start() {
    let (f, lines) = real_log(1, "").await;
    let path = log_path(&f.proxy);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"v":1,"type":"request","seq":99"#);
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = verify(std::slice::from_ref(&path), &pub_key(&f.proxy));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cut short"), "{err}");

    let Fixture {
        ca: _ca,
        proxy,
        env,
        ..
    } = f;
    let mut proxy = proxy.restart(&env);
    let start = wait_record(&proxy, |r| {
        r["event"] == "start" && r["seq"].as_u64() > Some(1)
    })
    .await;
    assert_eq!(start["seq"].as_u64().unwrap(), lines.len() as u64 + 1);
    assert_eq!(start["torn_tail"]["bytes"], 32, "{start}");
    let saved = PathBuf::from(start["torn_tail"]["saved_to"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(saved).unwrap(),
        r#"{"v":1,"type":"request","seq":99"#
    );
    assert!(proxy.logs().iter().any(|l| l.contains("torn line")));
    stop(&mut proxy);
    let (code, out, err) = verify(&[log_path(&proxy)], &pub_key(&proxy));
    assert_eq!(code, 0, "{out} {err}");
}

fn cut_line(n: usize, m: usize) -> String {
    format!("{n} records ok, {m} after the last checkpoint unconfirmed: the log may have been cut")
}

/// A log copied while tollgate runs ends without its shutdown checkpoint, like a
/// log whose tail was cut: `verify` says the records after the last checkpoint are
/// unconfirmed, in both signing modes. After a graceful stop the same log ends
/// with the shutdown checkpoint and is plainly ok.
#[tokio::test]
async fn a_log_without_its_shutdown_checkpoint_is_reported_unconfirmed_in_both_modes() {
    for mode in ["record", "checkpoint"] {
        let mut f = fixture(&format!("audit:\n  sign: {mode}\n  checkpoint_every: 1h\n")).await;
        for i in 0..2 {
            let out = curl(&f.proxy, &[&f.url(&format!("/echo?i={i}"))]).await;
            assert_eq!(out.status, 200, "{mode}");
        }
        assert_eq!(curl(&f.proxy, &[&f.url("/admin/x")]).await.status, 403);
        wait_record(&f.proxy, |r| r["query"] == "i=1").await;
        wait_record(&f.proxy, |r| r["status"] == 403).await;
        let copy = f.proxy.dir.path().join(format!("copy-{mode}.jsonl"));
        std::fs::copy(log_path(&f.proxy), &copy).unwrap();
        let records = audit_records(&f.proxy);
        assert_eq!(records.len(), 4, "start + 3 requests: {records:?}");
        assert_eq!(
            records
                .iter()
                .filter(|r| r["type"] == "request")
                .all(|r| r.get("sig").is_some()),
            mode == "record",
            "request records are signed in record mode only"
        );
        assert!(
            records[0].get("sig").is_some(),
            "the start checkpoint is signed"
        );
        let (code, out, err) = verify(std::slice::from_ref(&copy), &pub_key(&f.proxy));
        assert_eq!(code, 0, "{mode}: nothing failed to verify: {err}");
        assert_eq!(out, cut_line(4, 3), "{mode}");

        if mode == "checkpoint" {
            // Editing an unsigned record breaks the chain at the next record.
            let lines: Vec<String> = std::fs::read_to_string(&copy)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
            let mut edited = lines.clone();
            edited[1] = edited[1].replace("i=0", "i=9");
            assert_rejected(&f, "edited-cp.jsonl", &edited, "seq 3: broken chain");
        }

        stop(&mut f.proxy);
        let (code, out, err) = verify(&[log_path(&f.proxy)], &pub_key(&f.proxy));
        assert_eq!(code, 0, "{mode}: {err}");
        assert_eq!(
            out, "5 records ok",
            "{mode}: the shutdown checkpoint confirms the tail"
        );
        // The copy is still what it was: a prefix of the complete log.
        let (_, out, _) = verify(&[copy], &pub_key(&f.proxy));
        assert_eq!(out, cut_line(4, 3), "{mode}");
    }
}

/// Cutting a complete log before its last checkpoint is what a hidden tail looks
/// like; `verify` must not call the rest plainly ok.
#[tokio::test]
async fn a_log_cut_before_its_shutdown_checkpoint_is_not_plainly_ok() {
    let (f, lines) = real_log(3, "").await;
    assert_eq!(lines.len(), 5, "start + 3 requests + shutdown");
    let (code, out, err) = verify(
        &[write_lines(f.proxy.dir.path(), "cut.jsonl", &lines[..4])],
        &pub_key(&f.proxy),
    );
    assert_eq!((code, out.as_str()), (0, cut_line(4, 3).as_str()), "{err}");
    // Dropping the signature of the last record to rewrite it is not a way out.
    let mut forged: Value = serde_json::from_str(&lines[3]).unwrap();
    forged.as_object_mut().unwrap().remove("sig");
    forged["path"] = "/forged".into();
    let mut edited = lines[..3].to_vec();
    edited.push(forged.to_string());
    assert_rejected(&f, "stripped.jsonl", &edited, "seq 4: unsigned record");
}

#[test]
fn keygen_creates_a_0600_key_and_its_public_half_and_keeps_an_existing_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(tollgate_bin())
            .args(["audit", "keygen", "--dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success());
    let key = dir.path().join("audit.key");
    let public = dir.path().join("audit.key.pub");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = std::fs::read_to_string(&public).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let before = std::fs::read(&key).unwrap();
    let again = run();
    assert!(again.status.success());
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "an existing key is never replaced"
    );
}

/// Runs openssl, failing loudly when it is missing (CI installs it).
fn openssl(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed for this test (CI installs it); it is not skipped")
}

/// OpenSSL 3.0 reads the key tollgate creates (PKCS#8 v1; it refuses v2 as
/// "unsupported"), derives the same `.pub`, and checks a real record's signature
/// with that `.pub`, as the contract says an auditor can.
#[tokio::test]
async fn openssl_reads_the_audit_key_and_checks_a_record_with_its_public_half() {
    let mut f = fixture("").await;
    assert_eq!(
        curl(&f.proxy, &[&f.url("/echo?by=openssl")]).await.status,
        200
    );
    let record = wait_record(&f.proxy, |r| r["query"] == "by=openssl").await;
    stop(&mut f.proxy);
    let key = state(&f.proxy).join("audit.key");
    let out = openssl(&[
        "pkey".as_ref(),
        "-in".as_ref(),
        key.as_os_str(),
        "-pubout".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "openssl pkey cannot read the audit key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read(pub_key(&f.proxy)).unwrap();
    assert_eq!(out.stdout, public, "the .pub file is what openssl derives");

    let dir = f.proxy.dir.path();
    let mut unsigned = record.clone();
    let sig = unsigned.as_object_mut().unwrap().remove("sig").unwrap();
    let message = dir.join("record.msg");
    std::fs::write(
        &message,
        tollgate::audit::chain::canonical(&unsigned).unwrap(),
    )
    .unwrap();
    use base64::Engine;
    let sig_file = dir.join("record.sig");
    std::fs::write(
        &sig_file,
        base64::engine::general_purpose::STANDARD
            .decode(sig.as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let check = |msg: &Path| {
        openssl(&[
            "pkeyutl".as_ref(),
            "-verify".as_ref(),
            "-pubin".as_ref(),
            "-inkey".as_ref(),
            pub_key(&f.proxy).as_os_str(),
            "-rawin".as_ref(),
            "-in".as_ref(),
            msg.as_os_str(),
            "-sigfile".as_ref(),
            sig_file.as_os_str(),
        ])
    };
    let verified = check(&message);
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    unsigned["status"] = 201.into();
    let altered = dir.join("altered.msg");
    std::fs::write(
        &altered,
        tollgate::audit::chain::canonical(&unsigned).unwrap(),
    )
    .unwrap();
    assert!(
        !check(&altered).status.success(),
        "openssl notices an altered record"
    );
}

/// A key written by an earlier version (PKCS#8 v2, with its `.pub`) keeps working:
/// the proxy starts on it, leaves it as it is, and its records verify.
#[tokio::test]
async fn the_proxy_runs_on_a_pkcs8_v2_key_from_an_earlier_version() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let pair = Ed25519KeyPair::generate().unwrap();
    let v2 = pair.to_pkcs8().unwrap();
    assert_eq!(
        &v2.as_ref()[2..5],
        &[0x02, 0x01, 0x01],
        "the fixture is PKCS#8 v2"
    );
    let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", v2.as_ref().to_vec()));
    let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
    let pub_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.clone()));
    let mut f = fixture_prepared("", |dir| {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let state = dir.join("state");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&state)
            .unwrap();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(state.join("audit.key"))
            .unwrap();
        std::io::Write::write_all(&mut file, key_pem.as_bytes()).unwrap();
        std::fs::write(state.join("audit.key.pub"), &pub_pem).unwrap();
    })
    .await;
    assert_eq!(curl(&f.proxy, &[&f.url("/echo?v2=1")]).await.status, 200);
    assert_eq!(curl(&f.proxy, &[&f.url("/admin/v2")]).await.status, 403);
    let record = wait_record(&f.proxy, |r| r["query"] == "v2=1").await;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki);
    let key_id: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        record["key_id"],
        key_id.as_str(),
        "signed with the existing key"
    );
    stop(&mut f.proxy);
    assert_eq!(
        std::fs::read_to_string(state(&f.proxy).join("audit.key")).unwrap(),
        key_pem,
        "the existing key is left as it is"
    );
    let (code, out, err) = verify(&[log_path(&f.proxy)], &pub_key(&f.proxy));
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(out, "4 records ok", "start, two requests, shutdown");
}

/// Root only: the audit file lives on a tiny tmpfs that the test fills up.
#[tokio::test]
async fn a_full_disk_fails_closed_with_503_and_recovers_with_the_chain_intact() {
    if !common::skip::needs_root("mounting a tmpfs") {
        return;
    }
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("auditfs");
    let _unmount = small_tmpfs(&audit_dir);
    let mut setup = ProxySetup::with_policy("main", &policy(api.port))
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    setup.extra_yaml = format!(
        "audit:\n  sinks:\n    - file: {{ path: {}/audit.jsonl }}\n",
        audit_dir.display()
    );
    setup.env = vec![("TOLLGATE_SECRET_TOKEN".into(), SECRET.into())];
    let mut proxy = start_proxy(&setup);
    let target = format!("https://api.test:{}/echo", api.port);
    assert_eq!(curl(&proxy, &[&target]).await.status, 200);

    // Fill the file system.
    let filler = audit_dir.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1k", "count=1024"])
        .arg(format!("of={}", filler.display()))
        .output();
    let mut refused = None;
    for _ in 0..50 {
        let out = curl(&proxy, &[&target]).await;
        if out.status == 503 {
            refused = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.expect("requests must be refused while the audit log cannot be written");
    assert_eq!(
        refused.header("x-tollgate-reason").as_deref(),
        Some("audit_unavailable")
    );
    assert!(proxy
        .logs()
        .iter()
        .any(|l| l.contains("AUDIT LOG CANNOT BE WRITTEN")));
    let hits_while_full = api.hits();
    assert_eq!(curl(&proxy, &[&target]).await.status, 503);
    assert_eq!(api.hits(), hits_while_full, "nothing passes unrecorded");

    // Free the space: traffic resumes.
    std::fs::remove_file(&filler).unwrap();
    let mut resumed = false;
    for _ in 0..50 {
        if curl(&proxy, &[&target]).await.status == 200 {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(resumed, "traffic resumes once the disk has room");
    assert!(proxy.logs().iter().any(|l| l.contains("writable again")));
    stop(&mut proxy);
    let log = audit_dir.join("audit.jsonl");
    let (code, out, err) = verify(
        std::slice::from_ref(&log),
        &proxy.dir.path().join("state/audit.key.pub"),
    );
    assert_eq!(code, 0, "{out} {err}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("\"reason\":\"audit_unavailable\""),
        "the refusals made while the disk was full are in the log"
    );
}

/// A 64 KiB tmpfs at `dir`, unmounted when the guard drops.
fn small_tmpfs(dir: &Path) -> Unmount {
    std::fs::create_dir(dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    Unmount(dir.to_path_buf())
}

/// Root only: with `on_failure: open`, traffic flows while the disk is full, and
/// the held records land, in order, once it has room.
#[tokio::test]
async fn a_full_disk_with_on_failure_open_keeps_serving_and_writes_later() {
    if !common::skip::needs_root("mounting a tmpfs") {
        return;
    }
    let ca = TestCa::new("upstream test CA");
    let api = start_upstream(Some(ca.server_config(&["api.test"]))).await;
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("auditfs");
    let _unmount = small_tmpfs(&audit_dir);
    let mut setup = ProxySetup::with_policy("main", &policy(api.port))
        .trust(&ca.cert_pem)
        .resolve("api.test", api.port);
    setup.extra_yaml = format!(
        "audit:\n  on_failure: open\n  sinks:\n    - file: {{ path: {}/audit.jsonl }}\n",
        audit_dir.display()
    );
    let mut proxy = start_proxy(&setup);
    let filler = audit_dir.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1k", "count=1024"])
        .arg(format!("of={}", filler.display()))
        .output();
    // The file's last page still has room for a few records; go on until the
    // writes fail. Every request is served all the same.
    let mut sent = 0;
    while !proxy
        .logs()
        .iter()
        .any(|l| l.contains("AUDIT LOG CANNOT BE WRITTEN"))
    {
        assert!(sent < 100, "the failure is logged loudly");
        let target = format!("https://api.test:{}/echo?while_full={sent}", api.port);
        assert_eq!(curl(&proxy, &[&target]).await.status, 200);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in sent..sent + 3 {
        let target = format!("https://api.test:{}/echo?while_full={i}", api.port);
        assert_eq!(
            curl(&proxy, &[&target]).await.status,
            200,
            "fail open serves"
        );
    }
    sent += 3;
    std::fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !proxy.logs().iter().any(|l| l.contains("writable again")) {
        assert!(std::time::Instant::now() < deadline, "recovery is logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(&mut proxy);
    let log = audit_dir.join("audit.jsonl");
    let (code, out, err) = verify(
        std::slice::from_ref(&log),
        &proxy.dir.path().join("state/audit.key.pub"),
    );
    assert_eq!(code, 0, "{out} {err}");
    let text = std::fs::read_to_string(&log).unwrap();
    for i in 0..sent {
        assert!(
            text.contains(&format!("while_full={i}\"")),
            "record {i} was held and written"
        );
    }
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every byte a syslog TCP receiver got.
async fn syslog_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (port, got)
}

/// Bodies POSTed to a collector, answered 200.
async fn http_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            sink.lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&body).to_string());
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, got)
}

#[tokio::test]
async fn every_sink_gets_the_records_and_none_gets_a_secret() {
    let (syslog_port, syslog) = syslog_receiver().await;
    let (http_port, http) = http_receiver().await;
    let sinks = format!(
        "audit:\n  sinks:\n    - file: {{ path: state/audit/audit.jsonl }}\n    - syslog: {{ address: \"127.0.0.1:{syslog_port}\", transport: tcp }}\n    - http: {{ url: \"http://127.0.0.1:{http_port}/ingest\", format: ocsf }}\n"
    );
    let f = fixture(&sinks).await;
    let ok = curl(
        &f.proxy,
        &[
            "-H",
            "Authorization: Bearer __TOKEN__",
            &f.url("/echo-header?k=__TOKEN__"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let record = wait_record(&f.proxy, |r| r["decision"] == "allow").await;
    let seq = record["seq"].as_u64().unwrap();
    let line = std::fs::read_to_string(log_path(&f.proxy))
        .unwrap()
        .lines()
        .find(|l| serde_json::from_str::<Value>(l).unwrap()["seq"] == seq)
        .unwrap()
        .to_string();

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let syslog_text = String::from_utf8_lossy(&syslog.lock().unwrap()).to_string();
        let http_text = http.lock().unwrap().join("\n");
        if syslog_text.contains(&line) && http_text.contains(&line) {
            assert!(!syslog_text.contains(SECRET) && !http_text.contains(SECRET));
            // RFC 5424 over TCP with octet counting: `LEN <110>1 ...`.
            let frame = format!(" audit - {line}");
            assert!(syslog_text.contains(&frame), "{syslog_text}");
            let events: Vec<Value> = http
                .lock()
                .unwrap()
                .iter()
                .flat_map(|b| serde_json::from_str::<Vec<Value>>(b).unwrap())
                .collect();
            let event = events
                .iter()
                .find(|e| e["unmapped"]["tollgate"]["seq"] == seq)
                .unwrap();
            assert_eq!(event["class_uid"], 4002);
            assert_eq!(event["activity_id"], 3, "GET");
            assert_eq!(
                event["unmapped"]["tollgate"], record,
                "the signed record rides along"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sinks did not get seq {seq}:\nsyslog: {syslog_text}\nhttp: {http_text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let file_text = std::fs::read_to_string(log_path(&f.proxy)).unwrap();
    assert!(!file_text.contains(SECRET));
}
