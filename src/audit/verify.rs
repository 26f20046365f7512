//! `tollgate audit verify`: signatures, chain and sequence over one or more log
//! files given in any order.
//!
//! Reading is kept apart from checking: [`parse_log`] and [`verify_logs`] work on
//! bytes in memory (what the fuzz target and the property tests feed them), and
//! [`verify_files`] only reads the files and hands their bytes over.

use super::chain::{canonical, sha256, GENESIS};
use super::key::Verifier;
use crate::text::hex;
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked, checkpoints included.
    pub records: u64,
    /// Records after the last checkpoint (in either signing mode). No signed
    /// checkpoint vouches that the log went on to them and no further, so a log
    /// that ends here without its shutdown checkpoint may have lost its tail.
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
                ", {} after the last checkpoint unconfirmed: the log may have been cut",
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

/// One well-formed line of a log: a JSON object with a numeric `seq`. Nothing
/// about its chain or signature is checked yet.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Its `seq`.
    pub seq: u64,
    /// `name:line`, for messages.
    pub location: String,
    /// The record as parsed.
    pub value: Value,
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

/// Parses one log file's bytes (`name` is how messages call it), checking that
/// each line is a JSON object with a numeric `seq`, that seq rises line by line,
/// and that the file ends with a newline.
pub fn parse_log(bytes: &[u8], name: &str) -> Result<Vec<LogLine>, VerifyFailure> {
    let mut out = Vec::new();
    let mut before: Option<(u64, String)> = None;
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let count = lines.len();
    for (i, raw) in lines.into_iter().enumerate() {
        let location = format!("{name}:{}", i + 1);
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
        let value =
            parse_strict(raw).map_err(|e| fail(&location, None, format!("malformed line: {e}")))?;
        if !value.is_object() {
            return Err(fail(location, None, "malformed line: not a JSON object"));
        }
        let seq = value
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| fail(&location, None, "malformed line: no numeric seq"))?;
        if let Some((last_seq, last_location)) = &before {
            if seq == *last_seq {
                return Err(fail(
                    location,
                    Some(seq),
                    format!("duplicate seq: {last_location} has the same seq"),
                ));
            }
            if seq < *last_seq {
                return Err(fail(
                    location,
                    Some(seq),
                    format!(
                        "out of order: comes after seq {last_seq} at {last_location} in the same file"
                    ),
                ));
            }
        }
        before = Some((seq, location.clone()));
        out.push(LogLine {
            seq,
            location,
            value,
        });
    }
    Ok(out)
}

/// Parses one JSON text like `serde_json::from_slice`, but refuses an object
/// with the same key twice.
///
/// SECURITY: with duplicate keys, readers disagree: `serde_json` (and so the
/// chain and signature check) keeps the last value, others keep the first. A
/// line with `"decision":"allow"` put before the genuine `"decision":"deny"`
/// would verify and still read as an allow elsewhere.
fn parse_strict(raw: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(raw).map(|s| s.0)
}

/// A JSON value without duplicate keys at any depth.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Verifies the records of `files` (any order) against `key`. Each file's bytes
/// are dropped once parsed, so only the parsed records of a long log are held.
pub fn verify_files(files: &[PathBuf], key: &Verifier) -> Result<VerifyReport, VerifyFailure> {
    let mut lines = Vec::new();
    for file in files {
        let shown = file.display().to_string();
        let bytes =
            std::fs::read(file).map_err(|e| fail(&shown, None, format!("cannot read: {e}")))?;
        lines.extend(parse_log(&bytes, &shown)?);
    }
    let first = files.first().map(|p| p.display().to_string());
    check_chain(lines, first.as_deref(), key)
}

/// Verifies logs held in memory, each `(name, bytes)` as one file of
/// [`verify_files`] (any order).
pub fn verify_logs(logs: &[(&str, &[u8])], key: &Verifier) -> Result<VerifyReport, VerifyFailure> {
    let mut lines = Vec::new();
    for (name, bytes) in logs {
        lines.extend(parse_log(bytes, name)?);
    }
    check_chain(lines, logs.first().map(|(name, _)| *name), key)
}

/// Checks sequence, chain, key and signatures of parsed records (any order);
/// `first` names the first file, for a log without records.
fn check_chain(
    mut lines: Vec<LogLine>,
    first: Option<&str>,
    key: &Verifier,
) -> Result<VerifyReport, VerifyFailure> {
    if lines.is_empty() {
        return Err(fail(first.unwrap_or_default(), None, "no records"));
    }
    lines.sort_by_key(|l| l.seq);
    let mut prev_hash = GENESIS;
    let mut expected = 1u64;
    let mut unconfirmed = 0u64;
    // The last checkpoint that said `sign: record`: until the next checkpoint
    // (a restart or a mode switch writes one), every request record is signed.
    let mut all_signed_since: Option<&LogLine> = None;
    let mut before: Option<&LogLine> = None;
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
        let is_checkpoint = match field("type") {
            Some("checkpoint") => true,
            Some("request") => false,
            _ => {
                return Err(here(
                    "malformed record: type is neither request nor checkpoint".into(),
                ))
            }
        };
        match object.and_then(|o| o.get("sig")) {
            Some(Value::String(sig)) => {
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
            }
            Some(_) => return Err(here("malformed record: sig is not a string".into())),
            None if is_checkpoint => {
                return Err(here("a checkpoint without a signature".into()));
            }
            // SECURITY: without this, a record-mode log's last record could be
            // rewritten at will by dropping its signature (nothing after it chains).
            None => {
                if let Some(cp) = all_signed_since {
                    return Err(here(format!(
                        "unsigned record: the checkpoint at {} (seq {}) says sign: record, so \
                         every record after it is signed; this one's signature was removed",
                        cp.location, cp.seq
                    )));
                }
            }
        }
        // A checkpoint is signed and covers every record before it through `prev`;
        // what comes after the last one is not vouched for by any later record
        // (a log cut there looks complete).
        if is_checkpoint {
            unconfirmed = 0;
            all_signed_since = (field("sign") == Some("record")).then_some(line);
        } else {
            unconfirmed += 1;
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

#[cfg(test)]
mod tests;
