//! `bench merge IN... --out DIR`: results files from many hosts into `DIR/results.json` (one host
//! section per source, cells keep their host) and one report pivoted per host (`--by`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use harness::results::{ResultsFile, ToolInfo};
use results::merge::{merge, MergeInput, MergeOptions};

use super::compare::ReportLook;
use super::UsageError;

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Results files (or directories holding results.json), one or more per host.
    #[arg(required = true, value_name = "IN")]
    pub inputs: Vec<PathBuf>,
    /// Directory for the merged results.json and its report.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Keep both sources when two share a host identity (same run_id or same dimensions): the later
    /// one's id is prefixed `inN-`.
    #[arg(long)]
    pub prefix_on_collision: bool,
    /// The host dimension the report's tables and startup/memory charts are pivoted on (`host`,
    /// `instance`, `host_kernel`, ...).
    #[arg(long, default_value = "host", value_name = "DIM")]
    pub by: String,
    /// Write results.json only.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub look: ReportLook,
}

pub fn execute(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let mut inputs = Vec::new();
    for path in &args.inputs {
        let path = super::report::results_path(path);
        let file = ResultsFile::read(&path).map_err(|e| UsageError(e.to_string()))?;
        inputs.push(MergeInput {
            name: path.display().to_string(),
            file,
        });
    }
    let opts = MergeOptions {
        prefix_on_collision: args.prefix_on_collision,
    };
    let merged = merge(&inputs, opts, ToolInfo::current(std::env::args().collect()))
        .map_err(|e| UsageError(e.to_string()))?;
    let path = args.out.join("results.json");
    merged
        .write_atomic(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "merged {} hosts, {} cells into {}",
        merged.hosts.len(),
        merged.benchmarks.len(),
        path.display()
    );
    if !args.no_report {
        let written = report::write_report_by(&merged, &args.out, &args.look.options(), Some(&args.by))
            .map_err(|e| match e {
                report::ReportError::Results { reason } => anyhow::Error::new(UsageError(reason)),
                other => anyhow::Error::new(other),
            })?;
        println!("{}", written.markdown.display());
        println!("{}", written.html.display());
    }
    Ok(ExitCode::SUCCESS)
}
