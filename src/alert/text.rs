//! The words every sink carries: the one-paragraph summary (what happened to which job on which
//! host, how its memory grew, what holds it, where the evidence is) and the pieces of the job's
//! own text — its command, the census's finding, its output — with their control characters
//! escaped, so that nothing a job chose can forge a line of an alert.

use super::Event;
use crate::config::units::format_size;
use crate::format::EventKind;

/// The last `n` characters of `t` (output tails shown in chat and alert annotations).
pub fn last_chars(t: &str, n: usize) -> String {
    let count = t.chars().count();
    t.chars().skip(count.saturating_sub(n)).collect()
}

pub fn size(v: Option<u64>) -> String {
    v.map(format_size).unwrap_or_else(|| "unknown".into())
}

/// Where the bundle goes off the host: the presigned link when there is one (it opens without
/// credentials), else the object's URL.
pub fn off_host(ev: &Event) -> Option<&str> {
    ev.bundle_link.as_deref().or(ev.bundle_url.as_deref())
}

/// The one-paragraph summary every sink carries: what happened on which host, how memory
/// grew, what holds it, where the evidence is.
pub fn summary(ev: &Event) -> String {
    let finding = ev
        .finding
        .as_deref()
        .map(|f| format!(" What holds the memory: {}.", one_line(f)))
        .unwrap_or_default();
    let bundle = ev
        .bundle
        .as_deref()
        .map(|b| format!(" Evidence: {b} (guard report {b})."))
        .unwrap_or_default();
    let runbook = ev
        .runbook
        .as_deref()
        .map(|r| format!(" Runbook: {r}."))
        .unwrap_or_default();
    let shipped = off_host(ev)
        .map(|u| format!(" Off the host (once the run is over): {u}."))
        .unwrap_or_default();
    format!("{}{finding}{runbook}{bundle}{shipped}", headline(ev))
}

/// The job's command line as one line of text: its control characters escaped as `guard report`
/// shows them (`\r`, `\n` as `\x0d`, `\x0a`), so an argument cannot forge a line of an alert's
/// body — a runbook, an evidence path.
pub fn command_text(ev: &Event) -> String {
    crate::format::escape_controls(&ev.command.join(" "), false).into_owned()
}

/// Text from the job (the census's finding: names from its heap) on one line.
pub fn one_line(s: &str) -> String {
    crate::format::escape_controls(s, false).into_owned()
}

/// The job's output: its lines kept, every other control character escaped (a carriage return
/// could otherwise overwrite what a terminal shows of the line before).
pub fn output_text(s: &str) -> String {
    crate::format::escape_controls(s, true).into_owned()
}

pub fn is_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// The summary's first part: what happened to the job, on which host, with its command and
/// how its memory grew.
pub fn headline(ev: &Event) -> String {
    let what = match ev.event {
        EventKind::MemoryLimit => match &ev.held_until {
            Some(until) => format!(
                "{} exceeded its memory limit {} (peak {}) and is held frozen until {until} for debugging, then killed ('guard kill {}' on {} ends the hold now)",
                ev.job,
                size(ev.limit_bytes),
                size(ev.peak_bytes),
                ev.job,
                ev.host
            ),
            None => match &ev.thrashing {
                Some(t) => format!(
                    "{} exceeded its memory limit {} (peak {}), thrashing at its memory limit \
                     {}, and was killed",
                    ev.job,
                    size(ev.limit_bytes),
                    size(ev.peak_bytes),
                    t.describe()
                ),
                None => format!(
                    "{} exceeded its memory limit {} (peak {}) and was killed",
                    ev.job,
                    size(ev.limit_bytes),
                    size(ev.peak_bytes)
                ),
            },
        },
        EventKind::Warning => format!(
            "{} crossed its early-warning threshold (peak so far {} of a {} limit); it keeps running",
            ev.job,
            size(ev.peak_bytes),
            size(ev.limit_bytes)
        ),
        EventKind::KernelOom => format!("{} was killed by the kernel's OOM killer", ev.job),
        EventKind::Failed => format!(
            "{} failed (exit status {})",
            ev.job,
            ev.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "?".into())
        ),
        EventKind::Timeout => format!("{} exceeded its time limit and was killed", ev.job),
        EventKind::Drill => format!(
            "guard drill for {}: a rehearsal, not a failure of the job — guard's allocator reached the job's memory limit {} (peak {}) and was killed as the job would be",
            ev.job,
            size(ev.limit_bytes),
            size(ev.peak_bytes)
        ),
        other => format!("{}: {other}", ev.job),
    };
    format!(
        "{what} on {} (pid {}, command: {}).{}",
        ev.host,
        ev.pid,
        command_text(ev),
        growth_sentence(ev)
    )
}

/// " Memory: growing 12.3 MB/s over the last 10 s; the cap in ~2 min." for a warning; for a
/// kill also the shape: " Growth: steady growth, a leak's shape (10.2 MB/s over the last 10 s)."
fn growth_sentence(ev: &Event) -> String {
    let Some(g) = ev.growth else {
        return String::new();
    };
    match (ev.event, g.shape) {
        (EventKind::Warning, _) | (_, None) => {
            format!(" Memory: {}.", crate::report::growth::describe(&g))
        }
        (_, Some(shape)) => format!(
            " Growth: {} ({:.1} MB/s over the last {:.1} s).",
            crate::report::growth::shape_text(shape),
            g.bytes_per_second / 1e6,
            g.window_ms as f64 / 1000.0
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Event {
        let mut e = crate::alert::sample_event();
        e.summary = summary(&e);
        e
    }

    #[test]
    fn summaries_carry_the_forecast_or_the_shape() {
        let mut w = ev();
        w.event = EventKind::Warning;
        w.growth = Some(crate::format::Forecast {
            bytes_per_second: 12.3e6,
            window_ms: 10_000,
            time_to_limit_ms: Some(118_000),
            shape: Some(crate::format::Shape::Steady),
        });
        assert!(
            summary(&w)
                .contains(". Memory: growing 12.3 MB/s over the last 10 s; the cap in ~2 min."),
            "{}",
            summary(&w)
        );
        let mut k = w.clone();
        k.event = EventKind::MemoryLimit;
        assert!(
            summary(&k).contains(
                ". Growth: steady growth, a leak's shape (12.3 MB/s over the last 10.0 s)."
            ),
            "{}",
            summary(&k)
        );
        assert!(!summary(&ev()).contains("Growth"));
    }
}
