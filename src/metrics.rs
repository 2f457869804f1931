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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
    #[error("cannot lock {}: {}", path.display(), errno.desc())]
    Lock {
        path: PathBuf,
        errno: nix::errno::Errno,
    },
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

/// Check at start that the metrics file can be written (its directory exists and is writable).
pub fn check(path: &Path) -> Result<(), MetricsError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(MetricsError::NoDir(dir.to_path_buf()));
    }
    nix::unistd::access(
        dir,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(|errno| MetricsError::NotWritable {
        dir: dir.to_path_buf(),
        errno,
    })
}

/// Write this run into `path`: lock, read, update, write a temporary file, rename.
pub fn write(path: &Path, r: &Outcome) -> Result<(), MetricsError> {
    rewrite(path, |s| update(s, r))
}

/// `guard drill` passed every check for `job` at `when` (Unix time).
pub fn drill_passed(path: &Path, job: &str, when: f64) -> Result<(), MetricsError> {
    rewrite(path, |s| {
        s.insert(
            (
                "guard_drill_last_success_timestamp_seconds".into(),
                job.to_string(),
            ),
            format!("{when:.3}"),
        );
    })
}

/// The value of `metric` for `job` in the file at `path`, if it has one.
pub fn value_in(path: &Path, metric: &str, job: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    parse(&text).remove(&(metric.to_string(), job.to_string()))
}

/// Change the series in `path` with `change`: lock, read, change, write a temporary file,
/// rename.
fn rewrite(path: &Path, change: impl FnOnce(&mut Series)) -> Result<(), MetricsError> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(&lock_path)
        .map_err(|source| MetricsError::Open {
            path: lock_path.clone(),
            source,
        })?;
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(
        |(_, errno)| MetricsError::Lock {
            path: lock_path.clone(),
            errno,
        },
    )?;
    let mut series = match std::fs::read_to_string(path) {
        Ok(t) => parse(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Series::new(),
        Err(source) => {
            return Err(MetricsError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    change(&mut series);
    let tmp = PathBuf::from(format!("{}.tmp.{}", path.display(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(render(&series).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    drop(lock);
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        MetricsError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
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
