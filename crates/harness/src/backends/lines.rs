//! What runc and the VM backends share about a child process: its output read line by line on a
//! thread into a channel, each line timestamped when it became readable, and waiting for its exit
//! with a time limit.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// What the reader threads deliver next.
pub(super) enum Next<M> {
    Message(M),
    Timeout,
    /// Every pipe closed (or nothing was ever read).
    Eof,
}

/// Reads `pipe` line by line on a thread named `thread`, sending `wrap(when readable, line)` to
/// `tx`; the thread ends at EOF, at a read error or when the receiver is gone.
pub(super) fn spawn_reader<M: Send + 'static>(
    thread: String,
    pipe: impl Read + Send + 'static,
    tx: Sender<M>,
    wrap: impl Fn(Instant, String) -> M + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(thread)
        .spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(wrap(Instant::now(), line)).is_err() {
                    break;
                }
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

/// Waits up to `timeout` for `child` to exit: its status, or `None` while it still runs.
pub(super) fn wait_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait()? {
            Some(status) => return Ok(Some(status)),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            None => return Ok(None),
        }
    }
}
