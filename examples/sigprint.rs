//! sigprint: prints each signal it receives, one line each ("SIGUSR1"), for checking what guard
//! (or tini, dumb-init) forwards. Prints "ready PID" first. Exits 0 on SIGTERM unless
//! `--ignore-term` is given (then it keeps running, to test --kill-after).

use nix::sys::signal::{SigSet, Signal};
use std::io::Write;

fn main() {
    let ignore_term = std::env::args().any(|a| a == "--ignore-term");
    let mut set = SigSet::empty();
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
