//! Poll mode, the best-effort fallback when no cgroup can be written: the job is every descendant
//! of guard (guard is a child subreaper, so orphans stay in its tree); its memory is the sum of
//! their resident sets, sampled from /proc; at the cap the tree is stopped, then killed.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::HashSet;
use std::path::PathBuf;

/// Samples and kills guard's process tree.
#[derive(Debug)]
pub struct PollTracker {
    proc: PathBuf,
    root: i32,
    pub peak: u64,
    last: u64,
    page_size: u64,
}

/// Resident pages of `pid` from /proc/PID/statm (0 when it vanished or is a zombie).
fn statm_pages(proc: &std::path::Path, pid: i32) -> u64 {
    std::fs::read_to_string(proc.join(pid.to_string()).join("statm"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// Resident bytes of `pid` from /proc/PID/statm.
pub fn statm_rss(proc: &std::path::Path, pid: i32) -> u64 {
    statm_pages(proc, pid) * page_size()
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    ps.max(4096) as u64
}

/// The children of `pid`, from /proc/PID/task/*/children (every thread can have children).
fn children(proc: &std::path::Path, pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(proc.join(pid.to_string()).join("task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
        }
    }
    out
}

impl PollTracker {
    pub fn new(proc: PathBuf, root: i32) -> PollTracker {
        PollTracker {
            proc,
            root,
            peak: 0,
            last: 0,
            page_size: page_size(),
        }
    }

    /// Every descendant of the root pid (zombies included; they hold no memory).
    pub fn pids(&self) -> Vec<i32> {
        let mut seen = HashSet::new();
        let mut stack: Vec<i32> = children(&self.proc, self.root);
        let mut out = Vec::new();
        while let Some(p) = stack.pop() {
            if !seen.insert(p) {
                continue;
            }
            out.push(p);
            stack.extend(children(&self.proc, p));
        }
        out
    }

    /// The job's processes that are not zombies.
    pub fn live_pids(&self) -> Vec<i32> {
        self.pids()
            .into_iter()
            .filter(|&p| !self.is_zombie(p))
            .collect()
    }

    /// Resident bytes of one process (0 when it vanished or is a zombie).
    fn rss(&self, pid: i32) -> u64 {
        statm_pages(&self.proc, pid) * self.page_size
    }

    /// Sample the job's memory (sum of RSS; shared pages count once per process, so this errs
    /// on the high side).
    pub fn sample(&mut self) -> u64 {
        self.sample_detail().0
    }

    /// Sample the job's memory and each process's RSS.
    pub fn sample_detail(&mut self) -> (u64, Vec<(i32, u64)>) {
        let procs: Vec<(i32, u64)> = self.pids().iter().map(|&p| (p, self.rss(p))).collect();
        let total = procs.iter().map(|&(_, r)| r).sum();
        self.peak = self.peak.max(total);
        self.last = total;
        (total, procs)
    }

    /// The last sampled total.
    pub fn peak_last(&self) -> u64 {
        self.last
    }

    /// Stop every process of the job (SIGSTOP): the hold of poll mode. True when none is left
    /// running.
    pub fn stop_all(&self) -> bool {
        for _ in 0..3 {
            let pids = self.live_pids();
            for &p in &pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
            }
            // A process forked meanwhile would show up now.
            if self
                .pids()
                .iter()
                .all(|p| pids.contains(p) || self.is_zombie(*p))
            {
                return true;
            }
        }
        false
    }

    /// Stop every process of the job (so none can fork while we kill), then kill them all.
    pub fn kill_all(&self) {
        for _ in 0..20 {
            let pids = self.live_pids();
            if pids.is_empty() {
                return;
            }
            for &p in &pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
            }
            for &p in &pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Send `sig` to every process of the job.
    pub fn signal_all(&self, sig: Signal) -> usize {
        let pids = self.live_pids();
        for &p in &pids {
            let _ = kill(Pid::from_raw(p), sig);
        }
        pids.len()
    }

    fn is_zombie(&self, pid: i32) -> bool {
        std::fs::read_to_string(self.proc.join(pid.to_string()).join("stat"))
            .ok()
            .and_then(|s| {
                s.rfind(')').and_then(|i| {
                    s[i + 1..]
                        .split_whitespace()
                        .next()
                        .map(|st| st == "Z" || st == "X")
                })
            })
            .unwrap_or(true)
    }

    /// Live (non-zombie) processes of the job.
    pub fn live_count(&self) -> usize {
        self.live_pids().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn proc_entry(root: &std::path::Path, pid: i32, kids: &[i32], rss_pages: u64, state: &str) {
        let d = root.join(pid.to_string());
        fs::create_dir_all(d.join("task").join(pid.to_string())).unwrap();
        let k: Vec<String> = kids.iter().map(|k| k.to_string()).collect();
        fs::write(
            d.join("task").join(pid.to_string()).join("children"),
            k.join(" "),
        )
        .unwrap();
        fs::write(d.join("statm"), format!("1000 {rss_pages} 10 1 0 50 0\n")).unwrap();
        fs::write(d.join("stat"), format!("{pid} (x y) {state} 1 1 1 0 -1\n")).unwrap();
    }

    #[test]
    fn sums_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        proc_entry(p, 100, &[101], 1, "S"); // guard, with job 101
        proc_entry(p, 101, &[102], 10, "S");
        proc_entry(p, 102, &[103], 20, "R");
        proc_entry(p, 103, &[], 0, "Z");
        let mut t = PollTracker::new(p.to_path_buf(), 100);
        let mut pids = t.pids();
        pids.sort();
        assert_eq!(pids, vec![101, 102, 103]);
        assert_eq!(t.sample(), 30 * t.page_size);
        assert_eq!(t.live_count(), 2);
        assert_eq!(t.peak, 30 * t.page_size);
    }

    #[test]
    fn vanished_processes_count_as_nothing() {
        let d = tempfile::tempdir().unwrap();
        proc_entry(d.path(), 100, &[101], 1, "S");
        let mut t = PollTracker::new(d.path().to_path_buf(), 100);
        assert_eq!(t.sample(), 0);
    }
}
