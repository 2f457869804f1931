//! Shipping bundles off the host (guard(1), UPLOAD): after a run — the job killed, its alerts
//! sent — each bundle it wrote goes to S3-compatible storage as one archive object,
//! `PREFIX/HOST/JOB/BUNDLE.tar.zst` ([`archive`]), then its manifest beside it,
//! `BUNDLE.manifest.json` (the bundle's manifest with the archive's key, size and sha256), so
//! that bundles can be listed and read without downloading them. The requests are [`s3`]'s, the
//! credentials [`credentials`]'. Every bundle is marked pending in its `upload.json` before its
//! upload starts and uploaded once both objects are up: a failure — the server down, a 5xx, too
//! slow, wrong credentials, no such bucket — leaves the bundle on disk, pending, with one line on
//! stderr; the job's exit status never depends on it. All of a run's uploads share one bound
//! (`--upload-timeout`). What went up is read back from anywhere by [`remote`].

pub mod archive;
pub mod credentials;
pub mod remote;
pub mod s3;

use crate::config::upload::Upload;
use crate::format::{self, Manifest};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

pub use crate::format::{UPLOAD_RECORD as RECORD, UploadRecord as Record, UploadState as State};

/// The archive's and the manifest's keys: `PREFIX/HOST/JOB/BUNDLE.tar.zst` and
/// `PREFIX/HOST/JOB/BUNDLE.manifest.json`. Each part is kept to letters, digits, `.`, `_` and
/// `-` (anything else becomes `_`), so that no host or job name can climb out of the prefix.
pub fn keys(prefix: &str, host: &str, job: &str, bundle: &str) -> (String, String) {
    let part = |s: &str| -> String {
        let c: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let c = c.replace("..", "_");
        match c.trim_start_matches('.') {
            "" => "_".to_string(),
            t => t.to_string(),
        }
    };
    let base = [prefix.to_string(), part(host), part(job), part(bundle)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    (format!("{base}.tar.zst"), format!("{base}.manifest.json"))
}

/// Where `bundle`'s archive will be once the run is over (for the alerts, which go out
/// before it): the object's URL, and a presigned link valid for `--upload-presign` when asked
/// (the credentials resolved now; without them, no link).
pub fn planned(
    u: &Upload,
    host: &str,
    job: &str,
    bundle: &Path,
) -> (Option<String>, Option<String>) {
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (key, _) = keys(&u.target.prefix, host, job, &name);
    let creds = u
        .presign
        .and_then(|_| credentials::find(u.keys.as_ref()).ok())
        .map(|(c, _)| c);
    let Ok(client) = s3::Client::new(u, creds, Instant::now()) else {
        return (None, None);
    };
    let link = u
        .presign
        .filter(|_| client.signs())
        .map(|d| client.presigned_get(&key, d));
    (Some(client.object_url(&key)), link)
}

/// The bundles of the evidence directory `dir` whose upload is pending, oldest first (a
/// bundle's name starts with its UTC time). Only guard's own names are looked at, and only
/// directories; nothing is followed.
pub fn pending_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.len() > 17 && n.as_bytes()[8] == b'T' && !n.starts_with('.')
        })
        .map(|e| e.path())
        .filter(|p| read_record(p).is_some_and(|r| r.state == State::Pending))
        .collect();
    out.sort();
    out
}

/// The next run on the host ships what earlier runs left pending — on a thread of its own while
/// the job runs, within `--upload-timeout`, only bundles meant for this run's target (another
/// target's settings may differ). Joined at the end of the run; its lines are info lines (the
/// failures were said when the bundles were left pending).
pub fn retry_pending(u: &Upload, dir: PathBuf) -> std::thread::JoinHandle<Vec<Outcome>> {
    let u = u.clone();
    std::thread::spawn(move || {
        let target = u.target.shown();
        let bundles: Vec<PathBuf> = pending_in(&dir)
            .into_iter()
            .filter(|b| read_record(b).is_some_and(|r| r.target == target))
            .collect();
        if bundles.is_empty() {
            return Vec::new();
        }
        let out = ship_all(&u, &bundles, client(&u, Instant::now() + u.timeout));
        for o in &out {
            match o.record.state {
                State::Uploaded => log::info!(
                    "evidence left pending by an earlier run uploaded: {}",
                    o.record.url
                ),
                State::Pending => log::info!(
                    "{} is still pending: {}",
                    o.bundle.display(),
                    o.record.error.as_deref().unwrap_or("unknown")
                ),
            }
        }
        out
    })
}

/// Whether the upload would work now, without shipping a bundle (`guard doctor`, `guard config
/// check`, the drill's readiness): the credentials found and the bucket there for them (a HEAD
/// of the bucket, within 10 s). Says where it looked, never a secret.
pub fn check(u: &Upload) -> Result<String, String> {
    let (creds, source) = credentials::find(u.keys.as_ref())?;
    let bound = std::time::Duration::from_secs(10).min(u.timeout);
    let client = s3::Client::new(u, Some(creds), Instant::now() + bound)?;
    client
        .head_bucket()
        .map(|()| {
            format!(
                "{} at {} ({}), credentials from {source}: accepted",
                u.target.shown(),
                u.endpoint,
                u.endpoint_from
            )
        })
        .map_err(|e| format!("{} at {}: {e}", u.target.shown(), u.endpoint))
}

/// `guard drill`: the upload end to end without a bundle — a small object written under
/// PREFIX/HOST/, read back, compared and deleted. Its detail, or why it failed.
pub fn round_trip(u: &Upload) -> Result<String, String> {
    let client = client(u, Instant::now() + u.timeout)?;
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (archive, _) = keys(
        &u.target.prefix,
        &host,
        "guard-drill",
        &format!("{:016x}", crate::os::random_u64()),
    );
    let key = archive.replace(".tar.zst", ".txt");
    let body = format!("guard drill {}\n", format::rfc3339(SystemTime::now()));
    client
        .put(&key, body.as_bytes(), "text/plain")
        .map_err(|e| e.to_string())?;
    let back = client
        .get(&key)
        .map_err(|e| e.to_string())
        .and_then(|r| s3::read_limited(r, 4096).map_err(|e| e.to_string()));
    let deleted = client.delete(&key);
    match (back, deleted) {
        (Ok(b), Ok(())) if b == body => Ok(format!(
            "wrote, read back and deleted s3://{}/{key}",
            u.target.bucket
        )),
        (Ok(b), Err(e)) if b == body => Err(format!("written and read, but not deleted: {e}")),
        (Ok(_), _) => Err(format!(
            "s3://{}/{key} read back different",
            u.target.bucket
        )),
        (Err(e), _) => Err(e),
    }
}

/// What `guard` says about one bundle's upload.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub bundle: PathBuf,
    pub record: Record,
}

/// The bundle's manifest, read back (its host, job and time name the objects).
fn manifest(bundle: &Path) -> Result<Manifest, String> {
    format::read_manifest(bundle).map_err(|e| e.to_string())
}

/// Ship the bundles of a run that is over (`bundles`, oldest first), within `--upload-timeout`.
/// One line on stderr for each that stays pending; one info line for each that went up.
pub fn after_run(u: &Upload, bundles: &[PathBuf]) -> Vec<Outcome> {
    if bundles.is_empty() {
        return Vec::new();
    }
    let out = ship_all(u, bundles, client(u, Instant::now() + u.timeout));
    for o in &out {
        match (o.record.state, &o.record.error) {
            (State::Uploaded, _) => log::info!("evidence uploaded: {}", o.record.url),
            (State::Pending, error) => log::warn!(
                "upload of {} to {} failed: {}; the bundle stays on disk, pending (guard upload \
                 --pending retries it); the job's result is unchanged",
                o.bundle.display(),
                u.target.shown(),
                error.as_deref().unwrap_or("unknown")
            ),
        }
    }
    out
}

/// A client of `u`'s bucket, signing with the credentials found now, its requests bounded by
/// `deadline`; or why there is none.
pub fn client(u: &Upload, deadline: Instant) -> Result<s3::Client, String> {
    let (creds, _) = credentials::find(u.keys.as_ref())?;
    s3::Client::new(u, Some(creds), deadline)
}

/// Ship `bundles` one after another with `client` (or the reason there is none), each marked
/// pending first.
pub fn ship_all(
    u: &Upload,
    bundles: &[PathBuf],
    client: Result<s3::Client, String>,
) -> Vec<Outcome> {
    bundles.iter().map(|b| outcome(u, &client, b)).collect()
}

/// Ship one bundle now, within `--upload-timeout` (`guard upload`).
pub fn ship_now(u: &Upload, bundle: &Path) -> Outcome {
    outcome(u, &client(u, Instant::now() + u.timeout), bundle)
}

/// One bundle's try with `client` (or the reason there is none).
fn outcome(u: &Upload, client: &Result<s3::Client, String>, b: &Path) -> Outcome {
    let attempts = read_record(b).map_or(0, |r| r.attempts) + 1;
    let record = match client {
        Ok(c) => ship_one(u, c, b, attempts),
        Err(why) => pending(u, b, None, attempts, Some(why.clone())),
    };
    Outcome {
        bundle: b.to_path_buf(),
        record,
    }
}

/// One bundle (its `attempts`-th try): pending, the archive, the manifest beside it, uploaded.
fn ship_one(u: &Upload, client: &s3::Client, bundle: &Path, attempts: u32) -> Record {
    let m = match manifest(bundle) {
        Ok(m) => m,
        Err(e) => {
            let why = format!("the bundle cannot be read: {e}");
            return pending(u, bundle, None, attempts, Some(why));
        }
    };
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (key, mkey) = keys(&u.target.prefix, &m.host, &m.job, &name);
    let url = client.object_url(&key);
    let at = || Some((key.as_str(), url.clone()));
    // Pending before anything goes: a guard killed mid-upload leaves it for the next run.
    pending(u, bundle, at(), attempts, None);
    let sent = match with_retries(client, || archive::send(client, &key, bundle, &name)) {
        Ok(s) => s,
        Err(e) => return pending(u, bundle, at(), attempts, Some(e.to_string())),
    };
    let beside = manifest_object(&m, &key, &url, &sent);
    let put = with_retries(client, || {
        client
            .put(&mkey, &beside, "application/json")
            .map_err(archive::SendError::S3)
    });
    if let Err(e) = put {
        return pending(u, bundle, at(), attempts, Some(e.to_string()));
    }
    let rec = Record {
        state: State::Uploaded,
        target: u.target.shown(),
        url,
        key,
        sha256: Some(sent.sha256),
        bytes: Some(sent.bytes),
        attempts,
        error: None,
        at: format::rfc3339(SystemTime::now()),
    };
    if let Err(e) = write_record(bundle, &rec) {
        log::warn!("{e}");
    }
    rec
}

/// Tries of one request before a transient failure (a 5xx, a throttle, a reset, a refused
/// connection) leaves the bundle pending, as the AWS SDKs' standard mode does; each waits
/// longer, all within the upload's deadline.
const TRIES: u32 = 3;

fn with_retries<T>(
    client: &s3::Client,
    mut f: impl FnMut() -> Result<T, archive::SendError>,
) -> Result<T, archive::SendError> {
    let mut wait = std::time::Duration::from_millis(500);
    let mut tries = 1;
    loop {
        match f() {
            Err(e) if e.transient() && tries < TRIES && client.has_time_for(wait) => {
                log::debug!("{e}; trying again in {} ms", wait.as_millis());
                std::thread::sleep(wait);
                wait *= 2;
                tries += 1;
            }
            r => return r,
        }
    }
}

/// The manifest object: the bundle's manifest, and where its archive is (key, URL, size,
/// sha256, when it went up).
fn manifest_object(m: &Manifest, key: &str, url: &str, sent: &archive::Sent) -> Vec<u8> {
    let mut v = serde_json::to_value(m).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "archive".into(),
            serde_json::json!({
                "key": key,
                "url": url,
                "bytes": sent.bytes,
                "sha256": sent.sha256,
                "uploaded_at": format::rfc3339(SystemTime::now()),
            }),
        );
    }
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

/// Mark `bundle` pending after `attempts` tries (`why` the last failed; None: it is starting)
/// and return the record. `at`: the archive's key and URL, when known.
fn pending(
    u: &Upload,
    bundle: &Path,
    at: Option<(&str, String)>,
    attempts: u32,
    why: Option<String>,
) -> Record {
    let (key, url) = match (at, read_record(bundle)) {
        (Some((k, url)), _) => (k.to_string(), url),
        (None, Some(r)) => (r.key, r.url),
        (None, None) => (String::new(), String::new()),
    };
    let rec = Record {
        state: State::Pending,
        target: u.target.shown(),
        key,
        url,
        sha256: None,
        bytes: None,
        attempts,
        error: why,
        at: format::rfc3339(SystemTime::now()),
    };
    if let Err(e) = write_record(bundle, &rec) {
        log::warn!("{e}");
    }
    rec
}

/// A bundle's upload record, if it has one.
pub fn read_record(bundle: &Path) -> Option<Record> {
    crate::format::read_upload_record(bundle)
}

fn write_record(bundle: &Path, r: &Record) -> Result<(), crate::evidence::EvidenceError> {
    let json = serde_json::to_vec_pretty(r).unwrap_or_default();
    crate::evidence::replace_in_bundle(bundle, RECORD, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_the_prefix() {
        let (a, m) = keys(
            "prod/guard",
            "web-1",
            "fix_images",
            "20261207T065743Z-fix_images-42",
        );
        assert_eq!(
            a,
            "prod/guard/web-1/fix_images/20261207T065743Z-fix_images-42.tar.zst"
        );
        assert_eq!(
            m,
            "prod/guard/web-1/fix_images/20261207T065743Z-fix_images-42.manifest.json"
        );
        let (a, _) = keys("", "../..", "a/b", ".hidden");
        assert_eq!(a, "___/a_b/hidden.tar.zst");
        assert!(!a.contains(".."), "{a}");
    }
}
