//! Small helpers shared by the renderers: the record's `ts` as epoch milliseconds,
//! and the host name put in syslog and HEC envelopes. RFC 3339 itself is
//! [`crate::text`]'s.

use crate::text::parse_rfc3339_ms;
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
    fn epoch_seconds_have_three_decimals() {
        assert_eq!(epoch_seconds(1_795_410_000_123), "1795410000.123");
        assert_eq!(epoch_seconds(5), "0.005");
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
