//! Properties of `verify` over logs sealed by the real [`Sealer`] in both signing
//! modes: a sealed log verifies with the right counts; removing, swapping or
//! editing one line fails naming it; cutting the tail only recounts the
//! unconfirmed records; re-serialising a line (as a SIEM may) changes nothing.

use super::*;
use crate::audit::chain::{ChainHead, Sealer};
use crate::audit::event::RequestRecord;
use crate::audit::key::SigningKey;
use crate::audit::writer::request_object;
use proptest::prelude::*;
use serde_json::Map;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

const NAME: &str = "audit.jsonl";

fn key() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(SigningKey::from_seed(&[7; 32]).unwrap()))
        .clone()
}

/// One record of a generated log, after the start checkpoint.
#[derive(Debug, Clone)]
enum Entry {
    Request {
        path: String,
        query: Option<String>,
        status: u16,
        deny: bool,
        millis: u64,
    },
    Checkpoint,
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        5 => (".{0,16}", proptest::option::of(".{0,8}"), 0u16..600, any::<bool>(), 0u64..1 << 42)
            .prop_map(|(path, query, status, deny, millis)| Entry::Request { path, query, status, deny, millis }),
        1 => Just(Entry::Checkpoint),
    ]
}

/// A log of a start checkpoint and `entries`, sealed in `sign: record` mode
/// (`record_mode`) or `sign: checkpoint`, one line per record, no newlines.
fn seal(entries: &[Entry], record_mode: bool) -> Vec<String> {
    let mut sealer = Sealer::new(key(), ChainHead::genesis());
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
    let mut lines = vec![sealer.seal(checkpoint("start"), true).unwrap()];
    for e in entries {
        lines.push(match e {
            Entry::Checkpoint => sealer.seal(checkpoint("interval"), true).unwrap(),
            Entry::Request {
                path,
                query,
                status,
                deny,
                millis,
            } => {
                let mut r = RequestRecord::new(([10, 0, 0, 2], 5000).into(), "GET", "https");
                r.at = UNIX_EPOCH + Duration::from_millis(*millis);
                r.task = Some("t".into());
                r.host = "api.test".into();
                r.port = 443;
                r.path = path.clone();
                r.query = query.clone();
                r.status = *status;
                r.decision = if *deny {
                    crate::audit::Decision::Deny
                } else {
                    crate::audit::Decision::Allow
                };
                sealer.seal(request_object(&r), record_mode).unwrap()
            }
        });
    }
    lines
        .into_iter()
        .map(|r| String::from_utf8(r.line.to_vec()).unwrap())
        .collect()
}

fn text(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| [l.as_bytes(), b"\n"])
        .flatten()
        .copied()
        .collect()
}

fn verify(lines: &[String]) -> Result<VerifyReport, VerifyFailure> {
    verify_logs(&[(NAME, &text(lines))], &key().verifier())
}

fn is_checkpoint(line: &str) -> bool {
    line.contains(r#""type":"checkpoint""#)
}

/// Records after the last checkpoint.
fn after_last_checkpoint(lines: &[String]) -> u64 {
    lines.iter().rev().take_while(|l| !is_checkpoint(l)).count() as u64
}

/// Whether the failure names `NAME:line`, as its location or in its message.
fn names_line(failure: &VerifyFailure, line: usize) -> bool {
    let wanted = format!("{NAME}:{line}");
    let shown = failure.to_string();
    failure.location == wanted
        || shown.match_indices(&wanted).any(|(at, _)| {
            !shown[at + wanted.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
}

/// A log and a mode: at least `min` records besides the start checkpoint.
fn log(min: usize) -> impl Strategy<Value = (Vec<Entry>, bool)> {
    (proptest::collection::vec(entry(), min..12), any::<bool>())
}

/// `value` changed into something else of its kind.
fn altered(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::from(format!("{s}x")),
        Value::Number(n) => match n.as_u64() {
            Some(n) => Value::from(n.wrapping_add(1)),
            None => Value::from(0),
        },
        Value::Null => Value::from("x"),
        Value::Bool(b) => Value::from(!b),
        Value::Array(items) => {
            let mut items = items.clone();
            items.push(Value::from("x"));
            Value::from(items)
        }
        Value::Object(map) => {
            let mut map = map.clone();
            map.insert("x".into(), Value::Null);
            Value::from(map)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_sealed_log_verifies_with_every_record_counted((entries, record_mode) in log(0), split in any::<prop::sample::Index>(), reverse in any::<bool>()) {
        let lines = seal(&entries, record_mode);
        let n = lines.len() as u64;
        let m = after_last_checkpoint(&lines);
        let report = verify(&lines).unwrap();
        prop_assert_eq!(&report, &VerifyReport { records: n, unconfirmed: m, last_seq: n });
        let shown = report.to_string();
        if m == 0 {
            prop_assert_eq!(shown, format!("{n} records ok"));
        } else {
            prop_assert_eq!(shown, format!("{n} records ok, {m} after the last checkpoint unconfirmed: the log may have been cut"));
        }
        // The same log in two files, in either order.
        let at = split.index(lines.len() + 1);
        let (a, b) = (text(&lines[..at]), text(&lines[at..]));
        let mut files = vec![("a.jsonl", a.as_slice()), ("b.jsonl", b.as_slice())];
        if reverse {
            files.reverse();
        }
        prop_assert_eq!(verify_logs(&files, &key().verifier()).unwrap(), report);
    }

    #[test]
    fn removing_a_line_fails_where_it_was((entries, record_mode) in log(1), which in any::<prop::sample::Index>()) {
        let mut lines = seal(&entries, record_mode);
        // Not the last line: that is cutting the tail.
        let i = which.index(lines.len() - 1);
        lines.remove(i);
        let failure = verify(&lines).unwrap_err();
        prop_assert_eq!(&failure.location, &format!("{NAME}:{}", i + 1), "{}", failure);
    }

    #[test]
    fn swapping_two_lines_fails_naming_one((entries, record_mode) in log(1), x in any::<prop::sample::Index>(), y in any::<prop::sample::Index>()) {
        let mut lines = seal(&entries, record_mode);
        let (i, j) = (x.index(lines.len()), y.index(lines.len()));
        prop_assume!(i != j);
        let (i, j) = (i.min(j), i.max(j));
        lines.swap(i, j);
        let failure = verify(&lines).unwrap_err();
        prop_assert!(failure.problem.contains("out of order"), "{}", failure);
        prop_assert!(names_line(&failure, i + 1) || names_line(&failure, j + 1), "{}", failure);
    }

    #[test]
    fn editing_a_field_fails_naming_the_line((entries, record_mode) in log(0), which in any::<prop::sample::Index>(), field in any::<prop::sample::Index>()) {
        let mut lines = seal(&entries, record_mode);
        let i = which.index(lines.len());
        let mut value: Value = serde_json::from_str(&lines[i]).unwrap();
        let object = value.as_object_mut().unwrap();
        let name = object.keys().nth(field.index(object.len())).unwrap().clone();
        let new = altered(&object[&name]);
        object.insert(name.clone(), new);
        lines[i] = value.to_string();
        let last_and_unsigned = i + 1 == lines.len() && !lines[i].contains(r#""sig":"#);
        match verify(&lines) {
            Err(failure) => prop_assert!(names_line(&failure, i + 1), "{name}: {failure}"),
            // Nothing after an unsigned last record vouches for it: the one edit
            // that cannot be caught, and it is reported as unconfirmed.
            Ok(report) => {
                prop_assert!(last_and_unsigned, "editing {} of line {} went unnoticed", name, i + 1);
                prop_assert!(report.unconfirmed >= 1);
                prop_assert_eq!(report.records, lines.len() as u64);
            }
        }
    }

    #[test]
    fn cutting_the_tail_only_recounts_the_unconfirmed((entries, record_mode) in log(1), keep in any::<prop::sample::Index>()) {
        let lines = seal(&entries, record_mode);
        let kept = &lines[..1 + keep.index(lines.len() - 1)];
        let report = verify(kept).unwrap();
        prop_assert_eq!(report, VerifyReport {
            records: kept.len() as u64,
            unconfirmed: after_last_checkpoint(kept),
            last_seq: kept.len() as u64,
        });
        // A cut inside a line is a torn line, not a shorter log.
        let mut torn = text(kept);
        torn.pop();
        let failure = verify_logs(&[(NAME, &torn)], &key().verifier()).unwrap_err();
        prop_assert_eq!(&failure.location, &format!("{NAME}:{}", kept.len()));
        prop_assert!(failure.problem.contains("cut short"), "{}", failure);
    }

    #[test]
    fn re_serialising_a_line_keeps_the_log_valid((entries, record_mode) in log(0), which in any::<prop::sample::Index>()) {
        let mut lines = seal(&entries, record_mode);
        let i = which.index(lines.len());
        let value: Value = serde_json::from_str(&lines[i]).unwrap();
        // Keys in reverse order, with spaces, non-ASCII escaped: what a SIEM may store.
        let fields: Vec<String> = value
            .as_object()
            .unwrap()
            .iter()
            .rev()
            .map(|(k, v)| format!("{} : {}", serde_json::to_string(k).unwrap(), ascii_json(v)))
            .collect();
        lines[i] = format!("{{ {} }}", fields.join(" , "));
        prop_assert_eq!(verify(&lines).unwrap().records, lines.len() as u64);
    }
}

/// JSON with every non-ASCII character as a `\u` escape.
fn ascii_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[test]
fn an_unsigned_request_record_with_a_bad_sig_type_or_an_unknown_type_is_malformed() {
    let lines = seal(
        &[Entry::Request {
            path: "/".into(),
            query: None,
            status: 200,
            deny: false,
            millis: 0,
        }],
        false,
    );
    for (field, value, expected) in [
        ("sig", Value::from(5), "sig is not a string"),
        ("sig", Value::Null, "sig is not a string"),
        ("type", Value::from("note"), "type is neither"),
    ] {
        let mut edited = lines.clone();
        let mut record: Value = serde_json::from_str(&edited[1]).unwrap();
        record[field] = value;
        edited[1] = record.to_string();
        let failure = verify(&edited).unwrap_err();
        assert_eq!(failure.location, format!("{NAME}:2"));
        assert!(failure.problem.contains(expected), "{failure}");
    }
}

#[test]
fn an_empty_log_has_no_records() {
    let failure = verify_logs(&[(NAME, b"")], &key().verifier()).unwrap_err();
    assert_eq!(failure.to_string(), format!("{NAME}: no records"));
    let failure = verify_logs(&[], &key().verifier()).unwrap_err();
    assert_eq!(failure.problem, "no records");
}

#[test]
fn in_record_mode_a_record_stripped_of_its_signature_fails() {
    let request = Entry::Request {
        path: "/a".into(),
        query: None,
        status: 403,
        deny: true,
        millis: 0,
    };
    let lines = seal(&[request.clone(), request], true);
    // The last record, stripped of its signature and then rewritten: no record
    // after it chains, so only the mode of the checkpoint before it catches this.
    let mut forged: Value = serde_json::from_str(&lines[2]).unwrap();
    forged.as_object_mut().unwrap().remove("sig");
    forged["status"] = 200.into();
    forged["decision"] = "allow".into();
    let mut edited = lines.clone();
    edited[2] = forged.to_string();
    let failure = verify(&edited).unwrap_err();
    assert_eq!(failure.location, format!("{NAME}:3"), "{failure}");
    assert!(
        failure.problem.contains("signature was removed"),
        "{failure}"
    );
    assert!(names_line(&failure, 1), "names the checkpoint: {failure}");
    // In checkpoint mode the same record carries no signature to strip: the edit
    // stands, and verify says the tail is unconfirmed.
    let lines = seal(
        &[Entry::Request {
            path: "/a".into(),
            query: None,
            status: 403,
            deny: true,
            millis: 0,
        }],
        false,
    );
    let mut forged: Value = serde_json::from_str(&lines[1]).unwrap();
    forged["status"] = 200.into();
    let report = verify(&[lines[0].clone(), forged.to_string()]).unwrap();
    assert_eq!(report.unconfirmed, 1);
}

#[test]
fn a_key_given_twice_is_malformed_even_when_the_last_value_is_genuine() {
    let lines = seal(
        &[Entry::Request {
            path: "/admin".into(),
            query: None,
            status: 403,
            deny: true,
            millis: 0,
        }],
        true,
    );
    assert!(lines[1].starts_with('{') && lines[1].contains(r#""decision":"deny""#));
    for forged in [
        // Readers that keep the first value would see an allow.
        format!(r#"{{"decision":"allow",{}"#, &lines[1][1..]),
        lines[1].replacen(
            r#""client":"#,
            r#""approval":{"by":"a","by":"b"},"client":"#,
            1,
        ),
    ] {
        let failure = verify(&[lines[0].clone(), forged]).unwrap_err();
        assert_eq!(failure.location, format!("{NAME}:2"), "{failure}");
        assert!(failure.problem.contains("duplicate key"), "{failure}");
    }
    // Nested values still parse as serde_json does.
    let value =
        parse_strict(br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":18446744073709551615}"#)
            .unwrap();
    assert_eq!(
        value,
        serde_json::json!({"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":18446744073709551615_u64})
    );
}
