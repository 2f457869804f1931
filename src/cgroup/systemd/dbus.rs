//! The one D-Bus exchange guard has with systemd: a method call on the manager's private socket
//! (peer to peer, no bus daemon), SASL EXTERNAL authentication, and its reply, with signals the
//! manager sends every private connection meanwhile skipped. Only what that needs of the wire
//! format (D-Bus specification, "Message Protocol"): little-endian messages out, either order
//! in; strings, object paths, signatures, booleans, u32, arrays, structs and variants.
//!
//! Not zbus: its 5.x reader panics on the first signal systemd sends a private connection (the
//! sender there is `org.freedesktop.systemd1`, which zbus insists be a unique name), and the
//! private socket is the path that works without a bus daemon — what systemctl itself uses as
//! root. Every read and write is bounded by the caller's deadline (socket timeouts).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Messages larger than this are refused (systemd's replies and signals are a few hundred bytes).
const MAX_MESSAGE: usize = 1 << 20;

/// A value in a method call's arguments.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Str(&'a str),
    Bool(bool),
    U32s(&'a [u32]),
    /// `a(sv)`: properties.
    Props(&'a [(&'a str, Arg<'a>)]),
    /// `a(sa(sv))` with no elements (StartTransientUnit's auxiliary units).
    NoAux,
}

impl Arg<'_> {
    fn signature(&self) -> &'static str {
        match self {
            Arg::Str(_) => "s",
            Arg::Bool(_) => "b",
            Arg::U32s(_) => "au",
            Arg::Props(_) => "a(sv)",
            Arg::NoAux => "a(sa(sv))",
        }
    }
}

/// What went wrong talking to the manager.
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer in time")]
    Timeout,
    #[error("authentication refused: {0}")]
    Auth(String),
    #[error("malformed message from the manager: {0}")]
    Malformed(&'static str),
    /// The manager answered with an error.
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
}

/// A D-Bus message being built (little-endian).
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, align: usize) {
        while self.buf.len() % align != 0 {
            self.buf.push(0);
        }
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    fn sig(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// An array whose elements align to `align`; `f` writes them.
    fn array(&mut self, align: usize, f: impl FnOnce(&mut Writer)) {
        self.u32(0);
        let at = self.buf.len() - 4;
        self.pad(align);
        let start = self.buf.len();
        f(self);
        let len = (self.buf.len() - start) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    fn arg(&mut self, a: &Arg) {
        match a {
            Arg::Str(s) => self.str(s),
            Arg::Bool(b) => self.u32(u32::from(*b)),
            Arg::U32s(v) => self.array(4, |w| v.iter().for_each(|x| w.u32(*x))),
            Arg::Props(props) => self.array(8, |w| {
                for (name, value) in props.iter() {
                    w.pad(8);
                    w.str(name);
                    w.sig(value.signature());
                    w.arg(value);
                }
            }),
            Arg::NoAux => self.array(8, |_| {}),
        }
    }
}

/// A method call: the bytes to send (serial 1).
pub fn method_call(path: &str, interface: &str, member: &str, args: &[Arg]) -> Vec<u8> {
    let mut body = Writer::default();
    for a in args {
        body.arg(a);
    }
    let signature: String = args.iter().map(Arg::signature).collect();
    let mut m = Writer::default();
    m.buf.extend_from_slice(&[b'l', 1, 0, 1]);
    m.u32(body.buf.len() as u32);
    m.u32(1);
    m.array(8, |w| {
        for (code, sig, value) in [(1u8, "o", path), (2, "s", interface), (3, "s", member)] {
            w.pad(8);
            w.buf.push(code);
            w.sig(sig);
            w.str(value);
        }
        if !signature.is_empty() {
            w.pad(8);
            w.buf.push(8);
            w.sig("g");
            w.sig(&signature);
        }
    });
    m.pad(8);
    m.buf.extend_from_slice(&body.buf);
    m.buf
}

/// A received message, parsed as far as guard needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// 2: method return, 3: error, 4: signal.
    pub kind: u8,
    pub reply_serial: Option<u32>,
    pub error_name: Option<String>,
    pub signature: String,
    big_endian: bool,
    pub body: Vec<u8>,
}

/// Reads D-Bus values from a message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big: bool,
}

impl Reader<'_> {
    fn align(&mut self, a: usize) -> Result<(), DbusError> {
        self.pos = self.pos.next_multiple_of(a);
        if self.pos > self.buf.len() {
            return Err(DbusError::Malformed("truncated"));
        }
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<&[u8], DbusError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or(DbusError::Malformed("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DbusError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DbusError> {
        self.align(4)?;
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| DbusError::Malformed("u32"))?;
        Ok(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn text(&mut self, len: usize) -> Result<String, DbusError> {
        let s = String::from_utf8_lossy(self.take(len)?).into_owned();
        self.take(1)?; // the terminating NUL
        Ok(s)
    }
    fn str(&mut self) -> Result<String, DbusError> {
        let n = self.u32()? as usize;
        self.text(n)
    }
    fn sig(&mut self) -> Result<String, DbusError> {
        let n = self.u8()? as usize;
        self.text(n)
    }
    /// A variant holding a basic type (what header fields and `Version` hold).
    fn variant(&mut self) -> Result<Value, DbusError> {
        match self.sig()?.as_str() {
            "s" | "o" => Ok(Value::Text(self.str()?)),
            "g" => Ok(Value::Text(self.sig()?)),
            "u" => Ok(Value::U32(self.u32()?)),
            _ => Err(DbusError::Malformed("a variant of an unexpected type")),
        }
    }
}

enum Value {
    Text(String),
    U32(u32),
}

/// Parse one whole message (as [`read_message`] returns it).
pub fn parse(msg: &[u8]) -> Result<Reply, DbusError> {
    let big = match msg.first() {
        Some(b'l') => false,
        Some(b'B') => true,
        _ => return Err(DbusError::Malformed("unknown byte order")),
    };
    let mut r = Reader {
        buf: msg,
        pos: 1,
        big,
    };
    let kind = r.u8()?;
    r.pos = 4;
    let body_len = r.u32()? as usize;
    r.u32()?; // serial
    let fields_len = r.u32()? as usize;
    let fields_end = 16usize.saturating_add(fields_len);
    let mut reply = Reply {
        kind,
        big_endian: big,
        ..Reply::default()
    };
    while r.pos < fields_end {
        r.align(8)?;
        let code = r.u8()?;
        let value = r.variant()?;
        match (code, value) {
            (4, Value::Text(s)) => reply.error_name = Some(s),
            (5, Value::U32(v)) => reply.reply_serial = Some(v),
            (8, Value::Text(s)) => reply.signature = s,
            _ => {}
        }
    }
    r.pos = fields_end;
    r.align(8)?;
    reply.body = r.take(body_len)?.to_vec();
    Ok(reply)
}

impl Reply {
    /// The body's first string (an error's message), if its signature starts with one.
    pub fn first_string(&self) -> Option<String> {
        self.signature.starts_with('s').then_some(())?;
        let mut r = Reader {
            buf: &self.body,
            pos: 0,
            big: self.big_endian,
        };
        r.str().ok()
    }

    /// The body's variant string (`Properties.Get` of a string property).
    pub fn variant_string(&self) -> Option<String> {
        (self.signature == "v").then_some(())?;
        let mut r = Reader {
            buf: &self.body,
            pos: 0,
            big: self.big_endian,
        };
        match r.variant().ok()? {
            Value::Text(s) => Some(s),
            Value::U32(v) => Some(v.to_string()),
        }
    }
}

/// A connection to a manager's private socket, authenticated, every operation bounded.
pub struct Conn {
    stream: UnixStream,
    deadline: Instant,
}

impl Conn {
    /// Connect to `socket` and authenticate as this process's uid (SASL EXTERNAL).
    pub fn open(socket: &Path, deadline: Instant) -> Result<Conn, DbusError> {
        let stream = UnixStream::connect(socket)?;
        let mut c = Conn { stream, deadline };
        let uid = nix::unistd::geteuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        c.write(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let line = c.line()?;
        if !line.starts_with("OK ") {
            return Err(DbusError::Auth(line));
        }
        c.write(b"BEGIN\r\n")?;
        Ok(c)
    }

    fn arm(&self) -> Result<(), DbusError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DbusError::Timeout);
        }
        let left = left.max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(left))?;
        self.stream.set_write_timeout(Some(left))?;
        Ok(())
    }

    fn write(&mut self, b: &[u8]) -> Result<(), DbusError> {
        self.arm()?;
        self.stream.write_all(b).map_err(timeout)
    }

    fn read_exact(&mut self, b: &mut [u8]) -> Result<(), DbusError> {
        self.arm()?;
        self.stream.read_exact(b).map_err(timeout)
    }

    /// One line of the authentication exchange (at most 512 bytes).
    fn line(&mut self) -> Result<String, DbusError> {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            if line.len() > 512 {
                return Err(DbusError::Auth("an overlong line".into()));
            }
            let mut b = [0u8; 1];
            self.read_exact(&mut b)?;
            line.push(b[0]);
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }

    /// One whole message.
    fn read_message(&mut self) -> Result<Vec<u8>, DbusError> {
        let mut fixed = [0u8; 16];
        self.read_exact(&mut fixed)?;
        let num = |i: usize| {
            let b: [u8; 4] = [fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]];
            if fixed[0] == b'B' {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let body = num(4) as usize;
        let fields = (num(12) as usize).next_multiple_of(8);
        let total = 16usize.saturating_add(fields).saturating_add(body);
        if total > MAX_MESSAGE {
            return Err(DbusError::Malformed("an oversized message"));
        }
        let mut msg = vec![0u8; total];
        msg[..16].copy_from_slice(&fixed);
        self.read_exact(&mut msg[16..])?;
        Ok(msg)
    }

    /// Send `call` (serial 1) and return its reply, skipping the signals in between. An error
    /// reply is [`DbusError::Remote`].
    pub fn call(&mut self, call: &[u8]) -> Result<Reply, DbusError> {
        self.write(call)?;
        loop {
            let reply = parse(&self.read_message()?)?;
            if reply.reply_serial != Some(1) {
                continue; // a signal (JobNew, UnitNew, …) sent to every private connection
            }
            if reply.kind == 3 {
                return Err(DbusError::Remote {
                    name: reply.error_name.clone().unwrap_or_default(),
                    message: reply.first_string().unwrap_or_default(),
                });
            }
            return Ok(reply);
        }
    }
}

fn timeout(e: std::io::Error) -> DbusError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => DbusError::Timeout,
        _ => DbusError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_call_is_laid_out_as_the_specification_says() {
        let m = method_call("/o", "i.f", "M", &[Arg::Str("ab"), Arg::Bool(true)]);
        assert_eq!(&m[..4], &[b'l', 1, 0, 1]);
        // body: "ab" (4 + 2 + 1, padded to 8) then a boolean
        assert_eq!(u32::from_le_bytes(m[4..8].try_into().unwrap()), 12);
        assert_eq!(u32::from_le_bytes(m[8..12].try_into().unwrap()), 1);
        let body = &m[m.len() - 12..];
        assert_eq!(body, &[2, 0, 0, 0, b'a', b'b', 0, 0, 1, 0, 0, 0]);
        // Our own parser reads the header back (its signature field).
        let r = parse(&m).unwrap();
        assert_eq!(r.kind, 1);
        assert_eq!(r.signature, "sb");
        assert_eq!(r.first_string().as_deref(), Some("ab"));
    }

    #[test]
    fn properties_are_structs_of_name_and_variant() {
        let props = [("PIDs", Arg::U32s(&[7])), ("Delegate", Arg::Bool(true))];
        let mut w = Writer::default();
        w.arg(&Arg::Props(&props));
        let b = &w.buf;
        // array length, then (pad to 8) "PIDs", sig "au", au of one u32, (pad) "Delegate", "b", true
        let len = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, b.len() - 8);
        assert_eq!(&b[8..17], b"\x04\0\0\0PIDs\0");
        assert_eq!(&b[17..21], b"\x02au\0");
        assert_eq!(&b[24..32], &[4, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(&b[32..45], b"\x08\0\0\0Delegate\0");
        assert_eq!(&b[45..48], b"\x01b\0");
        assert_eq!(&b[48..52], &[1, 0, 0, 0]);
    }

    #[test]
    fn an_error_reply_names_the_error_and_its_message() {
        // A hand-built error reply as systemd sends one: ERROR_NAME, REPLY_SERIAL, SIGNATURE.
        let mut w = Writer::default();
        w.buf.extend_from_slice(&[b'l', 3, 1, 1]);
        let mut body = Writer::default();
        body.str("Unit x.scope already exists.");
        w.u32(body.buf.len() as u32);
        w.u32(9);
        w.array(8, |w| {
            w.pad(8);
            w.buf.push(4);
            w.sig("s");
            w.str("org.freedesktop.systemd1.UnitExists");
            w.pad(8);
            w.buf.push(5);
            w.sig("u");
            w.u32(1);
            w.pad(8);
            w.buf.push(8);
            w.sig("g");
            w.sig("s");
        });
        w.pad(8);
        w.buf.extend_from_slice(&body.buf);
        let r = parse(&w.buf).unwrap();
        assert_eq!(r.kind, 3);
        assert_eq!(r.reply_serial, Some(1));
        assert_eq!(
            r.error_name.as_deref(),
            Some("org.freedesktop.systemd1.UnitExists")
        );
        assert_eq!(
            r.first_string().as_deref(),
            Some("Unit x.scope already exists.")
        );
    }

    #[test]
    fn truncated_or_foreign_messages_are_errors_not_panics() {
        let m = method_call("/o", "i.f", "M", &[Arg::Str("ab")]);
        for n in 0..m.len() {
            let _ = parse(&m[..n]);
        }
        assert!(parse(b"Xjunk").is_err());
        let mut huge = m.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&huge).is_err());
    }

    #[test]
    fn a_server_that_never_answers_costs_the_deadline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let start = Instant::now();
        let r = Conn::open(&path, Instant::now() + Duration::from_millis(300));
        assert!(matches!(r, Err(DbusError::Timeout)), "{:?}", r.err());
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(t.join());
    }
}
