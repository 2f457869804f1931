//! Running helper programs with a bound: py-spy and gcore at a capture, an alert's exec hook.
//! Each starts with stdin closed and its output going to pipes a thread of guard's reads at once
//! (the helper never waits on a full pipe), keeping its first and last bytes ([`OUT_HEAD`] and
//! [`OUT_TAIL`] of stdout, less of stderr) — a hook printing 512 MiB costs guard 2 MiB, and the
//! output says what was dropped. It runs in a process group of its own, is killed whole at its
//! deadline, and ends as one [`Ran`] with a [`Status`]. Nothing here knows what the helper is for, so evidence and alerts both use it
//! without depending on each other.

use crate::format::Status;
use crate::os::headtail::HeadTail;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The first executable named `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file())
}

/// Where guard looks for a helper beyond PATH: cron's PATH is /usr/bin:/bin, and pip puts
/// programs in /usr/local/bin (root) or ~/.local/bin (a user, pipx).
const USUAL_PLACES: &[&str] = &["/usr/local/bin", "/usr/bin", "/usr/local/sbin", "/usr/sbin"];

/// Where a helper was looked for and not found (for the collector's line and doctor).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} is not on PATH nor in {looked}")]
pub struct NotFound {
    pub name: String,
    pub looked: String,
}

/// The helper `name`: the first executable on PATH, else in [`USUAL_PLACES`] or
/// `$HOME/.local/bin`. Outside PATH only a file that root or guard's own user owns, in a
/// directory of the same owners, and that nobody else may write, is taken: guard may run as
/// root with another user's HOME (sudo keeps it), and must not run that user's program as root.
pub fn locate(name: &str) -> Result<PathBuf, NotFound> {
    if let Some(p) = which(name) {
        return Ok(p);
    }
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/bin"));
    let dirs: Vec<PathBuf> = USUAL_PLACES.iter().map(PathBuf::from).chain(home).collect();
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| trusted_executable(p))
        .ok_or_else(|| NotFound {
            name: name.to_string(),
            looked: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// An executable regular file (symlinks followed: pip's are) owned by root or guard's user and
/// writable by nobody else, in a directory with the same owners and no other writer.
fn trusted_executable(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let ok = |m: &std::fs::Metadata| (m.uid() == 0 || m.uid() == me) && m.mode() & 0o022 == 0;
    let (Ok(file), Some(dir)) = (std::fs::metadata(p), p.parent()) else {
        return false;
    };
    file.is_file()
        && ok(&file)
        && std::fs::metadata(dir).is_ok_and(|d| ok(&d))
        && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// What guard keeps of a helper's stdout: its first and its last MiB.
pub const OUT_HEAD: usize = 1 << 20;
pub const OUT_TAIL: usize = 1 << 20;
/// Of its stderr (read for the first line of a failure): 64 KiB at each end.
const ERR_KEEP: usize = 64 << 10;
/// After the helper's end, how long its pipes may stay open (a background child of a hook
/// holding them) before guard stops reading.
const EOF_GRACE: Duration = Duration::from_millis(200);

/// The thread that reads a helper's stdout and stderr until both end or it is told to stop.
struct Reader {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    done: std::sync::mpsc::Receiver<(HeadTail, HeadTail)>,
}

impl Reader {
    fn start(out: std::fs::File, err: std::fs::File) -> std::io::Result<Reader> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, done) = std::sync::mpsc::channel();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("guard-helper-out".into())
            .spawn(move || {
                let _ = tx.send(read_both(out, err, &flag));
            })?;
        Ok(Reader { stop, done })
    }

    /// What was read: at once when the pipes ended, else after EOF_GRACE.
    fn finish(self) -> (HeadTail, HeadTail) {
        let empty = || (HeadTail::new(0, 0), HeadTail::new(0, 0));
        match self.done.recv_timeout(EOF_GRACE) {
            Ok(r) => r,
            Err(_) => {
                self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
                self.done.recv().unwrap_or_else(|_| empty())
            }
        }
    }
}

/// Read `out` and `err` into head-and-tail buffers until both end, or `stop` is set (then what
/// is there now is taken).
fn read_both(
    out: std::fs::File,
    err: std::fs::File,
    stop: &std::sync::atomic::AtomicBool,
) -> (HeadTail, HeadTail) {
    use std::os::fd::AsFd;
    let mut kept = [
        HeadTail::new(OUT_HEAD, OUT_TAIL),
        HeadTail::new(ERR_KEEP, ERR_KEEP),
    ];
    let mut open = [Some(out), Some(err)];
    let mut buf = vec![0u8; 64 << 10];
    while open.iter().any(Option::is_some) {
        let stopping = stop.load(std::sync::atomic::Ordering::Relaxed);
        let mut fds: Vec<nix::poll::PollFd> = open
            .iter()
            .flatten()
            .map(|f| nix::poll::PollFd::new(f.as_fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        let wait = if stopping { 0u16 } else { 50 };
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(wait)).unwrap_or(0) == 0 {
            if stopping {
                break;
            }
            continue;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut i = 0;
        for (slot, k) in open.iter_mut().zip(kept.iter_mut()) {
            let Some(f) = slot else { continue };
            let is_ready = ready.get(i).copied().unwrap_or(false);
            i += 1;
            if !is_ready {
                continue;
            }
            match f.read(&mut buf) {
                Ok(0) | Err(_) => *slot = None,
                Ok(n) => k.push(&buf[..n]),
            }
        }
    }
    let [o, e] = kept;
    (o, e)
}

fn pipe() -> std::io::Result<(std::fs::File, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    Ok((std::fs::File::from(r), w))
}

/// The environment a helper starts with.
#[derive(Debug, Clone, Copy)]
pub enum Env<'a> {
    /// guard's own, plus these (py-spy, gcore: guard's tools, run against the job).
    Inherit(&'a [(String, String)]),
    /// These only (an alert's exec hook: a program of anyone's, which must not see guard's
    /// secrets — AWS_SECRET_ACCESS_KEY, PGPASSWORD — just because guard had them).
    Only(&'a [(String, String)]),
    /// guard's own, run as this user and group (no supplementary groups): a tool that parses
    /// what the job controls (its binaries' ELF and DWARF, its memory) runs with the job's
    /// rights, not root's.
    As { uid: u32, gid: u32 },
}

/// How a helper run ended.
#[derive(Debug)]
pub struct Ran {
    /// ok (exit 0), failed (started and failed, or could not start), timeout (killed).
    pub status: Status,
    pub ms: f64,
    pub stdout: Vec<u8>,
    /// Why it failed: the exit status and the first line of stderr, or the deadline.
    pub detail: String,
}

fn ms_since(t0: Instant) -> f64 {
    (t0.elapsed().as_secs_f64() * 1e6).round() / 1000.0
}

/// A helper program started with stdin closed and its output going to guard's reader.
pub struct Helper {
    program: PathBuf,
    child: std::process::Child,
    reader: Reader,
    t0: Instant,
    timeout: Duration,
}

impl Helper {
    /// Start `program args` with the environment `env`; `Err` is the failed run to report.
    pub fn start<S: AsRef<OsStr>>(
        program: &Path,
        args: &[S],
        env: Env<'_>,
        timeout: Duration,
    ) -> Result<Helper, Ran> {
        let t0 = Instant::now();
        let failed = |detail: String| Ran {
            status: Status::Failed,
            ms: ms_since(t0),
            stdout: Vec::new(),
            detail,
        };
        let ((out_r, out_w), (err_r, err_w)) = match (pipe(), pipe()) {
            (Ok(o), Ok(e)) => (o, e),
            (Err(e), _) | (_, Err(e)) => return Err(failed(format!("pipe: {e}"))),
        };
        // A process group of its own: at the deadline the helper is killed whole, with whatever
        // it started (a hook's `curl &`), not just its first process.
        let mut cmd = Command::new(program);
        let vars = match env {
            Env::Inherit(vars) => vars,
            Env::Only(vars) => {
                cmd.env_clear();
                vars
            }
            Env::As { uid, gid } => {
                // std drops the supplementary groups (setgroups(0)) when root sets a uid.
                cmd.uid(uid).gid(gid);
                &[]
            }
        };
        let child = cmd
            .process_group(0)
            .args(args)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w))
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", program.display())))?;
        // The command's copies of the write ends are closed now: end of file comes when the
        // helper (and whatever it started) is gone.
        drop(cmd);
        let reader = match Reader::start(out_r, err_r) {
            Ok(r) => r,
            Err(e) => {
                let mut h = child;
                if let Ok(pid) = i32::try_from(h.id()) {
                    let pg = nix::unistd::Pid::from_raw(pid);
                    let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
                }
                let _ = h.wait();
                return Err(failed(format!("cannot read its output: {e}")));
            }
        };
        Ok(Helper {
            program: program.to_path_buf(),
            child,
            reader,
            t0,
            timeout,
        })
    }

    /// SIGKILL to the helper's whole process group (it leads it: its pid is the group's id).
    fn kill_group(&mut self) {
        match i32::try_from(self.child.id()) {
            Ok(pid) => {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(_) => {
                let _ = self.child.kill();
            }
        }
    }

    /// Wait for the helper until its deadline (then kill it) and collect its output.
    pub fn finish(mut self) -> Ran {
        let deadline = self.t0 + self.timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Ok(s),
                Ok(None) if Instant::now() >= deadline => {
                    self.kill_group();
                    let _ = self.child.wait();
                    break Err(None);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => break Err(Some(e)),
            }
        };
        let (out, err) = self.reader.finish();
        let ms = ms_since(self.t0);
        let note = format!(
            "[guard: {} of this program's output dropped here; guard keeps its first {} and its \
             last {}]\n",
            crate::config::units::format_size(out.dropped()),
            crate::config::units::format_size(OUT_HEAD as u64),
            crate::config::units::format_size(OUT_TAIL as u64)
        );
        let stdout = out.to_vec(Some(&note));
        let first_err = first_line(&String::from_utf8_lossy(err.head()));
        let program = self.program.display();
        let cut = (out.dropped() > 0).then(|| {
            format!(
                "{} of its output dropped (guard keeps the first and the last {})",
                crate::config::units::format_size(out.dropped()),
                crate::config::units::format_size(OUT_HEAD as u64)
            )
        });
        let (status, detail) = match status {
            Ok(s) if s.success() => (Status::Ok, cut.unwrap_or_default()),
            Ok(s) => (
                Status::Failed,
                format!("{program} exited with {s}: {first_err}"),
            ),
            // Its exit status was taken by someone else: it ran, how it ended is unknown.
            Err(Some(e)) => (
                Status::Failed,
                format!("{program} ended, but its exit status is lost ({e})"),
            ),
            Err(None) => (
                Status::Timeout,
                format!(
                    "{program} did not finish within {}; killed",
                    crate::config::units::format_duration(self.timeout)
                ),
            ),
        };
        Ran {
            status,
            ms,
            stdout,
            detail,
        }
    }
}

/// The first non-empty line of `text`, at most 200 characters (then "…").
fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// Run `program args` (with extra environment `env`) to its end or its deadline `timeout`.
pub fn run_bounded<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    env: Env<'_>,
    timeout: Duration,
) -> Ran {
    match Helper::start(program, args, env, timeout) {
        Ok(h) => h.finish(),
        Err(ran) => ran,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_outside_path_is_taken_only_from_its_owners() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("tool");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(&bin, 0o755);
        set(d.path(), 0o755);
        assert!(trusted_executable(&bin));
        set(&bin, 0o775);
        assert!(!trusted_executable(&bin), "others may write the program");
        set(&bin, 0o755);
        set(d.path(), 0o777);
        assert!(!trusted_executable(&bin), "others may write its directory");
        set(d.path(), 0o755);
        set(&bin, 0o644);
        assert!(!trusted_executable(&bin), "not executable");
        assert!(!trusted_executable(d.path()), "a directory");
    }

    #[test]
    fn a_helpers_output_is_kept_as_its_ends_and_its_background_children_are_not_waited_for() {
        let sh = Path::new("/bin/sh");
        let t = Duration::from_secs(20);
        let none = Env::Inherit(&[]);
        let big = run_bounded(sh, &["-c", "head -c 5242880 /dev/zero; echo END"], none, t);
        assert_eq!(big.status, Status::Ok);
        assert!(
            big.stdout.len() < OUT_HEAD + OUT_TAIL + 200,
            "{}",
            big.stdout.len()
        );
        assert!(big.stdout.ends_with(b"\0END\n"));
        let text = String::from_utf8_lossy(&big.stdout);
        assert!(text.contains("[guard: 3.0 MiB of this program's output dropped here"));
        assert!(
            big.detail.contains("of its output dropped"),
            "{}",
            big.detail
        );
        // A background child keeps the pipes open: guard takes what came and goes on.
        let t0 = Instant::now();
        let bg = run_bounded(sh, &["-c", "sleep 30 & echo hi"], none, t);
        assert_eq!(
            (bg.status, bg.stdout.as_slice()),
            (Status::Ok, &b"hi\n"[..])
        );
        // EOF_GRACE (0.2 s) and the reader's 50 ms poll, with 5 s for a loaded machine.
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    #[test]
    fn bounded_run_reports_each_outcome() {
        let sh = Path::new("/bin/sh");
        let t = Duration::from_secs(5);
        let none = Env::Inherit(&[]);
        let ok = run_bounded(sh, &["-c", "echo hi"], none, t);
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(ok.stdout, b"hi\n");
        let bad = run_bounded(sh, &["-c", "echo oops >&2; exit 3"], none, t);
        assert_eq!(bad.status, Status::Failed);
        assert!(bad.detail.contains("oops"), "{}", bad.detail);
        let env = [("GUARD_X".to_string(), "y".to_string())];
        let with_env = run_bounded(sh, &["-c", "echo $GUARD_X"], Env::Inherit(&env), t);
        assert_eq!(with_env.stdout, b"y\n");
        // Only: nothing of guard's environment (HOME is set wherever tests run).
        let only = run_bounded(sh, &["-c", "echo \"$GUARD_X/$HOME\""], Env::Only(&env), t);
        assert_eq!(only.stdout, b"y/\n");
        let slow = run_bounded(sh, &["-c", "sleep 5"], none, Duration::from_millis(100));
        assert_eq!(slow.status, Status::Timeout);
        assert!(slow.ms < 2000.0);
        let missing = run_bounded(Path::new("/nonexistent/x"), &["a"], none, t);
        assert_eq!(missing.status, Status::Failed);
    }
}
