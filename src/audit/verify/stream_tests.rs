//! `verify` over files of several streams (cluster replicas): each stream is
//! checked on its own and reported on its own line; a record moved between
//! streams, an edited one, checkpoints that disagree about their stream, or two
//! chains under one name fail naming the stream and the file; a single unnamed
//! stream reads exactly as before streams existed.

use super::*;
use crate::audit::chain::{ChainHead, Sealer};
use crate::audit::event::RequestRecord;
use crate::audit::key::SigningKey;
use crate::audit::writer::request_object;
use serde_json::Map;
use std::sync::{Arc, OnceLock};

fn key() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(SigningKey::from_seed(&[9; 32]).unwrap()))
        .clone()
}

/// One record of a sealed chain.
#[derive(Clone, Copy)]
enum Item<'a> {
    /// A request record for this path.
    Request(&'a str),
    /// A checkpoint: its event and the stream it names.
    Checkpoint(&'a str, Option<&'a str>),
}

use Item::{Checkpoint, Request};

/// A chain sealed from genesis, one line per record, every record signed.
fn seal(items: &[Item<'_>]) -> Vec<String> {
    let mut sealer = Sealer::new(key(), ChainHead::genesis());
    items
        .iter()
        .map(|item| {
            let sealed = match *item {
                Checkpoint(event, stream) => {
                    let mut map = Map::new();
                    map.insert("v".into(), 1.into());
                    map.insert("type".into(), "checkpoint".into());
                    map.insert("ts".into(), "2026-12-05T10:00:00.000Z".into());
                    map.insert("event".into(), event.into());
                    map.insert("sign".into(), "record".into());
                    if let Some(stream) = stream {
                        map.insert("stream".into(), stream.into());
                    }
                    sealer.seal(map, true)
                }
                Request(path) => {
                    let mut r = RequestRecord::new(([10, 0, 0, 2], 5000).into(), "GET", "https");
                    r.task = Some("t".into());
                    r.host = "api.test".into();
                    r.port = 443;
                    r.path = path.into();
                    r.status = 200;
                    sealer.seal(request_object(&r), true)
                }
            };
            String::from_utf8(sealed.unwrap().line.to_vec()).unwrap()
        })
        .collect()
}

/// A replica's chain: start checkpoint, `requests` requests, and a shutdown
/// checkpoint when `shutdown`.
fn replica(stream: Option<&str>, requests: usize, shutdown: bool) -> Vec<String> {
    let paths: Vec<String> = (0..requests).map(|i| format!("/r/{i}")).collect();
    let mut items = vec![Checkpoint("start", stream)];
    items.extend(paths.iter().map(|p| Request(p)));
    if shutdown {
        items.push(Checkpoint("shutdown", stream));
    }
    seal(&items)
}

fn text(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

fn by_stream(files: &[(&str, &[String])]) -> Result<StreamsReport, VerifyFailure> {
    let texts: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, l)| (*n, text(l))).collect();
    let logs: Vec<(&str, &[u8])> = texts.iter().map(|(n, t)| (*n, t.as_slice())).collect();
    verify_logs_by_stream(&logs, &key().verifier())
}

/// What `tollgate audit verify` prints: (exit code, stdout, stderr).
fn printed(files: &[(&str, &[String])]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = crate::cli::verify::report(&by_stream(files), &mut out, &mut err).unwrap();
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn two_streams_are_verified_each_on_its_own_and_printed_a_line_each() {
    let a = replica(Some("tollgate-0"), 3, true);
    let b = replica(Some("tollgate-1"), 2, false);
    // Both chains run seq 1.., which as one chain would be duplicates.
    let report = by_stream(&[("b.jsonl", &b), ("a.jsonl", &a)]).unwrap();
    assert!(report.names_streams());
    assert_eq!(
        report.streams,
        vec![
            StreamVerdict {
                stream: Stream::Named("tollgate-0".into()),
                result: Ok(VerifyReport {
                    records: 5,
                    unconfirmed: 0,
                    last_seq: 5
                }),
            },
            StreamVerdict {
                stream: Stream::Named("tollgate-1".into()),
                result: Ok(VerifyReport {
                    records: 3,
                    unconfirmed: 2,
                    last_seq: 3
                }),
            },
        ]
    );
    assert_eq!(
        printed(&[("b.jsonl", &b), ("a.jsonl", &a)]),
        (
            0,
            "stream tollgate-0: 5 records ok\n\
             stream tollgate-1: 3 records ok, 2 after the last checkpoint unconfirmed: the log may have been cut\n\
             8 records ok, 2 after the last checkpoint unconfirmed: the log may have been cut\n"
                .into(),
            String::new()
        )
    );
}

#[test]
fn a_single_unnamed_stream_prints_as_before_and_a_single_named_one_gets_its_line() {
    let plain = replica(None, 2, false);
    assert!(!by_stream(&[("audit.jsonl", &plain)])
        .unwrap()
        .names_streams());
    assert_eq!(
        printed(&[("audit.jsonl", &plain)]),
        (
            0,
            "3 records ok, 2 after the last checkpoint unconfirmed: the log may have been cut\n"
                .into(),
            String::new()
        )
    );
    let named = replica(Some("r0"), 2, true);
    assert_eq!(
        printed(&[("audit.jsonl", &named)]),
        (
            0,
            "stream r0: 4 records ok\n4 records ok\n".into(),
            String::new()
        )
    );
    // A single unnamed stream fails as before: no stream named.
    let mut edited = plain.clone();
    edited[1] = edited[1].replace("/r/0", "/r/9");
    let (code, out, err) = printed(&[("audit.jsonl", &edited)]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("tollgate: audit verify: audit.jsonl:2: seq 2: bad signature"),
        "{err}"
    );
}

#[test]
fn an_unnamed_stream_beside_a_named_one_is_its_own_stream() {
    let plain = replica(None, 1, true);
    let named = replica(Some("r1"), 1, true);
    let (code, out, err) = printed(&[("n.jsonl", &named), ("p.jsonl", &plain)]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            0,
            "unnamed stream: 3 records ok\nstream r1: 3 records ok\n6 records ok\n",
            ""
        )
    );
}

#[test]
fn an_edited_record_fails_its_stream_naming_stream_and_file_and_the_other_stays_ok() {
    let a = replica(Some("tollgate-0"), 3, true);
    let mut b = replica(Some("tollgate-1"), 3, true);
    b[2] = b[2].replace(r#""status":200"#, r#""status":201"#);
    let (code, out, err) = printed(&[("a.jsonl", &a), ("b.jsonl", &b)]);
    assert_eq!(code, 1);
    assert_eq!(out, "stream tollgate-0: 5 records ok\n");
    assert_eq!(
        err,
        "tollgate: audit verify: stream tollgate-1: b.jsonl:3: seq 3: bad signature: the record \
         was altered or signed by another key\n"
    );
    // The totals say so too.
    let failure = by_stream(&[("a.jsonl", &a), ("b.jsonl", &b)])
        .unwrap()
        .total()
        .unwrap_err();
    assert_eq!(failure.stream, Some(Stream::Named("tollgate-1".into())));
    assert_eq!(failure.location, "b.jsonl:3");
}

#[test]
fn a_record_moved_from_one_stream_into_another_fails_both() {
    let mut a = replica(Some("tollgate-0"), 3, true);
    let mut b = replica(Some("tollgate-1"), 3, true);
    // a's seq 3 takes the place of b's seq 3.
    let moved = a.remove(2);
    b[2] = moved.clone();
    let (code, out, err) = printed(&[("a.jsonl", &a), ("b.jsonl", &b)]);
    assert_eq!((code, out.as_str()), (1, ""));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0]
            .starts_with("tollgate: audit verify: stream tollgate-0: a.jsonl:3: seq 4: seq gap"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(
            "tollgate: audit verify: stream tollgate-1: b.jsonl:3: seq 3: broken chain"
        ),
        "{err}"
    );
    // Put in beside b's own seq 3, it is a duplicate in b's file.
    let mut b = replica(Some("tollgate-1"), 3, true);
    b.insert(3, moved);
    let failure = by_stream(&[("b.jsonl", &b)]).unwrap_err();
    assert_eq!(failure.location, "b.jsonl:4", "{failure}");
    assert!(failure.problem.contains("duplicate seq"), "{failure}");
    // Appended at the end of b's file instead, after b's shutdown: broken chain.
    let mut b = replica(Some("tollgate-1"), 5, true);
    let a = replica(Some("tollgate-0"), 7, true);
    let mut appended = b.clone();
    appended.push(a[7].clone());
    let failure = by_stream(&[("b.jsonl", &appended)])
        .unwrap()
        .total()
        .unwrap_err();
    assert_eq!(failure.location, "b.jsonl:8", "{failure}");
    assert!(failure.problem.contains("broken chain"), "{failure}");
    // A checkpoint moved over names the other stream: the file is refused.
    b.push(a[8].clone());
    let failure = by_stream(&[("b.jsonl", &b)]).unwrap_err();
    assert!(
        failure.problem.contains("is of stream tollgate-0"),
        "{failure}"
    );
}

#[test]
fn checkpoints_of_one_file_that_disagree_about_the_stream_fail() {
    for (first, second, says) in [
        (Some("r0"), Some("r1"), "is of stream r1, but"),
        (None, Some("r1"), "is of stream r1, but"),
        (Some("r0"), None, "is of unnamed stream, but"),
    ] {
        let lines = seal(&[
            Checkpoint("start", first),
            Request("/x"),
            Checkpoint("shutdown", second),
        ]);
        let failure = by_stream(&[("mixed.jsonl", &lines)]).unwrap_err();
        assert_eq!(failure.location, "mixed.jsonl:3", "{failure}");
        assert!(failure.problem.contains(says), "{failure}");
        assert!(
            failure.problem.contains("mixed.jsonl:1 (seq 1)"),
            "{failure}"
        );
        let (code, out, _) = printed(&[("mixed.jsonl", &lines)]);
        assert_eq!((code, out.as_str()), (1, ""));
    }
    let mut lines = replica(Some("r0"), 0, false);
    let mut cp: Value = serde_json::from_str(&lines[0]).unwrap();
    cp["stream"] = 7.into();
    lines[0] = cp.to_string();
    let failure = by_stream(&[("n.jsonl", &lines)]).unwrap_err();
    assert_eq!(
        failure.problem,
        "malformed checkpoint: stream is not a string"
    );
}

#[test]
fn two_chains_under_one_stream_name_fail_naming_the_stream() {
    // A replica restarted with a fresh state directory: seq starts over.
    let old = replica(Some("tollgate-2"), 4, false);
    let new = replica(Some("tollgate-2"), 2, true);
    let other = replica(Some("tollgate-0"), 1, true);
    let (code, out, err) = printed(&[
        ("old.jsonl", &old),
        ("new.jsonl", &new),
        ("other.jsonl", &other),
    ]);
    assert_eq!(code, 1);
    assert_eq!(out, "stream tollgate-0: 3 records ok\n");
    assert!(
        err.starts_with(
            "tollgate: audit verify: stream tollgate-2: new.jsonl:1: seq 1: duplicate seq (also at \
             old.jsonl:1): two chains carry this stream's name"
        ),
        "{err}"
    );
}

#[test]
fn a_rotated_stream_with_a_live_file_without_checkpoints_joins_its_stream() {
    // tollgate-0 rotated after seq 4 (its rotate checkpoint), then was killed:
    // the live file holds requests only.
    let a = seal(&[
        Checkpoint("start", Some("tollgate-0")),
        Request("/1"),
        Request("/2"),
        Checkpoint("rotate", Some("tollgate-0")),
        Request("/3"),
        Request("/4"),
    ]);
    let b = replica(Some("tollgate-1"), 1, true);
    let (rotated, live) = a.split_at(4);
    let files: [(&str, &[String]); 3] = [
        ("a/audit.jsonl", live),
        ("b/audit.jsonl", &b),
        ("a/audit-000000000001.jsonl", rotated),
    ];
    let (code, out, err) = printed(&files);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            0,
            "stream tollgate-0: 6 records ok, 2 after the last checkpoint unconfirmed: the log may have been cut\n\
             stream tollgate-1: 3 records ok\n\
             9 records ok, 2 after the last checkpoint unconfirmed: the log may have been cut\n",
            ""
        )
    );
    // Without the rotated file, the live file chains to nothing: it is the
    // unnamed stream, whose earlier records are missing.
    let (code, out, err) = printed(&[("a/audit.jsonl", live), ("b/audit.jsonl", &b)]);
    assert_eq!(
        (code, out.as_str()),
        (1, "stream tollgate-1: 3 records ok\n")
    );
    assert!(
        err.starts_with(
            "tollgate: audit verify: unnamed stream: a/audit.jsonl:1: seq 5: the first record is seq 5, not 1"
        ),
        "{err}"
    );
    // An edited live file chains to nothing either, and fails.
    let mut edited = live.to_vec();
    edited[0] = edited[0].replace("/3", "/x");
    let (code, _, err) = printed(&[("a/audit.jsonl", &edited), ("a/r.jsonl", rotated)]);
    assert_eq!(code, 1);
    assert!(err.contains("a/audit.jsonl:1"), "{err}");
}

#[test]
fn a_stream_name_that_could_pose_as_a_line_is_shown_escaped() {
    let name = "x: 1 records ok\nstream y";
    let lines = replica(Some(name), 0, true);
    let (code, out, _) = printed(&[("n.jsonl", &lines)]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "stream \"x: 1 records ok\\nstream y\": 2 records ok\n2 records ok\n"
    );
    assert_eq!(Stream::Named(String::new()).to_string(), "stream \"\"");
    assert_eq!(
        Stream::Named("tollgate-0".into()).to_string(),
        "stream tollgate-0"
    );
}

#[test]
fn empty_files_beside_streams_are_ignored_and_alone_have_no_records() {
    let a = replica(Some("r0"), 1, true);
    let (code, out, _) = printed(&[("empty.jsonl", &[]), ("a.jsonl", &a)]);
    assert_eq!(
        (code, out.as_str()),
        (0, "stream r0: 3 records ok\n3 records ok\n")
    );
    let failure = by_stream(&[("empty.jsonl", &[])]).unwrap_err();
    assert_eq!(failure.to_string(), "empty.jsonl: no records");
}
