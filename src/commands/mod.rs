//! Each subcommand's handler — the wrap (`guard [run] -- COMMAND`: its configuration, then
//! [`crate::supervise`]), `guard report`/`list`, `held`/`kill`, `doctor`, `drill` and
//! `config check` — and what they share. They sit on top of every other layer and nothing below
//! them depends on them; [`crate::main_with`] parses the command line and dispatches here.
//!
//! - [`run`]: the wrap: the configuration read and validated, the supervisor run.
//! - [`report`]: `guard report` (text, JSON, HTML) and `guard list`.
//! - [`config_check`]: `guard config check [FILE]`.
//! - [`doctor`]: `guard doctor`, what this machine offers and which mode a run would use.
//! - [`drill`]: `guard drill`, the failure path rehearsed with the job's real settings.
//! - [`held`]: `guard held` and `guard kill NAME|PID`.
//! - [`readiness`]: whether a job's settings would work here and now (secrets, hooks,
//!   directories), for `guard config check`, `guard doctor` and `guard drill`.

pub mod config_check;
pub mod doctor;
pub mod drill;
pub mod held;
pub mod readiness;
pub mod report;
pub mod run;
pub mod upload;

use std::io::Write;

/// Print guard's own error line.
pub fn error_line(msg: impl std::fmt::Display) {
    // One line, whatever the value it names holds (a raw escape code, a newline).
    let msg = msg.to_string();
    let _ = writeln!(
        std::io::stderr(),
        "guard: error: {}",
        crate::format::escape_controls(&msg, false)
    );
}

/// `given` (--evidence-dir), or the default for this user.
pub(crate) fn evidence_dir(
    given: &Option<std::path::PathBuf>,
) -> Result<std::path::PathBuf, crate::config::NoEvidence> {
    match given {
        Some(d) => Ok(d.clone()),
        None => crate::config::default_evidence_dir(),
    }
}

/// Print `v` as pretty JSON (exit 0), or say why it could not be (125).
pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> i32 {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            error_line(format!("cannot encode JSON: {e}"));
            crate::config::exit::GUARD_FAILED
        }
    }
}
