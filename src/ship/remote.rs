//! Bundles read back from the bucket, from anywhere with the same credentials (`guard report
//! s3://BUCKET/KEY`, `guard list s3://BUCKET/PREFIX`): the person on call needs no shell on the
//! host. An archive is unpacked into a private directory (0700, made new) as it streams in —
//! only plain files and directories, only under the bundle's own name, nothing over
//! [`MAX_ENTRY`] (a core is left out: the report does not read it) — read, and removed.

use super::s3::{Client, S3Error};
use crate::config::upload::Upload;
use crate::format::{self, Manifest};
use serde::Serialize;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

/// The largest file of an archive guard unpacks to report on it.
pub const MAX_ENTRY: u64 = 64 << 20;
/// The most an archive may unpack to (all its files but the skipped ones), and its most entries:
/// an archive is only as trustworthy as whoever can write the bucket.
pub const MAX_TOTAL: u64 = 1 << 30;
pub const MAX_ENTRIES: usize = 100_000;
/// The most manifests `guard list s3://` reads (the newest).
pub const MAX_LISTED: usize = 200;

/// `s3://BUCKET/KEY` → (BUCKET, KEY); None when it is not one.
pub fn parse(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    Some((bucket.to_string(), key.trim_start_matches('/').to_string()))
}

/// A private directory that goes away with this value.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch() -> Result<Scratch, String> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "guard-report-{}-{:016x}",
        std::process::id(),
        crate::os::random_u64()
    ));
    // A new directory (mkdir fails on anything already there, a symlink included), 0700.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    Ok(Scratch { dir })
}

/// The archive of `key` (an archive's key, or its manifest's beside it) unpacked into a private
/// directory; the bundle's path in it.
pub fn fetch(u: &Upload, key: &str) -> Result<(Scratch, PathBuf), String> {
    let key = match key.strip_suffix(".manifest.json") {
        Some(base) => format!("{base}.tar.zst"),
        None => key.to_string(),
    };
    if !key.ends_with(".tar.zst") {
        return Err(format!(
            "s3://{}/{key} is not a bundle's archive (KEY.tar.zst) or its manifest \
             (KEY.manifest.json): guard list s3://{}/PREFIX shows them",
            u.target.bucket, u.target.bucket
        ));
    }
    let client = super::client(u, Instant::now() + u.timeout)?;
    let body = client.get(&key).map_err(|e| e.to_string())?;
    let s = scratch()?;
    let name = unpack(body, &s.dir).map_err(|e| format!("s3://{}/{key}: {e}", u.target.bucket))?;
    let path = s.dir.join(name);
    Ok((s, path))
}

/// Unpack a bundle's tar.zst stream into `dir`; the bundle's name (the entries' one top
/// directory).
fn unpack(body: impl Read, dir: &Path) -> Result<String, String> {
    let dec = zstd::stream::Decoder::new(body).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(dec);
    let mut top: Option<String> = None;
    let mut total = 0u64;
    for (n, entry) in ar
        .entries()
        .map_err(|e| format!("not a tar.zst: {e}"))?
        .enumerate()
    {
        if n >= MAX_ENTRIES {
            return Err(format!(
                "more than {MAX_ENTRIES} entries: not a bundle guard wrote"
            ));
        }
        let mut e = entry.map_err(|e| format!("the archive breaks off: {e}"))?;
        let path = e.path().map_err(|e| e.to_string())?.into_owned();
        let parts: Vec<&std::ffi::OsStr> = path
            .components()
            .map(|c| match c {
                Component::Normal(p) => Ok(p),
                _ => Err(format!("an entry outside the bundle: {}", path.display())),
            })
            .collect::<Result<_, _>>()?;
        let Some(first) = parts.first().map(|p| p.to_string_lossy().into_owned()) else {
            continue;
        };
        match &top {
            None => top = Some(first.clone()),
            Some(t) if *t != first => {
                return Err(format!("two bundles in one archive: {t} and {first}"));
            }
            Some(_) => {}
        }
        let kind = e.header().entry_type();
        let out = dir.join(&path);
        if kind.is_dir() {
            std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        } else if kind.is_file() && e.size() <= MAX_ENTRY {
            total += e.size();
            if total > MAX_TOTAL {
                return Err(
                    "it unpacks to more than 1 GiB besides its cores: not a bundle guard \
                            wrote"
                        .into(),
                );
            }
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            let mut f = std::fs::File::create(&out).map_err(|e| e.to_string())?;
            std::io::copy(&mut e, &mut f).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        // Links, devices, FIFOs, and files too large for a report (cores) are skipped.
    }
    top.ok_or_else(|| "the archive is empty".to_string())
}

/// One bundle in the bucket, from its manifest beside the archive.
#[derive(Debug, Serialize)]
pub struct Row {
    pub captured_at: String,
    pub host: String,
    pub job: String,
    pub trigger: format::EventKind,
    pub peak_bytes: Option<u64>,
    /// `s3://BUCKET/KEY` of the archive (what `guard report` takes).
    pub uri: String,
    pub bytes: Option<u64>,
}

/// The bundles under `prefix`, newest first (at most [`MAX_LISTED`] manifests read).
pub fn list(u: &Upload, prefix: &str) -> Result<Vec<Row>, String> {
    let client = super::client(u, Instant::now() + u.timeout)?;
    let mut manifests: Vec<_> = client
        .list(prefix)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|o| o.key.ends_with(".manifest.json"))
        .collect();
    // Keys end in the bundle's name, which starts with its UTC time.
    manifests.sort_by(|a, b| {
        let name = |k: &str| k.rsplit('/').next().unwrap_or("").to_string();
        name(&b.key).cmp(&name(&a.key))
    });
    manifests.truncate(MAX_LISTED);
    let mut rows = Vec::new();
    for m in manifests {
        match read_manifest(&client, &m.key) {
            Ok((man, bytes)) => rows.push(Row {
                captured_at: man.captured_at,
                host: man.host,
                job: man.job,
                trigger: man.trigger,
                peak_bytes: man.peak_bytes,
                uri: format!(
                    "s3://{}/{}",
                    u.target.bucket,
                    m.key.trim_end_matches(".manifest.json").to_string() + ".tar.zst"
                ),
                bytes,
            }),
            Err(e) => log::warn!("s3://{}/{}: {e}", u.target.bucket, m.key),
        }
    }
    rows.sort_by(|a, b| b.captured_at.cmp(&a.captured_at));
    Ok(rows)
}

fn read_manifest(client: &Client, key: &str) -> Result<(Manifest, Option<u64>), S3Error> {
    let body = client.get(key)?;
    let mut buf = Vec::new();
    body.take(format::MAX_MANIFEST)
        .read_to_end(&mut buf)
        .map_err(|e| S3Error::Answer {
            what: key.to_string(),
            why: e.to_string(),
        })?;
    let v: serde_json::Value = serde_json::from_slice(&buf).map_err(|e| S3Error::Answer {
        what: key.to_string(),
        why: format!("not a manifest: {e}"),
    })?;
    let bytes = v["archive"]["bytes"].as_u64();
    let m = serde_json::from_value(v).map_err(|e| S3Error::Answer {
        what: key.to_string(),
        why: format!("not a manifest: {e}"),
    })?;
    Ok((m, bytes))
}

/// The table `guard list s3://` prints.
pub fn text(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut o = format!(
        "{:<24} {:<16} {:<16} {:<13} {:>10}  ARCHIVE\n",
        "CAPTURED (UTC)", "HOST", "JOB", "TRIGGER", "PEAK"
    );
    for r in rows {
        let _ = writeln!(
            o,
            "{:<24} {:<16} {:<16} {:<13} {:>10}  {}",
            format::escape_controls(&r.captured_at, false),
            format::escape_controls(&r.host, false),
            format::escape_controls(&r.job, false),
            r.trigger,
            r.peak_bytes
                .map(crate::config::units::format_size)
                .unwrap_or_else(|| "-".into()),
            format::escape_controls(&r.uri, false)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses '..': write the name into the header as a crafted archive would.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap()
    }

    #[test]
    fn an_archive_unpacks_into_its_bundle_and_nowhere_else() {
        let d = tempfile::tempdir().unwrap();
        let ok = archive(&[("b1/manifest.json", b"{}"), ("b1/processes/1/status", b"x")]);
        assert_eq!(unpack(&ok[..], d.path()).unwrap(), "b1");
        assert!(d.path().join("b1/processes/1/status").is_file());
        for bad in [
            archive(&[("b2/x", b"1"), ("../evil", b"2")]),
            archive(&[("/etc/evil", b"2")]),
            archive(&[("b3/x", b"1"), ("other/y", b"2")]),
        ] {
            let d = tempfile::tempdir().unwrap();
            assert!(unpack(&bad[..], d.path()).is_err());
            assert!(!d.path().parent().unwrap().join("evil").exists());
        }
    }

    #[test]
    fn s3_uris_split_into_bucket_and_key() {
        assert_eq!(
            parse("s3://evidence/p/h/j/b.tar.zst"),
            Some(("evidence".into(), "p/h/j/b.tar.zst".into()))
        );
        assert_eq!(
            parse("s3://evidence"),
            Some(("evidence".into(), String::new()))
        );
        assert_eq!(parse("/var/lib/guard/evidence/b"), None);
    }
}
