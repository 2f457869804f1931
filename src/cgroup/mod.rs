//! Enforcement: one small enum over the three modes (cgroup v1, cgroup v2, poll) with the
//! operations the supervisor needs — create, attach (the fd the child writes before exec), memory
//! events, usage/peak, the kernel's verdict, kill, remove — plus stale-cgroup cleanup.
//! Also: hold (freeze / stop), the job's pids and per-process sample for the evidence timeline,
//! and releasing a held job just enough for `gcore` (`--core`).

pub mod detect;
pub mod fs;
pub mod poll;
pub mod v1;
pub mod v2;

use crate::format::Mode;
use detect::{Plan, V2Placement};
use fs::CgError;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The limits applied to the job.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub memory: Option<u64>,
    pub swap: u64,
}

/// What the kernel's counters say about memory kills in the job's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryVerdict {
    pub oom_kills: u64,
    pub under_oom: bool,
}

impl MemoryVerdict {
    pub fn killed(&self) -> bool {
        self.oom_kills > 0 || self.under_oom
    }
}

/// The enforcement in force for one job.
#[derive(Debug)]
pub enum Enforcer {
    V1(v1::V1Cgroup),
    V2(v2::V2Cgroup),
    Poll(poll::PollTracker),
}

/// The name of the job's leaf cgroup: `guard-<name>-<guard pid>` (in a dedicated v2 subtree, the
/// `guard/` parent already says whose it is, so there it is `<name>-<pid>`).
pub fn leaf_name(name: &str, guard_pid: i32, dedicated: bool) -> String {
    if dedicated {
        format!("{name}-{guard_pid}")
    } else {
        format!("guard-{name}-{guard_pid}")
    }
}

/// The guard pid encoded in a leaf name, when the name is one of ours.
pub fn leaf_owner(leaf: &str, dedicated: bool) -> Option<i32> {
    if !dedicated && !leaf.starts_with("guard-") {
        return None;
    }
    let (_, pid) = leaf.rsplit_once('-')?;
    pid.parse().ok().filter(|p: &i32| *p > 0)
}

fn pid_alive(proc: &Path, pid: i32) -> bool {
    proc.join(pid.to_string()).exists()
}

/// Kill every process in the cgroup `dir` and wait (bounded) until it is empty.
/// Uses `cgroup.kill` where the kernel has it (v2, 5.14+), else SIGKILL to each listed pid; a
/// v1 freezer cgroup is thawed after the SIGKILLs so its frozen tasks can die.
pub fn kill_cgroup(dir: &Path, wait: Duration) {
    let mut pids = fs::procs(dir);
    if pids.is_empty() {
        return;
    }
    let ckill = dir.join("cgroup.kill");
    let use_ckill = ckill.exists();
    let deadline = Instant::now() + wait;
    loop {
        if use_ckill {
            let _ = fs::write(&ckill, "1");
        } else {
            for &p in &pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            let state = dir.join("freezer.state");
            if state.exists() {
                let _ = fs::write(&state, "THAWED");
            }
        }
        if Instant::now() >= deadline {
            log::warn!("processes still listed in {} after SIGKILL", dir.display());
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
        pids = fs::procs(dir);
        if pids.is_empty() {
            return;
        }
    }
}

/// Remove cgroups left by guards that no longer run (their pid is gone): kill what is still in them
/// and rmdir. Returns the removed paths.
pub fn remove_stale(proc: &Path, base: &Path, dedicated: bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(base) else {
        return removed;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let name = e.file_name();
        let Some(owner) = name.to_str().and_then(|n| leaf_owner(n, dedicated)) else {
            continue;
        };
        if pid_alive(proc, owner) {
            continue;
        }
        let dir = e.path();
        kill_cgroup(&dir, Duration::from_secs(2));
        match fs::rmdir_retry(&dir, 50) {
            Ok(()) => removed.push(dir),
            Err(err) => log::warn!("cannot remove stale cgroup left by guard pid {owner}: {err}"),
        }
    }
    removed
}

/// Remove the cgroups that dead guards left next to where `plan` puts the job's (housekeeping:
/// the supervisor runs it 20 ms into the job with the rest, so a shorter job never pays for the
/// directory scans; a guard dies that way rarely, and the next longer job cleans up).
pub fn cleanup_stale(plan: &Plan, proc: &Path) {
    let bases: Vec<(&Path, bool)> = match plan {
        // The freezer leaves first: killing there also thaws what a dead guard left frozen.
        Plan::V1 {
            base, freezer_base, ..
        } => freezer_base
            .iter()
            .map(|f| (f.as_path(), false))
            .chain([(base.as_path(), false)])
            .collect(),
        Plan::V2 {
            base, placement, ..
        } => {
            vec![(base.as_path(), *placement == V2Placement::Dedicated)]
        }
        Plan::Poll { .. } => return,
    };
    for (base, dedicated) in bases {
        for d in remove_stale(proc, base, dedicated) {
            log::info!("removed stale cgroup {}", d.display());
        }
    }
}

impl Enforcer {
    /// Create the job's cgroup according to `plan`. Poll plans return `Enforcer::Poll` rooted at
    /// guard's pid.
    pub fn create(
        plan: &Plan,
        proc: &Path,
        name: &str,
        limits: &Limits,
    ) -> Result<Enforcer, CgError> {
        let me = std::process::id() as i32;
        match plan {
            Plan::V1 {
                base, freezer_base, ..
            } => v1::V1Cgroup::create(
                base,
                freezer_base.as_deref(),
                &leaf_name(name, me, false),
                limits,
            )
            .map(Enforcer::V1),
            Plan::V2 {
                base,
                placement,
                group,
                ..
            } => {
                let dedicated = *placement == V2Placement::Dedicated;
                v2::V2Cgroup::create(
                    group,
                    base,
                    placement,
                    &leaf_name(name, me, dedicated),
                    limits,
                )
                .map(Enforcer::V2)
            }
            Plan::Poll { .. } => Ok(Enforcer::Poll(poll::PollTracker::new(
                proc.to_path_buf(),
                me,
            ))),
        }
    }

    pub fn mode(&self) -> Mode {
        match self {
            Enforcer::V1(_) => Mode::CgroupV1,
            Enforcer::V2(_) => Mode::CgroupV2,
            Enforcer::Poll(_) => Mode::Poll,
        }
    }

    /// The job's cgroup directory (None in poll mode).
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Enforcer::V1(c) => Some(&c.dir),
            Enforcer::V2(c) => Some(&c.dir),
            Enforcer::Poll(_) => None,
        }
    }

    /// The open `cgroup.procs` the forked child writes "0" to before exec.
    pub fn attach_fds(&self) -> Vec<BorrowedFd<'_>> {
        match self {
            Enforcer::V1(c) => c.attach_fds(),
            Enforcer::V2(c) => vec![c.procs_fd()],
            Enforcer::Poll(_) => Vec::new(),
        }
    }

    /// Every cgroup directory of the job (v1: memory and freezer leaves), freezer first.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Enforcer::V1(c) => c
                .freezer_dir()
                .map(Path::to_path_buf)
                .into_iter()
                .chain([c.dir.clone()])
                .collect(),
            Enforcer::V2(c) => vec![c.dir.clone()],
            Enforcer::Poll(_) => Vec::new(),
        }
    }

    /// After a memory event: is the job at its cap, held there by the kernel (v1: waiting in the
    /// OOM wait; v2: at or above memory.high after reclaim)? Poll mode decides from its sample.
    pub fn at_cap(&self) -> bool {
        match self {
            Enforcer::V1(c) => c.at_cap(),
            Enforcer::V2(c) => c.at_cap(),
            Enforcer::Poll(_) => false,
        }
    }

    /// Hold the job where it is: freeze it (v1 freezer, v2 cgroup.freeze) or stop every process
    /// (poll). Waits (bounded) for the kernel to confirm; returns whether it did. v1 waits briefly:
    /// tasks in the OOM wait are held already and may never report FROZEN. v2 waits longer: a task
    /// asleep in a memory.high throttle (up to ~2 s) freezes only when it wakes.
    pub fn hold(&self) -> bool {
        match self {
            Enforcer::V1(c) => c.freeze(Duration::from_millis(100)),
            Enforcer::V2(c) => c.freeze(Duration::from_secs(3)),
            Enforcer::Poll(t) => t.stop_all(),
        }
    }

    /// Make ready to hold the job later (v1: make the freezer leaf and move the job into it).
    /// Housekeeping, 20 ms into the job; `hold` does it itself if it comes first.
    pub fn prepare_hold(&self) {
        if let Enforcer::V1(c) = self {
            c.join_freezer();
        }
    }

    /// Let a held job run again (after a capture that is not followed by a kill: --timeout).
    pub fn unhold(&self) {
        match self {
            Enforcer::V1(c) => {
                if let Some(fdir) = c.freezer_dir() {
                    let _ = fs::write(&fdir.join("freezer.state"), "THAWED");
                }
            }
            Enforcer::V2(c) => {
                let _ = fs::write(&c.dir.join("cgroup.freeze"), "0");
            }
            Enforcer::Poll(t) => {
                t.signal_all(Signal::SIGCONT);
            }
        }
    }

    /// An fd that becomes ready when the kernel reports a memory event, and the poll flags to wait for.
    pub fn event_fd(&self) -> Option<(BorrowedFd<'_>, nix::poll::PollFlags)> {
        use nix::poll::PollFlags;
        match self {
            Enforcer::V1(c) => c.event_fd().map(|f| (f, PollFlags::POLLIN)),
            Enforcer::V2(c) => c
                .event_fd()
                .map(|f| (f, PollFlags::POLLPRI | PollFlags::POLLERR)),
            Enforcer::Poll(_) => None,
        }
    }

    /// Start watching memory events (called right after the job started, off its start-up path).
    pub fn arm_events(&mut self) {
        match self {
            Enforcer::V1(c) => c.arm_events(),
            Enforcer::V2(c) => c.arm_events(),
            Enforcer::Poll(_) => {}
        }
    }

    pub fn drain_event(&mut self) {
        match self {
            Enforcer::V1(c) => c.drain_event(),
            Enforcer::V2(c) => c.drain_event(),
            Enforcer::Poll(_) => {}
        }
    }

    /// The kernel's verdict (poll mode has none: guard itself decides there).
    pub fn verdict(&self) -> MemoryVerdict {
        match self {
            Enforcer::V1(c) => c.verdict(),
            Enforcer::V2(c) => c.verdict(),
            Enforcer::Poll(_) => MemoryVerdict::default(),
        }
    }

    pub fn usage(&mut self) -> Option<u64> {
        match self {
            Enforcer::V1(c) => c.usage(),
            Enforcer::V2(c) => c.usage(),
            Enforcer::Poll(t) => Some(t.sample()),
        }
    }

    /// Peak memory of the job as far as it is known.
    pub fn peak(&self) -> Option<u64> {
        match self {
            Enforcer::V1(c) => c.peak(),
            Enforcer::V2(c) => c.peak(),
            Enforcer::Poll(t) => Some(t.peak),
        }
    }

    /// Whether swap is actually limited (false when the kernel lacks swap accounting).
    pub fn swap_limited(&self) -> bool {
        match self {
            Enforcer::V1(c) => c.swap_limited,
            Enforcer::V2(c) => c.swap_limited,
            Enforcer::Poll(_) => false,
        }
    }

    /// Number of live processes in the job.
    pub fn live_count(&self) -> usize {
        match self {
            Enforcer::V1(c) => fs::procs(&c.dir).len(),
            Enforcer::V2(c) => fs::procs(&c.dir).len(),
            Enforcer::Poll(t) => t.live_count(),
        }
    }

    /// Send `sig` to every process of the job; returns how many were signalled.
    pub fn signal_all(&self, sig: Signal) -> usize {
        match self {
            Enforcer::Poll(t) => t.signal_all(sig),
            _ => {
                let pids = self.dir().map(fs::procs).unwrap_or_default();
                for &p in &pids {
                    let _ = kill(Pid::from_raw(p), sig);
                }
                pids.len()
            }
        }
    }

    /// Kill every process of the job.
    pub fn kill_all(&self) {
        match self {
            Enforcer::Poll(t) => t.kill_all(),
            _ => {
                // The freezer leaf holds the same processes as the memory leaf: nothing in the
                // one means nothing in the other.
                if self.dir().is_some_and(|d| fs::procs(d).is_empty()) {
                    return;
                }
                for d in self.dirs() {
                    kill_cgroup(&d, Duration::from_secs(5));
                }
            }
        }
    }

    /// cgroup version (None in poll mode).
    pub fn cgroup_version(&self) -> Option<u8> {
        match self {
            Enforcer::V1(_) => Some(1),
            Enforcer::V2(_) => Some(2),
            Enforcer::Poll(_) => None,
        }
    }

    /// The job's processes (zombies excluded in poll mode).
    pub fn pids(&self) -> Vec<i32> {
        match self {
            Enforcer::Poll(t) => t.live_pids(),
            _ => self.dir().map(fs::procs).unwrap_or_default(),
        }
    }

    /// One timeline sample: the job's memory and each process's RSS (from /proc/PID/statm, the
    /// cheapest per-process figure).
    pub fn sample_detail(&mut self) -> (Option<u64>, Vec<(i32, u64)>) {
        match self {
            Enforcer::Poll(t) => {
                let (total, procs) = t.sample_detail();
                (Some(total), procs)
            }
            _ => {
                let total = self.usage();
                let procs = self
                    .pids()
                    .into_iter()
                    .map(|p| (p, poll::statm_rss(std::path::Path::new("/proc"), p)))
                    .collect();
                (total, procs)
            }
        }
    }

    /// Memory the job actually uses: usage minus inactive page cache (what a warning is about;
    /// page cache is reclaimed at the cap rather than causing a kill).
    pub fn working_set(&self) -> Option<u64> {
        let (dir, usage, key) = match self {
            Enforcer::V1(c) => (&c.dir, c.usage()?, "total_inactive_file"),
            Enforcer::V2(c) => (&c.dir, c.usage()?, "inactive_file"),
            Enforcer::Poll(t) => return Some(t.peak_last()),
        };
        let stat = fs::read(&dir.join("memory.stat")).ok()?;
        Some(usage.saturating_sub(fs::keyed(&stat, key).unwrap_or(0)))
    }

    /// Make a held job's processes stoppable for gcore, which hangs on a frozen task: queue
    /// SIGSTOP to each, raise the limit by `extra` (a task waiting at the limit must finish its
    /// allocation to take the signal), thaw, and wait (bounded) until `pids[0]` is stopped.
    pub fn release_for_core(&self, pids: &[i32], extra: u64) -> Result<(), String> {
        for &p in pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
        }
        match self {
            Enforcer::V1(c) => c.release(extra).map_err(|e| e.to_string())?,
            Enforcer::V2(c) => c.release(extra).map_err(|e| e.to_string())?,
            Enforcer::Poll(_) => {}
        }
        let Some(&main) = pids.first() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{main}/stat")).unwrap_or_default();
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("");
            if matches!(state, "T" | "t") {
                return Ok(());
            }
            if state.is_empty() || matches!(state, "Z" | "X") {
                return Err(format!("process {main} exited"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "process {main} did not stop within 2s (state {state})"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Kill what is left and remove the cgroup.
    pub fn remove(self) -> Result<(), CgError> {
        match &self {
            Enforcer::Poll(t) => {
                t.kill_all();
                Ok(())
            }
            _ => {
                let dirs = self.dirs();
                drop(self); // close cgroup.procs and the event fds before rmdir
                // Usually the job is gone by now: one rmdir each, without reading cgroup.procs
                // first. A leaf that is still busy gets its processes killed, then retries.
                let busy: Vec<&PathBuf> = dirs
                    .iter()
                    .filter(|d| match std::fs::remove_dir(d) {
                        Ok(()) => false,
                        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
                    })
                    .collect();
                for d in &busy {
                    kill_cgroup(d, Duration::from_secs(5));
                }
                busy.iter().try_for_each(|d| fs::rmdir_retry(d, 100))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_names_round_trip() {
        assert_eq!(leaf_name("fix_images", 42, false), "guard-fix_images-42");
        assert_eq!(leaf_owner("guard-fix_images-42", false), Some(42));
        assert_eq!(leaf_owner("guard-a-b-c-7", false), Some(7));
        assert_eq!(leaf_name("x", 9, true), "x-9");
        assert_eq!(leaf_owner("x-9", true), Some(9));
        assert_eq!(leaf_owner("x-9", false), None);
        assert_eq!(leaf_owner("supervisor", true), None);
        assert_eq!(leaf_owner("guard-x-", false), None);
    }

    #[test]
    fn stale_cleanup_removes_only_dead_owners() {
        let proc = tempfile::tempdir().unwrap();
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc.path().join("77")).unwrap(); // alive
        for d in ["guard-a-77", "guard-b-999999", "other-999999", "supervisor"] {
            std::fs::create_dir(base.path().join(d)).unwrap();
        }
        let removed = remove_stale(proc.path(), base.path(), false);
        assert_eq!(removed, vec![base.path().join("guard-b-999999")]);
        assert!(base.path().join("guard-a-77").exists());
        assert!(base.path().join("other-999999").exists());
        assert!(base.path().join("supervisor").exists());
    }
}
