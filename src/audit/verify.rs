//! `tollgate audit verify`: signatures, chain and sequence over one or more log
//! files given in any order.
//!
//! Reading is kept apart from checking: [`parse_log`] and [`verify_logs`] work on
//! bytes in memory (what the fuzz target and the property tests feed them), and
//! [`verify_files`] only reads the files and hands their bytes over.
//!
//! Files may come from several replicas of a cluster, each with its own chain (a
//! *stream*, named by the `stream` of its checkpoints). Records are grouped by
//! stream and each stream is checked on its own ([`verify_logs_by_stream`]).

use super::chain::{canonical, sha256, GENESIS};
use super::key::Verifier;
use crate::text::hex;
use serde_json::Value;
use std::collections::BTreeMap;
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
    /// The stream the record is in, when the files hold more than one stream or a
    /// named one (a single unnamed stream is reported as before streams existed).
    pub stream: Option<Stream>,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(stream) = &self.stream {
            write!(f, "{stream}: ")?;
        }
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
        stream: None,
    }
}

/// One chain of records: a replica's in cluster mode, named by the `stream` of
/// its checkpoints, or the one chain of a single process, whose checkpoints name
/// none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    /// Checkpoints without `stream`.
    Unnamed,
    /// Checkpoints with `"stream": NAME`.
    Named(String),
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unnamed => f.write_str("unnamed stream"),
            // SECURITY: the name comes from the files, which may be forged; a
            // name with spaces, quotes or control characters is shown quoted and
            // escaped, so it cannot pose as another line of the report.
            Self::Named(name) if is_plain_name(name) => write!(f, "stream {name}"),
            Self::Named(name) => write!(f, "stream \"{}\"", name.escape_debug()),
        }
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '/'))
}

/// One stream's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamVerdict {
    /// Which stream.
    pub stream: Stream,
    /// Its counts, or its first bad record.
    pub result: Result<VerifyReport, VerifyFailure>,
}

/// What verify found, stream by stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsReport {
    /// The unnamed stream first, then named ones by name.
    pub streams: Vec<StreamVerdict>,
}

impl StreamsReport {
    /// Whether the report names its streams: there is more than one, or a named
    /// one. A single unnamed stream reads as before streams existed.
    pub fn names_streams(&self) -> bool {
        self.streams.len() > 1
            || self
                .streams
                .iter()
                .any(|s| matches!(s.stream, Stream::Named(_)))
    }

    /// The totals over all streams if each verified, else the first failure
    /// (in stream order).
    pub fn total(&self) -> Result<VerifyReport, VerifyFailure> {
        let mut total = VerifyReport {
            records: 0,
            unconfirmed: 0,
            last_seq: 0,
        };
        for verdict in &self.streams {
            let report = verdict.result.as_ref().map_err(Clone::clone)?;
            total.records += report.records;
            total.unconfirmed += report.unconfirmed;
            total.last_seq = total.last_seq.max(report.last_seq);
        }
        Ok(total)
    }

    /// The streams that failed, with why.
    pub fn failures(&self) -> impl Iterator<Item = &VerifyFailure> {
        self.streams.iter().filter_map(|s| s.result.as_ref().err())
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

/// Verifies the records of `files` (any order) against `key`: Ok with the totals
/// when every stream verified, else the first failure.
pub fn verify_files(files: &[PathBuf], key: &Verifier) -> Result<VerifyReport, VerifyFailure> {
    verify_files_by_stream(files, key)?.total()
}

/// Verifies the records of `files` (any order) against `key`, each stream on its
/// own. `Err` when a file cannot be read or parsed, or its stream told. Each
/// file's bytes are dropped once parsed, so only the parsed records of a long
/// log are held.
pub fn verify_files_by_stream(
    files: &[PathBuf],
    key: &Verifier,
) -> Result<StreamsReport, VerifyFailure> {
    let mut parsed = Vec::with_capacity(files.len());
    for file in files {
        let shown = file.display().to_string();
        let bytes =
            std::fs::read(file).map_err(|e| fail(&shown, None, format!("cannot read: {e}")))?;
        let lines = parse_log(&bytes, &shown)?;
        parsed.push(LogFile::new(shown, lines)?);
    }
    check_streams(parsed, key)
}

/// Verifies logs held in memory, each `(name, bytes)` as one file of
/// [`verify_files`] (any order).
pub fn verify_logs(logs: &[(&str, &[u8])], key: &Verifier) -> Result<VerifyReport, VerifyFailure> {
    verify_logs_by_stream(logs, key)?.total()
}

/// Verifies logs held in memory, each `(name, bytes)` as one file of
/// [`verify_files_by_stream`] (any order).
pub fn verify_logs_by_stream(
    logs: &[(&str, &[u8])],
    key: &Verifier,
) -> Result<StreamsReport, VerifyFailure> {
    let mut parsed = Vec::with_capacity(logs.len());
    for (name, bytes) in logs {
        parsed.push(LogFile::new(name.to_string(), parse_log(bytes, name)?)?);
    }
    check_streams(parsed, key)
}

/// One parsed file and the stream its checkpoints name.
struct LogFile {
    name: String,
    lines: Vec<LogLine>,
    /// `None`: the file holds no checkpoint (the live file after a rotation, cut
    /// before its first checkpoint), so its stream is the one it continues.
    stream: Option<Stream>,
}

impl LogFile {
    /// Reads the stream off the checkpoints; they must all name the same one.
    fn new(name: String, lines: Vec<LogLine>) -> Result<Self, VerifyFailure> {
        let mut found: Option<(Stream, &LogLine)> = None;
        for line in &lines {
            if line.value.get("type").and_then(Value::as_str) != Some("checkpoint") {
                continue;
            }
            let stream = match line.value.get("stream") {
                None => Stream::Unnamed,
                Some(Value::String(name)) => Stream::Named(name.clone()),
                Some(_) => {
                    return Err(fail(
                        &line.location,
                        Some(line.seq),
                        "malformed checkpoint: stream is not a string",
                    ))
                }
            };
            match &found {
                None => found = Some((stream, line)),
                Some((first, at)) if *first != stream => {
                    return Err(fail(
                        &line.location,
                        Some(line.seq),
                        format!(
                            "this checkpoint is of {stream}, but the checkpoint at {} (seq {}) \
                             is of {first}: a file holds the records of one stream",
                            at.location, at.seq
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        let stream = found.map(|(stream, _)| stream);
        Ok(Self {
            name,
            lines,
            stream,
        })
    }
}

/// Gives each file without a checkpoint the stream of the file whose record its
/// first record chains to (`prev` is that record's hash), repeatedly, since such
/// files may follow each other; what stays unknown is the unnamed stream. A wrong
/// attachment cannot make a log verify: every record is still checked in the
/// chain of the stream it lands in.
fn attach_files_without_checkpoints(files: &mut [LogFile]) {
    for _ in 0..files.len() {
        let mut found = Vec::new();
        for (i, file) in files.iter().enumerate() {
            let Some(first) = file.lines.first() else {
                continue;
            };
            if file.stream.is_some() || first.seq <= 1 {
                continue;
            }
            let prev = first.value.get("prev").and_then(Value::as_str);
            let before = first.seq - 1;
            let owner = files.iter().find_map(|other| {
                let stream = other.stream.as_ref()?;
                let at = other.lines.binary_search_by_key(&before, |l| l.seq).ok()?;
                let bytes = canonical(&other.lines.get(at)?.value).ok()?;
                (prev == Some(hex(&sha256(&bytes)).as_str())).then(|| stream.clone())
            });
            if let Some(stream) = owner {
                found.push((i, stream));
            }
        }
        if found.is_empty() {
            return;
        }
        for (i, stream) in found {
            if let Some(file) = files.get_mut(i) {
                file.stream = Some(stream);
            }
        }
    }
}

/// Groups the records by stream and checks each stream's chain on its own.
fn check_streams(mut files: Vec<LogFile>, key: &Verifier) -> Result<StreamsReport, VerifyFailure> {
    if files.iter().all(|f| f.lines.is_empty()) {
        let first = files.first().map(|f| f.name.as_str()).unwrap_or_default();
        return Err(fail(first, None, "no records"));
    }
    if files
        .iter()
        .any(|f| matches!(f.stream, Some(Stream::Named(_))))
    {
        attach_files_without_checkpoints(&mut files);
    }
    let mut streams: BTreeMap<Stream, Vec<LogLine>> = BTreeMap::new();
    for file in files {
        if file.lines.is_empty() {
            continue;
        }
        streams
            .entry(file.stream.unwrap_or(Stream::Unnamed))
            .or_default()
            .extend(file.lines);
    }
    let named = streams.len() > 1 || streams.keys().any(|s| matches!(s, Stream::Named(_)));
    let streams = streams
        .into_iter()
        .map(|(stream, lines)| {
            let result = check_chain(lines, &stream, key).map_err(|mut failure| {
                if named {
                    failure.stream = Some(stream.clone());
                }
                failure
            });
            StreamVerdict { stream, result }
        })
        .collect();
    Ok(StreamsReport { streams })
}

/// Checks sequence, chain, key and signatures of one stream's parsed records
/// (any order, at least one).
fn check_chain(
    mut lines: Vec<LogLine>,
    stream: &Stream,
    key: &Verifier,
) -> Result<VerifyReport, VerifyFailure> {
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
                Some(b) if b.seq == line.seq => match stream {
                    Stream::Named(_) => format!(
                        "duplicate seq (also at {}): two chains carry this stream's name (a \
                         replica restarted without its earlier log, or two replicas with one \
                         replica_id), or a file was given twice",
                        b.location
                    ),
                    Stream::Unnamed => format!("duplicate seq (also at {})", b.location),
                },
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

#[cfg(test)]
mod stream_tests;
