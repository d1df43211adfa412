//! `bench cleanup`: removes what a killed harness left behind.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Also remove instances whose harness is still running.
    #[arg(long)]
    pub force: bool,
}

pub fn execute(args: CleanupArgs) -> anyhow::Result<ExitCode> {
    // Not root: one clear line and exit 1, before anything is tried (every kill would be refused).
    let report = harness::cleanup::cleanup_all(args.force)?;
    for item in &report.removed {
        println!("removed {item}");
    }
    for item in &report.in_use {
        println!("kept {item} (its harness is still running; --force removes it)");
    }
    if report.removed.is_empty() && report.in_use.is_empty() && report.problems.is_empty() {
        println!("nothing to clean up");
    }
    if !report.problems.is_empty() {
        anyhow::bail!(
            "{} item(s) could not be removed: {}",
            report.problems.len(),
            report.problems.join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
