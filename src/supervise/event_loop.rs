//! The event loop: one synchronous loop, no async runtime. [`Supervisor`] holds the loop's state —
//! the enforcement, the evidence recorder, the job, the [`Deadlines`] — and has one method per
//! event: a signal, the child's exit, a memory event (and its re-checks), a sampler tick (the
//! timeline, poll mode's cap, observe mode, the warning), housekeeping, guard's protection, the timeout
//! and the kill-after deadline. [`Supervisor::step`] applies what one wake-up brought, in that
//! order; [`Supervisor::run`] waits and steps until COMMAND exits.
//!
//! The world outside is behind three seams so that the decisions have unit tests without root:
//! [`Enforce`] (the cgroup), [`Job`] (signals to and the end of COMMAND) and [`Wait`] (the
//! signalfd, the memory event fd and the job's output).

// The handlers of a hold's events continue `impl Supervisor` in hold.rs (see there why the two
// files import each other).
use super::Fatal;
use super::capture;
use super::hold::Hold;
use super::notify::{self, PendingAlert};
use super::output;
use super::prepare::protect_self;
use super::sentinel::{Sentinel, StoodDown};
use super::signals::{self, Action};
use super::verdict::{Ended, Verdict};
use crate::cgroup::detect::Plan;
use crate::cgroup::{self, Enforce};
use crate::config::WrapConfig;
use crate::config::exit;
use crate::config::units::format_duration;
use crate::evidence::sampler::Escapee;
use crate::evidence::{EvidenceError, Pending, Recorder, Trigger};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, raise};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// After a memory event whose verdict is not in yet, re-check the counters this often, this long.
pub const RECHECK_EVERY: Duration = Duration::from_millis(10);
pub const RECHECK_FOR: Duration = Duration::from_millis(300);
/// The sampler's longest interval while the job's memory is flat, and what counts as flat.
const IDLE_INTERVAL: Duration = Duration::from_secs(1);
const FLAT_BYTES: u64 = 1 << 20;
/// When housekeeping and guard's protection come (a shorter job never pays for them).
pub const HOUSEKEEPING_AFTER: Duration = Duration::from_millis(20);
/// The longest the loop sleeps with nothing due.
const IDLE_WAIT: Duration = Duration::from_secs(3600);
/// Once guard has killed the job it kills again this often, and stops waiting for it after
/// KILL_WAIT: a process stuck in the kernel must not hang guard.
const RE_KILL: Duration = Duration::from_secs(1);
pub const KILL_WAIT: Duration = Duration::from_secs(10);
/// What processes COMMAND left behind get between SIGTERM and SIGKILL unless --kill-after says
/// otherwise: guard ends within a second of COMMAND.
pub const LEFTOVER_GRACE: Duration = Duration::from_millis(500);
/// After the job's last process was reaped, how long its cgroup may take to empty (the kernel
/// finishes an exit after the parent is told of it) even when KILL_WAIT is nearly over.
const LAST_EXIT: Duration = Duration::from_millis(200);

/// A signal as guard's signalfd read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    pub signo: i32,
    /// si_code: SI_USER (kill), SI_KERNEL (the terminal), SI_QUEUE (`guard kill`), ...
    pub code: i32,
    /// The sender, as the kernel (or, for a queued signal, the sender) gave it.
    pub pid: u32,
    pub uid: u32,
    /// A queued signal's value ([`crate::supervise::register::KILL_VALUE`] from `guard kill`).
    pub value: i32,
}

#[cfg(test)]
impl Received {
    pub fn new(signo: i32, code: i32) -> Received {
        Received {
            signo,
            code,
            ..Received::default()
        }
    }
}

/// What one wake-up of the loop brought.
#[derive(Debug, Default)]
pub struct Ready {
    /// Each signal read from the signalfd, in order.
    pub signals: Vec<Received>,
    /// The enforcement's memory event fd was ready.
    pub memory_event: bool,
}

/// Waiting for the next wake-up.
pub trait Wait {
    /// Wait up to `timeout` for a signal, a memory event on `event`, or the job's output; read
    /// what came.
    fn wait(
        &mut self,
        event: Option<(BorrowedFd<'_>, PollFlags)>,
        timeout: Duration,
    ) -> Result<Ready, Fatal>;
}

/// COMMAND, as the loop sees it.
pub trait Job {
    fn pid(&self) -> i32;
    /// Forward `sig` (to the job's process group with --pgroup).
    fn forward(&self, sig: Signal);
    /// --timeout's signal (--signal, SIGTERM by default) to COMMAND itself.
    fn terminate(&self, sig: Signal);
    /// Reap children; COMMAND's end once it ended.
    fn reap(&mut self) -> Option<Ended>;
}

/// The real waiting: guard's signalfd (every handled signal is blocked and read from it), the
/// memory event fd, and with --quiet the job's output pipes.
pub struct Io {
    sfd: SignalFd,
    pub capture: Option<output::Capture>,
}

impl Io {
    /// Block the signals guard handles and read them from a signalfd from now on; become a child
    /// subreaper (orphaned descendants are re-parented to guard and reaped here; as PID 1 the
    /// kernel makes guard the reaper anyway, elsewhere --subreaper insists on it).
    pub fn take_signals(cfg: &WrapConfig) -> Result<Io, Fatal> {
        let mask = signals::handled();
        mask.thread_block()
            .map_err(|e| Fatal::new(exit::GUARD_FAILED, format!("cannot block signals: {e}")))?;
        let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| {
                Fatal::new(exit::GUARD_FAILED, format!("cannot create a signalfd: {e}"))
            })?;
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            if cfg.subreaper {
                return Err(Fatal::new(
                    exit::GUARD_FAILED,
                    format!(
                        "--subreaper: cannot become a child subreaper (PR_SET_CHILD_SUBREAPER): {e}"
                    ),
                ));
            }
            log::debug!("PR_SET_CHILD_SUBREAPER: {e}");
        }
        Ok(Io { sfd, capture: None })
    }
}

impl Wait for Io {
    fn wait(
        &mut self,
        event: Option<(BorrowedFd<'_>, PollFlags)>,
        timeout: Duration,
    ) -> Result<Ready, Fatal> {
        // Rounded up: a deadline 0.4 ms away must not turn into a 0 ms poll, spinning the loop
        // until the deadline passes.
        let ms = timeout.as_micros().div_ceil(1000);
        let timeout = PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX))
            .unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN)];
        let ev_idx = event.map(|(fd, flags)| {
            fds.push(PollFd::new(fd, flags));
            fds.len() - 1
        });
        let out_from = fds.len();
        if let Some(c) = &self.capture {
            fds.extend(
                c.fds()
                    .into_iter()
                    .map(|f| PollFd::new(f, PollFlags::POLLIN)),
            );
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Ready::default()),
            Err(e) => return Err(Fatal::new(exit::GUARD_FAILED, format!("poll: {e}"))),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, memory_event) = (ready(0), ev_idx.is_some_and(ready));
        let out_ready = (out_from..fds.len()).any(ready);
        drop(fds);
        if out_ready {
            if let Some(c) = &mut self.capture {
                c.read_ready();
            }
        }
        let mut signals = Vec::new();
        if sig_ready {
            while let Ok(Some(si)) = self.sfd.read_signal() {
                signals.push(Received {
                    signo: si.ssi_signo as i32,
                    code: si.ssi_code,
                    pid: si.ssi_pid,
                    uid: si.ssi_uid,
                    value: si.ssi_int,
                });
            }
        }
        Ok(Ready {
            signals,
            memory_event,
        })
    }
}

/// The job's main process, a child of guard.
pub struct Child {
    pid: i32,
    /// --pgroup: signals go to its whole process group.
    pgroup: bool,
    /// --pgroup at a terminal: the terminal whose foreground the job's group holds.
    tty: Option<std::os::fd::RawFd>,
}

impl Child {
    pub fn new(pid: i32, group: super::spawn::Group) -> Child {
        Child {
            pid,
            pgroup: group.own,
            tty: group.tty,
        }
    }
}

impl Job for Child {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn forward(&self, sig: Signal) {
        // --pgroup: to the job's whole process group (-pgid), as tini -g does.
        let target = if self.pgroup { -self.pid } else { self.pid };
        // Continued in the foreground (the shell's fg gave it to guard's group): the job's group
        // takes the terminal again before it runs.
        if let (Signal::SIGCONT, Some(tty)) = (sig, self.tty) {
            super::terminal::give(tty, self.pid);
        }
        log::debug!("forwarding {sig:?} to {target}");
        let _ = kill(Pid::from_raw(target), sig);
    }

    fn terminate(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid), sig);
    }

    /// Reaps every child of this thread that ended — COMMAND, orphans handed to guard as
    /// subreaper or PID 1 — and follows COMMAND into a terminal stop. Not the children of
    /// guard's other threads (`__WNOTHREAD`): an alert's exec hook is waited for by the thread
    /// that runs it, which would otherwise find its exit status taken and report a hook that
    /// took 5 ms as out of time.
    fn reap(&mut self) -> Option<Ended> {
        let mut ended = None;
        let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED | WaitPidFlag::__WNOTHREAD;
        loop {
            match waitpid(None, Some(flags)) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == self.pid => {
                    ended = Some(Ended::Code(code))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == self.pid => {
                    ended = Some(Ended::Signal(sig as i32))
                }
                Ok(WaitStatus::Stopped(pid, sig)) if pid.as_raw() == self.pid => {
                    // COMMAND stopped for job control (Ctrl-Z, background tty access): stop
                    // guard too, so the shell sees the whole job stopped; 'fg' sends SIGCONT to
                    // both.
                    if matches!(sig, Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU) {
                        log::debug!("{} stopped by {sig:?}; stopping guard as well", self.pid);
                        let _ = raise(Signal::SIGSTOP);
                    }
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => {
                    if let (Some(_), Some(tty)) = (ended, self.tty) {
                        super::terminal::take_back(tty, self.pid);
                    }
                    return ended;
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    log::debug!("waitpid: {e}");
                    return ended;
                }
            }
        }
    }
}

/// Every deadline of the loop, in one place.
#[derive(Debug, Default, Clone)]
pub struct Deadlines {
    /// The next timeline sample (None: not sampling, or the job was killed).
    pub sample: Option<Instant>,
    /// The end of the re-check window after a memory event (checked every RECHECK_EVERY).
    pub recheck_until: Option<Instant>,
    /// Housekeeping 20 ms into the job: the v1 freezer leaf, the evidence directory, stale cgroups.
    pub housekeeping: Option<Instant>,
    /// guard's own protection (mlockall, oom_score_adj), 20 ms into a capped job with a cgroup.
    pub protect: Option<Instant>,
    /// --timeout.
    pub timeout: Option<Instant>,
    /// --kill-after, counting from a forwarded terminating signal or the timeout's SIGTERM; once
    /// guard has killed the job, the next kill.
    pub kill_after: Option<Instant>,
    /// Once guard has killed the job: when it stops waiting for it to end.
    pub give_up: Option<Instant>,
    /// --hold-for: when the hold ends, and the next look at the held job's memory.
    pub hold_until: Option<Instant>,
    pub hold_check: Option<Instant>,
    /// --thrash-after: the next look at the job's faults at its cap.
    pub thrash_check: Option<Instant>,
}

impl Deadlines {
    /// How long the loop may sleep from `now`: until the earliest deadline, RECHECK_EVERY while
    /// a re-check window is open, and never more than IDLE_WAIT.
    pub fn wait(&self, now: Instant) -> Duration {
        let until = |d: Option<Instant>| d.map(|at| at.saturating_duration_since(now));
        [
            until(self.sample),
            until(self.housekeeping),
            until(self.protect),
            until(self.timeout),
            until(self.kill_after),
            until(self.give_up),
            until(self.hold_until),
            until(self.hold_check),
            until(self.thrash_check),
            self.recheck_until.map(|_| RECHECK_EVERY),
        ]
        .into_iter()
        .flatten()
        .fold(IDLE_WAIT, Duration::min)
    }
}

/// `d` has come.
fn due(d: Option<Instant>, now: Instant) -> bool {
    d.is_some_and(|at| now >= at)
}

/// The sampler's pace: the configured interval, relaxed (doubling up to IDLE_INTERVAL) while
/// the job's memory is flat; poll mode enforces by sampling and never relaxes.
#[derive(Debug)]
struct Pace {
    base: Duration,
    every: Duration,
    last_usage: Option<u64>,
}

impl Pace {
    fn next(&mut self, usage: Option<u64>, enforcing: bool) -> Duration {
        let flat =
            matches!((usage, self.last_usage), (Some(u), Some(l)) if u.abs_diff(l) < FLAT_BYTES);
        self.every = if flat && !enforcing {
            (self.every * 2).min(IDLE_INTERVAL.max(self.base))
        } else {
            self.base
        };
        self.last_usage = usage;
        self.every
    }
}

/// What is left of a run once the job and its cgroup are gone.
pub struct Remains {
    pub recorder: Recorder,
    pub bundle: Option<Result<Pending, EvidenceError>>,
    /// --hold-for: the hold, whose bundle was finished as it began.
    pub hold: Option<Hold>,
    pub pending: Vec<PendingAlert>,
    /// The sentinel, told to stand down; reaped when this is dropped, at the end of the run.
    pub sentinel: Option<StoodDown>,
}

impl Remains {
    /// Complete the run's bundle with how the job ended, its peak and its output tail, and move
    /// it into place; or say why there is none.
    pub fn finish_bundle(
        &mut self,
        ended: Option<Ended>,
        peak: Option<u64>,
        tail: Option<&[u8]>,
    ) -> Result<PathBuf, EvidenceError> {
        if let Some(h) = self.hold.take() {
            let tail = tail.map(|t| self.recorder.scrubber().scrub(t));
            return h.finish(ended.map(Ended::exit_info), tail);
        }
        match self.bundle.take() {
            Some(Ok(p)) => self
                .recorder
                .finish(p, ended.map(Ended::exit_info), true, peak, tail),
            Some(Err(e)) => Err(e),
            None => Err(self.recorder.why_none()),
        }
    }

    /// How the kill line says guard killed the job at its cap.
    pub fn killed_text(&self) -> String {
        self.hold
            .as_ref()
            .map_or_else(|| "killed".to_string(), Hold::killed_text)
    }
}

/// The loop's state for one run.
pub struct Supervisor<'c, E: Enforce, J: Job> {
    pub(super) cfg: &'c WrapConfig,
    pub enforcer: E,
    pub recorder: Recorder,
    pub job: J,
    /// Where the job's cgroup went, and /proc: for the stale-cgroup cleanup.
    plan: Plan,
    proc_root: PathBuf,
    pub at: Deadlines,
    pace: Pace,
    /// Poll mode: the cap guard enforces by sampling.
    poll_cap: Option<u64>,
    /// guard leads its session (a terminal hangup's SIGHUP was sent to guard alone).
    session_leader: bool,
    pub ended: Option<Ended>,
    /// guard (or the kernel, at guard's cap) killed the job for memory.
    pub memory_killed: bool,
    pub timed_out: bool,
    /// The bundle the run will end with, or why there is none.
    pub bundle: Option<Result<Pending, EvidenceError>>,
    /// The peak as the job reached the cap (before --core's extra).
    pub(super) held_peak: Option<u64>,
    /// --hold-for: the hold after the capture at the cap.
    pub hold: Option<Hold>,
    pub pending: Vec<PendingAlert>,
    sentinel: Option<Sentinel>,
    /// Processes of the job that left its cgroup: killed with it.
    escapees: Vec<Escapee>,
    /// How often guard has killed the job.
    kills: u32,
    /// guard stopped waiting for a job that would not die (see KILL_WAIT).
    pub abandoned: bool,
    /// The stale-cgroup cleanup's thread says here that it is done.
    stale: Option<std::sync::mpsc::Receiver<()>>,
    /// --thrash-after's checks, and what they found (the job then reached its cap so).
    thrash: Option<super::thrash::Detector>,
    pub thrashing: Option<crate::format::Thrashing>,
}

/// The longest guard's end waits for the stale-cgroup cleanup (one stale cgroup with a process
/// stuck in the kernel: 2 s of killing and its rmdir retries).
const STALE_WAIT: Duration = Duration::from_secs(3);

impl<'c, E: Enforce, J: Job> Supervisor<'c, E, J> {
    /// The loop's state for a job that has just started.
    pub fn new(
        cfg: &'c WrapConfig,
        enforcer: E,
        recorder: Recorder,
        job: J,
        plan: Plan,
        proc_root: PathBuf,
        sentinel: Option<Sentinel>,
    ) -> Self {
        let mut enforcer = enforcer;
        // Off the job's start-up path: registering on a cgroup already at its limit signals at
        // once, so no hold can be missed.
        enforcer.arm_events();
        let now = Instant::now();
        let poll_cap = cfg
            .memory
            .filter(|_| enforcer.mode() == crate::format::Mode::Poll);
        let sampling = recorder.enabled() || poll_cap.is_some();
        let base = cfg.evidence.sample_interval;
        // Thrashing needs a cap and the cgroup's counters (not poll mode).
        let thrash = match (cfg.memory, cfg.thrash_after) {
            (Some(limit), Some(after)) if enforcer.fault_counters().is_some() => {
                Some(super::thrash::Detector::new(limit, after))
            }
            _ => None,
        };
        let at = Deadlines {
            sample: sampling.then(|| now + base),
            housekeeping: Some(now + HOUSEKEEPING_AFTER),
            // Only once the job has run a moment: mlockall and the oom_score_adj writes would
            // be most of a short job's cost.
            protect: enforcer
                .dir()
                .filter(|_| cfg.memory.is_some())
                .map(|_| now + HOUSEKEEPING_AFTER),
            timeout: cfg.timeout.map(|t| now + t),
            thrash_check: thrash.as_ref().map(|_| now + super::thrash::CHECK_EVERY),
            ..Deadlines::default()
        };
        Supervisor {
            cfg,
            enforcer,
            recorder,
            job,
            plan,
            proc_root,
            at,
            pace: Pace {
                base,
                every: base,
                last_usage: None,
            },
            poll_cap,
            session_leader: nix::unistd::getsid(None).is_ok_and(|s| s == nix::unistd::getpid()),
            ended: None,
            memory_killed: false,
            timed_out: false,
            bundle: None,
            held_peak: None,
            hold: None,
            pending: Vec::new(),
            sentinel,
            escapees: Vec::new(),
            kills: 0,
            abandoned: false,
            stale: None,
            thrash,
            thrashing: None,
        }
    }

    /// Wait and step until COMMAND exits.
    pub fn run(&mut self, io: &mut impl Wait) -> Result<(), Fatal> {
        while self.ended.is_none() && !self.abandoned {
            let wait = self.at.wait(Instant::now());
            let ready = io.wait(self.enforcer.event_fd(), wait)?;
            self.step(ready, Instant::now());
        }
        Ok(())
    }

    /// Apply one wake-up: signals first, then the memory event and its re-check, the sampler,
    /// housekeeping, the sentinel, the timeout and the kill-after deadline.
    /// `now` is when the wake-up happened; a deadline that passes during a capture of this
    /// step is handled at the next (which comes at once).
    pub fn step(&mut self, ready: Ready, now: Instant) {
        for r in ready.signals {
            if self.holding() && signals::ends_a_hold(r.signo) {
                self.end_hold_by_signal(r, now);
            } else {
                self.on_signal(r.signo, r.code, r.pid, now);
            }
        }
        if ready.memory_event {
            self.on_memory_event(now);
        }
        if self.at.recheck_until.is_some() {
            self.on_recheck(now);
        }
        if due(self.at.sample, now) {
            self.on_sample_tick(now);
        }
        let running = self.ended.is_none();
        if running && due(self.at.housekeeping, now) {
            self.on_housekeeping();
        }
        if running && due(self.at.protect, now) {
            self.on_protect();
        }
        if running && !self.memory_killed && due(self.at.thrash_check, now) {
            self.on_thrash_check(now);
        }
        if running && !self.memory_killed && due(self.at.timeout, now) {
            self.on_timeout(now);
        }
        if running && due(self.at.kill_after, now) {
            self.on_kill_deadline(now);
        }
        if self.ended.is_none() && due(self.at.give_up, now) {
            self.on_give_up();
        }
        if self.holding() && due(self.at.hold_until, now) {
            self.on_hold_expired(now);
        }
        if self.holding() && due(self.at.hold_check, now) {
            self.on_hold_check(now);
        }
    }

    /// A signal guard received: reap on SIGCHLD, forward what was sent to guard (a terminating
    /// one starts the --kill-after count), leave alone what the terminal already delivered.
    pub fn on_signal(&mut self, signo: i32, code: i32, sender: u32, now: Instant) {
        let cx = signals::Context {
            session_leader: self.session_leader,
            own_group: self.cfg.pgroup,
            own_pid: std::process::id(),
        };
        let ignored = crate::os::sigstate::was_ignored(signo);
        match signals::classify(signo, code, sender, ignored, cx) {
            Action::Reap => self.on_child_exit(),
            Action::Forward(sig) => {
                self.job.forward(sig);
                // A graceful shutdown is the sender's to cut short (docker stop, Kubernetes'
                // grace period, systemd's TimeoutStopSec): guard escalates only when told to.
                if signals::TERMINATING.contains(&sig)
                    && self.at.kill_after.is_none()
                    && self.cfg.kill_after_given
                {
                    self.at.kill_after = Some(now + self.cfg.kill_after);
                }
            }
            Action::AlreadyDelivered(sig) => {
                log::debug!("{sig:?} from the terminal reached the job directly")
            }
            Action::Ignore => {}
        }
    }

    /// A child ended (SIGCHLD): reap; the loop ends once COMMAND has.
    pub fn on_child_exit(&mut self) {
        if let Some(e) = self.job.reap() {
            self.ended = Some(e);
        }
    }

    /// The kernel reported a memory event: look at the counters now and for RECHECK_FOR.
    pub fn on_memory_event(&mut self, now: Instant) {
        self.enforcer.drain_event();
        self.at.recheck_until = Some(now + RECHECK_FOR);
    }

    /// Within the re-check window: is the job at its cap (hold, capture, kill), or did the
    /// kernel's OOM killer act (keep what is left)? The trigger is the check that finds the job
    /// at its cap: on v2 a `high` event also fires when reclaim brings usage back under
    /// memory.high, and the job reaches its cap at a later event or re-check.
    pub fn on_recheck(&mut self, now: Instant) {
        // Without --memory there is no cap of guard's to be at: a memory event then comes from
        // an ancestor's limit, and the kernel's OOM killer decides (see `verdict`).
        let capped = self.cfg.memory.is_some();
        if !self.memory_killed && capped && self.enforcer.at_cap() {
            self.at_the_cap(Instant::now());
        } else if !self.memory_killed && capped && self.enforcer.verdict().killed() {
            // A burst through the headroom, or no hold on this kernel: keep what is left to
            // see, and finish the job as a whole.
            self.memory_killed = true;
            self.at.sample = None;
            self.at.recheck_until = None;
            self.bundle = Some(capture::post_mortem(
                &self.enforcer,
                &mut self.recorder,
                Trigger::MemoryLimit,
            ));
            self.kill(now);
        } else if due(self.at.recheck_until, now) {
            self.at.recheck_until = None;
        }
    }

    /// The job is at its cap: hold it, keep the evidence, kill it whole — or with --hold-for
    /// keep holding it (unless it is dying already, or a terminating signal asked it to end).
    fn at_the_cap(&mut self, trigger: Instant) {
        self.memory_killed = true;
        self.at.sample = None;
        self.at.recheck_until = None;
        let captured = capture::hold_and_capture(
            &mut self.enforcer,
            &mut self.recorder,
            trigger,
            &mut self.held_peak,
        );
        let now = Instant::now();
        match self.cfg.hold_for {
            Some(d) if self.enforcer.verdict().oom_kills == 0 && self.at.kill_after.is_none() => {
                self.begin_hold(captured, d, now)
            }
            _ => {
                self.bundle = Some(captured);
                self.kill(now);
            }
        }
    }

    /// Kill the whole job now, and keep at it (bounded) until it has ended.
    pub(super) fn kill(&mut self, now: Instant) {
        self.enforcer.kill_all();
        self.kills += 1;
        self.after_kill(now);
    }

    /// --thrash-after: is the job stalled at its cap, faulting back what the kernel evicts, and
    /// has it been for long enough? Then it has reached its cap: hold, capture, kill.
    pub fn on_thrash_check(&mut self, now: Instant) {
        self.at.thrash_check = Some(now + super::thrash::CHECK_EVERY);
        let (Some(detector), Some(usage), Some(counters)) = (
            self.thrash.as_mut(),
            self.enforcer.usage(),
            self.enforcer.fault_counters(),
        ) else {
            return;
        };
        let Some(t) = detector.observe(now, usage, counters) else {
            return;
        };
        log::info!(
            "{} (pid {}) is thrashing at its memory limit {}",
            self.cfg.name,
            self.job.pid(),
            t.describe()
        );
        self.at.thrash_check = None;
        self.thrashing = Some(t);
        self.recorder.thrashing = Some(t);
        self.at_the_cap(Instant::now());
    }

    /// The job was killed: kill again every RE_KILL, stop waiting after KILL_WAIT.
    fn after_kill(&mut self, now: Instant) {
        self.notice_escapes();
        self.signal_escapees(Signal::SIGKILL);
        self.at.kill_after = Some(now + RE_KILL);
        self.at.give_up.get_or_insert(now + KILL_WAIT);
    }

    /// The sampler's tick: a timeline sample; then poll mode's cap, observe mode's capture
    /// point and the warning threshold, in that order, decide what follows.
    pub fn on_sample_tick(&mut self, now: Instant) {
        let usage = self.recorder.sample(&mut self.enforcer);
        self.notice_escapes();
        let every = self.pace.next(usage, self.poll_cap.is_some());
        self.at.sample = Some(now + every);
        if let (Some(u), Some(cap)) = (usage, self.poll_cap) {
            if u > cap {
                self.at_the_cap(Instant::now());
                return;
            }
        }
        if !self.recorder.enabled() {
            return;
        }
        if let Some(u) = self.recorder.observe.as_mut().and_then(|o| o.due()) {
            self.on_observe(u);
        } else if let Some(u) = usage.filter(|&u| self.recorder.warn_due(u, &self.enforcer)) {
            self.on_warning(u);
        }
    }

    /// Say so once for each process the sampler found outside the job's cgroup, and keep it to
    /// kill with the job.
    fn notice_escapes(&mut self) {
        for e in self.recorder.take_escapees() {
            log::warn!(
                "{}: process {} ({}) left the job's cgroup for {}: it is outside the memory cap; guard kills it with the job",
                self.cfg.name,
                e.what.pid,
                e.what.comm,
                e.what.cgroup
            );
            self.escapees.push(e);
        }
    }

    fn signal_escapees(&self, sig: Signal) {
        for e in &self.escapees {
            e.signal(sig as libc::c_int);
        }
    }

    /// The job crossed its early-warning threshold: a light bundle while it keeps running, one
    /// warning line, the warning alert.
    pub fn on_warning(&mut self, usage: u64) {
        let growth = self.recorder.forecast(Some(usage));
        let r = capture::warning(&mut self.enforcer, &mut self.recorder, usage);
        let what = notify::warning_text(self.cfg, usage, growth.as_ref());
        let scrub = self.recorder.scrubber();
        self.pending.extend(notify::warning(
            self.cfg,
            self.job.pid(),
            usage,
            &what,
            r,
            &scrub,
            growth,
        ));
    }

    /// Observe mode: the container reached --capture-at of its own limit. Stop the job for a
    /// full snapshot (the runtime's OOM killer may come next), let it run again, say so.
    pub fn on_observe(&mut self, usage: u64) {
        let r = capture::capture_and_release(
            &mut self.enforcer,
            &mut self.recorder,
            Trigger::ContainerLimit,
            Some(usage),
        )
        .and_then(|p| self.recorder.finish(p, None, false, None, None));
        let what = match &self.recorder.observe {
            Some(o) => format!(
                "is in a container at {} of its {} memory limit (--capture-at {}%): the runtime's OOM killer may be next",
                crate::config::units::format_size(usage),
                crate::config::units::format_size(o.limit),
                self.cfg.capture_at
            ),
            None => format!("uses {}", crate::config::units::format_size(usage)),
        };
        let scrub = self.recorder.scrubber();
        self.pending.extend(notify::warning(
            self.cfg,
            self.job.pid(),
            usage,
            &what,
            r,
            &scrub,
            self.recorder.forecast(Some(usage)),
        ));
    }

    /// 20 ms in: the v1 freezer leaf, the evidence directory and the sampler's files, the
    /// cgroups dead guards left.
    pub fn on_housekeeping(&mut self) {
        self.at.housekeeping = None;
        self.enforcer.prepare_hold();
        self.recorder.prepare(&self.enforcer);
        // Cgroups of dead guards: killed and removed on a thread of their own (a process stuck
        // in the kernel there costs seconds, which the job's enforcement must not wait for).
        let (plan, proc_root) = (self.plan.clone(), self.proc_root.clone());
        let (done, stale) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("guard-stale".into())
            .spawn(move || {
                cgroup::cleanup_stale(&plan, &proc_root);
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => self.stale = Some(stale),
            Err(e) => log::debug!("no cleanup of stale cgroups this run: {e}"),
        }
    }

    /// 20 ms into a capped job with a cgroup: guard (and its sentinel) keep working when the
    /// host is short of memory.
    pub fn on_protect(&mut self) {
        self.at.protect = None;
        protect_self(self.sentinel.as_ref().map(|s| s.pid));
    }

    /// Out of time: keep the evidence of the (possibly hung) job first, then SIGTERM it and
    /// kill the whole job --kill-after later.
    pub fn on_timeout(&mut self, now: Instant) {
        self.at.timeout = None;
        self.timed_out = true;
        self.bundle = Some(capture::capture_and_release(
            &mut self.enforcer,
            &mut self.recorder,
            Trigger::Timeout,
            None,
        ));
        log::debug!(
            "{} (pid {}) out of time; sending {}",
            self.cfg.name,
            self.job.pid(),
            self.cfg.timeout_signal.as_str()
        );
        self.job.terminate(self.cfg.timeout_signal);
        if self.at.kill_after.is_none() {
            self.at.kill_after = Some(now + self.cfg.kill_after);
        }
    }

    /// --kill-after has passed since a terminating signal and COMMAND still runs: kill the job.
    /// After a kill: the job has not ended yet, kill it again.
    pub fn on_kill_deadline(&mut self, now: Instant) {
        self.at.kill_after = None;
        if self.kills == 0 {
            log::warn!(
                "{} (pid {}) still running {} after a terminating signal; killing the job",
                self.cfg.name,
                self.job.pid(),
                format_duration(self.cfg.kill_after)
            );
        } else {
            log::debug!("the job has not ended after SIGKILL; killing it again");
        }
        self.kill(now);
    }

    /// The job did not end within KILL_WAIT of guard's SIGKILL (a process stuck in the kernel):
    /// stop waiting, so that guard itself ends; the cgroup is left for the next run.
    pub fn on_give_up(&mut self) {
        self.at.give_up = None;
        self.abandoned = true;
        let left = self
            .enforcer
            .dir()
            .map(|d| {
                format!(
                    "; its cgroup {} is removed by the next guard run",
                    d.display()
                )
            })
            .unwrap_or_default();
        log::warn!(
            "{} (pid {}) did not end within {} of SIGKILL (a process stuck in the kernel?); guard stops waiting{left}",
            self.cfg.name,
            self.job.pid(),
            format_duration(KILL_WAIT)
        );
    }

    /// COMMAND has exited: decide why the run is over. A kernel OOM kill at guard's cap that no
    /// check caught yet is a memory kill with a post-mortem bundle; a SIGKILL with the kernel's
    /// OOM killer active elsewhere (no cap of guard's, an ancestor's limit, the whole host) is a
    /// kernel-oom one.
    pub fn verdict(&mut self) -> Verdict {
        if !self.memory_killed && self.cfg.memory.is_some() && self.enforcer.verdict().killed() {
            self.memory_killed = true;
            self.bundle = Some(capture::post_mortem(
                &self.enforcer,
                &mut self.recorder,
                Trigger::MemoryLimit,
            ));
        }
        if let (true, Some(t)) = (self.memory_killed, self.thrashing) {
            return Verdict::Thrashing(t);
        }
        if self.memory_killed {
            return Verdict::MemoryLimit;
        }
        // Only a SIGKILL can be the kernel's (and only then are its counters read). The
        // machine-wide count says only that the OOM killer acted somewhere: not when guard sent
        // the SIGKILL itself (--kill-after, a timeout) — another job's OOM kill meanwhile must
        // not turn guard's own kill into a kernel one.
        let sigkill = self.ended == Some(Ended::Signal(libc::SIGKILL));
        let by_guard = self.kills > 0;
        if sigkill
            && (self.enforcer.verdict().oom_kills > 0
                || (!by_guard && self.recorder.kernel_oom_since_start()))
        {
            self.bundle = Some(capture::post_mortem(
                &self.enforcer,
                &mut self.recorder,
                Trigger::KernelOom,
            ));
            return Verdict::KernelOom;
        }
        if self.timed_out {
            return Verdict::Timeout;
        }
        Verdict::Exited(self.ended)
    }

    /// The job's peak for the line and the alerts (read only when something will report it: one
    /// file read less on a short job's path), and for the metrics.
    pub fn peaks(&self, verdict: Verdict) -> (Option<u64>, Option<u64>) {
        let wanted = matches!(verdict, Verdict::MemoryLimit | Verdict::Thrashing(_))
            || self.bundle.is_some()
            || self.cfg.metrics_file.is_some();
        let peak = if wanted {
            self.held_peak.or_else(|| self.enforcer.peak())
        } else {
            None
        };
        (
            peak,
            peak.or_else(|| self.recorder.timeline.max_job_bytes()),
        )
    }

    /// Nothing of the job may outlive guard: after a memory kill, kill what is left; otherwise
    /// processes COMMAND left behind get SIGTERM and --kill-after, then SIGKILL (guard reaps
    /// meanwhile). Then the cgroup goes, and the sentinel with it.
    pub fn clean_up(mut self, io: &mut impl Wait) -> Remains {
        self.recorder.check_members();
        self.notice_escapes();
        // Once guard has killed the job, what is left is dying: no second grace, and one
        // deadline — KILL_WAIT from guard's first SIGKILL — for all of it, removal included.
        let killed = self.memory_killed || self.kills > 0;
        if killed {
            self.enforcer.kill_all();
        } else {
            self.finish_leftovers(io);
        }
        // Nothing of the job outlives guard, the processes that left its cgroup included.
        self.signal_escapees(Signal::SIGKILL);
        let now = Instant::now();
        let until = match (self.abandoned, killed, self.at.give_up) {
            (true, _, _) => now,
            (false, true, Some(give_up)) => give_up.max(now + LAST_EXIT),
            (false, true, None) => now + KILL_WAIT,
            (false, false, _) => now + crate::cgroup::REMOVE_WAIT,
        };
        if let Err(e) = self.enforcer.remove_by(until) {
            log::warn!("{e}; the next guard run removes it");
        }
        if let Some(stale) = self.stale.take() {
            let _ = stale.recv_timeout(STALE_WAIT);
        }
        Remains {
            recorder: self.recorder,
            bundle: self.bundle,
            hold: self.hold,
            pending: self.pending,
            sentinel: self.sentinel.map(Sentinel::stand_down),
        }
    }

    /// COMMAND exited but left processes in the job: SIGTERM them, give them LEFTOVER_GRACE (or
    /// --kill-after when given), then SIGKILL — guard ends within a second of COMMAND, as tini and
    /// dumb-init do, and still leaves nothing behind.
    fn finish_leftovers(&mut self, io: &mut impl Wait) {
        self.signal_escapees(Signal::SIGTERM);
        let n = self.enforcer.signal_all(Signal::SIGTERM);
        if n == 0 {
            return;
        }
        let grace = if self.cfg.kill_after_given {
            self.cfg.kill_after
        } else {
            LEFTOVER_GRACE
        };
        log::info!(
            "{} exited and left {n} process(es) behind; sent SIGTERM, SIGKILL in {}",
            self.cfg.name,
            format_duration(grace)
        );
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.enforcer.live_count() > 0 {
            // Signals now only mean children to reap.
            if io.wait(None, Duration::from_millis(20)).is_err() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.job.reap();
        }
        if self.enforcer.live_count() > 0 {
            log::warn!(
                "processes left behind by {} ignored SIGTERM; killed them",
                self.cfg.name
            );
            self.enforcer.kill_all();
        }
        let _ = self.job.reap();
    }
}
