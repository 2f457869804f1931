//! Whether guard, running as root, may act on a file another user could change: a configuration
//! file it reads (an exec hook or a program path in it runs as root) and a program a
//! configuration names (an exec hook, `pyspy`). The rule is sshd's StrictModes: the file and every
//! directory above it (symlinks resolved) belong to root, and nobody else may write them — a
//! directory others may write is accepted only with the sticky bit, which keeps them from
//! renaming or replacing root's entries (`/tmp`). As any other user guard runs with that user's
//! rights only, and nothing is checked.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the file is to guard (for the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Config,
    Program,
    /// A directory guard creates files in as root (the --lock file's).
    Directory,
}

impl Use {
    fn what(self) -> &'static str {
        match self {
            Use::Config => "the config file",
            Use::Program => "the program",
            Use::Directory => "the directory",
        }
    }
}

/// A file root must not trust: who could change it, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    pub use_: Use,
    /// The path as given.
    pub path: PathBuf,
    /// The file (symlinks resolved) or the directory above it that failed.
    pub at: PathBuf,
    pub why: Why,
    pub uid: u32,
    pub mode: u32,
}

impl std::error::Error for Untrusted {}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (uid, mode, at) = (self.uid, self.mode, self.at.display());
        write!(f, "{} {}", self.use_.what(), self.path.display())?;
        match self.why {
            Why::Owner => write!(f, " ({at}) is not root's (owner uid {uid}, mode {mode:o})")?,
            Why::Writable => write!(
                f,
                " ({at}) may be written by others (owner uid {uid}, mode {mode:o})"
            )?,
            Why::DirOwner => write!(
                f,
                " is in {at}, which is not root's (owner uid {uid}, mode {mode:o})"
            )?,
            Why::DirWritable => write!(
                f,
                " is in {at}, which others may write (owner uid {uid}, mode {mode:o}, not sticky)"
            )?,
        }
        write!(
            f,
            ": another user could change what guard runs as root; {}",
            match self.why {
                Why::Owner | Why::Writable => format!("chown root and chmod go-w {at}"),
                Why::DirOwner | Why::DirWritable =>
                    format!("chown root and chmod go-w {at}, or keep the file elsewhere"),
            }
        )
    }
}

/// How the file could be changed by another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Owner,
    Writable,
    DirOwner,
    DirWritable,
}

/// Check `path` when guard runs as root (`Ok` otherwise, and for a file that does not exist:
/// there is nothing to run or read yet; whoever reads it later checks again).
pub fn check(path: &Path, use_: Use) -> Result<(), Untrusted> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    check_as_root(path, use_)
}

fn check_as_root(path: &Path, use_: Use) -> Result<(), Untrusted> {
    let Ok(real) = std::fs::canonicalize(path) else {
        return Ok(());
    };
    let fail = |at: &Path, why: Why, m: &std::fs::Metadata| Untrusted {
        use_,
        path: path.to_path_buf(),
        at: at.to_path_buf(),
        why,
        uid: m.uid(),
        mode: m.mode() & 0o7777,
    };
    let Ok(m) = std::fs::metadata(&real) else {
        return Ok(());
    };
    if m.uid() != 0 {
        return Err(fail(&real, Why::Owner, &m));
    }
    if m.mode() & 0o022 != 0 {
        return Err(fail(&real, Why::Writable, &m));
    }
    for dir in real.ancestors().skip(1) {
        let Ok(d) = std::fs::metadata(dir) else {
            continue;
        };
        if d.uid() != 0 {
            return Err(fail(dir, Why::DirOwner, &d));
        }
        if d.mode() & 0o022 != 0 && d.mode() & 0o1000 == 0 {
            return Err(fail(dir, Why::DirWritable, &d));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_and_every_directory_above_it_must_be_roots_alone() {
        if !nix::unistd::geteuid().is_root() {
            println!("test skipped: the_file_and_every_directory_above_it: not root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("guard.toml");
        std::fs::write(&f, "").unwrap();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        mode(&f, 0o644);
        check_as_root(&f, Use::Config).unwrap();
        mode(&f, 0o664);
        let e = check_as_root(&f, Use::Config).unwrap_err();
        assert_eq!(e.why, Why::Writable);
        assert!(e.to_string().contains("(owner uid 0, mode 664)"), "{e}");
        mode(&f, 0o644);
        std::os::unix::fs::chown(&f, Some(64123), None).unwrap();
        let e = check_as_root(&f, Use::Config).unwrap_err();
        assert_eq!((e.why, e.uid), (Why::Owner, 64123));
        std::os::unix::fs::chown(&f, Some(0), None).unwrap();
        mode(d.path(), 0o777);
        let e = check_as_root(&f, Use::Program).unwrap_err();
        assert_eq!(e.why, Why::DirWritable);
        assert!(e.to_string().contains("which others may write"), "{e}");
        mode(d.path(), 0o1777);
        check_as_root(&f, Use::Config).unwrap();
        mode(d.path(), 0o700);
        // A symlink is judged by what it points to, and where.
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(other.path(), Some(64123), None).unwrap();
        let theirs = other.path().join("hook");
        std::fs::write(&theirs, "").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&theirs, &link).unwrap();
        let e = check_as_root(&link, Use::Program).unwrap_err();
        assert_eq!(e.why, Why::DirOwner);
        assert!(check_as_root(&d.path().join("missing"), Use::Config).is_ok());
    }
}
