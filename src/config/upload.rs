//! The upload's settings (guard(1), UPLOAD): where bundles go (`--upload s3://BUCKET/PREFIX`),
//! the endpoint, region and addressing after the AWS conventions (`AWS_ENDPOINT_URL_S3`,
//! `AWS_ENDPOINT_URL`, `AWS_REGION`), guard's own credential keys (`env:`/`file:` references;
//! never a plain secret on the command line), the bound on an upload and how long a presigned
//! link stays valid. Read and checked once, when the run starts; the credentials themselves are
//! resolved only when a bundle goes up (`crate::ship`), so a rotated key is picked up.

use crate::config::alerts::Secret;
use std::time::Duration;
use url::Url;

/// How long an upload may take, all of a run's bundles together, when not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The region when none is configured (what the AWS tools assume, and what S3-compatible
/// servers accept).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where bundles go: a bucket and a key prefix (no leading or trailing `/`; may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub bucket: String,
    pub prefix: String,
}

impl Target {
    /// `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let rest = text.strip_prefix("s3://").ok_or_else(|| {
            "expected s3://BUCKET/PREFIX (an S3 bucket, and where in it the bundles go)".to_string()
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket)?;
        let prefix = prefix.trim_matches('/');
        if prefix.chars().any(char::is_control) || prefix.contains("//") {
            return Err("the prefix has a control character or an empty path segment".into());
        }
        if prefix.len() > 512 {
            return Err("the prefix is longer than 512 bytes".into());
        }
        Ok(Target {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// `s3://BUCKET/PREFIX` as given back to people.
    pub fn shown(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// S3's bucket naming rules: 3 to 63 characters, lower-case letters, digits, dots and hyphens,
/// starting and ending with a letter or digit.
fn check_bucket(b: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&b.len())
        || !b.chars().all(ok_char)
        || !edge(b.chars().next())
        || !edge(b.chars().last())
        || b.contains("..")
    {
        return Err(format!(
            "'{}' is not a bucket name (3 to 63 lower-case letters, digits, dots and hyphens)",
            crate::format::escape_controls(b, false)
        ));
    }
    Ok(())
}

/// How the bucket is named in a request's URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `https://ENDPOINT/BUCKET/KEY`: what S3-compatible servers (SeaweedFS, MinIO, Ceph,
    /// Garage) expect; the default with an endpoint of your own.
    Path,
    /// `https://BUCKET.ENDPOINT/KEY`: AWS's own; the default without an endpoint.
    VirtualHost,
}

impl Addressing {
    pub fn parse(text: &str) -> Result<Addressing, String> {
        match text.trim() {
            "path" => Ok(Addressing::Path),
            "virtual" | "virtual-host" => Ok(Addressing::VirtualHost),
            _ => Err("expected path or virtual".into()),
        }
    }
}

/// guard's own credentials (`upload_access_key_id` ...), each an `env:NAME`, a `file:/path` or,
/// in a configuration file only, the value itself.
#[derive(Debug, Clone)]
pub struct Keys {
    pub id: Secret,
    pub secret: Secret,
    pub token: Option<Secret>,
}

/// The upload's settings, checked.
#[derive(Debug, Clone)]
pub struct Upload {
    pub target: Target,
    /// The service's URL (scheme and host, maybe a port and a path).
    pub endpoint: Url,
    /// Where the endpoint came from, for messages: `--upload-endpoint`, `AWS_ENDPOINT_URL_S3` ...
    pub endpoint_from: String,
    pub region: String,
    pub addressing: Addressing,
    /// All of a run's uploads together.
    pub timeout: Duration,
    /// None: the AWS environment variables, then the shared credentials file.
    pub keys: Option<Keys>,
    /// Alerts carry a presigned link valid this long.
    pub presign: Option<Duration>,
}

/// What the settings are read from: each key's text (from the command line, the environment
/// or a file), and the process's environment for the AWS variables.
pub struct Given<'a> {
    pub text: &'a dyn Fn(&str) -> Option<String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Upload {
    /// The settings from `given`, when `upload` is set. An error names the value and what to do.
    pub fn read(g: &Given<'_>) -> Result<Option<Upload>, (&'static str, String, String)> {
        let Some(text) = (g.text)("upload") else {
            return Ok(None);
        };
        let target = Target::parse(&text).map_err(|e| ("upload", text.clone(), e))?;
        let region = (g.text)("upload_region")
            .or_else(|| (g.env)("AWS_REGION"))
            .or_else(|| (g.env)("AWS_DEFAULT_REGION"))
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        if !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err((
                "upload_region",
                region,
                "a region is letters, digits and hyphens (us-east-1)".into(),
            ));
        }
        let (endpoint, endpoint_from, own) = endpoint(g, &region)?;
        let allow_http = (g.text)("upload_allow_http").is_some_and(|v| v == "true");
        check_scheme(&endpoint, allow_http).map_err(|e| {
            (
                "upload_endpoint",
                format!("{endpoint} ({endpoint_from})"),
                e,
            )
        })?;
        let addressing = match (g.text)("upload_addressing") {
            Some(a) => Addressing::parse(&a).map_err(|e| ("upload_addressing", a, e))?,
            None if own => Addressing::Path,
            None => Addressing::VirtualHost,
        };
        Ok(Some(Upload {
            target,
            endpoint,
            endpoint_from,
            region,
            addressing,
            timeout: DEFAULT_TIMEOUT,
            keys: keys(g)?,
            presign: None,
        }))
    }
}

/// The endpoint: guard's key, then AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, else AWS's for
/// the region. Also where it came from, and whether it is one of the user's own.
fn endpoint(
    g: &Given<'_>,
    region: &str,
) -> Result<(Url, String, bool), (&'static str, String, String)> {
    let given = [
        ("upload_endpoint", (g.text)("upload_endpoint")),
        ("AWS_ENDPOINT_URL_S3", (g.env)("AWS_ENDPOINT_URL_S3")),
        ("AWS_ENDPOINT_URL", (g.env)("AWS_ENDPOINT_URL")),
    ];
    let Some((from, text)) = given
        .into_iter()
        .find_map(|(k, v)| v.filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
    else {
        let aws = format!("https://s3.{region}.amazonaws.com");
        let url =
            Url::parse(&aws).map_err(|e| ("upload_region", region.to_string(), e.to_string()))?;
        return Ok((url, "AWS's endpoint for the region".into(), false));
    };
    let bad = |e: String| ("upload_endpoint", format!("{text} ({from})"), e);
    let url = Url::parse(text.trim()).map_err(|e| bad(e.to_string()))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it carries a user or password: give credentials as upload_access_key_id and \
             upload_secret_access_key, or the AWS variables"
                .into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a query or a fragment".into()));
    }
    Ok((url, from.to_string(), true))
}

/// TLS unless the endpoint is this machine (loopback), or plain http was allowed explicitly:
/// a request's signature does not hide the bundle, and a key it carries in the clear could be
/// replayed by whoever is on the path.
pub fn check_scheme(url: &Url, allow_http: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || loopback(url) => Ok(()),
        "http" => Err(
            "plain http to another machine sends the evidence in the clear: use https, or set \
             upload_allow_http = true if this network is trusted"
                .into(),
        ),
        s => Err(format!("'{s}:' is not http or https")),
    }
}

/// Whether `url`'s host is this machine: localhost, 127.0.0.0/8 or ::1.
pub fn loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// guard's own credential keys: both or neither of the key id and the secret; a session token
/// only with them.
fn keys(g: &Given<'_>) -> Result<Option<Keys>, (&'static str, String, String)> {
    let id = (g.text)("upload_access_key_id");
    let secret = (g.text)("upload_secret_access_key");
    let token = (g.text)("upload_session_token");
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Some(Keys {
            id: Secret::parse(&id),
            secret: Secret::parse(&secret),
            token: token.as_deref().map(Secret::parse),
        })),
        (None, None) if token.is_none() => Ok(None),
        (None, None) => Err((
            "upload_session_token",
            "<redacted>".into(),
            "a session token goes with upload_access_key_id and upload_secret_access_key".into(),
        )),
        (Some(_), None) => Err((
            "upload_access_key_id",
            "<redacted>".into(),
            "upload_secret_access_key is missing (give both, or neither to use the AWS \
             variables and the shared credentials file)"
                .into(),
        )),
        (None, Some(_)) => Err((
            "upload_secret_access_key",
            "<redacted>".into(),
            "upload_access_key_id is missing (give both, or neither to use the AWS variables \
             and the shared credentials file)"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(keys: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Option<Upload>, String> {
        let k: HashMap<String, String> = keys
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let e: HashMap<String, String> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let text = |key: &str| k.get(key).cloned();
        let env = |key: &str| e.get(key).cloned();
        Upload::read(&Given {
            text: &text,
            env: &env,
        })
        .map_err(|(k, v, e)| format!("{k}={v}: {e}"))
    }

    #[test]
    fn a_target_is_a_bucket_and_a_prefix() {
        let t = Target::parse("s3://evidence/prod/guard/").unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.prefix.as_str()),
            ("evidence", "prod/guard")
        );
        assert_eq!(t.shown(), "s3://evidence/prod/guard");
        assert_eq!(Target::parse("s3://evidence").unwrap().prefix, "");
        for bad in [
            "evidence",
            "s3://",
            "s3://Evidence",
            "s3://ab",
            "s3://a..b",
            "s3://-ab/x",
            "s3://abc/a//b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_endpoint_follows_the_aws_conventions() {
        let u = read(&[("upload", "s3://b-1/p")], &[]).unwrap().unwrap();
        assert_eq!(u.endpoint.as_str(), "https://s3.us-east-1.amazonaws.com/");
        assert_eq!(u.addressing, Addressing::VirtualHost);
        let env = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:8333"),
            ("AWS_REGION", "eu-west-3"),
        ];
        let u = read(&[("upload", "s3://b-1/p")], &env).unwrap().unwrap();
        assert_eq!(u.endpoint.as_str(), "http://127.0.0.1:8333/");
        assert_eq!(
            (u.region.as_str(), u.addressing),
            ("eu-west-3", Addressing::Path)
        );
        let env = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_S3", "https://s3.example.net"),
        ];
        let u = read(&[("upload", "s3://b-1")], &env).unwrap().unwrap();
        assert_eq!(u.endpoint_from, "AWS_ENDPOINT_URL_S3");
        let own = [
            ("upload", "s3://b-1"),
            ("upload_endpoint", "https://own.example"),
            ("upload_addressing", "virtual"),
        ];
        let u = read(&own, &env).unwrap().unwrap();
        assert_eq!(
            (u.endpoint_from.as_str(), u.addressing),
            ("upload_endpoint", Addressing::VirtualHost)
        );
    }

    #[test]
    fn plain_http_goes_only_to_this_machine_unless_allowed() {
        let far = [
            ("upload", "s3://b-1"),
            ("upload_endpoint", "http://10.0.0.5:8333"),
        ];
        let e = read(&far, &[]).unwrap_err();
        assert!(e.contains("in the clear"), "{e}");
        let allowed = [far[0], far[1], ("upload_allow_http", "true")];
        assert!(read(&allowed, &[]).is_ok());
        for near in [
            "http://localhost:9000",
            "http://127.0.0.2:1",
            "http://[::1]:8333",
        ] {
            assert!(
                read(&[("upload", "s3://b-1"), ("upload_endpoint", near)], &[]).is_ok(),
                "{near}"
            );
        }
        let creds = [
            ("upload", "s3://b-1"),
            ("upload_endpoint", "https://k:s@x.example"),
        ];
        assert!(read(&creds, &[]).unwrap_err().contains("user or password"));
    }

    #[test]
    fn keys_come_in_pairs_and_are_never_shown() {
        let half = [
            ("upload", "s3://b-1"),
            ("upload_access_key_id", "AKIASECRET"),
        ];
        let e = read(&half, &[]).unwrap_err();
        assert!(e.contains("upload_secret_access_key is missing"), "{e}");
        assert!(!e.contains("AKIASECRET"), "{e}");
        let both = [half[0], half[1], ("upload_secret_access_key", "env:S")];
        let u = read(&both, &[]).unwrap().unwrap();
        assert!(matches!(u.keys.unwrap().secret, Secret::Env(_)));
    }
}
