//! Percent-encoding (RFC 3986) with upper-case hex digits.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Every byte but the RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const BUT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// [`BUT_UNRESERVED`] and `.` as well, so that `.` and `..` cannot become dot
/// segments.
const PATH_SEGMENT: &AsciiSet = &BUT_UNRESERVED.add(b'.');

/// Percent-encodes every byte of `value` but the unreserved characters: the form
/// of a value in a query string.
pub fn percent_encode_unreserved(value: &str) -> String {
    encode(value, BUT_UNRESERVED)
}

/// Percent-encodes `value` as one URL path segment: every byte but `A-Z a-z 0-9 -
/// _ ~`, so that no `/`, `?`, `#` or dot segment can change the URL's shape.
pub fn percent_encode_path_segment(value: &str) -> String {
    encode(value, PATH_SEGMENT)
}

fn encode(value: &str, set: &'static AsciiSet) -> String {
    // Sized for the worst case up front: the value may be a secret, and a growing
    // String would leave copies of its prefix in freed memory.
    let mut out = String::with_capacity(value.len() * 3);
    out.extend(utf8_percent_encode(value, set));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_stay_and_the_rest_is_upper_case_hex() {
        assert_eq!(percent_encode_unreserved("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            percent_encode_unreserved("a b/c?d=e&f+g%é"),
            "a%20b%2Fc%3Fd%3De%26f%2Bg%25%C3%A9"
        );
    }

    #[test]
    fn a_path_segment_stays_one_segment() {
        assert_eq!(percent_encode_path_segment("a-1f2e_~"), "a-1f2e_~");
        assert_eq!(
            percent_encode_path_segment("../tasks?x=1#y"),
            "%2E%2E%2Ftasks%3Fx%3D1%23y"
        );
    }
}
