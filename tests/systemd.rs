//! systemd hosts, tried for real: guard under systemd as PID 1 on cgroup v2. The systemd lane of
//! tests/vm/run boots Debian's systemd in a guest (journald, the D-Bus system bus, a user manager
//! for uid 1000) and runs these inside a service that is not delegated, as cron's or a login
//! shell's jobs would run. Elsewhere they print `test skipped: <reason>`; with
//! GUARD_TEST_REQUIRE_SYSTEMD=1 (set by that lane) a skip is a failure.

mod common;
use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// The guest's unprivileged user, whose user manager the lane starts.
const USER: u32 = 1000;
/// One test at a time: they read the journal and the manager's units.
static SERIAL: Mutex<()> = Mutex::new(());

/// systemd runs this machine, with the memory controller on cgroup v2, and we are root.
fn systemd_here(test: &str) -> bool {
    let controllers =
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let reason = if !Path::new("/run/systemd/system").is_dir() {
        Some("systemd does not run this machine".to_string())
    } else if !controllers.split_whitespace().any(|c| c == "memory") {
        Some("the memory controller is not on cgroup v2 here".to_string())
    } else if !root {
        Some("not root".to_string())
    } else if on_path(&["systemctl"]).is_none() || on_path(&["journalctl"]).is_none() {
        Some("systemctl or journalctl is not on PATH".to_string())
    } else {
        None
    };
    gate(test, reason, "GUARD_TEST_REQUIRE_SYSTEMD")
}

/// Tests that install units and files under /etc run only in the throw-away guest.
fn guest_only(test: &str) -> bool {
    let reason = (std::env::var("GUARD_TEST_SYSTEMD_GUEST").as_deref() != Ok("1"))
        .then(|| "it installs units under /etc: the systemd lane's guest only".to_string());
    systemd_here(test) && gate(test, reason, "GUARD_TEST_REQUIRE_SYSTEMD")
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `systemctl show -p PROP --value UNIT` (with `--user` for a user manager: `user`).
fn show(unit: &str, prop: &str) -> String {
    let o = Command::new("systemctl")
        .args(["show", "-p", prop, "--value", unit])
        .stdin(Stdio::null())
        .bounded();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn systemctl(args: &[&str]) {
    let o = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .bounded();
    assert!(
        o.status.success(),
        "systemctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The journal's entries matching `filters` (FIELD=VALUE), as JSON objects.
fn journal(filters: &[String]) -> Vec<serde_json::Value> {
    let o = Command::new("journalctl")
        .args(["--no-pager", "-o", "json"])
        .args(filters)
        .stdin(Stdio::null())
        .bounded();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Wait (bounded) until the journal has an entry matching `filters`.
fn journal_entry(filters: &[String]) -> serde_json::Value {
    let mut found = Vec::new();
    wait_until(Duration::from_secs(20), || {
        found = journal(filters);
        !found.is_empty()
    });
    found
        .pop()
        .unwrap_or_else(|| panic!("no journal entry with {filters:?}"))
}

/// The scope a guard of pid `guard_pid` running job `job` asks for.
fn scope(job: &str, guard_pid: u32) -> String {
    format!("guard-{job}-{guard_pid}.scope")
}

/// After guard ends: the manager has dropped the scope, its cgroup is gone, and nothing of the
/// job is left under /sys/fs/cgroup/guard.
fn assert_scope_gone(unit: &str, dir: &Path, guard_pid: u32) {
    assert!(
        wait_until(Duration::from_secs(20), || show(unit, "LoadState")
            == "not-found"
            && !dir.exists()),
        "{unit} is left: LoadState={} ActiveState={}, {} exists: {}",
        show(unit, "LoadState"),
        show(unit, "ActiveState"),
        dir.display(),
        dir.exists()
    );
    let base = Path::new("/sys/fs/cgroup/guard");
    assert!(
        leaves_of(base, guard_pid).is_empty(),
        "a job cgroup under {}",
        base.display()
    );
}

fn assert_capped(status: Option<i32>, err: &str) -> PathBuf {
    assert_eq!(status, Some(137), "{err}");
    let bundle = bundle_named(err, "exceeded its memory limit");
    let m = manifest(&bundle);
    assert_eq!(m["trigger"], "memory-limit", "{m}");
    assert_eq!(m["capture"], "pre-kill", "{m}");
    bundle
}

/// Start guard (piped) with `args` before `--` and `cmd` after.
fn start(args: &[&str], evidence: &Path, cmd: &[&str]) -> std::process::Child {
    guard_cmd()
        .args(args)
        .arg("--evidence-dir")
        .arg(evidence)
        .arg("--")
        .arg(example("hog"))
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn guard")
}

/// Wait until `unit`'s MemoryCurrent passes `bytes`; returns it.
fn memory_current_passes(unit: &str, bytes: u64) -> u64 {
    let mut current = 0u64;
    assert!(
        wait_until(Duration::from_secs(30), || {
            current = show(unit, "MemoryCurrent").parse().unwrap_or(0);
            current > bytes
        }),
        "systemctl show -p MemoryCurrent {unit}: {current} (ActiveState {})",
        show(unit, "ActiveState")
    );
    current
}

/// The first case: a root guard started from a service that is not delegated (this
/// test runs in one) asks the system manager for `guard-NAME-PID.scope`; the job runs in it
/// (`systemctl show -p MemoryCurrent` sees its memory), is held and captured at the cap and
/// killed; then the scope is gone, and nothing was made under /sys/fs/cgroup/guard.
#[test]
fn a_root_guard_outside_a_delegated_unit_runs_the_job_in_a_scope_of_its_own() {
    if !systemd_here("a_root_guard_outside_a_delegated_unit_runs_the_job_in_a_scope_of_its_own") {
        return;
    }
    let _l = lock();
    let dir = tempfile::tempdir().unwrap();
    let child = start(
        &["-v", "--memory", "48M"],
        dir.path(),
        &["alloc", "200", "--rate", "10"],
    );
    let guard_pid = child.id();
    let unit = scope("hog", guard_pid);
    memory_current_passes(&unit, 8 << 20);
    assert_eq!(show(&unit, "Delegate"), "yes");
    assert_eq!(show(&unit, "Slice"), "system.slice");
    let description = show(&unit, "Description");
    assert!(
        description.starts_with("guard: hog (48 MiB): "),
        "{description}"
    );
    let o = wait_output_within(child, RUN_LIMIT, "guard");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let bundle = assert_capped(o.status.code(), &err);
    let cgroup = manifest(&bundle)["cgroup"]["path"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let scope_dir = PathBuf::from(format!("/sys/fs/cgroup/system.slice/{unit}"));
    assert!(
        cgroup.starts_with(&format!("/system.slice/{unit}/"))
            || Path::new(&cgroup).starts_with(&scope_dir),
        "the job's cgroup {cgroup} is not in {unit}: {err}"
    );
    assert!(
        err.contains(&format!(
            "made {unit} (Delegate=yes) in system.slice for this job"
        )),
        "{err}"
    );
    assert_scope_gone(&unit, &scope_dir, guard_pid);
}

/// `--slice` chooses the slice; `--no-systemd` keeps today's path (the job under
/// /sys/fs/cgroup/guard, outside every unit).
#[test]
fn slice_and_no_systemd_choose_the_path() {
    if !systemd_here("slice_and_no_systemd_choose_the_path") {
        return;
    }
    let _l = lock();
    let dir = tempfile::tempdir().unwrap();
    let child = start(
        &["--slice", "guardtest.slice", "--name", "sliced"],
        dir.path(),
        &["alloc", "16"],
    );
    let guard_pid = child.id();
    let unit = scope("sliced", guard_pid);
    memory_current_passes(&unit, 8 << 20);
    assert_eq!(show(&unit, "Slice"), "guardtest.slice");
    send(guard_pid, libc::SIGTERM);
    let o = wait_output_within(child, RUN_LIMIT, "guard");
    assert_eq!(
        o.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_scope_gone(
        &unit,
        Path::new(&format!("/sys/fs/cgroup/guardtest.slice/{unit}")),
        guard_pid,
    );

    let o = guard_cmd()
        .args(["-v", "--no-systemd", "--memory", "64M", "--"])
        .arg(example("hog"))
        .args(["alloc", "1", "--exit"])
        .stdin(Stdio::null())
        .bounded();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("guard: mode "))
        .unwrap_or_else(|| panic!("{err}"));
    let cg = job_cgroup_in(line).unwrap_or_else(|| panic!("{line}"));
    assert!(cg.starts_with("/sys/fs/cgroup/guard"), "{line}");
    assert!(!err.contains(".scope"), "{err}");
}

/// guard SIGKILLed: the sentinel kills the job, the scope empties, and systemd removes it and
/// its cgroup (guard's leaves in it too).
#[test]
fn guard_sigkilled_leaves_no_scope_and_no_cgroup() {
    if !systemd_here("guard_sigkilled_leaves_no_scope_and_no_cgroup") {
        return;
    }
    let _l = lock();
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(
        &["--memory", "64M", "--name", "killed"],
        dir.path(),
        &["alloc", "16"],
    );
    let guard_pid = child.id();
    let unit = scope("killed", guard_pid);
    memory_current_passes(&unit, 8 << 20);
    let procs = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/system.slice/{unit}/guard-killed-{guard_pid}/cgroup.procs"
    ))
    .unwrap_or_default();
    let job: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(!job.is_empty(), "no job process in the scope's job leaf");
    send(guard_pid, libc::SIGKILL);
    let _ = child.wait();
    assert_scope_gone(
        &unit,
        Path::new(&format!("/sys/fs/cgroup/system.slice/{unit}")),
        guard_pid,
    );
    for p in job {
        assert!(!pid_alive(p), "job process {p} survived guard's SIGKILL");
    }
}

/// A service with `Delegate=yes` already has its cgroup: guard asks systemd for nothing and
/// takes the supervisor-leaf path in it. Its stderr is the journal (JOURNAL_STREAM), so its own
/// kill line is a native entry with the event's fields.
#[test]
fn a_delegated_service_uses_the_supervisor_leaf_path_and_logs_fields() {
    if !systemd_here("a_delegated_service_uses_the_supervisor_leaf_path_and_logs_fields") {
        return;
    }
    let _l = lock();
    let name = format!("deleg{}", std::process::id());
    let unit = format!("{name}.service");
    let evidence = tempfile::tempdir().unwrap();
    let o = Command::new("systemd-run")
        .args(["--wait", "--quiet", "-p", "Delegate=yes", "--unit", &unit])
        .arg(format!(
            "--setenv=GUARD_EVIDENCE_DIR={}",
            evidence.path().display()
        ))
        .args(["--setenv=GUARD_CONFIG=/dev/null", "--"])
        .arg(guard())
        .args(["-v", "--name", &name, "--memory", "48M", "--"])
        .arg(example("hog"))
        .args(["alloc", "200"])
        .stdin(Stdio::null())
        .bounded();
    assert_eq!(
        o.status.code(),
        Some(137),
        "systemd-run: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let entry = journal_entry(&[
        format!("GUARD_JOB={name}"),
        "GUARD_EVENT=memory-limit".into(),
    ]);
    assert_eq!(entry["_SYSTEMD_UNIT"], unit.as_str(), "{entry}");
    assert_eq!(entry["PRIORITY"], "2", "{entry}");
    assert_eq!(
        entry["GUARD_LIMIT_BYTES"],
        (48u64 << 20).to_string().as_str(),
        "{entry}"
    );
    let bundle = PathBuf::from(entry["GUARD_BUNDLE"].as_str().unwrap_or(""));
    let m = manifest(&bundle);
    assert_eq!(m["capture"], "pre-kill", "{m}");
    let cgroup = m["cgroup"]["path"].as_str().unwrap_or("");
    assert!(
        cgroup.contains(&format!("/system.slice/{unit}/guard-{name}-")),
        "the job's cgroup {cgroup} is not a leaf of {unit}"
    );
    let all = journal(&[format!("_SYSTEMD_UNIT={unit}")]);
    let messages: Vec<&str> = all.iter().filter_map(|e| e["MESSAGE"].as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("guard: mode cgroup-v2, cgroup ")
                && m.contains(&format!("/system.slice/{unit}/guard-{name}-"))),
        "{messages:#?}"
    );
    assert!(
        !messages.iter().any(|m| m.contains(".scope")),
        "{messages:#?}"
    );
}

/// `--alert log:journal`: native entries through the journal socket, found again with
/// `journalctl -o json GUARD_EVENT=memory-limit`, with the contract's fields.
#[test]
fn journal_alerts_read_back_with_journalctl() {
    if !systemd_here("journal_alerts_read_back_with_journalctl") {
        return;
    }
    let _l = lock();
    let name = format!("jalert{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let child = start(
        &["--name", &name, "--memory", "32M", "--alert", "log:journal"],
        dir.path(),
        &["alloc", "200"],
    );
    let o = wait_output_within(child, RUN_LIMIT, "guard");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let bundle = assert_capped(o.status.code(), &err);
    let e = journal_entry(&[
        "GUARD_EVENT=memory-limit".into(),
        format!("GUARD_JOB={name}"),
    ]);
    for field in [
        "MESSAGE_ID",
        "PRIORITY",
        "GUARD_PID",
        "GUARD_PEAK_BYTES",
        "MESSAGE",
    ] {
        assert!(
            e[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} missing: {e}"
        );
    }
    assert_eq!(
        e["GUARD_BUNDLE"],
        bundle.display().to_string().as_str(),
        "{e}"
    );
    assert_eq!(
        e["GUARD_LIMIT_BYTES"],
        (32u64 << 20).to_string().as_str(),
        "{e}"
    );
    assert_eq!(e["MESSAGE_ID"].as_str().map(str::len), Some(32), "{e}");
}

/// The second case: an unprivileged user (not root, outside any delegated unit) gets a real,
/// held, captured cap from their own user manager's delegation (`app.slice/guard-*.scope`).
#[test]
fn an_unprivileged_user_gets_a_real_cap_from_the_user_manager() {
    if !systemd_here("an_unprivileged_user_gets_a_real_cap_from_the_user_manager") {
        return;
    }
    let runtime = format!("/run/user/{USER}");
    let reason = (!Path::new(&runtime).join("systemd/private").exists())
        .then(|| format!("no user manager runs for uid {USER} (no {runtime}/systemd/private)"));
    if !gate(
        "an_unprivileged_user_gets_a_real_cap_from_the_user_manager",
        reason,
        "GUARD_TEST_REQUIRE_SYSTEMD",
    ) {
        return;
    }
    let _l = lock();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(USER), Some(USER)).unwrap();
    let evidence = dir.path().join("evidence");
    let child = guard_cmd()
        .args(["-v", "--memory", "48M", "--evidence-dir"])
        .arg(&evidence)
        .arg("--")
        .arg(example("hog"))
        .args(["alloc", "200", "--rate", "20"])
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("HOME", dir.path())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .current_dir(dir.path())
        .uid(USER)
        .gid(USER)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard_pid = child.id();
    let o = wait_output_within(child, RUN_LIMIT, "guard as uid 1000");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("poll mode"), "{err}");
    let bundle = assert_capped(o.status.code(), &err);
    let unit = scope("hog", guard_pid);
    let cgroup = manifest(&bundle)["cgroup"]["path"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        cgroup.contains(&format!("/user@{USER}.service/app.slice/{unit}/")),
        "the job's cgroup {cgroup} is not in the user manager's {unit}: {err}"
    );
    let scope_dir = PathBuf::from(format!(
        "/sys/fs/cgroup/user.slice/user-{USER}.slice/user@{USER}.service/app.slice/{unit}"
    ));
    assert!(
        wait_until(Duration::from_secs(20), || !scope_dir.exists()),
        "{} is left",
        scope_dir.display()
    );
}

/// The unit files as packaged: guard@.service runs a job from /etc/guard/jobs/NAME.env under
/// the config's cap (Delegate=yes: the supervisor-leaf path, evidence in the tmpfiles.d
/// directory), and guard@.timer starts it (here with a drop-in that adds OnActiveSec=1s to the
/// nightly OnCalendar, so that it fires within the test).
#[test]
fn the_unit_files_run_a_capped_job_and_the_timer_fires() {
    if !guest_only("the_unit_files_run_a_capped_job_and_the_timer_fires") {
        return;
    }
    let _l = lock();
    let hog = example("hog");
    std::fs::create_dir_all("/etc/guard/jobs").unwrap();
    std::fs::write(
        "/etc/guard/guard.toml",
        "[jobs.unit-capped]\nmemory = \"48M\"\n\n[jobs.unit-timed]\nmemory = \"48M\"\n",
    )
    .unwrap();
    std::fs::write(
        "/etc/guard/jobs/unit-capped.env",
        format!("COMMAND={} alloc 200\n", hog.display()),
    )
    .unwrap();
    std::fs::write(
        "/etc/guard/jobs/unit-timed.env",
        format!("COMMAND={} alloc 1 --exit\n", hog.display()),
    )
    .unwrap();
    let dropin = Path::new("/etc/systemd/system/guard@unit-timed.timer.d");
    std::fs::create_dir_all(dropin).unwrap();
    std::fs::write(
        dropin.join("soon.conf"),
        "[Timer]\nOnActiveSec=1s\nRandomizedDelaySec=0\n",
    )
    .unwrap();
    systemctl(&["daemon-reload"]);

    systemctl(&["start", "guard@unit-capped.service"]);
    let svc = "guard@unit-capped.service";
    assert!(
        wait_until(Duration::from_secs(60), || show(svc, "ActiveState")
            != "active"
            && show(svc, "ExecMainStatus") == "137"),
        "{svc}: ActiveState={} ExecMainStatus={} Result={}",
        show(svc, "ActiveState"),
        show(svc, "ExecMainStatus"),
        show(svc, "Result")
    );
    let e = journal_entry(&[
        "GUARD_JOB=unit-capped".into(),
        "GUARD_EVENT=memory-limit".into(),
    ]);
    let bundle = PathBuf::from(e["GUARD_BUNDLE"].as_str().unwrap_or(""));
    assert!(bundle.starts_with("/var/lib/guard/evidence"), "{e}");
    let m = manifest(&bundle);
    assert_eq!(m["capture"], "pre-kill", "{m}");
    let cgroup = m["cgroup"]["path"].as_str().unwrap_or("");
    assert!(
        cgroup.contains(&format!(
            "/system.slice/system-guard.slice/{svc}/guard-unit-capped-"
        )),
        "{cgroup}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata("/var/lib/guard/evidence")
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o700);

    let timer = "guard@unit-timed.timer";
    systemctl(&["start", timer]);
    assert!(
        !show(timer, "NextElapseUSecRealtime").is_empty(),
        "the nightly OnCalendar is not armed"
    );
    let svc = "guard@unit-timed.service";
    assert!(
        wait_until(Duration::from_secs(60), || show(
            svc,
            "ExecMainExitTimestampMonotonic"
        )
        .parse::<u64>()
        .unwrap_or(0)
            > 0),
        "{timer} did not start {svc}: {}",
        show(timer, "ActiveState")
    );
    assert_eq!(show(svc, "ExecMainStatus"), "0");
    assert_eq!(show(svc, "Result"), "success");
}
