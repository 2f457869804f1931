//! The register of held jobs (`--hold-for`): one file per guard in `held/` of guard's runtime
//! directory ([`crate::os::rundir`]) while it holds its job frozen after the capture at the cap.
//! The hold ([`super::hold`]) writes it; `guard held`, `guard list` and `guard kill`
//! ([`crate::commands::held`]) read it.
//!
//! An entry names its guard by pid and start time: a pid whose process started at another
//! time is not that guard any more, and its entry is stale (a guard SIGKILLed while it held;
//! its sentinel killed the job). Readers remove stale entries of their own register.

use crate::os::owner::Owner;
use crate::os::rundir::{self, RunDirError};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::{Deserialize, Serialize};

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// The value `guard kill` queues with its SIGTERM ("gukl"): the holding guard then says the
/// hold was ended by `guard kill`, not by some other SIGTERM.
pub const KILL_VALUE: i32 = 0x6775_6b6c;
/// The register's directory in guard's runtime directory.
const DIR: &str = "held";
/// The largest entry read (an entry is a few hundred bytes).
const MAX_ENTRY: u64 = 64 << 10;

/// One held job, as its guard registered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub job: String,
    /// The job's main process.
    pub pid: i32,
    /// The guard that holds it, and that guard's start time (clock ticks since boot, field 22
    /// of /proc/PID/stat): the pid is that guard's only while its start time matches.
    pub guard_pid: i32,
    pub guard_start: u64,
    /// When the hold began and when it ends at the latest (RFC 3339 UTC).
    pub since: String,
    pub until: String,
    #[serde(default)]
    pub bundle: Option<String>,
    #[serde(default)]
    pub limit_bytes: Option<u64>,
    #[serde(default)]
    pub peak_bytes: Option<u64>,
}

/// Why the register could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error("the register of held jobs: {0}")]
    Dir(#[from] RunDirError),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: Errno },
}

/// A registered hold: the entry is removed when this is dropped (the hold ended).
#[derive(Debug)]
pub struct Registration {
    dir: OwnedFd,
    name: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = unlinkat(&self.dir, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
    }
}

/// Register `h` (this guard's hold): `<owner>.json`, 0600, written whole through a temporary
/// file and a rename.
pub fn register(h: &Held) -> Result<Registration, HeldError> {
    let uid = nix::unistd::geteuid().as_raw();
    let dir = rundir::open(uid, &[DIR], 0o700)?;
    let name = format!("{}.json", Owner::me());
    let tmp = format!(".{name}.tmp");
    let werr = |source| HeldError::Write {
        path: dir.path.join(&name),
        source,
    };
    let _ = unlinkat(&dir.fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(
        &dir.fd,
        tmp.as_str(),
        flags,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(werr)?;
    let json = serde_json::to_vec_pretty(h).unwrap_or_default();
    File::from(fd)
        .write_all(&json)
        .map_err(|e| werr(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    renameat(&dir.fd, tmp.as_str(), &dir.fd, name.as_str()).map_err(werr)?;
    Ok(Registration { dir: dir.fd, name })
}

/// This process's start time (for its own entry).
pub fn own_start() -> u64 {
    start_time(std::process::id() as i32).unwrap_or(0)
}

/// Field 22 of /proc/PID/stat: the process's start time in clock ticks since boot.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the guard an entry names still runs.
pub fn alive(h: &Held) -> bool {
    h.guard_pid > 0 && start_time(h.guard_pid) == Some(h.guard_start)
}

/// The holds registered by guards of this user in this PID namespace that still run, oldest
/// first; stale entries are removed on the way.
pub fn live() -> Result<Vec<Held>, HeldError> {
    let uid = nix::unistd::geteuid().as_raw();
    let Some(dir) = rundir::find(uid, &[DIR])? else {
        return Ok(Vec::new());
    };
    let me = Owner::me();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(via_fd(&dir.fd)) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(owner) = name.strip_suffix(".json").and_then(Owner::parse) else {
            continue;
        };
        // Another PID namespace's guard: its pid means nothing here.
        if owner.ns != me.ns {
            continue;
        }
        match read_entry(&dir.fd, &name) {
            Some(h) if h.guard_pid == owner.pid && alive(&h) => out.push(h),
            _ => {
                let _ = unlinkat(&dir.fd, name.as_str(), UnlinkatFlags::NoRemoveDir);
            }
        }
    }
    out.sort_by(|a, b| a.since.cmp(&b.since).then(a.guard_pid.cmp(&b.guard_pid)));
    Ok(out)
}

fn via_fd(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// One entry, opened without following a symlink, bounded in size.
fn read_entry(dir: &OwnedFd, name: &str) -> Option<Held> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = openat(dir, name, flags, Mode::empty()).ok()?;
    let mut text = String::new();
    File::from(fd)
        .take(MAX_ENTRY)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A held job for the tests.
    pub fn held(job: &str, pid: i32, guard_pid: i32) -> Held {
        Held {
            job: job.into(),
            pid,
            guard_pid,
            guard_start: 1,
            since: "2026-12-04T05:00:00.000Z".into(),
            until: "2026-12-04T05:30:00.000Z".into(),
            bundle: None,
            limit_bytes: None,
            peak_bytes: None,
        }
    }

    #[test]
    fn the_start_time_tells_a_live_guard_from_a_reused_pid() {
        let me = std::process::id() as i32;
        let mut h = held("x", 1, me);
        h.guard_start = own_start();
        assert!(h.guard_start > 0);
        assert!(alive(&h));
        h.guard_start += 1;
        assert!(!alive(&h), "another start time: not that guard");
        h.guard_pid = 0;
        assert!(!alive(&h));
    }
}
