//! Durations as written in config and policy files: `500ms`, `10s`, `5m`, `1h`.

use std::time::Duration;

/// Parses `N` followed by one of the units `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration `{text}` has no unit (use ms, s, m or h)"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("duration `{text}` must start with a whole number"))?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "duration `{text}` has unknown unit `{unit}` (use ms, s, m or h)"
            ))
        }
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration `{text}` is too large"))
}

/// Serde adapter: a `Duration` field written as a duration string.
pub mod serde_str {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Deserializes a duration string such as `10s`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    /// Deserializes an optional duration string.
    pub mod option {
        use serde::{Deserialize, Deserializer};
        use std::time::Duration;

        /// Deserializes `Option<Duration>` from an optional duration string.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(text) => super::super::parse_duration(&text)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "10", "s", "1.5s", "10d", "-1s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }
}
