//! guard's runtime directory, and the directories in it: `/run/guard` as root (0755, so a job
//! that drops its privileges can still read the Python hook), else `$XDG_RUNTIME_DIR/guard` or
//! `/tmp/guard-UID` (0700). Every directory is reached through descriptors, never through a
//! symlink, and refused when another user owns it or may write it: guard runs as root next to
//! jobs that misbehave, and /tmp is everybody's. The Python hook (`pyhook-HASH`) and the
//! register of held jobs (`held`) live here.

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Why a runtime directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("cannot create or open {}: {source}", path.display())]
    Open { path: PathBuf, source: Errno },
    #[error("{} is owned by uid {uid}, not by guard's uid {want}", path.display())]
    Owner { path: PathBuf, uid: u32, want: u32 },
    #[error("{} may be written by others (mode {mode:o})", path.display())]
    Writable { path: PathBuf, mode: u32 },
}

/// An opened, checked directory and its path (for messages and for what is handed on).
#[derive(Debug)]
pub struct Dir {
    pub fd: OwnedFd,
    pub path: PathBuf,
}

/// Whether a missing directory is made or is an answer of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    Create,
    /// Readers (`guard held`, `guard kill`): nothing there means nothing held.
    Absent,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC);

/// guard's runtime directory for `uid` with the directories `under` inside it, each made with
/// `mode` when missing. As root the top is 0755 whatever `mode` says.
pub fn open(uid: u32, under: &[&str], mode: u32) -> Result<Dir, RunDirError> {
    walk(uid, under, mode, Missing::Create)?.ok_or_else(|| RunDirError::Open {
        path: under.iter().collect(),
        source: Errno::ENOENT,
    })
}

/// The same directory for a reader: `Ok(None)` when any of it is missing (nothing is made).
pub fn find(uid: u32, under: &[&str]) -> Result<Option<Dir>, RunDirError> {
    walk(uid, under, 0o700, Missing::Absent)
}

fn walk(uid: u32, under: &[&str], mode: u32, missing: Missing) -> Result<Option<Dir>, RunDirError> {
    let open_base = |base: &Path| openat(nix::fcntl::AT_FDCWD, base, DIR_FLAGS, Mode::empty());
    let (base, top, top_mode, opened) = if uid == 0 {
        match open_base(Path::new("/run")) {
            Err(Errno::ENOENT | Errno::ENOTDIR) => {
                ("/tmp".into(), "guard-0".to_string(), 0o755, None)
            }
            run => ("/run".into(), "guard".to_string(), 0o755, Some(run)),
        }
    } else {
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| owned_dir(Path::new(d), uid)) {
            Some(d) => (PathBuf::from(d), "guard".to_string(), 0o700, None),
            None => ("/tmp".into(), format!("guard-{uid}"), 0o700, None),
        }
    };
    let mut path: PathBuf = base;
    let mut cur: OwnedFd = opened
        .unwrap_or_else(|| open_base(&path))
        .map_err(|source| RunDirError::Open {
            path: path.clone(),
            source,
        })?;
    let first = std::iter::once((top.as_str(), top_mode));
    for (name, m) in first.chain(under.iter().map(|n| (*n, mode))) {
        path.push(name);
        match subdir(&cur, name, m, uid, &path, missing)? {
            Some(fd) => cur = fd,
            None => return Ok(None),
        }
    }
    Ok(Some(Dir { fd: cur, path }))
}

fn owned_dir(p: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == uid)
}

/// The directory `name` in `parent`, made with `mode` when missing (and `missing` allows),
/// opened without following a symlink, and checked: owned by `uid`, writable by nobody else.
fn subdir(
    parent: &OwnedFd,
    name: &str,
    mode: u32,
    uid: u32,
    path: &Path,
    missing: Missing,
) -> Result<Option<OwnedFd>, RunDirError> {
    let open_err = |source| RunDirError::Open {
        path: path.to_path_buf(),
        source,
    };
    let flags = DIR_FLAGS | OFlag::O_NOFOLLOW;
    // Opened first: on every run but the first the directory is there, and one syscall less
    // is start time saved for every job.
    let fd = match openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) if missing == Missing::Absent => return Ok(None),
        Err(Errno::ENOENT) => {
            match mkdirat(parent, name, Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(open_err(e)),
            }
            let fd = openat(parent, name, flags, Mode::empty()).map_err(open_err)?;
            // The umask may have taken bits that are needed (0755: a job that drops
            // privileges reads the hook). Whoever made it, the owner check below decides.
            let st = fstat(&fd).map_err(open_err)?;
            if st.st_uid == uid {
                fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(open_err)?;
            }
            fd
        }
        Err(e) => return Err(open_err(e)),
    };
    let st = fstat(&fd).map_err(open_err)?;
    if st.st_uid != uid {
        return Err(RunDirError::Owner {
            path: path.to_path_buf(),
            uid: st.st_uid,
            want: uid,
        });
    }
    if st.st_mode & 0o022 != 0 {
        return Err(RunDirError::Writable {
            path: path.to_path_buf(),
            mode: st.st_mode & 0o7777,
        });
    }
    Ok(Some(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_another_owner_or_writable_by_others_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let base: OwnedFd =
            openat(nix::fcntl::AT_FDCWD, d.path(), DIR_FLAGS, Mode::empty()).unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let p = d.path().join("x");
        std::fs::create_dir(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let c = Missing::Create;
        assert!(matches!(
            subdir(&base, "x", 0o700, uid, &p, c),
            Err(RunDirError::Writable { .. })
        ));
        assert!(matches!(
            subdir(&base, "x", 0o700, uid + 1, &p, c),
            Err(RunDirError::Owner { .. })
        ));
        std::os::unix::fs::symlink("/", d.path().join("l")).unwrap();
        assert!(matches!(
            subdir(&base, "l", 0o700, uid, &d.path().join("l"), c),
            Err(RunDirError::Open { .. })
        ));
        let absent = d.path().join("none");
        assert!(matches!(
            subdir(&base, "none", 0o700, uid, &absent, Missing::Absent),
            Ok(None)
        ));
        assert!(!absent.exists(), "a reader makes nothing");
        let made = subdir(&base, "none", 0o700, uid, &absent, c).unwrap();
        assert!(made.is_some());
        let mode = std::fs::metadata(&absent).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
