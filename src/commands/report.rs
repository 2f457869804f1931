//! `guard report [BUNDLE | --latest] [--json | --html FILE]` and `guard list [--json]`: the
//! bundles read back ([`crate::report`] renders them), the held jobs first in the list.

use super::{error_line, evidence_dir, print_json};
use crate::config::{cli, exit};
use crate::report;
use std::io::Write;

/// `guard report [BUNDLE | --latest] [--json | --html FILE]`
pub fn report(a: &cli::ReportArgs) -> i32 {
    // A bundle in the bucket: unpacked into a private directory for as long as it is read.
    let remote = a
        .bundle
        .as_ref()
        .and_then(|b| b.to_str())
        .and_then(crate::ship::remote::parse);
    let fetched = match remote {
        Some((bucket, key)) => {
            match super::upload::remote_settings(&bucket, None)
                .and_then(|u| crate::ship::remote::fetch(&u, &key))
            {
                Ok(f) => Some(f),
                Err(e) => {
                    error_line(e);
                    return exit::GUARD_FAILED;
                }
            }
        }
        None => None,
    };
    let bundle = fetched
        .as_ref()
        .map(|(_, p)| p.clone())
        .or(a.bundle.clone());
    let dir = match &bundle {
        Some(b) => Ok(b.clone()),
        None => evidence_dir(&a.evidence_dir)
            .map_err(report::ReportError::from)
            .and_then(|d| report::latest(&d)),
    };
    let r = match dir.and_then(|d| report::Report::load(&d)) {
        // Named as the person asked for it, not by the directory it was unpacked into.
        Ok(mut r) if fetched.is_some() => {
            r.bundle = a.bundle.clone().unwrap_or_default();
            r
        }
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
    if let Some(uri) = &a.from {
        return list_remote(uri, a.json);
    }
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

/// `guard list s3://BUCKET/PREFIX`: the bundles in the bucket, newest first, from the manifests
/// beside their archives.
fn list_remote(uri: &str, json: bool) -> i32 {
    let Some((bucket, prefix)) = crate::ship::remote::parse(uri) else {
        error_line(format!(
            "'{}' is not s3://BUCKET/PREFIX (guard list takes --evidence-dir DIR for bundles on this host)",
            crate::format::escape_controls(uri, false)
        ));
        return exit::GUARD_FAILED;
    };
    let rows = match super::upload::remote_settings(&bucket, None)
        .and_then(|u| crate::ship::remote::list(&u, &prefix))
    {
        Ok(r) => r,
        Err(e) => {
            error_line(e);
            return exit::GUARD_FAILED;
        }
    };
    if json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        eprintln!("guard: no bundles in {uri}");
        return 0;
    }
    print!("{}", crate::ship::remote::text(&rows));
    0
}
