//! `guard drill`: the failure path rehearsed on demand, because untested recovery is broken.
//! It runs guard itself (`guard run --drill`, the job's real settings: its config, its name, its
//! sinks, its evidence directory, its metrics file) on guard's own allocator (a hidden mode of
//! this binary) and checks every link of what a real kill does, printing a checklist with ✓/✗
//! and the time of each step: the configuration, the cap (the allocator killed, 137), the
//! capture before the kill, a bundle `guard report` reads, each alert sink's acknowledgement
//! (the events are of kind `drill`, so every body says it is one), the ping (healthchecks'
//! `/log`: the check's state is unchanged), the metrics file. Exit 0 only when all pass.

use crate::config::cli::DrillArgs;
use crate::config::units::format_size;
use crate::config::{self, WrapConfig};
use crate::format::{Capture, Manifest, Status};
use serde::Serialize;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The hidden mode of guard's binary that allocates for a drill: `guard __drill-alloc BYTES`.
pub const ALLOC_MODE: &str = "__drill-alloc";
/// The job name of a drill without --name (the [defaults] are rehearsed).
const DEFAULT_JOB: &str = "drill";
/// The cap a drill uses when the job has none (and says so).
const NO_CAP_DRILL: u64 = 64 << 20;
/// How long the drill waits for its run: the run's own bound, its alerts' and a margin.
const RUN_BOUND: Duration = Duration::from_secs(180);

/// One check of the drill.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub check: String,
    pub ok: bool,
    /// How long the step took (for a delivery: the delivery; for the cap: the run to the kill).
    pub ms: f64,
    pub detail: String,
}

impl Step {
    fn new(check: impl Into<String>, ok: bool, ms: f64, detail: impl Into<String>) -> Step {
        Step {
            check: check.into(),
            ok,
            ms: (ms * 1000.0).round() / 1000.0,
            detail: detail.into(),
        }
    }
}

/// The drill's result (`--json`).
#[derive(Debug, Serialize)]
pub struct Drill {
    pub job: String,
    pub ok: bool,
    pub steps: Vec<Step>,
    /// The drill's bundle, when one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
}

/// `guard __drill-alloc BYTES`: allocate BYTES in 1 MiB pieces, touching every page, then sleep.
/// Under a working cap the process never gets there; if it does, it exits 0 after a while and
/// the drill reports the cap as not enforced.
pub fn allocate(args: &[OsString]) -> i32 {
    let limit: u64 = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse().ok())
        .unwrap_or(NO_CAP_DRILL * 2);
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut total = 0u64;
    while total < limit {
        held.push(vec![0xa5; 1 << 20]);
        total += 1 << 20;
    }
    std::thread::sleep(Duration::from_secs(20));
    drop(held);
    0
}

/// `guard drill [--name JOB | --config FILE] [--memory SIZE] [--json]`: run the checks, print
/// them; the exit status (0: every check passed; 1: one failed; 125: the drill could not run).
pub fn command(a: &DrillArgs, matches: &clap::ArgMatches) -> i32 {
    // The drill's own options are usage (125); what it finds in the configuration is a check.
    if let Some(m) = &a.memory {
        if let Err(e) = crate::config::units::parse_size(m) {
            eprintln!(
                "guard: error: invalid --memory '{}': {e}; expected {}",
                crate::format::escape_controls(m, false),
                crate::config::units::SIZE_FORMS
            );
            return crate::config::exit::GUARD_FAILED;
        }
    }
    let d = run(a, matches);
    if a.json {
        match serde_json::to_string_pretty(&d) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("guard: error: cannot encode the drill's result: {e}");
                return crate::config::exit::GUARD_FAILED;
            }
        }
    } else {
        print!("{}", text(&d));
    }
    if d.ok { 0 } else { 1 }
}

/// The checklist for people.
pub fn text(d: &Drill) -> String {
    let mut o = format!("guard drill for {}:\n", d.job);
    for s in &d.steps {
        let mark = if s.ok { "\u{2713}" } else { "\u{2717}" };
        o.push_str(&format!(
            "  {mark} {:<40} {:>9}  {}\n",
            s.check,
            ms_text(s.ms),
            crate::format::escape_controls(&s.detail, false)
        ));
    }
    let failed = d.steps.iter().filter(|s| !s.ok).count();
    if failed == 0 {
        o.push_str(&format!(
            "all {} checks passed: a real kill of {} would be capped, captured and told\n",
            d.steps.len(),
            d.job
        ));
    } else {
        o.push_str(&format!(
            "{failed} of {} checks failed: fix them and run guard drill again\n",
            d.steps.len()
        ));
    }
    o
}

fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// The job's settings as its real run would have them (config files, environment), with
/// `--memory` from the drill when given.
fn settings(a: &DrillArgs, matches: &clap::ArgMatches) -> Result<WrapConfig, String> {
    let layers =
        crate::config::file::Layers::load(a.config.as_deref()).map_err(|e| e.to_string())?;
    let mut args = crate::config::cli::WrapArgs::for_job(Some(
        a.name.clone().unwrap_or_else(|| DEFAULT_JOB.into()),
    ));
    if let Some(m) = &a.memory {
        args.fill("memory", m.into());
    }
    args.drill = true;
    let (args, src) = config::apply_files(&args, matches, &layers);
    config::wrap_config(&args, &src, crate::cgroup::detect::available_memory_here).map_err(|e| e.0)
}

/// Run the drill: the checks, in order; a check that cannot be made is a failed one.
pub fn run(a: &DrillArgs, matches: &clap::ArgMatches) -> Drill {
    let job = a.name.clone().unwrap_or_else(|| DEFAULT_JOB.into());
    let mut steps = Vec::new();
    let t0 = Instant::now();
    let cfg = match settings(a, matches) {
        Ok(c) => c,
        Err(e) => {
            steps.push(Step::new("configuration", false, ms(t0), e));
            return Drill {
                job,
                ok: false,
                steps,
                bundle: None,
            };
        }
    };
    steps.push(configuration_step(a, &cfg, ms(t0)));
    let t1 = Instant::now();
    let ready = crate::commands::readiness::checks(&cfg);
    let each = ms(t1) / ready.len().max(1) as f64;
    steps.extend(
        ready
            .into_iter()
            .map(|r| Step::new(format!("ready: {}", r.check), r.ok, each, r.detail)),
    );
    let cap = cfg.memory.unwrap_or(NO_CAP_DRILL);
    let started = SystemTime::now();
    let outcome = run_allocator(a, &cfg, cap);
    let (manifest, bundle) = check_run(cap, &outcome, &mut steps);
    if let Some(m) = &manifest {
        steps.extend(delivery_steps(&cfg, m));
    }
    if let Some(p) = &cfg.metrics_file {
        steps.push(metrics_step(p, &cfg.name, started));
    }
    if let Some(u) = &cfg.upload {
        steps.extend(upload_steps(u, bundle.as_deref()));
    }
    let ok = steps.iter().all(|s| s.ok);
    if let (true, Some(p)) = (ok, &cfg.metrics_file) {
        let now = unix(SystemTime::now());
        if let Err(e) = crate::alert::metrics::drill_passed(p, &cfg.name, now) {
            log::warn!("guard_drill_last_success_timestamp_seconds not written: {e}");
        }
    }
    Drill {
        job: cfg.name.clone(),
        ok,
        steps,
        bundle,
    }
}

/// `--upload`, end to end: a test object written, read back and deleted; and the drill's own
/// bundle, which its run shipped like a real one's (its upload.json).
fn upload_steps(u: &crate::config::upload::Upload, bundle: Option<&std::path::Path>) -> Vec<Step> {
    let t0 = Instant::now();
    let round = match crate::ship::round_trip(u) {
        Ok(d) => Step::new("upload: a test object", true, ms(t0), d),
        Err(e) => Step::new("upload: a test object", false, ms(t0), e),
    };
    let record = bundle.and_then(crate::ship::read_record);
    let shipped = match record {
        Some(r) if r.state == crate::ship::State::Uploaded => Step::new(
            "upload: the drill's bundle",
            true,
            0.0,
            format!(
                "{} ({} bytes, sha256 {})",
                r.url,
                r.bytes.unwrap_or(0),
                r.sha256.unwrap_or_default()
            ),
        ),
        Some(r) => Step::new(
            "upload: the drill's bundle",
            false,
            0.0,
            format!(
                "pending: {} (guard upload --pending retries it)",
                r.error.unwrap_or_default()
            ),
        ),
        None => Step::new(
            "upload: the drill's bundle",
            false,
            0.0,
            "no upload was recorded in the drill's bundle",
        ),
    };
    vec![round, shipped]
}

fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1000.0
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// "job fix_images, memory 2 GiB, 3 alert sinks, ping, metrics file": what the drill uses.
fn configuration_step(a: &DrillArgs, cfg: &WrapConfig, took: f64) -> Step {
    let file = match &a.config {
        Some(f) => f.display().to_string(),
        None => "the files guard reads".into(),
    };
    let (ok, cap) = match cfg.memory {
        Some(m) => (true, format!("memory {}", format_size(m))),
        None => (
            false,
            format!(
                "no --memory for this job: nothing caps it (the drill uses {}; set memory in its table)",
                format_size(NO_CAP_DRILL)
            ),
        ),
    };
    Step::new(
        "configuration",
        ok,
        took,
        format!(
            "{file}: job {}, {cap}, {} alert sink(s){}{}",
            cfg.name,
            cfg.alerts.len(),
            if cfg.ping.is_some() { ", a ping" } else { "" },
            if cfg.metrics_file.is_some() {
                ", a metrics file"
            } else {
                ""
            }
        ),
    )
}

/// What the drill's run did: its exit status, guard's stderr, how long it took.
struct Outcome {
    status: Option<i32>,
    stderr: String,
    took: Duration,
    error: Option<String>,
}

/// `guard run --drill ... -- guard __drill-alloc BYTES`, bounded.
fn run_allocator(a: &DrillArgs, cfg: &WrapConfig, cap: u64) -> Outcome {
    let t0 = Instant::now();
    let failed = |e: String| Outcome {
        status: None,
        stderr: String::new(),
        took: t0.elapsed(),
        error: Some(e),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return failed(format!("cannot find guard's own binary: {e}")),
    };
    let mut c = Command::new(&exe);
    c.arg("run").arg("--drill").args(["--name", &cfg.name]);
    if let Some(f) = &a.config {
        c.arg("--config").arg(f);
    }
    if a.memory.is_some() || cfg.memory.is_none() {
        c.args(["--memory", &cap.to_string()]);
    }
    c.arg("--")
        .arg(&exe)
        .arg(ALLOC_MODE)
        // Past the cap, never unbounded: a cap that does not hold leaves the host well short.
        .arg((cap + cap / 2 + (64 << 20)).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return failed(format!("cannot start {}: {e}", exe.display())),
    };
    let mut err = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.take(1 << 20).read_to_string(&mut s);
        }
        s
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                break st.code().or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    st.signal().map(|s| 128 + s)
                });
            }
            Ok(None) if t0.elapsed() > RUN_BOUND => {
                let _ = child.kill();
                let _ = child.wait();
                return failed(format!(
                    "the drill's run did not end within {} s; killed it",
                    RUN_BOUND.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return failed(format!("waiting for the drill's run: {e}")),
        }
    };
    Outcome {
        status,
        stderr: reader.join().unwrap_or_default(),
        took: t0.elapsed(),
        error: None,
    }
}

/// The cap, the capture and the bundle, from the run's status, its kill line and its bundle.
fn check_run(
    cap: u64,
    out: &Outcome,
    steps: &mut Vec<Step>,
) -> (Option<Manifest>, Option<PathBuf>) {
    let took = out.took.as_secs_f64() * 1000.0;
    if let Some(e) = &out.error {
        steps.push(Step::new("cap enforced", false, took, e.clone()));
        return (None, None);
    }
    let kill_line = out
        .stderr
        .lines()
        .find(|l| l.contains("exceeded its memory limit"));
    let status = out.status.unwrap_or(-1);
    let capped = status == crate::config::exit::MEMORY_KILL && kill_line.is_some();
    let first_line = out.stderr.lines().last().unwrap_or("no line from guard");
    steps.push(Step::new(
        "cap enforced",
        capped,
        took_to_kill(out, took),
        if capped {
            format!(
                "guard's allocator was killed at its limit {} and guard exited 137",
                format_size(cap)
            )
        } else {
            format!("guard exited {status}, not 137: {first_line}")
        },
    ));
    let Some(line) = kill_line else {
        return (None, None);
    };
    let bundle = match line.split_once("; evidence: ") {
        Some((_, p)) => PathBuf::from(p.trim()),
        None => {
            let why = line.split_once("no evidence: ").map_or(line, |x| x.1);
            steps.push(Step::new("bundle", false, 0.0, format!("no bundle: {why}")));
            return (None, None);
        }
    };
    let report = match crate::report::Report::load(&bundle) {
        Ok(r) => r,
        Err(e) => {
            steps.push(Step::new("bundle", false, 0.0, e.to_string()));
            return (None, Some(bundle));
        }
    };
    let m = report.manifest.clone();
    steps.push(capture_step(&m));
    steps.push(bundle_step(&bundle, &report));
    (Some(m), Some(bundle))
}

/// From the run's start to the kill: the bundle's trigger time when there is one (the run's
/// whole time includes its alerts and pings), else the whole run.
fn took_to_kill(out: &Outcome, whole: f64) -> f64 {
    out.stderr
        .lines()
        .find_map(|l| {
            l.split_once("; evidence: ")
                .map(|x| PathBuf::from(x.1.trim()))
        })
        .and_then(|b| crate::format::read_manifest(&b).ok())
        .and_then(|m| m.trigger_after_ms)
        .map_or(whole, |t| t as f64)
}

fn capture_step(m: &Manifest) -> Step {
    let frozen = m.timings.trigger_to_frozen_ms.unwrap_or(0.0);
    let read = m.timings.capture_ms.unwrap_or(0.0);
    let pre = m.capture == Capture::PreKill;
    Step::new(
        "capture before the kill",
        pre,
        frozen + read,
        if pre {
            format!(
                "held {frozen:.1} ms after the trigger ({} mode), read in {read:.0} ms",
                m.cgroup.mode
            )
        } else {
            format!(
                "post-mortem: the job was dead before guard read it ({} mode)",
                m.cgroup.mode
            )
        },
    )
}

/// The bundle is complete (its files) and `guard report` reads it.
fn bundle_step(bundle: &Path, r: &crate::report::Report) -> Step {
    let t0 = Instant::now();
    let missing: Vec<&str> = ["manifest.json", "summary.txt", "timeline.csv", "tree.txt"]
        .into_iter()
        .filter(|f| !bundle.join(f).is_file())
        .collect();
    let text = crate::report::text(r);
    let ok = missing.is_empty() && text.contains("guard evidence:");
    Step::new(
        "bundle readable by guard report",
        ok,
        ms(t0),
        if ok {
            bundle.display().to_string()
        } else {
            format!("{}: missing {}", bundle.display(), missing.join(", "))
        },
    )
}

/// Each configured sink's delivery and the ping's, as the run recorded them in its bundle.
fn delivery_steps(cfg: &WrapConfig, m: &Manifest) -> Vec<Step> {
    let mut steps: Vec<Step> = cfg
        .alerts
        .iter()
        .map(|s| {
            let label = s.label();
            match m.alerts.iter().find(|d| d.sink == label) {
                Some(d) => Step::new(
                    format!("alert {label}"),
                    d.status == Status::Ok,
                    d.ms,
                    if d.status == Status::Ok {
                        format!("acknowledged the drill ({} attempt(s))", d.attempts)
                    } else {
                        format!("{} after {} attempt(s): {}", d.status, d.attempts, d.detail)
                    },
                ),
                None => Step::new(
                    format!("alert {label}"),
                    false,
                    0.0,
                    "no delivery was recorded",
                ),
            }
        })
        .collect();
    if let Some(url) = &cfg.ping {
        let label = format!("ping {}/log", url.shown());
        steps.push(match m.alerts.iter().find(|d| d.sink == label) {
            Some(d) => Step::new(
                "ping",
                d.status == Status::Ok,
                d.ms,
                if d.status == Status::Ok {
                    format!("{label} (healthchecks' log: the check's state is unchanged)")
                } else {
                    format!("{label}: {} ({})", d.status, d.detail)
                },
            ),
            None => Step::new("ping", false, 0.0, format!("{label}: no ping was recorded")),
        });
    }
    steps
}

/// The metrics file has the drill's series, written by this drill's run.
fn metrics_step(path: &Path, job: &str, started: SystemTime) -> Step {
    let t0 = Instant::now();
    let metric = "guard_drill_last_run_timestamp_seconds";
    let value =
        crate::alert::metrics::value_in(path, metric, job).and_then(|v| v.parse::<f64>().ok());
    let fresh = value.is_some_and(|v| v + 1.0 >= unix(started));
    Step::new(
        "metrics file",
        fresh,
        ms(t0),
        if fresh {
            format!("{} has {metric}{{guard_job=\"{job}\"}}", path.display())
        } else {
            format!(
                "{} has no fresh {metric} for {job} (see the warnings of the run)",
                path.display()
            )
        },
    )
}
