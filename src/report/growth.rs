//! How a job's memory grew: the rate over the last seconds (a least-squares slope, so one odd
//! sample does not swing it), the time to the cap at that rate, and the shape of the growth up
//! to a trigger — steady (a leak's shape), a burst, or in steps. One place for the supervisor
//! (warning lines, alerts, the bundle's manifest) and for `guard report`.

use crate::format::{Forecast, Shape};

/// The window the rate is measured over: the last seconds before the trigger.
pub const RECENT_MS: u64 = 10_000;
/// Fewer samples than this, or a shorter span, make no rate.
const MIN_SAMPLES: usize = 3;
const MIN_SPAN_MS: u64 = 300;
/// Slower than this (bytes/s) is "not growing": no time to the cap is forecast.
const FLAT_BYTES_PER_S: f64 = 64.0 * 1024.0;
/// A run that reached its trigger within this of its first sample grew in one burst.
const BURST_WITHIN_MS: u64 = 2_000;
/// Growth whose straight-line fit explains at least this much of its variance is steady.
const STEADY_R2: f64 = 0.9;

/// The forecast at `t_ms` (milliseconds since the job started) from `samples` — (t_ms, bytes),
/// oldest first, later ones ignored — with `now_bytes` the usage at that moment and `limit` the
/// cap. None when there are too few samples in the window to say.
pub fn forecast(
    samples: &[(u64, u64)],
    t_ms: u64,
    now_bytes: u64,
    limit: Option<u64>,
) -> Option<Forecast> {
    let upto: Vec<(u64, u64)> = samples.iter().copied().filter(|s| s.0 <= t_ms).collect();
    let from = t_ms.saturating_sub(RECENT_MS);
    let recent: Vec<(u64, u64)> = upto.iter().copied().filter(|s| s.0 >= from).collect();
    let span = match (recent.first(), recent.last()) {
        (Some(a), Some(b)) => b.0.saturating_sub(a.0),
        _ => 0,
    };
    if recent.len() < MIN_SAMPLES || span < MIN_SPAN_MS {
        return early_burst(t_ms, now_bytes, limit);
    }
    let (slope, _) = fit(&recent)?;
    let bytes_per_second = slope * 1000.0;
    Some(Forecast {
        bytes_per_second: bytes_per_second.round(),
        window_ms: span,
        time_to_limit_ms: time_to(limit, now_bytes, bytes_per_second),
        shape: shape(&upto),
    })
}

/// A job at `now_bytes` within 2 s of its start, too soon for a measured rate: a burst, at
/// the rate since the start (a job starts near 0 bytes).
fn early_burst(t_ms: u64, now_bytes: u64, limit: Option<u64>) -> Option<Forecast> {
    if t_ms == 0 || t_ms >= BURST_WITHIN_MS {
        return None;
    }
    let bytes_per_second = (now_bytes as f64 / t_ms as f64 * 1000.0).round();
    Some(Forecast {
        bytes_per_second,
        window_ms: t_ms,
        time_to_limit_ms: time_to(limit, now_bytes, bytes_per_second),
        shape: Some(Shape::Burst),
    })
}

/// Milliseconds from `now_bytes` to `limit` at `bytes_per_second`; None without a cap, at or
/// past it, or without growth.
fn time_to(limit: Option<u64>, now_bytes: u64, bytes_per_second: f64) -> Option<u64> {
    limit.and_then(|l| {
        (l > now_bytes && bytes_per_second >= FLAT_BYTES_PER_S)
            .then(|| ((l - now_bytes) as f64 / bytes_per_second * 1000.0) as u64)
    })
}

/// The shape of the growth from the first sample to the last of `samples`: a burst (reached
/// within 2 s, or half of the growth in the last tenth of the run), steady (a straight line
/// fits it), or in steps. None for too few samples or no growth.
pub fn shape(samples: &[(u64, u64)]) -> Option<Shape> {
    let (first, last) = (samples.first()?, samples.last()?);
    let span = last.0.saturating_sub(first.0);
    if samples.len() < MIN_SAMPLES || last.1 <= first.1 {
        return None;
    }
    if span < BURST_WITHIN_MS {
        return Some(Shape::Burst);
    }
    let half = first.1 + (last.1 - first.1) / 2;
    let t_half = samples.iter().find(|s| s.1 >= half).map_or(last.0, |s| s.0);
    // u128: the times come from manifests too, where any u64 may stand.
    if u128::from(t_half.saturating_sub(first.0)) * 10 >= u128::from(span) * 9 {
        return Some(Shape::Burst);
    }
    let (_, r2) = fit(samples)?;
    Some(if r2 >= STEADY_R2 {
        Shape::Steady
    } else {
        Shape::Steps
    })
}

/// Least squares: the slope (bytes per ms) and the coefficient of determination.
fn fit(samples: &[(u64, u64)]) -> Option<(f64, f64)> {
    let n = samples.len() as f64;
    let t0 = samples.first()?.0 as f64;
    let mean_t = samples.iter().map(|s| s.0 as f64 - t0).sum::<f64>() / n;
    let mean_b = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let (mut stt, mut stb, mut sbb) = (0.0, 0.0, 0.0);
    for s in samples {
        let (dt, db) = (s.0 as f64 - t0 - mean_t, s.1 as f64 - mean_b);
        stt += dt * dt;
        stb += dt * db;
        sbb += db * db;
    }
    if stt == 0.0 {
        return None;
    }
    let slope = stb / stt;
    let r2 = if sbb == 0.0 {
        1.0
    } else {
        (stb * stb) / (stt * sbb)
    };
    Some((slope, r2))
}

/// "12.3 MB/s over the last 10 s; the cap in ~2 min", "not growing (0.0 MB/s over the last
/// 4.1 s)", "shrinking …".
pub fn describe(f: &Forecast) -> String {
    let rate = f.bytes_per_second / 1e6;
    let over = format!("over the last {}", seconds(f.window_ms));
    if f.bytes_per_second < FLAT_BYTES_PER_S {
        let word = if f.bytes_per_second < -FLAT_BYTES_PER_S {
            "shrinking"
        } else {
            "not growing"
        };
        return format!("{word} ({rate:.1} MB/s {over})");
    }
    match f.time_to_limit_ms {
        Some(ms) => format!("growing {rate:.1} MB/s {over}; the cap in {}", eta(ms)),
        None => format!("growing {rate:.1} MB/s {over}"),
    }
}

/// What the shape means, for people.
pub fn shape_text(s: Shape) -> &'static str {
    match s {
        Shape::Steady => "steady growth, a leak's shape",
        Shape::Burst => "a burst: most of it at the end",
        Shape::Steps => "growth in steps",
    }
}

/// "~40 s", "~2 min", "~3 h": a forecast, rounded as one.
pub fn eta(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    if s < 90 {
        format!("~{} s", s.max(1))
    } else if s < 90 * 60 {
        format!("~{} min", (s + 30) / 60)
    } else {
        format!("~{} h", (s + 1800) / 3600)
    }
}

fn seconds(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} s", ms.saturating_add(500) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(from_ms: u64, to_ms: u64, every: u64, base: u64, per_ms: u64) -> Vec<(u64, u64)> {
        (from_ms..=to_ms)
            .step_by(every as usize)
            .map(|t| (t, base + (t - from_ms) * per_ms))
            .collect()
    }

    #[test]
    fn a_slow_leak_gets_its_rate_and_the_time_to_a_2_gib_cap() {
        // 10 MB/s for 60 s, sampled every 200 ms: 600 MB of a 2 GiB cap.
        let s = line(0, 60_000, 200, 50_000_000, 10_000);
        let now = s.last().unwrap().1;
        let f = forecast(&s, 60_000, now, Some(2 << 30)).unwrap();
        assert!((f.bytes_per_second - 10e6).abs() < 1e3, "{f:?}");
        assert_eq!(f.window_ms, RECENT_MS);
        let left = ((2u64 << 30) - now) as f64 / 10e6;
        let got = f.time_to_limit_ms.unwrap() as f64 / 1000.0;
        assert!((got - left).abs() < 1.0, "{got} vs {left}");
        assert_eq!(f.shape, Some(Shape::Steady));
        assert_eq!(
            describe(&f),
            "growing 10.0 MB/s over the last 10 s; the cap in ~3 min"
        );
    }

    #[test]
    fn a_burst_at_the_end_and_growth_in_steps_are_told_apart() {
        // Flat for 30 s, then 500 MB in the last second.
        let mut s = line(0, 30_000, 500, 100_000_000, 0);
        s.extend(line(30_100, 31_000, 100, 100_000_000, 555_555));
        assert_eq!(shape(&s), Some(Shape::Burst));
        // Reached in 1.5 s from the first sample: a burst too.
        assert_eq!(shape(&line(0, 1500, 100, 0, 100_000)), Some(Shape::Burst));
        // Three plateaus, each 10 s, rising 200 MB at each step.
        let mut st = Vec::new();
        for (i, t) in (0..30_000u64).step_by(250).enumerate() {
            let _ = i;
            st.push((t, 100_000_000 + (t / 10_000) * 200_000_000));
        }
        st.push((30_000, 700_000_000));
        assert_eq!(shape(&st), Some(Shape::Steps));
    }

    #[test]
    fn flat_shrinking_and_too_short_timelines_say_so() {
        let flat = line(0, 5000, 100, 300_000_000, 0);
        let f = forecast(&flat, 5000, 300_000_000, Some(1 << 30)).unwrap();
        assert_eq!(f.time_to_limit_ms, None);
        assert!(
            describe(&f).starts_with("not growing (0.0 MB/s"),
            "{}",
            describe(&f)
        );
        assert_eq!(shape(&flat), None);
        let down: Vec<(u64, u64)> = (0..50u64)
            .map(|i| (i * 100, 900_000_000 - i * 1_000_000))
            .collect();
        let f = forecast(&down, 4900, 851_000_000, Some(1 << 30)).unwrap();
        assert!(
            describe(&f).starts_with("shrinking (-10.0 MB/s"),
            "{}",
            describe(&f)
        );
        assert_eq!(forecast(&[(0, 1), (100, 2)], 2100, 2, Some(10)), None);
        // 64 MiB 80 ms after the start, one sample: a burst, at its rate since the start.
        let f = forecast(&[(40, 30 << 20)], 80, 64 << 20, Some(64 << 20)).unwrap();
        assert_eq!(f.shape, Some(Shape::Burst));
        assert_eq!(f.time_to_limit_ms, None);
        assert!((f.bytes_per_second - 838_860_800.0).abs() < 1.0, "{f:?}");
        // Samples after the moment asked about are not used.
        let s = line(0, 20_000, 100, 0, 1000);
        let f = forecast(&s, 5000, 5_000_000, None).unwrap();
        assert_eq!(f.window_ms, 5000);
        assert_eq!(f.time_to_limit_ms, None);
    }

    #[test]
    fn times_and_sizes_near_u64_max_from_a_manifest_do_not_overflow() {
        // The fuzz case that failed CI: a manifest's timeline with a time of 2e18 ms.
        let s = [(0, 0), (1, 0), (2_000_000_000_000_000_000, 2)];
        assert_eq!(shape(&s), Some(Shape::Burst));
        let s = [(0, 0), (u64::MAX / 2, 1), (u64::MAX, u64::MAX)];
        assert!(shape(&s).is_some());
        let f = Forecast {
            bytes_per_second: 1e9,
            window_ms: u64::MAX,
            time_to_limit_ms: Some(u64::MAX),
            shape: Some(Shape::Steady),
        };
        assert!(describe(&f).contains("the cap in ~"), "{}", describe(&f));
    }

    #[test]
    fn forecasts_are_rounded_as_forecasts() {
        assert_eq!(eta(400), "~1 s");
        assert_eq!(eta(42_000), "~42 s");
        assert_eq!(eta(100_000), "~2 min");
        assert_eq!(eta(45 * 60_000), "~45 min");
        assert_eq!(eta(3 * 3_600_000 + 10), "~3 h");
    }
}
