//! The guard binary: everything lives in the library; this maps its result to the process status.
//!
//! guard starts from C's `main` (`no_main`), skipping the Rust runtime's start-up: that reads
//! /proc/self/maps to place the main thread's stack guard and sets up an alternate signal stack,
//! about 0.1 ms of every short job's run on our machines (bench/README.md). What of it guard
//! needs — SIGPIPE ignored, descriptors 0-2 open — `guard::startup` does.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use std::ffi::{CStr, OsString};
#[cfg(not(test))]
use std::os::unix::ffi::OsStringExt;

/// # Safety
/// Called once, by the C runtime, with its `argc` and `argv`.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    guard::startup();
    let args: Vec<OsString> = (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the C runtime passes argc valid, NUL-terminated strings in argv.
            let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
            OsString::from_vec(arg.to_bytes().to_vec())
        })
        .collect();
    let code = guard::main_with(args);
    // Flushes stdout, as returning from a Rust main would.
    std::process::exit(code);
}
