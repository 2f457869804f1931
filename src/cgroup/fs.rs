//! Direct cgroupfs file I/O: one read or write per kernel file, errors that carry the path and the
//! value written, and parsers for the flat "key value" files (memory.events, memory.oom_control).
//!
//! We write cgroupfs directly instead of using cgroups-rs: cgroups-rs 0.5 creates groups in every
//! hierarchy and leaves created parents behind, has no v2 event support (its `notify_on_oom_v2` is
//! the v1 code) and pulls a large dependency tree (zbus). The files guard needs are few and simple.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A failed cgroupfs operation, with the path (and the value, for writes).
#[derive(Debug, thiserror::Error)]
pub enum CgError {
    #[error("cannot write '{data}' to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        data: String,
        source: io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot create cgroup {}: {source}", path.display())]
    Mkdir { path: PathBuf, source: io::Error },
    #[error("cannot remove cgroup {}: {source}", path.display())]
    Rmdir { path: PathBuf, source: io::Error },
    #[error("process {pid} exited")]
    Exited { pid: i32 },
    #[error("process {pid} did not stop within 2s (state {state})")]
    NotStopped { pid: i32, state: char },
    #[error("{0}")]
    Other(String),
}

impl CgError {
    /// The OS error behind this failure, when there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            CgError::Write { source, .. }
            | CgError::Read { source, .. }
            | CgError::Mkdir { source, .. }
            | CgError::Rmdir { source, .. } => source.raw_os_error(),
            CgError::Exited { .. } | CgError::NotStopped { .. } | CgError::Other(_) => None,
        }
    }
}

/// Read a whole (small) cgroupfs or procfs file.
pub fn read(path: &Path) -> Result<String, CgError> {
    fs::read_to_string(path).map_err(|source| CgError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Read a file holding one number (or "max", returned as None).
pub fn read_u64(path: &Path) -> Result<Option<u64>, CgError> {
    let s = read(path)?;
    let t = s.trim();
    if t == "max" {
        return Ok(None);
    }
    t.parse::<u64>().map(Some).map_err(|_| {
        CgError::Other(format!(
            "{}: expected a number, found '{t}'",
            path.display()
        ))
    })
}

/// Write one value to a cgroupfs file in a single write(2), as the kernel expects.
pub fn write(path: &Path, data: &str) -> Result<(), CgError> {
    let err = |source| CgError::Write {
        path: path.to_path_buf(),
        data: data.to_string(),
        source,
    };
    let mut f = fs::OpenOptions::new().write(true).open(path).map_err(err)?;
    f.write_all(data.as_bytes()).map_err(err)
}

/// Open a file for writing with O_CLOEXEC (used for `cgroup.procs`, written in the forked child).
pub fn open_write(path: &Path) -> Result<fs::File, CgError> {
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| CgError::Write {
            path: path.to_path_buf(),
            data: String::new(),
            source,
        })
}

/// Look up `key` in a flat keyed file ("key value" per line).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// Re-read an already open file from offset 0 (cgroup event files are re-read after each wake).
pub fn reread(file: &mut fs::File, buf: &mut String) -> io::Result<()> {
    use std::io::Seek;
    buf.clear();
    file.seek(io::SeekFrom::Start(0))?;
    file.read_to_string(buf)?;
    Ok(())
}

/// The pids listed in a `cgroup.procs` file; a vanished cgroup lists nothing.
pub fn procs(dir: &Path) -> Vec<i32> {
    match fs::read_to_string(dir.join("cgroup.procs")) {
        // A process outside guard's PID namespace is listed as 0: never a pid to signal (kill(0)
        // would signal guard's own process group).
        Ok(s) => s
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|&p: &i32| p > 0)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Cgroups below a job's leaf that guard follows at most (a job can nest them as root).
const MAX_SUBTREE: usize = 4096;

/// `dir` and every cgroup below it (child cgroups are subdirectories, on v1 and v2 alike),
/// deepest first, `dir` last; at most MAX_SUBTREE of them.
pub fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), false)];
    while let Some((d, expanded)) = stack.pop() {
        if expanded || out.len() + stack.len() >= MAX_SUBTREE {
            out.push(d);
            continue;
        }
        stack.push((d.clone(), true));
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((e.path(), false));
                }
            }
        }
    }
    out
}

/// The pids in `dir` and in every cgroup below it: a job that moved into a child cgroup of its
/// leaf is still the job.
pub fn procs_tree(dir: &Path) -> Vec<i32> {
    subtree(dir).iter().flat_map(|d| procs(d)).collect()
}

/// The contents of `file` (`tasks`, `cgroup.threads`) in `dir` and every cgroup below it.
pub fn read_tree(dir: &Path, file: &str) -> String {
    subtree(dir)
        .iter()
        .filter_map(|d| fs::read_to_string(d.join(file)).ok())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Remove `dir` and the cgroups below it, deepest first, each retried (see `rmdir_retry`).
pub fn rmdir_tree(dir: &Path, attempts: u32) -> Result<(), CgError> {
    subtree(dir)
        .iter()
        .try_for_each(|d| rmdir_retry(d, attempts))
}

/// [`rmdir_tree`], retrying each directory until `until` (at least once).
pub fn rmdir_tree_until(dir: &Path, until: std::time::Instant) -> Result<(), CgError> {
    subtree(dir).iter().try_for_each(|d| {
        let mut i = 0u32;
        loop {
            match fs::remove_dir(d) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(source) if std::time::Instant::now() >= until => {
                    return Err(CgError::Rmdir {
                        path: d.to_path_buf(),
                        source,
                    });
                }
                Err(_) => {}
            }
            // The dying tasks may need another round (a v1 freezer frozen again meanwhile).
            if i % 20 == 19 {
                super::kill_round(d);
            }
            std::thread::sleep(std::time::Duration::from_millis(if i < 10 {
                2
            } else {
                10
            }));
            i += 1;
        }
    })
}

/// Remove a cgroup directory, retrying while the kernel still counts exiting tasks (EBUSY).
/// A directory that is already gone is success.
pub fn rmdir_retry(dir: &Path, attempts: u32) -> Result<(), CgError> {
    let mut last = None;
    for i in 0..attempts.max(1) {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(if i < 10 {
            2
        } else {
            20
        }));
    }
    Err(CgError::Rmdir {
        path: dir.to_path_buf(),
        source: last.unwrap_or_else(|| io::Error::other("rmdir failed")),
    })
}

/// Create the cgroup directory `dir`; one that exists already is fine.
pub fn ensure_dir(dir: &Path) -> Result<(), CgError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgError::Mkdir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Move processes into the cgroup whose `cgroup.procs` is `procs_file`: each round writes every
/// pid `pending()` lists (one that exited meanwhile is skipped) until it lists none; a process
/// forked meanwhile is caught by the next round. False if some were still pending after `rounds`.
pub fn move_procs(
    procs_file: &Path,
    rounds: usize,
    mut pending: impl FnMut() -> Vec<i32>,
) -> Result<bool, CgError> {
    for _ in 0..rounds {
        let pids = pending();
        if pids.is_empty() {
            return Ok(true);
        }
        for pid in pids {
            match write(procs_file, &pid.to_string()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(false)
}

/// Create the cgroup directory `dir` and run `setup` on it; if setup fails the directory is
/// removed again, so a failed creation leaves nothing behind. A leaf's name holds its guard's
/// pid and PID namespace: one that exists already was left by a dead guard that had this pid
/// (pid reuse), so it is emptied and removed first.
pub fn create_leaf<T>(
    dir: PathBuf,
    setup: impl FnOnce(PathBuf) -> Result<T, CgError>,
) -> Result<T, CgError> {
    let mkdir = |dir: &Path| {
        fs::create_dir(dir).map_err(|source| CgError::Mkdir {
            path: dir.to_path_buf(),
            source,
        })
    };
    match mkdir(&dir) {
        Err(CgError::Mkdir { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
            log::info!(
                "{} was left by an earlier guard with this pid; removing it",
                dir.display()
            );
            super::kill_cgroup(&dir, std::time::Duration::from_secs(2));
            rmdir_tree(&dir, 50)?;
            mkdir(&dir)?;
        }
        other => other?,
    }
    setup(dir.clone()).inspect_err(|_| {
        let _ = rmdir_retry(&dir, 3);
    })
}

/// access(2) W_OK: true when this process may write `path` (false on a read-only mount, even as root).
pub fn writable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse() {
        let ev = "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(ev, "oom_kill"), Some(1));
        assert_eq!(keyed(ev, "high"), Some(12));
        assert_eq!(keyed(ev, "oom"), Some(1));
        assert_eq!(keyed(ev, "missing"), None);
        let oc = "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n";
        assert_eq!(keyed(oc, "oom_kill"), Some(4));
    }

    #[test]
    fn numbers_and_max() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("memory.max");
        fs::write(&p, "max\n").unwrap();
        assert_eq!(read_u64(&p).unwrap(), None);
        fs::write(&p, "67108864\n").unwrap();
        assert_eq!(read_u64(&p).unwrap(), Some(64 << 20));
        fs::write(&p, "junk\n").unwrap();
        assert!(read_u64(&p).is_err());
    }

    #[test]
    fn write_errors_name_path_and_value() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nope/memory.max");
        let e = write(&p, "123").unwrap_err().to_string();
        assert!(e.contains("'123'") && e.contains("nope/memory.max"), "{e}");
    }

    #[test]
    fn the_subtree_is_deepest_first() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a/b")).unwrap();
        fs::create_dir_all(d.path().join("c")).unwrap();
        fs::write(d.path().join("cgroup.procs"), "1\n").unwrap();
        fs::write(d.path().join("a/b/cgroup.procs"), "2\n3\n").unwrap();
        let t = subtree(d.path());
        assert_eq!(t.last().unwrap(), d.path());
        let pos = |p: &str| t.iter().position(|x| x == &d.path().join(p)).unwrap();
        assert!(pos("a/b") < pos("a"));
        let mut pids = procs_tree(d.path());
        pids.sort();
        assert_eq!(pids, [1, 2, 3]);
        fs::remove_file(d.path().join("cgroup.procs")).unwrap();
        fs::remove_file(d.path().join("a/b/cgroup.procs")).unwrap();
        rmdir_tree(d.path(), 2).unwrap();
        assert!(!d.path().exists());
    }

    #[test]
    fn rmdir_of_missing_dir_is_ok() {
        let d = tempfile::tempdir().unwrap();
        rmdir_retry(&d.path().join("gone"), 3).unwrap();
    }
}
