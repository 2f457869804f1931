//! Enforcement: the [`Enforce`] interface — what the supervisor, the evidence and `guard doctor`
//! need from an enforcement mode: create, attach (the fd the child writes before exec), memory
//! events, usage and peak, the kernel's verdict, hold (freeze / stop), kill, remove, what the
//! timeline samples, and what the kernel offers — and its three backends, each of which owns its
//! file knowledge: cgroup v1 ([`v1`]), cgroup v2 ([`v2`]), poll mode ([`poll`]). [`Enforcer`] is
//! the one a run uses, chosen from a [`detect::Plan`]. Beside the backends, [`systemd`]: the
//! transient scope a run asks systemd for where the manager owns the cgroup tree. Also here:
//! stale-cgroup cleanup.

pub mod detect;
pub mod fs;
pub mod poll;
pub mod systemd;
pub mod v1;
pub mod v2;

use crate::format::Mode;
use crate::os::owner::{Owner, View};
use crate::os::proc::Proc;
use detect::{Plan, V2Placement};
use fs::CgError;
use nix::poll::PollFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use std::collections::BTreeMap;
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

/// The name of the job's leaf cgroup: `guard-<name>-<owner>` (in a dedicated v2 subtree, the
/// `guard/` parent already says whose it is, so there it is `<name>-<owner>`). The owner is
/// guard's pid, and its PID namespace outside the initial one (`guard-web-1.4026532190`), so that
/// two guards that are PID 1 of their containers never share a leaf ([`crate::os::owner`]).
pub fn leaf_name(name: &str, owner: Owner, dedicated: bool) -> String {
    if dedicated {
        format!("{name}-{owner}")
    } else {
        format!("guard-{name}-{owner}")
    }
}

/// The guard encoded in a leaf name, when the name is one of ours.
pub fn leaf_owner(leaf: &str, dedicated: bool) -> Option<Owner> {
    if !dedicated && !leaf.starts_with("guard-") {
        return None;
    }
    let (_, owner) = leaf.rsplit_once('-')?;
    Owner::parse(owner)
}

/// One thing the kernel offers guard (or does not), and what would fix it: `guard doctor`'s rows.
#[derive(Debug, Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Capability {
    pub fn new(name: &'static str, ok: bool, detail: impl Into<String>, fix: &str) -> Capability {
        Capability {
            name,
            ok,
            detail: detail.into(),
            fix: (!ok).then(|| fix.to_string()),
        }
    }

    /// Whether the file `dir/file` exists.
    pub fn file(dir: &Path, file: &str, name: &'static str, fix: &str) -> Capability {
        let ok = dir.join(file).exists();
        let detail = if ok {
            file.to_string()
        } else {
            format!("no {file}")
        };
        Capability::new(name, ok, detail, fix)
    }
}

/// The files the timeline's sampler keeps open and re-reads: the job's usage and its members.
#[derive(Debug, Clone)]
pub struct SampledFiles {
    pub usage: PathBuf,
    pub procs: PathBuf,
}

impl SampledFiles {
    /// A cgroup leaf's: its `usage_file` and its `cgroup.procs`.
    fn of(dir: &Path, usage_file: &str) -> SampledFiles {
        SampledFiles {
            usage: dir.join(usage_file),
            procs: dir.join("cgroup.procs"),
        }
    }
}

/// `usage` minus the inactive page cache that `dir`'s memory.stat counts under `inactive_key`
/// (v1 `total_inactive_file`, v2 `inactive_file`): what the job really uses.
fn working_set_in(dir: &Path, usage: u64, inactive_key: &str) -> Option<u64> {
    let stat = fs::read(&dir.join("memory.stat")).ok()?;
    Some(usage.saturating_sub(fs::keyed(&stat, inactive_key).unwrap_or(0)))
}

/// The counters that tell a job thrashing at its cap from one streaming through it: major page
/// faults (a page the job touches had to be read back) and workingset refaults (a page the
/// kernel had evicted from the job's own memory came back). A stream read once has neither
/// both: first reads of `cat` or `sort` are no refaults, and read() is no page fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    pub major_faults: u64,
    pub refaults: u64,
}

/// [`FaultCounters`] from a cgroup's `memory.stat` with the keys of its version (`prefix`:
/// v1's hierarchical `total_`, v2's none; `workingset_refault` alone before Linux 5.9).
fn fault_counters_in(dir: &Path, prefix: &str) -> Option<FaultCounters> {
    let stat = fs::read(&dir.join("memory.stat")).ok()?;
    let key = |k: &str| fs::keyed(&stat, &format!("{prefix}{k}"));
    let refaults = match (
        key("workingset_refault_file"),
        key("workingset_refault_anon"),
    ) {
        (None, None) => key("workingset_refault")?,
        (f, a) => f.unwrap_or(0) + a.unwrap_or(0),
    };
    Some(FaultCounters {
        major_faults: key("pgmajfault")?,
        refaults,
    })
}

/// What the supervisor, the evidence and `guard doctor` need from an enforcement mode.
/// Implemented by the three backends and dispatched by [`Enforcer`]; the supervisor's unit tests
/// implement it with a fake.
pub trait Enforce {
    fn mode(&self) -> Mode;
    /// The job's cgroup directory (None in poll mode).
    fn dir(&self) -> Option<&Path>;
    /// Every cgroup directory of the job (v1: the freezer leaf first, then the memory leaf).
    fn dirs(&self) -> Vec<PathBuf> {
        self.dir().map(Path::to_path_buf).into_iter().collect()
    }
    /// The directories the cleanup sentinel removes should guard die: `dirs`, and on v1 the
    /// freezer leaf also before it exists (it is made 20 ms in).
    fn cleanup_dirs(&self) -> Vec<PathBuf> {
        self.dirs()
    }
    /// Where the job's processes are read.
    fn proc(&self) -> &Proc;
    /// Whether swap is actually limited (false when the kernel lacks swap accounting).
    fn swap_limited(&self) -> bool;
    /// The open files the forked child writes "0" to before exec.
    fn attach_fds(&self) -> Vec<BorrowedFd<'_>>;
    /// Start watching memory events (right after the job started, off its start-up path).
    fn arm_events(&mut self);
    /// An fd that becomes ready when the kernel reports a memory event, and the flags to wait for.
    fn event_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)>;
    /// Consume a pending memory event.
    fn drain_event(&mut self);
    /// After a memory event: is the job at its cap, held there by the kernel?
    fn at_cap(&self) -> bool;
    /// The kernel's verdict (poll mode has none: guard itself decides there).
    fn verdict(&self) -> MemoryVerdict;
    /// Make ready to hold the job later (housekeeping, 20 ms into the job).
    fn prepare_hold(&self) {}
    /// Hold the job where it is; waits (bounded) for the kernel to confirm; returns whether it did.
    fn hold(&self) -> bool;
    /// Let a held job run again (a capture not followed by a kill).
    fn unhold(&self);
    fn usage(&mut self) -> Option<u64>;
    /// Peak memory of the job as far as it is known.
    fn peak(&self) -> Option<u64>;
    /// Memory the job actually uses: usage minus inactive page cache (what a warning is about).
    fn working_set(&self) -> Option<u64>;
    /// The job's major faults and workingset refaults so far (None: not known in this mode).
    fn fault_counters(&self) -> Option<FaultCounters> {
        None
    }
    /// The files the timeline's sampler re-reads (None: it samples through `sample_detail`).
    fn sampled_files(&self) -> Option<SampledFiles>;
    /// The job's live processes.
    fn pids(&self) -> Vec<i32>;
    fn live_count(&self) -> usize {
        self.pids().len()
    }
    /// One timeline sample: the job's memory and each process's RSS.
    fn sample_detail(&mut self) -> (Option<u64>, Vec<(i32, u64)>) {
        let total = self.usage();
        let procs = self
            .pids()
            .into_iter()
            .map(|p| (p, self.proc().rss_bytes(p)))
            .collect();
        (total, procs)
    }
    /// Send `sig` to every process of the job; returns how many were signalled.
    fn signal_all(&self, sig: Signal) -> usize {
        let pids = self.pids();
        for &p in &pids {
            let _ = kill(Pid::from_raw(p), sig);
        }
        pids.len()
    }
    /// Kill every process of the job (bounded).
    fn kill_all(&self);
    /// Grant a held job `extra` bytes and let it run (its tasks have SIGSTOP queued), for gcore.
    fn release(&self, extra: u64) -> Result<(), CgError>;
    /// The kernel's memory event counters for the job (v1 memory.oom_control, v2 memory.events).
    fn kernel_counters(&self) -> BTreeMap<String, u64>;
    /// What the kernel offers this mode, for `guard doctor`.
    fn capabilities(&self) -> Vec<Capability> {
        Vec::new()
    }
    /// Kill what is left and remove the job's cgroups, giving dying processes until `until` to
    /// leave them (a busy cgroup is then left for the next run, and said so).
    fn remove_by(self, until: Instant) -> Result<(), CgError>
    where
        Self: Sized;
    /// [`Enforce::remove_by`] within [`REMOVE_WAIT`].
    fn remove(self) -> Result<(), CgError>
    where
        Self: Sized,
    {
        self.remove_by(Instant::now() + REMOVE_WAIT)
    }
}

/// How long removing a cgroup waits for its processes to exit when nothing shorter is due.
pub const REMOVE_WAIT: Duration = Duration::from_secs(2);

/// Make a held job's processes stoppable for gcore, which hangs on a frozen task: queue SIGSTOP
/// to each, release the hold with `extra` bytes (a task waiting at the limit must finish its
/// allocation to take the signal), and wait (bounded) until `pids[0]` is stopped.
pub fn release_for_core<E: Enforce + ?Sized>(
    e: &E,
    pids: &[i32],
    extra: u64,
) -> Result<(), CgError> {
    for &p in pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
    }
    e.release(extra)?;
    let Some(&main) = pids.first() else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let state = e.proc().state(main);
        match state {
            Some(s) if s.is_stopped() => return Ok(()),
            None => return Err(CgError::Exited { pid: main }),
            Some(s) if s.is_gone() => return Err(CgError::Exited { pid: main }),
            Some(s) if Instant::now() >= deadline => {
                return Err(CgError::NotStopped {
                    pid: main,
                    state: s.letter(),
                });
            }
            Some(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// The members of the cgroup directories `dirs` and of the cgroups below them (the first that
/// lists any).
fn members(dirs: &[PathBuf]) -> Vec<i32> {
    dirs.iter()
        .map(|d| fs::procs_tree(d))
        .find(|p| !p.is_empty())
        .unwrap_or_default()
}

/// Send SIGKILL to every process in the job's cgroup directories (`dirs`, freezer first): one
/// round, no waiting — the caller waits, against one deadline for the whole kill path (a wait
/// here, per directory and per call, added up to minutes on a loaded machine).
fn kill_dirs(dirs: &[PathBuf]) {
    // The freezer leaf holds the same processes as the memory leaf: nothing in the one means
    // nothing in the other.
    if members(dirs).is_empty() {
        return;
    }
    for d in dirs {
        kill_round(d);
    }
}

/// Remove the job's cgroup directories. Usually the job is gone by now: one rmdir each, without
/// reading cgroup.procs first. A leaf that is still busy gets its processes killed, then is
/// retried until `until`. The caller has closed its files in them (cgroup.procs, event fds).
fn remove_dirs(dirs: &[PathBuf], until: Instant) -> Result<(), CgError> {
    let busy: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| match std::fs::remove_dir(d) {
            Ok(()) => false,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        })
        .collect();
    for d in &busy {
        kill_round(d);
    }
    busy.iter().try_for_each(|d| fs::rmdir_tree_until(d, until))
}

/// The kernel's counters in a flat keyed file (`memory.events`, `memory.oom_control`).
fn counters_in(file: &Path) -> BTreeMap<String, u64> {
    fs::read(file)
        .map(|text| {
            text.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The memory event counters of any cgroup directory (observe mode reads the container's):
/// `memory.events` (v2) or `memory.oom_control` (v1).
pub fn kernel_counters_of(dir: &Path) -> BTreeMap<String, u64> {
    let v2 = counters_in(&dir.join("memory.events"));
    if v2.is_empty() {
        counters_in(&dir.join("memory.oom_control"))
    } else {
        v2
    }
}

/// The cgroup files worth keeping in a bundle's `cgroup/` (memory accounting, events, members,
/// freezer state); write-only control files are left out.
pub fn worth_keeping(name: &str) -> bool {
    (name.starts_with("memory.") || name.starts_with("freezer."))
        && !matches!(name, "memory.force_empty" | "memory.reclaim")
        || matches!(
            name,
            "cgroup.events" | "cgroup.procs" | "cgroup.stat" | "cgroup.freeze" | "pids.current"
        )
}

/// Kill every process in the cgroup `dir` and in the cgroups below it, and wait (bounded) until
/// they are empty. Uses `cgroup.kill` where the kernel has it (v2, 5.14+: it covers the subtree),
/// else SIGKILL to each pid; a v1 freezer cgroup is thawed after the SIGKILLs (thawing a v1
/// freezer cgroup thaws the ones below it) so its frozen tasks can die.
pub fn kill_cgroup(dir: &Path, wait: Duration) {
    if fs::procs_tree(dir).is_empty() {
        return;
    }
    let deadline = Instant::now() + wait;
    loop {
        kill_round(dir);
        if Instant::now() >= deadline {
            log::warn!("processes still listed in {} after SIGKILL", dir.display());
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
        if fs::procs_tree(dir).is_empty() {
            return;
        }
    }
}

/// One round of killing the cgroup `dir` and the cgroups below it: `cgroup.kill` where the kernel
/// has it (v2: it kills frozen tasks too), else SIGKILL to each member and, on a v1 freezer,
/// every cgroup of the subtree thawed: a frozen task dies only once thawed, and a child cgroup
/// the job froze itself stays frozen when only its parent is thawed.
pub fn kill_round(dir: &Path) {
    let ckill = dir.join("cgroup.kill");
    if ckill.exists() {
        let _ = fs::write(&ckill, "1");
        return;
    }
    let tree = fs::subtree(dir);
    for d in &tree {
        for p in fs::procs(d) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
    for d in tree.iter().rev() {
        let state = d.join("freezer.state");
        if state.exists() {
            let _ = fs::write(&state, "THAWED");
        }
    }
}

/// Remove cgroups left by guards that no longer run (their pid is gone): kill what is still in them
/// and rmdir. Returns the removed paths.
pub fn remove_stale(view: &View, base: &Path, dedicated: bool) -> Vec<PathBuf> {
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
        // Only a guard this one can see is dead: never the job of a guard out of its sight
        // (the host's, seen from a container) — cgroup.kill would kill it.
        if !view.is_dead(owner) {
            continue;
        }
        let dir = e.path();
        kill_cgroup(&dir, Duration::from_secs(2));
        match fs::rmdir_tree(&dir, 50) {
            Ok(()) => removed.push(dir),
            Err(err) => log::warn!("cannot remove stale cgroup left by guard {owner}: {err}"),
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
    let view = View::new(proc);
    for (base, dedicated) in bases {
        for d in remove_stale(&view, base, dedicated) {
            log::info!("removed stale cgroup {}", d.display());
        }
    }
}

impl Enforcer {
    /// Create the job's cgroup according to `plan` (leaf `guard-NAME-PID`, or `NAME-PID` in a
    /// dedicated v2 subtree). Poll plans give poll mode rooted at guard's pid.
    pub fn create(
        plan: &Plan,
        proc: &Proc,
        name: &str,
        limits: &Limits,
    ) -> Result<Enforcer, CgError> {
        let me = Owner::me();
        match plan {
            Plan::V1 {
                base, freezer_base, ..
            } => v1::V1Cgroup::create(
                base,
                freezer_base.as_deref(),
                &leaf_name(name, me, false),
                limits,
                proc,
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
                    proc,
                )
                .map(Enforcer::V2)
            }
            Plan::Poll { .. } => Ok(Enforcer::poll(proc)),
        }
    }

    /// Poll mode: the job is guard's process tree.
    pub fn poll(proc: &Proc) -> Enforcer {
        Enforcer::Poll(poll::PollTracker::new(
            proc.clone(),
            std::process::id() as i32,
        ))
    }
}

/// What the kernel would offer a job placed by `plan`, read without creating anything (doctor,
/// where creating a probe would move other processes).
pub fn capabilities_of(plan: &Plan, proc: &Proc) -> Vec<Capability> {
    match plan {
        Plan::V1 {
            base, freezer_base, ..
        } => v1::capabilities(base, freezer_base.as_deref()),
        Plan::V2 { group, .. } => v2::capabilities(group),
        Plan::Poll { fix, .. } => poll::capabilities(proc, fix),
    }
}

/// `match self` over the three backends, calling the same method on each.
macro_rules! each {
    ($self:expr, $c:ident => $call:expr) => {
        match $self {
            Enforcer::V1($c) => $call,
            Enforcer::V2($c) => $call,
            Enforcer::Poll($c) => $call,
        }
    };
}

impl Enforce for Enforcer {
    fn mode(&self) -> Mode {
        each!(self, c => c.mode())
    }
    fn dir(&self) -> Option<&Path> {
        each!(self, c => c.dir())
    }
    fn dirs(&self) -> Vec<PathBuf> {
        each!(self, c => c.dirs())
    }
    fn cleanup_dirs(&self) -> Vec<PathBuf> {
        each!(self, c => c.cleanup_dirs())
    }
    fn proc(&self) -> &Proc {
        each!(self, c => c.proc())
    }
    fn swap_limited(&self) -> bool {
        each!(self, c => c.swap_limited())
    }
    fn attach_fds(&self) -> Vec<BorrowedFd<'_>> {
        each!(self, c => c.attach_fds())
    }
    fn arm_events(&mut self) {
        each!(self, c => c.arm_events())
    }
    fn event_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        each!(self, c => c.event_fd())
    }
    fn drain_event(&mut self) {
        each!(self, c => c.drain_event())
    }
    fn at_cap(&self) -> bool {
        each!(self, c => c.at_cap())
    }
    fn verdict(&self) -> MemoryVerdict {
        each!(self, c => c.verdict())
    }
    fn prepare_hold(&self) {
        each!(self, c => c.prepare_hold())
    }
    fn hold(&self) -> bool {
        each!(self, c => c.hold())
    }
    fn unhold(&self) {
        each!(self, c => c.unhold())
    }
    fn usage(&mut self) -> Option<u64> {
        each!(self, c => c.usage())
    }
    fn peak(&self) -> Option<u64> {
        each!(self, c => c.peak())
    }
    fn fault_counters(&self) -> Option<FaultCounters> {
        each!(self, c => c.fault_counters())
    }
    fn working_set(&self) -> Option<u64> {
        each!(self, c => c.working_set())
    }
    fn sampled_files(&self) -> Option<SampledFiles> {
        each!(self, c => c.sampled_files())
    }
    fn pids(&self) -> Vec<i32> {
        each!(self, c => c.pids())
    }
    fn live_count(&self) -> usize {
        each!(self, c => c.live_count())
    }
    fn sample_detail(&mut self) -> (Option<u64>, Vec<(i32, u64)>) {
        each!(self, c => c.sample_detail())
    }
    fn signal_all(&self, sig: Signal) -> usize {
        each!(self, c => c.signal_all(sig))
    }
    fn kill_all(&self) {
        each!(self, c => c.kill_all())
    }
    fn release(&self, extra: u64) -> Result<(), CgError> {
        each!(self, c => c.release(extra))
    }
    fn kernel_counters(&self) -> BTreeMap<String, u64> {
        each!(self, c => c.kernel_counters())
    }
    fn capabilities(&self) -> Vec<Capability> {
        each!(self, c => c.capabilities())
    }
    fn remove_by(self, until: Instant) -> Result<(), CgError> {
        each!(self, c => c.remove_by(until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_names_round_trip() {
        let host = |pid| Owner { pid, ns: None };
        assert_eq!(
            leaf_name("fix_images", host(42), false),
            "guard-fix_images-42"
        );
        assert_eq!(leaf_owner("guard-fix_images-42", false), Some(host(42)));
        assert_eq!(leaf_owner("guard-a-b-c-7", false), Some(host(7)));
        assert_eq!(leaf_name("x", host(9), true), "x-9");
        assert_eq!(leaf_owner("x-9", true), Some(host(9)));
        assert_eq!(leaf_owner("x-9", false), None);
        assert_eq!(leaf_owner("supervisor", true), None);
        assert_eq!(leaf_owner("guard-x-", false), None);
        let pid1 = Owner {
            pid: 1,
            ns: Some(4_026_532_190),
        };
        assert_eq!(
            leaf_name("web.v2", pid1, false),
            "guard-web.v2-1.4026532190"
        );
        assert_eq!(leaf_owner("guard-web.v2-1.4026532190", false), Some(pid1));
    }

    #[test]
    fn stale_cleanup_removes_only_dead_owners() {
        let proc = tempfile::tempdir().unwrap();
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc.path().join("77")).unwrap(); // alive
        // This guard is PID 1 of a container whose /proc is its own.
        std::os::unix::fs::symlink("1", proc.path().join("self")).unwrap();
        let me = Owner {
            pid: 1,
            ns: Some(777),
        };
        for d in [
            "guard-a-77.777",
            "guard-b-999999.777",
            "guard-host-999999",
            "guard-other-5.888",
            "other-999999.777",
            "supervisor",
        ] {
            std::fs::create_dir(base.path().join(d)).unwrap();
        }
        let view = View::of(proc.path(), me);
        let removed = remove_stale(&view, base.path(), false);
        assert_eq!(removed, vec![base.path().join("guard-b-999999.777")]);
        assert!(base.path().join("guard-a-77.777").exists());
        // Out of sight: the host's guard and another container's are never taken for stale.
        assert!(base.path().join("guard-host-999999").exists());
        assert!(base.path().join("guard-other-5.888").exists());
        assert!(base.path().join("other-999999.777").exists());
        assert!(base.path().join("supervisor").exists());
    }
}
