//! cgroup v2 backend: the job's leaf with `memory.max`, `memory.swap.max` and `memory.oom.group`,
//! placed so that the no-internal-process rule holds (see `detect::V2Placement`), watched through
//! `memory.events` (POLLPRI), judged by `memory.events.local` `oom_kill`, killed with `cgroup.kill`.

use super::detect::V2Placement;
use super::fs::{self as cgfs, CgError};
use super::{Capability, Enforce, Limits, MemoryVerdict, SampledFiles};
use crate::format::Mode;
use crate::os::proc::Proc;
use nix::poll::PollFlags;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How far above the cap `memory.max` sits: max(5 % of the cap, 16 MiB). Measured in the v2
/// guest, guard's hold lands within 0.5-1.8 MiB of the cap; the rest absorbs a burst.
pub fn headroom(cap: u64) -> u64 {
    (cap / 20).max(16 << 20)
}

/// A job cgroup on the unified hierarchy.
#[derive(Debug)]
pub struct V2Cgroup {
    pub dir: PathBuf,
    procs: File,
    events: Option<File>,
    pub swap_limited: bool,
    /// Where the job's threads are read (their state, for the hold).
    proc: Proc,
}

/// Enable `+memory` for the children of `dir` unless it is already on.
fn enable_memory(dir: &Path) -> Result<(), CgError> {
    let sc = dir.join("cgroup.subtree_control");
    if cgfs::read(&sc)?.split_whitespace().any(|c| c == "memory") {
        return Ok(());
    }
    cgfs::write(&sc, "+memory")
}

/// Move every member of `group` into `group/supervisor`, so that `group` may enable controllers
/// for its children. Loops because members can fork while we move them.
fn move_members_to_supervisor(group: &Path) -> Result<(), CgError> {
    let sup = group.join("supervisor");
    cgfs::ensure_dir(&sup)?;
    if cgfs::move_procs(&sup.join("cgroup.procs"), 100, || cgfs::procs(group))? {
        return Ok(());
    }
    Err(CgError::Other(format!(
        "{} keeps gaining members; cannot empty it",
        group.display()
    )))
}

impl V2Cgroup {
    /// Prepare the placement and create `<base>/<leaf>` with the limits. On error the leaf is removed.
    pub fn create(
        group: &Path,
        base: &Path,
        placement: &V2Placement,
        leaf: &str,
        limits: &Limits,
        proc: &Proc,
    ) -> Result<V2Cgroup, CgError> {
        match placement {
            V2Placement::Dedicated => {
                enable_memory(group)?;
                match std::fs::create_dir(base) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(source) => {
                        return Err(CgError::Mkdir {
                            path: base.to_path_buf(),
                            source,
                        });
                    }
                }
                enable_memory(base)?;
            }
            V2Placement::Supervisor => {
                move_members_to_supervisor(group)?;
                enable_memory(group)?;
            }
            V2Placement::Prepared => {}
        }
        let dir = base.join(leaf);
        cgfs::create_leaf(dir, |d| Self::setup(d, limits, proc))
    }

    fn setup(dir: PathBuf, limits: &Limits, proc: &Proc) -> Result<V2Cgroup, CgError> {
        let mut swap_limited = false;
        if let Some(mem) = limits.memory {
            // The cap is memory.high: above it the kernel throttles the job (and never kills),
            // which buys guard the time to hold it. memory.max sits HEADROOM above, the hard stop
            // for a burst faster than guard's reaction (then the kernel kills the whole job).
            cgfs::write(
                &dir.join("memory.max"),
                &mem.saturating_add(headroom(mem)).to_string(),
            )?;
            cgfs::write(&dir.join("memory.high"), &mem.to_string())?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                cgfs::write(&swap, &limits.swap.to_string())?;
                swap_limited = true;
            }
        }
        // A kernel OOM kill takes the whole job, not one child of it.
        let oom_group = dir.join("memory.oom.group");
        if oom_group.exists() {
            cgfs::write(&oom_group, "1")?;
        }
        let procs = cgfs::open_write(&dir.join("cgroup.procs"))?;
        let events = None;
        Ok(V2Cgroup {
            dir,
            procs,
            events,
            swap_limited,
            proc: proc.clone(),
        })
    }

    /// Freeze the job (`cgroup.freeze`) and wait up to `bound` until it is held: `frozen 1`, or
    /// every task asleep in the kernel with the freeze pending. A task in a memory.high throttle
    /// sleep (up to ~2 s) freezes only when it wakes, but cannot run user code before it does, so
    /// it is held already. Returns whether the hold was confirmed.
    fn freeze(&self, bound: Duration) -> bool {
        if cgfs::write(&self.dir.join("cgroup.freeze"), "1").is_err() {
            return false;
        }
        let deadline = Instant::now() + bound;
        loop {
            let ev = cgfs::read(&self.dir.join("cgroup.events")).unwrap_or_default();
            let threads = || cgfs::read_tree(&self.dir, "cgroup.threads");
            if cgfs::keyed(&ev, "frozen") == Some(1) || self.proc.all_held(&threads()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn usage_now(&self) -> Option<u64> {
        cgfs::read_u64(&self.dir.join(USAGE)).ok().flatten()
    }
}

/// The job's memory usage (page cache included).
const USAGE: &str = "memory.current";

impl Enforce for V2Cgroup {
    fn mode(&self) -> Mode {
        Mode::CgroupV2
    }
    fn dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
    fn proc(&self) -> &Proc {
        &self.proc
    }
    fn swap_limited(&self) -> bool {
        self.swap_limited
    }
    /// The leaf's `cgroup.procs`.
    fn attach_fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.procs.as_fd()]
    }
    /// Open `memory.events` for POLLPRI. After the job started is fine: the verdict is re-read
    /// from the counters, which keep everything that happened before.
    fn arm_events(&mut self) {
        self.events = File::open(self.dir.join("memory.events")).ok();
    }
    /// memory.events: poll(2) reports POLLPRI when it changes.
    fn event_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        self.events
            .as_ref()
            .map(|f| (f.as_fd(), PollFlags::POLLPRI | PollFlags::POLLERR))
    }
    fn drain_event(&mut self) {
        if let Some(f) = &mut self.events {
            let mut s = String::new();
            let _ = cgfs::reread(f, &mut s);
        }
    }
    /// `memory.current` still at or above `memory.high` once the kernel has reclaimed what it
    /// could (a job whose page cache crossed the line is brought back under it, and is not at
    /// its cap), and what the kernel cannot drop — all but the file pages outside shared memory
    /// — within [`UNRECLAIMABLE_SLACK`] of it: as on v1, where the kernel holds a job only once
    /// reclaim fails. A job held at the line by file pages it streams or thrashes on is not at
    /// its cap (the kernel reclaims them without an OOM kill), and `--thrash-after` judges a job
    /// that keeps reading them back. Not the inactive list alone: with the multi-generational
    /// LRU (6.12) a page re-read in a loop counts as active.
    fn at_cap(&self) -> bool {
        let over = || match (
            cgfs::read_u64(&self.dir.join("memory.high")),
            cgfs::read_u64(&self.dir.join(USAGE)),
        ) {
            (Ok(Some(high)), Ok(Some(current))) if current >= high => {
                let stat = cgfs::read(&self.dir.join("memory.stat")).unwrap_or_default();
                let key = |k| cgfs::keyed(&stat, k).unwrap_or(0);
                let reclaimable = key("file").saturating_sub(key("shmem"));
                let slack = (high / 50).max(UNRECLAIMABLE_SLACK);
                current.saturating_sub(reclaimable) + slack >= high
            }
            _ => false,
        };
        // The event fires when usage crosses memory.high, before the kernel reclaims in the
        // allocating task: look again a moment later, after that reclaim.
        over() && {
            std::thread::sleep(Duration::from_millis(3));
            over()
        }
    }
    fn verdict(&self) -> MemoryVerdict {
        verdict_at(&self.dir)
    }
    /// Longer than v1: a task asleep in a memory.high throttle (up to ~2 s) freezes only when
    /// it wakes.
    fn hold(&self) -> bool {
        self.freeze(Duration::from_secs(3))
    }
    fn unhold(&self) {
        let _ = cgfs::write(&self.dir.join("cgroup.freeze"), "0");
    }
    fn usage(&mut self) -> Option<u64> {
        self.usage_now()
    }
    fn peak(&self) -> Option<u64> {
        cgfs::read_u64(&self.dir.join("memory.peak")).ok().flatten()
    }
    fn working_set(&self) -> Option<u64> {
        super::working_set_in(&self.dir, self.usage_now()?, "inactive_file")
    }
    fn fault_counters(&self) -> Option<super::FaultCounters> {
        super::fault_counters_in(&self.dir, "")
    }
    fn sampled_files(&self) -> Option<SampledFiles> {
        Some(SampledFiles::of(&self.dir, USAGE))
    }
    /// The leaf's members and those of the cgroups below it.
    fn pids(&self) -> Vec<i32> {
        cgfs::procs_tree(&self.dir)
    }
    fn kill_all(&self) {
        super::kill_dirs(&self.dirs());
    }
    /// Grant a held job `extra` bytes and thaw it (the caller has queued SIGSTOP to its tasks).
    fn release(&self, extra: u64) -> Result<(), CgError> {
        for file in ["memory.max", "memory.high"] {
            let p = self.dir.join(file);
            if let Some(v) = cgfs::read_u64(&p)? {
                cgfs::write(&p, &v.saturating_add(extra).to_string())?;
            }
        }
        cgfs::write(&self.dir.join("cgroup.freeze"), "0")
    }
    fn kernel_counters(&self) -> BTreeMap<String, u64> {
        super::counters_in(&self.dir.join("memory.events"))
    }
    fn capabilities(&self) -> Vec<Capability> {
        capabilities(&self.dir)
    }
    fn remove_by(self, until: std::time::Instant) -> Result<(), CgError> {
        let dirs = self.dirs();
        drop(self); // close cgroup.procs and memory.events before rmdir
        super::remove_dirs(&dirs, until)
    }
}

/// How far under `memory.high` what the kernel cannot drop may be and the job still count as at
/// its cap (at least; 2 % of the cap above 400 MiB): the file pages of the job's own binary and
/// libraries, which the kernel would rather keep.
const UNRECLAIMABLE_SLACK: u64 = 8 << 20;

/// What cgroup v2 offers in the cgroup `dir`.
pub fn capabilities(dir: &Path) -> Vec<Capability> {
    [
        (
            "memory.max",
            "memory limit",
            "enable the memory controller for this subtree",
        ),
        (
            "memory.swap.max",
            "swap limit (swap accounting)",
            "a kernel with CONFIG_MEMCG_SWAP (and swap enabled)",
        ),
        ("memory.oom.group", "group OOM kill", "kernel 4.19 or newer"),
        (
            "memory.events.local",
            "local memory events",
            "kernel 5.7 or newer (guard falls back to memory.events)",
        ),
        (
            "cgroup.kill",
            "atomic group kill",
            "kernel 5.14 or newer (guard falls back to SIGKILL per process)",
        ),
        (
            "cgroup.freeze",
            "freezer (for holding the job at the cap)",
            "kernel 5.2 or newer",
        ),
        (
            "memory.peak",
            "peak usage",
            "kernel 5.19 or newer (guard reports sampled peaks)",
        ),
    ]
    .into_iter()
    .map(|(file, name, fix)| Capability::file(dir, file, name, fix))
    .collect()
}

/// The verdict from `memory.events.local` (or `memory.events` before 5.7) of the v2 cgroup `dir`.
/// `local` counts only this cgroup's own kills, not a nested cgroup's.
pub fn verdict_at(dir: &Path) -> MemoryVerdict {
    let local = cgfs::read(&dir.join("memory.events.local"))
        .or_else(|_| cgfs::read(&dir.join("memory.events")))
        .unwrap_or_default();
    MemoryVerdict {
        oom_kills: cgfs::keyed(&local, "oom_kill").unwrap_or(0),
        under_oom: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_prefers_local_events() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(
            verdict_at(d.path()).oom_kills,
            1,
            "memory.events when .local is missing"
        );
        std::fs::write(
            d.path().join("memory.events.local"),
            "low 0\nhigh 0\nmax 9\noom 0\noom_kill 0\n",
        )
        .unwrap();
        assert!(
            !verdict_at(d.path()).killed(),
            "a kill in a nested cgroup is not ours"
        );
    }

    #[test]
    fn enable_memory_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let sc = d.path().join("cgroup.subtree_control");
        std::fs::write(&sc, "cpu memory\n").unwrap();
        enable_memory(d.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&sc).unwrap(),
            "cpu memory\n",
            "no write when already on"
        );
        std::fs::write(&sc, "cpu\n").unwrap();
        enable_memory(d.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&sc).unwrap(),
            "+memory",
            "written once"
        );
    }
}
