//! SIZE and DUR values: parsing exactly as the contract says, and formatting for humans.
//!
//! SIZE: an integer with an optional suffix. `K M G T` and `KiB MiB GiB TiB` are powers of 1024,
//! `KB MB GB TB` powers of 1000, no suffix or `B` = bytes, case-insensitive; `N%` is a percentage
//! that the caller resolves against a base (memory available to guard, or `--memory` for `--warn`).
//! DUR: numbers with units, as timeout(1) and systemd.time(7) users write them: `500ms`, `30s`,
//! `1.5s`, `5m`, `1min`, `1h30m`, `2h 15min`, `2d`, or plain (possibly decimal) seconds.

use std::fmt;
use std::time::Duration;

/// The accepted SIZE forms, quoted in every error message about a size.
pub const SIZE_FORMS: &str = "an integer with an optional unit: 512M, 2G, 1GiB (powers of 1024), 500MB (powers of 1000), 1048576 (bytes), or a percentage like 50%";
/// The accepted DUR forms, quoted in every error message about a duration.
pub const DUR_FORMS: &str = "numbers with units, like 500ms, 30s, 1.5s, 5m, 1min, 1h30m, 2d, or plain seconds (units: ms, s, m or min, h, d, w)";

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

/// Nanoseconds in one of DUR's units (the names systemd.time(7) and timeout(1) use; `m` is
/// minutes, never months).
fn duration_unit(unit: &str) -> Option<u128> {
    const S: u128 = 1_000_000_000;
    Some(match unit {
        "ms" | "msec" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => S,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * S,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600 * S,
        "d" | "day" | "days" => 86_400 * S,
        "w" | "week" | "weeks" => 7 * 86_400 * S,
        _ => return None,
    })
}

/// Parse a DUR: one or more NUMBER UNIT terms, summed (`1h30m`, `2h 15min`), or one plain
/// NUMBER of seconds; a NUMBER may have a decimal part (`1.5s`, `0.5`). At most 366 days.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(UnitError("the value is empty".into()));
    }
    let mut rest = s;
    let mut total: u128 = 0;
    let mut terms = 0;
    while !rest.is_empty() {
        let (int, frac, after) = decimal(rest)?;
        let unit_end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let per = if unit.is_empty() {
            // A bare number is seconds, and only on its own.
            if terms > 0 || !next.trim().is_empty() {
                return Err(UnitError(format!(
                    "a number without a unit after '{}'",
                    &s[..s.len() - rest.len()].trim()
                )));
            }
            1_000_000_000
        } else {
            duration_unit(unit).ok_or_else(|| UnitError(format!("unknown unit '{unit}'")))?
        };
        total = total
            .checked_add(scaled(int, frac, per)?)
            .ok_or_else(|| UnitError("the value is longer than 366 days".into()))?;
        terms += 1;
        rest = next.trim_start();
    }
    let max = MAX_DURATION.as_nanos();
    if total > max {
        return Err(UnitError("the value is longer than 366 days".into()));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// A `--timeout` longer than this (100 years) is no limit.
const TIMEOUT_FOREVER_S: f64 = 100.0 * 366.0 * 86_400.0;

/// `--timeout`'s DUR: guard's DUR (`1h30m`, `500ms`), or timeout(1)'s — a floating-point number
/// (`2.5`, `1e-3`, `inf`) with an optional `s`, `m`, `h` or `d` — with timeout(1)'s meanings: 0
/// and `inf` are no limit, and so is a duration too long to count. None: no limit.
pub fn parse_timeout(input: &str) -> Result<Option<Duration>, UnitError> {
    let s = input.trim();
    let (num, per) = match s.char_indices().last() {
        Some((i, c)) if "smhd".contains(c) && s[..i].parse::<f64>().is_ok() => {
            let per = match c {
                's' => 1.0,
                'm' => 60.0,
                'h' => 3600.0,
                _ => 86_400.0,
            };
            (&s[..i], per)
        }
        _ => (s, 1.0),
    };
    if let Ok(v) = num.parse::<f64>() {
        if v.is_nan() || v < 0.0 {
            return Err(UnitError("a duration cannot be negative".into()));
        }
        let secs = v * per;
        // Past a century a deadline is never reached (and would overflow the clock): timeout(1)
        // clamps such a value to the longest it can wait; guard waits without a limit.
        if secs == 0.0 || secs > TIMEOUT_FOREVER_S {
            return Ok(None);
        }
        return Ok(Duration::try_from_secs_f64(secs).ok());
    }
    parse_duration(s).map(|d| (!d.is_zero()).then_some(d))
}

/// The leading `DIGITS[.DIGITS]` of `s`: integer digits, fraction digits, and what follows
/// (spaces after the number skipped).
fn decimal(s: &str) -> Result<(&str, &str, &str), UnitError> {
    let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (int, rest) = s.split_at(int_end);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            r.split_at(end)
        }
        None => ("", rest),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(UnitError(if s.starts_with('-') {
            "a duration cannot be negative".into()
        } else {
            format!("'{s}' does not start with a number")
        }));
    }
    Ok((int, frac, rest.trim_start()))
}

/// `int.frac` units of `per` nanoseconds, in nanoseconds (fractions below 1 ns dropped).
fn scaled(int: &str, frac: &str, per: u128) -> Result<u128, UnitError> {
    let too_long = || UnitError("the value is longer than 366 days".into());
    // 30 digits hold more than 366 days in any unit; longer is a typo, and would overflow.
    if int.trim_start_matches('0').len() > 30 || frac.len() > 30 {
        return Err(too_long());
    }
    let i: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_long())?
    };
    let whole = i.checked_mul(per).ok_or_else(too_long)?;
    let f: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| too_long())?
    };
    let part = f.checked_mul(per).ok_or_else(too_long)? / 10u128.pow(frac.len() as u32);
    whole.checked_add(part).ok_or_else(too_long)
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
    } else if ms > 1000 && ms % 100 == 0 {
        format!("{}.{}s", ms / 1000, ms % 1000 / 100)
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
        // timeout(1) and systemd.time(7) forms.
        let s = Duration::from_secs;
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(s(5400)));
        assert_eq!(parse_duration("2h 15min"), Ok(s(8100)));
        assert_eq!(parse_duration("1min"), Ok(s(60)));
        assert_eq!(parse_duration("5 minutes"), Ok(s(300)));
        assert_eq!(parse_duration("2d"), Ok(s(2 * 86_400)));
        assert_eq!(parse_duration("1w"), Ok(s(7 * 86_400)));
        assert_eq!(parse_duration("1.5h"), Ok(s(5400)));
        assert_eq!(
            parse_duration("55s500ms"),
            Ok(Duration::from_millis(55_500))
        );
        assert_eq!(parse_duration("366d"), Ok(s(366 * 86_400)));
        for bad in [
            "",
            "s",
            "10x",
            "-3",
            "1 2",
            "1h 30",
            "1..5s",
            ".s",
            "367d",
            "1M",
            "1e3",
            "1h-5m",
            "99999999999999999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_duration("10x").unwrap_err().0, "unknown unit 'x'");
        assert_eq!(
            parse_duration("1h 30").unwrap_err().0,
            "a number without a unit after '1h'"
        );
    }

    #[test]
    fn timeouts_read_as_timeout_1_reads_them() {
        let t = |s: &str| parse_timeout(s);
        assert_eq!(t("0"), Ok(None));
        assert_eq!(t("0s"), Ok(None));
        assert_eq!(t("inf"), Ok(None));
        assert_eq!(t("infinity"), Ok(None));
        assert_eq!(t("1e-3"), Ok(Some(Duration::from_millis(1))));
        assert_eq!(t("2.5"), Ok(Some(Duration::from_millis(2500))));
        assert_eq!(t("0.5m"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(t("400d"), Ok(Some(Duration::from_secs(400 * 86_400))));
        assert_eq!(t("1h30m"), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(t("500ms"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(
            t("1e30"),
            Ok(None),
            "too long to count: no limit, as timeout(1)"
        );
        assert!(t("-1").is_err());
        assert!(t("nan").is_err());
        assert!(t("soon").is_err());
        assert!(t("").is_err());
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
        fn compound_durations_sum_their_terms(h in 0u64..100, m in 0u64..60, ms in 0u64..1000) {
            let d = Duration::from_millis(h * 3_600_000 + m * 60_000 + ms);
            prop_assert_eq!(parse_duration(&format!("{h}h{m}m{ms}ms")), Ok(d));
            prop_assert_eq!(parse_duration(&format!("{h}h {m}min {ms}ms")), Ok(d));
        }

        #[test]
        fn durations_round_trip(ms in 0u64..100_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
