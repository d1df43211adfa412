//! What every backend shares about reading a workload's output: the one READY-wait loop
//! ([`wait_ready`]); and for runc and the VM backends, whose child is a `std::process::Child`, its
//! output read on a thread into a bounded channel as lines (cut at
//! [`container::output::MAX_LINE_BYTES`], the same splitter the built-in runtime uses), each line
//! timestamped when the read that completed it returned, and waiting for its exit with a time limit.
//!
//! Memory stays bounded whatever the child writes: a line without end costs one line, and a reader
//! whose lines are not taken blocks (so does the writer, on its full pipe) instead of queueing.

use std::io::Read;
use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use container::output::LineSplitter;

use crate::backend::{BackendError, ChildState};

/// How many lines a reader queues ahead of its consumer (with [`container::output::MAX_LINE_BYTES`],
/// at most about 1 MiB per pipe).
pub(super) const QUEUE_LINES: usize = 64;

/// What the reader threads deliver next.
pub(super) enum Next<M> {
    Message(M),
    Timeout,
    /// Every pipe closed (or nothing was ever read).
    Eof,
}

/// An instance being launched, as the READY-wait loop sees it.
pub(super) trait ReadySource {
    type Message;
    /// The next message (an output line, an event), waiting until `deadline` at most.
    fn next(&mut self, deadline: Instant) -> Result<Next<Self::Message>, BackendError>;
    /// Acts on one message: `Some(when it became readable)` for the READY line, an error when the
    /// message fails the launch (see [`super::line_before_ready`]), else `None`.
    fn on_message(&mut self, message: Self::Message) -> Result<Option<Instant>, BackendError>;
    /// The error for output that ended before READY (with the exit status and the output's tail).
    fn exited_before_ready(&mut self) -> BackendError;
    /// The error for no READY within `timeout` (with the output's tail).
    fn ready_timeout(&self, timeout: Duration) -> BackendError;
}

/// The one READY-wait loop of every backend: the moment the READY line became readable, or the
/// launch's failure. `deadline` is the launch request plus the ready timeout `timeout`.
pub(super) fn wait_ready(
    source: &mut impl ReadySource,
    deadline: Instant,
    timeout: Duration,
) -> Result<Instant, BackendError> {
    loop {
        match source.next(deadline)? {
            Next::Message(message) => {
                if let Some(at) = source.on_message(message)? {
                    return Ok(at);
                }
            }
            Next::Eof => return Err(source.exited_before_ready()),
            Next::Timeout => return Err(source.ready_timeout(timeout)),
        }
    }
}

/// A channel for [`spawn_reader`]s, bounded to [`QUEUE_LINES`].
pub(super) fn channel<M>() -> (SyncSender<M>, Receiver<M>) {
    std::sync::mpsc::sync_channel(QUEUE_LINES)
}

/// Reads `pipe` on a thread named `thread`, sending `wrap(when readable, line)` to `tx` for each
/// line; the thread ends at EOF, at a read error or when the receiver is gone.
pub(super) fn spawn_reader<M: Send + 'static>(
    thread: String,
    mut pipe: impl Read + Send + 'static,
    tx: SyncSender<M>,
    wrap: impl Fn(Instant, String) -> M + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(thread)
        .spawn(move || {
            let mut lines = LineSplitter::default();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                let n = match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let at = Instant::now();
                lines.push(&chunk[..n]);
                while let Some(line) = lines.pop() {
                    if tx.send(wrap(at, line)).is_err() {
                        return;
                    }
                }
            }
            if let Some(line) = lines.finish() {
                let _ = tx.send(wrap(Instant::now(), line));
            }
        })
        .map(drop)
}

/// The next message from `rx`, waiting until `deadline` at most; `Eof` without a receiver.
pub(super) fn next<M>(rx: Option<&Receiver<M>>, deadline: Instant) -> Next<M> {
    let Some(rx) = rx else { return Next::Eof };
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(message) => Next::Message(message),
        Err(RecvTimeoutError::Timeout) => Next::Timeout,
        Err(RecvTimeoutError::Disconnected) => Next::Eof,
    }
}

/// Waits up to `timeout` for `child` to exit.
pub(super) fn wait_timeout(child: &mut Child, timeout: Duration) -> ChildState {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.into(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => return ChildState::Running,
            Err(e) => return ChildState::Unknown(e.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_without_newlines_costs_one_line_and_later_lines_still_arrive() {
        // 64 MiB of NUL bytes, then a protocol line: the reader must pass the line on, having kept
        // only a cut first line (and not 64 MiB) in between.
        let zeros = std::io::repeat(0).take(64 << 20);
        let pipe = zeros.chain(&b"\nCVBENCH READY idle\n"[..]);
        let (tx, rx) = channel();
        spawn_reader("test-reader".into(), pipe, tx, |_, line| line).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        while let Next::Message(line) = next(Some(&rx), deadline) {
            got.push(line);
        }
        assert_eq!(
            got.len(),
            2,
            "{:?}",
            got.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(got[0].len() <= container::output::MAX_LINE_BYTES + 16);
        assert!(got[0].ends_with(container::output::CUT_MARK));
        assert_eq!(got[1], "CVBENCH READY idle");
    }
}
