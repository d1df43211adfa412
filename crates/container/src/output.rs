//! Reading a container's output: stdout line by line with a deadline (each line timestamped when it
//! was read, for `start_to_ready`), and a bounded tail of stderr for error messages.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// One event from [`OutputLines::next_line`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line (without its newline), and the moment the read that completed it returned.
    Line { text: String, at: Instant },
    /// The writer closed the pipe (the workload exited); a final unterminated line comes first.
    Eof,
    /// The deadline passed without a complete line.
    TimedOut,
}

/// Splits a pipe into lines, waiting with `poll` (no sleeping) up to a deadline. Memory is bounded
/// whatever the writer sends: lines are cut at [`MAX_LINE_BYTES`] (see [`LineSplitter`]).
#[derive(Debug)]
pub struct OutputLines {
    file: File,
    lines: LineSplitter,
    eof: bool,
    /// Everything read so far, bounded, for error messages.
    tail: Tail,
}

impl OutputLines {
    pub fn new(file: File) -> Self {
        OutputLines {
            file,
            lines: LineSplitter::default(),
            eof: false,
            tail: Tail::new(TAIL_BYTES),
        }
    }

    /// The next line, waiting until `deadline` (`None` = forever).
    pub fn next_line(&mut self, deadline: Option<Instant>) -> io::Result<LineEvent> {
        loop {
            if let Some(text) = self.lines.pop() {
                return Ok(LineEvent::Line {
                    text,
                    at: Instant::now(),
                });
            }
            if self.eof {
                return Ok(match self.lines.finish() {
                    Some(text) => LineEvent::Line {
                        text,
                        at: Instant::now(),
                    },
                    None => LineEvent::Eof,
                });
            }
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => match poll_timeout_until(d) {
                    Some(t) => t,
                    None => return Ok(LineEvent::TimedOut),
                },
            };
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => continue, // re-checks the deadline
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.file.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.lines.push(&chunk[..n]);
                    self.tail.push(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The last few KiB read so far, escaped on one line (see [`escape_output`]).
    pub fn tail(&self) -> String {
        self.tail.text()
    }
}

/// The `poll` timeout for waiting until `deadline`: the whole milliseconds left plus one, so that a
/// sub-millisecond remainder still waits. `None` once the deadline has passed.
pub(crate) fn poll_timeout_until(deadline: Instant) -> Option<PollTimeout> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    // Saturates: a longer wait polls for the longest time poll takes, and the caller polls again.
    let ms = u32::try_from(left.as_millis().saturating_add(1)).unwrap_or(u32::MAX);
    Some(PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX))
}

/// How much of stdout/stderr is kept for error messages.
pub const TAIL_BYTES: usize = 4096;
/// The longest line passed on; the rest of a longer line is dropped (a protocol line is far
/// shorter, so a cut line is never mistaken for a valid one).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// What ends a cut line, after its first [`MAX_LINE_BYTES`] bytes.
pub const CUT_MARK: &str = " [line cut]";
/// A run of one repeated escaped character at least this long is shown once with its count.
const RUN_MIN: usize = 4;

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`] (plus [`CUT_MARK`]): a writer that
/// never sends a newline costs one line's worth of memory, not everything it wrote.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// The current, unfinished line.
    partial: Vec<u8>,
    /// The current line was cut; its bytes up to the next newline are dropped.
    skipping: bool,
    /// Complete lines not yet taken by [`LineSplitter::pop`].
    ready: std::collections::VecDeque<String>,
}

impl LineSplitter {
    /// Adds bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        for segment in data.split_inclusive(|&b| b == b'\n') {
            let (body, ends_line) = match segment.split_last() {
                Some((b'\n', body)) => (body, true),
                _ => (segment, false),
            };
            if !self.skipping {
                let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
                if body.len() > room {
                    self.partial.extend_from_slice(&body[..room]);
                    self.end_line(true);
                    self.skipping = true;
                } else {
                    self.partial.extend_from_slice(body);
                }
            }
            if ends_line {
                if self.skipping {
                    self.skipping = false;
                } else {
                    self.end_line(false);
                }
            }
        }
    }

    /// The oldest complete line, without its newline (lossy UTF-8).
    pub fn pop(&mut self) -> Option<String> {
        self.ready.pop_front()
    }

    /// At the end of the stream: the last line when it had no newline.
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        self.end_line(false);
        self.pop()
    }

    fn end_line(&mut self, cut: bool) {
        let mut text = String::from_utf8_lossy(&self.partial).into_owned();
        if cut {
            text.push_str(CUT_MARK);
        }
        self.partial.clear();
        self.ready.push_back(text);
    }
}

/// The last `cap` bytes of a stream.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    bytes: Vec<u8>,
    cap: usize,
    /// Older bytes were dropped.
    cut: bool,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Tail {
            bytes: Vec::new(),
            cap,
            cut: false,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        let skip = data.len().saturating_sub(self.cap);
        self.cut |= skip > 0;
        self.bytes.extend_from_slice(&data[skip..]);
        if self.bytes.len() > self.cap {
            let cut = self.bytes.len() - self.cap;
            self.bytes.drain(..cut);
            self.cut = true;
        }
    }

    /// Adds one line (a newline is appended).
    pub fn push_line(&mut self, line: &str) {
        self.push(line.as_bytes());
        self.push(b"\n");
    }

    /// The kept bytes, escaped on one line ([`escape_output`]); `... ` first when older output was
    /// dropped.
    pub fn text(&self) -> String {
        let mut bytes = self.bytes.as_slice();
        if self.cut {
            // The cut may have split a UTF-8 sequence: drop its continuation bytes.
            while let Some((_, rest)) = bytes.split_first().filter(|(b, _)| (0x80..0xc0).contains(*b)) {
                bytes = rest;
            }
        }
        let text = escape_output(bytes);
        if self.cut && !text.is_empty() {
            format!("... {text}")
        } else {
            text
        }
    }
}

/// `bytes` (a process's output) as one line that is safe to print on a terminal: UTF-8 text is
/// kept; line breaks become ` | `; control characters, invisible formatting characters (bidi
/// overrides, zero-width spaces) and invalid UTF-8 bytes are escaped (`\t`, `\x00`, `\u{202e}`);
/// a run of one repeated escape is shown once with its count (`\x00×1200`).
pub fn escape_output(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut run: Option<(String, usize)> = None;
    let flush = |out: &mut String, run: &mut Option<(String, usize)>| {
        if let Some((escape, n)) = run.take() {
            if n >= RUN_MIN {
                out.push_str(&format!("{escape}×{n}"));
            } else {
                out.push_str(&escape.repeat(n));
            }
        }
    };
    let escaped = |out: &mut String, run: &mut Option<(String, usize)>, escape: String| match run {
        Some((last, n)) if *last == escape => *n += 1,
        _ => {
            flush(out, run);
            *run = Some((escape, 1));
        }
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' | '\r' => {
                    flush(&mut out, &mut run);
                    if !out.is_empty() && !out.ends_with(" | ") {
                        out.push_str(" | ");
                    }
                }
                '\t' => escaped(&mut out, &mut run, "\\t".to_string()),
                c if c.is_control() || is_invisible_format(c) => {
                    let code = u32::from(c);
                    let escape = if code <= 0xff {
                        format!("\\x{code:02x}")
                    } else {
                        format!("\\u{{{code:x}}}")
                    };
                    escaped(&mut out, &mut run, escape);
                }
                c => {
                    flush(&mut out, &mut run);
                    out.push(c);
                }
            }
        }
        for b in chunk.invalid() {
            escaped(&mut out, &mut run, format!("\\x{b:02x}"));
        }
    }
    flush(&mut out, &mut run);
    let trimmed = out.trim_end_matches(" | ").len();
    out.truncate(trimmed);
    out
}

/// Characters that change how a terminal shows the text around them without showing themselves.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Drains `file` into a shared [`Tail`] on a thread until EOF, so a chatty stderr never blocks the
/// workload.
pub fn drain_into_tail(mut file: File, tail: Arc<Mutex<Tail>>) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cvbench-stderr".into())
        .spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match file.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Ok(mut t) = tail.lock() {
                            t.push(&chunk[..n]);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    fn pipe() -> (File, File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        (File::from(r), File::from(w))
    }

    #[test]
    fn poll_timeout_is_the_milliseconds_left_plus_one_capped_at_max() {
        assert_eq!(poll_timeout_until(Instant::now()), None);
        let ms = poll_timeout_until(Instant::now() + Duration::from_millis(10_000))
            .and_then(|t| t.as_millis())
            .unwrap();
        assert!((9_000..=10_001).contains(&ms), "{ms}");
        let far = Instant::now() + Duration::from_secs(100 * 24 * 3600);
        assert_eq!(poll_timeout_until(far), Some(PollTimeout::MAX));
    }

    #[test]
    fn lines_are_split_and_the_last_partial_line_comes_before_eof() {
        let (r, mut w) = pipe();
        w.write_all(b"one\ntwo\nthr").unwrap();
        drop(w);
        let mut lines = OutputLines::new(r);
        let mut got = Vec::new();
        loop {
            match lines.next_line(None).unwrap() {
                LineEvent::Line { text, .. } => got.push(text),
                LineEvent::Eof => break,
                LineEvent::TimedOut => panic!("timed out"),
            }
        }
        assert_eq!(got, ["one", "two", "thr"]);
        assert_eq!(lines.tail(), "one | two | thr");
    }

    #[test]
    fn a_writer_without_newlines_gives_a_cut_line_then_the_next_ones() {
        let (r, mut w) = pipe();
        let writer = std::thread::spawn(move || {
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..16 {
                w.write_all(&zeros).unwrap();
            }
            w.write_all(b"\nCVBENCH READY idle\n").unwrap();
        });
        let mut lines = OutputLines::new(r);
        let mut got = Vec::new();
        while let LineEvent::Line { text, .. } = lines.next_line(None).unwrap() {
            got.push(text);
        }
        writer.join().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].len(),
            MAX_LINE_BYTES + CUT_MARK.len(),
            "16 MiB without a newline"
        );
        assert_eq!(got[1], "CVBENCH READY idle");
        assert!(lines.tail().len() < 2 * TAIL_BYTES, "{}", lines.tail().len());
        assert!(
            lines.tail().ends_with(" | CVBENCH READY idle"),
            "{}",
            lines.tail()
        );
        assert!(!lines.tail().contains('\0'));
    }

    #[test]
    fn a_silent_writer_times_out() {
        let (r, _w) = pipe();
        let mut lines = OutputLines::new(r);
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(lines.next_line(Some(deadline)).unwrap(), LineEvent::TimedOut);
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = Tail::new(4);
        t.push(b"abcdef");
        t.push(b"gh");
        assert_eq!(t.text(), "... efgh");
        let mut t = Tail::new(9);
        t.push("é".repeat(5).as_bytes());
        assert_eq!(t.text(), "... éééé", "a split UTF-8 sequence is dropped");
    }

    #[test]
    fn output_is_escaped_on_one_line() {
        assert_eq!(escape_output(b"ok\r\nnext\n\n"), "ok | next");
        assert_eq!(escape_output(b"a\tb\x1b[31mred"), "a\\tb\\x1b[31mred");
        assert_eq!(escape_output(b"\xff\xfe ok"), "\\xff\\xfe ok");
        assert_eq!(escape_output("x\u{202e}y".as_bytes()), "x\\u{202e}y");
        assert_eq!(escape_output(&[0u8; 1200]), "\\x00×1200");
        assert_eq!(escape_output(b"\0\0z"), "\\x00\\x00z");
    }

    #[test]
    fn a_line_without_end_is_cut_and_costs_one_line_of_memory() {
        let mut s = LineSplitter::default();
        let zeros = vec![0u8; 64 * 1024];
        for _ in 0..100 {
            s.push(&zeros);
        }
        assert!(s.partial.len() <= MAX_LINE_BYTES, "{}", s.partial.len());
        let first = s.pop().unwrap();
        assert_eq!(first.len(), MAX_LINE_BYTES + CUT_MARK.len());
        assert!(first.ends_with(CUT_MARK));
        assert_eq!(s.pop(), None, "the rest of the cut line is dropped");
        s.push(b"\0\0\nCVBENCH READY idle\nrest");
        assert_eq!(s.pop().as_deref(), Some("CVBENCH READY idle"));
        assert_eq!(s.pop(), None);
        assert_eq!(s.finish().as_deref(), Some("rest"));
        assert_eq!(s.finish(), None);
    }
}
