//! Property tests: request paths and path patterns against the reference in
//! `crate::fuzzing::path` (DESIGN.md's rules written out), and matching that must
//! hold whatever spelling the client chose.

use super::*;
use crate::fuzzing::path::{check, reference, Encoding};
use proptest::prelude::*;
use proptest::sample::select;

/// Pieces a hostile path is made of: escapes good and bad, dots, separators.
const PIECES: &[&str] = &[
    "a", "b", "Z", "0", "~", "-", "é", ".", "..", ";", "\\", "\0", "*", "**", "%", "%2", "%2e",
    "%2E", "%2f", "%2F", "%5c", "%5C", "%00", "%41", "%61", "%zz", "%3B", "%+1", "%e9", "?",
];

fn hostile_segment() -> impl Strategy<Value = String> {
    prop::collection::vec(select(PIECES), 0..4).prop_map(|p| p.concat())
}

fn hostile_path() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(hostile_segment(), 1..6),
    )
        .prop_map(|(rooted, segs)| {
            let joined = segs.join("/");
            if rooted {
                format!("/{joined}")
            } else {
                joined
            }
        })
}

/// A valid pattern segment, and how to instantiate it in a matching path.
#[derive(Debug, Clone)]
enum Piece {
    Literal(String),
    One(String),
    Rest(Vec<String>),
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9_~-]{1,6}"
}

fn pattern_and_path() -> impl Strategy<Value = Vec<Piece>> {
    let piece = prop_oneof![
        3 => name().prop_map(Piece::Literal),
        1 => name().prop_map(Piece::One),
    ];
    (
        prop::collection::vec(piece, 0..5),
        prop::option::of(prop::collection::vec(
            prop_oneof![name(), Just(String::new())],
            0..3,
        )),
    )
        .prop_map(|(mut pieces, rest)| {
            pieces.extend(rest.map(Piece::Rest));
            pieces
        })
}

fn render(pieces: &[Piece]) -> (String, String) {
    let mut pattern = String::new();
    let mut path = String::new();
    for piece in pieces {
        match piece {
            Piece::Literal(lit) => {
                pattern.push_str(&format!("/{lit}"));
                path.push_str(&format!("/{lit}"));
            }
            Piece::One(seg) => {
                pattern.push_str("/*");
                path.push_str(&format!("/{seg}"));
            }
            Piece::Rest(segs) => {
                pattern.push_str("/**");
                // `/a/**` matches `/a` itself: zero segments add nothing.
                for (i, seg) in segs.iter().enumerate() {
                    // Only the last segment may be empty (a trailing `/`).
                    if seg.is_empty() && i + 1 != segs.len() {
                        path.push_str("/x");
                    } else {
                        path.push_str(&format!("/{seg}"));
                    }
                }
            }
        }
    }
    if pattern.is_empty() {
        pattern.push('/');
    }
    if path.is_empty() {
        path.push('/');
    }
    (pattern, path)
}

fn compiled(pattern: &str) -> PathPattern {
    PathPattern::try_from(pattern.to_string()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hostile_paths_parse_as_the_rules_say(path in hostile_path()) {
        check(None, &path);
    }

    #[test]
    fn hostile_patterns_compile_and_match_as_the_rules_say(
        pattern in hostile_path(),
        path in hostile_path(),
    ) {
        check(Some(&pattern), &path);
    }

    #[test]
    fn an_instantiated_pattern_matches_however_it_is_spelled(
        pieces in pattern_and_path(),
        every_byte in any::<bool>(),
    ) {
        let (pattern, path) = render(&pieces);
        let request = RequestPath::parse(&path).unwrap();
        prop_assert!(compiled(&pattern).matches(&request), "{pattern} vs {path}");
        let segments: Vec<Vec<u8>> = request.segments().iter().map(|s| s.to_vec()).collect();
        let how = if every_byte { Encoding::EveryByte } else { Encoding::Minimal };
        let respelled = reference::encode(&segments, how);
        let request = RequestPath::parse(&respelled).unwrap();
        prop_assert!(compiled(&pattern).matches(&request), "{pattern} vs {respelled}");
        check(Some(&pattern), &path);
    }

    #[test]
    fn changing_one_literal_segment_breaks_the_match(
        pieces in pattern_and_path(),
        pick in any::<prop::sample::Index>(),
    ) {
        let literals: Vec<usize> = pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Piece::Literal(_)))
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!literals.is_empty());
        let (pattern, _) = render(&pieces);
        let mut changed = pieces.clone();
        let i = literals[pick.index(literals.len())];
        if let Piece::Literal(lit) = &mut changed[i] {
            lit.push('!');
        }
        let (_, path) = render(&changed);
        let request = RequestPath::parse(&path).unwrap();
        prop_assert!(!compiled(&pattern).matches(&request), "{pattern} vs {path}");
    }

    #[test]
    fn one_segment_too_many_or_too_few_fails_without_a_double_star(
        pieces in pattern_and_path(),
        extra in name(),
    ) {
        prop_assume!(!pieces.iter().any(|p| matches!(p, Piece::Rest(_))));
        let (pattern, path) = render(&pieces);
        let longer = format!("{}/{extra}", path.trim_end_matches('/'));
        prop_assert!(!compiled(&pattern).matches(&RequestPath::parse(&longer).unwrap()));
        if let Some((shorter, _)) = path.rsplit_once('/').filter(|(s, _)| !s.is_empty()) {
            prop_assert!(!compiled(&pattern).matches(&RequestPath::parse(shorter).unwrap()));
        }
    }
}
