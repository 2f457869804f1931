//! `--hold-for`: after the capture at the cap the job stays frozen — its memory capped, its CPU
//! stopped — so that a person can look at it before it is killed. What begins a hold (the job
//! frozen again after its census, the bundle finished at once so it can be read meanwhile, the
//! register entry `guard kill` and `guard held` read, one line, the memory-limit alert saying
//! until when and how to end it) and what ends one: its time, `guard kill`, a terminating
//! signal to guard, the job's own end, or growth while held (poll mode stops the job with
//! SIGSTOP, which another process can undo). Then the job is killed as at any cap.
//!
//! A two-way relation with [`super::event_loop`], kept on purpose: the [`Supervisor`] the loop
//! drives holds a [`Hold`], and the handlers of a hold's events are the `Supervisor`'s own methods
//! (an `impl` block continued here) because they change its deadlines, enforcer and recorder as
//! every other event's handler does. The file is where a hold's part of that one state machine
//! lives, not a layer of its own.

use super::event_loop::{Job, Received, Supervisor};
use super::notify;
use crate::cgroup::Enforce;
use crate::config::units::{format_duration, format_size};
use crate::evidence::{EvidenceError, Pending};
use crate::format::{HoldEnd, HoldInfo, rfc3339};
use crate::supervise::register::{self, Held, Registration};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// How often a held job's memory is looked at.
pub const HOLD_CHECK: Duration = Duration::from_secs(1);
/// A held job that grows by more than this is not held: the hold ends and the job is killed.
const HOLD_SLACK: u64 = 16 << 20;
/// si_code of a signal from the kernel (a terminal key) and of a queued one (`guard kill`).
const SI_KERNEL: i32 = 0x80;

/// A hold in progress, or over.
#[derive(Debug)]
pub struct Hold {
    /// What the manifest says of it (`hold`); `ended_by` set once it is over.
    pub info: HoldInfo,
    pub since: Instant,
    /// The bundle, finished as the hold began.
    pub bundle: Result<PathBuf, EvidenceError>,
    /// The register entry; removed (dropped) as the hold ends.
    registration: Option<Registration>,
    /// The job's memory as the hold began.
    usage: Option<u64>,
}

impl Hold {
    pub fn over(&self) -> bool {
        self.info.ended_by.is_some()
    }

    /// Mark the hold over (`by`, `detail`), and take the entry out of the register.
    fn close(&mut self, by: HoldEnd, detail: String) {
        if self.over() {
            return;
        }
        self.registration = None;
        self.info.ended_at = Some(rfc3339(SystemTime::now()));
        self.info.ended_by = Some(by);
        self.info.detail = detail;
    }

    /// How the kill line says it: "held 2.0 s (--hold-for 2s ran out), then killed".
    pub fn killed_text(&self) -> String {
        let why = match self.info.ended_by {
            Some(HoldEnd::Expired) => format!(
                "--hold-for {} ran out",
                format_duration(Duration::from_millis(self.info.requested_ms))
            ),
            _ => self.info.detail.clone(),
        };
        format!(
            "held {:.1} s ({why}), then killed",
            self.since.elapsed().as_secs_f64()
        )
    }

    /// The job's run is over: say so in the bundle written as the hold began (its exit, its
    /// end, how the hold ended, and the scrubbed end of its output with --quiet).
    pub fn finish(
        mut self,
        exit: Option<crate::format::ExitInfo>,
        tail: Option<Vec<u8>>,
    ) -> Result<PathBuf, EvidenceError> {
        self.close(
            HoldEnd::JobEnded,
            "the job ended during the hold (killed from outside guard?)".into(),
        );
        if let Ok(path) = &self.bundle {
            if let Err(e) = crate::evidence::record_hold_end(path, exit, self.info.clone(), tail) {
                log::warn!("{e}");
            }
        }
        self.bundle
    }
}

/// What ended a hold, from the signal that did.
pub fn signal_end(r: Received) -> (HoldEnd, String) {
    let name = nix::sys::signal::Signal::try_from(r.signo)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {}", r.signo));
    if r.code == libc::SI_QUEUE && r.value == register::KILL_VALUE {
        let who = format!("guard kill (pid {}, uid {})", r.pid, r.uid);
        return (HoldEnd::GuardKill, who);
    }
    let from = if r.code == SI_KERNEL {
        "from the terminal".to_string()
    } else {
        format!("from pid {} (uid {})", r.pid, r.uid)
    };
    (HoldEnd::Signal, format!("{name} {from}"))
}

impl<E: Enforce, J: Job> Supervisor<'_, E, J> {
    /// Whether the job is held now (`--hold-for`).
    pub fn holding(&self) -> bool {
        self.hold.as_ref().is_some_and(|h| !h.over())
    }

    /// At the cap, after the capture: hold the job for `d` instead of killing it. The bundle is
    /// finished now, the hold registered, said on stderr and alerted.
    pub(super) fn begin_hold(
        &mut self,
        captured: Result<Pending, EvidenceError>,
        d: Duration,
        now: Instant,
    ) {
        // Again: a census lets the held job run for its window.
        if !self.enforcer.hold() {
            log::debug!("could not confirm the job frozen again after its capture");
        }
        let wall = SystemTime::now();
        let info = HoldInfo {
            requested_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            since: rfc3339(wall),
            until: rfc3339(wall + d),
            ..HoldInfo::default()
        };
        let peak = self.held_peak.or_else(|| self.enforcer.peak());
        let bundle = captured.and_then(|mut p| {
            p.set_hold(info.clone());
            self.recorder.finish(p, None, false, peak, None)
        });
        let pid = self.job.pid();
        let registration = register::register(&Held {
            job: self.cfg.name.clone(),
            pid,
            guard_pid: std::process::id() as i32,
            guard_start: register::own_start(),
            since: info.since.clone(),
            until: info.until.clone(),
            bundle: bundle.as_ref().ok().map(|b| b.display().to_string()),
            limit_bytes: self.cfg.memory,
            peak_bytes: peak,
        })
        .map_err(|e| {
            log::warn!(
                "{e}: 'guard kill' cannot find this hold; SIGTERM to guard (pid {}) ends it",
                std::process::id()
            )
        })
        .ok();
        log::warn!(
            "{} (pid {pid}) is held frozen at its memory limit {} (peak {}) until {} (--hold-for {}), then killed; end the hold now: guard kill {}; {}",
            self.cfg.name,
            self.cfg.memory.map(format_size).unwrap_or_default(),
            peak.map(format_size).unwrap_or_else(|| "unknown".into()),
            info.until,
            format_duration(d),
            self.cfg.name,
            super::verdict::evidence_text(&bundle)
        );
        let scrub = self.recorder.scrubber();
        let path = bundle.as_ref().ok().cloned();
        self.pending
            .extend(notify::held(self.cfg, pid, &scrub, path, peak, &info.until));
        self.at.hold_until = Some(now + d);
        self.at.hold_check = Some(now + HOLD_CHECK);
        // Nothing else is due while the job is held: the time limit has given way to the cap.
        self.at.timeout = None;
        let usage = self.enforcer.usage();
        self.hold = Some(Hold {
            info,
            since: now,
            bundle,
            registration,
            usage,
        });
    }

    /// End the hold (`by`, `detail`) and kill the job.
    pub(super) fn end_hold(&mut self, by: HoldEnd, detail: String, now: Instant) {
        let Some(h) = self.hold.as_mut().filter(|h| !h.over()) else {
            return;
        };
        h.close(by, detail);
        log::info!(
            "{} (pid {}): the hold ended after {:.1} s ({}); killing the job",
            self.cfg.name,
            self.job.pid(),
            h.since.elapsed().as_secs_f64(),
            h.info.detail
        );
        self.at.hold_until = None;
        self.at.hold_check = None;
        self.kill(now);
    }

    /// A terminating signal while the job is held: the hold ends, the job is killed.
    pub(super) fn end_hold_by_signal(&mut self, r: Received, now: Instant) {
        let (by, detail) = signal_end(r);
        self.end_hold(by, detail, now);
    }

    /// The hold's time ran out.
    pub(super) fn on_hold_expired(&mut self, now: Instant) {
        let d = self.cfg.hold_for.unwrap_or_default();
        self.end_hold(
            HoldEnd::Expired,
            format!("--hold-for {} ran out", format_duration(d)),
            now,
        );
    }

    /// Every HOLD_CHECK: a held job does not grow; one that does (poll mode's SIGSTOP undone by
    /// another process) is killed.
    pub(super) fn on_hold_check(&mut self, now: Instant) {
        self.at.hold_check = Some(now + HOLD_CHECK);
        let at_hold = self.hold.as_ref().and_then(|h| h.usage);
        if let (Some(u0), Some(u)) = (at_hold, self.enforcer.usage()) {
            if u > u0.saturating_add(HOLD_SLACK) {
                let detail = format!(
                    "the held job grew from {} to {}: something let it run",
                    format_size(u0),
                    format_size(u)
                );
                log::warn!("{}: {detail}; killing it", self.cfg.name);
                self.end_hold(HoldEnd::Grew, detail, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_ended_a_hold_is_told_from_the_signal() {
        let mut r = Received::new(libc::SIGTERM, libc::SI_QUEUE);
        r.pid = 77;
        r.value = register::KILL_VALUE;
        assert_eq!(
            signal_end(r),
            (HoldEnd::GuardKill, "guard kill (pid 77, uid 0)".into())
        );
        r.value = 1;
        assert_eq!(
            signal_end(r),
            (HoldEnd::Signal, "SIGTERM from pid 77 (uid 0)".into())
        );
        let t = Received::new(libc::SIGINT, SI_KERNEL);
        assert_eq!(
            signal_end(t),
            (HoldEnd::Signal, "SIGINT from the terminal".into())
        );
    }
}
