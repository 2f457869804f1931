//! Readiness: whether guard would do on this machine, now, what a job's settings say — checked
//! without sending anything. Every alert sink's secrets resolve (`env:NAME` set, `file:/path`
//! readable; the values are never shown) to URLs that parse, exec hooks are programs guard can
//! run, log sockets are there, the ping's URL resolves, the metrics file's and the evidence
//! directory's directories are writable and have room; and, with `--upload`, that the bucket is
//! there for the credentials (a HEAD of it: the one request these checks send). `guard config
//! check`, `guard doctor` and `guard drill` run these checks; a failure is what a real kill would
//! have found at 3 a.m.

use crate::config::WrapConfig;
use crate::config::alerts::{Secret, Sink, SinkKind};
use serde::Serialize;
use std::path::Path;

/// Less free space than this in a directory guard writes to is a failed check.
pub const MIN_FREE: u64 = 64 << 20;

/// One readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn new(check: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            ok,
            detail: detail.into(),
        }
    }
}

/// Every check for `cfg`: its sinks, then its own (ping, metrics file, evidence directory).
pub fn checks(cfg: &WrapConfig) -> Vec<Check> {
    let mut out = sinks(&cfg.alerts);
    out.extend(job(cfg, &mut Seen::default()));
    out
}

/// The alert sinks' checks (the sinks are every job's).
pub fn sinks(alerts: &[Sink]) -> Vec<Check> {
    alerts.iter().flat_map(sink).collect()
}

/// What [`job`] has checked already (many jobs share a ping URL, a metrics file, an evidence
/// directory: `guard config check` of 16,000 jobs checks each once).
#[derive(Debug, Default)]
pub struct Seen(std::collections::HashSet<String>);

impl Seen {
    fn first(&mut self, key: String) -> bool {
        self.0.insert(key)
    }
}

/// A job's own checks — its ping, its metrics file, its evidence directory — each the first
/// time `seen` meets it.
pub fn job(cfg: &WrapConfig, seen: &mut Seen) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(url) = cfg
        .ping
        .as_ref()
        .filter(|u| seen.first(format!("ping {u:?}")))
    {
        out.push(url_check("ping", "ping", url));
    }
    if let Some(p) = cfg
        .metrics_file
        .as_ref()
        .filter(|p| seen.first(format!("metrics {}", p.display())))
    {
        out.push(metrics(p));
    }
    let ev = format!("evidence {:?}", cfg.evidence.dir.as_ref().ok());
    if seen.first(ev) {
        out.push(evidence(&cfg.evidence.dir));
    }
    if let Some(u) = cfg
        .upload
        .as_ref()
        .filter(|u| seen.first(format!("upload {} {}", u.target.shown(), u.endpoint)))
    {
        // The one check that talks to a server: a HEAD of the bucket, no bundle.
        let (ok, detail) = match crate::ship::check(u) {
            Ok(d) => (true, d),
            Err(e) => (false, e),
        };
        out.push(Check::new("upload", ok, detail));
    }
    out
}

/// One line per check: "  ✓ NAME  DETAIL".
pub fn text(checks: &[Check]) -> String {
    let mut o = String::new();
    for c in checks {
        let mark = if c.ok { "\u{2713}" } else { "\u{2717}" };
        o.push_str(&format!(
            "  {mark} {:<44} {}\n",
            c.check,
            crate::format::escape_controls(&c.detail, false)
        ));
    }
    o
}

/// A secret's value, or why it cannot be read; never shown.
fn resolved(s: &Secret) -> Result<String, String> {
    s.resolve().map_err(|e| e.to_string())
}

/// A URL sink or the ping: its URL resolves and parses.
fn url_check(check: &str, kind: &'static str, url: &Secret) -> Check {
    let shown = url.shown();
    match resolved(url) {
        Err(e) => Check::new(check, false, format!("{shown}: {e}")),
        Ok(u) => match url.checked(&u, |v| crate::config::alerts::check_url(kind, v)) {
            Ok(()) => Check::new(
                check,
                true,
                match url {
                    Secret::Plain(_) => shown,
                    _ => format!(
                        "{shown} resolves to {} (the rest not shown)",
                        crate::config::alerts::redact_url(&u)
                    ),
                },
            ),
            Err(e) if matches!(url, Secret::Plain(_)) => {
                Check::new(check, false, format!("{shown}: {e}"))
            }
            Err(e) => Check::new(check, false, e),
        },
    }
}

/// One sink: its target and its headers.
fn sink(s: &Sink) -> Vec<Check> {
    let name = format!("alert {}", s.label());
    let mut out = vec![match s.kind {
        SinkKind::Webhook | SinkKind::Slack | SinkKind::Alertmanager => {
            url_check(&name, s.kind.name(), &s.target)
        }
        SinkKind::Exec => exec(&name, &s.target),
        SinkKind::Log => log_target(&name, &s.target),
        SinkKind::Email => email(&name, s),
        SinkKind::PagerDuty => pagerduty(&name, s),
    }];
    for (k, v) in &s.headers {
        let check = format!("{name} header {k}");
        out.push(match resolved(v) {
            Ok(value) => match crate::config::alerts::check_header(k, Some(&value)) {
                Ok(()) => Check::new(check, true, format!("{} is set (not shown)", v.shown())),
                Err(e) => Check::new(check, false, e.to_string()),
            },
            Err(e) => Check::new(check, false, format!("{}: {e}", v.shown())),
        });
    }
    out
}

/// An email sink: its addresses resolve and parse, its credentials resolve (not shown), and its
/// server's name resolves (nothing is connected to: a connection would be a delivery attempt).
fn email(check: &str, s: &Sink) -> Check {
    let to = match resolved(&s.target) {
        Ok(t) => t,
        Err(e) => return Check::new(check, false, e),
    };
    if let Err(e) = s
        .target
        .checked(&to, crate::config::alerts::check_addresses)
    {
        return Check::new(check, false, e);
    }
    let to = match &s.target {
        Secret::Plain(_) => to,
        other => format!("the addresses in {} (not shown)", other.shown()),
    };
    for secret in [&s.smtp.username, &s.smtp.password].into_iter().flatten() {
        if let Err(e) = resolved(secret) {
            return Check::new(check, false, format!("{}: {e}", secret.shown()));
        }
    }
    let server = format!("{}:{}", s.smtp.host, s.smtp.port);
    match std::net::ToSocketAddrs::to_socket_addrs(&server) {
        Ok(_) => Check::new(
            check,
            true,
            format!(
                "to {} via {server} ({:?}){}",
                to,
                s.smtp.tls,
                if s.smtp.username.is_some() {
                    ", with AUTH"
                } else {
                    ""
                }
            ),
        ),
        Err(e) => Check::new(check, false, format!("the mail server {server}: {e}")),
    }
}

/// A pagerduty sink: the routing key resolves (not shown), the endpoint parses.
fn pagerduty(check: &str, s: &Sink) -> Check {
    let url = s
        .api_url
        .clone()
        .unwrap_or_else(|| crate::config::alerts::PAGERDUTY_URL.into());
    match resolved(&s.target) {
        Err(e) => Check::new(check, false, e),
        Ok(k) if k.trim().is_empty() => Check::new(check, false, "the routing key is empty"),
        Ok(_) => match crate::config::alerts::check_url("pagerduty", &url) {
            Ok(()) => Check::new(
                check,
                true,
                format!(
                    "routing key set (not shown); events to {}",
                    crate::config::alerts::redact_url(&url)
                ),
            ),
            Err(e) => Check::new(check, false, e.to_string()),
        },
    }
}

/// An exec hook: an absolute path to a regular file guard may execute.
fn exec(check: &str, program: &Secret) -> Check {
    let p = match resolved(program) {
        Ok(p) => p,
        Err(e) => return Check::new(check, false, e),
    };
    let path = Path::new(&p);
    let why = if !path.is_absolute() {
        Some("is not an absolute path")
    } else if !path.exists() {
        Some("does not exist")
    } else if !path.is_file() {
        Some("is not a regular file")
    } else if nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_err() {
        Some("is not executable by guard's user (chmod +x)")
    } else {
        None
    };
    match why {
        Some(w) => Check::new(check, false, format!("{p} {w}")),
        None => Check::new(check, true, format!("{p} is executable")),
    }
}

/// log:syslog and log:journal need their sockets; stderr is always there.
fn log_target(check: &str, target: &Secret) -> Check {
    use std::os::unix::fs::FileTypeExt;
    let socket = match target {
        Secret::Plain(t) if t == "syslog" => crate::os::journal::SYSLOG_SOCKET,
        Secret::Plain(t) if t == "journal" => crate::os::journal::JOURNAL_SOCKET,
        _ => return Check::new(check, true, "stderr"),
    };
    let there = std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket());
    Check::new(
        check,
        there,
        if there {
            format!("{socket} is a socket")
        } else {
            format!("nothing listens at {socket} (is the syslog daemon or journald running?)")
        },
    )
}

/// Free bytes for guard's user in the file system of `dir` (None: unknown).
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available().saturating_mul(s.fragment_size()))
}

/// A directory guard writes to has room.
fn room(dir: &Path) -> Result<String, String> {
    match free_bytes(dir) {
        Some(b) if b < MIN_FREE => Err(format!(
            "only {} free in {} (less than {})",
            crate::config::units::format_size(b),
            dir.display(),
            crate::config::units::format_size(MIN_FREE)
        )),
        Some(b) => Ok(format!("{} free", crate::config::units::format_size(b))),
        None => Ok("free space unknown".into()),
    }
}

/// The metrics file's directory exists, is writable and has room.
fn metrics(p: &Path) -> Check {
    let check = "metrics file";
    if let Err(e) = crate::alert::metrics::check(p) {
        return Check::new(check, false, format!("{}: {e}", p.display()));
    }
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match room(dir) {
        Ok(free) => Check::new(check, true, format!("{}: writable, {free}", p.display())),
        Err(e) => Check::new(check, false, e),
    }
}

/// The evidence directory: as a run would use it (not a symlink, right owner and mode), or —
/// not there yet — creatable; and room for bundles. Nothing is created.
fn evidence(dir: &Result<std::path::PathBuf, crate::config::NoEvidence>) -> Check {
    let check = "evidence directory";
    let d = match dir {
        Ok(d) => d,
        Err(why) => return Check::new(check, true, format!("none: {why}")),
    };
    let (ok, detail) = crate::evidence::bundle::dir_state(d);
    if !ok {
        return Check::new(check, false, detail);
    }
    let existing = d.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    match room(existing) {
        Ok(free) => Check::new(check, true, format!("{detail}; {free}")),
        Err(e) => Check::new(check, false, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(spec: &str) -> Sink {
        Sink::from_cli(spec).unwrap()
    }

    #[test]
    fn secrets_are_resolved_and_never_shown() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("url");
        std::fs::write(&f, "https://hooks.example/T0/B0/s3cr3t\n").unwrap();
        let c = super::sink(&sink(&format!("slack:file:{}", f.display())));
        assert!(c[0].ok, "{c:?}");
        assert!(!c[0].detail.contains("s3cr3t"), "{c:?}");
        assert!(c[0].detail.contains("https://hooks.example/…"), "{c:?}");
        let c = super::sink(&sink("webhook:env:GUARD_TEST_READY_SURELY_UNSET"));
        assert!(!c[0].ok);
        assert!(
            c[0].detail
                .contains("GUARD_TEST_READY_SURELY_UNSET is not set"),
            "{c:?}"
        );
        std::fs::write(&f, "ftp://x").unwrap();
        let c = super::sink(&sink(&format!("webhook:file:{}", f.display())));
        assert!(
            !c[0].ok && c[0].detail.contains("http:// or https://"),
            "{c:?}"
        );
        let c = super::sink(&sink(&format!(
            "webhook:file:{}",
            d.path().join("no").display()
        )));
        assert!(!c[0].ok && c[0].detail.contains("cannot read"), "{c:?}");
    }

    #[test]
    fn hooks_must_be_programs_guard_can_run() {
        let d = tempfile::tempdir().unwrap();
        let hook = d.path().join("page");
        std::fs::write(&hook, "#!/bin/sh\n").unwrap();
        let spec = format!("exec:{}", hook.display());
        let c = super::sink(&sink(&spec));
        assert!(
            !c[0].ok
                && c[0]
                    .detail
                    .ends_with("is not executable by guard's user (chmod +x)")
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(super::sink(&sink(&spec))[0].ok);
        let gone = format!("exec:{}", d.path().join("nope").display());
        assert!(
            super::sink(&sink(&gone))[0]
                .detail
                .ends_with("does not exist")
        );
    }

    #[test]
    fn directories_need_to_be_writable() {
        let c = metrics(Path::new("/nonexistent-dir/x.prom"));
        assert!(!c.ok && c.detail.contains("does not exist"), "{c:?}");
        let d = tempfile::tempdir().unwrap();
        let c = metrics(&d.path().join("x.prom"));
        assert!(c.ok, "{c:?}");
        assert!(c.detail.contains("free"), "{c:?}");
    }
}
