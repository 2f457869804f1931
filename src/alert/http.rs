//! HTTP for the sinks that post (webhook, Slack, Alertmanager, PagerDuty) and for the pings: ureq
//! with rustls, the sink's timeout for the whole request; 2xx is success, 429 / 5xx / connection
//! and timeout errors are retriable, other statuses are final, and a redirect is never followed
//! (a 3xx is a final failure naming where it pointed).

use super::AttemptError;
use crate::config::alerts::{Secret, Sink};

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
        crate::config::alerts::check_header(k, Some(&v))
            .map_err(|e| AttemptError::Final(e.to_string()))?;
        req = req.set(k, &v);
    }
    classify(req.send_string(&body.to_string()))
}

/// TLS roots: Mozilla's (built in, so HTTPS to Slack works in a container without a CA store)
/// plus the system's (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), so an internal CA
/// in front of Alertmanager works too. Built once, when the first alert goes out.
pub(crate) fn tls_config() -> std::sync::Arc<rustls::ClientConfig> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
