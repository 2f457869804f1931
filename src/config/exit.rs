//! The exit-status table: the one place that defines what guard's exit status means.
//! The code uses these constants, the man page renders [`TABLE`], and the tests assert against both.

/// guard killed the job for exceeding `--memory`.
pub const MEMORY_KILL: i32 = 137;
/// The job exceeded `--timeout` (cron mode).
pub const TIMEOUT: i32 = 124;
/// `--lock`: another run holds the lock (EX_TEMPFAIL: try again later).
pub const LOCK_BUSY: i32 = 75;
/// guard itself failed: bad option, bad config, cgroup setup impossible with `--require-cgroup`.
pub const GUARD_FAILED: i32 = 125;
/// COMMAND was found but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// COMMAND was not found.
pub const NOT_FOUND: i32 = 127;
/// Base for signal deaths: the status is `SIGNAL_BASE + N` for signal N.
pub const SIGNAL_BASE: i32 = 128;

/// One row of the documented table.
pub struct ExitRow {
    pub status: &'static str,
    pub meaning: &'static str,
}

/// The table as documented (man page EXIT STATUS, README).
pub const TABLE: &[ExitRow] = &[
    ExitRow {
        status: "the child's code",
        meaning: "the child exited normally",
    },
    ExitRow {
        status: "128 + N",
        meaning: "the child was killed by signal N (a kernel OOM kill without a guard capture is 137 too)",
    },
    ExitRow {
        status: "137",
        meaning: "guard killed the job for exceeding --memory",
    },
    ExitRow {
        status: "124",
        meaning: "the job exceeded --timeout",
    },
    ExitRow {
        status: "75",
        meaning: "--lock: another run holds the lock (not started)",
    },
    ExitRow {
        status: "125",
        meaning: "guard itself failed: bad option, bad config, cgroup setup impossible with --require-cgroup",
    },
    ExitRow {
        status: "126",
        meaning: "COMMAND found but not executable",
    },
    ExitRow {
        status: "127",
        meaning: "COMMAND not found",
    },
];

/// The status for a child that ended with `code` (normal exit) or `signal` (killed).
pub fn from_child(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (Some(c), _) => c & 0xff,
        (None, Some(s)) => SIGNAL_BASE + s,
        (None, None) => GUARD_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_constants_agree() {
        for (code, needle) in [
            (MEMORY_KILL, "137"),
            (TIMEOUT, "124"),
            (LOCK_BUSY, "75"),
            (GUARD_FAILED, "125"),
            (NOT_EXECUTABLE, "126"),
            (NOT_FOUND, "127"),
        ] {
            assert!(
                TABLE.iter().any(|r| r.status == needle),
                "{code} missing from TABLE"
            );
            assert_eq!(code.to_string(), needle);
        }
        assert_eq!(MEMORY_KILL, SIGNAL_BASE + libc::SIGKILL);
    }

    #[test]
    fn child_status_maps() {
        assert_eq!(from_child(Some(0), None), 0);
        assert_eq!(from_child(Some(255), None), 255);
        assert_eq!(from_child(None, Some(15)), 143);
        assert_eq!(from_child(None, Some(9)), 137);
    }
}
