//! A plugin's stderr (the WASI stream `wasi` gives): its lines go to the tenant's log when
//! the call has `log`, bounded like `log`, and are discarded without it (a panic must not turn
//! into a "log denied" failure). The last lines are kept for a failed call's message: a Rust
//! plugin's panic message is written there just before it traps.

/// Most bytes one call may write to stderr (the rest is dropped).
const MAX_STDERR: usize = 64 * 1024;
/// Most lines one call logs.
const MAX_LINES: usize = 100;
/// Longest line kept (the rest of it is dropped).
const MAX_LINE: usize = 2048;
/// How many of the last lines a failed call's message shows.
const TAIL: usize = 3;

pub struct Stderr {
    log: bool,
    line: Vec<u8>,
    written: usize,
    lines: usize,
    tail: std::collections::VecDeque<String>,
}

impl Stderr {
    pub fn new(log: bool) -> Stderr {
        Stderr {
            log,
            line: Vec::new(),
            written: 0,
            lines: 0,
            tail: Default::default(),
        }
    }

    pub fn write(&mut self, tenant: &str, bytes: &[u8]) {
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
                self.end_line(tenant);
            }
        }
    }

    /// Ends the call: a last line without its newline is logged too.
    pub fn finish(&mut self, tenant: &str) {
        if !self.line.is_empty() {
            self.end_line(tenant);
        }
    }

    /// The last lines written, joined (for a failed call's message).
    pub fn tail(&self) -> Option<String> {
        (!self.tail.is_empty()).then(|| Vec::from(self.tail.clone()).join(" / "))
    }

    fn end_line(&mut self, tenant: &str) {
        let text = String::from_utf8_lossy(&self.line).trim().to_string();
        self.line.clear();
        if text.is_empty() {
            return;
        }
        self.lines += 1;
        if self.log && self.lines <= MAX_LINES {
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
        let mut e = Stderr::new(false);
        e.write("t", b"thread panicked at src/lib.rs:1:1:\nboo");
        assert_eq!(e.tail().unwrap(), "thread panicked at src/lib.rs:1:1:");
        e.write("t", b"m!\n\nnote: one\nlast");
        e.finish("t");
        assert_eq!(e.tail().unwrap(), "boom! / note: one / last");
        // a flood is cut at MAX_STDERR and every line at MAX_LINE
        let mut e = Stderr::new(false);
        e.write("t", &vec![b'x'; 3 * MAX_STDERR]);
        e.finish("t");
        assert_eq!(e.written, MAX_STDERR);
        assert_eq!(e.tail().unwrap().len(), MAX_LINE);
    }
}
