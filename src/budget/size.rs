//! Byte sizes as policies write them: a plain number of bytes, or a number
//! with a binary unit (`512`, `1KiB`, `64MiB`, `4GiB`).

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("size `{0}` must be a number of bytes or a number with KiB, MiB, GiB or TiB (as in 64MiB)")]
pub struct SizeError(pub String);

/// The number of bytes `text` names.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let bad = || SizeError(text.chars().take(32).collect());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit.trim_start() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return Err(bad()),
    };
    number.checked_mul(1u64 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_reads_or_is_refused_and_written_sizes_read_back(
            text in "\\PC{0,24}",
            n in 0u64..(1 << 20),
            unit in prop::sample::select(&[("", 0u32), ("KiB", 10), ("MiB", 20), ("GiB", 30), ("TiB", 40)][..]),
        ) {
            let _ = parse_size(&text);
            prop_assert_eq!(parse_size(&format!("{n}{}", unit.0)), Ok(n << unit.1));
        }
    }

    #[test]
    fn sizes_read_as_written() {
        for (text, bytes) in [
            ("512", 512),
            ("0", 0),
            ("1KiB", 1024),
            ("64MiB", 64 << 20),
            ("4GiB", 4 << 30),
            ("2 TiB", 2 << 40),
            ("7B", 7),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in [
            "",
            "MiB",
            "1.5MiB",
            "-1",
            "64mb",
            "64MB",
            "1KiBs",
            "99999999999TiB",
            "1e6",
        ] {
            assert!(parse_size(text).is_err(), "{text}");
        }
    }
}
