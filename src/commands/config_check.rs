//! `guard config check [FILE]`: the configuration validated, the effective settings of
//! [defaults] and of every job with where each came from, then the readiness checks
//! ([`super::readiness`]) — secrets resolved, nothing sent.

use super::{error_line, readiness};
use crate::config::{self, cli, exit};
use clap::ArgMatches;

/// `guard config check [FILE]`: validate, then print the effective settings of [defaults] and of
/// every job, each with where it came from.
pub fn check(a: &cli::ConfigCheckArgs, m: &ArgMatches) -> i32 {
    let files = config::file::locate(a.file.as_deref());
    if files.is_empty() {
        println!(
            "no configuration file: neither /etc/guard/guard.toml nor the user's \
             $XDG_CONFIG_HOME/guard/guard.toml (~/.config/guard/guard.toml) exists; built-in defaults apply"
        );
        return 0;
    }
    let layers = match config::file::Layers::load(a.file.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            error_line(&e);
            return exit::GUARD_FAILED;
        }
    };
    for f in &layers.files {
        println!("{}: ok", f.path.display());
    }
    let alerts = layers.alerts();
    if alerts.is_empty() {
        println!("\nalerts: none (add [[alerts]] tables, or --alert KIND:TARGET)");
    } else {
        println!("\nalerts (every job):");
        for (sink, place) in &alerts {
            println!(
                "  {:<44} events {}; timeout {}   {place}",
                sink.label(),
                sink.events
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                config::units::format_duration(sink.timeout)
            );
        }
    }
    let mut jobs: Vec<Option<String>> = vec![None];
    let mut seen = std::collections::HashSet::new();
    for f in &layers.files {
        for j in f.job_names() {
            if seen.insert(j.clone()) {
                jobs.push(Some(j));
            }
        }
    }
    let mut status = 0;
    let mut ready = readiness::sinks(&alerts.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>());
    let mut seen = readiness::Seen::default();
    for job in jobs {
        let base = cli::WrapArgs::for_job(job.clone());
        let (args, src) = config::apply_files(&base, m, &layers);
        match config::wrap_config(&args, &src, crate::cgroup::detect::available_memory_here) {
            Ok(cfg) => {
                match &job {
                    None => println!("\n[defaults] (and any job without a table of its own):"),
                    Some(j) => println!("\n[jobs.{j}] (guard --name {j}):"),
                }
                print!("{}", config::describe(&cfg, &src));
                ready.extend(readiness::job(&cfg, &mut seen));
            }
            Err(e) => {
                error_line(&e.0);
                status = exit::GUARD_FAILED;
            }
        }
    }
    println!("\nreadiness (checked here and now; secrets resolved but not shown; nothing sent):");
    print!("{}", readiness::text(&ready));
    let failed = ready.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        println!(
            "{failed} check(s) failed: a real run would lose what they name; fix them, then run guard drill"
        );
        if status == 0 {
            status = 1;
        }
    }
    status
}
