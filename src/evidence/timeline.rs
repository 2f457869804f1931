//! The memory timeline: what the sampler saw during the run (the job's total, and the resident
//! size of its largest processes), kept in bounded memory — when full, the older half is thinned
//! to every other sample, so a long run keeps its whole shape and its last minutes in full
//! detail — and written as `timeline.csv` in long format: one row per process per sample.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Instant;

/// Most samples kept; at 100 ms that is the last ~1.7 minutes in full and the run before thinned.
pub const MAX_SAMPLES: usize = 2048;
/// How many of the newest samples are never thinned.
const KEEP_RECENT: usize = 1024;
/// Processes recorded per sample (the largest by RSS); the job total covers the rest.
pub const MAX_PROCS: usize = 8;

/// One sample: milliseconds since the job started, the job's memory (cgroup usage, or the sum of
/// RSS in poll mode), and the largest processes' (pid, RSS bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub t_ms: u64,
    pub job_bytes: u64,
    pub procs: Vec<(i32, u64)>,
}

#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    samples: VecDeque<Sample>,
}

impl Timeline {
    pub fn new(start: Instant) -> Timeline {
        Timeline {
            start,
            samples: VecDeque::with_capacity(64),
        }
    }

    /// Milliseconds since the job started.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Record a sample taken now. `procs` is trimmed to the largest MAX_PROCS.
    pub fn record(&mut self, job_bytes: u64, mut procs: Vec<(i32, u64)>) {
        if procs.len() > MAX_PROCS {
            procs.sort_unstable_by_key(|p| std::cmp::Reverse(p.1));
            procs.truncate(MAX_PROCS);
        }
        let t_ms = self.now_ms();
        self.push(Sample {
            t_ms,
            job_bytes,
            procs,
        });
    }

    fn push(&mut self, s: Sample) {
        if self.samples.len() >= MAX_SAMPLES {
            self.thin();
        }
        self.samples.push_back(s);
    }

    /// Drop every other sample among the older ones.
    fn thin(&mut self) {
        let old = self.samples.len().saturating_sub(KEEP_RECENT);
        let mut idx = 0usize;
        self.samples.retain(|_| {
            let keep = idx >= old || idx % 2 == 0;
            idx += 1;
            keep
        });
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// (milliseconds since the start, the job's bytes) of every sample, oldest first.
    pub fn job_series(&self) -> Vec<(u64, u64)> {
        self.samples.iter().map(|s| (s.t_ms, s.job_bytes)).collect()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn last(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// The highest job total sampled.
    pub fn max_job_bytes(&self) -> Option<u64> {
        self.samples.iter().map(|s| s.job_bytes).max()
    }

    /// `timeline.csv`: header `t_ms,cgroup_bytes,pid,rss_bytes`, one row per process per sample;
    /// a sample without processes has one row with empty pid and rss.
    pub fn to_csv(&self) -> String {
        let mut out = format!("{}\n", crate::format::TIMELINE_HEADER);
        for s in &self.samples {
            if s.procs.is_empty() {
                let _ = writeln!(out, "{},{},,", s.t_ms, s.job_bytes);
            }
            for (pid, rss) in &s.procs {
                let _ = writeln!(out, "{},{},{pid},{rss}", s.t_ms, s.job_bytes);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_recent_detail() {
        let mut tl = Timeline::new(Instant::now());
        for i in 0..20_000u64 {
            tl.push(Sample {
                t_ms: i,
                job_bytes: i,
                procs: vec![],
            });
        }
        assert!(tl.len() <= MAX_SAMPLES);
        let v: Vec<u64> = tl.samples().map(|s| s.t_ms).collect();
        // the first sample survives thinning; the newest KEEP_RECENT are consecutive
        assert_eq!(v[0], 0);
        let recent = &v[v.len() - KEEP_RECENT..];
        assert!(recent.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(*v.last().unwrap(), 19_999);
        assert!(v.windows(2).all(|w| w[1] > w[0]), "still in time order");
    }

    #[test]
    fn csv_round_trips_totals() {
        let mut tl = Timeline::new(Instant::now());
        tl.push(Sample {
            t_ms: 0,
            job_bytes: 10,
            procs: vec![],
        });
        tl.push(Sample {
            t_ms: 100,
            job_bytes: 30,
            procs: vec![(7, 20), (8, 10)],
        });
        let csv = tl.to_csv();
        assert_eq!(
            csv,
            "t_ms,cgroup_bytes,pid,rss_bytes\n0,10,,\n100,30,7,20\n100,30,8,10\n"
        );
        assert_eq!(
            crate::format::parse_timeline(&csv),
            vec![(0, 10), (100, 30)]
        );
    }

    #[test]
    fn keeps_the_largest_processes() {
        let mut tl = Timeline::new(Instant::now());
        tl.record(1, (0..20).map(|i| (i, i as u64)).collect());
        let s = tl.last().unwrap();
        assert_eq!(s.procs.len(), MAX_PROCS);
        assert_eq!(s.procs[0], (19, 19));
    }
}
