//! Evidence bundles, end to end through the real binary: the bundle a memory kill leaves (layout,
//! manifest keys, permissions, redaction, the kill line naming it), warnings, retention,
//! leftovers, failure paths (unwritable / full evidence directory), `guard report` and
//! `guard list`, py-spy on examples/leak.py and `--core`.

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The bundle path from the kill line (`...; killed; evidence: PATH`).
fn bundle_from_kill_line(err: &str) -> PathBuf {
    bundle_named(err, "exceeded its memory limit")
}

/// guard with `--evidence-dir dir` and `args`; warnings off unless `args` set `--warn` (a slow
/// machine, such as an emulated guest, samples the way to the cap and would add warning bundles).
fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut c = guard_cmd();
    c.arg("--evidence-dir").arg(dir);
    if !args.contains(&"--warn") {
        c.args(["--warn", "off"]);
    }
    c.args(args).stdin(Stdio::null()).bounded()
}

/// `hog alloc 200` under `-m cap` and `flags`, bundles to `dir`: must be killed for memory (137).
/// Returns guard's stderr.
fn killed_hog(dir: &Path, flags: &[&str], cap: &str) -> String {
    let hog = example("hog");
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["-m", cap, "--", hog.to_str().unwrap(), "alloc", "200"]);
    let o = run_in(dir, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{args:?}: {err}");
    err
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

#[test]
fn a_memory_kill_leaves_a_complete_private_bundle_named_in_the_kill_line() {
    if !privileged("a_memory_kill_leaves_a_complete_private_bundle_named_in_the_kill_line") {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: guard creates it, 0700.
    let ev = top.path().join("state/evidence");
    let secret = "s3cr3t-value-for-the-test";
    let hog = example("hog");
    let o = guard_cmd()
        .arg("--evidence-dir")
        .arg(&ev)
        .args(["-m", "64M", "--warn", "off", "--name", "hogjob", "--"])
        .arg(&hog)
        .args(["spawn", "1", "alloc", "200"])
        .env("MY_API_TOKEN", secret)
        .env("PLAIN_VALUE", "visible-value")
        .stdin(Stdio::null())
        .bounded();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_from_kill_line(&err);
    assert_eq!(b.parent(), Some(ev.as_path()));
    let (name, pid) = bundle_name(&b);
    let m = manifest(&b);
    check_manifest(&m, pid);
    let procs = m["processes"].as_array().unwrap();
    check_layout(&b, procs);
    check_private(&b, &ev, &name, pid, secret);
    check_summary(&b);
}

/// `<UTC yyyymmddThhmmssZ>-<name>-<pid>`: the name and the pid.
fn bundle_name(b: &Path) -> (String, i32) {
    let name = b.file_name().unwrap().to_str().unwrap().to_string();
    let (ts, rest) = name.split_at(16);
    assert!(
        ts.len() == 16 && ts.as_bytes()[8] == b'T' && ts.ends_with('Z'),
        "{name}"
    );
    assert!(ts[..8].chars().all(|c| c.is_ascii_digit()), "{name}");
    let pid: i32 = rest
        .strip_prefix("-hogjob-")
        .unwrap_or_else(|| panic!("{name}"))
        .parse()
        .unwrap();

    (name, pid)
}

/// The manifest has the contract's keys and says what happened.
fn check_manifest(m: &serde_json::Value, pid: i32) {
    for k in [
        "format",
        "guard_version",
        "job",
        "command",
        "pid",
        "started_at",
        "captured_at",
        "ended_at",
        "trigger",
        "capture",
        "limit_bytes",
        "usage_at_trigger_bytes",
        "peak_bytes",
        "cgroup",
        "processes",
        "exit",
        "collectors",
        "timings",
        "redacted_env_keys",
    ] {
        assert!(m.get(k).is_some(), "manifest lacks {k}: {m}");
    }
    assert_eq!(m["format"], "guard-evidence/1");
    assert_eq!(m["job"], "hogjob");
    assert_eq!(m["pid"], pid);
    assert_eq!(m["trigger"], "memory-limit");
    assert_eq!(m["capture"], "pre-kill");
    assert_eq!(m["limit_bytes"], 64 << 20);
    assert_eq!(m["exit"]["signal"], 9);
    assert!(
        m["cgroup"]["mode"]
            .as_str()
            .unwrap()
            .starts_with("cgroup-v")
    );
    assert!(m["timings"]["trigger_to_frozen_ms"].as_f64().unwrap() >= 0.0);
    assert!(m["timings"]["capture_ms"].as_f64().unwrap() > 0.0);
    for t in ["started_at", "captured_at", "ended_at"] {
        let v = m[t].as_str().unwrap();
        assert!(v.ends_with('Z') && v.contains('T'), "{t}: {v}");
    }
    let procs = m["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "hog and its child: {procs:?}");
    for p in procs {
        for k in [
            "pid",
            "ppid",
            "comm",
            "cmdline",
            "rss_bytes",
            "pss_bytes",
            "swap_bytes",
        ] {
            assert!(p.get(k).is_some(), "process lacks {k}: {p}");
        }
    }
    let biggest = procs
        .iter()
        .map(|p| p["rss_bytes"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        biggest > 40 << 20,
        "the allocating child holds most of the cap: {procs:?}"
    );
    assert!(
        m["redacted_env_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "MY_API_TOKEN"),
        "{m}"
    );
    let cstatus: Vec<(&str, &str)> = m["collectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert!(cstatus.contains(&("py-spy", "skipped")), "{cstatus:?}");
    assert!(cstatus.contains(&("core", "skipped")), "{cstatus:?}");
}

/// The layout the contract lists.
fn check_layout(b: &Path, procs: &[serde_json::Value]) {
    for f in ["manifest.json", "summary.txt", "timeline.csv", "tree.txt"] {
        assert!(b.join(f).is_file(), "{f}");
    }
    for f in ["meminfo", "vmstat", "loadavg", "uname"] {
        assert!(b.join("system").join(f).is_file(), "system/{f}");
    }
    let cg: Vec<String> = std::fs::read_dir(b.join("cgroup"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cg.iter()
            .any(|n| n == "memory.usage_in_bytes" || n == "memory.current"),
        "{cg:?}"
    );
    for p in procs {
        let d = b.join("processes").join(p["pid"].to_string());
        for f in [
            "status",
            "smaps_rollup",
            "maps",
            "stat",
            "limits",
            "io",
            "cmdline",
            "wchan",
            "environ.redacted",
            "fds.txt",
            "oom_score",
        ] {
            assert!(d.join(f).is_file(), "{}/{f}", d.display());
        }
    }
    let tree = std::fs::read_to_string(b.join("tree.txt")).unwrap();
    assert!(tree.lines().count() >= 3, "{tree}");
    let tl = std::fs::read_to_string(b.join("timeline.csv")).unwrap();
    assert!(tl.starts_with("t_ms,cgroup_bytes,"), "{tl}");
}

/// Private: 0700 directories, 0600 files; no secret anywhere; no temporary left.
fn check_private(b: &Path, ev: &Path, name: &str, pid: i32, secret: &str) {
    let mut all = vec![b.to_path_buf()];
    walk(b, &mut all);
    for p in &all {
        let md = std::fs::symlink_metadata(p).unwrap();
        let want = if md.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(md.mode() & 0o777, want, "{}", p.display());
        if md.is_file() {
            let data = std::fs::read(p).unwrap();
            assert!(
                !data.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret",
                p.display()
            );
        }
    }
    let env = std::fs::read_to_string(
        b.join("processes")
            .join(pid.to_string())
            .join("environ.redacted"),
    )
    .unwrap();
    assert!(env.contains("MY_API_TOKEN=<redacted>"), "{env}");
    assert!(env.contains("PLAIN_VALUE=visible-value"), "{env}");
    assert_eq!(
        std::fs::metadata(ev).unwrap().mode() & 0o777,
        0o700,
        "the evidence directory guard created"
    );
    let names: Vec<String> = std::fs::read_dir(ev)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![name.to_string()], "only the finished bundle");
}

/// summary.txt is what `guard report` prints.
fn check_summary(b: &Path) {
    let r = guard_cmd().arg("report").arg(b).bounded();
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let summary = std::fs::read_to_string(b.join("summary.txt")).unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), summary);
    assert!(summary.contains("exceeded its memory limit"), "{summary}");
    assert!(summary.contains("limit 64 MiB"), "{summary}");
    assert!(summary.contains("MY_API_TOKEN"), "{summary}");
}

#[test]
fn warning_writes_a_light_bundle_and_the_job_goes_on() {
    if !privileged("warning_writes_a_light_bundle_and_the_job_goes_on") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let hog = example("hog");
    let o = run_in(
        ev.path(),
        &[
            "-m",
            "128M",
            "--warn",
            "40M",
            "--",
            hog.to_str().unwrap(),
            "alloc",
            "60",
            "--rate",
            "100",
            "--exit",
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("warning threshold"))
        .collect();
    assert_eq!(lines.len(), 1, "one warning per upward crossing:\n{err}");
    assert!(
        lines[0].starts_with("guard: warning: hog (pid "),
        "{}",
        lines[0]
    );
    let b = PathBuf::from(lines[0].split_once("evidence: ").expect("evidence: PATH").1);
    let m = manifest(&b);
    assert_eq!(m["trigger"], "warning");
    assert!(m.get("exit").is_none(), "the job was still running: {m}");
    assert!(m["usage_at_trigger_bytes"].as_u64().unwrap() >= 40 << 20);
    for f in ["manifest.json", "timeline.csv", "tree.txt", "summary.txt"] {
        assert!(b.join(f).is_file(), "{f}");
    }
    assert!(!b.join("system").exists(), "a light bundle");
}

#[test]
fn unwritable_evidence_dir_still_enforces_and_says_why() {
    // A file where the directory should be: no root needed for this one; guard may be in poll
    // mode here, which enforces too.
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let hog = example("hog");
    let o = run_in(
        &file,
        &["-m", "64M", "--", hog.to_str().unwrap(), "alloc", "300"],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let start_warning: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("no evidence can be kept"))
        .collect();
    assert_eq!(start_warning.len(), 1, "{err}");
    assert!(start_warning[0].contains(file.to_str().unwrap()), "{err}");
    let kill = err
        .lines()
        .find(|l| l.contains("exceeded its memory limit"))
        .unwrap();
    assert!(
        kill.contains("; killed; no evidence: cannot create"),
        "{kill}"
    );
}

/// Run guard inside a mount namespace with a tmpfs of `size` as its evidence directory; returns
/// guard's output and what the tmpfs held afterwards (`ls -A`).
fn in_tiny_tmpfs(size: &str, guard_args: &str) -> (std::process::Output, String) {
    let mnt = tempfile::tempdir().unwrap();
    let m = mnt.path().display();
    let script = format!(
        "mount --make-rprivate / 2>/dev/null; mount -t tmpfs -o size={size},mode=0700 tmpfs {m} && \
         {g} --evidence-dir {m} {guard_args}; rc=$?; echo \"contents: $(ls -A {m})\" >&2; exit $rc",
        g = guard().display()
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "sh", "-c", &script])
        .env("GUARD_CONFIG", "/dev/null")
        .stdin(Stdio::null());
    let o = c.bounded();
    let contents = stderr(&o)
        .lines()
        .find_map(|l| l.strip_prefix("contents: "))
        .unwrap_or("?")
        .to_string();
    (o, contents)
}

#[test]
fn a_full_evidence_dir_leaves_no_partial_bundle_and_exit_is_still_137() {
    if !privileged("a_full_evidence_dir_leaves_no_partial_bundle_and_exit_is_still_137") {
        return;
    }
    let hog = example("hog");
    // 64 KiB: room for the directory, not for the process files of a bundle.
    let (o, contents) = in_tiny_tmpfs(
        "64k",
        &format!("--warn off -m 64M -- {} spawn 1 alloc 200", hog.display()),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let kill = err
        .lines()
        .find(|l| l.contains("exceeded its memory limit"))
        .expect(&err);
    assert!(
        kill.contains("; killed; no evidence: writing the bundle failed")
            && kill.contains("No space left"),
        "{kill}"
    );
    assert_eq!(contents, "", "nothing left in the full directory: {err}");
}

#[test]
fn read_only_evidence_dir_is_reported_at_start_and_at_the_kill() {
    if !privileged("read_only_evidence_dir_is_reported_at_start_and_at_the_kill") {
        return;
    }
    let hog = example("hog");
    let mnt = tempfile::tempdir().unwrap();
    let m = mnt.path().display();
    let script = format!(
        "mount --make-rprivate / 2>/dev/null; mount -t tmpfs -o ro tmpfs {m} && exec {g} --evidence-dir {m} -m 64M -- {h} alloc 200",
        g = guard().display(),
        h = hog.display()
    );
    let o = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("GUARD_CONFIG", "/dev/null")
        .stdin(Stdio::null())
        .bounded();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    assert!(
        err.contains("is not writable: Read-only file system"),
        "{err}"
    );
    let kill = err
        .lines()
        .find(|l| l.contains("exceeded its memory limit"))
        .expect(&err);
    assert!(
        kill.contains("no evidence:") && kill.contains("Read-only"),
        "{kill}"
    );
}

#[test]
fn no_evidence_says_so_in_the_kill_line() {
    if !privileged("no_evidence_says_so_in_the_kill_line") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let err = killed_hog(ev.path(), &["--no-evidence"], "64M");
    assert!(
        err.contains("; killed; no evidence: --no-evidence was given"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(ev.path()).unwrap().count(), 0);
}

#[test]
fn retention_keeps_the_newest_and_leftovers_of_dead_guards_go() {
    if !privileged("retention_keeps_the_newest_and_leftovers_of_dead_guards_go") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    // An unfinished bundle of a guard that died (pid far beyond pid_max) and one of a live pid.
    let dead = ev.path().join(".tmp-2147483000-20260101T000000Z-x-1");
    let live = ev
        .path()
        .join(format!(".tmp-{}-20260101T000000Z-x-2", std::process::id()));
    std::fs::create_dir(&dead).unwrap();
    std::fs::create_dir(&live).unwrap();
    let hog = example("hog");
    let mut paths = Vec::new();
    for _ in 0..3 {
        let o = run_in(
            ev.path(),
            &[
                "--keep",
                "2",
                "-m",
                "32M",
                "--",
                hog.to_str().unwrap(),
                "alloc",
                "100",
            ],
        );
        assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
        paths.push(bundle_from_kill_line(&stderr(&o)));
    }
    assert!(
        !dead.exists(),
        "the dead guard's temporary bundle is removed"
    );
    assert!(live.exists(), "a running guard's temporary bundle is not");
    assert!(!paths[0].exists(), "the oldest goes");
    assert!(paths[1].exists() && paths[2].exists());

    let l = guard_cmd()
        .args(["list", "--json", "--evidence-dir"])
        .arg(ev.path())
        .bounded();
    assert_eq!(l.status.code(), Some(0), "{}", stderr(&l));
    let rows: Value = serde_json::from_slice(&l.stdout).unwrap();
    let listed: Vec<PathBuf> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| PathBuf::from(r["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        vec![paths[2].clone(), paths[1].clone()],
        "newest first"
    );
    let text = guard_cmd()
        .args(["list", "--evidence-dir"])
        .arg(ev.path())
        .bounded();
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(t.lines().next().unwrap().starts_with("CAPTURED"), "{t}");
    assert!(t.contains("memory-limit") && t.contains("pre-kill"), "{t}");

    // report --latest / --json / --html
    let latest = guard_cmd()
        .args(["report", "--latest", "--json", "--evidence-dir"])
        .arg(ev.path())
        .bounded();
    let j: Value = serde_json::from_slice(&latest.stdout).unwrap();
    assert_eq!(PathBuf::from(j["bundle"].as_str().unwrap()), paths[2]);
    assert_eq!(j["manifest"]["trigger"], "memory-limit");
    let html = ev.path().join("r.html");
    let h = guard_cmd()
        .arg("report")
        .arg(&paths[2])
        .arg("--html")
        .arg(&html)
        .bounded();
    assert_eq!(h.status.code(), Some(0), "{}", stderr(&h));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("<polyline") && page.contains("cap 32 MiB"),
        "{page}"
    );
    assert!(!page.contains("<script"), "self-contained, no scripts");
    assert!(page.contains("white-space:pre-wrap"), "the text wraps");
    let mode = std::fs::metadata(&html).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600, "private like the bundle: {mode:o}");
    // An existing page becomes private too; a symlink in its place is not written through.
    std::fs::set_permissions(&html, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = guard_cmd()
        .arg("report")
        .arg(&paths[2])
        .arg("--html")
        .arg(&html)
        .bounded();
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(std::fs::metadata(&html).unwrap().mode() & 0o777, 0o600);
    let target = ev.path().join("target.txt");
    std::fs::write(&target, "untouched").unwrap();
    let link = ev.path().join("link.html");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let refused = guard_cmd()
        .arg("report")
        .arg(&paths[2])
        .arg("--html")
        .arg(&link)
        .bounded();
    assert_eq!(refused.status.code(), Some(125));
    assert_eq!(stderr(&refused).lines().count(), 1, "{}", stderr(&refused));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
}

#[test]
fn report_errors_are_one_line_and_125() {
    let d = tempfile::tempdir().unwrap();
    let o = guard_cmd()
        .arg("report")
        .arg(d.path().join("nope"))
        .bounded();
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("guard: error: cannot read "), "{err}");
    let o = guard_cmd()
        .args(["report", "--latest", "--evidence-dir"])
        .arg(d.path())
        .bounded();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("no bundle in"), "{}", stderr(&o));
    let o = guard_cmd().args(["report"]).bounded();
    assert_eq!(
        o.status.code(),
        Some(125),
        "a bundle or --latest is required"
    );
}

#[test]
fn leak_py_report_names_the_allocating_line() {
    if !privileged("leak_py_report_names_the_allocating_line")
        || !tool("leak_py_report_names_the_allocating_line", "python3")
        || !tool("leak_py_report_names_the_allocating_line", "py-spy")
    {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let leak = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/leak.py");
    let o = run_in(
        ev.path(),
        &[
            "-m",
            "200M",
            "--name",
            "fix_images",
            "--",
            "python3",
            leak.to_str().unwrap(),
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_from_kill_line(&err);
    let r = guard_cmd().arg("report").arg(&b).bounded();
    let text = String::from_utf8_lossy(&r.stdout).into_owned();
    // The innermost frame is where the job was when its cap stopped it: nearly always the
    // buffer's allocation (`bytearray(size)`, leak.py:24-25), now and then the row object's own
    // allocation in the QuerySet's loop (leak.py:39-40, a new pymalloc arena) — both inside the
    // QuerySet iteration that caches every row (CI once caught line 39).
    let stack = text
        .split("Python stack of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no py-spy stack: {text}"));
    let innermost = stack
        .lines()
        .nth(2)
        .unwrap_or_else(|| panic!("no frame: {text}"))
        .trim();
    let allocating = [
        "Image.__init__ (leak.py:24)",
        "Image.__init__ (leak.py:25)",
        "QuerySet.__iter__ (leak.py:39)",
        "QuerySet.__iter__ (leak.py:40)",
    ];
    assert!(allocating.contains(&innermost), "{innermost}: {text}");
    assert!(text.contains("QuerySet.__iter__ (leak.py:"), "{text}");
    assert!(text.contains("fix_images (leak.py:47)"), "{text}");
    let m = manifest(&b);
    let pyspy = m["collectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("py-spy"))
        .unwrap()
        .clone();
    assert_eq!(pyspy["status"], "ok", "{pyspy}");
}

/// cron's PATH (/usr/bin:/bin) misses a py-spy installed elsewhere: --pyspy names it; without
/// it the report says how to get stacks. A --pyspy that is not a program is refused up front.
#[test]
fn under_crons_path_pyspy_names_the_program_and_a_report_without_stacks_says_how() {
    let test = "under_crons_path_pyspy_names_the_program_and_a_report_without_stacks_says_how";
    if !privileged(test) || !tool(test, "python3") || !tool(test, "py-spy") {
        return;
    }
    let pyspy = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("py-spy"))
        .find(|p| p.is_file())
        .unwrap();
    let leak = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/leak.py");
    let home = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let ev = tempfile::tempdir().unwrap().keep();
        let o = guard_cmd()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .arg("--evidence-dir")
            .arg(&ev)
            .args(["--warn", "off", "-m", "200M"])
            .args(extra)
            .args(["--", "/usr/bin/python3", leak.to_str().unwrap()])
            .stdin(Stdio::null())
            .bounded();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(137), "{err}");
        bundle_from_kill_line(&err)
    };
    let status = |b: &Path| {
        manifest(b)["collectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"].as_str().unwrap().starts_with("py-spy"))
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    let named = run(&["--pyspy", pyspy.to_str().unwrap()]);
    assert_eq!(status(&named), "ok");
    let unnamed = run(&[]);
    let text = String::from_utf8_lossy(&guard_cmd().arg("report").arg(&unnamed).bounded().stdout)
        .into_owned();
    if status(&unnamed) != "ok" {
        // Not in /usr/local/bin, /usr/bin or ~/.local/bin on this machine.
        assert!(
            text.contains("Python stacks: none: py-spy was not found"),
            "{text}"
        );
        assert!(text.contains("--pyspy PATH"), "{text}");
    }
    let o = guard_cmd()
        .args(["--pyspy", "/nonexistent/py-spy", "-m", "1G", "--", "true"])
        .bounded();
    assert_eq!(o.status.code(), Some(125));
    let e = stderr(&o);
    assert!(
        e.starts_with(
            "guard: error: invalid --pyspy '/nonexistent/py-spy': not an executable file"
        ),
        "{e}"
    );
}

#[test]
fn core_of_the_largest_process_on_request() {
    if !privileged("core_of_the_largest_process_on_request")
        || !tool("core_of_the_largest_process_on_request", "gcore")
    {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let err = killed_hog(ev.path(), &["--core"], "48M");
    let b = bundle_from_kill_line(&err);
    let m = manifest(&b);
    let core = m["collectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "core")
        .unwrap()
        .clone();
    assert_eq!(core["status"], "ok", "{core}");
    let pid = m["pid"].as_i64().unwrap();
    assert!(
        !b.join(format!("processes/{pid}/core.{pid}")).exists(),
        "compressed"
    );
    let f = b.join(format!("processes/{pid}/core.{pid}.zst"));
    let md = std::fs::metadata(&f).unwrap();
    assert_eq!(md.mode() & 0o777, 0o600);
    assert!(core["detail"].as_str().unwrap().contains("zstd"), "{core}");
    // A real core of a ~48 MiB process: decompressed, an ELF core file that large.
    let raw = zstd::stream::decode_all(std::fs::File::open(&f).unwrap()).unwrap();
    assert!(raw.starts_with(b"\x7fELF"), "an ELF core");
    assert!(raw.len() > 30 << 20, "{} bytes", raw.len());
}

#[test]
fn a_kernel_oom_kill_without_a_cap_leaves_a_post_mortem_bundle() {
    let test = "a_kernel_oom_kill_without_a_cap_leaves_a_post_mortem_bundle";
    if !privileged(test) {
        return;
    }
    // guard without --memory inside a v1 memory cgroup with a limit: the job (a child cgroup of
    // guard's own) hits the ancestor's limit and the kernel's OOM killer kills it. On cgroup v2
    // guard puts the job outside its own cgroup, so there is no such ancestor to set up.
    let v1 = doctor()["mode"] == "cgroup-v1";
    if !gate(
        test,
        (!v1).then(|| "needs cgroup v1 (the job inside guard's own memory cgroup)".into()),
        "GUARD_TEST_REQUIRE_V1",
    ) {
        return;
    }
    let parent = job_base().join(format!("guardtest-oom-{}", std::process::id()));
    std::fs::create_dir(&parent).unwrap();
    std::fs::write(
        parent.join("memory.limit_in_bytes"),
        (96u64 << 20).to_string(),
    )
    .unwrap();
    let ev = tempfile::tempdir().unwrap();
    let script = format!(
        "echo $$ > {p}/cgroup.procs && exec {g} --evidence-dir {e} -- {h} alloc 400",
        p = parent.display(),
        g = guard().display(),
        e = ev.path().display(),
        h = example("hog").display()
    );
    let o = Command::new("sh")
        .args(["-c", &script])
        .env("GUARD_CONFIG", "/dev/null")
        .stdin(Stdio::null())
        .bounded();
    // The killed job may take a moment to leave the cgroup: removed within 5 s, or another
    // test's check of leftover cgroups finds it (CI run 15).
    wait_until(std::time::Duration::from_secs(5), || {
        std::fs::remove_dir(&parent).is_ok() || !parent.exists()
    });
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "128 + SIGKILL: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("was killed by the kernel's OOM killer"))
        .unwrap_or_else(|| panic!("no kernel-OOM line:\n{err}"));
    assert!(
        !err.contains("exceeded its memory limit"),
        "guard had no cap: {err}"
    );
    let b = evidence_of(line);
    let m = manifest(&b);
    assert_eq!(m["trigger"], "kernel-oom");
    assert_eq!(m["capture"], "post-mortem");
    assert_eq!(m["exit"]["signal"], 9);
    assert!(b.join("cgroup").is_dir() && b.join("system/meminfo").is_file());
}

/// The kill report says whether growth was steady (a leak) or a burst.
#[test]
fn the_kill_report_tells_a_leak_from_a_burst() {
    if !privileged("the_kill_report_tells_a_leak_from_a_burst") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let hog = example("hog");
    let hog = hog.to_str().unwrap();
    for (args, shape, words) in [
        (
            vec!["-m", "64M", "--", hog, "alloc", "200", "--rate", "20"],
            "steady",
            "steady growth, a leak's shape",
        ),
        (
            vec!["-m", "64M", "--", hog, "alloc", "200"],
            "burst",
            "a burst: most of it at the end",
        ),
    ] {
        let o = run_in(ev.path(), &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(137), "{args:?}: {err}");
        let b = bundle_named(&err, "; evidence: ");
        let m = manifest(&b);
        assert_eq!(m["growth"]["shape"], shape, "{args:?}: {m}");
        assert!(m["growth"].get("time_to_limit_ms").is_none(), "{m}");
        let rep = guard_cmd().arg("report").arg(&b).bounded();
        let text = String::from_utf8_lossy(&rep.stdout);
        let growth = text
            .lines()
            .find(|l| l.trim_start().starts_with("growth"))
            .unwrap_or("");
        assert!(growth.contains(words), "{args:?}: {text}");
        let json = guard_cmd().args(["report", "--json"]).arg(&b).bounded();
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v["growth"]["shape"], shape);
    }
}

/// Issue 26: the native stacks have one option and one key to turn them off (--no-native-stacks,
/// `no_native_stacks`), as the census and tracemalloc do. A stand-in eu-stack on PATH says
/// whether it ran; turned off, the bundle says why there is no stack.
#[test]
fn native_stacks_are_read_unless_turned_off_by_option_or_key() {
    let t = "native_stacks_are_read_unless_turned_off_by_option_or_key";
    if !privileged(t) {
        return;
    }
    let tools = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ran = tools.path().join("ran");
    let fake = tools.path().join("eu-stack");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$2\" >> {}\nprintf 'PID %s - process\\nTID %s:\\n#0  0x1 decode_frame\\n' \"$2\" \"$2\"\n",
            ran.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = tools.path().join("guard.toml");
    std::fs::write(&conf, "[defaults]\nno_native_stacks = true\n").unwrap();
    let path = format!(
        "{}:{}",
        tools.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (how, flags, config) in [
        ("by default", &[][..], Path::new("/dev/null")),
        (
            "--no-native-stacks",
            &["--no-native-stacks"][..],
            Path::new("/dev/null"),
        ),
        ("the key", &[][..], conf.as_path()),
    ] {
        let _ = std::fs::remove_file(&ran);
        let ev = tempfile::tempdir().unwrap();
        let o = guard_cmd()
            .env("PATH", &path)
            .env("GUARD_CONFIG", config)
            .arg("--evidence-dir")
            .arg(ev.path())
            .args(["--warn", "off", "-m", "100M"])
            .args(flags)
            .arg("--")
            .arg(example("hog"))
            .args(["alloc", "300"])
            .stdin(Stdio::null())
            .bounded();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(137), "{how}: {err}");
        let m: Value = serde_json::from_slice(
            &std::fs::read(bundle_from_kill_line(&err).join("manifest.json")).unwrap(),
        )
        .unwrap();
        let c = m["collectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"].as_str().unwrap().starts_with("native-stack:"))
            .cloned()
            .unwrap_or_else(|| panic!("{how}: no native-stack collector: {m}"));
        if how == "by default" {
            assert_eq!(c["status"], "ok", "{how}: {c}");
            assert!(ran.exists(), "{how}: eu-stack did not run");
        } else {
            assert_eq!(c["status"], "skipped", "{how}: {c}");
            assert_eq!(c["detail"], "not read (--no-native-stacks)", "{how}: {c}");
            assert!(!ran.exists(), "{how}: eu-stack ran");
        }
    }
}
