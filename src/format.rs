//! The bundle format on disk (`format: guard-evidence/1`) and the words guard writes: the
//! manifest's types, the event kinds, statuses, modes and capture kinds (each one enum, kebab-case
//! on the wire), `timeline.csv`'s columns, and how finished bundles are found in an evidence
//! directory. The writer ([`crate::evidence`]) and the readers ([`crate::report`], the alerts,
//! the metrics) share this module and nothing else, so none of them depends on another.
//!
//! The keys named in the contract are binding: more may be added, none renamed. Every added field
//! is optional on reading, and every enum reads a value it does not know as `unknown` (a bundle of
//! a newer guard stays readable).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "guard-evidence/1";

/// What happened: a manifest's `trigger`, an alert's `event`, what a sink subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// guard held the job at its cap and killed it.
    MemoryLimit,
    /// The early-warning threshold (or observe mode's capture point): the job keeps running.
    Warning,
    /// The kernel's OOM killer killed the job (not guard's cap).
    KernelOom,
    /// The contract's trigger for a capture caused by a signal (reserved; not produced yet).
    Signal,
    /// The job failed (non-zero exit or a signal); an alert event only, opt-in.
    Failed,
    /// `--timeout`.
    Timeout,
    /// `guard drill`.
    Drill,
    /// A value this guard does not know (a newer guard's bundle).
    #[serde(other)]
    Unknown,
}

impl EventKind {
    /// The events an alert sink can subscribe to, in the order the man page lists them.
    pub const ALERTS: [EventKind; 6] = [
        EventKind::MemoryLimit,
        EventKind::Warning,
        EventKind::KernelOom,
        EventKind::Failed,
        EventKind::Timeout,
        EventKind::Drill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MemoryLimit => "memory-limit",
            EventKind::Warning => "warning",
            EventKind::KernelOom => "kernel-oom",
            EventKind::Signal => "signal",
            EventKind::Failed => "failed",
            EventKind::Timeout => "timeout",
            EventKind::Drill => "drill",
            EventKind::Unknown => "unknown",
        }
    }

    /// An alert event by its wire name (`None`: not one a sink can subscribe to).
    pub fn alert_event(name: &str) -> Option<EventKind> {
        Self::ALERTS.into_iter().find(|k| k.as_str() == name)
    }

    /// The wire names of [`Self::ALERTS`], for messages.
    pub fn alert_names() -> String {
        Self::ALERTS.map(EventKind::as_str).join(", ")
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// How a collector or a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
    Timeout,
    #[serde(other)]
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Timeout => "timeout",
            Status::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The enforcement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Mode {
    #[serde(rename = "cgroup-v1")]
    CgroupV1,
    #[serde(rename = "cgroup-v2")]
    CgroupV2,
    #[default]
    #[serde(rename = "poll")]
    Poll,
    #[serde(other)]
    Unknown,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::CgroupV1 => "cgroup-v1",
            Mode::CgroupV2 => "cgroup-v2",
            Mode::Poll => "poll",
            Mode::Unknown => "unknown",
        }
    }

    /// The cgroup version (None in poll mode).
    pub fn cgroup_version(self) -> Option<u8> {
        match self {
            Mode::CgroupV1 => Some(1),
            Mode::CgroupV2 => Some(2),
            Mode::Poll | Mode::Unknown => None,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Whether the job was held while guard read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Capture {
    /// The job was held (frozen / stopped) while guard read it.
    #[default]
    PreKill,
    /// The job had died (or the kernel killed it while held): what was left.
    PostMortem,
    #[serde(other)]
    Unknown,
}

impl Capture {
    pub fn as_str(self) -> &'static str {
        match self {
            Capture::PreKill => "pre-kill",
            Capture::PostMortem => "post-mortem",
            Capture::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub guard_version: String,
    pub job: String,
    pub command: Vec<String>,
    /// The job's main process.
    pub pid: i32,
    pub started_at: String,
    pub captured_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub trigger: EventKind,
    pub capture: Capture,
    pub limit_bytes: Option<u64>,
    #[serde(default)]
    pub warn_bytes: Option<u64>,
    pub usage_at_trigger_bytes: Option<u64>,
    pub peak_bytes: Option<u64>,
    pub cgroup: CgroupInfo,
    pub processes: Vec<ProcessEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    pub collectors: Vec<CollectorResult>,
    pub timings: Timings,
    pub redacted_env_keys: Vec<String>,
    /// Added: the host name, whether guard confirmed the hold, milliseconds from the job's start
    /// to the trigger, and the kernel's memory event counters at capture.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub held: bool,
    #[serde(default)]
    pub trigger_after_ms: Option<u64>,
    #[serde(default)]
    pub kernel_counters: BTreeMap<String, u64>,
    /// Added: each alert sink's delivery (sink, status, attempts, ms, detail).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<Delivery>,
    /// Added: processes of the job that left its cgroup while it ran (a root job can write its
    /// pid into another cgroup's cgroup.procs): outside the cap; guard killed them with the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escaped: Vec<Escaped>,
    /// Added: how the job's memory grew up to the trigger (the rate over the last seconds, the
    /// time to the cap at that rate, the shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<Forecast>,
    /// Added: `--hold-for`: how long the job was kept frozen after the capture, and what ended
    /// the hold (absent without --hold-for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldInfo>,
    /// Added: the job reached its cap by thrashing at it (`--thrash-after`): stalled there,
    /// faulting back the pages the kernel evicted, for this long (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thrashing: Option<Thrashing>,
}

/// A job stalled at its cap: how long, and the rates that said so (the means over that time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thrashing {
    pub duration_ms: u64,
    pub major_faults_per_s: u64,
    /// Workingset refaults (pages) a second.
    pub refaults_per_s: u64,
}

impl Thrashing {
    /// "for 31 s (120 major faults/s, 3,100 pages refaulted/s)"
    pub fn describe(&self) -> String {
        format!(
            "for {} ({} major faults/s, {} pages refaulted/s)",
            crate::config::units::format_duration(std::time::Duration::from_millis(
                self.duration_ms / 100 * 100
            )),
            crate::config::units::format_count(self.major_faults_per_s),
            crate::config::units::format_count(self.refaults_per_s)
        )
    }
}

/// `--hold-for` in the manifest: the hold asked for and how it went. A bundle is written when
/// the hold begins (so that people can read it meanwhile); `ended_at`, `ended_by` and the
/// manifest's `exit` are added when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldInfo {
    /// The hold asked for, in milliseconds.
    pub requested_ms: u64,
    /// When the hold began, and when it ends at the latest (RFC 3339 UTC).
    pub since: String,
    pub until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<HoldEnd>,
    /// Who or what, for people: "guard kill (pid 4711, uid 0)", "SIGTERM from pid 1 (uid 0)".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What ended a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoldEnd {
    /// The --hold-for time ran out.
    Expired,
    /// `guard kill NAME|PID`.
    GuardKill,
    /// A terminating signal to guard (SIGTERM, SIGINT, SIGHUP, SIGQUIT).
    Signal,
    /// The job ended during the hold (killed from outside).
    JobEnded,
    /// The held job grew (poll mode: something let a stopped job run again).
    Grew,
    #[serde(other)]
    Unknown,
}

impl HoldEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldEnd::Expired => "expired",
            HoldEnd::GuardKill => "guard-kill",
            HoldEnd::Signal => "signal",
            HoldEnd::JobEnded => "job-ended",
            HoldEnd::Grew => "grew",
            HoldEnd::Unknown => "unknown",
        }
    }
}

/// The growth forecast at a trigger (`growth` in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// The least-squares slope over the window, in bytes per second (negative: shrinking).
    pub bytes_per_second: f64,
    /// The span of the samples the rate is measured over (at most the last 10 s).
    pub window_ms: u64,
    /// At that rate, the time left until the cap; absent when there is no cap or no growth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_limit_ms: Option<u64>,
    /// The shape of the growth from the first sample to the trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Shape>,
}

/// The shape of a job's growth up to its trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// A straight line fits it: a leak's shape (every row, every request adds its share).
    Steady,
    /// Reached within 2 s, or half of it in the last tenth of the run: one large allocation.
    Burst,
    /// Neither: plateaus and jumps (batches, caches filled in stages).
    Steps,
}

/// A process that left the job's cgroup: its pid, name, and the cgroup it went to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escaped {
    pub pid: i32,
    pub comm: String,
    pub cgroup: String,
}

impl Default for Manifest {
    fn default() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            guard_version: env!("CARGO_PKG_VERSION").into(),
            job: String::new(),
            command: Vec::new(),
            pid: 0,
            started_at: String::new(),
            captured_at: String::new(),
            ended_at: None,
            trigger: EventKind::MemoryLimit,
            capture: Capture::PreKill,
            limit_bytes: None,
            warn_bytes: None,
            usage_at_trigger_bytes: None,
            peak_bytes: None,
            cgroup: CgroupInfo::default(),
            processes: Vec::new(),
            exit: None,
            collectors: Vec::new(),
            timings: Timings::default(),
            redacted_env_keys: Vec::new(),
            host: String::new(),
            held: false,
            trigger_after_ms: None,
            kernel_counters: BTreeMap::new(),
            alerts: Vec::new(),
            escaped: Vec::new(),
            growth: None,
            hold: None,
            thrashing: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupInfo {
    /// 1 or 2; None in poll mode.
    pub version: Option<u8>,
    pub path: Option<String>,
    pub mode: Mode,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessEntry {
    pub pid: i32,
    pub ppid: i32,
    pub comm: String,
    pub cmdline: String,
    pub rss_bytes: u64,
    pub pss_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    /// Added: anonymous and file-backed resident bytes, thread count, state letter, whether it
    /// vanished while being read, and its largest mappings by RSS.
    #[serde(default)]
    pub anon_bytes: Option<u64>,
    #[serde(default)]
    pub file_bytes: Option<u64>,
    /// Of `file_bytes`, the resident shared memory (shmem, tmpfs, SysV): RssShmem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shmem_bytes: Option<u64>,
    #[serde(default)]
    pub threads: Option<u64>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vanished: bool,
    #[serde(default)]
    pub largest_mappings: Vec<Mapping>,
    /// Added (issue 26): its resident memory by kind, summed over every mapping (smaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_by_kind: Option<MemoryByKind>,
}

/// A process's resident memory by what backs it, from smaps: the brk heap (`[heap]`: malloc's
/// main arena), other anonymous mappings (malloc's large blocks and other arenas, a runtime's
/// own heap), thread stacks (the main one and each thread's, found by the guard page below
/// it), file-backed pages, and shared memory (shmem, tmpfs, SysV).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemoryByKind {
    pub heap_bytes: u64,
    pub anonymous_bytes: u64,
    pub stack_bytes: u64,
    pub file_bytes: u64,
    pub shmem_bytes: u64,
}

impl MemoryByKind {
    /// Native memory: the heap and the anonymous mappings.
    pub fn native(&self) -> u64 {
        self.heap_bytes.saturating_add(self.anonymous_bytes)
    }

    pub fn total(&self) -> u64 {
        self.native()
            .saturating_add(self.stack_bytes)
            .saturating_add(self.file_bytes)
            .saturating_add(self.shmem_bytes)
    }
}

/// What backs a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MappingKind {
    Heap,
    Anonymous,
    File,
    Stack,
    Shared,
    Other,
    #[serde(other)]
    Unknown,
}

impl MappingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MappingKind::Heap => "heap",
            MappingKind::Anonymous => "anonymous",
            MappingKind::File => "file",
            MappingKind::Stack => "stack",
            MappingKind::Shared => "shared",
            MappingKind::Other => "other",
            MappingKind::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mapping {
    /// `[heap]`, `[stack]`, `[anon]` for anonymous memory, or the file path.
    pub name: String,
    pub kind: MappingKind,
    pub rss_bytes: u64,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectorResult {
    pub name: String,
    pub status: Status,
    pub duration_ms: f64,
    pub detail: String,
}

impl CollectorResult {
    /// A collector that did not run, and why.
    pub fn skipped(name: &str, detail: impl Into<String>) -> CollectorResult {
        CollectorResult {
            name: name.into(),
            status: Status::Skipped,
            duration_ms: 0.0,
            detail: detail.into(),
        }
    }
}

/// `processes/<pid>/pyheap.json` (`format: guard-pyheap/1`): a Python process's heap census, as
/// its hook sent it and guard checked it (sizes bounded, control characters escaped).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PyHeap {
    pub format: String,
    pub pid: i32,
    /// The Python version (`3.11.7`) and implementation (`cpython`).
    pub python: String,
    pub implementation: String,
    /// Objects the collector tracks (gc.get_objects()).
    pub objects: u64,
    /// Objects the collector does not track (str, int, bytes, dicts and tuples of plain values),
    /// found among the referents of the tracked ones and counted once each.
    pub untracked: u64,
    /// The shallow sizes of everything counted.
    pub total_bytes: u64,
    pub by_size: Vec<PyType>,
    pub by_count: Vec<PyType>,
    /// Retention paths of the largest types.
    pub paths: Vec<PyPath>,
    /// False when the deadline cut a phase short (then `notes` says which).
    pub complete: bool,
    pub notes: Vec<String>,
    /// Why the census failed inside the process, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The census's own cost: time, and the process's memory before and after.
    pub duration_ms: f64,
    pub phases_ms: BTreeMap<String, f64>,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub hwm_growth_bytes: u64,
    /// What the census was allowed to add to the process's memory (guard's terms).
    pub budget_bytes: u64,
    /// The job ran on during the census (a warning); else it was held at its cap.
    pub live: bool,
    /// The collector's state as the program left it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc: Option<GcState>,
    /// With tracemalloc on: the lines that allocated the most memory still live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated: Option<Allocated>,
}

/// tracemalloc's answer in a census: who allocated what is still live.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Allocated {
    /// Frames each allocation records (PYTHONTRACEMALLOC).
    pub frames: u32,
    /// What tracemalloc traces as live, in all.
    pub traced_bytes: u64,
    pub lines: Vec<AllocatedLine>,
    /// Why there are no lines (the snapshot would not fit the census's budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// One line of source and the live memory it allocated.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AllocatedLine {
    #[serde(rename = "where")]
    pub at: String,
    pub file: String,
    pub bytes: u64,
    pub count: u64,
}

/// CPython's cyclic collector in a census: on or off, thresholds, counts, gc.garbage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GcState {
    pub enabled: bool,
    pub thresholds: Vec<i64>,
    pub counts: Vec<i64>,
    pub garbage: u64,
}

/// One line of a census histogram.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PyType {
    #[serde(rename = "type")]
    pub type_name: String,
    pub count: u64,
    pub bytes: u64,
}

/// Why instances of one type are alive: the most common path from sampled instances to a root.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PyPath {
    #[serde(rename = "type")]
    pub type_name: String,
    /// Instances traced, and how many of them took this path.
    pub samples: u32,
    pub agree: u32,
    /// From the holder of the instance up to the root: `Image.data`, `list[700]`,
    /// `QuerySet._result_cache`, `local 'qs' in fix_images (leak.py:45)`.
    pub path: Vec<String>,
    /// `local`, `global` or `class`; none when no root was reached.
    pub root: Option<String>,
    /// Paths the other samples took.
    pub others: Vec<Vec<String>>,
}

pub const PYHEAP_FORMAT: &str = "guard-pyheap/1";
pub const JSHEAP_FORMAT: &str = "guard-jsheap/1";

/// `processes/<pid>/jsheap.json`: what a Node.js process's census (guard's hook, loaded with
/// NODE_OPTIONS) found — V8's memory by kind, the constructors holding the most, and how one
/// instance of each is held; checked and bounded by guard.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JsHeap {
    pub format: String,
    pub pid: i32,
    /// `v20.20.2`.
    pub node: String,
    pub live: bool,
    pub budget_bytes: u64,
    pub rss_bytes: u64,
    pub rss_after_bytes: u64,
    /// V8's heap: reserved, and used by live objects.
    pub heap_total_bytes: u64,
    pub heap_used_bytes: u64,
    /// Memory V8 objects own outside the heap (Buffers' and ArrayBuffers' data, among others).
    pub external_bytes: u64,
    pub array_buffers_bytes: u64,
    pub spaces: Vec<JsSpace>,
    /// The heap snapshot's size; none when it was not taken (`notes` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<JsSnapshot>,
    /// Constructors by the bytes their instances hold (their own and the data they own).
    pub by_size: Vec<JsGroup>,
    pub paths: Vec<JsPath>,
    /// Live memory by the function that allocated it (V8's sampling heap profiler, running
    /// since guard's first census of the process).
    pub allocated: Vec<JsAllocation>,
    /// What ran since guard's first census of the process (V8's CPU profiler): the JS stacks
    /// sampled most. None when sampling did not run (no census before this one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<JsRunning>,
    pub complete: bool,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JsSpace {
    pub name: String,
    pub size_bytes: u64,
    pub used_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JsSnapshot {
    pub nodes: u64,
    pub edges: u64,
    pub self_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JsGroup {
    pub name: String,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JsPath {
    pub name: String,
    /// From the holder of one instance up: `Object.profile`, `Map 'sessions'`.
    pub path: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JsAllocation {
    /// `makeItem (/srv/items.js:5)`, then its callers.
    pub stack: Vec<String>,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JsRunning {
    /// Samples taken in all (one every 100 ms while the program ran or idled).
    pub samples: u64,
    /// Of those, the event loop idle or V8's own work outside JS.
    pub idle_samples: u64,
    pub stacks: Vec<JsStack>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JsStack {
    pub samples: u64,
    /// Of all samples.
    pub share: f64,
    /// Innermost first: `addRow (/srv/rows.js:4)`, then its callers.
    pub stack: Vec<String>,
}

impl JsHeap {
    /// The heap's first finding, for a line: `Buffer ×2,100 (131.3 MiB) ← Object.profile ← Map
    /// 'sessions'`.
    pub fn top_finding(&self) -> Option<String> {
        let Some(top) = self.by_size.first() else {
            // No snapshot: the code that allocated the most of what lives (sampled).
            let a = self.allocated.first()?;
            return Some(format!(
                "JS heap {} used; the most of what lives ({} sampled) allocated by {}",
                crate::config::units::format_size(self.heap_used_bytes),
                crate::config::units::format_size(a.bytes),
                a.stack.first()?
            ));
        };
        Some(self.group_line(top))
    }

    /// One constructor's line: `Buffer ×2,100 (131.3 MiB)`, and the way it is held when the
    /// census followed it (` ← Object.profile ← Map 'sessions'`).
    pub fn group_line(&self, g: &JsGroup) -> String {
        let mut s = format!(
            "{} \u{d7}{} ({})",
            g.name,
            crate::config::units::format_count(g.count),
            crate::config::units::format_size(g.bytes)
        );
        if let Some(p) = self.paths.iter().find(|p| p.name == g.name) {
            for step in &p.path {
                s.push_str(" \u{2190} ");
                s.push_str(step);
            }
        }
        s
    }
}

impl PyHeap {
    /// The heap's first finding, for a line: `bytearray ×700 (171 MiB) ← Image.data ← … ← local
    /// 'qs' in fix_images (leak.py:45)`.
    pub fn top_finding(&self) -> Option<String> {
        let p = self.paths.first()?;
        let t = self.by_size.iter().find(|t| t.type_name == p.type_name)?;
        let mut s = format!(
            "{} \u{d7}{} ({})",
            t.type_name,
            crate::config::units::format_count(t.count),
            crate::config::units::format_size(t.bytes)
        );
        for label in &p.path {
            s.push_str(" \u{2190} ");
            s.push_str(label);
        }
        Some(s)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub trigger_to_frozen_ms: Option<f64>,
    pub capture_ms: Option<f64>,
}

/// One alert sink's delivery (the manifest's `alerts`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub sink: String,
    /// ok | failed
    pub status: Status,
    pub attempts: u32,
    pub ms: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The bundle-name timestamp `yyyymmddThhmmssZ`.
pub fn compact_utc(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect()
}

/// `timeline.csv`'s header: one row per process per sample (long format).
pub const TIMELINE_HEADER: &str = "t_ms,cgroup_bytes,pid,rss_bytes";

/// The job totals of a `timeline.csv`, one (t_ms, bytes) per sample, in order. Rows that do not
/// parse are skipped (a report explains what it can).
pub fn parse_timeline(text: &str) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for line in text.lines().skip(1) {
        let mut f = line.split(',');
        let (Some(Ok(t)), Some(Ok(b))) = (
            f.next().map(str::parse::<u64>),
            f.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        if out.last().is_some_and(|&(lt, _)| lt == t) {
            continue;
        }
        out.push((t, b));
    }
    out
}

/// The largest manifest.json a reader takes (guard's are a few KiB; a planted /dev/zero is not
/// read for ever).
pub const MAX_MANIFEST: u64 = 8 << 20;

/// `--upload`: guard's record of a bundle's upload, in the bundle's directory (left out of the
/// archive; written by `crate::ship`, read by retention and `guard list`).
pub const UPLOAD_RECORD: &str = "upload.json";

/// Where a bundle's upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Not up yet: the next guard run on this host, or `guard upload`, tries again.
    Pending,
    /// Both objects are up.
    Uploaded,
}

/// `upload.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    pub state: UploadState,
    /// `s3://BUCKET/PREFIX` it goes to.
    pub target: String,
    /// The archive's key and URL.
    pub key: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// How many uploads were tried.
    pub attempts: u32,
    /// Why the last one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the record was last written (RFC 3339).
    pub at: String,
}

/// A bundle's upload record (`upload.json`), if it has one that reads.
pub fn read_upload_record(bundle: &Path) -> Option<UploadRecord> {
    let bytes = read_bundle_file(&bundle.join(UPLOAD_RECORD), 1 << 20).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// A file of a bundle, read the way every bundle file is: opened without following a symlink and
/// without blocking (a FIFO planted in a crafted bundle would hang a reader), a regular file only,
/// at most `max` bytes (`Ok(None)`: it is larger).
pub fn read_bundle_file(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut data = Vec::new();
    f.take(max + 1).read_to_end(&mut data)?;
    Ok((data.len() as u64 <= max).then_some(data))
}

/// [`read_bundle_file`] as text (invalid UTF-8 replaced), or None.
pub fn read_bundle_text(path: &Path, max: u64) -> Option<String> {
    let data = read_bundle_file(path, max).ok()??;
    Some(String::from_utf8_lossy(&data).into_owned())
}

/// Read and parse `dir/manifest.json`: a regular file (a symlink there is not followed), at most
/// [`MAX_MANIFEST`] bytes.
pub fn read_manifest(dir: &Path) -> Result<Manifest, ManifestError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("manifest.json");
    let io = |source| ManifestError::Read {
        path: path.clone(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(io)?;
    if !f.metadata().map_err(io)?.is_file() {
        return Err(ManifestError::NotAFile(path));
    }
    let mut text = String::new();
    f.take(MAX_MANIFEST + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_MANIFEST {
        return Err(ManifestError::TooLarge(path));
    }
    parse_manifest(&text).map_err(|source| ManifestError::Parse { path, source })
}

/// A manifest's text, parsed (what [`read_manifest`] and the fuzz target read).
pub fn parse_manifest(text: &str) -> Result<Manifest, serde_json::Error> {
    serde_json::from_str(text)
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{0} is larger than 8 MiB: not a manifest guard wrote")]
    TooLarge(PathBuf),
    #[error("{path} is not a guard manifest: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A bundle guard wrote, found in an evidence directory.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// The finished bundles in `evidence_dir`, oldest first by captured time. Only what guard wrote
/// counts — everything else there (a user's `1.0-release/` with a manifest.json in it, a
/// temporary `.tmp-…` bundle, a directory planted by another user) is neither listed, nor
/// reported as latest, nor removed by retention. A bundle guard wrote is a real directory (not a
/// symlink) owned by root or by this user, whose manifest is in guard's format and whose name
/// is the one guard gives it from that manifest: `CAPTURED-JOB-PID[.warning][.N]`.
pub fn found(evidence_dir: &Path) -> Vec<Found> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let Ok(rd) = std::fs::read_dir(evidence_dir) else {
        return Vec::new();
    };
    let mut v: Vec<Found> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let md = e.path().symlink_metadata().ok()?;
            if !md.is_dir() || (md.uid() != me && md.uid() != 0) {
                return None;
            }
            let manifest = read_manifest(&e.path()).ok()?;
            (manifest.format == FORMAT && is_name_of(&name, &manifest)).then(|| Found {
                path: e.path(),
                manifest,
            })
        })
        .collect();
    v.sort_by(|a, b| (&a.manifest.captured_at, &a.path).cmp(&(&b.manifest.captured_at, &b.path)));
    v
}

/// The paths of [`found`].
pub fn bundles(evidence_dir: &Path) -> Vec<PathBuf> {
    found(evidence_dir).into_iter().map(|f| f.path).collect()
}

/// Whether `name` is the name guard gives a bundle with manifest `m`.
fn is_name_of(name: &str, m: &Manifest) -> bool {
    let Ok(captured) = humantime::parse_rfc3339(&m.captured_at) else {
        return false;
    };
    let mut base = format!("{}-{}-{}", compact_utc(captured), m.job, m.pid);
    if m.trigger == EventKind::Warning {
        base.push_str(".warning");
    }
    let Some(rest) = name.strip_prefix(&base) else {
        return false;
    };
    // `.2`, `.3`, …: a name that was taken when it was moved into place.
    rest.is_empty()
        || rest
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `s` with its control characters escaped (`\x1b`, `\u{9b}`), so that text from a bundle, a job
/// or a command line cannot drive the terminal it is printed on. `lines`: keep newlines and tabs
/// (multi-line text such as a report); otherwise they are escaped too (one line).
pub fn escape_controls(s: &str, lines: bool) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write;
    let escaped = |c: char| c.is_control() && !(lines && matches!(c, '\n' | '\t'));
    if !s.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match u32::from(c) {
            _ if !escaped(c) => o.push(c),
            n if n < 0x100 => {
                let _ = write!(o, "\\x{n:02x}");
            }
            n => {
                let _ = write!(o, "\\u{{{n:x}}}");
            }
        }
    }
    std::borrow::Cow::Owned(o)
}

/// The journal's MESSAGE_ID of each event kind (`journalctl MESSAGE_ID=…` finds them all).
pub fn message_id(kind: EventKind) -> &'static str {
    match kind {
        EventKind::MemoryLimit => "8a1f4be3c6d54f0e9b2a7c1d5e6f7a01",
        EventKind::Warning => "8a1f4be3c6d54f0e9b2a7c1d5e6f7a02",
        EventKind::KernelOom => "8a1f4be3c6d54f0e9b2a7c1d5e6f7a03",
        EventKind::Failed => "8a1f4be3c6d54f0e9b2a7c1d5e6f7a04",
        EventKind::Timeout => "8a1f4be3c6d54f0e9b2a7c1d5e6f7a05",
        EventKind::Drill => "8a1f4be3c6d54f0e9b2a7c1d5e6f7a06",
        EventKind::Signal => "8a1f4be3c6d54f0e9b2a7c1d5e6f7a07",
        EventKind::Unknown => "8a1f4be3c6d54f0e9b2a7c1d5e6f7a00",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        assert_eq!(compact_utc(t), "20261118T110640Z");
    }

    #[test]
    fn names_guard_gives_bundles() {
        let m = Manifest {
            job: "nightly.db".into(),
            pid: 42,
            captured_at: "2026-11-18T11:06:40.123Z".into(),
            trigger: EventKind::MemoryLimit,
            ..Manifest::default()
        };
        for ok in [
            "20261118T110640Z-nightly.db-42",
            "20261118T110640Z-nightly.db-42.2",
        ] {
            assert!(is_name_of(ok, &m), "{ok}");
        }
        for bad in [
            "1.0-release",
            "20261118T110640Z-nightly.db-43",
            "20261118T110641Z-nightly.db-42",
            "20261118T110640Z-nightly.db-42.warning",
            "20261118T110640Z-nightly.db-42.",
            "20261118T110640Z-nightly.db-42.x",
            "20261118T110640Z-nightly.db-42-old",
        ] {
            assert!(!is_name_of(bad, &m), "{bad}");
        }
        let w = Manifest {
            trigger: EventKind::Warning,
            ..m.clone()
        };
        assert!(is_name_of("20261118T110640Z-nightly.db-42.warning", &w));
        assert!(!is_name_of("20261118T110640Z-nightly.db-42", &w));
        let undated = Manifest {
            captured_at: "yesterday".into(),
            ..m
        };
        assert!(!is_name_of("20261118T110640Z-nightly.db-42", &undated));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(
            escape_controls("plain text\n", true),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(escape_controls("a\u{1b}[2Jb", true), "a\\x1b[2Jb");
        assert_eq!(escape_controls("l1\nl2\tx\r", true), "l1\nl2\tx\\x0d");
        assert_eq!(escape_controls("l1\nl2", false), "l1\\x0al2");
        assert_eq!(
            escape_controls("c1\u{9b}31m\u{7f}", false),
            "c1\\x9b31m\\x7f"
        );
        assert_eq!(escape_controls("ünïcode ✓", false), "ünïcode ✓");
    }

    #[test]
    fn exit_is_code_or_signal() {
        let e = ExitInfo {
            code: None,
            signal: Some(9),
        };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"signal":9}"#);
    }

    /// Every enum's wire name is its `as_str`, and a value of a newer guard reads as unknown.
    #[test]
    fn wire_names_round_trip() {
        let all = [
            EventKind::MemoryLimit,
            EventKind::Warning,
            EventKind::KernelOom,
            EventKind::Signal,
            EventKind::Failed,
            EventKind::Timeout,
            EventKind::Drill,
        ];
        for k in all {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), k);
        }
        for s in [Status::Ok, Status::Failed, Status::Skipped, Status::Timeout] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for m in [Mode::CgroupV1, Mode::CgroupV2, Mode::Poll] {
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        for c in [Capture::PreKill, Capture::PostMortem] {
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        assert_eq!(
            serde_json::from_str::<EventKind>("\"hold-for\"").unwrap(),
            EventKind::Unknown
        );
        assert_eq!(
            serde_json::from_str::<Mode>("\"cgroup-v3\"").unwrap(),
            Mode::Unknown
        );
        assert_eq!(EventKind::alert_event("signal"), None);
        assert_eq!(EventKind::alert_event("timeout"), Some(EventKind::Timeout));
    }

    #[test]
    fn timeline_rows_parse() {
        let csv = format!("{TIMELINE_HEADER}\n0,10,,\n100,20,5,7\n100,20,6,8\nbad\n200,30,,\n");
        assert_eq!(parse_timeline(&csv), vec![(0, 10), (100, 20), (200, 30)]);
    }
}
