//! Evidence: everything guard keeps about a job so that the person on call can see what was
//! allocating, how fast and since when — without reproducing the failure. [`Recorder`] owns the
//! run's evidence state: the evidence directory (checked once the job has started), the memory
//! timeline, the early-warning threshold, and the capture of a bundle (snapshot → collectors →
//! manifest → summary → rename → retention).
//!
//! - [`timeline`]: the bounded sample ring behind `timeline.csv`.
//! - [`snapshot`]: /proc, cgroup and system copies, the process tree.
//! - [`collectors`]: py-spy and gcore, time-bounded.
//! - [`bundle`]: temporary name → rename, permissions, leftovers, retention.

pub mod bundle;
pub mod collectors;
pub mod redact;
pub mod runtime;
pub mod sampler;
pub mod snapshot;
pub mod timeline;

use crate::cgroup::{self, Enforce};
use crate::config::NoEvidence;
use crate::config::{EvidenceConfig, WrapConfig};
use crate::format::{
    self, Capture, CgroupInfo, CollectorResult, EventKind, ExitInfo, Manifest, Status, Timings,
};
use bundle::BundleWriter;
use redact::Scrubber;
use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use timeline::Timeline;

/// Why a bundle could not be written (or updated): the text that ends guard's kill line
/// (`no evidence: …`), with the path and the operating system's error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EvidenceError {
    /// No evidence directory (disabled, no home, not writable).
    #[error(transparent)]
    NoDir(#[from] NoEvidence),
    /// The run ended without a capture (nothing to write).
    #[error("no capture was made")]
    NoCapture,
    #[error("cannot create a bundle in {}: {source}", dir.display())]
    Create {
        dir: PathBuf,
        source: Arc<io::Error>,
    },
    /// Writing failed; the temporary bundle `tmp` was removed.
    #[error("writing the bundle failed: {source} ({} removed)", tmp.display())]
    Write {
        tmp: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("cannot move the bundle into place in {}: {source}", dir.display())]
    Rename {
        dir: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("cannot read {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: Arc<serde_json::Error>,
    },
    #[error("cannot update {}: {source}", path.display())]
    Update {
        path: PathBuf,
        source: Arc<io::Error>,
    },
}

/// Extra memory granted to a held job so that `--core` can stop its largest process (a task in
/// the memory-limit wait handles SIGSTOP only once its allocation succeeds).
pub const CORE_RELEASE: u64 = 16 << 20;
/// After a warning, usage must fall below this share of the threshold before another warning.
const WARN_REARM: f64 = 0.9;

/// Milliseconds to the microsecond.
fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// What caused a capture (the manifest's `trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    MemoryLimit,
    Warning,
    KernelOom,
    Timeout,
    /// Observe mode: the container (guard's own cgroup) reached --capture-at of its limit. A
    /// full snapshot, recorded as a warning (the job keeps running).
    ContainerLimit,
}

impl Trigger {
    /// The manifest's `trigger`.
    pub fn kind(self) -> EventKind {
        match self {
            Trigger::MemoryLimit => EventKind::MemoryLimit,
            Trigger::Warning | Trigger::ContainerLimit => EventKind::Warning,
            Trigger::KernelOom => EventKind::KernelOom,
            Trigger::Timeout => EventKind::Timeout,
        }
    }
}

/// How a capture came about.
#[derive(Debug, Clone, Copy)]
pub struct Occasion {
    pub trigger: Trigger,
    /// The job was held (frozen / stopped) while it was read: `pre-kill`; else `post-mortem`.
    pub pre_kill: bool,
    /// Whether guard confirmed the hold.
    pub held: bool,
    pub trigger_to_frozen_ms: Option<f64>,
    pub usage: Option<u64>,
}

/// A bundle written except for what is known only when the job is over (exit, end, peak).
pub struct Pending {
    writer: BundleWriter,
    manifest: Manifest,
}

impl Pending {
    /// The kernel's OOM killer acted while guard held and read the job (a task asleep inside the
    /// kernel is beyond the freezer until it wakes): the snapshot may be partly after the kill.
    pub fn mark_post_mortem(&mut self) {
        self.manifest.capture = Capture::PostMortem;
    }

    /// Whether the job was held (not yet killed) when it was read.
    pub fn pre_kill(&self) -> bool {
        self.manifest.capture == Capture::PreKill
    }

    /// `--hold-for`: the job is held after this capture, as `hold` says.
    pub fn set_hold(&mut self, hold: format::HoldInfo) {
        self.manifest.hold = Some(hold);
    }
}

/// The evidence state of one run.
pub struct Recorder {
    pub cfg: EvidenceConfig,
    job: String,
    command: Vec<String>,
    limit: Option<u64>,
    proc: PathBuf,
    /// The evidence directory, or why no bundle can be written.
    pub dir: Result<PathBuf, NoEvidence>,
    /// That directory, opened and checked (once prepared): bundles are made through it.
    evidence: Option<bundle::EvidenceDir>,
    /// Every secret the captures learnt (the job's environment): the alerts are scrubbed with
    /// them too.
    pub secrets: Scrubber,
    started_at: SystemTime,
    pub timeline: Timeline,
    warn_armed: bool,
    pid: i32,
    oom_kills_at_start: Option<u64>,
    sampler: Option<sampler::Sampler>,
    prepared: bool,
    /// Processes that left the job's cgroup, as noticed so far (for the manifest).
    pub escaped: Vec<format::Escaped>,
    /// Observe mode: the container's own cgroup (read only), its usage file, the capture point.
    pub observe: Option<Observe>,
    /// The heap census, when a runtime's hook is in the job.
    pub census: Option<runtime::census::Census>,
    /// `guard drill`'s run: its bundles' trigger is `drill`.
    drill: bool,
    /// The job reached its cap by thrashing at it (for the manifest).
    pub thrashing: Option<format::Thrashing>,
    /// Every bundle this run wrote (warnings, the end), in order: what `--upload` ships.
    written: std::sync::Mutex<Vec<PathBuf>>,
}

/// Observe mode state.
#[derive(Debug, Clone)]
pub struct Observe {
    pub dir: PathBuf,
    pub usage_file: &'static str,
    pub limit: u64,
    pub at: u64,
    armed: bool,
}

impl Observe {
    pub fn new(dir: PathBuf, usage_file: &'static str, limit: u64, pct: u8) -> Observe {
        Observe {
            dir,
            usage_file,
            limit,
            at: (limit as u128 * pct as u128 / 100) as u64,
            armed: true,
        }
    }

    /// The container's usage when it has just crossed the capture point (once per crossing).
    pub fn due(&mut self) -> Option<u64> {
        let usage = crate::cgroup::fs::read_u64(&self.dir.join(self.usage_file))
            .ok()
            .flatten()?;
        if usage < self.at {
            if (usage as f64) < self.at as f64 * WARN_REARM {
                self.armed = true;
            }
            return None;
        }
        if !self.armed {
            return None;
        }
        self.armed = false;
        Some(usage)
    }
}

impl Recorder {
    pub fn new(cfg: &WrapConfig, proc: &Path, start: Instant) -> Recorder {
        Recorder {
            cfg: cfg.evidence.clone(),
            job: cfg.name.clone(),
            command: cfg
                .command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            limit: cfg.memory,
            proc: proc.to_path_buf(),
            dir: cfg.evidence.dir.clone(),
            evidence: None,
            secrets: Scrubber::new(&cfg.evidence.redact),
            started_at: SystemTime::now(),
            timeline: Timeline::new(start),
            warn_armed: true,
            pid: 0,
            oom_kills_at_start: None,
            sampler: None,
            prepared: false,
            escaped: Vec::new(),
            observe: None,
            census: None,
            drill: cfg.drill,
            thrashing: None,
            written: Default::default(),
        }
    }

    /// The recorder of a job that has just started as `pid` (`start`: when it started;
    /// `observe`: observe mode's state, if any).
    pub fn started(
        cfg: &WrapConfig,
        proc: &Path,
        start: Instant,
        pid: i32,
        observe: Option<Observe>,
    ) -> Recorder {
        let mut r = Recorder::new(cfg, proc, start);
        r.pid = pid;
        r.observe = observe;
        r
    }

    /// Once the job has run a moment (a short job never pays for it), or before the first
    /// sample or capture: open the sampler's files, note the kernel's OOM-kill count, make sure
    /// bundles can be written (and say so now, not at 3 a.m.), and remove temporary bundles of
    /// guards that died mid-capture. Idempotent.
    pub fn prepare(&mut self, enforcer: &dyn Enforce) {
        if self.prepared {
            return;
        }
        self.prepared = true;
        if let Some(files) = enforcer.sampled_files() {
            self.sampler = Some(sampler::Sampler::new(&files, enforcer.proc()));
        }
        self.oom_kills_at_start = snapshot::vmstat_oom_kills(&self.proc);
        if let Ok(d) = &self.dir {
            match bundle::EvidenceDir::open(d) {
                Ok(ev) => {
                    let view = crate::os::owner::View::new(&self.proc);
                    for p in bundle::clean_leftovers(&ev, &view) {
                        log::info!(
                            "removed an unfinished bundle of a guard that died: {}",
                            p.display()
                        );
                    }
                    self.evidence = Some(ev);
                }
                Err(why) => {
                    log::warn!(
                        "no evidence can be kept: {why}; the memory cap still applies. To keep evidence \
                         give --evidence-dir DIR (a writable directory), or --no-evidence to silence this"
                    );
                    self.dir = Err(why);
                }
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.dir.is_ok()
    }

    /// What everything sent out of guard (alerts, pings, log lines) is scrubbed with: the secrets
    /// of guard's own environment and those the captures learnt from the job's.
    pub fn scrubber(&self) -> Scrubber {
        let mut s = Scrubber::of_own_environment(&self.cfg.redact);
        s.merge(&self.secrets);
        s
    }

    /// Why there is no bundle when none was written: no evidence directory, or no capture.
    pub fn why_none(&self) -> EvidenceError {
        match &self.dir {
            Err(e) => EvidenceError::NoDir(e.clone()),
            Ok(_) => EvidenceError::NoCapture,
        }
    }

    /// One timeline sample; returns the job's memory.
    pub fn sample(&mut self, enforcer: &mut dyn Enforce) -> Option<u64> {
        self.record(enforcer, false)
    }

    /// Re-read the job's members now, if the sampler runs (not for a job too short to have been
    /// sampled): a member that left the cgroup since the last read is noticed.
    pub fn check_members(&mut self) {
        if let Some(s) = &mut self.sampler {
            let _ = s.sample_all();
        }
    }

    /// The processes that left the job's cgroup since the last call (recorded for the manifest).
    pub fn take_escapees(&mut self) -> Vec<sampler::Escapee> {
        let new = self
            .sampler
            .as_mut()
            .map(sampler::Sampler::take_escapees)
            .unwrap_or_default();
        self.escaped.extend(new.iter().map(|e| e.what.clone()));
        new
    }

    /// A sample with every process, now (the last one, at a capture).
    pub fn sample_all(&mut self, enforcer: &mut dyn Enforce) -> Option<u64> {
        self.record(enforcer, true)
    }

    fn record(&mut self, enforcer: &mut dyn Enforce, all: bool) -> Option<u64> {
        self.prepare(enforcer);
        let (total, procs) = match &mut self.sampler {
            Some(s) if all => s.sample_all(),
            Some(s) => s.sample(),
            None => enforcer.sample_detail(),
        };
        let total = total?;
        self.timeline.record(total, procs);
        Some(total)
    }

    /// Whether `usage` makes a warning due now (once per upward crossing). Usage counts page
    /// cache in cgroup modes: the working set (usage minus inactive file pages) decides.
    pub fn warn_due(&mut self, usage: u64, enforcer: &dyn Enforce) -> bool {
        let Some(warn) = self.cfg.warn else {
            return false;
        };
        if usage < warn {
            if (usage as f64) < warn as f64 * WARN_REARM {
                self.warn_armed = true;
            }
            return false;
        }
        if !self.warn_armed {
            return false;
        }
        let ws = enforcer.working_set().unwrap_or(usage);
        if ws < warn {
            return false;
        }
        self.warn_armed = false;
        true
    }

    /// Write the snapshot of the job as it is now (held, for a memory-limit capture) into a new
    /// temporary bundle. `Err` says why there is no bundle.
    pub fn capture(
        &mut self,
        enforcer: &dyn Enforce,
        occ: Occasion,
    ) -> Result<Pending, EvidenceError> {
        self.prepare(enforcer);
        let dir = self.dir.clone()?;
        let t0 = Instant::now();
        let light = occ.trigger == Trigger::Warning;
        let pids = enforcer.pids();

        // Secrets first (guard's own environment is the job's too), so nothing is written unscrubbed.
        let mut scrub = Scrubber::new(&self.cfg.redact);
        if let Ok(own) = std::fs::read(self.proc.join("self/environ")) {
            scrub.learn_environ(&own, &self.cfg.redact);
        }
        // Every /proc read of this capture is bounded (see ProcReader): 500 ms each, 2 s in all.
        let mut reader = snapshot::ProcReader::new(
            &self.proc,
            std::time::Duration::from_millis(500),
            std::time::Duration::from_secs(2),
        );
        let mut environs: HashMap<i32, String> = HashMap::new();
        for &p in &pids {
            if let Ok(raw) = reader.read(p, "environ") {
                let text = redact::environ(&raw, &self.cfg.redact, &mut scrub);
                if self.cfg.environ {
                    environs.insert(p, text);
                }
            }
        }
        let captured = SystemTime::now();
        // A warning and the kill that follows often fall in the same second: the warning's
        // bundle carries a suffix, so the bundle named in the kill line has the plain name.
        let name = format!(
            "{}-{}-{}{}",
            format::compact_utc(captured),
            self.job,
            self.pid,
            if light { ".warning" } else { "" }
        );
        let Some(ev) = self.evidence.as_ref() else {
            return Err(self.why_none());
        };
        self.secrets.merge(&scrub);
        let w = BundleWriter::create(ev, name, scrub).map_err(|e| EvidenceError::Create {
            dir: dir.clone(),
            source: e.into(),
        })?;
        match self.fill(
            &w,
            enforcer,
            occ,
            &pids,
            &environs,
            light,
            captured,
            t0,
            &mut reader,
        ) {
            Ok(manifest) => Ok(Pending {
                writer: w,
                manifest,
            }),
            Err(e) => Err(w.abandon_for(e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        w: &BundleWriter,
        enforcer: &dyn Enforce,
        occ: Occasion,
        pids: &[i32],
        environs: &HashMap<i32, String>,
        light: bool,
        captured: SystemTime,
        t0: Instant,
        reader: &mut snapshot::ProcReader,
    ) -> std::io::Result<Manifest> {
        // Largest first: they get smaps, py-spy and the core.
        let mut by_size: Vec<(i32, u64)> = pids
            .iter()
            .map(|&p| (p, snapshot::rss_of(&self.proc, p).unwrap_or(0)))
            .collect();
        by_size.sort_by_key(|p| std::cmp::Reverse(p.1));
        let ordered: Vec<i32> = by_size.iter().map(|&(p, _)| p).collect();

        let mut processes = Vec::new();
        let mut counters = Default::default();
        if light {
            for &p in &ordered {
                processes.push(snapshot::summary(reader, p, &w.scrub));
            }
        } else {
            for (i, &p) in ordered.iter().enumerate() {
                let env = environs.get(&p).map(String::as_str);
                processes.push(snapshot::process(
                    reader,
                    p,
                    w,
                    env,
                    i < snapshot::SMAPS_FOR,
                )?);
            }
            let mut dirs = enforcer.dirs();
            counters = enforcer.kernel_counters();
            if let (true, Some(o)) = (dirs.is_empty(), &self.observe) {
                // Observe mode: the container's cgroup.
                dirs.push(o.dir.clone());
                counters = cgroup::kernel_counters_of(&o.dir);
            }
            snapshot::cgroup(&dirs, w)?;
            snapshot::system(&self.proc, w)?;
        }
        w.write("tree.txt", snapshot::tree(&processes).as_bytes())?;

        let mut collectors: Vec<CollectorResult> = Vec::new();
        if occ.pre_kill {
            let bound = if light {
                collectors::PYSPY_WARNING_TIMEOUT
            } else {
                collectors::PYSPY_TIMEOUT
            };
            collectors.extend(collectors::pyspy(
                &self.proc,
                &ordered,
                w,
                collectors::PySpy {
                    program: self.cfg.pyspy.as_deref(),
                    locals: self.cfg.pyspy_locals,
                    timeout: bound,
                },
            )?);
        } else {
            collectors.push(CollectorResult::skipped(
                "py-spy",
                "the job was no longer running",
            ));
        }
        if !light {
            collectors.push(self.core(enforcer, occ, &by_size, w)?);
            let cored = collectors
                .iter()
                .any(|c| c.name == "core" && c.status != Status::Skipped);
            if let Some(c) = self.native_stack(enforcer, occ, &processes, cored, w)? {
                collectors.push(c);
            }
        }
        let capture_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let version = enforcer.mode().cgroup_version();
        let path = enforcer.dir().map(|d| d.display().to_string());
        Ok(Manifest {
            format: format::FORMAT.into(),
            guard_version: env!("CARGO_PKG_VERSION").into(),
            job: self.job.clone(),
            command: w.scrub.argv(&self.command),
            pid: self.pid,
            started_at: format::rfc3339(self.started_at),
            captured_at: format::rfc3339(captured),
            ended_at: None,
            // A drill's bundles say so (guard report --latest passes them by).
            trigger: match occ.trigger.kind() {
                EventKind::Warning => EventKind::Warning,
                _ if self.drill => EventKind::Drill,
                k => k,
            },
            capture: if occ.pre_kill {
                Capture::PreKill
            } else {
                Capture::PostMortem
            },
            limit_bytes: self.limit,
            warn_bytes: self.cfg.warn,
            usage_at_trigger_bytes: occ.usage,
            peak_bytes: None,
            cgroup: CgroupInfo {
                version,
                path,
                mode: enforcer.mode(),
            },
            processes,
            exit: None,
            collectors,
            timings: Timings {
                trigger_to_frozen_ms: occ.trigger_to_frozen_ms.map(round3),
                capture_ms: Some(round3(capture_ms)),
            },
            redacted_env_keys: w.scrub.keys.iter().cloned().collect(),
            // Read here, not at start: a short job never pays for the call.
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            held: occ.held,
            trigger_after_ms: Some(self.timeline.now_ms()),
            kernel_counters: counters,
            alerts: Vec::new(),
            escaped: self.escaped.clone(),
            growth: self.forecast(occ.usage),
            hold: None,
            thrashing: match occ.trigger {
                Trigger::MemoryLimit => self.thrashing,
                _ => None,
            },
        })
    }

    /// How the job's memory grew until now: the rate over the last seconds, the time to the
    /// cap at that rate, the shape (from the timeline; None before enough samples).
    pub fn forecast(&self, usage: Option<u64>) -> Option<format::Forecast> {
        let series = self.timeline.job_series();
        let now = usage.or(series.last().map(|s| s.1))?;
        crate::report::growth::forecast(&series, self.timeline.now_ms(), now, self.limit)
    }

    /// The Python heap census, into `p`: ask the job's hooked Python processes, and record one
    /// collector result per process. `at_cap`: the job is held at its cap; it is let run within
    /// its headroom (never past cap + headroom) while they answer, and killed by the caller
    /// after. Else (a warning) the job runs, and the census stops if it reaches its cap.
    pub fn census(&mut self, enforcer: &mut dyn Enforce, p: &mut Pending, at_cap: bool) {
        let limit = self.limit;
        let Some(census) = self.census.as_mut() else {
            return;
        };
        if !p.pre_kill() {
            return;
        }
        let pids = enforcer.pids();
        let Some((hooked, not)) = census.candidates(&self.proc, &pids) else {
            if census.runtimes().any(|r| r == runtime::Runtime::Python) {
                p.manifest.collectors.push(CollectorResult::skipped(
                    "pyheap",
                    "no Python process in the job",
                ));
            }
            return;
        };
        let node = hooked.iter().any(|&(_, r)| r == runtime::Runtime::Node);
        let headroom = census.settings.headroom_for(limit.unwrap_or(0), node);
        let terms = census_terms(at_cap, headroom, limit, enforcer.usage());
        let asked = census.ask(&hooked, &not, terms);
        let kills = enforcer.verdict().oom_kills;
        let mut bound = limit;
        if at_cap && !hooked.is_empty() {
            // --core already released CORE_RELEASE (and stopped every process).
            // --core or the native stacks released CORE_RELEASE (once) to stop the job.
            let cored = p.manifest.collectors.iter().any(|c| {
                (c.name == "core" || c.name.starts_with("native-stack:"))
                    && c.status != Status::Skipped
            });
            let extra = if cored {
                headroom.saturating_sub(CORE_RELEASE)
            } else {
                headroom
            };
            // Only the processes asked run meanwhile: the others stay stopped (SIGSTOP queued
            // while frozen), and each one asked is stopped again once it has answered, so that
            // none spends the headroom a census still running needs.
            for &pid in pids.iter().filter(|&&p| !hooked.iter().any(|h| h.0 == p)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGSTOP,
                );
            }
            if let Err(e) = enforcer.release(extra) {
                log::warn!("cannot let the held job run for its Python heap census: {e}");
            }
            for &(pid, _) in &hooked {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGCONT,
                );
            }
            bound = limit.map(|l| l.saturating_add(headroom));
        }
        let after = if at_cap {
            "the kill went ahead"
        } else {
            "the job went on"
        };
        let stop = || {
            if enforcer.verdict().oom_kills > kills {
                return Some("the kernel's OOM killer acted in the job".to_string());
            }
            // The kernel holds a v1 job just under its limit: ask the enforcer too.
            let held_at_cap = !at_cap && enforcer.at_cap();
            let (Some(b), Some(u)) = (bound, enforcer.usage()) else {
                return None;
            };
            (held_at_cap || u >= b).then(|| {
                format!(
                    "the job reached {} ({})",
                    crate::config::units::format_size(b),
                    if at_cap {
                        "its cap and the census headroom"
                    } else {
                        "its cap"
                    }
                )
            })
        };
        let answered = |pid: i32| {
            if at_cap {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGSTOP,
                );
            }
        };
        let results = census.collect(asked, &p.writer, stop, answered, after);
        for r in &results {
            log::debug!("{}: {} {}", r.name, r.status.as_str(), r.detail);
        }
        p.manifest.collectors.extend(results);
    }

    /// The native stacks of the process that holds the most memory when most of its memory is
    /// native (the malloc heap and anonymous maps): stopped for eu-stack as for gcore (once:
    /// `cored` says --core stopped the job already). None: no such process.
    fn native_stack(
        &self,
        enforcer: &dyn Enforce,
        occ: Occasion,
        processes: &[crate::format::ProcessEntry],
        cored: bool,
        w: &BundleWriter,
    ) -> std::io::Result<Option<CollectorResult>> {
        let top = processes
            .iter()
            .filter(|p| !p.vanished)
            .max_by_key(|p| p.pss_bytes.unwrap_or(p.rss_bytes));
        let Some((top, kinds)) = top.and_then(|p| Some((p, p.memory_by_kind?))) else {
            return Ok(None);
        };
        if !occ.pre_kill || kinds.native().saturating_mul(2) < kinds.total() {
            return Ok(None);
        }
        if !self.cfg.native_stacks {
            return Ok(Some(CollectorResult::skipped(
                &format!("native-stack:{}", top.pid),
                "not read (--no-native-stacks)",
            )));
        }
        if crate::os::runner::locate("eu-stack").is_err() {
            return collectors::native_stack(top.pid, w).map(Some);
        }
        if !cored {
            let mut pids: Vec<i32> = vec![top.pid];
            pids.extend(processes.iter().map(|p| p.pid).filter(|&p| p != top.pid));
            if let Err(e) = cgroup::release_for_core(enforcer, &pids, CORE_RELEASE) {
                return Ok(Some(CollectorResult {
                    name: format!("native-stack:{}", top.pid),
                    status: Status::Failed,
                    duration_ms: 0.0,
                    detail: format!("cannot stop the process for eu-stack: {e}"),
                }));
            }
        }
        collectors::native_stack(top.pid, w).map(Some)
    }

    /// `--core`: the largest process, stopped (not frozen: gcore hangs on a frozen task).
    fn core(
        &self,
        enforcer: &dyn Enforce,
        occ: Occasion,
        by_size: &[(i32, u64)],
        w: &BundleWriter,
    ) -> std::io::Result<CollectorResult> {
        if !self.cfg.core {
            return Ok(CollectorResult::skipped("core", "not requested (--core)"));
        }
        if !occ.pre_kill {
            return Ok(CollectorResult::skipped(
                "core",
                "the job was no longer running",
            ));
        }
        let Some(&(pid, rss)) = by_size.first() else {
            return Ok(CollectorResult::skipped(
                "core",
                "no process left in the job",
            ));
        };
        if rss > self.cfg.core_max {
            return Ok(CollectorResult::skipped(
                "core",
                format!(
                    "the largest process ({pid}) holds {}, more than --core-max {}",
                    crate::config::units::format_size(rss),
                    crate::config::units::format_size(self.cfg.core_max)
                ),
            ));
        }
        if let Err(e) = crate::os::runner::locate("gcore") {
            return Ok(CollectorResult::skipped(
                "core",
                format!("{e} (install gdb)"),
            ));
        }
        let pids: Vec<i32> = by_size.iter().map(|&(p, _)| p).collect();
        if let Err(e) = cgroup::release_for_core(enforcer, &pids, CORE_RELEASE) {
            return Ok(CollectorResult {
                name: "core".into(),
                status: Status::Failed,
                duration_ms: 0.0,
                detail: format!("cannot stop the process for gcore: {e}"),
            });
        }
        collectors::gcore(pid, w)
    }

    /// Complete a pending bundle with what the end of the job told (exit, end time, peak),
    /// write the manifest, timeline and summary, rename it into place and apply retention.
    pub fn finish(
        &self,
        p: Pending,
        exit: Option<ExitInfo>,
        ended: bool,
        peak: Option<u64>,
        output_tail: Option<&[u8]>,
    ) -> Result<PathBuf, EvidenceError> {
        let Pending {
            writer: w,
            mut manifest,
        } = p;
        manifest.exit = exit;
        manifest.escaped.clone_from(&self.escaped);
        // The core is compressed now, after the kill: it never lengthens the hold.
        if let Some(c) = manifest
            .collectors
            .iter_mut()
            .find(|c| c.name == "core" && c.status == Status::Ok)
        {
            let rel = manifest
                .processes
                .iter()
                .map(|p| format!("processes/{0}/core.{0}", p.pid))
                .find(|r| w.dir().file_len(r).is_some())
                .unwrap_or_default();
            let t0 = Instant::now();
            match collectors::compress_zstd(w.dir(), &rel) {
                Ok((a, b)) => {
                    c.detail = format!(
                        "{rel}.zst ({} → {} zstd in {} ms; unpack with 'zstd -d')",
                        crate::config::units::format_size(a),
                        crate::config::units::format_size(b),
                        t0.elapsed().as_millis()
                    )
                }
                Err(e) => c.detail.push_str(&format!(" (not compressed: {e})")),
            }
        }
        if ended {
            manifest.ended_at = Some(format::rfc3339(SystemTime::now()));
        }
        manifest.peak_bytes = peak
            .or(self.timeline.max_job_bytes())
            .map(|p| p.max(manifest.usage_at_trigger_bytes.unwrap_or(0)));
        let write_all = || -> std::io::Result<()> {
            w.write_raw("timeline.csv", self.timeline.to_csv().as_bytes())?;
            if let Some(t) = output_tail {
                w.write("output.tail", t)?;
            }
            let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
            w.write("manifest.json", &json)?;
            let report = crate::report::Report::load(&w.path())
                .map(|mut r| {
                    r.bundle = w.final_path();
                    crate::report::text(&r)
                })
                .map_err(std::io::Error::other)?;
            w.write("summary.txt", report.as_bytes())
        };
        if let Err(e) = write_all() {
            return Err(w.abandon_for(e));
        }
        let dir = self.dir.clone()?;
        let path = w.finish().map_err(|e| EvidenceError::Rename {
            dir: dir.clone(),
            source: e.into(),
        })?;
        if let Ok(mut v) = self.written.lock() {
            v.push(path.clone());
        }
        let Some(ev) = self.evidence.as_ref() else {
            return Ok(path);
        };
        let scope = if self.drill {
            bundle::Retention::DrillsOnly
        } else {
            bundle::Retention::All
        };
        for old in bundle::retain(ev, self.cfg.keep, self.cfg.max_size, &path, scope) {
            if old.pending {
                log::warn!(
                    "removed bundle {} although its upload is pending (its only copy): the \
                     evidence directory was over --max-evidence-size; raise it, or fix the \
                     upload (guard upload --pending)",
                    old.path.display()
                );
            } else {
                log::info!(
                    "removed old bundle {} (--keep / --max-evidence-size)",
                    old.path.display()
                );
            }
        }
        Ok(path)
    }

    /// The bundles this run wrote so far, oldest first.
    pub fn written(&self) -> Vec<PathBuf> {
        self.written.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Whether the kernel's OOM killer killed something since the job started (global count).
    pub fn kernel_oom_since_start(&self) -> bool {
        match (
            self.oom_kills_at_start,
            snapshot::vmstat_oom_kills(&self.proc),
        ) {
            (Some(a), Some(b)) => b > a,
            _ => false,
        }
    }
}

/// Record the alert deliveries in a finished bundle.
pub fn record_alerts(bundle: &Path, deliveries: &[format::Delivery]) -> Result<(), EvidenceError> {
    update_manifest(bundle, |m| m.alerts = deliveries.to_vec(), None)
}

/// Add deliveries (the `--ping`s, a PagerDuty resolve) to a finished bundle's, after its alert's.
pub fn append_deliveries(bundle: &Path, pings: &[format::Delivery]) -> Result<(), EvidenceError> {
    update_manifest(bundle, |m| m.alerts.extend_from_slice(pings), None)
}

/// How a held job's run ended (`--hold-for`), added to the bundle written when the hold began:
/// its exit, its end, what ended the hold; and with --quiet the end of its output (`tail`,
/// scrubbed by the caller as every file of a bundle is).
pub fn record_hold_end(
    bundle: &Path,
    exit: Option<format::ExitInfo>,
    hold: format::HoldInfo,
    tail: Option<Vec<u8>>,
) -> Result<(), EvidenceError> {
    let now = format::rfc3339(SystemTime::now());
    update_manifest(
        bundle,
        |m| {
            m.exit = exit;
            m.ended_at = Some(now);
            m.hold = Some(hold);
        },
        tail.as_ref().map(|t| ("output.tail", t.as_slice())),
    )
}

/// Write `file` (guard's own record beside the evidence: `upload.json`) into a finished bundle,
/// through a temporary file and a rename, the bundle opened as [`update_manifest`] opens it.
pub fn replace_in_bundle(bundle: &Path, file: &str, data: &[u8]) -> Result<(), EvidenceError> {
    let update = |source: io::Error| EvidenceError::Update {
        path: bundle.join(file),
        source: source.into(),
    };
    let parent = bundle.parent().unwrap_or(Path::new("/"));
    let ev = bundle::EvidenceDir::open_existing(parent)?;
    let name = bundle.file_name().unwrap_or_default();
    let dir = bundle::DirFd::open_in(ev.fd(), name).map_err(update)?;
    dir.replace(file, data).map_err(update)
}

/// Change a finished bundle's manifest.json with `change` (and write `extra`, a file beside
/// it): each file rewritten through a temporary file and a rename, so a reader sees the old or
/// the new one, never half; summary.txt follows.
fn update_manifest(
    bundle: &Path,
    change: impl FnOnce(&mut Manifest),
    extra: Option<(&str, &[u8])>,
) -> Result<(), EvidenceError> {
    let mpath = bundle.join("manifest.json");
    let update = |source: io::Error| EvidenceError::Update {
        path: mpath.clone(),
        source: source.into(),
    };
    // Through descriptors, as the bundle was written: the evidence directory checked again, the
    // bundle opened without following a symlink.
    let parent = bundle.parent().unwrap_or(Path::new("/"));
    let ev = bundle::EvidenceDir::open_existing(parent)?;
    let name = bundle.file_name().unwrap_or_default();
    let dir = bundle::DirFd::open_in(ev.fd(), name).map_err(update)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut dir
            .open_read("manifest.json")
            .map_err(|e| EvidenceError::Read {
                path: mpath.clone(),
                source: e.into(),
            })?,
        &mut bytes,
    )
    .map_err(update)?;
    let mut m: Manifest = serde_json::from_slice(&bytes).map_err(|e| EvidenceError::Parse {
        path: mpath.clone(),
        source: e.into(),
    })?;
    change(&mut m);
    if let Some((file, data)) = extra {
        dir.replace(file, data).map_err(update)?;
    }
    let json = serde_json::to_vec_pretty(&m).map_err(|e| update(io::Error::other(e)))?;
    dir.replace("manifest.json", &json).map_err(update)?;
    let via_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
    if let Ok(mut r) = crate::report::Report::load(&via_fd) {
        r.bundle = bundle.to_path_buf();
        let _ = dir.replace("summary.txt", crate::report::text(&r).as_bytes());
    }
    Ok(())
}

/// How a census runs. At the cap the job is held and the census may use the headroom guard
/// gives it. At a warning the job runs on: the census may use at most half of the room left
/// below the cap (and never more than the headroom), so that it never brings the kill forward.
pub fn census_terms(
    at_cap: bool,
    headroom: u64,
    limit: Option<u64>,
    usage: Option<u64>,
) -> runtime::census::Terms {
    if at_cap {
        return runtime::census::Terms {
            live: false,
            budget: headroom,
        };
    }
    let room = match (limit, usage) {
        (Some(l), Some(u)) => l.saturating_sub(u) / 2,
        _ => headroom,
    };
    runtime::census::Terms {
        live: true,
        budget: room.min(headroom),
    }
}
