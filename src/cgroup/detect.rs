//! Finding the cgroup layout (which hierarchies are mounted where, and guard's own cgroup in each)
//! and choosing where the job's cgroup goes. Everything reads from a `Sys` root so that unit tests
//! run on fixture trees instead of the live /proc and /sys/fs/cgroup.

use super::fs as cgfs;
use procfs::{FromBufRead, FromRead};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where to read the system from: `/proc` normally, a fixture directory in tests. Mount points in
/// the fixture's mountinfo are taken relative to `root`.
#[derive(Debug, Clone)]
pub struct Sys {
    pub proc: PathBuf,
    pub root: PathBuf,
    pub euid: u32,
}

impl Sys {
    pub fn live() -> Sys {
        Sys {
            proc: PathBuf::from("/proc"),
            root: PathBuf::from("/"),
            euid: nix::unistd::geteuid().as_raw(),
        }
    }

    fn mounted(&self, mount_point: &Path) -> PathBuf {
        self.root
            .join(mount_point.strip_prefix("/").unwrap_or(mount_point))
    }
}

/// Why the cgroup layout cannot be read (then guard uses poll mode, or fails with
/// --require-cgroup).
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: procfs::ProcError,
    },
}

/// One mounted hierarchy and guard's own cgroup in it.
#[derive(Debug, Clone, Serialize)]
pub struct Hierarchy {
    /// Mount point (e.g. /sys/fs/cgroup/memory).
    pub mount: PathBuf,
    /// guard's own cgroup, relative to the hierarchy root, as /proc/self/cgroup shows it.
    pub own: String,
    /// guard's own cgroup directory.
    pub own_dir: PathBuf,
}

/// The cgroup layout seen from this process.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Layout {
    /// The v1 hierarchy carrying the memory controller, if any.
    pub v1_memory: Option<Hierarchy>,
    /// The v1 freezer hierarchy, if any.
    pub v1_freezer: Option<Hierarchy>,
    /// The cgroup2 (unified) hierarchy, if mounted.
    pub v2: Option<Hierarchy>,
    /// Controllers available in the cgroup2 hierarchy (its root's cgroup.controllers).
    pub v2_controllers: Vec<String>,
}

impl Layout {
    /// guard's own memory cgroup (the container's, inside a container) and its limit, when it
    /// has one: (directory, usage file, limit bytes). For observe mode, which only reads.
    pub fn own_memory_limit(&self) -> Option<(PathBuf, &'static str, u64)> {
        if let Some(h) = &self.v1_memory {
            let limit = super::fs::read_u64(&h.own_dir.join("memory.limit_in_bytes"))
                .ok()
                .flatten()?;
            // v1 says "no limit" with a page-rounded i64::MAX.
            return (limit < (1u64 << 60))
                .then(|| (h.own_dir.clone(), "memory.usage_in_bytes", limit));
        }
        let h = self.v2.as_ref()?;
        let limit = super::fs::read_u64(&h.own_dir.join("memory.max"))
            .ok()
            .flatten()?;
        Some((h.own_dir.clone(), "memory.current", limit))
    }

    /// Read /proc/self/cgroup and /proc/self/mountinfo (relative to `sys`).
    pub fn read(sys: &Sys) -> Result<Layout, LayoutError> {
        let cg_path = sys.proc.join("self/cgroup");
        let f = std::fs::File::open(&cg_path).map_err(|source| LayoutError::Open {
            path: cg_path.clone(),
            source,
        })?;
        let cgroups = procfs::ProcessCGroups::from_buf_read(std::io::BufReader::new(f)).map_err(
            |source| LayoutError::Parse {
                path: cg_path.clone(),
                source,
            },
        )?;
        if let Some(fast) = Self::read_standard(sys, &cgroups) {
            return Ok(fast);
        }
        Self::read_mountinfo(sys, &cgroups)
    }

    /// The general path: every cgroup mount from /proc/self/mountinfo.
    fn read_mountinfo(sys: &Sys, cgroups: &procfs::ProcessCGroups) -> Result<Layout, LayoutError> {
        let mi_path = sys.proc.join("self/mountinfo");
        let f = std::fs::File::open(&mi_path).map_err(|source| LayoutError::Open {
            path: mi_path.clone(),
            source,
        })?;
        let mounts = procfs::process::MountInfos::from_buf_read(std::io::BufReader::new(f))
            .map_err(|source| LayoutError::Parse {
                path: mi_path.clone(),
                source,
            })?;

        let mut layout = Layout::default();
        let own_for = |want_v2: bool, controller: &str| {
            cgroups.0.iter().find(|c| {
                if want_v2 {
                    c.hierarchy == 0 && c.controllers.is_empty()
                } else {
                    c.hierarchy != 0 && c.controllers.iter().any(|x| x == controller)
                }
            })
        };
        for m in mounts.iter() {
            let (is_v2, controller) = match m.fs_type.as_str() {
                "cgroup2" => (true, ""),
                "cgroup" if m.super_options.contains_key("memory") => (false, "memory"),
                "cgroup" if m.super_options.contains_key("freezer") => (false, "freezer"),
                _ => continue,
            };
            let slot = match (is_v2, controller) {
                (true, _) => &mut layout.v2,
                (false, "memory") => &mut layout.v1_memory,
                _ => &mut layout.v1_freezer,
            };
            if slot.is_some() {
                continue; // first mount of a hierarchy wins (later ones are usually bind mounts)
            }
            let Some(own) = own_for(is_v2, controller) else {
                continue;
            };
            // The mount may show only a subtree (root != "/"): our path is relative to the mount.
            let rel = if m.root == "/" {
                own.pathname.clone()
            } else if let Some(rest) = own.pathname.strip_prefix(&m.root) {
                if rest.is_empty() {
                    "/".to_string()
                } else {
                    rest.to_string()
                }
            } else {
                continue; // our cgroup is not visible through this mount
            };
            let mount = sys.mounted(&m.mount_point);
            let own_dir = mount.join(rel.trim_start_matches('/'));
            *slot = Some(Hierarchy {
                mount,
                own: own.pathname.clone(),
                own_dir,
            });
        }
        if let Some(v2) = &layout.v2 {
            layout.v2_controllers = cgfs::read(&v2.mount.join("cgroup.controllers"))
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
        }
        Ok(layout)
    }

    /// The fast path: the hierarchies at their standard places (/sys/fs/cgroup as cgroup2, or
    /// /sys/fs/cgroup/{memory,freezer,unified}), recognised by filesystem magic with statfs(2).
    /// Parsing mountinfo costs ~100 µs per run; this costs ~15. Returns None — and the caller
    /// parses mountinfo — when anything is not where it is expected (containers whose mounts show
    /// a subtree, hierarchies mounted elsewhere).
    fn read_standard(sys: &Sys, cgroups: &procfs::ProcessCGroups) -> Option<Layout> {
        const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
        const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
        let magic = |p: &Path| {
            nix::sys::statfs::statfs(p)
                .ok()
                .map(|s| s.filesystem_type().0)
        };
        let base = sys.mounted(Path::new("/sys/fs/cgroup"));
        let own = |v2: bool, controller: &str| {
            cgroups.0.iter().find(|c| {
                if v2 {
                    c.hierarchy == 0 && c.controllers.is_empty()
                } else {
                    c.hierarchy != 0 && c.controllers.iter().any(|x| x == controller)
                }
            })
        };
        let hierarchy =
            |mount: PathBuf, v2: bool, controller: &str, marker: &str| -> Option<Hierarchy> {
                let o = own(v2, controller)?;
                let own_dir = mount.join(o.pathname.trim_start_matches('/'));
                own_dir.join(marker).exists().then(|| Hierarchy {
                    mount,
                    own: o.pathname.clone(),
                    own_dir,
                })
            };
        let mut layout = Layout::default();
        if magic(&base) == Some(CGROUP2_SUPER_MAGIC) {
            layout.v2 = Some(hierarchy(base.clone(), true, "", "cgroup.procs")?);
        } else {
            for (sub, slot, controller, marker) in [
                (
                    "memory",
                    &mut layout.v1_memory,
                    "memory",
                    "memory.usage_in_bytes",
                ),
                ("freezer", &mut layout.v1_freezer, "freezer", "cgroup.procs"),
            ] {
                let m = base.join(sub);
                if magic(&m) == Some(CGROUP_SUPER_MAGIC) {
                    *slot = Some(hierarchy(m, false, controller, marker)?);
                } else if own(false, controller).is_some() {
                    return None; // the hierarchy exists but is mounted elsewhere
                }
            }
            let u = base.join("unified");
            if magic(&u) == Some(CGROUP2_SUPER_MAGIC) {
                layout.v2 = Some(hierarchy(u, true, "", "cgroup.procs")?);
            }
        }
        if layout.v1_memory.is_none() && layout.v2.is_none() {
            return None;
        }
        if let Some(v2) = &layout.v2 {
            layout.v2_controllers = cgfs::read(&v2.mount.join("cgroup.controllers"))
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
        }
        Some(layout)
    }

    /// True when the cgroup2 hierarchy offers the memory controller (a pure v2 system, or hybrid
    /// with memory moved to v2).
    pub fn v2_has_memory(&self) -> bool {
        self.v2.is_some() && self.v2_controllers.iter().any(|c| c == "memory")
    }

    /// A one-line description of the layout.
    pub fn describe(&self) -> String {
        match (&self.v1_memory, &self.v2, self.v2_has_memory()) {
            (_, Some(v2), true) => format!(
                "cgroup v2 at {} with the memory controller",
                v2.mount.display()
            ),
            (Some(v1), Some(v2), false) => format!(
                "hybrid: memory controller on cgroup v1 at {}; cgroup2 at {} without memory",
                v1.mount.display(),
                v2.mount.display()
            ),
            (Some(v1), None, _) => {
                format!("cgroup v1: memory controller at {}", v1.mount.display())
            }
            (None, Some(v2), false) => format!(
                "cgroup v2 at {} without the memory controller",
                v2.mount.display()
            ),
            (None, None, _) => "no cgroup hierarchy mounted".to_string(),
        }
    }
}

/// How the job's v2 cgroup is placed relative to guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum V2Placement {
    /// guard is in the root cgroup or a non-delegated one and may write the root: the job goes to
    /// `<root>/guard/<leaf>`; guard stays where it is.
    Dedicated,
    /// guard's cgroup is delegated (or a container's namespace root): every member moves into
    /// `<own>/supervisor`, memory is enabled in `<own>`, the job goes to `<own>/<leaf>`.
    Supervisor,
    /// guard already runs in a `supervisor` leaf whose parent has memory enabled (an earlier guard
    /// prepared it): the job goes to `<parent>/<leaf>`.
    Prepared,
}

/// The enforcement plan: where the job's cgroup will be created, or why there is none.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Plan {
    #[serde(rename = "cgroup-v1")]
    V1 {
        base: PathBuf,
        freezer_base: Option<PathBuf>,
        reason: String,
    },
    #[serde(rename = "cgroup-v2")]
    V2 {
        base: PathBuf,
        placement: V2Placement,
        group: PathBuf,
        reason: String,
    },
    Poll {
        reason: String,
        fix: String,
    },
}

impl Plan {
    pub fn mode(&self) -> crate::format::Mode {
        use crate::format::Mode;
        match self {
            Plan::V1 { .. } => Mode::CgroupV1,
            Plan::V2 { .. } => Mode::CgroupV2,
            Plan::Poll { .. } => Mode::Poll,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Plan::V1 { reason, .. } | Plan::V2 { reason, .. } | Plan::Poll { reason, .. } => reason,
        }
    }
}

const DELEGATION_FIX: &str = "run guard as root, or inside a delegated cgroup \
    (systemd: Delegate=yes, or 'systemd-run --user --scope -p Delegate=yes guard ...'), \
    or give the container a writable cgroup namespace";

/// True when systemd marked this cgroup as delegated (xattr trusted.delegate or user.delegate = 1).
pub fn is_delegated(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"]
        .iter()
        .any(|name| xattr_is_one(dir, name))
}

fn xattr_is_one(dir: &Path, name: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(dir.as_os_str().as_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    let mut buf = [0u8; 8];
    // SAFETY: p and n are valid NUL-terminated strings; buf is a live buffer of the length passed.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    len > 0 && buf[..len as usize].starts_with(b"1")
}

const READ_ONLY_FIX: &str = "mount the cgroup filesystem read-write for guard (containers: a private, \
    writable cgroup namespace), or run guard outside the container";

/// True when `path` lies on a read-only mount (then being root does not help).
fn read_only_mount(path: &Path) -> bool {
    nix::sys::statvfs::statvfs(path)
        .map(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false)
}

/// Why `dir` cannot be used, and what would fix it.
fn unwritable(what: &str, dir: &Path, euid: u32) -> Plan {
    if read_only_mount(dir) {
        Plan::Poll {
            reason: format!("{what} {} is on a read-only mount", dir.display()),
            fix: READ_ONLY_FIX.to_string(),
        }
    } else {
        Plan::Poll {
            reason: format!("{what} {} is not writable by uid {euid}", dir.display()),
            fix: DELEGATION_FIX.to_string(),
        }
    }
}

fn has_controller(dir: &Path, file: &str, want: &str) -> bool {
    cgfs::read(&dir.join(file))
        .map(|s| s.split_whitespace().any(|c| c == want))
        .unwrap_or(false)
}

/// Choose the enforcement plan for this layout.
pub fn plan(sys: &Sys, layout: &Layout) -> Plan {
    if layout.v2_has_memory() {
        if let Some(v2) = &layout.v2 {
            return plan_v2(sys, v2);
        }
    }
    if let Some(v1) = &layout.v1_memory {
        if cgfs::writable(&v1.own_dir) && cgfs::writable(&v1.own_dir.join("cgroup.procs")) {
            return Plan::V1 {
                base: v1.own_dir.clone(),
                freezer_base: layout.v1_freezer.as_ref().map(|f| f.own_dir.clone()),
                reason: format!(
                    "the memory controller is on cgroup v1 and guard's own memory cgroup {} is writable",
                    v1.own_dir.display()
                ),
            };
        }
        return unwritable(
            "the memory controller is on cgroup v1 but guard's own memory cgroup",
            &v1.own_dir,
            sys.euid,
        );
    }
    Plan::Poll {
        reason: match &layout.v2 {
            Some(v2) => format!("the cgroup2 hierarchy at {} has no memory controller", v2.mount.display()),
            None => "no cgroup hierarchy with the memory controller is mounted".to_string(),
        },
        fix: "mount cgroup2 with the memory controller (or the v1 memory hierarchy); see 'guard doctor'".to_string(),
    }
}

/// Whether guard may split `own` into a supervisor leaf and a job leaf with memory enabled.
fn usable_for_leaves(own: &Path) -> bool {
    cgfs::writable(own)
        && cgfs::writable(&own.join("cgroup.procs"))
        && cgfs::writable(&own.join("cgroup.subtree_control"))
        && has_controller(own, "cgroup.controllers", "memory")
}

/// The plan inside a scope systemd made for guard with `Delegate=yes` (`why` says so): the
/// supervisor-leaf path when the scope's cgroup is usable, else what [`plan`] finds.
pub fn plan_in_scope(sys: &Sys, layout: &Layout, why: &str) -> Plan {
    if let (true, Some(v2)) = (layout.v2_has_memory(), &layout.v2) {
        if usable_for_leaves(&v2.own_dir) {
            return Plan::V2 {
                base: v2.own_dir.clone(),
                placement: V2Placement::Supervisor,
                group: v2.own_dir.clone(),
                reason: format!(
                    "{why}: guard moves itself to its 'supervisor' leaf and puts the job in a sibling leaf"
                ),
            };
        }
    }
    plan(sys, layout)
}

fn plan_v2(sys: &Sys, v2: &Hierarchy) -> Plan {
    let root = &v2.mount;
    let own = &v2.own_dir;
    let at_root = own == root;
    let root_writable =
        cgfs::writable(root) && cgfs::writable(&root.join("cgroup.subtree_control"));
    let dedicated = |why: String| Plan::V2 {
        base: root.join("guard"),
        placement: V2Placement::Dedicated,
        group: root.clone(),
        reason: why,
    };
    let own_usable = usable_for_leaves(own);

    // The true root has no memory.max; a container's namespace root does.
    if at_root && !own.join("memory.max").exists() {
        if root_writable {
            return dedicated(format!(
                "guard runs in the cgroup2 root and may write it: the job goes under {}/guard",
                root.display()
            ));
        }
        return unwritable("the cgroup2 root", root, sys.euid);
    }
    if own.file_name().is_some_and(|n| n == "supervisor") {
        if let Some(parent) = own.parent() {
            if parent.starts_with(root)
                && has_controller(parent, "cgroup.subtree_control", "memory")
                && cgfs::writable(parent)
            {
                return Plan::V2 {
                    base: parent.to_path_buf(),
                    placement: V2Placement::Prepared,
                    group: parent.to_path_buf(),
                    reason: format!(
                        "guard runs in the supervisor leaf of {}, which already has the memory controller enabled",
                        parent.display()
                    ),
                };
            }
        }
    }
    let supervisor = |why: String| Plan::V2 {
        base: own.clone(),
        placement: V2Placement::Supervisor,
        group: own.clone(),
        reason: why,
    };
    let delegated = is_delegated(own);
    if at_root && own_usable {
        return supervisor(format!(
            "guard runs in the root of a cgroup namespace ({}) that it may write: it moves itself to \
             a 'supervisor' leaf and puts the job in a sibling leaf",
            own.display()
        ));
    }
    if (delegated || sys.euid != 0) && own_usable {
        return supervisor(format!(
            "guard's cgroup {} is {}: guard moves its members to a 'supervisor' leaf and puts the job in a sibling leaf",
            own.display(),
            if delegated {
                "delegated"
            } else {
                "writable by this user"
            }
        ));
    }
    if sys.euid == 0 && root_writable {
        return dedicated(format!(
            "guard runs as root in {} (not delegated): the job goes under {}/guard",
            v2.own,
            root.display()
        ));
    }
    if own_usable {
        return supervisor(format!(
            "guard's cgroup {} is writable: guard moves its members to a 'supervisor' leaf and puts the job in a sibling leaf",
            own.display()
        ));
    }
    if !cgfs::writable(own) || !cgfs::writable(&own.join("cgroup.procs")) {
        return unwritable("guard's cgroup", own, sys.euid);
    }
    Plan::Poll {
        reason: format!(
            "the memory controller is not delegated to guard's cgroup {}",
            own.display()
        ),
        fix: DELEGATION_FIX.to_string(),
    }
}

/// Memory available to guard, the base for `N%` sizes: the tightest limit on guard's own cgroup
/// and its ancestors if there is one, else MemTotal.
pub fn available_memory(sys: &Sys, layout: &Layout) -> Option<u64> {
    let mem_total = procfs::Meminfo::from_file(sys.proc.join("meminfo"))
        .ok()
        .map(|m| m.mem_total);
    let mut limit: Option<u64> = None;
    if layout.v2_has_memory() {
        if let Some(v2) = &layout.v2 {
            let mut dir = v2.own_dir.clone();
            while dir.starts_with(&v2.mount) && dir != v2.mount {
                if let Ok(Some(v)) = cgfs::read_u64(&dir.join("memory.max")) {
                    limit = Some(limit.map_or(v, |l| l.min(v)));
                }
                if !dir.pop() {
                    break;
                }
            }
        }
    } else if let Some(v1) = &layout.v1_memory {
        // hierarchical_memory_limit already folds in the ancestors' limits.
        if let Ok(stat) = cgfs::read(&v1.own_dir.join("memory.stat")) {
            limit = cgfs::keyed(&stat, "hierarchical_memory_limit");
        }
    }
    match (limit, mem_total) {
        (Some(l), Some(t)) => Some(l.min(t)),
        (Some(l), None) => Some(l),
        (None, t) => t,
    }
}

/// The memory available to guard here and now (for `N%` sizes).
pub fn available_memory_here() -> Option<u64> {
    let sys = Sys::live();
    Layout::read(&sys)
        .ok()
        .and_then(|l| available_memory(&sys, &l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fixture system: /proc from tests/fixtures/proc/<case>, `/` in a temp dir.
    struct Fixture {
        sys: Sys,
        root: tempfile::TempDir,
    }

    impl Fixture {
        fn new(case: &str, euid: u32) -> Fixture {
            let root = tempfile::tempdir().unwrap();
            let proc = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/proc")
                .join(case);
            assert!(proc.exists(), "{}", proc.display());
            Fixture {
                sys: Sys {
                    proc,
                    root: root.path().to_path_buf(),
                    euid,
                },
                root,
            }
        }

        /// Create a cgroup directory (relative to the fake /) with the given control files.
        fn cg(&self, rel: &str, files: &[(&str, &str)]) -> PathBuf {
            let d = self.root.path().join(rel.trim_start_matches('/'));
            fs::create_dir_all(&d).unwrap();
            for (name, content) in files {
                fs::write(d.join(name), content).unwrap();
            }
            for f in ["cgroup.procs", "cgroup.subtree_control"] {
                if !d.join(f).exists() {
                    fs::write(d.join(f), "").unwrap();
                }
            }
            d
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.root.path().join(rel.trim_start_matches('/'))
        }

        fn plan(&self) -> Plan {
            let layout = Layout::read(&self.sys).unwrap();
            plan(&self.sys, &layout)
        }
    }

    const ALL: &str = "cpuset cpu io memory hugetlb pids rdma misc\n";

    #[test]
    fn hybrid_uses_v1_under_own_memory_cgroup() {
        let f = Fixture::new("hybrid", 0);
        f.cg(
            "/sys/fs/cgroup/memory/process_api/7bb142f8",
            &[("memory.limit_in_bytes", "9223372036854771712\n")],
        );
        f.cg("/sys/fs/cgroup/unified", &[("cgroup.controllers", "")]);
        let layout = Layout::read(&f.sys).unwrap();
        assert!(!layout.v2_has_memory());
        assert_eq!(
            layout.v1_memory.as_ref().unwrap().own,
            "/process_api/7bb142f8"
        );
        assert_eq!(
            layout.v1_freezer.as_ref().unwrap().own_dir,
            f.path("/sys/fs/cgroup/freezer")
        );
        assert!(
            layout.describe().starts_with("hybrid"),
            "{}",
            layout.describe()
        );
        match f.plan() {
            Plan::V1 {
                base, freezer_base, ..
            } => {
                assert_eq!(base, f.path("/sys/fs/cgroup/memory/process_api/7bb142f8"));
                assert_eq!(freezer_base, Some(f.path("/sys/fs/cgroup/freezer")));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn v1_in_a_container_strips_the_mount_root() {
        let f = Fixture::new("v1-container", 0);
        f.cg("/sys/fs/cgroup/memory/app", &[]);
        let layout = Layout::read(&f.sys).unwrap();
        let mem = layout.v1_memory.unwrap();
        assert_eq!(mem.own_dir, f.path("/sys/fs/cgroup/memory/app"));
        assert_eq!(
            layout.v1_freezer.unwrap().own_dir,
            f.path("/sys/fs/cgroup/freezer")
        );
    }

    #[test]
    fn v2_root_cgroup_gets_a_dedicated_subtree() {
        let f = Fixture::new("v2-root", 0);
        f.cg("/sys/fs/cgroup", &[("cgroup.controllers", ALL)]);
        match f.plan() {
            Plan::V2 {
                base,
                placement,
                group,
                ..
            } => {
                assert_eq!(placement, V2Placement::Dedicated);
                assert_eq!(base, f.path("/sys/fs/cgroup/guard"));
                assert_eq!(group, f.path("/sys/fs/cgroup"));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn v2_root_service_not_delegated_uses_the_dedicated_subtree() {
        let f = Fixture::new("v2-service", 0);
        f.cg("/sys/fs/cgroup", &[("cgroup.controllers", ALL)]);
        f.cg(
            "/sys/fs/cgroup/system.slice/x.service",
            &[("cgroup.controllers", ALL), ("memory.max", "max\n")],
        );
        let p = f.plan();
        assert!(
            matches!(
                &p,
                Plan::V2 {
                    placement: V2Placement::Dedicated,
                    ..
                }
            ),
            "{p:?}"
        );
        assert!(p.reason().contains("not delegated"), "{}", p.reason());
    }

    #[test]
    fn v2_delegated_service_moves_members_to_a_supervisor_leaf() {
        let f = Fixture::new("v2-service", 0);
        f.cg("/sys/fs/cgroup", &[("cgroup.controllers", ALL)]);
        let svc = f.cg(
            "/sys/fs/cgroup/system.slice/x.service",
            &[("cgroup.controllers", ALL), ("memory.max", "max\n")],
        );
        let c = std::ffi::CString::new(svc.to_str().unwrap()).unwrap();
        // SAFETY: valid C strings and a 1-byte value buffer.
        let rc = unsafe {
            libc::setxattr(
                c.as_ptr(),
                c"trusted.delegate".as_ptr(),
                b"1".as_ptr().cast(),
                1,
                0,
            )
        };
        if rc != 0 {
            // As root (CI, the VM lane) tmpfs and ext4 take trusted.* xattrs: not being able to
            // is then a failure, not a skip.
            let reason = "the temp filesystem does not take trusted.* xattrs";
            if std::env::var("GUARD_TEST_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
                panic!(
                    "{reason} ({}) but GUARD_TEST_REQUIRE_PRIVILEGED=1",
                    std::io::Error::last_os_error()
                );
            }
            println!(
                "test skipped: v2_delegated_service_moves_members_to_a_supervisor_leaf: {reason}"
            );
            return;
        }
        assert!(is_delegated(&svc));
        let p = f.plan();
        assert!(
            matches!(
                &p,
                Plan::V2 {
                    placement: V2Placement::Supervisor,
                    ..
                }
            ),
            "{p:?}"
        );
    }

    #[test]
    fn v2_user_scope_uses_a_supervisor_leaf() {
        let f = Fixture::new("v2-user-scope", 1000);
        f.cg("/sys/fs/cgroup", &[("cgroup.controllers", ALL)]);
        let scope =
            "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope";
        f.cg(
            scope,
            &[
                ("cgroup.controllers", "cpu memory pids\n"),
                ("memory.max", "max\n"),
            ],
        );
        match f.plan() {
            Plan::V2 {
                base, placement, ..
            } => {
                assert_eq!(placement, V2Placement::Supervisor);
                assert_eq!(base, f.path(scope));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn v2_user_scope_without_memory_delegated_falls_back_to_poll() {
        let f = Fixture::new("v2-user-scope", 1000);
        f.cg("/sys/fs/cgroup", &[("cgroup.controllers", ALL)]);
        let scope =
            "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope";
        f.cg(scope, &[("cgroup.controllers", "cpu pids\n")]);
        match f.plan() {
            Plan::Poll { reason, fix } => {
                assert!(reason.contains("not delegated"), "{reason}");
                assert!(fix.contains("Delegate=yes"), "{fix}");
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn v2_prepared_supervisor_leaf_is_reused() {
        let f = Fixture::new("v2-supervisor", 0);
        f.cg("/sys/fs/cgroup", &[("cgroup.controllers", ALL)]);
        f.cg(
            "/sys/fs/cgroup/system.slice/x.service",
            &[
                ("cgroup.controllers", ALL),
                ("cgroup.subtree_control", "memory pids\n"),
            ],
        );
        f.cg(
            "/sys/fs/cgroup/system.slice/x.service/supervisor",
            &[("cgroup.controllers", "memory pids\n")],
        );
        match f.plan() {
            Plan::V2 {
                base, placement, ..
            } => {
                assert_eq!(placement, V2Placement::Prepared);
                assert_eq!(base, f.path("/sys/fs/cgroup/system.slice/x.service"));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn v2_without_memory_controller_is_poll() {
        let f = Fixture::new("v2-no-memory", 0);
        f.cg("/sys/fs/cgroup", &[("cgroup.controllers", "cpu io pids\n")]);
        f.cg("/sys/fs/cgroup/system.slice/x.service", &[]);
        match f.plan() {
            Plan::Poll { reason, .. } => {
                assert!(reason.contains("no memory controller"), "{reason}")
            }
            p => panic!("{p:?}"),
        }
    }

    /// On this machine: the fast path (statfs at the standard places) finds what the general
    /// path (mountinfo) finds, or it declines because a hierarchy guard uses is not at its
    /// standard place. Either way something is asserted.
    #[test]
    fn the_fast_path_agrees_with_mountinfo_on_this_machine() {
        let sys = Sys::live();
        let f = std::fs::File::open("/proc/self/cgroup").expect("a Linux /proc");
        let cgroups = procfs::ProcessCGroups::from_buf_read(std::io::BufReader::new(f)).unwrap();
        let slow = Layout::read_mountinfo(&sys, &cgroups).unwrap();
        let dirs = |l: &Layout| {
            [&l.v1_memory, &l.v1_freezer, &l.v2].map(|h| h.as_ref().map(|h| h.own_dir.clone()))
        };
        match Layout::read_standard(&sys, &cgroups) {
            Some(fast) => {
                assert_eq!(dirs(&fast), dirs(&slow));
                assert_eq!(fast.v2_controllers, slow.v2_controllers);
            }
            None => {
                let standard = [
                    "/sys/fs/cgroup",
                    "/sys/fs/cgroup/memory",
                    "/sys/fs/cgroup/freezer",
                    "/sys/fs/cgroup/unified",
                ];
                let elsewhere = [&slow.v1_memory, &slow.v1_freezer, &slow.v2]
                    .into_iter()
                    .flatten()
                    .any(|h| {
                        !standard.iter().any(|s| h.mount == Path::new(s)) || !h.own_dir.exists()
                    });
                assert!(
                    elsewhere || (slow.v1_memory.is_none() && slow.v2.is_none()),
                    "the fast path declined a standard layout: {}",
                    slow.describe()
                );
            }
        }
    }

    #[test]
    fn available_memory_is_the_tightest_limit() {
        let f = Fixture::new("v2-service", 0);
        f.cg("/sys/fs/cgroup", &[("cgroup.controllers", ALL)]);
        f.cg(
            "/sys/fs/cgroup/system.slice",
            &[("memory.max", "4294967296\n")],
        );
        f.cg(
            "/sys/fs/cgroup/system.slice/x.service",
            &[("memory.max", "max\n")],
        );
        let layout = Layout::read(&f.sys).unwrap();
        // The fixture has no meminfo: only the cgroup limit counts.
        assert_eq!(available_memory(&f.sys, &layout), Some(4 << 30));

        let f = Fixture::new("hybrid", 0);
        f.cg(
            "/sys/fs/cgroup/memory/process_api/7bb142f8",
            &[(
                "memory.stat",
                "cache 0\nrss 0\nhierarchical_memory_limit 2147483648\n",
            )],
        );
        let layout = Layout::read(&f.sys).unwrap();
        assert_eq!(available_memory(&f.sys, &layout), Some(2 << 30));
    }
}
