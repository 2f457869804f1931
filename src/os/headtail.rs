//! A byte stream kept as its first and its last bytes, with a count of what was dropped between
//! them: how guard holds output it does not control (a job's under `--quiet`, a helper's) in a
//! bounded amount of its own memory, whatever the writer sends.

use std::collections::VecDeque;
use std::io::{self, Write};

#[derive(Debug)]
pub struct HeadTail {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_max: usize,
    tail_max: usize,
    dropped: u64,
}

impl HeadTail {
    /// Keep at most `head_max` first and `tail_max` last bytes.
    pub fn new(head_max: usize, tail_max: usize) -> HeadTail {
        HeadTail {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_max,
            tail_max,
            dropped: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        let take = self
            .head_max
            .saturating_sub(self.head.len())
            .min(data.len());
        self.head.extend_from_slice(&data[..take]);
        let rest = &data[take..];
        if rest.is_empty() {
            return;
        }
        self.tail.extend(rest);
        let excess = self.tail.len().saturating_sub(self.tail_max);
        self.tail.drain(..excess);
        self.dropped += excess as u64;
    }

    /// Bytes not kept.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Write the head, `note` (on a line of its own) where bytes were dropped, then the tail.
    pub fn write_to(&self, to: &mut dyn Write, note: Option<&str>) -> io::Result<()> {
        to.write_all(&self.head)?;
        if let (Some(n), true) = (note, self.dropped > 0) {
            if !self.head.is_empty() && !self.head.ends_with(b"\n") {
                to.write_all(b"\n")?;
            }
            to.write_all(n.as_bytes())?;
        }
        let (a, b) = self.tail.as_slices();
        to.write_all(a)?;
        to.write_all(b)
    }

    /// Everything kept, with `note` where bytes were dropped.
    pub fn to_vec(&self, note: Option<&str>) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.head.len() + self.tail.len());
        let _ = self.write_to(&mut v, note);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_ends_and_counts_the_middle() {
        let mut k = HeadTail::new(4, 3);
        k.push(b"ab");
        k.push(b"cdefgh");
        k.push(b"ij");
        assert_eq!(k.head(), b"abcd");
        assert_eq!(k.dropped(), 3);
        assert_eq!(k.to_vec(Some("[cut]\n")), b"abcd\n[cut]\nhij");
        let mut small = HeadTail::new(4, 3);
        small.push(b"abc");
        assert_eq!(
            small.to_vec(Some("[cut]\n")),
            b"abc",
            "no note when nothing dropped"
        );
    }
}
