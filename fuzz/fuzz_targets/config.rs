//! The config file (guard.toml): never a panic; an error is one line naming a place in the file;
//! a file that parses answers every key of [defaults] and of each job.
#![no_main]
use guard::config::file::ConfigFile;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ConfigFile::parse(Path::new("f.toml"), text.to_string()) {
        Ok(f) => {
            let jobs = f.job_names();
            for o in guard::config::options::file_keys() {
                let _ = f.get(None, o.key);
                for j in &jobs {
                    let _ = f.get(Some(j), o.key);
                }
            }
            let _ = f.alerts();
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "two lines: {line:?}");
            assert!(line.starts_with("f.toml"), "no place: {line:?}");
        }
    }
});
