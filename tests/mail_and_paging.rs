//! The email and pagerduty sinks with the real binary. Email goes to a real SMTP server on
//! loopback (aiosmtpd from PyPI, installed by scripts/install-pyspy) that requires STARTTLS and
//! AUTH, with a CA of the test's own (SSL_CERT_FILE); a wrong password is a final failure, and a
//! server that offers no STARTTLS gets nothing in the clear. PagerDuty's Events API v2 is a local
//! receiver: one incident per job (dedup_key), a warning that ends well resolved.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The SMTP server on `port`, storing into `out`; with TLS (and AUTH) when `certs` is given.
struct Smtp {
    child: Child,
}

impl Smtp {
    fn start(python: &Path, port: u16, out: &Path, certs: Option<&Path>) -> Smtp {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_server.py");
        let mut c = Command::new(python);
        c.arg(script).arg(port.to_string()).arg(out);
        if let Some(d) = certs {
            c.arg(d.join("srv.pem")).arg(d.join("srv.key"));
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the SMTP server");
        let mut line = String::new();
        let mut r = BufReader::new(child.stdout.take().unwrap());
        r.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        Smtp { child }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, text: &str) -> PathBuf {
    let f = dir.join("guard.toml");
    std::fs::write(&f, text).unwrap();
    f
}

/// guard at a 32 MiB cap over `hog alloc 100`, alerts from `f`, with `env`.
fn killed(f: &Path, env: &[(&str, &str)]) -> (String, PathBuf) {
    let mut c = guard_cmd();
    c.env("GUARD_CONFIG", f);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c
        .args(["--name", "nightly", "--memory", "32M", "--quiet", "--"])
        .args(["sh", "-c"])
        .arg(format!(
            "echo connecting with MYSQL_PWD=$MYSQL_PWD; exec {} alloc 100",
            example("hog").display()
        ))
        .bounded();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    (err, b)
}

/// A quoted-printable message made readable: soft line breaks joined, =XX decoded.
fn unquote(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let b = joined.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'=', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn delivery(bundle: &Path, sink_starts: &str) -> serde_json::Value {
    let m = manifest(bundle);
    m["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["sink"].as_str().unwrap().starts_with(sink_starts))
        .unwrap_or_else(|| panic!("no {sink_starts} delivery: {m}"))
        .clone()
}

#[test]
fn email_goes_over_starttls_with_auth_and_says_what_happened() {
    let test = "email_goes_over_starttls_with_auth_and_says_what_happened";
    let Some(py) = privileged_python_with(test, "aiosmtpd") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    assert!(make_certs(d.path()), "openssl");
    let out = d.path().join("mail");
    std::fs::create_dir(&out).unwrap();
    let port = free_port();
    let _server = Smtp::start(&py, port, &out, Some(d.path()));
    let f = config(
        d.path(),
        &format!(
            "[[alerts]]\nkind = \"email\"\nto = \"oncall@example.com, dba@example.com\"\n\
             url = \"smtp://127.0.0.1:{port}\"\nusername = \"guard\"\npassword = \"env:GUARD_TEST_SMTP_PW\"\n\
             from = \"guard@web1.example.com\"\n"
        ),
    );
    let ca = d.path().join("ca.pem").display().to_string();
    let env = [
        ("GUARD_TEST_SMTP_PW", "s3cret"),
        ("SSL_CERT_FILE", ca.as_str()),
        ("MYSQL_PWD", "hunter2-db-password"),
    ];
    let (err, bundle) = killed(&f, &env);
    assert!(!err.contains("could not send"), "{err}");
    let d0 = delivery(&bundle, "email");
    assert_eq!(d0["status"], "ok", "{d0}");
    let session: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("0.json")).unwrap()).unwrap();
    assert_eq!(session["tls"], true, "STARTTLS: {session}");
    assert_eq!(session["authenticated"], true, "{session}");
    assert_eq!(session["from"], "guard@web1.example.com");
    assert_eq!(
        session["to"],
        serde_json::json!(["oncall@example.com", "dba@example.com"])
    );
    let mail = unquote(&std::fs::read_to_string(out.join("0.eml")).unwrap());
    assert!(
        mail.contains("Subject: [guard] nightly exceeded its memory limit and was killed on "),
        "{mail}"
    );
    assert!(mail.contains("Auto-Submitted: auto-generated"), "{mail}");
    assert!(
        mail.contains("nightly exceeded its memory limit 32 MiB"),
        "{mail}"
    );
    assert!(
        mail.contains("connecting with MYSQL_PWD=<redacted>"),
        "the output tail: {mail}"
    );
    assert!(!mail.contains("hunter2"), "a secret in the mail: {mail}");
    assert!(!mail.contains("s3cret") && !err.contains("s3cret"));

    // A wrong password: refused (535), final after one attempt, the job's result unchanged.
    let (err, bundle) = killed(
        &f,
        &[("GUARD_TEST_SMTP_PW", "wrong"), ("SSL_CERT_FILE", &ca)],
    );
    let d1 = delivery(&bundle, "email");
    assert_eq!(d1["status"], "failed", "{d1}");
    assert_eq!(d1["attempts"], 1, "{d1}");
    assert!(
        err.contains("could not send the memory-limit alert to email"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the password is not shown: {err}");
}

#[test]
fn email_never_goes_in_the_clear_to_a_server_without_starttls() {
    let test = "email_never_goes_in_the_clear_to_a_server_without_starttls";
    let Some(py) = privileged_python_with(test, "aiosmtpd") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("mail");
    std::fs::create_dir(&out).unwrap();
    let port = free_port();
    let _server = Smtp::start(&py, port, &out, None);
    // STARTTLS required (the default for smtp://): the plain server gets nothing.
    let f = config(
        d.path(),
        &format!(
            "[[alerts]]\nkind = \"email\"\nto = \"oncall@example.com\"\nurl = \"smtp://127.0.0.1:{port}\"\n"
        ),
    );
    let (_, bundle) = killed(&f, &[]);
    assert_eq!(delivery(&bundle, "email")["status"], "failed");
    assert!(
        std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing sent in the clear"
    );
    // tls = "none" is for a server on this machine only (the local MTA): delivered.
    let f = config(
        d.path(),
        &format!(
            "[[alerts]]\nkind = \"email\"\nto = \"oncall@example.com\"\nurl = \"smtp://127.0.0.1:{port}\"\ntls = \"none\"\n"
        ),
    );
    let (_, bundle) = killed(&f, &[]);
    assert_eq!(delivery(&bundle, "email")["status"], "ok");
    // ... and refused up front for another host.
    let f = config(
        d.path(),
        "[[alerts]]\nkind = \"email\"\nto = \"oncall@example.com\"\nurl = \"smtp://mail.example.com\"\ntls = \"none\"\n",
    );
    let o = guard_cmd().args(["config", "check"]).arg(&f).bounded();
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in the clear"));
}

#[test]
fn pagerduty_gets_one_incident_per_job_and_a_warning_that_ends_well_resolves() {
    let test = "pagerduty_gets_one_incident_per_job_and_a_warning_that_ends_well_resolves";
    if !privileged(test) {
        return;
    }
    let r = Receiver::start(202, Duration::ZERO);
    let d = tempfile::tempdir().unwrap();
    let f = config(
        d.path(),
        &format!(
            "[jobs.nightly]\nrunbook = \"https://wiki.example/nightly\"\n\n\
             [[alerts]]\nkind = \"pagerduty\"\nrouting_key = \"env:GUARD_TEST_PD_KEY\"\nurl = \"{}\"\n",
            r.url("/v2/enqueue")
        ),
    );
    // A warning, then the job ends well: trigger (warning), then resolve, one dedup_key.
    let o = guard_cmd()
        .env("GUARD_CONFIG", &f)
        .env("GUARD_TEST_PD_KEY", "R0UT1NGKEY")
        .args([
            "--name", "nightly", "--memory", "100M", "--warn", "40M", "--",
        ])
        .arg(example("hog"))
        .args(["alloc", "60", "--rate", "60", "--exit"])
        .bounded();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let bodies: Vec<serde_json::Value> = r.requests().iter().map(Request::json).collect();
    let actions: Vec<&str> = bodies
        .iter()
        .map(|b| b["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"], "{bodies:?}");
    let key = bodies[0]["dedup_key"].as_str().unwrap();
    assert!(
        key.starts_with("guard/") && key.ends_with("/nightly"),
        "{key}"
    );
    assert_eq!(bodies[1]["dedup_key"], key);
    assert_eq!(bodies[0]["routing_key"], "R0UT1NGKEY");
    assert_eq!(bodies[0]["payload"]["severity"], "warning");
    assert_eq!(
        bodies[0]["links"][0]["href"],
        "https://wiki.example/nightly"
    );
    assert!(!err.contains("R0UT1NGKEY"));
    // A kill: critical, the same incident.
    let (_, bundle) = killed(&f, &[("GUARD_TEST_PD_KEY", "R0UT1NGKEY")]);
    let last = r.requests().last().unwrap().json();
    assert_eq!(last["event_action"], "trigger");
    assert_eq!(last["payload"]["severity"], "critical");
    assert_eq!(last["dedup_key"], key);
    assert_eq!(delivery(&bundle, "pagerduty")["status"], "ok");
    let m = std::fs::read_to_string(bundle.join("manifest.json")).unwrap();
    assert!(
        !m.contains("R0UT1NGKEY"),
        "the routing key is not in the bundle"
    );
}
