//! The captures the supervisor makes, each one decision of the event loop: at the cap (hold,
//! capture, kill), after the kernel killed the job (what is left: post-mortem), at `--timeout`
//! and in observe mode (hold, capture, let it run again), and at the warning threshold (a light
//! bundle while the job runs); the Python heap census at the cap and at the warning. Each returns
//! the pending bundle, or why there is none.

use crate::cgroup::Enforce;
use crate::evidence::{EvidenceError, Occasion, Pending, Recorder, Trigger};
use std::time::Instant;

/// At the cap: hold the job (freeze / stop) and capture the evidence while it is held, the
/// Python heap census last; the caller kills it whole (or holds it, --hold-for). `trigger` is
/// when guard learnt of the cap; `peak` gets the peak as the job reached it (`--core` raises the
/// limit a little for gcore afterwards).
pub fn hold_and_capture(
    enforcer: &mut dyn Enforce,
    recorder: &mut Recorder,
    trigger: Instant,
    peak: &mut Option<u64>,
) -> Result<Pending, EvidenceError> {
    let mut result = held_capture(
        enforcer,
        recorder,
        Trigger::MemoryLimit,
        trigger,
        None,
        |e| *peak = e.peak(),
    );
    if let Ok(p) = &mut result {
        recorder.census(enforcer, p, true);
    }
    log::debug!(
        "captured the evidence {:.1} ms after the memory event",
        trigger.elapsed().as_secs_f64() * 1000.0
    );
    result
}

/// Hold the job (freeze / stop), run `after_hold`, and capture a full bundle for `trigger`
/// (`since`: when guard learnt of it; `usage`: the figure to record, else the job's own sample).
/// The caller decides what follows: kill, or let the job run again.
fn held_capture(
    enforcer: &mut dyn Enforce,
    recorder: &mut Recorder,
    trigger: Trigger,
    since: Instant,
    usage: Option<u64>,
    after_hold: impl FnOnce(&dyn Enforce),
) -> Result<Pending, EvidenceError> {
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
        return Err(recorder.why_none());
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
pub fn post_mortem(
    enforcer: &dyn Enforce,
    recorder: &mut Recorder,
    trigger: Trigger,
) -> Result<Pending, EvidenceError> {
    if !recorder.enabled() {
        return Err(recorder.why_none());
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

/// `--timeout` (trigger `timeout`) or observe mode (trigger `ContainerLimit`, with the
/// container's usage): hold the job, capture a full bundle, let it run again.
pub fn capture_and_release(
    enforcer: &mut dyn Enforce,
    recorder: &mut Recorder,
    trigger: Trigger,
    usage: Option<u64>,
) -> Result<Pending, EvidenceError> {
    // Observe mode: the container's OOM killer is not guard's enforcer's; its counter says
    // whether it struck during the capture (guard's own reads and the bundle are charged to
    // the container too).
    let container_kills = |r: &Recorder| {
        r.observe.as_ref().and_then(|o| {
            crate::cgroup::kernel_counters_of(&o.dir)
                .get("oom_kill")
                .copied()
        })
    };
    let before = container_kills(recorder);
    let mut result = held_capture(enforcer, recorder, trigger, Instant::now(), usage, |_| {});
    enforcer.unhold();
    if let (Some(b), Some(a), Ok(p)) = (before, container_kills(recorder), &mut result) {
        if a > b {
            log::info!(
                "the container's OOM killer acted during the capture; the bundle is post-mortem"
            );
            p.mark_post_mortem();
        }
    }
    result
}

/// The early-warning threshold: a light bundle (manifest, timeline, tree, stacks) while the job
/// keeps running, finished at once (the job's end adds nothing to it).
pub fn warning(
    enforcer: &mut dyn Enforce,
    recorder: &mut Recorder,
    usage: u64,
) -> Result<std::path::PathBuf, EvidenceError> {
    let occ = Occasion {
        trigger: Trigger::Warning,
        pre_kill: true,
        held: false,
        trigger_to_frozen_ms: None,
        usage: Some(usage),
    };
    let mut p = recorder.capture(enforcer, occ)?;
    recorder.census(enforcer, &mut p, false);
    recorder.finish(p, None, false, None, None)
}
