//! The command-line definition (clap derive). Only `config.rs` looks at these types; everything
//! below it sees a validated `Config`. Values are kept as strings here so that `config.rs` can say
//! whether a bad value came from a flag or from a `GUARD_*` environment variable.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;

pub const ABOUT: &str =
    "Run a command in a memory-capped cgroup; when it hits the cap, kill it and say so";

pub const LONG_ABOUT: &str = "\
guard runs COMMAND and all of its descendants in a cgroup of their own with a hard memory limit.
When the job reaches the limit, guard kills the whole job, prints one line saying so, and exits
137. Everything else is transparent: stdin, stdout and stderr belong to COMMAND, signals are
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
    override_usage = "guard [OPTIONS] -- COMMAND [ARGS]...\n       guard run [OPTIONS] -- COMMAND [ARGS]...\n       guard doctor [--json]"
)]
pub struct Cli {
    #[command(subcommand)]
    pub sub: Option<Sub>,

    #[command(flatten)]
    pub wrap: WrapArgs,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Run COMMAND under guard (the same as 'guard [OPTIONS] -- COMMAND')
    Run(WrapArgs),
    /// Show which enforcement mode guard would use here, and why
    Doctor(DoctorArgs),
}

/// Options of wrap mode. Every option is also read from the `GUARD_<NAME>` environment variable; the
/// command line wins.
#[derive(Debug, Args, Default)]
pub struct WrapArgs {
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

    /// Fail (exit 125) instead of falling back to best-effort poll mode when no cgroup can be
    /// created [env: GUARD_REQUIRE_CGROUP=1]
    #[arg(long)]
    pub require_cgroup: bool,

    /// More of guard's own messages on stderr (-v: mode and cgroup at start; -vv: debug)
    /// [env: GUARD_VERBOSE=0|1|2]
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less of guard's own messages: errors and the memory-kill line only [env: GUARD_QUIET=1]
    #[arg(short, long)]
    pub quiet: bool,

    /// The command to run, with its arguments (put it after '--')
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true, num_args = 1..)]
    pub command: Vec<OsString>,
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
