//! The credentials an upload signs with, found as the AWS tools find them: guard's own keys
//! (`upload_access_key_id` ..., each `env:`/`file:` or a value in guard.toml), else
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, else the shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`; the profile
//! `AWS_PROFILE`, default `default`). Resolved when an upload happens, so a rotated key is used.
//! As root, a credentials file another user could change is refused (it would send the
//! evidence to their account). Nothing here is ever printed: errors name where guard looked.

use crate::config::upload::Keys;
use rusty_s3::Credentials;
use std::path::{Path, PathBuf};

/// Where the credentials came from (said by `guard doctor` and `guard drill`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Keys,
    Environment,
    File { path: PathBuf, profile: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Keys => write!(
                f,
                "guard's upload_access_key_id and upload_secret_access_key"
            ),
            Source::Environment => write!(f, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            Source::File { path, profile } => {
                write!(f, "{} (profile {profile})", path.display())
            }
        }
    }
}

/// The credentials, and where they came from.
pub fn find(keys: Option<&Keys>) -> Result<(Credentials, Source), String> {
    if let Some(k) = keys {
        let resolve = |s: &crate::config::alerts::Secret, what: &str| {
            s.resolve()
                .map(|v| v.trim().to_string())
                .map_err(|e| format!("{what}: {e}"))
        };
        let id = resolve(&k.id, "upload_access_key_id")?;
        let secret = resolve(&k.secret, "upload_secret_access_key")?;
        let token = match &k.token {
            Some(t) => Some(resolve(t, "upload_session_token")?),
            None => None,
        };
        return Ok((make(id, secret, token), Source::Keys));
    }
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok((
            make(id, secret, env("AWS_SESSION_TOKEN")),
            Source::Environment,
        ));
    }
    let path = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    let Some(path) = path else {
        return Err(none_found("no HOME for ~/.aws/credentials"));
    };
    if !path.exists() {
        return Err(none_found(&format!("{} does not exist", path.display())));
    }
    if nix::unistd::geteuid().is_root() {
        crate::os::trust::check(&path, crate::os::trust::Use::Config)
            .map_err(|e| format!("the shared credentials file is refused: {e}"))?;
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let section = profile_section(&text, &profile).ok_or_else(|| {
        format!(
            "{} has no profile [{profile}] (AWS_PROFILE)",
            path.display()
        )
    })?;
    let get = |k: &str| section.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok((
            make(id, secret, get("aws_session_token")),
            Source::File { path, profile },
        )),
        _ => Err(format!(
            "{} [{profile}] has no aws_access_key_id and aws_secret_access_key",
            path.display()
        )),
    }
}

fn none_found(why: &str) -> String {
    format!("no credentials: neither upload_access_key_id nor AWS_ACCESS_KEY_ID is set, and {why}")
}

fn make(id: String, secret: String, token: Option<String>) -> Credentials {
    match token {
        Some(t) => Credentials::new_with_token(id, secret, t),
        None => Credentials::new(id, secret),
    }
}

/// The `key = value` lines of `[profile]` in an INI file as the AWS tools write it: comments
/// start with `#` or `;`, names are matched trimmed. (The format is a handful of lines; the INI
/// crates bring ordered maps and build-time randomness for it.)
fn profile_section(text: &str, profile: &str) -> Option<Vec<(String, String)>> {
    let mut inside = false;
    let mut found = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            found |= inside;
            continue;
        }
        if let (true, Some((k, v))) = (inside, line.split_once('=')) {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_read_from_the_shared_file() {
        let text = "# a comment\n[default]\naws_access_key_id = AK1\naws_secret_access_key=SK1\n\n\
                    [ci]\n; another\nAWS_ACCESS_KEY_ID = AK2\naws_secret_access_key = SK2\n\
                    aws_session_token = T2\n";
        let d = profile_section(text, "default").unwrap();
        assert_eq!(d[0], ("aws_access_key_id".into(), "AK1".into()));
        assert_eq!(d[1].1, "SK1");
        let ci = profile_section(text, "ci").unwrap();
        assert_eq!(ci.len(), 3);
        assert_eq!(ci[0], ("aws_access_key_id".into(), "AK2".into()));
        assert!(profile_section(text, "prod").is_none());
    }
}
