//! The cron wrapper through the real binary: --timeout (evidence first, then SIGTERM, then the
//! whole job killed after --kill-after; exit 124) and --lock / --lock-wait (exit 75).

mod common;
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn timeout_keeps_the_evidence_then_terminates_the_job_with_124() {
    let ev = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    // The job ignores SIGTERM and has a child: both must be gone, --kill-after after the timeout.
    let o = guard_cmd()
        .arg("--evidence-dir")
        .arg(ev.path())
        .args([
            "--timeout",
            "1s",
            "--kill-after",
            "1s",
            "--name",
            "hung",
            "--",
        ])
        .args(["sh", "-c", "trap '' TERM; sleep 60 & sleep 60; wait"])
        .stdin(Stdio::null())
        .bounded();
    let took = t0.elapsed();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(124), "{err}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let line = err
        .lines()
        .find(|l| l.contains("exceeded its time limit 1s"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.starts_with("guard: hung (pid "), "{line}");
    let m = manifest(&evidence_of(line));
    assert_eq!(m["trigger"], "timeout");
    assert_eq!(m["capture"], "pre-kill");
    assert!(
        m["processes"].as_array().unwrap().len() >= 2,
        "the job and its child: {m}"
    );

    // A job that honours SIGTERM ends at once: no --kill-after wait.
    let t0 = Instant::now();
    let o = guard_cmd()
        .args([
            "--timeout",
            "500ms",
            "--kill-after",
            "30s",
            "--no-evidence",
            "--",
            "sleep",
            "60",
        ])
        .bounded();
    assert_eq!(o.status.code(), Some(124), "{}", stderr(&o));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Within the limit nothing changes.
    let o = guard_cmd()
        .args(["--timeout", "30s", "--", "sh", "-c", "exit 3"])
        .bounded();
    assert_eq!(o.status.code(), Some(3));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn a_second_run_is_refused_with_75_or_waits_for_the_lock() {
    let d = tempfile::tempdir().unwrap();
    let lock = d.path().join("job.lock");
    let first = guard_cmd()
        .arg("--lock")
        .arg(&lock)
        .args(["--", "sleep", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&lock)
            .is_ok_and(|t| !t.trim().is_empty())),
        "the first run took the lock"
    );
    let marker = d.path().join("ran");
    let o = guard_cmd()
        .arg("--lock")
        .arg(&lock)
        .args(["--name", "nightly", "--", "touch"])
        .arg(&marker)
        .bounded();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("guard: nightly: another run holds the lock "),
        "{err}"
    );
    assert!(
        err.contains(&format!("(guard pid {})", first.id())),
        "{err}"
    );
    assert!(!marker.exists(), "not started");
    // --lock-wait: runs once the first one is done
    let t0 = Instant::now();
    let o = guard_cmd()
        .arg("--lock")
        .arg(&lock)
        .args(["--lock-wait", "20s", "--", "touch"])
        .arg(&marker)
        .bounded();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(marker.exists());
    assert!(t0.elapsed() >= Duration::from_millis(500), "it waited");
    let o = wait_output_within(first, RUN_LIMIT, "first guard");
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn lock_mistakes_are_125() {
    let cases: &[(&[&str], &str)] = &[
        (&["--lock-wait", "5s"], "--lock-wait needs --lock"),
        (
            &["--lock", "/nonexistent-dir/x.lock"],
            "cannot open the lock file /nonexistent-dir/x.lock",
        ),
        // 0 is timeout(1)'s "no limit" (issue 24); a negative one is a mistake.
        (&["--timeout=-1"], "--timeout '-1'"),
    ];
    for (args, needle) in cases {
        let o = guard_cmd().args(*args).args(["--", "true"]).bounded();
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn quiet_prints_the_jobs_output_only_when_it_fails() {
    // success: nothing at all
    let o = guard_cmd()
        .args(["--quiet", "--", "sh", "-c", "echo out; echo err >&2"])
        .bounded();
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
    // failure: each stream where it belongs, the status kept
    let o = guard_cmd()
        .args([
            "--quiet",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 6",
        ])
        .bounded();
    assert_eq!(o.status.code(), Some(6));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(stderr(&o), "err\n");
    // more than the 2 MiB head and 2 MiB tail kept of a stream: both, in order, and one line
    // on stderr saying what was dropped between them (issue 22: the spill had no bound)
    let o = guard_cmd()
        .args([
            "--quiet",
            "--",
            "sh",
            "-c",
            "head -c 6000000 /dev/zero | tr '\\0' x; echo; echo END; exit 1",
        ])
        .bounded();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(o.stdout.len(), 4 << 20, "the head and the tail of stdout");
    assert!(o.stdout.ends_with(b"x\nEND\n"));
    assert!(
        stderr(&o).starts_with("guard: --quiet dropped 1.7 MiB of the job's stdout"),
        "{}",
        stderr(&o)
    );
    // a killed job: its output first, guard's line last, and the tail in the bundle
    let ev = tempfile::tempdir().unwrap();
    let hog = example("hog");
    let o = guard_cmd()
        .arg("--evidence-dir")
        .arg(ev.path())
        .args(["--quiet", "--warn", "off", "-m", "32M", "--", "sh", "-c"])
        .arg(format!(
            "echo step one; echo warn >&2; exec {} alloc 200",
            hog.display()
        ))
        .bounded();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "step one\n");
    assert!(err.starts_with("warn\n"), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("exceeded its memory limit"),
        "guard's line comes last: {err}"
    );
    let b = evidence_of(last);
    let tail = std::fs::read_to_string(b.join("output.tail")).unwrap();
    assert_eq!(tail, "step one\nwarn\n");
}

#[test]
fn pings_start_success_and_failure_with_the_output_tail() {
    let r = Receiver::start(200, Duration::ZERO);
    let url = r.url("/ping/abc");
    let o = guard_cmd().args(["--ping", &url, "--", "true"]).bounded();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let paths: Vec<String> = r.requests().iter().map(|q| q.path.clone()).collect();
    assert!(paths.contains(&"/ping/abc/start".to_string()), "{paths:?}");
    assert!(paths.contains(&"/ping/abc".to_string()), "{paths:?}");
    let o = guard_cmd()
        .args(["--ping", &url, "--quiet", "--name", "backup", "--"])
        .args(["sh", "-c", "echo disk full >&2; exit 2"])
        .bounded();
    assert_eq!(o.status.code(), Some(2));
    // healthchecks' exit-status endpoint, and one run id for the start and the end.
    let fail = r
        .requests()
        .into_iter()
        .find(|q| q.path == "/ping/abc/2")
        .expect("a /2 ping");
    assert!(
        fail.body
            .starts_with("guard: backup exited with status 2\n"),
        "{}",
        fail.body
    );
    let rid = fail.query.strip_prefix("rid=").expect("rid=");
    assert_eq!(rid.len(), 36, "a UUID: {rid}");
    let starts: Vec<_> = r
        .requests()
        .into_iter()
        .filter(|q| q.path == "/ping/abc/start" && q.query == fail.query)
        .collect();
    assert_eq!(starts.len(), 1, "the start ping of the same run");
    // After a timeout the body says so, not "exited with status 124".
    let o = guard_cmd()
        .args(["--ping", &url, "--timeout", "0.3s", "--name", "slow", "--"])
        .args(["sleep", "30"])
        .bounded();
    assert_eq!(o.status.code(), Some(124), "{}", stderr(&o));
    let late = r
        .requests()
        .into_iter()
        .find(|q| q.path == "/ping/abc/124")
        .expect("a /124 ping");
    assert!(
        late.body.starts_with("guard: slow (pid ") && late.body.contains("exceeded its time limit"),
        "{}",
        late.body
    );
    assert!(!late.body.contains("exited with status"), "{}", late.body);
    assert!(
        fail.body.contains("disk full"),
        "the output tail: {}",
        fail.body
    );

    // A dead endpoint: bounded, one warning, the job's result unchanged.
    let dead = free_port();
    let t0 = Instant::now();
    let o = guard_cmd()
        .args([
            "--ping",
            &format!("http://127.0.0.1:{dead}/x"),
            "--",
            "sh",
            "-c",
            "exit 0",
        ])
        .bounded();
    assert_eq!(o.status.code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let err = stderr(&o);
    assert!(err.contains("ping http://127.0.0.1:"), "{err}");
    assert!(err.contains("the job's result is unchanged"), "{err}");
    let o = guard_cmd()
        .args(["--ping", "ftp://x", "--", "true"])
        .bounded();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
}

/// Debian's run-parts (debianutils), as cron runs /etc/cron.daily: `--report` prints a script's
/// name and output only when it wrote something — what cron would mail.
fn debian_run_parts() -> Option<String> {
    let o = std::process::Command::new("run-parts")
        .arg("--version")
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&o.stdout).into_owned();
    (o.status.success() && v.contains("Debian")).then_some(v)
}

#[test]
fn under_run_parts_like_cron_only_failures_make_output() {
    let test = "under_run_parts_like_cron_only_failures_make_output";
    if !gate(
        test,
        debian_run_parts()
            .is_none()
            .then(|| "Debian's run-parts is not installed".into()),
        "GUARD_TEST_REQUIRE_TOOLS",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let jobs = d.path().join("cron.daily");
    std::fs::create_dir(&jobs).unwrap();
    let script = |name: &str, code: i32| {
        let p = jobs.join(name);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\nexec {} --quiet --name {name} -- sh -c 'echo noise from {name}; exit {code}'\n",
                guard().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    // cron's environment: next to nothing
    let run = || {
        std::process::Command::new("env")
            .args(["-i", "PATH=/usr/bin:/bin", "SHELL=/bin/sh", "HOME=/"])
            .arg("GUARD_CONFIG=/dev/null")
            .arg(format!(
                "GUARD_EVIDENCE_DIR={}",
                d.path().join("ev").display()
            ))
            .args(["run-parts", "--report"])
            .arg(&jobs)
            .stdin(Stdio::null())
            .bounded()
    };
    script("good-job", 0);
    let o = run();
    assert_eq!(o.status.code(), Some(0));
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "a good run mails nothing: {o:?}"
    );
    script("bad-job", 3);
    let o = run();
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(all.contains("bad-job"), "{all}");
    assert!(all.contains("noise from bad-job"), "{all}");
    assert!(!all.contains("noise from good-job"), "{all}");
}

#[test]
fn without_quiet_piped_output_passes_through_and_its_tail_is_kept() {
    let ev = tempfile::tempdir().unwrap();
    let hog = example("hog");
    let o = guard_cmd()
        .arg("--evidence-dir")
        .arg(ev.path())
        .args(["--warn", "off", "-m", "32M", "--", "sh", "-c"])
        .arg(format!(
            "echo before the leak; exec {} alloc 200",
            hog.display()
        ))
        .bounded();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "before the leak\n",
        "passed through"
    );
    let b = bundle_named(&err, "; evidence: ");
    assert_eq!(
        std::fs::read_to_string(b.join("output.tail")).unwrap(),
        "before the leak\n"
    );
    // The reader goes away: the job still gets SIGPIPE, as without guard.
    let mut child = guard_cmd()
        .args(["--", "sh", "-c", "while :; do echo y; done"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 4096];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    drop(out);
    let st = wait_output_within(child, RUN_LIMIT, "guard").status;
    assert_eq!(
        st.code(),
        Some(128 + libc::SIGPIPE),
        "the job died of SIGPIPE"
    );
}

/// Issue 24, items 5 and 6: runitor's order — the end ping only after /start was answered (in 5
/// of 10 quick runs the end used to arrive first, and healthchecks then shows a start that never
/// ended) — and a command that cannot run (127, 126) still reaches the check: /start, then
/// URL/STATUS with guard's line.
#[test]
fn pings_come_in_order_and_a_command_that_cannot_run_is_pinged() {
    // The start ping answered slowly: an end sent without waiting for it would overtake it.
    let r = Receiver::start(200, Duration::from_millis(150));
    let url = r.url("/ping/ord");
    for _ in 0..10 {
        let o = guard_cmd().args(["--ping", &url, "--", "true"]).bounded();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let reqs = r.requests();
    let mut runs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for q in &reqs {
        runs.entry(q.query.clone())
            .or_default()
            .push(q.path.clone());
    }
    assert_eq!(runs.len(), 10, "{reqs:?}");
    for (rid, paths) in &runs {
        assert_eq!(
            paths,
            &["/ping/ord/start".to_string(), "/ping/ord".to_string()],
            "the end ping overtook /start in run {rid}"
        );
    }
    let r = Receiver::start(200, Duration::ZERO);
    let url = r.url("/ping/typo");
    let o = guard_cmd()
        .args(["--ping", &url, "--", "no-such-command-here"])
        .bounded();
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let d = tempfile::tempdir().unwrap();
    let script = d.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let o = guard_cmd()
        .args(["--ping", &url, "--"])
        .arg(&script)
        .bounded();
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    let reqs = r.requests();
    let paths: Vec<&str> = reqs.iter().map(|q| q.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/ping/typo/start",
            "/ping/typo/127",
            "/ping/typo/start",
            "/ping/typo/126"
        ],
        "{reqs:?}"
    );
    assert!(
        reqs[1].body.contains("command not found"),
        "{}",
        reqs[1].body
    );
    assert!(
        reqs[3].body.starts_with("guard: error: cannot run"),
        "{}",
        reqs[3].body
    );
    assert_eq!(
        reqs[0].query, reqs[1].query,
        "one run id for the start and the failure"
    );
}

/// Issue 24, item 8: --timeout takes what timeout(1) takes — 0 and inf are no limit, a
/// floating-point number with s/m/h/d, any length — and --signal / --preserve-status mean what
/// they mean there.
#[test]
fn timeout_takes_timeout_1s_grammar_signal_and_preserve_status() {
    let run = |args: &[&str], cmd: &[&str]| {
        let t0 = Instant::now();
        let o = guard_cmd()
            .args(["--no-evidence"])
            .args(args)
            .arg("--")
            .args(cmd)
            .stdin(Stdio::null())
            .bounded();
        (o.status.code(), t0.elapsed(), stderr(&o))
    };
    // No limit: the job runs to its end.
    for t in ["0", "0s", "inf", "400d", "1e9"] {
        let (code, _, err) = run(&["--timeout", t], &["sh", "-c", "sleep 0.3; exit 3"]);
        assert_eq!(code, Some(3), "--timeout {t}: {err}");
        assert!(!err.contains("time limit"), "--timeout {t}: {err}");
    }
    // A millisecond, a fraction of a minute.
    for t in ["1e-3", "0.005m", ".3"] {
        let (code, took, err) = run(&["--timeout", t], &["sleep", "30"]);
        assert_eq!(code, Some(124), "--timeout {t}: {err}");
        assert!(took < Duration::from_secs(10), "--timeout {t}: {took:?}");
    }
    // --signal: what the job gets first; --preserve-status: its own status instead of 124.
    let job = ["sh", "-c", "trap 'exit 3' INT; sleep 30 & wait"];
    for (args, want) in [
        (&["--signal", "INT"][..], 124),
        (&["--signal", "sigint", "--preserve-status"][..], 3),
        (&["--signal", "2", "--preserve-status"][..], 3),
        (&["--signal", "KILL", "--preserve-status"][..], 137),
        (&["--preserve-status"][..], 143),
    ] {
        let mut a = vec!["--timeout", "300ms", "--kill-after", "5s"];
        a.extend_from_slice(args);
        let (code, took, err) = run(&a, &job);
        assert_eq!(code, Some(want), "{args:?}: {err}");
        assert!(took < Duration::from_secs(5), "{args:?}: {took:?}");
    }
    // Mistakes: one line naming the value, 125, the job never started.
    for (args, needle) in [
        (
            &["--signal", "TREM", "--timeout", "1s"][..],
            "--signal 'TREM'",
        ),
        (&["--signal", "99", "--timeout", "1s"][..], "--signal '99'"),
        (&["--timeout", "soon"][..], "--timeout 'soon'"),
        (&["--timeout=-2"][..], "--timeout '-2'"),
    ] {
        let (code, _, err) = run(args, &["sh", "-c", "echo ran"]);
        assert_eq!(code, Some(125), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("guard: error: ") && err.contains(needle),
            "{err}"
        );
    }
}
