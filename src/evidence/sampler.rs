//! The timeline's sampler for cgroup modes, built to cost next to nothing per tick: the cgroup's
//! usage file, its `cgroup.procs` and each member's `/proc/PID/statm` stay open and are re-read
//! with one `pread` each (no open/stat/close per tick), and the members' RSS is read on every
//! PROCS_EVERY-th tick only (the job total on every one). Measured with bench/sampler on this
//! machine (a 5-process job, 100 ms): opening, stat-ing and closing every file each tick cost guard
//! 0.25 % of a core; kept-open files 0.12 %; members every 5th tick brings it under 0.1 %.

use crate::cgroup::SampledFiles;
use crate::format::Escaped;
use crate::os::proc::{Proc, parse_statm_pages};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Members' RSS is read on every PROCS_EVERY-th sample (and on the first).
pub const PROCS_EVERY: u32 = 5;

pub struct Sampler {
    ticks: u32,
    usage: Option<File>,
    procs: Option<File>,
    proc: Proc,
    statm: HashMap<i32, File>,
    buf: Vec<u8>,
    /// The job's leaf (the directory of the sampled cgroup.procs).
    leaf: Option<PathBuf>,
    /// Escapees noticed since the last [`Sampler::take_escapees`].
    escaped: Vec<Escapee>,
}

/// A process of the job that left its cgroup, alive when noticed.
#[derive(Debug)]
pub struct Escapee {
    pub what: Escaped,
    /// Refers to that process even if its pid is reused (None: pidfd_open failed).
    pidfd: Option<OwnedFd>,
}

impl Escapee {
    /// Send `sig` to the escapee (through its pidfd: never to a process that reused its pid).
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(fd) = &self.pidfd {
            // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo and no flags.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            }
        }
    }
}

/// Read a small file from offset 0 into `buf` with one pread.
fn pread_all<'a>(f: &File, buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let mut n = 0;
    loop {
        if n == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
        // cgroup and proc files of this size come in one read; a short read means done.
        if n < buf.len() {
            break;
        }
    }
    Some(&buf[..n])
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

impl Sampler {
    /// Keeps `files` (the backend's usage file and member list) open; members' statm under `proc`.
    pub fn new(files: &SampledFiles, proc: &Proc) -> Sampler {
        Sampler {
            ticks: 0,
            usage: File::open(&files.usage).ok(),
            procs: File::open(&files.procs).ok(),
            proc: proc.clone(),
            statm: HashMap::new(),
            buf: vec![0u8; 4096],
            leaf: files.procs.parent().map(PathBuf::from),
            escaped: Vec::new(),
        }
    }

    /// The escapees noticed since the last call.
    pub fn take_escapees(&mut self) -> Vec<Escapee> {
        std::mem::take(&mut self.escaped)
    }

    /// Members no longer listed: an exited one is gone (its statm reads nothing, or zeros as a
    /// zombie); one still running that is not below the leaf has escaped.
    fn departed(&mut self, listed: &[i32]) {
        let gone: Vec<i32> = self
            .statm
            .keys()
            .filter(|p| !listed.contains(p))
            .copied()
            .collect();
        for pid in gone {
            let Some(f) = self.statm.remove(&pid) else {
                continue;
            };
            let running = pread_all(&f, &mut self.buf)
                .and_then(parse_statm_pages)
                .is_some_and(|pages| pages > 0);
            if !running {
                continue;
            }
            let below = self
                .leaf
                .as_ref()
                .is_some_and(|l| crate::cgroup::fs::procs_tree(l).contains(&pid));
            if !below {
                self.escaped.push(self.escapee(pid));
            }
        }
    }

    fn escapee(&self, pid: i32) -> Escapee {
        // SAFETY: pidfd_open takes a pid and flags; a non-negative result is a new descriptor
        // that we own from here on.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = libc::c_int::try_from(fd)
            .ok()
            .filter(|&fd| fd >= 0)
            // SAFETY: see above: a fresh descriptor, owned by nobody else.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        let read =
            |name: &str| std::fs::read_to_string(self.proc.path(pid, name)).unwrap_or_default();
        Escapee {
            what: Escaped {
                pid,
                comm: read("comm").trim().to_string(),
                cgroup: memory_cgroup(&read("cgroup")),
            },
            pidfd,
        }
    }

    /// The cgroup's usage, and each member's RSS on every PROCS_EVERY-th call.
    pub fn sample(&mut self) -> (Option<u64>, Vec<(i32, u64)>) {
        let usage = self
            .usage
            .as_ref()
            .and_then(|f| pread_all(f, &mut self.buf).and_then(parse_u64));
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks % PROCS_EVERY != 1 {
            return (usage, Vec::new());
        }
        self.members(usage)
    }

    /// The cgroup's usage and each member's RSS, now (for the last sample at a capture).
    pub fn sample_all(&mut self) -> (Option<u64>, Vec<(i32, u64)>) {
        let usage = self
            .usage
            .as_ref()
            .and_then(|f| pread_all(f, &mut self.buf).and_then(parse_u64));
        self.members(usage)
    }

    fn members(&mut self, usage: Option<u64>) -> (Option<u64>, Vec<(i32, u64)>) {
        let pids: Vec<i32> = match self
            .procs
            .as_ref()
            .and_then(|f| pread_all(f, &mut self.buf))
        {
            Some(b) => String::from_utf8_lossy(b)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect(),
            None => Vec::new(),
        };
        self.departed(&pids);
        let mut out = Vec::with_capacity(pids.len());
        for pid in pids {
            if !self.statm.contains_key(&pid) {
                match File::open(self.proc.path(pid, "statm")) {
                    Ok(f) => {
                        self.statm.insert(pid, f);
                    }
                    Err(_) => continue,
                }
            }
            let Some(f) = self.statm.get(&pid) else {
                continue;
            };
            let page = self.proc.page_size();
            let rss = pread_all(f, &mut self.buf)
                .and_then(parse_statm_pages)
                .map(|pages| pages * page);
            match rss {
                Some(r) => out.push((pid, r)),
                None => {
                    self.statm.remove(&pid);
                }
            }
        }
        (usage, out)
    }
}

/// The memory cgroup in a `/proc/PID/cgroup` text: v1's `N:memory:/path` line, else v2's `0::/path`.
fn memory_cgroup(text: &str) -> String {
    let path_of = |l: &str| l.splitn(3, ':').nth(2).map(str::to_string);
    text.lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "memory"))
        })
        .and_then(path_of)
        .or_else(|| {
            text.lines()
                .find(|l| l.starts_with("0::"))
                .and_then(path_of)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_a_fixture_cgroup_and_proc() {
        let cg = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        std::fs::write(cg.path().join("memory.current"), "12345\n").unwrap();
        std::fs::write(cg.path().join("cgroup.procs"), "10\n11\n").unwrap();
        for (pid, pages) in [(10, 3), (11, 5)] {
            std::fs::create_dir(proc.path().join(pid.to_string())).unwrap();
            std::fs::write(
                proc.path().join(format!("{pid}/statm")),
                format!("100 {pages} 1 1 0 1 0\n"),
            )
            .unwrap();
        }
        let files = SampledFiles {
            usage: cg.path().join("memory.current"),
            procs: cg.path().join("cgroup.procs"),
        };
        let proc = Proc::at(proc.path());
        let page = proc.page_size();
        let mut s = Sampler::new(&files, &proc);
        let (u, procs) = s.sample_all();
        assert_eq!(u, Some(12345));
        assert_eq!(procs, vec![(10, 3 * page), (11, 5 * page)]);
        // the same open files see new contents; a process that left is dropped
        std::fs::write(cg.path().join("memory.current"), "999\n").unwrap();
        std::fs::write(cg.path().join("cgroup.procs"), "11\n").unwrap();
        let (u, procs) = s.sample_all();
        assert_eq!(u, Some(999));
        assert_eq!(procs.len(), 1);
        assert_eq!(s.statm.len(), 1);
        // members on the first of every PROCS_EVERY ticks only
        let mut s = Sampler::new(&files, &proc);
        let with: Vec<bool> = (0..PROCS_EVERY * 2)
            .map(|_| !s.sample().1.is_empty())
            .collect();
        assert_eq!(with.iter().filter(|w| **w).count(), 2);
        assert!(with[0]);
    }
}
