//! From command-line flags, `GUARD_*` environment variables and config files to a validated
//! `WrapConfig`. Options are read by their key in the one option table ([`crate::config::options`]).
//! Every bad value becomes one `UsageError` line that names the value, where it came from (flag,
//! environment variable or `FILE:LINE:COLUMN`) and the accepted forms; the caller exits 125.

pub mod alerts;
pub mod census;
pub mod cli;
pub mod exit;
pub mod file;
pub mod options;
pub mod units;
pub mod upload;

use crate::config::cli::WrapArgs;
use crate::config::file::Layers;
use clap::ArgMatches;
use clap::parser::ValueSource;
use options::Kind;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use units::{DUR_FORMS, SIZE_FORMS, Size};

/// A user mistake, reported as `guard: error: <msg>` with exit status 125.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// How much guard says on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
    Debug,
}

/// Validated wrap-mode settings.
#[derive(Debug, Clone)]
pub struct WrapConfig {
    pub memory: Option<u64>,
    /// The memory option as the user wrote it (for messages).
    pub memory_text: Option<String>,
    pub swap: u64,
    pub name: String,
    pub kill_after: Duration,
    /// --kill-after was given: forwarded terminating signals escalate to a kill after it, and
    /// leftovers get it as their grace. Not given, the sender of a SIGTERM owns the escalation.
    pub kill_after_given: bool,
    /// --signal: what --timeout sends first.
    pub timeout_signal: nix::sys::signal::Signal,
    /// --preserve-status: after --timeout, COMMAND's own status instead of 124.
    pub preserve_status: bool,
    pub require_cgroup: bool,
    pub verbosity: Verbosity,
    pub command: Vec<OsString>,
    pub evidence: EvidenceConfig,
    pub metrics_file: Option<PathBuf>,
    pub alerts: Vec<crate::config::alerts::Sink>,
    pub timeout: Option<Duration>,
    pub ping: Option<crate::config::alerts::Secret>,
    /// `--upload`: where the run's bundles are shipped when it is over.
    pub upload: Option<upload::Upload>,
    /// --quiet: collect the job's output, print it only on failure.
    pub quiet: bool,
    pub subreaper: bool,
    pub pgroup: bool,
    /// Observe mode: percent of the container's limit at which to capture.
    pub capture_at: u8,
    pub lock: Option<PathBuf>,
    pub lock_wait: Option<Duration>,
    /// The slice for guard's transient scope (None: the manager's default).
    pub slice: Option<String>,
    /// --no-systemd: never ask systemd for a scope.
    pub no_systemd: bool,
    /// --hold-for: keep the job frozen this long after the capture at the cap.
    pub hold_for: Option<Duration>,
    /// --thrash-after: how long a job may stay stalled at its cap before it is treated as
    /// reaching it (None: off).
    pub thrash_after: Option<Duration>,
    /// --runbook: sent in every alert.
    pub runbook: Option<String>,
    /// `guard drill`'s rehearsal run: its alerts, bundle, ping and metrics say drill.
    pub drill: bool,
}

/// A drill's run ends by this time at the latest (its allocator reaches any cap in seconds).
pub const DRILL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why no evidence directory can be used: decided once per run, carried to the kill line
/// (`no evidence: …`). Cheap to clone (the OS errors are shared).
#[derive(Debug, Clone, thiserror::Error)]
pub enum NoEvidence {
    /// --no-evidence, GUARD_NO_EVIDENCE or `no_evidence = true`: how it was asked for.
    #[error("{0}")]
    Disabled(String),
    #[error(
        "no evidence directory: HOME is not set (give --evidence-dir DIR or GUARD_EVIDENCE_DIR)"
    )]
    NoHome,
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("{} is not writable: {}", path.display(), errno.desc())]
    NotWritable {
        path: PathBuf,
        errno: nix::errno::Errno,
    },
    #[error("cannot open {}: {}", path.display(), errno.desc())]
    Open {
        path: PathBuf,
        errno: nix::errno::Errno,
    },
    /// guard does not follow a symlink where it writes as root.
    #[error(
        "{} is a symlink, which guard does not follow for its bundles (give --evidence-dir the directory it points to)",
        path.display()
    )]
    Symlink { path: PathBuf },
    /// Another user could rename or replace what guard writes there.
    #[error(
        "{} belongs to uid {uid}, another user, who could redirect guard's writes (chown it to root, or give --evidence-dir a directory of your own)",
        path.display()
    )]
    Owner { path: PathBuf, uid: u32 },
    #[error(
        "{} is writable by other users (mode {mode:o}, not sticky), who could redirect guard's writes (chmod go-w it, or give --evidence-dir a directory of your own)",
        path.display()
    )]
    Writable { path: PathBuf, mode: u32 },
}

/// What guard keeps as evidence, and where.
#[derive(Debug, Clone)]
pub struct EvidenceConfig {
    /// Where bundles go, or why none can be written (--no-evidence, no home directory).
    pub dir: Result<PathBuf, NoEvidence>,
    /// Early-warning threshold in bytes (None: off).
    pub warn: Option<u64>,
    pub core: bool,
    pub core_max: u64,
    pub sample_interval: Duration,
    pub keep: usize,
    pub max_size: u64,
    /// Upper-case words; a variable whose upper-cased name contains one is redacted.
    pub redact: Vec<String>,
    pub environ: bool,
    pub pyspy_locals: bool,
    /// Native stacks of a process whose memory is mostly native (false: --no-native-stacks).
    pub native_stacks: bool,
    /// --pyspy: the py-spy program (None: looked for, see `runner::locate`).
    pub pyspy: Option<PathBuf>,
    /// The heap census (None: --no-pyheap and --no-nodeheap).
    pub census: Option<census::Settings>,
}

pub const DEFAULT_WARN_PERCENT: u8 = 80;
pub const DEFAULT_CORE_MAX: u64 = 4 << 30;
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
pub const DEFAULT_KEEP: usize = 50;
pub const DEFAULT_MAX_EVIDENCE_SIZE: u64 = 1 << 30;
/// The contract's redaction list.
pub const DEFAULT_REDACT: &[&str] = &[
    "PASS",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "SESSION",
    "PRIVATE",
    "DSN",
    "DATABASE_URL",
    "CONN",
    // Beyond the contract's list: suffixes (a '*' first), as in MYSQL_PWD and GITHUB_PAT ('PWD'
    // and 'PAT' anywhere would take PWD and PATH).
    "*_PWD",
    "*_PAT",
];

/// The default evidence directory: root → /var/lib/guard/evidence; others →
/// $XDG_STATE_HOME/guard/evidence, else ~/.local/state/guard/evidence.
pub fn default_evidence_dir() -> Result<PathBuf, NoEvidence> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/guard/evidence"));
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        if x.is_absolute() {
            return Ok(x.join("guard/evidence"));
        }
    }
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(h) if h.is_absolute() => Ok(h.join(".local/state/guard/evidence")),
        _ => Err(NoEvidence::NoHome),
    }
}

pub const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(10);

/// Where each setting came from: the command line / environment (clap's matches) or a config
/// file (`key` → `FILE:LINE:COLUMN`).
pub struct Src<'a> {
    pub m: &'a ArgMatches,
    pub file: std::collections::HashMap<&'static str, String>,
    pub layers: &'a Layers,
    pub job: Option<String>,
}

/// "--memory '12X'", "GUARD_MEMORY='12X'" or "memory = '12X' (FILE:LINE:COL)", depending on
/// where the value of option `key` came from.
fn origin(src: &Src, key: &str, value: &str) -> String {
    let o = options::get(key);
    if let Some(place) = src.file.get(o.key) {
        return format!("{} = '{value}' ({place})", o.key);
    }
    // Subcommands (drill, upload) read the settings from matches without the wrap options.
    let known = src.m.try_contains_id(o.key).unwrap_or(false);
    match known.then(|| src.m.value_source(o.key)).flatten() {
        Some(ValueSource::EnvVariable) => format!("{}='{value}'", o.env),
        _ => format!("{} '{value}'", o.long()),
    }
}

/// Fill the value options neither the command line nor the environment set from the config
/// files (the job's table, then [defaults]); remember where each came from.
pub fn apply_files<'a>(
    args: &WrapArgs,
    m: &'a ArgMatches,
    layers: &'a Layers,
) -> (WrapArgs, Src<'a>) {
    let mut a = args.clone();
    let job = args.text("name").map(str::to_string);
    let mut src = Src {
        m,
        file: Default::default(),
        layers,
        job: job.clone(),
    };
    // The upload's GUARD_UPLOAD* variables count for the subcommands too (drill, doctor, config
    // check, upload, report s3://): their bucket and credentials are the host's, as a run's are.
    // In wrap mode clap has read them already and this changes nothing.
    for o in options::OPTIONS
        .iter()
        .filter(|o| o.key.starts_with("upload") && !matches!(o.kind, Kind::Flag))
    {
        if let Some(v) = std::env::var_os(o.env).filter(|v| !v.is_empty()) {
            a.fill(o.key, v);
        }
    }
    let values = options::file_keys().filter(|o| !matches!(o.kind, Kind::Flag | Kind::Level));
    for o in values {
        if let Some(v) = layers.get(job.as_deref(), o.key) {
            if a.fill(o.key, v.text.into()) {
                src.file.insert(o.key, v.place);
            }
        }
    }
    (a, src)
}

/// A switch: the flag, else its `GUARD_*` variable (when set and not empty), else the config
/// files, else false.
fn flag(src: &Src, args: &WrapArgs, key: &str) -> Result<bool, UsageError> {
    if args.flag(key) {
        return Ok(true);
    }
    let env = options::get(key).env;
    if std::env::var(env).is_ok_and(|v| !v.trim().is_empty()) {
        return env_flag(env);
    }
    Ok(src
        .layers
        .get(src.job.as_deref(), key)
        .is_some_and(|v| v.text == "true"))
}

/// A boolean environment variable: unset or empty is false; 1/true/yes/on and 0/false/no/off
/// (any case) are accepted; anything else is an error that names the variable.
fn env_flag(name: &str) -> Result<bool, UsageError> {
    let Ok(v) = std::env::var(name) else {
        return Ok(false);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        _ => Err(UsageError(format!(
            "{name}='{v}' is not valid: expected 1, true, yes, on or 0, false, no, off"
        ))),
    }
}

/// 0, 1 or 2, from `-v`s, GUARD_VERBOSE or the file's `verbose`.
fn level(text: &str) -> Option<u8> {
    match text.trim() {
        "" | "0" => Some(0),
        "1" => Some(1),
        "2" => Some(2),
        _ => None,
    }
}

/// Verbosity from -v/-q, GUARD_VERBOSE / GUARD_BRIEF, then the config files.
fn verbosity(args: &WrapArgs, src: &Src) -> Result<Verbosity, UsageError> {
    let mut v = args.verbose;
    let env = std::env::var("GUARD_VERBOSE");
    if v == 0 {
        if let Ok(s) = &env {
            v = level(s).ok_or_else(|| {
                UsageError(format!(
                    "GUARD_VERBOSE='{}' is not valid: expected 0, 1 or 2",
                    s.trim()
                ))
            })?;
        }
    }
    if v == 0 && env.is_err() {
        if let Some(f) = src.layers.get(src.job.as_deref(), "verbose") {
            v = level(&f.text)
                .filter(|_| !f.text.is_empty())
                .ok_or_else(|| {
                    UsageError(format!(
                        "verbose = {} ({}) is not valid: expected 0, 1 or 2",
                        f.text, f.place
                    ))
                })?;
        }
    }
    let quiet = args.flag("brief") || (v == 0 && flag(src, args, "brief")?);
    Ok(match (quiet, v) {
        (true, 0) => Verbosity::Quiet,
        (true, _) => {
            return Err(UsageError(
                "-q (--brief) and -v contradict each other: use one".into(),
            ));
        }
        (false, 0) => Verbosity::Normal,
        (false, 1) => Verbosity::Verbose,
        (false, _) => Verbosity::Debug,
    })
}

/// Validate wrap options. `available` gives the memory available to guard (for `N%`), computed
/// only when a percentage is used.
pub fn wrap_config(
    args: &WrapArgs,
    src: &Src,
    available: impl FnOnce() -> Option<u64>,
) -> Result<WrapConfig, UsageError> {
    let memory = memory(args, src, available)?;
    let command = command(args)?;
    let name = match args.text("name") {
        Some(n) => {
            options::validate_name(n)
                .map_err(|e| UsageError(format!("invalid {}: {e}", origin(src, "name", n))))?;
            n.to_string()
        }
        None => options::default_name(&command[0]),
    };
    let lock = path(
        args,
        "lock",
        "the lock file is an empty string: give --lock FILE",
    )?;
    let lock_wait = duration(args, src, "lock_wait")?;
    if lock_wait.is_some() && lock.is_none() {
        return Err(UsageError(
            "--lock-wait needs --lock FILE: it is how long to wait for that lock".into(),
        ));
    }
    // A drill rehearses the failure path, not the schedule: it never takes the job's lock, so
    // the real run is never refused (75) because a drill was running.
    let lock = lock.filter(|_| !args.drill);
    let hold_for = duration(args, src, "hold_for")?;
    if hold_for.is_some() && memory.is_none() {
        return Err(UsageError(
            "--hold-for needs --memory SIZE: it is how long guard holds the job at that cap".into(),
        ));
    }
    let mut evidence = evidence_config(args, src, memory)?;
    let mut timeout = match args.text("timeout") {
        None => None,
        Some(t) => units::parse_timeout(t).map_err(|e| duration_error(src, "timeout", t, e))?,
    };
    let hold_for = if args.drill {
        // A rehearsal: no hold (the job's could be half an hour), no warning alert before the
        // drill's own, and a bound on the whole.
        evidence.warn = None;
        timeout = Some(timeout.map_or(DRILL_TIMEOUT, |t| t.min(DRILL_TIMEOUT)));
        None
    } else {
        hold_for
    };
    Ok(WrapConfig {
        hold_for,
        thrash_after: thrash_after(args, src)?,
        drill: args.drill,
        runbook: runbook(args, src)?,
        capture_at: capture_at(args, src)?,
        subreaper: flag(src, args, "subreaper")?,
        pgroup: flag(src, args, "pgroup")?,
        ping: ping(args, src)?,
        upload: upload(args, src)?,
        quiet: flag(src, args, "quiet")?,
        timeout,
        lock,
        lock_wait,
        alerts: alerts(args, src)?,
        metrics_file: metrics_file(args)?,
        evidence,
        swap: swap(args, src, memory)?,
        memory,
        memory_text: args.text("memory").map(str::to_string),
        name,
        kill_after: kill_after(args, src)?,
        kill_after_given: args.text("kill_after").is_some(),
        timeout_signal: timeout_signal(args, src)?,
        preserve_status: flag(src, args, "preserve_status")?,
        require_cgroup: flag(src, args, "require_cgroup")?,
        verbosity: verbosity(args, src)?,
        slice: slice(args, src)?,
        no_systemd: flag(src, args, "no_systemd")?,
        command,
    })
}

/// --runbook: one line of text or a URL, at most 2000 characters.
fn runbook(args: &WrapArgs, src: &Src) -> Result<Option<String>, UsageError> {
    let Some(r) = args.text("runbook") else {
        return Ok(None);
    };
    let why = if r.trim().is_empty() {
        Some("it is empty")
    } else if r.chars().any(char::is_control) {
        Some("it holds a line break or another control character: give one line, or a URL")
    } else if r.chars().count() > 2000 {
        Some("it is longer than 2000 characters: give a URL to it instead")
    } else {
        None
    };
    match why {
        Some(w) => Err(UsageError(format!(
            "invalid {}: {w}",
            origin(src, "runbook", r)
        ))),
        None => Ok(Some(r.trim().to_string())),
    }
}

/// --slice: a slice unit name (`NAME.slice`).
fn slice(args: &WrapArgs, src: &Src) -> Result<Option<String>, UsageError> {
    let Some(s) = args.text("slice") else {
        return Ok(None);
    };
    crate::cgroup::systemd::check_slice(s)
        .map_err(|e| UsageError(format!("invalid {}: {e}", origin(src, "slice", s))))?;
    Ok(Some(s.to_string()))
}

/// --metrics-file: a path ending `.prom`, the only files node_exporter's textfile collector reads.
fn metrics_file(args: &WrapArgs) -> Result<Option<PathBuf>, UsageError> {
    let p = path(
        args,
        "metrics_file",
        "the metrics file is an empty string: give --metrics-file PATH",
    )?;
    match &p {
        Some(f) if f.extension().is_none_or(|e| e != "prom") => Err(UsageError(format!(
            "--metrics-file {}: node_exporter's textfile collector reads only files ending .prom; \
             name it like /var/lib/node_exporter/textfile/guard.prom",
            f.display()
        ))),
        _ => Ok(p),
    }
}

/// COMMAND: given, and not an empty string.
fn command(args: &WrapArgs) -> Result<Vec<OsString>, UsageError> {
    match args.command.first() {
        None => Err(UsageError(
            "no COMMAND given: usage: guard [OPTIONS] -- COMMAND [ARGS]...".into(),
        )),
        Some(first) if first.is_empty() => Err(UsageError("COMMAND is an empty string".into())),
        Some(_) => Ok(args.command.clone()),
    }
}

/// A SIZE that did not parse.
fn size_error(src: &Src, key: &str, v: &str, e: units::UnitError) -> UsageError {
    UsageError(format!(
        "invalid {}: {e}; expected {SIZE_FORMS}",
        origin(src, key, v)
    ))
}

/// --memory: bytes, or a percentage of the memory available to guard; at least 1 MiB.
fn memory(
    args: &WrapArgs,
    src: &Src,
    available: impl FnOnce() -> Option<u64>,
) -> Result<Option<u64>, UsageError> {
    let Some(text) = args.text("memory") else {
        return Ok(None);
    };
    let size = units::parse_size(text).map_err(|e| size_error(src, "memory", text, e))?;
    let bytes = match size {
        Size::Bytes(b) => b,
        Size::Percent(_) => {
            let base = available().ok_or_else(|| {
                UsageError(format!(
                    "cannot resolve {}: the memory available to guard is unknown; give a size like 2G",
                    origin(src, "memory", text)
                ))
            })?;
            size.resolve(base)
        }
    };
    // Below a few MiB the kernel cannot even start most programs: a typo, not a cap.
    if bytes < 1 << 20 {
        return Err(UsageError(format!(
            "invalid {}: {} is too small for a memory cap (minimum 1 MiB); did you mean {}M?",
            origin(src, "memory", text),
            units::format_size(bytes),
            text.trim()
        )));
    }
    Ok(Some(bytes))
}

/// --swap: on top of --memory (a percentage is of --memory), which it needs.
fn swap(args: &WrapArgs, src: &Src, memory: Option<u64>) -> Result<u64, UsageError> {
    let Some(text) = args.text("swap") else {
        return Ok(0);
    };
    let size = units::parse_size(text).map_err(|e| size_error(src, "swap", text, e))?;
    match (size, memory) {
        (Size::Bytes(b), Some(_)) => Ok(b),
        (Size::Percent(_), Some(base)) => Ok(size.resolve(base)),
        (_, None) => Err(UsageError(format!(
            "{} needs --memory: swap is allowed on top of the memory cap",
            origin(src, "swap", text)
        ))),
    }
}

/// A DUR that did not parse.
fn duration_error(src: &Src, key: &str, v: &str, e: units::UnitError) -> UsageError {
    UsageError(format!(
        "invalid {}: {e}; expected {DUR_FORMS}",
        origin(src, key, v)
    ))
}

/// How long a job may thrash at its cap unless --thrash-after says otherwise (as long as
/// systemd-oomd lets a cgroup's memory pressure stay over its limit by default).
pub const DEFAULT_THRASH_AFTER: Duration = Duration::from_secs(30);

/// --thrash-after: more than 0, or 'off'.
fn thrash_after(args: &WrapArgs, src: &Src) -> Result<Option<Duration>, UsageError> {
    match args.text("thrash_after") {
        None => Ok(Some(DEFAULT_THRASH_AFTER)),
        Some(t) if t.trim().eq_ignore_ascii_case("off") => Ok(None),
        Some(_) => duration(args, src, "thrash_after"),
    }
}

/// --signal: a signal name with or without SIG (any case), or its number; not KILL/STOP-proof
/// checks — timeout(1) takes any, and so does guard.
fn timeout_signal(args: &WrapArgs, src: &Src) -> Result<nix::sys::signal::Signal, UsageError> {
    use nix::sys::signal::Signal;
    let Some(t) = args.text("signal") else {
        return Ok(Signal::SIGTERM);
    };
    let s = t.trim();
    let parsed = match s.parse::<i32>() {
        Ok(n) => Signal::try_from(n).ok(),
        Err(_) => {
            let up = s.to_ascii_uppercase();
            let name = if up.starts_with("SIG") {
                up
            } else {
                format!("SIG{up}")
            };
            name.parse::<Signal>().ok()
        }
    };
    parsed.ok_or_else(|| {
        UsageError(format!(
            "invalid {}: not a signal; give a name (TERM, INT, KILL, USR1) or a number (15)",
            origin(src, "signal", t)
        ))
    })
}

/// --kill-after (zero is allowed: kill at once).
fn kill_after(args: &WrapArgs, src: &Src) -> Result<Duration, UsageError> {
    match args.text("kill_after") {
        None => Ok(DEFAULT_KILL_AFTER),
        Some(t) => units::parse_duration(t).map_err(|e| duration_error(src, "kill_after", t, e)),
    }
}

/// A DUR option that must be more than 0 (--timeout, --lock-wait).
fn duration(args: &WrapArgs, src: &Src, key: &str) -> Result<Option<Duration>, UsageError> {
    let Some(t) = args.text(key) else {
        return Ok(None);
    };
    let d = units::parse_duration(t).map_err(|e| duration_error(src, key, t, e))?;
    if d.is_zero() {
        return Err(UsageError(format!(
            "invalid {}: must be more than 0",
            origin(src, key, t)
        )));
    }
    Ok(Some(d))
}

/// A path option, made absolute (the job may change directory; guard does not). An empty string
/// is the mistake `empty` describes.
fn path(args: &WrapArgs, key: &str, empty: &str) -> Result<Option<PathBuf>, UsageError> {
    match args.path(key) {
        Some(p) if p.as_os_str().is_empty() => Err(UsageError(empty.into())),
        Some(p) => Ok(Some(std::path::absolute(&p).unwrap_or(p))),
        None => Ok(None),
    }
}

/// The [[alerts]] of the config files, and --alert (or GUARD_ALERT, several separated by spaces).
fn alerts(args: &WrapArgs, src: &Src) -> Result<Vec<crate::config::alerts::Sink>, UsageError> {
    use crate::config::alerts::redact_url;
    let mut alerts: Vec<crate::config::alerts::Sink> =
        src.layers.alerts().into_iter().map(|(s, _)| s).collect();
    let mut specs: Vec<(String, String)> = args
        .alert
        .iter()
        .map(|a| (a.clone(), format!("--alert '{}'", redact_url(a))))
        .collect();
    if args.alert.is_empty() {
        if let Ok(v) = std::env::var("GUARD_ALERT") {
            specs.extend(
                v.split_whitespace()
                    .map(|a| (a.to_string(), format!("GUARD_ALERT='{}'", redact_url(a)))),
            );
        }
    }
    for (spec, shown) in specs {
        alerts.push(
            crate::config::alerts::Sink::from_cli(&spec)
                .map_err(|e| UsageError(format!("invalid {shown}: {e}")))?,
        );
    }
    Ok(alerts)
}

/// --ping: an http(s) URL, or env:NAME / file:/path holding one (resolved when pinging).
fn ping(args: &WrapArgs, src: &Src) -> Result<Option<crate::config::alerts::Secret>, UsageError> {
    use crate::config::alerts::{Secret, redact_url};
    let Some(u) = args.text("ping") else {
        return Ok(None);
    };
    let sec = Secret::parse(u);
    if let Secret::Plain(p) = &sec {
        crate::config::alerts::check_url("ping", p).map_err(|e| {
            UsageError(format!(
                "invalid {}: {e}",
                origin(src, "ping", &redact_url(p))
            ))
        })?;
    }
    Ok(Some(sec))
}

/// The longest a presigned link can be valid (SigV4's limit).
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// --upload and its upload_* keys (config::upload reads them); a secret given on the command
/// line itself, not as env:NAME or file:/path, is refused: every user can read argv.
fn upload(args: &WrapArgs, src: &Src) -> Result<Option<upload::Upload>, UsageError> {
    for key in [
        "upload_access_key_id",
        "upload_secret_access_key",
        "upload_session_token",
    ] {
        // (doctor and config check read the settings from matches without the wrap options)
        let on_argv = src.m.try_contains_id(key).unwrap_or(false)
            && src.m.value_source(key) == Some(ValueSource::CommandLine);
        if let (true, Some(v)) = (on_argv, args.text(key)) {
            if matches!(
                crate::config::alerts::Secret::parse(v),
                crate::config::alerts::Secret::Plain(_)
            ) {
                return Err(UsageError(format!(
                    "invalid {} '<redacted>': a credential on the command line is visible to every \
                     user (ps); give env:NAME or file:/path, or put it in guard.toml",
                    options::get(key).long()
                )));
            }
        }
    }
    let allow_http = flag(src, args, "upload_allow_http")?;
    let text = |key: &str| -> Option<String> {
        if key == "upload_allow_http" {
            return allow_http.then(|| "true".to_string());
        }
        args.text(key).map(str::to_string)
    };
    let env = |name: &str| std::env::var(name).ok();
    let given = upload::Given {
        text: &text,
        env: &env,
    };
    let Some(mut u) = upload::Upload::read(&given).map_err(|(key, value, why)| {
        UsageError(format!("invalid {}: {why}", origin(src, key, &value)))
    })?
    else {
        for key in [
            "upload_endpoint",
            "upload_timeout",
            "upload_presign",
            "upload_access_key_id",
        ] {
            if args.text(key).is_some() {
                return Err(UsageError(format!(
                    "{} needs --upload s3://BUCKET/PREFIX: it says how bundles are shipped there",
                    options::get(key).long()
                )));
            }
        }
        return Ok(None);
    };
    if let Some(t) = duration(args, src, "upload_timeout")? {
        u.timeout = t;
    }
    u.presign = duration(args, src, "upload_presign")?;
    if let (Some(p), Some(t)) = (u.presign, args.text("upload_presign")) {
        if p > MAX_PRESIGN {
            return Err(UsageError(format!(
                "invalid {}: a presigned link is valid for 7 days at most",
                origin(src, "upload_presign", t)
            )));
        }
    }
    Ok(Some(u))
}

/// --capture-at: 1% to 100% of the container's limit.
fn capture_at(args: &WrapArgs, src: &Src) -> Result<u8, UsageError> {
    let Some(t) = args.text("capture_at") else {
        return Ok(95);
    };
    let n = t.trim().trim_end_matches('%').trim();
    n.parse::<u8>()
        .ok()
        .filter(|p| (1..=100).contains(p))
        .ok_or_else(|| {
            UsageError(format!(
                "invalid {}: expected a percentage of the container's memory limit, 1% to 100%",
                origin(src, "capture_at", t)
            ))
        })
}

/// The effective settings, one per line, with where each came from (`guard config check`).
pub fn describe(cfg: &WrapConfig, src: &Src) -> String {
    use std::fmt::Write as _;
    let from = |key: &str| {
        src.file
            .get(key)
            .cloned()
            .or_else(|| src.layers.get(src.job.as_deref(), key).map(|v| v.place))
            .unwrap_or_else(|| "built-in".into())
    };
    let mut o = String::new();
    for (k, v) in described(cfg).into_iter().chain(upload_described(cfg)) {
        let key = match k {
            "verbosity" if src.layers.get(src.job.as_deref(), "brief").is_some() => "brief",
            "verbosity" => "verbose",
            "evidence_dir" if !src.file.contains_key("evidence_dir") => {
                if src.layers.get(src.job.as_deref(), "no_evidence").is_some() {
                    "no_evidence"
                } else {
                    k
                }
            }
            other => other,
        };
        let _ = writeln!(o, "  {k:<18} {v:<28} {}", from(key));
    }
    o
}

/// The upload's rows of `guard config check` (none without --upload); a credential is named by
/// where it comes from, never shown.
fn upload_described(cfg: &WrapConfig) -> Vec<(&'static str, String)> {
    use crate::config::alerts::Secret;
    let Some(u) = &cfg.upload else {
        return vec![("upload", "none (bundles stay on this host)".into())];
    };
    let secret = |s: &Secret| match s {
        Secret::Plain(_) => "(the value itself, not shown)".to_string(),
        other => other.shown(),
    };
    let credentials = match &u.keys {
        Some(k) => format!("{} / {}", secret(&k.id), secret(&k.secret)),
        None => "the AWS variables, else the shared credentials file".into(),
    };
    vec![
        ("upload", u.target.shown()),
        (
            "upload_endpoint",
            format!("{} ({})", u.endpoint, u.endpoint_from),
        ),
        ("upload_region", u.region.clone()),
        (
            "upload_addressing",
            match u.addressing {
                upload::Addressing::Path => "path".into(),
                upload::Addressing::VirtualHost => "virtual".into(),
            },
        ),
        ("upload_timeout", units::format_duration(u.timeout)),
        (
            "upload_presign",
            u.presign
                .map(units::format_duration)
                .unwrap_or_else(|| "off".into()),
        ),
        ("upload_access_key_id", credentials),
    ]
}

/// The rows `guard config check` prints.
fn described(cfg: &WrapConfig) -> Vec<(&'static str, String)> {
    let e = &cfg.evidence;
    let size =
        |v: Option<u64>, none: &str| v.map(units::format_size).unwrap_or_else(|| none.into());
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none".into())
    };
    vec![
        ("memory", size(cfg.memory, "none (monitor only)")),
        ("swap", units::format_size(cfg.swap)),
        ("warn", size(e.warn, "off")),
        (
            "evidence_dir",
            match &e.dir {
                Ok(d) => d.display().to_string(),
                Err(why) => format!("none ({why})"),
            },
        ),
        ("core", e.core.to_string()),
        ("core_max", units::format_size(e.core_max)),
        ("kill_after", units::format_duration(cfg.kill_after)),
        ("signal", cfg.timeout_signal.as_str().to_string()),
        ("preserve_status", cfg.preserve_status.to_string()),
        (
            "timeout",
            cfg.timeout
                .map(units::format_duration)
                .unwrap_or_else(|| "none".into()),
        ),
        (
            "runbook",
            cfg.runbook.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "hold_for",
            cfg.hold_for
                .map(units::format_duration)
                .unwrap_or_else(|| "none (kill at once)".into()),
        ),
        (
            "thrash_after",
            cfg.thrash_after
                .map(units::format_duration)
                .unwrap_or_else(|| "off".into()),
        ),
        ("lock", path(&cfg.lock)),
        ("sample_interval", units::format_duration(e.sample_interval)),
        ("keep", e.keep.to_string()),
        ("max_evidence_size", units::format_size(e.max_size)),
        ("redact", e.redact.join(",")),
        ("no_environ", (!e.environ).to_string()),
        ("pyspy_locals", e.pyspy_locals.to_string()),
        ("no_native_stacks", (!e.native_stacks).to_string()),
        (
            "pyspy",
            match &e.pyspy {
                Some(p) => p.display().to_string(),
                None => match crate::os::runner::locate("py-spy") {
                    Ok(p) => format!("{} (found)", p.display()),
                    Err(e) => format!("none ({e})"),
                },
            },
        ),
        (
            "no_pyheap",
            (!e.census.is_some_and(|c| c.python)).to_string(),
        ),
        (
            "no_nodeheap",
            (!e.census.is_some_and(|c| c.node)).to_string(),
        ),
        (
            "pyheap_window",
            units::format_duration(e.census.map_or(census::DEFAULT_WINDOW, |p| p.window)),
        ),
        (
            "tracemalloc",
            e.census
                .and_then(|p| p.tracemalloc)
                .map_or_else(|| "off".into(), |n| format!("{n} frame(s)")),
        ),
        (
            "pyheap_headroom",
            match e.census.and_then(|p| p.headroom) {
                Some(h) => units::format_size(h),
                None => "5% of --memory, at least 32 MiB".into(),
            },
        ),
        ("require_cgroup", cfg.require_cgroup.to_string()),
        (
            "slice",
            cfg.slice.clone().unwrap_or_else(|| "default".into()),
        ),
        ("no_systemd", cfg.no_systemd.to_string()),
        ("verbosity", format!("{:?}", cfg.verbosity).to_lowercase()),
        ("quiet", cfg.quiet.to_string()),
        ("metrics_file", path(&cfg.metrics_file)),
    ]
}

/// The evidence options, validated.
fn evidence_config(
    args: &WrapArgs,
    src: &Src,
    memory: Option<u64>,
) -> Result<EvidenceConfig, UsageError> {
    Ok(EvidenceConfig {
        dir: evidence_dir(args, src)?,
        warn: warn(args, src, memory)?,
        core: flag(src, args, "core")?,
        core_max: plain_size(args, src, "core_max", DEFAULT_CORE_MAX)?,
        sample_interval: sample_interval(args, src)?,
        keep: keep(args, src)?,
        max_size: plain_size(args, src, "max_evidence_size", DEFAULT_MAX_EVIDENCE_SIZE)?,
        redact: redact(args, src)?,
        environ: !flag(src, args, "no_environ")?,
        pyspy_locals: flag(src, args, "pyspy_locals")?,
        native_stacks: !flag(src, args, "no_native_stacks")?,
        pyspy: program(args, src, "pyspy")?,
        census: census_settings(args, src)?,
    })
}

/// A helper program option (--pyspy): an executable file, made absolute.
fn program(args: &WrapArgs, src: &Src, key: &str) -> Result<Option<PathBuf>, UsageError> {
    let Some(p) = path(args, key, "the program is an empty string: give its path")? else {
        return Ok(None);
    };
    let shown = p.display().to_string();
    let executable = std::fs::metadata(&p).is_ok_and(|m| m.is_file())
        && nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK).is_ok();
    if !executable {
        return Err(UsageError(format!(
            "invalid {}: not an executable file (pip install py-spy puts it in /usr/local/bin, ~/.local/bin or the virtualenv's bin)",
            origin(src, key, &shown)
        )));
    }
    if let Err(e) = crate::os::trust::check(&p, crate::os::trust::Use::Program) {
        return Err(UsageError(format!(
            "invalid {}: {e}",
            origin(src, key, &shown)
        )));
    }
    Ok(Some(p))
}

/// --no-pyheap, --no-nodeheap, --pyheap-window (more than 0, at most a minute: the held job
/// runs that long), --pyheap-headroom.
fn census_settings(args: &WrapArgs, src: &Src) -> Result<Option<census::Settings>, UsageError> {
    let window = duration(args, src, "pyheap_window")?;
    let headroom = match args.text("pyheap_headroom") {
        Some(_) => Some(plain_size(args, src, "pyheap_headroom", 0)?),
        None => None,
    };
    let python = !flag(src, args, "no_pyheap")?;
    let node = !flag(src, args, "no_nodeheap")?;
    if !python && !node {
        return Ok(None);
    }
    if let (Some(w), Some(t)) = (window, args.text("pyheap_window")) {
        if w > MAX_PYHEAP_WINDOW {
            return Err(UsageError(format!(
                "invalid {}: the held job would run that long past its cap; the longest window is {}",
                origin(src, "pyheap_window", t),
                units::format_duration(MAX_PYHEAP_WINDOW)
            )));
        }
    }
    Ok(Some(census::Settings {
        window: window.unwrap_or(census::DEFAULT_WINDOW),
        headroom,
        tracemalloc: tracemalloc(args, src)?,
        python,
        node,
    }))
}

/// --tracemalloc FRAMES: 1 to MAX_TRACEMALLOC_FRAMES; 0 is off.
fn tracemalloc(args: &WrapArgs, src: &Src) -> Result<Option<u32>, UsageError> {
    let Some(t) = args.text("tracemalloc") else {
        return Ok(None);
    };
    match t.trim().parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(n) if n <= census::MAX_TRACEMALLOC_FRAMES => Ok(Some(n)),
        _ => Err(UsageError(format!(
            "invalid {}: expected the number of frames each allocation records, 1 to {} (1 names \
             the line; 0 is off)",
            origin(src, "tracemalloc", t),
            census::MAX_TRACEMALLOC_FRAMES
        ))),
    }
}

/// The longest --pyheap-window.
const MAX_PYHEAP_WINDOW: Duration = Duration::from_secs(60);

/// A SIZE option that takes bytes only (no percentage).
fn plain_size(args: &WrapArgs, src: &Src, key: &str, default: u64) -> Result<u64, UsageError> {
    let Some(text) = args.text(key) else {
        return Ok(default);
    };
    match units::parse_size(text) {
        Ok(Size::Bytes(b)) => Ok(b),
        Ok(Size::Percent(_)) => Err(UsageError(format!(
            "invalid {}: a percentage is not accepted here; give a size like 2G",
            origin(src, key, text)
        ))),
        Err(e) => Err(size_error(src, key, text, e)),
    }
}

/// --warn: a size or a percentage of --memory, below the cap; 80% of it by default; `off`.
fn warn(args: &WrapArgs, src: &Src, memory: Option<u64>) -> Result<Option<u64>, UsageError> {
    let t = match (args.text("warn").map(str::trim), memory) {
        (Some(t), _) if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") => {
            return Ok(None);
        }
        (None, Some(mem)) => return Ok(Some(Size::Percent(DEFAULT_WARN_PERCENT).resolve(mem))),
        (None, None) => return Ok(None),
        (Some(t), _) => t,
    };
    let o = || origin(src, "warn", t);
    let bytes = match (units::parse_size(t), memory) {
        (Ok(Size::Bytes(b)), _) => b,
        (Ok(p @ Size::Percent(_)), Some(mem)) => p.resolve(mem),
        (Ok(Size::Percent(_)), None) => {
            return Err(UsageError(format!(
                "{}: a percentage needs --memory (it is a share of the cap); give a size like 1G",
                o()
            )));
        }
        (Err(e), _) => {
            return Err(UsageError(format!(
                "invalid {}: {e}; expected {SIZE_FORMS}, or off",
                o()
            )));
        }
    };
    if bytes == 0 {
        return Err(UsageError(format!(
            "invalid {}: a threshold of 0 would warn at once; give a size such as 1G, a percentage of --memory such as 80%, or off",
            o()
        )));
    }
    if let Some(mem) = memory.filter(|&m| bytes >= m) {
        return Err(UsageError(format!(
            "{} is not below --memory {}: the warning must come before the cap (or use --warn off)",
            o(),
            units::format_size(mem)
        )));
    }
    Ok(Some(bytes))
}

/// --sample-interval: at least MIN_SAMPLE_INTERVAL.
fn sample_interval(args: &WrapArgs, src: &Src) -> Result<Duration, UsageError> {
    let Some(t) = args.text("sample_interval") else {
        return Ok(DEFAULT_SAMPLE_INTERVAL);
    };
    let d = units::parse_duration(t).map_err(|e| duration_error(src, "sample_interval", t, e))?;
    if d < MIN_SAMPLE_INTERVAL {
        return Err(UsageError(format!(
            "invalid {}: the shortest interval is {}",
            origin(src, "sample_interval", t),
            units::format_duration(MIN_SAMPLE_INTERVAL)
        )));
    }
    Ok(d)
}

/// --keep: 1 or more bundles.
fn keep(args: &WrapArgs, src: &Src) -> Result<usize, UsageError> {
    let Some(t) = args.text("keep") else {
        return Ok(DEFAULT_KEEP);
    };
    t.trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            UsageError(format!(
                "invalid {}: expected a whole number of bundles, 1 or more",
                origin(src, "keep", t)
            ))
        })
}

/// --redact: comma-separated words (upper-cased).
fn redact(args: &WrapArgs, src: &Src) -> Result<Vec<String>, UsageError> {
    let Some(t) = args.text("redact") else {
        return Ok(DEFAULT_REDACT.iter().map(|w| w.to_string()).collect());
    };
    let words: Vec<String> = t
        .split(',')
        .map(|w| w.trim().to_ascii_uppercase())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Err(UsageError(format!(
            "invalid {}: expected comma-separated words like TOKEN,PASS",
            origin(src, "redact", t)
        )));
    }
    Ok(words)
}

/// Where bundles go, or why none are written (--no-evidence, its variable or key).
fn evidence_dir(args: &WrapArgs, src: &Src) -> Result<Result<PathBuf, NoEvidence>, UsageError> {
    if !flag(src, args, "no_evidence")? {
        let empty = "the evidence directory is an empty string: give --evidence-dir DIR";
        return Ok(match path(args, "evidence_dir", empty)? {
            Some(d) => Ok(d),
            None => default_evidence_dir(),
        });
    }
    Ok(Err(NoEvidence::Disabled(if args.flag("no_evidence") {
        "--no-evidence was given".to_string()
    } else if std::env::var("GUARD_NO_EVIDENCE").is_ok_and(|v| !v.trim().is_empty()) {
        "GUARD_NO_EVIDENCE is set".to_string()
    } else {
        let place = src
            .layers
            .get(src.job.as_deref(), "no_evidence")
            .map(|v| v.place)
            .unwrap_or_default();
        format!("no_evidence = true ({place})")
    })))
}
