//! Held jobs (`--hold-for`): the register a guard keeps while it holds its job frozen after the
//! capture at the cap — one file per guard in `held/` of guard's runtime directory
//! ([`crate::os::rundir`]) — and what reads it: `guard held`, the first lines of `guard list`, and
//! `guard kill NAME|PID`, which ends a hold by sending the holding guard SIGTERM through a
//! pidfd (with a value that says it came from `guard kill`).
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
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The value `guard kill` queues with its SIGTERM ("gukl"): the holding guard then says the
/// hold was ended by `guard kill`, not by some other SIGTERM.
pub const KILL_VALUE: i32 = 0x6775_6b6c;
/// The register's directory in guard's runtime directory.
const DIR: &str = "held";
/// The largest entry read (an entry is a few hundred bytes).
const MAX_ENTRY: u64 = 64 << 10;
/// How long `guard kill` waits for the guard it signalled to end the hold.
const KILL_ACK: Duration = Duration::from_secs(10);

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
fn alive(h: &Held) -> bool {
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

/// `guard held` and the first lines of `guard list`: one line per held job.
pub fn text(held: &[Held]) -> String {
    let esc = |s: &str| crate::format::escape_controls(s, false).into_owned();
    let mut o = format!(
        "{:<16} {:>8} {:>8}  {:<24} {:<24} EVIDENCE\n",
        "HELD JOB", "PID", "GUARD", "SINCE (UTC)", "UNTIL (UTC)"
    );
    for h in held {
        let _ = writeln!(
            o,
            "{:<16} {:>8} {:>8}  {:<24} {:<24} {}",
            esc(&h.job),
            h.pid,
            h.guard_pid,
            esc(&h.since),
            esc(&h.until),
            esc(h.bundle.as_deref().unwrap_or("-"))
        );
    }
    o.push_str("End a hold now (the job is killed, its guard exits 137): guard kill NAME|PID\n");
    o
}

/// What `guard kill TARGET` could not do: one error line, exit 125.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error(transparent)]
    Register(#[from] HeldError),
    #[error(
        "no held job is named {target:?} or has that pid ({held}); 'guard held' lists the holds of this user"
    )]
    NoMatch { target: String, held: String },
    #[error("{n} held jobs are named {target:?} (pids {pids}): name one by its pid")]
    Several {
        target: String,
        n: usize,
        pids: String,
    },
    #[error(
        "not permitted to signal guard (pid {guard_pid}) holding {job}: run 'guard kill' as the user that runs that guard, or as root"
    )]
    NotPermitted { guard_pid: i32, job: String },
    #[error("cannot signal guard (pid {guard_pid}) holding {job}: {source}")]
    Signal {
        guard_pid: i32,
        job: String,
        source: Errno,
    },
}

/// The one hold `target` (a job name, the job's pid or its guard's pid) names.
fn choose(target: &str, held: Vec<Held>) -> Result<Held, KillError> {
    let pid: Option<i32> = target.parse().ok();
    let mut matched: Vec<Held> = held
        .iter()
        .filter(|h| h.job == target || pid.is_some_and(|p| p == h.pid || p == h.guard_pid))
        .cloned()
        .collect();
    match matched.len() {
        1 => Ok(matched.remove(0)),
        0 => Err(KillError::NoMatch {
            target: target.to_string(),
            held: if held.is_empty() {
                "nothing is held".into()
            } else {
                let names: Vec<String> = held
                    .iter()
                    .map(|h| format!("{} (pid {})", h.job, h.pid))
                    .collect();
                format!("held now: {}", names.join(", "))
            },
        }),
        n => Err(KillError::Several {
            target: target.to_string(),
            n,
            pids: matched
                .iter()
                .map(|h| h.pid.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The siginfo of a queued signal (rt_sigqueueinfo's layout: the union after three ints,
/// aligned for the pointer in it), padded to the kernel's 128 bytes.
#[repr(C)]
struct Queued {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    fields: QueuedFields,
}

#[repr(C)]
struct QueuedFields {
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: *mut libc::c_void,
}

#[repr(C)]
union SigInfo {
    queued: std::mem::ManuallyDrop<Queued>,
    _size: [u64; 16],
}

/// SIGTERM to the guard `h` names, through a pidfd taken after its start time was checked (a
/// pid reused since cannot be signalled), queued with [`KILL_VALUE`].
fn signal_guard(h: &Held) -> Result<OwnedFd, KillError> {
    let err = |source: Errno| match source {
        Errno::EPERM => KillError::NotPermitted {
            guard_pid: h.guard_pid,
            job: h.job.clone(),
        },
        _ => KillError::Signal {
            guard_pid: h.guard_pid,
            job: h.job.clone(),
            source,
        },
    };
    // SAFETY: pidfd_open takes a pid and flags; the result is checked before use.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, h.guard_pid, 0) };
    let raw = libc::c_int::try_from(raw).map_err(|_| err(Errno::EINVAL))?;
    if raw < 0 {
        return Err(err(Errno::last()));
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    if !alive(h) {
        return Err(err(Errno::ESRCH));
    }
    let mut info = SigInfo { _size: [0; 16] };
    info.queued = std::mem::ManuallyDrop::new(Queued {
        signo: libc::SIGTERM,
        errno: 0,
        code: libc::SI_QUEUE,
        fields: QueuedFields {
            pid: std::process::id() as libc::pid_t,
            uid: nix::unistd::getuid().as_raw(),
            value: KILL_VALUE as isize as *mut libc::c_void,
        },
    });
    // SAFETY: a pidfd we own, SIGTERM, and a 128-byte siginfo laid out as the kernel reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGTERM,
            std::ptr::addr_of!(info),
            0,
        )
    };
    if r != 0 {
        return Err(err(Errno::last()));
    }
    Ok(pidfd)
}

/// `guard kill TARGET`: end the hold now. Prints what happened; returns the exit status.
pub fn kill_cmd(target: &str) -> Result<String, KillError> {
    let h = choose(target, live()?)?;
    let pidfd = signal_guard(&h)?;
    // The guard removes its entry as it ends the hold, then kills the job: wait for that,
    // bounded (a guard stopped by a debugger never answers).
    let t0 = Instant::now();
    let mut acknowledged = false;
    while t0.elapsed() < KILL_ACK {
        if !live()?.iter().any(|l| l.guard_pid == h.guard_pid) {
            acknowledged = true;
            break;
        }
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on a descriptor we own.
        unsafe { libc::poll(&mut pfd, 1, 20) };
    }
    let evidence = h
        .bundle
        .as_deref()
        .map(|b| format!("; evidence: {b}"))
        .unwrap_or_default();
    Ok(if acknowledged {
        format!(
            "guard: ended the hold of {} (pid {}); its guard (pid {}) kills it now and exits 137{evidence}",
            h.job, h.pid, h.guard_pid
        )
    } else {
        format!(
            "guard: sent SIGTERM to guard (pid {}) holding {} (pid {}); it has not ended the hold within {} s (is it stopped?)",
            h.guard_pid,
            h.job,
            h.pid,
            KILL_ACK.as_secs()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(job: &str, pid: i32, guard_pid: i32) -> Held {
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
    fn a_target_names_one_hold_by_job_pid_or_guard_pid() {
        let all = vec![held("a", 10, 9), held("b", 20, 19), held("b", 30, 29)];
        assert_eq!(choose("a", all.clone()).unwrap().pid, 10);
        assert_eq!(choose("20", all.clone()).unwrap().job, "b");
        assert_eq!(choose("29", all.clone()).unwrap().pid, 30);
        let e = choose("b", all.clone()).unwrap_err().to_string();
        assert!(
            e.contains("2 held jobs are named \"b\" (pids 20, 30)"),
            "{e}"
        );
        let e = choose("c", all).unwrap_err().to_string();
        assert!(
            e.contains("held now: a (pid 10), b (pid 20), b (pid 30)"),
            "{e}"
        );
        let e = choose("c", Vec::new()).unwrap_err().to_string();
        assert!(e.contains("nothing is held"), "{e}");
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

    #[test]
    fn the_siginfo_is_laid_out_as_the_kernel_reads_it() {
        assert_eq!(std::mem::size_of::<SigInfo>(), 128);
        let q = std::mem::offset_of!(Queued, fields);
        assert_eq!(
            q,
            if cfg!(target_pointer_width = "64") {
                16
            } else {
                12
            }
        );
    }
}
