//! The Python heap census (guard(1), PYTHON HEAP CENSUS): the hook guard puts on the job's
//! PYTHONPATH (its files beside this one, written into a directory [`hookdir`] checks), the
//! environment that turns it on, and how its answer (`processes/<pid>/pyheap.json`) is checked.
//! The conversation itself — signal, accept, terms, answer — is the runtimes' shared
//! [`super::census`].
//!
//! Why a hook and a signal: CPython before 3.14 cannot run code on request from outside except
//! through a debugger (gdb or a ptrace injection, which needs a running, stoppable task and
//! risks the interpreter's state), and py-spy reads stacks, not objects. The hook is the
//! `sitecustomize`-on-PYTHONPATH convention of opentelemetry-instrument and ddtrace-run: it
//! chains to the sitecustomize it shadows, registers one real-time signal's handler (only when
//! nothing handles that signal), and costs nothing more until asked. The census runs inside the
//! process, in its own interpreter, with gc.get_objects / get_referrers.

use super::hookdir::{self, HookError};
use super::{Answered, Environ, Runtime, census::Asking, text};
use crate::format::{PYHEAP_FORMAT, PyHeap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

// The census's settings are configuration values, read and checked with the other options.
pub use crate::config::census::{DEFAULT_WINDOW, HEADROOM_PERCENT, MIN_HEADROOM, Settings};

/// The hook's files, as they are written into its directory.
pub const SITECUSTOMIZE: &str = include_str!("sitecustomize.py");
pub const HOOK: &str = include_str!("_guard_hook.py");
pub const CENSUS: &str = include_str!("_guard_pyheap.py");
/// The signal is SIGRTMAX minus this: far from SIGRTMIN, which threading libraries use.
const SIGNAL_BELOW_RTMAX: i32 = 6;
/// The environment variable the hook reads.
pub const ENV: &str = "GUARD_PYHEAP";

const CONTENT_HASH: u64 = hookdir::content_hash(&[SITECUSTOMIZE, HOOK, CENSUS]);

/// The hook of one run: where its files are, the socket name its processes answer on, the
/// signal that asks them.
#[derive(Debug)]
pub struct Hook {
    pub dir: PathBuf,
    sock: String,
    signal: i32,
    window: Duration,
    /// --tracemalloc: PYTHONTRACEMALLOC for the job (unless it has its own).
    tracemalloc: Option<u32>,
}

/// The signal guard sends (SIGRTMAX - 6: 58 on Linux with glibc).
pub fn signal_number() -> i32 {
    libc::SIGRTMAX() - SIGNAL_BELOW_RTMAX
}

/// The hook's directory for `uid`, made and checked: `pyhook-HASH` in guard's runtime directory.
pub fn hook_dir(uid: u32) -> Result<PathBuf, HookError> {
    let path = hookdir::open(
        uid,
        &hookdir::Spec {
            prefix: "pyhook",
            hash: CONTENT_HASH,
            files: &[
                ("sitecustomize.py", SITECUSTOMIZE),
                ("_guard_hook.py", HOOK),
                ("_guard_pyheap.py", CENSUS),
            ],
            pycache: true,
            runtime: "Python",
        },
    )?;
    if path.as_os_str().as_bytes().contains(&b':') {
        return Err(HookError::Unfit {
            path,
            what: "':'",
            var: "PYTHONPATH",
        });
    }
    Ok(path)
}

impl Hook {
    /// Write (or check) the hook's directory for guard's uid; its processes answer on `sock`.
    pub fn install(settings: Settings, sock: &str) -> Result<Hook, HookError> {
        let uid = nix::unistd::geteuid().as_raw();
        let dir = hook_dir(uid)?;
        Ok(Hook {
            dir,
            sock: sock.to_string(),
            signal: signal_number(),
            window: settings.window,
            tracemalloc: settings.tracemalloc,
        })
    }

    /// How the census asks this hook's processes.
    pub fn asking(&self) -> Asking {
        Asking {
            runtime: Runtime::Python,
            signal: self.signal,
            announcement: self.dir.join("_guard_hook.py"),
            socket: None,
        }
    }

    /// The job's environment with the hook's directory first on PYTHONPATH and GUARD_PYHEAP set;
    /// PYTHONTRACEMALLOC with --tracemalloc, unless the job has its own.
    pub fn apply(&self, env: &mut Environ) {
        let mut pythonpath = self.dir.as_os_str().to_os_string();
        if let Some((_, v)) = env.iter().find(|(k, _)| k == "PYTHONPATH") {
            if !v.is_empty() {
                pythonpath.push(":");
                pythonpath.push(v);
            }
        }
        super::set(env, "PYTHONPATH", pythonpath);
        super::set(env, ENV, OsString::from(self.value()));
        if let Some(n) = self.tracemalloc {
            if !env.iter().any(|(k, _)| k == "PYTHONTRACEMALLOC") {
                super::set(env, "PYTHONTRACEMALLOC", OsString::from(n.to_string()));
            }
        }
    }

    /// GUARD_PYHEAP's value: `socket:signal:window_ms:dir` (how each census runs — held or
    /// running, its memory budget, the time left — guard says when it accepts its connection).
    fn value(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.sock,
            self.signal,
            self.window.as_millis(),
            self.dir.display()
        )
    }
}

/// The collector's line: what was counted, what it cost, the top finding.
fn summary(h: &PyHeap) -> String {
    let mut s = format!(
        "{} objects in {:.0} ms, its own memory +{} (Python {})",
        crate::config::units::format_count(h.objects),
        h.duration_ms,
        crate::config::units::format_size(h.hwm_growth_bytes),
        h.python
    );
    if !h.complete {
        s.push_str("; cut short by its deadline");
    }
    if let Some(top) = h.by_size.first() {
        s.push_str(&format!(
            "; largest: {} \u{d7}{} ({})",
            top.type_name,
            crate::config::units::format_count(top.count),
            crate::config::units::format_size(top.bytes)
        ));
    }
    s
}

/// Limits on what an answer may carry (guard writes what it checked, not what it was sent).
const MAX_ROWS: usize = 50;
const MAX_PATHS: usize = 10;
const MAX_LABELS: usize = 64;

/// Parse and bound an answer from `pid`, as the census writes it.
pub fn check(data: &[u8], pid: i32) -> Result<Answered, String> {
    let mut h = checked(data, pid)?;
    h.pid = pid;
    Ok(Answered {
        json: serde_json::to_vec_pretty(&h).unwrap_or_default(),
        error: h.error.clone(),
        summary: summary(&h),
    })
}

/// Parse and bound an answer from `pid`.
fn checked(data: &[u8], pid: i32) -> Result<PyHeap, String> {
    let mut h: PyHeap = super::parse_answer(data, PYHEAP_FORMAT)?;
    super::check_origin(&h.format, h.pid, PYHEAP_FORMAT, pid)?;
    h.python = text(&h.python);
    h.implementation = text(&h.implementation);
    h.error = h.error.as_deref().map(text);
    h.notes = h.notes.iter().take(10).map(|n| text(n)).collect();
    for rows in [&mut h.by_size, &mut h.by_count] {
        rows.truncate(MAX_ROWS);
        for r in rows.iter_mut() {
            r.type_name = text(&r.type_name);
        }
    }
    h.paths.truncate(MAX_PATHS);
    for p in &mut h.paths {
        p.type_name = text(&p.type_name);
        p.path = labels(&p.path);
        p.root = p.root.as_deref().map(text);
        p.others.truncate(4);
        p.others = p.others.iter().map(|o| labels(o)).collect();
    }
    if let Some(a) = &mut h.allocated {
        a.lines.truncate(MAX_ROWS);
        for l in &mut a.lines {
            l.at = text(&l.at);
            l.file = text(&l.file);
        }
        a.skipped = a.skipped.as_deref().map(text);
    }
    if let Some(g) = &mut h.gc {
        g.thresholds.truncate(4);
        g.counts.truncate(4);
    }
    h.phases_ms = std::mem::take(&mut h.phases_ms)
        .into_iter()
        .take(10)
        .map(|(k, v)| (text(&k), v))
        .collect();
    Ok(h)
}

fn labels(path: &[String]) -> Vec<String> {
    path.iter().take(MAX_LABELS).map(|l| text(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `key` in an environment.
    fn env_value(env: &Environ, key: &str) -> Option<OsString> {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_hook_directory_is_made_checked_and_its_files_restored() {
        // As the user this test runs as: XDG_RUNTIME_DIR or /tmp/guard-UID.
        let uid = nix::unistd::geteuid().as_raw();
        let dir = hook_dir(uid).unwrap();
        assert!(dir.ends_with(format!("pyhook-{CONTENT_HASH:016x}")));
        let site = dir.join("sitecustomize.py");
        assert_eq!(std::fs::read_to_string(&site).unwrap(), SITECUSTOMIZE);
        std::fs::write(&site, "tampered").unwrap();
        assert_eq!(hook_dir(uid).unwrap(), dir);
        assert_eq!(std::fs::read_to_string(&site).unwrap(), SITECUSTOMIZE);
        // Same length, but others may write it: read, compared, rewritten, 0644/0600 again.
        use std::os::unix::fs::PermissionsExt;
        let same_len = "#".repeat(SITECUSTOMIZE.len());
        std::fs::write(&site, &same_len).unwrap();
        std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o666)).unwrap();
        hook_dir(uid).unwrap();
        assert_eq!(std::fs::read_to_string(&site).unwrap(), SITECUSTOMIZE);
        let mode = std::fs::metadata(&site).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "{mode:o}");
        // A symlink in a file's place is replaced, not followed.
        let census = dir.join("_guard_pyheap.py");
        let target = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(target.path(), "x".repeat(CENSUS.len())).unwrap();
        std::fs::remove_file(&census).unwrap();
        std::os::unix::fs::symlink(target.path(), &census).unwrap();
        hook_dir(uid).unwrap();
        assert!(!std::fs::symlink_metadata(&census).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&census).unwrap(), CENSUS);
        assert_eq!(
            std::fs::read_to_string(target.path()).unwrap(),
            "x".repeat(CENSUS.len())
        );
    }

    #[test]
    fn the_environment_puts_the_hook_first_and_keeps_the_rest() {
        let hook = Hook {
            dir: "/run/guard/pyhook-1".into(),
            sock: "guard-pyheap-1-2".into(),
            signal: 58,
            window: Duration::from_millis(1500),
            tracemalloc: None,
        };
        let mut env: Environ = vec![
            ("PATH".into(), "/usr/bin".into()),
            ("PYTHONPATH".into(), "/srv/app".into()),
        ];
        hook.apply(&mut env);
        let pp = env_value(&env, "PYTHONPATH").unwrap();
        assert_eq!(pp, "/run/guard/pyhook-1:/srv/app");
        assert_eq!(
            env_value(&env, ENV).unwrap(),
            "guard-pyheap-1-2:58:1500:/run/guard/pyhook-1"
        );
        assert!(env_value(&env, "PATH").is_some());
        assert_eq!(env.iter().filter(|(k, _)| k == "PYTHONPATH").count(), 1);
    }

    #[test]
    fn answers_are_checked_and_bounded() {
        let long = "x".repeat(1000);
        let doc = serde_json::json!({
            "format": PYHEAP_FORMAT, "pid": 7, "python": "3.11.7", "objects": 10,
            "by_size": [{"type": format!("evil\u{1b}[2J{long}"), "count": 1, "bytes": 2}],
            "paths": [{"type": "bytes", "path": vec!["a"; 100], "root": "local"}],
            "unknown_field": 1
        });
        let h = checked(&serde_json::to_vec(&doc).unwrap(), 7).unwrap();
        assert!(h.by_size[0].type_name.starts_with("evil\\x1b[2J"));
        assert!(h.by_size[0].type_name.chars().count() <= super::super::MAX_TEXT + 8);
        assert_eq!(h.paths[0].path.len(), MAX_LABELS);
        assert!(checked(&serde_json::to_vec(&doc).unwrap(), 8).is_err());
        assert!(checked(b"{\"format\":\"other\"}", 7).is_err());
        assert!(checked(b"not json", 7).is_err());
    }

    #[test]
    fn the_headroom_is_a_share_of_the_cap_and_at_least_32_mib() {
        let s = Settings {
            window: DEFAULT_WINDOW,
            headroom: None,
            tracemalloc: None,
            python: true,
            node: true,
        };
        assert_eq!(s.headroom_for(100 << 20, false), MIN_HEADROOM);
        assert_eq!(
            s.headroom_for(100 << 20, true),
            crate::config::census::MIN_NODE_HEADROOM
        );
        assert_eq!(s.headroom_for(2 << 30, false), (2u64 << 30) / 100 * 5);
        assert_eq!(s.headroom_for(4 << 30, true), (4u64 << 30) / 100 * 5);
        let s = Settings {
            headroom: Some(1 << 20),
            ..s
        };
        assert_eq!(s.headroom_for(2 << 30, true), 1 << 20);
    }
}
