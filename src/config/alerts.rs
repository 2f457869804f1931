//! Sink specifications: from `--alert KIND:TARGET` (split at the first colon) and from
//! `[[alerts]]` tables, validated up front so that a typo is exit 125 before anything runs.
//! Values that are secrets — URLs (a Slack webhook URL is a credential) and header values — may
//! be written `env:NAME` or `file:/path`; they are resolved only when an alert is sent, and a
//! sink's label never shows more of a URL than its scheme, host and port.

use crate::format::EventKind;
use std::path::PathBuf;
use std::time::Duration;

/// Each attempt's bound unless a sink's `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A sink that cannot be used as written (exit 125 before anything runs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "unknown alert kind '{0}': expected webhook, slack, alertmanager, exec, log, email or pagerduty"
    )]
    UnknownKind(String),
    #[error(
        "'{0}' is not KIND:TARGET (webhook:URL, slack:URL, alertmanager:URL, exec:/abs/path, log:stderr|syslog|journal, email:ADDRESS, pagerduty:ROUTING_KEY)"
    )]
    NotKindTarget(String),
    #[error("'{0}' is not an email address (name@example.com; several separated by commas)")]
    NotAddress(String),
    #[error("the mail server must be smtp://HOST[:PORT] or smtps://HOST[:PORT], not '{0}'")]
    NotSmtp(String),
    #[error("tls must be \"starttls\", \"tls\" or \"none\", not '{0}'")]
    SmtpTls(String),
    #[error(
        "tls = \"none\" sends the message (and a password) in the clear: only to a server on this machine (localhost, 127.0.0.1, ::1), not {0}"
    )]
    ClearText(String),
    #[error("username and password go together: give both, or neither")]
    HalfCredentials,
    #[error("{key} is for kind = \"{for_kind}\", not for {kind}")]
    NotForKind {
        key: &'static str,
        for_kind: &'static str,
        kind: &'static str,
    },
    #[error(
        "the routing key is empty or holds spaces: give the integration's key (or env:NAME / file:/path)"
    )]
    RoutingKey,
    #[error(
        "{kind} needs an http:// or https:// URL (or env:NAME / file:/path holding one), not '{shown}'"
    )]
    NotUrl { kind: &'static str, shown: String },
    #[error("not a valid {kind} URL: {why}")]
    BadUrl { kind: &'static str, why: String },
    #[error(
        "header name '{0}' is not valid: use letters, digits and !#$%&'*+-.^_`|~ (like X-Api-Key)"
    )]
    HeaderName(String),
    #[error("the value of header {0} holds a line break or another control character")]
    HeaderValue(String),
    #[error("pass_env: '{0}' is not an environment variable name (letters, digits and _)")]
    EnvName(String),
    #[error("pass_env is for exec hooks: a {0} sink sends no environment")]
    PassEnvNotExec(&'static str),
    #[error("labels are for kind = \"alertmanager\": a {0} sink sends none")]
    LabelsNotAlertmanager(&'static str),
    #[error(
        "label name '{0}' is not valid: use letters, digits and _, not starting with a digit or __ (Prometheus' rule)"
    )]
    LabelName(String),
    #[error("label '{0}' is guard's own (alertname, job, instance, severity): choose another name")]
    LabelTaken(String),
    #[error("the value of label {0} holds a control character")]
    LabelValue(String),
    #[error("exec needs an absolute program path (it runs without a shell), not '{0}'")]
    NotAbsolute(String),
    #[error(transparent)]
    Untrusted(#[from] crate::os::trust::Untrusted),
    #[error("log goes to stderr, syslog or journal, not '{0}'")]
    LogTarget(String),
    #[error("unknown event '{event}': expected {expected}")]
    UnknownEvent { event: String, expected: String },
    #[error("events is empty: name at least one event")]
    NoEvents,
    #[error("timeout must be more than 0")]
    ZeroTimeout,
}

impl SpecError {
    /// The mistake is in the sink's `events`.
    pub fn in_events(&self) -> bool {
        matches!(self, SpecError::UnknownEvent { .. } | SpecError::NoEvents)
    }
}

/// A secret that cannot be read when it is needed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the environment variable {0} is not set")]
    EnvUnset(String),
    #[error("cannot read {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Webhook,
    Slack,
    Alertmanager,
    Exec,
    Log,
    Email,
    PagerDuty,
}

impl SinkKind {
    pub fn parse(s: &str) -> Result<SinkKind, SpecError> {
        Ok(match s {
            "webhook" => SinkKind::Webhook,
            "slack" => SinkKind::Slack,
            "alertmanager" => SinkKind::Alertmanager,
            "exec" => SinkKind::Exec,
            "log" => SinkKind::Log,
            "email" => SinkKind::Email,
            "pagerduty" => SinkKind::PagerDuty,
            other => return Err(SpecError::UnknownKind(other.to_string())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::Alertmanager => "alertmanager",
            SinkKind::Exec => "exec",
            SinkKind::Log => "log",
            SinkKind::Email => "email",
            SinkKind::PagerDuty => "pagerduty",
        }
    }
}

/// A value that may be a secret: as written, or from an environment variable or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    Plain(String),
    Env(String),
    File(PathBuf),
}

impl Secret {
    pub fn parse(s: &str) -> Secret {
        if let Some(n) = s.strip_prefix("env:") {
            Secret::Env(n.to_string())
        } else if let Some(p) = s.strip_prefix("file:") {
            Secret::File(PathBuf::from(p))
        } else {
            Secret::Plain(s.to_string())
        }
    }

    /// The value (read now; a file's trailing newline is dropped).
    pub fn resolve(&self) -> Result<String, SecretError> {
        match self {
            Secret::Plain(s) => Ok(s.clone()),
            Secret::Env(n) => std::env::var(n).map_err(|_| SecretError::EnvUnset(n.clone())),
            Secret::File(p) => read_secret_file(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|source| SecretError::File {
                    path: p.clone(),
                    source,
                }),
        }
    }

    /// Check the resolved `value` with `check`. For env:NAME and file:/path the error names the
    /// reference and says what the value is not — never the value itself (a token mistyped into
    /// a URL's place is still a token).
    pub fn checked<T>(
        &self,
        value: &str,
        check: impl FnOnce(&str) -> Result<T, SpecError>,
    ) -> Result<T, String> {
        check(value).map_err(|e| match self {
            Secret::Plain(_) => e.to_string(),
            _ => format!("{} {}", self.shown(), e.of_secret()),
        })
    }

    /// How to show it: never the value of a secret.
    pub fn shown(&self) -> String {
        match self {
            Secret::Plain(s) => redact_url(s),
            Secret::Env(n) => format!("env:{n}"),
            Secret::File(p) => format!("file:{}", p.display()),
        }
    }
}

/// The largest secret file guard reads (a URL or a token is a few hundred bytes).
const MAX_SECRET: u64 = 64 << 10;

/// A `file:` secret: a regular file (a FIFO or a device would block or never end; opened
/// without blocking, then refused), at most MAX_SECRET bytes.
fn read_secret_file(p: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, a device, a directory)",
        ));
    }
    if m.len() > MAX_SECRET {
        return Err(std::io::Error::other("larger than 64 KiB: not a secret"));
    }
    let mut s = String::new();
    f.take(MAX_SECRET).read_to_string(&mut s)?;
    Ok(s)
}

impl SpecError {
    /// What a secret's value is not, without the value (see [`Secret::checked`]).
    pub fn of_secret(&self) -> String {
        match self {
            SpecError::NotUrl { kind, .. } => format!(
                "does not hold an http:// or https:// URL for {kind} (its content is not shown)"
            ),
            SpecError::BadUrl { kind, why } => {
                format!("does not hold a valid {kind} URL: {why} (its content is not shown)")
            }
            SpecError::NotAddress(_) => "does not hold email addresses (name@example.com; several \
                                        separated by commas; its content is not shown)"
                .into(),
            SpecError::HeaderValue(_) => {
                "holds a line break or another control character (its content is not shown)".into()
            }
            other => format!("does not hold a valid value ({})", other.kind_only()),
        }
    }

    /// The error's kind in a few words, for a value that must not be shown.
    fn kind_only(&self) -> &'static str {
        match self {
            SpecError::NotSmtp(_) | SpecError::SmtpTls(_) | SpecError::ClearText(_) => {
                "a mail server setting"
            }
            SpecError::RoutingKey => "a routing key",
            _ => "see guard.toml(5)",
        }
    }
}

/// An http(s) URL with a host, a valid port and nothing malformed (`http://[::1`, port 99999):
/// caught when guard starts, not when the alert is due. `kind` names the sink in the message.
pub fn check_url(kind: &'static str, u: &str) -> Result<(), SpecError> {
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(SpecError::NotUrl {
            kind,
            shown: redact_url(u),
        });
    }
    let bad = |why: String| SpecError::BadUrl { kind, why };
    let parsed = url::Url::parse(u).map_err(|e| bad(e.to_string()))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host".into()));
    }
    Ok(())
}

/// A header name is an HTTP token; a value (when known now: not env:/file:) has no control
/// character but tab — a CR or LF would let it add headers of its own.
pub fn check_header(name: &str, value: Option<&str>) -> Result<(), SpecError> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Err(SpecError::HeaderName(
            crate::format::escape_controls(name, false).into_owned(),
        ));
    }
    if value.is_some_and(|v| v.chars().any(|c| c.is_control() && c != '\t')) {
        return Err(SpecError::HeaderValue(name.to_string()));
    }
    Ok(())
}

/// `pass_env` names: environment variable names, for an exec sink only.
pub fn check_pass_env(kind: SinkKind, names: &[String]) -> Result<(), SpecError> {
    if names.is_empty() {
        return Ok(());
    }
    if kind != SinkKind::Exec {
        return Err(SpecError::PassEnvNotExec(kind.name()));
    }
    let ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match names.iter().find(|n| !ok(n)) {
        Some(bad) => Err(SpecError::EnvName(
            crate::format::escape_controls(bad, false).into_owned(),
        )),
        None => Ok(()),
    }
}

/// Alertmanager `labels`: Prometheus label names (not `__`-prefixed, not guard's own labels),
/// values without control characters; for an alertmanager sink only.
pub fn check_labels(kind: SinkKind, labels: &[(String, String)]) -> Result<(), SpecError> {
    if labels.is_empty() {
        return Ok(());
    }
    if kind != SinkKind::Alertmanager {
        return Err(SpecError::LabelsNotAlertmanager(kind.name()));
    }
    let esc = |s: &str| crate::format::escape_controls(s, false).into_owned();
    for (k, v) in labels {
        let ok = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && !k.starts_with("__")
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(SpecError::LabelName(esc(k)));
        }
        if ["alertname", "job", "instance", "severity"].contains(&k.as_str()) {
            return Err(SpecError::LabelTaken(k.clone()));
        }
        if v.chars().any(char::is_control) {
            return Err(SpecError::LabelValue(k.clone()));
        }
    }
    Ok(())
}

/// `scheme://host:port/…`: the path and query of a URL can be a credential (Slack, tokens).
pub fn redact_url(u: &str) -> String {
    match u.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host); // user:pass@ too
            if rest.len() > host.len() {
                format!("{scheme}://{host}/…")
            } else {
                format!("{scheme}://{host}")
            }
        }
        None => u.to_string(),
    }
}

/// How the email sink protects its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    StartTls,
    /// TLS from the first byte (smtps, port 465).
    Tls,
    /// No TLS: only to a server on this machine (the local MTA).
    None,
}

impl SmtpTls {
    pub fn parse(s: &str) -> Result<SmtpTls, SpecError> {
        match s {
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Tls),
            "none" => Ok(SmtpTls::None),
            other => Err(SpecError::SmtpTls(other.to_string())),
        }
    }
}

/// The email sink's server and sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// AUTH (PLAIN or LOGIN, over TLS): both or neither.
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    /// The From address (default guard@HOSTNAME).
    pub from: Option<String>,
}

/// The email sink's server when only `email:ADDRESS` is given: the local MTA, as mail(1) uses.
impl Default for Smtp {
    fn default() -> Smtp {
        Smtp {
            host: "localhost".into(),
            port: 25,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: None,
        }
    }
}

fn loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

impl Smtp {
    /// `url` (smtp://HOST[:PORT], smtps://…), `tls` (default: starttls; tls for smtps),
    /// credentials and sender, checked.
    pub fn new(
        url: Option<&str>,
        tls: Option<&str>,
        username: Option<&str>,
        password: Option<&str>,
        from: Option<&str>,
    ) -> Result<Smtp, SpecError> {
        let mut s = Smtp::default();
        if let Some(u) = url {
            let parsed = url::Url::parse(u).map_err(|_| SpecError::NotSmtp(redact_url(u)))?;
            let (default_port, default_tls) = match parsed.scheme() {
                "smtp" => (587, SmtpTls::StartTls),
                "smtps" => (465, SmtpTls::Tls),
                _ => return Err(SpecError::NotSmtp(redact_url(u))),
            };
            s.host = parsed
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| SpecError::NotSmtp(redact_url(u)))?
                .to_string();
            s.port = parsed.port().unwrap_or(default_port);
            s.tls = default_tls;
        }
        if let Some(t) = tls {
            s.tls = SmtpTls::parse(t)?;
        }
        if s.tls == SmtpTls::None && !loopback(&s.host) {
            return Err(SpecError::ClearText(s.host));
        }
        match (username, password) {
            (Some(u), Some(p)) => {
                s.username = Some(Secret::parse(u));
                s.password = Some(Secret::parse(p));
            }
            (None, None) => {}
            _ => return Err(SpecError::HalfCredentials),
        }
        if let Some(f) = from {
            check_addresses(f)?;
            s.from = Some(f.to_string());
        }
        Ok(s)
    }
}

/// One address or several separated by commas, each `name@domain`.
pub fn check_addresses(list: &str) -> Result<(), SpecError> {
    let bad = || SpecError::NotAddress(crate::format::escape_controls(list, false).into_owned());
    let parts: Vec<&str> = list.split(',').map(str::trim).collect();
    if parts.iter().any(|a| a.parse::<lettre::Address>().is_err()) {
        return Err(bad());
    }
    Ok(())
}

/// The Events API v2 endpoint (a `url` in the sink's table replaces it, e.g. for a proxy or the
/// EU service region).
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// A validated sink.
#[derive(Debug, Clone)]
pub struct Sink {
    pub kind: SinkKind,
    /// URL (webhook, slack, alertmanager), program (exec), or "stderr" / "syslog" / "journal" (log).
    pub target: Secret,
    /// Extra arguments for exec.
    pub args: Vec<String>,
    pub events: Vec<EventKind>,
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
    /// exec: names of guard's environment variables the hook gets besides GUARD_* and PATH,
    /// HOME, LANG, LC_ALL, TZ (`pass_env` in an `[[alerts]]` table).
    pub pass_env: Vec<String>,
    /// alertmanager: labels added to guard's own (`labels` in an `[[alerts]]` table).
    pub labels: Vec<(String, String)>,
    /// email: the server, TLS, credentials and sender.
    pub smtp: Smtp,
    /// pagerduty: where events go (default PAGERDUTY_URL).
    pub api_url: Option<String>,
}

/// Events a sink gets when it names none: all but `failed` (opt-in).
pub fn default_events() -> Vec<EventKind> {
    EventKind::ALERTS
        .into_iter()
        .filter(|e| *e != EventKind::Failed)
        .collect()
}

/// A sink's `events`: at least one, each an alert event.
fn parse_events(names: &[String]) -> Result<Vec<EventKind>, SpecError> {
    if names.is_empty() {
        return Err(SpecError::NoEvents);
    }
    names
        .iter()
        .map(|e| {
            EventKind::alert_event(e).ok_or_else(|| SpecError::UnknownEvent {
                event: e.clone(),
                expected: EventKind::alert_names(),
            })
        })
        .collect()
}

impl Sink {
    /// Validate a sink. `target` is the URL / program / log destination as written.
    pub fn new(
        kind: SinkKind,
        target: &str,
        args: Vec<String>,
        events: Option<Vec<String>>,
        headers: Vec<(String, String)>,
        timeout: Option<Duration>,
    ) -> Result<Sink, SpecError> {
        let target_secret = Secret::parse(target);
        match kind {
            SinkKind::Webhook | SinkKind::Slack | SinkKind::Alertmanager => {
                if let Secret::Plain(u) = &target_secret {
                    check_url(kind.name(), u)?;
                }
            }
            SinkKind::Exec => {
                if !target.starts_with('/') {
                    return Err(SpecError::NotAbsolute(target.to_string()));
                }
                crate::os::trust::check(
                    std::path::Path::new(target),
                    crate::os::trust::Use::Program,
                )?;
            }
            SinkKind::Log => {
                if !matches!(target, "stderr" | "syslog" | "journal") {
                    return Err(SpecError::LogTarget(target.to_string()));
                }
            }
            SinkKind::Email => {
                if let Secret::Plain(a) = &target_secret {
                    check_addresses(a)?;
                }
            }
            SinkKind::PagerDuty => {
                if let Secret::Plain(k) = &target_secret {
                    if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return Err(SpecError::RoutingKey);
                    }
                }
            }
        }
        let events = match events {
            None => default_events(),
            Some(v) => parse_events(&v)?,
        };
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(SpecError::ZeroTimeout);
        }
        for (k, v) in &headers {
            let plain = matches!(Secret::parse(v), Secret::Plain(_));
            check_header(k, plain.then_some(v.as_str()))?;
        }
        Ok(Sink {
            kind,
            target: target_secret,
            args,
            events,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k, Secret::parse(&v)))
                .collect(),
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            pass_env: Vec::new(),
            labels: Vec::new(),
            smtp: Smtp::default(),
            api_url: None,
        })
    }

    /// `--alert KIND:TARGET`.
    pub fn from_cli(spec: &str) -> Result<Sink, SpecError> {
        let Some((kind, target)) = spec.split_once(':') else {
            return Err(SpecError::NotKindTarget(redact_url(spec)));
        };
        Sink::new(
            SinkKind::parse(kind)?,
            target,
            Vec::new(),
            None,
            Vec::new(),
            None,
        )
    }

    /// Whether the sink gets `event`: the ones its `events` name, and every drill (`guard drill`
    /// checks every sink, whatever it is for).
    pub fn wants(&self, event: EventKind) -> bool {
        event == EventKind::Drill || self.events.contains(&event)
    }

    /// For messages and the manifest: kind and where, without secrets.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind.name(), self.target.shown())
    }

    /// Network sinks retry; exec and log do not.
    pub fn retries(&self) -> bool {
        matches!(
            self.kind,
            SinkKind::Webhook
                | SinkKind::Slack
                | SinkKind::Alertmanager
                | SinkKind::Email
                | SinkKind::PagerDuty
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_specs() {
        let s = Sink::from_cli("alertmanager:http://127.0.0.1:9093").unwrap();
        assert_eq!(s.kind, SinkKind::Alertmanager);
        assert!(
            !s.wants(EventKind::Failed)
                && s.wants(EventKind::MemoryLimit)
                && s.wants(EventKind::Warning)
        );
        let s = Sink::from_cli("slack:https://hooks.slack.com/services/T0/B0/secret").unwrap();
        assert_eq!(s.label(), "slack https://hooks.slack.com/…");
        let s = Sink::from_cli("webhook:env:HOOK_URL").unwrap();
        assert_eq!(s.target, Secret::Env("HOOK_URL".into()));
        assert_eq!(s.label(), "webhook env:HOOK_URL");
        assert!(Sink::from_cli("exec:/usr/local/bin/page").is_ok());
        assert!(Sink::from_cli("log:syslog").is_ok());
        assert!(Sink::from_cli("log:journal").is_ok());
        for bad in [
            "exec:page",
            "log:file",
            "pager:x",
            "webhook:ftp://x",
            "nocolon",
        ] {
            assert!(Sink::from_cli(bad).is_err(), "{bad}");
        }
        assert_eq!(redact_url("https://u:p@h:1/x?y"), "https://h:1/…");
    }

    #[test]
    fn email_and_pagerduty_sinks_are_checked() {
        let s = Sink::from_cli("email:ops@example.com, dba@example.com").unwrap();
        assert_eq!(s.kind, SinkKind::Email);
        assert_eq!(s.smtp, Smtp::default(), "email:ADDRESS: the local MTA");
        assert!(Sink::from_cli("email:not an address").is_err());
        assert!(Sink::from_cli("pagerduty:env:PD_KEY").is_ok());
        assert!(matches!(
            Sink::from_cli("pagerduty:has space"),
            Err(SpecError::RoutingKey)
        ));
        let m = Smtp::new(
            Some("smtp://mail.example.com"),
            None,
            Some("u"),
            Some("env:P"),
            None,
        )
        .unwrap();
        assert_eq!((m.port, m.tls), (587, SmtpTls::StartTls));
        let m = Smtp::new(Some("smtps://mail.example.com"), None, None, None, None).unwrap();
        assert_eq!((m.port, m.tls), (465, SmtpTls::Tls));
        assert!(matches!(
            Smtp::new(
                Some("smtp://mail.example.com"),
                Some("none"),
                None,
                None,
                None
            ),
            Err(SpecError::ClearText(_))
        ));
        assert!(
            Smtp::new(
                Some("smtp://127.0.0.1:2525"),
                Some("none"),
                None,
                None,
                None
            )
            .is_ok()
        );
        assert!(matches!(
            Smtp::new(Some("smtp://h"), None, Some("u"), None, None),
            Err(SpecError::HalfCredentials)
        ));
        assert!(matches!(
            Smtp::new(Some("http://h"), None, None, None, None),
            Err(SpecError::NotSmtp(_))
        ));
    }

    #[test]
    fn alertmanager_labels_are_checked() {
        let am = SinkKind::Alertmanager;
        let l = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(check_labels(am, &l("team", "ops")).is_ok());
        assert!(check_labels(am, &l("_x1", "")).is_ok());
        for bad in ["1x", "__meta", "a-b", ""] {
            assert!(
                matches!(check_labels(am, &l(bad, "v")), Err(SpecError::LabelName(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            check_labels(am, &l("job", "v")),
            Err(SpecError::LabelTaken(_))
        ));
        assert!(matches!(
            check_labels(am, &l("a", "x\ny")),
            Err(SpecError::LabelValue(_))
        ));
        assert!(matches!(
            check_labels(SinkKind::Webhook, &l("team", "ops")),
            Err(SpecError::LabelsNotAlertmanager("webhook"))
        ));
    }

    #[test]
    fn events_are_checked() {
        let e = Sink::new(
            SinkKind::Log,
            "stderr",
            vec![],
            Some(vec!["oom".into()]),
            vec![],
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown event 'oom'"), "{e}");
        assert!(e.in_events());
    }

    #[test]
    fn secrets_resolve_late() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tok");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(
            Secret::parse(&format!("file:{}", f.display()))
                .resolve()
                .unwrap(),
            "s3cret"
        );
        assert!(
            Secret::parse("env:GUARD_TEST_SURELY_UNSET_VAR")
                .resolve()
                .is_err()
        );
        // A FIFO is refused at once, not waited on.
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = Secret::parse(&format!("file:{}", fifo.display()))
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
