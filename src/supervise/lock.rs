//! `--lock FILE` / `--lock-wait DUR`: one run of a job at a time. An exclusive flock on FILE,
//! taken before anything else and held (an open descriptor) until guard exits; the file records
//! the holder's pid for people (the lock itself is the flock). A busy lock is one line naming it
//! and its holder, and exit 75 without starting COMMAND.

use super::Fatal;
use crate::config::WrapConfig;
use crate::exit;
use crate::units::format_duration;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock, held until dropped.
pub type Held = Option<Flock<File>>;

/// Take `--lock` if configured. `Ok(None)`: another run holds it (guard said so and must exit
/// with [`exit::LOCK_BUSY`]); `Ok(Some(held))`: go on (`held` is empty without `--lock`).
pub fn take(cfg: &WrapConfig) -> Result<Option<Held>, Fatal> {
    let Some(path) = &cfg.lock else {
        return Ok(Some(None));
    };
    if let Some(l) = acquire(path, cfg.lock_wait)? {
        return Ok(Some(Some(l)));
    }
    let holder = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
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

/// Take the lock file (flock, exclusive), waiting up to `wait`. `Ok(None)`: another run holds it.
fn acquire(path: &Path, wait: Option<Duration>) -> Result<Option<Flock<File>>, Fatal> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = wait.map(|w| Instant::now() + w);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            Fatal::new(
                exit::GUARD_FAILED,
                format!(
                    "cannot open the lock file {}: {e} (give --lock a path in a writable directory)",
                    path.display()
                ),
            )
        })?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut l) => {
                let _ = l.set_len(0);
                let _ = writeln!(&mut *l, "{}", std::process::id());
                return Ok(Some(l));
            }
            Err((f, Errno::EWOULDBLOCK)) => {
                if deadline.is_none_or(|d| Instant::now() >= d) {
                    return Ok(None);
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
