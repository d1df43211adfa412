//! `bench`: the cvbench command line. It parses arguments, shows progress and maps errors to exit
//! statuses; everything a test would want to check lives in the `harness` crate.
//!
//! Exit statuses: 0 success, 1 a run failed (not root, backend unavailable, any run failed — the
//! cells are named — or the `check` gate failed), 2 usage error (bad flag value, unknown backend or
//! workload, missing image, a partial results file as a baseline), 130 after SIGINT, 143 after SIGTERM.
//! Errors are one line on stderr: `bench: <cause>: <cause>...`.
//!
//! Adding a subcommand: one file in `cmd/`, one variant in [`Command`], one arm in [`run`].

mod cmd;
mod output;
mod parse;
mod preflight;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    version,
    about = "Compare isolation mechanisms by measurement"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one workload on one backend N times and report startup, memory, disk and workload figures.
    Run(cmd::run::RunArgs),
    /// Remove what a killed harness left behind (containers, mounts, cgroups, state under /run/cvbench).
    Cleanup(cmd::cleanup::CleanupArgs),
    /// Run every backend × workload, interleaved run by run; write DIR/results.json and the report.
    Compare(cmd::compare::CompareArgs),
    /// Launch instances one at a time and keep them running: launch latency, summed PSS, instances/GiB.
    Density(cmd::density::DensityArgs),
    /// Combine results files from many hosts into one file and one report (never pooling hosts).
    Merge(cmd::merge::MergeArgs),
    /// Draw the plots and write report.md / report.html from a results file, without re-running.
    Report(cmd::report::ReportArgs),
    /// CI gate: compare startup metrics against a baseline; exit 1 on a significant regression.
    Check(cmd::check::CheckArgs),
    /// Same-host A/B test of two builds (binaries or git revisions), interleaved; exit 1 on a regression.
    Ab(cmd::ab::AbArgs),
    /// Store or list baselines for `bench check` (results/baselines/NAME.json).
    Baseline(cmd::baseline::BaselineArgs),
    /// The startup history across commits (results/history.jsonl): append a run, list the entries.
    History(cmd::history::HistoryArgs),
    /// Plot each startup metric's median and 95% CI across the history's commits, per backend.
    Trend(cmd::trend::TrendArgs),
    /// Build named images: `bench image build services` (Debian nginx-light + mariadb-server).
    Image(cmd::image::ImageArgs),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => cmd::run::execute(args),
        Command::Cleanup(args) => cmd::cleanup::execute(args),
        Command::Compare(args) => cmd::compare::execute(args),
        Command::Density(args) => cmd::density::execute(args),
        Command::Merge(args) => cmd::merge::execute(args),
        Command::Report(args) => cmd::report::execute(args),
        Command::Check(args) => cmd::check::execute(args),
        Command::Baseline(args) => cmd::baseline::execute(args),
        Command::Ab(args) => cmd::ab::execute(args),
        Command::History(args) => cmd::history::execute(args),
        Command::Trend(args) => cmd::trend::execute(args),
        Command::Image(args) => cmd::image::execute(args),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cmd::exit_on_parse_error(e),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {}", cmd::error_line(&e));
            cmd::exit_status_of(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
