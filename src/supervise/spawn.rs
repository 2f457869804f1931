//! Starting COMMAND: a vfork-style child (shares guard's memory until it execs), which joins the
//! job's cgroup *before exec* (so the first instruction of COMMAND already runs under the cap),
//! arms the parent-death signal and execs with PATH search. Exec failures map to 126/127; a failed
//! cgroup join is reported separately.
//!
//! Why not `std::process::Command`: with a `pre_exec` hook std forks, and a fork copies guard's
//! page tables, makes every page guard writes next a copy-on-write fault, and the child's exec then
//! tears the copy down: 0.2 ms of a 2.7 ms run of `guard -- /bin/true` here. `clone(CLONE_VM |
//! CLONE_VFORK)` is what `posix_spawn` does, but `posix_spawn` cannot write to the cgroup files
//! or set the parent-death signal in the child.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

/// Whether the job leads a process group of its own (--pgroup), and the terminal whose
/// foreground its group then takes (guard's own terminal, when guard's group holds its
/// foreground).
#[derive(Debug, Clone, Copy, Default)]
pub struct Group {
    pub own: bool,
    pub tty: Option<RawFd>,
}

/// Why COMMAND did not start.
#[derive(Debug)]
pub enum SpawnError {
    /// exec failed: ENOENT (127) or another error (126).
    Exec(io::Error),
    /// Writing the child's pid into the cgroup failed (errno).
    Attach(io::Error),
    /// clone or another system call before exec failed.
    Os(io::Error),
}

/// Where the child stopped, written by the child into memory it shares with guard.
const STAGE_SETUP: i32 = 1;
const STAGE_ATTACH: i32 = 2;
const STAGE_EXEC: i32 = 3;

/// Everything the child reads, prepared by guard before the clone: the child may not allocate
/// (it runs on guard's memory while guard's thread is suspended, and malloc's locks may be held
/// by another thread of guard).
struct Child {
    file: CString,
    argv: Vec<*const libc::c_char>,
    /// The job's environment when guard changes it (the Python hook); else guard's own.
    envp: Option<Vec<*const libc::c_char>>,
    attach: [RawFd; 2],
    stdout: RawFd,
    stderr: RawFd,
    own_group: bool,
    /// The dispositions guard changed, as guard inherited them (see os::sigstate).
    restore: [(libc::c_int, libc::sighandler_t); 4],
    /// The blocked-signal mask guard inherited.
    mask: libc::sigset_t,
    /// --pgroup with guard in the terminal's foreground: the terminal to hand to the job's group.
    tty: RawFd,
    parent: libc::pid_t,
    stage: AtomicI32,
    errno: AtomicI32,
}

/// Stack for the child: execvp needs a PATH_MAX buffer for its candidates and, to run a script
/// without `#!` through /bin/sh, a copy of the argument pointers; the rest is a few frames.
const CHILD_STACK: usize = 64 * 1024;

/// Start `argv` with the signal dispositions and mask guard was started with, SIGKILL as
/// parent-death signal, and after writing "0"
/// to each `attach` fd (`tasks`/`cgroup.procs` of the job's cgroups). Returns the child's pid.
/// `stdio`: where the job's stdout and stderr go instead of guard's (--quiet, or the tee that
/// keeps the output tail); the caller closes its copies after the spawn.
/// `group`: whether the job leads a process group of its own (--pgroup), and the terminal whose
/// foreground it then takes. `env`: the job's whole environment, when it is not guard's own.
pub fn spawn(
    argv: &[OsString],
    attach: &[BorrowedFd<'_>],
    stdio: (Option<&OwnedFd>, Option<&OwnedFd>),
    group: Group,
    env: Option<&[CString]>,
) -> Result<i32, SpawnError> {
    let cstr = |a: &OsString| {
        CString::new(a.as_bytes()).map_err(|_| {
            SpawnError::Exec(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an argument contains a NUL byte",
            ))
        })
    };
    let args = argv.iter().map(cstr).collect::<Result<Vec<_>, _>>()?;
    let Some(first) = args.first() else {
        return Err(SpawnError::Exec(io::Error::from_raw_os_error(libc::ENOENT)));
    };
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // One cgroup file today (v1 memory `tasks`, v2 `cgroup.procs`); room for a second hierarchy.
    let mut attach_fds: [RawFd; 2] = [-1; 2];
    for (slot, fd) in attach_fds.iter_mut().zip(attach) {
        *slot = fd.as_raw_fd();
    }
    let envp = env.map(|vars| {
        let mut p: Vec<*const libc::c_char> = vars.iter().map(|v| v.as_ptr()).collect();
        p.push(std::ptr::null());
        p
    });
    let child = Child {
        file: first.clone(),
        argv: ptrs,
        envp,
        attach: attach_fds,
        stdout: stdio.0.map_or(-1, |f| f.as_raw_fd()),
        stderr: stdio.1.map_or(-1, |f| f.as_raw_fd()),
        own_group: group.own,
        restore: {
            let inherited = crate::os::sigstate::inherited();
            crate::os::sigstate::RESTORED.map(|sig| (sig, inherited.disposition(sig)))
        },
        mask: crate::os::sigstate::inherited().mask,
        tty: group.tty.unwrap_or(-1),
        parent: std::process::id() as libc::pid_t,
        stage: AtomicI32::new(0),
        errno: AtomicI32::new(0),
    };
    let stack_len = CHILD_STACK + std::mem::size_of::<usize>() * (argv.len() + 3);
    // Uninitialised on purpose: zeroing would touch (fault in) every page, and the child uses
    // only the top few.
    let mut stack: Vec<u8> = Vec::with_capacity(stack_len);
    // The stack grows down: pass its (16-byte aligned) top.
    let top = {
        let end = stack.as_mut_ptr() as usize + stack_len;
        (end & !15) as *mut libc::c_void
    };

    // No signal handler may run in the child while it shares guard's memory: block everything
    // around the clone (the child sets its own mask before exec), as posix_spawn does.
    let mut all: libc::sigset_t = unsafe_zeroed_sigset();
    let mut old: libc::sigset_t = unsafe_zeroed_sigset();
    // SAFETY: sigfillset and pthread_sigmask only write the sigsets passed, which live on this
    // stack frame.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: `child_main` only makes async-signal-safe system calls on data prepared above, which
    // outlives the child's use of it: with CLONE_VFORK this thread is suspended until the child
    // has exec'd or exited, and `child`, `stack` and `args` are dropped only after that.
    let pid = unsafe {
        libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of!(child) as *mut libc::c_void,
        )
    };
    let clone_err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    drop(stack);
    if pid < 0 {
        return Err(SpawnError::Os(clone_err));
    }
    let stage = child.stage.load(Ordering::Acquire);
    if stage == 0 {
        return Ok(pid); // exec'd: the supervisor's waitpid loop reaps it
    }
    // The child exited before exec: reap it here, it never became the job.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    let err = io::Error::from_raw_os_error(child.errno.load(Ordering::Acquire));
    Err(match stage {
        STAGE_ATTACH => SpawnError::Attach(err),
        STAGE_EXEC => SpawnError::Exec(err),
        _ => SpawnError::Os(err),
    })
}

fn unsafe_zeroed_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all-zero is a valid (empty) set.
    unsafe { std::mem::zeroed() }
}

/// The child between clone and exec. Async-signal-safe system calls only; nothing allocates.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the `Child` owned by the suspended parent frame (see `spawn`).
    let c = unsafe { &*(arg as *const Child) };
    let fail = |stage: i32| -> libc::c_int {
        // SAFETY: reads this thread's errno slot.
        let errno = unsafe { *libc::__errno_location() };
        c.errno.store(errno, Ordering::Release);
        c.stage.store(stage, Ordering::Release);
        // SAFETY: _exit ends the child without running guard's atexit handlers or destructors.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: plain system calls on integers, a stack sigset and the prepared C strings.
    unsafe {
        // The dispositions guard changed (SIGPIPE ignored, SIGCHLD taken back) go back to what
        // guard inherited: the job starts as if guard were not there (exec keeps SIG_IGN).
        for (sig, handler) in c.restore {
            libc::signal(sig, handler);
        }
        if c.own_group && libc::setpgid(0, 0) != 0 {
            return fail(STAGE_SETUP);
        }
        // --pgroup at a terminal: the job's group takes the foreground, or a job that reads the
        // terminal is stopped by SIGTTIN. Every signal is still blocked here, so the kernel's
        // SIGTTOU to a background group's tcsetpgrp is not delivered; failure only means no
        // terminal to hand over.
        if c.own_group && c.tty >= 0 {
            libc::tcsetpgrp(c.tty, libc::getpid());
        }
        // guard blocks the signals it reads from its signalfd; the job starts with the mask
        // guard was started with.
        if libc::sigprocmask(libc::SIG_SETMASK, &c.mask, std::ptr::null_mut()) != 0 {
            return fail(STAGE_SETUP);
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return fail(STAGE_SETUP);
        }
        // guard died between clone and prctl: do not run unsupervised.
        if libc::getppid() != c.parent {
            *libc::__errno_location() = libc::ESRCH;
            return fail(STAGE_SETUP);
        }
        // dup2 clears close-on-exec on the copy; the originals close at exec.
        for (from, to) in [(c.stdout, 1), (c.stderr, 2)] {
            if from >= 0 && libc::dup2(from, to) < 0 {
                return fail(STAGE_SETUP);
            }
        }
        for fd in c.attach.into_iter().filter(|fd| *fd >= 0) {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return fail(STAGE_ATTACH);
            }
        }
        match &c.envp {
            Some(envp) => libc::execvpe(c.file.as_ptr(), c.argv.as_ptr(), envp.as_ptr()),
            None => libc::execvp(c.file.as_ptr(), c.argv.as_ptr()),
        };
    }
    fail(STAGE_EXEC)
}
