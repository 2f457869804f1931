//! Tests that need root and a writable cgroup with the memory controller: the cap itself,
//! placement, cleanup, concurrency, the poll fallback. Each test starts with `privileged()`, which
//! prints `test skipped: <reason>` where it cannot run — and fails instead when
//! GUARD_TEST_REQUIRE_PRIVILEGED=1 (the project's test script sets it when running as root).

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The one memory-kill line:
/// `guard: NAME (pid N) exceeded its memory limit LIMIT (peak P); killed; evidence: PATH`.
fn assert_kill_line(err: &str, name: &str, limit: &str) {
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("exceeded its memory limit"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one memory-kill line expected:\n{err}"
    );
    let l = lines[0];
    let prefix = format!("guard: {name} (pid ");
    assert!(l.starts_with(&prefix), "{l}");
    let rest = &l[prefix.len()..];
    let (pid, rest) = rest.split_once(") ").expect("pid)");
    assert!(pid.parse::<u32>().is_ok(), "{l}");
    assert!(
        rest.starts_with(&format!("exceeded its memory limit {limit} (peak ")),
        "{l}"
    );
    let (_, tail) = rest
        .split_once("); killed; ")
        .expect("'); killed; ' in the kill line");
    let bundle = tail.strip_prefix("evidence: ").expect("evidence: PATH");
    assert!(Path::new(bundle).join("manifest.json").is_file(), "{l}");
}

/// Start guard -v and return it with the job cgroup it announced (the caller waits for it).
#[allow(clippy::zombie_processes)]
fn start_verbose(
    args: &[&str],
) -> (
    std::process::Child,
    PathBuf,
    BufReader<std::process::ChildStderr>,
) {
    let mut g = guard_cmd()
        .arg("-v")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(g.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = g.kill();
            let _ = g.wait();
            panic!("guard -v printed no mode line");
        }
        if let Some(dir) = job_cgroup_in(&line) {
            return (g, dir, err);
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn cap_kills_an_allocator_within_seconds() {
    if !privileged("cap_kills_an_allocator_within_seconds") {
        return;
    }
    let hog = example("hog");
    let t0 = Instant::now();
    let g = guard_cmd()
        .args(["-vv", "--memory", "64M", "--"])
        .arg(&hog)
        .args(["alloc", "200"])
        .stdin(Stdio::null())
        .bounded();
    assert_eq!(g.status.code(), Some(137), "{}", stderr(&g));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    assert_kill_line(&stderr(&g), "hog", "64 MiB");
    // guard held the job at its cap and killed it (not the kernel's OOM killer).
    assert!(stderr(&g).contains("at its cap"), "{}", stderr(&g));
    assert!(
        !String::from_utf8_lossy(&g.stdout).contains("allocated 200"),
        "the job got past the cap"
    );
}

/// A job at its cap in its first milliseconds, before guard's housekeeping (20 ms in) has made
/// the v1 freezer leaf: the hold makes it then, the job is frozen, and the bundle is pre-kill.
#[test]
fn a_job_at_its_cap_within_milliseconds_is_still_frozen_first() {
    if !privileged("a_job_at_its_cap_within_milliseconds_is_still_frozen_first") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hog = example("hog");
    let g = guard_cmd()
        .args(["-vv", "--warn", "off", "--memory", "6M", "--evidence-dir"])
        .arg(dir.path())
        .arg("--")
        .arg(&hog)
        .args(["alloc", "200"])
        .stdin(Stdio::null())
        .bounded();
    let err = stderr(&g);
    assert_eq!(g.status.code(), Some(137), "{err}");
    assert!(!err.contains("could not confirm the hold"), "{err}");
    let bundle = bundle_named(&err, "exceeded its memory limit");
    let m = manifest(&bundle);
    assert_eq!(m["capture"], "pre-kill", "{m}");
    if m["cgroup"]["mode"] == "cgroup-v1" {
        let state = std::fs::read_to_string(bundle.join("cgroup/freezer.state"))
            .unwrap_or_else(|e| panic!("no freezer state in the bundle ({e}):\n{err}"));
        assert!(
            matches!(state.trim(), "FROZEN" | "FREEZING"),
            "freezer.state {state}"
        );
    }
}

#[test]
fn a_grandchild_past_the_cap_kills_the_job() {
    if !privileged("a_grandchild_past_the_cap_kills_the_job") {
        return;
    }
    let hog = example("hog");
    let o = guard_cmd()
        .args(["--name", "nested", "--memory", "64M", "--"])
        .arg(&hog)
        .args(["spawn", "1", "spawn", "1", "alloc", "200"])
        .stdin(Stdio::null())
        .bounded();
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert_kill_line(&stderr(&o), "nested", "64 MiB");
}

#[test]
fn four_children_together_past_the_cap() {
    if !privileged("four_children_together_past_the_cap") {
        return;
    }
    let hog = example("hog");
    let o = guard_cmd()
        .args(["--memory", "64M", "--"])
        .arg(&hog)
        .args(["spawn", "4", "alloc", "30", "--rate", "100"])
        .stdin(Stdio::null())
        .bounded();
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert_kill_line(&stderr(&o), "hog", "64 MiB");
}

#[test]
fn under_the_cap_the_job_runs_normally() {
    if !privileged("under_the_cap_the_job_runs_normally") {
        return;
    }
    let hog = example("hog");
    let o = guard_cmd()
        .args(["--memory", "128M", "--"])
        .arg(&hog)
        .args(["alloc", "40", "--exit"])
        .stdin(Stdio::null())
        .bounded();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "allocated 40 MiB\n");
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn the_job_is_in_its_cgroup_from_its_first_instruction_and_guard_is_not() {
    if !privileged("the_job_is_in_its_cgroup_from_its_first_instruction_and_guard_is_not") {
        return;
    }
    // cat reads /proc/self/cgroup as the first thing it does: no later move could hide behind it.
    let (g, dir, mut err) = start_verbose(&["--memory", "64M", "--", "cat", "/proc/self/cgroup"]);
    let gpid = g.id();
    let guard_cgroups = std::fs::read_to_string(format!("/proc/{gpid}/cgroup")).unwrap();
    let o = wait_output_within(g, RUN_LIMIT, "guard");
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert_eq!(o.status.code(), Some(0), "{rest}");
    let leaf = dir.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        leaf.ends_with(&format!("cat-{gpid}")),
        "leaf {leaf} names the job and guard's pid"
    );
    let job_cgroups = String::from_utf8_lossy(&o.stdout).to_string();
    let line_with_leaf = |text: &str| text.lines().any(|l| l.ends_with(&format!("/{leaf}")));
    assert!(
        line_with_leaf(&job_cgroups),
        "job not in {leaf}:\n{job_cgroups}"
    );
    assert!(
        !line_with_leaf(&guard_cgroups),
        "guard itself is in the capped cgroup:\n{guard_cgroups}"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn limits_are_written_as_asked() {
    if !privileged("limits_are_written_as_asked") {
        return;
    }
    let hog = example("hog");
    let (mut g, dir, _err) = start_verbose(&[
        "--memory",
        "64M",
        "--swap",
        "32M",
        "--",
        hog.to_str().unwrap(),
        "sleep",
        "30",
    ]);
    if dir.join("memory.limit_in_bytes").exists() {
        assert_eq!(
            read(&dir.join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                read(&dir.join("memory.memsw.limit_in_bytes")),
                (96u64 << 20).to_string()
            );
        }
        // The kernel holds the job at the limit instead of killing one task: guard decides.
        assert!(read(&dir.join("memory.oom_control")).contains("oom_kill_disable 1"));
    } else {
        // The cap is memory.high; memory.max sits max(5 %, 16 MiB) above it.
        assert_eq!(read(&dir.join("memory.high")), (64u64 << 20).to_string());
        assert_eq!(read(&dir.join("memory.max")), (80u64 << 20).to_string());
        assert_eq!(read(&dir.join("memory.oom.group")), "1");
        if dir.join("memory.swap.max").exists() {
            assert_eq!(
                read(&dir.join("memory.swap.max")),
                (32u64 << 20).to_string()
            );
        }
    }
    send(g.id(), libc::SIGTERM);
    let st = g.wait().unwrap();
    assert_eq!(st.code(), Some(143));
    assert!(
        wait_until(Duration::from_secs(2), || !dir.exists()),
        "{} left behind",
        dir.display()
    );
}

#[test]
fn ten_concurrent_guards_each_get_their_own_cgroup() {
    if !privileged("ten_concurrent_guards_each_get_their_own_cgroup") {
        return;
    }
    let hog = example("hog");
    let bases = job_bases();
    let kids: Vec<(bool, std::process::Child)> = (0..10)
        .map(|i| {
            let over = i % 2 == 0;
            let mb = if over { "200" } else { "20" };
            let mut c = guard_cmd();
            c.args(["--memory", "64M", "--name", &format!("conc{i}"), "--"])
                .arg(&hog)
                .args(["alloc", mb, "--rate", "400"]);
            if !over {
                c.arg("--exit");
            }
            (
                over,
                c.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let mut pids = Vec::new();
    for (over, k) in kids {
        pids.push(k.id());
        let o = wait_output_within(k, RUN_LIMIT, "a concurrent guard");
        let want = if over { 137 } else { 0 };
        assert_eq!(o.status.code(), Some(want), "{}", stderr(&o));
    }
    for p in pids {
        for base in &bases {
            assert!(
                leaves_of(base, p).is_empty(),
                "cgroup of guard {p} left behind in {}",
                base.display()
            );
        }
    }
}

#[test]
fn a_killed_guard_takes_its_job_and_cgroup_with_it() {
    if !privileged("a_killed_guard_takes_its_job_and_cgroup_with_it") {
        return;
    }
    let hog = example("hog");
    let script = format!(
        "{} spawn 1 sleep 300 & echo $!; exec {} sleep 300",
        hog.display(),
        hog.display()
    );
    let (mut g, dir, _err) = start_verbose(&["--", "sh", "-c", &script]);
    let bases = job_bases();
    let mut out = BufReader::new(g.stdout.take().unwrap());
    let mut bg = String::new();
    out.read_line(&mut bg).unwrap();
    let bg: i32 = bg.trim().parse().unwrap();
    assert!(wait_until(Duration::from_secs(5), || read(
        &dir.join("cgroup.procs")
    )
    .lines()
    .count()
        >= 3));
    send(g.id(), libc::SIGKILL);
    let _ = g.wait();
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(bg)),
        "grandchild {bg} survived guard"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !dir.exists()),
        "{} left behind",
        dir.display()
    );
    for base in &bases {
        assert!(
            wait_until(Duration::from_secs(10), || leaves_of(base, g.id())
                .is_empty()),
            "a cgroup of the killed guard is left in {}",
            base.display()
        );
    }
}

#[test]
fn the_next_run_removes_cgroups_of_dead_guards() {
    if !privileged("the_next_run_removes_cgroups_of_dead_guards") {
        return;
    }
    let base = job_base();
    let dedicated = base.file_name().is_some_and(|n| n == "guard");
    std::fs::create_dir_all(&base).unwrap();
    // Other tests start guards in the same base at the same time, and any of them may remove the
    // stale cgroup first (and log it on its own stderr). The cgroup must be gone and its process
    // killed after every run; the log line must come from ours within a few tries.
    let mut logs = Vec::new();
    for _ in 0..5 {
        // A pid that is certainly gone: a process we started and reaped.
        let dead = Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        let _ = { dead }.wait();
        let stale = base.join(if dedicated {
            format!("stale-{dead_pid}")
        } else {
            format!("guard-stale-{dead_pid}")
        });
        std::fs::create_dir(&stale).unwrap();
        let mut sleeper = Command::new("sleep").arg("300").spawn().unwrap();
        std::fs::write(stale.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
        // Housekeeping runs 20 ms into the job: a job that lives longer than that.
        let o = guard_cmd()
            .args(["-v", "--", "sleep", "0.2"])
            .stdin(Stdio::null())
            .bounded();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            wait_until(Duration::from_secs(5), || !stale.exists()),
            "stale cgroup {} still there:\n{}",
            stale.display(),
            stderr(&o)
        );
        let st = sleeper.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGKILL)
        );
        let line = format!("removed stale cgroup {}", stale.display());
        if stderr(&o).contains(&line) {
            return;
        }
        logs.push(stderr(&o));
    }
    panic!(
        "no run of guard reported removing the stale cgroup:\n{}",
        logs.join("\n---\n")
    );
}

/// Shell snippet: remount every cgroup filesystem read-only in a private mount namespace.
fn read_only_cgroupfs_prefix() -> String {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut cmds = vec!["{ mount --make-rprivate / 2>/dev/null || true; }".to_string()];
    for l in mi.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-").unwrap_or(0);
        if matches!(f.get(sep + 1), Some(&"cgroup") | Some(&"cgroup2")) {
            cmds.push(format!("mount -o remount,bind,ro {}", f[4]));
        }
    }
    cmds.join(" && ")
}

fn in_read_only_cgroupfs(guard_args: &str) -> std::process::Output {
    in_read_only_cgroupfs_with("", guard_args)
}

/// The same with environment assignments (`K=V ...`) for guard.
fn in_read_only_cgroupfs_with(env: &str, guard_args: &str) -> std::process::Output {
    let script = format!(
        "{} && exec env GUARD_CONFIG=/dev/null GUARD_EVIDENCE_DIR={} {env} {} {guard_args}",
        read_only_cgroupfs_prefix(),
        common::scratch_evidence_dir().display(),
        guard().display()
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "sh", "-c", &script]);
    for (k, _) in
        std::env::vars().filter(|(k, _)| k.starts_with("GUARD_") && !k.starts_with("GUARD_TEST_"))
    {
        c.env_remove(k);
    }
    c.stdin(Stdio::null()).bounded()
}

#[test]
fn read_only_cgroupfs_falls_back_to_poll_mode_and_still_caps() {
    if !privileged("read_only_cgroupfs_falls_back_to_poll_mode_and_still_caps") {
        return;
    }
    let hog = example("hog");
    let o = in_read_only_cgroupfs(&format!(
        "--memory 64M -- {} alloc 400 --rate 200",
        hog.display()
    ));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    assert!(
        err.contains("enforcement is best-effort (poll mode)"),
        "{err}"
    );
    assert!(
        err.contains("read-only mount"),
        "the warning says why: {err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("best-effort")).count(),
        1,
        "{err}"
    );
    assert_kill_line(&err, "hog", "64 MiB");

    let o = in_read_only_cgroupfs("--require-cgroup --memory 64M -- true");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("guard: error: --require-cgroup"), "{err}");

    let o = in_read_only_cgroupfs_with("GUARD_REQUIRE_CGROUP=Yes", "--memory 64M -- true");
    assert_eq!(
        o.status.code(),
        Some(125),
        "GUARD_REQUIRE_CGROUP=Yes: {}",
        stderr(&o)
    );
    let o = in_read_only_cgroupfs_with("GUARD_REQUIRE_CGROUP=off", "--memory 64M -- true");
    assert_eq!(
        o.status.code(),
        Some(0),
        "GUARD_REQUIRE_CGROUP=off: {}",
        stderr(&o)
    );

    let o = in_read_only_cgroupfs("doctor");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("mode:        poll"), "{text}");
    assert!(text.contains("to enforce:"), "{text}");
}

#[test]
fn doctor_finds_a_usable_cgroup() {
    if !privileged("doctor_finds_a_usable_cgroup") {
        return;
    }
    let d = doctor();
    assert_ne!(d["mode"], "poll");
    let probe = d["probe"].as_str().unwrap();
    assert!(
        probe.starts_with("ok") || probe.starts_with("not tried"),
        "{probe}"
    );
}

/// Page cache is memory the kernel can reclaim: writing 400 MiB through it under a 64 MiB cap is
/// not a memory kill. Needs a disk-backed directory (the VM lane's root is in RAM, where written
/// files cannot be reclaimed without swap: its guests mount a disk for this; a skip is a failure
/// under GUARD_TEST_REQUIRE_DISK=1, set in both lanes).
#[test]
fn page_cache_past_the_cap_is_not_a_memory_kill() {
    if !privileged("page_cache_past_the_cap_is_not_a_memory_kill") {
        return;
    }
    // The host lane's target directory is on disk, the v2 lane's guests mount one
    // (GUARD_TEST_DISK): GUARD_TEST_REQUIRE_DISK=1 in both.
    let Some(dir) = disk_dir("page_cache_past_the_cap_is_not_a_memory_kill") else {
        return;
    };
    let file = dir
        .path()
        .join(format!("guard-pagecache-{}", std::process::id()));
    let o = guard_cmd()
        .args([
            "--memory",
            "64M",
            "--",
            "dd",
            "if=/dev/zero",
            "bs=1M",
            "count=400",
            "conv=fsync",
        ])
        .arg(format!("of={}", file.display()))
        .stdin(Stdio::null())
        .bounded();
    let _ = std::fs::remove_file(&file);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("exceeded"), "{}", stderr(&o));
}

/// Once a capped job runs, guard locks its pages in RAM and (as root, where the kernel lets it)
/// leaves the OOM killer's reach; the job keeps the oom_score_adj it started with.
#[test]
fn guard_protects_itself_but_not_the_job() {
    if !privileged("guard_protects_itself_but_not_the_job") {
        return;
    }
    let hog = example("hog");
    let mut g = guard_cmd()
        .args(["--memory", "64M", "--"])
        .arg(&hog)
        .args(["sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let status = |pid: u32, key: &str| -> String {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    // Some sandboxes refuse to lower oom_score_adj, even for root: then there is nothing to see.
    let can_lower = std::fs::write("/proc/self/oom_score_adj", "-1").is_ok();
    let _ = std::fs::write("/proc/self/oom_score_adj", "0");
    let adj =
        || std::fs::read_to_string(format!("/proc/{}/oom_score_adj", g.id())).unwrap_or_default();
    let vmlck = || status(g.id(), "VmLck:");
    let protected = wait_until(Duration::from_secs(5), || {
        !vmlck().is_empty() && vmlck() != "0 kB" && (!can_lower || adj().trim() == "-1000")
    });
    let (lck, adj_now) = (vmlck(), adj());
    let job = std::fs::read_to_string(format!("/proc/{}/task/{}/children", g.id(), g.id()))
        .unwrap_or_default();
    let job_adj: Vec<String> = job
        .split_whitespace()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "hog")
        })
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/oom_score_adj"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect();
    send(g.id(), libc::SIGTERM);
    let _ = g.wait();
    assert!(
        protected,
        "guard is not protected: VmLck {lck}, oom_score_adj {adj_now} (lowering allowed: {can_lower})"
    );
    assert!(
        !job_adj.is_empty(),
        "job not found among guard's children: {job:?}"
    );
    assert!(
        job_adj.iter().all(|a| a != "-1000"),
        "the job inherited guard's protection: {job_adj:?}"
    );
}

#[test]
fn observe_mode_captures_before_the_containers_own_limit() {
    if !privileged("observe_mode_captures_before_the_containers_own_limit") {
        return;
    }
    // A "container": a memory cgroup with a 96 MiB limit holding guard, whose cgroupfs is
    // read-only (a mount namespace), so guard cannot make a cgroup of its own. A 96 MiB container
    // and --capture-at 80 at 10 MB/s leave ~19 MiB and ~2 s between the capture point and the
    // limit: guard's own capture is charged to the container too (its reads, the bundle on a
    // tmpfs), and an emulated guest stalls, after which the paced allocator catches up in a
    // burst — at 64 MiB and 90 % (6.4 MiB) CI's 6.1 guest reached the limit mid-capture.
    let v1 = doctor()["mode"] == "cgroup-v1";
    let parent = if v1 {
        job_base().join(format!("guardtest-obs-{}", std::process::id()))
    } else {
        PathBuf::from(format!(
            "/sys/fs/cgroup/guardtest-obs-{}",
            std::process::id()
        ))
    };
    std::fs::create_dir(&parent).unwrap();
    let limit_file = if v1 {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    std::fs::write(parent.join(limit_file), (96u64 << 20).to_string()).unwrap();
    let ev = tempfile::tempdir().unwrap();
    let script = format!(
        "echo $$ > {p}/cgroup.procs && {ro} && exec env GUARD_CONFIG=/dev/null {g} --sample-interval 50ms --capture-at 80 --evidence-dir {e} -- {h} alloc 200 --rate 10",
        p = parent.display(),
        ro = read_only_cgroupfs_prefix(),
        g = guard().display(),
        e = ev.path().display(),
        h = example("hog").display()
    );
    let o = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .stdin(Stdio::null())
        .bounded();
    let _ = std::fs::remove_dir(&parent);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(137),
        "the container's OOM killer: {err}"
    );
    let line = err
        .lines()
        .find(|l| l.contains("is in a container at"))
        .unwrap_or_else(|| panic!("no observe-mode line: {err}"));
    assert!(
        line.contains("of its 96 MiB memory limit (--capture-at 80%)"),
        "{line}"
    );
    let b = evidence_of(line);
    let m = manifest(&b);
    assert_eq!(m["trigger"], "warning");
    assert_eq!(m["capture"], "pre-kill");
    assert_eq!(m["cgroup"]["mode"], "poll");
    let biggest = m["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rss_bytes"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        biggest > 60 << 20,
        "the allocator, read before the kill: {m}"
    );
    assert!(
        b.join("cgroup").join(limit_file).is_file(),
        "the container's cgroup files"
    );
    assert!(
        err.contains("was killed by the kernel's OOM killer"),
        "{err}"
    );
}
