//! The terminal's foreground with `--pgroup`: COMMAND then leads a process group of its own, and
//! a group that is not the terminal's foreground is stopped by SIGTTIN when it reads the terminal
//! (`docker run -it`, an interactive shell). As tini -g and dumb-init do, the job's group takes
//! the foreground when it starts (in the child, before exec: see spawn.rs) and again each time
//! guard is continued in the foreground (the shell's `fg`), and guard takes it back when COMMAND
//! ends. guard blocks SIGTTOU, so it may change the foreground from the background.
//!
//! Without `--pgroup` nothing is needed: COMMAND shares guard's group, and so its foreground.

use std::os::fd::RawFd;

/// The descriptor (0, 1 or 2) of guard's controlling terminal when guard's process group holds
/// its foreground; None without a terminal or in the background.
pub fn foreground() -> Option<RawFd> {
    // SAFETY: getpgrp has no preconditions.
    let own = unsafe { libc::getpgrp() };
    (0..=2).find(|&fd| {
        // SAFETY: isatty and tcgetpgrp read the state of a descriptor number; no memory is
        // passed. tcgetpgrp fails (-1) on a terminal that is not guard's controlling one.
        unsafe { libc::isatty(fd) == 1 && libc::tcgetpgrp(fd) == own }
    })
}

/// Hand the terminal's foreground to process group `pgid` if guard's group holds it now (after
/// a continue in the foreground). Returns whether it was handed over.
pub fn give(tty: RawFd, pgid: i32) -> bool {
    // SAFETY: as in `foreground`; tcsetpgrp changes only the terminal's foreground group.
    unsafe {
        if libc::tcgetpgrp(tty) != libc::getpgrp() {
            return false;
        }
        libc::tcsetpgrp(tty, pgid) == 0
    }
}

/// Take the foreground back for guard's group if `pgid` (the job's group, COMMAND gone) still
/// holds it: the shell or the container's terminal finds it where it left it.
pub fn take_back(tty: RawFd, pgid: i32) {
    // SAFETY: as in `give`; SIGTTOU is blocked in guard, so the call is not stopped.
    unsafe {
        if libc::tcgetpgrp(tty) == pgid {
            libc::tcsetpgrp(tty, libc::getpgrp());
        }
    }
}
