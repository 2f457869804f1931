//! guard's own messages on stderr: `guard: warning: …`, `guard: error: …`, `guard: …` for the
//! rest, filtered by `-v` / `-q`. One `write` per line, so lines of guard, the sentinel and the
//! job never interleave mid-line. (It replaces env_logger, whose filters, styles and timestamps
//! guard never used.)
//!
//! When stderr is the journal (systemd sets `JOURNAL_STREAM` to its device and inode), each line
//! goes to the journal as a native entry instead, with PRIORITY, SYSLOG_IDENTIFIER=guard and the
//! job's GUARD_JOB and GUARD_PID ([`set_job`]); the line that says how the run ended also carries
//! GUARD_EVENT, GUARD_BUNDLE, GUARD_LIMIT_BYTES, GUARD_PEAK_BYTES and the event's MESSAGE_ID
//! ([`event_line`]). If the journal cannot be reached the line goes to stderr as always.

use std::io::Write;

struct Stderr;

static LOGGER: Stderr = Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let (prefix, priority) = match record.level() {
            log::Level::Error => ("error: ", 3),
            log::Level::Warn => ("warning: ", 4),
            log::Level::Info => ("", 6),
            _ => ("", 7),
        };
        // Names, paths and values in a message may come from a job, a user or a remote server
        // (an SMTP reply): their control characters are escaped — line breaks too — so a line
        // can neither drive the terminal it is read on nor forge a line of guard's.
        let msg = record.args().to_string();
        let line = format!(
            "guard: {prefix}{}",
            crate::format::escape_controls(&msg, false)
        );
        emit(&line, priority, &[]);
    }

    fn flush(&self) {}
}

/// Send guard's messages at `level` and above to stderr (idempotent).
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// The job's name and pid, for the journal fields of every later line.
static JOB: std::sync::OnceLock<(String, i32)> = std::sync::OnceLock::new();

/// Name the job for the journal fields (once it has started).
pub fn set_job(name: &str, pid: i32) {
    let _ = JOB.set((name.to_string(), pid));
}

/// Whether stderr is the journal: `JOURNAL_STREAM=DEV:INO` names stderr's device and inode.
fn stderr_is_journal() -> bool {
    static IS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IS.get_or_init(|| {
        let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
            return false;
        };
        v.to_str()
            .and_then(|v| v.split_once(':'))
            .is_some_and(|(d, i)| {
                d.parse::<u64>().ok() == Some(st.st_dev) && i.parse::<u64>().ok() == Some(st.st_ino)
            })
    })
}

/// The line that says how the run ended (the kill line, the kernel-OOM line): on stderr, or in
/// the journal with the event's fields.
pub fn event_line(line: &str, kind: crate::format::EventKind, fields: &[(&str, String)]) {
    let priority = if kind == crate::format::EventKind::Warning {
        4
    } else {
        2
    };
    let mut all: Vec<(&str, String)> = vec![
        ("GUARD_EVENT", kind.as_str().to_string()),
        ("MESSAGE_ID", crate::format::message_id(kind).to_string()),
    ];
    all.extend(fields.iter().cloned());
    emit(line, priority, &all);
}

/// One line, to the journal when stderr is the journal (and it answers), else to stderr.
fn emit(line: &str, priority: u8, extra: &[(&str, String)]) {
    if stderr_is_journal() && to_journal(line, priority, extra) {
        return;
    }
    // Nothing to do if stderr is gone: guard goes on supervising.
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{line}\n").as_bytes());
}

fn to_journal(line: &str, priority: u8, extra: &[(&str, String)]) -> bool {
    let priority = priority.to_string();
    let job = JOB.get().map(|(n, p)| (n.as_str(), p.to_string()));
    let mut fields: Vec<(&str, &str)> = vec![
        ("MESSAGE", line),
        ("PRIORITY", &priority),
        ("SYSLOG_IDENTIFIER", "guard"),
    ];
    if let Some((name, pid)) = &job {
        fields.push(("GUARD_JOB", name));
        fields.push(("GUARD_PID", pid));
    }
    fields.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    crate::os::journal::send_journal(
        std::path::Path::new(crate::os::journal::JOURNAL_SOCKET),
        &fields,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn levels_filter() {
        super::init(log::LevelFilter::Warn);
        assert!(log::log_enabled!(log::Level::Warn));
        assert!(!log::log_enabled!(log::Level::Info));
        super::init(log::LevelFilter::Debug);
        assert!(log::log_enabled!(log::Level::Debug));
    }
}
