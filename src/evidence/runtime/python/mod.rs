//! The Python heap census (guard(1), PYTHON HEAP CENSUS): the hook guard puts on the job's
//! PYTHONPATH — its directory, written and checked here — the environment that turns it on, and
//! the census itself: signal the job's hooked Python processes, accept each one's connection
//! (checked against the pid that made it) and tell it the terms (held or running, its memory
//! budget, the time left), take its answer (bounded in size and time), check it, and write it
//! into the bundle as `processes/<pid>/pyheap.json`; closing a connection is how guard gives up.
//!
//! Why a hook and a signal: CPython before 3.14 cannot run code on request from outside except
//! through a debugger (gdb or a ptrace injection, which needs a running, stoppable task and
//! risks the interpreter's state), and py-spy reads stacks, not objects. The hook is the
//! `sitecustomize`-on-PYTHONPATH convention of opentelemetry-instrument and ddtrace-run: it
//! chains to the sitecustomize it shadows, registers one real-time signal's handler (only when
//! nothing handles that signal), and costs nothing more until asked. The census runs inside the
//! process, in its own interpreter, with gc.get_objects / get_referrers.

use crate::evidence::bundle::BundleWriter;
use crate::evidence::collectors::python_pids;
use crate::format::{CollectorResult, PYHEAP_FORMAT, PyHeap, Status};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use std::collections::BTreeSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// The census's settings are configuration values, read and checked with the other options.
pub use crate::config::census::{DEFAULT_WINDOW, HEADROOM_PERCENT, MIN_HEADROOM, Settings};

/// The hook's two files, as they are written into its directory.
pub const SITECUSTOMIZE: &str = include_str!("sitecustomize.py");
pub const HOOK: &str = include_str!("_guard_hook.py");
pub const CENSUS: &str = include_str!("_guard_pyheap.py");
/// The largest answer guard reads (a census is tens of kilobytes).
const MAX_ANSWER: u64 = 4 << 20;
/// The signal is SIGRTMAX minus this: far from SIGRTMIN, which threading libraries use.
const SIGNAL_BELOW_RTMAX: i32 = 6;
/// The environment variable the hook reads.
pub const ENV: &str = "GUARD_PYHEAP";

/// Why the hook could not be put in place (guard goes on without a census, and says so).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Dir(#[from] crate::os::rundir::RunDirError),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{} contains ':', which PYTHONPATH cannot carry", path.display())]
    Colon { path: PathBuf },
    /// Something in the hook's tree guard did not write and cannot vouch for: a job would import
    /// it. guard neither loads nor deletes it; a person looks.
    #[error(
        "{} {why}: a Python job would load it; guard did not write it — check who did, \
         then remove it",
        path.display()
    )]
    Untrusted { path: PathBuf, why: String },
}

/// The hook of one run: where its files are, the socket name its processes answer on, the
/// signal that asks them.
#[derive(Debug)]
pub struct Hook {
    pub dir: PathBuf,
    sock: String,
    signal: i32,
    window: Duration,
    /// --tracemalloc: PYTHONTRACEMALLOC for the job (unless it has its own).
    tracemalloc: Option<u32>,
}

/// The signal guard sends (SIGRTMAX - 6: 58 on Linux with glibc).
pub fn signal_number() -> i32 {
    libc::SIGRTMAX() - SIGNAL_BELOW_RTMAX
}

impl Hook {
    /// Write (or check) the hook's directory for guard's uid and pick this run's socket name.
    pub fn install(settings: Settings) -> Result<Hook, HookError> {
        let uid = nix::unistd::geteuid().as_raw();
        let dir = hook_dir(uid)?;
        Ok(Hook {
            dir,
            sock: format!(
                "guard-pyheap-{}-{:016x}",
                std::process::id(),
                crate::os::random_u64()
            ),
            signal: signal_number(),
            window: settings.window,
            tracemalloc: settings.tracemalloc,
        })
    }

    /// The job's environment: guard's own, with the hook's directory first on PYTHONPATH and
    /// GUARD_PYHEAP set (as `execve` wants it).
    pub fn environ(&self) -> Vec<CString> {
        let mut out = Vec::new();
        let mut pythonpath = self.dir.as_os_str().to_os_string();
        for (k, v) in std::env::vars_os() {
            if k == "PYTHONPATH" {
                if !v.is_empty() {
                    pythonpath.push(":");
                    pythonpath.push(&v);
                }
                continue;
            }
            if k == ENV {
                continue;
            }
            out.extend(entry(&k, &v));
        }
        out.extend(entry(OsStr::new("PYTHONPATH"), &pythonpath));
        out.extend(entry(OsStr::new(ENV), OsStr::new(&self.value())));
        if let (Some(n), None) = (self.tracemalloc, std::env::var_os("PYTHONTRACEMALLOC")) {
            out.extend(entry(
                OsStr::new("PYTHONTRACEMALLOC"),
                OsStr::new(&n.to_string()),
            ));
        }
        out
    }

    /// The file a hooked process keeps open to say so.
    pub fn announcement(&self) -> PathBuf {
        self.dir.join("_guard_hook.py")
    }

    /// GUARD_PYHEAP's value: `socket:signal:window_ms:dir` (how each census runs — held or
    /// running, its memory budget, the time left — guard says when it accepts its connection).
    fn value(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.sock,
            self.signal,
            self.window.as_millis(),
            self.dir.display()
        )
    }
}

fn entry(k: &OsStr, v: &OsStr) -> Option<CString> {
    let mut kv = k.as_bytes().to_vec();
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    CString::new(kv).ok()
}

/// FNV-1a of the hook's files, computed at compile time: its directory's name changes with its
/// content, so guards of two versions never share (or fight over) one.
const CONTENT_HASH: u64 = {
    let files = [SITECUSTOMIZE.as_bytes(), HOOK.as_bytes(), CENSUS.as_bytes()];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut f = 0;
    while f < files.len() {
        let bytes = files[f];
        let mut i = 0;
        // Each file's bytes, then a 0 between files.
        while i <= bytes.len() {
            let b = if i < bytes.len() { bytes[i] } else { 0 };
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        f += 1;
    }
    h
};

/// The hook's directory for `uid`, made and checked: `pyhook-HASH` in guard's runtime directory
/// ([`crate::os::rundir`]: `/run/guard` as root, 0755 so a job that drops its privileges still
/// loads it; else `$XDG_RUNTIME_DIR/guard` or `/tmp/guard-UID`, 0700).
pub fn hook_dir(uid: u32) -> Result<PathBuf, HookError> {
    let name = format!("pyhook-{CONTENT_HASH:016x}");
    let mode = if uid == 0 { 0o755 } else { 0o700 };
    let crate::os::rundir::Dir { fd: cur, path } = crate::os::rundir::open(uid, &[&name], mode)?;
    if path.as_os_str().as_bytes().contains(&b':') {
        return Err(HookError::Colon { path });
    }
    for (file, content) in [
        ("sitecustomize.py", SITECUSTOMIZE),
        ("_guard_hook.py", HOOK),
        ("_guard_pyheap.py", CENSUS),
    ] {
        ensure_file(&cur, file, content.as_bytes(), mode & 0o644, uid).map_err(|source| {
            HookError::Write {
                path: path.join(file),
                source,
            }
        })?;
    }
    ensure_pycache(&cur, &path, mode)?;
    check_tree(&cur, &path, uid, 1)?;
    Ok(path)
}

/// The bytecode cache of the hook's directory, made by guard (owner `uid`, `mode`) before any job
/// can make it with the job's umask.
///
/// Why guard makes it rather than forbid bytecode: Python reads `__pycache__/NAME.cpython-3X.pyc`
/// before the source of every module it imports from a directory — `sitecustomize` included,
/// whatever `sys.dont_write_bytecode` says — so the directory's owner decides what every later
/// Python job runs. Made here, only `uid` (root, for a root guard) can write in it: a job that
/// dropped its privileges cannot, and a root job's `.pyc` files take the source's mode (0644)
/// whatever its umask. Compiling the hook at every start instead would cost each Python job
/// about 0.6 ms; [`check_tree`] then vouches for every entry at each run.
fn ensure_pycache(dir: &OwnedFd, path: &Path, mode: u32) -> Result<(), HookError> {
    const NAME: &str = "__pycache__";
    match mkdirat(dir, NAME, Mode::from_bits_truncate(mode)) {
        Ok(()) => {
            let write = |source: Errno| HookError::Write {
                path: path.join(NAME),
                source: source.into(),
            };
            let fd = openat(dir, NAME, SUBDIR, Mode::empty()).map_err(write)?;
            // The umask may have taken bits a job that drops its privileges needs to read it.
            fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(write)
        }
        Err(Errno::EEXIST) => Ok(()),
        Err(source) => Err(HookError::Write {
            path: path.join(NAME),
            source: source.into(),
        }),
    }
}

const SUBDIR: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Every entry of the hook's tree (its directory and `__pycache__`, `depth` levels below `dir`)
/// is a regular file or a directory owned by `uid` that nobody else may write; a symlink, a
/// device, a FIFO or an entry of another owner is refused, and nothing is loaded from it.
fn check_tree(dir: &OwnedFd, path: &Path, uid: u32, depth: u32) -> Result<(), HookError> {
    let untrusted = |name: &OsStr, why: String| HookError::Untrusted {
        path: path.join(name),
        why,
    };
    let read =
        nix::dir::Dir::openat(dir, ".", SUBDIR, Mode::empty()).map_err(|e| HookError::Write {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
    for entry in read.into_iter().flatten() {
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let st = match nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            Ok(st) => st,
            // Renamed away meanwhile (another guard's temporary file).
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(untrusted(name, format!("cannot be checked ({e})"))),
        };
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFREG && kind != libc::S_IFDIR {
            return Err(untrusted(name, "is not a regular file".into()));
        }
        if st.st_uid != uid {
            return Err(untrusted(name, format!("is owned by uid {}", st.st_uid)));
        }
        if st.st_mode & 0o022 != 0 {
            let mode = st.st_mode & 0o7777;
            return Err(untrusted(
                name,
                format!("may be written by others (mode {mode:o})"),
            ));
        }
        if kind == libc::S_IFDIR {
            if depth == 0 || name != "__pycache__" {
                return Err(untrusted(name, "is a directory guard did not make".into()));
            }
            let sub = openat(dir, name, SUBDIR, Mode::empty())
                .map_err(|e| untrusted(name, format!("cannot be opened ({e})")))?;
            check_tree(&sub, &path.join(name), uid, depth - 1)?;
        }
    }
    Ok(())
}

/// `name` in `dir` holds exactly `content`; else it is replaced through a temporary file and a
/// rename (another guard may be reading it).
///
/// The common case costs one `fstatat`: a regular file of `content`'s length, owned by `uid`
/// and writable by nobody else, in a directory only `uid` may write (checked by the caller)
/// and named after the content's hash, can only have been written whole by a guard of this
/// version (files are renamed into place, never written where they are) — or changed by `uid`
/// itself, which could change guard too. Anything else is replaced.
fn ensure_file(dir: &OwnedFd, name: &str, content: &[u8], mode: u32, uid: u32) -> io::Result<()> {
    if let Ok(st) = nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        && st.st_mode & libc::S_IFMT == libc::S_IFREG
        && st.st_uid == uid
        && st.st_mode & 0o022 == 0
        && u64::try_from(st.st_size).is_ok_and(|n| n == content.len() as u64)
    {
        return Ok(());
    }
    let tmp = format!(".{name}.{}.tmp", std::process::id());
    let wflags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(dir, tmp.as_str(), wflags, Mode::from_bits_truncate(mode)) {
        Ok(fd) => fd,
        Err(Errno::EEXIST) => {
            // Left by a guard of this pid that died mid-write: ours to replace.
            nix::unistd::unlinkat(dir, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir)?;
            openat(dir, tmp.as_str(), wflags, Mode::from_bits_truncate(mode))?
        }
        Err(e) => return Err(e.into()),
    };
    fchmod(&fd, Mode::from_bits_truncate(mode))?;
    let mut f = File::from(fd);
    f.write_all(content)?;
    f.sync_all()?;
    Ok(renameat(dir, tmp.as_str(), dir, name)?)
}

/// The most descriptors of one process guard looks through for the hook's announcement.
const MAX_FDS_LOOKED_AT: usize = 4096;

/// Whether the hook announced itself in `pid`: the hook keeps its own file `hook_file` open
/// (close-on-exec), so a process that handles the census signal for another reason — `python
/// -E`, or a program with a handler of its own for that real-time signal — is never sent it.
pub fn announced(proc: &Path, pid: i32, hook_file: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(proc.join(pid.to_string()).join("fd")) else {
        return false;
    };
    rd.flatten()
        .take(MAX_FDS_LOOKED_AT)
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == hook_file))
}

/// Whether `pid` handles the hook's signal (its SigCgt mask in /proc/PID/status).
pub fn handles(proc: &Path, pid: i32, signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(proc.join(pid.to_string()).join("status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| (1..=64).contains(&signal) && mask & (1u64 << (signal - 1)) != 0)
}

/// The census side of a run: the hook, and guard's socket once a census was asked for.
#[derive(Debug)]
pub struct Census {
    pub hook: Hook,
    pub settings: Settings,
    listener: Option<UnixListener>,
}

/// How a census is to run, said to each process when guard accepts its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// The job runs meanwhile (a warning): the census lets its other threads have the GIL
    /// between slices and skips a retention walk that would hold it longer. Else the job is
    /// held at its cap and only the census runs.
    pub live: bool,
    /// What the census may add to the process's resident memory before it stops.
    pub budget: u64,
}

/// The processes asked, and those that could not be.
pub struct Asked {
    started: Instant,
    terms: Terms,
    pending: BTreeSet<i32>,
    results: Vec<CollectorResult>,
}

/// One process's census connection: accepted, told the terms, its answer read as it comes.
struct Conn {
    pid: i32,
    stream: std::os::unix::net::UnixStream,
    data: Vec<u8>,
}

/// How long guard waits, once it gives up on a census, for the process to close its end (the
/// census stops at its next check, within 50 ms) before the job is frozen or killed — so that
/// stacks read after it do not show the census.
const GIVE_UP_WAIT: Duration = Duration::from_millis(150);

impl Census {
    pub fn new(hook: Hook, settings: Settings) -> Census {
        Census {
            hook,
            settings,
            listener: None,
        }
    }

    /// The Python processes among `pids` (the largest first, at most 8), and which of them
    /// handle the hook's signal. None when there is no Python process.
    pub fn candidates(&self, proc: &Path, pids: &[i32]) -> Option<(Vec<i32>, Vec<i32>)> {
        let python = python_pids(proc, pids);
        if python.is_empty() {
            return None;
        }
        let (hooked, not): (Vec<i32>, Vec<i32>) = python.into_iter().partition(|&p| {
            handles(proc, p, self.hook.signal) && announced(proc, p, &self.hook.announcement())
        });
        Some((hooked, not))
    }

    /// Ask the `hooked` processes for a census (the signal; guard's socket bound first). The
    /// others get a `skipped` result saying why.
    pub fn ask(&mut self, hooked: &[i32], not: &[i32], terms: Terms) -> Asked {
        let mut asked = Asked {
            started: Instant::now(),
            terms,
            pending: BTreeSet::new(),
            results: not.iter().map(|&p| not_hooked(p)).collect(),
        };
        if hooked.is_empty() {
            return asked;
        }
        if let Err(e) = self.bind() {
            asked
                .results
                .extend(hooked.iter().map(|&p| CollectorResult {
                    name: name(p),
                    status: Status::Failed,
                    duration_ms: 0.0,
                    detail: format!("cannot listen for the answer: {e}"),
                }));
            return asked;
        }
        for &p in hooked {
            // nix's Signal has no real-time signals.
            // SAFETY: kill takes a pid and a signal number; it touches no memory of ours.
            if unsafe { libc::kill(p, self.hook.signal) } == 0 {
                asked.pending.insert(p);
            } else {
                asked.results.push(CollectorResult {
                    name: name(p),
                    status: Status::Failed,
                    duration_ms: 0.0,
                    detail: format!("cannot signal the process: {}", io::Error::last_os_error()),
                });
            }
        }
        asked
    }

    fn bind(&mut self) -> io::Result<()> {
        if self.listener.is_some() {
            return Ok(());
        }
        let addr = SocketAddr::from_abstract_name(self.hook.sock.as_bytes())?;
        let l = UnixListener::bind_addr(&addr)?;
        l.set_nonblocking(true)?;
        self.listener = Some(l);
        Ok(())
    }

    /// Take the answers of `asked` until all came, the window is over, or `stop` says the job
    /// must not run longer (it names why); write each into `w` and tell `answered` whose came.
    /// One result per process. Each
    /// process connects when its census begins and is told the terms; guard closing the
    /// connection tells it to stop.
    pub fn collect(
        &self,
        mut asked: Asked,
        w: &BundleWriter,
        mut stop: impl FnMut() -> Option<String>,
        mut answered: impl FnMut(i32),
        after: &str,
    ) -> Vec<CollectorResult> {
        let deadline = asked.started + self.settings.window;
        let mut conns: Vec<Conn> = Vec::new();
        let mut stopped = None;
        while let (false, Some(l)) = (asked.pending.is_empty(), &self.listener) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Some(why) = stop() {
                stopped = Some(why);
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(20));
            let mut fds = vec![nix::poll::PollFd::new(
                l.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            fds.extend(
                conns.iter().map(|c| {
                    nix::poll::PollFd::new(c.stream.as_fd(), nix::poll::PollFlags::POLLIN)
                }),
            );
            let Some(ready) = poll_ready(fds, wait) else {
                continue;
            };
            if ready[0] {
                self.accept_all(l, &mut asked, &mut conns, deadline);
            }
            let mut i = 0;
            for r in ready[1..].iter() {
                if *r {
                    if let Some(res) = self.read_some(&mut conns[i], &mut asked, w) {
                        answered(conns[i].pid);
                        asked.results.push(res);
                        conns.remove(i);
                        continue;
                    }
                }
                i += 1;
            }
        }
        give_up(conns);
        let ms = asked.started.elapsed().as_secs_f64() * 1000.0;
        for &p in &asked.pending {
            asked.results.push(match &stopped {
                Some(why) => CollectorResult {
                    name: name(p),
                    status: Status::Failed,
                    duration_ms: ms,
                    detail: format!("stopped after {ms:.0} ms: {why}"),
                },
                None => CollectorResult {
                    name: name(p),
                    status: Status::Timeout,
                    duration_ms: ms,
                    detail: format!(
                        "no answer within {} (--pyheap-window); {after}",
                        crate::config::units::format_duration(self.settings.window)
                    ),
                },
            });
        }
        asked.results.sort_by(|a, b| a.name.cmp(&b.name));
        asked.results
    }

    /// Take the connections waiting on the socket: a process that was asked and has not
    /// connected yet is told the terms; any other is dropped unread. The socket's name can be
    /// read in /proc/net/unix and any local user may connect: a stream of strangers'
    /// connections must not keep guard here past the window (the deadline is checked between
    /// them).
    fn accept_all(
        &self,
        l: &UnixListener,
        asked: &mut Asked,
        conns: &mut Vec<Conn>,
        deadline: Instant,
    ) {
        while let (true, Ok((stream, _))) = (Instant::now() < deadline, l.accept()) {
            let Ok(cred) =
                nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
            else {
                continue;
            };
            let pid = cred.pid();
            if !asked.pending.contains(&pid) || conns.iter().any(|c| c.pid == pid) {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let line = format!(
                "{PYHEAP_FORMAT} live={} budget={} window_ms={}\n",
                u8::from(asked.terms.live),
                asked.terms.budget,
                left.as_millis()
            );
            // A few dozen bytes into an empty socket buffer: the write does not block.
            if stream.set_nonblocking(true).is_err()
                || (&stream).write_all(line.as_bytes()).is_err()
            {
                continue;
            }
            conns.push(Conn {
                pid,
                stream,
                data: Vec::new(),
            });
        }
    }

    /// Read what `c` has sent so far; at its end, the answer checked and written into the
    /// bundle (one result for the process).
    fn read_some(
        &self,
        c: &mut Conn,
        asked: &mut Asked,
        w: &BundleWriter,
    ) -> Option<CollectorResult> {
        let mut buf = [0u8; 64 << 10];
        loop {
            match (&c.stream).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    c.data.extend_from_slice(&buf[..n]);
                    if c.data.len() as u64 > MAX_ANSWER {
                        asked.pending.remove(&c.pid);
                        return Some(self.failed(
                            c.pid,
                            asked,
                            format!(
                                "the answer is larger than {}",
                                crate::config::units::format_size(MAX_ANSWER)
                            ),
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    asked.pending.remove(&c.pid);
                    return Some(self.failed(c.pid, asked, format!("reading the answer: {e}")));
                }
            }
        }
        asked.pending.remove(&c.pid);
        if c.data.is_empty() {
            return Some(self.failed(
                c.pid,
                asked,
                "the process closed the connection without an answer".to_string(),
            ));
        }
        Some(self.answer(c.pid, &c.data, asked, w))
    }

    fn failed(&self, pid: i32, asked: &Asked, detail: String) -> CollectorResult {
        CollectorResult {
            name: name(pid),
            status: Status::Failed,
            duration_ms: asked.started.elapsed().as_secs_f64() * 1000.0,
            detail,
        }
    }

    /// One process's whole answer: checked, written into the bundle.
    fn answer(&self, pid: i32, data: &[u8], asked: &Asked, w: &BundleWriter) -> CollectorResult {
        let mut heap = match checked(data, pid) {
            Ok(h) => h,
            Err(why) => return self.failed(pid, asked, why),
        };
        let rel = format!("processes/{pid}/pyheap.json");
        heap.pid = pid;
        let json = serde_json::to_vec_pretty(&heap).unwrap_or_default();
        if let Err(e) = w.write(&rel, &json) {
            return self.failed(pid, asked, format!("cannot write {rel}: {e}"));
        }
        CollectorResult {
            name: name(pid),
            status: if heap.error.is_some() {
                Status::Failed
            } else {
                Status::Ok
            },
            duration_ms: asked.started.elapsed().as_secs_f64() * 1000.0,
            detail: detail(&heap, &rel),
        }
    }
}

/// Wait up to `wait` for any of `fds` to be readable; which are (None: none within `wait`).
fn poll_ready(mut fds: Vec<nix::poll::PollFd<'_>>, wait: Duration) -> Option<Vec<bool>> {
    let ms = nix::poll::PollTimeout::try_from(wait.as_millis().max(1) as i32)
        .unwrap_or(nix::poll::PollTimeout::ZERO);
    if nix::poll::poll(&mut fds, ms).unwrap_or(0) <= 0 {
        return None;
    }
    Some(
        fds.iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect(),
    )
}

/// Tell the censuses still running that guard gave up (its end of each connection shut), and
/// wait up to GIVE_UP_WAIT for them to close theirs: they stop at their next check.
fn give_up(mut conns: Vec<Conn>) {
    for c in &conns {
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
    }
    let until = Instant::now() + GIVE_UP_WAIT;
    while !conns.is_empty() {
        let now = Instant::now();
        if now >= until {
            break;
        }
        let fds: Vec<_> = conns
            .iter()
            .map(|c| nix::poll::PollFd::new(c.stream.as_fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        let Some(ready) = poll_ready(fds, until - now) else {
            break;
        };
        let mut buf = [0u8; 4096];
        let mut i = 0;
        conns.retain(|c| {
            let keep = !ready[i] || !matches!((&c.stream).read(&mut buf), Ok(0) | Err(_));
            i += 1;
            keep
        });
    }
}

fn name(pid: i32) -> String {
    format!("pyheap:{pid}")
}

fn not_hooked(pid: i32) -> CollectorResult {
    CollectorResult::skipped(
        &name(pid),
        "guard's Python hook is not loaded in this process (started with python -E, -I or -S, \
         a PYTHONPATH of its own, Python before 3.6, or the program handles the signal itself)",
    )
}

/// The collector's line: what was counted, what it cost, the top finding.
fn detail(h: &PyHeap, rel: &str) -> String {
    if let Some(e) = &h.error {
        return format!("the census failed inside the process: {e}");
    }
    let mut s = format!(
        "{rel}: {} objects in {:.0} ms, its own memory +{} (Python {})",
        crate::config::units::format_count(h.objects),
        h.duration_ms,
        crate::config::units::format_size(h.hwm_growth_bytes),
        h.python
    );
    if !h.complete {
        s.push_str("; cut short by its deadline");
    }
    if let Some(top) = h.by_size.first() {
        s.push_str(&format!(
            "; largest: {} \u{d7}{} ({})",
            top.type_name,
            crate::config::units::format_count(top.count),
            crate::config::units::format_size(top.bytes)
        ));
    }
    s
}

/// Limits on what an answer may carry (guard writes what it checked, not what it was sent).
const MAX_ROWS: usize = 50;
const MAX_PATHS: usize = 10;
const MAX_LABELS: usize = 64;
const MAX_TEXT: usize = 300;

/// Parse and bound an answer from `pid`.
fn checked(data: &[u8], pid: i32) -> Result<PyHeap, String> {
    let mut h: PyHeap = serde_json::from_slice(data)
        .map_err(|e| format!("the answer is not a {PYHEAP_FORMAT} document: {e}"))?;
    if h.format != PYHEAP_FORMAT {
        return Err(format!(
            "the answer's format is '{}', not {PYHEAP_FORMAT}",
            text(&h.format)
        ));
    }
    if h.pid != 0 && h.pid != pid {
        return Err(format!(
            "the answer names pid {}, but came from {pid}",
            h.pid
        ));
    }
    h.python = text(&h.python);
    h.implementation = text(&h.implementation);
    h.error = h.error.as_deref().map(text);
    h.notes = h.notes.iter().take(10).map(|n| text(n)).collect();
    for rows in [&mut h.by_size, &mut h.by_count] {
        rows.truncate(MAX_ROWS);
        for r in rows.iter_mut() {
            r.type_name = text(&r.type_name);
        }
    }
    h.paths.truncate(MAX_PATHS);
    for p in &mut h.paths {
        p.type_name = text(&p.type_name);
        p.path = labels(&p.path);
        p.root = p.root.as_deref().map(text);
        p.others.truncate(4);
        p.others = p.others.iter().map(|o| labels(o)).collect();
    }
    if let Some(a) = &mut h.allocated {
        a.lines.truncate(MAX_ROWS);
        for l in &mut a.lines {
            l.at = text(&l.at);
            l.file = text(&l.file);
        }
        a.skipped = a.skipped.as_deref().map(text);
    }
    if let Some(g) = &mut h.gc {
        g.thresholds.truncate(4);
        g.counts.truncate(4);
    }
    h.phases_ms = std::mem::take(&mut h.phases_ms)
        .into_iter()
        .take(10)
        .map(|(k, v)| (text(&k), v))
        .collect();
    Ok(h)
}

fn labels(path: &[String]) -> Vec<String> {
    path.iter().take(MAX_LABELS).map(|l| text(l)).collect()
}

/// A string from the job: control characters escaped, at most MAX_TEXT characters.
fn text(s: &str) -> String {
    let mut t: String = s.chars().take(MAX_TEXT).collect();
    if s.chars().count() > MAX_TEXT {
        t.push('\u{2026}');
    }
    crate::format::escape_controls(&t, false).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    /// The value of `key` in an `execve` environment.
    fn env_value(environ: &[CString], key: &str) -> Option<OsString> {
        let prefix = format!("{key}=");
        environ.iter().find_map(|e| {
            e.as_bytes()
                .strip_prefix(prefix.as_bytes())
                .map(|v| OsString::from_vec(v.to_vec()))
        })
    }

    #[test]
    fn the_hook_directory_is_made_checked_and_its_files_restored() {
        // As the user this test runs as: XDG_RUNTIME_DIR or /tmp/guard-UID.
        let uid = nix::unistd::geteuid().as_raw();
        let dir = hook_dir(uid).unwrap();
        assert!(dir.ends_with(format!("pyhook-{CONTENT_HASH:016x}")));
        let site = dir.join("sitecustomize.py");
        assert_eq!(std::fs::read_to_string(&site).unwrap(), SITECUSTOMIZE);
        std::fs::write(&site, "tampered").unwrap();
        assert_eq!(hook_dir(uid).unwrap(), dir);
        assert_eq!(std::fs::read_to_string(&site).unwrap(), SITECUSTOMIZE);
        // Same length, but others may write it: read, compared, rewritten, 0644/0600 again.
        use std::os::unix::fs::PermissionsExt;
        let same_len = "#".repeat(SITECUSTOMIZE.len());
        std::fs::write(&site, &same_len).unwrap();
        std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o666)).unwrap();
        hook_dir(uid).unwrap();
        assert_eq!(std::fs::read_to_string(&site).unwrap(), SITECUSTOMIZE);
        let mode = std::fs::metadata(&site).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "{mode:o}");
        // A symlink in a file's place is replaced, not followed.
        let census = dir.join("_guard_pyheap.py");
        let target = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(target.path(), "x".repeat(CENSUS.len())).unwrap();
        std::fs::remove_file(&census).unwrap();
        std::os::unix::fs::symlink(target.path(), &census).unwrap();
        hook_dir(uid).unwrap();
        assert!(!std::fs::symlink_metadata(&census).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&census).unwrap(), CENSUS);
        assert_eq!(
            std::fs::read_to_string(target.path()).unwrap(),
            "x".repeat(CENSUS.len())
        );
    }

    #[test]
    fn every_entry_of_the_hook_tree_must_be_guards_own() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let open = || openat(nix::fcntl::AT_FDCWD, d.path(), SUBDIR, Mode::empty()).unwrap();
        let check = || check_tree(&open(), d.path(), uid, 1);
        ensure_pycache(&open(), d.path(), 0o755).unwrap();
        let cache = d.path().join("__pycache__");
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "made whatever the umask");
        std::fs::write(cache.join("a.cpython-311.pyc"), "x").unwrap();
        std::fs::write(d.path().join("sitecustomize.py"), "x").unwrap();
        check().unwrap();
        let pyc = cache.join("a.cpython-311.pyc");
        std::fs::set_permissions(&pyc, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = check().unwrap_err().to_string();
        assert!(
            e.contains("a.cpython-311.pyc may be written by others (mode 666)"),
            "{e}"
        );
        std::fs::remove_file(&pyc).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &pyc).unwrap();
        let e = check().unwrap_err().to_string();
        assert!(e.contains("is not a regular file"), "{e}");
        std::fs::remove_file(&pyc).unwrap();
        std::fs::create_dir(cache.join("deeper")).unwrap();
        let e = check().unwrap_err().to_string();
        assert!(
            e.contains("deeper is a directory guard did not make"),
            "{e}"
        );
        std::fs::remove_dir(cache.join("deeper")).unwrap();
        check().unwrap();
        if uid == 0 {
            std::os::unix::fs::chown(&cache, Some(64123), None).unwrap();
            let e = check().unwrap_err().to_string();
            assert!(e.contains("__pycache__ is owned by uid 64123"), "{e}");
        }
    }

    #[test]
    fn the_environment_puts_the_hook_first_and_keeps_the_rest() {
        let hook = Hook {
            dir: "/run/guard/pyhook-1".into(),
            sock: "guard-pyheap-1-2".into(),
            signal: 58,
            window: Duration::from_millis(1500),
            tracemalloc: None,
        };
        let env = hook.environ();
        let pp = env_value(&env, "PYTHONPATH").unwrap();
        assert!(pp.as_bytes().starts_with(b"/run/guard/pyhook-1"));
        assert_eq!(
            env_value(&env, ENV).unwrap(),
            "guard-pyheap-1-2:58:1500:/run/guard/pyhook-1"
        );
        assert!(env_value(&env, "PATH").is_some());
        assert_eq!(
            env.iter()
                .filter(|e| e.as_bytes().starts_with(b"PYTHONPATH="))
                .count(),
            1
        );
    }

    #[test]
    fn answers_are_checked_and_bounded() {
        let long = "x".repeat(1000);
        let doc = serde_json::json!({
            "format": PYHEAP_FORMAT, "pid": 7, "python": "3.11.7", "objects": 10,
            "by_size": [{"type": format!("evil\u{1b}[2J{long}"), "count": 1, "bytes": 2}],
            "paths": [{"type": "bytes", "path": vec!["a"; 100], "root": "local"}],
            "unknown_field": 1
        });
        let h = checked(&serde_json::to_vec(&doc).unwrap(), 7).unwrap();
        assert!(h.by_size[0].type_name.starts_with("evil\\x1b[2J"));
        assert!(h.by_size[0].type_name.chars().count() <= MAX_TEXT + 8);
        assert_eq!(h.paths[0].path.len(), MAX_LABELS);
        assert!(checked(&serde_json::to_vec(&doc).unwrap(), 8).is_err());
        assert!(checked(b"{\"format\":\"other\"}", 7).is_err());
        assert!(checked(b"not json", 7).is_err());
    }

    #[test]
    fn sigcgt_decides_who_is_asked() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("5")).unwrap();
        // Bit 58 (value 1 << 57) and SIGINT (bit 2).
        std::fs::write(
            d.path().join("5/status"),
            "Name:\tpython3\nSigCgt:\t0200000000000002\n",
        )
        .unwrap();
        assert!(handles(d.path(), 5, 58));
        assert!(handles(d.path(), 5, 2));
        assert!(!handles(d.path(), 5, 57));
        assert!(!handles(d.path(), 6, 58));
        // The announcement: the hook's file among its descriptors.
        let hook = d.path().join("_guard_hook.py");
        std::fs::create_dir(d.path().join("5/fd")).unwrap();
        std::os::unix::fs::symlink("/dev/null", d.path().join("5/fd/0")).unwrap();
        assert!(!announced(d.path(), 5, &hook));
        std::os::unix::fs::symlink(&hook, d.path().join("5/fd/3")).unwrap();
        assert!(announced(d.path(), 5, &hook));
        assert!(!announced(d.path(), 6, &hook));
    }

    #[test]
    fn the_headroom_is_a_share_of_the_cap_and_at_least_32_mib() {
        let s = Settings {
            window: DEFAULT_WINDOW,
            headroom: None,
            tracemalloc: None,
        };
        assert_eq!(s.headroom_for(100 << 20), MIN_HEADROOM);
        assert_eq!(s.headroom_for(2 << 30), (2u64 << 30) / 100 * 5);
        let s = Settings {
            headroom: Some(1 << 20),
            ..s
        };
        assert_eq!(s.headroom_for(2 << 30), 1 << 20);
    }
}
