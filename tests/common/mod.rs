//! Shared helpers for the integration tests: paths of the real binaries, the privileged-test
//! gate, and small process utilities.
#![allow(dead_code)]

pub mod s3;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The guard binary under test: `GUARD_TEST_BIN` when set (the VM lane copies binaries into the
/// guest), else the one cargo built.
pub fn guard() -> PathBuf {
    std::env::var_os("GUARD_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_guard")))
}

/// A helper program from examples/ (built by `cargo test`; `GUARD_TEST_EXAMPLES` overrides the
/// directory).
pub fn example(name: &str) -> PathBuf {
    let dir = std::env::var_os("GUARD_TEST_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let bin = PathBuf::from(env!("CARGO_BIN_EXE_guard"));
            bin.parent().expect("target dir").join("examples")
        });
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run the tests through cargo test (it builds examples)",
        p.display()
    );
    p
}

pub fn guard_cmd() -> Command {
    let mut c = Command::new(guard());
    // Tests must not inherit a developer's GUARD_* settings.
    for (k, _) in std::env::vars() {
        if k.starts_with("GUARD_") && !k.starts_with("GUARD_TEST_") {
            c.env_remove(k);
        }
    }
    // Bundles of tests that do not look at them go to a scratch directory, not to the machine's
    // /var/lib/guard/evidence (tests that do look pass --evidence-dir).
    c.env("GUARD_EVIDENCE_DIR", scratch_evidence_dir());
    // Nor the machine's or the developer's config files: an empty config (tests of the config
    // files themselves remove this).
    c.env("GUARD_CONFIG", "/dev/null");
    c
}

/// A per-test-process scratch evidence directory.
pub fn scratch_evidence_dir() -> PathBuf {
    std::env::temp_dir().join(format!("guard-test-evidence-{}", std::process::id()))
}

/// Whether an outside tool the evidence tests use (py-spy, gcore, python3) is on PATH; if not,
/// `test skipped` — or a failure under GUARD_TEST_REQUIRE_TOOLS=1 (set by scripts/test on the
/// host, which installs them; the v2 guests have none of them).
pub fn tool(test: &str, name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    let reason = (!found).then(|| format!("{name} is not on PATH"));
    // The cgroup v2 guest that carries node requires it alone (tests/vm/run's node_cpio): it has
    // none of the other tools.
    if name == "node" && std::env::var("GUARD_TEST_REQUIRE_NODE").as_deref() == Ok("1") {
        return gate(test, reason, "GUARD_TEST_REQUIRE_NODE");
    }
    gate(test, reason, "GUARD_TEST_REQUIRE_TOOLS")
}

/// What `guard doctor --json` says about this machine.
pub fn doctor() -> serde_json::Value {
    let out = guard_cmd()
        .arg("doctor")
        .arg("--json")
        .output()
        .expect("run guard doctor");
    serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON")
}

/// True when the privileged suite can run here (root and a writable cgroup with the memory
/// controller). Otherwise prints `test skipped: <reason>` and returns false — unless
/// GUARD_TEST_REQUIRE_PRIVILEGED=1 (set by the project's test script when it runs as root, so CI
/// fails instead of skipping).
pub fn privileged(test: &str) -> bool {
    let d = doctor();
    let mode = d["mode"].as_str().unwrap_or("?").to_string();
    let euid = d["euid"].as_u64().unwrap_or(u64::MAX);
    let reason = if euid != 0 {
        Some(format!("not root (euid {euid})"))
    } else if mode == "poll" {
        Some(format!(
            "no writable cgroup with the memory controller: {}",
            d["reason"]
        ))
    } else {
        None
    };
    gate(test, reason, "GUARD_TEST_REQUIRE_PRIVILEGED")
}

/// Decide whether `test` runs: yes without a `reason` against it; otherwise print
/// `test skipped: <test>: <reason>` and return false — or fail when `require_var` is 1.
pub fn gate(test: &str, reason: Option<String>, require_var: &str) -> bool {
    let Some(r) = reason else { return true };
    if std::env::var(require_var).as_deref() == Ok("1") {
        panic!("{test}: cannot run here ({r}) but {require_var}=1");
    }
    println!("test skipped: {test}: {r}");
    false
}

/// The directory where this machine's job cgroups are created (from doctor).
pub fn job_base() -> PathBuf {
    let d = doctor();
    let job = d["job_cgroup"]
        .as_str()
        .expect("job_cgroup in doctor output");
    Path::new(job).parent().expect("parent").to_path_buf()
}

/// Every directory where this machine's job cgroups are created: the memory (or unified) base,
/// and on cgroup v1 the freezer base too.
pub fn job_bases() -> Vec<PathBuf> {
    let mut v = vec![job_base()];
    let d = doctor();
    if d["mode"] == "cgroup-v1" {
        if let Some(caps) = d["capabilities"].as_array() {
            for c in caps {
                if c["name"].as_str().is_some_and(|n| n.starts_with("freezer")) && c["ok"] == true {
                    v.push(PathBuf::from(
                        c["detail"].as_str().unwrap_or("/nonexistent"),
                    ));
                }
            }
        }
    }
    v
}

/// Job cgroups in `base` that belong to guard pid `pid`.
pub fn leaves_of(base: &Path, pid: u32) -> Vec<PathBuf> {
    let suffix = format!("-{pid}");
    // Not the cgroups tests make for themselves (`guardtest-...-<their pid>`): pids are reused
    // within a suite, and a test's pid may be a killed guard's.
    std::fs::read_dir(base)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.ends_with(&suffix) && !name.starts_with("guardtest-") && e.path().is_dir()
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; treat it as dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 2..].chars().next())
            .is_some_and(|st| st != 'Z' && st != 'X'),
        Err(_) => false,
    }
}

/// Wait until `f` holds or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Spawn guard with piped stdout/stderr.
pub fn spawn_guard(args: &[&str]) -> std::process::Child {
    guard_cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn guard")
}

pub fn send(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// `Command::output`, but bounded by RUN_LIMIT (see `output_within`).
pub trait Bounded {
    fn bounded(&mut self) -> std::process::Output;
}

impl Bounded for Command {
    fn bounded(&mut self) -> std::process::Output {
        output_within(self, RUN_LIMIT)
    }
}

/// Run `cmd` to completion (stdout and stderr captured) within `limit`; past it, kill the
/// process and fail the test — a broken cap must fail the suite, not hang it.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_output_within(child, limit, &format!("{cmd:?}"))
}

/// Wait for a spawned child (stdout/stderr piped or not) within `limit`, collecting its output.
pub fn wait_output_within(
    mut child: std::process::Child,
    limit: Duration,
    what: &str,
) -> std::process::Output {
    use std::io::Read;
    let out = child.stdout.take();
    let err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut o) = out {
            let _ = o.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut e) = err {
            let _ = e.read_to_end(&mut v);
        }
        v
    });
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() >= end {
            // What it was doing, then what it said (its stderr, once killed: a few seconds at
            // most, in case something it started still holds the pipe).
            let state = stuck_state(child.id());
            let _ = child.kill();
            let _ = child.wait();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(t_err.join().unwrap_or_default());
            });
            let said = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
            let said = String::from_utf8_lossy(&said);
            let tail: String = said
                .chars()
                .rev()
                .take(4000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "{what} did not finish within {limit:?}; killed it\nits state then:\n{state}\nits stderr (the end):\n{tail}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::process::Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// The processes under `pid` (and it) with their state and where they wait, and its threads:
/// what a test prints about a run that did not finish.
fn stuck_state(pid: u32) -> String {
    let ps = Command::new("ps")
        .args(["-eo", "pid,ppid,stat,wchan:32,etimes,args", "--forest"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut mine = vec![pid.to_string()];
    let mut out = String::new();
    for line in ps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 1 && (mine.contains(&f[0].to_string()) || mine.contains(&f[1].to_string())) {
            mine.push(f[0].to_string());
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let p = t.path();
            let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
            out.push_str(&format!(
                "thread {} {} wchan={}\n",
                t.file_name().to_string_lossy(),
                read("comm").trim(),
                read("wchan").trim()
            ));
        }
    }
    out
}

/// The time limit for one guard run in the tests (generous: the VM lane runs under emulation).
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The job cgroup named by guard's `-v` start line (`guard: mode M, cgroup DIR, memory limit L`).
pub fn job_cgroup_in(line: &str) -> Option<PathBuf> {
    let rest = line.trim().strip_prefix("guard: mode ")?;
    let dir = rest
        .split(", cgroup ")
        .nth(1)?
        .split(", memory limit")
        .next()?;
    Some(PathBuf::from(dir))
}

/// A tiny HTTP server on loopback for the alert and ping tests.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request target without its query.
    pub path: String,
    /// The query after '?' (empty when none).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Answers every request with `status` after `delay`, records it.
pub struct Receiver {
    pub port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    pub fn start(status: u16, delay: Duration) -> Receiver {
        Receiver::answering(status, delay, "")
    }

    /// Answers with `status` and the extra header lines `headers` (each ending in CRLF).
    pub fn answering(status: u16, delay: Duration, headers: &str) -> Receiver {
        let headers = headers.to_string();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let s3 = s2.clone();
                let extra = headers.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        return;
                    }
                    let target = line.split_whitespace().nth(1).unwrap_or("");
                    let (path, query) = target.split_once('?').unwrap_or((target, ""));
                    let (path, query) = (path.to_string(), query.to_string());
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.push((k.trim().to_string(), v.trim().to_string()));
                        }
                    }
                    let len = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    let _ = r.read_exact(&mut body);
                    s3.lock().unwrap().push(Request {
                        path,
                        query,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    std::thread::sleep(delay);
                    let mut c = conn;
                    let _ = write!(
                        c,
                        "HTTP/1.1 {status} X\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                });
            }
        });
        Receiver { port, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

/// GET `path` from a loopback port (HTTP/1.0): the whole response, headers included.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The first of `names` found on PATH.
pub fn on_path<'a>(names: &[&'a str]) -> Option<&'a str> {
    names.iter().copied().find(|n| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(n).is_file()))
    })
}

/// The bundle path on one of guard's lines (`...; evidence: PATH`).
pub fn evidence_of(line: &str) -> PathBuf {
    let p = line
        .split_once("; evidence: ")
        .unwrap_or_else(|| panic!("no evidence on the line: {line}"))
        .1;
    PathBuf::from(p)
}

/// The bundle named on the line of guard's stderr `err` that contains `marker` (e.g. "exceeded
/// its memory limit").
pub fn bundle_named(err: &str, marker: &str) -> PathBuf {
    let line = err
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no line with {marker:?}:\n{err}"));
    evidence_of(line)
}

/// A bundle's manifest.json.
pub fn manifest(bundle: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).expect("manifest.json"))
        .expect("manifest is JSON")
}

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl).
pub fn make_certs(dir: &Path) -> bool {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=guard test CA",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ])
}

/// A python3 on PATH that can import `module` (the test venv's, for aiosmtpd and Django).
pub fn python_with(module: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .filter(|p| p.is_file())
        .find(|p| {
            std::process::Command::new(p)
                .args(["-c", &format!("import {module}")])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// For a privileged test that needs a Python package: the python3 that has `module`, or None
/// after `test skipped: ...` (a failure under GUARD_TEST_REQUIRE_PRIVILEGED or
/// GUARD_TEST_REQUIRE_TOOLS, as `privileged` and `tool` decide).
pub fn privileged_python_with(test: &str, module: &str) -> Option<PathBuf> {
    let py = python_with(module);
    let reason = py
        .is_none()
        .then(|| format!("no python3 with {module} on PATH"));
    if !privileged(test) || !gate(test, reason, "GUARD_TEST_REQUIRE_TOOLS") {
        return None;
    }
    py
}

/// A uid (and gid) no account on the machine has: the hostile local user of the fault tests.
/// Numeric, so no `useradd` is needed (the guests have none).
pub const HOSTILE_UID: u32 = 64123;

/// True when this machine can run a command as the hostile user: util-linux's setpriv (busybox's,
/// in the v2 guests, has no --reuid, and a hostile step that cannot run would make an attack test
/// pass for nothing). Otherwise `test skipped: ...`, or a failure under GUARD_TEST_REQUIRE_TOOLS.
pub fn hostile_user(test: &str) -> bool {
    let ok = Command::new("setpriv")
        .arg(format!("--reuid={HOSTILE_UID}"))
        .arg(format!("--regid={HOSTILE_UID}"))
        .args(["--clear-groups", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let reason = (!ok).then(|| "no setpriv that can change the uid (util-linux's)".to_string());
    gate(test, reason, "GUARD_TEST_REQUIRE_TOOLS")
}

/// `sh -c script` as the hostile user (setpriv from util-linux), without supplementary groups.
pub fn as_hostile(script: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        format!("--reuid={HOSTILE_UID}"),
        format!("--regid={HOSTILE_UID}"),
        "--clear-groups".into(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ]);
    c
}

/// Busy loops beside a test: `n` shell processes spinning on the CPU (a loaded machine, as CI's
/// is when it is shared and users' are), killed when dropped.
pub struct Busy(Vec<std::process::Child>);

impl Busy {
    /// GUARD_TEST_BUSY_PER_CORE loops a core (default 8: load ~16 on 2 cores; an emulated
    /// guest, slow already, sets fewer).
    pub fn per_core() -> Busy {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let per = std::env::var("GUARD_TEST_BUSY_PER_CORE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        Busy::start(per * cores)
    }

    pub fn start(n: usize) -> Busy {
        Busy(
            (0..n)
                .filter_map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .spawn()
                        .ok()
                })
                .collect(),
        )
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A directory on a disk, for tests that need file pages the kernel can reclaim: GUARD_TEST_DISK
/// (the v2 lane's guests mount a disk there), else the build's target directory. None — and
/// `test skipped`, or a failure under GUARD_TEST_REQUIRE_DISK=1 — when it is in RAM (a tmpfs, or
/// a guest's initramfs), where written files cannot be reclaimed without swap.
pub fn disk_dir(test: &str) -> Option<tempfile::TempDir> {
    let dir = std::env::var_os("GUARD_TEST_DISK")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let disk = nix::sys::statfs::statfs(&dir).is_ok_and(|s| {
        let t = s.filesystem_type();
        // tmpfs, and ramfs (0x858458f6) which nix does not name
        t != nix::sys::statfs::TMPFS_MAGIC && t.0 != 0x8584_58f6
    });
    let reason = (!disk).then(|| format!("{} is not disk-backed", dir.display()));
    if !gate(test, reason, "GUARD_TEST_REQUIRE_DISK") {
        return None;
    }
    Some(tempfile::tempdir_in(&dir).expect("a directory on the disk"))
}

/// Run `cmd` (stdout and stderr captured) and sample its own anonymous resident memory
/// (`RssAnon` in /proc/PID/status) every 5 ms until it exits: its output and the largest
/// sample, in KiB. Its own heap, not its children's, nor the pages of its binary (which a
/// debug build in a guest's initramfs maps in large runs).
pub fn peak_anon_kib(cmd: &mut Command) -> (std::process::Output, u64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let status_file = format!("/proc/{}/status", child.id());
    let t0 = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if t0.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {RUN_LIMIT:?}");
        }
        let kib = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("RssAnon:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0);
        peak = peak.max(kib);
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    (output, peak)
}

/// Every Python 3.6+ interpreter here, named: Debian's (`debian`), pyenv's (`pyenv 3.11.7`).
pub fn pythons() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if Path::new("/usr/bin/python3").is_file() {
        out.push(("debian".to_string(), PathBuf::from("/usr/bin/python3")));
    }
    let pyenv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".pyenv/versions"))
        .and_then(|d| std::fs::read_dir(d).ok());
    let mut versions: Vec<(String, PathBuf)> = pyenv
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().into_owned();
            let py = e.path().join("bin/python3");
            let minor: u32 = v.strip_prefix("3.")?.split('.').next()?.parse().ok()?;
            (minor >= 6 && py.is_file()).then_some((format!("pyenv {v}"), py))
        })
        .collect();
    versions.sort();
    out.extend(versions);
    out
}
