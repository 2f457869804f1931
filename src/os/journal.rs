//! The machine's own logs: the systemd journal through its native protocol (one datagram of
//! `KEY=VALUE` fields to /run/systemd/journal/socket, or a sealed memfd passed over it when the
//! entry is too large for a datagram — the documented protocol, no libsystemd) and syslog through
//! /dev/log (RFC 3164). Both say so when nothing listens, instead of dropping the line as
//! syslog(3) does. guard's own lines ([`crate::logger`]) and the `log:journal` and `log:syslog`
//! alert sinks use them.

use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Where journald listens for native entries.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// Where syslog daemons (and journald) listen.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// Why an entry did not reach its log.
#[derive(Debug, thiserror::Error)]
pub enum LocalLogError {
    #[error("nothing listens at {0} (is the journal / a syslog daemon running?)")]
    NoListener(String),
    #[error("cannot send to {path}: {source}")]
    Send {
        path: String,
        source: std::io::Error,
    },
}

/// One journal entry's fields, serialized in the native protocol: `KEY=VALUE\n`, or for a value
/// holding a newline `KEY\n`, its length as 64-bit little-endian, the value, `\n`.
pub fn journal_entry(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(k.as_bytes());
        if v.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// Read a native-protocol entry back into its fields, as journald does (the tests read what
/// guard sent with it). A truncated entry yields the fields before the cut.
pub fn parse_journal_entry(mut b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(nl) = b.iter().position(|&c| c == b'\n') {
        let line = &b[..nl];
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            out.push((text(&line[..eq]), text(&line[eq + 1..])));
            b = &b[nl + 1..];
            continue;
        }
        let Some(len) = b
            .get(nl + 1..nl + 9)
            .and_then(|l| l.try_into().ok())
            .map(|l| u64::from_le_bytes(l) as usize)
        else {
            break;
        };
        let Some(value) = b.get(nl + 9..nl + 9 + len) else {
            break;
        };
        out.push((text(line), text(value)));
        b = b.get(nl + 10 + len..).unwrap_or_default();
    }
    out
}

/// Send `fields` as one journal entry to the socket at `path`.
pub fn send_journal(path: &Path, fields: &[(&str, &str)]) -> Result<(), LocalLogError> {
    let entry = journal_entry(fields);
    let sock = unbound()?;
    match sock.send_to(&entry, path) {
        Ok(_) => Ok(()),
        // Too large for one datagram: the entry goes in a sealed memfd, passed as the message.
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => send_memfd(&sock, path, &entry),
        Err(e) => Err(classify(path, e)),
    }
}

fn send_memfd(sock: &UnixDatagram, path: &Path, entry: &[u8]) -> Result<(), LocalLogError> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
    use std::io::Write;
    let err = |source: std::io::Error| LocalLogError::Send {
        path: path.display().to_string(),
        source,
    };
    let fd = memfd_create(
        "guard-journal",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| err(e.into()))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(entry).map_err(err)?;
    // journald accepts only a sealed memfd (nobody can change it under its feet).
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl(F_ADD_SEALS) on a memfd we own.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    let addr = UnixAddr::new(path).map_err(|e| err(e.into()))?;
    let fds = [f.as_raw_fd()];
    let empty: [IoSlice; 0] = [];
    sendmsg(
        sock.as_raw_fd(),
        &empty,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        Some(&addr),
    )
    .map(|_| ())
    .map_err(|e| classify(path, e.into()))
}

/// Send one RFC 3164 line `<PRI>guard[PID]: MESSAGE` to the syslog socket at `path`.
pub fn send_syslog(path: &Path, priority: u8, message: &str) -> Result<(), LocalLogError> {
    // facility user (1) * 8 + severity.
    let line = format!("<{}>guard[{}]: {message}", 8 + priority, std::process::id());
    unbound()?
        .send_to(line.as_bytes(), path)
        .map(|_| ())
        .map_err(|e| classify(path, e))
}

fn unbound() -> Result<UnixDatagram, LocalLogError> {
    UnixDatagram::unbound().map_err(|source| LocalLogError::Send {
        path: "a datagram socket".into(),
        source,
    })
}

/// No socket there, or no one reading it, is "nothing listens"; the rest is as it came.
fn classify(path: &Path, e: std::io::Error) -> LocalLogError {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTSOCK) => {
            LocalLogError::NoListener(path.display().to_string())
        }
        _ => LocalLogError::Send {
            path: path.display().to_string(),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_multiline_values() {
        let fields = [
            ("MESSAGE", "two\nlines"),
            ("GUARD_EVENT", "memory-limit"),
            ("E", ""),
        ];
        let back = parse_journal_entry(&journal_entry(&fields));
        let want: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(back, want);
    }

    #[test]
    fn entries_reach_a_listening_socket_and_a_missing_one_is_said() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("socket");
        let listener = UnixDatagram::bind(&path).unwrap();
        send_journal(&path, &[("MESSAGE", "hi"), ("PRIORITY", "2")]).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(
            parse_journal_entry(&buf[..n])[0],
            ("MESSAGE".into(), "hi".into())
        );
        send_syslog(&path, 2, "guard: event=memory-limit").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(line.starts_with("<10>guard["), "{line}");
        assert!(line.ends_with("]: guard: event=memory-limit"), "{line}");
        drop(listener);
        let gone = send_journal(&path, &[("MESSAGE", "hi")]).unwrap_err();
        assert!(matches!(gone, LocalLogError::NoListener(_)), "{gone}");
        let missing = send_syslog(&d.path().join("nope"), 2, "x").unwrap_err();
        assert!(matches!(missing, LocalLogError::NoListener(_)), "{missing}");
    }

    #[test]
    fn an_entry_too_large_for_a_datagram_goes_in_a_sealed_memfd() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("socket");
        let listener = UnixDatagram::bind(&path).unwrap();
        let big = "x".repeat(1 << 20);
        send_journal(&path, &[("MESSAGE", &big)]).unwrap();
        // The message is empty, and carries the memfd.
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov_buf = [0u8; 16];
        let mut iov = [std::io::IoSliceMut::new(&mut iov_buf)];
        let msg = recvmsg::<()>(
            listener.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .unwrap();
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("a passed descriptor");
        // SAFETY: the descriptor was just received and is owned by nobody else.
        let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let mut data = Vec::new();
        std::io::Seek::rewind(&mut f).unwrap();
        std::io::Read::read_to_end(&mut f, &mut data).unwrap();
        assert_eq!(parse_journal_entry(&data)[0].1.len(), 1 << 20);
    }
}
