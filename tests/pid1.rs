//! guard as a container's PID 1, without a container engine: `unshare --pid --fork --mount-proc`
//! makes it PID 1 of a new PID namespace. Orphans are reaped, signals are forwarded, and the
//! same signal scenario runs against tini and dumb-init (Debian packages) as references.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn root(test: &str) -> bool {
    let euid = unsafe_euid();
    gate(
        test,
        (euid != 0).then(|| format!("unshare --pid needs root (euid {euid})")),
        "GUARD_TEST_REQUIRE_PRIVILEGED",
    )
}

fn unsafe_euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn pid1(args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc"]);
    c.args(args);
    c.env("GUARD_CONFIG", "/dev/null")
        .env("GUARD_EVIDENCE_DIR", scratch_evidence_dir());
    c
}

#[test]
fn as_pid_1_guard_reaps_a_thousand_orphans() {
    let test = "as_pid_1_guard_reaps_a_thousand_orphans";
    if !root(test) {
        return;
    }
    // 1000 subshells each leave a short sleep behind: orphans, re-parented to PID 1 (guard),
    // which must reap them as they exit. The job then counts zombies in its namespace.
    let script = "echo pid1=$(cut -d' ' -f1 /proc/1/stat) comm=$(cat /proc/1/comm); \
                  i=0; while [ $i -lt 1000 ]; do (sleep 0.2 &); i=$((i+1)); done; \
                  sleep 2; echo zombies=$(cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z ')";
    let g = guard().display().to_string();
    let o = pid1(&[&g, "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .bounded();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("pid1=1 comm=guard"), "guard is PID 1: {out}");
    assert!(out.contains("zombies=0"), "{out}");
}

/// Run `wrapper` as PID 1 over sigprint, send it `signals` one by one (waiting for each line),
/// then SIGTERM; returns what sigprint printed and the exit status.
fn signal_scenario(wrapper: &[&str], signals: &[(i32, &str)]) -> (Vec<String>, Option<i32>) {
    let sp = example("sigprint").display().to_string();
    let mut args: Vec<&str> = wrapper.to_vec();
    args.push("--");
    args.push(&sp);
    let mut child = pid1(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let unshare_pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    assert!(first.starts_with("ready"), "{first}");
    // The wrapper is unshare's child (PID 1 inside, an ordinary pid outside).
    let wrapper_pid: i32 =
        std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the wrapper's pid");
    for (sig, name) in signals.iter().chain([&(libc::SIGTERM, "SIGTERM")]) {
        send(wrapper_pid as u32, *sig);
        match lines.next() {
            Some(Ok(l)) => seen.push(l),
            _ => {
                seen.push(format!("(nothing for {name})"));
                break;
            }
        }
    }
    let st = wait_output_within(child, RUN_LIMIT, "pid 1 scenario").status;
    (seen, st.code())
}

#[test]
fn signals_reach_the_child_as_with_tini_and_dumb_init() {
    let test = "signals_reach_the_child_as_with_tini_and_dumb_init";
    if !root(test) {
        return;
    }
    let signals = [
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGWINCH, "SIGWINCH"),
    ];
    let expected: Vec<String> = signals
        .iter()
        .map(|(_, n)| n.to_string())
        .chain(["SIGTERM".to_string()])
        .collect();
    let g = guard().display().to_string();
    for wrapper in [vec![g.as_str()], vec![g.as_str(), "--pgroup"]] {
        let (seen, code) = signal_scenario(&wrapper, &signals);
        assert_eq!(seen, expected, "{wrapper:?}");
        assert_eq!(code, Some(0), "{wrapper:?}: the child's status");
    }
    // The references, where installed (scripts/test installs both).
    for (name, wrapper) in [("tini", vec!["tini"]), ("dumb-init", vec!["dumb-init"])] {
        if !tool(test, name) {
            continue;
        }
        let (seen, code) = signal_scenario(&wrapper, &signals);
        assert_eq!(seen, expected, "{name} as the reference");
        assert_eq!(code, Some(0), "{name}");
    }
}

#[test]
fn subreaper_and_pgroup_flags() {
    // --pgroup outside a namespace: the job leads its own group
    let o = guard_cmd()
        .args([
            "--pgroup",
            "--",
            "sh",
            "-c",
            "echo $(cut -d' ' -f5 /proc/$$/stat) $$",
        ])
        .bounded();
    let out = String::from_utf8_lossy(&o.stdout);
    let v: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(v.len(), 2, "{out}");
    assert_eq!(v[0], v[1], "pgid == pid: {out}");
    let o = guard_cmd().args(["--subreaper", "--", "true"]).bounded();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
