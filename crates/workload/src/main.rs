//! `cvbench-workload`: the one static binary every sandbox runs. See the `workload` crate docs for
//! the subcommands and the READY/RESULT protocol.

mod args;
mod http;
mod idle;
mod latency;
mod oltp;
mod output;
mod service;
mod signals;

use std::process::ExitCode;

use args::Command;
use signals::TerminationSignals;

/// Exit status for a run failure.
const EXIT_FAILURE: u8 = 1;
/// Exit status for a usage error.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let command = match args::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            output::error(&format!("usage error: {e}"));
            eprintln!("{}", args::USAGE);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Before any thread exists, so that every thread inherits the mask (see `signals`).
    let signals = match TerminationSignals::block() {
        Ok(s) => s,
        Err(e) => {
            output::error(&format!("blocking termination signals: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let outcome = match command {
        Command::Help => {
            println!("{}", args::USAGE);
            Ok(())
        }
        Command::Version => {
            println!("cvbench-workload {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Idle => idle::run(&signals),
        Command::Http(a) => http::run(&a, signals),
        Command::Oltp(a) => oltp::run(&a, signals),
        Command::Service(a) => service::run(&a, signals),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::error(&format!("{e:#}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
