//! The wrap, `guard [run] [OPTIONS] -- COMMAND`: the configuration — command line, `GUARD_*`
//! variables and files — validated into a [`crate::config::WrapConfig`] (bad input: one line,
//! 125), then [`crate::supervise::run`].

use super::error_line;
use crate::config::{self, cli, exit};
use clap::ArgMatches;

pub fn wrap(args: &cli::WrapArgs, m: &ArgMatches) -> i32 {
    let layers = match config::file::Layers::load(args.path("config").as_deref()) {
        Ok(l) => l,
        Err(e) => {
            error_line(&e);
            return exit::GUARD_FAILED;
        }
    };
    let (args, src) = config::apply_files(args, m, &layers);
    let cfg = match config::wrap_config(&args, &src, crate::cgroup::detect::available_memory_here) {
        Ok(c) => c,
        Err(e) => {
            error_line(&e.0);
            return exit::GUARD_FAILED;
        }
    };
    crate::init_logging(cfg.verbosity);
    match crate::supervise::run(&cfg) {
        Ok(code) => code,
        Err(f) => {
            error_line(&f.message);
            f.status
        }
    }
}
