//! The event loop's decisions, without root: a fake enforcer and a fake job (sharing one
//! scripted [`World`]) stand in for the cgroup and COMMAND, and the tests feed
//! [`Supervisor::step`] the wake-ups a real run would bring, at the times they would come.

use super::Fatal;
use super::event_loop::{Deadlines, Job, RECHECK_EVERY, Ready, Received, Supervisor, Wait};
use super::verdict::{Ended, Verdict};
use crate::cgroup::fs::CgError;
use crate::cgroup::{Enforce, MemoryVerdict, SampledFiles};
use crate::config::{EvidenceConfig, Verbosity, WrapConfig};
use crate::evidence::Recorder;
use crate::format::{Capture, EventKind, Mode};
use crate::os::proc::Proc;
use nix::poll::PollFlags;
use nix::sys::signal::Signal;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What the fake enforcer and the fake job were asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    ArmEvents,
    Hold,
    Unhold,
    KillAll,
    Terminate,
    SignalAll(Signal),
}

/// The scripted outside world of one test.
#[derive(Default)]
struct World {
    /// The job's memory, as the cgroup counts it.
    usage: u64,
    /// The kernel is holding the job at its cap.
    at_cap: bool,
    oom_kills: u64,
    /// COMMAND ends this way while guard holds it (it exits during the capture).
    ends_on_hold: Option<Ended>,
    /// COMMAND's end, once it ended (reaped at the next SIGCHLD).
    ended: Option<Ended>,
    /// SIGKILL does not end it (a process stuck in the kernel).
    immortal: bool,
    forwarded: Vec<Signal>,
    calls: Vec<Call>,
    /// The deadline the cgroup's removal was given.
    removed_by: Option<Instant>,
    /// The cgroup's major faults and workingset refaults (None: a mode without them).
    faults: Option<crate::cgroup::FaultCounters>,
}

type Shared = Rc<RefCell<World>>;

struct FakeEnforcer {
    w: Shared,
    proc: Proc,
}

impl Enforce for FakeEnforcer {
    fn mode(&self) -> Mode {
        Mode::CgroupV2
    }
    fn dir(&self) -> Option<&Path> {
        None
    }
    fn proc(&self) -> &Proc {
        &self.proc
    }
    fn swap_limited(&self) -> bool {
        true
    }
    fn attach_fds(&self) -> Vec<BorrowedFd<'_>> {
        Vec::new()
    }
    fn arm_events(&mut self) {
        self.w.borrow_mut().calls.push(Call::ArmEvents);
    }
    fn event_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        None
    }
    fn drain_event(&mut self) {}
    fn at_cap(&self) -> bool {
        self.w.borrow().at_cap
    }
    fn verdict(&self) -> MemoryVerdict {
        MemoryVerdict {
            oom_kills: self.w.borrow().oom_kills,
            under_oom: false,
        }
    }
    fn hold(&self) -> bool {
        let mut w = self.w.borrow_mut();
        w.calls.push(Call::Hold);
        if let Some(e) = w.ends_on_hold {
            w.ended = Some(e);
        }
        true
    }
    fn unhold(&self) {
        self.w.borrow_mut().calls.push(Call::Unhold);
    }
    fn usage(&mut self) -> Option<u64> {
        Some(self.w.borrow().usage)
    }
    fn peak(&self) -> Option<u64> {
        Some(self.w.borrow().usage)
    }
    fn working_set(&self) -> Option<u64> {
        Some(self.w.borrow().usage)
    }
    fn fault_counters(&self) -> Option<crate::cgroup::FaultCounters> {
        self.w.borrow().faults
    }
    fn sampled_files(&self) -> Option<SampledFiles> {
        None
    }
    /// One process that is not there: a capture records it as vanished.
    fn pids(&self) -> Vec<i32> {
        if self.w.borrow().ended.is_some() {
            Vec::new()
        } else {
            vec![i32::MAX]
        }
    }
    fn live_count(&self) -> usize {
        0
    }
    fn signal_all(&self, sig: Signal) -> usize {
        self.w.borrow_mut().calls.push(Call::SignalAll(sig));
        0
    }
    fn kill_all(&self) {
        let mut w = self.w.borrow_mut();
        w.calls.push(Call::KillAll);
        if !w.immortal {
            w.ended.get_or_insert(Ended::Signal(libc::SIGKILL));
        }
    }
    fn release(&self, _extra: u64) -> Result<(), CgError> {
        Ok(())
    }
    fn kernel_counters(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
    fn remove_by(self, until: std::time::Instant) -> Result<(), CgError> {
        self.w.borrow_mut().removed_by = Some(until);
        Ok(())
    }
}

struct FakeJob {
    w: Shared,
}

impl Job for FakeJob {
    fn pid(&self) -> i32 {
        4242
    }
    fn forward(&self, sig: Signal) {
        self.w.borrow_mut().forwarded.push(sig);
    }
    fn terminate(&self, _sig: Signal) {
        self.w.borrow_mut().calls.push(Call::Terminate);
    }
    fn reap(&mut self) -> Option<Ended> {
        self.w.borrow().ended
    }
}

/// Wake-ups given in order; then a SIGCHLD every time (the job has ended).
struct Script(Vec<Ready>);

impl Wait for Script {
    fn wait(
        &mut self,
        _event: Option<(BorrowedFd<'_>, PollFlags)>,
        _timeout: Duration,
    ) -> Result<Ready, Fatal> {
        if self.0.is_empty() {
            return Ok(sigchld());
        }
        Ok(self.0.remove(0))
    }
}

fn sigchld() -> Ready {
    Ready {
        signals: vec![Received::new(libc::SIGCHLD, 1)],
        memory_event: false,
    }
}

const MIB: u64 = 1 << 20;

fn config(evidence: &Path) -> WrapConfig {
    WrapConfig {
        memory: Some(100 * MIB),
        memory_text: Some("100M".into()),
        swap: 0,
        name: "job".into(),
        kill_after: Duration::from_millis(500),
        kill_after_given: true,
        timeout_signal: Signal::SIGTERM,
        preserve_status: false,
        require_cgroup: false,
        verbosity: Verbosity::Normal,
        command: vec!["job".into()],
        evidence: EvidenceConfig {
            dir: Ok(evidence.to_path_buf()),
            warn: Some(80 * MIB),
            core: false,
            core_max: 1 << 30,
            sample_interval: Duration::from_millis(100),
            keep: 50,
            max_size: 1 << 30,
            redact: vec!["TOKEN".into()],
            environ: false,
            pyspy_locals: false,
            native_stacks: true,
            pyspy: None,
            census: None,
        },
        metrics_file: None,
        alerts: Vec::new(),
        timeout: None,
        ping: None,
        upload: None,
        quiet: false,
        subreaper: false,
        pgroup: false,
        capture_at: 95,
        lock: None,
        lock_wait: None,
        slice: None,
        no_systemd: true,
        hold_for: None,
        thrash_after: None,
        runbook: None,
        drill: false,
    }
}

/// A supervisor over the fakes; the evidence goes to `dir`.
fn supervisor<'c>(cfg: &'c WrapConfig, w: &Shared) -> Supervisor<'c, FakeEnforcer, FakeJob> {
    let proc = Proc::live();
    let recorder = Recorder::started(cfg, proc.root(), Instant::now(), 4242, None);
    let enforcer = FakeEnforcer { w: w.clone(), proc };
    let plan = crate::cgroup::detect::Plan::Poll {
        reason: String::new(),
        fix: String::new(),
    };
    Supervisor::new(
        cfg,
        enforcer,
        recorder,
        FakeJob { w: w.clone() },
        plan,
        PathBuf::from("/proc"),
        None,
    )
}

/// What the fakes were asked to do after the supervisor armed the memory events (which it must
/// do first).
fn calls(w: &Shared) -> Vec<Call> {
    let c = w.borrow().calls.clone();
    assert_eq!(
        c.first(),
        Some(&Call::ArmEvents),
        "the memory events are armed first"
    );
    c[1..].to_vec()
}

fn memory_event() -> Ready {
    Ready {
        signals: Vec::new(),
        memory_event: true,
    }
}

/// The manifest of the bundle a run ended with.
fn finished(sup: Supervisor<'_, FakeEnforcer, FakeJob>) -> crate::format::Manifest {
    let ended = sup.ended;
    let left = sup.clean_up(&mut Script(Vec::new()));
    let pending = left.bundle.expect("a bundle").expect("written");
    let path = left
        .recorder
        .finish(pending, ended.map(Ended::exit_info), true, None, None)
        .expect("finished");
    crate::report::Report::load(&path)
        .expect("readable")
        .manifest
}

#[test]
fn at_the_cap_the_job_is_held_then_killed_and_the_run_is_a_memory_kill() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = Shared::default();
    w.borrow_mut().usage = 100 * MIB;
    w.borrow_mut().at_cap = true;
    let mut sup = supervisor(&cfg, &w);
    sup.step(memory_event(), Instant::now());
    assert_eq!(
        calls(&w),
        [Call::Hold, Call::KillAll],
        "held before the kill"
    );
    assert!(sup.memory_killed);
    assert_eq!(sup.at.sample, None, "no more sampling after the kill");
    sup.step(sigchld(), Instant::now());
    assert_eq!(sup.ended, Some(Ended::Signal(libc::SIGKILL)));
    let v = sup.verdict();
    assert_eq!((v, v.status()), (Verdict::MemoryLimit, 137));
    let m = finished(sup);
    assert_eq!(m.trigger, EventKind::MemoryLimit);
    assert_eq!(m.capture, Capture::PreKill);
    assert!(m.held);
}

#[test]
fn a_memory_event_below_the_cap_is_rechecked_then_forgotten() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = Shared::default();
    let mut sup = supervisor(&cfg, &w);
    let t0 = Instant::now();
    sup.step(memory_event(), t0);
    assert!(calls(&w).is_empty(), "not at the cap: no hold");
    assert!(sup.at.recheck_until.is_some());
    assert_eq!(sup.at.wait(t0), RECHECK_EVERY, "re-checked every 10 ms");
    // The job reaches its cap within the window: that check is the trigger.
    w.borrow_mut().at_cap = true;
    sup.step(Ready::default(), t0 + Duration::from_millis(10));
    assert_eq!(calls(&w), [Call::Hold, Call::KillAll]);
    // A second event after the kill does not hold again.
    sup.step(memory_event(), t0 + Duration::from_millis(20));
    assert_eq!(calls(&w), [Call::Hold, Call::KillAll]);
}

#[test]
fn after_a_warning_the_timeout_holds_terminates_then_kills() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.timeout = Some(Duration::from_secs(1));
    let w = Shared::default();
    w.borrow_mut().usage = 90 * MIB;
    let mut sup = supervisor(&cfg, &w);
    let t0 = Instant::now();
    // The first sample: past the warning threshold, below the cap.
    sup.step(Ready::default(), t0 + Duration::from_millis(150));
    assert!(calls(&w).is_empty(), "a warning does not hold the job");
    let warnings: Vec<_> = crate::format::bundles(d.path());
    assert_eq!(warnings.len(), 1, "one warning bundle");
    assert!(warnings[0].to_string_lossy().ends_with(".warning"));
    // Out of time: evidence, then SIGTERM, and the job runs on until --kill-after.
    let t1 = t0 + Duration::from_millis(1100);
    sup.step(Ready::default(), t1);
    assert_eq!(calls(&w), [Call::Hold, Call::Unhold, Call::Terminate]);
    assert!(sup.timed_out);
    assert_eq!(sup.at.kill_after, Some(t1 + cfg.kill_after));
    sup.step(Ready::default(), t1 + cfg.kill_after);
    assert_eq!(calls(&w).last(), Some(&Call::KillAll));
    sup.step(sigchld(), t1 + cfg.kill_after);
    let v = sup.verdict();
    assert_eq!((v, v.status()), (Verdict::Timeout, 124));
    assert_eq!(finished(sup).trigger, EventKind::Timeout);
}

/// Issue 22, item 15: a job pinned at its cap that keeps faulting back what the kernel evicts
/// is, after --thrash-after, held, captured and killed as thrashing at its memory limit (137);
/// the same job faulting only on first reads (a stream) runs on.
#[test]
fn a_job_thrashing_at_its_cap_is_treated_as_reaching_it() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.evidence.warn = None;
    cfg.thrash_after = Some(Duration::from_secs(3));
    for (majors, refaults, thrashes) in [(200, 5_000, true), (0, 20_000, false)] {
        let w = Shared::default();
        {
            let mut w = w.borrow_mut();
            w.usage = 100 * MIB;
            w.faults = Some(Default::default());
        }
        let mut sup = supervisor(&cfg, &w);
        let t0 = Instant::now();
        for s in 1..=10 {
            if let Some(f) = w.borrow_mut().faults.as_mut() {
                f.major_faults += majors;
                f.refaults += refaults;
            }
            sup.step(Ready::default(), t0 + Duration::from_secs(s));
        }
        let held = calls(&w).contains(&Call::Hold);
        assert_eq!(
            held, thrashes,
            "{majors} major faults/s, {refaults} refaults/s"
        );
        if thrashes {
            sup.step(sigchld(), t0 + Duration::from_secs(10));
            let v = sup.verdict();
            let Verdict::Thrashing(t) = v else {
                panic!("{v:?}")
            };
            assert_eq!((t.major_faults_per_s, v.status()), (200, 137));
            let line = v
                .line(&cfg, 4242, Some(100 * MIB), "killed", "evidence: x")
                .unwrap();
            assert!(
                line.contains("exceeded its memory limit 100 MiB (peak 100 MiB), thrashing at its memory limit for 3"),
                "{line}"
            );
            assert_eq!(
                finished(sup).thrashing.map(|t| t.refaults_per_s),
                Some(5_000)
            );
        }
    }
}

/// Issue 22, item 14: once guard has killed the job, what is left gets no second SIGTERM grace
/// and the cgroup's removal is due within KILL_WAIT of guard's SIGKILL — one deadline for the
/// whole kill path, however slowly a loaded machine lets the job die.
#[test]
fn after_guards_kill_one_deadline_covers_the_rest() {
    use super::event_loop::KILL_WAIT;
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.memory = None;
    cfg.evidence.warn = None;
    let w = Shared::default();
    let mut sup = supervisor(&cfg, &w);
    let t0 = Instant::now();
    let term = Ready {
        signals: vec![Received::new(libc::SIGTERM, 0)],
        memory_event: false,
    };
    sup.step(term, t0);
    assert_eq!(w.borrow().forwarded, [Signal::SIGTERM]);
    let t1 = t0 + cfg.kill_after;
    sup.step(Ready::default(), t1);
    assert_eq!(calls(&w).last(), Some(&Call::KillAll));
    sup.step(sigchld(), t1);
    let before = calls(&w).len();
    let _ = sup.clean_up(&mut Script(Vec::new()));
    let after = calls(&w)[before..].to_vec();
    assert!(
        !after.contains(&Call::SignalAll(Signal::SIGTERM)),
        "a second grace after guard's kill: {after:?}"
    );
    let until = w.borrow().removed_by.expect("removed");
    assert!(
        until <= t1 + KILL_WAIT,
        "removal may wait past KILL_WAIT: {until:?}"
    );
}

#[test]
fn a_job_that_exits_during_the_capture_still_ends_as_a_memory_kill() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = Shared::default();
    w.borrow_mut().at_cap = true;
    w.borrow_mut().ends_on_hold = Some(Ended::Code(0));
    let mut sup = supervisor(&cfg, &w);
    sup.run(&mut Script(vec![memory_event()])).unwrap();
    assert_eq!(sup.ended, Some(Ended::Code(0)));
    let v = sup.verdict();
    assert_eq!(
        v,
        Verdict::MemoryLimit,
        "the cap, not the exit, ended the run"
    );
    let m = finished(sup);
    assert_eq!(
        m.exit.and_then(|e| e.code),
        Some(0),
        "its own exit is recorded"
    );
    assert!(m.processes.iter().all(|p| p.vanished || p.pid != i32::MAX));
}

#[test]
fn a_signal_that_arrives_with_the_cap_is_forwarded_and_the_hold_still_comes() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = Shared::default();
    w.borrow_mut().at_cap = true;
    let mut sup = supervisor(&cfg, &w);
    let t0 = Instant::now();
    sup.step(
        Ready {
            signals: vec![Received::new(libc::SIGTERM, 0)],
            memory_event: true,
        },
        t0,
    );
    assert_eq!(w.borrow().forwarded, [Signal::SIGTERM]);
    assert_eq!(calls(&w), [Call::Hold, Call::KillAll]);
    assert!(
        sup.at.kill_after.is_some() && sup.at.give_up.is_some(),
        "after the kill: kill again, and a bound on the wait"
    );
    sup.step(sigchld(), t0);
    assert_eq!(sup.verdict().status(), 137, "a memory kill, not 143");
}

/// Issue 24, item 1: without --kill-after a forwarded SIGTERM starts no countdown (the sender
/// owns the escalation); with it, the job is killed --kill-after later.
#[test]
fn a_forwarded_sigterm_escalates_only_when_kill_after_was_given() {
    let d = tempfile::tempdir().unwrap();
    for given in [false, true] {
        let mut cfg = config(d.path());
        cfg.kill_after_given = given;
        let w = Shared::default();
        let mut sup = supervisor(&cfg, &w);
        let t0 = Instant::now();
        sup.step(
            Ready {
                signals: vec![Received::new(libc::SIGTERM, 0)],
                memory_event: false,
            },
            t0,
        );
        assert_eq!(w.borrow().forwarded, [Signal::SIGTERM]);
        let expected = given.then(|| t0 + cfg.kill_after);
        assert_eq!(sup.at.kill_after, expected, "--kill-after given: {given}");
        sup.step(Ready::default(), t0 + Duration::from_secs(3600));
        assert_eq!(
            calls(&w).contains(&Call::KillAll),
            given,
            "--kill-after given: {given}"
        );
    }
}

/// Defect 2: a job that does not end after the kill (a process stuck in the kernel, or one the
/// kill could not reach) must not hang guard: it kills again every second and stops waiting
/// after KILL_WAIT.
#[test]
fn a_job_that_will_not_die_is_killed_again_then_given_up_on() {
    use super::event_loop::KILL_WAIT;
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = Shared::default();
    w.borrow_mut().at_cap = true;
    w.borrow_mut().immortal = true;
    let mut sup = supervisor(&cfg, &w);
    let t0 = Instant::now();
    sup.step(memory_event(), t0);
    assert_eq!(calls(&w), [Call::Hold, Call::KillAll]);
    let mut t = t0;
    while !sup.abandoned {
        t += Duration::from_millis(500);
        assert!(t < t0 + KILL_WAIT * 2, "guard waited past its bound");
        sup.step(Ready::default(), t);
    }
    assert!(t >= t0 + KILL_WAIT, "gave up only after {KILL_WAIT:?}");
    let kills = calls(&w).iter().filter(|c| **c == Call::KillAll).count();
    assert!(kills >= 5, "killed again while waiting: {kills}");
    assert_eq!(
        sup.verdict(),
        Verdict::MemoryLimit,
        "still the cap's kill: 137"
    );
}

#[test]
fn a_signal_during_a_timeout_hold_is_forwarded_once_the_job_runs_again() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.timeout = Some(Duration::from_millis(50));
    cfg.evidence.warn = None;
    let w = Shared::default();
    let mut sup = supervisor(&cfg, &w);
    let t0 = Instant::now();
    sup.step(Ready::default(), t0 + Duration::from_millis(60));
    assert_eq!(calls(&w), [Call::Hold, Call::Unhold, Call::Terminate]);
    let kill_at = sup.at.kill_after;
    // SIGINT sent to guard while it held the job: read at the next wake-up, forwarded then; the
    // kill-after count the timeout started is kept.
    sup.step(
        Ready {
            signals: vec![Received::new(libc::SIGINT, 0)],
            memory_event: false,
        },
        t0 + Duration::from_millis(70),
    );
    assert_eq!(w.borrow().forwarded, [Signal::SIGINT]);
    assert_eq!(sup.at.kill_after, kill_at);
}

#[test]
fn a_kernel_oom_kill_at_the_cap_is_a_post_mortem_memory_kill() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = Shared::default();
    let mut sup = supervisor(&cfg, &w);
    // A burst through the headroom: the kernel killed the job before any check held it.
    w.borrow_mut().oom_kills = 1;
    sup.step(memory_event(), Instant::now());
    assert_eq!(calls(&w), [Call::KillAll], "nothing left to hold");
    sup.step(sigchld(), Instant::now());
    assert_eq!(sup.verdict(), Verdict::MemoryLimit);
    assert_eq!(finished(sup).capture, Capture::PostMortem);
}

#[test]
fn deadlines_wake_the_loop_at_the_earliest() {
    let now = Instant::now();
    let mut d = Deadlines::default();
    assert_eq!(
        d.wait(now),
        Duration::from_secs(3600),
        "nothing due: an hour"
    );
    d.sample = Some(now + Duration::from_millis(100));
    d.timeout = Some(now + Duration::from_millis(40));
    assert_eq!(d.wait(now), Duration::from_millis(40));
    d.kill_after = Some(now);
    assert_eq!(
        d.wait(now + Duration::from_millis(5)),
        Duration::ZERO,
        "past: at once"
    );
    d.kill_after = None;
    d.recheck_until = Some(now + Duration::from_millis(300));
    assert_eq!(d.wait(now), RECHECK_EVERY);
}

/// A run that ended after a --hold-for hold: the bundle written as the hold began, completed
/// with the job's end.
fn finished_after_hold(sup: Supervisor<'_, FakeEnforcer, FakeJob>) -> crate::format::Manifest {
    let ended = sup.ended;
    let mut left = sup.clean_up(&mut Script(Vec::new()));
    assert!(
        left.bundle.is_none(),
        "the bundle was finished as the hold began"
    );
    let path = left.finish_bundle(ended, None, None).expect("written");
    crate::report::Report::load(&path)
        .expect("readable")
        .manifest
}

fn hold_config(d: &Path) -> WrapConfig {
    let mut cfg = config(d);
    cfg.hold_for = Some(Duration::from_secs(30));
    cfg
}

#[test]
fn with_hold_for_the_job_stays_frozen_until_the_hold_runs_out_then_is_killed() {
    let d = tempfile::tempdir().unwrap();
    let cfg = hold_config(d.path());
    let w = Shared::default();
    w.borrow_mut().usage = 100 * MIB;
    w.borrow_mut().at_cap = true;
    let mut sup = supervisor(&cfg, &w);
    let t0 = Instant::now();
    sup.step(memory_event(), t0);
    assert_eq!(
        calls(&w),
        [Call::Hold, Call::Hold],
        "held, and held again: no kill"
    );
    assert!(sup.holding());
    // The bundle is there already, saying the job is held and until when.
    let bundles = crate::format::bundles(d.path());
    assert_eq!(bundles.len(), 1);
    let m = crate::report::Report::load(&bundles[0]).unwrap().manifest;
    let h = m.hold.expect("hold in the manifest");
    assert_eq!(h.requested_ms, 30_000);
    assert_eq!(h.ended_by, None);
    assert!(m.exit.is_none());
    // No sampling, no timeline while held: the hold's end and a look at its memory each second.
    assert_eq!(sup.at.sample, None);
    assert!(
        sup.at
            .hold_until
            .is_some_and(|u| u >= t0 + Duration::from_secs(30))
    );
    sup.step(Ready::default(), t0 + Duration::from_secs(29));
    assert_eq!(calls(&w), [Call::Hold, Call::Hold], "still held at 29 s");
    let end = t0 + Duration::from_secs(31);
    sup.step(Ready::default(), end);
    assert_eq!(calls(&w), [Call::Hold, Call::Hold, Call::KillAll]);
    assert!(!sup.holding());
    sup.step(sigchld(), end);
    let v = sup.verdict();
    assert_eq!((v, v.status()), (Verdict::MemoryLimit, 137));
    let m = finished_after_hold(sup);
    let h = m.hold.expect("hold");
    assert_eq!(h.ended_by, Some(crate::format::HoldEnd::Expired));
    assert_eq!(m.exit.and_then(|e| e.signal), Some(libc::SIGKILL));
    assert!(m.ended_at.is_some());
}

#[test]
fn a_terminating_signal_or_guard_kill_ends_the_hold_and_is_not_forwarded() {
    let d = tempfile::tempdir().unwrap();
    let cfg = hold_config(d.path());
    for (code, value, by) in [
        (0, 0, crate::format::HoldEnd::Signal),
        (
            libc::SI_QUEUE,
            crate::supervise::register::KILL_VALUE,
            crate::format::HoldEnd::GuardKill,
        ),
    ] {
        let w = Shared::default();
        w.borrow_mut().at_cap = true;
        let mut sup = supervisor(&cfg, &w);
        let t0 = Instant::now();
        sup.step(memory_event(), t0);
        // SIGUSR1 is forwarded as ever; SIGTERM ends the hold.
        let mut term = Received::new(libc::SIGTERM, code);
        term.value = value;
        sup.step(
            Ready {
                signals: vec![Received::new(libc::SIGUSR1, 0), term],
                memory_event: false,
            },
            t0 + Duration::from_secs(1),
        );
        assert_eq!(w.borrow().forwarded, [Signal::SIGUSR1]);
        assert_eq!(calls(&w), [Call::Hold, Call::Hold, Call::KillAll]);
        sup.step(sigchld(), t0 + Duration::from_secs(1));
        assert_eq!(sup.verdict().status(), 137);
        assert_eq!(finished_after_hold(sup).hold.unwrap().ended_by, Some(by));
    }
}

#[test]
fn a_held_job_that_grows_is_killed_and_one_asked_to_end_is_not_held() {
    let d = tempfile::tempdir().unwrap();
    let cfg = hold_config(d.path());
    let w = Shared::default();
    w.borrow_mut().usage = 100 * MIB;
    w.borrow_mut().at_cap = true;
    let mut sup = supervisor(&cfg, &w);
    let t0 = Instant::now();
    sup.step(memory_event(), t0);
    let later = t0 + 2 * super::hold::HOLD_CHECK;
    sup.step(Ready::default(), later);
    assert_eq!(calls(&w), [Call::Hold, Call::Hold], "not grown: still held");
    w.borrow_mut().usage = 200 * MIB;
    let later = t0 + 4 * super::hold::HOLD_CHECK;
    sup.step(Ready::default(), later);
    assert_eq!(calls(&w), [Call::Hold, Call::Hold, Call::KillAll]);
    sup.step(sigchld(), later);
    let _ = sup.verdict();
    let h = finished_after_hold(sup).hold.unwrap();
    assert_eq!(h.ended_by, Some(crate::format::HoldEnd::Grew));
    assert!(
        h.detail.contains("grew from 100 MiB to 200 MiB"),
        "{}",
        h.detail
    );

    // SIGTERM reached guard (and the job) before the cap: the job was asked to end, so the cap
    // kills it at once.
    let w = Shared::default();
    w.borrow_mut().at_cap = true;
    let mut sup = supervisor(&cfg, &w);
    sup.step(
        Ready {
            signals: vec![Received::new(libc::SIGTERM, 0)],
            memory_event: true,
        },
        t0,
    );
    assert_eq!(calls(&w), [Call::Hold, Call::KillAll]);
    assert!(sup.hold.is_none());
}
