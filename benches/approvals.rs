//! Criterion benches of approval holds: what one hold costs the proxy besides
//! the wait (register, answer, wake), what listing costs with many holds
//! pending, and how fast a held body goes to the spool and back.

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented pub fn"
)]
#![expect(
    clippy::unwrap_used,
    reason = "a failed setup stops the bench with its message"
)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::{BodyExt, Full};
use std::hint::black_box;
use std::time::Duration;
use tollgate::approvals::spool::{
    HeldBody, SpoolBudget, MAX_HELD_BODY, MAX_SPOOLED, MAX_SPOOLED_PER_TASK,
};
use tollgate::approvals::{Answer, Approvals, HoldRequest, RequestSummary};

fn request(task: usize) -> HoldRequest {
    HoldRequest {
        summary: RequestSummary {
            task: format!("t-{task:016x}"),
            policy: "github-agent".into(),
            rule: "merge needs a person".into(),
            method: "PUT".into(),
            scheme: "https".into(),
            host: "api.github.com".into(),
            port: 443,
            path: "/repos/acme/widgets/pulls/412/merge".into(),
            query: Some("merge_method=squash".into()),
            body_bytes: 33,
            content_type: Some("application/json".into()),
            budget: None,
        },
        rule_key: "0123456789abcdef0123456789abcdef".into(),
        headers: vec![("authorization".into(), "Bearer __GITHUB_TOKEN__".into())],
        body_sha256: Some("00".repeat(32)),
        body_preview: Bytes::from_static(b"{\"commit_title\":\"release 2.4\"}"),
        timeout: Duration::from_secs(300),
    }
}

fn holds(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let approvals = Approvals::new(8, std::env::temp_dir(), None);
    c.bench_function("approvals/hold, approve, wake", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let seat = approvals.seat("t-0000000000000001").unwrap();
                let mut ticket = approvals.hold(seat, request(1)).unwrap();
                let id = ticket.id().to_string();
                approvals.approve(&id, Answer::default()).unwrap();
                black_box(ticket.verdict().await)
            })
        })
    });

    // 1000 tasks with a hold each: what GET /v1/approvals costs.
    let many = Approvals::new(8, std::env::temp_dir(), None);
    let _tickets: Vec<_> = (0..1000)
        .map(|t| {
            let request = request(t);
            let seat = many.seat(&request.summary.task).unwrap();
            many.hold(seat, request).unwrap()
        })
        .collect();
    c.bench_function("approvals/list 1000 pending", |b| {
        b.iter(|| black_box(serde_json::to_vec(&many.pending()).unwrap()))
    });
    // A request under a live --for grant skips the hold; this is its lookup.
    let granted = Approvals::new(8, std::env::temp_dir(), None);
    let seat = granted.seat("t-0000000000000001").unwrap();
    let ticket = granted.hold(seat, request(1)).unwrap();
    let id = ticket.id().to_string();
    granted
        .approve(
            &id,
            Answer {
                grant_for: Some("1h".into()),
                ..Answer::default()
            },
        )
        .unwrap();
    c.bench_function("approvals/grant lookup", |b| {
        b.iter(|| {
            black_box(granted.granted("t-0000000000000001", "github-agent", "merge needs a person"))
        })
    });
}

fn spool(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let budget = SpoolBudget::new(MAX_SPOOLED, MAX_SPOOLED_PER_TASK);
    let size = 16 * 1024 * 1024;
    let data = Bytes::from(vec![7u8; size]);
    let mut group = c.benchmark_group("approvals/spool");
    group.throughput(Throughput::Bytes(size as u64));
    group.sample_size(20);
    group.bench_function("16 MiB in and back out", |b| {
        b.iter(|| {
            runtime.block_on(async {
                // Frames of 16 KiB, as a TLS client delivers them.
                let frames = futures_util::stream::iter(
                    data.chunks(16 * 1024)
                        .map(|c| {
                            Ok::<_, std::convert::Infallible>(http_body::Frame::data(
                                data.slice_ref(c),
                            ))
                        })
                        .collect::<Vec<_>>(),
                );
                let body = http_body_util::StreamBody::new(frames);
                let held = HeldBody::read(body, dir.path(), MAX_HELD_BODY, &budget, "t")
                    .await
                    .unwrap();
                let back = held.into_body().await.unwrap().collect().await.unwrap();
                black_box(back.to_bytes().len())
            })
        })
    });
    group.bench_function("16 KiB (memory)", |b| {
        let small = data.slice(0..16 * 1024);
        b.iter(|| {
            runtime.block_on(async {
                let held = HeldBody::read(
                    Full::new(small.clone()),
                    dir.path(),
                    MAX_HELD_BODY,
                    &budget,
                    "t",
                )
                .await
                .unwrap();
                black_box(held.len())
            })
        })
    });
    group.finish();
}

criterion_group!(benches, holds, spool);
criterion_main!(benches);
