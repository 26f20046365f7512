//! A strict JSON reader: serde_json's grammar, plus refusal of duplicate object
//! keys at any depth and of nesting deeper than [`MAX_DEPTH`]. serde_json keeps
//! the last of two equal keys, other parsers the first; a matcher that read one
//! value while the upstream reads the other would check the wrong message.

use super::error::{excerpt, ContentError};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
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
        if let Some(name) = case_variant(key, names) {
            return Err(case_variant_error(key, name, what));
        }
    }
    Ok(())
}

/// The entry of `names` that `key` is not, but folds to the way
/// case-insensitive decoders do (see [`refuse_case_variants`]).
pub fn case_variant<'n>(key: &str, names: &[&'n str]) -> Option<&'n str> {
    if names.contains(&key) {
        return None;
    }
    names
        .iter()
        .find(|name| key.chars().map(fold).eq(name.chars().map(fold)))
        .copied()
}

/// The error [`refuse_case_variants`] gives for `key`, a case variant of `name`.
pub fn case_variant_error(key: &str, name: &str, what: &str) -> ContentError {
    ContentError::new(format!(
        "{what} has a key {:?} that differs from {name:?} only in case",
        excerpt(key, 40)
    ))
}

fn fold(c: char) -> char {
    match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    }
}

/// What a value was, as [`Skip`] read it: strings are kept (borrowed from the
/// input unless they hold escapes), containers are only checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shape<'de> {
    Null,
    Bool,
    Number,
    Str(Cow<'de, str>),
    Array,
    Object,
}

/// The object keys seen so far on the path being read, for refusing
/// duplicates without building a map per object. An object's keys sit at the
/// top of the stack from its `begin` to its `end` (inner objects are finished,
/// and their keys dropped, before the next key of the outer one is read).
#[derive(Debug, Default)]
pub(super) struct Keys<'de> {
    seen: Vec<Cow<'de, str>>,
}

/// Up to this many keys an object is checked for duplicates key by key; a
/// larger one is also sorted and checked at its end (so a huge object costs
/// O(n log n), not O(n²)).
const LINEAR_KEYS: usize = 16;

impl<'de> Keys<'de> {
    /// Starts an object; pass the result to [`Keys::add`] and [`Keys::end`].
    pub(super) fn begin(&self) -> usize {
        self.seen.len()
    }

    /// Records `key` of the object begun at `start`.
    pub(super) fn add<E: serde::de::Error>(
        &mut self,
        start: usize,
        key: Cow<'de, str>,
    ) -> Result<(), E> {
        let object = self.seen.get(start..).unwrap_or_default();
        if object.len() < LINEAR_KEYS && object.contains(&key) {
            return Err(duplicate(&key));
        }
        self.seen.push(key);
        Ok(())
    }

    /// Finishes the object begun at `start`.
    pub(super) fn end<E: serde::de::Error>(&mut self, start: usize) -> Result<(), E> {
        if let Some(object) = self.seen.get_mut(start..) {
            if object.len() > LINEAR_KEYS {
                object.sort_unstable();
                if let Some(pair) = object.windows(2).find(|w| w[0] == w[1]) {
                    return Err(duplicate(&pair[0]));
                }
            }
        }
        self.seen.truncate(start);
        Ok(())
    }
}

fn duplicate<E: serde::de::Error>(key: &str) -> E {
    E::custom(format!("duplicate key {:?}", excerpt(key, 40)))
}

/// The depth of a container's children, or the error when `depth` is the
/// deepest allowed (the same bound as [`parse_strict`]).
pub(super) fn child_depth<E: serde::de::Error>(depth: usize) -> Result<usize, E> {
    if depth >= MAX_DEPTH {
        return Err(E::custom(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    Ok(depth + 1)
}

/// Reads an object key, borrowed from the input when it holds no escapes.
pub(super) struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Reads one value with the checks of [`parse_strict`] (duplicate keys,
/// depth; the grammar is serde_json's) while keeping none of it but its
/// [`Shape`]: for readers that need a few fields of a large body.
pub(super) struct Skip<'k, 'de> {
    /// The keys of the objects being read.
    pub keys: &'k mut Keys<'de>,
    /// The depth of this value (the body is at 0).
    pub depth: usize,
}

impl<'de> DeserializeSeed<'de> for Skip<'_, 'de> {
    type Value = Shape<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_, 'de> {
    type Value = Shape<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Shape::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Shape::Bool)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Shape::Number)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Shape::Number)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.is_finite() {
            Ok(Shape::Number)
        } else {
            Err(E::custom("a number that is not finite"))
        }
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Shape::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Shape::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Shape::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Like parse_strict: an array at the deepest level is refused even empty.
        let depth = child_depth(self.depth)?;
        while seq
            .next_element_seed(Skip {
                keys: &mut *self.keys,
                depth,
            })?
            .is_some()
        {}
        Ok(Shape::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let start = self.keys.begin();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            self.keys.add(start, key)?;
            map.next_value_seed(Skip {
                depth: child_depth(self.depth)?,
                keys: &mut *self.keys,
            })?;
        }
        self.keys.end(start)?;
        Ok(Shape::Object)
    }
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

/// The scalar visits of a visitor that answers every scalar with `$value`
/// (whose meaning is checked later).
macro_rules! forward_scalars {
    ($value:expr) => {
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}
pub(super) use forward_scalars;

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
