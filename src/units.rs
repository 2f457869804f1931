//! SIZE and DUR values: parsing exactly as the contract says, and formatting for humans.
//!
//! SIZE: an integer with an optional suffix. `K M G T` and `KiB MiB GiB TiB` are powers of 1024,
//! `KB MB GB TB` powers of 1000, no suffix or `B` = bytes, case-insensitive; `N%` is a percentage
//! that the caller resolves against a base (memory available to guard, or `--memory` for `--warn`).
//! DUR: `500ms`, `30s`, `5m`, `1h`, or plain seconds.

use std::fmt;
use std::time::Duration;

/// The accepted SIZE forms, quoted in every error message about a size.
pub const SIZE_FORMS: &str = "an integer with an optional unit: 512M, 2G, 1GiB (powers of 1024), 500MB (powers of 1000), 1048576 (bytes), or a percentage like 50%";
/// The accepted DUR forms, quoted in every error message about a duration.
pub const DUR_FORMS: &str =
    "an integer with an optional unit: 500ms, 30s, 5m, 1h, or plain seconds";

/// A parsed SIZE: bytes, or a percentage still to be resolved against a base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    /// Whole percent, 1..=100.
    Percent(u8),
}

impl Size {
    /// Resolve a percentage against `base` bytes; plain byte values are returned as they are.
    pub fn resolve(self, base: u64) -> u64 {
        match self {
            Size::Bytes(b) => b,
            Size::Percent(p) => ((base as u128 * p as u128) / 100) as u64,
        }
    }
}

/// Why a SIZE or DUR could not be parsed (the caller adds which option it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError(pub String);

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The leading integer of a trimmed value and the (trimmed) unit after it.
fn number_and_unit(input: &str) -> Result<(u64, &str), UnitError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(UnitError("the value is empty".into()));
    }
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(end);
    if digits.is_empty() {
        return Err(UnitError("it does not start with a number".into()));
    }
    let n = digits
        .parse()
        .map_err(|_| UnitError("the number is too large".into()))?;
    Ok((n, unit.trim()))
}

/// Parse a SIZE. Percentages are returned unresolved.
pub fn parse_size(input: &str) -> Result<Size, UnitError> {
    let (n, unit) = number_and_unit(input)?;
    if unit == "%" {
        if n == 0 || n > 100 {
            return Err(UnitError("a percentage must be between 1% and 100%".into()));
        }
        return Ok(Size::Percent(n as u8));
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(UnitError(format!("unknown unit '{unit}'"))),
    };
    n.checked_mul(mult)
        .filter(|&b| b <= MAX_SIZE)
        .map(Size::Bytes)
        .ok_or_else(|| {
            UnitError("the value is larger than 1 EiB, more than any machine has".into())
        })
}

/// The largest SIZE: 1 EiB (a cgroup's own "no limit" is 2^63 - 1 bytes rounded to pages).
pub const MAX_SIZE: u64 = 1 << 60;

/// The longest DUR: 366 days (a deadline past it is a typo, and would overflow a clock).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parse a DUR.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let (n, unit) = number_and_unit(input)?;
    let ms_per: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => return Err(UnitError(format!("unknown unit '{other}'"))),
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .filter(|&d| d <= MAX_DURATION)
        .ok_or_else(|| UnitError("the value is longer than 366 days".into()))
}

/// Human form of a byte count: exact binary units when exact ("64 MiB"), else one decimal ("1.5 GiB").
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, unit) in UNITS {
        if bytes >= unit {
            if bytes % unit == 0 {
                return format!("{} {name}", bytes / unit);
            }
            return format!("{:.1} {name}", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes} B")
}

/// A count with thousands separated by commas ("1,234,567").
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Human form of a duration as the user would type it ("10s", "500ms", "5m").
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1000), "1,000");
        assert_eq!(format_count(1234567), "1,234,567");
    }
    use proptest::prelude::*;

    #[test]
    fn sizes_follow_the_contract() {
        assert_eq!(parse_size("0"), Ok(Size::Bytes(0)));
        assert_eq!(parse_size("100"), Ok(Size::Bytes(100)));
        assert_eq!(parse_size("100B"), Ok(Size::Bytes(100)));
        assert_eq!(parse_size("1k"), Ok(Size::Bytes(1024)));
        assert_eq!(parse_size("1KiB"), Ok(Size::Bytes(1024)));
        assert_eq!(parse_size("1KB"), Ok(Size::Bytes(1000)));
        assert_eq!(parse_size("64M"), Ok(Size::Bytes(64 << 20)));
        assert_eq!(parse_size("64mib"), Ok(Size::Bytes(64 << 20)));
        assert_eq!(parse_size("500MB"), Ok(Size::Bytes(500_000_000)));
        assert_eq!(parse_size("2G"), Ok(Size::Bytes(2 << 30)));
        assert_eq!(parse_size("2gb"), Ok(Size::Bytes(2_000_000_000)));
        assert_eq!(parse_size("1T"), Ok(Size::Bytes(1 << 40)));
        assert_eq!(parse_size("1TB"), Ok(Size::Bytes(1_000_000_000_000)));
        assert_eq!(parse_size(" 8G "), Ok(Size::Bytes(8 << 30)));
        assert_eq!(parse_size("50%"), Ok(Size::Percent(50)));
        assert_eq!(parse_size("100%"), Ok(Size::Percent(100)));
    }

    #[test]
    fn bad_sizes_say_why() {
        for bad in [
            "",
            "G",
            "-1G",
            "1.5G",
            "12X",
            "1GG",
            "0%",
            "101%",
            "1e9",
            "99999999999999999999",
            "20000000T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_size("12X").unwrap_err().0, "unknown unit 'X'");
    }

    #[test]
    fn durations_follow_the_contract() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "1.5s", "10x", "-3", "5 minutes", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formatting_is_readable() {
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(1000), "1000 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn percent_resolves_against_base() {
        assert_eq!(Size::Percent(50).resolve(1000), 500);
        assert_eq!(Size::Percent(100).resolve(u64::MAX), u64::MAX);
        assert_eq!(Size::Bytes(7).resolve(1000), 7);
    }

    proptest! {
        #[test]
        fn size_never_panics(s in "\\PC{0,24}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn duration_never_panics(s in "\\PC{0,24}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn binary_suffixes_scale(n in 0u64..(1 << 20), idx in 0usize..4, long in any::<bool>(), upper in any::<bool>()) {
            let (short, longname, shift) = [("k", "kib", 10), ("m", "mib", 20), ("g", "gib", 30), ("t", "tib", 40)][idx];
            let mut suffix = if long { longname.to_string() } else { short.to_string() };
            if upper { suffix = suffix.to_uppercase(); }
            let parsed = parse_size(&format!("{n}{suffix}"));
            match n.checked_mul(1u64 << shift) {
                Some(v) => prop_assert_eq!(parsed, Ok(Size::Bytes(v))),
                None => prop_assert!(parsed.is_err()),
            }
        }

        #[test]
        fn decimal_suffixes_scale(n in 0u64..1_000_000, idx in 0usize..4) {
            let (suffix, mult) = [("KB", 1_000u64), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000)][idx];
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Ok(Size::Bytes(n * mult)));
        }

        #[test]
        fn formatted_exact_sizes_parse_back(n in 1u64..1024, idx in 0usize..4) {
            let v = n << (10 * (idx + 1));
            let text = format_size(v).replace(' ', "");
            prop_assert_eq!(parse_size(&text), Ok(Size::Bytes(v)));
        }

        #[test]
        fn durations_round_trip(ms in 0u64..100_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
