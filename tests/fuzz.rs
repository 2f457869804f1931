//! The fuzz properties on stable, as proptest cases CI runs every time (the cargo-fuzz targets in
//! `fuzz/` are for longer runs by hand): guard never panics on what people give it, and every
//! rejection is one line `guard: error: …` with exit status 125 and no raw control character.
//!
//! Through the real binary: option values in a config file (`guard config check`, which
//! validates every key and runs nothing, so that a random URL is never contacted) and a few
//! value options on the command line (`-- true`). In the library: SIZE, DUR, whole config
//! files and manifests.

mod common;
use common::*;
use proptest::prelude::*;
use std::path::Path;

/// The keys whose values are strings in a config file, and values worth trying for each.
const KEYS: &[&str] = &[
    "memory",
    "swap",
    "warn",
    "timeout",
    "kill_after",
    "sample_interval",
    "ping",
    "name",
    "max_evidence_size",
    "capture_at",
    "lock_wait",
    "metrics_file",
    "evidence_dir",
    "redact",
];

/// Near-valid and hostile values: sizes, durations, URLs, with junk, escapes and extremes.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,20}",
        "[0-9]{1,22}(k|K|m|M|g|G|t|T|kib|MiB|GB|%|ms|s|m|h|x)?",
        "(http|https|ftp)://[a-z0-9.:\\[\\]@-]{0,20}(/[a-z%?=&]{0,10})?",
        "(env|file):[A-Za-z_/.]{0,12}",
        "[\\x00-\\x1f\\x7f\\u{9b}a-z0-9]{0,12}",
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
    ]
}

/// A TOML basic string holding `s` (escaped so that any value reaches guard as it is).
fn toml_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// One error line and 125, or success; never anything else.
fn check_outcome(what: &str, o: &std::process::Output) -> Result<(), TestCaseError> {
    let err = String::from_utf8_lossy(&o.stderr);
    match o.status.code() {
        Some(0) => Ok(()),
        Some(125) => {
            let lines: Vec<&str> = err.lines().collect();
            prop_assert_eq!(lines.len(), 1, "{}: {:?}", what, err);
            prop_assert!(
                lines[0].starts_with("guard: error: "),
                "{}: {:?}",
                what,
                err
            );
            prop_assert!(
                !err.chars().any(|c| c.is_control() && c != '\n'),
                "{}: raw control character: {:?}",
                what,
                err
            );
            Ok(())
        }
        other => Err(TestCaseError::fail(format!(
            "{what}: exit {other:?}: {err}"
        ))),
    }
}

/// `guard config check`: what `check_outcome` allows, or 1 — valid, but a readiness check failed
/// (an env: secret unset here, a file: unreadable) — said on stdout, escaped.
fn check_config_outcome(what: &str, o: &std::process::Output) -> Result<(), TestCaseError> {
    if o.status.code() != Some(1) {
        return check_outcome(what, o);
    }
    let out = String::from_utf8_lossy(&o.stdout);
    prop_assert!(out.contains("check(s) failed"), "{}: {:?}", what, out);
    prop_assert!(
        !out.chars().any(|c| c.is_control() && c != '\n'),
        "{}: raw control character: {:?}",
        what,
        out
    );
    prop_assert!(
        o.stderr.is_empty(),
        "{}: {:?}",
        what,
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

fn cases(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("GUARD_TEST_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(600))]

    /// Every string key of a config file, any value: `config check` accepts it or says why.
    #[test]
    fn config_values_are_accepted_or_one_error_line(key in proptest::sample::select(KEYS), v in value()) {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("guard.toml");
        let text = format!("[defaults]\n{key} = {}\n", toml_string(&v));
        std::fs::write(&f, &text).unwrap();
        let o = guard_cmd().args(["config", "check"]).arg(&f).bounded();
        check_config_outcome(&text, &o)?;
    }

    /// An alert table with any URL and header: accepted or one error line.
    #[test]
    fn alert_tables_are_accepted_or_one_error_line(url in value(), hname in "\\PC{0,8}", hval in value()) {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("guard.toml");
        let text = format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = {}\nheaders = {{ {} = {} }}\n",
            toml_string(&url),
            toml_string(&hname),
            toml_string(&hval)
        );
        std::fs::write(&f, &text).unwrap();
        let o = guard_cmd().args(["config", "check"]).arg(&f).bounded();
        check_config_outcome(&text, &o)?;
    }
}

proptest! {
    #![proptest_config(cases(200))]

    /// Value options on the command line, then `-- true`: it runs (exit 0) or is refused in one line.
    #[test]
    fn command_line_values_run_or_are_one_error_line(
        opt in proptest::sample::select(&["--memory", "--warn", "--timeout", "--kill-after", "--keep", "--name", "--sample-interval"][..]),
        v in value(),
    ) {
        // An argument cannot hold NUL: no program gets one.
        prop_assume!(!v.contains('\0'));
        let d = tempfile::tempdir().unwrap();
        let o = guard_cmd()
            .env("GUARD_CONFIG", "/dev/null")
            .arg("--evidence-dir")
            .arg(d.path())
            .arg(opt)
            .arg(&v)
            .args(["--", "true"])
            .bounded();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        match o.status.code() {
            // Accepted: guard may warn (poll mode, an odd value), but the job ran.
            Some(0) => {}
            // A valid but tiny time limit: `true` may outlive it on a slow machine (a TCG
            // guest takes milliseconds to exec). That is the limit working, said in one line.
            Some(124) if opt == "--timeout" => {
                prop_assert!(err.contains("exceeded its time limit"), "{} {:?}: {}", opt, v, err);
            }
            _ => check_outcome(&format!("{opt} {v:?}"), &o)?,
        }
        prop_assert!(!err.contains("panicked"), "{} {:?}: {}", opt, v, err);
    }
}

proptest! {
    #![proptest_config(cases(5000))]

    /// Whole config files, in the library: no panic; an error is one line naming the place.
    #[test]
    fn config_files_never_panic(text in "(\\[(defaults|jobs\\.[a-z]{1,3}|alerts|\\[alerts\\])\\]\n|[a-z_]{1,12} = (\"\\PC{0,12}\"|[0-9]{1,20}|true|\\[\\]|\\{\\})\n|\\PC{0,10}\n){0,8}") {
        match guard::config::file::ConfigFile::parse(Path::new("f.toml"), text.clone()) {
            Ok(f) => {
                for o in guard::config::options::file_keys() {
                    let _ = f.get(None, o.key);
                }
                let _ = f.alerts();
            }
            Err(e) => {
                let line = e.to_string();
                prop_assert!(!line.contains('\n'), "{:?}", line);
                prop_assert!(line.starts_with("f.toml"), "{:?}", line);
            }
        }
    }

    /// Manifests, however malformed: refused, or reported without a raw control character.
    #[test]
    fn manifests_are_refused_or_reported(
        job in "\\PC{0,12}",
        pid in any::<i32>(),
        peak in proptest::option::of(any::<u64>()),
        trigger in "[a-z-]{0,14}",
        extra in "\\PC{0,16}",
        timeline in "(t_ms,cgroup_bytes,pid,rss_bytes\n)?([0-9]{0,20},[0-9]{0,20},[0-9-]{0,6},[0-9]{0,6}\n){0,5}",
    ) {
        let m = serde_json::json!({
            "format": "guard-evidence/1", "guard_version": "0", "job": job, "command": [extra],
            "pid": pid, "started_at": "", "captured_at": extra, "trigger": trigger,
            "capture": "pre-kill", "limit_bytes": peak, "usage_at_trigger_bytes": peak,
            "peak_bytes": peak, "cgroup": {"version": 1, "path": job, "mode": "cgroup-v1"},
            "processes": [], "collectors": [], "timings": {}, "redacted_env_keys": [extra],
        });
        for text in [m.to_string(), extra.clone()] {
            if let Ok(r) = guard::report::Report::from_texts(Path::new("/b"), &text, &timeline) {
                let t = guard::report::text(&r);
                prop_assert!(!t.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{:?}", t);
                let _ = guard::report::html(&r);
            }
        }
    }
}
