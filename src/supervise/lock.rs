//! `--lock FILE` / `--lock-wait DUR`: one run of a job at a time. An exclusive flock on FILE,
//! taken before anything else and held (an open descriptor) until guard exits; the file records
//! the holder's pid for people (the lock itself is the flock). A busy lock is one line naming it
//! and its holder, and exit 75 without starting COMMAND.

use super::Fatal;
use crate::config::WrapConfig;
use crate::config::exit;
use crate::config::units::format_duration;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where root's locks belong (the packages' tmpfiles.d entry makes it at boot).
pub const ROOT_LOCKS: &str = "/run/lock/guard";

/// The lock, held until dropped.
pub type Held = Option<Flock<File>>;

/// Take `--lock` if configured. `Ok(None)`: another run holds it (guard said so and must exit
/// with [`exit::LOCK_BUSY`]); `Ok(Some(held))`: go on (`held` is empty without `--lock`).
pub fn take(cfg: &WrapConfig) -> Result<Option<Held>, Fatal> {
    let Some(path) = &cfg.lock else {
        return Ok(Some(None));
    };
    let file = open(path).map_err(|m| Fatal::new(exit::GUARD_FAILED, m))?;
    let busy = match acquire(file, path, cfg.lock_wait)? {
        Ok(l) => return Ok(Some(Some(l))),
        Err(busy) => busy,
    };
    let holder = holder(&busy)
        .map(|p| format!(" (guard pid {p})"))
        .unwrap_or_default();
    let waited = cfg
        .lock_wait
        .map(|w| format!(" (waited {})", format_duration(w)))
        .unwrap_or_default();
    eprintln!(
        "guard: {}: another run holds the lock {}{holder}{waited}; not started",
        cfg.name,
        path.display(),
    );
    Ok(None)
}

/// The pid the holder wrote into the lock file (read through guard's descriptor).
fn holder(f: &File) -> Option<i32> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 32];
    let n = f.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// Open the lock file, made when missing, without following a symlink, and check it: a regular
/// file of guard's user; as root, in a directory only root may write — anywhere another user may
/// create files, that user could create (and hold) the lock first and keep the job from ever
/// running, or plant a symlink for root to truncate through. The error is guard's one line.
fn open(path: &Path) -> Result<File, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    let shown = path.display();
    let euid = nix::unistd::geteuid().as_raw();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Root's lock directory after a reboot without tmpfiles.d: made (0755) when missing. Any
    // other missing directory is a mistake in the path, said as one.
    if euid == 0 && dir == Path::new(ROOT_LOCKS) && !dir.exists() {
        let _ = std::fs::DirBuilder::new().mode(0o755).create(dir);
    }
    if euid == 0 {
        if let Ok(m) = std::fs::metadata(dir) {
            if m.uid() != 0 || m.mode() & 0o022 != 0 {
                return Err(format!(
                    "--lock {shown}: its directory {} may be written by other users (owner uid {}, \
                     mode {:o}), who could take the lock first and keep the job from running; as \
                     root, keep locks in a directory only root may write, such as \
                     /run/lock/guard/",
                    dir.display(),
                    m.uid(),
                    m.mode() & 0o7777
                ));
            }
        }
        // And no other user may rename a directory above it.
        crate::os::trust::check(dir, crate::os::trust::Use::Directory)
            .map_err(|e| format!("--lock {shown}: {e}"))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!(
                "--lock {shown} is a symlink: guard does not follow one to its lock (give the lock \
                 file's real path)"
            ),
            _ => format!(
                "cannot open the lock file {shown}: {e} (give --lock a path in a writable directory)"
            ),
        })?;
    let m = file
        .metadata()
        .map_err(|e| format!("cannot open the lock file {shown}: {e}"))?;
    if !m.is_file() {
        return Err(format!(
            "--lock {shown} is not a regular file (a FIFO, a device, a directory): give a file's path"
        ));
    }
    if m.uid() != euid {
        return Err(format!(
            "--lock {shown} is owned by uid {}, not by guard's user (uid {euid}): whoever owns it \
             can hold it forever; remove it, or give a lock file of your own",
            m.uid()
        ));
    }
    Ok(file)
}

/// Take the lock (flock, exclusive), waiting up to `wait`. `Ok(Err(file))`: another run holds it.
fn acquire(
    mut file: File,
    path: &Path,
    wait: Option<Duration>,
) -> Result<Result<Flock<File>, File>, Fatal> {
    use std::io::Write as _;
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut l) => {
                let _ = l.set_len(0);
                let _ = writeln!(&mut *l, "{}", std::process::id());
                return Ok(Ok(l));
            }
            Err((f, Errno::EWOULDBLOCK)) => {
                if deadline.is_none_or(|d| Instant::now() >= d) {
                    return Ok(Err(f));
                }
                file = f;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, e)) => {
                return Err(Fatal::new(
                    exit::GUARD_FAILED,
                    format!("cannot lock {}: {}", path.display(), e.desc()),
                ));
            }
        }
    }
}
