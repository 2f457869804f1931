//! `guard drill` with the real binary: a configuration with a webhook, an Alertmanager-shaped
//! receiver, an exec hook, a ping and a metrics file passes every check — the cap, the capture,
//! the bundle, each sink (events of kind drill), the ping (to healthchecks' /log), the metrics —
//! and exits 0; a sink whose secret is missing and a hook that is not there fail their checks,
//! named, and the drill exits 1. `guard report --latest` passes drill bundles by. Root and a
//! cgroup (the cap is the first link).

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

fn config(dir: &Path, r: &Receiver, extra: &str) -> std::path::PathBuf {
    let hook = dir.join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nenv | grep ^GUARD_ > {}\n",
            dir.join("hook.env").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = dir.join("guard.toml");
    std::fs::write(
        &f,
        format!(
            "[defaults]\nevidence_dir = \"{ev}\"\nmetrics_file = \"{m}\"\nping = \"{ping}\"\n\n\
             [jobs.nightly]\nmemory = \"8G\"\nrunbook = \"https://wiki.example/nightly\"\n\n\
             [[alerts]]\nkind = \"webhook\"\nurl = \"{hook_url}\"\nevents = [\"memory-limit\"]\n\n\
             [[alerts]]\nkind = \"alertmanager\"\nurl = \"{am}\"\n\n\
             [[alerts]]\nkind = \"exec\"\ncommand = [\"{h}\"]\nevents = [\"failed\"]\n\n{extra}",
            ev = dir.join("ev").display(),
            m = dir.join("guard.prom").display(),
            ping = r.url("/ping/abc"),
            hook_url = r.url("/hook"),
            am = r.url("/am"),
            h = hook.display(),
        ),
    )
    .unwrap();
    f
}

fn drill(f: &Path, json: bool) -> std::process::Output {
    let mut c = guard_cmd();
    // The configuration's evidence directory, not the tests' scratch one.
    c.env_remove("GUARD_EVIDENCE_DIR");
    c.args(["drill", "--name", "nightly", "--memory", "48M", "--config"])
        .arg(f);
    if json {
        c.arg("--json");
    }
    output_within(&mut c, Duration::from_secs(200))
}

#[test]
fn a_drill_checks_every_link_and_every_body_says_drill() {
    let test = "a_drill_checks_every_link_and_every_body_says_drill";
    if !privileged(test) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = Receiver::start(200, Duration::ZERO);
    let f = config(d.path(), &r, "");
    // A real kill first: --latest must still find it after the drill.
    let real = guard_cmd()
        .env_remove("GUARD_EVIDENCE_DIR")
        .env("GUARD_CONFIG", &f)
        .args(["--name", "nightly", "--memory", "32M", "--"])
        .arg(example("hog"))
        .args(["alloc", "100"])
        .bounded();
    assert_eq!(real.status.code(), Some(137));
    let before = r.requests().len();
    let o = drill(&f, false);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for check in [
        "configuration",
        "cap enforced",
        "capture before the kill",
        "bundle readable by guard report",
        "alert webhook http://127.0.0.1",
        "alert alertmanager http://127.0.0.1",
        "alert exec ",
        "ping",
        "metrics file",
    ] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("\u{2713} {check}"))),
            "no passed {check:?}:\n{out}"
        );
    }
    assert!(!out.contains('\u{2717}'), "{out}");
    assert!(out.contains("checks passed"), "{out}");
    // Every sink got a drill — those whose events do not name it too.
    let reqs: Vec<Request> = r.requests().into_iter().skip(before).collect();
    let hook = reqs
        .iter()
        .find(|q| q.path == "/hook")
        .expect("webhook")
        .json();
    assert_eq!(hook["event"], "drill");
    assert!(
        hook["summary"]
            .as_str()
            .unwrap()
            .starts_with("guard drill for nightly: a rehearsal")
    );
    assert_eq!(hook["runbook"], "https://wiki.example/nightly");
    let am = reqs
        .iter()
        .find(|q| q.path == "/am/api/v2/alerts")
        .expect("alertmanager")
        .json();
    assert_eq!(am[0]["labels"]["alertname"], "GuardDrill");
    assert_eq!(am[0]["labels"]["severity"], "warning");
    assert!(am[0]["endsAt"].is_string(), "a drill resolves itself");
    let env = std::fs::read_to_string(d.path().join("hook.env")).unwrap();
    assert!(env.contains("GUARD_EVENT=drill"), "{env}");
    // The ping goes to healthchecks' log, never start or a failure status.
    let pings: Vec<&str> = reqs
        .iter()
        .filter(|q| q.path.starts_with("/ping"))
        .map(|q| q.path.as_str())
        .collect();
    assert_eq!(pings, ["/ping/abc/log"]);
    // The metrics file: the drill's series, not the job's.
    let prom = std::fs::read_to_string(d.path().join("guard.prom")).unwrap();
    assert!(prom.contains("guard_drill_last_run_timestamp_seconds{guard_job=\"nightly\"}"));
    assert!(prom.contains("guard_drill_last_success_timestamp_seconds{guard_job=\"nightly\"}"));
    assert!(
        prom.contains("guard_job_memory_kills_total{guard_job=\"nightly\"} 1\n"),
        "the real kill counts, the drill does not: {prom}"
    );
    // --latest is the real kill, not the drill; list shows both.
    let latest = guard_cmd()
        .args(["report", "--latest", "--json", "--evidence-dir"])
        .arg(d.path().join("ev"))
        .bounded();
    let j: serde_json::Value = serde_json::from_slice(&latest.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&latest.stderr)));
    assert_eq!(j["manifest"]["trigger"], "memory-limit");
    let list = guard_cmd()
        .args(["list", "--evidence-dir"])
        .arg(d.path().join("ev"))
        .bounded();
    assert!(String::from_utf8_lossy(&list.stdout).contains("drill"));
    // --json says the same.
    let o = drill(&f, true);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {o:?} {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(j["ok"], true, "{j}");
    assert!(j["steps"].as_array().unwrap().len() >= 9, "{j}");
}

#[test]
fn a_missing_secret_and_a_missing_hook_fail_their_checks_and_the_drill() {
    let test = "a_missing_secret_and_a_missing_hook_fail_their_checks_and_the_drill";
    if !privileged(test) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = Receiver::start(200, Duration::ZERO);
    let f = config(
        d.path(),
        &r,
        "[[alerts]]\nkind = \"slack\"\nurl = \"env:GUARD_TEST_DRILL_UNSET_SLACK\"\n\n\
         [[alerts]]\nkind = \"exec\"\ncommand = [\"/nonexistent/page-oncall\"]\n",
    );
    let o = drill(&f, false);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let failed: Vec<&str> = out.lines().filter(|l| l.contains('\u{2717}')).collect();
    assert!(
        failed
            .iter()
            .any(|l| l.contains("slack env:GUARD_TEST_DRILL_UNSET_SLACK")
                && l.contains("GUARD_TEST_DRILL_UNSET_SLACK is not set")),
        "{out}"
    );
    assert!(
        failed
            .iter()
            .any(|l| l.contains("/nonexistent/page-oncall") && l.contains("does not exist")),
        "{out}"
    );
    // The rest still passed: the cap, the capture, the webhook.
    assert!(out.contains("\u{2713} cap enforced"), "{out}");
    assert!(out.contains("\u{2713} alert webhook"), "{out}");
    assert!(
        out.contains("checks failed: fix them and run guard drill again"),
        "{out}"
    );
    // config check says the same without running anything, and exits 1.
    let c = guard_cmd().args(["config", "check"]).arg(&f).bounded();
    let text = String::from_utf8_lossy(&c.stdout);
    assert_eq!(c.status.code(), Some(1), "{text}");
    assert!(
        text.contains("GUARD_TEST_DRILL_UNSET_SLACK is not set"),
        "{text}"
    );
    // A usage mistake is guard's 125, not a failed check.
    let bad = guard_cmd()
        .args(["drill", "--memory", "lots", "--config"])
        .arg(&f)
        .bounded();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("guard: error: invalid --memory 'lots'"),
        "{err}"
    );
    assert!(bad.stdout.is_empty());
}
