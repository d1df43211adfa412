//! `bench report DIR`: the report (plots as SVG and PNG, report.md, report.html, report.json) from
//! `DIR/results.json` alone — nothing is re-run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use harness::results::ResultsFile;

use super::compare::ReportLook;
use super::UsageError;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A directory holding results.json, or a results file (the report goes beside it).
    pub dir: PathBuf,
    /// Write the report here instead (default: the results file's directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Pivot on this host dimension (`host`, `instance`, `host_kernel`, ...): tables with one
    /// column per value, and startup and memory charts with one group of bars per value (one bar
    /// per backend and host, never pooled); dimensions that never vary are listed once.
    #[arg(long, value_name = "DIM")]
    pub by: Option<String>,
    #[command(flatten)]
    pub look: ReportLook,
}

/// The results file a `DIR` argument names.
pub fn results_path(dir: &Path) -> PathBuf {
    if dir.is_dir() {
        dir.join("results.json")
    } else {
        dir.to_path_buf()
    }
}

pub fn execute(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let path = results_path(&args.dir);
    let results = ResultsFile::read(&path).map_err(|e| UsageError(e.to_string()))?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let flag = if args.out.is_some() {
        "--out"
    } else {
        "report directory"
    };
    crate::preflight::output_dir(flag, &out)?;
    crate::preflight::report_font(args.look.font.as_deref())?;
    let written = report::write_report_by(&results, &out, &args.look.options(), args.by.as_deref()).map_err(
        |e| match e {
            report::ReportError::Results { reason } => anyhow::Error::new(UsageError(reason)),
            other => anyhow::Error::new(other).context(format!("writing the report in {}", out.display())),
        },
    )?;
    for f in &written.figures {
        println!("{}", f.png_path.display());
    }
    println!("{}", written.markdown.display());
    println!("{}", written.html.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the report for `results` into `dir`.
pub fn write(results: &ResultsFile, dir: &Path, look: &ReportLook) -> anyhow::Result<report::WrittenReport> {
    report::write_report(results, dir, &look.options())
        .with_context(|| format!("writing the report in {}", dir.display()))
}

/// [`write`], then names the Markdown and HTML files on stderr (for `compare` and `density`, whose
/// stdout is their table).
pub fn write_and_say(results: &ResultsFile, dir: &Path, look: &ReportLook) -> anyhow::Result<()> {
    let written = write(results, dir, look)?;
    eprintln!(
        "report written to {} and {}",
        written.markdown.display(),
        written.html.display()
    );
    Ok(())
}
