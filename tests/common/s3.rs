//! A real S3 server for the upload tests: SeaweedFS's `weed mini` (from the venv
//! scripts/install-s3-server makes, GUARD_TEST_S3_VENV) bound to 127.0.0.1, every one of its
//! ports chosen free, one identity with a known key, a bucket made; and boto3 from the same venv,
//! an S3 client independent of guard's, to check what guard uploaded. Stopped (its process group
//! killed, its data removed) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY_ID: &str = "guardtestkey";
pub const SECRET: &str = "guardtestsecret";
pub const BUCKET: &str = "evidence";

/// How long `weed mini` may take to answer on its S3 port (it starts a master, a volume server,
/// a filer and the gateway: ~2 s idle, many times that beside busy loops).
const START_WAIT: Duration = Duration::from_secs(90);

pub struct S3 {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    venv: PathBuf,
}

/// The directory with `bin/weed` (scripts/install-s3-server's venv, or the v2 guest's copy), or
/// why there is none.
fn venv() -> Result<PathBuf, String> {
    let dir = std::env::var_os("GUARD_TEST_S3_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/guard-test/s3"));
    if dir.join("bin/weed").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "no SeaweedFS in {} (scripts/install-s3-server)",
            dir.display()
        ))
    }
}

/// Whether the venv has boto3 (the v2 guest has only `weed`).
fn has_boto(venv: &Path) -> bool {
    venv.join("bin/python").is_file()
        && Command::new(venv.join("bin/python"))
            .args(["-c", "import boto3"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// `n` loopback ports free now, from 20000 to 45000: SeaweedFS derives a port 10000 above some
/// of those it is given, which must still be a port.
fn ports(n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    let mut held = Vec::new();
    // Tests of one binary start servers at once: each draws from its own sequence.
    static DRAWS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(std::process::id()) * 7919
        + DRAWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 104_729
        + u64::from(nanos);
    while out.len() < n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let p = 20000 + ((x >> 33) % 25000) as u16;
        if out.contains(&p) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", p)) {
            held.push(l);
            out.push(p);
        }
    }
    out
}

impl S3 {
    /// A server with the bucket made, and boto3 to check what guard put there; None after
    /// `test skipped` (or a failure under GUARD_TEST_REQUIRE_TOOLS).
    pub fn start(test: &str) -> Option<S3> {
        let venv = match venv() {
            Ok(v) => v,
            Err(why) => {
                super::gate(test, Some(why), "GUARD_TEST_REQUIRE_TOOLS");
                return None;
            }
        };
        if !has_boto(&venv) {
            super::gate(
                test,
                Some(format!("no boto3 in {}", venv.display())),
                "GUARD_TEST_REQUIRE_TOOLS",
            );
            return None;
        }
        Self::serve(venv)
    }

    /// A server with the bucket made, checked with guard alone (the v2 guest has `weed` and no
    /// Python client): None after `test skipped`, or a failure under GUARD_TEST_REQUIRE_TOOLS or
    /// GUARD_TEST_REQUIRE_S3 (set in the guest that carries `weed`).
    pub fn start_bare(test: &str) -> Option<S3> {
        match venv() {
            Ok(v) => Self::serve(v),
            Err(why) => {
                let var = if std::env::var("GUARD_TEST_REQUIRE_S3").as_deref() == Ok("1") {
                    "GUARD_TEST_REQUIRE_S3"
                } else {
                    "GUARD_TEST_REQUIRE_TOOLS"
                };
                super::gate(test, Some(why), var);
                None
            }
        }
    }

    fn serve(venv: PathBuf) -> Option<S3> {
        let dir = tempfile::tempdir().expect("a directory for SeaweedFS");
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                "{{\"identities\":[{{\"name\":\"guard\",\"credentials\":[{{\"accessKey\":\"{KEY_ID}\",\
                 \"secretKey\":\"{SECRET}\"}}],\"actions\":[\"Admin\",\"Read\",\"List\",\"Tagging\",\"Write\"]}}]}}"
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let p = ports(17);
        let names = [
            "admin.port",
            "admin.port.grpc",
            "debug.port",
            "filer.port",
            "filer.port.grpc",
            "filer.port.public",
            "master.port",
            "master.port.grpc",
            "metricsPort",
            "s3.debug.port",
            "s3.metricsPort",
            "s3.port",
            "s3.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "volume.port.public",
            "webdav.port",
        ];
        let mut cmd = Command::new(venv.join("bin/weed"));
        cmd.arg("mini")
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-dir={}", dir.path().join("data").display()))
            .arg(format!("-s3.config={}", config.display()))
            .args(["-s3.port.https=0", "-s3.port.iceberg=0", "-s3.port.lance=0"])
            .args(["-master.telemetry=false", "-admin.ui=false"])
            // The bucket made at start (no client needed for it).
            .arg(format!("-bucket={BUCKET}"))
            // A PUT to a bucket that is not there must fail, as on S3, not make it.
            .arg("-s3.autoCreateBucket=false");
        for (n, port) in names.iter().zip(&p) {
            cmd.arg(format!("-{n}={port}"));
        }
        let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().expect("start weed mini");
        let s3 = S3 {
            child,
            port: p[11],
            dir,
            venv,
        };
        let until = Instant::now() + START_WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", s3.port)).is_err() {
            assert!(
                Instant::now() < until,
                "weed mini did not listen on {} within {START_WAIT:?}:\n{}",
                s3.port,
                s3.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The gateway listens before the filer behind it and the bucket are ready: wait for
        // the bucket to answer (any answer but 404 from S3's path for it).
        s3.wait_for_bucket();
        Some(s3)
    }

    /// Until guard itself can list the bucket (weed makes it a few seconds after it listens;
    /// an unsigned probe gets 403 either way), for up to START_WAIT.
    fn wait_for_bucket(&self) {
        let until = Instant::now() + START_WAIT;
        loop {
            let mut c = super::guard_cmd();
            for (k, v) in self.env() {
                c.env(k, v);
            }
            c.args(["list", &format!("s3://{BUCKET}/guard-test-probe")]);
            let o = super::output_within(&mut c, Duration::from_secs(30));
            if o.status.success() {
                return;
            }
            assert!(
                Instant::now() < until,
                "the bucket did not answer within {START_WAIT:?}: {}\n{}",
                String::from_utf8_lossy(&o.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment guard's AWS conventions read: endpoint, region, credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
        ]
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// Run Python `code` with `s3` (a boto3 client of this server) in scope; its stdout, or
    /// why it failed.
    pub fn boto(&self, code: &str) -> Result<String, String> {
        self.python(code, Duration::ZERO)
    }

    fn python(&self, code: &str, retry_for: Duration) -> Result<String, String> {
        let script = format!(
            "import boto3, botocore, sys, json, hashlib\n\
             s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{KEY_ID}', \
             aws_secret_access_key='{SECRET}', region_name='us-east-1', \
             config=botocore.config.Config(retries={{'max_attempts': 10, 'mode': 'standard'}}))\n\
             {code}\n",
            self.endpoint()
        );
        let until = Instant::now() + retry_for;
        loop {
            let o = Command::new(self.venv.join("bin/python"))
                .arg("-c")
                .arg(&script)
                .output()
                .expect("run boto3");
            if o.status.success() {
                return Ok(String::from_utf8_lossy(&o.stdout).into_owned());
            }
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            if Instant::now() >= until {
                return Err(err);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The data directory (for a test that wants to see the server's files).
    pub fn data(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        // SAFETY: kill takes a process group id and a signal; it touches no memory.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
