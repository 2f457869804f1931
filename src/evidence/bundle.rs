//! The bundle on disk: a directory created under a temporary name (`.tmp-<owner>-<name>`, the
//! owner being guard's pid and, in a container, its PID namespace: [`crate::os::owner`]) in
//! the evidence directory, files 0600 and directories 0700, renamed to
//! `<UTC yyyymmddThhmmssZ>-<job>-<pid>` only when complete — a reader never sees half a bundle
//! under a final name. Also here: opening and checking the evidence directory, removing temporary
//! bundles of guards that died, and retention (`--keep`, `--max-evidence-size`).
//!
//! guard writes here as root, next to jobs that misbehave, so nothing below the evidence
//! directory is reached by name. The directory is opened once without following a symlink and
//! checked the way sshd's StrictModes and logrotate check theirs: owned by root or by guard's own
//! user, not writable by others unless sticky ([`EvidenceDir`]). The bundle is made with
//! `mkdirat`, and every directory and file in it is created relative to a descriptor with
//! `O_NOFOLLOW` ([`DirFd`]), so no symlink is followed and a rename of the evidence directory or
//! of its parents during a capture cannot redirect a write. It is moved into place with
//! `renameat2(RENAME_NOREPLACE)`: a name that is taken — a bundle of the same second, or anything
//! planted there — gets the next suffix. Removal (a failed bundle, leftovers, retention) walks
//! descriptors too and removes a symlink, never what it points to.

use crate::config::NoEvidence;
use crate::evidence::redact::Scrubber;
use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::ffi::{CStr, CString, OsStr};
use std::fs::{self, DirBuilder, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

const TMP_PREFIX: &str = ".tmp-";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits)
}

fn no_follow_dir() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// The evidence directory, opened and checked: bundles are created and filled through it.
#[derive(Debug)]
pub struct EvidenceDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl EvidenceDir {
    /// Create `path` if missing (0700, parents too), then open and check it ([`Self::open_existing`]).
    pub fn open(path: &Path) -> Result<EvidenceDir, NoEvidence> {
        if let Err(e) = DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)
        {
            return Err(NoEvidence::Create {
                path: path.to_path_buf(),
                source: e.into(),
            });
        }
        Self::open_existing(path)
    }

    /// Open `path` without following a symlink and check that root may safely write in it: it is
    /// a directory, owned by root or by guard's user, not group- or world-writable unless sticky
    /// (no other user can then rename or replace what guard creates there), and writable.
    pub fn open_existing(path: &Path) -> Result<EvidenceDir, NoEvidence> {
        let shown = || path.to_path_buf();
        let fd = nix::fcntl::open(path, no_follow_dir(), Mode::empty()).map_err(|errno| {
            let link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if errno == Errno::ELOOP || link {
                NoEvidence::Symlink { path: shown() }
            } else {
                NoEvidence::Open {
                    path: shown(),
                    errno,
                }
            }
        })?;
        let st = fstat(&fd).map_err(|errno| NoEvidence::Open {
            path: shown(),
            errno,
        })?;
        let euid = nix::unistd::geteuid().as_raw();
        if st.st_uid != 0 && st.st_uid != euid {
            return Err(NoEvidence::Owner {
                path: shown(),
                uid: st.st_uid,
            });
        }
        let perms = st.st_mode & 0o7777;
        if perms & 0o022 != 0 && perms & 0o1000 == 0 {
            return Err(NoEvidence::Writable {
                path: shown(),
                mode: perms,
            });
        }
        let wx = nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
        nix::unistd::faccessat(&fd, ".", wx, nix::fcntl::AtFlags::empty()).map_err(|errno| {
            NoEvidence::NotWritable {
                path: shown(),
                errno,
            }
        })?;
        Ok(EvidenceDir {
            path: path.to_path_buf(),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The directory reached through guard's descriptor (`/proc/self/fd/N`), for reading it in
    /// this process whatever happens to its name.
    pub fn via_fd(&self) -> PathBuf {
        via_fd(self.fd.as_fd())
    }
}

/// `/proc/self/fd/N` for `fd`.
fn via_fd(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A path inside a bundle (`processes/42/status`) as its directory part and its file name. A
/// component that is empty, `.` or `..` is refused: a bundle's paths are guard's own.
fn split(rel: &str) -> io::Result<(Vec<&str>, &str)> {
    let mut parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    let bad = |c: &&str| matches!(*c, "." | "..");
    let Some(file) = parts.pop().filter(|f| !bad(f)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, rel.to_string()));
    };
    if parts.iter().any(bad) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, rel.to_string()));
    }
    Ok((parts, file))
}

/// A directory opened by descriptor: every operation is relative to it and follows no symlink.
#[derive(Debug)]
pub struct DirFd(OwnedFd);

impl DirFd {
    /// Open the directory `name` in `parent` (not a symlink).
    pub fn open_in(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<DirFd> {
        let name = cname(name)?;
        Ok(DirFd(openat(
            parent,
            name.as_c_str(),
            no_follow_dir(),
            Mode::empty(),
        )?))
    }

    /// The directory `dirs` below this one, each component made (0700) when `create` and
    /// missing, and opened without following a symlink.
    fn subdir(&self, dirs: &[&str], create: bool) -> io::Result<OwnedFd> {
        let mut cur = self.0.try_clone()?;
        for comp in dirs {
            if create {
                match mkdirat(&cur, *comp, mode(DIR_MODE)) {
                    Ok(()) => {
                        let d = openat(&cur, *comp, no_follow_dir(), Mode::empty())?;
                        fchmod(&d, mode(DIR_MODE))?;
                        cur = d;
                        continue;
                    }
                    Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            cur = openat(&cur, *comp, no_follow_dir(), Mode::empty())?;
        }
        Ok(cur)
    }

    /// Create the directory `rel` (and its parents), 0700.
    pub fn mkdir(&self, rel: &str) -> io::Result<()> {
        let (mut dirs, last) = split(rel)?;
        dirs.push(last);
        self.subdir(&dirs, true).map(drop)
    }

    /// Open `rel` for writing (0600, its directories made): `extra` is O_TRUNC or O_EXCL.
    fn create(&self, rel: &str, extra: OFlag) -> io::Result<File> {
        let (dirs, name) = split(rel)?;
        let dir = self.subdir(&dirs, true)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | extra;
        let fd = openat(&dir, name, flags, mode(FILE_MODE))?;
        fchmod(&fd, mode(FILE_MODE))?;
        Ok(File::from(fd))
    }

    /// Write `data` to `rel`, replacing what was there.
    pub fn write(&self, rel: &str, data: &[u8]) -> io::Result<()> {
        self.create(rel, OFlag::O_TRUNC)?.write_all(data)
    }

    /// A new file `rel` (it must not exist).
    pub fn create_new(&self, rel: &str) -> io::Result<File> {
        self.create(rel, OFlag::O_EXCL)
    }

    /// Open `rel` for reading (not through a symlink).
    pub fn open_read(&self, rel: &str) -> io::Result<File> {
        let (dirs, name) = split(rel)?;
        let dir = self.subdir(&dirs, false)?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        Ok(File::from(openat(&dir, name, flags, Mode::empty())?))
    }

    /// What `rel` is (not following a symlink), if it exists.
    fn stat(&self, rel: &str) -> Option<nix::sys::stat::FileStat> {
        let (dirs, name) = split(rel).ok()?;
        let dir = self.subdir(&dirs, false).ok()?;
        fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.stat(rel).is_some()
    }

    /// The size of `rel` if it is a regular file.
    pub fn file_len(&self, rel: &str) -> Option<u64> {
        self.stat(rel)
            .filter(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
            .and_then(|st| u64::try_from(st.st_size).ok())
    }

    /// Remove the file `rel`.
    pub fn remove(&self, rel: &str) -> io::Result<()> {
        let (dirs, name) = split(rel)?;
        let dir = self.subdir(&dirs, false)?;
        Ok(unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir)?)
    }

    /// Make the file `rel` (written by a helper program) private: 0600.
    pub fn make_private(&self, rel: &str) -> io::Result<()> {
        let f = self.open_read(rel)?;
        Ok(fchmod(&f, mode(FILE_MODE))?)
    }

    /// Replace `name` (in this directory) through a temporary file and a rename, so a reader
    /// sees the old content or the new, never half.
    pub fn replace(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let tmp = format!(".{name}.tmp");
        self.write(&tmp, data)?;
        Ok(nix::fcntl::renameat(&self.0, tmp.as_str(), &self.0, name)?)
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Remove `name` in `dir` and everything below it, never following a symlink (a symlink is
/// removed itself). Gone already is success.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = openat(dir, name, no_follow_dir(), Mode::empty())?;
    let mut listing = nix::dir::Dir::from_fd(sub.try_clone()?)?;
    let names: Vec<CString> = listing
        .iter()
        .flatten()
        .map(|e| e.file_name().to_owned())
        .filter(|n| !matches!(n.to_bytes(), b"." | b".."))
        .collect();
    for n in names {
        remove_tree_at(sub.as_fd(), &n)?;
    }
    match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn cname(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// A bundle being written.
#[derive(Debug)]
pub struct BundleWriter {
    evidence_path: PathBuf,
    evidence: OwnedFd,
    tmp_name: String,
    tmp: DirFd,
    final_name: String,
    pub scrub: Scrubber,
}

impl BundleWriter {
    /// A new temporary bundle in `ev` (made with mkdirat: a name that exists is an error).
    pub fn create(ev: &EvidenceDir, final_name: String, scrub: Scrubber) -> io::Result<Self> {
        let tmp_name = format!("{TMP_PREFIX}{}-{final_name}", crate::os::owner::Owner::me());
        mkdirat(&ev.fd, tmp_name.as_str(), mode(DIR_MODE))?;
        let tmp = DirFd::open_in(ev.fd.as_fd(), OsStr::new(&tmp_name))?;
        fchmod(tmp.as_fd(), mode(DIR_MODE))?;
        Ok(BundleWriter {
            evidence_path: ev.path.clone(),
            evidence: ev.fd.try_clone()?,
            tmp_name,
            tmp,
            final_name,
            scrub,
        })
    }

    /// Where the bundle is being written, for messages.
    pub fn shown(&self) -> PathBuf {
        self.evidence_path.join(&self.tmp_name)
    }

    /// The temporary bundle reached through guard's descriptor (`/proc/self/fd/N`), to read it
    /// back in this process.
    pub fn path(&self) -> PathBuf {
        via_fd(self.tmp.as_fd())
    }

    /// `rel` in the temporary bundle as a helper program guard starts (gcore) reaches it: through
    /// guard's descriptor (`/proc/<guard pid>/fd/N/rel`), not through the evidence directory's name.
    pub fn helper_path(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}/{rel}",
            std::process::id(),
            self.tmp.as_fd().as_raw_fd()
        ))
    }

    /// Where the bundle will be once finished (unless that name is taken by then).
    pub fn final_path(&self) -> PathBuf {
        self.evidence_path.join(&self.final_name)
    }

    /// The bundle's directory, for its own operations (helpers' files, the core).
    pub fn dir(&self) -> &DirFd {
        &self.tmp
    }

    /// Create `rel` (a directory inside the bundle), 0700.
    pub fn mkdir(&self, rel: &str) -> io::Result<()> {
        self.tmp.mkdir(rel)
    }

    /// Write `data` to `rel`, 0600, as it is.
    pub fn write_raw(&self, rel: &str, data: &[u8]) -> io::Result<()> {
        self.tmp.write(rel, data)
    }

    /// Write text with every known secret value replaced.
    pub fn write(&self, rel: &str, data: &[u8]) -> io::Result<()> {
        self.write_raw(rel, &self.scrub.scrub(data))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.tmp.exists(rel)
    }

    /// Move into place; returns the final path. A name already taken (two bundles of one job in
    /// one second, or anything planted there — a dangling symlink too) gets `.2`, `.3`, ... If
    /// it cannot be moved, the temporary bundle is removed: nothing is left half-done.
    pub fn finish(self) -> io::Result<PathBuf> {
        for n in 1..100 {
            let name = if n == 1 {
                self.final_name.clone()
            } else {
                format!("{}.{n}", self.final_name)
            };
            let moved = renameat2(
                &self.evidence,
                self.tmp_name.as_str(),
                &self.evidence,
                name.as_str(),
                RenameFlags::RENAME_NOREPLACE,
            );
            match moved {
                Ok(()) => return Ok(self.evidence_path.join(name)),
                Err(Errno::EEXIST) => continue,
                Err(e) => {
                    self.abandon();
                    return Err(e.into());
                }
            }
        }
        let taken = format!("{} and 98 variants exist", self.final_name);
        self.abandon();
        Err(io::Error::new(io::ErrorKind::AlreadyExists, taken))
    }

    /// Remove the temporary directory (a failed bundle leaves nothing behind).
    pub fn abandon(self) {
        if let Ok(n) = cname(OsStr::new(&self.tmp_name)) {
            let _ = remove_tree_at(self.evidence.as_fd(), &n);
        }
    }

    /// Writing failed with `e`: remove the temporary directory and say so.
    pub fn abandon_for(self, e: io::Error) -> super::EvidenceError {
        let tmp = self.shown();
        self.abandon();
        super::EvidenceError::Write {
            tmp,
            source: e.into(),
        }
    }
}

/// Remove temporary bundles whose guard no longer runs (it crashed or was killed mid-capture).
pub fn clean_leftovers(ev: &EvidenceDir, view: &crate::os::owner::View) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(ev.via_fd()) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TMP_PREFIX)) else {
            continue;
        };
        let Some(owner) = rest
            .split('-')
            .next()
            .and_then(crate::os::owner::Owner::parse)
        else {
            continue;
        };
        // A guard that may still be writing it (in this namespace or one out of sight) keeps it.
        if !view.is_dead(owner) {
            continue;
        }
        if cname(&name)
            .and_then(|n| remove_tree_at(ev.fd.as_fd(), &n))
            .is_ok()
        {
            removed.push(ev.path.join(&name));
        }
    }
    removed
}

/// Bytes used by the files under `p` (symlinks are not followed).
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

/// Which bundles retention may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// A real run: any bundle guard wrote.
    All,
    /// `guard drill`'s run: only drills' bundles — a rehearsal never deletes real evidence.
    DrillsOnly,
}

/// A bundle retention removed, and whether its upload was still pending (only the size bound
/// removes such a bundle; the caller says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub path: PathBuf,
    pub pending: bool,
}

/// Remove the oldest bundles (of those `scope` allows) until at most `keep` remain and they use
/// at most `max_bytes`; never `protect` (the bundle just written). A bundle whose upload is
/// pending (`upload.json`) is kept past `keep` — it is the only copy — and removed only when the
/// evidence directory would otherwise stay over `max_bytes`, after every other bundle.
pub fn retain(
    ev: &EvidenceDir,
    keep: usize,
    max_bytes: u64,
    protect: &Path,
    scope: Retention,
) -> Vec<Removed> {
    let all = crate::format::found(&ev.via_fd());
    // (name, size, pending), oldest first.
    let mut sized: Vec<(std::ffi::OsString, u64, bool)> = all
        .into_iter()
        .filter(|f| {
            scope == Retention::All || f.manifest.trigger == crate::format::EventKind::Drill
        })
        .filter_map(|f| {
            let name = f.path.file_name()?.to_os_string();
            let pending = crate::format::read_upload_record(&f.path)
                .is_some_and(|r| r.state == crate::format::UploadState::Pending);
            (Some(name.as_os_str()) != protect.file_name())
                .then(|| (name, disk_usage(&f.path), pending))
        })
        .collect();
    // The protected bundle counts towards both bounds but is never removed.
    let protected = u64::from(protect.exists()) as usize;
    let mut total: u64 =
        sized.iter().map(|(_, s, _)| s).sum::<u64>() + disk_usage(protect) * protected as u64;
    let mut removed = Vec::new();
    // Bundles already up (or never meant to go up) first, then pending ones for the size only.
    for pending_pass in [false, true] {
        let mut i = 0;
        while i < sized.len() {
            let count = sized.len() + protected;
            let over = if pending_pass {
                total > max_bytes
            } else {
                count > keep || total > max_bytes
            };
            if !over {
                break;
            }
            if sized[i].2 != pending_pass {
                i += 1;
                continue;
            }
            let (name, s, pending) = sized.remove(i);
            if cname(&name)
                .and_then(|n| remove_tree_at(ev.fd.as_fd(), &n))
                .is_ok()
            {
                total = total.saturating_sub(s);
                removed.push(Removed {
                    path: ev.path.join(&name),
                    pending,
                });
            }
        }
    }
    removed
}

/// Whether guard could write bundles to the evidence directory `d` (for `guard doctor` and the
/// readiness checks): an existing directory gets the checks a run makes
/// (not a symlink, its owner, its mode); a missing one is judged by its nearest existing
/// ancestor. Nothing is created.
pub fn dir_state(d: &Path) -> (bool, String) {
    use nix::unistd::{AccessFlags, access};
    if d.exists() || d.is_symlink() {
        return match EvidenceDir::open_existing(d) {
            Ok(_) => (true, d.display().to_string()),
            Err(e) => (false, e.to_string()),
        };
    }
    let existing = d.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    let writable =
        existing.is_dir() && access(existing, AccessFlags::W_OK | AccessFlags::X_OK).is_ok();
    let detail = if writable {
        format!("{} (created on first use, 0700)", d.display())
    } else {
        format!(
            "{} does not exist and {} is not writable",
            d.display(),
            existing.display()
        )
    };
    (writable, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn ev(d: &Path) -> EvidenceDir {
        EvidenceDir::open(d).unwrap()
    }

    #[test]
    fn written_private_and_renamed_when_complete() {
        let d = tempfile::tempdir().unwrap();
        let e = ev(d.path());
        let w =
            BundleWriter::create(&e, "20260101T000000Z-job-1".into(), Scrubber::default()).unwrap();
        w.write("processes/1/status", b"Name: x\n").unwrap();
        assert!(
            crate::format::bundles(d.path()).is_empty(),
            "no final name before finish"
        );
        let tmp = w.shown();
        assert!(tmp.starts_with(d.path()) && tmp.exists());
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
        let w =
            BundleWriter::create(&e, "20260101T000000Z-job-1".into(), Scrubber::default()).unwrap();
        assert_eq!(
            w.finish().unwrap(),
            d.path().join("20260101T000000Z-job-1.2")
        );
    }

    /// A symlink where a bundle's directory or file would go is not followed: the write fails,
    /// and nothing lands where the link points.
    #[test]
    fn a_symlink_inside_the_bundle_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let w = BundleWriter::create(&ev(d.path()), "b".into(), Scrubber::default()).unwrap();
        std::os::unix::fs::symlink(outside.path(), w.shown().join("processes")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), w.shown().join("tree.txt")).unwrap();
        assert!(w.write("processes/1/status", b"x").is_err());
        assert!(w.write("tree.txt", b"x").is_err());
        assert!(w.mkdir("processes/2").is_err());
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing written there"
        );
        // Removing the bundle removes the links, not what they point to.
        let keep = outside.path().join("keep");
        fs::write(&keep, b"mine").unwrap();
        let tmp = w.shown();
        w.abandon();
        assert!(!tmp.exists());
        assert_eq!(fs::read(&keep).unwrap(), b"mine");
    }

    /// Defect 10: a dangling symlink planted at the bundle's name cost the evidence and left the
    /// temporary directory behind. Now the name is taken like any other: the next suffix.
    #[test]
    fn a_name_taken_by_a_dangling_symlink_gets_the_next_suffix() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", d.path().join("B")).unwrap();
        let w = BundleWriter::create(&ev(d.path()), "B".into(), Scrubber::default()).unwrap();
        w.write("manifest.json", b"{}").unwrap();
        assert_eq!(w.finish().unwrap(), d.path().join("B.2"));
        let names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with(TMP_PREFIX)),
            "{names:?}"
        );
        assert!(
            fs::symlink_metadata(d.path().join("B"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn unsafe_evidence_directories_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = EvidenceDir::open(&link).unwrap_err();
        assert!(matches!(e, NoEvidence::Symlink { .. }), "{e}");
        assert!(e.to_string().contains("is a symlink"), "{e}");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o775)).unwrap();
        let e = EvidenceDir::open(&real).unwrap_err();
        assert!(matches!(e, NoEvidence::Writable { mode: 0o775, .. }), "{e}");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(
            EvidenceDir::open(&real).is_ok(),
            "sticky: others cannot rename guard's files"
        );
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&real, Some(65534), None).unwrap();
            let e = EvidenceDir::open(&real).unwrap_err();
            assert!(matches!(e, NoEvidence::Owner { uid: 65534, .. }), "{e}");
        }
    }

    #[test]
    fn leftovers_of_dead_guards_only() {
        let d = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        fs::create_dir(proc.path().join("4242")).unwrap();
        std::os::unix::fs::symlink("10", proc.path().join("self")).unwrap();
        let me = crate::os::owner::Owner { pid: 10, ns: None };
        for n in [
            ".tmp-4242-a",
            ".tmp-999999-b",
            ".tmp-10-mine",
            ".tmp-1.4026532190-a-container-s",
            "20260101T000000Z-x-1",
        ] {
            fs::create_dir(d.path().join(n)).unwrap();
        }
        let view = crate::os::owner::View::of(proc.path(), me);
        let removed = clean_leftovers(&ev(d.path()), &view);
        // The container's namespace has no process in this fixture: gone, so its bundle goes.
        let mut removed = removed;
        removed.sort();
        assert_eq!(
            removed,
            vec![
                d.path().join(".tmp-1.4026532190-a-container-s"),
                d.path().join(".tmp-999999-b")
            ]
        );
        assert!(d.path().join(".tmp-4242-a").exists());
        assert!(d.path().join(".tmp-10-mine").exists());
        assert!(d.path().join("20260101T000000Z-x-1").exists());
    }

    /// A bundle whose upload is pending outlives --keep: only the size bound removes it, after
    /// every other bundle, and says so.
    #[test]
    fn retention_keeps_a_pending_upload_unless_the_size_forces_it() {
        let d = tempfile::tempdir().unwrap();
        let all: Vec<PathBuf> = (1..=4).map(|i| fake_bundle(d.path(), i)).collect();
        let pending = "{\"state\":\"pending\",\"target\":\"s3://b\",\"key\":\"k\",\"url\":\"u\",\"attempts\":1,\"at\":\"t\"}";
        fs::write(all[0].join("upload.json"), pending).unwrap();
        let e = ev(d.path());
        let removed = retain(&e, 1, u64::MAX, &all[3], Retention::All);
        let paths: Vec<&PathBuf> = removed.iter().map(|r| &r.path).collect();
        assert_eq!(
            paths,
            [&all[1], &all[2]],
            "the pending one is kept past --keep"
        );
        assert!(removed.iter().all(|r| !r.pending));
        assert!(all[0].is_dir());
        let removed = retain(&e, 1, 1, &all[3], Retention::All);
        assert_eq!(
            removed,
            [Removed {
                path: all[0].clone(),
                pending: true
            }]
        );
    }

    /// A bundle as guard names and writes it: day `day` of January 2026, job x, pid 1.
    fn fake_bundle(dir: &Path, day: u32) -> PathBuf {
        let b = dir.join(format!("202601{day:02}T000000Z-x-1"));
        fs::create_dir(&b).unwrap();
        let m = crate::format::Manifest {
            job: "x".into(),
            pid: 1,
            captured_at: format!("2026-01-{day:02}T00:00:00.000Z"),
            ..Default::default()
        };
        fs::write(b.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        b
    }

    #[test]
    fn retention_by_count_and_size_never_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let all: Vec<PathBuf> = (1..=5).map(|i| fake_bundle(d.path(), i)).collect();
        // Not guard's: a user's directory with a manifest.json, never counted nor removed.
        let theirs = d.path().join("1.0-release");
        fs::create_dir(&theirs).unwrap();
        fs::copy(all[0].join("manifest.json"), theirs.join("manifest.json")).unwrap();
        let newest = all[4].clone();
        let e = ev(d.path());
        let removed = retain(&e, 3, u64::MAX, &newest, Retention::All);
        assert_eq!(removed.len(), 2);
        assert_eq!(removed[0].path, all[0]);
        assert_eq!(crate::format::bundles(d.path()).first().unwrap(), &all[2]);
        // size: 1 byte allowed → only the protected one survives
        retain(&e, 50, 1, &newest, Retention::All);
        assert_eq!(crate::format::bundles(d.path()), vec![newest]);
        assert!(theirs.join("manifest.json").exists());
    }

    #[test]
    fn a_missing_evidence_directory_is_created_0700() {
        let d = tempfile::tempdir().unwrap();
        let e = d.path().join("a/b");
        EvidenceDir::open(&e).unwrap();
        assert_eq!(fs::metadata(&e).unwrap().mode() & 0o777, 0o700);
    }
}
