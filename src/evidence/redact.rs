//! Redaction: one pass for everything that leaves guard — bundle files, the manifest, the report,
//! alert bodies, exec hooks' environment, ping bodies and log lines.
//!
//! - Environment variables named like secrets (the configured words, the contract's list by
//!   default: a word matches anywhere in the upper-cased name, `*WORD` only at its end, `WORD*`
//!   only at its start) have their values replaced by `<redacted>`; [`Scrubber`] then replaces
//!   those values wherever else they appear (command lines, stacks, fd targets, output), and the
//!   password of a secret URL on its own too. Only the names are kept (`redacted_env_keys`).
//! - Credentials in URLs (`scheme://user:password@host`) are masked wherever they appear, named
//!   like a secret or not: the password, or a long user part standing alone (a token used as the
//!   user, as GitHub's are).
//! - In command lines, the value of an option named like a secret (`--password=x`,
//!   `--api-token x`) is masked.
//!
//! What cannot be caught: a secret in a variable named like nothing above, printed on its own or
//! as a positional argument; a value shorter than 4 characters outside its variable (blanking
//! "1" or "on" everywhere would wreck the text); anything in a core dump (`--core`, opt-in for
//! that reason) or in Python locals (`--pyspy-locals`).

use std::collections::BTreeSet;

pub const REDACTED: &str = "<redacted>";
/// Shorter secret values are not scrubbed from other text: "1" or "on" would blank half a file.
const MIN_SCRUB_LEN: usize = 4;
/// A URL's user part with no password is masked from this length on (a token, not "git").
const MIN_TOKEN_USER: usize = 16;

/// Whether a name matches one redaction word: `WORD` anywhere, `*WORD` at the end, `WORD*` at
/// the start (`name` and the words upper-case).
fn word_matches(name: &str, word: &str) -> bool {
    if let Some(w) = word.strip_prefix('*') {
        name.ends_with(w)
    } else if let Some(w) = word.strip_suffix('*') {
        name.starts_with(w)
    } else {
        name.contains(word)
    }
}

/// Whether a variable (or option) named `key` is secret under `words` (upper-case words).
pub fn is_secret(key: &str, words: &[String]) -> bool {
    let k = key.to_ascii_uppercase().replace('-', "_");
    words.iter().any(|w| word_matches(&k, w))
}

/// Redact a NUL-separated environ block. Returns `KEY=value` lines (secret values replaced, URL
/// credentials masked) and feeds secret names and values to `scrub`.
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
            _ => out.push_str(&mask_url_credentials(&text)),
        }
        out.push('\n');
    }
    out
}

/// The password (or token-like user) of every URL with credentials in `text`.
fn url_secrets(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let after = &rest[i + 3..];
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        if let Some((userinfo, _host)) = authority.rsplit_once('@') {
            match userinfo.split_once(':') {
                Some((_, pass)) if !pass.is_empty() => out.push(pass),
                None if userinfo.len() >= MIN_TOKEN_USER => out.push(userinfo),
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out
}

/// `text` with the credentials of every URL in it masked: `https://u:<redacted>@host/…`.
pub fn mask_url_credentials(text: &str) -> String {
    let mut out = text.to_string();
    for s in url_secrets(text) {
        out = out.replace(&format!(":{s}@"), &format!(":{REDACTED}@"));
        out = out.replace(&format!("//{s}@"), &format!("//{REDACTED}@"));
    }
    out
}

/// Replaces known secret values, and URL credentials, in anything guard writes or sends.
#[derive(Debug, Default, Clone)]
pub struct Scrubber {
    values: Vec<Vec<u8>>,
    pub keys: BTreeSet<String>,
    /// The redaction words (for command-line options named like secrets).
    words: Vec<String>,
}

impl Scrubber {
    /// A scrubber that knows `words` (for options in command lines) and no secret yet.
    pub fn new(words: &[String]) -> Scrubber {
        Scrubber {
            words: words.to_vec(),
            ..Scrubber::default()
        }
    }

    /// A scrubber that knows the secrets of guard's own environment (the job's too, at its
    /// start): what the alerts, pings and log lines are scrubbed with.
    pub fn of_own_environment(words: &[String]) -> Scrubber {
        let mut s = Scrubber::new(words);
        for (k, v) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if is_secret(&k, words) {
                s.add(&k, v.as_encoded_bytes());
            }
        }
        s
    }

    /// A secret value (and, when it is a URL with credentials, its password on its own).
    pub fn add(&mut self, key: &str, value: &[u8]) {
        self.keys.insert(key.to_string());
        self.add_value(value);
        let text = String::from_utf8_lossy(value).into_owned();
        for part in url_secrets(&text) {
            self.add_value(part.as_bytes());
        }
    }

    fn add_value(&mut self, value: &[u8]) {
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

    /// Everything this scrubber knows, and `other` knows, together.
    pub fn merge(&mut self, other: &Scrubber) {
        for k in &other.keys {
            self.keys.insert(k.clone());
        }
        for v in &other.values {
            self.add_value(v);
        }
    }

    /// `data` with every known secret value replaced by `<redacted>` and URL credentials masked.
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
        if cur.windows(3).any(|w| w == b"://") {
            return mask_url_credentials(&String::from_utf8_lossy(&cur)).into_bytes();
        }
        cur
    }

    pub fn scrub_str(&self, s: &str) -> String {
        String::from_utf8_lossy(&self.scrub(s.as_bytes())).into_owned()
    }

    /// A command line with the values of options named like secrets masked (`--password=x`,
    /// `--token x`), then scrubbed.
    pub fn argv(&self, args: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(args.len());
        let mut mask_next = false;
        for a in args {
            if mask_next {
                out.push(REDACTED.to_string());
                mask_next = false;
                continue;
            }
            match a.strip_prefix("--").or_else(|| a.strip_prefix('-')) {
                Some(opt) if !opt.is_empty() => match opt.split_once('=') {
                    Some((name, _)) if is_secret(name, &self.words) => {
                        out.push(format!(
                            "{}={REDACTED}",
                            &a[..a.len() - opt.len() + name.len()]
                        ));
                    }
                    None if opt.len() > 1 && is_secret(opt, &self.words) => {
                        mask_next = true;
                        out.push(a.clone());
                    }
                    _ => out.push(self.scrub_str(a)),
                },
                _ => out.push(self.scrub_str(a)),
            }
        }
        out
    }

    /// A NUL-separated command line (`/proc/PID/cmdline`) redacted as [`Self::argv`] does,
    /// NUL-separated again.
    pub fn cmdline(&self, raw: &[u8]) -> Vec<u8> {
        let args: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let mut out = Vec::new();
        for a in self.argv(&args) {
            out.extend_from_slice(a.as_bytes());
            out.push(0);
        }
        out
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
        let mut s = Scrubber::new(&words());
        let raw = b"PATH=/usr/bin\0DATABASE_URL=postgres://u:hunter22@db/x\0aws_secret_access_key=AKIAXYZ\0HOME=/root\0";
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
            s.scrub_str("psql postgres://u:hunter22@db/x --key AKIAXYZ"),
            "psql <redacted> --key <redacted>"
        );
        // The password of a secret URL, printed on its own.
        assert_eq!(s.scrub_str("login with hunter22"), "login with <redacted>");
    }

    /// Defect 4: names the contract's words missed, and URLs with credentials anywhere.
    #[test]
    fn common_secrets_the_words_missed_are_caught() {
        let w = words();
        for name in [
            "MYSQL_PWD",
            "GITHUB_PAT",
            "CI_JOB_PAT",
            "PGPASSWORD",
            "npm_config__authToken",
        ] {
            assert!(is_secret(name, &w), "{name}");
        }
        for name in ["PATH", "PWD", "OLDPWD", "PATTERN", "HOME"] {
            assert!(!is_secret(name, &w), "{name}");
        }
        let mut s = Scrubber::new(&w);
        let text = environ(
            b"https_proxy=http://bob:pr0xyp4ss@proxy:3128\0REDIS_URL=redis://:r3d1sp4ss@cache:6379/0\0",
            &w,
            &mut s,
        );
        assert!(
            !text.contains("pr0xyp4ss") && !text.contains("r3d1sp4ss"),
            "{text}"
        );
        assert!(text.contains("http://bob:<redacted>@proxy:3128"), "{text}");
        assert_eq!(
            s.scrub_str("clone https://ghp_0123456789abcdefghij@github.com/x and ssh://git@host/y"),
            "clone https://<redacted>@github.com/x and ssh://git@host/y"
        );
    }

    #[test]
    fn option_values_named_like_secrets_are_masked() {
        let s = Scrubber::new(&words());
        let a: Vec<String> = [
            "mysql",
            "--password=hunter2",
            "--api-token",
            "t0k",
            "-u",
            "root",
            "--user=bob",
            "postgres://u:pw1234@h/db",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            s.argv(&a),
            [
                "mysql",
                "--password=<redacted>",
                "--api-token",
                "<redacted>",
                "-u",
                "root",
                "--user=bob",
                "postgres://u:<redacted>@h/db"
            ]
        );
        assert_eq!(
            s.cmdline(b"x\0--token=abc\0"),
            b"x\0--token=<redacted>\0".to_vec()
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
        let w = vec!["FOO".to_string(), "*_X".to_string(), "Y_*".to_string()];
        assert!(is_secret("my_foo_var", &w));
        assert!(!is_secret("TOKEN", &w));
        assert!(is_secret("A_X", &w) && !is_secret("A_XB", &w));
        assert!(is_secret("Y_A", &w) && !is_secret("AY_A", &w));
    }
}
