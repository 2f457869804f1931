//! Alert sinks against real components on loopback: a local HTTP receiver (webhook and Slack
//! bodies, custom headers, a 500, a slow endpoint), a dead endpoint, an exec hook, and a real
//! Alertmanager (Debian package `prometheus-alertmanager`, installed by scripts/test) that lists
//! guard's alert through its own API. Delivery is bounded in time and never changes guard's exit
//! status.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn config(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("guard.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn webhook_and_slack_get_the_documented_bodies_with_headers() {
    let r = Receiver::start(200, Duration::ZERO);
    let d = tempfile::tempdir().unwrap();
    let token = d.path().join("token");
    std::fs::write(&token, "Bearer t0k3n\n").unwrap();
    let f = config(
        d.path(),
        &format!(
            r#"[[alerts]]
kind = "webhook"
url = "{}"
events = ["failed"]
headers = {{ Authorization = "file:{}", X-Team = "env:GUARD_TEST_TEAM" }}

[[alerts]]
kind = "slack"
url = "env:GUARD_TEST_SLACK_URL"
events = ["failed"]
"#,
            r.url("/hook"),
            token.display()
        ),
    );
    let o = guard_cmd()
        .env("GUARD_CONFIG", &f)
        .env("GUARD_TEST_TEAM", "ops")
        .env("GUARD_TEST_SLACK_URL", r.url("/slack"))
        .args(["--name", "nightly", "--", "sh", "-c", "exit 3"])
        .bounded();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "every delivery worked: {}", stderr(&o));
    let reqs = r.requests();
    let hook = reqs
        .iter()
        .find(|q| q.path == "/hook")
        .expect("webhook request");
    assert_eq!(hook.header("Authorization"), Some("Bearer t0k3n"));
    assert_eq!(hook.header("X-Team"), Some("ops"));
    assert!(hook.header("User-Agent").unwrap().starts_with("guard/"));
    let b = hook.json();
    for k in [
        "event",
        "job",
        "host",
        "pid",
        "command",
        "limit_bytes",
        "peak_bytes",
        "trigger",
        "capture",
        "bundle",
        "summary",
        "guard_version",
    ] {
        assert!(b.get(k).is_some(), "webhook body lacks {k}: {b}");
    }
    assert_eq!(b["event"], "failed");
    assert_eq!(b["job"], "nightly");
    assert_eq!(b["exit_code"], 3);
    let slack = reqs
        .iter()
        .find(|q| q.path == "/slack")
        .expect("slack request")
        .json();
    assert!(
        slack["text"].as_str().unwrap().contains("nightly"),
        "{slack}"
    );
    assert_eq!(slack["blocks"][0]["type"], "header");
}

#[test]
fn failed_deliveries_are_bounded_retried_and_change_nothing() {
    let five = Receiver::start(500, Duration::ZERO);
    let slow = Receiver::start(200, Duration::from_secs(5));
    let dead = free_port(); // closed when dropped
    let d = tempfile::tempdir().unwrap();
    let f = config(
        d.path(),
        &format!(
            r#"[[alerts]]
kind = "webhook"
url = "{}"
events = ["failed"]
timeout = "1s"

[[alerts]]
kind = "webhook"
url = "{}"
events = ["failed"]
timeout = "1s"

[[alerts]]
kind = "webhook"
url = "http://127.0.0.1:{dead}/x"
events = ["failed"]
timeout = "1s"
"#,
            five.url("/500"),
            slow.url("/slow")
        ),
    );
    let t0 = Instant::now();
    let o = guard_cmd()
        .env("GUARD_CONFIG", &f)
        .args(["--name", "j", "--", "sh", "-c", "exit 4"])
        .bounded();
    let took = t0.elapsed();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    // The design: every delivery within its bound — 3 attempts of at most 1 s, 0.5 + 1 s of
    // backoff and 1 s of margin = 5.5 s after the job — all sinks in parallel; 10 s more for
    // a loaded machine's start of guard and of the job.
    assert!(took < Duration::from_millis(15_500), "took {took:?}");
    assert_eq!(five.requests().len(), 3, "500 is retried: 3 attempts");
    assert_eq!(slow.requests().len(), 3, "a timeout is retried: 3 attempts");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("could not send"))
        .collect();
    assert_eq!(warnings.len(), 3, "one line per failed sink: {err}");
    assert!(warnings.iter().any(|l| l.contains("HTTP 500")), "{err}");
    assert!(
        warnings.iter().all(|l| l.contains("after 3 attempt(s)")),
        "{err}"
    );
}

#[test]
fn a_4xx_is_not_retried() {
    let r = Receiver::start(404, Duration::ZERO);
    let o = guard_cmd()
        .env("GUARD_CONFIG", "/dev/null")
        .args(["--alert", &format!("webhook:{}", r.url("/nope"))])
        .args(["--config", "/dev/null", "--", "true"])
        .bounded();
    assert_eq!(o.status.code(), Some(0));
    assert!(
        r.requests().is_empty(),
        "exit 0 sends nothing: 'failed' is opt-in"
    );
    let d = tempfile::tempdir().unwrap();
    let f = config(
        d.path(),
        &format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\nevents = [\"failed\"]\n",
            r.url("/nope")
        ),
    );
    let o = guard_cmd()
        .env("GUARD_CONFIG", &f)
        .args(["--", "false"])
        .bounded();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(r.requests().len(), 1, "a 404 is final");
    assert!(stderr(&o).contains("HTTP 404"), "{}", stderr(&o));
}

#[test]
fn exec_hook_gets_the_event_in_its_environment_and_bad_alerts_are_125() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("env.txt");
    let hook = d.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\nenv | grep ^GUARD_ > {}\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let f = config(
        d.path(),
        &format!(
            "[[alerts]]\nkind = \"exec\"\ncommand = [\"{}\"]\nevents = [\"failed\"]\n",
            hook.display()
        ),
    );
    let o = guard_cmd()
        .env("GUARD_CONFIG", &f)
        .args(["--name", "hooked", "--", "sh", "-c", "exit 9"])
        .bounded();
    assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
    let env = std::fs::read_to_string(&out).unwrap();
    for k in [
        "GUARD_EVENT=failed",
        "GUARD_JOB=hooked",
        "GUARD_PID=",
        "GUARD_BUNDLE=",
        "GUARD_LIMIT_BYTES=",
        "GUARD_PEAK_BYTES=",
        "GUARD_HOST=",
    ] {
        assert!(env.contains(k), "{k} missing: {env}");
    }
    for (args, needle) in [
        (vec!["--alert", "pager:x"], "unknown alert kind 'pager'"),
        (
            vec!["--alert", "exec:relative/hook"],
            "absolute program path",
        ),
        (vec!["--alert", "webhook:ftp://x"], "http:// or https://"),
    ] {
        let o = guard_cmd().args(&args).args(["--", "true"]).bounded();
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    let f = config(
        d.path(),
        "[[alerts]]\nkind = \"webhook\"\nevents = [\"oom\"]\nurl = \"http://x\"\n",
    );
    let o = guard_cmd()
        .env("GUARD_CONFIG", &f)
        .args(["--", "true"])
        .bounded();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("guard.toml:3:10: alerts: unknown event 'oom'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_memory_kill_alert_names_the_bundle_and_lands_in_the_manifest() {
    if !privileged("a_memory_kill_alert_names_the_bundle_and_lands_in_the_manifest") {
        return;
    }
    let r = Receiver::start(200, Duration::ZERO);
    let ev = tempfile::tempdir().unwrap();
    let o = guard_cmd()
        .arg("--evidence-dir")
        .arg(ev.path())
        .args([
            "--alert",
            &format!("webhook:{}", r.url("/hook")),
            "--warn",
            "off",
            "-m",
            "48M",
            "--",
        ])
        .arg(example("hog"))
        .args(["alloc", "200"])
        .bounded();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "; evidence: ");
    let body = r.requests().first().expect("an alert").json();
    assert_eq!(body["event"], "memory-limit");
    assert_eq!(body["bundle"], b.to_str().unwrap());
    assert_eq!(body["capture"], "pre-kill");
    assert_eq!(body["limit_bytes"], 48u64 << 20);
    let m = manifest(&b);
    assert_eq!(m["alerts"][0]["status"], "ok", "{m}");
    assert_eq!(m["alerts"][0]["attempts"], 1);
    let summary = std::fs::read_to_string(Path::new(&b).join("summary.txt")).unwrap();
    assert!(summary.contains("alerts:"), "{summary}");
}

#[test]
fn a_real_alertmanager_lists_guards_alert() {
    let test = "a_real_alertmanager_lists_guards_alert";
    let am = on_path(&["prometheus-alertmanager", "alertmanager"]);
    let Some(am) = am else {
        gate(
            test,
            Some("prometheus-alertmanager is not installed".into()),
            "GUARD_TEST_REQUIRE_TOOLS",
        );
        return;
    };
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("am.yml"),
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(am)
        .arg(format!(
            "--config.file={}",
            d.path().join("am.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            d.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = wait_until(Duration::from_secs(20), || {
        http_get(port, "/-/ready")
            .is_some_and(|b| b.starts_with("HTTP/1.0 200") || b.starts_with("HTTP/1.1 200"))
    });
    let f = config(
        d.path(),
        &format!(
            "[defaults]\nrunbook = \"https://wiki.example/guard/nightly_export\"\n\n\
             [[alerts]]\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:{port}/\"\nevents = [\"failed\", \"memory-limit\"]\n\
             labels = {{ team = \"data\", tier = \"batch\" }}\n"
        ),
    );
    let o = guard_cmd()
        .env("GUARD_CONFIG", &f)
        .args(["--name", "nightly_export", "--", "sh", "-c", "exit 2"])
        .bounded();
    let listed = http_get(port, "/api/v2/alerts");
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "alertmanager did not become ready");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    let body = listed.expect("GET /api/v2/alerts");
    let json = body.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let alerts: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"));
    let a = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["job"] == "nightly_export")
        .unwrap_or_else(|| panic!("{alerts}"));
    assert_eq!(a["labels"]["alertname"], "GuardJobFailed");
    assert_eq!(a["labels"]["severity"], "critical");
    assert!(
        a["labels"]["instance"]
            .as_str()
            .is_some_and(|i| !i.is_empty())
    );
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("exit status 2"),
        "{a}"
    );
    // The config's extra labels and the job's runbook, one click from the alert.
    assert_eq!(a["labels"]["team"], "data", "{a}");
    assert_eq!(a["labels"]["tier"], "batch", "{a}");
    assert_eq!(
        a["annotations"]["runbook_url"], "https://wiki.example/guard/nightly_export",
        "{a}"
    );
}

const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        with open(sys.argv[2], "ab") as f:
            f.write(body + b"\n")
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + "/srv.pem", sys.argv[1] + "/srv.key")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[test]
fn https_works_with_the_systems_roots_and_refuses_an_unknown_ca() {
    let test = "https_works_with_the_systems_roots_and_refuses_an_unknown_ca";
    if !tool(test, "openssl") || !tool(test, "python3") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    assert!(
        make_certs(d.path()),
        "openssl could not make the test certificates"
    );
    let got = d.path().join("got");
    let mut server = Command::new("python3")
        .args(["-c", HTTPS_SERVER])
        .arg(d.path())
        .arg(&got)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("port");
    // failed is opt-in; a config makes this sink want it
    let f = config(
        d.path(),
        &format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = \"https://127.0.0.1:{port}/hook\"\nevents = [\"failed\"]\ntimeout = \"2s\"\n"
        ),
    );
    let with_ca = guard_cmd()
        .env("GUARD_CONFIG", &f)
        .env("SSL_CERT_FILE", d.path().join("ca.pem"))
        .args(["--", "sh", "-c", "exit 5"])
        .bounded();
    let without = guard_cmd()
        .env("GUARD_CONFIG", &f)
        .env("SSL_CERT_FILE", d.path().join("nonexistent.pem"))
        .args(["--", "sh", "-c", "exit 5"])
        .bounded();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(with_ca.status.code(), Some(5));
    assert!(
        with_ca.stderr.is_empty(),
        "HTTPS with the CA in SSL_CERT_FILE: {}",
        stderr(&with_ca)
    );
    let body = std::fs::read_to_string(&got).unwrap_or_default();
    assert!(body.contains("\"event\":\"failed\""), "{body}");
    assert_eq!(without.status.code(), Some(5));
    assert!(
        stderr(&without).contains("could not send the failed alert"),
        "an unknown CA is refused: {}",
        stderr(&without)
    );
}

/// `log:syslog` and `log:journal` deliver to the machine's own sockets; where nothing listens
/// (no syslog daemon, no journald: this project's host and its busybox guests) the delivery is
/// a failure saying so — syslog(3) dropped the line and the manifest said ok.
#[test]
fn local_log_sinks_say_when_nothing_listens() {
    for (target, socket) in [
        ("syslog", "/dev/log"),
        ("journal", "/run/systemd/journal/socket"),
    ] {
        let d = tempfile::tempdir().unwrap();
        let f = config(
            d.path(),
            &format!("[[alerts]]\nkind = \"log\"\ntarget = \"{target}\"\nevents = [\"failed\"]\n"),
        );
        let o = guard_cmd()
            .env("GUARD_CONFIG", &f)
            .args(["--name", "locallog", "--", "sh", "-c", "exit 4"])
            .bounded();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(4), "{err}");
        let failed = err
            .lines()
            .any(|l| l.contains(&format!("nothing listens at {socket}")));
        let listening = std::os::unix::net::UnixDatagram::unbound()
            .unwrap()
            .connect(socket)
            .is_ok();
        assert_eq!(
            failed, !listening,
            "{target} ({socket} listening: {listening}): {err}"
        );
    }
}

/// A python3 listener at the journal's socket, in a mount namespace of its own (a tmpfs over
/// /run): guard's stderr is "the journal" (JOURNAL_STREAM names the file it goes to), so its
/// kill line arrives as a native entry with the event's fields, and `log:journal` delivers too.
#[test]
fn with_stderr_the_journal_the_kill_line_and_log_journal_are_native_entries() {
    let test = "with_stderr_the_journal_the_kill_line_and_log_journal_are_native_entries";
    if !privileged(test) || !tool(test, "python3") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dump = d.path().join("entries.hex");
    let listener = d.path().join("listen.py");
    std::fs::write(
        &listener,
        format!(
            "import socket, sys\n\
             s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
             s.bind('/run/systemd/journal/socket')\n\
             open('{ready}', 'w').close()\n\
             s.settimeout(20)\n\
             with open('{dump}', 'w') as out:\n\
             \x20   try:\n\
             \x20       while True:\n\
             \x20           out.write(s.recv(65536).hex() + '\\n'); out.flush()\n\
             \x20   except socket.timeout:\n\
             \x20       pass\n",
            ready = d.path().join("ready").display(),
            dump = dump.display()
        ),
    )
    .unwrap();
    let err_file = d.path().join("stderr");
    let ev = d.path().join("ev");
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && \
         (python3 {listener} &) && while [ ! -e {ready} ]; do sleep 0.05; done; \
         : > {err}; export JOURNAL_STREAM=$(stat -c '%d:%i' {err}); \
         \"$GUARD\" --evidence-dir {ev} -m 64M --warn off --name journaled --alert log:journal \
           -- \"$HOG\" alloc 200 2>> {err}; echo \"status $?\"; sleep 1; pkill -f {listener}; true",
        listener = listener.display(),
        ready = d.path().join("ready").display(),
        err = err_file.display(),
        ev = ev.display()
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("GUARD", guard())
        .env("HOG", example("hog"))
        .env("GUARD_CONFIG", "/dev/null")
        .bounded();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("status 137"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let entries: Vec<Vec<(String, String)>> = std::fs::read_to_string(&dump)
        .unwrap_or_default()
        .lines()
        .map(|h| guard::os::journal::parse_journal_entry(&hex(h)))
        .collect();
    let get = |e: &[(String, String)], k: &str| {
        e.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    };
    let kill = entries
        .iter()
        .find(|e| get(e, "MESSAGE").is_some_and(|m| m.contains("exceeded its memory limit")))
        .unwrap_or_else(|| panic!("no kill line in the journal: {entries:?}"));
    assert_eq!(get(kill, "GUARD_EVENT").as_deref(), Some("memory-limit"));
    assert_eq!(get(kill, "GUARD_JOB").as_deref(), Some("journaled"));
    assert_eq!(get(kill, "PRIORITY").as_deref(), Some("2"));
    assert_eq!(get(kill, "SYSLOG_IDENTIFIER").as_deref(), Some("guard"));
    assert_eq!(get(kill, "GUARD_LIMIT_BYTES").as_deref(), Some("67108864"));
    assert!(
        get(kill, "GUARD_BUNDLE").is_some_and(|b| b.contains("journaled")),
        "{kill:?}"
    );
    assert_eq!(
        get(kill, "MESSAGE_ID").as_deref(),
        Some("8a1f4be3c6d54f0e9b2a7c1d5e6f7a01")
    );
    let alert = entries
        .iter()
        .find(|e| {
            get(e, "MESSAGE").is_some_and(|m| m.starts_with("guard: journaled"))
                && get(e, "GUARD_PEAK_BYTES").is_some()
                && e != &kill
        })
        .unwrap_or_else(|| panic!("no log:journal entry: {entries:?}"));
    assert_eq!(get(alert, "GUARD_EVENT").as_deref(), Some("memory-limit"));
    // Nothing of it went to stderr: the journal had it.
    let err = std::fs::read_to_string(&err_file).unwrap();
    assert!(!err.contains("exceeded its memory limit"), "{err}");
}

fn hex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The least-squares slope (bytes per second) of the job's memory in a bundle's timeline.csv
/// over its last `window_ms`.
fn timeline_slope(bundle: &std::path::Path, window_ms: u64) -> f64 {
    let text = std::fs::read_to_string(bundle.join("timeline.csv")).unwrap();
    let samples: Vec<(f64, f64)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect();
    let last = samples.last().expect("samples").0;
    let recent: Vec<(f64, f64)> = samples
        .into_iter()
        .filter(|s| s.0 >= last - window_ms as f64)
        .collect();
    let n = recent.len() as f64;
    let (mt, mb) = (
        recent.iter().map(|s| s.0).sum::<f64>() / n,
        recent.iter().map(|s| s.1).sum::<f64>() / n,
    );
    let stb: f64 = recent.iter().map(|s| (s.0 - mt) * (s.1 - mb)).sum();
    let stt: f64 = recent.iter().map(|s| (s.0 - mt) * (s.0 - mt)).sum();
    stb / stt * 1000.0
}

/// The realistic case: a job leaking 10 MiB/s toward a 2 GiB cap. Its warning fires, and the
/// line, the alert and the warning bundle carry the rate and the time to the cap at that rate.
#[test]
fn a_slow_leak_toward_a_2_gib_cap_is_warned_with_its_rate_and_time_to_the_cap() {
    if !privileged("a_slow_leak_toward_a_2_gib_cap_is_warned_with_its_rate_and_time_to_the_cap") {
        return;
    }
    let r = Receiver::start(200, Duration::ZERO);
    let ev = tempfile::tempdir().unwrap();
    let o = guard_cmd()
        .arg("--evidence-dir")
        .arg(ev.path())
        .args([
            "--alert",
            &format!("webhook:{}", r.url("/hook")),
            "-m",
            "2G",
            "--warn",
            "40M",
            "--",
        ])
        .arg(example("hog"))
        .args(["alloc", "70", "--rate", "10", "--exit"])
        .bounded();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("past its warning threshold"))
        .unwrap_or_else(|| panic!("no warning for a slow leak:\n{err}"));
    assert!(line.contains(", growing "), "{line}");
    assert!(line.contains(" MB/s over the last "), "{line}");
    let body = r.requests().first().expect("a warning alert").json();
    assert_eq!(body["event"], "warning");
    let rate = body["growth"]["bytes_per_second"].as_f64().unwrap();
    // A slow leak: 10 MiB/s = 10.5 MB/s when the allocator keeps its pace; slower, never in
    // bursts, when a loaded machine holds it back.
    assert!((3e6..14e6).contains(&rate), "{body}");
    // And the rate is the job's, as its own timeline shows it over the same window.
    let b = bundle_named(&err, "; evidence: ");
    let window = body["growth"]["window_ms"].as_u64().unwrap();
    let seen = timeline_slope(&b, window);
    assert!(
        (rate - seen).abs() <= 0.15 * seen,
        "{rate} B/s in the alert, {seen} B/s in the timeline"
    );
    let left = body["growth"]["time_to_limit_ms"].as_u64().unwrap();
    let expect = ((2u64 << 30) - body["peak_bytes"].as_u64().unwrap()) as f64 / rate * 1000.0;
    assert!(
        (left as f64 - expect).abs() < 2000.0,
        "{left} vs {expect}: {body}"
    );
    let eta = guard::report::growth::eta(left);
    let summary = body["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("; the cap in {eta}.")),
        "{eta}: {summary}"
    );
    assert!(line.contains(&format!("the cap in {eta}")), "{line}");
    let m = manifest(&b);
    assert_eq!(m["trigger"], "warning");
    assert!(m["growth"]["time_to_limit_ms"].as_u64().is_some(), "{m}");
    let rep = guard_cmd().arg("report").arg(&b).bounded();
    let text = String::from_utf8_lossy(&rep.stdout);
    assert!(text.contains("at that rate"), "{text}");
}
