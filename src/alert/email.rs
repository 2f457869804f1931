//! The email sink: one plain-text message per event over SMTP (lettre, blocking), with STARTTLS
//! (required, not opportunistic: a server that does not offer it is a failed delivery), TLS from
//! the first byte (smtps) or — to a server on this machine only — none; AUTH with the sink's
//! username and password, each `env:NAME` / `file:/path` like every secret. Transient failures
//! (4xx replies, timeouts, a refused connection) are retried like the HTTP sinks'; permanent ones
//! (5xx: a refused recipient, bad credentials) and TLS failures are final.

use super::{AttemptError, Event};
use crate::config::alerts::{Secret, Sink, SmtpTls};
use crate::format::EventKind;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

/// Send `ev` to the sink's addresses once.
pub fn send(s: &Sink, ev: &Event) -> Result<(), AttemptError> {
    let message = message(s, ev)?;
    transport(s)?.send(&message).map(|_| ()).map_err(classify)
}

/// The subject: "[guard] fix_images exceeded its memory limit on web1", "[guard drill] …".
pub fn subject(ev: &Event) -> String {
    let what = match ev.event {
        EventKind::MemoryLimit if ev.held_until.is_some() => "is held at its memory limit",
        EventKind::MemoryLimit if ev.thrashing.is_some() => {
            "exceeded its memory limit, thrashing at it, and was killed"
        }
        EventKind::MemoryLimit => "exceeded its memory limit and was killed",
        EventKind::Warning => "is near its memory limit",
        EventKind::KernelOom => "was killed by the kernel's OOM killer",
        EventKind::Failed => "failed",
        EventKind::Timeout => "exceeded its time limit",
        EventKind::Drill => "drill: a rehearsal, not a failure",
        _ => "event",
    };
    let tag = if ev.event == EventKind::Drill {
        "[guard drill]"
    } else {
        "[guard]"
    };
    format!("{tag} {} {what} on {}", ev.job, ev.host)
}

/// The body: the summary, the facts one per line, the end of the output.
pub fn body(ev: &Event) -> String {
    let mut b = format!("{}\n\n", ev.summary);
    let mut line = |k: &str, v: String| b.push_str(&format!("{k:<10} {v}\n"));
    line("event", ev.event.as_str().to_string());
    line("job", ev.job.clone());
    line("host", ev.host.clone());
    line("pid", ev.pid.to_string());
    line("command", super::text::command_text(ev));
    if let Some(l) = ev.limit_bytes {
        line("limit", crate::config::units::format_size(l));
    }
    if let Some(p) = ev.peak_bytes {
        line("peak", crate::config::units::format_size(p));
    }
    if let Some(b) = &ev.bundle {
        line("evidence", format!("{b} (guard report {b})"));
    }
    if let Some(u) = super::text::off_host(ev) {
        line("off the host", u.to_string());
    }
    if let Some(r) = &ev.runbook {
        line("runbook", r.clone());
    }
    line("time", ev.time.clone());
    if let Some(t) = ev.output_tail.as_deref().filter(|t| !t.trim().is_empty()) {
        let n = t.chars().count();
        let tail =
            super::text::output_text(&t.chars().skip(n.saturating_sub(4000)).collect::<String>());
        b.push_str(&format!("\nThe end of its output:\n{tail}\n"));
    }
    b.push_str(&format!("\n-- \nguard {}\n", ev.guard_version));
    b
}

fn resolved(s: &Secret) -> Result<String, AttemptError> {
    s.resolve().map_err(|e| AttemptError::Final(e.to_string()))
}

fn message(s: &Sink, ev: &Event) -> Result<Message, AttemptError> {
    let bad = |e: String| AttemptError::Final(e);
    let from: Mailbox = s
        .smtp
        .from
        .clone()
        .unwrap_or_else(|| format!("guard@{}", sender_domain(&ev.host)))
        .parse()
        .map_err(|e| bad(format!("from: {e}")))?;
    let mut b = Message::builder()
        .from(from)
        .subject(subject(ev))
        .header(AutoSubmitted)
        .header(ContentType::TEXT_PLAIN);
    for to in resolved(&s.target)?.split(',').map(str::trim) {
        let mb: Mailbox = to.parse().map_err(|e| {
            bad(match &s.target {
                Secret::Plain(_) => format!("to {to}: {e}"),
                // An address read from env:/file: is shown as its reference only.
                other => format!("an address in {}: {e} (not shown)", other.shown()),
            })
        })?;
        b = b.to(mb);
    }
    b.body(body(ev)).map_err(|e| bad(e.to_string()))
}

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders and list software leave a
/// machine's message alone.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// A host name usable after '@' (a bare name gets ".localdomain", as the local MTA would).
fn sender_domain(host: &str) -> String {
    let h: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    match (h.is_empty(), h.contains('.')) {
        (true, _) => "localhost.localdomain".into(),
        (false, true) => h,
        (false, false) => format!("{h}.localdomain"),
    }
}

fn transport(s: &Sink) -> Result<SmtpTransport, AttemptError> {
    let m = &s.smtp;
    let tls = || {
        TlsParameters::builder(m.host.clone())
            .build_rustls()
            .map_err(|e| AttemptError::Final(format!("TLS setup: {e}")))
    };
    let mode = match m.tls {
        SmtpTls::StartTls => Tls::Required(tls()?),
        SmtpTls::Tls => Tls::Wrapper(tls()?),
        SmtpTls::None => Tls::None,
    };
    let mut b = SmtpTransport::builder_dangerous(m.host.as_str())
        .port(m.port)
        .tls(mode)
        .timeout(Some(s.timeout));
    if let (Some(u), Some(p)) = (&m.username, &m.password) {
        b = b.credentials(Credentials::new(resolved(u)?, resolved(p)?));
    }
    Ok(b.build())
}

/// Transient (4xx), a timeout or the connection: worth another try; the rest is final. The
/// message never carries the password (lettre does not put it in its errors).
fn classify(e: lettre::transport::smtp::Error) -> AttemptError {
    let text = e.to_string();
    if e.is_transient() || e.is_timeout() || (!e.is_permanent() && !e.is_tls() && !e.is_client()) {
        AttemptError::Retriable(text)
    } else {
        AttemptError::Final(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> Event {
        let mut e = crate::alert::sample_event();
        e.event = kind;
        e.summary = "fix_images exceeded its memory limit".into();
        e.time = "2026-12-04T06:00:00.000Z".into();
        e.output_tail = Some("last line\n".into());
        e.runbook = Some("https://wiki.example/x".into());
        e
    }

    #[test]
    fn a_command_with_line_breaks_cannot_forge_body_lines() {
        let mut e = ev(EventKind::MemoryLimit);
        e.runbook = None;
        e.command = vec![
            "python".into(),
            "x\r\nrunbook    https://evil.example/\r\nevidence   /tmp/fake".into(),
        ];
        e.finding = Some("list ← local 'a\nevidence   /tmp/fake2'".into());
        e.output_tail = Some("out\rline\n\x1b[2Jcleared\n".into());
        e.summary = crate::alert::text::summary(&e);
        let b = body(&e);
        for l in b.lines() {
            assert!(
                !l.starts_with("runbook") && !l.starts_with("evidence   /tmp/fake"),
                "a forged line: {l:?} in\n{b}"
            );
        }
        assert!(b.contains("x\\x0d\\x0arunbook"), "{b}");
        assert!(b.contains("out\\x0dline\n\\x1b[2Jcleared"), "{b}");
        assert!(!b.contains('\r') && !b.contains('\x1b'), "{b}");
    }

    #[test]
    fn subjects_and_bodies_say_what_happened() {
        assert_eq!(
            subject(&ev(EventKind::MemoryLimit)),
            "[guard] fix_images exceeded its memory limit and was killed on web1"
        );
        assert!(subject(&ev(EventKind::Drill)).starts_with("[guard drill] fix_images drill"));
        let b = body(&ev(EventKind::MemoryLimit));
        assert!(
            b.starts_with("fix_images exceeded its memory limit\n\n"),
            "{b}"
        );
        assert!(b.contains("runbook    https://wiki.example/x\n"), "{b}");
        assert!(
            b.contains("evidence   /var/lib/guard/evidence/x (guard report"),
            "{b}"
        );
        assert!(b.contains("The end of its output:\nlast line"), "{b}");
        assert_eq!(sender_domain("web1"), "web1.localdomain");
        assert_eq!(sender_domain("web1.example.com"), "web1.example.com");
        assert_eq!(sender_domain(""), "localhost.localdomain");
    }
}
