//! Property tests: an issued token carries its claims back, and nothing else
//! verifies: not another key's token, not an edited one, not arbitrary text.

use super::*;
use crate::fuzzing::task_token::{check_issued, check_presented, Edit, FUZZ_KEY, FUZZ_NOW};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn claims() -> impl Strategy<Value = Claims> {
    let src = prop_oneof![
        Just(None),
        any::<[u8; 4]>().prop_map(|b| Some(IpAddr::V4(Ipv4Addr::from(b)))),
        any::<[u8; 16]>().prop_map(|b| Some(IpAddr::V6(Ipv6Addr::from(b)))),
    ];
    (".{0,24}", ".{0,24}", FUZZ_NOW + 1..u64::MAX, src).prop_map(|(id, policy, exp, src)| Claims {
        id,
        policy,
        exp,
        src,
    })
}

/// Characters an edit may put in: the token alphabet, its separators, and others.
fn replacement() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
                .chars()
                .collect::<Vec<_>>()
        ),
        1 => any::<char>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn an_issued_token_round_trips_its_claims(claims in claims()) {
        let key = TaskKey::from_bytes(&FUZZ_KEY);
        let token = key.mint(&claims);
        prop_assert_eq!(key.verify(&token, FUZZ_NOW), Some(claims.clone()));
        prop_assert_eq!(key.verify(&token, claims.exp), None);
        prop_assert_eq!(TaskKey::from_bytes(&[9; 32]).verify(&token, FUZZ_NOW), None);
    }

    #[test]
    fn replacing_any_one_character_fails(claims in claims(), c in replacement()) {
        // Every position of the token, not a sampled one: the last character of
        // each base64 part carries spare bits, the places a lax decoder forgives.
        let key = TaskKey::from_bytes(&FUZZ_KEY);
        let token = key.mint(&claims);
        for i in 0..token.chars().count() {
            let edited = Edit::Replace(i, c).apply(&token);
            if edited != token {
                prop_assert_eq!(key.verify(&edited, FUZZ_NOW), None, "{} at {}", c, i);
            }
        }
    }

    #[test]
    fn inserting_deleting_or_truncating_fails(
        claims in claims(),
        c in replacement(),
        at in any::<usize>(),
    ) {
        for edit in [Edit::Insert(at, c), Edit::Delete(at), Edit::Truncate(at)] {
            check_issued(&claims, edit);
        }
    }

    #[test]
    fn arbitrary_text_never_verifies(text in "(tg1\\.)?[A-Za-z0-9_.=-]{0,80}|.{0,80}") {
        let key = TaskKey::from_bytes(&FUZZ_KEY);
        prop_assert_eq!(key.verify(&text, FUZZ_NOW), None);
        check_presented(&text);
    }

    #[test]
    fn another_keys_token_never_verifies(claims in claims(), other in any::<[u8; 32]>()) {
        prop_assume!(other != FUZZ_KEY);
        let token = TaskKey::from_bytes(&other).mint(&claims);
        prop_assert_eq!(TaskKey::from_bytes(&FUZZ_KEY).verify(&token, FUZZ_NOW), None);
    }
}
