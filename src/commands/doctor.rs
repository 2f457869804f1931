//! `guard doctor`: what this machine offers and which enforcement mode guard would use, why, and
//! for each missing capability what would fix it. It goes through the enforcement interface a
//! run uses ([`crate::cgroup::Enforce`]): it creates and removes a probe cgroup where that has no
//! side effect on other processes, and reads what the backend reports otherwise.

use crate::cgroup::detect::{self, Layout, Plan, Sys, V2Placement};
use crate::cgroup::systemd;
use crate::cgroup::{self, Capability, Enforce, Enforcer, Limits, fs as cgfs};
use crate::os::proc::Proc;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub euid: u32,
    pub layout: String,
    pub own_cgroups: Vec<String>,
    pub mode: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<V2Placement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub probe: String,
    /// Whether a run asks systemd for a transient scope, and why.
    pub systemd: String,
    pub capabilities: Vec<Capability>,
    /// Where bundles would go and the collectors' tools (not kernel capabilities).
    pub evidence: Vec<Capability>,
    /// What guard can explain here: which runtimes' heaps it can census, and native stacks.
    pub runtimes: Vec<Capability>,
    /// The configuration guard would read (GUARD_CONFIG, else the system's and the user's
    /// files) checked as `guard config check` checks it.
    pub configuration: Vec<crate::commands::readiness::Check>,
    /// 0 ready; 1 a configuration check failed; 2 no hard cap here (poll mode).
    pub status: i32,
}

/// guard doctor's exit statuses.
pub const READY: i32 = 0;
pub const NOT_AS_CONFIGURED: i32 = 1;
pub const NO_HARD_CAP: i32 = 2;

/// The configuration's checks: it loads and validates ([defaults] and every job), and each
/// job's sinks, ping, metrics file and evidence directory are ready (nothing sent).
fn configuration() -> Vec<crate::commands::readiness::Check> {
    use crate::commands::readiness::{self, Check};
    let file = std::env::var_os("GUARD_CONFIG")
        .filter(|f| !f.is_empty())
        .map(std::path::PathBuf::from);
    let fail = |detail: String| {
        vec![Check {
            check: "configuration".into(),
            ok: false,
            detail,
        }]
    };
    let layers = match crate::config::file::Layers::load(file.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(e.to_string()),
    };
    let mut jobs: Vec<Option<String>> = vec![None];
    for f in &layers.files {
        jobs.extend(f.job_names().into_iter().map(Some));
    }
    jobs.dedup();
    let sinks: Vec<crate::alert::Sink> = layers.alerts().into_iter().map(|(s, _)| s).collect();
    let mut out = vec![Check {
        check: "configuration".into(),
        ok: true,
        detail: match layers.files.is_empty() {
            true => "no configuration file: built-in defaults".into(),
            false => layers
                .files
                .iter()
                .map(|f| f.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        },
    }];
    out.extend(readiness::sinks(&sinks));
    let mut seen = readiness::Seen::default();
    let m = clap::ArgMatches::default();
    for job in jobs {
        let base = crate::config::cli::WrapArgs::for_job(job.clone());
        let (args, src) = crate::config::apply_files(&base, &m, &layers);
        match crate::config::wrap_config(&args, &src, crate::cgroup::detect::available_memory_here)
        {
            Ok(cfg) => out.extend(readiness::job(&cfg, &mut seen)),
            Err(e) => out.push(Check {
                check: job.map_or("[defaults]".into(), |j| format!("[jobs.{j}]")),
                ok: false,
                detail: e.0,
            }),
        }
    }
    out
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| {
            format!(
                "{} {} ({})",
                u.sysname().to_string_lossy(),
                u.release().to_string_lossy(),
                u.machine().to_string_lossy()
            )
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Where bundles would go and whether guard could write there, and the collectors' tools.
/// Nothing is created: a missing directory is judged by its nearest existing ancestor.
fn evidence_caps() -> Vec<Capability> {
    let dir = std::env::var_os("GUARD_EVIDENCE_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .ok_or(())
        .or_else(|_| crate::config::default_evidence_dir());
    let mut caps = Vec::new();
    let fix = "give --evidence-dir DIR (or GUARD_EVIDENCE_DIR) a writable directory";
    match dir {
        Ok(d) => {
            let (ok, detail) = crate::evidence::bundle::dir_state(&d);
            caps.push(Capability::new("evidence directory", ok, detail, fix));
        }
        Err(e) => caps.push(Capability::new(
            "evidence directory",
            false,
            e.to_string(),
            fix,
        )),
    }
    let tool = |name: &'static str, what: &str, fix: &str| {
        let found = crate::os::runner::locate(name);
        let detail = match &found {
            Ok(p) => format!("{} ({what})", p.display()),
            Err(e) => format!("{e} ({what})"),
        };
        Capability::new(name, found.is_ok(), detail, fix)
    };
    caps.push(tool(
        "py-spy",
        "Python stacks in bundles",
        "pip install py-spy (or name it: --pyspy PATH, pyspy = \"PATH\" in guard.toml)",
    ));
    caps.push(tool("gcore", "cores with --core", "apt-get install gdb"));
    caps
}

/// Which runtimes guard can explain on this machine: the interpreters its census hooks serve
/// (found where a job's PATH would find them) and eu-stack for native code.
fn runtime_caps() -> Vec<Capability> {
    let interpreter = |name: &'static str, programs: &[&str], census: &str, fix: &str| {
        let found = programs
            .iter()
            .find_map(|p| crate::os::runner::locate(p).ok());
        let detail = match &found {
            Some(p) => format!(
                "{}: heap census through guard's hook ({census})",
                p.display()
            ),
            None => format!(
                "no {} found on PATH or in the system's directories: guard's hook still goes \
                 into the job, for an interpreter it brings",
                programs[0]
            ),
        };
        Capability::new(name, found.is_some(), detail, fix)
    };
    let eu = crate::os::runner::locate("eu-stack");
    let mut node = interpreter(
        "Node.js",
        &["node", "nodejs"],
        "V8's memory by kind, holders, allocation sites",
        "apt-get install nodejs (only if your jobs run Node.js)",
    );
    node_version_check(&mut node);
    vec![
        interpreter(
            "Python",
            &["python3"],
            "what holds the memory, and how; stacks with py-spy",
            "apt-get install python3 (only if your jobs run Python)",
        ),
        node,
        Capability::new(
            "native code",
            eu.is_ok(),
            match &eu {
                Ok(p) => format!(
                    "{} (native stacks of a process whose memory is mostly native: C, C++, \
                     Rust, sort, a C extension)",
                    p.display()
                ),
                Err(e) => format!("{e}: no native stacks; memory by kind only"),
            },
            "apt-get install elfutils",
        ),
    ]
}

/// The oldest Node.js major the hook serves (its census needs the inspector's heap snapshot
/// events and `--require` of a CommonJS file; tested from 18 on).
const NODE_OLDEST: u32 = 18;

/// The Node.js found is asked its version (`node --version`, 5 s at most): one older than
/// [`NODE_OLDEST`] is not one guard can explain.
fn node_version_check(c: &mut Capability) {
    let Some(path) = ["node", "nodejs"]
        .iter()
        .find_map(|p| crate::os::runner::locate(p).ok())
    else {
        return;
    };
    let ran = crate::os::runner::run_bounded(
        &path,
        &["--version"],
        crate::os::runner::Env::Only(&[]),
        std::time::Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&ran.stdout).trim().to_string();
    match node_major(&text) {
        Some(major) if major >= NODE_OLDEST => {
            c.detail = format!(
                "{} ({text}){}",
                path.display(),
                &c.detail[path.as_os_str().len()..]
            );
        }
        Some(_) => {
            c.ok = false;
            c.detail = format!(
                "{} is Node.js {text}: the census needs Node.js {NODE_OLDEST} or later",
                path.display()
            );
            c.fix = Some(format!(
                "a Node.js {NODE_OLDEST} or later (only if your jobs run Node.js)"
            ));
        }
        None => {
            let said = if text.is_empty() { ran.detail } else { text };
            c.detail = format!(
                "{}: `node --version` said nothing guard understands ({said}); its census may not work",
                path.display()
            );
        }
    }
}

/// 20 from `v20.20.2`.
fn node_major(version: &str) -> Option<u32> {
    version.strip_prefix('v')?.split('.').next()?.parse().ok()
}

/// Where a job's cgroup would go under `plan` (None in poll mode).
fn job_cgroup(plan: &Plan) -> Option<String> {
    let (base, leaf) = match plan {
        Plan::V1 { base, .. } => (base, "guard-<name>-<pid>"),
        Plan::V2 {
            base, placement, ..
        } if *placement == V2Placement::Dedicated => (base, "<name>-<pid>"),
        Plan::V2 { base, .. } => (base, "guard-<name>-<pid>"),
        Plan::Poll { .. } => return None,
    };
    Some(base.join(leaf).display().to_string())
}

/// Try the real thing where that touches no other process: create the job's cgroup as a run
/// would (through the same interface), read what it offers, remove it. Returns what happened and
/// the capabilities found.
fn probe(plan: &Plan, proc: &Proc) -> (String, Vec<Capability>) {
    match plan {
        Plan::Poll { .. } => (
            "not applicable in poll mode".to_string(),
            cgroup::capabilities_of(plan, proc),
        ),
        Plan::V2 {
            placement: V2Placement::Supervisor,
            group,
            ..
        } => (
            format!(
                "not tried: a real run moves the {} member(s) of {} into {}/supervisor first",
                cgfs::procs(group).len(),
                group.display(),
                group.display()
            ),
            cgroup::capabilities_of(plan, proc),
        ),
        _ => {
            let limits = Limits {
                memory: Some(64 << 20),
                swap: 0,
            };
            match Enforcer::create(plan, proc, "doctor", &limits) {
                Ok(e) => {
                    // The v1 freezer leaf too (a job gets it 20 ms in).
                    e.prepare_hold();
                    let caps = e.capabilities();
                    let dir = e.dir().map(|d| d.display().to_string()).unwrap_or_default();
                    let removed = match e.remove() {
                        Ok(()) => "removed".to_string(),
                        Err(err) => format!("could not remove it: {err}"),
                    };
                    (format!("ok: created and {removed} {dir}"), caps)
                }
                Err(err) => (
                    format!("failed: {err}"),
                    cgroup::capabilities_of(plan, proc),
                ),
            }
        }
    }
}

/// guard's own cgroups, one line per hierarchy.
fn own_cgroups(layout: &Layout) -> Vec<String> {
    let mut own = Vec::new();
    if let Some(h) = &layout.v1_memory {
        own.push(format!("memory (v1): {} -> {}", h.own, h.own_dir.display()));
    }
    if let Some(h) = &layout.v2 {
        own.push(format!(
            "unified (v2): {} -> {}",
            h.own,
            h.own_dir.display()
        ));
    }
    own
}

/// The path a run takes on a machine systemd runs: asking the manager for a scope (the plan is
/// then the supervisor-leaf path inside it), or why not. Returns the plan to report, the systemd
/// line, and the probe text when the scope path replaces the probe.
fn with_scope(
    layout: &Layout,
    plan: Plan,
    decision: &systemd::Decision,
) -> (Plan, String, Option<String>) {
    let manager = match decision {
        systemd::Decision::Skip { why, fix } => {
            let plan = match (plan, fix) {
                (Plan::Poll { reason, .. }, Some(fix)) => Plan::Poll {
                    reason: format!("{reason}; {why}"),
                    fix: fix.clone(),
                },
                (plan, _) => plan,
            };
            return (plan, format!("not asked: {why}"), None);
        }
        systemd::Decision::Ask(m) => m,
    };
    let slice = std::env::var("GUARD_SLICE")
        .ok()
        .filter(|s| systemd::check_slice(s).is_ok())
        .unwrap_or_else(|| manager.default_slice().to_string());
    let version = systemd::manager_version(manager);
    let line = format!(
        "a run asks {} for a transient scope guard-<name>-<pid>.scope (Delegate=yes) in {slice}, \
         because guard's cgroup {} is not delegated; {}",
        manager.describe(),
        layout.v2.as_ref().map(|h| h.own.as_str()).unwrap_or("?"),
        match &version {
            Ok(v) => format!("the manager answers (systemd {v})"),
            Err(e) =>
                format!("but the manager does not answer: {e}; a run then goes on without a scope"),
        }
    );
    let (Ok(_), Some(v2)) = (&version, &layout.v2) else {
        return (plan, line, None);
    };
    let scope = v2
        .mount
        .join(systemd::slice_dir(manager, &slice))
        .join("guard-<name>-<pid>.scope");
    let in_scope = Plan::V2 {
        base: scope.clone(),
        placement: V2Placement::Supervisor,
        group: scope.clone(),
        reason: format!(
            "systemd runs this machine and guard's cgroup is not delegated: a run asks {} for its \
             own scope, moves itself to the scope's 'supervisor' leaf and puts the job in a sibling leaf",
            manager.describe()
        ),
    };
    let probe = format!(
        "not tried: a run asks {} for {} first",
        manager.describe(),
        scope.display()
    );
    (in_scope, line, Some(probe))
}

/// Build the report (may create and remove a probe cgroup).
pub fn report() -> Report {
    let sys = Sys::live();
    let proc = Proc::at(&sys.proc);
    let (layout, layout_err) = match Layout::read(&sys) {
        Ok(l) => (l, None),
        Err(e) => (Layout::default(), Some(e.to_string())),
    };
    let plan = match &layout_err {
        None => detect::plan(&sys, &layout),
        Some(e) => Plan::Poll {
            reason: e.clone(),
            fix: "mount /proc".into(),
        },
    };
    let no_systemd = std::env::var("GUARD_NO_SYSTEMD").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    });
    let decision = systemd::decide(&sys, &layout, &plan, no_systemd);
    // The kernel's capabilities are probed where guard would go without systemd (the same
    // kernel features a scope offers); the scope itself is made only by a run.
    let (mut probe, capabilities) = probe(&plan, &proc);
    let (plan, systemd_line, scope_probe) = with_scope(&layout, plan, &decision);
    if let Some(p) = scope_probe {
        probe = format!("{p} ({probe})");
    }
    let configuration = configuration();
    let status = if plan.mode() == crate::format::Mode::Poll {
        NO_HARD_CAP
    } else if configuration.iter().any(|c| !c.ok) {
        NOT_AS_CONFIGURED
    } else {
        READY
    };
    Report {
        configuration,
        status,
        systemd: systemd_line,
        evidence: evidence_caps(),
        runtimes: runtime_caps(),
        kernel: kernel(),
        euid: sys.euid,
        own_cgroups: own_cgroups(&layout),
        layout: layout_err.unwrap_or_else(|| layout.describe()),
        mode: plan.mode().to_string(),
        reason: plan.reason().to_string(),
        job_cgroup: job_cgroup(&plan),
        placement: match &plan {
            Plan::V2 { placement, .. } => Some(placement.clone()),
            _ => None,
        },
        fix: match &plan {
            Plan::Poll { fix, .. } => Some(fix.clone()),
            _ => None,
        },
        probe,
        capabilities,
    }
}

/// Print the report for humans.
pub fn print(r: &Report) {
    println!("kernel:      {}", r.kernel);
    println!("user:        euid {}", r.euid);
    println!("layout:      {}", r.layout);
    for (i, o) in r.own_cgroups.iter().enumerate() {
        println!(
            "{}{o}",
            if i == 0 {
                "own cgroup:  "
            } else {
                "             "
            }
        );
    }
    println!("mode:        {}", r.mode);
    println!("reason:      {}", r.reason);
    if let Some(j) = &r.job_cgroup {
        println!("job cgroup:  {j}");
    }
    if let Some(f) = &r.fix {
        println!("to enforce:  {f}");
    }
    println!("probe:       {}", r.probe);
    println!("systemd:     {}", r.systemd);
    for (title, caps) in [
        ("capabilities:", &r.capabilities),
        ("evidence:", &r.evidence),
        ("runtimes guard can explain:", &r.runtimes),
    ] {
        println!("{title}");
        for c in caps {
            let mark = if c.ok { "ok     " } else { "missing" };
            match &c.fix {
                Some(fix) if !c.ok => {
                    println!("  {mark}  {:<42} {} — fix: {fix}", c.name, c.detail)
                }
                _ => println!("  {mark}  {:<42} {}", c.name, c.detail),
            }
        }
    }
    println!("configuration (checked here and now; secrets resolved but not shown):");
    print!("{}", crate::commands::readiness::text(&r.configuration));
    println!(
        "status:      {} ({})",
        r.status,
        match r.status {
            READY => "ready: guard enforces a hard cap here as configured",
            NOT_AS_CONFIGURED =>
                "a configuration check failed: guard would cap, but lose what the failed check names",
            _ => "no hard cap here: poll mode is best effort (see 'to enforce')",
        }
    );
}
/// `guard doctor [--json]`: the report printed; exit 0 ready, 1 a configuration check failed,
/// 2 poll mode (no hard cap here).
pub fn command(json: bool) -> i32 {
    let r = report();
    if json {
        match serde_json::to_string_pretty(&r) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                super::error_line(format!("cannot encode the report: {e}"));
                return crate::config::exit::GUARD_FAILED;
            }
        }
    } else {
        print(&r);
    }
    r.status
}

#[cfg(test)]
mod tests {
    use super::node_major;

    #[test]
    fn a_node_version_gives_its_major() {
        assert_eq!(node_major("v18.20.8"), Some(18));
        assert_eq!(node_major("v24.22.3"), Some(24));
        assert_eq!(node_major("18.20.8"), None);
        assert_eq!(node_major(""), None);
    }
}
