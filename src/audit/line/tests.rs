//! The direct line is byte for byte the line of the `Value` map path, for any
//! record, in both signing modes; what it chains verifies; and the stack hex and
//! timestamp match their `fmt` versions.

use super::*;
use crate::audit::chain::{canonical, ChainHead, Sealer};
use crate::audit::verify::{parse_log, verify_logs};
use crate::audit::Decision;
use crate::text::{hex, hex_into};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn key() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(SigningKey::from_seed(&[0x42; 32]).unwrap()))
        .clone()
}

/// Characters JSON escapes or that canonicalizers get wrong, among any others.
fn text() -> impl Strategy<Value = String> {
    let tricky = prop::sample::select(vec![
        '"', '\\', '/', '\0', '\u{1}', '\u{8}', '\u{b}', '\u{c}', '\n', '\r', '\t', '\u{1f}',
        '\u{7f}', '\u{80}', '\u{2028}', '\u{2029}', '\u{feff}', '\u{fffd}', '\u{ffff}', 'é', '😀',
    ]);
    vec(prop_oneof![3 => any::<char>(), 2 => tricky], 0..10).prop_map(String::from_iter)
}

/// `&'static str` fields take any text too.
fn leaked() -> impl Strategy<Value = &'static str> {
    text().prop_map(|s| &*Box::leak(s.into_boxed_str()))
}

const DECISIONS: [Decision; 6] = Decision::ALL;

fn outcome() -> impl Strategy<Value = ApprovalOutcome> {
    prop::sample::select(vec![
        ApprovalOutcome::Approved,
        ApprovalOutcome::Denied,
        ApprovalOutcome::Timeout,
        ApprovalOutcome::TaskEnded,
        ApprovalOutcome::Withdrawn,
        ApprovalOutcome::Shutdown,
        ApprovalOutcome::PolicyChanged,
        ApprovalOutcome::LeaseExpired,
    ])
}

fn approval() -> impl Strategy<Value = ApprovalInfo> {
    let text = || option::of(text());
    (text(), outcome(), text(), text(), text()).prop_map(|(id, outcome, by, reason, grant)| {
        ApprovalInfo {
            id,
            outcome,
            by,
            reason,
            grant,
        }
    })
}

/// Any time: within `time`'s years, before the epoch, or far beyond year 9999.
fn at() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        4 => any::<u64>().prop_map(|n| UNIX_EPOCH + Duration::from_nanos(n)),
        1 => (0u64..1 << 40).prop_map(|ms| UNIX_EPOCH - Duration::from_millis(ms)),
        1 => any::<u64>().prop_map(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)).unwrap_or(UNIX_EPOCH)),
    ]
}

/// Integers below 2^53 when `small` (what a verifier's canonicalizer keeps
/// exact), any `u64` otherwise.
fn int(small: bool) -> BoxedStrategy<u64> {
    if small {
        (0u64..1 << 53).boxed()
    } else {
        prop_oneof![0u64..1 << 53, any::<u64>()].boxed()
    }
}

fn record(small: bool) -> impl Strategy<Value = RequestRecord> {
    let who = (
        at(),
        option::of(text()),
        option::of(text()),
        text(),
        text(),
        leaked(),
        text(),
        any::<u16>(),
    );
    let what = (
        text(),
        option::of(text()),
        0..DECISIONS.len(),
        option::of(text()),
        option::of(leaked()),
        vec(text(), 0..4),
        any::<u16>(),
    );
    let counts = (int(small), int(small), int(small), option::of(approval()));
    let details = (
        option::of((option::of(text()), option::of(text()))),
        option::of((0..3usize, option::of(text()))),
        option::of((
            option::of(text()),
            option::of(int(small)),
            option::of(int(small)),
            any::<bool>(),
        )),
        option::of(leaked()),
    );
    (who, what, counts, details).prop_map(
        |(
            (at, task, policy, client, method, scheme, host, port),
            (path, query, decision, rule, reason, secrets, status),
            (bytes_up, bytes_down, duration_ms, approval),
            (rpc, graphql, llm, budget),
        )| RequestRecord {
            rpc: rpc.map(|(method, tool)| crate::audit::event::RpcInfo { method, tool }),
            graphql: graphql.map(|(kind, name)| crate::audit::event::GraphQlInfo {
                operation: ["query", "mutation", "subscription"][kind],
                name,
            }),
            llm: llm.map(|(model, input_tokens, output_tokens, missing)| {
                crate::audit::event::LlmInfo {
                    model,
                    input_tokens,
                    output_tokens,
                    usage: missing.then_some("missing"),
                }
            }),
            budget,
            at,
            task,
            policy,
            client,
            method,
            scheme,
            host,
            port,
            path,
            query,
            decision: DECISIONS[decision],
            rule,
            reason,
            secrets,
            status,
            bytes_up,
            bytes_down,
            duration_ms,
            approval,
        },
    )
}

fn head() -> impl Strategy<Value = ChainHead> {
    (1u64..1 << 53, any::<[u8; 32]>()).prop_map(|(next_seq, prev)| ChainHead { next_seq, prev })
}

fn checkpoint(event: &str, record_mode: bool) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("v".into(), 1.into());
    map.insert("type".into(), "checkpoint".into());
    map.insert("ts".into(), "2026-11-23T05:00:00.000Z".into());
    map.insert("event".into(), event.into());
    let sign = if record_mode { "record" } else { "checkpoint" };
    map.insert("sign".into(), sign.into());
    map
}

fn shown(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// The `{:02x}` hex this module's fast one replaced.
fn fmt_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `format!` timestamp this module's stack one replaced.
fn fmt_millis(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let nanos = i128::from(since.as_secs()) * 1_000_000_000 + i128::from(since.subsec_nanos());
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Same bytes, seq and head as `seal(request_object(..))`, which is what
    /// the writer sealed before; and, with integers below 2^53, what the general
    /// RFC 8785 canonicalizer makes of the line.
    #[test]
    fn the_direct_line_is_the_map_line(
        records in vec(record(false), 1..5),
        record_mode in any::<bool>(),
        head in head(),
    ) {
        prop_assert!(crate::audit::chain::plain_serde_is_canonical());
        let mut old = Sealer::new(key(), head);
        let mut new = Sealer::new(key(), head);
        for record in &records {
            let want = old.seal(request_object(record), record_mode).unwrap();
            let got = new.seal_request(record, record_mode).unwrap();
            prop_assert_eq!(got.seq, want.seq);
            prop_assert_eq!(shown(&got.line), shown(&want.line));
            prop_assert_eq!(new.head(), old.head());
            let tokens = record
                .llm
                .iter()
                .flat_map(|l| [l.input_tokens, l.output_tokens])
                .flatten();
            let small = [record.bytes_up, record.bytes_down, record.duration_ms]
                .into_iter()
                .chain(tokens)
                .all(|n| n < 1 << 53);
            if small {
                let value: Value = serde_json::from_slice(&got.line).unwrap();
                prop_assert_eq!(shown(&canonical(&value).unwrap()), shown(&got.line));
            }
        }
    }

    /// A log of direct lines between two checkpoints parses and verifies, in
    /// both signing modes.
    #[test]
    fn a_log_of_direct_lines_verifies(
        records in vec(record(true), 1..5),
        record_mode in any::<bool>(),
    ) {
        let mut sealer = Sealer::new(key(), ChainHead::genesis());
        let mut lines = vec![sealer.seal(checkpoint("start", record_mode), true).unwrap()];
        for record in &records {
            lines.push(sealer.seal_request(record, record_mode).unwrap());
        }
        lines.push(sealer.seal(checkpoint("shutdown", record_mode), true).unwrap());
        let log: Vec<u8> = lines
            .iter()
            .flat_map(|r| [&r.line[..], b"\n"])
            .flatten()
            .copied()
            .collect();
        let parsed = parse_log(&log, "audit.jsonl").unwrap();
        prop_assert_eq!(parsed.len(), records.len() + 2);
        let report = verify_logs(&[("audit.jsonl", &log)], &key().verifier());
        let report = report.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(report.records, records.len() as u64 + 2);
        prop_assert_eq!(report.unconfirmed, 0);
        prop_assert_eq!(report.last_seq, records.len() as u64 + 2);
    }

    #[test]
    fn the_stack_timestamp_is_the_formatted_one(at in at()) {
        let millis = Millis::new(at);
        prop_assert_eq!(millis.as_str(), fmt_millis(at));
    }

    #[test]
    fn the_fast_hex_is_the_formatted_one(bytes in vec(any::<u8>(), 0..70), room in 0usize..150) {
        prop_assert_eq!(hex(&bytes), fmt_hex(&bytes));
        let mut out = vec![b'?'; room];
        let fits = (room / 2).min(bytes.len());
        prop_assert_eq!(hex_into(&bytes, &mut out), fmt_hex(&bytes[..fits]));
    }
}

#[test]
fn a_signed_line_has_its_sig_between_seq_and_status() {
    let mut record = RequestRecord::new(([10, 0, 0, 2], 5000).into(), "GET", "https");
    record.at = UNIX_EPOCH + Duration::from_millis(1_795_410_000_123);
    record.approval = Some(ApprovalInfo {
        id: Some("h1".into()),
        outcome: ApprovalOutcome::TaskEnded,
        by: None,
        reason: None,
        grant: None,
    });
    let mut sealer = Sealer::new(key(), ChainHead::genesis());
    let line = shown(&sealer.seal_request(&record, true).unwrap().line);
    let prefix = r#"{"approval":{"by":null,"grant":null,"id":"h1","outcome":"task_ended","reason":null},"bytes_down":0,"bytes_up":0,"client":"10.0.0.2:5000","decision":"deny","duration_ms":0,"host":"","key_id":""#;
    assert!(line.starts_with(prefix), "{line}");
    let tail =
        r#"","status":0,"task":null,"ts":"2026-11-23T05:00:00.123Z","type":"request","v":1}"#;
    assert!(line.ends_with(tail), "{line}");
    let seq = line.find(r#","seq":1,"sig":""#).unwrap();
    assert!(seq < line.find(r#","status":0"#).unwrap());
}

#[test]
fn timestamps_of_the_edges() {
    let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
    assert_eq!(Millis::new(at(0)).as_str(), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        Millis::new(at(253_402_300_799_999)).as_str(),
        "9999-12-31T23:59:59.999Z"
    );
    assert_eq!(
        Millis::new(at(253_402_300_800_000)).as_str(),
        "1970-01-01T00:00:00.000Z"
    );
    let before = UNIX_EPOCH - Duration::from_millis(1);
    assert_eq!(Millis::new(before).as_str(), "1970-01-01T00:00:00.000Z");
}
