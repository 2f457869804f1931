//! The Python heap census end to end: examples/leak.py under guard in every Python this machine
//! has (the report names the QuerySet's result cache on the path), at the warning and at the cap,
//! a census that does not answer (timeout, the kill goes ahead), two Python processes, the hook
//! chained to the sitecustomize it shadows (also with two guards nested), --no-pyheap, and
//! programs the hook must not change (Python 2, a job that is not Python).

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn leak_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/leak.py")
}

fn collectors(m: &Value) -> Vec<Value> {
    m["collectors"].as_array().cloned().unwrap_or_default()
}

fn pyheap_collectors(m: &Value) -> Vec<Value> {
    collectors(m)
        .into_iter()
        .filter(|c| c["name"].as_str().unwrap_or("").starts_with("pyheap:"))
        .collect()
}

fn run(ev: &Path, args: &[&str]) -> std::process::Output {
    let mut c = guard_cmd();
    c.arg("--evidence-dir").arg(ev);
    c.args(args).stdin(Stdio::null());
    output_within(&mut c, Duration::from_secs(180))
}

#[test]
fn leak_py_census_names_the_result_cache_in_every_python_here() {
    let t = "leak_py_census_names_the_result_cache_in_every_python_here";
    if !privileged(t) || !tool(t, "python3") {
        return;
    }
    let pys = pythons();
    assert!(!pys.is_empty(), "no Python 3 here");
    let mut tested = Vec::new();
    for (label, py) in &pys {
        let ev = tempfile::tempdir().unwrap();
        let o = run(
            ev.path(),
            &[
                "-m",
                "200M",
                "--warn",
                "off",
                "--name",
                "fix_images",
                // What the census finds, not how fast: room for an emulated guest (the cgroup v2
                // lane runs ~10 times slower than this machine; the default is 2 s).
                "--pyheap-window",
                "20s",
                "--",
                py.to_str().unwrap(),
                leak_py().to_str().unwrap(),
            ],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(137), "{label}: {err}");
        let b = bundle_named(&err, "exceeded its memory limit");
        let m = manifest(&b);
        let pid = m["pid"].as_i64().unwrap();
        let c = pyheap_collectors(&m);
        assert_eq!(c.len(), 1, "{label}: {c:?}");
        assert_eq!(c[0]["status"], "ok", "{label}: {c:?}");
        let heap: Value = serde_json::from_slice(
            &std::fs::read(b.join(format!("processes/{pid}/pyheap.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(heap["format"], "guard-pyheap/1");
        assert_eq!(heap["by_size"][0]["type"], "bytearray", "{label}: {heap}");
        let r = guard_cmd().arg("report").arg(&b).bounded();
        let text = stdout(&r);
        let path_line = text
            .lines()
            .find(|l| l.contains("bytearray \u{d7}"))
            .unwrap_or_else(|| panic!("{label}: no census line:\n{text}"));
        // The row's buffer, the cache that keeps every row, and the variable that keeps the cache.
        for want in [
            "\u{2190} Image.data \u{2190} list[",
            "\u{2190} QuerySet._result_cache \u{2190} local 'qs' in fix_images (leak.py:",
        ] {
            assert!(path_line.contains(want), "{label}: {want}:\n{text}");
        }
        // Most of the samples agree (the newest row may be in the loop's hands).
        let agree = text
            .split(" sampled instance(s)")
            .next()
            .and_then(|t| t.rsplit('\n').next())
            .and_then(|l| {
                let (n, m) = l.trim().split_once(" of ")?;
                Some((n.parse::<u32>().ok()?, m.parse::<u32>().ok()?))
            });
        assert!(
            agree.is_some_and(|(n, m)| m >= 2 && 2 * n > m),
            "{label}: {agree:?}\n{text}"
        );
        assert!(
            text.contains(
                "fix: a Django QuerySet keeps every row it has yielded: iterate with .iterator()"
            ),
            "{label}:\n{text}"
        );
        // The alert summary's finding, and --json.
        let j = guard_cmd().arg("report").arg("--json").arg(&b).bounded();
        let jv: Value = serde_json::from_slice(&j.stdout).unwrap();
        assert_eq!(jv["pyheap"][0]["paths"][0]["root"], "local", "{label}");
        tested.push(format!(
            "{label} ({})",
            heap["python"].as_str().unwrap_or("?")
        ));
    }
    println!("census tested with: {}", tested.join(", "));
}

#[test]
fn a_warning_bundle_carries_a_census_while_the_job_runs() {
    let t = "a_warning_bundle_carries_a_census_while_the_job_runs";
    if !privileged(t) || !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    // 50 MB/s: the warning at 100 MB, the cap at 200 MB two seconds later.
    let o = run(
        ev.path(),
        &[
            "-m",
            "200M",
            "--warn",
            "50%",
            "--",
            "/usr/bin/python3",
            leak_py().to_str().unwrap(),
            "--row-kb",
            "500",
            "--rate",
            "100",
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let w = bundle_named(&err, "past its warning threshold");
    let m = manifest(&w);
    let c = pyheap_collectors(&m);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["status"], "ok", "{c:?}");
    let r = stdout(&guard_cmd().arg("report").arg(&w).bounded());
    assert!(r.contains("QuerySet._result_cache"), "{r}");
    // The job went on to its cap, where a second census was made.
    let b = bundle_named(&err, "exceeded its memory limit");
    assert_eq!(pyheap_collectors(&manifest(&b))[0]["status"], "ok");
}

/// A Python job whose census signal is blocked: the handler is installed (SigCgt shows it) but
/// never runs. `then` is what the job does after blocking it.
fn blocked_census_job(then: &str) -> String {
    format!(
        "import os, signal, subprocess\n\
         signal.pthread_sigmask(signal.SIG_BLOCK, {{int(os.environ['GUARD_PYHEAP'].split(':')[1])}})\n\
         {then}\n"
    )
}

#[test]
fn a_census_that_does_not_answer_is_a_timeout_and_the_kill_goes_ahead() {
    let t = "a_census_that_does_not_answer_is_a_timeout_and_the_kill_goes_ahead";
    if !privileged(t) || !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    // The Python parent waits; its child (not Python) reaches the cap, gets the headroom, ends
    // its allocation within it and sleeps: only the census keeps guard waiting.
    let hog = example("hog");
    let script = blocked_census_job(&format!(
        "subprocess.call([{:?}, 'alloc', '120'])",
        hog.to_str().unwrap()
    ));
    let t0 = Instant::now();
    let o = run(
        ev.path(),
        &[
            "-m",
            "100M",
            "--warn",
            "off",
            "--pyheap-window",
            "700ms",
            "--",
            "/usr/bin/python3",
            "-c",
            &script,
        ],
    );
    let took = t0.elapsed();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    let c = pyheap_collectors(&manifest(&b));
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["status"], "timeout", "{c:?}");
    assert!(
        c[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no answer within 700ms (--pyheap-window); the kill went ahead"),
        "{c:?}"
    );
    let ms = c[0]["duration_ms"].as_f64().unwrap();
    assert!((650.0..3000.0).contains(&ms), "{ms}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    // hog holds the memory and leads; the census that did not answer has its line below.
    let r = stdout(&guard_cmd().arg("report").arg(&b).bounded());
    let python = manifest(&b)["pid"].as_i64().unwrap();
    assert!(
        r.contains(&format!(
            "  pid {python}: no census (timeout: no answer within 700ms"
        )),
        "{r}"
    );
}

/// A census that fails after guard accepted it — here json, which it answers with, is broken by
/// the program; at the cap it could be a MemoryError — says why, in a document it builds by hand.
/// Before: it closed the connection, and guard could only say "closed the connection without an
/// answer" (CI stop 28, Python 3.6 at the cap).
#[test]
fn a_census_that_fails_while_answering_says_why() {
    let t = "a_census_that_fails_while_answering_says_why";
    if !privileged(t) || !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let script = "import sys, types\n\
        sys.modules['json'] = types.ModuleType('json')\n\
        hold = []\n\
        while True:\n    hold.append(bytearray(1 << 20))\n";
    let (_, _, c) = one_census_at_the_cap(ev.path(), "100M", "2s", script);
    assert_eq!(c["status"], "failed", "{c}");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("AttributeError") && detail.contains("dumps"),
        "{c}"
    );
}

#[test]
fn a_job_that_allocates_during_its_census_gets_no_more_than_the_headroom() {
    let t = "a_job_that_allocates_during_its_census_gets_no_more_than_the_headroom";
    if !privileged(t) || !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let script = blocked_census_job("keep = []\nwhile True:\n    keep.append(bytearray(1 << 20))");
    let o = run(
        ev.path(),
        &[
            "-m",
            "100M",
            "--warn",
            "off",
            "--pyheap-headroom",
            "16M",
            "--",
            "/usr/bin/python3",
            "-c",
            &script,
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    let m = manifest(&b);
    let c = pyheap_collectors(&m);
    assert_eq!(c[0]["status"], "failed", "{c:?}");
    assert!(
        c[0]["detail"]
            .as_str()
            .unwrap()
            .contains("the job reached 116 MiB (its cap and the census headroom)"),
        "{c:?}"
    );
    assert!(m["peak_bytes"].as_u64().unwrap() <= 116 << 20, "{m}");
}

#[test]
fn every_python_process_of_the_job_gets_its_census() {
    let t = "every_python_process_of_the_job_gets_its_census";
    if !privileged(t) || !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    // A parent Python that waits for a child Python, which leaks.
    let script = format!(
        "import subprocess, sys\nheld = [bytes(4096) for _ in range(2000)]\n\
         sys.exit(subprocess.call([sys.executable, {:?}]))\n",
        leak_py().to_str().unwrap()
    );
    let o = run(
        ev.path(),
        &[
            "-m",
            "200M",
            "--warn",
            "off",
            // Two censuses at once under emulation (the v2 lane): the default 2 s cut the
            // larger one short before its paths.
            "--pyheap-window",
            "20s",
            "--",
            "/usr/bin/python3",
            "-c",
            &script,
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    let c = pyheap_collectors(&manifest(&b));
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c.iter().all(|c| c["status"] == "ok"), "{c:?}");
    let r = stdout(&guard_cmd().arg("report").arg(&b).bounded());
    // The largest heap first, the other one in a line.
    assert!(r.contains("QuerySet._result_cache"), "{r}");
    // The parent's 2,000 buffers, with the interpreter's own bytes objects (all counted since
    // the census counts every untracked object, not only those of 1 KiB and more).
    assert!(r.contains("bytes \u{d7}2,"), "{r}");
}

#[test]
fn the_hook_runs_the_sitecustomize_it_shadows_once_also_nested() {
    let t = "the_hook_runs_the_sitecustomize_it_shadows_once_also_nested";
    if !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("sitecustomize.py"),
        "print('CHAINED sitecustomize ran')\n",
    )
    .unwrap();
    let probe = "import os, _signal\n\
        sig = int(os.environ['GUARD_PYHEAP'].split(':')[1])\n\
        h = _signal.getsignal(sig)\n\
        print('handler', getattr(h, '__name__', h))\n";
    for nested in [false, true] {
        // A cap: without one no census can happen and the hook is not put in (issue 24).
        let mut c = guard_cmd();
        c.env("PYTHONPATH", site.path())
            .arg("--evidence-dir")
            .arg(ev.path())
            .args(["-m", "1G", "--"]);
        if nested {
            c.arg(guard())
                .arg("--evidence-dir")
                .arg(ev.path())
                .args(["-m", "1G", "--"]);
        }
        c.args(["/usr/bin/python3", "-c", probe]);
        let o = output_within(&mut c, Duration::from_secs(30));
        let out = stdout(&o);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            out.matches("CHAINED sitecustomize ran").count(),
            1,
            "nested {nested}: {out}"
        );
        assert!(
            out.contains("handler _guard_census"),
            "nested {nested}: {out}"
        );
    }
}

#[test]
fn no_pyheap_leaves_the_environment_as_given_and_the_report_says_how_to_get_one() {
    let t = "no_pyheap_leaves_the_environment_as_given_and_the_report_says_how_to_get_one";
    if !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let probe = "import os; print(os.environ.get('PYTHONPATH'), os.environ.get('GUARD_PYHEAP'))";
    let mut c = guard_cmd();
    c.env_remove("PYTHONPATH")
        .arg("--evidence-dir")
        .arg(ev.path())
        .args(["--no-pyheap", "--", "/usr/bin/python3", "-c", probe]);
    let o = output_within(&mut c, Duration::from_secs(30));
    assert_eq!(stdout(&o).trim(), "None None", "{}", stderr(&o));
    // Without --memory (and no --warn) no census can happen: the environment is left as given
    // (issue 24).
    let mut c = guard_cmd();
    c.env("PYTHONPATH", "/opt/app")
        .arg("--evidence-dir")
        .arg(ev.path())
        .args(["--", "/usr/bin/python3", "-c", probe]);
    let out = stdout(&output_within(&mut c, Duration::from_secs(30)));
    assert_eq!(out.trim(), "/opt/app None", "no cap, no hook");
    let mut c = guard_cmd();
    c.env("PYTHONPATH", "/opt/app")
        .arg("--evidence-dir")
        .arg(ev.path())
        .args(["-m", "1G", "--", "/usr/bin/python3", "-c", probe]);
    let out = stdout(&output_within(&mut c, Duration::from_secs(30)));
    assert!(out.contains("/pyhook-"), "{out}");
    assert!(
        out.contains(":/opt/app "),
        "the job's own PYTHONPATH follows: {out}"
    );
    if !privileged(t) {
        return;
    }
    let o = run(
        ev.path(),
        &[
            "-m",
            "100M",
            "--warn",
            "off",
            "--no-pyheap",
            "--",
            "/usr/bin/python3",
            leak_py().to_str().unwrap(),
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    let r = stdout(&guard_cmd().arg("report").arg(&b).bounded());
    assert!(r.contains("run without --no-pyheap"), "{r}");
}

#[test]
fn programs_the_hook_does_not_serve_start_as_before() {
    let t = "programs_the_hook_does_not_serve_start_as_before";
    let ev = tempfile::tempdir().unwrap();
    let py2 = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".pyenv/versions/2.7.18/bin/python"))
        .filter(|p| p.is_file());
    match py2 {
        Some(py2) => {
            let mut c = guard_cmd();
            c.arg("--evidence-dir")
                .arg(ev.path())
                .args(["-m", "1G", "--"])
                .arg(py2)
                .args(["-c", "import sys; print('py2 ok %d' % sys.version_info[0])"]);
            let o = output_within(&mut c, Duration::from_secs(30));
            assert_eq!(stdout(&o).trim(), "py2 ok 2", "{}", stderr(&o));
            assert!(stderr(&o).is_empty(), "{}", stderr(&o));
        }
        None => println!("test skipped: {t}: python 2 part: no pyenv 2.7.18 here"),
    }
    // Not Python: the manifest says so in one line, nothing else changes.
    if !privileged(t) {
        return;
    }
    let o = run(
        ev.path(),
        &[
            "-m",
            "64M",
            "--warn",
            "off",
            "--",
            example("hog").to_str().unwrap(),
            "alloc",
            "200",
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let m = manifest(&bundle_named(&err, "exceeded its memory limit"));
    let c: Vec<Value> = collectors(&m)
        .into_iter()
        .filter(|c| c["name"].as_str().unwrap_or("").starts_with("pyheap"))
        .collect();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["status"], "skipped");
    assert_eq!(c[0]["detail"], "no Python process in the job");
}

/// `script` under /usr/bin/python3, capped at `cap` and killed there (137): its bundle, the
/// manifest, and the census collector of its one Python process.
fn one_census_at_the_cap(
    ev: &Path,
    cap: &str,
    window: &str,
    script: &str,
) -> (PathBuf, Value, Value) {
    let o = run(
        ev,
        &[
            "-m",
            cap,
            "--warn",
            "off",
            "--pyheap-window",
            window,
            "--",
            "/usr/bin/python3",
            "-c",
            script,
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    let m = manifest(&b);
    let c = pyheap_collectors(&m);
    assert_eq!(c.len(), 1, "{c:?}");
    let c = c[0].clone();
    (b, m, c)
}

/// The census's answer for the one Python process of a job killed at its cap: the bundle, the
/// pyheap.json, and `guard report`'s text.
fn census_at_the_cap(t: &str, cap: &str, window: &str, script: &str) -> Option<(Value, String)> {
    if !privileged(t) || !tool(t, "python3") {
        return None;
    }
    let ev = tempfile::tempdir().unwrap();
    let (b, m, c) = one_census_at_the_cap(ev.path(), cap, window, script);
    assert_eq!(c["status"], "ok", "{c}");
    let pid = m["pid"].as_i64().unwrap();
    let heap: Value = serde_json::from_slice(
        &std::fs::read(b.join(format!("processes/{pid}/pyheap.json"))).unwrap(),
    )
    .unwrap();
    let report = stdout(&guard_cmd().arg("report").arg(&b).bounded());
    Some((heap, report))
}

/// Issue 25, item 2: database rows — small dicts of str, int and float, which CPython's
/// collector does not track — are counted (reached through the list that holds them), each
/// value once, and the first screen names them and the list. Before: the census skipped them
/// and called itself complete having counted 3 % of the process (bench/census rows).
#[test]
fn rows_of_plain_values_are_counted_and_named() {
    let script = "import sys\n\
        def export():\n    rows = [{'id': i, 'name': 'customer %d' % i, 'balance': i * 1.5} \
        for i in range(300000)]\n    sys.stdout.write('built\\n'); sys.stdout.flush()\n    \
        hold = []\n    while True:\n        hold.append(bytearray(1 << 20))\n\
        export()\n";
    let Some((heap, report)) = census_at_the_cap(
        "rows_of_plain_values_are_counted_and_named",
        "200M",
        "20s",
        script,
    ) else {
        return;
    };
    let row = |name: &str| {
        heap["by_size"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in the census: {heap}"))
    };
    // 300,000 rows, each a dict, a str name and a float balance (ints above 256 are their own
    // objects too): every one counted, once.
    for (name, at_least) in [("dict", 300_000), ("str", 300_000), ("float", 300_000)] {
        let r = row(name);
        let n = r["count"].as_u64().unwrap();
        assert!(
            (at_least..at_least + 50_000).contains(&n),
            "{name}: {n} counted, want about {at_least}: {heap}"
        );
    }
    assert_eq!(heap["complete"], true, "{heap}");
    assert!(
        heap["untracked"].as_u64().unwrap() >= 900_000,
        "{}",
        heap["untracked"]
    );
    let dict_line = report
        .lines()
        .find(|l| l.contains("dict \u{d7}"))
        .unwrap_or_else(|| panic!("no dict line:\n{report}"));
    assert!(
        dict_line.contains("\u{2190} local 'rows' in export"),
        "{dict_line}\n{report}"
    );
    // Issue 25, item 5: what the path's root retains, and what to do, on the first screen.
    let first: String = report.lines().take(30).collect::<Vec<_>>().join("\n");
    assert!(
        first.contains("local 'rows' in export") && first.contains("retains ~"),
        "{first}"
    );
    assert!(
        first.contains("fix: a list built in a loop keeps every item"),
        "{first}"
    );
}

/// Issue 25, item 1: the census's own memory grows with what it samples, not with the number
/// of references: 10,000 lists of 1,000 references (80 MiB of them) cost it less than its
/// budget (the 32 MiB headroom). Before: +100 MiB (it asked gc.get_referents for 20,000
/// objects at a time; bench/census refs).
#[test]
fn ten_million_references_cost_the_census_less_than_its_budget() {
    let script = "import sys\n\
        heap = [[k % 256 for k in range(1000)] for _ in range(10000)]\n\
        sys.stdout.write('built\\n'); sys.stdout.flush()\n\
        hold = []\nwhile True:\n    hold.append(bytearray(1 << 20))\n";
    let Some((heap, report)) = census_at_the_cap(
        "ten_million_references_cost_the_census_less_than_its_budget",
        "300M",
        // ~2 s here; under emulation (the cgroup v2 lane's guests) ten times that and more: the
        // longest window guard allows.
        "1m",
        script,
    ) else {
        return;
    };
    let growth = heap["hwm_growth_bytes"].as_u64().unwrap();
    assert!(
        growth < 32 << 20,
        "the census grew the process by {growth} bytes: {heap}"
    );
    assert_eq!(heap["complete"], true, "{heap}");
    assert!(report.contains("list \u{d7}"), "{report}");
}

/// Seconds since midnight of an RFC 3339 UTC timestamp guard wrote (`...T21:51:53.775Z`).
fn day_secs(ts: &str) -> f64 {
    let t = ts.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = t.split(':').map(|p| p.parse::<f64>().unwrap());
    let (h, m, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    h * 3600.0 + m * 60.0 + s
}

/// Issue 25, item 1: a census at the warning never brings the kill forward. The job holds 10,000
/// lists of 1,000 references, then leaks 1 MiB every 25 ms (40 MiB/s at most: it sleeps
/// between allocations, so a loaded machine only slows it): from the warning (240 MiB) to the
/// cap (300 MiB) is 1.5 s of the leak alone. The census runs with the job (live), within half
/// the room left below the cap, so the kill comes no earlier than the leak brings it: at least
/// 0.75 s after the warning (half the leak's own time, the margin for the clocks and the
/// samples). Before: the census took +100 MiB and the kill came 0.2 s after the warning.
#[test]
fn a_census_at_the_warning_never_brings_the_kill_forward() {
    let t = "a_census_at_the_warning_never_brings_the_kill_forward";
    if !privileged(t) || !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let script = "import time\n\
        heap = [[k % 256 for k in range(1000)] for _ in range(10000)]\n\
        hold = []\nwhile True:\n    hold.append(bytearray(1 << 20))\n    time.sleep(0.025)\n";
    let o = run(
        ev.path(),
        &[
            "-m",
            "300M",
            "--warn",
            "80%",
            "--",
            "/usr/bin/python3",
            "-c",
            script,
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let w = manifest(&bundle_named(&err, "past its warning threshold"));
    let c = pyheap_collectors(&w);
    assert_eq!(c[0]["status"], "ok", "{c:?}");
    let warn_pid = w["pid"].as_i64().unwrap();
    let wb = bundle_named(&err, "past its warning threshold");
    let census: Value = serde_json::from_slice(
        &std::fs::read(wb.join(format!("processes/{warn_pid}/pyheap.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(census["live"], true, "{census}");
    let budget = census["budget_bytes"].as_u64().unwrap();
    assert!(
        budget <= 30 << 20,
        "half the room below the cap at most: {budget}"
    );
    assert!(
        census["hwm_growth_bytes"].as_u64().unwrap() <= budget + (4 << 20),
        "{census}"
    );
    let k = manifest(&bundle_named(&err, "exceeded its memory limit"));
    let gap =
        day_secs(k["captured_at"].as_str().unwrap()) - day_secs(w["captured_at"].as_str().unwrap());
    assert!(
        gap >= 0.75,
        "the kill came {gap:.2} s after the warning: the census brought it forward\n{err}"
    );
}

/// Issue 25, item 1: a census guard gives up on stops, and the next one runs. At the warning
/// the census of a Python process holding 1,000,000 rows takes a second or more; another process
/// of the job (a Python child) meanwhile allocates 250 MiB/s at most and brings the job from the
/// warning (540 MiB) to its cap (600 MiB) in about a quarter of that. guard stops waiting
/// for the warning's census, the census stops at its next check, and the census at the cap —
/// asked while the first one may still be unwinding — answers.
#[test]
fn a_census_guard_gave_up_on_stops_and_the_cap_gets_its_own() {
    let t = "a_census_guard_gave_up_on_stops_and_the_cap_gets_its_own";
    if !privileged(t) || !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let grow = [
        "import time",
        "hold = []",
        "time.sleep(0.5)",
        "while True:",
        "    hold.append(bytearray(1 << 20))",
        "    time.sleep(0.004)",
    ]
    .join("\n");
    let script = format!(
        "import subprocess, sys, time\n\
         rows = [{{'id': i, 'name': 'customer %d' % i}} for i in range(1000000)]\n\
         child = subprocess.Popen([sys.executable, '-c', {grow:?}])\n\
         while True:\n    time.sleep(1)\n"
    );
    let o = run(
        ev.path(),
        &[
            "-m",
            "600M",
            "--warn",
            "90%",
            "--pyheap-window",
            "20s",
            "--",
            "/usr/bin/python3",
            "-c",
            &script,
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let w = manifest(&bundle_named(&err, "past its warning threshold"));
    let parent = format!("pyheap:{}", w["pid"].as_i64().unwrap());
    let of = |m: &Value| {
        pyheap_collectors(m)
            .into_iter()
            .find(|c| c["name"] == parent.as_str())
            .unwrap_or_else(|| panic!("no {parent}: {m}"))
    };
    let c = of(&w);
    assert_eq!(c["status"], "failed", "{c:?}");
    assert!(
        c["detail"].as_str().unwrap().contains("the job reached"),
        "{c:?}"
    );
    let k = manifest(&bundle_named(&err, "exceeded its memory limit"));
    let c = of(&k);
    assert_eq!(c["status"], "ok", "the census at the cap: {c:?}");
}

/// Issue 25, item 4: the process that holds the memory leads the first screen, whatever it runs.
/// A pipeline-like job: a small Python process (censused) beside a native one (hog) that holds
/// nearly all of the memory. Before: the small census led ("what holds the memory (Python heap
/// census of pid ...") and the native process was named only in the process table below.
#[test]
fn the_process_that_holds_the_memory_leads_whatever_it_runs() {
    let t = "the_process_that_holds_the_memory_leads_whatever_it_runs";
    if !privileged(t) || !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let hog = example("hog");
    let script = format!(
        "/usr/bin/python3 -c 'import time; x = [bytes(64) for _ in range(1000)]; time.sleep(60)' &\n\
         sleep 1\nexec {} alloc 400 --rate 100\n",
        hog.display()
    );
    let o = run(
        ev.path(),
        &["-m", "150M", "--warn", "off", "--", "sh", "-c", &script],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    let m = manifest(&b);
    let hog_pid = m["pid"].as_i64().unwrap();
    let r = stdout(&guard_cmd().arg("report").arg(&b).bounded());
    let lead = r
        .lines()
        .find(|l| l.starts_with("what holds the memory"))
        .unwrap_or_else(|| panic!("no lead line:\n{r}"));
    assert!(
        lead.contains(&format!("pid {hog_pid} (hog) holds")),
        "{lead}\n{r}"
    );
    assert!(lead.contains("not a Python process"), "{lead}");
    // What is known of hog (its command, memory by kind, stack), then the Python process's
    // census on a line of its own, in the same section.
    let at = r.find(lead).unwrap() + lead.len();
    assert!(
        r[at..]
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .any(|l| l.starts_with("  pid ") && l.contains("holds")),
        "{r}"
    );
}

/// Issue 25, item 3: the census says what it explained. A job that leaks C memory (malloc
/// through ctypes) has a census of a few MiB: the first screen says how much of the process's
/// memory is outside Python objects, and puts no import-time object in the headline. Before:
/// the 4 MiB census led with `str ×11,741 ← ...` as if it were the answer.
#[test]
fn memory_outside_python_objects_is_said_first() {
    let script = "import ctypes, time\n\
        libc = ctypes.CDLL(None)\nlibc.malloc.restype = ctypes.c_void_p\nbufs = []\n\
        while True:\n    p = libc.malloc(1 << 20)\n    ctypes.memset(p, 1, 1 << 20)\n    \
        bufs.append(p)\n    time.sleep(0.002)\n";
    let Some((heap, report)) = census_at_the_cap(
        "memory_outside_python_objects_is_said_first",
        "150M",
        "10s",
        script,
    ) else {
        return;
    };
    let lines: Vec<&str> = report.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("what holds the memory"))
        .unwrap_or_else(|| panic!("no census section:\n{report}"));
    assert!(
        lines[at + 1].contains("is outside Python objects: native memory"),
        "{report}"
    );
    assert!(lines[at + 2].contains("Python objects: "), "{report}");
    // No path of a small type in the headline.
    assert!(
        !lines[at + 3].contains(" \u{2190} "),
        "{}\n{report}",
        lines[at + 3]
    );
    assert!(heap["total_bytes"].as_u64().unwrap() < 50 << 20, "{heap}");
}

/// Issue 25, item 6: cycles under gc.disable() are named as garbage, with the collector's
/// state and what to do. Before: "no root reached (held from C code, or the deadline came
/// first)", and nothing said the collector was off.
#[test]
fn cycles_with_the_collector_off_are_named_garbage() {
    let script = "import gc, time\ngc.disable()\n\
        class Node:\n    def __init__(self):\n        self.payload = bytearray(2000)\n        \
        self.me = self\n\
        def work():\n    while True:\n        Node()\n\
        work()\n";
    let Some((heap, report)) = census_at_the_cap(
        "cycles_with_the_collector_off_are_named_garbage",
        "150M",
        "10s",
        script,
    ) else {
        return;
    };
    assert_eq!(heap["gc"]["enabled"], false, "{heap}");
    let line = report
        .lines()
        .find(|l| l.contains("bytearray \u{d7}"))
        .unwrap_or_else(|| panic!("no bytearray line:\n{report}"));
    assert!(
        line.ends_with("(a cycle nothing else refers to: garbage)"),
        "{line}\n{report}"
    );
    assert!(
        report.contains("gc: the collector is off (gc.disable() in the program)"),
        "{report}"
    );
}

/// Issue 25, item 5: the known patterns get their fix on the first screen (and in the alerts'
/// finding): an unbounded functools.lru_cache, and a module-level dict used as a cache.
#[test]
fn known_leak_patterns_get_their_fix_on_the_first_screen() {
    for (name, script, want) in [
        (
            "lru_cache",
            "import functools\n\
             @functools.lru_cache(maxsize=None)\n\
             def render(i):\n    return bytearray(100000)\n\
             i = 0\nwhile True:\n    render(i)\n    i += 1\n",
            "fix: an unbounded functools.lru_cache",
        ),
        (
            "module dict",
            "CACHE = {}\n\
             def get(key):\n    if key not in CACHE:\n        CACHE[key] = bytearray(100000)\n    \
             return CACHE[key]\n\
             i = 0\nwhile True:\n    get('page-%d' % i)\n    i += 1\n",
            "fix: a module-level dict used as a cache",
        ),
    ] {
        let Some((_, report)) = census_at_the_cap(
            "known_leak_patterns_get_their_fix_on_the_first_screen",
            "150M",
            "10s",
            script,
        ) else {
            return;
        };
        let first: String = report.lines().take(30).collect::<Vec<_>>().join("\n");
        assert!(first.contains(want), "{name}:\n{first}");
        assert!(first.contains("retains ~"), "{name}:\n{first}");
    }
}

/// Issue 25, item 7: with --tracemalloc the first screen answers both "who holds" (the path)
/// and "who allocated" (tracemalloc's lines holding the most live bytes); a job's own
/// PYTHONTRACEMALLOC is left as given; a bad FRAMES is one error line and 125.
#[test]
fn tracemalloc_adds_who_allocated_beside_who_holds() {
    let t = "tracemalloc_adds_who_allocated_beside_who_holds";
    if !privileged(t) || !tool(t, "python3") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let o = run(
        ev.path(),
        &[
            "-m",
            "200M",
            "--warn",
            "off",
            "--tracemalloc",
            "1",
            "--pyheap-window",
            "10s",
            "--",
            "/usr/bin/python3",
            leak_py().to_str().unwrap(),
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    let r = stdout(&guard_cmd().arg("report").arg(&b).bounded());
    let first: String = r.lines().take(30).collect::<Vec<_>>().join("\n");
    let who = first
        .lines()
        .find(|l| l.contains("who allocated (tracemalloc, 1 frame(s)"))
        .unwrap_or_else(|| panic!("no tracemalloc line:\n{first}"));
    // The row buffers come from Image.__init__ in leak.py.
    assert!(who.contains(": leak.py:"), "{who}");
    assert!(first.contains("QuerySet._result_cache"), "{first}");

    // The job's own setting wins; without --tracemalloc nothing is set.
    let probe = "import os; print(os.environ.get('PYTHONTRACEMALLOC'))";
    for (env, args, want) in [
        (None, vec!["--tracemalloc", "3"], "3"),
        (Some("5"), vec!["--tracemalloc", "3"], "5"),
        (None, vec![], "None"),
    ] {
        let mut c = guard_cmd();
        c.arg("--evidence-dir").arg(ev.path()).args(["-m", "100M"]);
        c.args(&args).args(["--", "/usr/bin/python3", "-c", probe]);
        if let Some(v) = env {
            c.env("PYTHONTRACEMALLOC", v);
        }
        let o = output_within(&mut c, Duration::from_secs(30));
        assert_eq!(stdout(&o).trim(), want, "{args:?} {env:?}: {}", stderr(&o));
    }
    let o = output_within(
        guard_cmd().args(["--tracemalloc", "500", "--", "true"]),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(125));
    let e = stderr(&o);
    assert!(
        e.starts_with("guard: error: invalid --tracemalloc '500'") && e.lines().count() == 1,
        "{e}"
    );
}
