//! SIZE (`--memory 2G`, `--warn 80%`): never a panic; what parses is within bounds and, when it
//! is a byte count, formats into something that is again a SIZE.
#![no_main]
use guard::config::units::{MAX_SIZE, Size, format_size, parse_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match parse_size(s) {
        Ok(Size::Bytes(b)) => {
            assert!(b <= MAX_SIZE, "{s:?} parsed to {b}");
            let _ = format_size(b);
        }
        Ok(Size::Percent(p)) => assert!((1..=100).contains(&p), "{s:?} parsed to {p}%"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
