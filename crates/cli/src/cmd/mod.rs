//! One module per subcommand, plus the exit-status conventions they share.

pub mod baseline;
pub mod check;
pub mod cleanup;
pub mod compare;
pub mod confine;
pub mod density;
pub mod report;
pub mod run;

use std::fmt;
use std::process::ExitCode;

use harness::results::ResultsFile;

/// Exit status for a usage error (bad flag value, unknown name, missing input).
pub const EXIT_USAGE: u8 = 2;
/// Exit status for a run failure.
pub const EXIT_FAILURE: u8 = 1;

/// Marks an error as the user's input being unusable: exit status 2 instead of 1. Attach it as the
/// root cause (`Err(UsageError(..))?` or `.map_err(UsageError::from)`); context may be added on top.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// 2 when any cause in the chain is a [`UsageError`], else 1.
pub fn exit_status_of(e: &anyhow::Error) -> ExitCode {
    if e.chain().any(|c| c.is::<UsageError>()) {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// The exit status of a finished `run` or `compare`: 128 + the signal after a clean stop (130 for
/// Ctrl-C, 143 for SIGTERM); an error (status 1) when no run completed or when any cell has failed
/// runs, naming those cells; else 0. Skipped cells are not failures (they are reported as skipped).
pub fn plan_outcome(results: &ResultsFile) -> anyhow::Result<ExitCode> {
    if harness::interrupt::requested() {
        return Ok(ExitCode::from(harness::interrupt::exit_status()));
    }
    if !results.benchmarks.iter().any(|c| !c.runs.is_empty()) {
        let why: Vec<String> = results
            .benchmarks
            .iter()
            .filter_map(|c| {
                c.skipped
                    .as_ref()
                    .map(|s| format!("{}: skipped: {s}", c.backend))
                    .or_else(|| {
                        c.failures
                            .first()
                            .map(|f| format!("{}/{}: {}", c.backend, c.workload, f.error))
                    })
            })
            .take(3)
            .collect();
        anyhow::bail!("no run completed ({})", why.join("; "));
    }
    let failed: Vec<String> = results
        .benchmarks
        .iter()
        .filter(|c| c.skipped.is_none() && !c.failures.is_empty())
        .map(|c| {
            let first = c.failures.first().map_or("", |f| f.error.as_str());
            format!(
                "{}/{} ({} failures, {} measured runs; first: {first})",
                c.backend,
                c.workload,
                c.failures.len(),
                c.measured_runs()
            )
        })
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "runs failed in {} of {} cells: {}",
            failed.len(),
            results.benchmarks.len(),
            failed.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Joins a message onto one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Help and version go to stdout with status 0; every other parse error is one line and status 2.
pub fn exit_on_parse_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 })
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("bench: {}", one_line(first.trim_start_matches("error:").trim()));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn usage_errors_anywhere_in_the_chain_exit_2() {
        let e = Err::<(), _>(UsageError("bad".into()))
            .context("reading flags")
            .unwrap_err();
        assert_eq!(exit_status_of(&e), ExitCode::from(EXIT_USAGE));
        let e = anyhow::anyhow!("runc failed");
        assert_eq!(exit_status_of(&e), ExitCode::from(EXIT_FAILURE));
    }

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
