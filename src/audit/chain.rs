//! Sealing: sequence numbers, the hash chain and signatures over the RFC 8785
//! canonical form.

use super::event::RequestRecord;
use super::key::SigningKey;
use super::line::{request_object, write_request_line, Seal};
use super::record::SealedRecord;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// `prev` of the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// Where the chain stands: the next `seq` and the hash of the last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// `seq` the next record gets.
    pub next_seq: u64,
    /// SHA-256 of the last record's canonical form.
    pub prev: [u8; 32],
}

impl ChainHead {
    /// The head of an empty log.
    pub fn genesis() -> Self {
        Self {
            next_seq: 1,
            prev: GENESIS,
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex_into(bytes, &mut out);
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Lower-case hex of `bytes` written to the front of `out`, which should hold
/// `2 * bytes.len()` bytes (what does not fit is left out); the hex written.
pub fn hex_into<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut written = 0;
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
        written += 2;
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&out[..written]).unwrap_or_default()
}

/// SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// RFC 8785 canonical JSON of any value (a record read back from a log, which a
/// SIEM may have re-serialized).
pub fn canonical(value: &Value) -> Result<Vec<u8>, serde_json::Error> {
    serde_json_canonicalizer::to_vec(value)
}

/// Canonical JSON of a record tollgate built itself.
///
/// Such records hold only ASCII keys, strings and integers below 2^53, in a
/// `serde_json::Map` that keeps keys sorted. For those, plain `serde_json` output
/// is already RFC 8785 (same key order, same string escapes, same integers) and is
/// about ten times cheaper than the general canonicalizer, which would otherwise
/// cost more than the signature. The equivalence is checked once per process on a
/// probe that exercises ordering and escaping; should a dependency ever switch
/// `serde_json` to insertion-ordered maps, the check fails and every record goes
/// through the canonicalizer.
pub fn canonical_own(value: &Value) -> Result<Vec<u8>, serde_json::Error> {
    if plain_serde_is_canonical() {
        serde_json::to_vec(value)
    } else {
        canonical(value)
    }
}

pub(super) fn plain_serde_is_canonical() -> bool {
    static CHECKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CHECKED.get_or_init(|| {
        let probe = serde_json::json!({
            "zeta": 1,
            "Alpha": [9007199254740991_u64, 0, {"b": null, "a": true}],
            "_k": "ctl \u{1} \u{1f} \u{7f} quote \" slash \\ / nl \n tab \t \u{2028} é 😀",
            "a": {"seq": 42, "sig": "x", "sign": "y"},
        });
        let fast = serde_json::to_vec(&probe).ok();
        let slow = canonical(&probe).ok();
        let same = fast.is_some() && fast == slow;
        if !same {
            tracing::warn!("serde_json output is not canonical here; audit records use the slower RFC 8785 canonicalizer");
        }
        same
    })
}

/// `2026-11-23T05:00:00.123Z`.
pub fn rfc3339_millis(at: SystemTime) -> String {
    Millis::new(at).as_str().to_owned()
}

/// [`rfc3339_millis`] on the stack, for the writer's per-record `ts`.
pub struct Millis {
    buf: [u8; 32],
    len: usize,
}

impl Millis {
    /// `at` in UTC to the millisecond (truncated), `1970-01-01T00:00:00.000Z` for
    /// a time before the epoch or beyond what `time` represents.
    pub fn new(at: SystemTime) -> Self {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let nanos = i128::from(since.as_secs()) * 1_000_000_000 + i128::from(since.subsec_nanos());
        let mut out = Self {
            buf: [0; 32],
            len: 0,
        };
        let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
            out.push_str("1970-01-01T00:00:00.000Z");
            return out;
        };
        // At or after the epoch: the year is positive.
        out.push_number(u32::try_from(t.year()).unwrap_or(0), 4);
        out.push_str("-");
        out.push_number(u8::from(t.month()).into(), 2);
        out.push_str("-");
        out.push_number(t.day().into(), 2);
        out.push_str("T");
        out.push_number(t.hour().into(), 2);
        out.push_str(":");
        out.push_number(t.minute().into(), 2);
        out.push_str(":");
        out.push_number(t.second().into(), 2);
        out.push_str(".");
        out.push_number(t.millisecond().into(), 3);
        out.push_str("Z");
        out
    }

    /// The timestamp.
    pub fn as_str(&self) -> &str {
        // Only ASCII was written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    fn push_str(&mut self, s: &str) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
    }

    /// `n` in decimal, zero-padded to `width` digits (at most 10 digits in all,
    /// so 24 bytes of fixed text and a `u32` year fit the buffer).
    fn push_number(&mut self, mut n: u32, width: usize) {
        let digits = n.checked_ilog10().map_or(1, |d| d as usize + 1).max(width);
        for slot in self.buf[self.len..self.len + digits].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len += digits;
    }
}

/// Assigns `seq`, `key_id` and `prev`, signs when asked, and advances the head.
pub struct Sealer {
    key: Arc<SigningKey>,
    head: ChainHead,
    /// Reused by [`Sealer::seal_request`] for the line it builds.
    line: Vec<u8>,
}

impl Sealer {
    /// A sealer continuing from `head`.
    pub fn new(key: Arc<SigningKey>, head: ChainHead) -> Self {
        Self {
            key,
            head,
            line: Vec::with_capacity(1024),
        }
    }

    /// The current head (to restore if a write fails).
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Rewinds to `head`, forgetting records sealed since.
    pub fn restore(&mut self, head: ChainHead) {
        self.head = head;
    }

    /// Seals one record object (which has `v`, `type`, `ts` and its own fields).
    pub fn seal(
        &mut self,
        mut record: Map<String, Value>,
        sign: bool,
    ) -> Result<SealedRecord, serde_json::Error> {
        let seq = self.head.next_seq;
        record.insert("seq".into(), Value::from(seq));
        record.insert("key_id".into(), Value::from(self.key.key_id()));
        record.insert("prev".into(), Value::from(hex(&self.head.prev)));
        record.remove("sig");
        let mut value = Value::Object(record);
        let mut line = canonical_own(&value)?;
        if sign {
            let sig = self.key.sign_b64(&line);
            if let Value::Object(map) = &mut value {
                map.insert("sig".into(), Value::from(sig));
            }
            line = canonical_own(&value)?;
        }
        self.head = ChainHead {
            next_seq: seq + 1,
            prev: sha256(&line),
        };
        Ok(SealedRecord {
            seq,
            line: line.into(),
        })
    }

    /// Seals one request record: the same line as [`Sealer::seal`] of its
    /// [`request_object`], written straight from the record (no `Value` map) while
    /// plain `serde_json` output is canonical, through that map otherwise.
    pub fn seal_request(
        &mut self,
        record: &RequestRecord,
        sign: bool,
    ) -> Result<SealedRecord, serde_json::Error> {
        if !plain_serde_is_canonical() {
            return self.seal(request_object(record), sign);
        }
        let seq = self.head.next_seq;
        let mut prev = [0; 64];
        let seal = Seal {
            seq,
            key_id: self.key.key_id(),
            prev: hex_into(&self.head.prev, &mut prev),
        };
        let key = sign.then_some(&*self.key);
        write_request_line(record, &seal, key, &mut self.line)?;
        self.head = ChainHead {
            next_seq: seq + 1,
            prev: sha256(&self.line),
        };
        Ok(SealedRecord {
            seq,
            line: bytes::Bytes::copy_from_slice(&self.line),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_795_410_000_123);
        assert_eq!(rfc3339_millis(at), "2026-11-23T05:00:00.123Z");
    }

    #[test]
    fn plain_serde_output_is_canonical_for_records() {
        assert!(plain_serde_is_canonical());
        let mut record = serde_json::json!({
            "v": 1, "type": "request", "seq": 7, "path": "/a/\u{1}é", "query": null,
            "secrets": ["B", "A"], "approval": {"id": "h1", "by": null},
        });
        record["prev"] = Value::from("0".repeat(64));
        assert_eq!(canonical_own(&record).unwrap(), canonical(&record).unwrap());
    }

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": 1, "a": [true, null, "x"], "c": 1.0 }"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical(&v).unwrap()).unwrap(),
            r#"{"a":[true,null,"x"],"b":1,"c":1}"#
        );
    }
}
