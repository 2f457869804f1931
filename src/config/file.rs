//! The TOML configuration file: `[defaults]` and `[jobs.<name>]` tables whose keys are the wrap
//! options (`-` written `_`). Files: `--config FILE` (or `GUARD_CONFIG`) alone; otherwise
//! `/etc/guard/guard.toml` and then the user's `$XDG_CONFIG_HOME/guard/guard.toml`
//! (`~/.config/guard/guard.toml`), the user's file winning. Precedence for a setting: command
//! line > `GUARD_*` environment > the job's table > `[defaults]` > built-in. Unknown keys and
//! wrong types are errors that name `file:line:column`; values are checked by [`crate::config`], which
//! names the same place when a value is bad.

use crate::config::alerts::{Sink, SinkKind, SpecError};
use crate::config::options::{self, Kind, NameError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::Value;

/// One table of settings (`[defaults]` or `[jobs.NAME]`): raw values with their places, keyed by
/// the option's key (checked against [`crate::config::options::OPTIONS`] at load).
type Table = BTreeMap<Spanned<String>, Spanned<Value>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    defaults: Table,
    #[serde(default)]
    jobs: BTreeMap<String, Table>,
    #[serde(default)]
    alerts: Vec<Spanned<AlertTable>>,
}

/// One `[[alerts]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTable {
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    events: Option<Spanned<Vec<String>>>,
    headers: Option<Spanned<BTreeMap<String, String>>>,
    timeout: Option<Spanned<Value>>,
    pass_env: Option<Spanned<Vec<String>>>,
    /// Alertmanager: labels added to the alert's own.
    labels: Option<Spanned<BTreeMap<String, String>>>,
    /// email: the addresses, the sender, TLS, credentials (`url` is the mail server).
    to: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    /// pagerduty: the integration's routing key (`url` replaces the Events API endpoint).
    routing_key: Option<Spanned<String>>,
}

/// A setting taken from a file: its value as the option would have it on the command line, and
/// where it came from (`FILE:LINE:COLUMN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileValue {
    pub text: String,
    pub place: String,
}

/// A loaded, parsed file.
#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    source: String,
    shape: FileShape,
    /// Byte offsets where each line starts: a place is found by binary search, not by scanning
    /// the file from its start (`config check` of 16,000 jobs took 12 s that way).
    line_starts: Vec<usize>,
}

/// A place in a config file: `FILE:LINE:COLUMN` (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Why a value has the wrong type for its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("must not be negative")]
    Negative,
    #[error("expected a list of strings")]
    NotStrings,
    #[error("expected {wanted}, found {found}")]
    WrongType {
        wanted: &'static str,
        found: &'static str,
    },
}

/// What is wrong with an `[[alerts]]` table (beyond the sink's own validation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertProblem {
    #[error("kind = \"{0}\" needs url = \"...\"")]
    NeedsUrl(&'static str),
    #[error("kind = \"exec\" needs command = [\"/abs/program\", \"arg\", ...]")]
    NeedsCommand,
    #[error("kind = \"email\" needs to = \"name@example.com\" (several separated by commas)")]
    NeedsTo,
    #[error("kind = \"pagerduty\" needs routing_key = \"env:NAME\" (the integration's key)")]
    NeedsRoutingKey,
    #[error("command is empty")]
    EmptyCommand,
    #[error("timeout: {0}")]
    TimeoutType(ValueError),
    #[error("timeout '{text}': {problem}")]
    Timeout {
        text: String,
        problem: crate::config::units::UnitError,
    },
    #[error("{0}")]
    Sink(SpecError),
}

/// A config file guard cannot use: one line naming `FILE:LINE:COLUMN` (exit 125, nothing runs).
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the config file {} is not a regular file (a FIFO, a device, a directory): give the path of a TOML file",
        .0.display()
    )]
    NotAFile(PathBuf),
    #[error(
        "the config file {} is larger than 1 MiB: not a guard configuration (split it, or check the path)",
        .0.display()
    )]
    TooLarge(PathBuf),
    #[error(transparent)]
    Untrusted(#[from] crate::os::trust::Untrusted),
    /// Not TOML, or not the file's shape: toml's own words (with a hint where one helps).
    #[error("{place}: {message}")]
    Syntax { place: Place, message: String },
    #[error("{place}: unknown field `{key}`, expected one of {known}")]
    UnknownKey {
        place: Place,
        key: String,
        known: String,
    },
    #[error("{place}: {key}: {problem}")]
    Value {
        place: Place,
        key: &'static str,
        problem: ValueError,
    },
    #[error("{place}: invalid job name '{name}': {problem}")]
    JobName {
        place: Place,
        name: String,
        problem: NameError,
    },
    #[error("{place}: {problem}")]
    AlertKind { place: Place, problem: SpecError },
    #[error("{place}: alerts: {problem}")]
    Alert { place: Place, problem: AlertProblem },
}

/// The largest config file guard reads: a few KiB is usual, 16,000 jobs are 700 KiB.
pub const MAX_CONFIG: u64 = 1 << 20;

/// A config file's text: a regular file (not a FIFO that blocks, not /dev/zero; /dev/null reads as
/// empty) of at most
/// [`MAX_CONFIG`] bytes, opened without blocking and read no further than that.
fn read_bounded(path: &Path) -> Result<String, ConfigFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let md = f.metadata().map_err(read_err)?;
    // /dev/null (character device 1:3) is the usual way to say "no config file": empty.
    if std::os::unix::fs::FileTypeExt::is_char_device(&md.file_type())
        && std::os::unix::fs::MetadataExt::rdev(&md) == libc::makedev(1, 3)
    {
        return Ok(String::new());
    }
    if !md.is_file() {
        return Err(ConfigFileError::NotAFile(path.to_path_buf()));
    }
    crate::os::trust::check(path, crate::os::trust::Use::Config)?;
    let mut text = String::new();
    f.take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(ConfigFileError::TooLarge(path.to_path_buf()));
    }
    Ok(text)
}

/// `line:column` (1-based) of byte offset `at` in `src`.
fn line_col(src: &str, at: usize) -> (usize, usize) {
    line_col_in(src, &line_starts(src), at)
}

/// Where each line of `src` starts.
fn line_starts(src: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(src.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// `line:column` of byte offset `at`, given `src`'s [`line_starts`].
fn line_col_in(src: &str, starts: &[usize], at: usize) -> (usize, usize) {
    let at = at.min(src.len());
    let line = starts.partition_point(|&s| s <= at).max(1);
    let start = starts[line - 1];
    let col = src.get(start..at).map_or(0, |t| t.chars().count()) + 1;
    (line, col)
}

impl ConfigFile {
    /// Read and parse `path`. The error is one line: `FILE:LINE:COL: what is wrong`.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigFileError> {
        Self::parse(path, read_bounded(path)?)
    }

    pub fn parse(path: &Path, source: String) -> Result<ConfigFile, ConfigFileError> {
        let shape: FileShape = toml::from_str(&source).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(&source, s.start));
            let mut message = e.message().replace('\n', " ");
            let text = source.lines().nth(line.saturating_sub(1)).unwrap_or("");
            if text.trim() == "[alerts]" {
                message.push_str(" (write [[alerts]]: each sink is one [[alerts]] table)");
            }
            ConfigFileError::Syntax {
                place: Place {
                    file: path.to_path_buf(),
                    line,
                    column,
                },
                message,
            }
        })?;
        let f = ConfigFile {
            path: path.to_path_buf(),
            line_starts: line_starts(&source),
            source,
            shape,
        };
        f.check_types()?;
        f.alerts()?;
        Ok(f)
    }

    /// The `[[alerts]]` sinks, validated, each with its table's place; errors name the key's.
    pub fn alerts(&self) -> Result<Vec<(Sink, String)>, ConfigFileError> {
        self.shape
            .alerts
            .iter()
            .map(|a| Ok((self.alert_sink(a)?, self.place(a.span()).to_string())))
            .collect()
    }

    /// One `[[alerts]]` table as a sink.
    fn alert_sink(&self, a: &Spanned<AlertTable>) -> Result<Sink, ConfigFileError> {
        let t = a.get_ref();
        let kind =
            SinkKind::parse(t.kind.get_ref()).map_err(|problem| ConfigFileError::AlertKind {
                place: self.place(t.kind.span()),
                problem,
            })?;
        let alert = |span: std::ops::Range<usize>, problem| ConfigFileError::Alert {
            place: self.place(span),
            problem,
        };
        let (target, args, span) = alert_target(kind, a).map_err(|(sp, p)| alert(sp, p))?;
        let timeout = match &t.timeout {
            None => None,
            Some(v) => {
                let text = to_text(Kind::Duration, v.get_ref())
                    .map_err(|e| alert(v.span(), AlertProblem::TimeoutType(e)))?;
                let d = crate::config::units::parse_duration(&text)
                    .map_err(|problem| alert(v.span(), AlertProblem::Timeout { text, problem }))?;
                Some(d)
            }
        };
        let events = t.events.as_ref().map(|e| e.get_ref().clone());
        let headers: Vec<(String, String)> = t
            .headers
            .as_ref()
            .map(|h| {
                h.get_ref()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut sink = Sink::new(kind, &target, args, events, headers, timeout).map_err(|e| {
            let span = match (&t.events, e.in_events()) {
                (Some(ev), true) => ev.span(),
                _ => span,
            };
            alert(span, AlertProblem::Sink(e))
        })?;
        if let Some(p) = &t.pass_env {
            crate::config::alerts::check_pass_env(kind, p.get_ref())
                .map_err(|e| alert(p.span(), AlertProblem::Sink(e)))?;
            sink.pass_env.clone_from(p.get_ref());
        }
        sink_server(kind, t, &mut sink).map_err(|(sp, p)| alert(sp, p))?;
        if let Some(l) = &t.labels {
            let labels: Vec<(String, String)> = l
                .get_ref()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            crate::config::alerts::check_labels(kind, &labels)
                .map_err(|e| alert(l.span(), AlertProblem::Sink(e)))?;
            sink.labels = labels;
        }
        Ok(sink)
    }

    fn place(&self, span: std::ops::Range<usize>) -> Place {
        let (line, column) = line_col_in(&self.source, &self.line_starts, span.start);
        Place {
            file: self.path.clone(),
            line,
            column,
        }
    }

    fn tables(&self) -> impl Iterator<Item = (String, &Table)> {
        std::iter::once(("[defaults]".to_string(), &self.shape.defaults)).chain(
            self.shape
                .jobs
                .iter()
                .map(|(n, t)| (format!("[jobs.{n}]"), t)),
        )
    }

    /// Job names (the `[jobs.NAME]` tables), in order.
    pub fn job_names(&self) -> Vec<String> {
        self.shape.jobs.keys().cloned().collect()
    }

    /// Every key is an option's, every value has the type its key takes; job names are valid.
    fn check_types(&self) -> Result<(), ConfigFileError> {
        for name in self.shape.jobs.keys() {
            if let Err(problem) = crate::config::options::validate_name(name) {
                let at = self.source.find(&format!("jobs.{name}")).unwrap_or(0);
                return Err(ConfigFileError::JobName {
                    place: self.place(at..at),
                    name: name.clone(),
                    problem,
                });
            }
        }
        for (_, t) in self.tables() {
            for (key, v) in t {
                let Some(o) = options::file_keys().find(|o| o.key == key.get_ref()) else {
                    let known: Vec<String> = options::file_keys()
                        .map(|o| format!("`{}`", o.key))
                        .collect();
                    return Err(ConfigFileError::UnknownKey {
                        place: self.place(key.span()),
                        key: key.get_ref().clone(),
                        known: known.join(", "),
                    });
                };
                to_text(o.kind, v.get_ref()).map_err(|problem| ConfigFileError::Value {
                    place: self.place(v.span()),
                    key: o.key,
                    problem,
                })?;
            }
        }
        Ok(())
    }

    /// The value of `key` in `[jobs.JOB]` (job given) or in `[defaults]` (None).
    pub fn get(&self, job: Option<&str>, key: &str) -> Option<FileValue> {
        let t = match job {
            Some(j) => self.shape.jobs.get(j)?,
            None => &self.shape.defaults,
        };
        let (_, v) = t.iter().find(|(k, _)| k.get_ref() == key)?;
        // Types were checked at load.
        let text = to_text(options::get(key).kind, v.get_ref()).ok()?;
        Some(FileValue {
            text,
            place: self.place(v.span()).to_string(),
        })
    }
}

/// Where an `[[alerts]]` table's sink sends: its target, extra arguments, and the span to blame
/// when the sink rejects them.
type Target = (String, Vec<String>, std::ops::Range<usize>);

/// What is wrong, and the span to blame.
type Blame = (std::ops::Range<usize>, AlertProblem);

fn alert_target(kind: SinkKind, a: &Spanned<AlertTable>) -> Result<Target, Blame> {
    let t = a.get_ref();
    match kind {
        SinkKind::Webhook | SinkKind::Slack | SinkKind::Alertmanager => {
            let u = t
                .url
                .as_ref()
                .ok_or((a.span(), AlertProblem::NeedsUrl(kind.name())))?;
            Ok((u.get_ref().clone(), Vec::new(), u.span()))
        }
        SinkKind::Exec => {
            let c = t
                .command
                .as_ref()
                .ok_or((a.span(), AlertProblem::NeedsCommand))?;
            let mut v = c.get_ref().clone();
            if v.is_empty() {
                return Err((c.span(), AlertProblem::EmptyCommand));
            }
            let prog = v.remove(0);
            Ok((prog, v, c.span()))
        }
        SinkKind::Log => Ok(match &t.target {
            Some(tg) => (tg.get_ref().clone(), Vec::new(), tg.span()),
            None => ("stderr".to_string(), Vec::new(), a.span()),
        }),
        SinkKind::Email => {
            let to = t.to.as_ref().ok_or((a.span(), AlertProblem::NeedsTo))?;
            Ok((to.get_ref().clone(), Vec::new(), to.span()))
        }
        SinkKind::PagerDuty => {
            let k = t
                .routing_key
                .as_ref()
                .ok_or((a.span(), AlertProblem::NeedsRoutingKey))?;
            Ok((k.get_ref().clone(), Vec::new(), k.span()))
        }
    }
}

/// The keys of an email or pagerduty table beyond its target: the mail server and how to reach
/// it; PagerDuty's endpoint. A key for another kind is named as such.
fn sink_server(
    kind: SinkKind,
    t: &AlertTable,
    sink: &mut Sink,
) -> Result<(), (std::ops::Range<usize>, AlertProblem)> {
    fn text(v: &Option<Spanned<String>>) -> Option<&str> {
        v.as_ref().map(|x| x.get_ref().as_str())
    }
    let email_keys = [
        ("from", &t.from),
        ("tls", &t.tls),
        ("username", &t.username),
        ("password", &t.password),
    ];
    if kind != SinkKind::Email {
        if let Some((key, v)) = email_keys
            .iter()
            .find_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
        {
            return Err((
                v.span(),
                AlertProblem::Sink(SpecError::NotForKind {
                    key,
                    for_kind: "email",
                    kind: kind.name(),
                }),
            ));
        }
    }
    let whole = t.kind.span();
    match kind {
        SinkKind::Email => {
            sink.smtp = crate::config::alerts::Smtp::new(
                text(&t.url),
                text(&t.tls),
                text(&t.username),
                text(&t.password),
                text(&t.from),
            )
            .map_err(|e| (whole, AlertProblem::Sink(e)))?;
        }
        SinkKind::PagerDuty => {
            if let Some(u) = &t.url {
                crate::config::alerts::check_url("pagerduty", u.get_ref())
                    .map_err(|e| (u.span(), AlertProblem::Sink(e)))?;
                sink.api_url = Some(u.get_ref().clone());
            }
        }
        _ => {}
    }
    Ok(())
}

/// A file value as the command line would spell it (booleans as "true"/"false").
fn to_text(kind: Kind, v: &Value) -> Result<String, ValueError> {
    use Kind::*;
    match (kind, v) {
        (Size | Duration | Percent | Path | Text | Words, Value::String(s)) => Ok(s.clone()),
        (Size | Duration | Percent | Count | Level, Value::Integer(i)) if *i >= 0 => {
            Ok(i.to_string())
        }
        (Size | Duration | Percent | Count | Level, Value::Integer(_)) => Err(ValueError::Negative),
        (Flag, Value::Boolean(b)) => Ok(b.to_string()),
        (Words, Value::Array(a)) => a
            .iter()
            .map(|w| w.as_str().map(str::to_string).ok_or(ValueError::NotStrings))
            .collect::<Result<Vec<_>, _>>()
            .map(|w| w.join(",")),
        (kind, other) => Err(ValueError::WrongType {
            wanted: wanted(kind),
            found: other.type_str(),
        }),
    }
}

/// What a key of `kind` takes, in words.
fn wanted(kind: Kind) -> &'static str {
    match kind {
        Kind::Size => "a size as a string (\"512M\", \"80%\") or an integer number of bytes",
        Kind::Duration => "a duration as a string (\"30s\") or an integer number of seconds",
        Kind::Percent => "a percentage as a string (\"95%\") or an integer",
        Kind::Path => "a path string",
        Kind::Text => "a string",
        Kind::Flag => "true or false",
        Kind::Count | Kind::Level => "a whole number",
        Kind::Words => "a list of strings like [\"TOKEN\", \"PASS\"]",
        Kind::List => "an [[alerts]] table",
    }
}

/// The files to read, most important first: `--config FILE` alone, else the user's file and
/// then the system's (each only if it exists).
pub fn locate(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let mut v = Vec::new();
    let user_dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".config"))
        });
    if let Some(d) = user_dir {
        let p = d.join("guard/guard.toml");
        if p.is_file() {
            v.push(p);
        }
    }
    let sys = PathBuf::from("/etc/guard/guard.toml");
    if sys.is_file() {
        v.push(sys);
    }
    v
}

/// The loaded files, most important first.
#[derive(Debug, Default)]
pub struct Layers {
    pub files: Vec<ConfigFile>,
}

impl Layers {
    pub fn load(explicit: Option<&Path>) -> Result<Layers, ConfigFileError> {
        let files = locate(explicit)
            .iter()
            .map(|p| ConfigFile::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Layers { files })
    }

    /// The alert sinks of the most important file that has `[[alerts]]` (files are not merged:
    /// a user's list replaces the system's), each with its table's place.
    pub fn alerts(&self) -> Vec<(crate::config::alerts::Sink, String)> {
        self.files
            .iter()
            .map(|f| f.alerts().unwrap_or_default())
            .find(|a| !a.is_empty())
            .unwrap_or_default()
    }

    /// `key` for `job`: the job's table in any file beats `[defaults]` in any file; between
    /// files, the more important one wins.
    pub fn get(&self, job: Option<&str>, key: &str) -> Option<FileValue> {
        let from_job = job.and_then(|j| self.files.iter().find_map(|f| f.get(Some(j), key)));
        from_job.or_else(|| self.files.iter().find_map(|f| f.get(None, key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(Path::new("g.toml"), src.to_string()).map_err(|e| e.to_string())
    }

    #[test]
    fn places_are_found_by_line_starts() {
        let src = "a = 1\nbé = \"x\"\n\n[jobs.x]\n";
        for (at, want) in [
            (0, (1, 1)),
            (4, (1, 5)),
            (6, (2, 1)),
            (10, (2, 4)),
            (16, (3, 1)),
            (17, (4, 1)),
        ] {
            assert_eq!(line_col(src, at), want, "offset {at}");
        }
        assert_eq!(line_col(src, 999), (5, 1), "past the end: the last line");
    }

    #[test]
    fn job_beats_defaults_and_places_are_named() {
        let f = parse(
            "[defaults]\nmemory = \"512M\"\nkeep = 10\n\n[jobs.fix_images]\nmemory = \"2G\"\nwarn = \"70%\"\n",
        )
        .unwrap();
        let l = Layers { files: vec![f] };
        assert_eq!(
            l.get(Some("fix_images"), "memory"),
            Some(FileValue {
                text: "2G".into(),
                place: "g.toml:6:10".into()
            })
        );
        assert_eq!(l.get(None, "memory").unwrap().text, "512M");
        assert_eq!(l.get(Some("other"), "memory").unwrap().text, "512M");
        assert_eq!(l.get(Some("fix_images"), "keep").unwrap().text, "10");
        assert_eq!(l.get(None, "warn"), None);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_place() {
        let e = parse("[defaults]\nmemroy = \"1G\"\n").unwrap_err();
        assert!(e.starts_with("g.toml:2:1: unknown field `memroy`"), "{e}");
        let e = parse("[defaults]\nmemory = true\n").unwrap_err();
        assert_eq!(
            e,
            "g.toml:2:10: memory: expected a size as a string (\"512M\", \"80%\") or an integer number of bytes, found boolean"
        );
        let e = parse("[jobs.x]\ncore = \"yes\"\n").unwrap_err();
        assert!(
            e.starts_with("g.toml:2:8: core: expected true or false"),
            "{e}"
        );
        let e = parse("[defaults\nmemory = 1\n").unwrap_err();
        assert!(e.starts_with("g.toml:1:"), "{e}");
        let e = parse("[jobs.\"a/b\"]\nmemory = 1\n").unwrap_err();
        assert!(e.contains("invalid job name 'a/b'"), "{e}");
        let e = parse("[other]\n").unwrap_err();
        assert!(e.contains("unknown field `other`"), "{e}");
    }

    #[test]
    fn the_more_important_file_wins_but_a_job_beats_defaults() {
        let user = parse("[defaults]\nmemory = \"1G\"\n").unwrap();
        let system =
            parse("[defaults]\nmemory = \"4G\"\nswap = \"1G\"\n[jobs.j]\nmemory = \"3G\"\n")
                .unwrap();
        let l = Layers {
            files: vec![user, system],
        };
        assert_eq!(l.get(None, "memory").unwrap().text, "1G");
        assert_eq!(l.get(None, "swap").unwrap().text, "1G");
        assert_eq!(l.get(Some("j"), "memory").unwrap().text, "3G");
    }

    #[test]
    fn every_file_key_parses_and_nothing_else_does() {
        for o in crate::config::options::OPTIONS {
            let value = match o.kind {
                Kind::Flag => "true",
                Kind::Words | Kind::Path | Kind::Text => "\"x\"",
                _ => "1",
            };
            let r = parse(&format!("[defaults]\n{} = {value}\n", o.key));
            assert_eq!(r.is_ok(), o.file_key, "{}: {r:?}", o.key);
        }
    }

    #[test]
    fn lists_and_integers_become_option_text() {
        let f = parse(
            "[defaults]\nredact = [\"TOKEN\", \"PASS\"]\nkill_after = 30\nmemory = 1048576\n",
        )
        .unwrap();
        let l = Layers { files: vec![f] };
        assert_eq!(l.get(None, "redact").unwrap().text, "TOKEN,PASS");
        assert_eq!(l.get(None, "kill_after").unwrap().text, "30");
        assert_eq!(l.get(None, "memory").unwrap().text, "1048576");
    }
}
