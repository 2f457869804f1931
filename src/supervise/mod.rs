//! Wrap mode, the lifecycle top to bottom, in [`run`]:
//!
//! 1. **prepare** — block the signals guard handles (read from a signalfd), take `--lock`, choose
//!    and create the enforcement ([`prepare`]), set up the job's output ([`output`]);
//! 2. **start** — COMMAND inside the cgroup before its first instruction, with the signal state
//!    guard was given ([`spawn`]; with --pgroup at a terminal, its foreground: [`terminal`]);
//! 3. **loop** — one synchronous event loop until COMMAND exits ([`event_loop`]): signals,
//!    memory events, the sampler, housekeeping, the sentinel, the timeout, and the captures it
//!    decides on ([`capture`]);
//! 4. **verdict** — why the run is over, nothing of the job left, guard's one line and its exit
//!    status ([`verdict`]);
//! 5. **tell** — alerts, pings, metrics, after the kill ([`notify`]).

mod capture;
mod event_loop;
mod hold;
mod lock;
mod notify;
pub mod output;
mod prepare;
pub mod register;
pub mod sentinel;
pub mod signals;
pub mod spawn;
mod terminal;
mod thrash;
mod verdict;

#[cfg(test)]
mod tests;

use crate::cgroup::Enforce;
use crate::cgroup::detect::Sys;
use crate::config::WrapConfig;
use crate::config::exit;
use crate::evidence::Recorder;
use crate::format::EventKind;
use event_loop::{Child, Io, Supervisor};
use notify::Ending;
use verdict::evidence_text;

/// A fatal error before COMMAND ran: message and exit status.
#[derive(Debug)]
pub struct Fatal {
    pub status: i32,
    pub message: String,
}

impl Fatal {
    pub fn new(status: i32, message: String) -> Fatal {
        Fatal { status, message }
    }
}

/// Run COMMAND under guard and return guard's exit status.
pub fn run(cfg: &WrapConfig) -> Result<i32, Fatal> {
    // 1. Prepare: signals, the lock, the enforcement, the job's output.
    let mut io = Io::take_signals(cfg)?;
    let Some(_lock) = lock::take(cfg)? else {
        return Ok(exit::LOCK_BUSY);
    };
    let sys = Sys::live();
    let prepared = prepare::enforcement(cfg, &sys)?;
    // Before COMMAND: from its first instruction, killing guard leaves nothing of the job.
    let sentinel = match prepared.enforcer.dir() {
        Some(_) => sentinel::start(&prepared.enforcer.cleanup_dirs()),
        None => None,
    };
    let mut output = output::Output::start(cfg.quiet).map_err(|e| {
        Fatal::new(
            exit::GUARD_FAILED,
            format!("--quiet: cannot create pipes: {e}"),
        )
    })?;
    // 2. Start COMMAND inside the cgroup.
    let census = prepare::census(cfg);
    let started = notify::Started::now();
    let env = census.as_ref().map(|(_, env)| env.as_slice());
    // --pgroup at a terminal: the job's group takes its foreground (see terminal.rs).
    let group = spawn::Group {
        own: cfg.pgroup,
        tty: cfg.pgroup.then(terminal::foreground).flatten(),
    };
    let (enforcer, pid) = match prepare::start(cfg, prepared.enforcer, output.stdio(), group, env) {
        Ok(started) => started,
        Err(f) => {
            // A crontab's typo (127) or a script without its x bit (126) must reach the check
            // as runitor reports it: /start, then the failure with guard's line.
            notify::could_not_start(cfg, &f);
            return Err(f);
        }
    };
    io.capture = output.started();
    let start_ping = notify::job_started(cfg);
    // What earlier runs left pending goes up while this job runs (its own thread, bounded).
    let retry = match (&cfg.upload, &cfg.evidence.dir) {
        (Some(u), Ok(dir)) if !cfg.drill => Some(crate::ship::retry_pending(u, dir.clone())),
        _ => None,
    };
    let mut recorder = Recorder::started(cfg, &sys.proc, started.at, pid, prepared.observe);
    recorder.census = census.map(|(census, _)| census);
    let job = Child::new(pid, group);
    crate::logger::set_job(&cfg.name, pid);
    let mut sup = Supervisor::new(
        cfg,
        enforcer,
        recorder,
        job,
        prepared.plan,
        sys.proc,
        sentinel,
    );
    // 3. The event loop, until COMMAND exits.
    sup.run(&mut io)?;
    // 4. The verdict: why it ended, nothing of the job left, the bundle, the one line.
    let verdict = sup.verdict();
    let (peak, metrics_peak) = sup.peaks(verdict);
    let ended = sup.ended;
    let mut left = sup.clean_up(&mut io);
    let killed = left.killed_text();
    let alerted = left.hold.is_some();
    let output_tail = output.finish(io.capture.take());
    let bundle = left.finish_bundle(ended, peak, output_tail.as_deref());
    if verdict.failed() {
        output.replay();
    }
    let said = verdict.line(cfg, pid, peak, &killed, &evidence_text(&bundle));
    // Everything a drill sends is a drill: its event, whatever ended it.
    let kind = verdict
        .kind()
        .map(|k| if cfg.drill { EventKind::Drill } else { k });
    if let Some(line) = &said {
        let shown = |v: Option<u64>| v.map(|b| b.to_string()).unwrap_or_default();
        let path = bundle
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match kind {
            Some(kind) => crate::logger::event_line(
                line,
                kind,
                &[
                    ("GUARD_BUNDLE", path),
                    ("GUARD_LIMIT_BYTES", shown(cfg.memory)),
                    ("GUARD_PEAK_BYTES", shown(peak)),
                ],
            ),
            None => eprintln!("{line}"),
        }
    }
    // 5. Tell people: alerts, pings, metrics.
    // --preserve-status: after --timeout, COMMAND's own status, as timeout(1) gives it.
    let status = match (verdict, cfg.preserve_status) {
        (verdict::Verdict::Timeout, true) => verdict::Verdict::Exited(ended).status(),
        _ => verdict.status(),
    };
    let ending = Ending {
        status,
        kind,
        pid,
        bundle,
        peak,
        metrics_peak,
        output_tail,
        pending: left.pending,
        // Built only when something is sent (alerts, pings): not on a quiet run's path.
        scrub: if cfg.alerts.is_empty() && cfg.ping.is_none() {
            Default::default()
        } else {
            left.recorder.scrubber()
        },
        alerted,
        line: said.unwrap_or_else(|| verdict.exit_text(&cfg.name)),
    };
    notify::tell(cfg, ending, start_ping, started);
    // 6. Ship the run's bundles off the host (after the kill and the alerts; bounded).
    if let Some(u) = &cfg.upload {
        crate::ship::after_run(u, &left.recorder.written());
    }
    // Its requests are bounded by --upload-timeout from when it began.
    if let Some(r) = retry {
        let _ = r.join();
    }
    // Last: the sentinel stood down at the cleanup and has exited meanwhile; reap it.
    drop(left.sentinel);
    Ok(status)
}
