//! One attempt at one sink: the webhook's, Slack's and Alertmanager's bodies posted over
//! [`super::http`], email and PagerDuty handed to their modules; exec runs an absolute program
//! without a shell, the event in its environment; log writes one logfmt line to stderr, syslog
//! or the journal.

use super::http::post;
use super::text::{headline, is_url, last_chars, one_line, output_text, summary};
use super::{AttemptError, Event};
use crate::config::alerts::{Secret, Sink, SinkKind};
use crate::config::units::format_size;
use crate::format::{EventKind, Status};
use serde_json::json;

/// Send `ev` to `s` once.
pub fn send(s: &Sink, ev: &Event) -> Result<(), AttemptError> {
    match s.kind {
        SinkKind::Webhook => post(s, &s.target, serde_json::to_value(ev).unwrap_or_default()),
        SinkKind::Slack => post(s, &s.target, slack_body(ev)),
        SinkKind::Alertmanager => {
            let base = s
                .target
                .resolve()
                .map_err(|e| AttemptError::Final(e.to_string()))?;
            let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
            post(s, &Secret::Plain(url), alertmanager_body(ev, &s.labels))
        }
        SinkKind::Exec => exec(s, ev),
        SinkKind::Log => log_line(s, ev).map_err(|e| AttemptError::Final(e.to_string())),
        SinkKind::Email => super::email::send(s, ev),
        SinkKind::PagerDuty => super::pagerduty::send(s, ev),
    }
}

/// Slack: the title as the notification text; in the message the summary's headline once,
/// what holds the memory, the numbers, where the evidence is, the end of the output.
fn slack_body(ev: &Event) -> serde_json::Value {
    let title = match ev.event {
        EventKind::MemoryLimit if ev.held_until.is_some() => {
            format!(":ice_cube: {} held at its memory limit", ev.job)
        }
        EventKind::MemoryLimit if ev.thrashing.is_some() => {
            format!(
                ":rotating_light: {} killed thrashing at its memory limit",
                ev.job
            )
        }
        EventKind::MemoryLimit => format!(":rotating_light: {} killed at its memory limit", ev.job),
        EventKind::Warning => format!(":warning: {} near its memory limit", ev.job),
        EventKind::KernelOom => format!(
            ":rotating_light: {} killed by the kernel OOM killer",
            ev.job
        ),
        EventKind::Failed => format!(":x: {} failed", ev.job),
        EventKind::Timeout => format!(":hourglass: {} timed out", ev.job),
        EventKind::Drill => format!(":test_tube: guard drill for {}", ev.job),
        other => format!("{}: {other}", ev.job),
    };
    let mut context = vec![format!("host *{}*", ev.host), format!("pid {}", ev.pid)];
    if let Some(l) = ev.limit_bytes {
        context.push(format!("limit {}", format_size(l)));
    }
    if let Some(p) = ev.peak_bytes {
        context.push(format!("peak {}", format_size(p)));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": headline(ev)}}),
    ];
    if let Some(f) = &ev.finding {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*What holds the memory:* {}", one_line(f))}}));
    }
    if let Some(r) = &ev.runbook {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Runbook:* {r}")}}));
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]}),
    );
    if let Some(b) = &ev.bundle {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("Evidence: `{b}` (`guard report` it on {})", ev.host)}}));
    }
    if let Some(u) = super::text::off_host(ev) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("Off the host (once the run is over): {u}")}}));
    }
    if let Some(t) = ev.output_tail.as_deref().filter(|t| !t.trim().is_empty()) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("Last output:\n```{}```", output_text(&last_chars(t, 1500)))}}));
    }
    json!({"text": format!("{title} on {}", ev.host), "blocks": blocks})
}

/// Alertmanager: guard's labels and the sink's extra ones, the summary, the bundle, the
/// runbook (runbook_url when it is a URL), the output tail.
fn alertmanager_body(ev: &Event, extra: &[(String, String)]) -> serde_json::Value {
    let now = std::time::SystemTime::now();
    let mut alert = json!({
        "labels": {
            "alertname": ev.alertname(),
            "job": ev.job,
            "instance": ev.host,
            "severity": ev.severity(),
        },
        "annotations": {
            "summary": ev.summary,
        },
        "startsAt": humantime::format_rfc3339_millis(now).to_string(),
    });
    if let Some(b) = &ev.bundle {
        alert["annotations"]["bundle"] = json!(b);
    }
    if let Some(u) = &ev.bundle_url {
        alert["annotations"]["bundle_url"] = json!(u);
    }
    if let Some(l) = &ev.bundle_link {
        alert["annotations"]["bundle_link"] = json!(l);
    }
    if let Some(u) = &ev.held_until {
        alert["annotations"]["held_until"] = json!(u);
    }
    if let Some(r) = &ev.runbook {
        let key = if is_url(r) { "runbook_url" } else { "runbook" };
        alert["annotations"][key] = json!(r);
    }
    for (k, v) in extra {
        alert["labels"][k] = json!(v);
    }
    if let Some(t) = ev.output_tail.as_deref().filter(|t| !t.trim().is_empty()) {
        alert["annotations"]["output"] = json!(output_text(&last_chars(t, 1000)));
    }
    // A warning is a moment, not a state: it resolves itself.
    if matches!(ev.event, EventKind::Warning | EventKind::Drill) {
        alert["endsAt"] = json!(
            humantime::format_rfc3339_millis(now + std::time::Duration::from_secs(15 * 60))
                .to_string()
        );
    }
    json!([alert])
}

fn exec(s: &Sink, ev: &Event) -> Result<(), AttemptError> {
    let program = s
        .target
        .resolve()
        .map_err(|e| AttemptError::Final(e.to_string()))?;
    // Checked again as it runs: the file may have changed since the start.
    crate::os::trust::check(
        std::path::Path::new(&program),
        crate::os::trust::Use::Program,
    )
    .map_err(|e| AttemptError::Final(e.to_string()))?;
    let mut env: Vec<(String, String)> = guard_fields(ev)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain([("GUARD_SUMMARY".to_string(), ev.summary.clone())])
        .collect();
    env.extend(hook_environment(&s.pass_env));
    let ran = crate::os::runner::run_bounded(
        std::path::Path::new(&program),
        &s.args,
        crate::os::runner::Env::Only(&env),
        s.timeout,
    );
    match ran.status {
        Status::Ok => Ok(()),
        _ => Err(AttemptError::Final(ran.detail)),
    }
}

/// What an exec hook gets of guard's environment besides the event's GUARD_* variables.
pub const HOOK_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

/// PATH when guard has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// [`HOOK_ENV`] and the sink's `pass_env` names, as far as guard has them set.
fn hook_environment(pass: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = HOOK_ENV
        .iter()
        .copied()
        .chain(pass.iter().map(String::as_str))
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    out
}

/// A logfmt value: quoted when it holds a space, a quote, '=' or any control character, with
/// backslash, quote, newline, carriage return and tab escaped (\\ \" \n \r \t) and other control
/// characters as \u{..}, so that one event is always one line.
fn logfmt_value(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '"', '=', '\\']) && !v.contains(char::is_control) {
        return v.to_string();
    }
    let mut o = String::with_capacity(v.len() + 2);
    o.push('"');
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if c.is_control() => o.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `event=... job=... host=... pid=... limit_bytes=... peak_bytes=... bundle=... summary="..."`
pub fn logfmt(ev: &Event) -> String {
    let mut parts = vec![
        ("event", ev.event.as_str().to_string()),
        ("job", ev.job.clone()),
        ("host", ev.host.clone()),
        ("pid", ev.pid.to_string()),
    ];
    if let Some(l) = ev.limit_bytes {
        parts.push(("limit_bytes", l.to_string()));
    }
    if let Some(p) = ev.peak_bytes {
        parts.push(("peak_bytes", p.to_string()));
    }
    if let Some(b) = &ev.bundle {
        parts.push(("bundle", b.clone()));
    }
    if let Some(u) = &ev.bundle_url {
        parts.push(("bundle_url", u.clone()));
    }
    if let Some(r) = &ev.runbook {
        parts.push(("runbook", r.clone()));
    }
    parts.push(("summary", ev.summary.clone()));
    parts
        .into_iter()
        .map(|(k, v)| format!("{k}={}", logfmt_value(&v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn log_line(s: &Sink, ev: &Event) -> Result<(), crate::os::journal::LocalLogError> {
    let line = logfmt(ev);
    // syslog severities: 2 critical, 4 warning.
    let priority = if ev.severity() == "critical" { 2 } else { 4 };
    match &s.target {
        Secret::Plain(t) if t == "syslog" => crate::os::journal::send_syslog(
            std::path::Path::new(crate::os::journal::SYSLOG_SOCKET),
            priority,
            &format!("guard: {line}"),
        ),
        Secret::Plain(t) if t == "journal" => {
            let fields = journal_fields(ev, priority);
            let borrowed: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            crate::os::journal::send_journal(
                std::path::Path::new(crate::os::journal::JOURNAL_SOCKET),
                &borrowed,
            )
        }
        _ => {
            eprintln!("guard: alert {line}");
            Ok(())
        }
    }
}

/// A journal entry for `ev`: MESSAGE (the summary), PRIORITY, MESSAGE_ID, SYSLOG_IDENTIFIER and
/// the GUARD_* fields.
fn journal_fields(ev: &Event, priority: u8) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("MESSAGE", format!("guard: {}", summary(ev))),
        ("PRIORITY", priority.to_string()),
        (
            "MESSAGE_ID",
            crate::format::message_id(ev.event).to_string(),
        ),
        ("SYSLOG_IDENTIFIER", "guard".to_string()),
    ];
    fields.extend(guard_fields(ev));
    fields
}

/// The GUARD_* fields of an event: an exec hook's environment, a journal entry's fields.
fn guard_fields(ev: &Event) -> Vec<(&'static str, String)> {
    let opt = |v: Option<u64>| v.map(|b| b.to_string()).unwrap_or_default();
    vec![
        ("GUARD_EVENT", ev.event.as_str().to_string()),
        ("GUARD_JOB", ev.job.clone()),
        ("GUARD_PID", ev.pid.to_string()),
        ("GUARD_BUNDLE", ev.bundle.clone().unwrap_or_default()),
        (
            "GUARD_BUNDLE_URL",
            ev.bundle_url.clone().unwrap_or_default(),
        ),
        ("GUARD_LIMIT_BYTES", opt(ev.limit_bytes)),
        ("GUARD_PEAK_BYTES", opt(ev.peak_bytes)),
        ("GUARD_HOST", ev.host.clone()),
    ]
    .into_iter()
    .chain(ev.held_until.clone().map(|u| ("GUARD_HELD_UNTIL", u)))
    .chain(ev.runbook.clone().map(|r| ("GUARD_RUNBOOK", r)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::text::summary;

    fn ev() -> Event {
        let mut e = crate::alert::sample_event();
        e.summary = summary(&e);
        e
    }

    #[test]
    fn bodies() {
        let e = ev();
        assert!(
            e.summary
                .starts_with("fix_images exceeded its memory limit 2 GiB"),
            "{}",
            e.summary
        );
        let am = alertmanager_body(&e, &[]);
        assert_eq!(am[0]["labels"]["alertname"], "GuardMemoryLimit");
        assert_eq!(am[0]["labels"]["severity"], "critical");
        assert_eq!(am[0]["labels"]["instance"], "web1");
        assert!(am[0].get("endsAt").is_none());
        let sl = slack_body(&e);
        assert!(sl["text"].as_str().unwrap().contains("fix_images"));
        assert!(sl["blocks"].as_array().unwrap().len() >= 3);
        let l = logfmt(&e);
        assert!(
            l.starts_with(
                "event=memory-limit job=fix_images host=web1 pid=42 limit_bytes=2147483648"
            ),
            "{l}"
        );
        assert!(l.contains("summary=\"fix_images exceeded"), "{l}");
    }

    /// A new user's complaint: the summary came three times in one Slack message. Now: the
    /// headline once, what holds the memory once, the bundle once; the notification text is
    /// the title.
    #[test]
    fn slack_carries_the_summary_once_and_the_top_finding() {
        let mut e = ev();
        e.finding = Some("bytearray \u{d7}700 (175 MiB) \u{2190} QuerySet._result_cache".into());
        e.summary = summary(&e);
        let body = slack_body(&e).to_string();
        let count = |needle: &str| body.matches(needle).count();
        assert_eq!(count("exceeded its memory limit"), 1, "{body}");
        assert_eq!(count("QuerySet._result_cache"), 1, "{body}");
        assert_eq!(count("/var/lib/guard/evidence/x"), 1, "{body}");
        let sl = slack_body(&e);
        assert_eq!(
            sl["text"],
            ":rotating_light: fix_images killed at its memory limit on web1"
        );
        let finding = sl["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(
            finding.starts_with("*What holds the memory:* bytearray"),
            "{finding}"
        );
        e.held_until = Some("2026-12-04T06:00:00.000Z".into());
        let held = slack_body(&e);
        assert!(
            held["text"]
                .as_str()
                .unwrap()
                .contains("held at its memory limit")
        );
        let headline = held["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            headline.contains("held frozen until 2026-12-04T06:00:00.000Z"),
            "{headline}"
        );
        assert!(
            headline.contains("'guard kill fix_images' on web1"),
            "{headline}"
        );
    }

    #[test]
    fn logfmt_lines_stay_one_line_and_escape_quotes() {
        assert_eq!(logfmt_value("plain"), "plain");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("a b"), "\"a b\"");
        assert_eq!(logfmt_value("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(logfmt_value("two\nlines\r\tx"), "\"two\\nlines\\r\\tx\"");
        assert_eq!(logfmt_value("c:\\d"), "\"c:\\\\d\"");
        assert_eq!(logfmt_value("esc\u{1b}[31m"), "\"esc\\u{1b}[31m\"");
        let mut e = ev();
        e.summary = "line one\nline \"two\"".into();
        let l = logfmt(&e);
        assert!(!l.contains('\n'), "{l}");
        assert!(
            l.ends_with("summary=\"line one\\nline \\\"two\\\"\""),
            "{l}"
        );
    }

    #[test]
    fn the_runbook_travels_in_every_body_and_labels_reach_alertmanager() {
        let mut e = ev();
        e.runbook = Some("https://wiki.example/disaster-checklist".into());
        e.summary = summary(&e);
        assert!(
            e.summary
                .contains(" Runbook: https://wiki.example/disaster-checklist.")
        );
        let am = alertmanager_body(&e, &[("team".into(), "data".into())]);
        assert_eq!(
            am[0]["annotations"]["runbook_url"],
            "https://wiki.example/disaster-checklist"
        );
        assert_eq!(am[0]["labels"]["team"], "data");
        assert_eq!(am[0]["labels"]["alertname"], "GuardMemoryLimit");
        assert!(
            slack_body(&e)
                .to_string()
                .contains("*Runbook:* https://wiki.example")
        );
        assert!(guard_fields(&e).contains(&(
            "GUARD_RUNBOOK",
            "https://wiki.example/disaster-checklist".into()
        )));
        assert!(logfmt(&e).contains("runbook=https://wiki.example/disaster-checklist"));
        e.runbook = Some("call the DBA on duty".into());
        let am = alertmanager_body(&e, &[]);
        assert_eq!(am[0]["annotations"]["runbook"], "call the DBA on duty");
        assert!(am[0]["annotations"].get("runbook_url").is_none());
    }

    #[test]
    fn warnings_resolve_themselves() {
        let mut e = ev();
        e.event = EventKind::Warning;
        let am = alertmanager_body(&e, &[]);
        assert_eq!(am[0]["labels"]["alertname"], "GuardMemoryWarning");
        assert_eq!(am[0]["labels"]["severity"], "warning");
        assert!(am[0]["endsAt"].is_string());
    }
}
