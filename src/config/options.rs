//! The wrap options, each defined once: its config key, flag, environment variable, kind of
//! value and help. The command line ([`crate::config::cli`]) is built from [`OPTIONS`], the config file's
//! keys are checked against it ([`crate::config::file`]), the settings are read through it
//! ([`crate::config`]), and guard(1)'s OPTIONS and ENVIRONMENT and guard.toml(5)'s KEYS are
//! rendered from it. A row spells its key, flag and variable out (clap wants them as static
//! strings, and building them on every run's start path would cost); a test holds them to the
//! rule: flag = `--` + key with `_` written `-`, variable = `GUARD_` + the key in capitals.
//! Also here: the rules for job names (`--name`, `[jobs.NAME]`).

/// What kind of value an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SIZE (`512M`, `2G`, `50%`): in a file a string or an integer number of bytes.
    Size,
    /// DUR (`500ms`, `30s`): in a file a string or an integer number of seconds.
    Duration,
    /// A path: in a file a string.
    Path,
    /// Other text (a URL, a name): in a file a string.
    Text,
    /// A percentage (`95%`): in a file a string or an integer.
    Percent,
    /// A whole number: in a file an integer.
    Count,
    /// Comma-separated words: in a file a list of strings or one string.
    Words,
    /// A switch. Its variable is read by guard (1/true/yes/on, 0/false/no/off); in a file a
    /// boolean.
    Flag,
    /// `-v`, counted. GUARD_VERBOSE=0|1|2; in a file the number.
    Level,
    /// Repeatable (`--alert`); the variable holds several separated by spaces.
    List,
}

impl Kind {
    /// Options whose environment variable clap reads itself.
    pub fn clap_env(self) -> bool {
        !matches!(self, Kind::Flag | Kind::Level | Kind::List)
    }
}

/// One wrap option.
#[derive(Debug)]
pub struct Opt {
    /// The config key, and clap's id.
    pub key: &'static str,
    /// The long flag, without its dashes.
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
    /// What the value looks like ("SIZE", "DUR", ...); empty for switches.
    pub value_name: &'static str,
    /// One text for --help, guard(1) and guard.toml(5).
    pub help: &'static str,
    /// Whether guard.toml has a key for it (not --config, which chooses the file, --name, which
    /// chooses the job, or --alert, whose key is the [[alerts]] array of tables).
    pub file_key: bool,
}

impl Opt {
    /// The help text as --help prints it: a switch's variable is named, since clap does not read
    /// it.
    pub fn cli_help(&self) -> String {
        match self.kind {
            Kind::Flag => format!("{} [env: {}=1]", self.help, self.env),
            Kind::Level => format!("{} [env: {}=0|1|2]", self.help, self.env),
            Kind::List => format!("{} [env: {}, space-separated]", self.help, self.env),
            _ => self.help.to_string(),
        }
    }

    /// The value's type as guard.toml(5) names it.
    pub fn file_type(&self) -> &'static str {
        match self.kind {
            Kind::Path => "PATH",
            Kind::Flag => "BOOL",
            Kind::Level => "0|1|2",
            _ => self.value_name,
        }
    }

    /// `--kill-after`
    pub fn long(&self) -> String {
        format!("--{}", self.flag)
    }
}

/// The option whose key is `key`. Every key guard reads is in the table (a debug build fails at
/// once on one that is not).
pub fn get(key: &str) -> &'static Opt {
    match OPTIONS.iter().find(|o| o.key == key) {
        Some(o) => o,
        None => {
            debug_assert!(false, "no option {key}");
            &OPTIONS[0]
        }
    }
}

/// The options a config file may set, in the table's order.
pub fn file_keys() -> impl Iterator<Item = &'static Opt> {
    OPTIONS.iter().filter(|o| o.file_key)
}

macro_rules! opt {
    ($key:literal, $flag:literal, $env:literal, $short:expr, $kind:ident, $vn:literal, $file:literal, $help:expr) => {
        Opt {
            key: $key,
            flag: $flag,
            env: $env,
            short: $short,
            kind: Kind::$kind,
            value_name: $vn,
            help: $help,
            file_key: $file,
        }
    };
}

use std::ffi::OsString;

/// Every wrap option, in --help's order.
#[rustfmt::skip]
pub const OPTIONS: &[Opt] = &[
    opt!("config", "config", "GUARD_CONFIG", None, Path, "FILE", false,
        "Read settings from this TOML file instead of /etc/guard/guard.toml and ~/.config/guard/guard.toml ([defaults] and [jobs.NAME] tables; see guard.toml(5))"),
    opt!("memory", "memory", "GUARD_MEMORY", Some('m'), Size, "SIZE", true,
        "Hard memory cap for COMMAND and all its descendants (SIZE: 512M, 2G, 1GiB, 500MB, 50%). Without it guard only monitors"),
    opt!("swap", "swap", "GUARD_SWAP", None, Size, "SIZE", true,
        "Swap allowed on top of --memory (cgroup v1 with swap accounting, or v2) [default: 0]"),
    opt!("name", "name", "GUARD_NAME", None, Text, "NAME", false,
        "Job name used in cgroup names and messages [default: basename of COMMAND]"),
    opt!("kill_after", "kill-after", "GUARD_KILL_AFTER", None, Duration, "DUR", true,
        "How long the job gets after --timeout's signal before the whole job is killed [default: 10s]. Given, it also bounds a shutdown: after a forwarded SIGTERM, SIGINT, SIGHUP or SIGQUIT the job is killed DUR later (not given, whoever sent the signal owns the escalation: docker stop, Kubernetes, systemd), and processes COMMAND left behind get DUR instead of 0.5s"),
    opt!("warn", "warn", "GUARD_WARN", None, Size, "SIZE|PCT", true,
        "Early-warning threshold: a light evidence bundle (timeline, tree, stacks) once per upward crossing; the job keeps running. SIZE or a percentage of --memory; 'off' disables it [default: 80%]"),
    opt!("evidence_dir", "evidence-dir", "GUARD_EVIDENCE_DIR", None, Path, "DIR", true,
        "Where evidence bundles go [default: /var/lib/guard/evidence as root, else $XDG_STATE_HOME/guard/evidence or ~/.local/state/guard/evidence]"),
    opt!("no_evidence", "no-evidence", "GUARD_NO_EVIDENCE", None, Flag, "", true,
        "Enforce only: write no evidence bundle"),
    opt!("core", "core", "GUARD_CORE", None, Flag, "", true,
        "Also write a core dump of the largest process into the bundle (needs gdb's gcore; cores contain secrets)"),
    opt!("core_max", "core-max", "GUARD_CORE_MAX", None, Size, "SIZE", true,
        "Largest process size (RSS) for which --core writes a core; larger ones are skipped [default: 4G]"),
    opt!("sample_interval", "sample-interval", "GUARD_SAMPLE_INTERVAL", None, Duration, "DUR", true,
        "How often the memory timeline is sampled [default: 100ms]"),
    opt!("keep", "keep", "GUARD_KEEP", None, Count, "N", true,
        "Keep at most N bundles in the evidence directory; the oldest go first [default: 50]"),
    opt!("max_evidence_size", "max-evidence-size", "GUARD_MAX_EVIDENCE_SIZE", None, Size, "SIZE", true,
        "Keep the evidence directory under SIZE; the oldest bundles go first (never the one just written) [default: 1GiB]"),
    opt!("redact", "redact", "GUARD_REDACT", None, Words, "WORDS", true,
        "Environment variables whose names contain one of these words (comma-separated, case-insensitive; *WORD: at the end, WORD*: at the start) have their values replaced by <redacted> in bundles, alerts, pings and log lines [default: PASS,SECRET,TOKEN,KEY,CREDENTIAL,AUTH,COOKIE,SESSION,PRIVATE,DSN,DATABASE_URL,CONN,*_PWD,*_PAT]"),
    opt!("no_environ", "no-environ", "GUARD_NO_ENVIRON", None, Flag, "", true,
        "Write no environ files into bundles"),
    opt!("pyspy", "pyspy", "GUARD_PYSPY", None, Path, "PATH", true,
        "The py-spy program for Python stacks in bundles [default: py-spy on PATH, else in /usr/local/bin, /usr/bin or ~/.local/bin when owned by root or you and writable by nobody else]"),
    opt!("pyspy_locals", "pyspy-locals", "GUARD_PYSPY_LOCALS", None, Flag, "", true,
        "Include local variables in Python stacks (py-spy --locals; they may contain secrets)"),
    opt!("no_native_stacks", "no-native-stacks", "GUARD_NO_NATIVE_STACKS", None, Flag, "", true,
        "Do not read the native (C, C++, Rust) stacks of a process whose memory is mostly native heap at the cap (eu-stack on the stopped process, up to 5 s, as the job's user); by default guard reads them when eu-stack is installed"),
    opt!("no_pyheap", "no-pyheap", "GUARD_NO_PYHEAP", None, Flag, "", true,
        "Do not load guard's Python hook into the job: no Python heap census, and PYTHONPATH and the environment reach the job as given (by default guard's directory goes first on PYTHONPATH and GUARD_PYHEAP is set)"),
    opt!("no_nodeheap", "no-nodeheap", "GUARD_NO_NODEHEAP", None, Flag, "", true,
        "Do not load guard's Node.js hook into the job: no Node.js heap census, and NODE_OPTIONS and the environment reach the job as given (by default guard's hook goes first in NODE_OPTIONS, --require'd, and GUARD_NODEHEAP is set)"),
    opt!("pyheap_window", "pyheap-window", "GUARD_PYHEAP_WINDOW", None, Duration, "DUR", true,
        "How long a Python heap census may take; at the cap the held job runs this long at most, within --pyheap-headroom, and is then killed [default: 2s]"),
    opt!("pyheap_headroom", "pyheap-headroom", "GUARD_PYHEAP_HEADROOM", None, Size, "SIZE", true,
        "Memory a job at its cap gets on top of --memory while its Python heap census runs; it never gets more [default: 5% of --memory, at least 32M]"),
    opt!("tracemalloc", "tracemalloc", "GUARD_TRACEMALLOC", None, Count, "FRAMES", true,
        "Run the job's Python processes under tracemalloc (PYTHONTRACEMALLOC=FRAMES; 1 frame names the line), so that the Python heap census also says which lines allocated the memory still held; it costs the job memory and time (every allocation is recorded), and a job's own PYTHONTRACEMALLOC is left as given [default: off]"),
    opt!("hold_for", "hold-for", "GUARD_HOLD_FOR", None, Duration, "DUR", true,
        "After the capture at the cap, keep the job frozen for DUR instead of killing it at once (its memory stays capped, its CPU stopped) so that a person can look at it: py-spy dump --nonblocking, /proc. 'guard kill NAME' or SIGTERM to guard ends the hold sooner; then the job is killed and guard exits 137 [default: kill at once]"),
    opt!("thrash_after", "thrash-after", "GUARD_THRASH_AFTER", None, Duration, "DUR|off", true,
        "A job stalled at its --memory cap — usage pinned at the cap while it keeps faulting back the pages the kernel just evicted (at least 5 major faults and 100 workingset refaults a second) — for DUR is treated as reaching the cap: held, captured and killed as 'thrashing at its memory limit' (exit 137). Needs a cgroup; 'off' disables it [default: 30s]"),
    opt!("timeout", "timeout", "GUARD_TIMEOUT", None, Duration, "DUR", true,
        "Time limit: past DUR the job gets SIGTERM (--signal; after its evidence is captured), and the whole job is killed --kill-after later; guard exits 124. DUR as timeout(1) takes it too (1e-3, 2.5m; 0 or inf: no limit)"),
    opt!("signal", "signal", "GUARD_SIGNAL", None, Text, "SIG", true,
        "The signal --timeout sends first, as timeout(1)'s --signal: a name (TERM, SIGINT, kill) or a number [default: TERM]"),
    opt!("preserve_status", "preserve-status", "GUARD_PRESERVE_STATUS", None, Flag, "", true,
        "After --timeout, exit with COMMAND's own status (128+N when a signal ended it), as timeout(1)'s --preserve-status, instead of 124"),
    opt!("lock", "lock", "GUARD_LOCK", None, Path, "FILE", true,
        "Run only if no other guard holds FILE (flock); a second run exits 75 with one line"),
    opt!("lock_wait", "lock-wait", "GUARD_LOCK_WAIT", None, Duration, "DUR", true,
        "With --lock: wait up to DUR for the lock instead of exiting 75 at once"),
    opt!("ping", "ping", "GUARD_PING", None, Text, "URL", true,
        "healthchecks-compatible pings: URL/start when the job starts, URL when it succeeds, URL/STATUS (healthchecks' exit-status endpoint: URL/2, URL/124 after --timeout, URL/137 after a memory kill; with guard's line and the end of the output) when it fails; one run id (rid=UUID) on both; bounded and retried, never failing the job. URL may be env:NAME or file:/path"),
    opt!("upload", "upload", "GUARD_UPLOAD", None, Text, "s3://BUCKET/PREFIX", true,
        "Ship every bundle of the run (kill, timeout, post-mortem, warning) to S3-compatible storage once the job is over — never before the kill — as one object PREFIX/HOST/JOB/BUNDLE.tar.zst with its manifest beside it (BUNDLE.manifest.json, with the archive's sha256); bounded by --upload-timeout. A failed upload leaves the bundle on disk marked pending (upload.json in it) with one line on stderr; the job's exit status is unchanged. Endpoint, region and credentials follow the AWS conventions (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, the shared credentials file) unless the upload_* keys say otherwise"),
    opt!("upload_endpoint", "upload-endpoint", "GUARD_UPLOAD_ENDPOINT", None, Text, "URL", true,
        "The S3 service's URL for --upload (SeaweedFS, MinIO, Ceph RGW, R2, Garage ...); https, or http to this machine only unless --upload-allow-http [default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS's endpoint for the region]"),
    opt!("upload_region", "upload-region", "GUARD_UPLOAD_REGION", None, Text, "REGION", true,
        "The region requests are signed for [default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1]"),
    opt!("upload_addressing", "upload-addressing", "GUARD_UPLOAD_ADDRESSING", None, Text, "path|virtual", true,
        "How the bucket is named in a request: path (ENDPOINT/BUCKET/KEY, what S3-compatible servers expect) or virtual (BUCKET.ENDPOINT/KEY, AWS's) [default: path with an endpoint of your own, virtual for AWS]"),
    opt!("upload_timeout", "upload-timeout", "GUARD_UPLOAD_TIMEOUT", None, Duration, "DUR", true,
        "How long the run's uploads may take together, after the job is over and its alerts are sent; what is not up by then stays pending on disk [default: 2m]"),
    opt!("upload_allow_http", "upload-allow-http", "GUARD_UPLOAD_ALLOW_HTTP", None, Flag, "", true,
        "Allow a plain-http --upload-endpoint on another machine (a trusted network); without it http goes only to loopback"),
    opt!("upload_access_key_id", "upload-access-key-id", "GUARD_UPLOAD_ACCESS_KEY_ID", None, Text, "env:NAME|file:PATH", true,
        "The access key id for --upload, instead of the AWS variables and the shared credentials file; with --upload-secret-access-key. On the command line only as env:NAME or file:/path (argv is visible to every user)"),
    opt!("upload_secret_access_key", "upload-secret-access-key", "GUARD_UPLOAD_SECRET_ACCESS_KEY", None, Text, "env:NAME|file:PATH", true,
        "The secret access key for --upload; env:NAME or file:/path (the value itself only in a configuration file); never printed, never in a bundle or an alert"),
    opt!("upload_session_token", "upload-session-token", "GUARD_UPLOAD_SESSION_TOKEN", None, Text, "env:NAME|file:PATH", true,
        "A session token (temporary credentials) to go with --upload-access-key-id; env:NAME or file:/path"),
    opt!("upload_presign", "upload-presign", "GUARD_UPLOAD_PRESIGN", None, Duration, "DUR", true,
        "Alerts also carry a presigned link to the archive, valid for DUR (at most 7 days), which opens it without credentials; anyone who sees the alert can then fetch the evidence [default: the object's URL only]"),
    opt!("subreaper", "subreaper", "GUARD_SUBREAPER", None, Flag, "", true,
        "Insist on reaping orphans: fail (exit 125) if guard cannot become a child subreaper (guard always tries; as PID 1 it reaps them anyway)"),
    opt!("pgroup", "pgroup", "GUARD_PGROUP", None, Flag, "", true,
        "Run the job in a process group of its own and forward signals to the whole group (for containers; with a terminal, keys then reach guard, which forwards them)"),
    opt!("capture_at", "capture-at", "GUARD_CAPTURE_AT", None, Percent, "PCT", true,
        "Observe mode (no writable cgroup, e.g. a container's read-only cgroupfs): capture a bundle when the container's own cgroup reaches PCT of its memory limit, before the runtime's OOM killer [default: 95%]"),
    opt!("alert", "alert", "GUARD_ALERT", None, List, "KIND:TARGET", false,
        "Send an alert for each event to KIND:TARGET — webhook:URL, slack:URL, alertmanager:URL (base URL), exec:/abs/program, log:stderr, log:syslog, log:journal, email:ADDRESS[,ADDRESS] (through the local MTA; a mail server with TLS and AUTH in guard.toml) or pagerduty:ROUTING_KEY; URLs and keys may be env:NAME or file:/path. Repeatable; added to the [[alerts]] of the config file"),
    opt!("runbook", "runbook", "GUARD_RUNBOOK", None, Text, "URL|TEXT", true,
        "The job's runbook — a URL (your disaster checklist) or one line of text — sent in every alert: Alertmanager's runbook_url annotation, a line of Slack's message, the webhook's runbook, GUARD_RUNBOOK for exec hooks and the journal, the summary everywhere"),
    opt!("metrics_file", "metrics-file", "GUARD_METRICS_FILE", None, Path, "PATH", true,
        "Write the job's outcome (last run, last success, exit code, duration, peak, limit, memory kills; label guard_job) to PATH in the node_exporter textfile format; several jobs can share one file. PATH must end in .prom"),
    opt!("require_cgroup", "require-cgroup", "GUARD_REQUIRE_CGROUP", None, Flag, "", true,
        "Fail (exit 125) instead of falling back to best-effort poll mode when no cgroup can be created"),
    opt!("slice", "slice", "GUARD_SLICE", None, Text, "NAME", true,
        "On a machine systemd runs: put the job's transient scope (guard-JOB-PID.scope) in slice NAME, e.g. batch.slice [default: the manager's own default for transient units, as systemd-run: system.slice as root, app.slice in a user manager]"),
    opt!("no_systemd", "no-systemd", "GUARD_NO_SYSTEMD", None, Flag, "", true,
        "Do not ask systemd for a transient scope when guard's own cgroup is not delegated: create the job's cgroup directly (as root: under /sys/fs/cgroup/guard, outside every unit) or fall back to poll mode"),
    opt!("verbose", "verbose", "GUARD_VERBOSE", Some('v'), Level, "", true,
        "More of guard's own messages on stderr (-v: mode and cgroup at start; -vv: debug)"),
    opt!("brief", "brief", "GUARD_BRIEF", Some('q'), Flag, "", true,
        "Less of guard's own messages: errors and the final line (memory kill, timeout) only"),
    opt!("quiet", "quiet", "GUARD_QUIET", None, Flag, "", true,
        "Cron mode: collect the job's stdout and stderr and print them only if it fails (non-zero exit, signal, memory kill, timeout), as chronic does; the last 64 KiB also go into the bundle (output.tail) and the alerts"),
];

/// The longest job name (it ends up in cgroup and file names).
const MAX_NAME: usize = 64;

/// Why a job name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than {MAX_NAME} characters")]
    TooLong,
    #[error("the name must not start with '.' or '-'")]
    BadStart,
    #[error("'{0}' is not allowed (use letters, digits, '_', '-' and '.')")]
    BadChar(char),
}

/// Check a job name given by the user: it ends up in cgroup and file names.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(NameError::BadStart);
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
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

    #[test]
    fn names_follow_the_rule_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for o in OPTIONS {
            assert_eq!(o.flag, o.key.replace('_', "-"), "{}", o.key);
            assert_eq!(
                o.env,
                format!("GUARD_{}", o.key.to_uppercase()),
                "{}",
                o.key
            );
            assert!(seen.insert(o.key), "{} twice", o.key);
            assert_eq!(
                o.value_name.is_empty(),
                matches!(o.kind, Kind::Flag | Kind::Level),
                "{}: switches have no value name, values do",
                o.key
            );
            assert!(
                !o.help.ends_with('.'),
                "{}: help ends without a period",
                o.key
            );
        }
        assert_eq!(get("kill_after").long(), "--kill-after");
        assert_eq!(get("verbose").file_type(), "0|1|2");
        assert!(get("brief").cli_help().ends_with("[env: GUARD_BRIEF=1]"));
    }
}
