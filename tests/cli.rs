//! The real binary, driven like a user would: options, bad input, exit statuses, stdio.
//! These run anywhere (in poll mode where no cgroup can be written).

mod common;
use common::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

fn run(args: &[&str]) -> std::process::Output {
    guard_cmd().args(args).stdin(Stdio::null()).bounded()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_and_version_exit_zero_on_stdout() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "--memory",
        "--swap",
        "--kill-after",
        "--require-cgroup",
        "GUARD_MEMORY",
        "doctor",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}");
    }
    let o = run(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("guard "));
}

/// Each bad value: exit 125, exactly one stderr line, naming the value and the accepted forms.
#[test]
fn bad_values_exit_125_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--memory", "12X", "--", "true"], "--memory '12X'"),
        (&["--memory", "1.5G", "--", "true"], "--memory '1.5G'"),
        (&["--memory", "0", "--", "true"], "too small"),
        (&["-m", "500", "--", "true"], "did you mean 500M?"),
        (&["--memory", "150%", "--", "true"], "between 1% and 100%"),
        (
            &["--memory", "1G", "--swap", "lots", "--", "true"],
            "--swap 'lots'",
        ),
        (&["--swap", "1G", "--", "true"], "needs --memory"),
        (
            &["--kill-after", "soon", "--", "true"],
            "--kill-after 'soon'",
        ),
        (
            &["--kill-after", "5 fortnights", "--", "true"],
            "500ms, 30s, 1.5s, 5m, 1min, 1h30m, 2d",
        ),
        (&["--name", "a/b", "--", "true"], "--name 'a/b'"),
        (&["--bogus", "--", "true"], "--bogus"),
        (&["-q", "-v", "--", "true"], "-q (--brief) and -v"),
        (&[], "COMMAND"),
        (&["--memory", "1G"], "COMMAND"),
        (
            &["-m", "1G", "--warn", "lots", "--", "true"],
            "--warn 'lots'",
        ),
        (
            &["-m", "1G", "--warn", "2G", "--", "true"],
            "not below --memory 1 GiB",
        ),
        (&["--warn", "50%", "--", "true"], "needs --memory"),
        (&["--keep", "0", "--", "true"], "--keep '0'"),
        (&["--keep", "many", "--", "true"], "--keep 'many'"),
        (
            &["--sample-interval", "1ms", "--", "true"],
            "shortest interval is 10ms",
        ),
        (
            &["--sample-interval", "fast", "--", "true"],
            "--sample-interval 'fast'",
        ),
        (
            &["--max-evidence-size", "10%", "--", "true"],
            "percentage is not accepted",
        ),
        (&["--core-max", "big", "--", "true"], "--core-max 'big'"),
        (&["--redact", ",", "--", "true"], "--redact ','"),
        (
            &["--evidence-dir", "", "--", "true"],
            "a value is required for '--evidence-dir",
        ),
    ];
    for (args, needle) in cases {
        let o = run(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert_eq!(
            err.lines().count(),
            1,
            "{args:?} should print one line, got: {err}"
        );
        assert!(err.starts_with("guard: error: "), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in: {err}"
        );
        assert!(o.stdout.is_empty(), "{args:?} wrote to stdout");
    }
    let o = run(&["--memory", "12X", "--", "true"]);
    assert!(
        stderr(&o).contains("512M, 2G"),
        "accepted forms missing: {}",
        stderr(&o)
    );
}

#[test]
fn environment_values_are_named_as_such() {
    let o = guard_cmd()
        .env("GUARD_MEMORY", "lots")
        .args(["--", "true"])
        .bounded();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("GUARD_MEMORY='lots'"), "{}", stderr(&o));
    // The command line wins over the environment.
    let o = guard_cmd()
        .env("GUARD_MEMORY", "lots")
        .args(["--memory", "1G", "--", "true"])
        .bounded();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = guard_cmd()
        .env("GUARD_KILL_AFTER", "x")
        .args(["--", "true"])
        .bounded();
    assert!(
        stderr(&o).contains("GUARD_KILL_AFTER='x'"),
        "{}",
        stderr(&o)
    );
    let o = guard_cmd()
        .env("GUARD_VERBOSE", "9")
        .args(["--", "true"])
        .bounded();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("GUARD_VERBOSE='9'"));
    for (k, v) in [
        ("GUARD_WARN", "x"),
        ("GUARD_KEEP", "-1"),
        ("GUARD_SAMPLE_INTERVAL", "x"),
        ("GUARD_MAX_EVIDENCE_SIZE", "x"),
        ("GUARD_CORE", "maybe"),
        ("GUARD_NO_EVIDENCE", "maybe"),
    ] {
        let o = guard_cmd()
            .env(k, v)
            .args(["-m", "1G", "--", "true"])
            .bounded();
        assert_eq!(o.status.code(), Some(125), "{k}={v}");
        assert!(
            stderr(&o).contains(&format!("{k}='{v}'")),
            "{k}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn boolean_environment_variables() {
    let with = |k: &str, v: &str, args: &[&str]| {
        guard_cmd()
            .env(k, v)
            .args(args)
            .stdin(Stdio::null())
            .bounded()
    };
    let o = with("GUARD_REQUIRE_CGROUP", "maybe", &["--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("GUARD_REQUIRE_CGROUP='maybe'"),
        "{}",
        stderr(&o)
    );
    // An empty value is "not set" (true values are tested where no cgroup can be had:
    // tests/privileged.rs, read-only cgroupfs).
    let o = with("GUARD_REQUIRE_CGROUP", "", &["--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // GUARD_BRIEF=1 silences -v-level lines only when -v is not given: the command line wins.
    let o = with("GUARD_BRIEF", "1", &["-v", "--", "true"]);
    assert!(stderr(&o).contains("guard: mode "), "{}", stderr(&o));
    let o = with("GUARD_VERBOSE", "1", &["--", "true"]);
    assert!(stderr(&o).contains("guard: mode "), "{}", stderr(&o));
}

#[test]
fn every_exit_code_passes_through() {
    for code in 0..=255 {
        let o = run(&["--memory", "1G", "--", "sh", "-c", &format!("exit {code}")]);
        assert_eq!(o.status.code(), Some(code), "exit {code}: {}", stderr(&o));
        assert!(
            o.stderr.is_empty(),
            "exit {code}: guard wrote {}",
            stderr(&o)
        );
    }
}

#[test]
fn signal_deaths_are_128_plus_n() {
    let hog = example("hog");
    for sig in [1, 2, 3, 6, 9, 10, 12, 13, 14, 15] {
        let o = run(&["--", hog.to_str().unwrap(), "raise", &sig.to_string()]);
        assert_eq!(
            o.status.code(),
            Some(128 + sig),
            "signal {sig}: {}",
            stderr(&o)
        );
        // A SIGKILL that is not a memory kill is not reported as one.
        assert!(!stderr(&o).contains("exceeded"), "{}", stderr(&o));
    }
}

#[test]
fn run_subcommand_is_the_same_as_the_prefix_form() {
    let o = run(&["run", "--memory", "1G", "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    // Options after the command belong to the command.
    let o = run(&["--", "sh", "-c", "echo \"$1\"", "sh", "--memory"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "--memory\n");
}

#[test]
fn not_found_is_127_and_not_executable_is_126() {
    let o = run(&["--", "no-such-command-guard-test"]);
    assert_eq!(o.status.code(), Some(127));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no-such-command-guard-test") && err.contains("not found"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("noexec.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["--", script.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(stderr(&o).contains("noexec.sh"));

    let o = run(&["--", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(126), "a directory: {}", stderr(&o));

    let o = run(&["--", "/no/such/dir/prog"]);
    assert_eq!(o.status.code(), Some(127));
}

/// guard starts the job itself (a vfork-style clone, not std's Command): what execvp and a
/// plain shell would give the job must still hold.
#[test]
fn the_job_starts_as_execvp_would_start_it() {
    // PATH search, and a script without #! runs through /bin/sh.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("no-shebang");
    std::fs::write(&script, "echo \"plain script $#\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = guard_cmd()
        .env("PATH", &path)
        .args(["--", "no-shebang", "a", "b"])
        .stdin(Stdio::null())
        .bounded();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "plain script 2\n");

    // The signal mask and the ignored signals 1-31 are those the job would have without guard
    // (which blocks the signals it reads and ignores SIGPIPE). Real-time signals 32 and 33
    // belong to the C library, which gives them handlers of its own (reset by exec).
    let sig = ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"];
    let low = |o: &std::process::Output| -> Vec<(String, u64)> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once(":\t"))
            .map(|(k, v)| {
                let bits = u64::from_str_radix(v.trim(), 16).unwrap();
                (k.to_string(), bits & 0x7fff_ffff)
            })
            .collect()
    };
    let bare = std::process::Command::new(sig[0])
        .args(&sig[1..])
        .stdin(Stdio::null())
        .bounded();
    let o = guard_cmd()
        .arg("--")
        .args(sig)
        .stdin(Stdio::null())
        .bounded();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(low(&o), low(&bare));
    assert_eq!(low(&o)[0], ("SigBlk".to_string(), 0));

    // A long command line (the child's stack is sized for it).
    let many: Vec<String> = (0..20_000).map(|i| format!("arg{i}")).collect();
    let o = guard_cmd()
        .args(["--", "sh", "-c", "echo $#", "sh"])
        .args(&many)
        .stdin(Stdio::null())
        .bounded();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "20000\n",
        "{}",
        stderr(&o)
    );
}

/// Started with stdin and stdout closed (a careless init script), guard still runs the job, and
/// none of the files it opens becomes descriptor 0-2: they are /dev/null, as for a Rust program.
#[test]
fn closed_standard_descriptors_become_dev_null() {
    let guard = guard_cmd().get_program().to_owned();
    let o = std::process::Command::new("sh")
        .args([
            "-c",
            "exec 0<&- 1>&-; \"$0\" -- sh -c \
             'a=$(readlink /proc/$$/fd/0); b=$(readlink /proc/$$/fd/1); echo \"$a $b\" >&2'",
        ])
        .arg(&guard)
        .env("GUARD_CONFIG", "/dev/null")
        .env("GUARD_EVIDENCE_DIR", std::env::temp_dir())
        .bounded();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "/dev/null /dev/null\n");
}

#[test]
fn stdio_belongs_to_the_child() {
    let mut child = guard_cmd()
        .args([
            "--memory",
            "256M",
            "--",
            "sh",
            "-c",
            "cat; echo out; echo err >&2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin\n")
        .unwrap();
    let o = wait_output_within(child, RUN_LIMIT, "guard");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from stdin\nout\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
}

#[test]
fn quiet_and_verbose() {
    let o = run(&["-v", "--", "true"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("guard: mode "), "{}", stderr(&o));
    let o = run(&["-q", "--", "true"]);
    assert!(o.stderr.is_empty());
}

#[test]
fn doctor_names_the_mode_and_reason() {
    let o = run(&["doctor"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "kernel:",
        "layout:",
        "mode:",
        "reason:",
        "capabilities:",
        "status:",
    ] {
        assert!(text.contains(needle), "doctor lacks {needle}:\n{text}");
    }
    let d = doctor();
    // Ready (0) with a cgroup mode and the empty configuration of the tests; 2 in poll mode.
    let want = if d["mode"] == "poll" { 2 } else { 0 };
    assert_eq!(o.status.code(), Some(want), "{text}");
    assert_eq!(d["status"], want);
    assert!(["cgroup-v1", "cgroup-v2", "poll"].contains(&d["mode"].as_str().unwrap()));
    assert!(!d["reason"].as_str().unwrap().is_empty());
}

#[test]
fn doctor_says_where_evidence_goes_and_which_collectors_exist() {
    let d = tempfile::tempdir().unwrap();
    let evidence = |dir: &std::path::Path| -> serde_json::Value {
        let o = guard_cmd()
            .args(["doctor", "--json"])
            .env("GUARD_EVIDENCE_DIR", dir)
            .bounded();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["evidence"].clone()
    };
    let ev = evidence(&d.path().join("new/dir"));
    let names: Vec<&str> = ev
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["evidence directory", "py-spy", "gcore"]);
    assert_eq!(ev[0]["ok"], true, "{ev}");
    assert!(
        ev[0]["detail"]
            .as_str()
            .unwrap()
            .contains("created on first use")
    );
    assert!(!d.path().join("new").exists(), "doctor creates nothing");
    // Under a regular file: cannot be created, even by root.
    std::fs::write(d.path().join("file"), "x").unwrap();
    let ev = evidence(&d.path().join("file/evidence"));
    assert_eq!(ev[0]["ok"], false, "{ev}");
    assert!(ev[0]["fix"].as_str().unwrap().contains("--evidence-dir"));
}

#[test]
fn printing_commands_end_quietly_when_the_reader_goes_away() {
    // `guard config check FILE | head -1`: no panic, no error line.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/guard.toml");
    for args in [
        vec![
            "config".to_string(),
            "check".into(),
            example.display().to_string(),
        ],
        vec!["doctor".to_string()],
    ] {
        let mut child = guard_cmd()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before guard writes
        let o = wait_output_within(child, RUN_LIMIT, "guard");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("error"),
            "{args:?}: {err}"
        );
    }
}

/// Issue 26: doctor says which runtimes guard can explain here, and what is missing.
#[test]
fn doctor_says_which_runtimes_guard_can_explain() {
    let o = guard_cmd().args(["doctor", "--json"]).bounded();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rt = v["runtimes"].as_array().unwrap();
    let names: Vec<&str> = rt.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Python", "Node.js", "native code"]);
    let here = |p: &str| {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
            .unwrap_or(false)
            || std::path::Path::new("/usr/bin").join(p).is_file()
    };
    for (c, program) in rt.iter().zip(["python3", "node", "eu-stack"]) {
        assert_eq!(c["ok"], here(program), "{c}");
        if c["ok"] == false {
            assert!(
                c["fix"].as_str().unwrap().starts_with("apt-get install"),
                "{c}"
            );
        }
    }
    let text = String::from_utf8_lossy(&guard_cmd().arg("doctor").bounded().stdout).into_owned();
    assert!(text.contains("runtimes guard can explain:"), "{text}");
}
