//! guard: run a command in a memory-capped cgroup; at the cap, kill the whole job and say so.
//!
//! Module map (the data path runs top to bottom):
//! - [`config`]: the options and everything about them — the one table ([`config::options`]),
//!   the clap definition ([`config::cli`]), the TOML file ([`config::file`]), SIZE and DUR
//!   ([`config::units`]), the exit statuses ([`config::exit`]) — validated into
//!   [`config::WrapConfig`]; bad input → exit 125.
//! - [`logger`]: guard's own lines on stderr, filtered by -v / -q.
//! - [`format`]: the bundle format and the words guard writes (event kinds, statuses, modes).
//! - [`os`]: small operating-system helpers every layer uses: the /proc reader, helper programs
//!   run with a bound, guard's runtime directory, who owns a leaf, whether root may trust a file,
//!   output kept as its first and last bytes.
//! - [`cgroup`]: layout detection, the v1 / v2 / poll enforcement modes behind one enum, and
//!   [`cgroup::systemd`], the transient scope systemd makes for the job where it owns the tree.
//! - [`supervise`]: spawning into the cgroup, the event loop, signals, reaping, the sentinel.
//! - [`evidence`]: the memory timeline and how it grew ([`evidence::growth`]), the snapshot of a
//!   held job, collectors, the Python heap census, bundles, and the one redaction pass for
//!   everything that leaves guard ([`evidence::redact`]).
//! - [`commands`]: each subcommand but the wrap itself: `guard doctor`, `guard drill`, and the
//!   readiness checks they and `guard config check` share.
//! - [`report`]: `guard report` and `guard list` (text, JSON, HTML).
//! - [`alert`]: telling people — the alert sinks (webhook, Slack, Alertmanager, email, PagerDuty,
//!   exec, log) and their bounded delivery, the pings, and the metrics file ([`alert::metrics`]).

pub mod alert;
pub mod cgroup;
pub mod commands;
pub mod config;
pub mod evidence;
pub mod format;
pub mod logger;
pub mod os;
pub mod report;
pub mod supervise;

use clap::{ArgMatches, FromArgMatches};
use config::{Verbosity, cli, exit};
use std::ffi::OsString;
use std::io::Write;

/// Print guard's own error line.
fn error_line(msg: impl std::fmt::Display) {
    // One line, whatever the value it names holds (a raw escape code, a newline).
    let msg = msg.to_string();
    let _ = writeln!(
        std::io::stderr(),
        "guard: error: {}",
        format::escape_controls(&msg, false)
    );
}

fn init_logging(v: Verbosity) {
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
/// from C's `main`, see src/main.rs): SIGPIPE ignored, so a closed reader is an EPIPE error and
/// not guard's death; and descriptors 0, 1 and 2 open (on /dev/null if they were closed), so no
/// file guard opens — a cgroup's `tasks`, a bundle file — can become its stdout or stderr.
pub fn startup() {
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

/// 64 random bits (names nobody guesses ahead of time: the census socket, a ping's run id).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        // No getrandom (kernels before 3.17): the time and pid still make a value nobody guesses
        // ahead of time for what lives a few seconds or names one run.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return t ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_ne_bytes(b)
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
                    error_line(clap_error_line(&e));
                    exit::GUARD_FAILED
                }
            };
        }
    };
    let parsed = match cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            error_line(clap_error_line(&e));
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
        Some(cli::Sub::Doctor(d)) => {
            let r = commands::doctor::report();
            if d.json {
                match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        error_line(format!("cannot encode the report: {e}"));
                        return exit::GUARD_FAILED;
                    }
                }
            } else {
                commands::doctor::print(&r);
            }
            r.status
        }
        Some(cli::Sub::Report(r)) => {
            init_logging(Verbosity::Normal);
            report_cmd(&r)
        }
        Some(cli::Sub::List(l)) => {
            init_logging(Verbosity::Normal);
            list_cmd(&l)
        }
        Some(cli::Sub::Held(h)) => held_cmd(&h),
        Some(cli::Sub::Drill(d)) => {
            init_logging(Verbosity::Normal);
            let sub = matches
                .subcommand_matches("drill")
                .cloned()
                .unwrap_or_default();
            commands::drill::command(&d, &sub)
        }
        Some(cli::Sub::Kill(k)) => match commands::held::kill_cmd(&k.target) {
            Ok(said) => {
                println!("{said}");
                0
            }
            Err(e) => {
                error_line(&e);
                exit::GUARD_FAILED
            }
        },
        Some(cli::Sub::Config(cli::ConfigCmd::Check(c))) => {
            init_logging(Verbosity::Normal);
            let sub = matches
                .subcommand_matches("config")
                .and_then(|c| c.subcommand_matches("check"))
                .cloned()
                .unwrap_or_default();
            config_check(&c, &sub)
        }
        Some(cli::Sub::Run(w)) => {
            let sub = matches
                .subcommand_matches("run")
                .cloned()
                .unwrap_or_default();
            wrap(&w, &sub)
        }
        None => wrap(&parsed.wrap, &matches),
    }
}

fn evidence_dir(
    given: &Option<std::path::PathBuf>,
) -> Result<std::path::PathBuf, config::NoEvidence> {
    match given {
        Some(d) => Ok(d.clone()),
        None => config::default_evidence_dir(),
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> i32 {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            error_line(format!("cannot encode JSON: {e}"));
            exit::GUARD_FAILED
        }
    }
}

/// `guard report [BUNDLE | --latest] [--json | --html FILE]`
fn report_cmd(a: &cli::ReportArgs) -> i32 {
    let dir = match &a.bundle {
        Some(b) => Ok(b.clone()),
        None => evidence_dir(&a.evidence_dir)
            .map_err(report::ReportError::from)
            .and_then(|d| report::latest(&d)),
    };
    let r = match dir.and_then(|d| report::Report::load(&d)) {
        Ok(r) => r,
        Err(e) => {
            error_line(&e);
            return exit::GUARD_FAILED;
        }
    };
    if a.json {
        return print_json(&r);
    }
    if let Some(out) = &a.html {
        if let Err(e) = write_private(out, report::html(&r).as_bytes()) {
            error_line(format!(
                "cannot write {}: {e} (choose a writable path for --html; guard does not write through a symlink)",
                out.display()
            ));
            return exit::GUARD_FAILED;
        }
        eprintln!("guard: wrote {}", out.display());
        return 0;
    }
    print!("{}", report::text(&r));
    0
}

/// Write `data` to `path` as the bundle's files are: 0600 (the page holds the bundle's
/// command lines and paths), never through a symlink (root writing where another user points).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // An existing file keeps its mode through O_CREAT: make it private too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)
}

/// `guard list [--json]`
fn list_cmd(a: &cli::ListArgs) -> i32 {
    let dir = match evidence_dir(&a.evidence_dir) {
        Ok(d) => d,
        Err(e) => {
            error_line(&e);
            return exit::GUARD_FAILED;
        }
    };
    let rows = report::list(&dir);
    if a.json {
        return print_json(&rows);
    }
    // Held jobs first: a hold is the one thing in the list that is still going on.
    match supervise::register::live() {
        Ok(h) if !h.is_empty() => println!("{}", commands::held::text(&h)),
        Ok(_) => {}
        Err(e) => log::warn!("{e}"),
    }
    if rows.is_empty() {
        eprintln!("guard: no bundles in {}", dir.display());
        return 0;
    }
    print!("{}", report::list_text(&rows));
    0
}

/// `guard held [--json]`
fn held_cmd(a: &cli::HeldArgs) -> i32 {
    let held = match supervise::register::live() {
        Ok(h) => h,
        Err(e) => {
            error_line(&e);
            return exit::GUARD_FAILED;
        }
    };
    if a.json {
        return print_json(&held);
    }
    if held.is_empty() {
        eprintln!("guard: no job is held now (by this user's guards)");
        return 0;
    }
    print!("{}", commands::held::text(&held));
    0
}

fn wrap(args: &cli::WrapArgs, m: &ArgMatches) -> i32 {
    let layers = match config::file::Layers::load(args.path("config").as_deref()) {
        Ok(l) => l,
        Err(e) => {
            error_line(&e);
            return exit::GUARD_FAILED;
        }
    };
    let (args, src) = config::apply_files(args, m, &layers);
    let cfg = match config::wrap_config(&args, &src, available_memory) {
        Ok(c) => c,
        Err(e) => {
            error_line(&e.0);
            return exit::GUARD_FAILED;
        }
    };
    init_logging(cfg.verbosity);
    match supervise::run(&cfg) {
        Ok(code) => code,
        Err(f) => {
            error_line(&f.message);
            f.status
        }
    }
}

/// The memory available to guard (for `N%` sizes).
pub fn available_memory() -> Option<u64> {
    let sys = cgroup::detect::Sys::live();
    cgroup::detect::Layout::read(&sys)
        .ok()
        .and_then(|l| cgroup::detect::available_memory(&sys, &l))
}

/// `guard config check [FILE]`: validate, then print the effective settings of [defaults] and of
/// every job, each with where it came from.
fn config_check(a: &cli::ConfigCheckArgs, m: &ArgMatches) -> i32 {
    let files = config::file::locate(a.file.as_deref());
    if files.is_empty() {
        println!(
            "no configuration file: neither /etc/guard/guard.toml nor the user's \
             $XDG_CONFIG_HOME/guard/guard.toml (~/.config/guard/guard.toml) exists; built-in defaults apply"
        );
        return 0;
    }
    let layers = match config::file::Layers::load(a.file.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            error_line(&e);
            return exit::GUARD_FAILED;
        }
    };
    for f in &layers.files {
        println!("{}: ok", f.path.display());
    }
    let alerts = layers.alerts();
    if alerts.is_empty() {
        println!("\nalerts: none (add [[alerts]] tables, or --alert KIND:TARGET)");
    } else {
        println!("\nalerts (every job):");
        for (sink, place) in &alerts {
            println!(
                "  {:<44} events {}; timeout {}   {place}",
                sink.label(),
                sink.events
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                config::units::format_duration(sink.timeout)
            );
        }
    }
    let mut jobs: Vec<Option<String>> = vec![None];
    let mut seen = std::collections::HashSet::new();
    for f in &layers.files {
        for j in f.job_names() {
            if seen.insert(j.clone()) {
                jobs.push(Some(j));
            }
        }
    }
    let mut status = 0;
    let mut ready =
        commands::readiness::sinks(&alerts.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>());
    let mut seen = commands::readiness::Seen::default();
    for job in jobs {
        let base = cli::WrapArgs::for_job(job.clone());
        let (args, src) = config::apply_files(&base, m, &layers);
        match config::wrap_config(&args, &src, available_memory) {
            Ok(cfg) => {
                match &job {
                    None => println!("\n[defaults] (and any job without a table of its own):"),
                    Some(j) => println!("\n[jobs.{j}] (guard --name {j}):"),
                }
                print!("{}", config::describe(&cfg, &src));
                ready.extend(commands::readiness::job(&cfg, &mut seen));
            }
            Err(e) => {
                error_line(&e.0);
                status = exit::GUARD_FAILED;
            }
        }
    }
    println!("\nreadiness (checked here and now; secrets resolved but not shown; nothing sent):");
    print!("{}", commands::readiness::text(&ready));
    let failed = ready.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        println!(
            "{failed} check(s) failed: a real run would lose what they name; fix them, then run guard drill"
        );
        if status == 0 {
            status = 1;
        }
    }
    status
}
