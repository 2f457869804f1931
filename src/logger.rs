//! guard's own messages on stderr: `guard: warning: …`, `guard: error: …`, `guard: …` for the
//! rest, filtered by `-v` / `-q`. One `write` per line, so lines of guard, the sentinel and the
//! job never interleave mid-line. (It replaces env_logger, whose filters, styles and timestamps
//! guard never used.)

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
        let prefix = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            _ => "",
        };
        // Names, paths and values in a message may come from a job or a user: their control
        // characters are escaped, so a line cannot drive the terminal it is read on.
        let msg = record.args().to_string();
        let line = format!(
            "guard: {prefix}{}\n",
            crate::format::escape_controls(&msg, true)
        );
        // Nothing to do if stderr is gone: guard goes on supervising.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Send guard's messages at `level` and above to stderr (idempotent).
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
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
