//! `tollgate audit verify`: signatures, chain and sequence over one or more log
//! files given in any order.

use super::chain::{canonical, hex, sha256, GENESIS};
use super::key::Verifier;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Records after the last signed checkpoint whose signature covers nothing yet
    /// (unsigned request records of `sign: checkpoint`).
    pub unconfirmed: u64,
    /// Highest seq seen.
    pub last_seq: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} records ok", self.records)?;
        if self.unconfirmed > 0 {
            write!(
                f,
                " ({} after the last checkpoint unconfirmed)",
                self.unconfirmed
            )?;
        }
        Ok(())
    }
}

/// The first bad record found, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// `file:line`.
    pub location: String,
    /// The record's seq, when it has one.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "{}: seq {seq}: {}", self.location, self.problem),
            None => write!(f, "{}: {}", self.location, self.problem),
        }
    }
}

struct Line {
    seq: u64,
    location: String,
    value: Value,
}

fn fail(
    location: impl Into<String>,
    seq: Option<u64>,
    problem: impl Into<String>,
) -> VerifyFailure {
    VerifyFailure {
        location: location.into(),
        seq,
        problem: problem.into(),
    }
}

/// Reads one file's records, checking that each is well-formed and that seq rises
/// line by line.
fn read_file(path: &Path, out: &mut Vec<Line>) -> Result<(), VerifyFailure> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| fail(&shown, None, format!("cannot read: {e}")))?;
    let mut last_seq: Option<u64> = None;
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let count = lines.len();
    for (i, raw) in lines.into_iter().enumerate() {
        let location = format!("{shown}:{}", i + 1);
        let is_last = i + 1 == count;
        if is_last && raw.is_empty() {
            break;
        }
        if is_last {
            return Err(fail(
                location,
                None,
                "malformed line: the last line is cut short (no newline), as a crash mid-write leaves it",
            ));
        }
        let value: Value = serde_json::from_slice(raw)
            .map_err(|e| fail(&location, None, format!("malformed line: {e}")))?;
        if !value.is_object() {
            return Err(fail(location, None, "malformed line: not a JSON object"));
        }
        let seq = value
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| fail(&location, None, "malformed line: no numeric seq"))?;
        if let Some(before) = last_seq {
            if seq == before {
                return Err(fail(
                    location,
                    Some(seq),
                    "duplicate seq: the line before has the same seq",
                ));
            }
            if seq < before {
                return Err(fail(
                    location,
                    Some(seq),
                    format!("out of order: comes after seq {before} in the same file"),
                ));
            }
        }
        last_seq = Some(seq);
        out.push(Line {
            seq,
            location,
            value,
        });
    }
    Ok(())
}

/// Verifies the records of `files` (any order) against `key`.
pub fn verify_files(files: &[PathBuf], key: &Verifier) -> Result<VerifyReport, VerifyFailure> {
    let mut lines = Vec::new();
    for file in files {
        read_file(file, &mut lines)?;
    }
    if lines.is_empty() {
        return Err(fail(
            files
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            None,
            "no records",
        ));
    }
    lines.sort_by_key(|l| l.seq);
    let mut prev_hash = GENESIS;
    let mut expected = 1u64;
    let mut unconfirmed = 0u64;
    let mut before: Option<&Line> = None;
    for line in &lines {
        let seq = Some(line.seq);
        let here = |problem: String| fail(&line.location, seq, problem);
        if line.seq != expected {
            return Err(here(match before {
                Some(b) if b.seq == line.seq => {
                    format!("duplicate seq (also at {})", b.location)
                }
                Some(b) => format!(
                    "seq gap: expected {expected} after seq {} at {}; records are missing",
                    b.seq, b.location
                ),
                None => format!(
                    "the first record is seq {}, not 1: earlier records are missing (pass every rotated file)",
                    line.seq
                ),
            }));
        }
        let object = line.value.as_object();
        let field = |name: &str| object.and_then(|o| o.get(name)).and_then(Value::as_str);
        if field("prev") != Some(hex(&prev_hash).as_str()) {
            return Err(here(match before {
                Some(b) => format!(
                    "broken chain: prev is not the hash of seq {} ({}); one of the two was altered",
                    b.seq, b.location
                ),
                None => "broken chain: the first record's prev is not 64 zeros".into(),
            }));
        }
        match field("key_id") {
            Some(id) if id == key.key_id() => {}
            Some(id) => {
                return Err(here(format!(
                    "unknown key: signed with key_id {id}, not {} (the given key)",
                    key.key_id()
                )))
            }
            None => return Err(here("malformed record: no key_id".into())),
        }
        let is_checkpoint = field("type") == Some("checkpoint");
        match field("sig") {
            Some(sig) => {
                let mut unsigned = line.value.clone();
                if let Value::Object(map) = &mut unsigned {
                    map.remove("sig");
                }
                let message =
                    canonical(&unsigned).map_err(|e| here(format!("malformed record: {e}")))?;
                if !key.verify(&message, sig) {
                    return Err(here(
                        "bad signature: the record was altered or signed by another key".into(),
                    ));
                }
                // A valid signature covers every record before it through `prev`.
                unconfirmed = 0;
            }
            None if is_checkpoint => {
                return Err(here("a checkpoint without a signature".into()));
            }
            None => unconfirmed += 1,
        }
        let bytes = canonical(&line.value).map_err(|e| here(format!("malformed record: {e}")))?;
        prev_hash = sha256(&bytes);
        expected += 1;
        before = Some(line);
    }
    Ok(VerifyReport {
        records: lines.len() as u64,
        unconfirmed,
        last_seq: expected - 1,
    })
}
