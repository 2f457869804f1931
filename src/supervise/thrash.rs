//! `--thrash-after`: a job stalled at its cap. A job can sit at its memory limit for minutes
//! without the kernel ever holding it there (v1 `under_oom 0`, v2 usage back under
//! `memory.high` after each reclaim): reclaiming its own file pages keeps succeeding, and it
//! spends its time reading them back — a Node service at 72 % CPU and 31,000 major faults, hung,
//! and nobody told. The signal is the one the kernel gives for thrashing, in the job's own
//! cgroup: usage pinned at the cap *and* both major faults (a page it touches had to be read
//! back) and workingset refaults (pages the kernel evicted from it came back), at least
//! [`MIN_MAJOR_FAULTS`] and [`MIN_REFAULTS`] a second. A stream passes through a cap without either both: `cat` and `sort`
//! read() (no page fault) pages they never had (no refault); a program reading a file through
//! mmap once faults on first reads, which are no refaults.
//!
//! A check every [`CHECK_EVERY`]; a run of checks that say "thrashing" for --thrash-after (a
//! couple of quiet checks in between do not reset it: the kernel's counters move in bursts)
//! treats the job as reaching its cap.

use crate::cgroup::FaultCounters;
use crate::format::Thrashing;
use std::time::{Duration, Instant};

/// How often the counters are read while a capped job runs (two small file reads).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Major faults a second that count as thrashing: a job touching its own evicted pages (each
/// fault reads a cluster of pages ahead, so faults are far fewer than pages).
pub const MIN_MAJOR_FAULTS: f64 = 5.0;
/// Workingset refaults (pages) a second that count as thrashing.
pub const MIN_REFAULTS: f64 = 100.0;
/// This many quiet checks in a row end a run of thrashing ones.
const QUIET_CHECKS: u32 = 3;

/// The state of the checks of one run.
#[derive(Debug)]
pub struct Detector {
    limit: u64,
    after: Duration,
    last: Option<(Instant, FaultCounters)>,
    since: Option<Instant>,
    quiet: u32,
    /// The rates of the thrashing checks of the current run, summed, and how many.
    sums: (f64, f64, u32),
}

impl Detector {
    pub fn new(limit: u64, after: Duration) -> Detector {
        Detector {
            limit,
            after,
            last: None,
            since: None,
            quiet: 0,
            sums: (0.0, 0.0, 0),
        }
    }

    /// Usage within 2 % (at least 2 MiB) of the cap: the kernel keeps it there by reclaim.
    fn pinned(&self, usage: u64) -> bool {
        usage >= self.limit - (self.limit / 50).max(2 << 20).min(self.limit)
    }

    /// One check at `now`: the job's usage and its counters. Some: it has thrashed at its cap
    /// for --thrash-after.
    pub fn observe(&mut self, now: Instant, usage: u64, c: FaultCounters) -> Option<Thrashing> {
        let (then, before) = self.last.replace((now, c))?;
        let secs = now.saturating_duration_since(then).as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let majors = rate(c.major_faults, before.major_faults);
        let refaults = rate(c.refaults, before.refaults);
        if self.pinned(usage) && majors >= MIN_MAJOR_FAULTS && refaults >= MIN_REFAULTS {
            self.quiet = 0;
            self.since.get_or_insert(then);
            self.sums = (
                self.sums.0 + majors,
                self.sums.1 + refaults,
                self.sums.2 + 1,
            );
        } else {
            self.quiet += 1;
            if self.quiet >= QUIET_CHECKS {
                self.since = None;
                self.sums = (0.0, 0.0, 0);
            }
        }
        let since = self.since?;
        let lasted = now.saturating_duration_since(since);
        (lasted >= self.after && self.sums.2 > 0).then(|| {
            let n = f64::from(self.sums.2);
            Thrashing {
                duration_ms: u64::try_from(lasted.as_millis()).unwrap_or(u64::MAX),
                major_faults_per_s: (self.sums.0 / n).round() as u64,
                refaults_per_s: (self.sums.1 / n).round() as u64,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn run(
        d: &mut Detector,
        t0: Instant,
        secs: u64,
        usage: u64,
        per_s: (u64, u64),
    ) -> Option<Thrashing> {
        let mut c = FaultCounters::default();
        let mut out = None;
        for s in 0..=secs {
            c.major_faults += per_s.0;
            c.refaults += per_s.1;
            out = out.or(d.observe(t0 + Duration::from_secs(s), usage, c));
        }
        out
    }

    #[test]
    fn pinned_and_faulting_back_for_the_duration_is_thrashing() {
        let t0 = Instant::now();
        let mut d = Detector::new(200 * MIB, Duration::from_secs(5));
        let t = run(&mut d, t0, 6, 200 * MIB, (120, 3000)).expect("thrashing");
        assert_eq!((t.major_faults_per_s, t.refaults_per_s), (120, 3000));
        assert!(t.duration_ms >= 5000, "{t:?}");
    }

    #[test]
    fn a_stream_through_the_cap_is_not_thrashing() {
        let t0 = Instant::now();
        // cat/sort: pinned at the cap, refaults (their own temporary files) but no major faults.
        let mut d = Detector::new(64 * MIB, Duration::from_secs(3));
        assert_eq!(run(&mut d, t0, 20, 64 * MIB, (0, 20_000)), None);
        // A first read through mmap: major faults, no refaults.
        let mut d = Detector::new(64 * MIB, Duration::from_secs(3));
        assert_eq!(run(&mut d, t0, 20, 64 * MIB, (5_000, 0)), None);
        // Faulting, but well under the cap: not stalled at it.
        let mut d = Detector::new(64 * MIB, Duration::from_secs(3));
        assert_eq!(run(&mut d, t0, 20, 40 * MIB, (500, 500)), None);
    }

    #[test]
    fn a_quiet_check_or_two_do_not_reset_the_run_three_do() {
        let t0 = Instant::now();
        // One check a second, `per_s[s]` faults of each kind in second s.
        let checks = |per_s: &[u64]| -> Vec<bool> {
            let mut d = Detector::new(100 * MIB, Duration::from_secs(4));
            let mut c = FaultCounters::default();
            per_s
                .iter()
                .enumerate()
                .map(|(s, add)| {
                    c.major_faults += add;
                    c.refaults += add;
                    d.observe(t0 + Duration::from_secs(s as u64), 100 * MIB, c)
                        .is_some()
                })
                .collect()
        };
        // One quiet second (2 s) keeps the run that began in the interval 0-1 s: 4 s at 4 s.
        assert_eq!(
            checks(&[0, 100, 0, 100, 100]),
            [false, false, false, false, true]
        );
        // Three quiet seconds begin a new one.
        assert_eq!(checks(&[0, 100, 0, 0, 0, 100, 100]), [false; 7]);
    }
}
