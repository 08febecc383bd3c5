//! A plugin's stderr (the WASI stream `wasi` gives): its lines go to the tenant's log when
//! the call has `log`, bounded like `log`, and are discarded without it (a panic must not turn
//! into a "log denied" failure). The last lines are kept for a failed call's message: a Rust
//! plugin's panic message is written there just before it traps.

use super::log::{MAX_LOG_LINE as MAX_LINE, MAX_LOG_LINES as MAX_LINES};
use std::sync::Arc;

/// Most bytes one call may write to stderr (the rest is dropped).
const MAX_STDERR: usize = 64 * 1024;
/// How many of the last lines a failed call's message shows.
const TAIL: usize = 3;

pub struct Stderr {
    tenant: Arc<str>,
    log: bool,
    line: Vec<u8>,
    written: usize,
    lines: usize,
    tail: std::collections::VecDeque<String>,
}

impl Stderr {
    pub fn new(tenant: Arc<str>, log: bool) -> Stderr {
        Stderr {
            tenant,
            log,
            line: Vec::new(),
            written: 0,
            lines: 0,
            tail: Default::default(),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let room = MAX_STDERR.saturating_sub(self.written);
        let bytes = &bytes[..bytes.len().min(room)];
        self.written += bytes.len();
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let (text, ended) = match line.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (line, false),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&text[..text.len().min(room)]);
            if ended {
                self.end_line();
            }
        }
    }

    /// Ends the call: a last line without its newline is logged too.
    pub fn finish(&mut self) {
        if !self.line.is_empty() {
            self.end_line();
        }
    }

    /// The last lines written, joined (for a failed call's message).
    pub fn tail(&self) -> Option<String> {
        let lines: Vec<&str> = self.tail.iter().map(String::as_str).collect();
        (!lines.is_empty()).then(|| lines.join(" / "))
    }

    fn end_line(&mut self) {
        let text = String::from_utf8_lossy(&self.line).trim().to_string();
        self.line.clear();
        if text.is_empty() {
            return;
        }
        self.lines += 1;
        if self.log && self.lines <= MAX_LINES {
            let tenant = &*self.tenant;
            tracing::warn!(target: "manifold::plugin", tenant, stream = "stderr", "{text}");
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_writes_and_bounded() {
        let mut e = Stderr::new("t".into(), false);
        e.write(b"thread panicked at src/lib.rs:1:1:\nboo");
        assert_eq!(e.tail().unwrap(), "thread panicked at src/lib.rs:1:1:");
        e.write(b"m!\n\nnote: one\nlast");
        e.finish();
        assert_eq!(e.tail().unwrap(), "boom! / note: one / last");
        // a flood is cut at MAX_STDERR and every line at MAX_LINE
        let mut e = Stderr::new("t".into(), false);
        e.write(&vec![b'x'; 3 * MAX_STDERR]);
        e.finish();
        assert_eq!(e.written, MAX_STDERR);
        assert_eq!(e.tail().unwrap().len(), MAX_LINE);
    }
}
