//! Signals, job control and cleanup of processes, driven through the real binary with the
//! `sigprint` helper (prints each signal it gets). These run in any enforcement mode.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The longest any step of these tests waits for guard or the job (guard's own bounds are far
/// shorter): a broken guard fails the test instead of hanging the suite.
const LIMIT: Duration = Duration::from_secs(30);

/// The job's stdout line by line, read on a thread of its own, so that no read blocks past LIMIT.
struct Lines(Receiver<String>);

impl Lines {
    fn new(out: ChildStdout) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l.trim().to_string()).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// The next line.
    fn next(&self) -> String {
        self.0
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("no line from the job within {LIMIT:?} ({e})"))
    }

    /// Every line until the end of the output (the job and guard are gone).
    fn rest(&self) -> String {
        let mut rest = String::new();
        loop {
            match self.0.recv_timeout(LIMIT) {
                Ok(l) => {
                    rest.push_str(&l);
                    rest.push('\n');
                }
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => panic!("the output did not end within {LIMIT:?}"),
            }
        }
    }
}

/// All of `r` until its end, within LIMIT.
fn read_all(mut r: impl Read + Send + 'static) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|e| panic!("the stream did not end within {LIMIT:?} ({e})"))
}

fn start_sigprint(guard_args: &[&str], job_args: &[&str]) -> (Reaper, Lines, u32) {
    use std::os::unix::process::CommandExt;
    let sp = example("sigprint");
    let mut child = guard_cmd()
        // guard gets a process group of its own whose parent (this test) is in another group of
        // the same session, as under a job-control shell. Otherwise the group may be orphaned,
        // and the kernel discards SIGTSTP sent into an orphaned group.
        .process_group(0)
        .args(guard_args)
        .arg("--")
        .arg(sp)
        .args(job_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::new(child.stdout.take().unwrap());
    let g = Reaper(Some(child));
    let ready = out.next();
    let pid: u32 = ready
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .expect("ready PID line");
    (g, out, pid)
}

fn state(pid: u32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s[i + 2..].chars().next()))
        .unwrap_or('?')
}

#[test]
fn signals_sent_to_guard_reach_the_child_once_each() {
    let (mut g, out, _job) = start_sigprint(&["--memory", "256M"], &[]);
    for (sig, name) in [
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGCONT, "SIGCONT"),
    ] {
        send(g.id(), sig);
        assert_eq!(out.next(), name);
    }
    send(g.id(), libc::SIGTERM);
    assert_eq!(out.next(), "SIGTERM");
    let st = g.wait();
    assert_eq!(st.code(), Some(0), "sigprint exits 0 on SIGTERM");
    assert_eq!(out.rest(), "", "no signal was delivered twice");
}

#[test]
fn kill_after_ends_a_job_that_ignores_sigterm() {
    let (mut g, out, job) = start_sigprint(&["--kill-after", "300ms"], &["--ignore-term"]);
    let t0 = Instant::now();
    send(g.id(), libc::SIGTERM);
    assert_eq!(out.next(), "SIGTERM");
    let err = g.stderr();
    let st = g.wait();
    let took = t0.elapsed();
    assert_eq!(
        st.code(),
        Some(137),
        "killed by SIGKILL after the grace period"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    let err = read_all(err);
    assert!(
        err.contains("still running 300ms after a terminating signal"),
        "{err}"
    );
    assert!(!err.contains("exceeded"), "not a memory kill: {err}");
    assert!(!pid_alive(job as i32));
}

#[test]
fn ctrl_z_stops_guard_with_the_job_and_cont_resumes_both() {
    // As dumb-init's own tests check: SIGTSTP, SIGTTIN and SIGTTOU sent to the wrapper suspend
    // the job and the wrapper; SIGCONT resumes both (issue 24, item 2).
    let (mut g, out, job) = start_sigprint(&[], &[]);
    for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        send(g.id(), sig);
        assert!(
            wait_until(Duration::from_secs(5), || state(job) == 'T'
                && state(g.id()) == 'T'),
            "signal {sig}: job {} guard {}",
            state(job),
            state(g.id())
        );
        send(g.id(), libc::SIGCONT);
        assert_eq!(out.next(), "SIGCONT");
        assert!(wait_until(Duration::from_secs(5), || state(job) != 'T'
            && state(g.id()) != 'T'));
    }
    send(g.id(), libc::SIGTERM);
    assert_eq!(out.next(), "SIGTERM");
    assert_eq!(g.wait().code(), Some(0));
}

/// A pseudo-terminal: the master side we type into and read from.
struct Pty {
    master: std::fs::File,
    slave_path: std::ffi::CString,
    buf: String,
}

impl Pty {
    fn open() -> Pty {
        use std::os::fd::FromRawFd;
        // SAFETY: plain libc pty calls; every return value is checked before use.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(m >= 0, "posix_openpt");
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
            let slave_path = std::ffi::CStr::from_ptr(name.as_ptr()).to_owned();
            Pty {
                master: std::fs::File::from_raw_fd(m),
                slave_path,
                buf: String::new(),
            }
        }
    }

    /// Start `cmd` as the session leader with this terminal as its controlling terminal.
    fn spawn(&self, cmd: &mut std::process::Command) -> Child {
        use std::os::unix::process::CommandExt;
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(std::str::from_utf8(self.slave_path.to_bytes()).unwrap())
            .unwrap();
        // NOFLSH: a ^C must not discard output already queued (guard's own line, a newline),
        // or what the tests read depends on who wrote first.
        // SAFETY: tcgetattr/tcsetattr on an open terminal fd with a zeroed termios we own.
        unsafe {
            use std::os::fd::AsRawFd;
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut t), 0);
            t.c_lflag |= libc::NOFLSH;
            assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t), 0);
        }
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: setsid and ioctl(TIOCSCTTY) are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    /// Read from the terminal until `pred(everything read so far)` holds (or panic after 10 s).
    fn read_until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        use std::os::fd::AsRawFd;
        let end = Instant::now() + Duration::from_secs(10);
        while !pred(&self.buf) {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; terminal showed: {:?}",
                self.buf
            );
            let mut pfd = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                continue;
            }
            let mut chunk = [0u8; 4096];
            match self.master.read(&mut chunk) {
                Ok(0) | Err(_) => break, // EIO: every slave fd is closed
                Ok(n) => self.buf.push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
        self.buf.clone()
    }
}

/// Kills a spawned guard if the test fails before waiting for it (so a failed test leaves no
/// processes behind).
struct Reaper(Option<Child>);

impl Reaper {
    fn id(&self) -> u32 {
        self.0.as_ref().expect("not waited yet").id()
    }

    /// guard's stderr (piped), to read once it has ended.
    fn stderr(&mut self) -> std::process::ChildStderr {
        let c = self.0.as_mut().expect("not waited yet");
        c.stderr.take().expect("stderr is piped")
    }

    /// guard's exit status, within LIMIT.
    fn wait(&mut self) -> std::process::ExitStatus {
        self.wait_timeout(LIMIT)
            .unwrap_or_else(|| panic!("guard did not end within {LIMIT:?}"))
    }

    fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        let c = self.0.as_mut().expect("not waited yet");
        while Instant::now() < end {
            if let Some(st) = c.try_wait().unwrap() {
                self.0 = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Closing the terminal sends SIGHUP to guard alone when guard leads the session (script -c,
/// setsid, a container's PID 1 with a tty): guard must pass it on, or the job never hears it.
#[test]
fn terminal_hangup_reaches_the_job_when_guard_leads_the_session() {
    let mut pty = Pty::open();
    let mut cmd = guard_cmd();
    cmd.args(["--", "sh", "-c", "echo ready; exec sleep 300"]);
    let mut g = Reaper(Some(pty.spawn(&mut cmd)));
    pty.read_until("ready", |t| t.contains("ready"));
    drop(pty); // hang up
    let st = g
        .wait_timeout(Duration::from_secs(5))
        .expect("guard did not end after the hangup");
    assert_eq!(st.code(), Some(128 + libc::SIGHUP));
}

/// Issue 24, item 2: with --pgroup at a terminal (`docker run -it`), the job's own group takes
/// the terminal's foreground, so a job that reads the terminal gets its input (before: stopped
/// by SIGTTIN, guard stopped with it, everything hung), a Ctrl-C reaches it once, and guard
/// takes the terminal back when it ends.
#[test]
fn with_pgroup_at_a_terminal_the_job_reads_it_and_gets_its_keys() {
    let mut pty = Pty::open();
    let mut cmd = guard_cmd();
    cmd.args(["--pgroup", "--", "sh", "-c"]).arg(
        "echo ready; read line; echo got:$line; trap 'echo INT; exit 7' INT; \
         echo armed; while :; do sleep 0.1; done",
    );
    let mut g = Reaper(Some(pty.spawn(&mut cmd)));
    pty.read_until("ready", |t| t.contains("ready"));
    pty.master.write_all(b"hello\n").unwrap();
    pty.read_until("the job's read", |t| t.contains("got:hello"));
    pty.read_until("the trap", |t| t.contains("armed"));
    pty.master.write_all(&[3]).unwrap(); // ^C: SIGINT to the terminal's foreground group
    let shown = pty.read_until("SIGINT", |t| t.contains("INT\r\n") || t.contains("INT\n"));
    let st = g.wait();
    assert_eq!(st.code(), Some(7), "the job's own status: {shown:?}");
}

/// A Ctrl-C typed at a terminal reaches the job once: from the kernel, not again from guard.
#[test]
fn terminal_ctrl_c_reaches_the_job_once() {
    let mut pty = Pty::open();
    let mut cmd = guard_cmd();
    cmd.args(["-vv", "--"]).arg(example("sigprint"));
    let mut g = Reaper(Some(pty.spawn(&mut cmd)));
    // The whole line, newline included: ^C flushes the terminal's pending output, and a newline
    // still queued would be lost, gluing the job's next line to this one.
    let text = pty.read_until("ready", |t| {
        t.find("ready ").is_some_and(|i| t[i..].contains('\n'))
    });
    let job: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("ready ").and_then(|p| p.trim().parse().ok()))
        .expect("ready PID");
    pty.master.write_all(&[3]).unwrap(); // ^C through the line discipline: SIGINT to the foreground group
    // The terminal echoes ^C in front of the job's next output, or after it when the job is
    // quicker than the echo ("SIGINT^C"): the echo is dropped wherever it lands.
    let lines = |t: &str| {
        t.lines()
            .map(|l| l.replace("^C", "").trim().to_string())
            .collect::<Vec<_>>()
    };
    pty.read_until("SIGINT", |t| lines(t).iter().any(|l| l == "SIGINT"));
    std::thread::sleep(Duration::from_millis(300));
    send(job, libc::SIGTERM);
    let st = g.wait();
    let seen = lines(&pty.read_until("the end", |t| lines(t).iter().any(|l| l == "SIGTERM")));
    assert_eq!(st.code(), Some(0));
    assert_eq!(
        seen.iter().filter(|l| *l == "SIGINT").count(),
        1,
        "SIGINT delivered twice: {seen:?}"
    );
    // guard saw the terminal's copy and knew not to forward it (two copies can merge while
    // pending, so counting alone could pass by luck).
    assert!(
        seen.iter()
            .any(|l| l.contains("SIGINT from the terminal reached the job directly")),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("forwarding SIGINT")),
        "{seen:?}"
    );
}

#[test]
fn processes_left_behind_are_terminated_when_the_command_exits() {
    let o = guard_cmd()
        .args(["--", "sh", "-c", "sleep 300 & echo $!"])
        .stdin(Stdio::null())
        .bounded();
    assert_eq!(o.status.code(), Some(0));
    let pid: i32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "background sleep {pid} survived guard"
    );
}

#[test]
fn leftover_that_ignores_sigterm_is_killed_after_the_grace() {
    let t0 = Instant::now();
    let o = guard_cmd()
        .args([
            "--kill-after",
            "500ms",
            "--",
            "sh",
            "-c",
            "(trap '' TERM; sleep 300) & echo $!",
        ])
        .stdin(Stdio::null())
        .bounded();
    assert_eq!(o.status.code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(5));
    let pid: i32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "leftover {pid} survived guard"
    );
}

/// Issue 24, item 1: a graceful shutdown is not cut short. A job that drains for 15 s after
/// SIGTERM (longer than --kill-after's 10 s default) finishes and guard exits with its status,
/// as tini and dumb-init do: whoever sent the SIGTERM (docker stop, Kubernetes, systemd) owns
/// the escalation. Before: killed at ~10.7 s, exit 137.
#[test]
fn a_graceful_shutdown_longer_than_kill_after_is_not_cut_short() {
    let (mut g, out, _job) = start_sigprint(&[], &["--drain", "15"]);
    let t0 = Instant::now();
    send(g.id(), libc::SIGTERM);
    assert_eq!(out.next(), "SIGTERM");
    assert_eq!(out.next(), "draining");
    assert_eq!(out.next(), "drained", "the drain finished");
    let st = g.wait();
    assert_eq!(
        st.code(),
        Some(0),
        "the job's own status, after {:?}",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(15),
        "{:?}",
        t0.elapsed()
    );
}

/// Issue 24, item 4: COMMAND exits and leaves a descendant that ignores SIGTERM: guard still
/// leaves nothing behind, and exits soon after COMMAND — the leftovers get 0.5 s (not
/// --kill-after's 10 s) unless --kill-after is given. Before: ~11 s.
#[test]
fn a_leftover_costs_half_a_second_not_kill_after() {
    let t0 = Instant::now();
    let o = guard_cmd()
        .args(["--", "sh", "-c", "(trap '' TERM; exec sleep 300) & echo $!"])
        .stdin(Stdio::null())
        .bounded();
    let took = t0.elapsed();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The design: 0.5 s of grace, then SIGKILL and the reap; 3.5 s of margin for a busy machine
    // (--kill-after's 10 s default is well outside).
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let pid: i32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "leftover {pid} survived guard"
    );
}

/// Every signal 1-31 that a process can send, by name, as `kill -s NAME` sends it — except
/// SIGKILL and SIGSTOP (cannot be caught) and SIGCHLD (guard's own: a child ended).
fn every_catchable_signal() -> Vec<(i32, String)> {
    (1..32)
        .filter(|n| ![libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD].contains(n))
        .filter_map(|n| {
            nix::sys::signal::Signal::try_from(n)
                .ok()
                .map(|s| (n, s.as_str().to_string()))
        })
        .collect()
}

/// `kill -s NAME PID` (the kill program: procps' on the host, busybox's in the guests).
fn kill_s(name: &str, pid: u32) {
    let short = name.strip_prefix("SIG").unwrap_or(name);
    let o = std::process::Command::new("kill")
        .args(["-s", short, &pid.to_string()])
        .output()
        .expect("kill");
    assert!(o.status.success(), "kill -s {short} {pid}: {o:?}");
}

/// Issue 24, item 3: every catchable signal sent to guard reaches the job, once, and none kills
/// guard: before, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXFSZ, SIGIO or SIGSYS
/// killed guard (and so the job) with 128+N, and SIGPIPE, SIGALRM, SIGSTKFLT, SIGTTIN,
/// SIGTTOU, SIGURG, SIGXCPU, SIGVTALRM, SIGPROF and SIGPWR were dropped. SIGCHLD is guard's.
#[test]
fn every_signal_sent_with_kill_reaches_the_job_and_none_kills_guard() {
    for wrapper in [&[][..], &["--pgroup"][..]] {
        let (mut g, out, _job) = start_sigprint(wrapper, &["--all"]);
        // SIGTERM last: sigprint exits on it.
        for (_, name) in every_catchable_signal()
            .into_iter()
            .filter(|(n, _)| *n != libc::SIGTERM)
        {
            kill_s(&name, g.id());
            assert_eq!(out.next(), name, "{wrapper:?}: {name}");
        }
        kill_s("SIGCHLD", g.id());
        kill_s("SIGTERM", g.id());
        assert_eq!(
            out.next(),
            "SIGTERM",
            "{wrapper:?}: SIGCHLD is not forwarded"
        );
        let st = g.wait();
        assert_eq!(st.code(), Some(0), "{wrapper:?}: the job's own status");
        assert_eq!(out.rest(), "", "{wrapper:?}: nothing twice");
    }
}

/// The dispositions and mask a process had, from /proc/self/status (SigIgn, SigBlk), as `grep`
/// itself sees them — run directly and through guard from the same parent state.
fn signal_state_of(through_guard: bool, script: &str) -> (String, String) {
    use std::os::unix::process::CommandExt;
    let mut c = if through_guard {
        let mut c = guard_cmd();
        c.arg("--");
        c
    } else {
        std::process::Command::new("env")
    };
    c.args(["sh", "-c", script]);
    // SAFETY: between fork and exec in the test's child: only signal(2) and sigprocmask(2),
    // async-signal-safe, on a stack sigset.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGUSR1, libc::SIG_IGN);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR2);
            libc::sigaddset(&mut set, libc::SIGWINCH);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let o = c.stdin(Stdio::null()).bounded();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Issue 24, item 7: the job starts with exactly the ignored dispositions and the blocked mask
/// guard was started with, as under tini: before, guard reset SIGPIPE (and every inherited
/// SIG_IGN it touched) to the default and emptied the mask, so `yes | :` ended differently.
#[test]
fn the_job_inherits_the_signal_state_guard_was_given() {
    let status = "grep -E '^Sig(Ign|Blk)' /proc/self/status";
    let (direct, _) = signal_state_of(false, status);
    let (guarded, err) = signal_state_of(true, status);
    assert!(
        direct.contains("SigIgn") && direct.contains("SigBlk"),
        "{direct}"
    );
    assert_eq!(guarded, direct, "under guard: {err}");
    // With SIGPIPE ignored, yes gets EPIPE and says so, instead of dying of the signal.
    let yes = "yes | head -c 1 >/dev/null; echo done";
    let (direct, direct_err) = signal_state_of(false, yes);
    let (guarded, guarded_err) = signal_state_of(true, yes);
    assert_eq!(guarded, direct);
    assert!(direct_err.contains("Broken pipe"), "{direct_err}");
    assert_eq!(
        guarded_err, direct_err,
        "yes | head ends the same way under guard"
    );
}
