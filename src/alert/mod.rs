//! Alerts: every event guard has evidence for goes to every sink configured for it, at once, in
//! parallel, each attempt time-bounded and retried with backoff when the failure is retriable.
//! Delivery never delays enforcement (it runs after the kill, or on its own thread for warnings)
//! and never changes guard's exit status: a failed delivery is one warning line, and every
//! result goes into the bundle's manifest (`alerts`).
//!
//! - [`spec`]: `--alert KIND:TARGET` and `[[alerts]]` tables → validated sink specs; secrets
//!   (`env:NAME`, `file:/path`) resolved only when sending and never printed.
//! - [`sinks`]: webhook, Slack, Alertmanager (API v2), exec, log.
//! - [`email`]: SMTP (STARTTLS or TLS, AUTH); [`pagerduty`]: the Events API v2.

pub mod email;
pub mod local;
pub mod pagerduty;
pub mod sinks;
pub mod spec;

use crate::format::{Capture, EventKind, Status};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

pub use crate::format::Delivery;
pub use spec::{Sink, SinkKind};

/// Attempts per sink (the first and two retries).
pub const MAX_TRIES: u32 = 3;
/// Pause before the second attempt; doubled before the third.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What happened, as every sink reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub event: EventKind,
    pub job: String,
    pub host: String,
    pub pid: i32,
    pub command: Vec<String>,
    pub limit_bytes: Option<u64>,
    pub peak_bytes: Option<u64>,
    pub trigger: Option<EventKind>,
    pub capture: Option<Capture>,
    pub bundle: Option<String>,
    /// One paragraph for people.
    pub summary: String,
    pub exit_code: Option<i32>,
    pub guard_version: String,
    /// RFC 3339 UTC.
    pub time: String,
    /// The last 64 KiB of the job's output (--quiet only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
    /// What holds the memory: the Python heap census's first finding, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
    /// How the job's memory grew up to the event: rate, time to the cap, shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<crate::format::Forecast>,
    /// `--hold-for`: the job is held frozen until then (RFC 3339 UTC), then killed; `guard
    /// kill JOB` on the host ends the hold sooner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<String>,
    /// The job's runbook (a URL or a line of text; `runbook` in guard.toml, --runbook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

impl Event {
    pub fn severity(&self) -> &'static str {
        match self.event {
            EventKind::Warning | EventKind::Drill => "warning",
            _ => "critical",
        }
    }

    pub fn alertname(&self) -> &'static str {
        match self.event {
            EventKind::MemoryLimit => "GuardMemoryLimit",
            EventKind::Warning => "GuardMemoryWarning",
            EventKind::KernelOom => "GuardKernelOOM",
            EventKind::Failed => "GuardJobFailed",
            EventKind::Timeout => "GuardTimeout",
            EventKind::Drill => "GuardDrill",
            // Not alert events: named after what they are.
            EventKind::Signal => "GuardSignal",
            EventKind::Unknown => "GuardEvent",
        }
    }
}

/// An event for the sinks' unit tests: fix_images killed at its 2 GiB cap on web1.
#[cfg(test)]
pub fn sample_event() -> Event {
    Event {
        event: EventKind::MemoryLimit,
        job: "fix_images".into(),
        host: "web1".into(),
        pid: 42,
        command: vec!["python".into(), "manage.py".into()],
        limit_bytes: Some(2 << 30),
        peak_bytes: Some(2 << 30),
        trigger: None,
        capture: None,
        bundle: Some("/var/lib/guard/evidence/x".into()),
        summary: String::new(),
        exit_code: None,
        guard_version: "0.1.0".into(),
        time: String::new(),
        output_tail: None,
        finding: None,
        growth: None,
        held_until: None,
        runbook: None,
    }
}

/// How one attempt failed.
pub enum AttemptError {
    /// Worth another try: connect errors, timeouts, 429, 5xx.
    Retriable(String),
    Final(String),
}

/// Deliver `ev` to each of `sinks` that wants it, all in parallel; returns when every one has
/// succeeded or given up (at most MAX_TRIES attempts of `timeout` each plus the backoff).
pub fn deliver(sinks: &[Sink], ev: &Event) -> Vec<Delivery> {
    let chosen: Vec<&Sink> = sinks.iter().filter(|s| s.wants(ev.event)).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chosen
            .iter()
            .map(|s| scope.spawn(move || deliver_one(s, ev)))
            .collect();
        handles
            .into_iter()
            .zip(&chosen)
            .map(|(h, s)| {
                h.join().unwrap_or_else(|_| Delivery {
                    sink: s.label(),
                    status: Status::Failed,
                    attempts: 0,
                    ms: 0.0,
                    detail: "the delivery thread panicked".into(),
                })
            })
            .collect()
    })
}

/// A warning ended well (the job then exited 0): resolve its incident on every pagerduty sink
/// that got the warning, in parallel, bounded like any delivery.
pub fn resolve_warning(sinks: &[Sink], ev: &Event) -> Vec<Delivery> {
    let chosen: Vec<&Sink> = sinks
        .iter()
        .filter(|s| s.kind == SinkKind::PagerDuty && s.wants(EventKind::Warning))
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chosen
            .iter()
            .map(|s| {
                scope.spawn(move || {
                    with_retries(&format!("{} resolve", s.label()), MAX_TRIES, || {
                        pagerduty::resolve(s, ev)
                    })
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

fn deliver_one(s: &Sink, ev: &Event) -> Delivery {
    let tries = if s.retries() { MAX_TRIES } else { 1 };
    with_retries(&s.label(), tries, || sinks::send(s, ev))
}

/// Run `attempt` up to `tries` times, backing off between retriable failures.
pub fn with_retries(
    label: &str,
    tries: u32,
    mut attempt: impl FnMut() -> Result<(), AttemptError>,
) -> Delivery {
    let t0 = Instant::now();
    let ms = |t0: Instant| (t0.elapsed().as_secs_f64() * 1e6).round() / 1000.0;
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    let detail = loop {
        attempts += 1;
        match attempt() {
            Ok(()) => {
                return Delivery {
                    sink: label.to_string(),
                    status: Status::Ok,
                    attempts,
                    ms: ms(t0),
                    detail: String::new(),
                };
            }
            Err(AttemptError::Retriable(e)) if attempts < tries => {
                log::debug!("{label}: attempt {attempts} failed: {e}; retrying");
                std::thread::sleep(backoff);
                backoff *= 2;
            }
            Err(AttemptError::Retriable(e)) | Err(AttemptError::Final(e)) => break e,
        }
    };
    Delivery {
        sink: label.to_string(),
        status: Status::Failed,
        attempts,
        ms: ms(t0),
        detail,
    }
}

/// `--ping URL`: a healthchecks-compatible ping to `URL` + `suffix` ("/start", "" on success,
/// "/STATUS" — healthchecks' exit-status endpoint — on failure) with the run id `rid` and `body`
/// (guard's line and the output tail on failure), bounded and retried like the alert sinks.
pub fn ping(url: &spec::Secret, suffix: &str, rid: &str, body: &str) -> Delivery {
    let label = format!("ping {}{suffix}", url.shown());
    with_retries(&label, MAX_TRIES, || {
        sinks::post_text(url, suffix, rid, body, DEFAULT_TIMEOUT)
    })
}

/// A run id for the pings of one run: a random UUID (version 4), as healthchecks expects.
pub fn run_id() -> String {
    let (a, b) = (crate::random_u64(), crate::random_u64());
    let hi = (a & 0xffff_ffff_ffff_0fff) | 0x4000; // version 4
    let lo = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000; // variant 1
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// One warning line per failed delivery.
pub fn report_failures(results: &[Delivery], ev: &Event) {
    for r in results.iter().filter(|r| r.status != Status::Ok) {
        log::warn!(
            "could not send the {} alert to {} after {} attempt(s): {}; the job's result is unchanged",
            ev.event,
            r.sink,
            r.attempts,
            r.detail
        );
    }
}
