//! A bundle as one archive object, made as it is sent: the bundle's files in a tar stream
//! (symlinks stored as links, never followed), compressed with zstd, cut into parts that go up
//! one after another. guard holds one part at a time — a 1 GiB core costs it a part's buffer
//! and zstd's window, not the core — and hashes (sha256) what it sends, for the manifest beside
//! the archive. A bundle smaller than a part goes up as one PUT.

use super::s3::{Client, S3Error};
use sha2::{Digest, Sha256};
use std::io::{self, Write};
use std::path::Path;

/// The size of each part but the last (S3's smallest is 5 MiB; 10,000 parts at most: archives
/// up to 60 GiB).
pub const PART: usize = 6 << 20;
/// zstd's level: fast (a core compresses at hundreds of MB/s), and a bundle's JSON and text
/// shrink tenfold.
const LEVEL: i32 = 3;

/// What was sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub bytes: u64,
    pub sha256: String,
    pub parts: u16,
}

/// The bytes of the archive, as they come out of the compressor: a part at a time to `key`.
struct Parts<'a> {
    client: &'a Client,
    key: &'a str,
    buf: Vec<u8>,
    upload: Option<String>,
    etags: Vec<String>,
    hash: Sha256,
    bytes: u64,
    /// The first request that failed: the writer then fails every write, so the tar and zstd
    /// streams stop at once.
    failed: Option<S3Error>,
}

impl Parts<'_> {
    fn flush_part(&mut self) -> Result<(), S3Error> {
        let id = match &self.upload {
            Some(id) => id.clone(),
            None => {
                let id = self.client.create_multipart(self.key)?;
                self.upload = Some(id.clone());
                id
            }
        };
        let n = u16::try_from(self.etags.len() + 1).map_err(|_| S3Error::Answer {
            what: self.key.to_string(),
            why: "the archive needs more than 10,000 parts".into(),
        })?;
        let etag = self.client.upload_part(self.key, &id, n, &self.buf)?;
        self.etags.push(etag);
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<Sent, S3Error> {
        if let Some(e) = self.failed.take() {
            self.abort();
            return Err(e);
        }
        let r = match self.upload.clone() {
            None => self.client.put(self.key, &self.buf, "application/zstd"),
            Some(id) => self
                .flush_part()
                .and_then(|()| self.client.complete_multipart(self.key, &id, &self.etags)),
        };
        if let Err(e) = r {
            self.abort();
            return Err(e);
        }
        Ok(Sent {
            bytes: self.bytes,
            sha256: hex(&self.hash.finalize()),
            parts: u16::try_from(self.etags.len().max(1)).unwrap_or(u16::MAX),
        })
    }

    fn abort(&self) {
        if let Some(id) = &self.upload {
            self.client.abort_multipart(self.key, id);
        }
    }
}

impl Write for Parts<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other("the upload failed"));
        }
        let n = data.len().min(PART - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.hash.update(&data[..n]);
        self.bytes += n as u64;
        if self.buf.len() == PART {
            if let Err(e) = self.flush_part() {
                self.failed = Some(e);
                return Err(io::Error::other("the upload failed"));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Send the bundle at `dir` as `key`, its entries named `NAME/...` (the bundle's directory
/// name): what `tar --zstd -xf` of the object gives back.
pub fn send(client: &Client, key: &str, dir: &Path, name: &str) -> Result<Sent, SendError> {
    let parts = Parts {
        client,
        key,
        buf: Vec::with_capacity(PART),
        upload: None,
        etags: Vec::new(),
        hash: Sha256::new(),
        bytes: 0,
        failed: None,
    };
    let mut parts = parts;
    let result = write_archive(&mut parts, dir, name);
    if let Err(e) = result {
        parts.abort();
        // A write refused because a request failed: that request's error says why.
        return Err(match parts.failed.take() {
            Some(s3) => SendError::S3(s3),
            None => SendError::Read(e),
        });
    }
    parts.finish().map_err(SendError::S3)
}

/// The tar stream of `dir`, compressed, into `sink`.
fn write_archive(sink: &mut Parts<'_>, dir: &Path, name: &str) -> io::Result<()> {
    let enc = zstd::stream::Encoder::new(sink, LEVEL)?;
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    append(&mut tar, dir, Path::new(name))?;
    tar.into_inner()?.finish()?;
    Ok(())
}

/// The bundle's entries, sorted, except guard's own upload record (`upload.json`: it changes
/// once the archive is up, and says nothing about the job).
fn append<W: Write>(tar: &mut tar::Builder<W>, dir: &Path, name: &Path) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    tar.append_dir(name, dir)?;
    for e in entries {
        let fname = e.file_name();
        if name.parent() == Some(Path::new("")) && fname == super::RECORD {
            continue;
        }
        let path = e.path();
        let inside = name.join(&fname);
        let ft = e.file_type()?;
        if ft.is_dir() {
            append(tar, &path, &inside)?;
        } else if ft.is_file() || ft.is_symlink() {
            tar.append_path_with_name(&path, &inside)?;
        }
    }
    Ok(())
}

/// Why an archive did not go up.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    S3(S3Error),
    #[error("reading the bundle: {0}")]
    Read(io::Error),
}

impl SendError {
    pub fn transient(&self) -> bool {
        match self {
            SendError::S3(e) => e.transient(),
            SendError::Read(_) => false,
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
