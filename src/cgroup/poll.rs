//! Poll mode, the best-effort fallback when no cgroup can be written: the job is every descendant
//! of guard (guard is a child subreaper, so orphans stay in its tree); its memory is the sum of
//! their resident sets, sampled from /proc; at the cap the tree is stopped, then killed.

use super::{Capability, Enforce, MemoryVerdict, SampledFiles, fs::CgError};
use crate::format::Mode;
use crate::os::proc::Proc;
use nix::poll::PollFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::{BTreeMap, HashSet};
use std::os::fd::BorrowedFd;
use std::path::Path;

/// Samples and kills guard's process tree.
#[derive(Debug)]
pub struct PollTracker {
    proc: Proc,
    root: i32,
    pub peak: u64,
    last: u64,
}

impl PollTracker {
    pub fn new(proc: Proc, root: i32) -> PollTracker {
        PollTracker {
            proc,
            root,
            peak: 0,
            last: 0,
        }
    }

    /// Every descendant of the root pid (zombies included; they hold no memory).
    pub fn tree(&self) -> Vec<i32> {
        let mut seen = HashSet::new();
        let mut stack: Vec<i32> = self.proc.children(self.root);
        let mut out = Vec::new();
        while let Some(p) = stack.pop() {
            if !seen.insert(p) {
                continue;
            }
            out.push(p);
            stack.extend(self.proc.children(p));
        }
        out
    }

    /// The job's processes that are not zombies.
    fn live_pids(&self) -> Vec<i32> {
        self.tree()
            .into_iter()
            .filter(|&p| !self.is_zombie(p))
            .collect()
    }

    /// Sample the job's memory: the sum of RSS (shared pages count once per process, so this
    /// errs on the high side), and each process's RSS.
    fn sample_tree(&mut self) -> (u64, Vec<(i32, u64)>) {
        let procs: Vec<(i32, u64)> = self
            .tree()
            .iter()
            .map(|&p| (p, self.proc.rss_bytes(p)))
            .collect();
        let total = procs.iter().map(|&(_, r)| r).sum();
        self.peak = self.peak.max(total);
        self.last = total;
        (total, procs)
    }

    /// Stop every process of the job (SIGSTOP): the hold of poll mode. True when none is left
    /// running.
    fn stop_all(&self) -> bool {
        for _ in 0..3 {
            let pids = self.live_pids();
            for &p in &pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
            }
            // A process forked meanwhile would show up now.
            if self
                .tree()
                .iter()
                .all(|p| pids.contains(p) || self.is_zombie(*p))
            {
                return true;
            }
        }
        false
    }

    /// Gone or a zombie (a process that vanished counts as one).
    fn is_zombie(&self, pid: i32) -> bool {
        self.proc.state(pid).is_none_or(|s| s.is_gone())
    }
}

impl Enforce for PollTracker {
    fn mode(&self) -> Mode {
        Mode::Poll
    }
    fn dir(&self) -> Option<&Path> {
        None
    }
    fn proc(&self) -> &Proc {
        &self.proc
    }
    fn swap_limited(&self) -> bool {
        false
    }
    fn attach_fds(&self) -> Vec<BorrowedFd<'_>> {
        Vec::new()
    }
    fn arm_events(&mut self) {}
    fn event_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        None
    }
    fn drain_event(&mut self) {}
    /// Poll mode decides from its samples, not from an event.
    fn at_cap(&self) -> bool {
        false
    }
    fn verdict(&self) -> MemoryVerdict {
        MemoryVerdict::default()
    }
    fn hold(&self) -> bool {
        self.stop_all()
    }
    fn unhold(&self) {
        self.signal_all(Signal::SIGCONT);
    }
    fn usage(&mut self) -> Option<u64> {
        Some(self.sample_tree().0)
    }
    fn peak(&self) -> Option<u64> {
        Some(self.peak)
    }
    /// The last sampled total (resident memory has no page cache to discount).
    fn working_set(&self) -> Option<u64> {
        Some(self.last)
    }
    fn sampled_files(&self) -> Option<SampledFiles> {
        None
    }
    fn pids(&self) -> Vec<i32> {
        self.live_pids()
    }
    fn sample_detail(&mut self) -> (Option<u64>, Vec<(i32, u64)>) {
        let (total, procs) = self.sample_tree();
        (Some(total), procs)
    }
    /// Stop every process of the job (so none can fork while we kill), then kill them all.
    fn kill_all(&self) {
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
    /// Nothing to release: stopped processes are already stoppable for gcore.
    fn release(&self, _extra: u64) -> Result<(), CgError> {
        Ok(())
    }
    fn kernel_counters(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
    fn capabilities(&self) -> Vec<Capability> {
        capabilities(&self.proc, "")
    }
    fn remove_by(self, _until: std::time::Instant) -> Result<(), CgError> {
        self.kill_all();
        Ok(())
    }
}

/// What poll mode relies on, and `fix`: what would give guard a cgroup instead.
pub fn capabilities(proc: &Proc, fix: &str) -> Vec<Capability> {
    let me = std::process::id() as i32;
    let children = proc.path(me, "task").join(me.to_string()).join("children");
    vec![
        Capability::new(
            "writable cgroup with the memory controller",
            false,
            "none found",
            fix,
        ),
        Capability::new(
            "/proc/PID/task/TID/children (poll mode process tree)",
            children.exists(),
            "used to find the job's processes",
            "a kernel with CONFIG_PROC_CHILDREN",
        ),
    ]
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
        let mut t = PollTracker::new(Proc::at(p), 100);
        let mut pids = t.tree();
        pids.sort();
        assert_eq!(pids, vec![101, 102, 103]);
        assert_eq!(t.usage(), Some(30 * t.proc.page_size()));
        assert_eq!(t.live_count(), 2);
        assert_eq!(t.peak, 30 * t.proc.page_size());
    }

    #[test]
    fn vanished_processes_count_as_nothing() {
        let d = tempfile::tempdir().unwrap();
        proc_entry(d.path(), 100, &[101], 1, "S");
        let mut t = PollTracker::new(Proc::at(d.path()), 100);
        assert_eq!(t.usage(), Some(0));
    }
}
