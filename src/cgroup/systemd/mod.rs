//! Asking systemd for a cgroup. On a machine systemd runs, systemd owns the cgroup tree, and its
//! delegation rules say another program asks the manager for a delegated subtree instead of
//! making directories under /sys/fs/cgroup. When guard's own cgroup is not delegated, guard asks
//! the manager — the system manager as root, the user's own manager otherwise — for a transient
//! scope `guard-NAME-PID.scope` with `Delegate=yes` and guard's pid in it (what
//! `systemd-run --scope -p Delegate=yes` does), waits until it has been moved there, and goes on
//! with the delegated-leaf path (a supervisor leaf for itself, a leaf for the job): holding,
//! freezing, capturing and killing stay guard's. The scope ends when its last process does, so
//! also when guard is SIGKILLed (the sentinel kills the job; systemd then removes the scope).
//!
//! The manager is reached over its private socket (`/run/systemd/private`, or
//! `$XDG_RUNTIME_DIR/systemd/private` for a user manager: what systemctl uses, no bus daemon
//! needed) with the one method call in [`dbus`]. The whole exchange is bounded ([`ASK_LIMIT`]):
//! a manager that does not answer costs that long once, and guard goes on as it would without
//! systemd.

pub mod dbus;

use crate::cgroup::detect::{Layout, Plan, Sys, V2Placement};
use dbus::{Arg, DbusError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long guard waits for the manager to create the scope and move guard into it.
pub const ASK_LIMIT: Duration = Duration::from_secs(5);

/// Which manager to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    /// PID 1 (guard runs as root).
    System,
    /// The user's own `systemd --user` (guard runs unprivileged).
    User { uid: u32, runtime_dir: PathBuf },
}

impl Manager {
    /// The manager for a process with effective uid `euid`.
    pub fn for_euid(euid: u32) -> Manager {
        if euid == 0 {
            return Manager::System;
        }
        let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute())
            .unwrap_or_else(|| PathBuf::from(format!("/run/user/{euid}")));
        Manager::User {
            uid: euid,
            runtime_dir,
        }
    }

    /// The manager's private socket.
    pub fn private_socket(&self) -> PathBuf {
        match self {
            Manager::System => PathBuf::from("/run/systemd/private"),
            Manager::User { runtime_dir, .. } => runtime_dir.join("systemd/private"),
        }
    }

    /// "the system manager" or "the user manager of uid N", for messages.
    pub fn describe(&self) -> String {
        match self {
            Manager::System => "the system manager".to_string(),
            Manager::User { uid, .. } => {
                format!("the user manager of uid {uid} (user@{uid}.service)")
            }
        }
    }

    /// The slice a scope goes to when no `--slice` is given: the manager's own default for
    /// transient units, where `systemd-run --scope` puts them too.
    pub fn default_slice(&self) -> &'static str {
        match self {
            Manager::System => "system.slice",
            Manager::User { .. } => "app.slice",
        }
    }
}

/// Whether guard asks systemd for a scope, and why (doctor prints the why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Ask(Manager),
    Skip {
        why: String,
        /// What would give a real cap, when guard ends in poll mode for want of it.
        fix: Option<String>,
    },
}

fn skip(why: impl Into<String>) -> Decision {
    Decision::Skip {
        why: why.into(),
        fix: None,
    }
}

/// Decide from the layout and the plan guard would follow without systemd.
pub fn decide(sys: &Sys, layout: &Layout, plan: &Plan, no_systemd: bool) -> Decision {
    if no_systemd {
        return skip("--no-systemd (or no_systemd = true) keeps guard from asking systemd");
    }
    if !running(&sys.root) {
        return skip("systemd does not run this machine (no /run/systemd/system)");
    }
    if !layout.v2_has_memory() {
        return skip("the memory controller is not on cgroup v2, where systemd delegates");
    }
    match plan {
        Plan::V2 {
            placement: V2Placement::Supervisor | V2Placement::Prepared,
            group,
            ..
        } => skip(format!(
            "guard's cgroup {} is delegated to it already",
            group.display()
        )),
        Plan::V2 { .. } if sys.euid == 0 => Decision::Ask(Manager::System),
        Plan::Poll { .. } if sys.euid != 0 => ask_user_manager(sys, Manager::for_euid(sys.euid)),
        _ => skip("guard cannot use a scope here (see the reason above)"),
    }
}

/// An unprivileged guard asks its user manager, if one runs and has memory to delegate.
fn ask_user_manager(sys: &Sys, manager: Manager) -> Decision {
    let Manager::User { uid, .. } = &manager else {
        return skip("not a user manager");
    };
    let socket = manager.private_socket();
    if !sys
        .root
        .join(socket.strip_prefix("/").unwrap_or(&socket))
        .exists()
    {
        return Decision::Skip {
            why: format!(
                "no user manager runs for uid {uid} (no {})",
                socket.display()
            ),
            fix: Some(format!(
                "start one: log in, or 'loginctl enable-linger {uid}' for jobs without a login                  (cron); or run guard as root"
            )),
        };
    }
    if user_manager_has_memory(&sys.root.join("sys/fs/cgroup"), *uid) == Some(false) {
        return Decision::Skip {
            why: format!(
                "the user manager of uid {uid} (user@{uid}.service) does not delegate the memory                  controller"
            ),
            fix: Some(USER_DELEGATE_FIX.replace("UID", &uid.to_string())),
        };
    }
    Decision::Ask(manager)
}

/// True when systemd runs this machine (sd_booted(3): /run/systemd/system is a directory).
pub fn running(root: &Path) -> bool {
    root.join("run/systemd/system").is_dir()
}

/// The scope's unit name: `guard-NAME-PID.scope`, every byte of NAME outside the unit-name
/// characters `[A-Za-z0-9:_.-]` written `\xNN` as systemd-escape(1) does (a leading `.` too), and
/// NAME shortened so the name stays within systemd's 255 bytes.
pub fn scope_name(job: &str, pid: u32) -> String {
    let mut name = String::new();
    for (i, b) in job.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b":_-".contains(&b) || (b == b'.' && i > 0);
        let piece = if plain {
            (b as char).to_string()
        } else {
            format!("\\x{b:02x}")
        };
        if name.len() + piece.len() > 200 {
            break;
        }
        name.push_str(&piece);
    }
    format!("guard-{name}-{pid}.scope")
}

/// Whether `s` can name a slice unit (`--slice`): `NAME.slice` of unit-name characters.
pub fn check_slice(s: &str) -> Result<(), String> {
    let stem = s.strip_suffix(".slice").unwrap_or("");
    let ok = !stem.is_empty()
        && s.len() <= 255
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.-\\".contains(&b))
        && !stem.starts_with('-')
        && !stem.ends_with('-')
        && !stem.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{s}' is not a slice unit name: give NAME.slice with letters, digits, ':', '_', '.' \
             and single '-' between parts (e.g. guard.slice, or batch-jobs.slice inside batch.slice)"
        ))
    }
}

/// What guard asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub unit: String,
    /// None: the manager's default slice.
    pub slice: Option<String>,
    pub description: String,
    pub pid: u32,
}

/// Why no scope was had (guard then goes on without one, as with `--no-systemd`).
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("cannot reach {manager} at {}: {reason}", socket.display())]
    Connect {
        manager: String,
        socket: PathBuf,
        reason: String,
    },
    #[error("{manager} refused {unit}: {message}")]
    Refused {
        manager: String,
        unit: String,
        message: String,
    },
    #[error("{manager} did not answer within {} s", ASK_LIMIT.as_secs())]
    Timeout { manager: String },
    #[error("{manager} created {unit} but guard was not in it after {} s (its cgroup is still {cgroup})", ASK_LIMIT.as_secs())]
    NotMoved {
        manager: String,
        unit: String,
        cgroup: String,
    },
}

/// Ask `manager` for the scope and wait until guard is in it, [`ASK_LIMIT`] in all (every read
/// and write on the socket is bounded by what is left of it).
pub fn start_scope(manager: &Manager, req: &Request, proc: &Path) -> Result<(), ScopeError> {
    let deadline = Instant::now() + ASK_LIMIT;
    let mut props = vec![
        ("Description", Arg::Str(&req.description)),
        ("PIDs", Arg::U32s(std::slice::from_ref(&req.pid))),
        ("Delegate", Arg::Bool(true)),
        // A scope that ends badly (its processes killed) is removed too, not kept as "failed".
        ("CollectMode", Arg::Str("inactive-or-failed")),
    ];
    if let Some(slice) = &req.slice {
        props.push(("Slice", Arg::Str(slice)));
    }
    let call = dbus::method_call(
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "StartTransientUnit",
        &[
            Arg::Str(&req.unit),
            Arg::Str("fail"),
            Arg::Props(&props),
            Arg::NoAux,
        ],
    );
    exchange(manager, &call, deadline).map_err(|e| refused(manager, &req.unit, e))?;
    wait_moved(manager, req, proc, deadline)
}

/// The manager's version (`systemctl --version`'s number), asked as a run asks for its scope:
/// `guard doctor` checks that way that the manager answers guard.
pub fn manager_version(manager: &Manager) -> Result<String, ScopeError> {
    let call = dbus::method_call(
        "/org/freedesktop/systemd1",
        "org.freedesktop.DBus.Properties",
        "Get",
        &[
            Arg::Str("org.freedesktop.systemd1.Manager"),
            Arg::Str("Version"),
        ],
    );
    let reply = exchange(manager, &call, Instant::now() + ASK_LIMIT)
        .map_err(|e| refused(manager, "its Version property", e))?;
    reply.variant_string().ok_or_else(|| ScopeError::Refused {
        manager: manager.describe(),
        unit: "its Version property".into(),
        message: format!("an answer of type '{}', not a string", reply.signature),
    })
}

/// One call on the manager's private socket.
fn exchange(manager: &Manager, call: &[u8], deadline: Instant) -> Result<dbus::Reply, Failure> {
    let socket = manager.private_socket();
    let mut conn =
        dbus::Conn::open(&socket, deadline).map_err(|e| Failure::Connect(socket.clone(), e))?;
    conn.call(call).map_err(Failure::Call)
}

/// Where an exchange failed.
enum Failure {
    Connect(PathBuf, DbusError),
    Call(DbusError),
}

fn refused(manager: &Manager, what: &str, f: Failure) -> ScopeError {
    match f {
        Failure::Connect(_, DbusError::Timeout) | Failure::Call(DbusError::Timeout) => {
            ScopeError::Timeout {
                manager: manager.describe(),
            }
        }
        Failure::Connect(socket, e) => ScopeError::Connect {
            manager: manager.describe(),
            socket,
            reason: e.to_string(),
        },
        Failure::Call(e) => ScopeError::Refused {
            manager: manager.describe(),
            unit: what.to_string(),
            message: e.to_string(),
        },
    }
}

/// The cgroup directory (relative to the cgroup2 root) of slice `slice` in `manager`'s tree:
/// `a-b.slice` is `a.slice/a-b.slice`, as systemd.slice(5) nests them.
pub fn slice_dir(manager: &Manager, slice: &str) -> PathBuf {
    let mut dir = match manager {
        Manager::System => PathBuf::new(),
        Manager::User { uid, .. } => {
            PathBuf::from(format!("user.slice/user-{uid}.slice/user@{uid}.service"))
        }
    };
    let stem = slice.strip_suffix(".slice").unwrap_or(slice);
    if stem == "-" {
        return dir;
    }
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        dir.push(format!("{prefix}.slice"));
    }
    dir
}

/// The manager moves guard when it runs the scope's start job, after its reply: wait (bounded)
/// until /proc/self/cgroup shows the scope.
fn wait_moved(
    manager: &Manager,
    req: &Request,
    proc: &Path,
    deadline: Instant,
) -> Result<(), ScopeError> {
    let suffix = format!("/{}", req.unit);
    let path = proc.join("self/cgroup");
    let mut pause = Duration::from_micros(200);
    loop {
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        let v2 = now
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("")
            .to_string();
        if v2.ends_with(&suffix) || v2.contains(&format!("{suffix}/")) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ScopeError::NotMoved {
                manager: manager.describe(),
                unit: req.unit.clone(),
                cgroup: v2,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

/// Whether the user manager of `uid` has the memory controller to delegate (its cgroup's
/// cgroup.controllers): None when its cgroup is not where systemd puts it.
pub fn user_manager_has_memory(cgroup_root: &Path, uid: u32) -> Option<bool> {
    let dir = cgroup_root.join(format!("user.slice/user-{uid}.slice/user@{uid}.service"));
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).ok()?;
    Some(controllers.split_whitespace().any(|c| c == "memory"))
}

/// The fix for a user manager without the memory controller.
pub const USER_DELEGATE_FIX: &str = "let the user manager delegate memory: \
    'systemctl edit user@.service', add '[Service]' and 'Delegate=pids memory cpu', \
    then log out and in again (or 'systemctl restart user@UID.service')";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_are_escaped_like_systemd_escape() {
        assert_eq!(scope_name("fix_images", 42), "guard-fix_images-42.scope");
        assert_eq!(scope_name("a b/c", 7), "guard-a\\x20b\\x2fc-7.scope");
        assert_eq!(scope_name("nightly-job", 1), "guard-nightly-job-1.scope");
        assert_eq!(scope_name(".hidden", 1), "guard-\\x2ehidden-1.scope");
        let long = scope_name(&"é".repeat(200), 4_194_304);
        assert!(long.len() <= 255, "{}", long.len());
        assert!(long.ends_with("-4194304.scope"));
    }

    #[test]
    fn slices_must_be_slice_unit_names() {
        for good in [
            "guard.slice",
            "batch-jobs.slice",
            "system.slice",
            "a:b_c.slice",
        ] {
            assert!(check_slice(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".slice",
            "guard",
            "guard.service",
            "a b.slice",
            "-a.slice",
            "a--b.slice",
            "a/b.slice",
        ] {
            let e = check_slice(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn a_user_manager_is_asked_at_its_runtime_directory() {
        let m = Manager::User {
            uid: 1000,
            runtime_dir: PathBuf::from("/run/user/1000"),
        };
        assert_eq!(
            m.private_socket(),
            Path::new("/run/user/1000/systemd/private")
        );
        assert_eq!(Manager::for_euid(0), Manager::System);
        assert_eq!(
            Manager::System.private_socket(),
            Path::new("/run/systemd/private")
        );
        assert_eq!(m.default_slice(), "app.slice");
    }

    #[test]
    fn slices_nest_by_their_dashes() {
        assert_eq!(
            slice_dir(&Manager::System, "system.slice"),
            Path::new("system.slice")
        );
        assert_eq!(
            slice_dir(&Manager::System, "batch-nightly.slice"),
            Path::new("batch.slice/batch-nightly.slice")
        );
        let user = Manager::User {
            uid: 1000,
            runtime_dir: PathBuf::from("/run/user/1000"),
        };
        assert_eq!(
            slice_dir(&user, "app.slice"),
            Path::new("user.slice/user-1000.slice/user@1000.service/app.slice")
        );
    }

    /// A fixture machine run by systemd whose user manager for uid 1000 runs, with `controllers`
    /// in its cgroup.
    fn user_machine(controllers: &str) -> (tempfile::TempDir, Sys, Manager) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("run/systemd/system")).unwrap();
        std::fs::create_dir_all(d.path().join("run/user/1000/systemd")).unwrap();
        std::fs::write(d.path().join("run/user/1000/systemd/private"), "").unwrap();
        let cg = d
            .path()
            .join("sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("cgroup.controllers"), controllers).unwrap();
        let sys = Sys {
            proc: d.path().join("proc"),
            root: d.path().to_path_buf(),
            euid: 1000,
        };
        let m = Manager::User {
            uid: 1000,
            runtime_dir: PathBuf::from("/run/user/1000"),
        };
        (d, sys, m)
    }

    #[test]
    fn a_user_manager_that_delegates_memory_is_asked() {
        let (_d, sys, m) = user_machine("cpu memory pids\n");
        assert_eq!(ask_user_manager(&sys, m.clone()), Decision::Ask(m));
    }

    #[test]
    fn a_user_manager_without_memory_is_named_with_the_fix() {
        let (_d, sys, m) = user_machine("cpu pids\n");
        let Decision::Skip { why, fix } = ask_user_manager(&sys, m) else {
            panic!("asked a user manager that cannot delegate memory");
        };
        assert!(
            why.contains("user@1000.service") && why.contains("memory"),
            "{why}"
        );
        let fix = fix.expect("a fix");
        assert!(
            fix.contains("Delegate=pids memory cpu") && fix.contains("user@1000.service"),
            "{fix}"
        );
    }

    #[test]
    fn no_user_manager_says_how_to_get_one() {
        let (d, sys, m) = user_machine("memory\n");
        std::fs::remove_file(d.path().join("run/user/1000/systemd/private")).unwrap();
        let Decision::Skip { fix, .. } = ask_user_manager(&sys, m) else {
            panic!("asked a user manager that does not run");
        };
        assert!(
            fix.unwrap_or_default()
                .contains("loginctl enable-linger 1000")
        );
    }

    #[test]
    fn running_means_run_systemd_system_is_a_directory() {
        let d = tempfile::tempdir().unwrap();
        assert!(!running(d.path()));
        std::fs::create_dir_all(d.path().join("run/systemd/system")).unwrap();
        assert!(running(d.path()));
    }
}
