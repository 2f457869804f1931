//! From command-line flags and `GUARD_*` environment variables to a validated `WrapConfig`.
//! Every bad value becomes one `UsageError` line that names the value, where it came from (flag
//! or environment variable) and the accepted forms; the caller exits 125.

use crate::cli::WrapArgs;
use crate::config_file::Layers;
use crate::units::{self, DUR_FORMS, SIZE_FORMS, Size};
use clap::ArgMatches;
use clap::parser::ValueSource;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

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
    pub require_cgroup: bool,
    pub verbosity: Verbosity,
    pub command: Vec<OsString>,
    pub evidence: EvidenceConfig,
    pub metrics_file: Option<PathBuf>,
    pub alerts: Vec<crate::alert::Sink>,
    pub timeout: Option<Duration>,
    pub ping: Option<crate::alert::spec::Secret>,
    /// --quiet: collect the job's output, print it only on failure.
    pub quiet: bool,
    pub subreaper: bool,
    pub pgroup: bool,
    /// Observe mode: percent of the container's limit at which to capture.
    pub capture_at: u8,
    pub lock: Option<PathBuf>,
    pub lock_wait: Option<Duration>,
}

/// What guard keeps as evidence, and where.
#[derive(Debug, Clone)]
pub struct EvidenceConfig {
    /// Where bundles go; `Err(why)` when none can be written (--no-evidence, no home directory).
    pub dir: Result<PathBuf, String>,
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
];

/// The default evidence directory: root → /var/lib/guard/evidence; others →
/// $XDG_STATE_HOME/guard/evidence, else ~/.local/state/guard/evidence.
pub fn default_evidence_dir() -> Result<PathBuf, String> {
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
        _ => Err(
            "no evidence directory: HOME is not set (give --evidence-dir DIR or GUARD_EVIDENCE_DIR)"
                .into(),
        ),
    }
}

pub const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(10);
const MAX_NAME: usize = 64;

/// Where each setting came from: the command line / environment (clap's matches) or a config
/// file (`key` → `FILE:LINE:COLUMN`).
pub struct Src<'a> {
    pub m: &'a ArgMatches,
    pub file: std::collections::HashMap<&'static str, String>,
    pub layers: &'a Layers,
    pub job: Option<String>,
}

/// "--memory '12X'", "GUARD_MEMORY='12X'" or "memory = '12X' (FILE:LINE:COL)", depending on
/// where the value came from.
fn origin(src: &Src, id: &str, flag: &str, env: &str, value: &str) -> String {
    if let Some(place) = src.file.get(id) {
        return format!("{id} = '{value}' ({place})");
    }
    match src.m.value_source(id) {
        Some(ValueSource::EnvVariable) => format!("{env}='{value}'"),
        _ => format!("{flag} '{value}'"),
    }
}

/// The wrap options that take a value, as clap ids = file keys.
const VALUE_KEYS: &[&str] = &[
    "memory",
    "swap",
    "warn",
    "evidence_dir",
    "core_max",
    "kill_after",
    "sample_interval",
    "keep",
    "max_evidence_size",
    "redact",
    "metrics_file",
    "timeout",
    "lock",
    "lock_wait",
    "ping",
    "capture_at",
];

/// Fill the options neither the command line nor the environment set from the config files
/// (the job's table, then [defaults]); remember where each came from.
pub fn apply_files<'a>(
    args: &WrapArgs,
    m: &'a ArgMatches,
    layers: &'a Layers,
) -> (WrapArgs, Src<'a>) {
    let mut a = args.clone();
    let job = args.name.clone();
    let mut src = Src {
        m,
        file: Default::default(),
        layers,
        job: job.clone(),
    };
    // Most options are kept as text until validated; the paths are paths already.
    enum Slot<'s> {
        Text(&'s mut Option<String>),
        Path(&'s mut Option<PathBuf>),
    }
    for &key in VALUE_KEYS {
        let slot = match key {
            "memory" => Slot::Text(&mut a.memory),
            "swap" => Slot::Text(&mut a.swap),
            "warn" => Slot::Text(&mut a.warn),
            "core_max" => Slot::Text(&mut a.core_max),
            "kill_after" => Slot::Text(&mut a.kill_after),
            "sample_interval" => Slot::Text(&mut a.sample_interval),
            "keep" => Slot::Text(&mut a.keep),
            "max_evidence_size" => Slot::Text(&mut a.max_evidence_size),
            "redact" => Slot::Text(&mut a.redact),
            "timeout" => Slot::Text(&mut a.timeout),
            "lock_wait" => Slot::Text(&mut a.lock_wait),
            "ping" => Slot::Text(&mut a.ping),
            "capture_at" => Slot::Text(&mut a.capture_at),
            "lock" => Slot::Path(&mut a.lock),
            "metrics_file" => Slot::Path(&mut a.metrics_file),
            _ => Slot::Path(&mut a.evidence_dir),
        };
        let unset = match &slot {
            Slot::Text(t) => t.is_none(),
            Slot::Path(p) => p.is_none(),
        };
        if !unset {
            continue;
        }
        let Some(v) = layers.get(job.as_deref(), key) else {
            continue;
        };
        match slot {
            Slot::Text(t) => *t = Some(v.text),
            Slot::Path(p) => *p = Some(PathBuf::from(&v.text)),
        }
        src.file.insert(key, v.place);
    }
    (a, src)
}

/// A boolean option: the flag, else its `GUARD_*` variable (when set and not empty), else the
/// config files, else false.
fn flag(src: &Src, cli: bool, key: &str, env: &str) -> Result<bool, UsageError> {
    if cli {
        return Ok(true);
    }
    if std::env::var(env).is_ok_and(|v| !v.trim().is_empty()) {
        return env_flag(env);
    }
    Ok(src
        .layers
        .get(src.job.as_deref(), key)
        .is_some_and(|v| v.text == "true"))
}

/// Check a job name given by the user: it ends up in cgroup and file names.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("the name is longer than {MAX_NAME} characters"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err("the name must not start with '.' or '-'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "'{c}' is not allowed (use letters, digits, '_', '-' and '.')"
        ));
    }
    Ok(())
}

/// The default job name: the basename of COMMAND, made safe for cgroup and file names.
pub fn default_name(command: &OsString) -> String {
    let s = command.to_string_lossy();
    let base = s.rsplit('/').next().unwrap_or("");
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME)
        .collect();
    while out.starts_with('.') || out.starts_with('-') {
        out.remove(0);
    }
    if out.is_empty() {
        "job".to_string()
    } else {
        out
    }
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

/// Verbosity from -v/-q, GUARD_VERBOSE / GUARD_QUIET, then the config files.
fn verbosity(args: &WrapArgs, src: &Src) -> Result<Verbosity, UsageError> {
    let mut v = args.verbose;
    if v == 0 {
        if let Ok(s) = std::env::var("GUARD_VERBOSE") {
            v = match s.trim() {
                "" | "0" => 0,
                "1" => 1,
                "2" => 2,
                other => {
                    return Err(UsageError(format!(
                        "GUARD_VERBOSE='{other}' is not valid: expected 0, 1 or 2"
                    )));
                }
            };
        }
    }
    if v == 0 && std::env::var("GUARD_VERBOSE").is_err() {
        if let Some(f) = src.layers.get(src.job.as_deref(), "verbose") {
            v = match f.text.as_str() {
                "0" => 0,
                "1" => 1,
                "2" => 2,
                other => {
                    return Err(UsageError(format!(
                        "verbose = {other} ({}) is not valid: expected 0, 1 or 2",
                        f.place
                    )));
                }
            };
        }
    }
    let quiet = args.brief || (v == 0 && flag(src, false, "brief", "GUARD_BRIEF")?);
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
    let size_err = |id: &str, flag: &str, env: &str, v: &str, e: units::UnitError| {
        UsageError(format!(
            "invalid {}: {e}; expected {SIZE_FORMS}",
            origin(src, id, flag, env, v)
        ))
    };
    let mut available = Some(available);
    let mut memory = None;
    if let Some(text) = &args.memory {
        let size = units::parse_size(text)
            .map_err(|e| size_err("memory", "--memory", "GUARD_MEMORY", text, e))?;
        let bytes = match size {
            Size::Bytes(b) => b,
            Size::Percent(_) => {
                let base = available.take().and_then(|f| f()).ok_or_else(|| {
                    UsageError(format!(
                        "cannot resolve {}: the memory available to guard is unknown; give a size like 2G",
                        origin(src, "memory", "--memory", "GUARD_MEMORY", text)
                    ))
                })?;
                size.resolve(base)
            }
        };
        // Below a few MiB the kernel cannot even start most programs: a typo, not a cap.
        if bytes < 1 << 20 {
            return Err(UsageError(format!(
                "invalid {}: {} is too small for a memory cap (minimum 1 MiB); did you mean {}M?",
                origin(src, "memory", "--memory", "GUARD_MEMORY", text),
                units::format_size(bytes),
                text.trim()
            )));
        }
        memory = Some(bytes);
    }
    let swap = match &args.swap {
        None => 0,
        Some(text) => {
            let size = units::parse_size(text)
                .map_err(|e| size_err("swap", "--swap", "GUARD_SWAP", text, e))?;
            match (size, memory) {
                (Size::Bytes(b), _) => b,
                (Size::Percent(_), Some(base)) => size.resolve(base),
                (Size::Percent(_), None) => 0, // rejected just below: --swap needs --memory
            }
        }
    };
    if args.swap.is_some() && memory.is_none() {
        return Err(UsageError(format!(
            "{} needs --memory: swap is allowed on top of the memory cap",
            origin(
                src,
                "swap",
                "--swap",
                "GUARD_SWAP",
                args.swap.as_deref().unwrap_or("")
            )
        )));
    }
    let kill_after = match &args.kill_after {
        None => DEFAULT_KILL_AFTER,
        Some(text) => units::parse_duration(text).map_err(|e| {
            UsageError(format!(
                "invalid {}: {e}; expected {DUR_FORMS}",
                origin(src, "kill_after", "--kill-after", "GUARD_KILL_AFTER", text)
            ))
        })?,
    };
    let Some(first) = args.command.first() else {
        return Err(UsageError(
            "no COMMAND given: usage: guard [OPTIONS] -- COMMAND [ARGS]...".into(),
        ));
    };
    if first.is_empty() {
        return Err(UsageError("COMMAND is an empty string".into()));
    }
    let name = match &args.name {
        Some(n) => {
            validate_name(n).map_err(|e| {
                UsageError(format!(
                    "invalid {}: {e}",
                    origin(src, "name", "--name", "GUARD_NAME", n)
                ))
            })?;
            n.clone()
        }
        None => default_name(first),
    };
    let evidence = evidence_config(args, src, memory)?;
    let metrics_file = match &args.metrics_file {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(UsageError(
                "the metrics file is an empty string: give --metrics-file PATH".into(),
            ));
        }
        Some(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        None => None,
    };
    let mut alerts: Vec<crate::alert::Sink> =
        src.layers.alerts().into_iter().map(|(s, _)| s).collect();
    let mut specs: Vec<(String, String)> = args
        .alert
        .iter()
        .map(|a| {
            (
                a.clone(),
                format!("--alert '{}'", crate::alert::spec::redact_url(a)),
            )
        })
        .collect();
    if args.alert.is_empty() {
        if let Ok(v) = std::env::var("GUARD_ALERT") {
            specs.extend(v.split_whitespace().map(|a| {
                (
                    a.to_string(),
                    format!("GUARD_ALERT='{}'", crate::alert::spec::redact_url(a)),
                )
            }));
        }
    }
    for (spec, shown) in specs {
        alerts.push(
            crate::alert::Sink::from_cli(&spec)
                .map_err(|e| UsageError(format!("invalid {shown}: {e}")))?,
        );
    }
    let dur = |id: &str,
               flag: &str,
               env: &str,
               v: &Option<String>|
     -> Result<Option<Duration>, UsageError> {
        match v {
            None => Ok(None),
            Some(t) => {
                let d = units::parse_duration(t).map_err(|e| {
                    UsageError(format!(
                        "invalid {}: {e}; expected {DUR_FORMS}",
                        origin(src, id, flag, env, t)
                    ))
                })?;
                if d.is_zero() {
                    return Err(UsageError(format!(
                        "invalid {}: must be more than 0",
                        origin(src, id, flag, env, t)
                    )));
                }
                Ok(Some(d))
            }
        }
    };
    let timeout = dur("timeout", "--timeout", "GUARD_TIMEOUT", &args.timeout)?;
    let lock_wait = dur(
        "lock_wait",
        "--lock-wait",
        "GUARD_LOCK_WAIT",
        &args.lock_wait,
    )?;
    if lock_wait.is_some() && args.lock.is_none() {
        return Err(UsageError(
            "--lock-wait needs --lock FILE: it is how long to wait for that lock".into(),
        ));
    }
    let lock = match &args.lock {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(UsageError(
                "the lock file is an empty string: give --lock FILE".into(),
            ));
        }
        Some(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        None => None,
    };
    let ping = match &args.ping {
        None => None,
        Some(u) => {
            let sec = crate::alert::spec::Secret::parse(u);
            if let crate::alert::spec::Secret::Plain(p) = &sec {
                if !(p.starts_with("http://") || p.starts_with("https://")) {
                    return Err(UsageError(format!(
                        "invalid {}: expected an http:// or https:// URL (or env:NAME / file:/path)",
                        origin(
                            src,
                            "ping",
                            "--ping",
                            "GUARD_PING",
                            &crate::alert::spec::redact_url(p)
                        )
                    )));
                }
            }
            Some(sec)
        }
    };
    let capture_at = match &args.capture_at {
        None => 95,
        Some(t) => {
            let n = t.trim().trim_end_matches('%').trim();
            n.parse::<u8>().ok().filter(|p| (1..=100).contains(p)).ok_or_else(|| {
                UsageError(format!(
                    "invalid {}: expected a percentage of the container's memory limit, 1% to 100%",
                    origin(src, "capture_at", "--capture-at", "GUARD_CAPTURE_AT", t)
                ))
            })?
        }
    };
    Ok(WrapConfig {
        capture_at,
        subreaper: flag(src, args.subreaper, "subreaper", "GUARD_SUBREAPER")?,
        pgroup: flag(src, args.pgroup, "pgroup", "GUARD_PGROUP")?,
        ping,
        quiet: flag(src, args.quiet, "quiet", "GUARD_QUIET")?,
        timeout,
        lock,
        lock_wait,
        alerts,
        metrics_file,
        evidence,
        memory,
        memory_text: args.memory.clone(),
        swap,
        name,
        kill_after,
        require_cgroup: flag(
            src,
            args.require_cgroup,
            "require_cgroup",
            "GUARD_REQUIRE_CGROUP",
        )?,
        verbosity: verbosity(args, src)?,
        command: args.command.clone(),
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
    let e = &cfg.evidence;
    let size =
        |v: Option<u64>, none: &str| v.map(units::format_size).unwrap_or_else(|| none.into());
    let rows: Vec<(&str, String)> = vec![
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
        (
            "timeout",
            cfg.timeout
                .map(units::format_duration)
                .unwrap_or_else(|| "none".into()),
        ),
        (
            "lock",
            cfg.lock
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".into()),
        ),
        ("sample_interval", units::format_duration(e.sample_interval)),
        ("keep", e.keep.to_string()),
        ("max_evidence_size", units::format_size(e.max_size)),
        ("redact", e.redact.join(",")),
        ("no_environ", (!e.environ).to_string()),
        ("pyspy_locals", e.pyspy_locals.to_string()),
        ("require_cgroup", cfg.require_cgroup.to_string()),
        ("verbosity", format!("{:?}", cfg.verbosity).to_lowercase()),
        ("quiet", cfg.quiet.to_string()),
        (
            "metrics_file",
            cfg.metrics_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".into()),
        ),
    ];
    let mut o = String::new();
    for (k, v) in rows {
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

/// The evidence options, validated.
fn evidence_config(
    args: &WrapArgs,
    src: &Src,
    memory: Option<u64>,
) -> Result<EvidenceConfig, UsageError> {
    let size = |id: &str, flag: &str, env: &str, text: &str| -> Result<u64, UsageError> {
        match units::parse_size(text) {
            Ok(Size::Bytes(b)) => Ok(b),
            Ok(Size::Percent(_)) => Err(UsageError(format!(
                "invalid {}: a percentage is not accepted here; give a size like 2G",
                origin(src, id, flag, env, text)
            ))),
            Err(e) => Err(UsageError(format!(
                "invalid {}: {e}; expected {SIZE_FORMS}",
                origin(src, id, flag, env, text)
            ))),
        }
    };
    let warn = match (args.warn.as_deref().map(str::trim), memory) {
        (Some(t), _) if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") => None,
        (None, Some(mem)) => Some(Size::Percent(DEFAULT_WARN_PERCENT).resolve(mem)),
        (None, None) => None,
        (Some(t), mem) => {
            let o = || origin(src, "warn", "--warn", "GUARD_WARN", t);
            let bytes = match (units::parse_size(t), mem) {
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
            if let Some(mem) = mem {
                if bytes >= mem {
                    return Err(UsageError(format!(
                        "{} is not below --memory {}: the warning must come before the cap (or use --warn off)",
                        o(),
                        units::format_size(mem)
                    )));
                }
            }
            Some(bytes)
        }
    };
    let core_max = match &args.core_max {
        Some(t) => size("core_max", "--core-max", "GUARD_CORE_MAX", t)?,
        None => DEFAULT_CORE_MAX,
    };
    let max_size = match &args.max_evidence_size {
        Some(t) => size(
            "max_evidence_size",
            "--max-evidence-size",
            "GUARD_MAX_EVIDENCE_SIZE",
            t,
        )?,
        None => DEFAULT_MAX_EVIDENCE_SIZE,
    };
    let sample_interval = match &args.sample_interval {
        None => DEFAULT_SAMPLE_INTERVAL,
        Some(t) => {
            let o = || {
                origin(
                    src,
                    "sample_interval",
                    "--sample-interval",
                    "GUARD_SAMPLE_INTERVAL",
                    t,
                )
            };
            let d = units::parse_duration(t)
                .map_err(|e| UsageError(format!("invalid {}: {e}; expected {DUR_FORMS}", o())))?;
            if d < MIN_SAMPLE_INTERVAL {
                return Err(UsageError(format!(
                    "invalid {}: the shortest interval is {}",
                    o(),
                    units::format_duration(MIN_SAMPLE_INTERVAL)
                )));
            }
            d
        }
    };
    let keep = match &args.keep {
        None => DEFAULT_KEEP,
        Some(t) => t
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                UsageError(format!(
                    "invalid {}: expected a whole number of bundles, 1 or more",
                    origin(src, "keep", "--keep", "GUARD_KEEP", t)
                ))
            })?,
    };
    let redact = match &args.redact {
        None => DEFAULT_REDACT.iter().map(|w| w.to_string()).collect(),
        Some(t) => {
            let words: Vec<String> = t
                .split(',')
                .map(|w| w.trim().to_ascii_uppercase())
                .filter(|w| !w.is_empty())
                .collect();
            if words.is_empty() {
                return Err(UsageError(format!(
                    "invalid {}: expected comma-separated words like TOKEN,PASS",
                    origin(src, "redact", "--redact", "GUARD_REDACT", t)
                )));
            }
            words
        }
    };
    let no_evidence = flag(src, args.no_evidence, "no_evidence", "GUARD_NO_EVIDENCE")?;
    let dir = if no_evidence {
        Err(if args.no_evidence {
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
        })
    } else {
        match &args.evidence_dir {
            Some(d) if d.as_os_str().is_empty() => {
                return Err(UsageError(
                    "the evidence directory is an empty string: give --evidence-dir DIR".into(),
                ));
            }
            Some(d) => Ok(std::path::absolute(d).unwrap_or_else(|_| d.clone())),
            None => default_evidence_dir(),
        }
    };
    Ok(EvidenceConfig {
        dir,
        warn,
        core: flag(src, args.core, "core", "GUARD_CORE")?,
        core_max,
        sample_interval,
        keep,
        max_size,
        redact,
        environ: !flag(src, args.no_environ, "no_environ", "GUARD_NO_ENVIRON")?,
        pyspy_locals: flag(src, args.pyspy_locals, "pyspy_locals", "GUARD_PYSPY_LOCALS")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_safe() {
        assert_eq!(default_name(&"/usr/bin/python3".into()), "python3");
        assert_eq!(default_name(&"manage.py".into()), "manage.py");
        assert_eq!(default_name(&"./my job!".into()), "my_job_");
        assert_eq!(default_name(&"/".into()), "job");
        assert_eq!(default_name(&"..hidden".into()), "hidden");
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("fix_images").is_ok());
        assert!(validate_name("a.b-c_1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
    }
}
