//! The HTML form of a report: one self-contained page (no scripts, no external files) with an
//! SVG plot of the job's memory over time, the warning and cap lines, and the text report.

use super::Report;
use crate::config::units::format_size;
use std::fmt::Write as _;

/// The plot's size in SVG units; the page scales it to its width (at least 640 px).
const W: f64 = 960.0;
const H: f64 = 340.0;
const PAD_L: f64 = 76.0;
const PAD_B: f64 = 34.0;
const PAD_T: f64 = 12.0;
/// Room on the right for the last time label, centred on the plot's right edge.
const PAD_R: f64 = 34.0;
/// About this many intervals on each axis.
const TICKS: f64 = 5.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step for an axis from 0 to `max`: 1, 2 or 5 times a power of ten, giving about
/// TICKS intervals.
fn nice_step(max: f64) -> f64 {
    let raw = (max / TICKS).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    // The nearest of 1, 2, 5 and 10 (on a log scale).
    let m = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Byte ticks from 0 to at least `max`: round in the unit the values are shown in (KiB, MiB,
/// GiB), so that every label is a whole number like 64 MiB or 1.5 GiB.
fn byte_ticks(max: u64) -> Vec<u64> {
    let unit = [1u64 << 30, 1 << 20, 1 << 10, 1]
        .into_iter()
        .find(|&u| max >= u.saturating_mul(2))
        .unwrap_or(1);
    let step = (nice_step(max as f64 / unit as f64) * unit as f64).max(1.0) as u64;
    // Room above the highest line (the cap, usually) for its label.
    let n = max.saturating_add(max / 20).div_ceil(step).clamp(1, 20);
    (0..=n).map(|i| i.saturating_mul(step)).collect()
}

/// Time ticks (milliseconds) from 0 to at least `max_ms`, at round seconds (or round fractions
/// of one for short runs).
fn time_ticks(max_ms: u64) -> Vec<u64> {
    let step = nice_step(max_ms as f64).max(1.0) as u64;
    let n = max_ms.div_ceil(step).clamp(1, 20);
    (0..=n).map(|i| i.saturating_mul(step)).collect()
}

/// "2 s", "0.5 s", "1 min 30 s".
fn time_label(ms: u64) -> String {
    if ms >= 120_000 && ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        let s = format!("{:.3}", ms as f64 / 1000.0);
        format!("{} s", s.trim_end_matches('0'))
    }
}

/// The SVG plot alone.
pub fn svg(r: &Report) -> String {
    let m = &r.manifest;
    let tl = &r.timeline;
    let t_data = tl
        .last()
        .map(|s| s.0)
        .into_iter()
        .chain(m.trigger_after_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let b_data = tl
        .iter()
        .map(|s| s.1)
        .chain(m.limit_bytes)
        .chain(m.peak_bytes)
        .chain(m.usage_at_trigger_bytes)
        .max()
        .unwrap_or(0)
        .max(1);
    let (xt, yt) = (time_ticks(t_data), byte_ticks(b_data));
    let t_max = *xt.last().unwrap_or(&1) as f64;
    let y_max = *yt.last().unwrap_or(&1) as f64;
    let x = |t: f64| PAD_L + t / t_max * (W - PAD_L - PAD_R);
    let y = |b: f64| H - PAD_B - b / y_max * (H - PAD_B - PAD_T);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" style="width:100%;min-width:640px;max-width:{W}px;height:auto" font-family="sans-serif" font-size="12" role="img" aria-label="memory of the job over time">"#
    );
    let _ = write!(
        o,
        r##"<rect x="{PAD_L}" y="{PAD_T}" width="{}" height="{}" fill="#fafafa" stroke="#ccc"/>"##,
        W - PAD_L - PAD_R,
        H - PAD_B - PAD_T
    );
    for &b in &yt {
        let yy = y(b as f64);
        let _ = write!(
            o,
            r##"<line x1="{PAD_L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            W - PAD_R,
            PAD_L - 5.0,
            yy + 4.0,
            esc(&format_size(b))
        );
    }
    for &t in &xt {
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
            x(t as f64),
            H - PAD_B + 18.0,
            esc(&time_label(t))
        );
    }
    let mut line = |bytes: Option<u64>, color: &str, label: &str| {
        if let Some(b) = bytes {
            let yy = y(b as f64);
            let _ = write!(
                o,
                r#"<line x1="{PAD_L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{color}" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="{color}">{}</text>"#,
                W - PAD_R,
                PAD_L + 4.0,
                yy - 3.0,
                esc(&format!("{label} {}", format_size(b)))
            );
        }
    };
    line(m.limit_bytes, "#c00", "cap");
    line(m.warn_bytes, "#d80", "warn");
    if !tl.is_empty() {
        let pts: Vec<String> = tl
            .iter()
            .map(|&(t, b)| format!("{:.1},{:.1}", x(t as f64), y(b as f64)))
            .collect();
        let _ = write!(
            o,
            r##"<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="{}"/>"##,
            pts.join(" ")
        );
    }
    if let (Some(t), Some(b)) = (m.trigger_after_ms, m.usage_at_trigger_bytes) {
        let _ = write!(
            o,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#c00"><title>{}</title></circle>"##,
            x(t as f64),
            y(b as f64),
            esc(m.trigger.as_str())
        );
    }
    o.push_str("</svg>");
    o
}

/// What holds the memory in a Node.js process: its census's lines, as the first screen has them.
fn node_heap(j: &crate::format::JsHeap) -> String {
    let mut o = format!(
        "<h2>What holds the memory</h2>\n<p>{}.</p>\n<ul>\n",
        esc(&super::node::title(j))
    );
    for line in super::node::lines(j) {
        let _ = writeln!(o, "<li>{}</li>", esc(line.trim()));
    }
    o.push_str("</ul>\n");
    o
}

/// What holds the memory: the largest Python heap census, its retention paths and top types.
fn heap(r: &Report) -> String {
    let node = r
        .lead_jsheap()
        .or(r.jsheap.first().filter(|_| r.pyheap.is_empty()));
    if let Some(j) = node {
        return node_heap(j);
    }
    let Some(h) = r.pyheap.first() else {
        return String::new();
    };
    let mut o = format!(
        "<h2>What holds the memory</h2>\n<p>Python heap census of pid {}, Python {}, {} objects, {:.0} ms.</p>\n<ul>\n",
        h.pid,
        esc(&h.python),
        crate::config::units::format_count(h.objects),
        h.duration_ms
    );
    for p in &h.paths {
        let Some(t) = h.by_size.iter().find(|t| t.type_name == p.type_name) else {
            continue;
        };
        let _ = writeln!(
            o,
            "<li><b>{} \u{d7}{} ({})</b> \u{2190} {} <small>({} of {} samples)</small></li>",
            esc(&t.type_name),
            crate::config::units::format_count(t.count),
            crate::config::units::format_size(t.bytes),
            p.path
                .iter()
                .map(|l| esc(l))
                .collect::<Vec<_>>()
                .join(" \u{2190} "),
            p.agree,
            p.samples
        );
    }
    o.push_str("</ul>\n<table><tr><th>type</th><th>size</th><th>count</th></tr>\n");
    for t in h.by_size.iter().take(10) {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.type_name),
            crate::config::units::format_size(t.bytes),
            crate::config::units::format_count(t.count)
        );
    }
    o.push_str("</table>\n");
    o
}

/// The whole page.
pub fn html(r: &Report) -> String {
    let m = &r.manifest;
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>guard evidence: {job} ({trigger})</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:{W}px}}pre{{background:#f4f4f4;padding:1em;white-space:pre-wrap;overflow-wrap:anywhere}}</style>
</head><body>
<h1>{job}: {trigger}</h1>
<p>Memory of the job over time (blue), with the warning and cap lines.</p>
{svg}
{heap}<pre>{text}</pre>
</body></html>
"#,
        job = esc(&m.job),
        trigger = esc(m.trigger.as_str()),
        svg = svg(r),
        heap = heap(r),
        text = esc(&super::text(r)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_ticks_are_round_and_cover_the_data() {
        let mib = 1u64 << 20;
        assert_eq!(
            byte_ticks(105 * mib),
            [0, 20, 40, 60, 80, 100, 120].map(|m| m * mib)
        );
        let labels: Vec<String> = byte_ticks(2 << 30).into_iter().map(format_size).collect();
        assert_eq!(
            labels,
            ["0 B", "512 MiB", "1 GiB", "1.5 GiB", "2 GiB", "2.5 GiB"]
        );
        assert_eq!(time_ticks(9_300), [0, 2000, 4000, 6000, 8000, 10_000]);
        assert_eq!(time_ticks(140), [0, 20, 40, 60, 80, 100, 120, 140]);
        assert_eq!(time_label(10_000), "10 s");
        assert_eq!(time_label(500), "0.5 s");
        assert_eq!(time_label(240_000), "4 min");
        // A manifest may say anything: no overflow, a bounded axis.
        assert!(byte_ticks(u64::MAX).len() <= 21);
        assert!(time_ticks(u64::MAX).len() <= 21);
    }
}
