//! The READY/RESULT line protocol.
//!
//! A workload prints, on its standard output (which is a pipe in a container and the serial console in
//! a VM), exactly:
//!
//! 1. `CVBENCH READY <workload>` once it can do its job (listening, table loaded, ...). The launcher
//!    timestamps the moment this line becomes readable: that is `start_to_ready`.
//! 2. `CVBENCH RESULT <json>` once, when it has figures to report (a self-test or a transaction run);
//!    `<json>` is a single-line JSON object, see [`WorkloadResult`].
//! 3. Exit status 0 on success; anything else is a failure, and a human-readable reason goes to
//!    standard error (or, in a VM, to the console as `CVBENCH ERROR <text>`).
//!
//! Any other line is ordinary output and is ignored by the launcher (a VM console also carries kernel
//! messages), so the markers must start a line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The prefix every protocol line starts with.
pub const PREFIX: &str = "CVBENCH";
/// `CVBENCH READY <workload>`
pub const READY: &str = "READY";
/// `CVBENCH RESULT <json>`
pub const RESULT: &str = "RESULT";
/// `CVBENCH ERROR <text>`: a failure reported by the workload or the guest init.
pub const ERROR: &str = "ERROR";

/// Figures a workload reports about its own run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadResult {
    /// Workload name (`idle`, `http`, `oltp`).
    pub workload: String,
    /// Named figures with their unit in the name, e.g. `requests_per_s`, `latency_p50_us`, `tps`.
    pub metrics: BTreeMap<String, f64>,
    /// Free-form facts about how the figures were obtained (journal mode, request count, ...).
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}

/// One line of launcher-relevant output.
#[derive(Debug, Clone, PartialEq)]
pub enum ProtocolLine {
    Ready { workload: String },
    Result(WorkloadResult),
    Error(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("malformed CVBENCH line {}: {reason}", shown(line))]
    Malformed { line: String, reason: String },
}

/// How many characters of a malformed line an error message shows.
const SHOWN_CHARS: usize = 200;

/// `line` quoted with its control characters escaped, cut after [`SHOWN_CHARS`] characters.
fn shown(line: &str) -> String {
    let mut chars = line.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    let cut = chars.next().is_some();
    format!("{head:?}{}", if cut { " (cut)" } else { "" })
}

/// Format the READY line (without newline).
pub fn ready_line(workload: &str) -> String {
    format!("{PREFIX} {READY} {workload}")
}

/// Format the RESULT line (without newline).
pub fn result_line(result: &WorkloadResult) -> String {
    // Serialising a struct of strings and finite floats cannot fail; non-finite floats become null.
    let json = serde_json::to_string(result).unwrap_or_else(|_| "{}".to_string());
    format!("{PREFIX} {RESULT} {json}")
}

/// Format the ERROR line (without newline).
pub fn error_line(text: &str) -> String {
    format!("{PREFIX} {ERROR} {}", text.replace('\n', " "))
}

/// Parse one line of output. `Ok(None)` for lines that are not protocol lines. A console may add a
/// trailing `\r`, which is ignored.
pub fn parse_line(line: &str) -> Result<Option<ProtocolLine>, ProtocolError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(rest) = line.strip_prefix(PREFIX).and_then(|r| r.strip_prefix(' ')) else {
        return Ok(None);
    };
    let (verb, arg) = rest.split_once(' ').unwrap_or((rest, ""));
    let malformed = |reason: &str| ProtocolError::Malformed {
        line: line.to_string(),
        reason: reason.to_string(),
    };
    match verb {
        READY if !arg.trim().is_empty() => Ok(Some(ProtocolLine::Ready {
            workload: arg.trim().to_string(),
        })),
        READY => Err(malformed("READY without a workload name")),
        RESULT => serde_json::from_str(arg)
            .map(|r| Some(ProtocolLine::Result(r)))
            .map_err(|e| malformed(&format!("RESULT payload is not valid JSON: {e}"))),
        ERROR => Ok(Some(ProtocolLine::Error(arg.to_string()))),
        _ => Err(malformed("unknown verb")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_round_trips() {
        assert_eq!(
            parse_line(&ready_line("http")).unwrap(),
            Some(ProtocolLine::Ready {
                workload: "http".into()
            })
        );
    }

    #[test]
    fn result_round_trips_with_console_carriage_return() {
        let mut r = WorkloadResult {
            workload: "oltp".into(),
            metrics: BTreeMap::new(),
            notes: BTreeMap::new(),
        };
        r.metrics.insert("tps".into(), 812.5);
        r.notes.insert("journal_mode".into(), "wal".into());
        let line = format!("{}\r", result_line(&r));
        assert_eq!(parse_line(&line).unwrap(), Some(ProtocolLine::Result(r)));
    }

    #[test]
    fn ordinary_output_is_ignored() {
        assert_eq!(parse_line("[    0.123] virtio_blk virtio0: [vda]").unwrap(), None);
        assert_eq!(parse_line("CVBENCHREADY x").unwrap(), None);
    }

    #[test]
    fn a_malformed_line_is_shown_escaped_and_cut() {
        let line = format!("CVBENCH RESULT \0{}", "x".repeat(10_000));
        let err = parse_line(&line).unwrap_err().to_string();
        assert!(err.len() < 400, "{}", err.len());
        assert!(err.contains("\\0") && !err.contains('\0'), "{err}");
        assert!(err.contains("(cut)"), "{err}");
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse_line("CVBENCH READY").is_err());
        assert!(parse_line("CVBENCH RESULT {not json").is_err());
        assert!(parse_line("CVBENCH HELLO x").is_err());
    }

    #[test]
    fn error_line_is_single_line() {
        assert_eq!(
            parse_line(&error_line("a\nb")).unwrap(),
            Some(ProtocolLine::Error("a b".into()))
        );
    }
}
