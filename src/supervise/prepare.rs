//! Before the job runs, and its start: choose the enforcement from the machine's cgroup layout
//! and create it (poll mode, with one warning, when no cgroup can be had — unless
//! `--require-cgroup`), set up observe mode where guard's own cgroup has a limit it cannot write,
//! and start COMMAND inside the cgroup (falling back to poll mode when the join fails). Also
//! here: making guard itself hard to starve while it holds a job at its cap.

use super::Fatal;
use super::spawn::{self, SpawnError};
use crate::cgroup::detect::{self, Layout, Plan, Sys};
use crate::cgroup::systemd;
use crate::cgroup::{Enforce, Enforcer, Limits};
use crate::config::WrapConfig;
use crate::config::exit;
use crate::config::units::{format_duration, format_size};
use crate::evidence::Observe;
use crate::evidence::runtime::census::{Asking, Census};
use crate::evidence::runtime::hookdir::HookError;
use crate::evidence::runtime::{self, node, python};
use crate::format::Mode;
use crate::os::proc::Proc;
use std::os::fd::OwnedFd;

/// The enforcement chosen for this run.
pub struct Prepared {
    pub enforcer: Enforcer,
    /// Where the job's cgroup went (for the stale-cgroup cleanup next to it).
    pub plan: Plan,
    /// Observe mode: the container's own cgroup and its capture point.
    pub observe: Option<Observe>,
}

/// Choose the enforcement, create it, and say what it is (-v) and what it cannot do.
pub fn enforcement(cfg: &WrapConfig, sys: &Sys) -> Result<Prepared, Fatal> {
    let proc = Proc::at(&sys.proc);
    let plan = choose(cfg, sys);
    let limits = Limits {
        memory: cfg.memory,
        swap: cfg.swap,
    };
    let enforcer = match &plan {
        Plan::Poll { reason, fix } => fall_back(cfg, &proc, reason, fix)?,
        _ => match Enforcer::create(&plan, &proc, &cfg.name, &limits) {
            Ok(e) => {
                log::debug!("{}", plan.reason());
                e
            }
            Err(e) => fall_back(
                cfg,
                &proc,
                &format!("creating the job's cgroup failed: {e}"),
                "run 'guard doctor' to see what this system allows",
            )?,
        },
    };
    let observe = observe_mode(cfg, sys, &enforcer);
    announce(cfg, &enforcer);
    Ok(Prepared {
        enforcer,
        plan,
        observe,
    })
}

/// The plan: from the cgroup layout, and on a machine systemd runs where guard's cgroup is not
/// delegated, from inside the transient scope guard asks the manager for.
fn choose(cfg: &WrapConfig, sys: &Sys) -> Plan {
    let layout = match Layout::read(sys) {
        Ok(layout) => layout,
        Err(e) => {
            return Plan::Poll {
                reason: e.to_string(),
                fix: "check that /proc is mounted".into(),
            };
        }
    };
    let plan = detect::plan(sys, &layout);
    match systemd::decide(sys, &layout, &plan, cfg.no_systemd) {
        systemd::Decision::Ask(manager) => in_scope(cfg, sys, &manager).unwrap_or(plan),
        systemd::Decision::Skip { why, fix } => {
            log::debug!("no systemd scope: {why}");
            match (plan, fix) {
                (Plan::Poll { reason, .. }, Some(fix)) => Plan::Poll {
                    reason: format!("{reason}; {why}"),
                    fix,
                },
                (plan, _) => plan,
            }
        }
    }
}

/// Ask `manager` for guard's scope; once guard is in it, the plan there. None (with a warning)
/// when no scope was had: guard goes on as without systemd.
fn in_scope(cfg: &WrapConfig, sys: &Sys, manager: &systemd::Manager) -> Option<Plan> {
    let pid = std::process::id();
    let unit = systemd::scope_name(&cfg.name, pid);
    let scrub = crate::evidence::redact::Scrubber::new(&cfg.evidence.redact);
    let argv: Vec<String> = cfg
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut command = scrub.argv(&argv).join(" ");
    if command.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|i| command.is_char_boundary(*i))
            .unwrap_or(0);
        command.truncate(cut);
        command.push('…');
    }
    let cap = cfg
        .memory
        .map(format_size)
        .unwrap_or_else(|| "no cap".into());
    let req = systemd::Request {
        unit: unit.clone(),
        slice: cfg.slice.clone(),
        description: format!("guard: {} ({cap}): {command}", cfg.name),
        pid,
    };
    let slice = cfg.slice.as_deref().unwrap_or(manager.default_slice());
    match systemd::start_scope(manager, &req, &sys.proc) {
        Ok(()) => {
            log::info!(
                "systemd: {} made {unit} (Delegate=yes) in {slice} for this job",
                manager.describe()
            );
            let layout = Layout::read(sys).ok()?;
            let why = format!(
                "systemd runs this machine and guard's cgroup was not delegated: {} made {unit} \
                 (Delegate=yes) in {slice} for guard",
                manager.describe()
            );
            Some(detect::plan_in_scope(sys, &layout, &why))
        }
        Err(e) => {
            log::warn!(
                "no systemd scope for the job ({e}); going on without one (--no-systemd skips asking)"
            );
            None
        }
    }
}

/// Poll mode (with a warning) when a cgroup cannot be had, unless `--require-cgroup`.
fn fall_back(cfg: &WrapConfig, proc: &Proc, why: &str, fix: &str) -> Result<Enforcer, Fatal> {
    if cfg.require_cgroup {
        return Err(Fatal::new(
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
    Ok(Enforcer::poll(proc))
}

/// Observe mode: no cgroup of our own, but the container's (guard's own cgroup) has a limit we
/// can read: capture before the runtime's OOM killer acts.
fn observe_mode(cfg: &WrapConfig, sys: &Sys, enforcer: &Enforcer) -> Option<Observe> {
    if enforcer.mode() != Mode::Poll {
        return None;
    }
    let (dir, file, limit) = Layout::read(sys).ok()?.own_memory_limit()?;
    let o = Observe::new(dir, file, limit, cfg.capture_at);
    log::info!(
        "observe mode: {} has a memory limit of {}; a bundle at {} ({}%)",
        o.dir.display(),
        format_size(o.limit),
        format_size(o.at),
        cfg.capture_at
    );
    Some(o)
}

/// -v: the mode and cgroup; and the one warning about a --swap the kernel cannot apply.
fn announce(cfg: &WrapConfig, enforcer: &Enforcer) {
    let limit = cfg.memory.map(format_size).unwrap_or_else(|| "none".into());
    match enforcer.dir() {
        Some(d) => log::info!(
            "mode {}, cgroup {}, memory limit {limit}",
            enforcer.mode(),
            d.display()
        ),
        None => log::info!("mode {}, memory limit {limit}", enforcer.mode()),
    }
    if cfg.memory.is_some() && cfg.swap > 0 && !enforcer.swap_limited() {
        log::warn!(
            "--swap {} cannot be applied: this kernel has no swap accounting for cgroups \
             (boot with swapaccount=1 on cgroup v1); only --memory is enforced",
            format_size(cfg.swap)
        );
    }
}

/// The heap census: each runtime's hook written (or checked) for this uid, and the job's
/// environment that loads them. None with --no-pyheap and --no-nodeheap, without an evidence
/// directory (a census goes into a bundle), without a cap or a warning threshold (no census can
/// happen), or when no hook can be put in place (one warning for each says why; the cap is not
/// affected).
pub fn census(cfg: &WrapConfig) -> Option<(Census, Vec<std::ffi::CString>)> {
    let settings = cfg.evidence.census?;
    cfg.evidence.dir.as_ref().ok()?;
    // A census is taken at the cap and at the warning: without either there is none to take,
    // and the job's environment is left as it was given.
    if cfg.memory.is_none() && cfg.evidence.warn.is_none() {
        return None;
    }
    let sock = Census::socket_name();
    let mut env: runtime::Environ = std::env::vars_os().collect();
    let mut hooks: Vec<Asking> = Vec::new();
    let mut add = |runtime: &str, flag: &str, installed: Result<Asking, HookError>| match installed
    {
        Ok(asking) => {
            log::debug!("{runtime} hook: {}", asking.announcement.display());
            hooks.push(asking);
        }
        Err(e) => log::warn!(
            "no {runtime} heap census: {e}; the memory cap still applies ({flag} silences this)"
        ),
    };
    if settings.python {
        let installed = python::Hook::install(settings, &sock).map(|h| {
            h.apply(&mut env);
            h.asking()
        });
        add("Python", "--no-pyheap", installed);
    }
    if settings.node {
        let installed = node::Hook::install(settings, &sock).map(|h| {
            h.apply(&mut env);
            h.asking()
        });
        add("Node.js", "--no-nodeheap", installed);
    }
    if hooks.is_empty() {
        return None;
    }
    Some((
        Census::new(settings, sock, hooks),
        runtime::execve_env(&env),
    ))
}

/// Start COMMAND inside the job's cgroup, its stdout and stderr to `stdio` where given. A failed
/// join falls back to poll mode (the cgroup is removed) unless `--require-cgroup`. Returns the
/// enforcement in force and the job's pid; on an error nothing of the job is left.
pub fn start(
    cfg: &WrapConfig,
    enforcer: Enforcer,
    stdio: (Option<&OwnedFd>, Option<&OwnedFd>),
    group: spawn::Group,
    env: Option<&[std::ffi::CString]>,
) -> Result<(Enforcer, i32), Fatal> {
    let spawned = spawn::spawn(&cfg.command, &enforcer.attach_fds(), stdio, group, env);
    match spawned {
        Ok(pid) => {
            log::debug!("started {} as pid {pid}", cfg.command[0].to_string_lossy());
            Ok((enforcer, pid))
        }
        Err(SpawnError::Attach(e)) if !cfg.require_cgroup => {
            let dir = enforcer
                .dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            log::warn!(
                "cannot move the job into {dir} ({e}); falling back to best-effort poll mode (see 'guard doctor')"
            );
            let poll = Enforcer::poll(enforcer.proc());
            let _ = enforcer.remove();
            let pid = spawn::spawn(&cfg.command, &[], stdio, group, env)
                .map_err(|e| spawn_fatal(cfg, e))?;
            Ok((poll, pid))
        }
        Err(e) => {
            let _ = enforcer.remove();
            Err(spawn_fatal(cfg, e))
        }
    }
}

/// Why COMMAND did not start, with the exit status the table gives it.
fn spawn_fatal(cfg: &WrapConfig, e: SpawnError) -> Fatal {
    let cmd = cfg.command[0].to_string_lossy();
    match e {
        SpawnError::Exec(err) if err.kind() == std::io::ErrorKind::NotFound => Fatal::new(
            exit::NOT_FOUND,
            match crate::config::cli::similar_subcommand(&cmd) {
                Some(sub) => format!(
                    "cannot run '{cmd}': command not found; did you mean 'guard {sub}'? (to run a program of that name, give its path)"
                ),
                None => format!("cannot run '{cmd}': command not found (check the name and PATH)"),
            },
        ),
        SpawnError::Exec(err) => {
            Fatal::new(exit::NOT_EXECUTABLE, format!("cannot run '{cmd}': {err}"))
        }
        SpawnError::Attach(err) => Fatal::new(
            exit::GUARD_FAILED,
            format!("--require-cgroup: cannot move '{cmd}' into the job's cgroup: {err}"),
        ),
        SpawnError::Os(err) => {
            Fatal::new(exit::GUARD_FAILED, format!("cannot start '{cmd}': {err}"))
        }
    }
}

/// Keep guard (and its sentinel) working while a job is held at its cap and the host
/// may be short of memory: lock guard's pages in RAM, and take it out of the OOM killer's reach
/// when root. Done once the job has run a moment (not on a short job's path); the job itself
/// started before, with the oom_score_adj it had. Failures only cost the protection.
pub fn protect_self(sentinel: Option<i32>) {
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
        // The sentinel shares guard's memory: the OOM killer must spare it as it spares guard.
        let pids = std::iter::once("self".to_string()).chain(sentinel.map(|p| p.to_string()));
        for p in pids {
            if let Err(e) = std::fs::write(format!("/proc/{p}/oom_score_adj"), "-1000") {
                log::debug!("oom_score_adj of {p}: {e}");
            }
        }
    }
}
