//! The sentinel: a tiny process forked from guard once the job has run for a moment (20 ms: for
//! shorter jobs the fork would be most of guard's cost), outside the job's cgroup,
//! that holds the read end of a pipe whose write end only guard holds. When guard exits normally it
//! has already removed the cgroup and the sentinel just leaves. When guard is killed (SIGKILL, OOM
//! killer), the pipe reaches EOF, and the sentinel kills whatever is left in the job's cgroup and
//! removes it — so "the job dies with guard" holds for grandchildren too, not only for the child
//! that got the parent-death signal. Stale cgroups of a sentinel that died as well are removed by
//! the next guard run.

use crate::cgroup;
use nix::unistd::{ForkResult, fork};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// guard's handle on the sentinel: dropping it (or guard dying) releases the sentinel.
#[derive(Debug)]
pub struct Sentinel {
    pub pid: i32,
    _pipe: OwnedFd,
}

/// Close every descriptor except the ones in `keep` (the sentinel must not hold guard's pipes,
/// terminal or cgroup files open).
fn close_all_but(keep: &[i32]) {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in fds {
        if !keep.contains(&fd) {
            // SAFETY: closing a descriptor number; nothing in this process uses it afterwards.
            unsafe { libc::close(fd) };
        }
    }
}

fn sentinel_main(read_end: OwnedFd, dirs: Vec<PathBuf>, guard_pid: i32) -> ! {
    let keep = [read_end.as_raw_fd(), 2];
    close_all_but(&keep);
    // SAFETY: prctl(PR_SET_NAME) with a valid NUL-terminated string.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            c"guard-sentinel".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let mut f = std::fs::File::from(read_end);
    let mut buf = [0u8; 1];
    // Blocks until guard closes the pipe (it never writes): EOF means guard is gone.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    // Freezer leaf first (killing there thaws), then the memory leaf.
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
    // SAFETY: _exit ends the forked process without running guard's atexit handlers.
    unsafe { libc::_exit(0) }
}

/// Fork the sentinel for the job's cgroup directories. Must be called while guard is
/// single-threaded.
pub fn start(dirs: Vec<PathBuf>) -> Option<Sentinel> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    let guard_pid = std::process::id() as i32;
    // SAFETY: guard is single-threaded here, so the child may allocate and run ordinary code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(w);
            sentinel_main(r, dirs, guard_pid)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(r);
            Some(Sentinel {
                pid: child.as_raw(),
                _pipe: w,
            })
        }
        Err(e) => {
            log::warn!(
                "cannot start the cleanup sentinel ({e}); if guard is killed, the next run removes the cgroup"
            );
            None
        }
    }
}
