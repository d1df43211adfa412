//! Writing protocol lines to standard output, flushed at once: the launcher timestamps the moment a
//! line becomes readable, so nothing may sit in a buffer.

use std::io::Write;

use workload::protocol::{error_line, ready_line, result_line};
use workload::WorkloadResult;

fn emit(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// `CVBENCH READY <workload>`.
pub fn ready(workload: &str) -> std::io::Result<()> {
    emit(&ready_line(workload))
}

/// `CVBENCH RESULT <json>`.
pub fn result(result: &WorkloadResult) -> std::io::Result<()> {
    emit(&result_line(result))
}

/// A failure: one line on stderr for a human, `CVBENCH ERROR <text>` on stdout for the launcher
/// (in a VM both end up on the console; in a container stdout is the pipe the harness reads).
/// Best effort: there is nowhere left to report a failure to write these.
pub fn error(text: &str) {
    let _ = writeln!(std::io::stderr(), "cvbench-workload: {text}");
    let _ = emit(&error_line(text));
}
