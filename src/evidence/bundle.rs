//! The bundle on disk: a directory created under a temporary name (`.tmp-<guard pid>-<name>`) in
//! the evidence directory, files 0600 and directories 0700, renamed to
//! `<UTC yyyymmddThhmmssZ>-<job>-<pid>` only when complete — a reader never sees half a bundle
//! under a final name. Also here: checking the evidence directory, removing temporary bundles of
//! guards that died, and retention (`--keep`, `--max-evidence-size`).

use super::redact::Scrubber;
use crate::config::NoEvidence;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const TMP_PREFIX: &str = ".tmp-";

/// Create the evidence directory (0700, parents too) if missing and check that guard can write
/// there. The error says what is wrong in words an operator can act on.
pub fn prepare_dir(dir: &Path) -> Result<(), NoEvidence> {
    if let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        return Err(NoEvidence::Create {
            path: dir.to_path_buf(),
            source: e.into(),
        });
    }
    nix::unistd::access(
        dir,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(|errno| NoEvidence::NotWritable {
        path: dir.to_path_buf(),
        errno,
    })
}

/// A bundle being written.
#[derive(Debug)]
pub struct BundleWriter {
    evidence_dir: PathBuf,
    tmp: PathBuf,
    final_name: String,
    pub scrub: Scrubber,
}

impl BundleWriter {
    pub fn create(evidence_dir: &Path, final_name: String, scrub: Scrubber) -> io::Result<Self> {
        let tmp = evidence_dir.join(format!("{TMP_PREFIX}{}-{final_name}", std::process::id()));
        DirBuilder::new().mode(0o700).create(&tmp)?;
        Ok(BundleWriter {
            evidence_dir: evidence_dir.to_path_buf(),
            tmp,
            final_name,
            scrub,
        })
    }

    /// The temporary directory (collectors that write files themselves write here).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Where the bundle will be once finished (unless that name is taken by then).
    pub fn final_path(&self) -> PathBuf {
        self.evidence_dir.join(&self.final_name)
    }

    /// Create `rel` (a directory inside the bundle), 0700.
    pub fn mkdir(&self, rel: &str) -> io::Result<PathBuf> {
        let p = self.tmp.join(rel);
        match DirBuilder::new().recursive(true).mode(0o700).create(&p) {
            Ok(()) => Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(p),
            Err(e) => Err(e),
        }
    }

    /// Write `data` to `rel`, 0600, as it is.
    pub fn write_raw(&self, rel: &str, data: &[u8]) -> io::Result<()> {
        let p = self.tmp.join(rel);
        if let Some(parent) = p.parent() {
            if parent != self.tmp {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)?;
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)?;
        f.write_all(data)
    }

    /// Write text with every known secret value replaced.
    pub fn write(&self, rel: &str, data: &[u8]) -> io::Result<()> {
        self.write_raw(rel, &self.scrub.scrub(data))
    }

    /// Rename into place; returns the final path. A name already taken (two bundles of one job in
    /// one second) gets `.2`, `.3`, ...
    pub fn finish(self) -> io::Result<PathBuf> {
        for n in 1..100 {
            let name = if n == 1 {
                self.final_name.clone()
            } else {
                format!("{}.{n}", self.final_name)
            };
            let dest = self.evidence_dir.join(&name);
            if dest.exists() {
                continue;
            }
            fs::rename(&self.tmp, &dest)?;
            return Ok(dest);
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} and 98 variants exist", self.final_name),
        ))
    }

    /// Remove the temporary directory (a failed bundle leaves nothing behind).
    pub fn abandon(self) {
        let _ = fs::remove_dir_all(&self.tmp);
    }

    /// Writing failed with `e`: remove the temporary directory and say so.
    pub fn abandon_for(self, e: io::Error) -> super::EvidenceError {
        let tmp = self.tmp.clone();
        self.abandon();
        super::EvidenceError::Write {
            tmp,
            source: e.into(),
        }
    }
}

/// Remove temporary bundles whose guard no longer runs (it crashed or was killed mid-capture).
pub fn clean_leftovers(evidence_dir: &Path, proc: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(evidence_dir) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TMP_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid as u32 == std::process::id() || proc.join(pid.to_string()).exists() {
            continue;
        }
        if fs::remove_dir_all(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// Bytes used by the files under `p`.
pub fn disk_usage(p: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

/// Remove the oldest bundles until at most `keep` remain and they use at most `max_bytes`; never
/// `protect` (the bundle just written). Returns the removed paths.
pub fn retain(evidence_dir: &Path, keep: usize, max_bytes: u64, protect: &Path) -> Vec<PathBuf> {
    let all = crate::format::bundles(evidence_dir);
    let mut sized: Vec<(PathBuf, u64)> = all
        .into_iter()
        .map(|p| {
            let s = disk_usage(&p);
            (p, s)
        })
        .collect();
    let mut total: u64 = sized.iter().map(|(_, s)| s).sum();
    let mut removed = Vec::new();
    let mut i = 0;
    while i < sized.len() && (sized.len() > keep || total > max_bytes) {
        if sized[i].0 == protect {
            i += 1;
            continue;
        }
        let (p, s) = sized.remove(i);
        if fs::remove_dir_all(&p).is_ok() {
            total = total.saturating_sub(s);
            removed.push(p);
        }
    }
    removed
}

/// Make a file a collector wrote itself private to its owner.
pub fn make_private(p: &Path) {
    let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o600));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn written_private_and_renamed_when_complete() {
        let d = tempfile::tempdir().unwrap();
        let w = BundleWriter::create(
            d.path(),
            "20260101T000000Z-job-1".into(),
            Scrubber::default(),
        )
        .unwrap();
        w.write("processes/1/status", b"Name: x\n").unwrap();
        assert!(
            crate::format::bundles(d.path()).is_empty(),
            "no final name before finish"
        );
        let tmp = w.path().to_path_buf();
        let p = w.finish().unwrap();
        assert!(!tmp.exists());
        assert_eq!(p, d.path().join("20260101T000000Z-job-1"));
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(p.join("processes")).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(p.join("processes/1/status")).unwrap().mode() & 0o777,
            0o600
        );
        // same name again: a suffix
        let w = BundleWriter::create(
            d.path(),
            "20260101T000000Z-job-1".into(),
            Scrubber::default(),
        )
        .unwrap();
        assert_eq!(
            w.finish().unwrap(),
            d.path().join("20260101T000000Z-job-1.2")
        );
    }

    #[test]
    fn leftovers_of_dead_guards_only() {
        let d = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        fs::create_dir(proc.path().join("4242")).unwrap();
        for n in [".tmp-4242-a", ".tmp-999999-b", "20260101T000000Z-x-1"] {
            fs::create_dir(d.path().join(n)).unwrap();
        }
        let removed = clean_leftovers(d.path(), proc.path());
        assert_eq!(removed, vec![d.path().join(".tmp-999999-b")]);
        assert!(d.path().join(".tmp-4242-a").exists());
        assert!(d.path().join("20260101T000000Z-x-1").exists());
    }

    #[test]
    fn retention_by_count_and_size_never_the_newest() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..5 {
            let b = d.path().join(format!("2026010{i}T000000Z-x-1"));
            fs::create_dir(&b).unwrap();
            fs::write(b.join("manifest.json"), vec![b'x'; 1000]).unwrap();
        }
        let newest = d.path().join("20260104T000000Z-x-1");
        let removed = retain(d.path(), 3, u64::MAX, &newest);
        assert_eq!(removed.len(), 2);
        assert_eq!(
            crate::format::bundles(d.path()).first().unwrap(),
            &d.path().join("20260102T000000Z-x-1")
        );
        // size: 1 byte allowed → only the protected one survives
        retain(d.path(), 50, 1, &newest);
        assert_eq!(crate::format::bundles(d.path()), vec![newest]);
    }

    #[test]
    fn prepare_dir_creates_0700() {
        let d = tempfile::tempdir().unwrap();
        let e = d.path().join("a/b");
        prepare_dir(&e).unwrap();
        assert_eq!(fs::metadata(&e).unwrap().mode() & 0o777, 0o700);
    }
}
