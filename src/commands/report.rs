//! `guard report [BUNDLE | --latest] [--json | --html FILE]` and `guard list [--json]`: the
//! bundles read back ([`crate::report`] renders them), the held jobs first in the list.

use super::{error_line, evidence_dir, print_json};
use crate::config::{cli, exit};
use crate::report;
use std::io::Write;

/// `guard report [BUNDLE | --latest] [--json | --html FILE]`
pub fn report(a: &cli::ReportArgs) -> i32 {
    let dir = match &a.bundle {
        Some(b) => Ok(b.clone()),
        None => evidence_dir(&a.evidence_dir)
            .map_err(report::ReportError::from)
            .and_then(|d| report::latest(&d)),
    };
    let r = match dir.and_then(|d| report::Report::load(&d)) {
        Ok(r) => r,
        Err(e) => {
            error_line(&e);
            return exit::GUARD_FAILED;
        }
    };
    if a.json {
        return print_json(&r);
    }
    if let Some(out) = &a.html {
        if let Err(e) = write_private(out, report::html(&r).as_bytes()) {
            error_line(format!(
                "cannot write {}: {e} (choose a writable path for --html; guard does not write through a symlink)",
                out.display()
            ));
            return exit::GUARD_FAILED;
        }
        eprintln!("guard: wrote {}", out.display());
        return 0;
    }
    print!("{}", report::text(&r));
    0
}

/// Write `data` to `path` as the bundle's files are: 0600 (the page holds the bundle's
/// command lines and paths), never through a symlink (root writing where another user points).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // An existing file keeps its mode through O_CREAT: make it private too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)
}

/// `guard list [--json]`
pub fn list(a: &cli::ListArgs) -> i32 {
    let dir = match evidence_dir(&a.evidence_dir) {
        Ok(d) => d,
        Err(e) => {
            error_line(&e);
            return exit::GUARD_FAILED;
        }
    };
    let rows = report::list(&dir);
    if a.json {
        return print_json(&rows);
    }
    // Held jobs first: a hold is the one thing in the list that is still going on.
    match crate::supervise::register::live() {
        Ok(h) if !h.is_empty() => println!("{}", super::held::text(&h)),
        Ok(_) => {}
        Err(e) => log::warn!("{e}"),
    }
    if rows.is_empty() {
        eprintln!("guard: no bundles in {}", dir.display());
        return 0;
    }
    print!("{}", report::list_text(&rows));
    0
}
