//! The TOML configuration file through the real binary: precedence (command line > GUARD_*
//! environment > [jobs.NAME] > [defaults] > built-in), discovery of the user's file, errors that
//! name file:line:column and stop guard before anything runs (exit 125), and
//! `guard config check`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;

const CONFIG: &str = r#"# guard.toml for the tests
[defaults]
memory = "512M"
kill_after = "20s"

[jobs.fix_images]
memory = "2G"
warn = "70%"
"#;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The memory limit guard -v announces for `args` (with the environment `env`).
fn limit(config: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut c = guard_cmd();
    c.env("GUARD_CONFIG", config);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c
        .arg("-v")
        .args(args)
        .args(["--", "true"])
        .stdin(Stdio::null())
        .bounded();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    err.lines()
        .find_map(|l| {
            l.split_once("memory limit ")
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no limit in: {err}"))
}

#[test]
fn command_line_beats_environment_beats_job_beats_defaults() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "guard.toml", CONFIG);
    assert_eq!(limit(&f, &[], &[]), "512 MiB", "[defaults]");
    assert_eq!(
        limit(&f, &[], &["--name", "other"]),
        "512 MiB",
        "a job without a table"
    );
    assert_eq!(
        limit(&f, &[], &["--name", "fix_images"]),
        "2 GiB",
        "[jobs.fix_images]"
    );
    assert_eq!(
        limit(&f, &[("GUARD_NAME", "fix_images")], &[]),
        "2 GiB",
        "the job named by GUARD_NAME"
    );
    assert_eq!(
        limit(&f, &[("GUARD_MEMORY", "1G")], &["--name", "fix_images"]),
        "1 GiB",
        "environment over the file"
    );
    assert_eq!(
        limit(
            &f,
            &[("GUARD_MEMORY", "1G")],
            &["--name", "fix_images", "-m", "3G"]
        ),
        "3 GiB",
        "command line over all"
    );
    // --config on the command line works as GUARD_CONFIG does
    let o = guard_cmd()
        .args(["-v", "--config"])
        .arg(&f)
        .args(["--", "true"])
        .bounded();
    assert!(
        stderr(&o).contains("memory limit 512 MiB"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_users_file_is_found_without_config() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("guard")).unwrap();
    write(
        &d.path().join("guard"),
        "guard.toml",
        "[defaults]\nmemory = \"300M\"\n",
    );
    let o = guard_cmd()
        .env_remove("GUARD_CONFIG")
        .env("XDG_CONFIG_HOME", d.path())
        .args(["-v", "--", "true"])
        .bounded();
    if Path::new("/etc/guard/guard.toml").exists() {
        println!("note: /etc/guard/guard.toml exists here; the user's file wins over it");
    }
    assert!(
        stderr(&o).contains("memory limit 300 MiB"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_files_stop_guard_before_anything_runs() {
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("ran");
    let cases: &[(&str, &str)] = &[
        (
            "[defaults]\nmemroy = \"1G\"\n",
            ":2:1: unknown field `memroy`",
        ),
        (
            "[defaults]\nmemory = true\n",
            ":2:10: memory: expected a size",
        ),
        (
            "[defaults]\nkeep = -1\n",
            ":2:8: keep: must not be negative",
        ),
        (
            "[jobs.fix_images]\ncore = \"yes\"\n",
            ":2:8: core: expected true or false",
        ),
        ("[defaults\n", ":1:"),
        ("[defaults]\nmemory = \"12X\"\n", "memory = '12X' ("),
        ("[defaults]\nwarn = \"90%\"\n", "warn = '90%' ("),
        ("[defaults]\nverbose = 7\n", "verbose = 7 ("),
        (
            "[alerts]\n",
            ":1:1: invalid type: map, expected a sequence (write [[alerts]]",
        ),
        (
            "[[alerts]]\nkind = \"pager\"\n",
            ":2:8: unknown alert kind 'pager'",
        ),
        (
            "[[alerts]]\nkind = \"webhook\"\n",
            "alerts: kind = \"webhook\" needs url",
        ),
    ];
    for (text, needle) in cases {
        let f = write(d.path(), "bad.toml", text);
        let o = guard_cmd()
            .env("GUARD_CONFIG", &f)
            .args(["--", "touch"])
            .arg(&marker)
            .bounded();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{text:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{text:?}: one line: {err}");
        assert!(err.starts_with("guard: error: "), "{err}");
        assert!(
            err.contains(needle),
            "{text:?}: expected {needle:?} in {err}"
        );
        assert!(err.contains(f.to_str().unwrap()), "names the file: {err}");
        assert!(!marker.exists(), "{text:?}: the command ran");
    }
    let o = guard_cmd()
        .env("GUARD_CONFIG", d.path().join("missing.toml"))
        .args(["--", "true"])
        .bounded();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("cannot read the config file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn booleans_and_lists_from_the_file() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "g.toml",
        "[defaults]\nno_evidence = true\nredact = [\"FOO\", \"BAR\"]\nbrief = true\n",
    );
    let o = guard_cmd().args(["config", "check"]).arg(&f).bounded();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.contains("no_evidence = true"), "{out}");
    assert!(out.contains("FOO,BAR"), "{out}");
    assert!(out.contains("verbosity          quiet"), "{out}");
    // brief from the file: guard says nothing of its own, -v on the command line wins
    let o = guard_cmd()
        .env("GUARD_CONFIG", &f)
        .args(["--", "true"])
        .bounded();
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn config_check_prints_every_job_with_its_sources() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "guard.toml", CONFIG);
    let o = guard_cmd().args(["config", "check"]).arg(&f).bounded();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.starts_with(&format!("{}: ok", f.display())), "{out}");
    assert!(out.contains("[defaults]"), "{out}");
    assert!(
        out.contains("[jobs.fix_images] (guard --name fix_images):"),
        "{out}"
    );
    let job = out.split("[jobs.fix_images]").nth(1).unwrap();
    let row = |k: &str| {
        job.lines()
            .find(|l| l.trim_start().starts_with(k))
            .unwrap_or_else(|| panic!("no {k} in {job}"))
            .to_string()
    };
    assert!(
        row("memory").contains("2 GiB") && row("memory").contains("guard.toml:7:10"),
        "{}",
        row("memory")
    );
    assert!(row("warn").contains("1.4 GiB"), "{}", row("warn"));
    assert!(
        row("kill_after").contains("20s") && row("kill_after").contains("guard.toml:4:"),
        "{}",
        row("kill_after")
    );
    assert!(row("swap").contains("built-in"), "{}", row("swap"));

    let bad = write(d.path(), "bad.toml", "[jobs.x]\nmemory = \"lots\"\n");
    let o = guard_cmd().args(["config", "check"]).arg(&bad).bounded();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("bad.toml:2:10"), "{}", stderr(&o));
}

/// Alertmanager labels and a job's runbook are checked up front: one line naming the place, 125.
#[test]
fn labels_and_runbooks_are_checked_before_anything_runs() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[alerts]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nlabels = { team = \"x\" }\n",
            "labels are for kind = \"alertmanager\"",
        ),
        (
            "[[alerts]]\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:9/\"\nlabels = { severity = \"low\" }\n",
            "label 'severity' is guard's own",
        ),
        (
            "[[alerts]]\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:9/\"\nlabels = { \"a-b\" = \"x\" }\n",
            "label name 'a-b' is not valid",
        ),
        ("[jobs.x]\nrunbook = \"line one\\nline two\"\n", "runbook"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let f = write(d.path(), &format!("c{i}.toml"), text);
        let o = guard_cmd()
            .env("GUARD_CONFIG", &f)
            .args(["--name", "x", "--", "true"])
            .bounded();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{text}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{needle:?} in {err}");
        assert!(
            err.contains(&f.display().to_string()),
            "names the file: {err}"
        );
    }
    let ok = write(
        d.path(),
        "ok.toml",
        "[jobs.x]\nrunbook = \"https://wiki.example/x\"\n",
    );
    let o = guard_cmd().args(["config", "check"]).arg(&ok).bounded();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("https://wiki.example/x"), "{out}");
}
