//! Who owns what guard leaves on shared ground — a job's cgroup leaf, a temporary bundle — and
//! whether that owner is provably gone. An owner is guard's pid and, outside the initial PID
//! namespace, that namespace (`1.4026532190`: PID 1 of a container): two guards that are both
//! PID 1 in their containers never pick the same name, and nothing is taken for stale unless
//! its owner is visibly dead:
//!
//! - same namespace, and this guard's proc shows its own namespace: dead when its pid is gone;
//! - another namespace, seen from the initial one: dead when no process is left in it;
//! - anything else (the host's guards seen from a container, another container's, or a proc
//!   mount of a namespace other than guard's): never touched.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The initial PID namespace's inode number (the kernel's PROC_PID_INIT_INO, fixed since 3.8).
pub const INIT_PID_NS: u64 = 0xEFFF_FFFC;

/// guard's pid, and its PID namespace unless that is the initial one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    pub ns: Option<u64>,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ns {
            None => write!(f, "{}", self.pid),
            Some(ns) => write!(f, "{}.{ns}", self.pid),
        }
    }
}

impl Owner {
    /// This process (looked up once).
    pub fn me() -> Owner {
        static ME: OnceLock<Owner> = OnceLock::new();
        *ME.get_or_init(|| Owner {
            pid: std::process::id() as i32,
            ns: ns_of(Path::new("/proc/self/ns/pid")).filter(|&n| n != INIT_PID_NS),
        })
    }

    /// `PID` or `PID.NS`, as [`Display`](std::fmt::Display) writes it.
    pub fn parse(token: &str) -> Option<Owner> {
        let (pid, ns) = match token.split_once('.') {
            Some((p, n)) => (p, Some(n.parse().ok().filter(|&n| n != INIT_PID_NS)?)),
            None => (token, None),
        };
        let pid = pid.parse().ok().filter(|&p: &i32| p > 0)?;
        Some(Owner { pid, ns })
    }
}

/// The namespace inode a `/proc/PID/ns/pid` link names (`pid:[4026531836]`).
fn ns_of(link: &Path) -> Option<u64> {
    ns_in(&std::fs::read_link(link).ok()?)
}

fn ns_in(target: &Path) -> Option<u64> {
    let t = target.to_str()?;
    t.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// What this guard can tell about owners from a proc tree.
pub struct View {
    proc: PathBuf,
    me: Owner,
    /// The proc tree is of guard's own PID namespace (its `self` is guard's pid): pids there
    /// are pids in leaf names.
    own_ns: bool,
    live_ns: OnceLock<Option<HashSet<u64>>>,
}

impl View {
    /// The view from `proc` (normally `/proc`) of this process.
    pub fn new(proc: &Path) -> View {
        View::of(proc, Owner::me())
    }

    /// The view from `proc` of `me` (tests give fixture trees).
    pub fn of(proc: &Path, me: Owner) -> View {
        let own_ns = std::fs::read_link(proc.join("self"))
            .ok()
            .is_some_and(|t| t.to_str() == Some(me.pid.to_string().as_str()));
        View {
            proc: proc.to_path_buf(),
            me,
            own_ns,
            live_ns: OnceLock::new(),
        }
    }

    /// Whether `o` is provably gone (see the module's rules); never for guard itself.
    pub fn is_dead(&self, o: Owner) -> bool {
        if o == self.me || !self.own_ns {
            return false;
        }
        match (o.ns, self.me.ns) {
            (a, b) if a == b => !self.proc.join(o.pid.to_string()).exists(),
            (Some(ns), None) => self.live_ns().is_some_and(|live| !live.contains(&ns)),
            _ => false,
        }
    }

    /// The PID namespaces that have a process (read once, only when a foreign owner comes up);
    /// None when some process's namespace cannot be read (not root): then no namespace is known
    /// to be empty.
    fn live_ns(&self) -> Option<&HashSet<u64>> {
        self.live_ns
            .get_or_init(|| {
                let mut seen = HashSet::new();
                for e in std::fs::read_dir(&self.proc).ok()?.flatten() {
                    if !e.file_name().to_str().is_some_and(is_pid) {
                        continue;
                    }
                    match std::fs::read_link(e.path().join("ns/pid")) {
                        Ok(t) => seen.extend(ns_in(&t)),
                        // Exited meanwhile.
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                        Err(_) => return None,
                    }
                }
                Some(seen)
            })
            .as_ref()
    }
}

fn is_pid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn o(pid: i32, ns: Option<u64>) -> Owner {
        Owner { pid, ns }
    }

    #[test]
    fn tokens_round_trip() {
        for o in [o(42, None), o(1, Some(4_026_532_190))] {
            assert_eq!(Owner::parse(&o.to_string()), Some(o));
        }
        assert_eq!(
            Owner::parse("1.4026531836"),
            None,
            "the initial namespace is unnamed"
        );
        for bad in ["", "0", "-3", "x", "1.", "1.x", "1.2.3"] {
            assert_eq!(Owner::parse(bad), None, "{bad}");
        }
    }

    /// A fixture proc tree: `self` -> `me`, and each (pid, ns) a process.
    fn proc_tree(me: i32, procs: &[(i32, u64)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        symlink(me.to_string(), d.path().join("self")).unwrap();
        for &(pid, ns) in procs {
            let nsdir = d.path().join(pid.to_string()).join("ns");
            std::fs::create_dir_all(&nsdir).unwrap();
            symlink(format!("pid:[{ns}]"), nsdir.join("pid")).unwrap();
        }
        d
    }

    #[test]
    fn from_the_initial_namespace() {
        let me = o(10, None);
        let p = proc_tree(10, &[(10, INIT_PID_NS), (20, INIT_PID_NS), (30, 777)]);
        let v = View::of(p.path(), me);
        assert!(!v.is_dead(me));
        assert!(!v.is_dead(o(20, None)));
        assert!(v.is_dead(o(21, None)));
        // A container with a process left: its guard may be alive, whatever its pid.
        assert!(!v.is_dead(o(1, Some(777))));
        assert!(v.is_dead(o(1, Some(888))));
    }

    #[test]
    fn from_inside_a_namespace() {
        let me = o(1, Some(777));
        let p = proc_tree(1, &[(1, 777), (5, 777)]);
        let v = View::of(p.path(), me);
        assert!(!v.is_dead(o(5, Some(777))));
        assert!(v.is_dead(o(6, Some(777))));
        // The host's guards and other containers' are out of sight: never stale.
        assert!(!v.is_dead(o(999_999, None)));
        assert!(!v.is_dead(o(1, Some(888))));
    }

    #[test]
    fn a_proc_of_another_namespace_shows_nothing_dead() {
        // PID 1 of a container whose /proc is still the host's: its `self` is not 1.
        let me = o(1, Some(777));
        let p = proc_tree(4242, &[(4242, 777)]);
        let v = View::of(p.path(), me);
        assert!(!v.is_dead(o(6, Some(777))));
        assert!(!v.is_dead(o(6, None)));
    }
}
