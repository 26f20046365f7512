//! A sealed audit record: its sequence number and its canonical JSON line.

use bytes::Bytes;

/// One record after sealing: chained, signed where the mode says so, serialized in
/// RFC 8785 canonical form. Every sink receives exactly these bytes (or a rendering
/// of them), so the line a SIEM stores verifies like the line in the file.
#[derive(Debug, Clone)]
pub struct SealedRecord {
    /// The record's `seq`.
    pub seq: u64,
    /// Canonical JSON of the whole record, `sig` included, without a newline.
    pub line: Bytes,
}
