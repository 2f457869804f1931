//! `--metrics-file`: the node_exporter textfile through the real binary — several guards sharing
//! one file at once, memory kills counted across runs, and a real `prometheus-node-exporter`
//! (Debian package, installed by scripts/test) serving guard's metrics from its textfile
//! collector, scraped over loopback.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn value(text: &str, metric: &str, job: &str) -> Option<String> {
    let prefix = format!("{metric}{{guard_job=\"{job}\"}}");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_string)
}

#[test]
fn concurrent_jobs_share_one_file_and_kills_accumulate() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("guard.prom");
    let kids: Vec<_> = (0..8)
        .map(|i| {
            guard_cmd()
                .arg("--metrics-file")
                .arg(&f)
                .args([
                    "--name",
                    &format!("job{i}"),
                    "--",
                    "sh",
                    "-c",
                    &format!("exit {i}"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        let o = wait_output_within(k, RUN_LIMIT, "guard");
        assert!(
            o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let text = std::fs::read_to_string(&f).unwrap();
    for i in 0..8 {
        let job = format!("job{i}");
        assert_eq!(
            value(&text, "guard_job_last_exit_code", &job).as_deref(),
            Some(&*i.to_string()),
            "{text}"
        );
        assert_eq!(
            value(&text, "guard_job_memory_kills_total", &job).as_deref(),
            Some("0"),
            "{text}"
        );
    }
    assert_eq!(
        text.matches("# TYPE guard_job_last_exit_code gauge")
            .count(),
        1,
        "{text}"
    );

    // Two memory kills of one job: the counter survives between runs.
    let hog = example("hog");
    for _ in 0..2 {
        let o = guard_cmd()
            .arg("--metrics-file")
            .arg(&f)
            .args(["--name", "job0", "--warn", "off", "-m", "32M", "--"])
            .arg(&hog)
            .args(["alloc", "200"])
            .stdin(Stdio::null())
            .bounded();
        assert_eq!(
            o.status.code(),
            Some(137),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let text = std::fs::read_to_string(&f).unwrap();
    assert_eq!(
        value(&text, "guard_job_memory_kills_total", "job0").as_deref(),
        Some("2"),
        "{text}"
    );
    assert_eq!(
        value(&text, "guard_job_last_exit_code", "job0").as_deref(),
        Some("137")
    );
    assert_eq!(
        value(&text, "guard_job_memory_limit_bytes", "job0").as_deref(),
        Some("33554432")
    );
    assert!(value(&text, "guard_job_peak_memory_bytes", "job0").is_some());
    assert_eq!(
        value(&text, "guard_job_last_exit_code", "job5").as_deref(),
        Some("5"),
        "others kept"
    );
}

#[test]
fn an_unwritable_metrics_file_never_changes_the_result() {
    let o = guard_cmd()
        .args([
            "--metrics-file",
            "/nonexistent-dir/guard.prom",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .bounded();
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent-dir does not exist"), "{err}");
    assert!(err.contains("its metrics will not be written"), "{err}");
    assert_eq!(err.lines().count(), 1, "said once, at the start: {err}");
}

#[test]
fn node_exporter_serves_guards_metrics() {
    let exporter = on_path(&["prometheus-node-exporter", "node_exporter"]);
    let test = "node_exporter_serves_guards_metrics";
    let Some(exporter) = exporter else {
        gate(
            test,
            Some("prometheus-node-exporter is not installed".into()),
            "GUARD_TEST_REQUIRE_TOOLS",
        );
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("guard.prom");
    let o = guard_cmd()
        .arg("--metrics-file")
        .arg(&f)
        .args(["--name", "fix_images", "--", "sh", "-c", "exit 7"])
        .bounded();
    assert_eq!(o.status.code(), Some(7));
    let port = free_port();
    let mut ne = Command::new(exporter)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--collector.disable-defaults")
        .arg("--collector.textfile")
        .arg(format!(
            "--collector.textfile.directory={}",
            d.path().display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let mut body = None;
    while Instant::now() < end {
        if let Some(b) = http_get(port, "/metrics").filter(|b| b.contains("guard_job")) {
            body = Some(b);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = ne.kill();
    let _ = ne.wait();
    let body = body.expect("node_exporter served no guard_job metrics within 20 s");
    assert!(
        body.contains("guard_job_last_exit_code{guard_job=\"fix_images\"} 7"),
        "{body}"
    );
    assert!(body.contains("guard_job_memory_kills_total{"), "{body}");
    // node_exporter reports a textfile it could not read or parse as an error metric
    assert!(
        body.lines().any(|l| l == "node_textfile_scrape_error 0"),
        "node_exporter could not parse the file: {body}"
    );
    assert!(Path::new(&f).exists());
}

/// Prometheus' own linter on the file: names, types, help, units and label practice
/// (`promtool check metrics`, from Debian's prometheus package, installed by scripts/test).
#[test]
fn promtool_finds_nothing_to_say_about_the_metrics_file() {
    let test = "promtool_finds_nothing_to_say_about_the_metrics_file";
    let Some(promtool) = on_path(&["promtool"]) else {
        gate(
            test,
            Some("promtool is not installed".into()),
            "GUARD_TEST_REQUIRE_TOOLS",
        );
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("guard.prom");
    for (name, cmd) in [("ok", "true"), ("bad", "exit 3")] {
        let o = guard_cmd()
            .arg("--metrics-file")
            .arg(&f)
            .args(["--name", name, "-m", "256M", "--", "sh", "-c", cmd])
            .bounded();
        assert!(o.status.code().is_some());
    }
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(
        text.contains("guard_job_last_success_timestamp_seconds{guard_job=\"ok\"}"),
        "{text}"
    );
    assert!(
        !text.contains("guard_job_last_success_timestamp_seconds{guard_job=\"bad\"}"),
        "{text}"
    );
    assert!(
        !text.contains("job=\"") || text.contains("guard_job=\""),
        "{text}"
    );
    assert!(!text.contains("host="), "{text}");
    let mut p = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = wait_output_within(p, RUN_LIMIT, "promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}\n{text}");
    assert!(
        said.trim().is_empty(),
        "promtool has remarks: {said}\n{text}"
    );
}
