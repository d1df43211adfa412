//! `bench baseline save NAME [--from FILE]`: keep a results file as the reference `bench check`
//! compares against, under `results/baselines/NAME.json`. `bench baseline list` shows what is stored.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use harness::results::ResultsFile;

use super::UsageError;

/// Where baselines are kept (relative to the working directory, i.e. the repository root in CI).
pub const DEFAULT_DIR: &str = "results/baselines";

#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(subcommand)]
    pub action: BaselineAction,
}

#[derive(Debug, Subcommand)]
pub enum BaselineAction {
    /// Store a results file as baseline NAME.
    Save {
        /// Baseline name: letters, digits, '.', '_' and '-'.
        name: String,
        /// The results file to store.
        #[arg(long, value_name = "FILE", default_value = "cvbench-results/results.json")]
        from: PathBuf,
        /// Directory of baselines.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Save even a partial results file or one with failed runs, and replace an existing baseline.
        #[arg(long)]
        force: bool,
    },
    /// List stored baselines.
    List {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
        dir: PathBuf,
    },
}

/// Why `results` should not become a baseline: it is partial, a cell has failed runs, or nothing was
/// measured. A baseline judges every later run, so it must be complete.
fn unfit_as_baseline(results: &ResultsFile) -> Option<String> {
    let failed: Vec<String> = results
        .benchmarks
        .iter()
        .filter(|c| c.skipped.is_none() && (!c.failures.is_empty() || c.measured_runs() == 0))
        .map(|c| format!("{}/{}", c.backend, c.workload))
        .collect();
    if !failed.is_empty() {
        return Some(format!("failed runs in {}", failed.join(", ")));
    }
    if results.partial {
        return Some("it is marked partial".to_string());
    }
    if !results.benchmarks.iter().any(|c| c.measured_runs() > 0) {
        return Some("no measured run".to_string());
    }
    None
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub fn execute(args: BaselineArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        BaselineAction::Save {
            name,
            from,
            dir,
            force,
        } => {
            if !valid_name(&name) {
                return Err(UsageError(format!(
                    "baseline name {name:?} must be letters, digits, '.', '_' or '-' (not starting with '.')"
                ))
                .into());
            }
            let results = ResultsFile::read(&from).map_err(|e| UsageError(e.to_string()))?;
            let path = dir.join(format!("{name}.json"));
            if !force {
                if let Some(why) = unfit_as_baseline(&results) {
                    return Err(UsageError(format!(
                        "{} is not a complete results file ({why}); use --force to save it anyway",
                        from.display()
                    ))
                    .into());
                }
                if path.exists() {
                    anyhow::bail!(
                        "baseline {} already exists; use --force to replace it",
                        path.display()
                    );
                }
            }
            results.write_atomic(&path)?;
            let runs: usize = results.benchmarks.iter().map(|b| b.measured_runs()).sum();
            println!("{}", path.display());
            eprintln!(
                "saved {} ({} cells, {runs} measured runs, host {}, {})",
                path.display(),
                results.benchmarks.len(),
                results.host.hostname,
                results.started_at
            );
            Ok(ExitCode::SUCCESS)
        }
        BaselineAction::List { dir } => {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                eprintln!("no baselines in {}", dir.display());
                return Ok(ExitCode::SUCCESS);
            };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".json"))
                        .map(str::to_string)
                })
                .collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_directory() {
        assert!(valid_name("main") && valid_name("v1.2_x-86"));
        assert!(!valid_name("../x") && !valid_name("a/b") && !valid_name(".hidden") && !valid_name(""));
    }
}
