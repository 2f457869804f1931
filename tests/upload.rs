//! `--upload` end to end (issue 27) against a real S3 server — SeaweedFS's `weed mini` on
//! loopback (tests/common/s3.rs) — with boto3 checking what guard put there: a kill lands as
//! `PREFIX/HOST/JOB/BUNDLE.tar.zst` and its manifest beside it (the archive's sha256 in it); a
//! large bundle (a core) goes up in parts; and every fault — wrong credentials, no such bucket,
//! no server, a server that never answers — leaves the bundle on disk marked pending, with one
//! line on stderr and the job's exit status unchanged. Mistakes in the settings are one line and
//! 125 before the job starts.

mod common;
use common::s3::{self, BUCKET, S3};
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// guard with `env` (and no AWS variables of the developer's), the evidence in `ev`.
fn guard_with(ev: &Path, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut c = guard_cmd();
    for k in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        c.env_remove(k);
    }
    // No shared credentials file of this machine's.
    c.env("AWS_SHARED_CREDENTIALS_FILE", ev.join("no-credentials"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.arg("--evidence-dir")
        .arg(ev)
        .args(args)
        .stdin(Stdio::null());
    output_within(&mut c, Duration::from_secs(180))
}

/// A job killed at a 64 MiB cap, its bundle shipped to `target`.
/// One bundle only (no warning: on a loaded machine the sampler may see the climb pass 80 %
/// before the cap, and each run's bundles are counted).
fn killed(ev: &Path, env: &[(&str, String)], target: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--warn", "off"];
    args.extend(extra);
    hog_run(ev, env, target, &args, &["alloc", "400"])
}

/// A warning bundle first (at half the cap, the climb at 50 MB/s: the sampler's 100 ms see it
/// six times over), then the kill's.
fn killed_warned(
    ev: &Path,
    env: &[(&str, String)],
    target: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec!["--warn", "50%"];
    args.extend(extra);
    hog_run(ev, env, target, &args, &["alloc", "400", "--rate", "50"])
}

fn hog_run(
    ev: &Path,
    env: &[(&str, String)],
    target: &str,
    extra: &[&str],
    hog_args: &[&str],
) -> std::process::Output {
    let hog = example("hog");
    // -v: the line naming the uploaded archive is an info line.
    let mut args = vec!["-v", "-m", "64M", "--upload", target];
    args.extend(extra);
    args.extend(["--", hog.to_str().unwrap()]);
    args.extend(hog_args);
    guard_with(ev, env, &args)
}

fn record(bundle: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(bundle.join("upload.json")).unwrap()).unwrap()
}

fn host() -> String {
    nix_hostname()
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn a_kill_lands_in_seaweedfs_as_an_archive_and_its_manifest() {
    let t = "a_kill_lands_in_seaweedfs_as_an_archive_and_its_manifest";
    if !privileged(t) {
        return;
    }
    let Some(s3) = S3::start(t) else { return };
    let ev = tempfile::tempdir().unwrap();
    let o = killed_warned(
        ev.path(),
        &s3.env(),
        &format!("s3://{BUCKET}/prod/guard"),
        &["--alert", "log:stderr", "--upload-presign", "10m"],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    let name = b.file_name().unwrap().to_string_lossy().into_owned();
    let key = format!("prod/guard/{}/hog/{name}.tar.zst", host());
    assert!(
        err.contains(&format!(
            "evidence uploaded: {}/{BUCKET}/{key}",
            s3.endpoint()
        )),
        "{err}"
    );
    let r = record(&b);
    assert_eq!(r["state"], "uploaded", "{r}");
    assert_eq!(r["key"], key.as_str(), "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    // boto3, not guard, reads it back: the archive, its hash in the manifest beside it, and the
    // bundle's files in it (guard's own upload record left out).
    let checked = s3
        .boto(&format!(
            "import subprocess\n\
             keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket='{BUCKET}', Prefix='prod/')['Contents'])\n\
             a = s3.get_object(Bucket='{BUCKET}', Key='{key}')['Body'].read()\n\
             m = json.loads(s3.get_object(Bucket='{BUCKET}', Key='{key}'.replace('.tar.zst', '.manifest.json'))['Body'].read())\n\
             names = subprocess.run(['tar', '--zstd', '-tf', '-'], input=a, capture_output=True, check=True).stdout.decode().split()\n\
             print(json.dumps({{'keys': keys, 'sha_ok': hashlib.sha256(a).hexdigest() == m['archive']['sha256'], \
             'bytes': len(a), 'archive': m['archive'], 'job': m['job'], 'names': names}}))"
        ))
        .expect("boto3 reads the upload");
    let v: Value = serde_json::from_str(checked.trim()).unwrap();
    // The warning's bundle went up too, beside the kill's.
    let w = bundle_named(&err, "past its warning threshold");
    let warned = format!(
        "prod/guard/{}/hog/{}.tar.zst",
        host(),
        w.file_name().unwrap().to_string_lossy()
    );
    assert_eq!(record(&w)["state"], "uploaded");
    let mut want = vec![
        key.replace(".tar.zst", ".manifest.json"),
        key.clone(),
        warned.replace(".tar.zst", ".manifest.json"),
        warned,
    ];
    want.sort();
    assert_eq!(v["keys"], serde_json::json!(want), "{v}");
    assert_eq!(v["sha_ok"], true, "{v}");
    assert_eq!(v["archive"]["bytes"], v["bytes"], "{v}");
    assert_eq!(v["archive"]["sha256"], r["sha256"], "{v}");
    assert_eq!(v["job"], "hog", "{v}");
    let names: Vec<&str> = v["names"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for f in ["manifest.json", "summary.txt", "timeline.csv"] {
        assert!(
            names.contains(&format!("{name}/{f}").as_str()),
            "{f} not in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.ends_with("upload.json")),
        "{names:?}"
    );
    // The alert (sent before the upload) named the presigned link, which opens the archive
    // without credentials.
    // The kill's alert (the warning's came first, with its own bundle's link).
    let link = err
        .lines()
        .find(|l| l.contains("event=memory-limit"))
        .unwrap_or_else(|| panic!("no memory-limit alert: {err}"))
        .split("Off the host (once the run is over): ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(|l| l.trim_end_matches(['.', '"']).to_string())
        .unwrap_or_else(|| panic!("no link in the alert: {err}"));
    assert!(link.contains("X-Amz-Signature="), "{link}");
    read_back_from_anywhere(&s3, &key);
    let fetched = s3
        .boto(&format!(
            "import urllib.request\n\
             print(hashlib.sha256(urllib.request.urlopen('{link}').read()).hexdigest())"
        ))
        .unwrap();
    assert_eq!(fetched.trim(), r["sha256"].as_str().unwrap(), "{link}");
}

/// Read back from anywhere: the list of the bucket, the report of the archive `key` (and of its
/// manifest), with the same AWS variables and no evidence directory; a missing key is one line
/// and 125.
fn read_back_from_anywhere(s3: &S3, key: &str) {
    let remote = |args: &[&str]| {
        let mut c = guard_cmd();
        for (k, v) in s3.env() {
            c.env(k, v);
        }
        c.env_remove("GUARD_EVIDENCE_DIR").args(args);
        c.bounded()
    };
    let uri = format!("s3://{BUCKET}/{key}");
    let o = remote(&["list", &format!("s3://{BUCKET}/prod/guard")]);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{listed}{}", stderr(&o));
    assert!(
        listed
            .lines()
            .any(|l| l.contains(" hog ") && l.ends_with(&uri)),
        "{listed}"
    );
    for asked in [uri.clone(), uri.replace(".tar.zst", ".manifest.json")] {
        let o = remote(&["report", &asked]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(o.status.code(), Some(0), "{asked}: {}", stderr(&o));
        assert!(text.contains("exceeded its memory limit"), "{text}");
        assert!(text.contains("what holds the memory"), "{text}");
    }
    let o = remote(&["report", &format!("s3://{BUCKET}/prod/nothing.tar.zst")]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("NoSuchKey"), "{}", stderr(&o));
}

/// The same with guard alone on both sides (the cgroup v2 guest has `weed` and no Python client):
/// a kill lands in SeaweedFS, `guard list s3://` finds it and `guard report s3://` explains it.
#[test]
fn a_kill_lands_in_s3_and_guard_reads_it_back() {
    let t = "a_kill_lands_in_s3_and_guard_reads_it_back";
    if !privileged(t) {
        return;
    }
    let Some(s3) = S3::start_bare(t) else { return };
    let ev = tempfile::tempdir().unwrap();
    let o = killed(ev.path(), &s3.env(), &format!("s3://{BUCKET}/lane"), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    let r = record(&b);
    assert_eq!(r["state"], "uploaded", "{r}\n{err}");
    let uri = format!("s3://{BUCKET}/{}", r["key"].as_str().unwrap());
    let remote = |args: &[&str]| {
        let mut c = guard_cmd();
        for (k, v) in s3.env() {
            c.env(k, v);
        }
        c.args(args);
        let o = c.bounded();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let listed = remote(&["list", &format!("s3://{BUCKET}/lane")]);
    assert!(listed.lines().any(|l| l.ends_with(&uri)), "{listed}");
    let text = remote(&["report", &uri]);
    assert!(text.contains("exceeded its memory limit"), "{text}");
    assert!(text.contains("what holds the memory"), "{text}");
}

/// Each fault leaves the bundle pending with the job's status unchanged and one line saying why.
fn assert_pending(o: &std::process::Output, status: i32, why: &str) -> PathBuf {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(status), "{err}");
    let b = bundle_named(&err, "; evidence: ");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("upload of ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("pending") && lines[0].contains(why),
        "want '{why}' in: {}",
        lines[0]
    );
    let r = record(&b);
    assert_eq!(r["state"], "pending", "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains(why), "{r}");
    assert!(b.join("manifest.json").is_file());
    b
}

#[test]
fn wrong_credentials_and_a_missing_bucket_leave_the_bundle_pending() {
    let t = "wrong_credentials_and_a_missing_bucket_leave_the_bundle_pending";
    if !privileged(t) {
        return;
    }
    let Some(s3) = S3::start(t) else { return };
    let ev = tempfile::tempdir().unwrap();
    let mut env = s3.env();
    env.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret".into()));
    let o = killed(ev.path(), &env, &format!("s3://{BUCKET}/p"), &[]);
    assert_pending(&o, 137, "SignatureDoesNotMatch");
    let ev = tempfile::tempdir().unwrap();
    let o = killed(ev.path(), &s3.env(), "s3://no-such-bucket/p", &[]);
    assert_pending(&o, 137, "NoSuchBucket");
    // Nothing went up.
    let listed = s3
        .boto(&format!(
            "print(s3.list_objects_v2(Bucket='{BUCKET}').get('KeyCount', 0))"
        ))
        .unwrap();
    assert_eq!(listed.trim(), "0");
}

#[test]
fn no_server_or_a_silent_one_leaves_it_pending_within_the_bound() {
    let t = "no_server_or_a_silent_one_leaves_it_pending_within_the_bound";
    if !privileged(t) {
        return;
    }
    // Nothing listens: refused at once; a --timeout ending keeps its 124.
    let ev = tempfile::tempdir().unwrap();
    let env = [
        (
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", free_port()),
        ),
        ("AWS_ACCESS_KEY_ID", "k".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "s".to_string()),
    ];
    let o = guard_with(
        ev.path(),
        &env,
        &[
            "--timeout",
            "1s",
            "--upload",
            "s3://evidence/p",
            "--",
            "sleep",
            "30",
        ],
    );
    assert_pending(&o, 124, "Connection");
    // A server that accepts and never answers: the upload gives up at --upload-timeout (2 s);
    // guard is done well within it and the kill's own bounds (60 s: a busy machine's margin).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        silent.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(90);
        while Instant::now() < until {
            if let Ok((c, _)) = silent.accept() {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let ev = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ACCESS_KEY_ID", "k".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "s".to_string()),
    ];
    let t0 = Instant::now();
    let o = killed(
        ev.path(),
        &env,
        "s3://evidence/p",
        &["--upload-timeout", "2s"],
    );
    let took = t0.elapsed();
    assert_pending(&o, 137, "");
    let r = record(&bundle_named(&stderr(&o), "; evidence: "));
    let e = r["error"].as_str().unwrap_or("");
    assert!(e.contains("timed out") || e.contains("ran out"), "{r}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    drop(held);
}

/// How a stand-in server misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Every request answered 503 with S3's SlowDown.
    Busy,
    /// Every connection reset (RST) once part of the request has arrived.
    Reset,
}

/// A loopback server that misbehaves as `fault` says, for 120 s at most; its port.
fn faulty(fault: Fault) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until {
            let Ok((mut c, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = c.set_nonblocking(false);
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            match fault {
                Fault::Busy => {
                    let body = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code>\
                                <Message>Please reduce your request rate.</Message></Error>";
                    let _ = write!(
                        c,
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Fault::Reset => {
                    // SO_LINGER 0: close sends a reset, not a FIN.
                    let l = libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    };
                    // SAFETY: setsockopt reads `l` for its size; the descriptor is c's.
                    unsafe {
                        libc::setsockopt(
                            std::os::fd::AsRawFd::as_raw_fd(&c),
                            libc::SOL_SOCKET,
                            libc::SO_LINGER,
                            (&l as *const libc::linger).cast(),
                            std::mem::size_of::<libc::linger>() as libc::socklen_t,
                        );
                    }
                }
            }
        }
    });
    port
}

/// A server answering 5xx, and one resetting connections: each leaves the bundle pending with
/// the job's status unchanged — and `guard upload --pending` ships them once the real server is
/// there.
#[test]
fn a_busy_or_resetting_server_leaves_it_pending_until_guard_upload() {
    let t = "a_busy_or_resetting_server_leaves_it_pending_until_guard_upload";
    if !privileged(t) {
        return;
    }
    let Some(s3) = S3::start(t) else { return };
    let ev = tempfile::tempdir().unwrap();
    for (fault, why) in [(Fault::Busy, "503 SlowDown"), (Fault::Reset, "reset")] {
        let env = [
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", faulty(fault)),
            ),
            ("AWS_ACCESS_KEY_ID", s3::KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", s3::SECRET.to_string()),
        ];
        let o = killed(ev.path(), &env, &format!("s3://{BUCKET}/p"), &[]);
        assert_pending(&o, 137, why);
    }
    let mut env = s3.env();
    env.push(("GUARD_UPLOAD", format!("s3://{BUCKET}/p")));
    let o = upload_cmd(
        &env,
        &["--pending", "--evidence-dir", ev.path().to_str().unwrap()],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    // One bundle per run (each run's assert_pending saw exactly one upload line).
    assert_eq!(
        out.lines().filter(|l| l.starts_with("uploaded  ")).count(),
        2,
        "{out}"
    );
}

#[test]
fn a_core_goes_up_in_parts() {
    let t = "a_core_goes_up_in_parts";
    if !privileged(t) || !tool(t, "gcore") || !tool(t, "python3") {
        return;
    }
    let Some(s3) = S3::start(t) else { return };
    let ev = tempfile::tempdir().unwrap();
    // 24 MiB that do not compress, held, then a climb to the cap: the core is ~4 parts.
    let script = "import os\nkeep = os.urandom(24 << 20)\nx = []\nwhile True:\n    x.append(bytearray(1 << 20))\n";
    let o = guard_with(
        ev.path(),
        &s3.env(),
        &[
            "-m",
            "96M",
            "--core",
            "--upload",
            "s3://evidence/cores",
            "--",
            "python3",
            "-c",
            script,
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    let b = bundle_named(&err, "exceeded its memory limit");
    let r = record(&b);
    assert_eq!(r["state"], "uploaded", "{r}\n{err}");
    let bytes = r["bytes"].as_u64().unwrap();
    assert!(
        bytes > 12 << 20,
        "the archive is {bytes} bytes: no core in it?"
    );
    let key = r["key"].as_str().unwrap().to_string();
    let checked = s3
        .boto(&format!(
            "h = s3.head_object(Bucket='{BUCKET}', Key='{key}')\n\
             a = s3.get_object(Bucket='{BUCKET}', Key='{key}')['Body'].read()\n\
             print(h['ETag'], len(a), hashlib.sha256(a).hexdigest())"
        ))
        .unwrap();
    let words: Vec<&str> = checked.split_whitespace().collect();
    // A multipart object's ETag ends in -PARTS.
    assert!(words[0].contains('-'), "not a multipart upload: {checked}");
    assert_eq!(words[1], bytes.to_string(), "{checked}");
    assert_eq!(words[2], r["sha256"].as_str().unwrap(), "{checked}");
}

/// `guard upload ARGS` with `env` (no AWS variables of the developer's).
fn upload_cmd(env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut c = guard_cmd();
    for k in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
    ] {
        c.env_remove(k);
    }
    c.env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    for (k, v) in env {
        c.env(k, v);
    }
    c.arg("upload").args(args).stdin(Stdio::null());
    output_within(&mut c, Duration::from_secs(120))
}

/// A bundle left pending (the wrong secret), in `ev`.
fn left_pending(s3: &S3, ev: &Path) -> PathBuf {
    let mut env = s3.env();
    env.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret".into()));
    let o = killed(ev, &env, &format!("s3://{BUCKET}/p"), &[]);
    assert_pending(&o, 137, "SignatureDoesNotMatch")
}

#[test]
fn a_pending_bundle_goes_up_with_guard_upload_or_the_next_run() {
    let t = "a_pending_bundle_goes_up_with_guard_upload_or_the_next_run";
    if !privileged(t) {
        return;
    }
    let Some(s3) = S3::start(t) else { return };
    let ev = tempfile::tempdir().unwrap();
    let evs = ev.path().to_string_lossy().into_owned();
    let a = left_pending(&s3, ev.path());
    let mut env = s3.env();
    env.push(("GUARD_UPLOAD", format!("s3://{BUCKET}/p")));
    // By hand: every pending bundle of the evidence directory, with its job's settings.
    let o = upload_cmd(&env, &["--pending", "--evidence-dir", &evs]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.starts_with(&format!("uploaded  {} \u{2192} ", a.display())),
        "{out}"
    );
    let r = record(&a);
    assert_eq!(
        (r["state"].as_str(), r["attempts"].as_u64()),
        (Some("uploaded"), Some(2)),
        "{r}"
    );
    let key = r["key"].as_str().unwrap().to_string();
    s3.boto(&format!("s3.head_object(Bucket='{BUCKET}', Key='{key}')"))
        .expect("the archive is there");
    // Nothing left: a second --pending says so and succeeds.
    let o = upload_cmd(&env, &["--pending", "--evidence-dir", &evs]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "no bundle is pending"
    );
    // The next run of a job with the same target ships what is pending while its job runs.
    let b = left_pending(&s3, ev.path());
    let o = guard_with(
        ev.path(),
        &s3.env(),
        &["--upload", &format!("s3://{BUCKET}/p"), "--", "true"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(record(&b)["state"], "uploaded", "{}", stderr(&o));
    // A bundle that cannot go up: exit 1, its line says why, it stays pending.
    let c = left_pending(&s3, ev.path());
    let dead = [
        (
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", free_port()),
        ),
        ("AWS_ACCESS_KEY_ID", "k".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "s".to_string()),
        ("GUARD_UPLOAD", format!("s3://{BUCKET}/p")),
    ];
    let o = upload_cmd(&dead, &[c.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.starts_with(&format!("pending   {}: ", c.display())),
        "{out}"
    );
    assert_eq!(record(&c)["attempts"], 2);
    // guard list says which are up and which are pending.
    let mut l = guard_cmd();
    l.args(["list", "--evidence-dir", &evs]);
    let listed = String::from_utf8_lossy(&l.bounded().stdout).into_owned();
    let row = |b: &Path| {
        listed
            .lines()
            .find(|l| l.ends_with(&b.display().to_string()))
            .unwrap_or_else(|| panic!("{} not listed:\n{listed}", b.display()))
            .to_string()
    };
    assert!(
        listed.lines().next().unwrap().contains(" UPLOAD "),
        "{listed}"
    );
    assert!(row(&a).contains(" uploaded "), "{listed}");
    assert!(row(&b).contains(" uploaded "), "{listed}");
    assert!(row(&c).contains(" pending "), "{listed}");
}

/// The failure path rehearsed with the upload in it: drill writes, reads back and deletes a test
/// object and checks that its own bundle went up; doctor and config check verify the credentials
/// and the bucket without shipping anything.
#[test]
fn drill_doctor_and_config_check_verify_the_upload() {
    let t = "drill_doctor_and_config_check_verify_the_upload";
    if !privileged(t) {
        return;
    }
    let Some(s3) = S3::start(t) else { return };
    let ev = tempfile::tempdir().unwrap();
    let config = ev.path().join("guard.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nmemory = \"64M\"\nevidence_dir = \"{}\"\nupload = \"s3://{BUCKET}/drills\"\n",
            ev.path().join("bundles").display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let run = |env: &[(&'static str, String)], args: &[&str]| {
        let mut c = guard_cmd();
        c.env_remove("GUARD_EVIDENCE_DIR");
        c.env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args);
        let o = c.bounded();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o),
        )
    };
    let (code, out) = run(&s3.env(), &["drill", "--config", cfg]);
    assert_eq!(code, Some(0), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no '{name}' in:\n{out}"))
            .to_string()
    };
    assert!(line("upload: a test object").contains("\u{2713}"), "{out}");
    assert!(
        line("wrote, read back and deleted").contains("/drills/"),
        "{out}"
    );
    let shipped = line("upload: the drill's bundle");
    assert!(
        shipped.contains("\u{2713}") && shipped.contains("/drills/"),
        "{out}"
    );
    // Nothing of the test object is left; the drill's bundle is.
    let keys = s3
        .boto(&format!(
            "print(' '.join(o['Key'] for o in s3.list_objects_v2(Bucket='{BUCKET}', Prefix='drills/').get('Contents', [])))"
        ))
        .unwrap();
    assert!(!keys.contains("guard-drill"), "{keys}");
    assert!(
        keys.contains(".tar.zst") && keys.contains(".manifest.json"),
        "{keys}"
    );
    // doctor and config check: accepted, refused, missing bucket.
    let (_, out) = run(&s3.env(), &["config", "check", cfg]);
    assert!(
        out.lines()
            .any(|l| l.contains("\u{2713} upload") && l.contains("accepted")),
        "{out}"
    );
    let mut wrong = s3.env();
    wrong.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    wrong.push(("AWS_SECRET_ACCESS_KEY", "wrong".into()));
    let mut env = wrong.clone();
    env.push(("GUARD_CONFIG", cfg.to_string()));
    let (_, out) = run(&env, &["doctor"]);
    assert!(
        out.lines()
            .any(|l| l.contains("\u{2717} upload") && l.contains("AccessDenied")),
        "{out}"
    );
    let mut env = s3.env();
    env.push(("GUARD_CONFIG", cfg.to_string()));
    env.push(("GUARD_UPLOAD", "s3://no-such-bucket/x".into()));
    let (_, out) = run(&env, &["doctor"]);
    assert!(
        out.lines()
            .any(|l| l.contains("\u{2717} upload") && l.contains("NoSuchBucket")),
        "{out}"
    );
}

#[test]
fn guard_upload_says_what_it_needs() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "needs BUNDLE_DIR... or --pending"),
        (&["/nonexistent/bundle"], "not a bundle"),
        (
            &["--pending", "--evidence-dir", "/nonexistent/ev"],
            "no such evidence directory",
        ),
    ];
    for (args, want) in cases {
        let o = upload_cmd(&[], args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(
            err.starts_with("guard: error: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    // A bundle whose job has no target (a real one: a kill without --upload).
    if !privileged("guard_upload_says_what_it_needs") {
        return;
    }
    let ev = tempfile::tempdir().unwrap();
    let hog = example("hog");
    let o = guard_with(
        ev.path(),
        &[],
        &["-m", "64M", "--", hog.to_str().unwrap(), "alloc", "400"],
    );
    let b = bundle_named(&stderr(&o), "exceeded its memory limit");
    let o = upload_cmd(&[], &[b.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("the job 'hog' has no upload target") && err.contains("GUARD_UPLOAD"),
        "{err}"
    );
    assert!(!b.join("upload.json").exists(), "nothing was tried");
}

/// guard config check shows the upload's settings with where each came from, and names the
/// credentials by where they come from: a secret written in the file is never printed.
#[test]
fn config_check_shows_the_upload_but_no_secret() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("guard.toml");
    std::fs::write(
        &f,
        "[defaults]\nupload = \"s3://evidence/p\"\nupload_endpoint = \"http://127.0.0.1:1\"\n\
         upload_access_key_id = \"AKIAPLAINID\"\nupload_secret_access_key = \"PLAINSECRETVALUE\"\n",
    )
    .unwrap();
    let mut c = guard_cmd();
    c.args(["config", "check"]).arg(&f);
    let o = c.bounded();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("upload ") && l.contains("s3://evidence/p")),
        "{out}"
    );
    assert!(out.contains("(the value itself, not shown)"), "{out}");
    assert!(
        !out.contains("PLAINSECRETVALUE") && !out.contains("AKIAPLAINID"),
        "{out}"
    );
    // The readiness check tried the endpoint and says why it failed.
    assert!(out.lines().any(|l| l.contains("\u{2717} upload")), "{out}");
}

#[test]
fn upload_settings_are_checked_before_the_job_starts() {
    let ev = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--upload", "evidence/p"], "expected s3://BUCKET/PREFIX"),
        (&["--upload", "s3://Evidence"], "is not a bucket name"),
        (
            &[
                "--upload",
                "s3://evidence",
                "--upload-endpoint",
                "http://10.1.2.3:8333",
            ],
            "in the clear",
        ),
        (
            &[
                "--upload",
                "s3://evidence",
                "--upload-addressing",
                "sideways",
            ],
            "expected path or virtual",
        ),
        (
            &[
                "--upload",
                "s3://evidence",
                "--upload-access-key-id",
                "env:K",
                "--upload-secret-access-key",
                "hunter2",
            ],
            "visible to every user",
        ),
        (&["--upload-timeout", "5s"], "needs --upload"),
        (
            &["--upload", "s3://evidence", "--upload-presign", "8d"],
            "7 days at most",
        ),
    ];
    let marker = ev.path().join("ran");
    for (args, want) in cases {
        let mut all: Vec<&str> = args.to_vec();
        let touch = format!("touch {}", marker.display());
        all.extend(["--", "sh", "-c", &touch]);
        let o = guard_with(ev.path(), &[], &all);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("guard: error: ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!marker.exists(), "{args:?}: the job ran");
    }
}
