//! guard: run a command in a memory-capped cgroup; at the cap, kill the whole job and say so.
//!
//! This file is the module map and the dispatch: [`main_with`] parses the command line and hands
//! each subcommand to its handler in [`commands`]. ARCHITECTURE.md has the bird's-eye view.
//!
//! Module map, lowest layer first (a module uses only those above it; `tests/architecture.rs`
//! checks it):
//! - [`format`]: the bundle format and the words guard writes (event kinds, statuses, modes).
//! - [`os`]: small operating-system helpers: the /proc reader, helper programs run with a bound,
//!   guard's runtime directory, who owns a leaf, whether root may trust a file, output kept as
//!   its first and last bytes, the journal and syslog.
//! - [`logger`]: guard's own lines on stderr (or the journal), filtered by -v / -q.
//! - [`cgroup`]: layout detection, the v1 / v2 / poll enforcement modes behind one interface,
//!   and [`cgroup::systemd`], the transient scope systemd makes for the job where it owns the
//!   tree.
//! - [`config`]: the options and everything about them — the one table ([`config::options`]),
//!   the clap definition ([`config::cli`]), the TOML file ([`config::file`]), SIZE and DUR
//!   ([`config::units`]), the exit statuses ([`config::exit`]), the sinks' specifications
//!   ([`config::alerts`]) — validated into [`config::WrapConfig`]; bad input → exit 125.
//! - [`report`]: what a bundle says — read back, how the memory grew ([`report::growth`]),
//!   rendered as text, JSON or HTML — and the list of bundles.
//! - [`evidence`]: the memory timeline, the snapshot of a held job, collectors, the Python heap
//!   census, bundles, and the one redaction pass for everything that leaves guard
//!   ([`evidence::redact`]).
//! - [`alert`]: telling people — the alert sinks and their bounded delivery, the pings, the
//!   metrics file ([`alert::metrics`]).
//! - [`supervise`]: one run, as its lifecycle: prepare, spawn into the cgroup, the event loop
//!   (signals, memory events, the sampler, holds), the verdict, telling people; the sentinel and
//!   the register of held jobs ([`supervise::register`]).
//! - [`commands`]: each subcommand's handler — the wrap, `report`/`list`, `held`/`kill`,
//!   `doctor`, `drill`, `config check` — on top of everything else.

pub mod alert;
pub mod cgroup;
pub mod commands;
pub mod config;
pub mod evidence;
pub mod format;
pub mod logger;
pub mod os;
pub mod report;
pub mod ship;
pub mod supervise;

use clap::FromArgMatches;
use config::{Verbosity, cli, exit};
use std::ffi::OsString;

/// guard's own lines from now on, at `v`'s level.
pub(crate) fn init_logging(v: Verbosity) {
    logger::init(match v {
        Verbosity::Quiet => log::LevelFilter::Error,
        Verbosity::Normal => log::LevelFilter::Warn,
        Verbosity::Verbose => log::LevelFilter::Info,
        Verbosity::Debug => log::LevelFilter::Debug,
    });
}

/// Turn a clap error into guard's one-line form: clap's message (the lines before its usage
/// block, joined), without its "error: " prefix, plus where to look.
fn clap_error_line(e: &clap::Error) -> String {
    if e.kind() == clap::error::ErrorKind::MissingRequiredArgument {
        return "no COMMAND given: usage: guard [OPTIONS] -- COMMAND [ARGS]...; see 'guard --help'"
            .into();
    }
    let rendered = e.to_string();
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let t = line.trim();
        if t.starts_with("Usage:") || t.starts_with("For more information") {
            break;
        }
        if !t.is_empty() {
            parts.push(t.trim_start_matches("error: "));
        }
    }
    format!("{}; see 'guard --help'", parts.join("; "))
}

/// What the Rust runtime's start-up would have done that guard relies on (the binary starts
/// from C's `main`, see src/main.rs), after recording the signal state guard inherited (see
/// [`os::sigstate`]): SIGPIPE ignored, so a closed reader is an EPIPE error and
/// not guard's death; and descriptors 0, 1 and 2 open (on /dev/null if they were closed), so no
/// file guard opens — a cgroup's `tasks`, a bundle file — can become its stdout or stderr.
pub fn startup() {
    // The signal state guard was given, before anything changes it: COMMAND starts with it.
    os::sigstate::record();
    os::sigstate::own_sigchld();
    // SAFETY: SIG_IGN is a valid disposition, set before any thread exists.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll reads and writes only the three pollfd entries passed.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    for p in &fds {
        let closed = if polled >= 0 {
            p.revents & libc::POLLNVAL != 0
        } else {
            // SAFETY: F_GETFD on an integer fd has no memory effects.
            (unsafe { libc::fcntl(p.fd, libc::F_GETFD) }) == -1
        };
        if closed {
            // The lowest free descriptor is the closed one.
            // SAFETY: open with a static NUL-terminated path.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd != p.fd && fd >= 0 {
                // SAFETY: closes the descriptor just opened, which nothing else uses.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// Run guard with `args` (including argv[0]); returns the exit status.
pub fn main_with(args: Vec<OsString>) -> i32 {
    // The cleanup sentinel's mode (guard died): not a command for people, not in --help.
    if args
        .get(1)
        .is_some_and(|a| a == supervise::sentinel::CLEANUP_MODE)
    {
        return supervise::sentinel::cleanup(&args[2..]);
    }
    // The allocator `guard drill` runs under the job's settings: not a command for people.
    if args
        .get(1)
        .is_some_and(|a| a == commands::drill::ALLOC_MODE)
    {
        return commands::drill::allocate(&args[2..]);
    }
    let matches = match cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    0
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    exit::GUARD_FAILED
                }
                _ => {
                    commands::error_line(clap_error_line(&e));
                    exit::GUARD_FAILED
                }
            };
        }
    };
    let parsed = match cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            commands::error_line(clap_error_line(&e));
            return exit::GUARD_FAILED;
        }
    };
    let sub = parsed.sub.map(|s| s.0);
    if sub.as_ref().is_some_and(|s| !matches!(s, cli::Sub::Run(_))) {
        // Commands that print (report, list, doctor, config check) end quietly when their
        // reader goes away (`guard list | head`), as Unix tools do, instead of failing on EPIPE.
        // SAFETY: SIG_DFL is a valid disposition, set before any thread exists.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    match sub {
        Some(cli::Sub::Doctor(d)) => commands::doctor::command(d.json),
        Some(cli::Sub::Report(r)) => {
            init_logging(Verbosity::Normal);
            commands::report::report(&r)
        }
        Some(cli::Sub::List(l)) => {
            init_logging(Verbosity::Normal);
            commands::report::list(&l)
        }
        Some(cli::Sub::Held(h)) => commands::held::held(&h),
        Some(cli::Sub::Drill(d)) => {
            init_logging(Verbosity::Normal);
            let sub = matches
                .subcommand_matches("drill")
                .cloned()
                .unwrap_or_default();
            commands::drill::command(&d, &sub)
        }
        Some(cli::Sub::Kill(k)) => commands::held::kill(&k.target),
        Some(cli::Sub::Upload(u)) => {
            init_logging(Verbosity::Normal);
            let sub = matches
                .subcommand_matches("upload")
                .cloned()
                .unwrap_or_default();
            commands::upload::command(&u, &sub)
        }
        Some(cli::Sub::Config(cli::ConfigCmd::Check(c))) => {
            init_logging(Verbosity::Normal);
            let sub = matches
                .subcommand_matches("config")
                .and_then(|c| c.subcommand_matches("check"))
                .cloned()
                .unwrap_or_default();
            commands::config_check::check(&c, &sub)
        }
        Some(cli::Sub::Run(w)) => {
            let sub = matches
                .subcommand_matches("run")
                .cloned()
                .unwrap_or_default();
            commands::run::wrap(&w, &sub)
        }
        None => commands::run::wrap(&parsed.wrap, &matches),
    }
}
