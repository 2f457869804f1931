//! Wrap mode, the lifecycle top to bottom, in [`run`]:
//!
//! 1. **prepare** — block the signals guard handles (read from a signalfd), take `--lock`, choose
//!    and create the enforcement ([`prepare`]), set up the job's output ([`output`]);
//! 2. **start** — COMMAND inside the cgroup before its first instruction ([`spawn`]);
//! 3. **loop** — one synchronous event loop until COMMAND exits ([`event_loop`]): signals,
//!    memory events, the sampler, housekeeping, the sentinel, the timeout, and the captures it
//!    decides on ([`capture`]);
//! 4. **verdict** — why the run is over, nothing of the job left, guard's one line and its exit
//!    status ([`verdict`]);
//! 5. **tell** — alerts, pings, metrics, after the kill ([`notify`]).

mod capture;
mod event_loop;
mod lock;
mod notify;
pub mod output;
mod prepare;
pub mod sentinel;
pub mod signals;
pub mod spawn;
mod verdict;

#[cfg(test)]
mod tests;

use crate::cgroup::detect::Sys;
use crate::config::WrapConfig;
use crate::evidence::Recorder;
use crate::exit;
use event_loop::{Child, Io, Supervisor};
use verdict::{Ending, evidence_text};

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
    // Prepare.
    let mut io = Io::take_signals(cfg)?;
    let Some(_lock) = lock::take(cfg)? else {
        return Ok(exit::LOCK_BUSY);
    };
    let sys = Sys::live();
    let prepared = prepare::enforcement(cfg, &sys)?;
    let mut output = output::Output::start(cfg.quiet).map_err(|e| {
        Fatal::new(
            exit::GUARD_FAILED,
            format!("--quiet: cannot create pipes: {e}"),
        )
    })?;
    // Start.
    let started = notify::Started::now();
    let mut recorder = Recorder::new(cfg, &sys.proc, started.at);
    recorder.observe = prepared.observe;
    let (mut enforcer, pid) = prepare::start(cfg, prepared.enforcer, output.stdio())?;
    io.capture = output.started();
    let start_ping = notify::ping_start(cfg);
    log::debug!("started {} as pid {pid}", cfg.command[0].to_string_lossy());
    crate::cgroup::Enforce::arm_events(&mut enforcer);
    recorder.after_spawn(pid);
    notify::check_metrics(cfg);
    let job = Child {
        pid,
        pgroup: cfg.pgroup,
    };
    // Loop.
    let mut sup = Supervisor::new(cfg, enforcer, recorder, job, prepared.plan, sys.proc);
    sup.run(&mut io)?;
    // Verdict.
    let verdict = sup.verdict();
    let (peak, metrics_peak) = sup.peaks(verdict);
    let ended = sup.ended;
    let left = sup.clean_up(&mut io);
    let output_tail = output.finish(io.capture.take());
    let bundle = match left.bundle {
        Some(Ok(p)) => left.recorder.finish(
            p,
            ended.map(verdict::Ended::exit_info),
            true,
            peak,
            output_tail.as_deref(),
        ),
        Some(Err(e)) => Err(e),
        None => Err(left
            .recorder
            .dir
            .clone()
            .err()
            .unwrap_or_else(|| "no capture was made".into())),
    };
    if verdict.failed() {
        output.replay();
    }
    if let Some(line) = verdict.line(cfg, pid, peak, &evidence_text(&bundle)) {
        eprintln!("{line}");
    }
    // Tell.
    let ending = Ending {
        status: verdict.status(),
        kind: verdict.kind(),
        pid,
        bundle,
        peak,
        metrics_peak,
        output_tail,
        pending: left.pending,
    };
    let status = ending.status;
    notify::tell(cfg, ending, start_ping, started);
    Ok(status)
}
