//! Fuzz target `path`: request path canonicalisation ([`RequestPath::parse`]) and
//! path pattern matching ([`PathPattern`]), checked against a small reference
//! written here from DESIGN.md's rules and nothing else.
//!
//! Input: `PATTERN\nPATH` (the first line is a policy path pattern, the rest a
//! request path); an input without a newline is a request path alone. Invariants:
//! - parsing never panics, and accepts exactly the paths the reference accepts,
//!   with the same decoded segments;
//! - an accepted path starts with `/` and has no dot segment, no `//`, no encoded
//!   `/` or `\`, no NUL, no raw `;` and no bad `%` escape;
//! - re-encoding its decoded segments gives a path with the same segments, so a
//!   rule cannot be dodged by spelling a byte as `%XX` (or the reverse);
//! - a pattern compiles exactly when the reference accepts it, and matches exactly
//!   the paths the reference matches.

use crate::policy::model::PathPattern;
use crate::policy::path::RequestPath;

/// Runs one input.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match text.split_once('\n') {
        Some((pattern, path)) => check(Some(pattern), path),
        None => check(None, &text),
    }
}

/// Checks one request path, and one pattern against it when given.
pub(crate) fn check(pattern: Option<&str>, path: &str) {
    let parsed = RequestPath::parse(path);
    let expected = reference::canonical(path);
    let segments: Option<Vec<Vec<u8>>> = parsed.as_ref().ok().map(owned_segments);
    assert_eq!(
        segments, expected,
        "RequestPath::parse({path:?}) disagrees with the reference ({parsed:?})"
    );
    if let Some(segments) = &segments {
        assert_unambiguous(path);
        for encoded in [
            reference::encode(segments, Encoding::Minimal),
            reference::encode(segments, Encoding::EveryByte),
        ] {
            let again = RequestPath::parse(&encoded).map(|p| owned_segments(&p));
            assert_eq!(
                again.as_ref(),
                Ok(segments),
                "{path:?} re-encoded as {encoded:?} parses differently"
            );
        }
    }

    let Some(pattern) = pattern else { return };
    let compiled = PathPattern::try_from(pattern.to_string());
    let reference_pattern = reference::pattern(pattern);
    assert_eq!(
        compiled.is_ok(),
        reference_pattern.is_some(),
        "pattern {pattern:?}: compiled {compiled:?}, reference {reference_pattern:?}"
    );
    if let (Ok(compiled), Some(reference_pattern), Ok(request)) =
        (&compiled, &reference_pattern, &parsed)
    {
        assert_eq!(compiled.to_string(), pattern, "a pattern prints as written");
        let expected = reference::matches(reference_pattern, &owned_segments(request));
        assert_eq!(
            compiled.matches(request),
            expected,
            "pattern {pattern:?} against path {path:?}"
        );
    }
}

fn owned_segments(path: &RequestPath<'_>) -> Vec<Vec<u8>> {
    path.segments().iter().map(|s| s.to_vec()).collect()
}

/// What an accepted path must not contain, checked on the raw text.
fn assert_unambiguous(path: &str) {
    assert!(
        path.starts_with('/'),
        "{path:?} accepted without a leading /"
    );
    assert!(!path.contains("//"), "{path:?} accepted with //");
    for raw in [';', '\\', '\0'] {
        assert!(!path.contains(raw), "{path:?} accepted with a raw {raw:?}");
    }
    let bytes = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        let escape = bytes.get(i + 1..i + 3);
        let value = escape.and_then(|e| Some(reference::hex(e[0])? * 16 + reference::hex(e[1])?));
        assert!(
            value.is_some(),
            "{path:?} accepted with a bad % at byte {i}"
        );
        assert!(
            !matches!(value, Some(b'/' | b'\\' | 0)),
            "{path:?} accepted with an encoded /, \\ or NUL at byte {i}"
        );
    }
    for raw_segment in path[1..].split('/') {
        assert!(
            raw_segment != "." && raw_segment != "..",
            "{path:?} accepted with a dot segment"
        );
    }
}

/// How [`reference::encode`] spells a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Encoding {
    /// Unreserved characters as they are, every other byte as `%XX`.
    Minimal,
    /// Every byte as `%xx`, lower-case hex.
    EveryByte,
}

/// DESIGN.md's path rules, written out directly: the yardstick the parser and the
/// matcher are held to.
pub(crate) mod reference {
    use super::Encoding;

    /// One segment of a path pattern.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum PatternSegment {
        /// These bytes, after percent-decoding.
        Literal(Vec<u8>),
        /// `*`: exactly one non-empty segment.
        One,
        /// `**`: zero or more segments; only at the end.
        Rest,
    }

    /// The value of one hex digit.
    pub(crate) fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }

    /// A segment with `%XX` decoded; `None` for a `%` without two hex digits.
    fn decode(raw: &str) -> Option<Vec<u8>> {
        let bytes = raw.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = bytes;
        while let Some((&first, tail)) = rest.split_first() {
            if first == b'%' {
                let (digits, after) = (tail.get(..2)?, tail.get(2..)?);
                out.push(hex(digits[0])? * 16 + hex(digits[1])?);
                rest = after;
            } else {
                out.push(first);
                rest = tail;
            }
        }
        Some(out)
    }

    /// One unambiguous segment (raw text), decoded; `is_last` allows it to be empty.
    fn segment(raw: &str, is_last: bool) -> Option<Vec<u8>> {
        // Raw `;` (path parameters), raw `\` and raw NUL are refused outright.
        if raw.contains([';', '\\', '\0']) {
            return None;
        }
        let decoded = decode(raw)?;
        let ambiguous = decoded.contains(&b'/')
            || decoded.contains(&b'\\')
            || decoded.contains(&0)
            || decoded == b"."
            || decoded == b".."
            || (decoded.is_empty() && !is_last);
        (!ambiguous).then_some(decoded)
    }

    /// The decoded segments of an unambiguous request path, or `None` when the
    /// path must be refused.
    pub(crate) fn canonical(path: &str) -> Option<Vec<Vec<u8>>> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len() - 1;
        parts
            .iter()
            .enumerate()
            .map(|(i, part)| segment(part, i == last))
            .collect()
    }

    /// A compiled pattern, or `None` when a policy must refuse it.
    pub(crate) fn pattern(raw: &str) -> Option<Vec<PatternSegment>> {
        let rest = raw.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len() - 1;
        let mut out = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            out.push(match *part {
                "**" if i == last => PatternSegment::Rest,
                "*" => PatternSegment::One,
                p if p.contains('*') => return None,
                p => PatternSegment::Literal(segment(p, i == last)?),
            });
        }
        Some(out)
    }

    /// Whether `pattern` matches a path's decoded segments.
    pub(crate) fn matches(pattern: &[PatternSegment], path: &[Vec<u8>]) -> bool {
        match (pattern.split_first(), path.split_first()) {
            (None, None) => true,
            (Some((PatternSegment::Rest, _)), _) => true,
            (Some((PatternSegment::One, more)), Some((seg, rest))) => {
                !seg.is_empty() && matches(more, rest)
            }
            (Some((PatternSegment::Literal(lit), more)), Some((seg, rest))) => {
                lit == seg && matches(more, rest)
            }
            _ => false,
        }
    }

    /// A request path whose segments are `segments`, spelled as `how` says.
    pub(crate) fn encode(segments: &[Vec<u8>], how: Encoding) -> String {
        let mut out = String::new();
        for seg in segments {
            out.push('/');
            for &b in seg {
                let plain = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
                match how {
                    Encoding::Minimal if plain => out.push(char::from(b)),
                    Encoding::Minimal => out.push_str(&format!("%{b:02X}")),
                    Encoding::EveryByte => out.push_str(&format!("%{b:02x}")),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_examples_hold_for_the_reference_too() {
        let pat = |p: &str| reference::pattern(p).unwrap();
        let path = |p: &str| reference::canonical(p).unwrap();
        assert!(reference::matches(&pat("/a/**"), &path("/a")));
        assert!(reference::matches(&pat("/a/**"), &path("/a/")));
        assert!(reference::matches(&pat("/a/**"), &path("/a/b/c")));
        assert!(!reference::matches(&pat("/a/**"), &path("/ab")));
        assert!(!reference::matches(&pat("/a/*"), &path("/a/")));
        assert!(reference::matches(&pat("/admin"), &path("/%61dmin")));
        assert!(reference::pattern("/a/**/b").is_none());
        assert!(reference::canonical("/a/%2e%2E/b").is_none());
        assert!(reference::canonical("/a%+1").is_none());
    }

    #[test]
    fn a_disagreement_is_a_crash() {
        // The reference and the parser agree on these; a run with a path the
        // parser wrongly accepted would panic, which is what the fuzzer reports.
        run(b"/repos/acme/*/pulls/**\n/repos/acme/widgets/pulls/7");
        run(b"/a%2Fb");
        let outcome = std::panic::catch_unwind(|| assert_unambiguous("/a/../b"));
        assert!(outcome.is_err(), "a dot segment must fail the invariant");
    }
}
