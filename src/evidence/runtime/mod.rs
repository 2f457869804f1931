//! The language runtimes guard asks what holds the memory. Each lives in a folder of its own
//! with the hook files it puts in the job (`python/`: the heap census and its sitecustomize;
//! `node/`: the hook NODE_OPTIONS loads) and says, through [`Runtime`], which processes are its
//! own, what its hook's signal and environment are, and how its answer is checked. What they
//! share is here: the hook's directory ([`hookdir`]) and the conversation with the job's
//! processes over guard's socket ([`census`]).
//!
//! A new runtime (a JVM's `jcmd GC.class_histogram`, Ruby) is a folder beside these, a variant
//! of [`Runtime`] and its arms below, and a hook [`census::Asking`] in `supervise::prepare`.
pub mod census;
pub mod hookdir;
pub mod node;
pub mod python;

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A runtime whose processes guard can ask for a census.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Runtime {
    Python,
    Node,
}

/// A process's answer, checked by its runtime: the document guard writes into the bundle, why
/// the census failed inside the process (if it did), and the collector's one-line summary.
pub struct Answered {
    pub json: Vec<u8>,
    pub error: Option<String>,
    pub summary: String,
}

impl Runtime {
    /// The collector's name before `:PID`, and the file's name before `.json`.
    pub fn collector(self) -> &'static str {
        match self {
            Runtime::Python => "pyheap",
            Runtime::Node => "jsheap",
        }
    }

    pub fn collector_name(self, pid: i32) -> String {
        format!("{}:{pid}", self.collector())
    }

    /// The answer's file in `processes/<pid>/`.
    pub fn file(self) -> String {
        format!("{}.json", self.collector())
    }

    /// The first word of guard's terms, and of the answer's `format`.
    pub fn format(self) -> &'static str {
        match self {
            Runtime::Python => crate::format::PYHEAP_FORMAT,
            Runtime::Node => crate::format::JSHEAP_FORMAT,
        }
    }

    /// This runtime's processes among `pids` (in their order, at most 8).
    pub fn pids(self, proc: &Path, pids: &[i32]) -> Vec<i32> {
        match self {
            Runtime::Python => crate::evidence::collectors::python_pids(proc, pids),
            Runtime::Node => node::node_pids(proc, pids),
        }
    }

    /// Why a process of this runtime was not asked.
    pub fn not_hooked(self) -> &'static str {
        match self {
            Runtime::Python => {
                "guard's Python hook is not loaded in this process (started with python -E, -I or \
                 -S, a PYTHONPATH of its own, Python before 3.6, or the program handles the \
                 signal itself)"
            }
            Runtime::Node => {
                "guard's Node.js hook is not loaded in this process (a NODE_OPTIONS of its own, \
                 --no-nodeheap, or the program listens for the signal itself)"
            }
        }
    }

    /// Parse and bound an answer from `pid`.
    pub fn check(self, data: &[u8], pid: i32) -> Result<Answered, String> {
        match self {
            Runtime::Python => python::check(data, pid),
            Runtime::Node => node::check(data, pid),
        }
    }
}

/// A runtime's answer parsed as its document (`format` names it in the error).
pub(crate) fn parse_answer<T: serde::de::DeserializeOwned>(
    data: &[u8],
    format: &str,
) -> Result<T, String> {
    serde_json::from_slice(data).map_err(|e| format!("the answer is not a {format} document: {e}"))
}

/// An answer says it is `format`, and comes from `pid` (when it names one).
pub(crate) fn check_origin(found: &str, named: i32, format: &str, pid: i32) -> Result<(), String> {
    if found != format {
        return Err(format!(
            "the answer's format is '{}', not {format}",
            text(found)
        ));
    }
    if named != 0 && named != pid {
        return Err(format!("the answer names pid {named}, but came from {pid}"));
    }
    Ok(())
}

/// A string from the job: control characters escaped, at most MAX_TEXT characters.
pub(crate) fn text(s: &str) -> String {
    let mut t: String = s.chars().take(MAX_TEXT).collect();
    if s.chars().count() > MAX_TEXT {
        t.push('\u{2026}');
    }
    crate::format::escape_controls(&t, false).into_owned()
}

/// The longest string guard keeps from an answer.
pub(crate) const MAX_TEXT: usize = 300;

/// An environment as hooks change it: guard's own, in order; [`execve_env`] makes it `execve`'s.
pub type Environ = Vec<(OsString, OsString)>;

/// `key` set to `value`: replaced where it is, else added at the end.
pub fn set(env: &mut Environ, key: &str, value: OsString) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => env.push((OsString::from(key), value)),
    }
}

/// `KEY=VALUE` strings for `execve` (an entry with a NUL byte cannot be passed and is left out).
pub fn execve_env(env: &Environ) -> Vec<CString> {
    env.iter()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect()
}
