//! The run's trace: a hash of every line, to prove a seed replays byte for
//! byte, and the last lines, to show what led to a violation.

use std::collections::VecDeque;
use std::fmt::{self, Write};

const KEPT_LINES: usize = 60;

pub struct Trace {
    /// Keep every line, not just the last ones (for replaying one seed).
    keep_all: bool,
    hash: u64,
    lines: u64,
    tail: VecDeque<String>,
    buf: String,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            keep_all: false,
            hash: 0xcbf2_9ce4_8422_2325, // FNV-1a offset basis
            lines: 0,
            tail: VecDeque::new(),
            buf: String::new(),
        }
    }
}

impl Trace {
    pub fn new(keep_all: bool) -> Trace {
        Trace {
            keep_all,
            ..Trace::default()
        }
    }

    pub fn line(&mut self, now_us: u64, text: fmt::Arguments<'_>) {
        self.buf.clear();
        let _ = write!(self.buf, "{now_us:>10}µs {text}");
        for b in self.buf.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.lines += 1;
        if self.tail.len() == KEPT_LINES && !self.keep_all {
            self.tail.pop_front();
        }
        self.tail.push_back(self.buf.clone());
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn tail(&self) -> impl Iterator<Item = &str> {
        self.tail.iter().map(String::as_str)
    }
}
