//! The manifest reader (`guard report`, `guard list`): any manifest.json and timeline.csv,
//! however malformed or planted, is either refused or reported — text and HTML — without a
//! panic, and the text report carries no raw control character.
#![no_main]
use guard::report::{self, Report};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first line is the timeline, the rest the manifest (so both get exercised).
    let (timeline, manifest) = text.split_once('\n').unwrap_or(("", &text));
    if let Ok(r) = Report::from_texts(Path::new("/b"), manifest, timeline) {
        let t = report::text(&r);
        assert!(
            !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
            "raw control character in {t:?}"
        );
        let _ = report::html(&r);
    }
});
