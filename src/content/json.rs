//! A strict JSON reader: serde_json's grammar, plus refusal of duplicate object
//! keys at any depth and of nesting deeper than [`MAX_DEPTH`]. serde_json keeps
//! the last of two equal keys, other parsers the first; a matcher that read one
//! value while the upstream reads the other would check the wrong message.

use super::error::{excerpt, ContentError};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 64;

/// Reads `bytes` as one JSON value, refusing duplicate keys, nesting deeper than
/// [`MAX_DEPTH`] and input longer than `max_len` bytes.
pub fn parse_strict(bytes: &[u8], max_len: usize) -> Result<Value, ContentError> {
    if bytes.len() > max_len {
        return Err(ContentError::new(format!(
            "JSON body is larger than {max_len} bytes"
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict { depth: 0 }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| ContentError::new(format!("invalid JSON: {e}")))?;
    Ok(value)
}

/// True when `bytes`, after an optional UTF-8 byte order mark and JSON
/// whitespace, starts an object or an array: what a lenient client could still
/// read as a message even where [`parse_strict`] refuses it.
pub fn looks_like_container(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| matches!(b, b'{' | b'['))
}

/// Refuses a key of `object` that is not one of `names` but folds to one of them
/// the way case-insensitive decoders do (ASCII case, `ſ` as `s`, the Kelvin sign
/// as `k`): such a decoder could take it for the field we read.
pub fn refuse_case_variants(
    object: &Map<String, Value>,
    names: &[&str],
    what: &str,
) -> Result<(), ContentError> {
    for key in object.keys() {
        if names.contains(&key.as_str()) {
            continue;
        }
        let folded = fold(key);
        if let Some(name) = names.iter().find(|n| fold(n) == folded) {
            return Err(ContentError::new(format!(
                "{what} has a key {:?} that differs from {name:?} only in case",
                excerpt(key, 40)
            )));
        }
    }
    Ok(())
}

fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

struct Strict {
    depth: usize,
}

impl Strict {
    fn deeper<E: serde::de::Error>(&self) -> Result<Strict, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(Strict {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.deeper()?)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key {:?}",
                    excerpt(&key, 40)
                )));
            }
            let value = map.next_value_seed(self.deeper()?)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let e = parse_strict(br#"{"a":{"b":1,"b":2}}"#, 1000).unwrap_err();
        assert!(e.message().contains("duplicate key \"b\""), "{e}");
        assert!(parse_strict(br#"{"a":1,"b":[{"a":1}]}"#, 1000).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_strict(ok.as_bytes(), 1 << 20).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = parse_strict(deep.as_bytes(), 1 << 20).unwrap_err();
        assert!(e.message().contains("nested deeper"), "{e}");
        let huge = "[".repeat(100_000);
        assert!(parse_strict(huge.as_bytes(), 1 << 20).is_err());
    }

    #[test]
    fn size_trailing_bytes_and_syntax_are_checked() {
        assert!(parse_strict(b"{}", 1).is_err());
        assert!(parse_strict(b"{} x", 100).is_err());
        assert!(parse_strict(b"{\"a\":NaN}", 100).is_err());
        assert!(parse_strict(b"\"\\ud800\"", 100).is_err());
    }

    #[test]
    fn containers_are_recognised_past_bom_and_whitespace() {
        assert!(looks_like_container(b"\xEF\xBB\xBF \r\n{"));
        assert!(looks_like_container(b"\t["));
        assert!(!looks_like_container(b"ping"));
        assert!(!looks_like_container(b""));
        assert!(!looks_like_container(b"\"{\""));
    }

    #[test]
    fn case_variants_are_refused() {
        let Value::Object(m) = parse_strict(br#"{"method":"a","METHOD":"b"}"#, 100).unwrap() else {
            panic!("object")
        };
        assert!(refuse_case_variants(&m, &["method"], "message").is_err());
        let Value::Object(m) = parse_strict("{\"jſonrpc\":1}".as_bytes(), 100).unwrap() else {
            panic!("object")
        };
        assert!(refuse_case_variants(&m, &["jsonrpc"], "message").is_err());
        let Value::Object(m) = parse_strict(br#"{"method":"a","other":1}"#, 100).unwrap() else {
            panic!("object")
        };
        assert!(refuse_case_variants(&m, &["method"], "message").is_ok());
    }
}
