//! Text forms shared across the crate: lower-case hex, percent-encoding and the
//! RFC 3339 timestamps records carry. Each is written once, here, so that every
//! module that prints one prints the same bytes.

mod hex;
mod percent;
mod rfc3339;

pub use hex::{hex, hex_into};
pub use percent::{percent_encode_path_segment, percent_encode_unreserved};
pub use rfc3339::{
    parse_rfc3339_ms, rfc3339_from_epoch_ms, rfc3339_millis, rfc3339_seconds, Millis,
};
