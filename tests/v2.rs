//! cgroup v2 only: placements that exist only on the unified hierarchy, tried for real. Guard is
//! started the way systemd starts a service (inside `system.slice/<x>.service`, next to other
//! members), delegated or not, as root and as an unprivileged user.
//!
//! These run where the memory controller is on cgroup v2 and we are root — in this project, the
//! VM lane (tests/vm/run). Elsewhere they print `test skipped: <reason>`; with
//! GUARD_TEST_REQUIRE_V2=1 (set by the VM lane) a skip is a failure.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const ROOT: &str = "/sys/fs/cgroup";
/// The tests below change shared cgroups (system.slice): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn v2_here(test: &str) -> bool {
    let controllers =
        std::fs::read_to_string(format!("{ROOT}/cgroup.controllers")).unwrap_or_default();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let reason = if !controllers.split_whitespace().any(|c| c == "memory") {
        Some("the memory controller is not on cgroup v2 here".to_string())
    } else if !root {
        Some("not root".to_string())
    } else {
        None
    };
    gate(test, reason, "GUARD_TEST_REQUIRE_V2")
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap_or_else(|e| panic!("write {s:?} to {}: {e}", p.display()));
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A systemd-like service cgroup `system.slice/<name>.service` with one other member (a
/// sleeping process), removed with everything in it on drop.
struct Service {
    dir: PathBuf,
    member: Child,
}

impl Service {
    fn new(name: &str, owner: Option<u32>) -> Service {
        let slice = Path::new(ROOT).join("system.slice");
        std::fs::create_dir_all(&slice).unwrap();
        if !read(&slice.join("cgroup.subtree_control")).contains("memory") {
            write(&slice.join("cgroup.subtree_control"), "+memory");
        }
        let dir = slice.join(format!("{name}.service"));
        let _ = std::fs::create_dir(&dir);
        if let Some(uid) = owner {
            // What systemd does for a user's delegated unit: the directory and the files that
            // manage membership and controllers belong to the user.
            for p in [
                dir.clone(),
                dir.join("cgroup.procs"),
                dir.join("cgroup.subtree_control"),
                dir.join("cgroup.threads"),
            ] {
                std::os::unix::fs::chown(&p, Some(uid), Some(uid)).unwrap();
            }
        }
        let mut c = Command::new(example("hog"));
        c.args(["sleep", "300"]);
        Service::join(&mut c, &dir, owner);
        let member = c.spawn().unwrap();
        Service { dir, member }
    }

    /// Make `cmd` start inside `dir` (and as `uid`, if given), as systemd would.
    fn join(cmd: &mut Command, dir: &Path, uid: Option<u32>) {
        let procs = std::ffi::CString::new(dir.join("cgroup.procs").to_str().unwrap()).unwrap();
        // SAFETY: the closure makes only async-signal-safe calls (open, write, close, setgid,
        // setuid) on data prepared before fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                if let Some(u) = uid {
                    if libc::setgid(u) != 0 || libc::setuid(u) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }

    fn set_delegated(&self) {
        let p = std::ffi::CString::new(self.dir.to_str().unwrap()).unwrap();
        // SAFETY: valid C strings and a 1-byte value.
        let rc = unsafe {
            libc::setxattr(
                p.as_ptr(),
                c"trusted.delegate".as_ptr(),
                b"1".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(
            rc,
            0,
            "setxattr trusted.delegate: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.member.kill();
        let _ = self.member.wait();
        for d in [self.dir.join("supervisor"), self.dir.clone()] {
            for p in read(&d.join("cgroup.procs")).lines() {
                if let Ok(pid) = p.trim().parse::<i32>() {
                    // SAFETY: kill(2) on a pid read from our own test cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Run `guard -v ARGS` inside the service (as `uid`), return (status, stderr, the job cgroup).
fn guard_in(dir: &Path, uid: Option<u32>, args: &[&str]) -> (Option<i32>, String, PathBuf) {
    let mut c = guard_cmd();
    c.arg("-v").args(args).stdin(Stdio::null());
    Service::join(&mut c, dir, uid);
    let o = c.bounded();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let st = o.status;
    let job = err.lines().find_map(job_cgroup_in).unwrap_or_default();
    (st.code(), err, job)
}

fn assert_capped(status: Option<i32>, err: &str, name: &str) {
    assert_eq!(status, Some(137), "{err}");
    let kill: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("exceeded its memory limit"))
        .collect();
    assert_eq!(kill.len(), 1, "{err}");
    assert!(
        kill[0].starts_with(&format!("guard: {name} (pid ")),
        "{err}"
    );
}

/// The leaf rule, as systemd starts services: guard is one of several members of
/// system.slice/x.service, which is not delegated. As root guard puts the job under
/// /sys/fs/cgroup/guard and leaves the service's members alone.
#[test]
fn a_service_with_other_members_is_capped_through_the_dedicated_subtree() {
    if !v2_here("a_service_with_other_members_is_capped_through_the_dedicated_subtree") {
        return;
    }
    let _lock = SERIAL.lock();
    let svc = Service::new("guard-test-plain", None);
    let hog = example("hog");
    let (st, err, job) = guard_in(
        &svc.dir,
        None,
        &[
            "--name",
            "fix_images",
            "--memory",
            "64M",
            "--",
            hog.to_str().unwrap(),
            "alloc",
            "200",
        ],
    );
    assert_capped(st, &err, "fix_images");
    assert_eq!(
        job.parent(),
        Some(Path::new("/sys/fs/cgroup/guard")),
        "{err}"
    );
    assert!(
        job.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("fix_images-"),
        "{err}"
    );
    assert!(!job.exists(), "{} left behind", job.display());
    assert!(
        read(&svc.dir.join("cgroup.procs")).contains(&svc.member.id().to_string()),
        "the service's member was moved"
    );
    assert!(
        !svc.dir.join("supervisor").exists(),
        "a non-delegated service must not be rearranged"
    );
}

/// A delegated service (Delegate=yes): guard moves the members into a `supervisor` leaf, enables
/// memory for the service's children and runs the job in a sibling leaf. A second guard started
/// from the supervisor leaf reuses the arrangement.
#[test]
fn a_delegated_service_gets_a_supervisor_leaf_and_keeps_it() {
    if !v2_here("a_delegated_service_gets_a_supervisor_leaf_and_keeps_it") {
        return;
    }
    let _lock = SERIAL.lock();
    let svc = Service::new("guard-test-delegated", None);
    svc.set_delegated();
    let hog = example("hog");
    let (st, err, job) = guard_in(
        &svc.dir,
        None,
        &[
            "--memory",
            "64M",
            "--",
            hog.to_str().unwrap(),
            "alloc",
            "200",
        ],
    );
    assert_capped(st, &err, "hog");
    assert_eq!(job.parent(), Some(svc.dir.as_path()), "{err}");
    assert!(!job.exists(), "{} left behind", job.display());
    let sup = svc.dir.join("supervisor");
    assert!(
        read(&sup.join("cgroup.procs")).contains(&svc.member.id().to_string()),
        "member not moved to supervisor"
    );
    assert!(read(&svc.dir.join("cgroup.subtree_control")).contains("memory"));

    // Prepared: guard started inside the supervisor leaf.
    let (st, err, job) = guard_in(
        &sup,
        None,
        &[
            "--memory",
            "64M",
            "--",
            hog.to_str().unwrap(),
            "alloc",
            "200",
        ],
    );
    assert_capped(st, &err, "hog");
    assert_eq!(job.parent(), Some(svc.dir.as_path()), "{err}");
    assert!(err.contains("mode cgroup-v2"), "{err}");
    // And a job under the cap runs normally there.
    let (st, err, _) = guard_in(
        &sup,
        None,
        &[
            "--memory",
            "64M",
            "--",
            hog.to_str().unwrap(),
            "alloc",
            "16",
            "--exit",
        ],
    );
    assert_eq!(st, Some(0), "{err}");
}

/// An unprivileged user in a delegated unit (what `systemd-run --user --scope -p Delegate=yes`
/// gives): the cgroup belongs to the user, guard is not root, and still caps the job.
#[test]
fn an_unprivileged_user_in_a_delegated_unit_is_capped() {
    if !v2_here("an_unprivileged_user_in_a_delegated_unit_is_capped") {
        return;
    }
    let _lock = SERIAL.lock();
    const NOBODY: u32 = 65534;
    let svc = Service::new("guard-test-user", Some(NOBODY));
    let hog = example("hog");
    let (st, err, job) = guard_in(
        &svc.dir,
        Some(NOBODY),
        &[
            "--memory",
            "64M",
            "--",
            hog.to_str().unwrap(),
            "alloc",
            "200",
        ],
    );
    assert_capped(st, &err, "hog");
    assert_eq!(job.parent(), Some(svc.dir.as_path()), "{err}");
}

/// Without the memory controller delegated to the unit, an unprivileged guard says exactly why
/// it cannot use a cgroup, and `--require-cgroup` turns that into exit 125.
#[test]
fn an_unprivileged_user_without_delegation_is_told_why() {
    if !v2_here("an_unprivileged_user_without_delegation_is_told_why") {
        return;
    }
    let _lock = SERIAL.lock();
    let svc = Service::new("guard-test-nodelegation", None);
    let (st, err, _) = guard_in(
        &svc.dir,
        Some(65534),
        &["--require-cgroup", "--memory", "64M", "--", "true"],
    );
    assert_eq!(st, Some(125), "{err}");
    assert!(err.contains("not writable by uid 65534"), "{err}");
    assert!(err.contains("Delegate=yes"), "{err}");
}

#[test]
fn doctor_reports_every_v2_capability() {
    if !v2_here("doctor_reports_every_v2_capability") {
        return;
    }
    let d = doctor();
    assert_eq!(d["mode"], "cgroup-v2", "{d}");
    assert!(d["probe"].as_str().unwrap().starts_with("ok"), "{d}");
    for c in d["capabilities"].as_array().unwrap() {
        // memory.peak arrived in 5.19; every other capability is in Debian's 6.1.
        assert!(c["ok"] == true, "missing on this kernel: {c}");
    }
}

#[test]
fn swap_is_capped_at_zero_by_default_and_group_oom_is_on() {
    if !v2_here("swap_is_capped_at_zero_by_default_and_group_oom_is_on") {
        return;
    }
    let mut g = guard_cmd()
        .args(["-v", "--memory", "64M", "--"])
        .arg(example("hog"))
        .args(["sleep", "30"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(g.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let dir = job_cgroup_in(&line).expect("guard -v names the job's cgroup");
    let swap = read(&dir.join("memory.swap.max"));
    let group = read(&dir.join("memory.oom.group"));
    let max = read(&dir.join("memory.high"));
    send(g.id(), libc::SIGTERM);
    let st = g.wait().unwrap();
    assert_eq!(swap.trim(), "0");
    assert_eq!(group.trim(), "1");
    assert_eq!(max.trim(), (64u64 << 20).to_string());
    assert_eq!(st.code(), Some(143));
    assert!(wait_until(Duration::from_secs(2), || !dir.exists()));
}

/// 128 threads populating memory at once (MAP_POPULATE): each may charge a batch past
/// `memory.high` before the kernel throttles it — asleep inside the page fault, out of the
/// freezer's reach, holding the memory-map lock that reading `smaps`, `maps` or `cmdline` needs —
/// and when they wake they may go on past `memory.max` (16 MiB above), so the kernel's OOM killer
/// races guard's kill (in the guest it won 5 of 9 runs). Either way: the kill is reported, the
/// capture is bounded (before reads were bounded it waited 27-42 s on the map lock), and a bundle
/// that says `pre-kill` was taken before any kernel OOM kill — one taken across it says
/// `post-mortem`.
#[test]
fn threads_asleep_in_the_kernel_cannot_stall_the_capture() {
    if !v2_here("threads_asleep_in_the_kernel_cannot_stall_the_capture") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = guard_cmd()
        .args(["--warn", "off", "--memory", "32M", "--evidence-dir"])
        .arg(dir.path())
        .arg("--")
        .arg(example("hog"))
        .args(["burst", "256", "--threads", "128"])
        .stdin(Stdio::null())
        .bounded();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_capped(o.status.code(), &err, "hog");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("mapped"),
        "the burst got through: {err}"
    );
    let m = manifest(&bundle_named(&err, "exceeded its memory limit"));
    assert_eq!(m["trigger"], "memory-limit", "{m}");
    // The hold (3 s for tasks asleep in the kernel) and the reads (2 s in all) are bounded.
    let capture_ms = m["timings"]["capture_ms"].as_f64().unwrap();
    assert!(capture_ms < 8000.0, "capture took {capture_ms} ms: {m}");
    let kernel_kills = m["kernel_counters"]["oom_kill"].as_u64().unwrap_or(0);
    match m["capture"].as_str() {
        Some("pre-kill") => assert_eq!(kernel_kills, 0, "{m}"),
        Some("post-mortem") => {}
        other => panic!("capture {other:?}: {m}"),
    }
}

/// Cleanup through `cgroup.kill`: a job of many processes, some ignoring SIGTERM, is gone at once
/// when guard is killed (the sentinel writes cgroup.kill), and its cgroup is removed.
#[test]
fn cgroup_kill_empties_a_crowded_job() {
    if !v2_here("cgroup_kill_empties_a_crowded_job") {
        return;
    }
    let hog = example("hog");
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8; do (trap '' TERM; exec {hog} sleep 300) & done; echo started; exec {hog} spawn 8 sleep 300",
        hog = hog.display()
    );
    let mut g = guard_cmd()
        .args(["-v", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(g.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let dir = job_cgroup_in(&line).expect("guard -v names the job's cgroup");
    assert!(
        dir.join("cgroup.kill").exists(),
        "this kernel has no cgroup.kill"
    );
    let mut out = BufReader::new(g.stdout.take().unwrap());
    let mut started = String::new();
    out.read_line(&mut started).unwrap();
    assert!(wait_until(Duration::from_secs(20), || read(
        &dir.join("cgroup.procs")
    )
    .lines()
    .count()
        >= 17));
    std::thread::sleep(Duration::from_millis(100)); // past the sentinel's start
    send(g.id(), libc::SIGKILL);
    let _ = g.wait();
    assert!(
        wait_until(Duration::from_secs(10), || !dir.exists()),
        "{} left behind",
        dir.display()
    );
}
