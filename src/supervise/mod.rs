//! Wrap mode, top to bottom: block signals, choose and create the enforcement, start the sentinel,
//! start COMMAND inside the cgroup, then one synchronous event loop (signalfd, the cgroup's memory
//! event fd, the poll-mode sampler, the kill-after deadline) until COMMAND exits; then clean up and
//! return the exit status from the table in `exit.rs`.

pub mod output;
pub mod sentinel;
pub mod signals;
pub mod spawn;

use crate::alert;
use crate::cgroup::detect::{self, Layout, Plan, Sys};
use crate::cgroup::{Enforce, Enforcer, Limits};
use crate::config::WrapConfig;
use crate::evidence::{self, Occasion, Recorder, Trigger};
use crate::exit;
use crate::format::{EventKind, ExitInfo, Status};
use crate::proc::Proc;
use crate::units::{format_duration, format_size};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, raise};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signals::Action;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// After a memory event whose verdict is not in yet, re-check the counters this often, this long.
const RECHECK_EVERY: Duration = Duration::from_millis(10);
const RECHECK_FOR: Duration = Duration::from_millis(300);
/// The sampler's longest interval while the job's memory is flat, and what counts as flat.
const IDLE_INTERVAL: Duration = Duration::from_secs(1);
const FLAT_BYTES: u64 = 1 << 20;
/// When the cleanup sentinel is started (see `sentinel`).
const SENTINEL_AFTER: Duration = Duration::from_millis(20);

/// How COMMAND ended.
#[derive(Debug, Clone, Copy)]
enum Ended {
    Code(i32),
    Signal(i32),
}

/// A fatal error before COMMAND ran: message and exit status.
pub struct Fatal {
    pub status: i32,
    pub message: String,
}

fn fatal(status: i32, message: String) -> Fatal {
    Fatal { status, message }
}

/// Choose the enforcement and create it; poll mode (with a warning) when a cgroup cannot be had,
/// unless `--require-cgroup`.
fn enforce(cfg: &WrapConfig, sys: &Sys) -> Result<(Enforcer, Plan), Fatal> {
    let plan = match Layout::read(sys) {
        Ok(layout) => detect::plan(sys, &layout),
        Err(e) => Plan::Poll {
            reason: e,
            fix: "check that /proc is mounted".into(),
        },
    };
    let limits = Limits {
        memory: cfg.memory,
        swap: cfg.swap,
    };
    let poll_plan = Plan::Poll {
        reason: String::new(),
        fix: String::new(),
    };
    let fall_back = |why: String, fix: &str| -> Result<Enforcer, Fatal> {
        if cfg.require_cgroup {
            return Err(fatal(
                exit::GUARD_FAILED,
                format!("--require-cgroup: no cgroup can be used: {why}; to fix: {fix}"),
            ));
        }
        if cfg.memory.is_some() {
            log::warn!(
                "enforcement is best-effort (poll mode): {why}; the job's memory is sampled every {} \
                 and a fast allocation can overshoot the cap. To enforce with a cgroup: {fix}",
                format_duration(cfg.evidence.sample_interval)
            );
        } else {
            log::info!("poll mode (monitor only): {why}");
        }
        Enforcer::create(&poll_plan, &Proc::at(&sys.proc), &cfg.name, &limits)
            .map_err(|e| fatal(exit::GUARD_FAILED, e.to_string()))
    };
    let with_plan = |e: Enforcer| (e, plan.clone());
    match &plan {
        Plan::Poll { reason, fix } => fall_back(reason.clone(), fix).map(with_plan),
        _ => match Enforcer::create(&plan, &Proc::at(&sys.proc), &cfg.name, &limits) {
            Ok(e) => {
                log::debug!("{}", plan.reason());
                Ok(with_plan(e))
            }
            Err(e) => fall_back(
                format!("creating the job's cgroup failed: {e}"),
                "run 'guard doctor' to see what this system allows",
            )
            .map(with_plan),
        },
    }
}

/// Reaps children; records COMMAND's end; follows COMMAND into a terminal stop.
fn reap(child: i32, ended: &mut Option<Ended>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == child => {
                *ended = Some(Ended::Code(code))
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == child => {
                *ended = Some(Ended::Signal(sig as i32))
            }
            Ok(WaitStatus::Stopped(pid, sig)) if pid.as_raw() == child => {
                // COMMAND stopped for job control (Ctrl-Z, background tty access): stop guard
                // too, so the shell sees the whole job stopped; 'fg' sends SIGCONT to both.
                if matches!(sig, Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU) {
                    log::debug!("{} stopped by {sig:?}; stopping guard as well", child);
                    let _ = raise(Signal::SIGSTOP);
                }
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(e) => {
                log::debug!("waitpid: {e}");
                return;
            }
        }
    }
}

/// Run COMMAND under guard and return guard's exit status.
pub fn run(cfg: &WrapConfig) -> Result<i32, Fatal> {
    let mask = signals::handled();
    mask.thread_block()
        .map_err(|e| fatal(exit::GUARD_FAILED, format!("cannot block signals: {e}")))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| fatal(exit::GUARD_FAILED, format!("cannot create a signalfd: {e}")))?;
    // Orphaned descendants are re-parented to guard (reaped here; tracked by poll mode).
    // As PID 1 the kernel makes guard the reaper anyway; elsewhere --subreaper insists on it.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        if cfg.subreaper {
            return Err(fatal(
                exit::GUARD_FAILED,
                format!(
                    "--subreaper: cannot become a child subreaper (PR_SET_CHILD_SUBREAPER): {e}"
                ),
            ));
        }
        log::debug!("PR_SET_CHILD_SUBREAPER: {e}");
    }

    // --lock: taken before anything else, held (an open fd) until guard exits.
    let _lock = match &cfg.lock {
        Some(path) => match take_lock(path, cfg.lock_wait)? {
            Some(f) => Some(f),
            None => {
                let holder = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok())
                    .map(|p| format!(" (guard pid {p})"))
                    .unwrap_or_default();
                eprintln!(
                    "guard: {}: another run holds the lock {}{holder}{}; not started",
                    cfg.name,
                    path.display(),
                    cfg.lock_wait
                        .map(|w| format!(" (waited {})", format_duration(w)))
                        .unwrap_or_default()
                );
                return Ok(exit::LOCK_BUSY);
            }
        },
        None => None,
    };
    let sys = Sys::live();
    let (mut enforcer, plan) = enforce(cfg, &sys)?;
    // Observe mode: no cgroup of our own, but the container's (guard's own cgroup) has a limit
    // we can read: capture before the runtime's OOM killer acts.
    let observe = match &enforcer {
        Enforcer::Poll(_) => Layout::read(&sys)
            .ok()
            .and_then(|l| l.own_memory_limit())
            .map(|(dir, file, limit)| evidence::Observe::new(dir, file, limit, cfg.capture_at)),
        _ => None,
    };
    if let Some(o) = &observe {
        log::info!(
            "observe mode: {} has a memory limit of {}; a bundle at {} ({}%)",
            o.dir.display(),
            format_size(o.limit),
            format_size(o.at),
            cfg.capture_at
        );
    }
    let limit_text = cfg
        .memory
        .map(format_size)
        .unwrap_or_else(|| "none".to_string());
    match enforcer.dir() {
        Some(d) => log::info!(
            "mode {}, cgroup {}, memory limit {limit_text}",
            enforcer.mode(),
            d.display()
        ),
        None => log::info!("mode {}, memory limit {limit_text}", enforcer.mode()),
    }
    if cfg.memory.is_some() && cfg.swap > 0 && !enforcer.swap_limited() {
        log::warn!(
            "--swap {} cannot be applied: this kernel has no swap accounting for cgroups \
             (boot with swapaccount=1 on cgroup v1); only --memory is enforced",
            format_size(cfg.swap)
        );
    }

    let started = Instant::now();
    let started_wall = std::time::SystemTime::now();
    let mut recorder = Recorder::new(cfg, &sys.proc, started);
    recorder.observe = observe;
    // --quiet: the job writes into pipes guard reads (printed only if the job fails).
    let (mut capture, capture_w) = if cfg.quiet {
        let (c, w_out, w_err) = output::Capture::new().map_err(|e| {
            fatal(
                exit::GUARD_FAILED,
                format!("--quiet: cannot create pipes: {e}"),
            )
        })?;
        (Some(c), Some((w_out, w_err)))
    } else {
        (None, None)
    };
    // Without --quiet: the output tail of streams that are pipes already, passed through as is.
    let (tee, tee_out, tee_err) = if cfg.quiet {
        (None, None, None)
    } else {
        match output::Tee::start() {
            Ok((t, o, e)) => (Some(t), o, e),
            Err(e) => {
                log::debug!("no output tail: {e}");
                (None, None, None)
            }
        }
    };
    let stdio = match &capture_w {
        Some((o, e)) => (Some(o), Some(e)),
        None => (tee_out.as_ref(), tee_err.as_ref()),
    };
    let child = match spawn::spawn(&cfg.command, &enforcer.attach_fds(), stdio, cfg.pgroup) {
        Ok(pid) => pid,
        Err(spawn::SpawnError::Attach(e)) if !cfg.require_cgroup => {
            let dir = enforcer
                .dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            log::warn!(
                "cannot move the job into {dir} ({e}); falling back to best-effort poll mode (see 'guard doctor')"
            );
            let _ = enforcer.remove();
            enforcer = Enforcer::poll(&Proc::at(&sys.proc));
            spawn::spawn(&cfg.command, &[], stdio, cfg.pgroup).map_err(|e| spawn_fatal(cfg, e))?
        }
        Err(e) => {
            let _ = enforcer.remove();
            return Err(spawn_fatal(cfg, e));
        }
    };
    drop(capture_w); // the job holds the write ends now: EOF when it and its children are gone
    drop(tee_out);
    drop(tee_err);
    // --ping URL/start on a thread of its own: a slow or dead endpoint never delays the job.
    let start_ping = cfg
        .ping
        .clone()
        .map(|url| std::thread::spawn(move || alert::ping(&url, "/start", "")));
    log::debug!(
        "started {} as pid {child}",
        cfg.command[0].to_string_lossy()
    );
    enforcer.arm_events();
    recorder.after_spawn(child);
    if let Some(path) = &cfg.metrics_file {
        if let Err(e) = crate::metrics::check(path) {
            log::warn!(
                "--metrics-file {}: {e}; the job runs, but its metrics will not be written",
                path.display()
            );
        }
    }
    let mut prepare_at = Some(Instant::now() + SENTINEL_AFTER);
    // The sentinel is forked only once the job has run for SENTINEL_AFTER: most of a short job's
    // cost would be this fork. Should guard be killed before that, the job still gets its
    // parent-death signal and the next guard run removes the cgroup.
    let mut sentinel: Option<sentinel::Sentinel> = None;
    let mut sentinel_at = enforcer.dir().map(|_| Instant::now() + SENTINEL_AFTER);

    let session_leader = nix::unistd::getsid(None).is_ok_and(|s| s == nix::unistd::getpid());
    let mut ended: Option<Ended> = None;
    let mut memory_killed = false;
    let mut bundle: Option<Result<evidence::Pending, String>> = None;
    let mut held_peak: Option<u64> = None;
    let mut timeout_at = cfg.timeout.map(|t| started + t);
    let mut timed_out = false;
    let mut pending_alerts: Vec<PendingAlert> = Vec::new();
    let mut kill_deadline: Option<Instant> = None;
    let mut recheck_until: Option<Instant> = None;
    let poll_cap = match &enforcer {
        Enforcer::Poll(_) => cfg.memory,
        _ => None,
    };
    // The sampler: the evidence timeline and warnings, and poll mode's enforcement.
    let base_interval = cfg.evidence.sample_interval;
    let mut sample_every = base_interval;
    let mut last_usage: Option<u64> = None;
    let sampling = recorder.enabled() || poll_cap.is_some();
    let mut next_sample = Instant::now() + sample_every;

    while ended.is_none() {
        let now = Instant::now();
        let mut wait = Duration::from_secs(3600);
        if sampling && !memory_killed {
            wait = wait.min(next_sample.saturating_duration_since(now));
        }
        if let Some(d) = kill_deadline {
            wait = wait.min(d.saturating_duration_since(now));
        }
        if recheck_until.is_some() {
            wait = wait.min(RECHECK_EVERY);
        }
        if let Some(at) = sentinel_at {
            wait = wait.min(at.saturating_duration_since(now));
        }
        if let Some(at) = prepare_at {
            wait = wait.min(at.saturating_duration_since(now));
        }
        if let Some(at) = timeout_at {
            wait = wait.min(at.saturating_duration_since(now));
        }
        // Rounded up: a deadline 0.4 ms away must not turn into a 0 ms poll, spinning the loop
        // until the deadline passes.
        let ms = wait.as_micros().div_ceil(1000);
        let timeout =
            PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        let (sig_ready, ev_ready, out_ready) = {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            let ev_idx = enforcer.event_fd().map(|(fd, flags)| {
                fds.push(PollFd::new(fd, flags));
                fds.len() - 1
            });
            let out_from = fds.len();
            if let Some(c) = &capture {
                fds.extend(
                    c.fds()
                        .into_iter()
                        .map(|f| PollFd::new(f, PollFlags::POLLIN)),
                );
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(fatal(exit::GUARD_FAILED, format!("poll: {e}"))),
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            (
                ready(0),
                ev_idx.is_some_and(ready),
                (out_from..fds.len()).any(ready),
            )
        };
        if out_ready {
            if let Some(c) = &mut capture {
                c.read_ready();
            }
        }

        if sig_ready {
            while let Ok(Some(si)) = sfd.read_signal() {
                match signals::classify(
                    si.ssi_signo as i32,
                    si.ssi_code,
                    session_leader,
                    cfg.pgroup,
                ) {
                    Action::Reap => reap(child, &mut ended),
                    Action::Forward(sig) => {
                        // --pgroup: to the job's whole process group (-pgid), as tini -g does.
                        let target = if cfg.pgroup { -child } else { child };
                        log::debug!("forwarding {sig:?} to {target}");
                        let _ = kill(Pid::from_raw(target), sig);
                        if signals::TERMINATING.contains(&sig) && kill_deadline.is_none() {
                            kill_deadline = Some(Instant::now() + cfg.kill_after);
                        }
                    }
                    Action::AlreadyDelivered(sig) => {
                        log::debug!("{sig:?} from the terminal reached the job directly")
                    }
                    Action::Ignore => {}
                }
            }
        }
        if ev_ready {
            enforcer.drain_event();
            recheck_until = Some(Instant::now() + RECHECK_FOR);
        }
        if let Some(until) = recheck_until {
            // Without --memory there is no cap of guard's to be at: a memory event then comes
            // from an ancestor's limit, and the kernel's OOM killer decides (see kernel_oom).
            let capped = cfg.memory.is_some();
            // The trigger: the memory event whose check finds the job at its cap. (On v2 a
            // `high` event also fires when reclaim brings usage back under memory.high; the
            // job reaches its cap at a later event or re-check, and that is when it counts.)
            let checked_at = Instant::now();
            if !memory_killed && capped && enforcer.at_cap() {
                // The kernel is holding the job at its cap: freeze it, keep the evidence, then
                // kill it whole.
                bundle = Some(hold_capture_kill(
                    &mut enforcer,
                    &mut recorder,
                    checked_at,
                    &mut held_peak,
                ));
                memory_killed = true;
                recheck_until = None;
            } else if !memory_killed && capped && enforcer.verdict().killed() {
                // The kernel's OOM killer acted (a burst through the headroom, or no hold on
                // this kernel): keep what is left to see, and finish the job as a whole.
                memory_killed = true;
                bundle = Some(post_mortem(
                    &mut enforcer,
                    &mut recorder,
                    Trigger::MemoryLimit,
                ));
                enforcer.kill_all();
                recheck_until = None;
            } else if Instant::now() >= until {
                recheck_until = None;
            }
        }
        if sampling && !memory_killed && Instant::now() >= next_sample {
            let mut observe_usage: Option<u64> = None;
            let usage = recorder.sample(&mut enforcer);
            // While the job's memory is flat the sampler relaxes (doubling up to IDLE_INTERVAL):
            // on a cgroup the kernel's events, not the sampler, catch the cap, and an idle
            // job's timeline needs no 100 ms resolution. Any movement restores the interval.
            // Poll mode enforces by sampling and never relaxes.
            let flat =
                matches!((usage, last_usage), (Some(u), Some(l)) if u.abs_diff(l) < FLAT_BYTES);
            sample_every = if flat && poll_cap.is_none() {
                (sample_every * 2).min(IDLE_INTERVAL.max(base_interval))
            } else {
                base_interval
            };
            last_usage = usage;
            next_sample = Instant::now() + sample_every;
            match (usage, poll_cap) {
                (Some(u), Some(cap)) if u > cap => {
                    memory_killed = true;
                    bundle = Some(hold_capture_kill(
                        &mut enforcer,
                        &mut recorder,
                        Instant::now(),
                        &mut held_peak,
                    ));
                }
                _ if recorder.enabled()
                    && recorder.observe.as_mut().is_some_and(|o| {
                        observe_usage = o.due();
                        observe_usage.is_some()
                    }) =>
                {
                    let u = observe_usage.unwrap_or_default();
                    observe_capture(
                        cfg,
                        &mut enforcer,
                        &mut recorder,
                        child,
                        u,
                        &mut pending_alerts,
                    );
                }
                (Some(u), _) if recorder.enabled() && recorder.warn_due(u, &enforcer) => {
                    warn_capture(cfg, &enforcer, &mut recorder, child, u, &mut pending_alerts);
                }
                _ => {}
            }
        }
        if prepare_at.is_some_and(|at| ended.is_none() && Instant::now() >= at) {
            prepare_at = None;
            enforcer.prepare_hold();
            recorder.prepare(&enforcer);
            crate::cgroup::cleanup_stale(&plan, &sys.proc);
        }
        if sentinel_at.is_some_and(|at| ended.is_none() && Instant::now() >= at) {
            sentinel_at = None;
            if cfg.memory.is_some() {
                protect_self();
            }
            sentinel = sentinel::start(enforcer.dirs());
        }
        if timeout_at.is_some_and(|at| ended.is_none() && !memory_killed && Instant::now() >= at) {
            // Out of time: keep the evidence of the (possibly hung) job first, then SIGTERM it
            // and kill the whole job --kill-after later.
            timeout_at = None;
            timed_out = true;
            bundle = Some(timeout_capture(&mut enforcer, &mut recorder));
            log::debug!("{} (pid {child}) out of time; sending SIGTERM", cfg.name);
            let _ = kill(Pid::from_raw(child), Signal::SIGTERM);
            if kill_deadline.is_none() {
                kill_deadline = Some(Instant::now() + cfg.kill_after);
            }
        }
        if let Some(d) = kill_deadline {
            if ended.is_none() && Instant::now() >= d {
                log::warn!(
                    "{} (pid {child}) still running {} after a terminating signal; killing the job",
                    cfg.name,
                    format_duration(cfg.kill_after)
                );
                enforcer.kill_all();
                kill_deadline = None;
            }
        }
    }

    if !memory_killed && cfg.memory.is_some() && enforcer.verdict().killed() {
        memory_killed = true;
        bundle = Some(post_mortem(
            &mut enforcer,
            &mut recorder,
            Trigger::MemoryLimit,
        ));
    }
    // Killed by SIGKILL with the kernel's OOM killer active (no cap of guard's, or an ancestor's
    // limit, or the whole host short of memory): record what is left, as a post-mortem.
    let kernel_oom = !memory_killed
        && matches!(ended, Some(Ended::Signal(9)))
        && (enforcer.verdict().oom_kills > 0 || recorder.kernel_oom_since_start());
    if kernel_oom {
        bundle = Some(post_mortem(
            &mut enforcer,
            &mut recorder,
            Trigger::KernelOom,
        ));
    }
    // Read only when something will report it (one file read less on a short job's path).
    let peak = if memory_killed || bundle.is_some() || cfg.metrics_file.is_some() {
        held_peak.or_else(|| enforcer.peak())
    } else {
        None
    };
    let metrics_peak = peak.or_else(|| recorder.timeline.max_job_bytes());
    if memory_killed {
        enforcer.kill_all();
    } else {
        finish_leftovers(cfg, &enforcer, &sfd, child);
    }
    if let Err(e) = enforcer.remove() {
        log::warn!("{e}; the next guard run removes it");
    }
    // Every process of the job is gone: read what is left in the pipes (a writer that escaped
    // the job, e.g. with setsid into another cgroup in poll mode, gets a moment, not forever).
    if let Some(c) = &mut capture {
        c.drain(Instant::now() + Duration::from_secs(1));
        if let Some(lost) = c.lost() {
            log::warn!("--quiet: output past 4 MiB could not be kept ({lost})");
        }
    }
    let output_tail = match (&capture, tee) {
        (Some(c), _) => Some(c.tail()),
        (None, Some(t)) => {
            Some(t.finish(Instant::now() + Duration::from_secs(1))).filter(|t| !t.is_empty())
        }
        (None, None) => None,
    };
    drop(sentinel);

    let exit_info = match ended {
        Some(Ended::Code(c)) => Some(ExitInfo {
            code: Some(c),
            signal: None,
        }),
        Some(Ended::Signal(s)) => Some(ExitInfo {
            code: None,
            signal: Some(s),
        }),
        None => None,
    };
    let evidence = match bundle {
        Some(Ok(p)) => recorder.finish(p, exit_info, true, peak, output_tail.as_deref()),
        Some(Err(e)) => Err(e),
        None => Err(recorder
            .dir
            .clone()
            .err()
            .unwrap_or_else(|| "no capture was made".into())),
    };
    let evidence_text = match &evidence {
        Ok(p) => format!("evidence: {}", p.display()),
        Err(why) => format!("no evidence: {why}"),
    };
    // --quiet: the job's output is printed only when it failed (before guard's own line, so
    // that line ends the mail cron sends).
    let failed = memory_killed || timed_out || kernel_oom || !matches!(ended, Some(Ended::Code(0)));
    if failed {
        if let Some(c) = &mut capture {
            c.replay();
        }
    }
    let status = if timed_out && !memory_killed {
        eprintln!(
            "guard: {} (pid {child}) exceeded its time limit {}; terminated; {evidence_text}",
            cfg.name,
            cfg.timeout.map(format_duration).unwrap_or_default()
        );
        exit::TIMEOUT
    } else if memory_killed {
        let peak = peak.map(format_size).unwrap_or_else(|| "unknown".into());
        eprintln!(
            "guard: {} (pid {child}) exceeded its memory limit {limit_text} (peak {peak}); killed; {evidence_text}",
            cfg.name
        );
        exit::MEMORY_KILL
    } else {
        if kernel_oom {
            eprintln!(
                "guard: {} (pid {child}) was killed by the kernel's OOM killer (not by guard's cap); {evidence_text}",
                cfg.name
            );
        }
        match ended {
            Some(Ended::Code(c)) => exit::from_child(Some(c), None),
            Some(Ended::Signal(s)) => exit::from_child(None, Some(s)),
            None => exit::GUARD_FAILED,
        }
    };
    // Tell people: the event this run ended with (its bundle named), then the warnings still
    // on their way. All after the kill: delivery never delays enforcement.
    let bundle_path = evidence.as_ref().ok().map(|p| p.as_path());
    let ending = if memory_killed {
        Some(EventKind::MemoryLimit)
    } else if timed_out {
        Some(EventKind::Timeout)
    } else if kernel_oom {
        Some(EventKind::KernelOom)
    } else if status != 0 {
        Some(EventKind::Failed)
    } else {
        None
    };
    if let Some(name) = ending {
        let mut ev = alert_event(cfg, child, name, bundle_path, peak, Some(status));
        ev.output_tail = output_tail
            .as_ref()
            .map(|t| String::from_utf8_lossy(t).into_owned());
        send_alert(cfg, &ev, bundle_path);
    }
    for p in pending_alerts {
        let results = p.handle.join().unwrap_or_default();
        finish_alert(&p.event, p.bundle.as_deref(), &results);
    }
    if let Some(url) = &cfg.ping {
        let mut results = Vec::new();
        if let Some(h) = start_ping {
            results.extend(h.join().ok());
        }
        let (suffix, body) = if status == 0 {
            ("", String::new())
        } else {
            // healthchecks keeps the first 10 KB of a ping body: the end of the output matters.
            let tail = output_tail
                .as_deref()
                .map(|t| {
                    let t = String::from_utf8_lossy(t);
                    let n = t.chars().count();
                    t.chars().skip(n.saturating_sub(9000)).collect::<String>()
                })
                .unwrap_or_default();
            (
                "/fail",
                format!(
                    "guard: {} exited with status {status}; {evidence_text}\n{tail}",
                    cfg.name
                ),
            )
        };
        results.push(alert::ping(url, suffix, &body));
        for r in results.iter().filter(|r| r.status != Status::Ok) {
            log::warn!(
                "{} failed after {} attempt(s): {}; the job's result is unchanged",
                r.sink,
                r.attempts,
                r.detail
            );
        }
    }
    if let Some(path) = &cfg.metrics_file {
        let outcome = crate::metrics::Outcome {
            job: cfg.name.clone(),
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            started_unix: started_wall
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            duration_s: started.elapsed().as_secs_f64(),
            exit_code: status,
            peak_bytes: metrics_peak,
            limit_bytes: cfg.memory,
            ending,
        };
        if let Err(e) = crate::metrics::write(path, &outcome) {
            log::warn!("metrics not written: {e}; the job's result is unchanged");
        }
    }
    Ok(status)
}

/// Keep guard (and the sentinel forked next) working while a job is held at its cap and the host
/// may be short of memory: lock guard's pages in RAM, and take it out of the OOM killer's reach
/// when root. Done once the job has run a moment (not on a short job's path); the job itself
/// started before, with the oom_score_adj it had. Failures only cost the protection.
fn protect_self() {
    // MCL_ONFAULT: lock the pages guard has touched and every page it touches from now on, but
    // do not fault in the rest of its 5 MB binary (TLS, compression and report code that a run
    // may never use): that kept 5.6 MiB resident and locked for every guard.
    // SAFETY: mlockall takes flags only; it does not touch memory we own.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if rc != 0 {
        // Kernels before 4.4 have no MCL_ONFAULT (EINVAL): lock everything instead.
        if let Err(e) = nix::sys::mman::mlockall(
            nix::sys::mman::MlockAllFlags::MCL_CURRENT | nix::sys::mman::MlockAllFlags::MCL_FUTURE,
        ) {
            log::debug!("mlockall: {e} (guard's pages stay swappable)");
        }
    }
    if nix::unistd::geteuid().is_root() {
        if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
            log::debug!("oom_score_adj: {e}");
        }
    }
}

/// At the cap: hold the job (freeze / stop), capture the evidence while it is held, then kill it
/// whole. `trigger` is when guard learnt of the cap.
fn hold_capture_kill(
    enforcer: &mut Enforcer,
    recorder: &mut Recorder,
    trigger: Instant,
    peak: &mut Option<u64>,
) -> Result<evidence::Pending, String> {
    let result = held_capture(
        enforcer,
        recorder,
        Trigger::MemoryLimit,
        trigger,
        None,
        |e| {
            // The peak as the job reached it (--core raises the limit a little for gcore afterwards).
            *peak = e.peak();
        },
    );
    log::debug!(
        "captured the evidence {:.1} ms after the memory event; killing the job",
        trigger.elapsed().as_secs_f64() * 1000.0
    );
    enforcer.kill_all();
    result
}

/// Hold the job (freeze / stop), run `after_hold`, and capture a full bundle for `trigger`
/// (`since`: when guard learnt of it; `usage`: the figure to record, else the job's own sample).
/// The caller decides what follows: kill, or let the job run again.
fn held_capture(
    enforcer: &mut Enforcer,
    recorder: &mut Recorder,
    trigger: Trigger,
    since: Instant,
    usage: Option<u64>,
    after_hold: impl FnOnce(&Enforcer),
) -> Result<evidence::Pending, String> {
    // The kernel's OOM killer can still act on a job guard holds: tasks asleep inside the kernel
    // (a memory.high throttle in the middle of a page fault) go on charging when they wake, past
    // memory.max. Its kill counter, from before the hold, tells whether it did.
    let kills_at_hold = enforcer.verdict().oom_kills;
    let held = enforcer.hold();
    after_hold(enforcer);
    let ms = since.elapsed().as_secs_f64() * 1000.0;
    // The memory-limit wording is the one -vv has always printed (tests and people read it).
    let (at, event) = match trigger {
        Trigger::MemoryLimit => ("at its cap ", "memory"),
        other => ("", other.kind().as_str()),
    };
    if held {
        log::debug!("held the job {at}{ms:.1} ms after the {event} event");
    } else {
        log::debug!(
            "could not confirm the hold {at}within its bound ({ms:.1} ms); capturing anyway"
        );
    }
    if !recorder.enabled() {
        return Err(recorder.dir.clone().err().unwrap_or_default());
    }
    // The last sample: the job as it stands, held.
    let sampled = recorder.sample_all(enforcer);
    // Killed during the hold or the capture: the bundle is a post-mortem one.
    let pre_kill = enforcer.verdict().oom_kills == kills_at_hold;
    let mut result = recorder.capture(
        enforcer,
        Occasion {
            trigger,
            pre_kill,
            held,
            trigger_to_frozen_ms: Some(ms),
            usage: usage.or(sampled),
        },
    );
    if pre_kill && enforcer.verdict().oom_kills > kills_at_hold {
        log::info!(
            "the kernel's OOM killer acted while guard held the job; the bundle is post-mortem"
        );
        if let Ok(p) = &mut result {
            p.mark_post_mortem();
        }
    }
    result
}

/// The job died before guard could hold it: keep what is left (cgroup counters, timeline, system).
fn post_mortem(
    enforcer: &mut Enforcer,
    recorder: &mut Recorder,
    trigger: Trigger,
) -> Result<evidence::Pending, String> {
    if !recorder.enabled() {
        return Err(recorder.dir.clone().err().unwrap_or_default());
    }
    let usage = recorder.timeline.last().map(|s| s.job_bytes);
    recorder.capture(
        enforcer,
        Occasion {
            trigger,
            pre_kill: false,
            held: false,
            trigger_to_frozen_ms: None,
            usage,
        },
    )
}

/// The job crossed its early-warning threshold: a light bundle (manifest, timeline, tree, stacks)
/// while it keeps running, and one warning line.
fn warn_capture(
    cfg: &WrapConfig,
    enforcer: &Enforcer,
    recorder: &mut Recorder,
    child: i32,
    usage: u64,
    alerts: &mut Vec<PendingAlert>,
) {
    let occ = Occasion {
        trigger: Trigger::Warning,
        pre_kill: true,
        held: false,
        trigger_to_frozen_ms: None,
        usage: Some(usage),
    };
    let r = recorder
        .capture(enforcer, occ)
        .and_then(|p| recorder.finish(p, None, false, None, None));
    let of_cap = cfg
        .memory
        .map(|m| format!(" of its {} limit", format_size(m)))
        .unwrap_or_default();
    let what = format!(
        "uses {}{of_cap}, past its warning threshold {}",
        format_size(usage),
        recorder.cfg.warn.map(format_size).unwrap_or_default()
    );
    announce_warning(cfg, child, usage, &what, r, alerts);
}

/// Observe mode: the container reached --capture-at of its own limit. Stop the job for the
/// snapshot (a full one: the runtime's OOM killer may come next), let it run again, say so.
fn observe_capture(
    cfg: &WrapConfig,
    enforcer: &mut Enforcer,
    recorder: &mut Recorder,
    child: i32,
    usage: u64,
    alerts: &mut Vec<PendingAlert>,
) {
    let r = held_capture(
        enforcer,
        recorder,
        Trigger::ContainerLimit,
        Instant::now(),
        Some(usage),
        |_| {},
    );
    enforcer.unhold();
    let r = r.and_then(|p| recorder.finish(p, None, false, None, None));
    let what = match &recorder.observe {
        Some(o) => format!(
            "is in a container at {} of its {} memory limit (--capture-at {}%): the runtime's OOM killer may be next",
            format_size(usage),
            format_size(o.limit),
            cfg.capture_at
        ),
        None => format!("uses {}", format_size(usage)),
    };
    announce_warning(cfg, child, usage, &what, r, alerts);
}

/// One warning line naming the bundle, and the warning alert on its own thread.
fn announce_warning(
    cfg: &WrapConfig,
    child: i32,
    usage: u64,
    what: &str,
    r: Result<std::path::PathBuf, String>,
    alerts: &mut Vec<PendingAlert>,
) {
    match &r {
        Ok(p) => log::warn!(
            "{} (pid {child}) {what}; evidence: {}",
            cfg.name,
            p.display()
        ),
        Err(e) => log::warn!("{} (pid {child}) {what}; no evidence: {e}", cfg.name),
    }
    // The job keeps running and guard keeps watching it: the warning is delivered on a thread
    // of its own, joined (bounded by the sinks' timeouts) when the job is over.
    if cfg.alerts.iter().any(|s| s.wants(EventKind::Warning)) {
        let bundle = r.ok();
        let ev = alert_event(
            cfg,
            child,
            EventKind::Warning,
            bundle.as_deref(),
            Some(usage),
            None,
        );
        let sinks = cfg.alerts.clone();
        let ev2 = ev.clone();
        let handle = std::thread::spawn(move || alert::deliver(&sinks, &ev2));
        alerts.push(PendingAlert {
            event: ev,
            bundle,
            handle,
        });
    }
}

/// `--timeout`: hold the job, capture its evidence (trigger `timeout`), let it run again.
fn timeout_capture(
    enforcer: &mut Enforcer,
    recorder: &mut Recorder,
) -> Result<evidence::Pending, String> {
    let result = held_capture(
        enforcer,
        recorder,
        Trigger::Timeout,
        Instant::now(),
        None,
        |_| {},
    );
    enforcer.unhold();
    result
}

/// Take the `--lock` file (flock, exclusive), waiting up to `wait`. `Ok(None)`: another run
/// holds it. The file records the holder's pid (for people; the lock itself is the flock).
fn take_lock(
    path: &std::path::Path,
    wait: Option<Duration>,
) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, Fatal> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = wait.map(|w| Instant::now() + w);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            fatal(
                exit::GUARD_FAILED,
                format!(
                    "cannot open the lock file {}: {e} (give --lock a path in a writable directory)",
                    path.display()
                ),
            )
        })?;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut l) => {
                let _ = l.set_len(0);
                let _ = writeln!(&mut *l, "{}", std::process::id());
                return Ok(Some(l));
            }
            Err((f, Errno::EWOULDBLOCK)) => {
                if deadline.is_none_or(|d| Instant::now() >= d) {
                    return Ok(None);
                }
                file = f;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, e)) => {
                return Err(fatal(
                    exit::GUARD_FAILED,
                    format!("cannot lock {}: {}", path.display(), e.desc()),
                ));
            }
        }
    }
}

/// A warning alert on its way.
struct PendingAlert {
    event: alert::Event,
    bundle: Option<std::path::PathBuf>,
    handle: std::thread::JoinHandle<Vec<alert::Delivery>>,
}

/// The event the alert sinks get.
fn alert_event(
    cfg: &WrapConfig,
    child: i32,
    event: EventKind,
    bundle: Option<&std::path::Path>,
    peak: Option<u64>,
    exit_code: Option<i32>,
) -> alert::Event {
    let m = bundle
        .and_then(|b| crate::report::Report::load(b).ok())
        .map(|r| r.manifest);
    let mut ev = alert::Event {
        event,
        job: cfg.name.clone(),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pid: child,
        command: m.as_ref().map(|m| m.command.clone()).unwrap_or_else(|| {
            cfg.command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        }),
        limit_bytes: cfg.memory,
        peak_bytes: peak.or(m.as_ref().and_then(|m| m.peak_bytes)),
        trigger: m.as_ref().map(|m| m.trigger),
        capture: m.as_ref().map(|m| m.capture),
        bundle: bundle.map(|b| b.display().to_string()),
        summary: String::new(),
        exit_code,
        guard_version: env!("CARGO_PKG_VERSION").into(),
        time: crate::format::rfc3339(std::time::SystemTime::now()),
        output_tail: None,
    };
    ev.summary = alert::sinks::summary(&ev);
    ev
}

/// Deliver `ev` now (the job is over), record the results in its bundle, say what failed.
fn send_alert(cfg: &WrapConfig, ev: &alert::Event, bundle: Option<&std::path::Path>) {
    if !cfg.alerts.iter().any(|s| s.wants(ev.event)) {
        return;
    }
    let results = alert::deliver(&cfg.alerts, ev);
    finish_alert(ev, bundle, &results);
}

fn finish_alert(ev: &alert::Event, bundle: Option<&std::path::Path>, results: &[alert::Delivery]) {
    alert::report_failures(results, ev);
    if let Some(b) = bundle {
        if let Err(e) = crate::evidence::record_alerts(b, results) {
            log::warn!("{e}");
        }
    }
}

/// COMMAND exited but left processes in the job: SIGTERM them, give them `--kill-after`, then
/// SIGKILL. guard keeps reaping meanwhile.
fn finish_leftovers(cfg: &WrapConfig, enforcer: &Enforcer, sfd: &SignalFd, child: i32) {
    let n = enforcer.signal_all(Signal::SIGTERM);
    if n == 0 {
        return;
    }
    log::info!(
        "{} exited and left {n} process(es) behind; sent SIGTERM, SIGKILL in {}",
        cfg.name,
        format_duration(cfg.kill_after)
    );
    let deadline = Instant::now() + cfg.kill_after;
    let mut ignored = None;
    while Instant::now() < deadline && enforcer.live_count() > 0 {
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(20u16));
        while let Ok(Some(_)) = sfd.read_signal() {}
        reap(child, &mut ignored);
    }
    if enforcer.live_count() > 0 {
        log::warn!(
            "processes left behind by {} ignored SIGTERM; killed them",
            cfg.name
        );
        enforcer.kill_all();
    }
    reap(child, &mut ignored);
}

fn spawn_fatal(cfg: &WrapConfig, e: spawn::SpawnError) -> Fatal {
    let cmd = cfg.command[0].to_string_lossy();
    match e {
        spawn::SpawnError::Exec(err) if err.kind() == std::io::ErrorKind::NotFound => fatal(
            exit::NOT_FOUND,
            format!("cannot run '{cmd}': command not found (check the name and PATH)"),
        ),
        spawn::SpawnError::Exec(err) => {
            fatal(exit::NOT_EXECUTABLE, format!("cannot run '{cmd}': {err}"))
        }
        spawn::SpawnError::Attach(err) => fatal(
            exit::GUARD_FAILED,
            format!("--require-cgroup: cannot move '{cmd}' into the job's cgroup: {err}"),
        ),
        spawn::SpawnError::Os(err) => {
            fatal(exit::GUARD_FAILED, format!("cannot start '{cmd}': {err}"))
        }
    }
}
