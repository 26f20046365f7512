//! Criterion bench: what budgets cost a request with no LLM parsing (issue
//! 16's target: ≤ 1 µs): the task's account found, every budget checked, and
//! the request and its bytes charged, among 1000 tasks.

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented pub fn"
)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tollgate::budget::ledger::{Ledger, Limits, LocalLedger, Meter};

fn budgets(c: &mut Criterion) {
    let ledger = LocalLedger::default();
    let tasks: Vec<String> = (0..1000).map(|i| format!("t-{i:04}")).collect();
    for task in &tasks {
        ledger.account(task).charge(Meter::Requests, 1);
    }
    let limits = Limits::none()
        .with(Meter::Requests, 1 << 40)
        .with(Meter::BytesUp, 64 << 20)
        .with(Meter::BytesDown, 4 << 30)
        .with(Meter::LlmTokens, 2_000_000);
    let mut i = 0;
    c.bench_function(
        "budgets: find the account, check every budget, charge a request",
        |b| {
            b.iter(|| {
                i = (i + 1) % tasks.len();
                let account = ledger.account(black_box(&tasks[i]));
                let refused = account.exceeded(&limits, &|_| false);
                account.charge(Meter::Requests, 1);
                account.charge(Meter::BytesUp, 512);
                account.charge(Meter::BytesDown, 4096);
                black_box(refused)
            })
        },
    );
}

criterion_group!(benches, budgets);
criterion_main!(benches);
