//! The one reader of `/proc` for the figures guard parses itself, on every run's path: a process's
//! or thread's state (from `stat`), its resident pages (from `statm`) and its children (from
//! `task/*/children`). Everything reads below a root, `/proc` normally and a fixture tree in tests.
//! A process that is gone is `None` / empty, never an error: processes exit while guard reads them.
//! (A capture's fuller reads — status, smaps — go through `evidence::snapshot`, bounded.)

use std::path::{Path, PathBuf};

/// A process's scheduling state, the letter after the command in `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// R
    Running,
    /// S
    Sleeping,
    /// D: uninterruptible sleep — frozen tasks, tasks in the memcg OOM wait or a memory.high
    /// throttle all show D.
    DiskSleep,
    /// T: stopped by a signal.
    Stopped,
    /// t: stopped by a tracer.
    TracingStop,
    /// Z
    Zombie,
    /// X
    Dead,
    /// I, W, P, K, ...
    Other(char),
}

impl State {
    fn from_letter(c: char) -> State {
        match c {
            'R' => State::Running,
            'S' => State::Sleeping,
            'D' => State::DiskSleep,
            'T' => State::Stopped,
            't' => State::TracingStop,
            'Z' => State::Zombie,
            'X' => State::Dead,
            other => State::Other(other),
        }
    }

    pub fn letter(self) -> char {
        match self {
            State::Running => 'R',
            State::Sleeping => 'S',
            State::DiskSleep => 'D',
            State::Stopped => 'T',
            State::TracingStop => 't',
            State::Zombie => 'Z',
            State::Dead => 'X',
            State::Other(c) => c,
        }
    }

    /// Exited (a zombie holds no memory and runs no code).
    pub fn is_gone(self) -> bool {
        matches!(self, State::Zombie | State::Dead)
    }

    /// Stopped by a signal or a tracer.
    pub fn is_stopped(self) -> bool {
        matches!(self, State::Stopped | State::TracingStop)
    }

    /// Cannot run user code until something lets it: stopped, gone, or asleep in the kernel. Once
    /// a freeze has been requested a task in D cannot return to user space without entering the
    /// freezer, so it is held as far as reading its memory goes.
    pub fn is_held(self) -> bool {
        self.is_gone() || self.is_stopped() || self == State::DiskSleep
    }
}

/// The state in the text of a `stat` file (the command may contain spaces and parentheses: the
/// state follows the last ')').
pub fn parse_state(stat: &str) -> Option<State> {
    let i = stat.rfind(')')?;
    stat[i + 1..]
        .split_whitespace()
        .next()
        .and_then(|s| s.chars().next())
        .map(State::from_letter)
}

/// Resident pages in the text of a `statm` file (its second field).
pub fn parse_statm_pages(statm: &[u8]) -> Option<u64> {
    std::str::from_utf8(statm)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The system's page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(ps).unwrap_or(4096).max(4096)
}

/// /proc (or a fixture of it).
#[derive(Debug, Clone)]
pub struct Proc {
    root: PathBuf,
    page_size: u64,
}

impl Proc {
    pub fn live() -> Proc {
        Proc::at(Path::new("/proc"))
    }

    pub fn at(root: &Path) -> Proc {
        Proc {
            root: root.to_path_buf(),
            page_size: page_size(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<pid>/<file>` (a tid works too: every thread has a `/proc/TID`).
    pub fn path(&self, pid: i32, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The state of process or thread `pid`; None when it is gone.
    pub fn state(&self, pid: i32) -> Option<State> {
        let stat = std::fs::read_to_string(self.path(pid, "stat")).ok()?;
        parse_state(&stat)
    }

    /// Resident bytes of `pid` (0 when it is gone).
    pub fn rss_bytes(&self, pid: i32) -> u64 {
        std::fs::read(self.path(pid, "statm"))
            .ok()
            .and_then(|s| parse_statm_pages(&s))
            .unwrap_or(0)
            * self.page_size
    }

    /// The children of `pid`, from `task/*/children` (every thread can have children).
    pub fn children(&self, pid: i32) -> Vec<i32> {
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir(self.path(pid, "task")) else {
            return out;
        };
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
        out
    }

    /// Every thread listed in the text of a cgroup's `tasks` / `cgroup.threads` is held (see
    /// [`State::is_held`]); a thread that is gone counts as held. False for an empty list.
    pub fn all_held(&self, tids: &str) -> bool {
        let mut any = false;
        for tid in tids
            .split_whitespace()
            .filter_map(|t| t.parse::<i32>().ok())
        {
            any = true;
            match self.state(tid) {
                Some(s) if !s.is_held() => {
                    log::debug!("task {tid} is not held yet (state {})", s.letter());
                    return false;
                }
                _ => {}
            }
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_after_the_last_parenthesis() {
        assert_eq!(
            parse_state("42 (a (weird) name) D 1 1 1"),
            Some(State::DiskSleep)
        );
        assert_eq!(parse_state("42 (x) t 1"), Some(State::TracingStop));
        assert_eq!(parse_state("42 (x) I 1"), Some(State::Other('I')));
        assert_eq!(parse_state("garbage"), None);
        assert!(State::Zombie.is_gone() && State::Zombie.is_held());
        assert!(State::Stopped.is_stopped() && !State::Sleeping.is_held());
    }

    fn entry(root: &Path, pid: i32, state: char, pages: u64, kids: &[i32]) {
        let d = root.join(pid.to_string());
        std::fs::create_dir_all(d.join(format!("task/{pid}"))).unwrap();
        std::fs::write(d.join("stat"), format!("{pid} (p {pid}) {state} 1 1\n")).unwrap();
        std::fs::write(d.join("statm"), format!("100 {pages} 1 1 0 1 0\n")).unwrap();
        let k: Vec<String> = kids.iter().map(i32::to_string).collect();
        std::fs::write(d.join(format!("task/{pid}/children")), k.join(" ")).unwrap();
    }

    #[test]
    fn a_fixture_tree_reads_like_proc() {
        let d = tempfile::tempdir().unwrap();
        entry(d.path(), 10, 'S', 3, &[11, 12]);
        entry(d.path(), 11, 'D', 5, &[]);
        entry(d.path(), 12, 'T', 0, &[]);
        let p = Proc::at(d.path());
        assert_eq!(p.children(10), vec![11, 12]);
        assert_eq!(p.rss_bytes(11), 5 * p.page_size());
        assert_eq!(p.rss_bytes(99), 0, "gone: nothing");
        assert_eq!(p.state(99), None);
        assert!(p.all_held("11\n12\n99\n"), "D, T and gone are held");
        assert!(!p.all_held("10 11"), "S is not");
        assert!(!p.all_held(""), "nothing listed: not confirmed");
    }
}
