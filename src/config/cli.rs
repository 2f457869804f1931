//! The command-line definition: clap derive for the subcommands, and wrap mode's options built
//! from the one option table ([`crate::config::options`]). Only [`crate::config`] looks at these types;
//! everything below it sees a validated `WrapConfig`. Values are kept as text here so that
//! [`crate::config`] can say whether a bad value came from a flag, a `GUARD_*` variable or a file.

use crate::config::options::{Kind, OPTIONS, Opt};
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches, Parser, Subcommand};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;

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
    after_help = AFTER_HELP,
    subcommand_negates_reqs = true,
    override_usage = "guard [OPTIONS] -- COMMAND [ARGS]...\n       guard run [OPTIONS] -- COMMAND [ARGS]...\n       guard report [BUNDLE_DIR | s3://BUCKET/KEY | --latest] [--json | --html FILE] [--evidence-dir DIR]\n       guard list [s3://BUCKET/PREFIX] [--json] [--evidence-dir DIR]\n       guard upload [BUNDLE_DIR... | --pending] [--evidence-dir DIR] [--config FILE] [--json]\n       guard held [--json]\n       guard kill NAME|PID\n       guard drill [--name JOB] [--config FILE] [--memory SIZE] [--json]\n       guard doctor [--json]\n       guard config check [FILE]"
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
const LIST_ABOUT: &str = "List evidence bundles, newest first (and the jobs held now)";
const HELD_ABOUT: &str = "List the jobs held frozen now (--hold-for), with when each hold ends";
const KILL_ABOUT: &str = "End a --hold-for hold now: the held job is killed, its guard exits 137";
const DRILL_ABOUT: &str = "Rehearse the failure path with a job's settings: cap, capture, bundle, every alert sink, ping, metrics — a checklist; exit 0 only when all pass";
const DOCTOR_ABOUT: &str = "Show which enforcement mode guard would use here, and why";
const CONFIG_ABOUT: &str = "Check configuration files";
const UPLOAD_ABOUT: &str = "Ship bundles to S3-compatible storage now (--upload's settings of each bundle's job): the ones named, or every one still pending";

#[derive(Debug, Subcommand)]
pub enum Sub {
    #[command(
        about = RUN_ABOUT,
        override_usage = "guard run [OPTIONS] -- COMMAND [ARGS]...",
        after_help = AFTER_HELP
    )]
    Run(Box<WrapArgs>),
    #[command(about = REPORT_ABOUT)]
    Report(ReportArgs),
    #[command(about = LIST_ABOUT)]
    List(ListArgs),
    #[command(about = HELD_ABOUT)]
    Held(HeldArgs),
    #[command(about = KILL_ABOUT)]
    Kill(KillArgs),
    #[command(about = DRILL_ABOUT)]
    Drill(DrillArgs),
    #[command(about = DOCTOR_ABOUT)]
    Doctor(DoctorArgs),
    #[command(subcommand, about = CONFIG_ABOUT)]
    Config(ConfigCmd),
    #[command(about = UPLOAD_ABOUT)]
    Upload(UploadArgs),
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
fn eager_held(shell: clap::Command) -> clap::Command {
    eager(shell, "held")
}
fn eager_kill(shell: clap::Command) -> clap::Command {
    eager(shell, "kill")
}
fn eager_drill(shell: clap::Command) -> clap::Command {
    eager(shell, "drill")
}
fn eager_doctor(shell: clap::Command) -> clap::Command {
    eager(shell, "doctor")
}
fn eager_config(shell: clap::Command) -> clap::Command {
    eager(shell, "config")
}
fn eager_upload(shell: clap::Command) -> clap::Command {
    eager(shell, "upload")
}

/// Builds a deferred subcommand (`Command::defer`).
type Build = fn(clap::Command) -> clap::Command;

impl Subcommand for LazySub {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        let shells: [(&str, &str, Build); 9] = [
            ("run", RUN_ABOUT, eager_run),
            ("report", REPORT_ABOUT, eager_report),
            ("list", LIST_ABOUT, eager_list),
            ("held", HELD_ABOUT, eager_held),
            ("kill", KILL_ABOUT, eager_kill),
            ("drill", DRILL_ABOUT, eager_drill),
            ("doctor", DOCTOR_ABOUT, eager_doctor),
            ("config", CONFIG_ABOUT, eager_config),
            ("upload", UPLOAD_ABOUT, eager_upload),
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

/// Options of wrap mode, as given on the command line or in their `GUARD_*` variables (clap
/// reads the variables of value options; guard reads those of switches): built from
/// [`crate::config::options::OPTIONS`], kept by key, as text until [`crate::config`] validates them.
#[derive(Debug, Default, Clone)]
pub struct WrapArgs {
    values: BTreeMap<&'static str, OsString>,
    flags: BTreeSet<&'static str>,
    /// -v, counted.
    pub verbose: u8,
    /// --alert, each KIND:TARGET.
    pub alert: Vec<String>,
    /// COMMAND and its arguments.
    pub command: Vec<OsString>,
    /// `--drill` (hidden): this run is `guard drill`'s rehearsal, not a job's.
    pub drill: bool,
}

impl WrapArgs {
    /// The settings of a job by name, before files and variables (for `guard config check`).
    pub fn for_job(name: Option<String>) -> WrapArgs {
        let mut a = WrapArgs {
            command: vec!["true".into()],
            ..WrapArgs::default()
        };
        if let Some(n) = name {
            a.values.insert("name", n.into());
        }
        a
    }

    /// A value option as text (None: not given). Values of text kinds are UTF-8 (clap checked).
    pub fn text(&self, key: &str) -> Option<&str> {
        debug_assert!(
            crate::config::options::get(key).kind != Kind::Path,
            "{key} is a path"
        );
        self.values.get(key).and_then(|v| v.to_str())
    }

    /// A path option (None: not given).
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.values.get(key).map(PathBuf::from)
    }

    /// Whether the switch `key` was given on the command line.
    pub fn flag(&self, key: &str) -> bool {
        self.flags.contains(crate::config::options::get(key).key)
    }

    /// Set `key` (a value option) unless it is set already; true when it was set now.
    pub fn fill(&mut self, key: &'static str, value: OsString) -> bool {
        if self.values.contains_key(key) {
            return false;
        }
        self.values.insert(key, value);
        true
    }
}

/// One wrap option as clap sees it.
fn wrap_arg(o: &'static Opt) -> Arg {
    // Only switches' help is built (naming their variable): the rest is static text, not
    // allocated on every run's start path.
    let mut a = Arg::new(o.key).long(o.flag);
    a = if o.kind.clap_env() {
        a.help(o.help)
    } else {
        a.help(o.cli_help())
    };
    if let Some(s) = o.short {
        a = a.short(s);
    }
    if o.kind.clap_env() {
        a = a.env(o.env);
    }
    match o.kind {
        Kind::Flag => a.action(ArgAction::SetTrue),
        Kind::Level => a.action(ArgAction::Count),
        Kind::List => a.action(ArgAction::Append).value_name(o.value_name),
        Kind::Path => a
            .value_name(o.value_name)
            .value_parser(clap::value_parser!(PathBuf)),
        _ => a.value_name(o.value_name),
    }
}

impl Args for WrapArgs {
    fn augment_args(cmd: Command) -> Command {
        let cmd = OPTIONS.iter().fold(cmd, |cmd, o| cmd.arg(wrap_arg(o)));
        // Set by `guard drill` for the run it starts; not for people (not in --help).
        let cmd = cmd.arg(
            Arg::new("drill")
                .long("drill")
                .hide(true)
                .action(ArgAction::SetTrue),
        );
        cmd.arg(
            Arg::new("command")
                .value_name("COMMAND")
                .help("The command to run, with its arguments (put it after '--')")
                .required(true)
                .trailing_var_arg(true)
                .num_args(1..)
                .value_parser(clap::value_parser!(OsString)),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for WrapArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut a = WrapArgs::default();
        a.update_from_arg_matches(m)?;
        Ok(a)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for o in OPTIONS {
            match o.kind {
                Kind::Flag => {
                    if m.get_flag(o.key) {
                        self.flags.insert(o.key);
                    }
                }
                Kind::Level => self.verbose = m.get_count(o.key),
                Kind::List => {
                    self.alert = m
                        .get_many::<String>(o.key)
                        .map(|v| v.cloned().collect())
                        .unwrap_or_default();
                }
                Kind::Path => {
                    if let Some(v) = m.get_one::<PathBuf>(o.key) {
                        self.values.insert(o.key, v.clone().into_os_string());
                    }
                }
                _ => {
                    if let Some(v) = m.get_one::<String>(o.key) {
                        self.values.insert(o.key, v.into());
                    }
                }
            }
        }
        self.command = m
            .get_many::<OsString>("command")
            .map(|v| v.cloned().collect())
            .unwrap_or_default();
        self.drill = m.try_get_one::<bool>("drill").ok().flatten() == Some(&true);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The bundle directory to explain, or s3://BUCKET/KEY of one shipped with --upload (its
    /// archive, or the manifest beside it)
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
    /// Bundles shipped with --upload, from anywhere: s3://BUCKET/PREFIX (the credentials and
    /// endpoint of the AWS variables, GUARD_UPLOAD_* or guard.toml's [defaults])
    #[arg(value_name = "s3://BUCKET/PREFIX")]
    pub from: Option<String>,

    /// Print the list as JSON
    #[arg(long)]
    pub json: bool,

    /// The evidence directory to list
    #[arg(long, env = "GUARD_EVIDENCE_DIR", value_name = "DIR")]
    pub evidence_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Bundles to ship, each with the upload settings of its job ([jobs.NAME] of the
    /// configuration, else [defaults], and the GUARD_UPLOAD* variables)
    #[arg(value_name = "BUNDLE_DIR", conflicts_with = "pending")]
    pub bundles: Vec<std::path::PathBuf>,

    /// Every bundle of the evidence directory whose upload is pending, oldest first
    #[arg(long)]
    pub pending: bool,

    /// The evidence directory for --pending
    #[arg(long, env = "GUARD_EVIDENCE_DIR", value_name = "DIR")]
    pub evidence_dir: Option<std::path::PathBuf>,

    /// The configuration file [default: the files guard reads]
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HeldArgs {
    /// Print the held jobs as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The held job: its --name, its pid, or the pid of the guard holding it
    #[arg(value_name = "NAME|PID")]
    pub target: String,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Run it after each change to the configuration, and on a schedule: a timer \
(packaging/systemd/guard-drill@.timer) or a crontab line like\n  \
17 9 * * 1  /usr/bin/guard drill --name fix_images > /var/tmp/guard-drill.txt || cat /var/tmp/guard-drill.txt"
)]
pub struct DrillArgs {
    /// The job whose settings are rehearsed ([jobs.NAME] of the configuration) [default: the
    /// [defaults], as job 'drill']
    #[arg(long, value_name = "JOB")]
    pub name: Option<String>,

    /// The configuration file [default: the files guard reads]
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// A smaller cap for the rehearsal than the job's (its allocator goes up to the cap)
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// Print the checks as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON
    #[arg(long)]
    pub json: bool,
}

/// The subcommand a mistyped first word was probably meant to be (`lst` → `list`, `rport` →
/// `report`), for the "command not found" line; None when nothing is close, or it has a '/'.
pub fn similar_subcommand(word: &str) -> Option<&'static str> {
    const SUBCOMMANDS: [&str; 9] = [
        "run", "report", "list", "held", "kill", "doctor", "drill", "config", "upload",
    ];
    if word.contains('/') || word.len() < 2 {
        return None;
    }
    SUBCOMMANDS
        .into_iter()
        .map(|s| (strsim::damerau_levenshtein(word, s), s))
        .filter(|&(d, s)| d <= 1 || (d == 2 && s.len() > 4))
        .min_by_key(|&(d, _)| d)
        .map(|(_, s)| s)
}

/// The end of `guard --help`: the exit statuses (the table of config/exit.rs, checked by a test) and
/// where the rest is.
pub const AFTER_HELP: &str = "\
Exit status:
  (the child's)  the child exited normally: guard exits with its code
  128 + N        the child was killed by signal N
  137            guard killed the job for exceeding --memory (also a kernel OOM kill)
  124            the job exceeded --timeout
  75             --lock: another run holds the lock (COMMAND not started)
  125            guard itself failed: a bad option or config, no cgroup with --require-cgroup
  126            COMMAND found but not executable
  127            COMMAND not found

See guard(1) (man guard) for everything, guard.toml(5) for the configuration file.";

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_help_ends_with_every_exit_status_of_the_table() {
        let help = super::AFTER_HELP;
        for row in crate::config::exit::TABLE {
            let status = if row.status == "the child's code" {
                "(the child's)"
            } else {
                row.status
            };
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(status)),
                "{status} missing from --help"
            );
        }
        // clap wraps --help at 100 columns: no row may wrap.
        assert!(help.lines().all(|l| l.chars().count() <= 100), "{help}");
        assert!(help.ends_with("guard.toml(5) for the configuration file."));
    }

    #[test]
    fn a_mistyped_subcommand_is_recognised() {
        use super::similar_subcommand as s;
        assert_eq!(s("lst"), Some("list"));
        assert_eq!(s("rport"), Some("report"));
        assert_eq!(s("doctr"), Some("doctor"));
        assert_eq!(s("hled"), Some("held"));
        assert_eq!(s("python3"), None);
        assert_eq!(s("./lst"), None);
        assert_eq!(s("x"), None);
    }
}
