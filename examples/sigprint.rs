//! sigprint: prints each signal it receives, one line each ("SIGUSR1"), for checking what guard
//! (or tini, dumb-init) forwards. Prints "ready PID" first. Exits 0 on SIGTERM unless
//! `--ignore-term` is given (then it keeps running, to test --kill-after).
//!
//! `--all`: takes every catchable signal 1–31, not just the usual ones (SIGKILL and SIGSTOP
//! cannot be taken). `--drain SECS`: on SIGTERM, prints "draining", works SECS seconds more (a
//! graceful shutdown), prints "drained" and exits 0.

use nix::sys::signal::{SigSet, Signal};
use std::io::Write;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ignore_term = args.iter().any(|a| a == "--ignore-term");
    let all = args.iter().any(|a| a == "--all");
    let drain: Option<f64> = args
        .iter()
        .position(|a| a == "--drain")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok());
    let mut set = SigSet::empty();
    if all {
        for n in 1..32 {
            if let Ok(s) = Signal::try_from(n) {
                if s != Signal::SIGKILL && s != Signal::SIGSTOP {
                    set.add(s);
                }
            }
        }
    } else {
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
            Signal::SIGCONT,
        ] {
            set.add(s);
        }
    }
    if let Err(e) = set.thread_block() {
        eprintln!("sigprint: cannot block signals: {e}");
        std::process::exit(1);
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready {}", std::process::id());
    let _ = out.flush();
    loop {
        match set.wait() {
            Ok(sig) => {
                let _ = writeln!(out, "{}", sig.as_str());
                let _ = out.flush();
                if sig == Signal::SIGTERM && !ignore_term {
                    if let Some(secs) = drain {
                        let _ = writeln!(out, "draining");
                        let _ = out.flush();
                        std::thread::sleep(Duration::from_secs_f64(secs));
                        let _ = writeln!(out, "drained");
                        let _ = out.flush();
                    }
                    std::process::exit(0);
                }
            }
            Err(e) => {
                eprintln!("sigprint: sigwait: {e}");
                std::process::exit(1);
            }
        }
    }
}
