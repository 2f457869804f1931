//! DUR (`--timeout 30m`): never a panic; what parses is at most MAX_DURATION, so a deadline
//! `now + d` cannot overflow.
#![no_main]
use guard::config::units::{MAX_DURATION, format_duration, parse_duration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(s) {
        assert!(d <= MAX_DURATION, "{s:?} parsed to {d:?}");
        let _ = std::time::Instant::now() + d;
        let _ = format_duration(d);
    }
});
