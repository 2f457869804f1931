//! The S3 requests guard makes, signed with SigV4 by rusty-s3 (sans-IO: it builds presigned
//! URLs, guard sends them) and sent with ureq, the HTTP client the alerts already use: put an
//! object, upload one in parts, read, list, delete, and check a bucket. Every request is bounded
//! by the time left before the upload's deadline; TLS is verified against Mozilla's roots and
//! the system's; no redirect is followed (it would take the request elsewhere). An error names
//! what the server said (its S3 code and message), never the signed URL (it carries the
//! credential's id and a signature).

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::io::Read;
use std::time::{Duration, Instant};

/// How long a signed request stays valid: enough for a slow part, short enough that one seen
/// in a log is worth little.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// The most of a server's answer guard reads (an error, a listing page, a manifest).
const MAX_BODY: u64 = 8 << 20;

/// What went wrong with one request.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The server answered with an error status: its S3 code (NoSuchBucket, AccessDenied,
    /// SignatureDoesNotMatch ...) and message when it sent them.
    #[error("{what}: the server answered {status}{}", code_text(.code, .message))]
    Status {
        what: String,
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// No answer: refused, reset, timed out, TLS failed.
    #[error("{what}: {why}")]
    Transport { what: String, why: String },
    /// The time for the upload ran out before this request.
    #[error("{what}: the upload's time (--upload-timeout) ran out")]
    OutOfTime { what: String },
    /// An answer guard could not read.
    #[error("{what}: {why}")]
    Answer { what: String, why: String },
}

fn code_text(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(" {c}: {m}"),
        (Some(c), None) => format!(" {c}"),
        _ => String::new(),
    }
}

impl S3Error {
    /// Whether trying again later may work (the server down or slow, a 5xx, a throttle), as
    /// opposed to a setting to fix (credentials, the bucket's name).
    pub fn transient(&self) -> bool {
        match self {
            S3Error::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            S3Error::Transport { .. } | S3Error::OutOfTime { .. } => true,
            S3Error::Answer { .. } => false,
        }
    }
}

/// One bucket on one service, with the credentials to sign for it and a deadline.
pub struct Client {
    bucket: Bucket,
    creds: Option<Credentials>,
    agent: ureq::Agent,
    deadline: Instant,
}

impl Client {
    pub fn new(
        u: &crate::config::upload::Upload,
        creds: Option<Credentials>,
        deadline: Instant,
    ) -> Result<Client, String> {
        let style = match u.addressing {
            crate::config::upload::Addressing::Path => UrlStyle::Path,
            crate::config::upload::Addressing::VirtualHost => UrlStyle::VirtualHost,
        };
        let bucket = Bucket::new(
            u.endpoint.clone(),
            style,
            u.target.bucket.clone(),
            u.region.clone(),
        )
        .map_err(|e| format!("{} ({}): {e}", u.endpoint, u.endpoint_from))?;
        let agent = ureq::AgentBuilder::new()
            .tls_config(crate::alert::http::tls_config())
            .redirects(0)
            .timeout_connect(Duration::from_secs(10))
            .user_agent(concat!("guard/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            bucket,
            creds,
            agent,
            deadline,
        })
    }

    /// Whether requests are signed (there are credentials).
    pub fn signs(&self) -> bool {
        self.creds.is_some()
    }

    /// The object's plain URL (what an alert names; opening it needs credentials).
    pub fn object_url(&self, key: &str) -> String {
        self.bucket
            .object_url(key)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| key.to_string())
    }

    /// A link that opens the object without credentials for `valid`.
    pub fn presigned_get(&self, key: &str, valid: Duration) -> String {
        self.bucket
            .get_object(self.creds.as_ref(), key)
            .sign(valid)
            .to_string()
    }

    /// Whether waiting `wait` still leaves time for a request (a second at least).
    pub fn has_time_for(&self, wait: Duration) -> bool {
        Instant::now() + wait + Duration::from_secs(1) < self.deadline
    }

    /// The request's bound: what is left before the deadline.
    fn left(&self, what: &str) -> Result<Duration, S3Error> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(50) {
            return Err(S3Error::OutOfTime { what: what.into() });
        }
        Ok(left)
    }

    fn send(
        &self,
        what: &str,
        method: &str,
        url: url::Url,
        body: Option<&[u8]>,
    ) -> Result<ureq::Response, S3Error> {
        self.send_with(what, method, url, &[], body)
    }

    fn send_with(
        &self,
        what: &str,
        method: &str,
        url: url::Url,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<ureq::Response, S3Error> {
        let left = self.left(what)?;
        let mut req = self.agent.request_url(method, &url).timeout(left);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let r = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        match r {
            Ok(resp) if (300..400).contains(&resp.status()) => Err(S3Error::Status {
                what: what.into(),
                status: resp.status(),
                code: Some("Redirect".into()),
                message: Some(format!(
                    "the service points elsewhere ({}): check the endpoint, the region and the \
                     addressing",
                    resp.header("location").unwrap_or("no location")
                )),
            }),
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => {
                let text = read_limited(resp.into_reader(), 64 << 10).unwrap_or_default();
                Err(S3Error::Status {
                    what: what.into(),
                    status,
                    code: xml_field(&text, "Code"),
                    message: xml_field(&text, "Message"),
                })
            }
            // The request's bound was what was left of the upload's: say so.
            Err(ureq::Error::Transport(_)) if Instant::now() >= self.deadline => {
                Err(S3Error::OutOfTime { what: what.into() })
            }
            Err(ureq::Error::Transport(t)) => Err(S3Error::Transport {
                what: what.into(),
                // ureq's text carries the URL, which carries the signature: only the kind and
                // the underlying message.
                why: transport_text(&t),
            }),
        }
    }

    /// PUT one object whole.
    pub fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), S3Error> {
        let mut action = self.bucket.put_object(self.creds.as_ref(), key);
        action
            .headers_mut()
            .insert("content-type", content_type.to_string());
        let url = action.sign(SIGNED_FOR);
        let what = format!("PUT {key}");
        self.send_with(
            &what,
            "PUT",
            url,
            &[("content-type", content_type)],
            Some(body),
        )
        .map(|_| ())
    }

    /// Start a multipart upload; its id.
    pub fn create_multipart(&self, key: &str) -> Result<String, S3Error> {
        let what = format!("starting the multipart upload of {key}");
        let url = self
            .bucket
            .create_multipart_upload(self.creds.as_ref(), key)
            .sign(SIGNED_FOR);
        let resp = self.send(&what, "POST", url, Some(b""))?;
        let text = read_limited(resp.into_reader(), MAX_BODY).map_err(|e| S3Error::Answer {
            what: what.clone(),
            why: e.to_string(),
        })?;
        rusty_s3::actions::CreateMultipartUpload::parse_response(&text)
            .map(|r| r.upload_id().to_string())
            .map_err(|e| S3Error::Answer {
                what,
                why: format!("the answer is not an upload id: {e}"),
            })
    }

    /// Upload part `n` (from 1); its ETag.
    pub fn upload_part(&self, key: &str, id: &str, n: u16, body: &[u8]) -> Result<String, S3Error> {
        let what = format!("part {n} of {key}");
        let url = self
            .bucket
            .upload_part(self.creds.as_ref(), key, n, id)
            .sign(SIGNED_FOR);
        let resp = self.send(&what, "PUT", url, Some(body))?;
        resp.header("etag")
            .map(str::to_string)
            .ok_or(S3Error::Answer {
                what,
                why: "the answer has no ETag".into(),
            })
    }

    /// Finish a multipart upload from its parts' ETags, in order.
    pub fn complete_multipart(&self, key: &str, id: &str, etags: &[String]) -> Result<(), S3Error> {
        let what = format!("completing the multipart upload of {key}");
        let action = self.bucket.complete_multipart_upload(
            self.creds.as_ref(),
            key,
            id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        let resp = self.send(&what, "POST", url, Some(body.as_bytes()))?;
        // S3 may answer 200 with an error in the body when the completion failed late.
        let text = read_limited(resp.into_reader(), MAX_BODY).unwrap_or_default();
        if text.contains("<Error>") {
            return Err(S3Error::Status {
                what,
                status: 200,
                code: xml_field(&text, "Code"),
                message: xml_field(&text, "Message"),
            });
        }
        Ok(())
    }

    /// Abandon a multipart upload (its parts are freed); best effort, a short bound of its own
    /// so that an upload that ran out of time still cleans up.
    pub fn abort_multipart(&self, key: &str, id: &str) {
        let url = self
            .bucket
            .abort_multipart_upload(self.creds.as_ref(), key, id)
            .sign(SIGNED_FOR);
        let _ = self
            .agent
            .request_url("DELETE", &url)
            .timeout(Duration::from_secs(5))
            .call();
    }

    /// GET an object: a reader of its body.
    pub fn get(&self, key: &str) -> Result<Box<dyn Read + Send + Sync + 'static>, S3Error> {
        let what = format!("GET {key}");
        let url = self
            .bucket
            .get_object(self.creds.as_ref(), key)
            .sign(SIGNED_FOR);
        Ok(self.send(&what, "GET", url, None)?.into_reader())
    }

    /// DELETE an object.
    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        let what = format!("DELETE {key}");
        let url = self
            .bucket
            .delete_object(self.creds.as_ref(), key)
            .sign(SIGNED_FOR);
        self.send(&what, "DELETE", url, None).map(|_| ())
    }

    /// Every key under `prefix`, with its size and time (one page of up to 1000 after another).
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let what = format!("listing {prefix}");
            let mut action = self.bucket.list_objects_v2(self.creds.as_ref());
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGNED_FOR);
            let resp = self.send(&what, "GET", url, None)?;
            let text = read_limited(resp.into_reader(), MAX_BODY).map_err(|e| S3Error::Answer {
                what: what.clone(),
                why: e.to_string(),
            })?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| {
                S3Error::Answer {
                    what: what.clone(),
                    why: format!("the listing is not S3's: {e}"),
                }
            })?;
            out.extend(page.contents.into_iter().map(|c| Listed {
                key: c.key,
                size: c.size,
                modified: c.last_modified,
            }));
            match page.next_continuation_token {
                Some(t) if out.len() < 1_000_000 => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Whether the bucket is there and these credentials may use it. A HEAD has no body: its
    /// status is named (404 NoSuchBucket, 403 refused).
    pub fn head_bucket(&self) -> Result<(), S3Error> {
        let what = format!("the bucket {}", self.bucket.name());
        let url = self
            .bucket
            .head_bucket(self.creds.as_ref())
            .sign(SIGNED_FOR);
        match self.send(&what, "HEAD", url, None) {
            Ok(_) => Ok(()),
            Err(S3Error::Status {
                what,
                status,
                code: None,
                message,
            }) => Err(S3Error::Status {
                what,
                status,
                code: match status {
                    404 => Some("NoSuchBucket".into()),
                    403 => Some(
                        "AccessDenied (the credentials were refused, or may not use this bucket)"
                            .into(),
                    ),
                    _ => None,
                },
                message,
            }),
            Err(e) => Err(e),
        }
    }
}

/// One object of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: String,
}

/// At most `max` bytes of `r` as text.
pub fn read_limited(r: impl Read, max: u64) -> std::io::Result<String> {
    let mut buf = Vec::new();
    r.take(max).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The text of `<NAME>…</NAME>` in an S3 error document, escaped and at most 300 characters.
fn xml_field(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&close)?;
    let v: String = text[start..start + len].chars().take(300).collect();
    Some(crate::format::escape_controls(&v, false).into_owned())
}

/// A transport error without the request's URL (it carries the signature): its kind, its
/// message and the error beneath (`timed out`, `Connection refused`).
fn transport_text(t: &ureq::Transport) -> String {
    let mut out = t.kind().to_string();
    if let Some(m) = t.message() {
        out.push_str(": ");
        out.push_str(m);
    }
    if let Some(src) = std::error::Error::source(t) {
        out.push_str(": ");
        out.push_str(&src.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_error_document_gives_its_code_and_message() {
        let doc = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The \
                   specified bucket does not exist</Message></Error>";
        assert_eq!(xml_field(doc, "Code").as_deref(), Some("NoSuchBucket"));
        let e = S3Error::Status {
            what: "PUT a".into(),
            status: 404,
            code: xml_field(doc, "Code"),
            message: xml_field(doc, "Message"),
        };
        assert_eq!(
            e.to_string(),
            "PUT a: the server answered 404 NoSuchBucket: The specified bucket does not exist"
        );
        assert!(!e.transient());
        let busy = S3Error::Status {
            what: "PUT a".into(),
            status: 503,
            code: None,
            message: None,
        };
        assert!(busy.transient());
    }
}
