//! Alerts: every event guard has evidence for goes to every sink configured for it, at once, in
//! parallel, each attempt time-bounded and retried with backoff when the failure is retriable.
//! Delivery never delays enforcement (it runs after the kill, or on its own thread for warnings)
//! and never changes guard's exit status: a failed delivery is one warning line, and every
//! result goes into the bundle's manifest (`alerts`).
//!
//! The sinks' specifications — `--alert KIND:TARGET` and `[[alerts]]` tables, their secrets
//! (`env:NAME`, `file:/path`) resolved only when sending and never printed — are configuration:
//! [`crate::config::alerts`].
//! - [`sinks`]: one attempt at one sink: webhook, Slack, Alertmanager (API v2), exec, log.
//! - [`http`]: posting, for the sinks that post and for the pings; [`text`]: the summary and the
//!   job's own text, escaped, that every sink carries.
//! - [`email`]: SMTP (STARTTLS or TLS, AUTH); [`pagerduty`]: the Events API v2.
//! - [`metrics`]: `--metrics-file`, the node_exporter textfile: the other way people learn how
//!   a job ended.

pub mod email;
pub mod http;
pub mod metrics;
pub mod pagerduty;
pub mod sinks;
pub mod text;

use crate::format::{Capture, EventKind, Status};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

pub use crate::config::alerts::{Sink, SinkKind};
pub use crate::format::Delivery;

/// Attempts per sink (the first and two retries).
pub const MAX_TRIES: u32 = 3;
/// Pause before the second attempt; doubled before the third.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Each attempt's bound unless a sink's `timeout` says otherwise (part of its specification).
pub use crate::config::alerts::DEFAULT_TIMEOUT;

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
    /// `--upload`: where the bundle's archive goes once the run is over (the object's URL;
    /// opening it needs the bucket's credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_url: Option<String>,
    /// `--upload-presign`: a link that opens the archive without credentials, for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_link: Option<String>,
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
    /// The job reached its cap by thrashing at it (--thrash-after): for how long, how hard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thrashing: Option<crate::format::Thrashing>,
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
        bundle_url: None,
        bundle_link: None,
        summary: String::new(),
        exit_code: None,
        guard_version: "0.1.0".into(),
        time: String::new(),
        output_tail: None,
        finding: None,
        growth: None,
        held_until: None,
        runbook: None,
        thrashing: None,
    }
}

/// How one attempt failed.
pub enum AttemptError {
    /// Worth another try: connect errors, timeouts, 429, 5xx.
    Retriable(String),
    Final(String),
}

/// Slack on top of a delivery's own bound (attempts × timeout + backoff) for what no timeout
/// covers: starting the thread, name resolution, a busy machine's scheduling.
pub const BOUND_MARGIN: Duration = Duration::from_secs(1);

/// The longest guard waits for one delivery of `tries` attempts of `timeout` each: every
/// attempt's timeout, the backoff between them, and [`BOUND_MARGIN`]. Each attempt is bounded by
/// its client too, but not always as a whole (lettre's timeout is per read: a server sending a
/// byte a second never trips it); this bound is.
pub fn delivery_bound(tries: u32, timeout: Duration) -> Duration {
    let backoff: Duration = (0..tries.saturating_sub(1))
        .map(|i| FIRST_BACKOFF * 2u32.pow(i))
        .sum();
    timeout * tries + backoff + BOUND_MARGIN
}

/// One delivery to run on a thread of its own, and how long guard waits for it.
pub struct Job {
    pub label: String,
    pub tries: u32,
    pub timeout: Duration,
    pub run: Box<dyn FnOnce() -> Delivery + Send>,
}

/// Run every job at once, each on a thread of its own, and wait for each no longer than its
/// [`delivery_bound`]: a delivery still under way then is given up (its thread dies with guard)
/// and reported as `timeout`, saying so. The results are in the jobs' order.
pub fn run_bounded(jobs: Vec<Job>) -> Vec<Delivery> {
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Delivery)>();
    let mut out: Vec<Option<Delivery>> = Vec::with_capacity(jobs.len());
    let mut bounds = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.into_iter().enumerate() {
        let bound = delivery_bound(job.tries, job.timeout);
        bounds.push((job.label.clone(), job.tries, job.timeout, bound));
        let tx = tx.clone();
        let run = job.run;
        let label = job.label;
        let spawned = std::thread::Builder::new()
            .name("guard-alert".into())
            .spawn(move || {
                let d = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                    .unwrap_or_else(|_| failed(&label, "the delivery thread panicked"));
                let _ = tx.send((i, d));
            });
        out.push(match spawned {
            Ok(_) => None,
            Err(e) => Some(failed(&bounds[i].0, &format!("cannot start a thread: {e}"))),
        });
    }
    drop(tx);
    while out.iter().any(Option::is_none) {
        // Wait for the latest bound among those still under way.
        let until = out
            .iter()
            .zip(&bounds)
            .filter(|(d, _)| d.is_none())
            .map(|(_, b)| t0 + b.3)
            .max()
            .unwrap_or(t0);
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok((i, d)) => out[i] = Some(d),
            Err(_) => break,
        }
    }
    out.into_iter()
        .zip(bounds)
        .map(|(d, (label, tries, timeout, bound))| {
            d.unwrap_or_else(|| Delivery {
                sink: label,
                status: Status::Timeout,
                attempts: tries,
                ms: (t0.elapsed().as_secs_f64() * 1e6).round() / 1000.0,
                detail: format!(
                    "no answer within {} ({tries} attempt(s) of {} and the backoff): guard stopped waiting",
                    crate::config::units::format_duration(bound),
                    crate::config::units::format_duration(timeout)
                ),
            })
        })
        .collect()
}

fn failed(label: &str, detail: &str) -> Delivery {
    Delivery {
        sink: label.to_string(),
        status: Status::Failed,
        attempts: 0,
        ms: 0.0,
        detail: detail.to_string(),
    }
}

/// Deliver `ev` to each of `sinks` that wants it, all in parallel; returns when every one has
/// succeeded or given up, or its [`delivery_bound`] has passed.
pub fn deliver(sinks: &[Sink], ev: &Event) -> Vec<Delivery> {
    let ev = std::sync::Arc::new(ev.clone());
    let jobs = sinks
        .iter()
        .filter(|s| s.wants(ev.event))
        .map(|s| {
            let tries = if s.retries() { MAX_TRIES } else { 1 };
            let (sink, ev) = (s.clone(), ev.clone());
            Job {
                label: s.label(),
                tries,
                timeout: s.timeout,
                run: Box::new(move || {
                    with_retries(&sink.label(), tries, || sinks::send(&sink, &ev))
                }),
            }
        })
        .collect();
    run_bounded(jobs)
}

/// A warning ended well (the job then exited 0): resolve its incident on every pagerduty sink
/// that got the warning, in parallel, bounded like any delivery.
pub fn resolve_warning(sinks: &[Sink], ev: &Event) -> Vec<Delivery> {
    let ev = std::sync::Arc::new(ev.clone());
    let jobs = sinks
        .iter()
        .filter(|s| s.kind == SinkKind::PagerDuty && s.wants(EventKind::Warning))
        .map(|s| {
            let (sink, ev) = (s.clone(), ev.clone());
            let label = format!("{} resolve", s.label());
            Job {
                label: label.clone(),
                tries: MAX_TRIES,
                timeout: s.timeout,
                run: Box::new(move || {
                    with_retries(&label, MAX_TRIES, || pagerduty::resolve(&sink, &ev))
                }),
            }
        })
        .collect();
    run_bounded(jobs)
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
    // What an endpoint answered (an SMTP reply) is the remote's text: one line, its control
    // characters escaped, in the manifest, the summary and the warning alike.
    let detail = crate::format::escape_controls(&detail, false).into_owned();
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
/// (guard's line and the output tail on failure), bounded and retried like the alert sinks: up to
/// `tries` attempts ([`MAX_TRIES`] unless the endpoint just failed every attempt of a ping).
pub fn ping(
    url: &crate::config::alerts::Secret,
    suffix: &str,
    rid: &str,
    body: &str,
    tries: u32,
) -> Delivery {
    let label = format!("ping {}{suffix}", url.shown());
    let (url, suffix, rid, body) = (
        url.clone(),
        suffix.to_string(),
        rid.to_string(),
        body.to_string(),
    );
    let tries = tries.clamp(1, MAX_TRIES);
    let job = Job {
        label: label.clone(),
        tries,
        timeout: DEFAULT_TIMEOUT,
        run: Box::new(move || {
            with_retries(&label, tries, || {
                http::post_text(&url, &suffix, &rid, &body, DEFAULT_TIMEOUT)
            })
        }),
    };
    run_bounded(vec![job])
        .pop()
        .unwrap_or_else(|| failed("ping", "no delivery"))
}

/// A run id for the pings of one run: a random UUID (version 4), as healthchecks expects.
pub fn run_id() -> String {
    let (a, b) = (crate::os::random_u64(), crate::os::random_u64());
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
        if r.status == Status::Timeout {
            log::warn!(
                "could not send the {} alert to {}: {}; the job's result is unchanged",
                ev.event,
                r.sink,
                r.detail
            );
            continue;
        }
        log::warn!(
            "could not send the {} alert to {} after {} attempt(s): {}; the job's result is unchanged",
            ev.event,
            r.sink,
            r.attempts,
            r.detail
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_every_attempt_and_the_backoff() {
        let t = Duration::from_secs(5);
        assert_eq!(delivery_bound(1, t), t + BOUND_MARGIN);
        assert_eq!(
            delivery_bound(3, t),
            Duration::from_millis(15_000 + 500 + 1_000) + BOUND_MARGIN
        );
    }

    #[test]
    fn a_delivery_past_its_bound_is_given_up_and_said_to_be() {
        let job = |label: &str, sleep_ms: u64| {
            let l = label.to_string();
            Job {
                label: label.into(),
                tries: 1,
                timeout: Duration::from_millis(100),
                run: Box::new(move || {
                    std::thread::sleep(Duration::from_millis(sleep_ms));
                    failed(&l, "ended")
                }),
            }
        };
        let t0 = Instant::now();
        let out = run_bounded(vec![job("slow", 60_000), job("quick", 0)]);
        // The bound is 1.1 s (0.1 s + the margin); 5 s more for a loaded machine.
        assert!(
            t0.elapsed() < Duration::from_millis(6_100),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(out[0].status, Status::Timeout);
        assert!(
            out[0].detail.contains("guard stopped waiting"),
            "{}",
            out[0].detail
        );
        assert_eq!(
            (out[1].sink.as_str(), out[1].detail.as_str()),
            ("quick", "ended")
        );
    }
}
