//! Telling people: the alert for the event the run ended with (its bundle named), the warnings
//! delivered on their own threads while the job ran, the `--ping` pings and the `--metrics-file`
//! series. All of it after the kill — delivery never delays enforcement — and none of it changes
//! guard's exit status: a failure is one warning line, and each delivery is recorded in its
//! bundle's manifest.

use crate::alert;
use crate::config::WrapConfig;
use crate::config::units::format_size;
use crate::evidence::EvidenceError;
use crate::evidence::redact::Scrubber;
use crate::format::{Delivery, EventKind, Status};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

/// What the run left for the people to be told.
pub struct Ending {
    pub status: i32,
    pub kind: Option<EventKind>,
    pub pid: i32,
    /// The bundle the run ended with, or why there is none.
    pub bundle: Result<PathBuf, EvidenceError>,
    /// The job's peak as the cgroup counted it (for the alerts).
    pub peak: Option<u64>,
    /// The peak for the metrics: the cgroup's, else the timeline's.
    pub metrics_peak: Option<u64>,
    pub output_tail: Option<Vec<u8>>,
    /// Warnings delivered on their own threads while the job ran.
    pub pending: Vec<PendingAlert>,
    /// What everything sent out is scrubbed with.
    pub scrub: crate::evidence::redact::Scrubber,
    /// The ending's alert went out already (as a --hold-for hold began).
    pub alerted: bool,
    /// guard's line about the end (the kill line, the timeout line), or how the job ended.
    pub line: String,
}

impl Ending {
    pub fn tail_text(&self) -> Option<String> {
        self.output_tail
            .as_ref()
            .map(|t| String::from_utf8_lossy(t).into_owned())
    }
}

/// When the job started (for the metrics' timestamp and duration).
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub at: Instant,
    pub wall: SystemTime,
}

impl Started {
    pub fn now() -> Started {
        Started {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// A warning alert on its way.
pub struct PendingAlert {
    event: alert::Event,
    bundle: Option<PathBuf>,
    handle: JoinHandle<Vec<Delivery>>,
}

/// The `--ping URL/start` on its way (none in a drill), and the run id its end ping carries too.
pub struct StartPing {
    handle: Option<JoinHandle<Delivery>>,
    rid: String,
}

/// The job has started: `--ping URL/start` on a thread of its own (a slow or dead endpoint
/// never delays the job), and a `--metrics-file` that cannot be written said now, not after the
/// run.
pub fn job_started(cfg: &WrapConfig) -> Option<StartPing> {
    check_metrics(cfg);
    cfg.ping.clone().map(|url| {
        let rid = alert::run_id();
        let id = rid.clone();
        // A drill does not start the job's check: it logs one event there at its end.
        let handle = (!cfg.drill).then(|| {
            std::thread::spawn(move || alert::ping(&url, "/start", &id, "", alert::MAX_TRIES))
        });
        StartPing { handle, rid }
    })
}

/// COMMAND could not be started (`f`: 126 or 127; anything else is guard's own failure): with
/// `--ping`, URL/start and then URL/STATUS with guard's line as the body, in that order, each
/// bounded as any ping.
pub fn could_not_start(cfg: &WrapConfig, f: &super::Fatal) {
    use crate::config::exit::{NOT_EXECUTABLE, NOT_FOUND};
    let (Some(url), false) = (&cfg.ping, cfg.drill) else {
        return;
    };
    if f.status != NOT_FOUND && f.status != NOT_EXECUTABLE {
        return;
    }
    let rid = alert::run_id();
    let line = format!(
        "guard: error: {}",
        crate::format::escape_controls(&f.message, false)
    );
    for d in [
        alert::ping(url, "/start", &rid, "", alert::MAX_TRIES),
        alert::ping(
            url,
            &format!("/{}", f.status),
            &rid,
            &line,
            alert::MAX_TRIES,
        ),
    ] {
        if d.status != Status::Ok {
            log::warn!(
                "{} failed after {} attempt(s): {}",
                d.sink,
                d.attempts,
                d.detail
            );
        }
    }
}

/// One warning line naming the bundle (`r`), and the warning alert on its own thread (joined,
/// bounded by the sinks' timeouts, when the job is over).
pub fn warning(
    cfg: &WrapConfig,
    pid: i32,
    usage: u64,
    what: &str,
    r: Result<PathBuf, EvidenceError>,
    scrub: &Scrubber,
    growth: Option<crate::format::Forecast>,
) -> Option<PendingAlert> {
    match &r {
        Ok(p) => log::warn!("{} (pid {pid}) {what}; evidence: {}", cfg.name, p.display()),
        Err(e) => log::warn!("{} (pid {pid}) {what}; no evidence: {e}", cfg.name),
    }
    if !cfg.alerts.iter().any(|s| s.wants(EventKind::Warning)) {
        return None;
    }
    let bundle = r.ok();
    let mut ev = event(
        cfg,
        scrub,
        pid,
        EventKind::Warning,
        bundle.as_deref(),
        Some(usage),
        None,
    );
    if ev.growth.is_none() && growth.is_some() {
        // No bundle (or none readable): the forecast taken at the warning still goes out.
        ev.growth = growth;
        ev.summary = alert::text::summary(&ev);
    }
    Some(on_its_way(cfg, ev, bundle))
}

/// Deliver `ev` on a thread of its own; joined (bounded by the sinks' timeouts) at the end.
fn on_its_way(cfg: &WrapConfig, ev: alert::Event, bundle: Option<PathBuf>) -> PendingAlert {
    let sinks = cfg.alerts.clone();
    let sent = ev.clone();
    let handle = std::thread::spawn(move || alert::deliver(&sinks, &sent));
    PendingAlert {
        event: ev,
        bundle,
        handle,
    }
}

/// `--hold-for`: the memory-limit alert goes out as the hold begins — the job is held, until
/// when, and how to end the hold — on its own thread (joined when the run is over); the run's
/// end sends no second one.
pub fn held(
    cfg: &WrapConfig,
    pid: i32,
    scrub: &Scrubber,
    bundle: Option<PathBuf>,
    peak: Option<u64>,
    until: &str,
) -> Option<PendingAlert> {
    if !cfg.alerts.iter().any(|s| s.wants(EventKind::MemoryLimit)) {
        return None;
    }
    let mut ev = event(
        cfg,
        scrub,
        pid,
        EventKind::MemoryLimit,
        bundle.as_deref(),
        peak,
        None,
    );
    ev.held_until = Some(until.to_string());
    ev.summary = alert::text::summary(&ev);
    Some(on_its_way(cfg, ev, bundle))
}

/// The event the alert sinks get (what the bundle's manifest says, where there is one), its
/// command line redacted as the bundle's is.
fn event(
    cfg: &WrapConfig,
    scrub: &Scrubber,
    pid: i32,
    kind: EventKind,
    bundle: Option<&Path>,
    peak: Option<u64>,
    exit_code: Option<i32>,
) -> alert::Event {
    let report = bundle.and_then(|b| crate::report::Report::load(b).ok());
    let finding = report.as_ref().and_then(crate::report::Report::top_finding);
    let m = report.map(|r| r.manifest);
    let (bundle_url, bundle_link) = match (&cfg.upload, bundle, &m) {
        (Some(u), Some(b), Some(m)) => crate::ship::planned(u, &m.host, &m.job, b),
        _ => (None, None),
    };
    let command = m.as_ref().map(|m| m.command.clone()).unwrap_or_else(|| {
        let argv: Vec<String> = cfg
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        scrub.argv(&argv)
    });
    let mut ev = alert::Event {
        event: kind,
        job: cfg.name.clone(),
        host: host(),
        pid,
        command,
        limit_bytes: cfg.memory,
        peak_bytes: peak.or(m.as_ref().and_then(|m| m.peak_bytes)),
        trigger: m.as_ref().map(|m| m.trigger),
        capture: m.as_ref().map(|m| m.capture),
        bundle: bundle.map(|b| b.display().to_string()),
        bundle_url,
        bundle_link,
        summary: String::new(),
        exit_code,
        guard_version: env!("CARGO_PKG_VERSION").into(),
        time: crate::format::rfc3339(SystemTime::now()),
        output_tail: None,
        finding,
        growth: m.as_ref().and_then(|m| m.growth),
        held_until: None,
        runbook: cfg.runbook.clone(),
        thrashing: m.as_ref().and_then(|m| m.thrashing),
    };
    ev.summary = alert::text::summary(&ev);
    ev
}

fn host() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Say what failed, and record the deliveries in the bundle.
fn finish_alert(ev: &alert::Event, bundle: Option<&Path>, results: &[Delivery]) {
    alert::report_failures(results, ev);
    if let Some(b) = bundle {
        if let Err(e) = crate::evidence::record_alerts(b, results) {
            log::warn!("{e}");
        }
    }
}

/// Tell people how the run ended: the metrics first (no network), then the alert, the
/// warnings still on their way and the end ping, all at once — a hanging endpoint costs the
/// bound of one delivery (3 attempts and the backoff), not one per kind of delivery; the end
/// ping alone may also wait for what is left of /start's bound, plus one attempt.
pub fn tell(cfg: &WrapConfig, mut ending: Ending, start_ping: Option<StartPing>, started: Started) {
    if let Some(path) = &cfg.metrics_file {
        metrics(cfg, path, &ending, started);
    }
    let pending = std::mem::take(&mut ending.pending);
    let ending = &ending;
    let (rid, start_handle) = match start_ping {
        Some(s) => (s.rid, s.handle),
        None => (String::new(), None),
    };
    std::thread::scope(|scope| {
        let drill = cfg.drill.then_some(cfg.name.as_str());
        // The end ping goes only once /start was answered or given up (its bound counts from
        // the job's start): sent together, the end could arrive first and the check would show a
        // start that never ended. It waits on a thread of its own, so the alerts do not.
        let end_ping = cfg.ping.as_ref().map(|url| {
            scope.spawn(move || {
                let start: Vec<Delivery> = start_handle
                    .and_then(|h| h.join().ok())
                    .into_iter()
                    .collect();
                // An endpoint that just failed every attempt of /start gets one more, not three:
                // a dead endpoint costs /start's bound and one attempt, not two whole bounds.
                let tries = if start.iter().all(|d| d.status == Status::Ok) {
                    alert::MAX_TRIES
                } else {
                    1
                };
                let end = ping(url, &rid, ending, drill, tries);
                start.into_iter().chain([end]).collect::<Vec<_>>()
            })
        });
        alert_the_ending(cfg, ending);
        let mut warned = None;
        for p in pending {
            let results = p.handle.join().unwrap_or_default();
            finish_alert(&p.event, p.bundle.as_deref(), &results);
            if p.event.event == EventKind::Warning {
                warned = Some((p.event, p.bundle));
            }
        }
        // The job ended well after a warning: the warning's incident is over.
        if let (None, Some((ev, bundle))) = (ending.kind, warned) {
            resolve_warning(cfg, &ev, bundle.as_deref());
        }
        let pings = end_ping.and_then(|h| h.join().ok()).unwrap_or_default();
        if let (Ok(b), false) = (&ending.bundle, pings.is_empty()) {
            if let Err(e) = crate::evidence::append_deliveries(b, &pings) {
                log::warn!("{e}");
            }
        }
        for r in pings.iter().filter(|r| r.status != Status::Ok) {
            log::warn!(
                "{} failed after {} attempt(s): {}; the job's result is unchanged",
                r.sink,
                r.attempts,
                r.detail
            );
        }
    });
}

/// PagerDuty: resolve the incident a warning opened; the deliveries go into the warning's bundle.
fn resolve_warning(cfg: &WrapConfig, ev: &alert::Event, bundle: Option<&Path>) {
    let results = alert::resolve_warning(&cfg.alerts, ev);
    if results.is_empty() {
        return;
    }
    alert::report_failures(&results, ev);
    if let Some(b) = bundle {
        if let Err(e) = crate::evidence::append_deliveries(b, &results) {
            log::warn!("{e}");
        }
    }
}

/// The alert of how the run ended, to every sink that wants its kind (unless it went out as a
/// hold began).
fn alert_the_ending(cfg: &WrapConfig, ending: &Ending) {
    if ending.alerted {
        return;
    }
    let bundle = ending.bundle.as_ref().ok().map(PathBuf::as_path);
    let Some(kind) = ending
        .kind
        .filter(|k| cfg.alerts.iter().any(|s| s.wants(*k)))
    else {
        return;
    };
    let mut ev = event(
        cfg,
        &ending.scrub,
        ending.pid,
        kind,
        bundle,
        ending.peak,
        Some(ending.status),
    );
    ev.output_tail = ending.tail_text().map(|t| ending.scrub.scrub_str(&t));
    let results = alert::deliver(&cfg.alerts, &ev);
    finish_alert(&ev, bundle, &results);
}

/// The end of `--ping`: URL on success; on failure URL/STATUS (healthchecks' exit-status
/// endpoint: 124 after a timeout, 137 after a memory kill) with guard's line and the end of
/// the output.
fn ping(
    url: &crate::config::alerts::Secret,
    rid: &str,
    ending: &Ending,
    drill: Option<&str>,
    tries: u32,
) -> Delivery {
    if let Some(job) = drill {
        // healthchecks' /log: an event in the check's log that changes nothing of its state.
        let body = format!(
            "guard drill for {job}: a rehearsal of the failure path, not a run of the job; {}",
            ending.line
        );
        return alert::ping(url, "/log", rid, &ending.scrub.scrub_str(&body), tries);
    }
    if ending.status == 0 {
        return alert::ping(url, "", rid, "", tries);
    }
    // healthchecks keeps the first 10 KB of a ping body: the end of the output matters.
    let tail = ending
        .tail_text()
        .map(|t| {
            let n = t.chars().count();
            t.chars().skip(n.saturating_sub(9000)).collect::<String>()
        })
        .unwrap_or_default();
    let body = format!("{}\n{tail}", ending.line);
    alert::ping(
        url,
        &format!("/{}", ending.status),
        rid,
        &ending.scrub.scrub_str(&body),
        tries,
    )
}

/// `--metrics-file`: this run's series.
fn metrics(cfg: &WrapConfig, path: &Path, ending: &Ending, started: Started) {
    let outcome = crate::alert::metrics::Outcome {
        job: cfg.name.clone(),
        started_unix: started
            .wall
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        duration_s: started.at.elapsed().as_secs_f64(),
        exit_code: ending.status,
        peak_bytes: ending.metrics_peak,
        limit_bytes: cfg.memory,
        ending: ending.kind,
        drill: cfg.drill,
    };
    // The directory opened and checked at the start; refused then (and said once), it is tried
    // again silently: it may have been made meanwhile.
    let opened = METRICS_FILE.lock().ok().and_then(|mut f| f.take());
    let said = METRICS_SAID.load(Ordering::Relaxed);
    let file = match opened.map_or_else(|| crate::alert::metrics::MetricsFile::open(path), Ok) {
        Ok(f) => f,
        Err(e) => {
            if !said {
                log::warn!("metrics not written: {e}; the job's result is unchanged");
            }
            return;
        }
    };
    match file.write(&outcome) {
        Ok(dropped) => {
            if let Some(d) = dropped.describe(file.path()) {
                log::warn!("metrics: {d}");
            }
        }
        Err(e) => log::warn!("metrics not written: {e}; the job's result is unchanged"),
    }
}

/// The start's metrics check failed and said so.
static METRICS_SAID: AtomicBool = AtomicBool::new(false);
/// The metrics file's directory as the start opened and checked it.
static METRICS_FILE: std::sync::Mutex<Option<crate::alert::metrics::MetricsFile>> =
    std::sync::Mutex::new(None);

fn check_metrics(cfg: &WrapConfig) {
    if let Some(path) = &cfg.metrics_file {
        match crate::alert::metrics::MetricsFile::open(path) {
            Ok(f) => {
                if let Ok(mut slot) = METRICS_FILE.lock() {
                    *slot = Some(f);
                }
            }
            Err(e) => {
                METRICS_SAID.store(true, Ordering::Relaxed);
                log::warn!(
                    "--metrics-file {}: {e}; the job runs, but its metrics will not be written",
                    path.display()
                );
            }
        }
    }
}

/// "uses 170 MiB of its 200 MiB limit, past its warning threshold 160 MiB"
pub fn warning_text(
    cfg: &WrapConfig,
    usage: u64,
    growth: Option<&crate::format::Forecast>,
) -> String {
    let of_cap = cfg
        .memory
        .map(|m| format!(" of its {} limit", format_size(m)))
        .unwrap_or_default();
    let growth = growth
        .map(|g| format!(", {}", crate::report::growth::describe(g)))
        .unwrap_or_default();
    format!(
        "uses {}{of_cap}, past its warning threshold {}{growth}",
        format_size(usage),
        cfg.evidence.warn.map(format_size).unwrap_or_default()
    )
}
