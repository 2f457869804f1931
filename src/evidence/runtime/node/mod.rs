//! The Node.js heap census (guard(1), NODE.JS HEAP CENSUS): the hook guard puts in the job's
//! NODE_OPTIONS (`--require guard_hook.cjs`, before the job's own options; the file beside this
//! one, written into a directory [`hookdir`] checks), which Node.js processes are asked, and how
//! their answers (`processes/<pid>/jsheap.json`) are checked. The conversation is the runtimes'
//! shared [`super::census`].
//!
//! Why this design: Node's inspector opened by SIGUSR1 listens on a TCP port any local user can
//! reach, so guard never sends it. The hook listens for SIGPWR instead (a signal Node lets a
//! program listen for and nothing else uses; guard sends it only to a process that listens for
//! it and keeps the hook's file open). A listener runs on the event loop: a program busy in a
//! synchronous loop does not answer within the window — its native stack (eu-stack) still
//! shows where it is. Heap snapshots come from the in-process inspector session (no port), are
//! summarised as they stream, and are taken only when their cost — about 15 times the used JS
//! heap, measured — fits the census's budget; V8's sampling heap profiler, started at the first
//! census (the warning), says who allocated the JS heap when a snapshot cannot be afforded.

use super::hookdir::{self, HookError};
use super::{Answered, Environ, Runtime, census::Asking, text};
use crate::config::census::Settings;
use crate::format::{JSHEAP_FORMAT, JsHeap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hook, as it is written into its directory. `.cjs`: CommonJS whatever a package.json
/// above it says — for a guard that is not root the directory may be under /tmp, where any
/// user can leave a package.json with "type": "module", which would make a `.js` hook an ES
/// module that --require cannot load, and every Node.js job fail to start.
pub const HOOK: &str = include_str!("guard_hook.cjs");
const HOOK_FILE: &str = "guard_hook.cjs";
const CONTENT_HASH: u64 = hookdir::content_hash(&[HOOK]);
/// The environment variable the hook reads: `socket:SIGNAL:window_ms`.
pub const ENV: &str = "GUARD_NODEHEAP";
/// The signal that asks a hooked process, by the name Node knows it by.
const SIGNAL_NAME: &str = "SIGPWR";
const SIGNAL: i32 = libc::SIGPWR;
/// The most Node.js processes asked at once.
const MAX_PROCESSES: usize = 8;

/// The hook of one run.
#[derive(Debug)]
pub struct Hook {
    pub dir: PathBuf,
    /// The socket file its processes connect to, beside the hook's directory: Node.js 18's libuv
    /// cannot reach an abstract name (it cuts the name at its leading NUL).
    socket: PathBuf,
    window: Duration,
}

/// The hook's directory for `uid`, made and checked: `nodehook-HASH` in guard's runtime
/// directory. NODE_OPTIONS carries its path in double quotes, so a path with a quote, a
/// backslash or a newline is refused.
pub fn hook_dir(uid: u32) -> Result<PathBuf, HookError> {
    let path = hookdir::open(
        uid,
        &hookdir::Spec {
            prefix: "nodehook",
            hash: CONTENT_HASH,
            files: &[(HOOK_FILE, HOOK)],
            pycache: false,
            runtime: "Node.js",
        },
    )?;
    if path
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b'"' | b'\\' | b'\n'))
    {
        return Err(HookError::Unfit {
            path,
            what: "a quote, a backslash or a newline",
            var: "NODE_OPTIONS",
        });
    }
    Ok(path)
}

impl Hook {
    /// Write (or check) the hook's directory for guard's uid; its processes answer on `sock`.
    pub fn install(settings: Settings, sock: &str) -> Result<Hook, HookError> {
        let dir = hook_dir(nix::unistd::geteuid().as_raw())?;
        let socket = socket_path(&dir, sock)?;
        Ok(Hook {
            dir,
            socket,
            window: settings.window,
        })
    }

    pub fn asking(&self) -> Asking {
        Asking {
            runtime: Runtime::Node,
            signal: SIGNAL,
            announcement: self.dir.join(HOOK_FILE),
            socket: Some(self.socket.clone()),
        }
    }

    /// NODE_OPTIONS with `--require "HOOK"` first (the job's own options after it), and
    /// GUARD_NODEHEAP.
    pub fn apply(&self, env: &mut Environ) {
        let mut options = OsString::from("--require \"");
        options.push(self.dir.join(HOOK_FILE));
        options.push("\"");
        if let Some((_, v)) = env.iter().find(|(k, _)| k == "NODE_OPTIONS") {
            if !v.is_empty() {
                options.push(" ");
                options.push(v);
            }
        }
        super::set(env, "NODE_OPTIONS", options);
        super::set(
            env,
            ENV,
            OsString::from(format!(
                "{}:{SIGNAL_NAME}:{}",
                self.socket.display(),
                self.window.as_millis()
            )),
        );
    }
}

/// This run's socket file, `SOCK.sock` in guard's runtime directory (the hook's directory's
/// parent: guard's own, checked by [`hook_dir`]); refused when a socket address cannot hold it.
fn socket_path(dir: &Path, sock: &str) -> Result<PathBuf, HookError> {
    let path = dir
        .parent()
        .unwrap_or(Path::new("/"))
        .join(format!("{sock}.sock"));
    if path.as_os_str().len() >= super::census::SUN_PATH {
        return Err(HookError::Unfit {
            path,
            what: "more than 107 bytes",
            var: "a Unix socket address",
        });
    }
    Ok(path)
}

/// Whether `pid` runs Node.js (by the executable's name: node, nodejs).
pub fn is_node(proc: &Path, pid: i32) -> bool {
    let dir = proc.join(pid.to_string());
    let exe = std::fs::read_link(dir.join("exe")).ok();
    let named = |n: &str| n == "node" || n == "nodejs";
    exe.as_ref()
        .and_then(|e| e.file_name())
        .is_some_and(|n| named(&n.to_string_lossy()))
        || named(
            std::fs::read_to_string(dir.join("comm"))
                .unwrap_or_default()
                .trim(),
        )
}

/// The Node.js processes among `pids`, in their order, at most MAX_PROCESSES.
pub fn node_pids(proc: &Path, pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|&p| is_node(proc, p))
        .take(MAX_PROCESSES)
        .collect()
}

/// Limits on what an answer may carry.
const MAX_ROWS: usize = 20;
const MAX_PATHS: usize = 5;
const MAX_STEPS: usize = 40;

/// Parse and bound an answer from `pid`, as the census writes it.
pub fn check(data: &[u8], pid: i32) -> Result<Answered, String> {
    let mut h: JsHeap = super::parse_answer(data, JSHEAP_FORMAT)?;
    super::check_origin(&h.format, h.pid, JSHEAP_FORMAT, pid)?;
    h.pid = pid;
    h.node = text(&h.node);
    h.error = h.error.as_deref().map(text);
    h.notes = h.notes.iter().take(10).map(|n| text(n)).collect();
    h.spaces.truncate(MAX_ROWS);
    for s in &mut h.spaces {
        s.name = text(&s.name);
    }
    h.by_size.truncate(MAX_ROWS);
    for g in &mut h.by_size {
        g.name = text(&g.name);
    }
    h.paths.truncate(MAX_PATHS);
    for p in &mut h.paths {
        p.name = text(&p.name);
        p.path = p.path.iter().take(MAX_STEPS).map(|s| text(s)).collect();
        p.root = p.root.as_deref().map(text);
    }
    h.allocated.truncate(MAX_ROWS);
    for a in &mut h.allocated {
        a.stack = a.stack.iter().take(8).map(|s| text(s)).collect();
    }
    if let Some(r) = &mut h.running {
        r.stacks.truncate(MAX_ROWS);
        for st in &mut r.stacks {
            st.stack = st.stack.iter().take(8).map(|s| text(s)).collect();
            st.share = if st.share.is_finite() {
                st.share.clamp(0.0, 1.0)
            } else {
                0.0
            };
        }
    }
    Ok(Answered {
        json: serde_json::to_vec_pretty(&h).unwrap_or_default(),
        error: h.error.clone(),
        summary: summary(&h),
    })
}

/// The collector's line: V8's figures, what the census cost, the top finding.
fn summary(h: &JsHeap) -> String {
    let size = crate::config::units::format_size;
    let mut s = format!(
        "JS heap {} used, external {} (ArrayBuffers {}), in {:.0} ms (Node.js {})",
        size(h.heap_used_bytes),
        size(h.external_bytes),
        size(h.array_buffers_bytes),
        h.duration_ms,
        h.node
    );
    match h.top_finding() {
        Some(top) => s.push_str(&format!("; largest: {top}")),
        None if h.snapshot.is_none() => s.push_str("; no heap snapshot"),
        None => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_options_get_the_hook_first_and_keep_the_jobs_own() {
        let hook = Hook {
            dir: "/run/guard/nodehook-1".into(),
            socket: "/run/guard/guard-census-1-2.sock".into(),
            window: Duration::from_millis(2000),
        };
        let mut env: Environ = vec![("NODE_OPTIONS".into(), "--max-old-space-size=64".into())];
        hook.apply(&mut env);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("NODE_OPTIONS").unwrap(),
            "--require \"/run/guard/nodehook-1/guard_hook.cjs\" --max-old-space-size=64"
        );
        assert_eq!(
            get(ENV).unwrap(),
            "/run/guard/guard-census-1-2.sock:SIGPWR:2000"
        );
        let mut bare: Environ = Vec::new();
        hook.apply(&mut bare);
        assert_eq!(
            bare[0].1,
            OsString::from("--require \"/run/guard/nodehook-1/guard_hook.cjs\"")
        );
    }

    /// The socket file sits in guard's runtime directory, beside the hook's; a path a socket
    /// address cannot hold is refused (the Node.js census is then off, with a warning).
    #[test]
    fn the_socket_file_is_beside_the_hook_and_fits_an_address() {
        let dir = Path::new("/run/guard/nodehook-1");
        assert_eq!(
            socket_path(dir, "guard-census-1-2").unwrap(),
            Path::new("/run/guard/guard-census-1-2.sock")
        );
        let deep = PathBuf::from(format!("/{}/nodehook-1", "d".repeat(80)));
        let e = socket_path(&deep, "guard-census-1-0123456789abcdef").unwrap_err();
        assert!(e.to_string().contains("more than 107 bytes"), "{e}");
    }

    #[test]
    fn answers_are_checked_and_bounded() {
        let doc = serde_json::json!({
            "format": JSHEAP_FORMAT, "pid": 7, "node": "v20.1.0\u{1b}[2J",
            "heap_used_bytes": 7 << 20, "external_bytes": 132 << 20,
            "by_size": vec![serde_json::json!({"name": "Buffer", "count": 2100, "bytes": 132 << 20}); 50],
            "paths": [{"name": "Buffer", "path": vec!["Object.profile"; 100]}],
        });
        let a = check(&serde_json::to_vec(&doc).unwrap(), 7).unwrap();
        let h: JsHeap = serde_json::from_slice(&a.json).unwrap();
        assert_eq!(h.by_size.len(), MAX_ROWS);
        assert_eq!(h.paths[0].path.len(), MAX_STEPS);
        assert!(h.node.starts_with("v20.1.0\\x1b"), "{}", h.node);
        assert!(
            a.summary.contains("largest: Buffer \u{d7}2,100"),
            "{}",
            a.summary
        );
        assert!(check(&serde_json::to_vec(&doc).unwrap(), 8).is_err());
        assert!(check(b"{\"format\":\"guard-pyheap/1\"}", 7).is_err());
    }
}
