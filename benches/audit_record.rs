//! Criterion benches: the cost of one audit record. `seal request` is what the
//! writer thread spends per record (RFC 8785 canonical line, SHA-256 chain, and
//! the ed25519 signature in `sign: record` mode): `direct line` is what the writer
//! does, `Map path` the general path through a `serde_json::Value` map that it
//! falls back to (and took before). `enqueue` is what the request
//! path spends. `through the writer` is everything, file append included, per
//! record, measured over batches of 10k records.
//!
//! `written` is what a denied request waits for with `Audit::record_written`: hand
//! over, the writer waking, sealing and signing, one `write(2)` of that record, and
//! the answer back, one record at a time (no batching). `process CPU` gives the CPU
//! time of the whole process per record, written one by one or queued in batches.

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented pub fn"
)]
#![expect(
    clippy::unwrap_used,
    reason = "a failed setup stops the bench with its message"
)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate::audit::chain::{ChainHead, Sealer};
use tollgate::audit::key::{ensure_key, SigningKey};
use tollgate::audit::writer::request_object;
use tollgate::audit::{Audit, RequestRecord};
use tollgate::config::{AuditConfig, AuditSink, FileSink, OnFailure, SignMode};

fn sample() -> RequestRecord {
    let mut r = RequestRecord::new("10.200.0.2:51234".parse().unwrap(), "GET", "https");
    r.task = Some("ci-42".into());
    r.policy = Some("github-reader".into());
    r.host = "api.github.com".into();
    r.port = 443;
    r.path = "/repos/acme/widgets/pulls".into();
    r.query = Some("state=open&per_page=50".into());
    r.decision = tollgate::audit::Decision::Allow;
    r.rule = Some("read pulls".into());
    r.secrets = vec!["GITHUB_TOKEN".into()];
    r.status = 200;
    r.bytes_down = 5120;
    r.duration_ms = 12;
    r
}

fn key() -> (tempfile::TempDir, Arc<SigningKey>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.key");
    ensure_key(&path).unwrap();
    let key = Arc::new(SigningKey::load(&path).unwrap());
    (dir, key)
}

fn sealing(c: &mut Criterion) {
    let (_dir, key) = key();
    let record = sample();
    c.bench_function("audit record to JSON object", |b| {
        b.iter(|| black_box(request_object(black_box(&record))))
    });
    let object = serde_json::Value::Object(request_object(&record));
    c.bench_function("audit canonical form (RFC 8785)", |b| {
        b.iter(|| black_box(tollgate::audit::chain::canonical(black_box(&object)).unwrap()))
    });
    c.bench_function("audit ed25519 signature", |b| {
        b.iter(|| black_box(key.sign_b64(black_box(b"{\"a\":1}"))))
    });
    let mut sealer = Sealer::new(key, ChainHead::genesis());
    for (name, sign) in [("record", true), ("checkpoint", false)] {
        c.bench_function(
            &format!("audit seal request, Map path (sign: {name})"),
            |b| {
                b.iter(|| {
                    black_box(
                        sealer
                            .seal(request_object(black_box(&record)), sign)
                            .unwrap(),
                    )
                })
            },
        );
        c.bench_function(
            &format!("audit seal request, direct line (sign: {name})"),
            |b| b.iter(|| black_box(sealer.seal_request(black_box(&record), sign).unwrap())),
        );
    }
}

fn config(dir: &std::path::Path, sign: SignMode) -> AuditConfig {
    AuditConfig {
        key: dir.join("audit.key"),
        sign,
        checkpoint_every: Duration::from_secs(1),
        sinks: vec![AuditSink::File(FileSink {
            path: dir.join("audit/audit.jsonl"),
            rotate_bytes: Some(1 << 40),
        })],
        on_failure: OnFailure::Closed,
        stream: None,
    }
}

fn tls() -> Arc<rustls::ClientConfig> {
    Arc::new(tollgate::tls::upstream_client_config(&[]).unwrap())
}

fn writer(c: &mut Criterion) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let record = sample();
    for (name, sign) in [
        ("record", SignMode::Record),
        ("checkpoint", SignMode::Checkpoint),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::start(&config(dir.path(), sign), dir.path(), tls()).unwrap();
        c.bench_function(&format!("audit enqueue (sign: {name})"), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    audit.record(black_box(record.clone()));
                }
                let spent = started.elapsed();
                // Let the writer catch up outside the measurement, so that it does
                // not compete for the CPU with the next sample.
                while audit.depth() > 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                spent
            })
        });
        c.bench_function(&format!("audit written (sign: {name})"), |b| {
            b.iter(|| rt.block_on(audit.record_written(black_box(record.clone()))))
        });
        audit.shutdown(Duration::from_secs(60));
    }
    let mut group = c.benchmark_group("audit process CPU per record, 2000 records");
    group.throughput(Throughput::Elements(2000));
    group.sample_size(10);
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::start(&config(dir.path(), SignMode::Record), dir.path(), tls()).unwrap();
    group.bench_function("written one by one (sign: record)", |b| {
        b.iter_custom(|iters| {
            let started = process_cpu();
            for _ in 0..iters {
                for _ in 0..2000 {
                    rt.block_on(audit.record_written(record.clone()));
                }
            }
            process_cpu() - started
        })
    });
    group.bench_function("queued (sign: record)", |b| {
        b.iter_custom(|iters| {
            let started = process_cpu();
            for _ in 0..iters {
                for _ in 0..2000 {
                    audit.record(record.clone());
                }
                while audit.depth() > 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            process_cpu() - started
        })
    });
    group.finish();
    audit.shutdown(Duration::from_secs(60));
    let mut group = c.benchmark_group("audit through the writer, 10k records");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(10);
    for (name, sign) in [
        ("record", SignMode::Record),
        ("checkpoint", SignMode::Checkpoint),
    ] {
        group.bench_function(format!("sign: {name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let audit = Audit::start(&config(dir.path(), sign), dir.path(), tls()).unwrap();
                    let started = Instant::now();
                    for _ in 0..10_000 {
                        audit.record(record.clone());
                    }
                    audit.shutdown(Duration::from_secs(60));
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// CPU time of the whole process (every thread) so far.
fn process_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

criterion_group!(benches, sealing, writer);
criterion_main!(benches);
