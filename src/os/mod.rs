//! Small operating-system helpers every layer uses, each owning one concern and knowing nothing
//! of guard's options, runs or evidence: [`proc`] reads /proc, [`runner`] runs a helper program
//! with a bound, [`rundir`] opens guard's runtime directory, [`owner`] tells whose a cgroup leaf or
//! temporary bundle is and whether that guard is gone, [`trust`] says whether root may act on a
//! file another user could change, [`headtail`] keeps output as its first and last bytes.

pub mod headtail;
pub mod owner;
pub mod proc;
pub mod rundir;
pub mod runner;
pub mod trust;
