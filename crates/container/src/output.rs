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

/// Splits a pipe into lines, waiting with `poll` (no sleeping) up to a deadline.
#[derive(Debug)]
pub struct OutputLines {
    file: File,
    buf: Vec<u8>,
    eof: bool,
    /// Everything read so far, bounded, for error messages.
    tail: Tail,
}

impl OutputLines {
    pub fn new(file: File) -> Self {
        OutputLines {
            file,
            buf: Vec::new(),
            eof: false,
            tail: Tail::new(TAIL_BYTES),
        }
    }

    /// The next line, waiting until `deadline` (`None` = forever).
    pub fn next_line(&mut self, deadline: Option<Instant>) -> io::Result<LineEvent> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line[..pos]).into_owned();
                return Ok(LineEvent::Line {
                    text,
                    at: Instant::now(),
                });
            }
            if self.eof {
                if self.buf.is_empty() {
                    return Ok(LineEvent::Eof);
                }
                let text = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
                return Ok(LineEvent::Line {
                    text,
                    at: Instant::now(),
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
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.tail.push(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The last few KiB read so far.
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

/// The last `cap` bytes of a stream.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    bytes: Vec<u8>,
    cap: usize,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Tail {
            bytes: Vec::new(),
            cap,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > self.cap {
            let cut = self.bytes.len() - self.cap;
            self.bytes.drain(..cut);
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
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
        assert_eq!(lines.tail(), "one\ntwo\nthr");
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
        assert_eq!(t.text(), "efgh");
    }
}
