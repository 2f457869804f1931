//! Redaction: environment variables whose names contain one of the configured words (the
//! contract's list by default) have their values replaced by `<redacted>` — in `environ.redacted`
//! and, through [`Scrubber`], everywhere else a bundle holds text (command lines, stacks, fd
//! targets, the manifest, the report). Only the names are kept (`redacted_env_keys`).

use std::collections::BTreeSet;

pub const REDACTED: &str = "<redacted>";
/// Shorter secret values are not scrubbed from other text: "1" or "on" would blank half a file.
const MIN_SCRUB_LEN: usize = 4;

/// Whether a variable named `key` is secret under `words` (upper-case words, substring match).
pub fn is_secret(key: &str, words: &[String]) -> bool {
    let k = key.to_ascii_uppercase();
    words.iter().any(|w| k.contains(w.as_str()))
}

/// Redact a NUL-separated environ block. Returns `KEY=value` lines (secret values replaced) and
/// feeds secret names and values to `scrub`.
pub fn environ(raw: &[u8], words: &[String], scrub: &mut Scrubber) -> String {
    let mut out = String::new();
    for entry in raw.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let text = String::from_utf8_lossy(entry);
        match text.split_once('=') {
            Some((k, v)) if is_secret(k, words) => {
                scrub.add(k, v.as_bytes());
                out.push_str(k);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(&text),
        }
        out.push('\n');
    }
    out
}

/// Replaces known secret values in text written to a bundle.
#[derive(Debug, Default, Clone)]
pub struct Scrubber {
    values: Vec<Vec<u8>>,
    pub keys: BTreeSet<String>,
}

impl Scrubber {
    pub fn add(&mut self, key: &str, value: &[u8]) {
        self.keys.insert(key.to_string());
        if value.len() >= MIN_SCRUB_LEN && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_vec());
            // longest first, so a secret containing another is replaced whole
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// Learn the secrets of an environ block without keeping the text.
    pub fn learn_environ(&mut self, raw: &[u8], words: &[String]) {
        let _ = environ(raw, words, self);
    }

    /// `data` with every known secret value replaced by `<redacted>`.
    pub fn scrub(&self, data: &[u8]) -> Vec<u8> {
        let mut cur = data.to_vec();
        for v in &self.values {
            if cur.len() < v.len() {
                continue;
            }
            let mut out = Vec::with_capacity(cur.len());
            let mut i = 0;
            while i < cur.len() {
                if cur[i..].starts_with(v) {
                    out.extend_from_slice(REDACTED.as_bytes());
                    i += v.len();
                } else {
                    out.push(cur[i]);
                    i += 1;
                }
            }
            cur = out;
        }
        cur
    }

    pub fn scrub_str(&self, s: &str) -> String {
        String::from_utf8_lossy(&self.scrub(s.as_bytes())).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> Vec<String> {
        crate::config::DEFAULT_REDACT
            .iter()
            .map(|w| w.to_string())
            .collect()
    }

    #[test]
    fn secrets_are_redacted_and_scrubbed_elsewhere() {
        let mut s = Scrubber::default();
        let raw = b"PATH=/usr/bin\0DATABASE_URL=postgres://u:hunter2@db/x\0aws_secret_access_key=AKIAXYZ\0HOME=/root\0";
        let text = environ(raw, &words(), &mut s);
        assert_eq!(
            text,
            "PATH=/usr/bin\nDATABASE_URL=<redacted>\naws_secret_access_key=<redacted>\nHOME=/root\n"
        );
        assert_eq!(
            s.keys.iter().cloned().collect::<Vec<_>>(),
            vec!["DATABASE_URL", "aws_secret_access_key"]
        );
        assert_eq!(
            s.scrub_str("psql postgres://u:hunter2@db/x --key AKIAXYZ"),
            "psql <redacted> --key <redacted>"
        );
    }

    #[test]
    fn short_values_are_redacted_in_environ_but_not_scrubbed() {
        let mut s = Scrubber::default();
        let text = environ(b"SESSION=1\0", &words(), &mut s);
        assert_eq!(text, "SESSION=<redacted>\n");
        assert_eq!(s.scrub_str("x 1 y"), "x 1 y");
    }

    #[test]
    fn configurable_words() {
        let w = vec!["FOO".to_string()];
        assert!(is_secret("my_foo_var", &w));
        assert!(!is_secret("TOKEN", &w));
    }
}
