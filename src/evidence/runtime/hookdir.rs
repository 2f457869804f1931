//! The directory a language runtime's hook is loaded from (`/run/guard/pyhook-HASH`,
//! `/run/guard/nodehook-HASH`): made by guard, its files written whole and renamed into place,
//! every entry checked to be guard's own before a job is pointed at it — a job loads whatever is
//! there, so nothing another user could have written is ever offered. Also how guard tells a
//! hooked process from another: the hook keeps its own file open (the announcement) and handles
//! the census signal.

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why the hook could not be put in place (guard goes on without a census, and says so).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Dir(#[from] crate::os::rundir::RunDirError),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{} contains {what}, which {var} cannot carry", path.display())]
    Unfit {
        path: PathBuf,
        what: &'static str,
        var: &'static str,
    },
    /// Something in the hook's tree guard did not write and cannot vouch for: a job would load
    /// it. guard neither loads nor deletes it; a person looks.
    #[error(
        "{} {why}: a {runtime} job would load it; guard did not write it — check who did, \
         then remove it",
        path.display()
    )]
    Untrusted {
        path: PathBuf,
        why: String,
        runtime: &'static str,
    },
}

/// What a runtime's hook directory holds.
pub struct Spec<'a> {
    /// `pyhook`, `nodehook`: the directory is PREFIX-HASH.
    pub prefix: &'a str,
    pub hash: u64,
    pub files: &'a [(&'a str, &'a str)],
    /// Python writes its bytecode cache beside its sources: `__pycache__`, made by guard.
    pub pycache: bool,
    /// Named in errors: "a Python job would load it".
    pub runtime: &'static str,
}

/// FNV-1a of a hook's files, computed at compile time: its directory's name changes with its
/// content, so guards of two versions never share (or fight over) one.
pub const fn content_hash(files: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut f = 0;
    while f < files.len() {
        let bytes = files[f].as_bytes();
        let mut i = 0;
        // Each file's bytes, then a 0 between files.
        while i <= bytes.len() {
            let b = if i < bytes.len() { bytes[i] } else { 0 };
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        f += 1;
    }
    h
}

/// The hook's directory for `uid`, made and checked: PREFIX-HASH in guard's runtime directory
/// ([`crate::os::rundir`]: `/run/guard` as root, 0755 so a job that drops its privileges still
/// loads it; else `$XDG_RUNTIME_DIR/guard` or `/tmp/guard-UID`, 0700).
pub fn open(uid: u32, spec: &Spec<'_>) -> Result<PathBuf, HookError> {
    let name = format!("{}-{:016x}", spec.prefix, spec.hash);
    let mode = if uid == 0 { 0o755 } else { 0o700 };
    let crate::os::rundir::Dir { fd: cur, path } = crate::os::rundir::open(uid, &[&name], mode)?;
    for &(file, content) in spec.files {
        ensure_file(&cur, file, content.as_bytes(), mode & 0o644, uid).map_err(|source| {
            HookError::Write {
                path: path.join(file),
                source,
            }
        })?;
    }
    if spec.pycache {
        ensure_pycache(&cur, &path, mode)?;
    }
    check_tree(&cur, &path, uid, u32::from(spec.pycache), spec.runtime)?;
    Ok(path)
}

/// The bytecode cache of the hook's directory, made by guard (owner `uid`, `mode`) before any job
/// can make it with the job's umask.
///
/// Why guard makes it rather than forbid bytecode: Python reads `__pycache__/NAME.cpython-3X.pyc`
/// before the source of every module it imports from a directory — `sitecustomize` included,
/// whatever `sys.dont_write_bytecode` says — so the directory's owner decides what every later
/// Python job runs. Made here, only `uid` (root, for a root guard) can write in it: a job that
/// dropped its privileges cannot, and a root job's `.pyc` files take the source's mode (0644)
/// whatever its umask. Compiling the hook at every start instead would cost each Python job
/// about 0.6 ms; [`check_tree`] then vouches for every entry at each run.
pub(crate) fn ensure_pycache(dir: &OwnedFd, path: &Path, mode: u32) -> Result<(), HookError> {
    const NAME: &str = "__pycache__";
    match mkdirat(dir, NAME, Mode::from_bits_truncate(mode)) {
        Ok(()) => {
            let write = |source: Errno| HookError::Write {
                path: path.join(NAME),
                source: source.into(),
            };
            let fd = openat(dir, NAME, SUBDIR, Mode::empty()).map_err(write)?;
            // The umask may have taken bits a job that drops its privileges needs to read it.
            fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(write)
        }
        Err(Errno::EEXIST) => Ok(()),
        Err(source) => Err(HookError::Write {
            path: path.join(NAME),
            source: source.into(),
        }),
    }
}

pub(crate) const SUBDIR: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Every entry of the hook's tree (its directory and `__pycache__`, `depth` levels below `dir`)
/// is a regular file or a directory owned by `uid` that nobody else may write; a symlink, a
/// device, a FIFO or an entry of another owner is refused, and nothing is loaded from it.
pub(crate) fn check_tree(
    dir: &OwnedFd,
    path: &Path,
    uid: u32,
    depth: u32,
    runtime: &'static str,
) -> Result<(), HookError> {
    let untrusted = |name: &OsStr, why: String| HookError::Untrusted {
        path: path.join(name),
        why,
        runtime,
    };
    let read =
        nix::dir::Dir::openat(dir, ".", SUBDIR, Mode::empty()).map_err(|e| HookError::Write {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
    for entry in read.into_iter().flatten() {
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let st = match nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            Ok(st) => st,
            // Renamed away meanwhile (another guard's temporary file).
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(untrusted(name, format!("cannot be checked ({e})"))),
        };
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFREG && kind != libc::S_IFDIR {
            return Err(untrusted(name, "is not a regular file".into()));
        }
        if st.st_uid != uid {
            return Err(untrusted(name, format!("is owned by uid {}", st.st_uid)));
        }
        if st.st_mode & 0o022 != 0 {
            let mode = st.st_mode & 0o7777;
            return Err(untrusted(
                name,
                format!("may be written by others (mode {mode:o})"),
            ));
        }
        if kind == libc::S_IFDIR {
            if depth == 0 || name != "__pycache__" {
                return Err(untrusted(name, "is a directory guard did not make".into()));
            }
            let sub = openat(dir, name, SUBDIR, Mode::empty())
                .map_err(|e| untrusted(name, format!("cannot be opened ({e})")))?;
            check_tree(&sub, &path.join(name), uid, depth - 1, runtime)?;
        }
    }
    Ok(())
}

/// `name` in `dir` holds exactly `content`; else it is replaced through a temporary file and a
/// rename (another guard may be reading it).
///
/// The common case costs one `fstatat`: a regular file of `content`'s length, owned by `uid`
/// and writable by nobody else, in a directory only `uid` may write (checked by the caller)
/// and named after the content's hash, can only have been written whole by a guard of this
/// version (files are renamed into place, never written where they are) — or changed by `uid`
/// itself, which could change guard too. Anything else is replaced.
fn ensure_file(dir: &OwnedFd, name: &str, content: &[u8], mode: u32, uid: u32) -> io::Result<()> {
    if let Ok(st) = nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        && st.st_mode & libc::S_IFMT == libc::S_IFREG
        && st.st_uid == uid
        && st.st_mode & 0o022 == 0
        && u64::try_from(st.st_size).is_ok_and(|n| n == content.len() as u64)
    {
        return Ok(());
    }
    let tmp = format!(".{name}.{}.tmp", std::process::id());
    let wflags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(dir, tmp.as_str(), wflags, Mode::from_bits_truncate(mode)) {
        Ok(fd) => fd,
        Err(Errno::EEXIST) => {
            // Left by a guard of this pid that died mid-write: ours to replace.
            nix::unistd::unlinkat(dir, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir)?;
            openat(dir, tmp.as_str(), wflags, Mode::from_bits_truncate(mode))?
        }
        Err(e) => return Err(e.into()),
    };
    fchmod(&fd, Mode::from_bits_truncate(mode))?;
    let mut f = File::from(fd);
    f.write_all(content)?;
    f.sync_all()?;
    Ok(renameat(dir, tmp.as_str(), dir, name)?)
}

/// The most descriptors of one process guard looks through for the hook's announcement.
const MAX_FDS_LOOKED_AT: usize = 4096;

/// Whether the hook announced itself in `pid`: the hook keeps its own file `hook_file` open
/// (close-on-exec), so a process that handles the census signal for another reason — `python
/// -E`, or a program with a handler of its own for that real-time signal — is never sent it.
pub fn announced(proc: &Path, pid: i32, hook_file: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(proc.join(pid.to_string()).join("fd")) else {
        return false;
    };
    rd.flatten()
        .take(MAX_FDS_LOOKED_AT)
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == hook_file))
}

/// Whether `pid` handles the hook's signal (its SigCgt mask in /proc/PID/status).
pub fn handles(proc: &Path, pid: i32, signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(proc.join(pid.to_string()).join("status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| (1..=64).contains(&signal) && mask & (1u64 << (signal - 1)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_of_the_hook_tree_must_be_guards_own() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let open = || openat(nix::fcntl::AT_FDCWD, d.path(), SUBDIR, Mode::empty()).unwrap();
        let check = || check_tree(&open(), d.path(), uid, 1, "Python");
        ensure_pycache(&open(), d.path(), 0o755).unwrap();
        let cache = d.path().join("__pycache__");
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "made whatever the umask");
        std::fs::write(cache.join("a.cpython-311.pyc"), "x").unwrap();
        std::fs::write(d.path().join("sitecustomize.py"), "x").unwrap();
        check().unwrap();
        let pyc = cache.join("a.cpython-311.pyc");
        std::fs::set_permissions(&pyc, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = check().unwrap_err().to_string();
        assert!(
            e.contains("a.cpython-311.pyc may be written by others (mode 666)"),
            "{e}"
        );
        std::fs::remove_file(&pyc).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &pyc).unwrap();
        let e = check().unwrap_err().to_string();
        assert!(e.contains("is not a regular file"), "{e}");
        std::fs::remove_file(&pyc).unwrap();
        std::fs::create_dir(cache.join("deeper")).unwrap();
        let e = check().unwrap_err().to_string();
        assert!(
            e.contains("deeper is a directory guard did not make"),
            "{e}"
        );
        std::fs::remove_dir(cache.join("deeper")).unwrap();
        check().unwrap();
        if uid == 0 {
            std::os::unix::fs::chown(&cache, Some(64123), None).unwrap();
            let e = check().unwrap_err().to_string();
            assert!(e.contains("__pycache__ is owned by uid 64123"), "{e}");
        }
    }

    #[test]
    fn sigcgt_decides_who_is_asked() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("5")).unwrap();
        // Bit 58 (value 1 << 57) and SIGINT (bit 2).
        std::fs::write(
            d.path().join("5/status"),
            "Name:\tpython3\nSigCgt:\t0200000000000002\n",
        )
        .unwrap();
        assert!(handles(d.path(), 5, 58));
        assert!(handles(d.path(), 5, 2));
        assert!(!handles(d.path(), 5, 57));
        assert!(!handles(d.path(), 6, 58));
        // The announcement: the hook's file among its descriptors.
        let hook = d.path().join("_guard_hook.py");
        std::fs::create_dir(d.path().join("5/fd")).unwrap();
        std::os::unix::fs::symlink("/dev/null", d.path().join("5/fd/0")).unwrap();
        assert!(!announced(d.path(), 5, &hook));
        std::os::unix::fs::symlink(&hook, d.path().join("5/fd/3")).unwrap();
        assert!(announced(d.path(), 5, &hook));
        assert!(!announced(d.path(), 6, &hook));
    }
}
