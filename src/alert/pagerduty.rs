//! The pagerduty sink: PagerDuty's Events API v2. Every event of a job triggers (or updates)
//! one incident, keyed by `dedup_key` = guard/HOST/JOB: a warning opens it, the kill that follows
//! escalates the same incident, and a warning whose run then ended well resolves it. A drill
//! triggers its own incident (guard/HOST/JOB/drill) at severity info and resolves it at once.
//! The routing key is a secret (`env:NAME`, `file:/path`), never shown.

use super::{AttemptError, Event};
use crate::config::alerts::{PAGERDUTY_URL, Secret, Sink};
use crate::format::EventKind;
use serde_json::{Value, json};

/// What an event does to the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Trigger,
    Resolve,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Resolve => "resolve",
        }
    }
}

/// One incident per job and host (a drill's apart from the job's).
pub fn dedup_key(ev: &Event) -> String {
    let base = format!("guard/{}/{}", ev.host, ev.job);
    if ev.event == EventKind::Drill {
        format!("{base}/drill")
    } else {
        base
    }
}

/// PagerDuty's severities: critical for what ended a job, warning for a warning, info for a
/// drill.
fn severity(ev: &Event) -> &'static str {
    match ev.event {
        EventKind::Warning => "warning",
        EventKind::Drill => "info",
        _ => "critical",
    }
}

/// The Events API v2 body.
pub fn body(routing_key: &str, ev: &Event, action: Action) -> Value {
    let mut b = json!({
        "routing_key": routing_key,
        "event_action": action.as_str(),
        "dedup_key": dedup_key(ev),
    });
    if action == Action::Resolve {
        return b;
    }
    let summary: String = if ev.event == EventKind::Drill {
        format!("DRILL: {}", ev.summary)
    } else {
        ev.summary.clone()
    }
    .chars()
    .take(1024)
    .collect();
    b["payload"] = json!({
        "summary": summary,
        "source": ev.host,
        "severity": severity(ev),
        "component": ev.job,
        "group": "guard",
        "class": ev.event.as_str(),
        "timestamp": ev.time,
        "custom_details": {
            "pid": ev.pid,
            "command": super::text::command_text(ev),
            "limit_bytes": ev.limit_bytes,
            "peak_bytes": ev.peak_bytes,
            "bundle": ev.bundle,
            "bundle_url": ev.bundle_url,
            "bundle_link": ev.bundle_link,
            "exit_code": ev.exit_code,
            "what_holds_the_memory": ev.finding,
            "held_until": ev.held_until,
            "runbook": ev.runbook,
        },
    });
    b["client"] = json!("guard");
    if let Some(r) = ev.runbook.as_deref().filter(|r| r.starts_with("http")) {
        b["links"] = json!([{"href": r, "text": "Runbook"}]);
    }
    b
}

/// Where the sink posts: its `url`, else PagerDuty's.
fn url(s: &Sink) -> String {
    s.api_url.clone().unwrap_or_else(|| PAGERDUTY_URL.into())
}

fn key(s: &Sink) -> Result<String, AttemptError> {
    s.target
        .resolve()
        .map_err(|e| AttemptError::Final(e.to_string()))
}

/// Send `ev` once: trigger (a drill: trigger, then resolve).
pub fn send(s: &Sink, ev: &Event) -> Result<(), AttemptError> {
    let k = key(s)?;
    let u = Secret::Plain(url(s));
    super::http::post(s, &u, body(&k, ev, Action::Trigger))?;
    if ev.event == EventKind::Drill {
        super::http::post(s, &u, body(&k, ev, Action::Resolve))?;
    }
    Ok(())
}

/// Resolve the job's incident (its warning ended well).
pub fn resolve(s: &Sink, ev: &Event) -> Result<(), AttemptError> {
    let k = key(s)?;
    super::http::post(s, &Secret::Plain(url(s)), body(&k, ev, Action::Resolve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_incident_per_job_with_severity_and_links() {
        let mut ev: Event = serde_json::from_value(json!({
            "event": "warning", "job": "fix_images", "host": "web1", "pid": 42,
            "command": ["python"], "limit_bytes": 10, "peak_bytes": 9, "trigger": null,
            "capture": null, "bundle": null, "summary": "s", "exit_code": null,
            "guard_version": "0", "time": "2026-12-04T06:00:00.000Z",
            "runbook": "https://wiki.example/x"
        }))
        .unwrap();
        let b = body("K", &ev, Action::Trigger);
        assert_eq!(b["routing_key"], "K");
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], "guard/web1/fix_images");
        assert_eq!(b["payload"]["severity"], "warning");
        assert_eq!(b["payload"]["source"], "web1");
        assert_eq!(b["links"][0]["href"], "https://wiki.example/x");
        let r = body("K", &ev, Action::Resolve);
        assert_eq!(r["event_action"], "resolve");
        assert!(r.get("payload").is_none());
        ev.event = EventKind::Drill;
        let d = body("K", &ev, Action::Trigger);
        assert_eq!(d["dedup_key"], "guard/web1/fix_images/drill");
        assert_eq!(d["payload"]["severity"], "info");
        assert!(
            d["payload"]["summary"]
                .as_str()
                .unwrap()
                .starts_with("DRILL: ")
        );
    }
}
