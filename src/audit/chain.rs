//! Sealing: sequence numbers, the hash chain and signatures over the RFC 8785
//! canonical form.

use super::event::RequestRecord;
use super::key::SigningKey;
use super::line::{request_object, write_request_line, Seal};
use super::record::SealedRecord;
use crate::text::{hex, hex_into};
use serde_json::{Map, Value};
use std::sync::Arc;

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
