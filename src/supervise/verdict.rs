//! How the run ended, in one place: the [`Verdict`] (killed at the cap, out of time, killed by
//! the kernel's OOM killer, or the job's own end), guard's one line about it, and the exit status
//! from the table in `config/exit.rs`. What the "tell" phase then needs is
//! [`super::notify::Ending`].

use crate::config::WrapConfig;
use crate::config::exit;
use crate::config::units::{format_duration, format_size};
use crate::evidence::EvidenceError;
use crate::format::{EventKind, ExitInfo};
use std::path::PathBuf;

/// How COMMAND itself ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

impl Ended {
    pub fn exit_info(self) -> ExitInfo {
        match self {
            Ended::Code(c) => ExitInfo {
                code: Some(c),
                signal: None,
            },
            Ended::Signal(s) => ExitInfo {
                code: None,
                signal: Some(s),
            },
        }
    }
}

/// Why the run is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// guard killed the job at its cap (or the kernel's OOM killer did, at guard's cap).
    MemoryLimit,
    /// guard killed the job stalled at its cap (--thrash-after): a memory kill too.
    Thrashing(crate::format::Thrashing),
    /// `--timeout` (a memory kill during the grace period wins).
    Timeout,
    /// The kernel's OOM killer killed the job: no cap of guard's, an ancestor's limit, or the
    /// host short of memory.
    KernelOom,
    /// The job ended by itself (None: guard lost track of it).
    Exited(Option<Ended>),
}

impl Verdict {
    /// Whether the job failed: --quiet then replays its output.
    pub fn failed(self) -> bool {
        !matches!(self, Verdict::Exited(Some(Ended::Code(0))))
    }

    /// guard's exit status.
    pub fn status(self) -> i32 {
        match self {
            Verdict::MemoryLimit | Verdict::Thrashing(_) => exit::MEMORY_KILL,
            Verdict::Timeout => exit::TIMEOUT,
            Verdict::KernelOom => exit::from_child(None, Some(libc::SIGKILL)),
            Verdict::Exited(Some(Ended::Code(c))) => exit::from_child(Some(c), None),
            Verdict::Exited(Some(Ended::Signal(s))) => exit::from_child(None, Some(s)),
            Verdict::Exited(None) => exit::GUARD_FAILED,
        }
    }

    /// The event the run ended with (None: it succeeded).
    pub fn kind(self) -> Option<EventKind> {
        match self {
            Verdict::MemoryLimit | Verdict::Thrashing(_) => Some(EventKind::MemoryLimit),
            Verdict::Timeout => Some(EventKind::Timeout),
            Verdict::KernelOom => Some(EventKind::KernelOom),
            v if v.status() != 0 => Some(EventKind::Failed),
            Verdict::Exited(_) => None,
        }
    }

    /// guard's one line on stderr about how the run ended (None: the job's own end says it).
    /// `killed`: how guard killed the job at its cap ("killed", or "held 2.0 s (…), then
    /// killed" after --hold-for).
    pub fn line(
        self,
        cfg: &WrapConfig,
        pid: i32,
        peak: Option<u64>,
        killed: &str,
        evidence: &str,
    ) -> Option<String> {
        match self {
            Verdict::MemoryLimit => {
                let limit = cfg.memory.map(format_size).unwrap_or_else(|| "none".into());
                let peak = peak.map(format_size).unwrap_or_else(|| "unknown".into());
                Some(format!(
                    "guard: {} (pid {pid}) exceeded its memory limit {limit} (peak {peak}); {killed}; {evidence}",
                    cfg.name
                ))
            }
            Verdict::Thrashing(t) => {
                let limit = cfg.memory.map(format_size).unwrap_or_else(|| "none".into());
                let peak = peak.map(format_size).unwrap_or_else(|| "unknown".into());
                // It reached its cap as surely as an allocator held there (scripts that look
                // for the kill line find it), and how: the rest of the line.
                Some(format!(
                    "guard: {} (pid {pid}) exceeded its memory limit {limit} (peak {peak}), \
                     thrashing at its memory limit {}; {killed}; {evidence}",
                    cfg.name,
                    t.describe()
                ))
            }
            Verdict::Timeout => Some(format!(
                "guard: {} (pid {pid}) exceeded its time limit {}; terminated; {evidence}",
                cfg.name,
                cfg.timeout.map(format_duration).unwrap_or_default()
            )),
            Verdict::KernelOom => Some(format!(
                "guard: {} (pid {pid}) was killed by the kernel's OOM killer (not by guard's cap); {evidence}",
                cfg.name
            )),
            Verdict::Exited(_) => None,
        }
    }
}

impl Verdict {
    /// How the job ended, for a ping's body when guard printed no line of its own: "guard:
    /// backup exited with status 2", "guard: backup was killed by signal 15 (SIGTERM)".
    pub fn exit_text(self, name: &str) -> String {
        match self {
            Verdict::Exited(Some(Ended::Code(c))) => {
                format!("guard: {name} exited with status {c}")
            }
            Verdict::Exited(Some(Ended::Signal(s))) => {
                let sig = nix::sys::signal::Signal::try_from(s)
                    .map(|x| format!(" ({})", x.as_str()))
                    .unwrap_or_default();
                format!("guard: {name} was killed by signal {s}{sig}")
            }
            Verdict::Exited(None) => format!("guard: {name}: guard lost track of the job"),
            v => format!("guard: {name} ended: {:?}", v.kind()),
        }
    }
}

pub fn evidence_text(bundle: &Result<PathBuf, EvidenceError>) -> String {
    match bundle {
        Ok(p) => format!("evidence: {}", p.display()),
        Err(why) => format!("no evidence: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_events_follow_the_table() {
        use Verdict::*;
        let cases = [
            (MemoryLimit, 137, Some(EventKind::MemoryLimit)),
            (Timeout, 124, Some(EventKind::Timeout)),
            (KernelOom, 137, Some(EventKind::KernelOom)),
            (Exited(Some(Ended::Code(0))), 0, None),
            (Exited(Some(Ended::Code(3))), 3, Some(EventKind::Failed)),
            (
                Exited(Some(Ended::Signal(15))),
                143,
                Some(EventKind::Failed),
            ),
            (Exited(None), 125, Some(EventKind::Failed)),
        ];
        for (v, status, kind) in cases {
            assert_eq!(v.status(), status, "{v:?}");
            assert_eq!(v.kind(), kind, "{v:?}");
            assert_eq!(v.failed(), status != 0, "{v:?}");
        }
    }
}
