//! One attempt at one sink. HTTP sinks use ureq (rustls for HTTPS) with the sink's timeout for
//! the whole request; 2xx is success, 429 / 5xx / connection and timeout errors are retriable,
//! other statuses are final, and a redirect is never followed (a 3xx is a final failure). exec runs an absolute program without a shell, the event in its
//! environment; log writes one logfmt line to stderr or to syslog.

use super::spec::{Secret, Sink, SinkKind};
use super::{AttemptError, Event};
use crate::config::units::format_size;
use crate::format::{EventKind, Status};
use serde_json::json;

/// Send `ev` to `s` once.
pub fn send(s: &Sink, ev: &Event) -> Result<(), AttemptError> {
    match s.kind {
        SinkKind::Webhook => post(s, &s.target, serde_json::to_value(ev).unwrap_or_default()),
        SinkKind::Slack => post(s, &s.target, slack_body(ev)),
        SinkKind::Alertmanager => {
            let base = s
                .target
                .resolve()
                .map_err(|e| AttemptError::Final(e.to_string()))?;
            let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
            post(s, &Secret::Plain(url), alertmanager_body(ev, &s.labels))
        }
        SinkKind::Exec => exec(s, ev),
        SinkKind::Log => log_line(s, ev).map_err(|e| AttemptError::Final(e.to_string())),
        SinkKind::Email => super::email::send(s, ev),
        SinkKind::PagerDuty => super::pagerduty::send(s, ev),
    }
}

/// POST a plain-text body to `url` + `suffix` (healthchecks pings), with `rid=RID` added to the
/// URL's query (healthchecks pairs a start with its end by it).
pub fn post_text(
    url: &Secret,
    suffix: &str,
    rid: &str,
    body: &str,
    timeout: std::time::Duration,
) -> Result<(), AttemptError> {
    let base = url
        .resolve()
        .map_err(|e| AttemptError::Final(e.to_string()))?;
    let full = ping_url(&base, suffix, rid);
    classify(
        agent(timeout)
            .post(&full)
            .set("Content-Type", "text/plain; charset=utf-8")
            .send_string(body),
    )
}

/// `base` + `suffix`, its query kept, `rid=RID` added: `https://hc-ping.com/KEY/start?rid=…`,
/// `https://hc/ping/KEY/slug/137?create=1&rid=…`.
pub fn ping_url(base: &str, suffix: &str, rid: &str) -> String {
    let (path, query) = match base.split_once('?') {
        Some((p, q)) if !q.is_empty() => (p, format!("{q}&")),
        Some((p, _)) => (p, String::new()),
        None => (base, String::new()),
    };
    format!("{}{suffix}?{query}rid={rid}", path.trim_end_matches('/'))
}

/// The HTTP client for one attempt: the whole request within `timeout`, and no redirect
/// followed. Following one would send the alert's headers (an `X-Api-Key`, an `Authorization`)
/// to wherever the endpoint points, and turn the POST into a GET without its body that still
/// counts as delivered; a 3xx is a failed delivery naming where it pointed, so that the URL in
/// the configuration gets fixed.
fn agent(timeout: std::time::Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .tls_config(tls_config())
        .timeout(timeout)
        .redirects(0)
        .user_agent(concat!("guard/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn classify(r: Result<ureq::Response, ureq::Error>) -> Result<(), AttemptError> {
    match r {
        Ok(resp) if (300..400).contains(&resp.status()) => Err(AttemptError::Final(redirected(
            resp.status(),
            resp.header("location"),
        ))),
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, _)) if code == 429 || code >= 500 => {
            Err(AttemptError::Retriable(format!("HTTP {code}")))
        }
        Err(ureq::Error::Status(code, _)) => Err(AttemptError::Final(format!("HTTP {code}"))),
        // A URL that does not parse fails the same way every time: not retried.
        Err(ureq::Error::Transport(t))
            if matches!(
                t.kind(),
                ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme
            ) =>
        {
            Err(AttemptError::Final(t.kind().to_string()))
        }
        Err(ureq::Error::Transport(t)) => Err(AttemptError::Retriable(
            // the transport error may quote the URL: keep secrets out of messages
            t.kind().to_string(),
        )),
    }
}

/// "HTTP 302 redirect to https://other.example/path, not followed: …" — the Location without
/// its query (it may carry a token) and with any credentials masked, control characters escaped.
fn redirected(code: u16, location: Option<&str>) -> String {
    let place = match location {
        Some(l) => {
            let (base, query) = l.split_once('?').map_or((l, false), |(b, _)| (b, true));
            let shown: String = crate::evidence::redact::mask_url_credentials(base)
                .chars()
                .flat_map(char::escape_debug)
                .take(200)
                .collect();
            format!(" to {shown}{}", if query { "?…" } else { "" })
        }
        None => " without a Location".to_string(),
    };
    format!(
        "HTTP {code} redirect{place}, not followed (guard sends only to the configured URL: configure the one it points to)"
    )
}

/// POST `body` as JSON to `url` with the sink's headers and timeout.
pub fn post(s: &Sink, url: &Secret, body: serde_json::Value) -> Result<(), AttemptError> {
    let url = url
        .resolve()
        .map_err(|e| AttemptError::Final(e.to_string()))?;
    let mut req = agent(s.timeout)
        .post(&url)
        .set("Content-Type", "application/json");
    for (k, v) in &s.headers {
        let v = v
            .resolve()
            .map_err(|e| AttemptError::Final(format!("header {k}: {e}")))?;
        // Read now from env:/file:: a CR or LF would let the value add headers of its own.
        super::spec::check_header(k, Some(&v)).map_err(|e| AttemptError::Final(e.to_string()))?;
        req = req.set(k, &v);
    }
    classify(req.send_string(&body.to_string()))
}

/// TLS roots: Mozilla's (built in, so HTTPS to Slack works in a container without a CA store)
/// plus the system's (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), so an internal CA
/// in front of Alertmanager works too. Built once, when the first alert goes out.
fn tls_config() -> std::sync::Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                log::debug!("TLS: system root certificates: {e}");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            log::debug!("TLS: {added} system root certificates ({ignored} ignored)");
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = match rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
            {
                Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
                // ring supports the default versions; this arm is for a future provider change.
                Err(_) => rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            };
            std::sync::Arc::new(config)
        })
        .clone()
}

/// The last `n` characters of `t` (output tails shown in chat and alert annotations).
fn last_chars(t: &str, n: usize) -> String {
    let count = t.chars().count();
    t.chars().skip(count.saturating_sub(n)).collect()
}

fn size(v: Option<u64>) -> String {
    v.map(format_size).unwrap_or_else(|| "unknown".into())
}

/// The one-paragraph summary every sink carries: what happened on which host, how memory
/// grew, what holds it, where the evidence is.
pub fn summary(ev: &Event) -> String {
    let finding = ev
        .finding
        .as_deref()
        .map(|f| format!(" What holds the memory: {}.", one_line(f)))
        .unwrap_or_default();
    let bundle = ev
        .bundle
        .as_deref()
        .map(|b| format!(" Evidence: {b} (guard report {b})."))
        .unwrap_or_default();
    let runbook = ev
        .runbook
        .as_deref()
        .map(|r| format!(" Runbook: {r}."))
        .unwrap_or_default();
    format!("{}{finding}{runbook}{bundle}", headline(ev))
}

/// The job's command line as one line of text: its control characters escaped as `guard report`
/// shows them (`\r`, `\n` as `\x0d`, `\x0a`), so an argument cannot forge a line of an alert's
/// body — a runbook, an evidence path.
pub fn command_text(ev: &Event) -> String {
    crate::format::escape_controls(&ev.command.join(" "), false).into_owned()
}

/// Text from the job (the census's finding: names from its heap) on one line.
pub fn one_line(s: &str) -> String {
    crate::format::escape_controls(s, false).into_owned()
}

/// The job's output: its lines kept, every other control character escaped (a carriage return
/// could otherwise overwrite what a terminal shows of the line before).
pub fn output_text(s: &str) -> String {
    crate::format::escape_controls(s, true).into_owned()
}

fn is_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// The summary's first part: what happened to the job, on which host, with its command and
/// how its memory grew.
fn headline(ev: &Event) -> String {
    let what = match ev.event {
        EventKind::MemoryLimit => match &ev.held_until {
            Some(until) => format!(
                "{} exceeded its memory limit {} (peak {}) and is held frozen until {until} for debugging, then killed ('guard kill {}' on {} ends the hold now)",
                ev.job,
                size(ev.limit_bytes),
                size(ev.peak_bytes),
                ev.job,
                ev.host
            ),
            None => match &ev.thrashing {
                Some(t) => format!(
                    "{} exceeded its memory limit {} (peak {}), thrashing at its memory limit \
                     {}, and was killed",
                    ev.job,
                    size(ev.limit_bytes),
                    size(ev.peak_bytes),
                    t.describe()
                ),
                None => format!(
                    "{} exceeded its memory limit {} (peak {}) and was killed",
                    ev.job,
                    size(ev.limit_bytes),
                    size(ev.peak_bytes)
                ),
            },
        },
        EventKind::Warning => format!(
            "{} crossed its early-warning threshold (peak so far {} of a {} limit); it keeps running",
            ev.job,
            size(ev.peak_bytes),
            size(ev.limit_bytes)
        ),
        EventKind::KernelOom => format!("{} was killed by the kernel's OOM killer", ev.job),
        EventKind::Failed => format!(
            "{} failed (exit status {})",
            ev.job,
            ev.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "?".into())
        ),
        EventKind::Timeout => format!("{} exceeded its time limit and was killed", ev.job),
        EventKind::Drill => format!(
            "guard drill for {}: a rehearsal, not a failure of the job — guard's allocator reached the job's memory limit {} (peak {}) and was killed as the job would be",
            ev.job,
            size(ev.limit_bytes),
            size(ev.peak_bytes)
        ),
        other => format!("{}: {other}", ev.job),
    };
    format!(
        "{what} on {} (pid {}, command: {}).{}",
        ev.host,
        ev.pid,
        command_text(ev),
        growth_sentence(ev)
    )
}

/// " Memory: growing 12.3 MB/s over the last 10 s; the cap in ~2 min." for a warning; for a
/// kill also the shape: " Growth: steady growth, a leak's shape (10.2 MB/s over the last 10 s)."
fn growth_sentence(ev: &Event) -> String {
    let Some(g) = ev.growth else {
        return String::new();
    };
    match (ev.event, g.shape) {
        (EventKind::Warning, _) | (_, None) => {
            format!(" Memory: {}.", crate::evidence::growth::describe(&g))
        }
        (_, Some(shape)) => format!(
            " Growth: {} ({:.1} MB/s over the last {:.1} s).",
            crate::evidence::growth::shape_text(shape),
            g.bytes_per_second / 1e6,
            g.window_ms as f64 / 1000.0
        ),
    }
}

/// Slack: the title as the notification text; in the message the summary's headline once,
/// what holds the memory, the numbers, where the evidence is, the end of the output.
fn slack_body(ev: &Event) -> serde_json::Value {
    let title = match ev.event {
        EventKind::MemoryLimit if ev.held_until.is_some() => {
            format!(":ice_cube: {} held at its memory limit", ev.job)
        }
        EventKind::MemoryLimit if ev.thrashing.is_some() => {
            format!(
                ":rotating_light: {} killed thrashing at its memory limit",
                ev.job
            )
        }
        EventKind::MemoryLimit => format!(":rotating_light: {} killed at its memory limit", ev.job),
        EventKind::Warning => format!(":warning: {} near its memory limit", ev.job),
        EventKind::KernelOom => format!(
            ":rotating_light: {} killed by the kernel OOM killer",
            ev.job
        ),
        EventKind::Failed => format!(":x: {} failed", ev.job),
        EventKind::Timeout => format!(":hourglass: {} timed out", ev.job),
        EventKind::Drill => format!(":test_tube: guard drill for {}", ev.job),
        other => format!("{}: {other}", ev.job),
    };
    let mut context = vec![format!("host *{}*", ev.host), format!("pid {}", ev.pid)];
    if let Some(l) = ev.limit_bytes {
        context.push(format!("limit {}", format_size(l)));
    }
    if let Some(p) = ev.peak_bytes {
        context.push(format!("peak {}", format_size(p)));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": headline(ev)}}),
    ];
    if let Some(f) = &ev.finding {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*What holds the memory:* {}", one_line(f))}}));
    }
    if let Some(r) = &ev.runbook {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Runbook:* {r}")}}));
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]}),
    );
    if let Some(b) = &ev.bundle {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("Evidence: `{b}` (`guard report` it on {})", ev.host)}}));
    }
    if let Some(t) = ev.output_tail.as_deref().filter(|t| !t.trim().is_empty()) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("Last output:\n```{}```", output_text(&last_chars(t, 1500)))}}));
    }
    json!({"text": format!("{title} on {}", ev.host), "blocks": blocks})
}

/// Alertmanager: guard's labels and the sink's extra ones, the summary, the bundle, the
/// runbook (runbook_url when it is a URL), the output tail.
fn alertmanager_body(ev: &Event, extra: &[(String, String)]) -> serde_json::Value {
    let now = std::time::SystemTime::now();
    let mut alert = json!({
        "labels": {
            "alertname": ev.alertname(),
            "job": ev.job,
            "instance": ev.host,
            "severity": ev.severity(),
        },
        "annotations": {
            "summary": ev.summary,
        },
        "startsAt": humantime::format_rfc3339_millis(now).to_string(),
    });
    if let Some(b) = &ev.bundle {
        alert["annotations"]["bundle"] = json!(b);
    }
    if let Some(u) = &ev.held_until {
        alert["annotations"]["held_until"] = json!(u);
    }
    if let Some(r) = &ev.runbook {
        let key = if is_url(r) { "runbook_url" } else { "runbook" };
        alert["annotations"][key] = json!(r);
    }
    for (k, v) in extra {
        alert["labels"][k] = json!(v);
    }
    if let Some(t) = ev.output_tail.as_deref().filter(|t| !t.trim().is_empty()) {
        alert["annotations"]["output"] = json!(output_text(&last_chars(t, 1000)));
    }
    // A warning is a moment, not a state: it resolves itself.
    if matches!(ev.event, EventKind::Warning | EventKind::Drill) {
        alert["endsAt"] = json!(
            humantime::format_rfc3339_millis(now + std::time::Duration::from_secs(15 * 60))
                .to_string()
        );
    }
    json!([alert])
}

fn exec(s: &Sink, ev: &Event) -> Result<(), AttemptError> {
    let program = s
        .target
        .resolve()
        .map_err(|e| AttemptError::Final(e.to_string()))?;
    // Checked again as it runs: the file may have changed since the start.
    crate::os::trust::check(
        std::path::Path::new(&program),
        crate::os::trust::Use::Program,
    )
    .map_err(|e| AttemptError::Final(e.to_string()))?;
    let mut env: Vec<(String, String)> = guard_fields(ev)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain([("GUARD_SUMMARY".to_string(), ev.summary.clone())])
        .collect();
    env.extend(hook_environment(&s.pass_env));
    let ran = crate::os::runner::run_bounded(
        std::path::Path::new(&program),
        &s.args,
        crate::os::runner::Env::Only(&env),
        s.timeout,
    );
    match ran.status {
        Status::Ok => Ok(()),
        _ => Err(AttemptError::Final(ran.detail)),
    }
}

/// What an exec hook gets of guard's environment besides the event's GUARD_* variables.
pub const HOOK_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

/// PATH when guard has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// [`HOOK_ENV`] and the sink's `pass_env` names, as far as guard has them set.
fn hook_environment(pass: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = HOOK_ENV
        .iter()
        .copied()
        .chain(pass.iter().map(String::as_str))
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    out
}

/// A logfmt value: quoted when it holds a space, a quote, '=' or any control character, with
/// backslash, quote, newline, carriage return and tab escaped (\\ \" \n \r \t) and other control
/// characters as \u{..}, so that one event is always one line.
fn logfmt_value(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '"', '=', '\\']) && !v.contains(char::is_control) {
        return v.to_string();
    }
    let mut o = String::with_capacity(v.len() + 2);
    o.push('"');
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if c.is_control() => o.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `event=... job=... host=... pid=... limit_bytes=... peak_bytes=... bundle=... summary="..."`
pub fn logfmt(ev: &Event) -> String {
    let mut parts = vec![
        ("event", ev.event.as_str().to_string()),
        ("job", ev.job.clone()),
        ("host", ev.host.clone()),
        ("pid", ev.pid.to_string()),
    ];
    if let Some(l) = ev.limit_bytes {
        parts.push(("limit_bytes", l.to_string()));
    }
    if let Some(p) = ev.peak_bytes {
        parts.push(("peak_bytes", p.to_string()));
    }
    if let Some(b) = &ev.bundle {
        parts.push(("bundle", b.clone()));
    }
    if let Some(r) = &ev.runbook {
        parts.push(("runbook", r.clone()));
    }
    parts.push(("summary", ev.summary.clone()));
    parts
        .into_iter()
        .map(|(k, v)| format!("{k}={}", logfmt_value(&v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn log_line(s: &Sink, ev: &Event) -> Result<(), super::local::LocalLogError> {
    use super::local;
    let line = logfmt(ev);
    // syslog severities: 2 critical, 4 warning.
    let priority = if ev.severity() == "critical" { 2 } else { 4 };
    match &s.target {
        Secret::Plain(t) if t == "syslog" => local::send_syslog(
            std::path::Path::new(local::SYSLOG_SOCKET),
            priority,
            &format!("guard: {line}"),
        ),
        Secret::Plain(t) if t == "journal" => {
            let fields = journal_fields(ev, priority);
            let borrowed: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            local::send_journal(std::path::Path::new(local::JOURNAL_SOCKET), &borrowed)
        }
        _ => {
            eprintln!("guard: alert {line}");
            Ok(())
        }
    }
}

/// A journal entry for `ev`: MESSAGE (the summary), PRIORITY, MESSAGE_ID, SYSLOG_IDENTIFIER and
/// the GUARD_* fields.
fn journal_fields(ev: &Event, priority: u8) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("MESSAGE", format!("guard: {}", summary(ev))),
        ("PRIORITY", priority.to_string()),
        ("MESSAGE_ID", super::local::message_id(ev.event).to_string()),
        ("SYSLOG_IDENTIFIER", "guard".to_string()),
    ];
    fields.extend(guard_fields(ev));
    fields
}

/// The GUARD_* fields of an event: an exec hook's environment, a journal entry's fields.
fn guard_fields(ev: &Event) -> Vec<(&'static str, String)> {
    let opt = |v: Option<u64>| v.map(|b| b.to_string()).unwrap_or_default();
    vec![
        ("GUARD_EVENT", ev.event.as_str().to_string()),
        ("GUARD_JOB", ev.job.clone()),
        ("GUARD_PID", ev.pid.to_string()),
        ("GUARD_BUNDLE", ev.bundle.clone().unwrap_or_default()),
        ("GUARD_LIMIT_BYTES", opt(ev.limit_bytes)),
        ("GUARD_PEAK_BYTES", opt(ev.peak_bytes)),
        ("GUARD_HOST", ev.host.clone()),
    ]
    .into_iter()
    .chain(ev.held_until.clone().map(|u| ("GUARD_HELD_UNTIL", u)))
    .chain(ev.runbook.clone().map(|r| ("GUARD_RUNBOOK", r)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Event {
        let mut e = crate::alert::sample_event();
        e.summary = summary(&e);
        e
    }

    #[test]
    fn summaries_carry_the_forecast_or_the_shape() {
        let mut w = ev();
        w.event = EventKind::Warning;
        w.growth = Some(crate::format::Forecast {
            bytes_per_second: 12.3e6,
            window_ms: 10_000,
            time_to_limit_ms: Some(118_000),
            shape: Some(crate::format::Shape::Steady),
        });
        assert!(
            summary(&w)
                .contains(". Memory: growing 12.3 MB/s over the last 10 s; the cap in ~2 min."),
            "{}",
            summary(&w)
        );
        let mut k = w.clone();
        k.event = EventKind::MemoryLimit;
        assert!(
            summary(&k).contains(
                ". Growth: steady growth, a leak's shape (12.3 MB/s over the last 10.0 s)."
            ),
            "{}",
            summary(&k)
        );
        assert!(!summary(&ev()).contains("Growth"));
    }

    #[test]
    fn bodies() {
        let e = ev();
        assert!(
            e.summary
                .starts_with("fix_images exceeded its memory limit 2 GiB"),
            "{}",
            e.summary
        );
        let am = alertmanager_body(&e, &[]);
        assert_eq!(am[0]["labels"]["alertname"], "GuardMemoryLimit");
        assert_eq!(am[0]["labels"]["severity"], "critical");
        assert_eq!(am[0]["labels"]["instance"], "web1");
        assert!(am[0].get("endsAt").is_none());
        let sl = slack_body(&e);
        assert!(sl["text"].as_str().unwrap().contains("fix_images"));
        assert!(sl["blocks"].as_array().unwrap().len() >= 3);
        let l = logfmt(&e);
        assert!(
            l.starts_with(
                "event=memory-limit job=fix_images host=web1 pid=42 limit_bytes=2147483648"
            ),
            "{l}"
        );
        assert!(l.contains("summary=\"fix_images exceeded"), "{l}");
    }

    /// A new user's complaint: the summary came three times in one Slack message. Now: the
    /// headline once, what holds the memory once, the bundle once; the notification text is
    /// the title.
    #[test]
    fn slack_carries_the_summary_once_and_the_top_finding() {
        let mut e = ev();
        e.finding = Some("bytearray \u{d7}700 (175 MiB) \u{2190} QuerySet._result_cache".into());
        e.summary = summary(&e);
        let body = slack_body(&e).to_string();
        let count = |needle: &str| body.matches(needle).count();
        assert_eq!(count("exceeded its memory limit"), 1, "{body}");
        assert_eq!(count("QuerySet._result_cache"), 1, "{body}");
        assert_eq!(count("/var/lib/guard/evidence/x"), 1, "{body}");
        let sl = slack_body(&e);
        assert_eq!(
            sl["text"],
            ":rotating_light: fix_images killed at its memory limit on web1"
        );
        let finding = sl["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(
            finding.starts_with("*What holds the memory:* bytearray"),
            "{finding}"
        );
        e.held_until = Some("2026-12-04T06:00:00.000Z".into());
        let held = slack_body(&e);
        assert!(
            held["text"]
                .as_str()
                .unwrap()
                .contains("held at its memory limit")
        );
        let headline = held["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            headline.contains("held frozen until 2026-12-04T06:00:00.000Z"),
            "{headline}"
        );
        assert!(
            headline.contains("'guard kill fix_images' on web1"),
            "{headline}"
        );
    }

    #[test]
    fn logfmt_lines_stay_one_line_and_escape_quotes() {
        assert_eq!(logfmt_value("plain"), "plain");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("a b"), "\"a b\"");
        assert_eq!(logfmt_value("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(logfmt_value("two\nlines\r\tx"), "\"two\\nlines\\r\\tx\"");
        assert_eq!(logfmt_value("c:\\d"), "\"c:\\\\d\"");
        assert_eq!(logfmt_value("esc\u{1b}[31m"), "\"esc\\u{1b}[31m\"");
        let mut e = ev();
        e.summary = "line one\nline \"two\"".into();
        let l = logfmt(&e);
        assert!(!l.contains('\n'), "{l}");
        assert!(
            l.ends_with("summary=\"line one\\nline \\\"two\\\"\""),
            "{l}"
        );
    }

    #[test]
    fn ping_urls_keep_their_query_and_carry_the_run_id() {
        assert_eq!(
            ping_url("https://hc-ping.com/k/", "/start", "r1"),
            "https://hc-ping.com/k/start?rid=r1"
        );
        assert_eq!(
            ping_url("https://hc/ping/k/db?create=1", "/137", "r2"),
            "https://hc/ping/k/db/137?create=1&rid=r2"
        );
        assert_eq!(ping_url("http://h/p?", "", "r3"), "http://h/p?rid=r3");
    }

    #[test]
    fn the_runbook_travels_in_every_body_and_labels_reach_alertmanager() {
        let mut e = ev();
        e.runbook = Some("https://wiki.example/disaster-checklist".into());
        e.summary = summary(&e);
        assert!(
            e.summary
                .contains(" Runbook: https://wiki.example/disaster-checklist.")
        );
        let am = alertmanager_body(&e, &[("team".into(), "data".into())]);
        assert_eq!(
            am[0]["annotations"]["runbook_url"],
            "https://wiki.example/disaster-checklist"
        );
        assert_eq!(am[0]["labels"]["team"], "data");
        assert_eq!(am[0]["labels"]["alertname"], "GuardMemoryLimit");
        assert!(
            slack_body(&e)
                .to_string()
                .contains("*Runbook:* https://wiki.example")
        );
        assert!(guard_fields(&e).contains(&(
            "GUARD_RUNBOOK",
            "https://wiki.example/disaster-checklist".into()
        )));
        assert!(logfmt(&e).contains("runbook=https://wiki.example/disaster-checklist"));
        e.runbook = Some("call the DBA on duty".into());
        let am = alertmanager_body(&e, &[]);
        assert_eq!(am[0]["annotations"]["runbook"], "call the DBA on duty");
        assert!(am[0]["annotations"].get("runbook_url").is_none());
    }

    #[test]
    fn warnings_resolve_themselves() {
        let mut e = ev();
        e.event = EventKind::Warning;
        let am = alertmanager_body(&e, &[]);
        assert_eq!(am[0]["labels"]["alertname"], "GuardMemoryWarning");
        assert_eq!(am[0]["labels"]["severity"], "warning");
        assert!(am[0]["endsAt"].is_string());
    }
}
