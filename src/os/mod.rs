//! Small operating-system helpers every layer uses, each owning one concern and knowing nothing
//! of guard's options, runs or evidence: [`proc`] reads /proc, [`runner`] runs a helper program
//! with a bound, [`rundir`] opens guard's runtime directory, [`owner`] tells whose a cgroup leaf or
//! temporary bundle is and whether that guard is gone, [`trust`] says whether root may act on a
//! file another user could change, [`headtail`] keeps output as its first and last bytes, [`journal`] writes to the machine's
//! logs (the journal, syslog), [`sigstate`] keeps the signal state guard was started with for the
//! job.

pub mod headtail;
pub mod journal;
pub mod owner;
pub mod proc;
pub mod rundir;
pub mod runner;
pub mod sigstate;
pub mod trust;

/// 64 random bits (names nobody guesses ahead of time: the census socket, a ping's run id).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        // No getrandom (kernels before 3.17): the time and pid still make a value nobody guesses
        // ahead of time for what lives a few seconds or names one run.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return t ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_ne_bytes(b)
}
