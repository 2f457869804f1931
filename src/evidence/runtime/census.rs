//! The census conversation every runtime shares (guard(1), PYTHON HEAP CENSUS, NODE.JS HEAP
//! CENSUS): signal the job's hooked processes, accept each one's connection on guard's socket
//! (abstract, or a file in guard's runtime directory for a runtime that cannot reach abstract
//! names; checked against the pid that made it) and tell it the terms (held or running, its
//! memory budget, the time left), take its answer (bounded in size and time), have the process's
//! runtime check it, and write it into the bundle as `processes/<pid>/<runtime file>`; closing a
//! connection is how guard gives up. What a runtime adds — which processes are its own, its
//! hook, its answer's format — is in [`super::Runtime`].

use super::{Runtime, hookdir};
use crate::evidence::bundle::BundleWriter;
use crate::format::{CollectorResult, Status};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::config::census::Settings;

/// The size of `sockaddr_un.sun_path`.
pub const SUN_PATH: usize = 108;
/// The largest answer guard reads (a census is tens of kilobytes).
const MAX_ANSWER: u64 = 4 << 20;

/// A runtime's hook as the census sees it: the signal that asks its processes, and the file a
/// hooked process keeps open to say so.
#[derive(Debug, Clone)]
pub struct Asking {
    pub runtime: Runtime,
    pub signal: i32,
    pub announcement: PathBuf,
    /// Where its processes connect when not to the abstract name: a socket file guard makes in
    /// its own runtime directory (Node.js 18's libuv cuts an abstract name at its leading NUL).
    pub socket: Option<PathBuf>,
}

/// The census side of a run: the runtimes hooked, guard's socket name (in each hook's
/// environment), and the socket once a census was asked for.
#[derive(Debug)]
pub struct Census {
    pub settings: Settings,
    sock: String,
    hooks: Vec<Asking>,
    /// The abstract name and the socket files the hooks connect to, once bound.
    listeners: Vec<UnixListener>,
    /// The socket files guard made (removed when the census ends), with their inode.
    files: Vec<(PathBuf, u64)>,
}

/// The processes a census can ask (with their runtime), and those of a hooked runtime that do
/// not carry its hook.
pub type Candidates = (Vec<(i32, Runtime)>, Vec<(i32, Runtime)>);

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
    pending: BTreeMap<i32, Runtime>,
    results: Vec<CollectorResult>,
}

/// One process's census connection: accepted, told the terms, its answer read as it comes.
struct Conn {
    pid: i32,
    runtime: Runtime,
    stream: std::os::unix::net::UnixStream,
    data: Vec<u8>,
}

/// How long guard waits, once it gives up on a census, for the process to close its end (the
/// census stops at its next check, within 50 ms) before the job is frozen or killed — so that
/// stacks read after it do not show the census.
const GIVE_UP_WAIT: Duration = Duration::from_millis(150);

impl Census {
    /// A census for `hooks` (their environments name `sock`: [`Census::socket_name`]).
    pub fn new(settings: Settings, sock: String, hooks: Vec<Asking>) -> Census {
        Census {
            settings,
            sock,
            hooks,
            listeners: Vec::new(),
            files: Vec::new(),
        }
    }

    /// A socket name for this run's census: `guard-census-PID-RANDOM`, in the abstract namespace.
    pub fn socket_name() -> String {
        format!(
            "guard-census-{}-{:016x}",
            std::process::id(),
            crate::os::random_u64()
        )
    }

    /// The runtimes whose hook this census asks.
    pub fn runtimes(&self) -> impl Iterator<Item = Runtime> + '_ {
        self.hooks.iter().map(|h| h.runtime)
    }

    /// The processes of the hooked runtimes among `pids` (the largest first, at most 8 of each),
    /// and which of them carry the hook (they handle its signal and keep its file open). None
    /// when there is no such process.
    pub fn candidates(&self, proc: &Path, pids: &[i32]) -> Option<Candidates> {
        let mut hooked = Vec::new();
        let mut not = Vec::new();
        for h in &self.hooks {
            for p in h.runtime.pids(proc, pids) {
                if hookdir::handles(proc, p, h.signal)
                    && hookdir::announced(proc, p, &h.announcement)
                {
                    hooked.push((p, h.runtime));
                } else {
                    not.push((p, h.runtime));
                }
            }
        }
        (!hooked.is_empty() || !not.is_empty()).then_some((hooked, not))
    }

    /// Ask the `hooked` processes for a census (the signal; guard's socket bound first). The
    /// others get a `skipped` result saying why.
    pub fn ask(
        &mut self,
        hooked: &[(i32, Runtime)],
        not: &[(i32, Runtime)],
        terms: Terms,
    ) -> Asked {
        let mut asked = Asked {
            started: Instant::now(),
            terms,
            pending: BTreeMap::new(),
            results: not
                .iter()
                .map(|&(p, r)| CollectorResult::skipped(&r.collector_name(p), r.not_hooked()))
                .collect(),
        };
        if hooked.is_empty() {
            return asked;
        }
        if let Err(e) = self.bind() {
            asked
                .results
                .extend(hooked.iter().map(|&(p, r)| CollectorResult {
                    name: r.collector_name(p),
                    status: Status::Failed,
                    duration_ms: 0.0,
                    detail: format!("cannot listen for the answer: {e}"),
                }));
            return asked;
        }
        for &(p, r) in hooked {
            let signal = self
                .hooks
                .iter()
                .find(|h| h.runtime == r)
                .map_or(0, |h| h.signal);
            // nix's Signal has no real-time signals.
            // SAFETY: kill takes a pid and a signal number; it touches no memory of ours.
            if signal > 0 && unsafe { libc::kill(p, signal) } == 0 {
                asked.pending.insert(p, r);
            } else {
                asked.results.push(CollectorResult {
                    name: r.collector_name(p),
                    status: Status::Failed,
                    duration_ms: 0.0,
                    detail: format!("cannot signal the process: {}", io::Error::last_os_error()),
                });
            }
        }
        asked
    }

    fn bind(&mut self) -> io::Result<()> {
        if !self.listeners.is_empty() {
            return Ok(());
        }
        if self.hooks.iter().any(|h| h.socket.is_none()) {
            let name = SocketAddr::from_abstract_name(self.sock.as_bytes())?;
            self.listeners.push(UnixListener::bind_addr(&name)?);
        }
        let paths: Vec<PathBuf> = self.hooks.iter().filter_map(|h| h.socket.clone()).collect();
        for path in paths {
            let l = UnixListener::bind(&path).map_err(|e| with_path(e, &path))?;
            let ino = std::fs::symlink_metadata(&path).map_err(|e| with_path(e, &path))?;
            self.files.push((path.clone(), ino.ino()));
            // Any process of the job may connect, whichever user it became (the directory is
            // guard's, 0755 as root): who connected is checked by its pid, as on the abstract
            // name, which any local user can reach as well.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
                .map_err(|e| with_path(e, &path))?;
            self.listeners.push(l);
        }
        for l in &self.listeners {
            l.set_nonblocking(true)?;
        }
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
        let listening = self.listeners.len();
        while !asked.pending.is_empty() && listening > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Some(why) = stop() {
                stopped = Some(why);
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(20));
            let mut fds: Vec<_> = self
                .listeners
                .iter()
                .map(|l| nix::poll::PollFd::new(l.as_fd(), nix::poll::PollFlags::POLLIN))
                .collect();
            fds.extend(
                conns.iter().map(|c| {
                    nix::poll::PollFd::new(c.stream.as_fd(), nix::poll::PollFlags::POLLIN)
                }),
            );
            let Some(ready) = poll_ready(fds, wait) else {
                continue;
            };
            for (l, _) in self.listeners.iter().zip(&ready).filter(|(_, r)| **r) {
                self.accept_all(l, &mut asked, &mut conns, deadline);
            }
            let mut i = 0;
            for r in ready[listening..].iter() {
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
        for (&p, r) in &asked.pending {
            asked.results.push(match &stopped {
                Some(why) => CollectorResult {
                    name: r.collector_name(p),
                    status: Status::Failed,
                    duration_ms: ms,
                    detail: format!("stopped after {ms:.0} ms: {why}"),
                },
                None => CollectorResult {
                    name: r.collector_name(p),
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
            let Some(&runtime) = asked.pending.get(&pid) else {
                continue;
            };
            if conns.iter().any(|c| c.pid == pid) {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let line = format!(
                "{} live={} budget={} window_ms={}\n",
                runtime.format(),
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
                runtime,
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
                            (c.pid, c.runtime),
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
                    return Some(self.failed(
                        (c.pid, c.runtime),
                        asked,
                        format!("reading the answer: {e}"),
                    ));
                }
            }
        }
        asked.pending.remove(&c.pid);
        if c.data.is_empty() {
            return Some(self.failed(
                (c.pid, c.runtime),
                asked,
                "the process closed the connection without an answer".to_string(),
            ));
        }
        Some(self.answer((c.pid, c.runtime), &c.data, asked, w))
    }

    fn failed(&self, (pid, r): (i32, Runtime), asked: &Asked, detail: String) -> CollectorResult {
        CollectorResult {
            name: r.collector_name(pid),
            status: Status::Failed,
            duration_ms: asked.started.elapsed().as_secs_f64() * 1000.0,
            detail,
        }
    }

    /// One process's whole answer: checked by its runtime, written into the bundle.
    fn answer(
        &self,
        (pid, r): (i32, Runtime),
        data: &[u8],
        asked: &Asked,
        w: &BundleWriter,
    ) -> CollectorResult {
        let a = match r.check(data, pid) {
            Ok(a) => a,
            Err(why) => return self.failed((pid, r), asked, why),
        };
        let rel = format!("processes/{pid}/{}", r.file());
        if let Err(e) = w.write(&rel, &a.json) {
            return self.failed((pid, r), asked, format!("cannot write {rel}: {e}"));
        }
        let (status, detail) = match a.error {
            Some(e) => (
                Status::Failed,
                format!("the census failed inside the process: {e}"),
            ),
            None => (Status::Ok, format!("{rel}: {}", a.summary)),
        };
        CollectorResult {
            name: r.collector_name(pid),
            status,
            duration_ms: asked.started.elapsed().as_secs_f64() * 1000.0,
            detail,
        }
    }
}

/// The socket files guard made go with the census; a file that is no longer the one guard bound
/// (another inode) is left alone.
impl Drop for Census {
    fn drop(&mut self) {
        for (path, ino) in &self.files {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
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
