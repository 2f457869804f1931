//! The subcommands other than the wrap itself (`guard [run] -- COMMAND`, which is
//! [`crate::supervise`]): each one's handler, and what they share. They sit on top of every
//! other layer and nothing below them depends on them.
//!
//! - [`doctor`]: `guard doctor`, what this machine offers and which mode a run would use.
//! - [`drill`]: `guard drill`, the failure path rehearsed with the job's real settings.
//! - [`held`]: `guard held` and `guard kill NAME|PID`.
//! - [`readiness`]: whether a job's settings would work here and now (secrets, hooks,
//!   directories), for `guard config check`, `guard doctor` and `guard drill`.

pub mod doctor;
pub mod drill;
pub mod held;
pub mod readiness;
