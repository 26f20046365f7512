//! Fuzz target `audit_record`: the parser and checker behind `tollgate audit
//! verify`, fed logs as a file (or a SIEM) could hold them.
//!
//! The first byte picks how the rest is used:
//! - even: the bytes are the log itself, as one file, or (when the byte's bit 1 is
//!   set) as two files cut at a point the next two bytes name;
//! - odd: a genuine log sealed with a fixed key (bit 1: `sign: record`, else
//!   `sign: checkpoint`) is edited by the rest, four bytes per edit (what, where,
//!   where, value): set, insert or delete a byte, delete, swap or repeat a line,
//!   cut the log, or split it into two files.
//!
//! Invariants: nothing panics; a log that verifies has one record per line and
//! passes an independent re-check of chain, signatures and counts; and an edited
//! genuine log verifies only if each of its records is, in canonical form, the
//! genuine record of that seq, save an unsigned last record of `sign: checkpoint`,
//! which nothing after it vouches for and which is counted as unconfirmed.

use crate::audit::chain::{canonical, sha256, ChainHead, Sealer, GENESIS};
use crate::audit::event::{ApprovalInfo, Decision, RequestRecord};
use crate::audit::key::{SigningKey, Verifier};
use crate::audit::verify::{parse_log, verify_logs, VerifyReport};
use crate::audit::writer::request_object;
use crate::text::hex;
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    if how & 1 == 0 {
        if how & 2 == 0 {
            check(&[("audit.jsonl", rest)], None);
        } else {
            let at = match rest {
                [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])) % (rest.len() - 1),
                _ => 0,
            };
            let (a, b) = rest.split_at(at);
            check(&[("a.jsonl", a), ("b.jsonl", b)], None);
        }
    } else {
        let genuine = genuine(how & 2 != 0);
        assert!(genuine.is_some(), "the fixed key seals the genuine logs");
        let Some(genuine) = genuine else { return };
        let (first, second) = edit(&genuine.text, rest);
        match second {
            Some(second) => check(&[("a.jsonl", &first), ("b.jsonl", &second)], Some(genuine)),
            None => check(&[("audit.jsonl", &first)], Some(genuine)),
        }
    }
}

/// A log sealed with the fixed key.
struct Genuine {
    /// The log file.
    text: Vec<u8>,
    /// Canonical form of each record, by seq - 1.
    canonical: Vec<Vec<u8>>,
    /// Sealed in `sign: record` mode (every record signed).
    record_mode: bool,
}

/// The fixed key, if a fixed seed makes one (it does).
fn key() -> Option<&'static (Arc<SigningKey>, Verifier)> {
    static KEY: OnceLock<Option<(Arc<SigningKey>, Verifier)>> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = SigningKey::from_seed(&[0x5a; 32]).ok()?;
        let verifier = key.verifier();
        Some((Arc::new(key), verifier))
    })
    .as_ref()
}

fn genuine(record_mode: bool) -> Option<&'static Genuine> {
    static LOGS: OnceLock<Option<[Genuine; 2]>> = OnceLock::new();
    LOGS.get_or_init(|| Some([seal_genuine(false)?, seal_genuine(true)?]))
        .as_ref()
        .map(|logs| &logs[usize::from(record_mode)])
}

/// Start checkpoint, requests of every shape, an interval checkpoint, and requests
/// after it (the tail a cut log loses).
fn seal_genuine(record_mode: bool) -> Option<Genuine> {
    let mut sealer = Sealer::new(key()?.0.clone(), ChainHead::genesis());
    let checkpoint = |event: &str| {
        let mut map = Map::new();
        map.insert("v".into(), 1.into());
        map.insert("type".into(), "checkpoint".into());
        map.insert("ts".into(), "2026-11-23T05:00:00.000Z".into());
        map.insert("event".into(), event.into());
        map.insert(
            "sign".into(),
            if record_mode { "record" } else { "checkpoint" }.into(),
        );
        map
    };
    let request = |i: u64| {
        let mut r = RequestRecord::new(([10, 200, 0, 2], 51234).into(), "GET", "https");
        r.at = UNIX_EPOCH + Duration::from_millis(1_795_410_000_000 + i);
        r.task = Some("ci-42".into());
        r.policy = Some("github-reader".into());
        r.host = "api.github.com".into();
        r.port = 443;
        r.path = ["/repos/acme/x/pulls", "/é/\u{1}/\"q\"", "/admin", "/"][i as usize % 4].into();
        r.query = i.is_multiple_of(2).then(|| "state=open&t=__TOKEN__".into());
        r.decision = [
            Decision::Allow,
            Decision::Deny,
            Decision::Approved,
            Decision::RateLimited,
        ][i as usize % 4];
        r.reason = (r.decision == Decision::Deny).then_some("denied_by_rule");
        r.secrets = vec!["GITHUB_TOKEN".into()];
        r.status = [200, 403, 201, 429][i as usize % 4];
        r.bytes_down = 5120 * i;
        r.approval = (r.decision == Decision::Approved).then(|| ApprovalInfo {
            id: Some("h1".into()),
            outcome: crate::audit::event::ApprovalOutcome::Approved,
            by: Some("ops".into()),
            reason: None,
            grant: None,
        });
        request_object(&r)
    };
    let mut objects = vec![(checkpoint("start"), true)];
    objects.extend((0..4).map(|i| (request(i), record_mode)));
    objects.push((checkpoint("interval"), true));
    objects.extend((4..7).map(|i| (request(i), record_mode)));
    let sealed = objects
        .into_iter()
        .map(|(object, sign)| sealer.seal(object, sign).map(|r| r.line.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let text = sealed
        .iter()
        .flat_map(|l| [&l[..], b"\n"])
        .flatten()
        .copied()
        .collect();
    Some(Genuine {
        text,
        canonical: sealed,
        record_mode,
    })
}

/// Applies the edits `ops` names to `text`: the log, and a second file if split.
fn edit(text: &[u8], ops: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut log = text.to_vec();
    let mut second = None;
    for op in ops.chunks_exact(4) {
        // Repeating a line after the newlines were deleted doubles the log:
        // without a bound, a few dozen edits fill memory (the fuzzer's first
        // "hangs" were that, not the verifier).
        if log.len() > MAX_EDITED_LOG {
            break;
        }
        let at = |len: usize| usize::from(u16::from_be_bytes([op[1], op[2]])) % len.max(1);
        let value = op[3];
        match op[0] % 9 {
            0 if !log.is_empty() => {
                let i = at(log.len());
                log[i] = value;
            }
            1 => {
                let i = at(log.len() + 1);
                log.insert(i, value);
            }
            2 if !log.is_empty() => {
                log.remove(at(log.len()));
            }
            3..=5 => {
                let mut lines: Vec<Vec<u8>> = log
                    .split_inclusive(|b| *b == b'\n')
                    .map(<[u8]>::to_vec)
                    .collect();
                if lines.is_empty() {
                    continue;
                }
                let i = at(lines.len());
                let j = usize::from(value) % lines.len();
                match op[0] % 9 {
                    3 => {
                        lines.remove(i);
                    }
                    4 => lines.swap(i, j),
                    _ => {
                        let copy = lines[i].clone();
                        lines.insert(j, copy);
                    }
                }
                log = lines.concat();
            }
            6 => log.truncate(at(log.len() + 1)),
            7 if second.is_none() => second = Some(log.split_off(at(log.len() + 1))),
            _ => {}
        }
    }
    (log, second)
}

/// Largest log the edits may grow; verify itself is linear in its input.
const MAX_EDITED_LOG: usize = 256 * 1024;

/// Verifies `files` and checks the invariants of whatever it says.
fn check(files: &[(&str, &[u8])], genuine: Option<&Genuine>) {
    let Some((_, verifier)) = key() else { return };
    let mut parsed = 0;
    for (name, bytes) in files {
        if let Ok(lines) = parse_log(bytes, name) {
            assert_eq!(
                lines.len(),
                newlines(bytes),
                "a parsed file has one record per line"
            );
            assert!(lines.windows(2).all(|w| w[0].seq < w[1].seq));
            parsed += 1;
        }
    }
    let Ok(report) = verify_logs(files, verifier) else {
        return;
    };
    assert_eq!(
        parsed,
        files.len(),
        "verify accepted a file parse_log refuses"
    );
    let total: usize = files.iter().map(|(_, bytes)| newlines(bytes)).sum();
    assert_eq!(report.records, total as u64, "one record per line");
    let records = recheck(files, verifier, &report);
    if let Some(genuine) = genuine {
        let n = records.len();
        assert!(n <= genuine.canonical.len(), "a record was added");
        for (i, record) in records.iter().enumerate() {
            let unsigned_last = i + 1 == n && record.get("sig").is_none();
            if unsigned_last {
                assert!(
                    !genuine.record_mode,
                    "a record stripped of its signature verified"
                );
                assert!(report.unconfirmed >= 1);
                continue;
            }
            let bytes = canonical(record).ok();
            assert!(bytes.is_some(), "a verified record has a canonical form");
            assert_eq!(
                bytes.unwrap_or_default(),
                genuine.canonical[i],
                "seq {} verified but is not the genuine record",
                i + 1
            );
        }
    }
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// Re-checks a verified log the plain way: every line a record, seq 1..N, each
/// `prev` the hash of the record before, every `sig` valid, every checkpoint
/// signed, and the count after the last checkpoint. Returns the records by seq.
fn recheck(files: &[(&str, &[u8])], verifier: &Verifier, report: &VerifyReport) -> Vec<Value> {
    let parsed: Result<Vec<Value>, _> = files
        .iter()
        .flat_map(|(_, bytes)| bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()))
        .map(serde_json::from_slice)
        .collect();
    assert!(parsed.is_ok(), "verify accepted a line that is not JSON");
    let mut records = parsed.unwrap_or_default();
    records.sort_by_key(|r| r.get("seq").and_then(Value::as_u64));
    let mut prev = GENESIS;
    let mut after_checkpoint = 0;
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["seq"].as_u64(), Some(i as u64 + 1));
        assert_eq!(record["prev"].as_str(), Some(hex(&prev).as_str()));
        assert_eq!(record["key_id"].as_str(), Some(verifier.key_id()));
        let checkpoint = record["type"] == "checkpoint";
        match record.get("sig") {
            Some(sig) => {
                let mut unsigned = record.clone();
                if let Some(map) = unsigned.as_object_mut() {
                    map.remove("sig");
                }
                let message = canonical(&unsigned).unwrap_or_default();
                assert!(verifier.verify(&message, sig.as_str().unwrap_or_default()));
            }
            None => assert!(!checkpoint, "an unsigned checkpoint verified"),
        }
        after_checkpoint = if checkpoint { 0 } else { after_checkpoint + 1 };
        let bytes = canonical(record).ok();
        assert!(bytes.is_some(), "a verified record has a canonical form");
        prev = sha256(&bytes.unwrap_or_default());
    }
    assert_eq!(report.unconfirmed, after_checkpoint);
    assert_eq!(report.last_seq, records.len() as u64);
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_genuine_logs_verify_and_the_target_takes_them() {
        for record_mode in [false, true] {
            let genuine = genuine(record_mode).unwrap();
            let report = verify_logs(&[("g", &genuine.text)], &key().unwrap().1).unwrap();
            assert_eq!(report.records, 9);
            assert_eq!(report.unconfirmed, 3);
            let mut raw = vec![0u8];
            raw.extend_from_slice(&genuine.text);
            run(&raw);
            // Cut after the interval checkpoint, then split in two files.
            let mut ops = vec![1 | u8::from(record_mode) << 1];
            let cut = genuine.canonical[..6]
                .iter()
                .map(|l| l.len() + 1)
                .sum::<usize>();
            let cut = u16::try_from(cut).unwrap().to_be_bytes();
            ops.extend_from_slice(&[6, cut[0], cut[1], 0, 7, 0, 100, 0]);
            run(&ops);
        }
        run(&[]);
        run(&[2, 0]);
        run(&[3, 4, 0, 1, 2, 3, 0, 0, 0]);
    }
}
