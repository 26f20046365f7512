//! `tollgate audit verify` over the logs of several replicas (cluster mode): the
//! real audit writer, one per replica with its own stream name and a shared key,
//! writes the files, and the real binary checks them. Each stream is verified on
//! its own and printed on its own line before the total; a cut stream is
//! unconfirmed; a record moved between streams or edited fails naming the stream
//! and the file; a single process's log reads exactly as before.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly on an unexpected value"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tollgate::audit::{Audit, Decision, RequestRecord};
use tollgate::config::{AuditConfig, AuditSink, FileSink, OnFailure, SignMode};

const LIMIT: Duration = Duration::from_secs(5);

/// A replica's audit trail in `dir`, signing with the cluster's shared `key`.
fn start(dir: &Path, key: &Path, stream: Option<&str>, rotate_bytes: Option<u64>) -> Audit {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = AuditConfig {
        key: key.to_path_buf(),
        sign: SignMode::Record,
        checkpoint_every: Duration::from_secs(3600),
        sinks: vec![AuditSink::File(FileSink {
            path: dir.join("audit/audit.jsonl"),
            rotate_bytes,
        })],
        on_failure: OnFailure::Closed,
        stream: stream.map(str::to_string),
    };
    let tls = Arc::new(tollgate::tls::upstream_client_config(&[]).unwrap());
    Audit::start(&config, dir, tls).unwrap()
}

fn denial(path: &str) -> RequestRecord {
    let mut r = RequestRecord::new(([127, 0, 0, 1], 40000).into(), "GET", "https");
    r.task = Some("ci-42".into());
    r.host = "api.test".into();
    r.port = 443;
    r.path = path.into();
    r.decision = Decision::Deny;
    r.reason = Some("denied_by_rule");
    r.status = 403;
    r
}

/// How a replica's writer runs.
#[derive(Clone, Copy, Default)]
struct Run {
    /// Request records written.
    requests: usize,
    /// The live file is copied before the shutdown checkpoint (as a replica
    /// killed with -9 leaves it) and the copy is kept in its place.
    cut: bool,
    /// Rotate at this size.
    rotate_bytes: Option<u64>,
}

/// A replica that writes `n` request records, then shuts down.
fn requests(n: usize) -> Run {
    Run {
        requests: n,
        ..Run::default()
    }
}

/// Writes records through a replica's writer; returns its files.
async fn replica(dir: &Path, key: &Path, stream: Option<&str>, run: Run) -> Vec<PathBuf> {
    let Run {
        requests,
        cut,
        rotate_bytes,
    } = run;
    let audit = start(dir, key, stream, rotate_bytes);
    for i in 0..requests {
        audit.record_written(denial(&format!("/repos/{i}"))).await;
    }
    let live = dir.join("audit/audit.jsonl");
    if cut {
        let copy = dir.join("cut.jsonl");
        std::fs::copy(&live, &copy).unwrap();
        audit.shutdown(LIMIT);
        std::fs::remove_file(&live).unwrap();
        std::fs::rename(&copy, &live).unwrap();
    } else {
        audit.shutdown(LIMIT);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn lines(files: &[PathBuf]) -> usize {
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum()
}

/// Runs `tollgate audit verify FILES --key KEY`: (exit code, stdout, stderr).
fn verify(files: &[PathBuf], key: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["audit", "verify"])
        .args(files)
        .arg("--key")
        .arg(key.with_extension("key.pub"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Replaces line `n` (1-based) of `file` with `line`; returns the old one.
fn replace_line(file: &Path, n: usize, line: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let mut all: Vec<String> = text.lines().map(str::to_string).collect();
    let old = std::mem::replace(&mut all[n - 1], line.to_string());
    std::fs::write(file, all.join("\n") + "\n").unwrap();
    old
}

fn line_of(file: &Path, n: usize) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .nth(n - 1)
        .unwrap()
        .to_string()
}

/// The file of `files` holding seq `seq`, and its line number there.
fn find_seq(files: &[PathBuf], seq: u64) -> (PathBuf, usize) {
    for file in files {
        for (i, line) in std::fs::read_to_string(file).unwrap().lines().enumerate() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            if record["seq"] == seq {
                return (file.clone(), i + 1);
            }
        }
    }
    panic!("no seq {seq}");
}

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    key: PathBuf,
    /// Each replica's files, by replica.
    files: Vec<Vec<PathBuf>>,
}

impl Cluster {
    /// Replicas `tollgate-I`, each run as `runs[I]` says.
    async fn run(runs: &[Run]) -> Self {
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("audit.key");
        let mut dirs = vec![keys];
        let mut files = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let name = format!("tollgate-{i}");
            files.push(replica(dir.path(), &key, Some(&name), *run).await);
            dirs.push(dir);
        }
        Self {
            _dirs: dirs,
            key,
            files,
        }
    }

    /// Every file, replicas interleaved and newest first (any order must do).
    fn all_files(&self) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = self.files.iter().flatten().cloned().collect();
        all.reverse();
        all
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_verify_each_on_its_own_with_a_line_each_and_the_total() {
    let cluster = Cluster::run(&[
        Run {
            rotate_bytes: Some(1500),
            ..requests(30)
        },
        requests(12),
    ])
    .await;
    assert!(
        cluster.files[0].len() > 2,
        "tollgate-0 rotated: {:?}",
        cluster.files[0]
    );
    let (n0, n1) = (lines(&cluster.files[0]), lines(&cluster.files[1]));
    let (code, out, err) = verify(&cluster.all_files(), &cluster.key);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "stream tollgate-0: {n0} records ok\nstream tollgate-1: {n1} records ok\n{} records ok\n",
            n0 + n1
        )
    );
    assert_eq!(err, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_before_its_shutdown_checkpoint_is_unconfirmed_and_the_others_ok() {
    let cluster = Cluster::run(&[
        requests(4),
        requests(6),
        Run {
            cut: true,
            ..requests(3)
        },
    ])
    .await;
    let (n0, n1, n2) = (
        lines(&cluster.files[0]),
        lines(&cluster.files[1]),
        lines(&cluster.files[2]),
    );
    let (code, out, err) = verify(&cluster.all_files(), &cluster.key);
    assert_eq!(code, 0, "unconfirmed is not a failure: {err}");
    assert_eq!(
        out,
        format!(
            "stream tollgate-0: {n0} records ok\n\
             stream tollgate-1: {n1} records ok\n\
             stream tollgate-2: {n2} records ok, 3 after the last checkpoint unconfirmed: the log may have been cut\n\
             {} records ok, 3 after the last checkpoint unconfirmed: the log may have been cut\n",
            n0 + n1 + n2
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_moved_from_one_streams_file_into_anothers_fails_naming_both() {
    let cluster = Cluster::run(&[requests(5), requests(5)]).await;
    // tollgate-0's seq 4 (a request) takes the place of tollgate-1's seq 4.
    let (from, at_from) = find_seq(&cluster.files[0], 4);
    let (into, at_into) = find_seq(&cluster.files[1], 4);
    let moved = line_of(&from, at_from);
    assert!(moved.contains(r#""type":"request""#));
    replace_line(&into, at_into, &moved);
    let text = std::fs::read_to_string(&from).unwrap();
    let without: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| i + 1 != at_from)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&from, without.join("\n") + "\n").unwrap();

    let (code, out, err) = verify(&cluster.all_files(), &cluster.key);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "tollgate: audit verify: stream tollgate-0: {}:{at_from}: seq 5: seq gap",
            from.display()
        )),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "tollgate: audit verify: stream tollgate-1: {}:{at_into}: seq 4: broken chain",
            into.display()
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_record_fails_its_stream_naming_it_and_the_file() {
    let cluster = Cluster::run(&[requests(5), requests(5)]).await;
    let (file, at) = find_seq(&cluster.files[1], 3);
    let genuine = line_of(&file, at);
    let edited = genuine.replace(r#""status":403"#, r#""status":200"#);
    assert_ne!(edited, genuine);
    replace_line(&file, at, &edited);
    let n0 = lines(&cluster.files[0]);
    let (code, out, err) = verify(&cluster.all_files(), &cluster.key);
    assert_eq!(code, 1);
    assert_eq!(out, format!("stream tollgate-0: {n0} records ok\n"));
    assert_eq!(
        err,
        format!(
            "tollgate: audit verify: stream tollgate-1: {}:{at}: seq 3: bad signature: the \
             record was altered or signed by another key\n",
            file.display()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_on_a_fresh_state_dir_under_the_same_name_fails_clearly() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit.key");
    let (before, after) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Run {
        cut: true,
        ..requests(3)
    };
    let first = replica(before.path(), &key, Some("tollgate-1"), first).await;
    let second = requests(2);
    let second = replica(after.path(), &key, Some("tollgate-1"), second).await;
    let files: Vec<PathBuf> = first.iter().chain(&second).cloned().collect();
    let (code, out, err) = verify(&files, &key);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("tollgate: audit verify: stream tollgate-1: ")
            && err.contains("duplicate seq")
            && err.contains("two chains carry this stream's name"),
        "{err}"
    );
    // Each chain on its own verifies.
    for chain in [&first, &second] {
        let (code, _, err) = verify(chain, &key);
        assert_eq!(code, 0, "{chain:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_process_log_reads_exactly_as_before_streams() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let run = requests(5);
    let files = replica(dir.path(), &key, None, run).await;
    for line in std::fs::read_to_string(&files[0]).unwrap().lines() {
        assert!(!line.contains(r#""stream""#), "{line}");
    }
    let (code, out, err) = verify(&files, &key);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "7 records ok\n", "")
    );
    let (file, at) = find_seq(&files, 3);
    replace_line(
        &file,
        at,
        &line_of(&file, at).replace("/repos/1", "/repos/x"),
    );
    let (code, out, err) = verify(&files, &key);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        format!(
            "tollgate: audit verify: {}:{at}: seq 3: bad signature: the record was altered or \
             signed by another key\n",
            file.display()
        )
    );
}
