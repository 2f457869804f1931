//! cgroup v1 backend: a child of guard's own memory cgroup with `memory.limit_in_bytes` (and
//! `memory.memsw.limit_in_bytes` when swap accounting exists), an OOM eventfd registered through
//! `cgroup.event_control`, and the kernel's own `oom_kill` counter as the verdict.

use super::fs::{self as cgfs, CgError};
use super::{Limits, MemoryVerdict};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// A job cgroup on the v1 memory hierarchy.
#[derive(Debug)]
pub struct V1Cgroup {
    pub dir: PathBuf,
    procs: File,
    /// eventfd that fires when the cgroup hits its limit (OOM). Kept with the control file it
    /// watches: closing that file would unregister the event.
    oom_event: Option<(EventFd, File)>,
    pub swap_limited: bool,
}

impl V1Cgroup {
    /// Create `<base>/<leaf>` and apply the limits. On error nothing is left behind.
    pub fn create(base: &Path, leaf: &str, limits: &Limits) -> Result<V1Cgroup, CgError> {
        let dir = base.join(leaf);
        cgfs::create_leaf(dir, |d| Self::setup(d, limits))
    }

    fn setup(dir: PathBuf, limits: &Limits) -> Result<V1Cgroup, CgError> {
        let mut swap_limited = false;
        if let Some(mem) = limits.memory {
            cgfs::write(&dir.join("memory.limit_in_bytes"), &mem.to_string())?;
            // memsw counts memory + swap and must be >= the memory limit: write it second.
            // The file is missing when the kernel has no swap accounting (swapaccount=0).
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            match cgfs::write(&memsw, &mem.saturating_add(limits.swap).to_string()) {
                Ok(()) => swap_limited = true,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        // The child joins by writing "0" to `tasks`, not `cgroup.procs`: it is single-threaded
        // between fork and exec, so moving the thread moves the process, and the kernel skips
        // the global threadgroup lock (a synchronize_rcu, ~1-2 ms) when a thread moves itself.
        let procs = cgfs::open_write(&dir.join("tasks"))?;
        Ok(V1Cgroup {
            dir,
            procs,
            oom_event: None,
            swap_limited,
        })
    }

    /// Register the OOM eventfd. Safe to do after the job started: registering on a cgroup that
    /// is already at its limit signals the eventfd at once.
    pub fn arm_events(&mut self) {
        match Self::register_oom_event(&self.dir) {
            Ok(ev) => self.oom_event = Some(ev),
            Err(e) => log::debug!(
                "no OOM eventfd ({e}); the exit status check still reads memory.oom_control"
            ),
        }
    }

    fn register_oom_event(dir: &Path) -> Result<(EventFd, File), CgError> {
        let ctl_path = dir.join("memory.oom_control");
        let ctl = File::open(&ctl_path).map_err(|source| CgError::Read {
            path: ctl_path,
            source,
        })?;
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| CgError::Other(format!("eventfd: {e}")))?;
        let line = format!("{} {}", efd.as_fd().as_raw_fd(), ctl.as_raw_fd());
        cgfs::write(&dir.join("cgroup.event_control"), &line)?;
        Ok((efd, ctl))
    }

    pub fn procs_fd(&self) -> BorrowedFd<'_> {
        self.procs.as_fd()
    }

    pub fn event_fd(&self) -> Option<BorrowedFd<'_>> {
        self.oom_event.as_ref().map(|(e, _)| e.as_fd())
    }

    /// Consume a pending eventfd notification.
    pub fn drain_event(&self) {
        if let Some((e, _)) = &self.oom_event {
            let _ = e.read();
        }
    }

    /// The kernel's verdict: did the OOM killer act inside this cgroup?
    pub fn verdict(&self) -> MemoryVerdict {
        verdict_at(&self.dir)
    }

    pub fn usage(&self) -> Option<u64> {
        cgfs::read_u64(&self.dir.join("memory.usage_in_bytes"))
            .ok()
            .flatten()
    }

    pub fn peak(&self) -> Option<u64> {
        cgfs::read_u64(&self.dir.join("memory.max_usage_in_bytes"))
            .ok()
            .flatten()
    }
}

/// The verdict from `memory.oom_control` of the v1 cgroup `dir`.
pub fn verdict_at(dir: &Path) -> MemoryVerdict {
    let oc = cgfs::read(&dir.join("memory.oom_control")).unwrap_or_default();
    let under_oom = cgfs::keyed(&oc, "under_oom") == Some(1);
    match cgfs::keyed(&oc, "oom_kill") {
        Some(n) => MemoryVerdict {
            oom_kills: n,
            under_oom,
        },
        // Kernels before 4.13 have no oom_kill counter: a task waiting in OOM is the only
        // evidence the cgroup itself offers.
        None => MemoryVerdict {
            oom_kills: 0,
            under_oom,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_reads_oom_control() {
        let d = tempfile::tempdir().unwrap();
        let oc = d.path().join("memory.oom_control");
        std::fs::write(&oc, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        assert!(!verdict_at(d.path()).killed());
        std::fs::write(&oc, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert_eq!(
            verdict_at(d.path()),
            MemoryVerdict {
                oom_kills: 2,
                under_oom: false
            }
        );
        // pre-4.13 kernel, task held at the limit
        std::fs::write(&oc, "oom_kill_disable 1\nunder_oom 1\n").unwrap();
        assert!(verdict_at(d.path()).killed());
        // a cgroup that vanished says nothing happened
        assert!(!verdict_at(&d.path().join("gone")).killed());
    }
}
