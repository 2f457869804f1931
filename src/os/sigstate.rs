//! The signal state guard was started with — which signals were ignored, which were blocked —
//! recorded before guard changes anything, so that COMMAND starts with exactly that state, as it
//! would without guard (tini does the same): `nohup guard ...` leaves the job immune to hangups,
//! a shell's background job keeps SIGINT ignored, and `yes | :` ends the same way under guard.
//!
//! guard itself changes two dispositions: SIGPIPE is ignored (a closed reader is an EPIPE, not
//! guard's death) and SIGCHLD is set to its default when it was inherited ignored (the kernel
//! would otherwise reap guard's children before guard could read their status). The child puts
//! back what it inherited for those (and for SIGSEGV and SIGBUS, in case a library of guard's
//! caught them) and the inherited mask, between clone and exec.

use std::sync::OnceLock;

/// The signals whose disposition the child puts back before exec.
pub const RESTORED: [libc::c_int; 4] = [libc::SIGPIPE, libc::SIGCHLD, libc::SIGSEGV, libc::SIGBUS];

/// What guard inherited.
#[derive(Clone, Copy)]
pub struct Inherited {
    /// Bit N-1 set: signal N (1..=64) was ignored (SIG_IGN).
    ignored: u64,
    /// The blocked-signal mask.
    pub mask: libc::sigset_t,
}

static INHERITED: OnceLock<Inherited> = OnceLock::new();

/// Record the inherited state; the first call wins. Call it first thing, before any disposition
/// or mask changes; later calls (and a process that never called it) read the state then.
pub fn record() -> &'static Inherited {
    INHERITED.get_or_init(read)
}

/// The state guard started with (read now if it was never recorded).
pub fn inherited() -> &'static Inherited {
    record()
}

/// Whether guard was started with `signo` ignored.
pub fn was_ignored(signo: i32) -> bool {
    inherited().ignored(signo)
}

impl Inherited {
    /// Whether `signo` was ignored.
    pub fn ignored(&self, signo: i32) -> bool {
        (1..=64).contains(&signo) && self.ignored & (1u64 << (signo - 1)) != 0
    }

    /// The disposition `signo` had: SIG_IGN or SIG_DFL (a handler does not survive exec anyway).
    pub fn disposition(&self, signo: i32) -> libc::sighandler_t {
        if self.ignored(signo) {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        }
    }
}

fn read() -> Inherited {
    let mut ignored = 0u64;
    for signo in 1..=64 {
        // SAFETY: sigaction with a null new action only reads the disposition into `old`, a
        // zeroed plain-data struct on this stack frame.
        let old = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signo, std::ptr::null(), &mut old) != 0 {
                continue; // not a signal on this system
            }
            old
        };
        if old.sa_sigaction == libc::SIG_IGN {
            ignored |= 1u64 << (signo - 1);
        }
    }
    // SAFETY: sigset_t is plain data; pthread_sigmask with a null new set only writes `mask`.
    let mask = unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        mask
    };
    Inherited { ignored, mask }
}

/// Take SIGCHLD back to its default when guard inherited it ignored: with SIGCHLD ignored the
/// kernel reaps children on its own, and guard would never learn how COMMAND ended.
pub fn own_sigchld() {
    if was_ignored(libc::SIGCHLD) {
        // SAFETY: SIG_DFL is a valid disposition; set at start-up, before any thread exists.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_bits_map_to_signal_numbers() {
        // SAFETY: sigset_t is plain data; an empty set is all zeroes after sigemptyset.
        let mask = unsafe {
            let mut m: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut m);
            m
        };
        let s = Inherited {
            ignored: 1 << (libc::SIGPIPE - 1) | 1 << (libc::SIGHUP - 1),
            mask,
        };
        assert!(s.ignored(libc::SIGPIPE) && s.ignored(libc::SIGHUP));
        assert!(!s.ignored(libc::SIGTERM) && !s.ignored(0) && !s.ignored(65));
        assert_eq!(s.disposition(libc::SIGPIPE), libc::SIG_IGN);
        assert_eq!(s.disposition(libc::SIGTERM), libc::SIG_DFL);
    }
}
