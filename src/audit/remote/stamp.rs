//! Small helpers shared by the renderers: the record's `ts` as epoch milliseconds,
//! RFC 3339 formatting, and the host name put in syslog and HEC envelopes.
//!
//! Dates are computed with the proleptic Gregorian day-count algorithm (H. Hinnant's
//! `days_from_civil`), so no date library feature is needed.

use serde::Deserialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// The one field every renderer wants from a record. Parsing into it also
/// validates the whole line as JSON.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    ts: Option<String>,
}

/// Parses `line` as a JSON object and returns its `ts` as epoch milliseconds.
/// `Err` when the line is not JSON; `Ok(None)` when it has no usable `ts`.
pub(crate) fn record_ts_ms(line: &[u8]) -> Result<Option<i64>, String> {
    let head: Head =
        serde_json::from_slice(line).map_err(|e| format!("record is not a JSON object: {e}"))?;
    Ok(head.ts.as_deref().and_then(parse_rfc3339_ms))
}

/// Now, as epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
}

/// Parses an RFC 3339 timestamp (`2026-11-23T05:00:00.123Z`, any fraction length,
/// `Z` or `±hh:mm`) to epoch milliseconds (the fraction truncated to ms).
pub(crate) fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, sec) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    if civil_from_days(days_from_civil(y, mo, d)) != (y, mo, d) {
        return None;
    }
    let mut rest = &b[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let mut padded = [b'0'; 3];
        for (slot, c) in padded.iter_mut().zip(&frac[..n]) {
            *slot = *c;
        }
        ms = digits(&padded)?;
        rest = &frac[n..];
    }
    let offset_min = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let oh = digits(&[*oh1, *oh2])?;
            let om = digits(&[*om1, *om2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (the form records use).
pub(crate) fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Epoch milliseconds as a JSON number of seconds with three decimals (`1795410000.123`).
pub(crate) fn epoch_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// This machine's name as RFC 5424 allows it in HOSTNAME (1..=255 printable ASCII,
/// no spaces), from `/proc/sys/kernel/hostname`; `None` when unknown.
pub(crate) fn hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = raw.trim();
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|c| (33..=126).contains(&c))
        && name != "-";
    valid.then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_record_timestamps() {
        let ms = parse_rfc3339_ms("2026-11-23T05:00:00.123Z");
        assert_eq!(ms, Some(1_795_410_000_123));
        assert_eq!(
            format_rfc3339_ms(1_795_410_000_123),
            "2026-11-23T05:00:00.123Z"
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
        assert_eq!(parse_rfc3339_ms("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2026-11-23 05:00"), None);
        assert_eq!(parse_rfc3339_ms("2026-11-23T05:00:00.Z"), None);
        assert_eq!(epoch_seconds(1_795_410_000_123), "1795410000.123");
        assert_eq!(epoch_seconds(5), "0.005");
        for ms in [0i64, 86_399_999, 951_782_400_000, 4_102_444_800_001] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
    }

    #[test]
    fn reads_ts_and_rejects_non_json() {
        assert_eq!(
            record_ts_ms(br#"{"seq":1,"ts":"2026-11-23T05:00:00.123Z","x":{"ts":"no"}}"#),
            Ok(Some(1_795_410_000_123))
        );
        assert_eq!(record_ts_ms(br#"{"seq":1}"#), Ok(None));
        assert!(record_ts_ms(b"{\"seq\":1").is_err());
        assert!(record_ts_ms(b"[1]").is_err());
    }
}
