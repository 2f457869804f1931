//! `guard upload [BUNDLE_DIR... | --pending]`: ship bundles now — the ones named, or every one
//! of the evidence directory still pending — each with the upload settings of its own job (the
//! configuration's `[jobs.NAME]`, else `[defaults]`, and the `GUARD_UPLOAD*` variables), within
//! each job's `--upload-timeout`. One line per bundle; exit 0 when every one is up, 1 when one
//! stays pending, 125 for a usage mistake.

use crate::config::cli::{UploadArgs, WrapArgs};
use crate::config::exit::GUARD_FAILED;
use crate::config::options;
use crate::config::upload::Upload;
use crate::ship::{self, Outcome, State};
use std::path::{Path, PathBuf};

pub fn command(a: &UploadArgs, matches: &clap::ArgMatches) -> i32 {
    let layers = match crate::config::file::Layers::load(a.config.as_deref()) {
        Ok(l) => l,
        Err(e) => return usage(&e.to_string()),
    };
    let bundles = match which(a, matches, &layers) {
        Ok(b) => b,
        Err(e) => return usage(&e),
    };
    if bundles.is_empty() {
        if !a.json {
            println!("no bundle is pending");
        }
        return if a.json { print_json(&[]) } else { 0 };
    }
    let mut out = Vec::new();
    for b in &bundles {
        let job = crate::format::read_manifest(b).map(|m| m.job);
        let outcome = match job.map_err(|e| e.to_string()).and_then(|j| {
            settings(&j, matches, &layers)?.ok_or_else(|| {
                format!(
                    "the job '{j}' has no upload target: set upload = \"s3://BUCKET/PREFIX\" in \
                     its [jobs.{j}] or [defaults], or GUARD_UPLOAD"
                )
            })
        }) {
            Ok(u) => ship::ship_now(&u, b),
            Err(e) => {
                eprintln!(
                    "guard: error: {}: {}",
                    b.display(),
                    crate::format::escape_controls(&e, false)
                );
                return GUARD_FAILED;
            }
        };
        if !a.json {
            println!("{}", line(&outcome));
        }
        out.push(outcome);
    }
    if a.json {
        let status = print_json(&out);
        if status != 0 {
            return status;
        }
    }
    i32::from(out.iter().any(|o| o.record.state == State::Pending))
}

fn usage(why: &str) -> i32 {
    eprintln!(
        "guard: error: {}",
        crate::format::escape_controls(why, false)
    );
    GUARD_FAILED
}

fn print_json(out: &[Outcome]) -> i32 {
    match serde_json::to_string_pretty(out) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => usage(&format!("cannot encode the result: {e}")),
    }
}

/// `uploaded  BUNDLE → URL` or `pending   BUNDLE: WHY`.
fn line(o: &Outcome) -> String {
    let b = o.bundle.display();
    match o.record.state {
        State::Uploaded => format!("uploaded  {b} \u{2192} {}", o.record.url),
        State::Pending => format!(
            "pending   {b}: {} (attempt {})",
            crate::format::escape_controls(o.record.error.as_deref().unwrap_or("unknown"), false),
            o.record.attempts
        ),
    }
}

/// The bundles to ship: those named (each must be a bundle), or the pending ones of the
/// evidence directory.
fn which(
    a: &UploadArgs,
    matches: &clap::ArgMatches,
    layers: &crate::config::file::Layers,
) -> Result<Vec<PathBuf>, String> {
    match (a.pending, a.bundles.is_empty()) {
        (false, true) => {
            Err("guard upload needs BUNDLE_DIR... or --pending (every bundle still pending)".into())
        }
        (true, _) => {
            let dir = match &a.evidence_dir {
                Some(d) => d.clone(),
                None => evidence_dir(matches, layers)?,
            };
            if !dir.is_dir() {
                return Err(format!(
                    "{}: no such evidence directory (--evidence-dir)",
                    dir.display()
                ));
            }
            Ok(ship::pending_in(&dir))
        }
        (false, false) => {
            for b in &a.bundles {
                if !b.join("manifest.json").is_file() {
                    return Err(format!(
                        "{}: not a bundle (no manifest.json in it)",
                        b.display()
                    ));
                }
                // As a run writes them: in an evidence directory guard may trust (its owner's or
                // root's, nobody else may write it) — root reads every file it sends.
                let parent = b.parent().unwrap_or(Path::new("/"));
                crate::evidence::bundle::EvidenceDir::open_existing(parent)
                    .map_err(|e| format!("{}: {e}", b.display()))?;
            }
            Ok(a.bundles.clone())
        }
    }
}

/// The evidence directory of the configuration's [defaults] (or guard's default).
fn evidence_dir(
    matches: &clap::ArgMatches,
    layers: &crate::config::file::Layers,
) -> Result<PathBuf, String> {
    let cfg = wrap_config(None, matches, layers)?;
    cfg.evidence
        .dir
        .map_err(|e| format!("no evidence directory: {e}"))
}

/// A job's settings as a run of it would have them: the configuration's table of the job, else
/// [defaults], with the GUARD_* variables of the upload.
fn wrap_config(
    job: Option<&str>,
    matches: &clap::ArgMatches,
    layers: &crate::config::file::Layers,
) -> Result<crate::config::WrapConfig, String> {
    let mut args = WrapArgs::for_job(job.map(str::to_string));
    fill_from_env(&mut args);
    let (args, src) = crate::config::apply_files(&args, matches, layers);
    crate::config::wrap_config(&args, &src, || None).map_err(|e| e.0)
}

/// The upload settings to read from `bucket` (`guard report s3://...`, `guard list s3://...`):
/// the configuration's [defaults] and the GUARD_UPLOAD* and AWS variables, the bucket as given.
pub fn remote_settings(bucket: &str, config: Option<&Path>) -> Result<Upload, String> {
    let layers = crate::config::file::Layers::load(config).map_err(|e| e.to_string())?;
    let matches = clap::ArgMatches::default();
    let mut args = WrapArgs::for_job(None);
    args.fill("upload", format!("s3://{bucket}").into());
    fill_from_env(&mut args);
    let (args, src) = crate::config::apply_files(&args, &matches, &layers);
    crate::config::wrap_config(&args, &src, || None)
        .map_err(|e| e.0)?
        .upload
        .ok_or_else(|| "no upload settings".to_string())
}

/// GUARD_EVIDENCE_DIR, as clap would read it for a run (the upload's variables are read by
/// [`crate::config::apply_files`]).
fn fill_from_env(args: &mut WrapArgs) {
    let o = options::get("evidence_dir");
    if let Some(v) = std::env::var_os(o.env).filter(|v| !v.is_empty()) {
        args.fill(o.key, v);
    }
}

/// The upload settings of `job` (None: it has no target).
fn settings(
    job: &str,
    matches: &clap::ArgMatches,
    layers: &crate::config::file::Layers,
) -> Result<Option<Upload>, String> {
    Ok(wrap_config(Some(job), matches, layers)?.upload)
}
