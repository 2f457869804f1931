//! `--hold-for`, `guard held` and `guard kill` with the real binary: the job stays frozen at its
//! cap for the time asked, then is killed (137); `guard kill NAME`, SIGTERM to guard and guard's
//! own death end a hold; the alert goes out as the hold begins and says until when and how to
//! end it. Root and a cgroup (privileged), like the other cap tests.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Stdio};
use std::time::{Duration, Instant};

/// A job name no other test (or run) uses: `guard kill` finds holds by name.
fn name(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// guard holding `hog alloc 200` at a 64 MiB cap for `hold`; returns it once the hold line
/// came, with that line and the rest of its stderr to read (the caller waits for it).
#[allow(clippy::zombie_processes)]
fn held_guard(name: &str, hold: &str, extra: &[&str]) -> (Child, String, BufReader<ChildStderr>) {
    let ev = tempfile::tempdir().unwrap().keep();
    let hog = example("hog");
    let mut g = guard_cmd()
        .args(["--memory", "64M", "--hold-for", hold, "--name", name])
        .arg("--evidence-dir")
        .arg(&ev)
        .args(extra)
        .arg("--")
        .arg(&hog)
        .args(["alloc", "200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn guard");
    let mut err = BufReader::new(g.stderr.take().expect("stderr"));
    let t0 = Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        let n = err.read_line(&mut line).expect("read stderr");
        if n == 0 || t0.elapsed() > RUN_LIMIT {
            let _ = g.kill();
            let _ = g.wait();
            panic!("guard ended (or took {RUN_LIMIT:?}) without a hold line");
        }
        if line.contains("is held frozen at its memory limit") {
            return (g, line.trim().to_string(), err);
        }
    }
}

/// Wait (bounded) for guard to end; its status and the rest of its stderr.
fn finish(mut g: Child, mut err: BufReader<ChildStderr>, limit: Duration) -> (i32, String) {
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        rest
    });
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(st) = g.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > end {
            let _ = g.kill();
            panic!("guard did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        status.code().unwrap_or(-1),
        reader.join().unwrap_or_default(),
    )
}

/// The held jobs `guard held --json` lists.
fn held_now() -> Vec<serde_json::Value> {
    let out = guard_cmd().args(["held", "--json"]).bounded();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("JSON")
}

/// The job's processes are not running: frozen (v2, v1 freezer), or asleep at the v1 limit.
fn not_running(pid: i64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 2..].chars().next())
        .unwrap_or('?');
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    matches!(state, 'D' | 'S' | 'T') && state != 'R' && !wchan.is_empty()
}

#[test]
fn a_held_job_stays_frozen_for_the_time_asked_then_is_killed_with_137() {
    let test = "a_held_job_stays_frozen_for_the_time_asked_then_is_killed_with_137";
    if !privileged(test) {
        return;
    }
    let n = name("hold-expire");
    let t0 = Instant::now();
    let (g, line, err) = held_guard(&n, "3s", &[]);
    let bundle = evidence_of(&line);
    assert!(line.contains("end the hold now: guard kill "), "{line}");
    // Held: listed, its bundle readable already, its process frozen and still there.
    let held = held_now();
    let me: Vec<_> = held.iter().filter(|h| h["job"] == n.as_str()).collect();
    assert_eq!(me.len(), 1, "{held:?}");
    let pid = me[0]["pid"].as_i64().unwrap();
    assert_eq!(me[0]["guard_pid"].as_u64(), Some(u64::from(g.id())));
    let m = manifest(&bundle);
    assert_eq!(m["hold"]["requested_ms"], 3000, "{m}");
    assert!(m["hold"].get("ended_by").is_none(), "{m}");
    assert!(m.get("exit").is_none(), "not ended yet: {m}");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(pid_alive(pid as i32), "the held job is still there");
    assert!(not_running(pid), "the held job does not run");
    let report = guard_cmd().arg("report").arg(&bundle).bounded();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        text.contains(&format!("'guard kill {n}' on its host ends the hold now")),
        "{text}"
    );

    let (code, rest) = finish(g, err, RUN_LIMIT);
    assert_eq!(code, 137, "{rest}");
    assert!(t0.elapsed() >= Duration::from_secs(3), "held 3 s");
    let kill = rest
        .lines()
        .find(|l| l.contains("exceeded its memory limit"))
        .unwrap_or_else(|| panic!("no kill line:\n{rest}"));
    assert!(
        kill.contains("(--hold-for 3s ran out), then killed; evidence: "),
        "{kill}"
    );
    assert_eq!(evidence_of(kill), bundle, "one bundle, completed");
    let m = manifest(&bundle);
    assert_eq!(m["hold"]["ended_by"], "expired", "{m}");
    assert_eq!(m["exit"]["signal"], 9, "{m}");
    assert!(m["ended_at"].is_string(), "{m}");
    assert!(!pid_alive(pid as i32));
    assert!(
        held_now().iter().all(|h| h["job"] != n.as_str()),
        "no longer listed"
    );
}

#[test]
fn guard_kill_ends_a_hold_at_once_and_sigterm_does_too() {
    let test = "guard_kill_ends_a_hold_at_once_and_sigterm_does_too";
    if !privileged(test) {
        return;
    }
    // guard kill NAME.
    let n = name("hold-kill");
    let (g, line, err) = held_guard(&n, "1h", &[]);
    let bundle = evidence_of(&line);
    let t0 = Instant::now();
    let out = guard_cmd().args(["kill", &n]).bounded();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        said.contains(&format!("guard: ended the hold of {n} (pid ")),
        "{said}"
    );
    let (code, rest) = finish(g, err, RUN_LIMIT);
    assert_eq!(code, 137, "{rest}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "ended at once, not after 1 h"
    );
    assert!(rest.contains("then killed; evidence: "), "{rest}");
    let m = manifest(&bundle);
    assert_eq!(m["hold"]["ended_by"], "guard-kill", "{m}");
    assert!(
        m["hold"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("guard kill (pid "),
        "{m}"
    );
    // Nothing is held by that name any more: one error line, 125.
    let again = guard_cmd().args(["kill", &n]).bounded();
    assert_eq!(again.status.code(), Some(125));
    let e = String::from_utf8_lossy(&again.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with(&format!("guard: error: no held job is named \"{n}\"")),
        "{e}"
    );

    // SIGTERM to guard, and guard kill by the job's pid while another job is held.
    let n2 = name("hold-term");
    let n3 = name("hold-bypid");
    let (g2, _, err2) = held_guard(&n2, "1h", &[]);
    let (g3, _, err3) = held_guard(&n3, "1h", &[]);
    send(g2.id(), libc::SIGTERM);
    let (code, rest) = finish(g2, err2, RUN_LIMIT);
    assert_eq!(code, 137, "{rest}");
    assert!(rest.contains("(SIGTERM from pid "), "{rest}");
    let pid3 = held_now()
        .iter()
        .find(|h| h["job"] == n3.as_str())
        .and_then(|h| h["pid"].as_i64())
        .expect("the third hold is listed");
    let out = guard_cmd().args(["kill", &pid3.to_string()]).bounded();
    assert!(out.status.success(), "{out:?}");
    let (code, _) = finish(g3, err3, RUN_LIMIT);
    assert_eq!(code, 137);
}

#[test]
fn the_alert_goes_out_as_the_hold_begins_and_says_until_when_and_how_to_end_it() {
    let test = "the_alert_goes_out_as_the_hold_begins_and_says_until_when_and_how_to_end_it";
    if !privileged(test) {
        return;
    }
    let r = Receiver::start(200, Duration::ZERO);
    let alert = format!("webhook:{}", r.url("/hook"));
    let n = name("hold-alert");
    // No warning: a slow guest's sampler can catch the job past 80 % on its way to the cap.
    let (g, _, err) = held_guard(&n, "1h", &["--alert", &alert, "--warn", "off"]);
    // While the job is held, the alert is there.
    assert!(
        wait_until(Duration::from_secs(20), || !r.requests().is_empty()),
        "no alert while held"
    );
    let body = r.requests()[0].json();
    assert_eq!(body["event"], "memory-limit");
    let until = body["held_until"].as_str().expect("held_until");
    assert!(until.ends_with('Z'), "{until}");
    let summary = body["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("is held frozen until {until}")),
        "{summary}"
    );
    assert!(summary.contains(&format!("'guard kill {n}'")), "{summary}");
    let out = guard_cmd().args(["kill", &n]).bounded();
    assert!(out.status.success(), "{out:?}");
    let (code, rest) = finish(g, err, RUN_LIMIT);
    assert_eq!(code, 137, "{rest}");
    // One alert for the kill: none again at the end.
    assert_eq!(r.requests().len(), 1, "{:?}", r.requests());
}

#[test]
fn a_guard_killed_during_a_hold_leaves_no_job_no_cgroup_and_no_listed_hold() {
    let test = "a_guard_killed_during_a_hold_leaves_no_job_no_cgroup_and_no_listed_hold";
    if !privileged(test) {
        return;
    }
    let n = name("hold-sigkill");
    let (g, _, err) = held_guard(&n, "1h", &["-v"]);
    let pid = held_now()
        .iter()
        .find(|h| h["job"] == n.as_str())
        .and_then(|h| h["pid"].as_i64())
        .expect("listed");
    let gpid = g.id();
    send(gpid, libc::SIGKILL);
    let (code, _) = finish(g, err, RUN_LIMIT);
    assert_eq!(code, -1, "killed by a signal");
    assert!(
        wait_until(Duration::from_secs(20), || !pid_alive(pid as i32)),
        "the sentinel killed the held job"
    );
    for base in job_bases() {
        assert!(
            wait_until(Duration::from_secs(20), || leaves_of(&base, gpid)
                .is_empty()),
            "a cgroup of guard {gpid} is left in {}",
            base.display()
        );
    }
    assert!(
        held_now().iter().all(|h| h["job"] != n.as_str()),
        "a dead guard's hold is not listed"
    );
}

#[test]
fn hold_for_needs_a_cap_and_guard_kill_needs_a_hold() {
    let out = guard_cmd()
        .args(["--hold-for", "10m", "--", "true"])
        .bounded();
    assert_eq!(out.status.code(), Some(125));
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        e.trim(),
        "guard: error: --hold-for needs --memory SIZE: it is how long guard holds the job at that cap"
    );
    let out = guard_cmd()
        .args(["--memory", "1G", "--hold-for", "0", "--", "true"])
        .bounded();
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let out = guard_cmd().args(["kill", "no-such-job-anywhere"]).bounded();
    assert_eq!(out.status.code(), Some(125));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.starts_with("guard: error: no held job is named \"no-such-job-anywhere\""),
        "{e}"
    );
    let out = guard_cmd().args(["held"]).bounded();
    assert!(out.status.success(), "{out:?}");
}
