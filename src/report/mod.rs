//! `guard report` and `guard list`: read bundles back and explain them. One screen of text that
//! answers what the person on call asks first (what, when, how big, how fast, which process,
//! which line), the same as JSON, and a self-contained HTML page with an SVG plot of memory over
//! time. The text form is also the bundle's `summary.txt`. How a job's memory grew — the rate,
//! the time to the cap, the shape — is [`growth`], read from a timeline by the report and, while
//! the job runs, by the evidence and the warning line.

pub mod growth;
mod html;
mod node;

pub use html::html;

use crate::config::units::format_size;
use crate::format::{self, Capture, EventKind, Manifest, MappingKind};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The window for "growth over the last seconds": the forecast's.
const RECENT_MS: u64 = crate::report::growth::RECENT_MS;
/// Lines of each Python stack shown on the screen.
const STACK_LINES: usize = 12;

/// Why a bundle cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "cannot read {}: {source} (is {} an evidence bundle? 'guard list' shows them)",
        manifest.display(),
        bundle.display()
    )]
    Read {
        manifest: PathBuf,
        bundle: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Manifest(format::ManifestError),
    #[error(
        "the evidence directory {} does not exist (no bundle written yet, or give --evidence-dir DIR)",
        .0.display()
    )]
    NoDir(PathBuf),
    #[error(
        "no bundle in {} yet (give --evidence-dir DIR if guard wrote them elsewhere)",
        .0.display()
    )]
    Empty(PathBuf),
    /// No evidence directory to look in (HOME is not set).
    #[error(transparent)]
    NoEvidence(#[from] crate::config::NoEvidence),
}

/// A bundle read back, with the figures derived from it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub bundle: PathBuf,
    pub manifest: Manifest,
    /// (t_ms, job bytes) per sample.
    #[serde(skip)]
    pub timeline: Vec<(u64, u64)>,
    pub growth: Growth,
    /// py-spy output per process.
    pub stacks: Vec<Stack>,
    /// The Python heap censuses (`processes/<pid>/pyheap.json`), the largest heap first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pyheap: Vec<crate::format::PyHeap>,
    /// The Node.js heap censuses (`processes/<pid>/jsheap.json`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jsheap: Vec<crate::format::JsHeap>,
    /// Processes whose map files could not be read in time (`not-read.txt`): pid, the note.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_read: Vec<(i32, String)>,
}

#[derive(Debug, Serialize, Default)]
pub struct Growth {
    /// From the job's start to the trigger.
    pub time_to_trigger_ms: Option<u64>,
    pub overall_mb_per_s: Option<f64>,
    pub recent_mb_per_s: Option<f64>,
    pub recent_window_ms: Option<u64>,
    /// From the first sample at or above the warning threshold to the trigger.
    pub warn_to_trigger_ms: Option<u64>,
    pub samples: usize,
    /// Steady (a leak), a burst, or in steps: the manifest's, else from the timeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<crate::format::Shape>,
    /// A warning's forecast: the time to the cap at the rate of the last seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_limit_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Stack {
    pub pid: i32,
    pub text: String,
}

impl Report {
    /// Read the bundle at `dir`.
    pub fn load(dir: &Path) -> Result<Report, ReportError> {
        let manifest = format::read_manifest(dir).map_err(|e| match e {
            format::ManifestError::Read { path, source } => ReportError::Read {
                manifest: path,
                bundle: dir.to_path_buf(),
                source,
            },
            other => ReportError::Manifest(other),
        })?;
        // Every other file of a bundle the way the manifest is read: no symlink followed, no
        // FIFO waited on, bounded (a crafted bundle is not a way to hang or fill guard report).
        let timeline = format::read_bundle_text(&dir.join("timeline.csv"), MAX_TIMELINE)
            .map(|t| format::parse_timeline(&t))
            .unwrap_or_default();
        let mut stacks = Vec::new();
        let mut not_read = Vec::new();
        let mut heaps = Vec::new();
        let mut js = Vec::new();
        for p in &manifest.processes {
            let pdir = dir.join("processes").join(p.pid.to_string());
            if let Some(h) = read_census(&pdir.join("pyheap.json")) {
                heaps.push(h);
            }
            if let Some(j) = read_census(&pdir.join("jsheap.json")) {
                js.push(j);
            }
            if let Some(t) = format::read_bundle_text(&pdir.join("pyspy.txt"), MAX_STACKS) {
                stacks.push(Stack {
                    pid: p.pid,
                    text: t,
                });
            }
            if let Some(t) = format::read_bundle_text(&pdir.join("not-read.txt"), MAX_NOTE) {
                not_read.push((p.pid, t.trim().to_string()));
            }
        }
        let mut r = Report::of(dir, manifest, timeline, stacks, not_read);
        // The process that holds the most memory first, whatever it runs.
        heaps.sort_by_key(|h: &crate::format::PyHeap| {
            std::cmp::Reverse((held_by(&r.manifest, h.pid), h.total_bytes))
        });
        r.pyheap = heaps;
        r.jsheap = js;
        Ok(r)
    }

    /// The process that holds the most memory (PSS, else RSS), with its share of what the
    /// job's processes hold; None when none was read.
    pub fn top_holder(&self) -> Option<(&crate::format::ProcessEntry, u64, u64)> {
        let live = || self.manifest.processes.iter().filter(|p| !p.vanished);
        let total: u64 = live().map(mem_of).sum();
        let top = live().max_by_key(|p| mem_of(p))?;
        Some((top, mem_of(top), total))
    }

    /// The Node.js census of the process that holds the most memory, if it has one.
    pub fn lead_jsheap(&self) -> Option<&crate::format::JsHeap> {
        let (top, _, _) = self.top_holder()?;
        self.jsheap.iter().find(|j| j.pid == top.pid)
    }

    /// What holds the memory in one line, for alerts and the first screen: the census finding
    /// of the process that holds the most memory, or what is known of that process when it has
    /// no census (not Python; its census failed, and why).
    pub fn top_finding(&self) -> Option<String> {
        let Some((top, held, total)) = self.top_holder() else {
            return self
                .pyheap
                .iter()
                .find_map(crate::format::PyHeap::top_finding);
        };
        if let Some(j) = self.lead_jsheap() {
            let hint = j
                .paths
                .first()
                .and_then(node::fix_hint)
                .map(|f| format!("; fix: {f}"))
                .unwrap_or_default();
            if let Some(f) = j.top_finding() {
                return Some(format!("{f}{hint}"));
            }
        }
        if let Some(h) = self.pyheap.iter().find(|h| h.pid == top.pid) {
            let outside = explained(&self.manifest, h).and_then(|x| x.outside_line());
            let hint = h
                .paths
                .first()
                .and_then(|p| fix_hint(&p.path, p.root.as_deref()))
                .map(|f| format!("; fix: {f}"))
                .unwrap_or_default();
            match (outside, h.top_finding()) {
                (Some(o), Some(f)) => return Some(format!("{o}; of Python's objects: {f}")),
                (Some(o), None) => return Some(o),
                (None, Some(f)) => return Some(format!("{f}{hint}")),
                (None, None) => {}
            }
        }
        let who = holder_text(top, held, total);
        // A small process's census is no answer for the memory another one holds.
        Some(match census_failure(&self.manifest, top.pid) {
            Some(why) => format!("{who}; its census failed: {why}"),
            None => format!("{who}; no census of it ({})", no_census_reason(top)),
        })
    }

    /// A report from a manifest's and a timeline's text alone (the fuzz target; no files read).
    pub fn from_texts(
        bundle: &Path,
        manifest: &str,
        timeline: &str,
    ) -> Result<Report, ReportError> {
        let manifest = format::parse_manifest(manifest).map_err(|source| {
            ReportError::Manifest(format::ManifestError::Parse {
                path: bundle.join("manifest.json"),
                source,
            })
        })?;
        let timeline = format::parse_timeline(timeline);
        Ok(Report::of(
            bundle,
            manifest,
            timeline,
            Vec::new(),
            Vec::new(),
        ))
    }

    fn of(
        bundle: &Path,
        manifest: Manifest,
        timeline: Vec<(u64, u64)>,
        stacks: Vec<Stack>,
        not_read: Vec<(i32, String)>,
    ) -> Report {
        let growth = growth(&manifest, &timeline);
        Report {
            bundle: bundle.to_path_buf(),
            manifest,
            timeline,
            growth,
            stacks,
            not_read,
            pyheap: Vec::new(),
            jsheap: Vec::new(),
        }
    }
}

/// A census file guard wrote (at most 8 MiB is read; one that does not parse is left out, and
/// the collector's line still says what happened).
fn read_census<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let data = format::read_bundle_file(path, MAX_PYHEAP).ok()??;
    serde_json::from_slice(&data).ok()
}

/// The most of each bundle file guard report reads: far above what guard writes (a timeline of
/// 2,048 samples is under 1 MiB; py-spy's output is kept to 2 MiB; a census is tens of KiB).
const MAX_TIMELINE: u64 = 8 << 20;
const MAX_STACKS: u64 = 4 << 20;
const MAX_NOTE: u64 = 64 << 10;
const MAX_PYHEAP: u64 = 8 << 20;

fn mb_per_s(bytes: i128, ms: u64) -> Option<f64> {
    (ms > 0).then(|| bytes as f64 / 1e6 / (ms as f64 / 1000.0))
}

/// Growth figures from the timeline up to the trigger (samples after it are ignored).
pub fn growth(m: &Manifest, tl: &[(u64, u64)]) -> Growth {
    let t_trig = m.trigger_after_ms.or(tl.last().map(|s| s.0));
    let upto: Vec<(u64, u64)> = tl
        .iter()
        .copied()
        .filter(|&(t, _)| t_trig.is_none_or(|tt| t <= tt))
        .collect();
    let mut g = Growth {
        time_to_trigger_ms: t_trig,
        samples: tl.len(),
        ..Default::default()
    };
    let end_bytes = m
        .usage_at_trigger_bytes
        .or(upto.last().map(|s| s.1))
        .unwrap_or(0);
    if let (Some(first), Some(tt)) = (upto.first(), t_trig) {
        g.overall_mb_per_s = mb_per_s(
            end_bytes as i128 - first.1 as i128,
            tt.saturating_sub(first.0),
        );
        let from = tt.saturating_sub(RECENT_MS);
        if let Some(start) = upto.iter().find(|&&(t, _)| t >= from) {
            let dt = tt.saturating_sub(start.0);
            g.recent_mb_per_s = mb_per_s(end_bytes as i128 - start.1 as i128, dt);
            g.recent_window_ms = Some(dt);
        }
    }
    if let (Some(w), Some(tt)) = (m.warn_bytes, t_trig) {
        if let Some(&(t, _)) = upto.iter().find(|&&(_, b)| b >= w) {
            g.warn_to_trigger_ms = Some(tt.saturating_sub(t));
        }
    }
    if let Some(f) = m.growth {
        // The figure the alert and the warning line gave: one rate, wherever it is read.
        g.recent_mb_per_s = Some(f.bytes_per_second / 1e6);
        g.recent_window_ms = Some(f.window_ms);
    }
    g.shape = m
        .growth
        .and_then(|f| f.shape)
        .or_else(|| crate::report::growth::shape(&upto));
    if m.trigger == EventKind::Warning {
        g.time_to_limit_ms = m.growth.and_then(|f| f.time_to_limit_ms);
    }
    g
}

fn secs(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 120_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60)
    }
}

fn opt_size(v: Option<u64>) -> String {
    v.map(format_size).unwrap_or_else(|| "unknown".into())
}

/// The one-screen text report (also `summary.txt`): what happened and when, how big and how
/// fast, which processes, which lines (Python stacks), what guard's collectors and alerts did.
pub fn text(r: &Report) -> String {
    let mut o = String::new();
    header(&mut o, &r.manifest);
    growth_line(&mut o, &r.growth);
    heap(&mut o, r);
    processes(&mut o, r);
    stacks(&mut o, r);
    collectors_and_alerts(&mut o, &r.manifest);
    footer(&mut o, r);
    // A bundle's fields are what a job (or whoever planted it) chose: no escape code of theirs
    // reaches the terminal.
    format::escape_controls(&o, true).into_owned()
}

/// What happened to which job, where, when, and the memory figures.
fn header(o: &mut String, m: &Manifest) {
    let what = match m.trigger {
        EventKind::MemoryLimit if m.thrashing.is_some() => {
            "exceeded its memory limit, thrashing at its memory limit"
        }
        EventKind::MemoryLimit => "exceeded its memory limit",
        EventKind::Warning => "crossed its early-warning threshold",
        EventKind::KernelOom => "was killed by the kernel's OOM killer",
        EventKind::Timeout => "exceeded its time limit",
        other => other.as_str(),
    };
    let _ = writeln!(o, "guard evidence: {} (pid {}) {what}", m.job, m.pid);
    let _ = writeln!(o, "  command   {}", m.command.join(" "));
    let _ = writeln!(
        o,
        "  host      {}   mode {}{}",
        if m.host.is_empty() { "?" } else { &m.host },
        m.cgroup.mode,
        m.cgroup
            .path
            .as_deref()
            .map(|p| format!("   cgroup {p}"))
            .unwrap_or_default()
    );
    let _ = writeln!(o, "  started   {}", m.started_at);
    let _ = writeln!(
        o,
        "  captured  {}   ({}{})",
        m.captured_at,
        if m.capture == Capture::PreKill {
            "pre-kill: the job was held while guard read it"
        } else {
            "post-mortem: the job had already died"
        },
        m.timings
            .trigger_to_frozen_ms
            .map(|t| format!("; held {t:.1} ms after the trigger"))
            .unwrap_or_default()
    );
    if let Some(e) = &m.ended_at {
        let how = match &m.exit {
            Some(x) if x.signal.is_some() => {
                format!(" (killed by signal {})", x.signal.unwrap_or(0))
            }
            Some(x) => format!(" (exit {})", x.code.unwrap_or(0)),
            None => String::new(),
        };
        let _ = writeln!(o, "  ended     {e}{how}");
    }
    if let Some(h) = &m.hold {
        let _ = writeln!(o, "  held      {}", hold_text(h, &m.job));
    }
    if let Some(t) = &m.thrashing {
        let _ = writeln!(
            o,
            "  thrashing stalled at its cap {}: the kernel kept evicting pages it then read \
             back (no OOM: reclaim kept succeeding); treated as reaching the cap \
             (--thrash-after)",
            t.describe()
        );
    }
    let _ = writeln!(
        o,
        "  memory    limit {}   warn {}   at trigger {}   peak {}",
        m.limit_bytes
            .map(format_size)
            .unwrap_or_else(|| "none (monitor only)".into()),
        m.warn_bytes
            .map(format_size)
            .unwrap_or_else(|| "off".into()),
        opt_size(m.usage_at_trigger_bytes),
        opt_size(m.peak_bytes)
    );
}

/// `--hold-for`: "frozen from … until …; ended by guard kill (pid 4711, uid 0) at …", or, while
/// it lasts, how to end it.
fn hold_text(h: &crate::format::HoldInfo, job: &str) -> String {
    let asked =
        crate::config::units::format_duration(std::time::Duration::from_millis(h.requested_ms));
    match (&h.ended_at, h.ended_by) {
        (Some(at), Some(by)) => format!(
            "frozen after the capture from {} (--hold-for {asked}); the hold ended at {at}: {}",
            h.since,
            match by {
                crate::format::HoldEnd::Expired => format!("--hold-for {asked} ran out"),
                _ => h.detail.clone(),
            }
        ),
        _ => format!(
            "frozen after the capture from {} until {} (--hold-for {asked}); 'guard kill {job}' on its host ends the hold now",
            h.since, h.until
        ),
    }
}

/// How fast memory grew, and how long it took to get there.
fn growth_line(o: &mut String, g: &Growth) {
    let mut growth = Vec::new();
    if let Some(t) = g.time_to_trigger_ms {
        growth.push(format!("reached the trigger {} after start", secs(t)));
    }
    if let Some(v) = g.overall_mb_per_s {
        growth.push(format!("{v:.1} MB/s overall"));
    }
    if let (Some(v), Some(w)) = (g.recent_mb_per_s, g.recent_window_ms) {
        growth.push(format!("{v:.1} MB/s over the last {}", secs(w)));
    }
    if let Some(t) = g.warn_to_trigger_ms {
        growth.push(format!("{} from the warning to the trigger", secs(t)));
    }
    if let Some(t) = g.time_to_limit_ms {
        growth.push(format!(
            "the cap in {} at that rate",
            crate::report::growth::eta(t)
        ));
    }
    if let Some(s) = g.shape {
        growth.push(crate::report::growth::shape_text(s).into());
    }
    if growth.is_empty() {
        growth.push("no timeline samples (the job was caught before the first sample)".into());
    }
    let _ = writeln!(o, "  growth    {}", growth.join("; "));
}

/// How much of a Python process's memory its census explains.
struct Explained {
    /// What the census counted (shallow sizes of the objects it found).
    counted: u64,
    /// The process's resident anonymous memory (where Python objects live).
    anon: u64,
    file: u64,
    shmem: u64,
    /// The census was cut short: `counted` is a lower bound.
    partial: bool,
}

impl Explained {
    /// "N of M is outside Python objects: ..." when the objects explain less than half of the
    /// process's anonymous memory, with what would explain the rest.
    fn outside_line(&self) -> Option<String> {
        if self.anon == 0 || self.counted.saturating_mul(2) >= self.anon {
            return None;
        }
        Some(format!(
            "{} of {} is outside Python objects{}: native memory — allocated in C (an \
             extension's buffers, the interpreter's own), or freed by Python and kept by the \
             allocator; memray or heaptrack show who allocates it natively, --core keeps a \
             core to inspect",
            format_size(self.anon - self.counted.min(self.anon)),
            format_size(self.anon),
            if self.partial {
                " (the census was cut short: at most)"
            } else {
                ""
            }
        ))
    }

    /// "Python objects: N of the process's M anonymous memory (P %); file-backed F, shared S".
    fn share_line(&self) -> String {
        format!(
            "Python objects: {} of the process's {} anonymous memory ({:.0} %{}); besides: \
             file-backed {}, shared memory {}",
            format_size(self.counted),
            format_size(self.anon),
            self.counted as f64 * 100.0 / self.anon.max(1) as f64,
            if self.partial {
                ", counted in part"
            } else {
                ""
            },
            format_size(self.file.saturating_sub(self.shmem)),
            format_size(self.shmem)
        )
    }
}

/// What the census of `h` explains of its process's memory (None: the process was not read).
fn explained(m: &Manifest, h: &crate::format::PyHeap) -> Option<Explained> {
    let p = m.processes.iter().find(|p| p.pid == h.pid && !p.vanished)?;
    Some(Explained {
        counted: h.total_bytes,
        anon: p.anon_bytes?,
        file: p.file_bytes.unwrap_or(0),
        shmem: p.shmem_bytes.unwrap_or(0),
        partial: !h.complete,
    })
}

/// The memory a process holds: its PSS, else its RSS.
fn mem_of(p: &crate::format::ProcessEntry) -> u64 {
    p.pss_bytes.unwrap_or(p.rss_bytes)
}

/// The memory process `pid` held when the bundle was written (0: not read).
fn held_by(m: &Manifest, pid: i32) -> u64 {
    m.processes
        .iter()
        .find(|p| p.pid == pid && !p.vanished)
        .map_or(0, mem_of)
}

/// "pid N (COMM) holds SIZE, P % of what the job's processes hold".
fn holder_text(p: &crate::format::ProcessEntry, held: u64, total: u64) -> String {
    format!(
        "pid {} ({}) holds {}, {:.0} % of what the job's processes hold",
        p.pid,
        p.comm,
        format_size(held),
        held as f64 * 100.0 / total.max(1) as f64
    )
}

/// Why the census of `pid` failed or was skipped, from its collector line (None: it has none).
fn census_failure(m: &Manifest, pid: i32) -> Option<String> {
    m.collectors
        .iter()
        .find(|c| census_pid(&c.name) == Some(pid) && c.status != crate::format::Status::Ok)
        .map(|c| format!("{} ({})", c.detail, c.status.as_str()))
}

/// The census collectors of the job's processes (`pyheap:PID`, `jsheap:PID`), whatever their
/// status.
fn census_collectors(m: &Manifest) -> Vec<&crate::format::CollectorResult> {
    m.collectors
        .iter()
        .filter(|c| census_pid(&c.name).is_some())
        .collect()
}

/// The pid of a census collector's name (`pyheap:PID`, `jsheap:PID`).
fn census_pid(name: &str) -> Option<i32> {
    let (runtime, pid) = name.split_once(':')?;
    matches!(runtime, "pyheap" | "jsheap")
        .then(|| pid.parse().ok())
        .flatten()
}

/// Why a process without a census line has none.
fn no_census_reason(p: &crate::format::ProcessEntry) -> &'static str {
    if is_python(p) {
        "a Python process guard did not ask: see the collectors below"
    } else {
        "not a Python process: its largest mappings are below"
    }
}

/// Whether `p` runs Python: by its comm or its program's name — not by its arguments (`sh
/// run.sh /usr/bin/python3` is a shell).
fn is_python(p: &crate::format::ProcessEntry) -> bool {
    let program = p.cmdline.split_whitespace().next().unwrap_or("");
    let base = program.rsplit('/').next().unwrap_or(program);
    p.comm.starts_with("python") || base.starts_with("python")
}

/// What is known of a process without a census, under the lead line: its command, and its
/// memory by kind (native: the malloc heap and anonymous maps; thread stacks; file-backed;
/// shared) with its share of the cap.
fn native_lines(m: &Manifest, p: &crate::format::ProcessEntry) -> Vec<String> {
    let mut v = vec![format!("command  {}", p.cmdline)];
    let stack = m
        .collectors
        .iter()
        .find(|c| c.name == format!("native-stack:{}", p.pid));
    if let Some(k) = p.memory_by_kind {
        let cap = m
            .limit_bytes
            .filter(|&l| l > 0)
            .map(|l| format!("; {:.0} % of the cap", k.total() as f64 * 100.0 / l as f64))
            .unwrap_or_default();
        v.push(format!(
            "memory   native {} (malloc heap {} \u{b7} anonymous maps {}) \u{b7} thread stacks {} \u{b7} file-backed {} \u{b7} shared {}{cap}",
            format_size(k.native()),
            format_size(k.heap_bytes),
            format_size(k.anonymous_bytes),
            format_size(k.stack_bytes),
            format_size(k.file_bytes),
            format_size(k.shmem_bytes),
        ));
    }
    match stack {
        Some(c) if c.status == crate::format::Status::Ok => {
            let frames = c.detail.split_once(": ").map_or("", |(_, f)| f);
            v.push(format!(
                "stack    {frames}   (eu-stack at the freeze, innermost first; all threads in processes/{}/native-stack.txt)",
                p.pid
            ));
        }
        Some(c) => v.push(format!(
            "stack    none: {} ({})",
            c.detail,
            c.status.as_str()
        )),
        None => {}
    }
    v
}

/// What holds the memory. The process that holds the most memory leads, whatever it runs: its
/// census (types, the retention paths of the large ones) when it has one, else what is known of
/// it and why there is no census; then one line for each other census.
fn heap(o: &mut String, r: &Report) {
    let top = r.top_holder();
    if let (Some((p, held, total)), Some(j)) = (top, r.lead_jsheap()) {
        node::lead(o, &r.manifest, j, p, held, total);
        return;
    }
    let lead = top.and_then(|(p, _, _)| r.pyheap.iter().find(|h| h.pid == p.pid));
    if let (Some((p, held, total)), None) = (top, lead) {
        // A census was asked of some process of the job (whatever became of it): the one that
        // holds the most leads, censused or not.
        let asked = census_collectors(&r.manifest);
        if !r.pyheap.is_empty() || !asked.is_empty() || !is_python(p) {
            let _ = writeln!(
                o,
                "\nwhat holds the memory: {}",
                r.top_finding()
                    .unwrap_or_else(|| holder_text(p, held, total))
            );
            for line in native_lines(&r.manifest, p) {
                let _ = writeln!(o, "  {line}");
            }
            for other in r.pyheap.iter().take(4) {
                let _ = writeln!(o, "  {}", other_line(r, other));
            }
            for c in asked.iter().filter(|c| {
                c.status != crate::format::Status::Ok && census_pid(&c.name) != Some(p.pid)
            }) {
                let _ = writeln!(
                    o,
                    "  pid {}: no census ({}: {})",
                    census_pid(&c.name).unwrap_or(0),
                    c.status.as_str(),
                    c.detail
                );
            }
            return;
        }
    }
    let Some(h) = lead.or(r.pyheap.first()) else {
        if let Some(why) = no_census(&r.manifest) {
            let _ = writeln!(o, "\nwhat holds the memory: {why}");
        }
        return;
    };
    let share = top
        .filter(|(p, _, _)| p.pid == h.pid)
        .map(|(_, held, total)| {
            format!(
                "; it holds {}, {:.0} % of the job's",
                format_size(held),
                held as f64 * 100.0 / total.max(1) as f64
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "\nwhat holds the memory (Python heap census of pid {}, Python {}, {} objects, {:.0} ms{}{share}):",
        h.pid,
        h.python,
        crate::config::units::format_count(h.objects),
        h.duration_ms,
        if h.complete { "" } else { ", cut short" }
    );
    if let Some(e) = &h.error {
        let _ = writeln!(o, "  the census failed inside the process: {e}");
    }
    let ex = explained(&r.manifest, h);
    if let Some(x) = &ex {
        if let Some(line) = x.outside_line() {
            let _ = writeln!(o, "  {line}");
        }
        let _ = writeln!(o, "  {}", x.share_line());
    }
    path_lines(o, h, ex.as_ref());
    if let Some(line) = allocated_line(h) {
        let _ = writeln!(o, "  {line}");
    }
    if let Some(line) = gc_line(h) {
        let _ = writeln!(o, "  {line}");
    }
    for line in retained_lines(h, ex.as_ref().map_or(0, |x| x.anon)) {
        let _ = writeln!(o, "  {line}");
    }
    let row = |t: &crate::format::PyType, bytes: bool| {
        if bytes {
            format!(
                "{} {} \u{d7}{}",
                t.type_name,
                format_size(t.bytes),
                crate::config::units::format_count(t.count)
            )
        } else {
            format!(
                "{} \u{d7}{}",
                t.type_name,
                crate::config::units::format_count(t.count)
            )
        }
    };
    let list = |rows: &[crate::format::PyType], bytes: bool| {
        rows.iter()
            .take(6)
            .map(|t| row(t, bytes))
            .collect::<Vec<_>>()
            .join(" \u{b7} ")
    };
    let _ = writeln!(o, "  largest types  {}", list(&h.by_size, true));
    let _ = writeln!(o, "  most objects   {}", list(&h.by_count, false));
    for other in r.pyheap.iter().filter(|x| x.pid != h.pid).take(4) {
        let _ = writeln!(o, "  {}", other_line(r, other));
    }
    let _ = writeln!(o, "  (processes/{}/pyheap.json)", h.pid);
}

/// The retention paths of the census's large types, each with how many samples agree.
fn path_lines(o: &mut String, h: &crate::format::PyHeap, ex: Option<&Explained>) {
    for (i, p) in h.paths.iter().enumerate() {
        let Some(t) = h.by_size.iter().find(|t| t.type_name == p.type_name) else {
            continue;
        };
        // A type that holds under 5 % of the process's memory is no headline (the
        // interpreter's own strings and code, beside a native leak).
        if ex
            .as_ref()
            .is_some_and(|x| t.bytes.saturating_mul(20) < x.anon)
        {
            continue;
        }
        // The first always; the others when they hold a tenth of what was counted.
        if i > 0 && t.bytes.saturating_mul(10) < h.total_bytes {
            continue;
        }
        let _ = writeln!(
            o,
            "  {} \u{d7}{} ({}) \u{2190} {}",
            t.type_name,
            crate::config::units::format_count(t.count),
            format_size(t.bytes),
            p.path.join(" \u{2190} ")
        );
        let _ = writeln!(
            o,
            "      {} of {} sampled instance(s) held this way{}",
            p.agree,
            p.samples,
            match p.root.as_deref() {
                Some("garbage") => {
                    "; unreachable: nothing outside the cycle refers to it, and the collector \
                     has not freed it"
                }
                Some(_) => "",
                None => "; no root reached (held from C code, or the deadline came first)",
            }
        );
    }
}

/// Who allocated the memory still live (tracemalloc), in one line: the top three lines of
/// source; or why not, or how to get it.
fn allocated_line(h: &crate::format::PyHeap) -> Option<String> {
    let a = h.allocated.as_ref()?;
    if let Some(why) = &a.skipped {
        return Some(format!("who allocated: tracemalloc is on, but {why}"));
    }
    let lines: Vec<String> = a
        .lines
        .iter()
        .take(3)
        .map(|l| {
            format!(
                "{} {} in {} block(s)",
                l.at,
                format_size(l.bytes),
                crate::config::units::format_count(l.count)
            )
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(format!(
        "who allocated (tracemalloc, {} frame(s), {} traced): {}",
        a.frames,
        format_size(a.traced_bytes),
        lines.join(" \u{b7} ")
    ))
}

/// What a retention path's shape says to do, for the patterns that cause most leaks.
pub fn fix_hint(path: &[String], root: Option<&str>) -> Option<&'static str> {
    let has = |needle: &str| path.iter().any(|l| l.contains(needle));
    let last = path.last().map(String::as_str).unwrap_or("");
    if has("QuerySet._result_cache") {
        return Some(
            "a Django QuerySet keeps every row it has yielded: iterate with .iterator() \
             (or in batches with slicing) so the rows go as they are used",
        );
    }
    if has("_lru_cache_wrapper") {
        return Some(
            "an unbounded functools.lru_cache (maxsize=None, or functools.cache) keeps every \
             result: give it a maxsize, or call cache_clear()",
        );
    }
    if root == Some("garbage") {
        return Some(
            "reference cycles the collector does not free: turn it back on (gc.enable()), or \
             break the cycles (weakref for the back reference)",
        );
    }
    if last.starts_with("class attribute ") {
        return Some(
            "a class attribute lives as long as the class: what instances add to it stays; \
             use a weakref.WeakSet / WeakValueDictionary, or remove entries when done",
        );
    }
    if last.starts_with("global ")
        && path
            .iter()
            .rev()
            .nth(1)
            .is_some_and(|l| l.starts_with("dict["))
    {
        return Some(
            "a module-level dict used as a cache grows for the life of the process: bound it \
             (an LRU with a maxsize) or clear it",
        );
    }
    let held_by_a_list = path
        .iter()
        .rev()
        .nth(1)
        .is_some_and(|l| l.starts_with("list[") || l.starts_with("deque["));
    if last.starts_with("global ") && held_by_a_list {
        return Some(
            "a module-level list keeps everything appended to it for the life of the process: \
             keep only what is needed (collections.deque(maxlen=N) for a bounded history), or \
             clear it",
        );
    }
    if last.starts_with("local ") && held_by_a_list {
        return Some(
            "a list built in a loop keeps every item while the function runs: handle the items \
             as they come (a generator), or in batches",
        );
    }
    None
}

/// Retained sizes (an estimate) for the roots the retention paths reach: the bytes of the types
/// whose sampled instances are held through each root, in the share of samples that reach it; with
/// the fix hint of the first path that reaches it.
fn retained_lines(h: &crate::format::PyHeap, anon: u64) -> Vec<String> {
    let mut roots: Vec<(String, u64, Option<&'static str>)> = Vec::new();
    for p in &h.paths {
        let (Some(root), Some(t)) = (
            p.path.last(),
            h.by_size.iter().find(|t| t.type_name == p.type_name),
        ) else {
            continue;
        };
        if p.samples == 0 || p.root.is_none() {
            continue;
        }
        // The samples that reach this root, by whichever route (a DataFrame's arrays hang
        // from its blocks and from its index).
        let reach = p.agree as usize + p.others.iter().filter(|o| o.last() == Some(root)).count();
        let share = t.bytes.saturating_mul(reach as u64) / u64::from(p.samples);
        match roots.iter_mut().find(|r| &r.0 == root) {
            Some(r) => r.1 = r.1.saturating_add(share),
            None => roots.push((root.clone(), share, fix_hint(&p.path, p.root.as_deref()))),
        }
    }
    roots.sort_by_key(|r| std::cmp::Reverse(r.1));
    let whole = if anon > 0 { anon } else { h.total_bytes };
    roots
        .into_iter()
        .filter(|r| r.1.saturating_mul(20) >= whole)
        .take(3)
        .flat_map(|(root, bytes, hint)| {
            let pct = bytes as f64 * 100.0 / whole.max(1) as f64;
            let mut v = vec![if root.starts_with("(a cycle") {
                format!(
                    "unreachable cycles hold ~{} (estimate), {pct:.0} % of the process",
                    format_size(bytes)
                )
            } else {
                format!(
                    "{root} retains ~{} (estimate), {pct:.0} % of the process",
                    format_size(bytes)
                )
            }];
            if let Some(hint) = hint {
                v.push(format!("  fix: {hint}"));
            }
            v
        })
        .collect()
}

/// The collector's state, when it explains something: off, or holding garbage, or a path that
/// ends in a cycle nothing refers to. With the fix.
fn gc_line(h: &crate::format::PyHeap) -> Option<String> {
    let g = h.gc.as_ref()?;
    let cycles = h.paths.iter().any(|p| p.root.as_deref() == Some("garbage"));
    let state = format!(
        "thresholds {:?}, counts {:?}, gc.garbage {}",
        g.thresholds, g.counts, g.garbage
    );
    if !g.enabled {
        return Some(format!(
            "gc: the collector is off (gc.disable() in the program){}: reference cycles are \
             never freed — gc.enable(), or gc.collect() where the cycles are made, or break them \
             (weakref); {state}",
            if cycles {
                ", and the memory above is such cycles"
            } else {
                ""
            }
        ));
    }
    if cycles || g.garbage > 0 {
        return Some(format!(
            "gc: the collector is on; {}; {state}",
            if cycles {
                "the cycles above wait for a collection of their generation"
            } else {
                "gc.garbage keeps objects the collector could not free (DEBUG_SAVEALL or \
                 legacy finalizers)"
            }
        ));
    }
    None
}

/// One line for a census that does not lead: its process, what it holds, its finding.
fn other_line(r: &Report, h: &crate::format::PyHeap) -> String {
    let held = held_by(&r.manifest, h.pid);
    format!(
        "pid {}{}: {}",
        h.pid,
        if held > 0 {
            format!(" (holds {})", format_size(held))
        } else {
            String::new()
        },
        h.top_finding().unwrap_or_else(|| "no finding".into())
    )
}

/// Why a bundle of a Python job has no census, and how to get one (None: not a Python job).
fn no_census(m: &Manifest) -> Option<String> {
    if let Some(c) = m
        .collectors
        .iter()
        .find(|c| c.name.starts_with("pyheap:") && c.status != crate::format::Status::Ok)
    {
        return Some(format!(
            "no Python heap census ({} {}: {})",
            c.name, c.status, c.detail
        ));
    }
    if m.collectors.iter().any(|c| c.name == "pyheap") {
        return None; // "no Python process in the job"
    }
    let python = m
        .collectors
        .iter()
        .any(|c| c.name.starts_with("py-spy") && !c.detail.contains("no Python process"));
    python.then(|| {
        "no Python heap census in this bundle: guard ran with --no-pyheap (or is older than \
         the census); run without --no-pyheap to see which objects hold the memory and through \
         which reference"
            .to_string()
    })
}

/// Why a bundle of a Python job has no py-spy stack, and how to get one (None: stacks are
/// there, or no Python process was in the job).
fn no_stacks(m: &Manifest) -> Option<String> {
    use crate::format::Status;
    let c = m
        .collectors
        .iter()
        .filter(|c| c.name.starts_with("py-spy"))
        .find(|c| c.status != Status::Ok && !c.detail.contains("no Python process"))?;
    Some(match c.status {
        Status::Skipped if c.detail.contains("no longer running") => {
            "none: the job had died before guard could read it (a post-mortem bundle)".into()
        }
        Status::Skipped => "none: py-spy was not found (see the collectors below); install it \
             ('pip install py-spy'; guard looks on PATH, then in /usr/local/bin, /usr/bin and \
             ~/.local/bin) or name it with --pyspy PATH (pyspy = \"PATH\" in guard.toml); \
             'guard doctor' says whether guard finds it"
            .into(),
        _ => format!(
            "none: {} {} ({}); py-spy reads the process's memory: run guard as root, in a \
             container with CAP_SYS_PTRACE (docker run --cap-add SYS_PTRACE), and for a \
             non-root guard with kernel.yama.ptrace_scope at 1 or less",
            c.name, c.status, c.detail
        ),
    })
}

/// The largest processes by PSS, each with its largest mappings; what could not be read.
fn processes(o: &mut String, r: &Report) {
    let m = &r.manifest;
    let _ = writeln!(o, "\nprocesses by PSS ({}):", m.processes.len());
    if m.processes.is_empty() {
        let _ = writeln!(
            o,
            "  none left to read: the job had exited (see cgroup/ and the timeline)"
        );
    }
    let mut procs: Vec<_> = m.processes.iter().filter(|p| !p.vanished).collect();
    procs.sort_by_key(|p| std::cmp::Reverse(p.pss_bytes.unwrap_or(p.rss_bytes)));
    if !procs.is_empty() {
        let _ = writeln!(
            o,
            "  {:<8} {:>10} {:>10} {:>10}  COMMAND",
            "PID", "PSS", "RSS", "SWAP"
        );
    }
    for p in procs.iter().take(8) {
        process_rows(o, p);
    }
    if procs.len() > 8 {
        let _ = writeln!(o, "  … {} more in tree.txt", procs.len() - 8);
    }
    let vanished = m.processes.iter().filter(|p| p.vanished).count();
    if vanished > 0 {
        let _ = writeln!(o, "  ({vanished} process(es) exited while being read)");
    }
    for (pid, note) in &r.not_read {
        let _ = writeln!(o, "  pid {pid}: {note}");
    }
}

/// One process's row and its three largest mappings.
fn process_rows(o: &mut String, p: &crate::format::ProcessEntry) {
    let mut cmd = if p.cmdline.is_empty() {
        p.comm.clone()
    } else {
        p.cmdline.clone()
    };
    if cmd.chars().count() > 60 {
        cmd = cmd.chars().take(59).collect::<String>() + "…";
    }
    let _ = writeln!(
        o,
        "  {:<8} {:>10} {:>10} {:>10}  {cmd}",
        p.pid,
        opt_size(p.pss_bytes),
        format_size(p.rss_bytes),
        opt_size(p.swap_bytes)
    );
    for mp in p.largest_mappings.iter().take(3) {
        let _ = writeln!(
            o,
            "  {:<8} {:>10} {:>10}  ↳ {} {}",
            "",
            "",
            format_size(mp.rss_bytes),
            mp.kind.as_str(),
            if mp.kind == MappingKind::File {
                mp.name.as_str()
            } else {
                ""
            }
        );
    }
}

/// The Python stacks py-spy captured, the first lines of each.
fn stacks(o: &mut String, r: &Report) {
    if r.stacks.is_empty() {
        if let Some(why) = no_stacks(&r.manifest) {
            let _ = writeln!(o, "\nPython stacks: {why}");
        }
    }
    for s in &r.stacks {
        let _ = writeln!(o, "\nPython stack of {} (py-spy, innermost first):", s.pid);
        let lines: Vec<&str> = s
            .text
            .lines()
            .skip_while(|l| !l.starts_with("Thread"))
            .filter(|l| !l.trim().is_empty())
            .collect();
        for l in lines.iter().take(STACK_LINES) {
            let _ = writeln!(o, "  {l}");
        }
        if lines.len() > STACK_LINES {
            let _ = writeln!(o, "  … (processes/{}/pyspy.txt)", s.pid);
        }
    }
}

/// Each collector's status and time; each alert's delivery.
fn collectors_and_alerts(o: &mut String, m: &Manifest) {
    let _ = writeln!(o, "\ncollectors:");
    for c in &m.collectors {
        let _ = writeln!(
            o,
            "  {:<14} {:<8} {:>7.1} ms  {}",
            c.name, c.status, c.duration_ms, c.detail
        );
    }
    if let Some(c) = m.timings.capture_ms {
        let _ = writeln!(o, "  (capture took {c:.1} ms)");
    }
    if !m.alerts.is_empty() {
        let _ = writeln!(o, "\nalerts:");
        for a in &m.alerts {
            let _ = writeln!(
                o,
                "  {:<40} {:<7} {} attempt(s), {:.0} ms  {}",
                a.sink, a.status, a.attempts, a.ms, a.detail
            );
        }
    }
}

/// The kernel's counters, what was redacted, where the bundle is.
fn footer(o: &mut String, r: &Report) {
    let m = &r.manifest;
    if !m.kernel_counters.is_empty() {
        let kc: Vec<String> = m
            .kernel_counters
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(o, "\nkernel counters: {}", kc.join(", "));
    }
    if m.redacted_env_keys.is_empty() {
        let _ = writeln!(o, "\nredacted environment variables: none");
    } else {
        let _ = writeln!(
            o,
            "\nredacted environment variables: {}",
            m.redacted_env_keys.join(", ")
        );
    }
    let _ = writeln!(o, "bundle: {}", r.bundle.display());
}

/// One row of `guard list`.
#[derive(Debug, Serialize)]
pub struct ListRow {
    pub captured_at: String,
    pub job: String,
    pub trigger: EventKind,
    pub capture: Capture,
    pub peak_bytes: Option<u64>,
    pub path: PathBuf,
    /// `--upload`: where the bundle's upload stands (None: never tried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<format::UploadState>,
}

/// The bundles guard wrote in `dir`, newest first by captured time.
pub fn list(dir: &Path) -> Vec<ListRow> {
    format::found(dir)
        .into_iter()
        .rev()
        .map(|f| ListRow {
            captured_at: f.manifest.captured_at,
            job: f.manifest.job,
            trigger: f.manifest.trigger,
            capture: f.manifest.capture,
            peak_bytes: f.manifest.peak_bytes,
            upload: format::read_upload_record(&f.path).map(|r| r.state),
            path: f.path,
        })
        .collect()
}

/// The list as a table; an UPLOAD column (uploaded, pending, -) when a bundle has been shipped
/// or tried (`--upload`).
pub fn list_text(rows: &[ListRow]) -> String {
    let shipping = rows.iter().any(|r| r.upload.is_some());
    let upload_col = |u: Option<format::UploadState>| match (shipping, u) {
        (false, _) => String::new(),
        (true, Some(format::UploadState::Uploaded)) => format!("{:<9} ", "uploaded"),
        (true, Some(format::UploadState::Pending)) => format!("{:<9} ", "pending"),
        (true, None) => format!("{:<9} ", "-"),
    };
    let mut o = format!(
        "{:<24} {:<16} {:<13} {:<11} {:>10}  {}PATH\n",
        "CAPTURED (UTC)",
        "JOB",
        "TRIGGER",
        "CAPTURE",
        "PEAK",
        if shipping {
            format!("{:<9} ", "UPLOAD")
        } else {
            String::new()
        }
    );
    for r in rows {
        let _ = writeln!(
            o,
            "{:<24} {:<16} {:<13} {:<11} {:>10}  {}{}",
            format::escape_controls(&r.captured_at, false),
            format::escape_controls(&r.job, false),
            r.trigger,
            r.capture,
            opt_size(r.peak_bytes),
            upload_col(r.upload),
            format::escape_controls(&r.path.display().to_string(), false)
        );
    }
    o
}

/// The newest kill or timeout bundle in `dir` by captured time — not a warning's bundle, which
/// usually comes a moment before the kill it warned of; the newest warning when there is nothing
/// else.
pub fn latest(dir: &Path) -> Result<PathBuf, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::NoDir(dir.to_path_buf()));
    }
    let all = format::found(dir);
    all.iter()
        .rev()
        .find(|f| !matches!(f.manifest.trigger, EventKind::Warning | EventKind::Drill))
        .or(all.last())
        .map(|f| f.path.clone())
        .ok_or_else(|| ReportError::Empty(dir.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_rates() {
        let m = Manifest {
            trigger_after_ms: Some(10_000),
            usage_at_trigger_bytes: Some(100_000_000),
            warn_bytes: Some(80_000_000),
            ..Default::default()
        };
        let tl: Vec<(u64, u64)> = (0..=100).map(|i| (i * 100, i * 1_000_000)).collect();
        let g = growth(&m, &tl);
        assert_eq!(g.time_to_trigger_ms, Some(10_000));
        assert!((g.overall_mb_per_s.unwrap() - 10.0).abs() < 0.01);
        assert!((g.recent_mb_per_s.unwrap() - 10.0).abs() < 0.01);
        assert_eq!(g.recent_window_ms, Some(10_000));
        assert_eq!(g.warn_to_trigger_ms, Some(2_000));
        assert_eq!(g.shape, Some(crate::format::Shape::Steady));
        assert_eq!(g.time_to_limit_ms, None, "a kill report forecasts nothing");
    }

    #[test]
    fn growth_without_samples() {
        let g = growth(&Manifest::default(), &[]);
        assert!(g.overall_mb_per_s.is_none());
    }

    #[test]
    fn files_left_unread_are_named() {
        let d = tempfile::tempdir().unwrap();
        let m = Manifest {
            processes: vec![crate::format::ProcessEntry {
                pid: 42,
                comm: "hog".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        std::fs::write(
            d.path().join("manifest.json"),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(d.path().join("processes/42")).unwrap();
        std::fs::write(
            d.path().join("processes/42/not-read.txt"),
            "not read: smaps_rollup, maps (the read did not answer in time)\n",
        )
        .unwrap();
        let r = Report::load(d.path()).unwrap();
        let t = text(&r);
        assert!(
            t.contains("pid 42: not read: smaps_rollup, maps (the read did not answer in time)"),
            "{t}"
        );
    }

    #[test]
    fn a_bundle_without_python_stacks_says_how_to_get_them() {
        use crate::format::{CollectorResult, Status};
        let with = |status: Status, detail: &str| Manifest {
            collectors: vec![CollectorResult {
                name: "py-spy".into(),
                status,
                duration_ms: 0.0,
                detail: detail.into(),
            }],
            ..Default::default()
        };
        let missing = no_stacks(&with(
            Status::Skipped,
            "py-spy is not on PATH nor in /usr/bin",
        ));
        let t = missing.expect("a reason");
        assert!(t.contains("install it ('pip install py-spy'"), "{t}");
        assert!(t.contains("--pyspy PATH"), "{t}");
        assert!(t.starts_with("none: py-spy was not found"), "{t}");
        let denied = no_stacks(&with(Status::Failed, "Permission denied")).expect("a reason");
        assert!(denied.contains("--cap-add SYS_PTRACE"), "{denied}");
        assert_eq!(
            no_stacks(&with(Status::Skipped, "no Python process in the job")),
            None
        );
        assert_eq!(no_stacks(&with(Status::Ok, "")), None);
    }
}
