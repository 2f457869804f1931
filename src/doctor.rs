//! `guard doctor`: what this machine offers and which enforcement mode guard would use, why, and
//! for each missing capability what would fix it. It tries the real thing where that has no side
//! effect on other processes (creates and removes a probe cgroup), and says "would" where it does.

use crate::cgroup::detect::{self, Layout, Plan, Sys, V2Placement};
use crate::cgroup::{Limits, fs as cgfs, v1, v2};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

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
    pub capabilities: Vec<Capability>,
    /// Where bundles would go and the collectors' tools (not kernel capabilities).
    pub evidence: Vec<Capability>,
}

fn cap(name: &'static str, ok: bool, detail: impl Into<String>, fix: Option<&str>) -> Capability {
    Capability {
        name,
        ok,
        detail: detail.into(),
        fix: if ok { None } else { fix.map(str::to_string) },
    }
}

fn file_cap(dir: &Path, file: &str, name: &'static str, fix: &str) -> Capability {
    let ok = dir.join(file).exists();
    cap(
        name,
        ok,
        if ok {
            file.to_string()
        } else {
            format!("no {file}")
        },
        Some(fix),
    )
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

fn v1_caps(dir: &Path, layout: &Layout) -> Vec<Capability> {
    let oc = cgfs::read(&dir.join("memory.oom_control")).unwrap_or_default();
    vec![
        file_cap(
            dir,
            "memory.limit_in_bytes",
            "memory limit",
            "a kernel with CONFIG_MEMCG",
        ),
        file_cap(
            dir,
            "memory.memsw.limit_in_bytes",
            "swap limit (swap accounting)",
            "boot with swapaccount=1 (without it --swap is ignored and swap is not capped)",
        ),
        cap(
            "oom_kill counter",
            cgfs::keyed(&oc, "oom_kill").is_some(),
            "memory.oom_control oom_kill",
            Some("kernel 4.13 or newer (older kernels: guard infers memory kills from under_oom)"),
        ),
        file_cap(
            dir,
            "cgroup.event_control",
            "OOM event notification",
            "a kernel with cgroup v1 event_control",
        ),
        cap(
            "freezer (for holding the job at the cap)",
            layout.v1_freezer.is_some(),
            layout
                .v1_freezer
                .as_ref()
                .map(|f| f.own_dir.display().to_string())
                .unwrap_or_else(|| "not mounted".into()),
            Some(
                "mount the v1 freezer hierarchy (mount -t cgroup -o freezer cgroup /sys/fs/cgroup/freezer)",
            ),
        ),
    ]
}

fn v2_caps(dir: &Path) -> Vec<Capability> {
    vec![
        file_cap(
            dir,
            "memory.max",
            "memory limit",
            "enable the memory controller for this subtree",
        ),
        file_cap(
            dir,
            "memory.swap.max",
            "swap limit (swap accounting)",
            "a kernel with CONFIG_MEMCG_SWAP (and swap enabled)",
        ),
        file_cap(
            dir,
            "memory.oom.group",
            "group OOM kill",
            "kernel 4.19 or newer",
        ),
        file_cap(
            dir,
            "memory.events.local",
            "local memory events",
            "kernel 5.7 or newer (guard falls back to memory.events)",
        ),
        file_cap(
            dir,
            "cgroup.kill",
            "atomic group kill",
            "kernel 5.14 or newer (guard falls back to SIGKILL per process)",
        ),
        file_cap(
            dir,
            "cgroup.freeze",
            "freezer (for holding the job at the cap)",
            "kernel 5.2 or newer",
        ),
        file_cap(
            dir,
            "memory.peak",
            "peak usage",
            "kernel 5.19 or newer (guard reports sampled peaks)",
        ),
    ]
}

/// Where bundles would go and whether guard could write there, and the collectors' tools.
/// Nothing is created: a missing directory is judged by its nearest existing ancestor.
fn evidence_caps() -> Vec<Capability> {
    use nix::unistd::{AccessFlags, access};
    let dir = std::env::var_os("GUARD_EVIDENCE_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .ok_or(())
        .or_else(|_| crate::config::default_evidence_dir());
    let mut caps = Vec::new();
    let fix = "give --evidence-dir DIR (or GUARD_EVIDENCE_DIR) a writable directory";
    match dir {
        Ok(d) => {
            let existing = d.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
            let writable = existing.is_dir()
                && access(existing, AccessFlags::W_OK | AccessFlags::X_OK).is_ok();
            let detail = if existing == d {
                d.display().to_string()
            } else {
                format!("{} (created on first use, 0700)", d.display())
            };
            caps.push(cap("evidence directory", writable, detail, Some(fix)));
        }
        Err(e) => caps.push(cap("evidence directory", false, e, Some(fix))),
    }
    let tool = |name: &'static str, what: &str, fix: &str| {
        let found = crate::runner::which(name);
        cap(
            name,
            found.is_some(),
            match found {
                Some(p) => format!("{} ({what})", p.display()),
                None => format!("not on PATH ({what})"),
            },
            Some(fix),
        )
    };
    caps.push(tool(
        "py-spy",
        "Python stacks in bundles",
        "pip install py-spy",
    ));
    caps.push(tool("gcore", "cores with --core", "apt-get install gdb"));
    caps
}

/// Build the report (may create and remove a probe cgroup).
pub fn report() -> Report {
    let sys = Sys::live();
    let (layout, layout_err) = match Layout::read(&sys) {
        Ok(l) => (l, None),
        Err(e) => (Layout::default(), Some(e)),
    };
    let plan = match &layout_err {
        None => detect::plan(&sys, &layout),
        Some(e) => Plan::Poll {
            reason: e.clone(),
            fix: "mount /proc".into(),
        },
    };
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
    let probe_name = format!("guard-doctor-{}", std::process::id());
    let limits = Limits {
        memory: Some(64 << 20),
        swap: 0,
    };
    let (job_cgroup, placement, fix, probe, capabilities) = match &plan {
        Plan::V1 {
            base, freezer_base, ..
        } => {
            let probe =
                match v1::V1Cgroup::create(base, freezer_base.as_deref(), &probe_name, &limits) {
                    Ok(cg) => {
                        // The freezer leaf too (a job gets it 20 ms in).
                        cg.join_freezer();
                        let caps = v1_caps(&cg.dir, &layout);
                        let _ = crate::cgroup::Enforcer::V1(cg).remove();
                        (
                            format!(
                                "ok: created and removed {}",
                                base.join(&probe_name).display()
                            ),
                            caps,
                        )
                    }
                    Err(e) => (format!("failed: {e}"), v1_caps(base, &layout)),
                };
            (
                Some(base.join("guard-<name>-<pid>").display().to_string()),
                None,
                None,
                probe.0,
                probe.1,
            )
        }
        Plan::V2 {
            base,
            placement,
            group,
            ..
        } => {
            let dedicated = *placement == V2Placement::Dedicated;
            let leaf = if dedicated {
                "<name>-<pid>"
            } else {
                "guard-<name>-<pid>"
            };
            let (probe, caps) = if *placement == V2Placement::Supervisor {
                let members = cgfs::procs(group).len();
                (
                    format!(
                        "not tried: a real run moves the {members} member(s) of {} into {}/supervisor first",
                        group.display(),
                        group.display()
                    ),
                    v2_caps(group),
                )
            } else {
                match v2::V2Cgroup::create(group, base, placement, &probe_name, &limits) {
                    Ok(cg) => {
                        let caps = v2_caps(&cg.dir);
                        let _ = cgfs::rmdir_retry(&cg.dir, 20);
                        (
                            format!(
                                "ok: created and removed {}",
                                base.join(&probe_name).display()
                            ),
                            caps,
                        )
                    }
                    Err(e) => (format!("failed: {e}"), v2_caps(base)),
                }
            };
            (
                Some(base.join(leaf).display().to_string()),
                Some(placement.clone()),
                None,
                probe,
                caps,
            )
        }
        Plan::Poll { fix, .. } => {
            let mut caps = vec![cap(
                "writable cgroup with the memory controller",
                false,
                "none found",
                Some(fix.as_str()),
            )];
            caps.push(cap(
                "/proc/PID/task/TID/children (poll mode process tree)",
                Path::new("/proc/self/task")
                    .join(std::process::id().to_string())
                    .join("children")
                    .exists(),
                "used to find the job's processes",
                Some("a kernel with CONFIG_PROC_CHILDREN"),
            ));
            (
                None,
                None,
                Some(fix.clone()),
                "not applicable in poll mode".to_string(),
                caps,
            )
        }
    };
    Report {
        evidence: evidence_caps(),
        kernel: kernel(),
        euid: sys.euid,
        layout: layout_err.unwrap_or_else(|| layout.describe()),
        own_cgroups: own,
        mode: plan.mode().to_string(),
        reason: plan.reason().to_string(),
        job_cgroup,
        placement,
        fix,
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
    for (title, caps) in [
        ("capabilities:", &r.capabilities),
        ("evidence:", &r.evidence),
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
}
