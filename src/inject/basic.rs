//! `Authorization: Basic` credentials: decoded to find and replace placeholders
//! inside them, and encoded again.

use base64::Engine;
use zeroize::Zeroizing;

/// The decoded `user:password` bytes of a `Basic <base64>` header value (scheme
/// case-insensitive, surrounding whitespace ignored); `None` for anything else.
pub fn decode(value: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let text = std::str::from_utf8(value).ok()?;
    let text = text.trim();
    let (scheme, encoded) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .map(Zeroizing::new)
}

/// `Basic <base64 of credentials>`.
pub fn encode(credentials: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = b"Basic ".to_vec();
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(credentials)
            .as_bytes(),
    );
    Zeroizing::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_basic_only() {
        assert_eq!(
            decode(b"Basic dXNlcjpwYXNz").unwrap().as_slice(),
            b"user:pass"
        );
        assert_eq!(
            decode(b"  basic   dXNlcjpwYXNz ").unwrap().as_slice(),
            b"user:pass"
        );
        assert!(decode(b"Bearer dXNlcjpwYXNz").is_none());
        assert!(decode(b"Basic not*base64").is_none());
        assert_eq!(decode(b"Basic").unwrap().as_slice(), b"");
        assert!(decode(&[0xff, b' ', b'a']).is_none());
    }

    proptest! {
        #[test]
        fn any_credentials_round_trip(credentials in proptest::collection::vec(any::<u8>(), 0..200)) {
            let encoded = encode(&credentials);
            let decoded = decode(&encoded).unwrap();
            prop_assert_eq!(decoded.as_slice(), &credentials[..]);
        }

        #[test]
        fn decoding_anything_never_panics_and_reencodes_to_an_equivalent_value(value in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(decoded) = decode(&value) {
                let again = decode(&encode(&decoded)).unwrap();
                prop_assert_eq!(again.as_slice(), decoded.as_slice());
            }
        }
    }
}
