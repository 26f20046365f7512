//! Request paths and path patterns.
//!
//! A request path is checked for ambiguity before any rule sees it: an upstream that
//! normalizes `/a/../admin` or `/a%2Fb` differently from us would let a request slip
//! past a rule. Matching runs on percent-decoded segments, so `/%61dmin` cannot
//! dodge a rule written for `/admin`.

use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// Why a request path was refused as ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("the path does not start with `/`")]
    NotAbsolute,
    /// `.` or `..` segment, raw or percent-encoded.
    #[error("the path has a dot segment (`.` or `..`)")]
    DotSegment,
    /// `%2F` or `%5C`, or a raw backslash.
    #[error("the path has an encoded `/` or a `\\`")]
    EncodedSeparator,
    /// NUL, raw or encoded.
    #[error("the path has a NUL byte")]
    Nul,
    /// `%` not followed by two hex digits.
    #[error("the path has a malformed percent-encoding")]
    BadPercent,
    /// `//` inside the path, which some servers merge into one `/`.
    #[error("the path has an empty segment (`//`)")]
    EmptySegment,
    /// A raw `;`: Tomcat, Jetty and Spring strip `;params` from each segment, so
    /// `/admin;x` or `/a/..;/admin` would mean something else upstream.
    #[error("the path has a `;` (path parameters are read differently by different servers)")]
    PathParameter,
}

/// A request path split into percent-decoded segments, proven unambiguous.
///
/// `/` is one empty segment; `/a/` is `["a", ""]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath<'a> {
    segments: Vec<Cow<'a, [u8]>>,
}

impl<'a> RequestPath<'a> {
    /// Parses the path part of a request target (no query).
    pub fn parse(raw: &'a str) -> Result<Self, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        let mut segments = Vec::with_capacity(8);
        let count = rest.split('/').count();
        for (i, seg) in rest.split('/').enumerate() {
            if seg.is_empty() && i + 1 != count {
                return Err(PathError::EmptySegment);
            }
            let decoded = decode_segment(seg)?;
            if decoded.as_ref() == b"." || decoded.as_ref() == b".." {
                return Err(PathError::DotSegment);
            }
            segments.push(decoded);
        }
        Ok(Self { segments })
    }

    /// The decoded segments.
    pub fn segments(&self) -> &[Cow<'a, [u8]>] {
        &self.segments
    }
}

fn decode_segment(seg: &str) -> Result<Cow<'_, [u8]>, PathError> {
    let bytes = seg.as_bytes();
    if bytes.contains(&b'\\') {
        return Err(PathError::EncodedSeparator);
    }
    if bytes.contains(&b';') {
        return Err(PathError::PathParameter);
    }
    if bytes.contains(&0) {
        return Err(PathError::Nul);
    }
    if !bytes.contains(&b'%') {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadPercent);
            };
            let b = (hi * 16 + lo) as u8;
            match b {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                0 => return Err(PathError::Nul),
                _ => out.push(b),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(out))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Vec<u8>),
    /// `*`: exactly one non-empty segment.
    One,
    /// `**`: zero or more segments; only last.
    Rest,
}

/// A path pattern from a policy: `/repos/acme/*/pulls/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    raw: String,
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Whether the request path matches this pattern.
    pub fn matches(&self, path: &RequestPath<'_>) -> bool {
        let req = path.segments();
        let mut i = 0;
        for (pi, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Rest => {
                    debug_assert_eq!(pi + 1, self.segments.len());
                    return true;
                }
                Segment::One => match req.get(i) {
                    Some(s) if !s.is_empty() => i += 1,
                    _ => return false,
                },
                Segment::Literal(lit) => match req.get(i) {
                    Some(s) if s.as_ref() == lit.as_slice() => i += 1,
                    _ => return false,
                },
            }
        }
        i == req.len()
    }
}

impl TryFrom<String> for PathPattern {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(format!("path pattern `{raw}` must start with `/`"));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let seg = match *part {
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(format!("path pattern `{raw}`: `**` may only end a pattern")),
                "*" => Segment::One,
                p if p.contains('*') => {
                    return Err(format!(
                        "path pattern `{raw}`: `*` and `**` must be whole segments"
                    ))
                }
                p => {
                    let decoded =
                        decode_segment(p).map_err(|e| format!("path pattern `{raw}`: {e}"))?;
                    if decoded.as_ref() == b"." || decoded.as_ref() == b".." {
                        return Err(format!("path pattern `{raw}` has a dot segment"));
                    }
                    if decoded.is_empty() && i + 1 != parts.len() {
                        return Err(format!("path pattern `{raw}` has an empty segment (`//`)"));
                    }
                    Segment::Literal(decoded.into_owned())
                }
            };
            segments.push(seg);
        }
        // `/a/**` must also match `/a` itself, which has no trailing empty segment.
        Ok(Self { raw, segments })
    }
}

impl<'de> Deserialize<'de> for PathPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        PathPattern::try_from(raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> PathPattern {
        PathPattern::try_from(s.to_string()).unwrap()
    }

    fn m(p: &str, path: &str) -> bool {
        pat(p).matches(&RequestPath::parse(path).unwrap())
    }

    #[test]
    fn star_is_one_non_empty_segment() {
        assert!(m("/repos/*/pulls", "/repos/acme/pulls"));
        assert!(!m("/repos/*/pulls", "/repos/acme/x/pulls"));
        assert!(!m("/repos/*", "/repos/"));
        assert!(!m("/repos/*", "/repos"));
    }

    #[test]
    fn double_star_is_zero_or_more_segments() {
        assert!(m("/a/**", "/a"));
        assert!(m("/a/**", "/a/"));
        assert!(m("/a/**", "/a/b/c"));
        assert!(!m("/a/**", "/ab"));
        assert!(m("/**", "/"));
        assert!(m("/**", "/anything/at/all"));
    }

    #[test]
    fn literals_are_exact_and_decoded() {
        assert!(m("/admin", "/%61dmin"));
        assert!(!m("/admin", "/admin/"));
        assert!(!m("/admin", "/Admin"));
        assert!(m("/", "/"));
        assert!(
            m("/a%3Bb", "/a%3bb"),
            "an encoded `;` is an ordinary character"
        );
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (path, err) in [
            ("/a/../b", PathError::DotSegment),
            ("/a/./b", PathError::DotSegment),
            ("/a/%2e%2e/b", PathError::DotSegment),
            ("/a/.%2E", PathError::DotSegment),
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::EncodedSeparator),
            ("/a%00", PathError::Nul),
            ("/a%zz", PathError::BadPercent),
            ("/a%2", PathError::BadPercent),
            ("a/b", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("//admin", PathError::EmptySegment),
            ("/admin;x/settings", PathError::PathParameter),
            ("/a/..;/admin", PathError::PathParameter),
            ("/a//b", PathError::EmptySegment),
        ] {
            assert_eq!(RequestPath::parse(path), Err(err), "{path}");
        }
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for bad in ["a", "/a/**/b", "/a*", "/../x", "/a//b", "/%2F"] {
            assert!(PathPattern::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod props;
