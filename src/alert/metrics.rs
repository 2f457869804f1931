//! `--metrics-file PATH`: the job's outcome in the node_exporter textfile format, written
//! atomically (a temporary file in the same directory, then rename) under an exclusive lock on
//! `PATH.lock`, so several jobs can share one file: each run replaces its own job's series and
//! keeps every other job's. `guard_job_memory_kills_total` and
//! `guard_job_last_success_timestamp_seconds` are carried over from the previous file.
//!
//! The one label is `guard_job` (the job's --name). Not `job`: Prometheus sets `job` itself to
//! the scrape job (node_exporter's), so a `job` of ours would arrive as `exported_job`; and no
//! `host`: the scrape's `instance` names the machine already (naming practice: a label that
//! repeats the target's identity is left to the target labels). A file written with the old
//! `job`/`host` labels is read and rewritten with `guard_job`.

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One run's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub job: String,
    pub started_unix: f64,
    pub duration_s: f64,
    pub exit_code: i32,
    pub peak_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
    /// The event the run ended with (None: it succeeded).
    pub ending: Option<crate::format::EventKind>,
    /// `guard drill`'s run: it writes the drill's series, never the job's.
    pub drill: bool,
}

const METRICS: &[(&str, &str, &str)] = &[
    (
        "guard_job_last_run_timestamp_seconds",
        "gauge",
        "When the job's last run under guard started (Unix time).",
    ),
    (
        "guard_job_last_exit_code",
        "gauge",
        "guard's exit status for the job's last run (137: killed for exceeding its memory limit).",
    ),
    (
        "guard_job_duration_seconds",
        "gauge",
        "How long the job's last run took.",
    ),
    (
        "guard_job_peak_memory_bytes",
        "gauge",
        "The job's peak memory in its last run (cgroup peak, or sampled RSS in poll mode).",
    ),
    (
        "guard_job_memory_limit_bytes",
        "gauge",
        "The job's memory limit in its last run.",
    ),
    (
        "guard_job_memory_kills_total",
        "counter",
        "Runs guard killed for exceeding the memory limit.",
    ),
    (
        "guard_job_last_success_timestamp_seconds",
        "gauge",
        "When the job's last successful run (exit status 0) under guard ended (Unix time).",
    ),
    (
        "guard_drill_last_run_timestamp_seconds",
        "gauge",
        "When guard drill last rehearsed the job's failure path (Unix time).",
    ),
    (
        "guard_drill_last_success_timestamp_seconds",
        "gauge",
        "When guard drill last passed every check for the job (Unix time).",
    ),
];

/// The label naming the job.
const LABEL: &str = "guard_job";

/// `name{guard_job=".."}` → value, for every series in a file this module wrote.
type Series = BTreeMap<(String, String), String>;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parse the series lines of a file written by `render` (comments and foreign lines skipped).
fn parse(text: &str) -> Series {
    let mut s = Series::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let mut job = None;
        let mut legacy_job = None;
        // labels: guard_job="..." (or, written by guard before 0.2, job="...",host="..."),
        // values escaped, no unescaped quotes inside
        let mut rest = labels;
        while let Some((k, after)) = rest.split_once("=\"") {
            let mut end = None;
            let bytes = after.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if bytes[i] == b'"' {
                    end = Some(i);
                    break;
                }
                i += 1;
            }
            let Some(e) = end else { break };
            let v = unescape(&after[..e]);
            match k.trim_start_matches(',') {
                LABEL => job = Some(v),
                "job" => legacy_job = Some(v),
                _ => {}
            }
            rest = &after[e + 1..];
        }
        if let Some(j) = job.or(legacy_job) {
            s.insert((name.to_string(), j), value.trim().to_string());
        }
    }
    s
}

fn render(s: &Series) -> String {
    let mut o = String::new();
    for (name, ty, help) in METRICS {
        let rows: Vec<_> = s.iter().filter(|((n, _), _)| n == name).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {ty}");
        for ((_, job), v) in rows {
            let _ = writeln!(o, "{name}{{{LABEL}=\"{}\"}} {v}", escape(job));
        }
    }
    o
}

/// Update `s` with this run.
fn update(s: &mut Series, r: &Outcome) {
    let key = |n: &str| (n.to_string(), r.job.clone());
    if r.drill {
        s.insert(
            key("guard_drill_last_run_timestamp_seconds"),
            format!("{:.3}", r.started_unix),
        );
        return;
    }
    let kills: u64 = s
        .get(&key("guard_job_memory_kills_total"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + u64::from(r.ending == Some(crate::format::EventKind::MemoryLimit));
    s.insert(
        key("guard_job_last_run_timestamp_seconds"),
        format!("{:.3}", r.started_unix),
    );
    s.insert(key("guard_job_last_exit_code"), r.exit_code.to_string());
    s.insert(
        key("guard_job_duration_seconds"),
        format!("{:.3}", r.duration_s),
    );
    match r.peak_bytes {
        Some(p) => s.insert(key("guard_job_peak_memory_bytes"), p.to_string()),
        None => s.remove(&key("guard_job_peak_memory_bytes")),
    };
    match r.limit_bytes {
        Some(l) => s.insert(key("guard_job_memory_limit_bytes"), l.to_string()),
        None => s.remove(&key("guard_job_memory_limit_bytes")),
    };
    s.insert(key("guard_job_memory_kills_total"), kills.to_string());
    if r.exit_code == 0 {
        s.insert(
            key("guard_job_last_success_timestamp_seconds"),
            format!("{:.3}", r.started_unix + r.duration_s),
        );
    }
}

/// Why the metrics file cannot be written (one warning line; the job's result is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("the directory {} does not exist", .0.display())]
    NoDir(PathBuf),
    #[error("{} names no file (give the file's path, for example DIR/guard.prom)", .0.display())]
    NoName(PathBuf),
    #[error("the directory {} is a symlink, which whoever owns it could point anywhere; give its real path", .0.display())]
    Symlink(PathBuf),
    #[error(
        "the directory {} is owned by uid {uid}, who could redirect guard's writes there \
         (make it root's, or guard's user's: node_exporter only reads it)",
        dir.display()
    )]
    Owner { dir: PathBuf, uid: u32 },
    #[error(
        "the directory {} may be written by other users (mode {mode:o}, not sticky), who could \
         redirect guard's writes there (chmod go-w it)",
        dir.display()
    )]
    Writable { dir: PathBuf, mode: u32 },
    #[error("{} is not writable: {}", dir.display(), errno.desc())]
    NotWritable {
        dir: PathBuf,
        errno: nix::errno::Errno,
    },
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not guard's lock file ({why}); remove it", path.display())]
    ForeignLock { path: PathBuf, why: String },
    #[error("cannot lock {}: {}", path.display(), errno.desc())]
    Lock {
        path: PathBuf,
        errno: nix::errno::Errno,
    },
    #[error(
        "{} stayed locked by another process for {} s; this run's metrics were dropped",
        path.display(),
        LOCK_WAIT.as_secs()
    )]
    LockTimeout { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The longest guard waits for another guard's lock (a rewrite takes milliseconds).
pub const LOCK_WAIT: Duration = Duration::from_secs(5);
/// The most of an existing metrics file guard reads (its own series take ~100 bytes each: this
/// is ~80,000 of them); past it the rest is dropped, and said.
pub const MAX_READ: u64 = 8 << 20;

/// The metrics file's directory, opened once without following a symlink and checked the way
/// the evidence directory is: owned by root or guard's user, not writable by others unless
/// sticky. Every file in it is reached through this descriptor, never through a symlink.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    dir: OwnedFd,
    name: OsString,
}

/// What a rewrite had to leave out of the file it found (said once, by the caller).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Lines that are not UTF-8 (they are not guard's; everything else was kept).
    pub unreadable_lines: usize,
    /// The file was larger than MAX_READ: bytes not read.
    pub unread_bytes: u64,
}

impl Dropped {
    /// One sentence for the warning, or None when nothing was dropped.
    pub fn describe(&self, path: &Path) -> Option<String> {
        let mut parts = Vec::new();
        if self.unreadable_lines > 0 {
            parts.push(format!(
                "{} line(s) that are not UTF-8 were dropped",
                self.unreadable_lines
            ));
        }
        if self.unread_bytes > 0 {
            parts.push(format!(
                "only its first {} were read ({} more dropped)",
                crate::config::units::format_size(MAX_READ),
                crate::config::units::format_size(self.unread_bytes)
            ));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "{} was rewritten with the series guard could read: {}",
                path.display(),
                parts.join("; ")
            )
        })
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl MetricsFile {
    /// Open and check the directory of `path` (nothing is created).
    pub fn open(path: &Path) -> Result<MetricsFile, MetricsError> {
        let name = match path.file_name() {
            Some(n) if !path.as_os_str().as_bytes().ends_with(b"/") => n.to_os_string(),
            _ => return Err(MetricsError::NoName(path.to_path_buf())),
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let shown = || dir.to_path_buf();
        let fd = nix::fcntl::open(dir, DIR_FLAGS, Mode::empty()).map_err(|errno| match errno {
            Errno::ENOENT => MetricsError::NoDir(shown()),
            Errno::ELOOP => MetricsError::Symlink(shown()),
            Errno::ENOTDIR if is_symlink(dir) => MetricsError::Symlink(shown()),
            Errno::ENOTDIR => MetricsError::NoDir(shown()),
            errno => MetricsError::Open {
                path: shown(),
                source: errno.into(),
            },
        })?;
        let st = fstat(&fd).map_err(|errno| MetricsError::Open {
            path: shown(),
            source: errno.into(),
        })?;
        let euid = nix::unistd::geteuid().as_raw();
        if st.st_uid != 0 && st.st_uid != euid {
            return Err(MetricsError::Owner {
                dir: shown(),
                uid: st.st_uid,
            });
        }
        let perms = st.st_mode & 0o7777;
        if perms & 0o022 != 0 && perms & 0o1000 == 0 {
            return Err(MetricsError::Writable {
                dir: shown(),
                mode: perms,
            });
        }
        let wx = nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
        nix::unistd::faccessat(&fd, ".", wx, nix::fcntl::AtFlags::empty()).map_err(|errno| {
            MetricsError::NotWritable {
                dir: shown(),
                errno,
            }
        })?;
        Ok(MetricsFile {
            path: path.to_path_buf(),
            dir: fd,
            name,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `NAME` + `suffix`, in the directory.
    fn sibling(&self, suffix: &str) -> OsString {
        let mut n = self.name.clone();
        n.push(suffix);
        n
    }

    fn shown(&self, name: &OsStr) -> PathBuf {
        self.path.with_file_name(name)
    }

    /// Write this run: lock, read, update, write a temporary file, rename.
    pub fn write(&self, r: &Outcome) -> Result<Dropped, MetricsError> {
        self.rewrite(|s| update(s, r))
    }

    /// `guard drill` passed every check for `job` at `when` (Unix time).
    pub fn drill_passed(&self, job: &str, when: f64) -> Result<Dropped, MetricsError> {
        self.rewrite(|s| {
            s.insert(
                (
                    "guard_drill_last_success_timestamp_seconds".into(),
                    job.to_string(),
                ),
                format!("{when:.3}"),
            );
        })
    }

    /// The value of `metric` for `job` in the file, if it has one.
    pub fn value(&self, metric: &str, job: &str) -> Option<String> {
        let (text, _) = self.read().ok()?;
        parse(&text).remove(&(metric.to_string(), job.to_string()))
    }

    /// The file's series lines as text (at most MAX_READ bytes; lines that are not UTF-8
    /// dropped), never through a symlink, never blocking on a FIFO: anything but a regular
    /// file reads as empty (the rename replaces it).
    fn read(&self) -> Result<(String, Dropped), MetricsError> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(&self.dir, self.name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENXIO) => {
                return Ok((String::new(), Dropped::default()));
            }
            Err(e) => {
                return Err(MetricsError::Read {
                    path: self.path.clone(),
                    source: e.into(),
                });
            }
        };
        let read_err = |source| MetricsError::Read {
            path: self.path.clone(),
            source,
        };
        let st = fstat(&fd).map_err(|e| read_err(e.into()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok((String::new(), Dropped::default()));
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_READ)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        let mut dropped = Dropped {
            unread_bytes: u64::try_from(st.st_size)
                .unwrap_or(0)
                .saturating_sub(bytes.len() as u64),
            ..Dropped::default()
        };
        if dropped.unread_bytes > 0 {
            // The last line read may be cut short.
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            bytes.truncate(keep);
        }
        let mut text = String::with_capacity(bytes.len());
        for line in bytes.split(|&b| b == b'\n') {
            match std::str::from_utf8(line) {
                Ok(l) => {
                    text.push_str(l);
                    text.push('\n');
                }
                Err(_) => dropped.unreadable_lines += 1,
            }
        }
        Ok((text, dropped))
    }

    /// Change the series with `change`: lock, read, change, write a temporary file, rename.
    fn rewrite(&self, change: impl FnOnce(&mut Series)) -> Result<Dropped, MetricsError> {
        let lock = self.lock()?;
        let (text, dropped) = self.read()?;
        let mut series = parse(&text);
        change(&mut series);
        let tmp = self.sibling(&format!(
            ".tmp.{}.{:08x}",
            std::process::id(),
            crate::os::random_u64() as u32
        ));
        let result = self.replace(&tmp, render(&series).as_bytes());
        drop(lock);
        result.map_err(|source| {
            let _ = unlinkat(&self.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            MetricsError::Write {
                path: self.path.clone(),
                source,
            }
        })?;
        Ok(dropped)
    }

    /// Write `content` to the new file `tmp` (O_EXCL: never one that is there) and rename it
    /// over the file (a symlink there is replaced, not followed).
    fn replace(&self, tmp: &OsStr, content: &[u8]) -> std::io::Result<()> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.dir, tmp, flags, Mode::from_bits_truncate(0o644))?;
        fchmod(&fd, Mode::from_bits_truncate(0o644))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(content)?;
        f.sync_all()?;
        renameat(&self.dir, tmp, &self.dir, self.name.as_os_str())?;
        Ok(())
    }

    /// `NAME.lock`, opened without following a symlink, guard's own (a regular file of root or
    /// guard's user), locked exclusively within LOCK_WAIT.
    fn lock(&self) -> Result<Flock<std::fs::File>, MetricsError> {
        let name = self.sibling(".lock");
        let path = self.shown(&name);
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            &self.dir,
            name.as_os_str(),
            flags,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| match e {
            Errno::ELOOP => MetricsError::ForeignLock {
                path: path.clone(),
                why: "a symlink".into(),
            },
            e => MetricsError::Open {
                path: path.clone(),
                source: e.into(),
            },
        })?;
        let st = fstat(&fd).map_err(|e| MetricsError::Open {
            path: path.clone(),
            source: e.into(),
        })?;
        let euid = nix::unistd::geteuid().as_raw();
        let why = if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            Some("not a regular file".to_string())
        } else if st.st_uid != 0 && st.st_uid != euid {
            Some(format!("owned by uid {}", st.st_uid))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(MetricsError::ForeignLock { path, why });
        }
        let mut file = std::fs::File::from(fd);
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => return Ok(l),
                Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) if Instant::now() < deadline => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((_, Errno::EWOULDBLOCK)) => return Err(MetricsError::LockTimeout { path }),
                Err((_, errno)) => return Err(MetricsError::Lock { path, errno }),
            }
        }
    }
}

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// Check at start that the metrics file can be written (its directory exists, is safe for guard
/// to write in and is writable).
pub fn check(path: &Path) -> Result<(), MetricsError> {
    MetricsFile::open(path).map(drop)
}

/// Write this run into `path` (see [`MetricsFile::write`]).
pub fn write(path: &Path, r: &Outcome) -> Result<Dropped, MetricsError> {
    MetricsFile::open(path)?.write(r)
}

/// `guard drill` passed every check for `job` at `when` (Unix time).
pub fn drill_passed(path: &Path, job: &str, when: f64) -> Result<Dropped, MetricsError> {
    MetricsFile::open(path)?.drill_passed(job, when)
}

/// The value of `metric` for `job` in the file at `path`, if it has one.
pub fn value_in(path: &Path, metric: &str, job: &str) -> Option<String> {
    MetricsFile::open(path).ok()?.value(metric, job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(job: &str, code: i32, killed: bool) -> Outcome {
        Outcome {
            job: job.into(),
            started_unix: 1_795_000_000.5,
            duration_s: 2.25,
            exit_code: code,
            peak_bytes: Some(100),
            limit_bytes: Some(200),
            ending: killed.then_some(crate::format::EventKind::MemoryLimit),
            drill: false,
        }
    }

    #[test]
    fn jobs_share_a_file_and_kills_accumulate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("guard.prom");
        write(&p, &run("a", 137, true)).unwrap();
        write(&p, &run("b", 0, false)).unwrap();
        write(&p, &run("a", 137, true)).unwrap();
        write(&p, &run("a", 0, false)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("guard_job_memory_kills_total{guard_job=\"a\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("guard_job_memory_kills_total{guard_job=\"b\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("guard_job_last_exit_code{guard_job=\"a\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("guard_job_last_run_timestamp_seconds{guard_job=\"b\"} 1795000000.500\n")
        );
        // The success time: the end of the last run that exited 0.
        assert!(
            text.contains(
                "guard_job_last_success_timestamp_seconds{guard_job=\"a\"} 1795000002.750\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE guard_job_memory_kills_total counter\n"));
        assert_eq!(
            text.matches("# TYPE guard_job_duration_seconds gauge")
                .count(),
            1
        );
        // no temporary file left
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}"); // the file and its lock
    }

    #[test]
    fn a_drill_writes_its_own_series_and_leaves_the_jobs_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("guard.prom");
        write(&p, &run("a", 0, false)).unwrap();
        let before = std::fs::read_to_string(&p).unwrap();
        let mut drill = run("a", 137, true);
        drill.drill = true;
        write(&p, &drill).unwrap();
        drill_passed(&p, "a", 1_795_000_010.0).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        for line in before.lines().filter(|l| !l.starts_with('#')) {
            assert!(text.contains(line), "{line} changed: {text}");
        }
        assert_eq!(
            value_in(&p, "guard_drill_last_run_timestamp_seconds", "a").as_deref(),
            Some("1795000000.500")
        );
        assert_eq!(
            value_in(&p, "guard_drill_last_success_timestamp_seconds", "a").as_deref(),
            Some("1795000010.000")
        );
        assert_eq!(
            value_in(&p, "guard_job_memory_kills_total", "a").as_deref(),
            Some("0"),
            "a drill's kill is not the job's"
        );
    }

    #[test]
    fn labels_round_trip() {
        let mut s = Series::new();
        s.insert(
            ("guard_job_last_exit_code".into(), "we\"ird\\job".into()),
            "1".into(),
        );
        assert_eq!(parse(&render(&s)), s);
    }

    #[test]
    fn a_file_with_the_old_labels_is_carried_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("guard.prom");
        std::fs::write(
            &p,
            "# TYPE guard_job_memory_kills_total counter\n\
             guard_job_memory_kills_total{job=\"a\",host=\"h1\"} 5\n",
        )
        .unwrap();
        write(&p, &run("a", 137, true)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("guard_job_memory_kills_total{guard_job=\"a\"} 6\n"),
            "{text}"
        );
        assert!(!text.contains("host="), "{text}");
        assert!(
            !text.contains("guard_job_last_success"),
            "no success yet: {text}"
        );
    }

    #[test]
    fn check_names_the_problem() {
        assert!(
            check(Path::new("/nonexistent/dir/x.prom"))
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        let d = tempfile::tempdir().unwrap();
        assert!(check(&d.path().join("x.prom")).is_ok());
    }
}
