//! The guard binary: everything lives in the library; this maps its result to the process status.

fn main() {
    let code = guard::main_with(std::env::args_os().collect());
    std::process::exit(code);
}
