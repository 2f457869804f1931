//! The sentinel: a tiny process that outlives guard only to clean up after it. It is started
//! before COMMAND — so there is no moment at which killing guard leaves the job's descendants
//! running — and it holds the read end of a pipe whose write end only guard holds.
//!
//! - guard ends normally: it has removed the job's cgroup, writes one byte ("stand down"), and the
//!   sentinel exits.
//! - guard is killed (SIGKILL, the OOM killer): the pipe reaches end of file, and the sentinel
//!   execs guard's own binary in its cleanup mode ([`cleanup`], `guard __sentinel GUARDPID DIR...`),
//!   which kills whatever is left in the job's cgroups (and those below them) and removes them.
//!   Cgroups of a sentinel that died as well are removed by the next guard run.
//!
//! It is started with `clone(CLONE_VM)`, not fork: it shares guard's memory instead of copying
//! its page tables, so it costs a short job ~20 µs instead of the fork's page-table copy and the
//! copy-on-write faults guard would take afterwards. Sharing guard's memory, it does only
//! system calls on data prepared before the clone (no allocation: guard may die holding the
//! allocator's lock), and on guard's death it execs at once, into a fresh address space.

use crate::cgroup;
use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hidden mode guard's binary runs in as the sentinel's cleanup.
pub const CLEANUP_MODE: &str = "__sentinel";

/// Stack for the sentinel until it execs: a few frames of system calls.
const STACK: usize = 32 * 1024;

/// What the sentinel reads, prepared before the clone and kept alive as long as guard is.
struct Prepared {
    read_fd: RawFd,
    /// guard's open descriptors at the clone (closed by the sentinel if close_range is missing).
    open: Vec<RawFd>,
    exe: CString,
    /// `guard __sentinel GUARDPID DIR...`, NULL-terminated.
    argv: Vec<*const libc::c_char>,
    _args: Vec<CString>,
}

/// What guard and the sentinel share until the sentinel exits or execs: its prepared data and
/// its stack. Freed only once the sentinel is reaped.
struct Shared {
    _prepared: Box<Prepared>,
    _stack: Vec<u8>,
    _read_end: OwnedFd,
}

/// guard's handle on the sentinel: [`Sentinel::stand_down`] (or dropping it) tells the sentinel to
/// leave.
pub struct Sentinel {
    pub pid: i32,
    write_end: Option<std::fs::File>,
    shared: Option<Shared>,
}

impl std::fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sentinel({})", self.pid)
    }
}

impl Sentinel {
    /// guard has cleaned up: one byte, and the sentinel exits. Reaping it is left to the returned
    /// handle, dropped when guard is done (by then the sentinel has long exited: no wait).
    pub fn stand_down(mut self) -> StoodDown {
        self.release()
    }

    fn release(&mut self) -> StoodDown {
        if let Some(mut w) = self.write_end.take() {
            let _ = w.write_all(b"x");
        }
        StoodDown {
            pid: self.pid,
            shared: self.shared.take(),
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        drop(self.release());
    }
}

/// A sentinel told to stand down; dropping this reaps it, so that no zombie is left to whoever
/// inherits it.
pub struct StoodDown {
    pid: i32,
    shared: Option<Shared>,
}

impl std::fmt::Debug for StoodDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoodDown({})", self.pid)
    }
}

impl Drop for StoodDown {
    fn drop(&mut self) {
        if !reap(self.pid) {
            // Exiting at once, but not yet gone: wait on a pidfd, which becomes readable when it
            // exits (bounded: 200 ms).
            // SAFETY: pidfd_open takes a pid and flags; the result is checked before use.
            let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
            if let Ok(fd) = libc::c_int::try_from(pidfd) {
                if fd >= 0 {
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd; then the descriptor pidfd_open gave us is closed.
                    unsafe {
                        libc::poll(&mut p, 1, 200);
                        libc::close(fd);
                    }
                }
            }
            if !reap(self.pid) {
                // Still running on the shared stack: never free it under its feet (guard is
                // about to exit anyway).
                std::mem::forget(self.shared.take());
            }
        }
    }
}

/// Reap `pid` if it has exited (or is gone already: someone reaped it); true then.
fn reap(pid: i32) -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    !matches!(
        waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
        Ok(WaitStatus::StillAlive)
    )
}

/// The sentinel between clone and exec: system calls on prepared data only.
extern "C" fn sentinel_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the `Prepared` that guard keeps alive (boxed in the Sentinel) for
    // as long as it lives, and after guard's death the memory stays mapped: this process shares
    // it. Every call below is a plain system call on integers and prepared C strings.
    unsafe {
        let p = &*(arg as *const Prepared);
        // Hold nothing of guard's but the pipe and stderr: not the job's output pipes, not its
        // cgroup files, not a terminal. Until it execs the sentinel shares guard's errno (its
        // thread pointer is guard's): close_range succeeds or fails once, where closing every
        // number would set errno under guard's feet; without it (before Linux 5.9) the
        // descriptors guard had open are closed, which succeeds.
        let fd = p.read_fd;
        let close_range = |first: libc::c_uint, last: libc::c_uint| {
            first > last || libc::syscall(libc::SYS_close_range, first, last, 0) == 0
        };
        let keep = [2, fd as libc::c_uint];
        let (low, high) = (keep[0].min(keep[1]), keep[0].max(keep[1]));
        let ranged = close_range(0, low.saturating_sub(1))
            && (low == high || close_range(low + 1, high - 1))
            && close_range(high + 1, libc::c_uint::MAX);
        if !ranged {
            for &other in &p.open {
                if other != fd && other != 2 {
                    libc::close(other);
                }
            }
        }
        libc::prctl(
            libc::PR_SET_NAME,
            c"guard-sentinel".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut b = 0u8;
        // Signals stay blocked (guard's mask): only a byte or end of file wakes this read.
        let n = loop {
            let n = libc::read(fd, (&raw mut b).cast(), 1);
            if n >= 0 {
                break n;
            }
        };
        if n == 1 {
            libc::_exit(0); // guard ended normally
        }
        libc::execv(p.exe.as_ptr(), p.argv.as_ptr());
        libc::_exit(127)
    }
}

/// Start the sentinel for the job's cgroup directories `dirs` (v1: freezer leaf first, even before
/// it exists). None, with a warning, if that fails: then only COMMAND has a parent-death signal,
/// and the next guard run removes the cgroup.
pub fn start(dirs: &[PathBuf]) -> Option<Sentinel> {
    match try_start(dirs) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!(
                "cannot start the cleanup sentinel ({e}); if guard is killed, the next run removes the cgroup"
            );
            None
        }
    }
}

fn try_start(dirs: &[PathBuf]) -> std::io::Result<Sentinel> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let cstr = |b: &[u8]| {
        CString::new(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let mut args = vec![
        cstr(b"guard")?,
        cstr(CLEANUP_MODE.as_bytes())?,
        cstr(std::process::id().to_string().as_bytes())?,
    ];
    for d in dirs {
        args.push(cstr(d.as_os_str().as_bytes())?);
    }
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let prepared = Box::new(Prepared {
        read_fd: r.as_raw_fd(),
        open: if close_range_works() {
            Vec::new()
        } else {
            open_fds()
        },
        exe: cstr(b"/proc/self/exe")?,
        argv,
        _args: args,
    });
    // Uninitialised on purpose: zeroing would fault in every page; the sentinel uses the top few.
    let mut stack: Vec<u8> = Vec::with_capacity(STACK);
    let top = ((stack.as_mut_ptr() as usize + STACK) & !15) as *mut libc::c_void;
    // SAFETY: `sentinel_main` makes only system calls on `prepared`, which outlives its use (see
    // Prepared); `stack` is its own stack and stays allocated while guard runs. CLONE_VM without
    // CLONE_VFORK: guard goes on at once; the child never touches what guard mutates.
    let pid = unsafe {
        libc::clone(
            sentinel_main,
            top,
            libc::CLONE_VM | libc::SIGCHLD,
            std::ptr::addr_of!(*prepared) as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Sentinel {
        pid,
        write_end: Some(std::fs::File::from(w)),
        shared: Some(Shared {
            _prepared: prepared,
            _stack: stack,
            _read_end: r,
        }),
    })
}

/// Whether this kernel has close_range (5.9+): a call that closes nothing tells.
fn close_range_works() -> bool {
    // SAFETY: close_range over an empty range of descriptor numbers closes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            libc::c_uint::MAX,
            libc::c_uint::MAX,
            0,
        ) == 0
    }
}

/// guard's open descriptors now (the listing's own descriptor is closed again: left out).
fn open_fds() -> Vec<RawFd> {
    let listed: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    listed
        .into_iter()
        // SAFETY: F_GETFD on a descriptor number reads its flags; it touches no memory.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect()
}

/// The cleanup mode (`guard __sentinel GUARDPID DIR...`): guard died; kill what is left in its
/// job's cgroups and remove them, saying so on stderr. Returns the exit status.
pub fn cleanup(args: &[std::ffi::OsString]) -> i32 {
    let guard_pid = args
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dirs: Vec<&Path> = args
        .iter()
        .skip(1)
        .map(|d| Path::new(OsStr::new(d)))
        .collect();
    for dir in dirs.iter().filter(|d| d.exists()) {
        cgroup::kill_cgroup(dir, Duration::from_secs(10));
    }
    for dir in dirs.iter().filter(|d| d.exists()) {
        let removed = cgroup::fs::rmdir_tree(dir, 200).is_ok();
        let left = if removed {
            "and removed its cgroup"
        } else {
            "but could not remove its cgroup"
        };
        eprintln!(
            "guard: guard (pid {guard_pid}) ended without cleaning up; killed the job in {} {left}",
            dir.display()
        );
    }
    0
}
