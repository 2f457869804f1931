//! Alerts: every event guard has evidence for goes to every sink configured for it, at once, in
//! parallel, each attempt time-bounded and retried with backoff when the failure is retriable.
//! Delivery never delays enforcement (it runs after the kill, or on its own thread for warnings)
//! and never changes guard's exit status: a failed delivery is one warning line, and every
//! result goes into the bundle's manifest (`alerts`).
//!
//! - [`spec`]: `--alert KIND:TARGET` and `[[alerts]]` tables → validated sink specs; secrets
//!   (`env:NAME`, `file:/path`) resolved only when sending and never printed.
//! - [`sinks`]: webhook, Slack, Alertmanager (API v2), exec, log.

pub mod sinks;
pub mod spec;

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

pub use spec::{Sink, SinkKind};

/// Attempts per sink (the first and two retries).
pub const MAX_TRIES: u32 = 3;
/// Pause before the second attempt; doubled before the third.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Event names (the contract's).
pub const EVENTS: &[&str] = &[
    "memory-limit",
    "warning",
    "kernel-oom",
    "failed",
    "timeout",
    "drill",
];

/// What happened, as every sink reports it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Event {
    pub event: String,
    pub job: String,
    pub host: String,
    pub pid: i32,
    pub command: Vec<String>,
    pub limit_bytes: Option<u64>,
    pub peak_bytes: Option<u64>,
    pub trigger: Option<String>,
    pub capture: Option<String>,
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
}

impl Event {
    pub fn severity(&self) -> &'static str {
        match self.event.as_str() {
            "warning" | "drill" => "warning",
            _ => "critical",
        }
    }

    pub fn alertname(&self) -> &'static str {
        match self.event.as_str() {
            "memory-limit" => "GuardMemoryLimit",
            "warning" => "GuardMemoryWarning",
            "kernel-oom" => "GuardKernelOOM",
            "failed" => "GuardJobFailed",
            "timeout" => "GuardTimeout",
            _ => "GuardDrill",
        }
    }
}

/// One sink's delivery result (the manifest's `alerts`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Delivery {
    pub sink: String,
    /// ok | failed
    pub status: String,
    pub attempts: u32,
    pub ms: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
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
    let chosen: Vec<&Sink> = sinks.iter().filter(|s| s.wants(&ev.event)).collect();
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
                    status: "failed".into(),
                    attempts: 0,
                    ms: 0.0,
                    detail: "the delivery thread panicked".into(),
                })
            })
            .collect()
    })
}

fn deliver_one(s: &Sink, ev: &Event) -> Delivery {
    let t0 = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    let tries = if s.retries() { MAX_TRIES } else { 1 };
    let detail = loop {
        attempts += 1;
        match sinks::send(s, ev) {
            Ok(()) => {
                return Delivery {
                    sink: s.label(),
                    status: "ok".into(),
                    attempts,
                    ms: (t0.elapsed().as_secs_f64() * 1e6).round() / 1000.0,
                    detail: String::new(),
                };
            }
            Err(AttemptError::Retriable(e)) if attempts < tries => {
                log::debug!("{}: attempt {attempts} failed: {e}; retrying", s.label());
                std::thread::sleep(backoff);
                backoff *= 2;
            }
            Err(AttemptError::Retriable(e)) | Err(AttemptError::Final(e)) => break e,
        }
    };
    Delivery {
        sink: s.label(),
        status: "failed".into(),
        attempts,
        ms: (t0.elapsed().as_secs_f64() * 1e6).round() / 1000.0,
        detail,
    }
}

/// One warning line per failed delivery.
pub fn report_failures(results: &[Delivery], ev: &Event) {
    for r in results.iter().filter(|r| r.status != "ok") {
        log::warn!(
            "could not send the {} alert to {} after {} attempt(s): {}; the job's result is unchanged",
            ev.event,
            r.sink,
            r.attempts,
            r.detail
        );
    }
}
