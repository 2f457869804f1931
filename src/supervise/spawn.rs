//! Starting COMMAND: fork, join the job's cgroup *in the child before exec* (so the first
//! instruction of COMMAND already runs under the cap), arm the parent-death signal, exec.
//! Exec failures map to 126/127; a failed cgroup join is reported separately through a pipe.

use nix::fcntl::OFlag;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Why COMMAND did not start.
#[derive(Debug)]
pub enum SpawnError {
    /// exec failed: ENOENT (127) or another error (126).
    Exec(io::Error),
    /// Writing the child's pid into the cgroup failed (errno).
    Attach(io::Error),
    /// fork or pipe failed.
    Os(io::Error),
}

/// Start `argv` with an empty signal mask, SIGKILL as parent-death signal, and after writing "0"
/// to each `attach` fd (`tasks`/`cgroup.procs` of the job's cgroups). Returns the child's pid.
/// `stdio`: where the job's stdout and stderr go instead of guard's (--quiet, or the tee that
/// keeps the output tail); duplicated here, so the caller closes its copies after the spawn.
/// `own_group`: the job leads a process group of its own (--pgroup).
pub fn spawn(
    argv: &[OsString],
    attach: &[BorrowedFd<'_>],
    stdio: (Option<&OwnedFd>, Option<&OwnedFd>),
    own_group: bool,
) -> Result<i32, SpawnError> {
    let (err_r, err_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError::Os(e.into()))?;
    // At most two hierarchies (v1 memory + freezer): a fixed array, nothing to allocate after fork.
    let mut attach_fds: [RawFd; 2] = [-1; 2];
    for (slot, fd) in attach_fds.iter_mut().zip(attach) {
        *slot = fd.as_raw_fd();
    }
    let err_fd = err_w.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let dup = |f: &OwnedFd| f.try_clone().map(std::process::Stdio::from);
    if let Some(out) = stdio.0 {
        cmd.stdout(dup(out).map_err(SpawnError::Os)?);
    }
    if let Some(err) = stdio.1 {
        cmd.stderr(dup(err).map_err(SpawnError::Os)?);
    }
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (sigprocmask, signal, prctl, getppid, write) on integers, a stack sigset and
    // static buffers; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // guard blocks the signals it reads from its signalfd; the job must start with an
            // empty mask and SIGPIPE at its default, as if guard were not there.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if own_group && libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // guard died between fork and prctl: do not run unsupervised.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            for fd in attach_fds.into_iter().filter(|fd| *fd >= 0) {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    let errno = *libc::__errno_location();
                    let bytes = errno.to_ne_bytes();
                    libc::write(err_fd, bytes.as_ptr().cast(), bytes.len());
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
            Ok(())
        });
    }
    let result = cmd.spawn();
    drop(err_w);
    match result {
        Ok(child) => Ok(child.id() as i32), // reaped by the supervisor's waitpid loop, not by std
        Err(e) => {
            let mut buf = [0u8; 4];
            let mut f = std::fs::File::from(err_r);
            if matches!(f.read(&mut buf), Ok(4)) {
                return Err(SpawnError::Attach(io::Error::from_raw_os_error(
                    i32::from_ne_bytes(buf),
                )));
            }
            Err(SpawnError::Exec(e))
        }
    }
}
