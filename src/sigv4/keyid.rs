//! Real-looking AWS access key ids (`AKIA…`, `ASIA…` and the other documented
//! prefix, followed by 16 upper-case letters or digits), which a sandbox
//! should never hold: it only ever has the placeholder.

/// Prefixes of AWS access key ids: long-term user keys (`AKIA`) and temporary
/// STS credentials (`ASIA`).
const PREFIXES: [&[u8]; 2] = [b"AKIA", b"ASIA"];

/// The first real-looking access key id in `text`: a prefix and 16 characters
/// of `A-Z 0-9`, not part of a longer run of letters and digits.
pub fn find_access_key_id(text: &[u8]) -> Option<&[u8]> {
    let is_word = |b: u8| b.is_ascii_alphanumeric();
    let mut start = 0;
    while let Some(offset) = memchr::memchr(b'A', &text[start..]) {
        let at = start + offset;
        start = at + 1;
        let candidate = text.get(at..at + 20)?;
        if !PREFIXES.iter().any(|p| candidate.starts_with(p)) {
            continue;
        }
        let body_ok = candidate[4..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        let bounded =
            (at == 0 || !is_word(text[at - 1])) && text.get(at + 20).is_none_or(|b| !is_word(*b));
        if body_ok && bounded {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::find_access_key_id;
    use proptest::prelude::*;

    #[test]
    fn real_looking_key_ids_are_found_wherever_they_are() {
        for text in [
            "AKIAIOSFODNN7EXAMPLE",
            "Credential=ASIAI44QH8DHBEXAMPLE/20261205/us-east-1/s3/aws4_request",
            "x-amz-credential=AKIAI44QH8DHBEXAMPLE%2F20261205",
            "user AKIAIOSFODNN7EXAMPLE:secret",
        ] {
            assert!(find_access_key_id(text.as_bytes()).is_some(), "{text}");
        }
        for text in [
            "__AWS__",
            "AKIAIOSFODNN7EXAMPL",
            "XAKIAIOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPLEX",
            "akiaiosfodnn7example",
            "AKIAiosfodnn7EXAMPLE",
            "ABIAIOSFODNN7EXAMPLE",
        ] {
            assert!(find_access_key_id(text.as_bytes()).is_none(), "{text}");
        }
    }

    proptest! {
        #[test]
        fn what_is_found_is_a_bounded_key_id(text in prop::collection::vec(prop_oneof![Just(b'A'), Just(b'K'), Just(b'I'), Just(b'S'), Just(b'7'), Just(b'/'), any::<u8>()], 0..120)) {
            if let Some(found) = find_access_key_id(&text) {
                prop_assert_eq!(found.len(), 20);
                prop_assert!(found.starts_with(b"AKIA") || found.starts_with(b"ASIA"));
                prop_assert!(found.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            }
        }
    }
}
