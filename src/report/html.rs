//! The HTML form of a report: one self-contained page (no scripts, no external files) with an
//! SVG plot of the job's memory over time, the warning and cap lines, and the text report.

use super::Report;
use crate::units::format_size;
use std::fmt::Write as _;

const W: f64 = 760.0;
const H: f64 = 300.0;
const PAD_L: f64 = 70.0;
const PAD_B: f64 = 30.0;
const PAD_T: f64 = 10.0;
const PAD_R: f64 = 10.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG plot alone.
pub fn svg(r: &Report) -> String {
    let m = &r.manifest;
    let tl = &r.timeline;
    let t_max = tl
        .last()
        .map(|s| s.0)
        .into_iter()
        .chain(m.trigger_after_ms)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let y_max = tl
        .iter()
        .map(|s| s.1)
        .chain(m.limit_bytes)
        .chain(m.peak_bytes)
        .chain(m.usage_at_trigger_bytes)
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.05;
    let x = |t: f64| PAD_L + t / t_max * (W - PAD_L - PAD_R);
    let y = |b: f64| H - PAD_B - b / y_max * (H - PAD_B - PAD_T);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        o,
        r##"<rect x="{PAD_L}" y="{PAD_T}" width="{}" height="{}" fill="#fafafa" stroke="#ccc"/>"##,
        W - PAD_L - PAD_R,
        H - PAD_B - PAD_T
    );
    for i in 0..=4 {
        let b = y_max / 1.05 * i as f64 / 4.0;
        let _ = write!(
            o,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{}</text>"##,
            PAD_L - 4.0,
            y(b) + 4.0,
            esc(&format_size(b as u64))
        );
        let t = t_max * i as f64 / 4.0;
        let _ = write!(
            o,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">{:.1} s</text>"##,
            x(t),
            H - PAD_B + 16.0,
            t / 1000.0
        );
    }
    let mut line = |bytes: Option<u64>, color: &str, label: &str| {
        if let Some(b) = bytes {
            let yy = y(b as f64);
            let _ = write!(
                o,
                r#"<line x1="{PAD_L}" x2="{}" y1="{yy}" y2="{yy}" stroke="{color}" stroke-dasharray="6 4"/><text x="{}" y="{}" fill="{color}">{}</text>"#,
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

/// What holds the memory: the largest Python heap census, its retention paths and top types.
fn heap(r: &Report) -> String {
    let Some(h) = r.pyheap.first() else {
        return String::new();
    };
    let mut o = format!(
        "<h2>What holds the memory</h2>\n<p>Python heap census of pid {}, Python {}, {} objects, {:.0} ms.</p>\n<ul>\n",
        h.pid,
        esc(&h.python),
        crate::units::format_count(h.objects),
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
            crate::units::format_count(t.count),
            crate::units::format_size(t.bytes),
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
            crate::units::format_size(t.bytes),
            crate::units::format_count(t.count)
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
<style>body{{font-family:sans-serif;margin:1.5em;max-width:60em}}pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}</style>
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
