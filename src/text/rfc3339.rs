//! RFC 3339 timestamps in the one form records use,
//! `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, always three fraction digits), and parsing of
//! any RFC 3339 timestamp back to epoch milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What a time outside the calendar `time` supports (years 1..=9999 around) is
/// printed as.
const EPOCH: &str = "1970-01-01T00:00:00.000Z";

/// `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ`; a time before 1970 as the epoch.
pub fn rfc3339_millis(at: SystemTime) -> String {
    Millis::new(at).as_str().to_owned()
}

/// `at` as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds, truncated): the form
/// AWS's instance metadata service writes and botocore parses strictly.
pub fn rfc3339_seconds(at: SystemTime) -> String {
    let millis = Millis::new(at);
    let whole = millis.as_str().get(..19).unwrap_or("1970-01-01T00:00:00");
    format!("{whole}Z")
}

/// Epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_from_epoch_ms(ms: i64) -> String {
    format_nanos(i128::from(ms) * 1_000_000)
}

fn format_nanos(nanos: i128) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => EPOCH.into(),
    }
}

/// Parses an RFC 3339 timestamp (`2026-11-23T05:00:00.123Z`, any fraction length,
/// `Z` or `±hh:mm`) to epoch milliseconds, the fraction truncated to
/// milliseconds. `None` when it is not RFC 3339 or names no real date.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// [`rfc3339_millis`] on the stack, for the writer's per-record `ts`.
pub struct Millis {
    buf: [u8; 32],
    len: usize,
}

impl Millis {
    /// `at` in UTC to the millisecond (truncated), `1970-01-01T00:00:00.000Z` for
    /// a time before the epoch or beyond what `time` represents.
    pub fn new(at: SystemTime) -> Self {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let nanos = i128::from(since.as_secs()) * 1_000_000_000 + i128::from(since.subsec_nanos());
        let mut out = Self {
            buf: [0; 32],
            len: 0,
        };
        let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
            out.push_str("1970-01-01T00:00:00.000Z");
            return out;
        };
        // At or after the epoch: the year is positive.
        out.push_number(u32::try_from(t.year()).unwrap_or(0), 4);
        out.push_str("-");
        out.push_number(u8::from(t.month()).into(), 2);
        out.push_str("-");
        out.push_number(t.day().into(), 2);
        out.push_str("T");
        out.push_number(t.hour().into(), 2);
        out.push_str(":");
        out.push_number(t.minute().into(), 2);
        out.push_str(":");
        out.push_number(t.second().into(), 2);
        out.push_str(".");
        out.push_number(t.millisecond().into(), 3);
        out.push_str("Z");
        out
    }

    /// The timestamp.
    pub fn as_str(&self) -> &str {
        // Only ASCII was written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    fn push_str(&mut self, s: &str) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
    }

    /// `n` in decimal, zero-padded to `width` digits (at most 10 digits in all,
    /// so 24 bytes of fixed text and a `u32` year fit the buffer).
    fn push_number(&mut self, mut n: u32, width: usize) {
        let digits = n.checked_ilog10().map_or(1, |d| d as usize + 1).max(width);
        for slot in self.buf[self.len..self.len + digits].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len += digits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let at = UNIX_EPOCH + Duration::from_nanos(1_795_410_000_123_999_999);
        assert_eq!(rfc3339_millis(at), "2026-11-23T05:00:00.123Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), EPOCH);
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_secs(1)),
            EPOCH,
            "before 1970"
        );
        assert_eq!(
            rfc3339_from_epoch_ms(1_795_410_000_123),
            "2026-11-23T05:00:00.123Z"
        );
        assert_eq!(rfc3339_from_epoch_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_seconds(at), "2026-11-23T05:00:00Z");
    }

    #[test]
    fn parses_any_rfc3339_form_to_milliseconds() {
        assert_eq!(
            parse_rfc3339_ms("2026-11-23T05:00:00.123Z"),
            Some(1_795_410_000_123)
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-11-23T07:00:00.1234567+02:00"),
            Some(1_795_410_000_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T00:00:00.5Z"),
            Some(1_709_164_800_500)
        );
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(parse_rfc3339_ms("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2026-11-23 05:00"), None);
        assert_eq!(parse_rfc3339_ms("2026-11-23T05:00:00.Z"), None);
        assert_eq!(parse_rfc3339_ms("2026-11-23T05:00:00.123"), None);
        for ms in [0i64, 86_399_999, 951_782_400_000, 4_102_444_800_001] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_from_epoch_ms(ms)), Some(ms));
        }
    }
}
