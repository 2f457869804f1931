//! `guard held` and `guard kill NAME|PID`: the holds the register lists
//! ([`crate::supervise::register`]), and ending one now by sending the holding guard SIGTERM
//! through a pidfd, with a value that says it came from `guard kill`.

use crate::supervise::register::{Held, HeldError, KILL_VALUE, alive, live};
use nix::errno::Errno;
use std::fmt::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long `guard kill` waits for the guard it signalled to end the hold.
const KILL_ACK: Duration = Duration::from_secs(10);

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

/// `guard held [--json]`
pub fn held(a: &crate::config::cli::HeldArgs) -> i32 {
    let held = match live() {
        Ok(h) => h,
        Err(e) => {
            super::error_line(&e);
            return crate::config::exit::GUARD_FAILED;
        }
    };
    if a.json {
        return super::print_json(&held);
    }
    if held.is_empty() {
        eprintln!("guard: no job is held now (by this user's guards)");
        return 0;
    }
    print!("{}", text(&held));
    0
}

/// `guard kill NAME|PID`: what was done, or one error line and 125.
pub fn kill(target: &str) -> i32 {
    match kill_cmd(target) {
        Ok(said) => {
            println!("{said}");
            0
        }
        Err(e) => {
            super::error_line(&e);
            crate::config::exit::GUARD_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::register::tests::held;

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
