//! Fuzz target `basic`: `Authorization: Basic` decoding and re-encoding.
//!
//! Invariants: decoding any header value never panics; whatever decodes encodes
//! back to a value that decodes to the same credentials; any bytes, encoded,
//! decode to themselves.

use crate::inject::basic::{decode, encode};

/// Runs one input.
pub fn run(data: &[u8]) {
    if let Some(credentials) = decode(data) {
        let again = decode(&encode(&credentials));
        assert_eq!(
            again.as_ref().map(|d| d.as_slice()),
            Some(credentials.as_slice())
        );
    }
    let encoded = encode(data);
    assert!(http::HeaderValue::from_bytes(&encoded).is_ok());
    let decoded = decode(&encoded);
    assert_eq!(decoded.as_ref().map(|d| d.as_slice()), Some(data));
}
