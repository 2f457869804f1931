//! cgroup v1 backend: a child of guard's own memory cgroup with `memory.limit_in_bytes` (and
//! `memory.memsw.limit_in_bytes` when swap accounting exists) and the OOM killer disabled for it
//! (`memory.oom_control` = 1): at the limit the kernel holds the job's tasks instead of killing
//! one, an eventfd registered through `cgroup.event_control` wakes guard (~2 ms), guard freezes
//! the job in its v1 freezer cgroup and kills it. The kernel's `oom_kill` counter still speaks
//! where guard could not hold the job.
//!
//! The freezer leaf is made when first needed — 20 ms into the job with the other housekeeping,
//! or at a hold that comes sooner — and the job's processes are moved into it then: a job shorter
//! than that never pays its mkdir, rmdir and join (~60 us, a twentieth of a short job's run).

use super::fs::{self as cgfs, CgError};
use super::{Capability, Enforce, Limits, MemoryVerdict, SampledFiles};
use crate::format::Mode;
use crate::os::proc::Proc;
use nix::poll::PollFlags;
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A job cgroup on the v1 memory hierarchy.
#[derive(Debug)]
pub struct V1Cgroup {
    pub dir: PathBuf,
    procs: File,
    /// Where the job's leaf in the v1 freezer hierarchy goes (`<freezer base>/<leaf>`), if there
    /// is a freezer hierarchy.
    freezer_at: Option<PathBuf>,
    /// That leaf, once made and joined (see `join_freezer`).
    freezer: OnceCell<PathBuf>,
    /// Making or joining it failed once: not tried again.
    freezer_failed: Cell<bool>,
    /// eventfd that fires when the cgroup hits its limit (OOM). Kept with the control file it
    /// watches: closing that file would unregister the event.
    oom_event: Option<(EventFd, File)>,
    pub swap_limited: bool,
    /// Where the job's tasks are read (their state, for the hold).
    proc: Proc,
}

impl V1Cgroup {
    /// Create `<base>/<leaf>` and apply the limits (the freezer leaf `<freezer_base>/<leaf>`
    /// comes later, see `join_freezer`). On error nothing is left behind.
    pub fn create(
        base: &Path,
        freezer_base: Option<&Path>,
        leaf: &str,
        limits: &Limits,
        proc: &Proc,
    ) -> Result<V1Cgroup, CgError> {
        let mut cg = cgfs::create_leaf(base.join(leaf), |d| Self::setup(d, limits, proc))?;
        cg.freezer_at = freezer_base.map(|fb| fb.join(leaf));
        Ok(cg)
    }

    /// The job's freezer leaf, made and joined by every process of the job on the first call
    /// (later ones return it). None without a freezer hierarchy, or when that failed (logged
    /// once: the job is then held by the OOM wait alone; a leaf only part of the job could join
    /// is kept and used). A process forked while the others move follows its parent, or is
    /// caught by the next round.
    pub fn join_freezer(&self) -> Option<&Path> {
        if let Some(d) = self.freezer.get() {
            return Some(d);
        }
        let dir = self.freezer_at.as_ref()?;
        if self.freezer_failed.get() {
            return None;
        }
        match Self::make_and_join(&self.dir, dir) {
            Ok(()) => {
                let _ = self.freezer.set(dir.clone());
                self.freezer.get().map(PathBuf::as_path)
            }
            Err(e) => {
                self.freezer_failed.set(true);
                if !cgfs::procs(dir).is_empty() {
                    // Some processes moved: freeze those (the rest wait at the cap or run on),
                    // and keep the leaf among the job's cgroups so it is removed with them.
                    log::info!("the freezer cgroup holds only part of the job ({e})");
                    let _ = self.freezer.set(dir.clone());
                    return self.freezer.get().map(PathBuf::as_path);
                }
                log::info!("no freezer cgroup ({e}): the job is held by the OOM wait alone");
                let _ = std::fs::remove_dir(dir);
                None
            }
        }
    }

    fn make_and_join(memory_leaf: &Path, dir: &Path) -> Result<(), CgError> {
        // Made once: one that exists is an earlier guard's with this pid (perhaps FROZEN), which
        // the job must not join.
        cgfs::create_leaf(dir.to_path_buf(), |_| Ok(()))?;
        let missing = || {
            let there = cgfs::procs_tree(dir);
            cgfs::procs_tree(memory_leaf)
                .into_iter()
                .filter(|p| !there.contains(p))
                .collect()
        };
        if cgfs::move_procs(&dir.join("cgroup.procs"), 20, missing)? {
            return Ok(());
        }
        Err(CgError::Other(format!(
            "the job's processes kept forking faster than they could be moved into {}",
            dir.display()
        )))
    }

    /// The freezer leaf, if the job has joined one.
    pub fn freezer_dir(&self) -> Option<&Path> {
        self.freezer.get().map(PathBuf::as_path)
    }

    fn setup(dir: PathBuf, limits: &Limits, proc: &Proc) -> Result<V1Cgroup, CgError> {
        let mut swap_limited = false;
        if let Some(mem) = limits.memory {
            cgfs::write(&dir.join("memory.limit_in_bytes"), &mem.to_string())?;
            // memsw counts memory + swap and must be >= the memory limit: write it second.
            // The file is missing when the kernel has no swap accounting (swapaccount=0).
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            match cgfs::write(&memsw, &mem.saturating_add(limits.swap).to_string()) {
                Ok(()) => swap_limited = true,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
            // At the limit, hold the tasks instead of killing one: guard kills the whole job.
            cgfs::write(&dir.join("memory.oom_control"), "1")?;
        }
        // The child joins by writing "0" to `tasks`, not `cgroup.procs`: it is single-threaded
        // between fork and exec, so moving the thread moves the process, and the kernel skips
        // the global threadgroup lock (a synchronize_rcu, ~1-2 ms) when a thread moves itself.
        let procs = cgfs::open_write(&dir.join("tasks"))?;
        Ok(V1Cgroup {
            dir,
            procs,
            freezer_at: None,
            freezer: OnceCell::new(),
            freezer_failed: Cell::new(false),
            oom_event: None,
            swap_limited,
            proc: proc.clone(),
        })
    }

    /// Register the OOM eventfd. Safe to do after the job started: registering on a cgroup that
    /// is already at its limit signals the eventfd at once.
    fn arm_oom_event(&mut self) {
        // Registered right after the job started, off its start-up path: the OOM killer is
        // already off (set before exec), and registering on a cgroup that is already under OOM
        // signals the eventfd at once, so no hold can be missed.
        match Self::register_oom_event(&self.dir) {
            Ok(ev) => self.oom_event = Some(ev),
            Err(e) => {
                // Without the eventfd nobody would act on a held job: give the kernel back its
                // OOM killer (whose kills guard still reports from memory.oom_control).
                let _ = cgfs::write(&self.dir.join("memory.oom_control"), "0");
                log::warn!(
                    "cannot watch {} for the memory limit ({e}); the kernel's OOM killer acts instead",
                    self.dir.display()
                );
            }
        }
    }

    fn register_oom_event(dir: &Path) -> Result<(EventFd, File), CgError> {
        let ctl_path = dir.join("memory.oom_control");
        let ctl = File::open(&ctl_path).map_err(|source| CgError::Read {
            path: ctl_path,
            source,
        })?;
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| CgError::Other(format!("eventfd: {e}")))?;
        let line = format!("{} {}", efd.as_fd().as_raw_fd(), ctl.as_raw_fd());
        cgfs::write(&dir.join("cgroup.event_control"), &line)?;
        Ok((efd, ctl))
    }

    /// Freeze the job's freezer cgroup and wait up to `bound` until every task is held: frozen,
    /// or asleep in the memcg OOM wait (those never report FROZEN — the freezer stays FREEZING —
    /// but are held all the same). Returns whether that was confirmed.
    fn freeze(&self, bound: Duration) -> bool {
        let Some(fdir) = self.join_freezer() else {
            return false;
        };
        let state = fdir.join("freezer.state");
        if cgfs::write(&state, "FROZEN").is_err() {
            return false;
        }
        let deadline = Instant::now() + bound;
        loop {
            let frozen = cgfs::read(&state).is_ok_and(|s| s.trim() == "FROZEN");
            // Tasks in the OOM wait show as state D and stay there: held all the same.
            let tasks = || cgfs::read_tree(&self.dir, "tasks");
            if frozen || self.proc.all_held(&tasks()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Grant a held job `extra` bytes and thaw it (the caller has queued SIGSTOP to its tasks:
    /// they finish the allocation they wait on, then stop). For `--core`.
    fn release_by(&self, extra: u64) -> Result<(), CgError> {
        let raise = |file: &str| -> Result<(), CgError> {
            let p = self.dir.join(file);
            if let Some(v) = cgfs::read_u64(&p)? {
                cgfs::write(&p, &v.saturating_add(extra).to_string())?;
            }
            Ok(())
        };
        // memsw must stay >= the memory limit: raise it first.
        if self.swap_limited {
            raise("memory.memsw.limit_in_bytes")?;
        }
        raise("memory.limit_in_bytes")?;
        if let Some(fdir) = self.freezer_dir() {
            cgfs::write(&fdir.join("freezer.state"), "THAWED")?;
        }
        Ok(())
    }

    /// The kernel's verdict: did the OOM killer act inside this cgroup?
    fn verdict_now(&self) -> MemoryVerdict {
        // The file kept open for the OOM eventfd: one pread instead of open, read and close.
        if let Some((_, ctl)) = &self.oom_event {
            let mut buf = [0u8; 512];
            if let Ok(n) = std::os::unix::fs::FileExt::read_at(ctl, &mut buf, 0) {
                return verdict_of(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        verdict_at(&self.dir)
    }

    fn usage_now(&self) -> Option<u64> {
        cgfs::read_u64(&self.dir.join(USAGE)).ok().flatten()
    }
}

/// The job's memory usage (page cache included).
const USAGE: &str = "memory.usage_in_bytes";

impl Enforce for V1Cgroup {
    fn mode(&self) -> Mode {
        Mode::CgroupV1
    }
    fn dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
    /// The freezer leaf (when joined) first: killing there also thaws.
    fn dirs(&self) -> Vec<PathBuf> {
        self.freezer_dir()
            .map(Path::to_path_buf)
            .into_iter()
            .chain([self.dir.clone()])
            .collect()
    }
    fn cleanup_dirs(&self) -> Vec<PathBuf> {
        self.freezer_at
            .iter()
            .cloned()
            .chain([self.dir.clone()])
            .collect()
    }
    fn proc(&self) -> &Proc {
        &self.proc
    }
    fn swap_limited(&self) -> bool {
        self.swap_limited
    }
    /// The memory leaf's `tasks`.
    fn attach_fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.procs.as_fd()]
    }
    fn arm_events(&mut self) {
        self.arm_oom_event();
    }
    fn event_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        self.oom_event
            .as_ref()
            .map(|(e, _)| (e.as_fd(), PollFlags::POLLIN))
    }
    fn drain_event(&mut self) {
        if let Some((e, _)) = &self.oom_event {
            let _ = e.read();
        }
    }
    /// The kernel is holding the job at its limit (`under_oom 1`).
    fn at_cap(&self) -> bool {
        verdict_at(&self.dir).under_oom
    }
    fn verdict(&self) -> MemoryVerdict {
        self.verdict_now()
    }
    fn prepare_hold(&self) {
        self.join_freezer();
    }
    /// Briefly: tasks in the OOM wait are held already and may never report FROZEN.
    fn hold(&self) -> bool {
        self.freeze(Duration::from_millis(100))
    }
    fn unhold(&self) {
        if let Some(fdir) = self.freezer_dir() {
            let _ = cgfs::write(&fdir.join("freezer.state"), "THAWED");
        }
    }
    fn usage(&mut self) -> Option<u64> {
        self.usage_now()
    }
    fn peak(&self) -> Option<u64> {
        cgfs::read_u64(&self.dir.join("memory.max_usage_in_bytes"))
            .ok()
            .flatten()
    }
    fn working_set(&self) -> Option<u64> {
        super::working_set_in(&self.dir, self.usage_now()?, "total_inactive_file")
    }
    fn fault_counters(&self) -> Option<super::FaultCounters> {
        super::fault_counters_in(&self.dir, "total_")
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
    fn release(&self, extra: u64) -> Result<(), CgError> {
        self.release_by(extra)
    }
    fn kernel_counters(&self) -> BTreeMap<String, u64> {
        super::counters_in(&self.dir.join("memory.oom_control"))
    }
    fn capabilities(&self) -> Vec<Capability> {
        let freezer_base = self.freezer_at.as_deref().and_then(Path::parent);
        capabilities(&self.dir, freezer_base)
    }
    fn remove_by(self, until: std::time::Instant) -> Result<(), CgError> {
        let dirs = self.dirs();
        drop(self); // close tasks and the event fds before rmdir
        super::remove_dirs(&dirs, until)
    }
}

/// What cgroup v1 offers in the memory cgroup `dir`, and the freezer hierarchy's cgroup where
/// the job's freezer leaf would go (None: no freezer hierarchy).
pub fn capabilities(dir: &Path, freezer_base: Option<&Path>) -> Vec<Capability> {
    let oc = cgfs::read(&dir.join("memory.oom_control")).unwrap_or_default();
    vec![
        Capability::file(
            dir,
            "memory.limit_in_bytes",
            "memory limit",
            "a kernel with CONFIG_MEMCG",
        ),
        Capability::file(
            dir,
            "memory.memsw.limit_in_bytes",
            "swap limit (swap accounting)",
            "boot with swapaccount=1 (without it --swap is ignored and swap is not capped)",
        ),
        Capability::new(
            "oom_kill counter",
            cgfs::keyed(&oc, "oom_kill").is_some(),
            "memory.oom_control oom_kill",
            "kernel 4.13 or newer (older kernels: guard infers memory kills from under_oom)",
        ),
        Capability::file(
            dir,
            "cgroup.event_control",
            "OOM event notification",
            "a kernel with cgroup v1 event_control",
        ),
        Capability::new(
            "freezer (for holding the job at the cap)",
            freezer_base.is_some(),
            freezer_base
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "not mounted".into()),
            "mount the v1 freezer hierarchy (mount -t cgroup -o freezer cgroup /sys/fs/cgroup/freezer)",
        ),
    ]
}

/// The verdict from `memory.oom_control` of the v1 cgroup `dir`.
pub fn verdict_at(dir: &Path) -> MemoryVerdict {
    verdict_of(&cgfs::read(&dir.join("memory.oom_control")).unwrap_or_default())
}

/// The verdict from the text of `memory.oom_control`.
fn verdict_of(oc: &str) -> MemoryVerdict {
    let under_oom = cgfs::keyed(oc, "under_oom") == Some(1);
    match cgfs::keyed(oc, "oom_kill") {
        Some(n) => MemoryVerdict {
            oom_kills: n,
            under_oom,
        },
        // Kernels before 4.13 have no oom_kill counter: a task waiting in OOM is the only
        // evidence the cgroup itself offers.
        None => MemoryVerdict {
            oom_kills: 0,
            under_oom,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_reads_oom_control() {
        let d = tempfile::tempdir().unwrap();
        let oc = d.path().join("memory.oom_control");
        std::fs::write(&oc, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        assert!(!verdict_at(d.path()).killed());
        std::fs::write(&oc, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert_eq!(
            verdict_at(d.path()),
            MemoryVerdict {
                oom_kills: 2,
                under_oom: false
            }
        );
        // pre-4.13 kernel, task held at the limit
        std::fs::write(&oc, "oom_kill_disable 1\nunder_oom 1\n").unwrap();
        assert!(verdict_at(d.path()).killed());
        // a cgroup that vanished says nothing happened
        assert!(!verdict_at(&d.path().join("gone")).killed());
    }
}
