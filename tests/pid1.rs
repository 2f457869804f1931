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
fn signal_scenario(
    wrapper: &[&str],
    job_args: &[&str],
    signals: &[(i32, &str)],
) -> (Vec<String>, Option<i32>) {
    let sp = example("sigprint").display().to_string();
    let mut args: Vec<&str> = wrapper.to_vec();
    args.push("--");
    args.push(&sp);
    args.extend_from_slice(job_args);
    let mut child = pid1(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let unshare_pid = child.id();
    // Each line read on a thread of its own, waited for at most LINE_LIMIT: a wrapper that
    // stops the job (or itself) must fail the scenario, not hang the suite.
    const LINE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(LINE_LIMIT).ok();
    let mut seen = Vec::new();
    let first = next().unwrap_or_default();
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
        match next() {
            Some(l) => seen.push(l),
            None => {
                seen.push(format!("(nothing for {name})"));
                // Whatever the wrapper did, end the scenario: SIGKILL to unshare's namespace.
                let _ = child.kill();
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
        let (seen, code) = signal_scenario(&wrapper, &[], &signals);
        assert_eq!(seen, expected, "{wrapper:?}");
        assert_eq!(code, Some(0), "{wrapper:?}: the child's status");
    }
    // The references, where installed (scripts/test installs both).
    for (name, wrapper) in [("tini", vec!["tini"]), ("dumb-init", vec!["dumb-init"])] {
        if !tool(test, name) {
            continue;
        }
        let (seen, code) = signal_scenario(&wrapper, &[], &signals);
        assert_eq!(seen, expected, "{name} as the reference");
        assert_eq!(code, Some(0), "{name}");
    }
}

/// Issue 24, item 3, as PID 1: every catchable signal sent to guard reaches the job (SIGCHLD is
/// guard's; SIGTERM ends the scenario), as dumb-init forwards them — before, nine of them killed
/// guard and ten were dropped. dumb-init runs the same scenario where installed.
#[test]
fn as_pid_1_every_signal_reaches_the_job() {
    let test = "as_pid_1_every_signal_reaches_the_job";
    if !root(test) {
        return;
    }
    let names: Vec<(i32, String)> = (1..32)
        .filter(|n| ![libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD, libc::SIGTERM].contains(n))
        .filter_map(|n| {
            nix::sys::signal::Signal::try_from(n)
                .ok()
                .map(|s| (n, s.as_str().to_string()))
        })
        .collect();
    let signals: Vec<(i32, &str)> = names.iter().map(|(n, s)| (*n, s.as_str())).collect();
    let expected: Vec<String> = names
        .iter()
        .map(|(_, n)| n.clone())
        .chain(["SIGTERM".to_string()])
        .collect();
    let g = guard().display().to_string();
    for wrapper in [vec![g.as_str()], vec![g.as_str(), "--pgroup"]] {
        let (seen, code) = signal_scenario(&wrapper, &["--all"], &signals);
        assert_eq!(seen, expected, "{wrapper:?}");
        assert_eq!(code, Some(0), "{wrapper:?}: the child's status");
    }
    if tool(test, "dumb-init") {
        // dumb-init rewrites SIGTSTP, SIGTTIN and SIGTTOU to SIGSTOP for its child (its
        // documented job control, the child having a session of its own): the rest must match.
        let job_control = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];
        let rest: Vec<(i32, &str)> = signals
            .iter()
            .copied()
            .filter(|(n, _)| !job_control.contains(n))
            .collect();
        let expected: Vec<String> = rest
            .iter()
            .map(|(_, n)| n.to_string())
            .chain(["SIGTERM".to_string()])
            .collect();
        let (seen, code) = signal_scenario(&["dumb-init"], &["--all"], &rest);
        assert_eq!(seen, expected, "dumb-init as the reference");
        assert_eq!(code, Some(0), "dumb-init");
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
