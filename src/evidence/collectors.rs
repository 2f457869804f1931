//! Collectors: outside tools run against the held job, each bounded in time and reported in the
//! manifest as ok / failed / skipped (and why) / timeout. `py-spy dump --nonblocking` for Python
//! processes (plain `py-spy dump` and gdb hang on a held task; the non-blocking mode reads the
//! interpreter's memory without stopping it), and `gcore` for `--core`.

use super::bundle::{self, BundleWriter};
use super::manifest::CollectorResult;
use std::ffi::OsStr;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// py-spy's bound at the cap (the job is held; a stack is worth waiting for) and at a warning
/// (the job runs, and guard watches nothing else meanwhile).
pub const PYSPY_TIMEOUT: Duration = Duration::from_secs(10);
pub const PYSPY_WARNING_TIMEOUT: Duration = Duration::from_secs(2);
pub const GCORE_TIMEOUT: Duration = Duration::from_secs(120);
/// At most this many Python processes get a stack dump (the largest first).
pub const MAX_PYSPY: usize = 8;

/// The first executable named `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file())
}

/// An anonymous in-memory file for a helper's output (no pipe to fill, no temp file to leak).
fn memfd(name: &str) -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(std::io::Error::from)?;
    Ok(std::fs::File::from(fd))
}

/// How a helper run ended.
pub struct Ran {
    pub status: &'static str,
    pub ms: f64,
    pub stdout: Vec<u8>,
    pub detail: String,
}

fn ms_since(t0: Instant) -> f64 {
    (t0.elapsed().as_secs_f64() * 1e6).round() / 1000.0
}

/// A helper program started with stdin closed and its output going to memfds.
pub struct Helper {
    program: PathBuf,
    child: std::process::Child,
    out: std::fs::File,
    err: std::fs::File,
    t0: Instant,
    timeout: Duration,
}

impl Helper {
    /// Start `program args`; `Err` is the failed run to report.
    pub fn start<S: AsRef<OsStr>>(
        program: &Path,
        args: &[S],
        timeout: Duration,
    ) -> Result<Helper, Ran> {
        Self::start_env(program, args, &[], timeout)
    }

    /// The same, with extra environment variables.
    pub fn start_env<S: AsRef<OsStr>>(
        program: &Path,
        args: &[S],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Helper, Ran> {
        let t0 = Instant::now();
        let failed = |detail: String| Ran {
            status: "failed",
            ms: ms_since(t0),
            stdout: Vec::new(),
            detail,
        };
        let (out, err) = match (memfd("guard-out"), memfd("guard-err")) {
            (Ok(o), Ok(e)) => (o, e),
            (Err(e), _) | (_, Err(e)) => return Err(failed(format!("memfd: {e}"))),
        };
        let stdio = |f: &std::fs::File| {
            f.try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null())
        };
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdio(&out))
            .stderr(stdio(&err))
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", program.display())))?;
        Ok(Helper {
            program: program.to_path_buf(),
            child,
            out,
            err,
            t0,
            timeout,
        })
    }

    /// Wait for the helper until its deadline (then kill it) and collect its output.
    pub fn finish(mut self) -> Ran {
        let deadline = self.t0 + self.timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => break None,
            }
        };
        let ms = ms_since(self.t0);
        let read_all = |f: &mut std::fs::File| {
            let mut v = Vec::new();
            let _ = f.rewind();
            let _ = f.read_to_end(&mut v);
            v
        };
        let stdout = read_all(&mut self.out);
        let stderr = read_all(&mut self.err);
        let first_err = String::from_utf8_lossy(&stderr)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_string();
        let program = self.program.display();
        match status {
            Some(s) if s.success() => Ran {
                status: "ok",
                ms,
                stdout,
                detail: String::new(),
            },
            Some(s) => Ran {
                status: "failed",
                ms,
                stdout,
                detail: format!("{program} exited with {s}: {first_err}"),
            },
            None => Ran {
                status: "timeout",
                ms,
                stdout,
                detail: format!(
                    "{program} did not finish within {}; killed",
                    crate::units::format_duration(self.timeout)
                ),
            },
        }
    }
}

/// Run `program args` with stdin closed and output captured, killed after `timeout`.
pub fn run_bounded<S: AsRef<OsStr>>(program: &Path, args: &[S], timeout: Duration) -> Ran {
    match Helper::start(program, args, timeout) {
        Ok(h) => h.finish(),
        Err(ran) => ran,
    }
}

/// `run_bounded` with extra environment variables.
pub fn run_bounded_env<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    env: &[(String, String)],
    timeout: Duration,
) -> Ran {
    match Helper::start_env(program, args, env, timeout) {
        Ok(h) => h.finish(),
        Err(ran) => ran,
    }
}

/// Whether `pid` runs a Python interpreter (by the executable's name).
pub fn is_python(proc: &Path, pid: i32) -> bool {
    let exe = std::fs::read_link(proc.join(pid.to_string()).join("exe")).ok();
    let comm = std::fs::read_to_string(proc.join(pid.to_string()).join("comm")).unwrap_or_default();
    let exe_name = exe
        .as_ref()
        .and_then(|e| e.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    exe_name.starts_with("python") || comm.trim().starts_with("python")
}

pub fn skipped(name: &str, detail: impl Into<String>) -> CollectorResult {
    CollectorResult {
        name: name.into(),
        status: "skipped".into(),
        duration_ms: 0.0,
        detail: detail.into(),
    }
}

/// `py-spy dump --nonblocking` for each Python process among `pids` (largest first), into
/// `processes/<pid>/pyspy.txt`. One result per process, or one `skipped` result.
pub fn pyspy(
    proc: &Path,
    pids: &[i32],
    w: &BundleWriter,
    locals: bool,
    timeout: Duration,
) -> std::io::Result<Vec<CollectorResult>> {
    let python: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|&p| is_python(proc, p))
        .take(MAX_PYSPY)
        .collect();
    if python.is_empty() {
        return Ok(vec![skipped("py-spy", "no Python process in the job")]);
    }
    let Some(bin) = which("py-spy") else {
        return Ok(vec![skipped(
            "py-spy",
            format!(
                "py-spy is not on PATH ({} Python process(es) in the job; install it with 'pip install py-spy')",
                python.len()
            ),
        )]);
    };
    // All at once: each dump takes tens of milliseconds, mostly py-spy starting up.
    let started: Vec<(i32, Result<Helper, Ran>)> = python
        .iter()
        .map(|&pid| {
            let mut args = vec![
                "dump".to_string(),
                "--nonblocking".into(),
                "--pid".into(),
                pid.to_string(),
            ];
            if locals {
                args.push("--locals".into());
            }
            (pid, Helper::start(&bin, &args, timeout))
        })
        .collect();
    let mut out = Vec::new();
    for (pid, h) in started {
        let r = match h {
            Ok(h) => h.finish(),
            Err(ran) => ran,
        };
        if !r.stdout.is_empty() {
            w.write(&format!("processes/{pid}/pyspy.txt"), &r.stdout)?;
        }
        out.push(CollectorResult {
            name: format!("py-spy:{pid}"),
            status: r.status.into(),
            duration_ms: r.ms,
            detail: r.detail,
        });
    }
    Ok(out)
}

/// `gcore` of `pid` into `processes/<pid>/core.<pid>`. The caller has already made the process
/// stoppable (a frozen or OOM-waiting task cannot be attached to).
pub fn gcore(pid: i32, w: &BundleWriter) -> std::io::Result<CollectorResult> {
    let Some(bin) = which("gcore") else {
        return Ok(skipped("core", "gcore is not on PATH (install gdb)"));
    };
    let dir = w.mkdir(&format!("processes/{pid}"))?;
    let prefix = dir.join("core");
    let r = run_bounded(
        &bin,
        &[
            OsStr::new("-o"),
            prefix.as_os_str(),
            OsStr::new(&pid.to_string()),
        ],
        GCORE_TIMEOUT,
    );
    let core = dir.join(format!("core.{pid}"));
    let ok = r.status == "ok" && core.is_file();
    if core.exists() {
        bundle::make_private(&core);
        if !ok {
            let _ = std::fs::remove_file(&core);
        }
    }
    Ok(CollectorResult {
        name: "core".into(),
        status: if ok {
            "ok"
        } else if r.status == "ok" {
            "failed"
        } else {
            r.status
        }
        .into(),
        duration_ms: r.ms,
        detail: if ok {
            format!(
                "processes/{pid}/core.{pid} ({})",
                crate::units::format_size(std::fs::metadata(&core).map(|m| m.len()).unwrap_or(0))
            )
        } else if r.detail.is_empty() {
            "gcore wrote no core file".into()
        } else {
            r.detail
        },
    })
}

/// Compress `path` to `<path>.zst` (zstd level 3, 0600) and remove the original. Returns the
/// sizes before and after. On error the original stays and no `.zst` is left.
pub fn compress_zstd(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let dest = PathBuf::from(format!("{}.zst", path.display()));
    let run = || -> std::io::Result<(u64, u64)> {
        let mut input = std::fs::File::open(path)?;
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dest)?;
        let mut enc = zstd::stream::Encoder::new(out, 3)?;
        let n = std::io::copy(&mut input, &mut enc)?;
        let out = enc.finish()?;
        out.sync_all()?;
        Ok((n, out.metadata()?.len()))
    };
    match run() {
        Ok(sizes) => {
            std::fs::remove_file(path)?;
            Ok(sizes)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&dest);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("core.1");
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 7) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let (a, b) = compress_zstd(&p).unwrap();
        assert_eq!(a, data.len() as u64);
        assert!(b < a / 10);
        assert!(!p.exists());
        let z = std::fs::read(d.path().join("core.1.zst")).unwrap();
        assert_eq!(zstd::stream::decode_all(&z[..]).unwrap(), data);
    }

    #[test]
    fn bounded_run_reports_each_outcome() {
        let sh = Path::new("/bin/sh");
        let ok = run_bounded(sh, &["-c", "echo hi"], Duration::from_secs(5));
        assert_eq!(ok.status, "ok");
        assert_eq!(ok.stdout, b"hi\n");
        let bad = run_bounded(sh, &["-c", "echo oops >&2; exit 3"], Duration::from_secs(5));
        assert_eq!(bad.status, "failed");
        assert!(bad.detail.contains("oops"), "{}", bad.detail);
        let slow = run_bounded(sh, &["-c", "sleep 5"], Duration::from_millis(100));
        assert_eq!(slow.status, "timeout");
        assert!(slow.ms < 2000.0);
        let missing = run_bounded(Path::new("/nonexistent/x"), &["a"], Duration::from_secs(1));
        assert_eq!(missing.status, "failed");
    }
}
