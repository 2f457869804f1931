//! The command-line definition (clap derive). Only `config.rs` looks at these types; everything
//! below it sees a validated `Config`. Values are kept as strings here so that `config.rs` can say
//! whether a bad value came from a flag or from a `GUARD_*` environment variable.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;

pub const ABOUT: &str =
    "Run a command in a memory-capped cgroup; when it hits the cap, kill it and say so";

pub const LONG_ABOUT: &str = "\
guard runs COMMAND and all of its descendants in a cgroup of their own with a hard memory limit.
When the job reaches the limit, guard holds it there (frozen), writes an evidence bundle (every
process's memory maps, status and stacks, the cgroup's counters, the memory timeline, Python
stacks via py-spy), kills the whole job, prints one line naming the bundle, and exits 137.
'guard report --latest' explains the newest bundle on one screen. Everything else is transparent: stdin, stdout and stderr belong to COMMAND, signals are
forwarded to it, and guard exits with COMMAND's status.

guard picks an enforcement mode by itself: cgroup v1 or cgroup v2 when it can create a cgroup,
else 'poll' (best-effort: the process tree's memory is sampled from /proc). 'guard doctor' says
which mode would be used here and why.";

/// `guard [OPTIONS] -- COMMAND [ARGS...]`
#[derive(Debug, Parser)]
#[command(
    name = "guard",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    override_usage = "guard [OPTIONS] -- COMMAND [ARGS]...\n       guard run [OPTIONS] -- COMMAND [ARGS]...\n       guard report [BUNDLE_DIR | --latest] [--json | --html FILE] [--evidence-dir DIR]\n       guard list [--json] [--evidence-dir DIR]\n       guard doctor [--json]\n       guard config check [FILE]"
)]
pub struct Cli {
    #[command(subcommand)]
    pub sub: Option<LazySub>,

    #[command(flatten)]
    pub wrap: WrapArgs,
}

const RUN_ABOUT: &str = "Run COMMAND under guard (the same as 'guard [OPTIONS] -- COMMAND')";
const REPORT_ABOUT: &str =
    "Explain an evidence bundle on one screen (or as JSON, or as an HTML page with a memory plot)";
const LIST_ABOUT: &str = "List evidence bundles, newest first";
const DOCTOR_ABOUT: &str = "Show which enforcement mode guard would use here, and why";
const CONFIG_ABOUT: &str = "Check configuration files";

#[derive(Debug, Subcommand)]
pub enum Sub {
    #[command(about = RUN_ABOUT)]
    Run(Box<WrapArgs>),
    #[command(about = REPORT_ABOUT)]
    Report(ReportArgs),
    #[command(about = LIST_ABOUT)]
    List(ListArgs),
    #[command(about = DOCTOR_ABOUT)]
    Doctor(DoctorArgs),
    #[command(subcommand, about = CONFIG_ABOUT)]
    Config(ConfigCmd),
}

/// [`Sub`], with each subcommand's arguments built only when clap enters it (`Command::defer`):
/// wrap mode, the path every supervised job takes, then builds one set of the wrap options
/// instead of two plus the other subcommands' (about 60 us of a short job's start-up).
#[derive(Debug)]
pub struct LazySub(pub Sub);

/// The subcommand `name` exactly as the derive builds it, keeping the names clap gave the
/// `shell` it replaces (for usage lines: "guard run", "guard config check").
fn eager(shell: clap::Command, name: &'static str) -> clap::Command {
    let all = <Sub as Subcommand>::augment_subcommands(clap::Command::new("guard"));
    let mut full = all
        .find_subcommand(name)
        .cloned()
        .unwrap_or_else(|| clap::Command::new(name));
    if let Some(b) = shell.get_bin_name() {
        full = full.bin_name(b.to_string());
    }
    if let Some(d) = shell.get_display_name() {
        full = full.display_name(d.to_string());
    }
    full
}

fn eager_run(shell: clap::Command) -> clap::Command {
    eager(shell, "run")
}
fn eager_report(shell: clap::Command) -> clap::Command {
    eager(shell, "report")
}
fn eager_list(shell: clap::Command) -> clap::Command {
    eager(shell, "list")
}
fn eager_doctor(shell: clap::Command) -> clap::Command {
    eager(shell, "doctor")
}
fn eager_config(shell: clap::Command) -> clap::Command {
    eager(shell, "config")
}

/// Builds a deferred subcommand (`Command::defer`).
type Build = fn(clap::Command) -> clap::Command;

impl Subcommand for LazySub {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        let shells: [(&str, &str, Build); 5] = [
            ("run", RUN_ABOUT, eager_run),
            ("report", REPORT_ABOUT, eager_report),
            ("list", LIST_ABOUT, eager_list),
            ("doctor", DOCTOR_ABOUT, eager_doctor),
            ("config", CONFIG_ABOUT, eager_config),
        ];
        shells.into_iter().fold(cmd, |cmd, (name, about, full)| {
            cmd.subcommand(clap::Command::new(name).about(about).defer(full))
        })
    }
    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_subcommands(cmd)
    }
    fn has_subcommand(name: &str) -> bool {
        <Sub as Subcommand>::has_subcommand(name)
    }
}

impl clap::FromArgMatches for LazySub {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Sub::from_arg_matches(m).map(LazySub)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration (FILE, or the files guard would read) and print the effective
    /// settings of [defaults] and of every [jobs.NAME], with where each value comes from
    Check(ConfigCheckArgs),
}

#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// The file to check [default: the files guard would read]
    #[arg(value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
}

/// Options of wrap mode. Every option is also read from the `GUARD_<NAME>` environment variable; the
/// command line wins.
#[derive(Debug, Args, Default, Clone)]
pub struct WrapArgs {
    /// Read settings from this TOML file instead of /etc/guard/guard.toml and
    /// ~/.config/guard/guard.toml ([defaults] and [jobs.NAME] tables; see guard.toml(5))
    #[arg(long, env = "GUARD_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Hard memory cap for COMMAND and all its descendants (SIZE: 512M, 2G, 1GiB, 500MB, 50%).
    /// Without it guard only monitors.
    #[arg(short = 'm', long, env = "GUARD_MEMORY", value_name = "SIZE")]
    pub memory: Option<String>,

    /// Swap allowed on top of --memory (cgroup v1 with swap accounting, or v2) [default: 0]
    #[arg(long, env = "GUARD_SWAP", value_name = "SIZE")]
    pub swap: Option<String>,

    /// Job name used in cgroup names and messages [default: basename of COMMAND]
    #[arg(long, env = "GUARD_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Grace period after a forwarded SIGTERM, SIGINT, SIGHUP or SIGQUIT (and after COMMAND exits,
    /// for processes it left behind) before the whole job is killed [default: 10s]
    #[arg(long, env = "GUARD_KILL_AFTER", value_name = "DUR")]
    pub kill_after: Option<String>,

    /// Early-warning threshold: a light evidence bundle (timeline, tree, stacks) once per upward
    /// crossing; the job keeps running. SIZE or a percentage of --memory; 'off' disables it
    /// [default: 80%]
    #[arg(long, env = "GUARD_WARN", value_name = "SIZE|PCT")]
    pub warn: Option<String>,

    /// Where evidence bundles go [default: /var/lib/guard/evidence as root, else
    /// $XDG_STATE_HOME/guard/evidence or ~/.local/state/guard/evidence]
    #[arg(long, env = "GUARD_EVIDENCE_DIR", value_name = "DIR")]
    pub evidence_dir: Option<std::path::PathBuf>,

    /// Enforce only: write no evidence bundle [env: GUARD_NO_EVIDENCE=1]
    #[arg(long)]
    pub no_evidence: bool,

    /// Also write a core dump of the largest process into the bundle (needs gdb's gcore; cores
    /// contain secrets) [env: GUARD_CORE=1]
    #[arg(long)]
    pub core: bool,

    /// Largest process size (RSS) for which --core writes a core; larger ones are skipped
    /// [default: 4G]
    #[arg(long, env = "GUARD_CORE_MAX", value_name = "SIZE")]
    pub core_max: Option<String>,

    /// How often the memory timeline is sampled [default: 100ms]
    #[arg(long, env = "GUARD_SAMPLE_INTERVAL", value_name = "DUR")]
    pub sample_interval: Option<String>,

    /// Keep at most N bundles in the evidence directory; the oldest go first [default: 50]
    #[arg(long, env = "GUARD_KEEP", value_name = "N")]
    pub keep: Option<String>,

    /// Keep the evidence directory under SIZE; the oldest bundles go first (never the one just
    /// written) [default: 1GiB]
    #[arg(long, env = "GUARD_MAX_EVIDENCE_SIZE", value_name = "SIZE")]
    pub max_evidence_size: Option<String>,

    /// Environment variables whose names contain one of these words (comma-separated,
    /// case-insensitive) have their values replaced by <redacted> everywhere in a bundle
    /// [default: PASS,SECRET,TOKEN,KEY,CREDENTIAL,AUTH,COOKIE,SESSION,PRIVATE,DSN,DATABASE_URL,CONN]
    #[arg(long, env = "GUARD_REDACT", value_name = "WORDS")]
    pub redact: Option<String>,

    /// Write no environ files into bundles [env: GUARD_NO_ENVIRON=1]
    #[arg(long)]
    pub no_environ: bool,

    /// Include local variables in Python stacks (py-spy --locals; they may contain secrets)
    /// [env: GUARD_PYSPY_LOCALS=1]
    #[arg(long)]
    pub pyspy_locals: bool,

    /// Time limit: past DUR the job gets SIGTERM (after its evidence is captured), and the whole
    /// job is killed --kill-after later; guard exits 124
    #[arg(long, env = "GUARD_TIMEOUT", value_name = "DUR")]
    pub timeout: Option<String>,

    /// Run only if no other guard holds FILE (flock); a second run exits 75 with one line
    #[arg(long, env = "GUARD_LOCK", value_name = "FILE")]
    pub lock: Option<std::path::PathBuf>,

    /// With --lock: wait up to DUR for the lock instead of exiting 75 at once
    #[arg(long, env = "GUARD_LOCK_WAIT", value_name = "DUR")]
    pub lock_wait: Option<String>,

    /// healthchecks-compatible pings: URL/start when the job starts, URL when it succeeds,
    /// URL/fail (with the end of its output) when it fails; bounded and retried, never failing
    /// the job. URL may be env:NAME or file:/path
    #[arg(long, env = "GUARD_PING", value_name = "URL")]
    pub ping: Option<String>,

    /// Insist on reaping orphans: fail (exit 125) if guard cannot become a child subreaper (guard
    /// always tries; as PID 1 it reaps them anyway) [env: GUARD_SUBREAPER=1]
    #[arg(long)]
    pub subreaper: bool,

    /// Run the job in a process group of its own and forward signals to the whole group (for
    /// containers; with a terminal, keys then reach guard, which forwards them)
    /// [env: GUARD_PGROUP=1]
    #[arg(long)]
    pub pgroup: bool,

    /// Observe mode (no writable cgroup, e.g. a container's read-only cgroupfs): capture a bundle
    /// when the container's own cgroup reaches PCT of its memory limit, before the runtime's OOM
    /// killer [default: 95%]
    #[arg(long, env = "GUARD_CAPTURE_AT", value_name = "PCT")]
    pub capture_at: Option<String>,

    /// Send an alert for each event to KIND:TARGET — webhook:URL, slack:URL, alertmanager:URL
    /// (base URL), exec:/abs/program, log:stderr or log:syslog; URLs may be env:NAME or
    /// file:/path. Repeatable; added to the [[alerts]] of the config file
    /// [env: GUARD_ALERT, space-separated]
    #[arg(long = "alert", value_name = "KIND:TARGET", action = clap::ArgAction::Append)]
    pub alert: Vec<String>,

    /// Write the job's outcome (last run, exit code, duration, peak, limit, memory kills) to PATH
    /// in the node_exporter textfile format; several jobs can share one file
    #[arg(long, env = "GUARD_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,

    /// Fail (exit 125) instead of falling back to best-effort poll mode when no cgroup can be
    /// created [env: GUARD_REQUIRE_CGROUP=1]
    #[arg(long)]
    pub require_cgroup: bool,

    /// More of guard's own messages on stderr (-v: mode and cgroup at start; -vv: debug)
    /// [env: GUARD_VERBOSE=0|1|2]
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less of guard's own messages: errors and the final line (memory kill, timeout) only
    /// [env: GUARD_BRIEF=1]
    #[arg(short = 'q', long)]
    pub brief: bool,

    /// Cron mode: collect the job's stdout and stderr and print them only if it fails (non-zero
    /// exit, signal, memory kill, timeout), as chronic does; the last 64 KiB also go into the
    /// bundle (output.tail) and the alerts [env: GUARD_QUIET=1]
    #[arg(long)]
    pub quiet: bool,

    /// The command to run, with its arguments (put it after '--')
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The bundle directory to explain
    #[arg(
        value_name = "BUNDLE_DIR",
        conflicts_with = "latest",
        required_unless_present = "latest"
    )]
    pub bundle: Option<std::path::PathBuf>,

    /// Explain the newest bundle in the evidence directory
    #[arg(long)]
    pub latest: bool,

    /// Print the report as JSON
    #[arg(long, conflicts_with = "html")]
    pub json: bool,

    /// Write a self-contained HTML page (with an SVG plot of memory over time) to FILE
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,

    /// The evidence directory (for --latest)
    #[arg(long, env = "GUARD_EVIDENCE_DIR", value_name = "DIR")]
    pub evidence_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the list as JSON
    #[arg(long)]
    pub json: bool,

    /// The evidence directory to list
    #[arg(long, env = "GUARD_EVIDENCE_DIR", value_name = "DIR")]
    pub evidence_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON
    #[arg(long)]
    pub json: bool,
}

/// The clap command, for the man page and for tests.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// [`command`] with every deferred subcommand built: for the man page and for tests that walk
/// the options.
pub fn command_built() -> clap::Command {
    let mut cmd = command();
    cmd.build();
    cmd
}
