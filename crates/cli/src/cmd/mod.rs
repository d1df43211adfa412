//! One module per subcommand, plus the exit-status conventions they share.

pub mod ab;
pub mod baseline;
pub mod check;
pub mod cleanup;
pub mod compare;
pub mod confine;
pub mod density;
pub mod fleet;
pub mod history;
pub mod image;
pub mod merge;
pub mod report;
pub mod run;
pub mod trend;

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

/// Warm-up runs are recorded but never summarised; more of them than measured runs spends most of
/// the benchmark on runs nobody reads, which is never what was meant.
pub fn check_warmup(warmup: u32, runs: u32) -> Result<(), UsageError> {
    if warmup > runs {
        return Err(UsageError(format!(
            "--warmup {warmup} is more than the {runs} measured runs: warm-up runs are discarded, \
             use at most as many as --runs"
        )));
    }
    Ok(())
}

/// The error and its causes as one line, `cause: cause: ...`. A cause whose text the line already
/// ends with is left out: library errors often print their source and also return it from
/// `source()`, which made messages repeat "(os error N)".
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    one_line(&line)
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
    fn more_warm_up_runs_than_measured_runs_is_a_usage_error() {
        assert!(check_warmup(1, 1).is_ok());
        assert!(check_warmup(0, 5).is_ok());
        let err = check_warmup(5, 3).unwrap_err();
        assert!(
            err.0.contains("--warmup 5") && err.0.contains("3 measured"),
            "{}",
            err.0
        );
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "cannot write results file /x: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::from_raw_os_error(20);
        let e = anyhow::Error::new(Wrapper(io)).context("saving");
        let line = error_line(&e);
        assert_eq!(line.matches("os error 20").count(), 1, "{line}");
        assert!(
            line.starts_with("saving: cannot write results file /x: "),
            "{line}"
        );
    }

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
