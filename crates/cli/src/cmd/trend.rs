//! `bench trend`: plots each startup metric's median with its 95% CI across the commits of the
//! history (`bench history append`), one chart per backend × workload (or per metric with
//! `--metric`), one line per host class — never one line across two — with the regressions and
//! improvements that `bench ab` / `bench check` verdicts recorded, and writes `trend.md`, a summary
//! for a PR comment. Exit status: 0 drawn, 2 unusable input (unreadable or malformed history, a
//! backend or metric the history does not have), 1 the charts could not be written.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use report::charts::trend::{write_trend, TrendOptions};
use results::history::{self, HistoryError, TrendFilter, DEFAULT_HISTORY_FILE};

use super::UsageError;

#[derive(Debug, Args)]
pub struct TrendArgs {
    /// The history file.
    #[arg(long, default_value = DEFAULT_HISTORY_FILE, value_name = "FILE")]
    pub history: PathBuf,
    /// Where the charts (trend_<backend>_<workload>.svg/.png) and trend.md go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Only these startup metrics, by name or label (`start_to_ready_ms` or `ready`; comma-separated
    /// or repeated): one chart per backend × workload × metric.
    #[arg(long, value_delimiter = ',', value_name = "M")]
    pub metric: Vec<String>,
    /// Only these backends (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "B")]
    pub backend: Vec<String>,
    /// Also append the summary to this file (e.g. "$GITHUB_STEP_SUMMARY").
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Chart theme: light or dark.
    #[arg(long, default_value = "light", value_parser = parse_theme)]
    pub theme: report::Theme,
    /// Chart size in pixels, e.g. 1920x1080.
    #[arg(long, default_value = "1920x1080", value_parser = report::parse_size, value_name = "WxH")]
    pub size: (u32, u32),
    /// TrueType font for the charts (default: DejaVu Sans from fonts-dejavu-core).
    #[arg(long, value_name = "TTF")]
    pub font: Option<PathBuf>,
}

fn parse_theme(s: &str) -> Result<report::Theme, String> {
    s.parse()
}

/// A metric as given: a registered name, or a startup metric's label (`ready`).
fn metric_name(given: &str) -> String {
    results::metrics::REGISTRY
        .iter()
        .find(|m| m.is_startup() && m.label == given)
        .map_or_else(|| given.to_string(), |m| m.name.to_string())
}

pub fn execute(args: TrendArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.markdown {
        crate::preflight::output_file("--markdown", path)?;
    }
    let entries = history::read(&args.history).map_err(|e| match e {
        HistoryError::Write { .. } => anyhow::Error::new(e),
        other => anyhow::Error::new(UsageError(other.to_string())),
    })?;
    crate::preflight::output_dir("--out", &args.out)?;
    let font = args.font.as_deref();
    report::font::register(font).map_err(|e| UsageError(format!("--font: {e}")))?;
    let opts = TrendOptions {
        filter: TrendFilter {
            backends: args.backend.clone(),
            metrics: args.metric.iter().map(|m| metric_name(m)).collect(),
        },
        per_metric: !args.metric.is_empty(),
    };
    let look = report::ReportOptions {
        theme: args.theme,
        size: args.size,
        log_x: false,
        font: args.font.clone(),
    };
    let source = args.history.display().to_string();
    let written = write_trend(&entries, &source, &args.out, &opts, &look).map_err(|e| match e {
        report::ReportError::Results { reason } => anyhow::Error::new(UsageError(reason)),
        other => anyhow::Error::new(other).context(format!("drawing the trend in {}", args.out.display())),
    })?;
    if let Some(path) = &args.markdown {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(written.markdown.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for f in &written.figures {
        println!("{}", f.png_path.display());
    }
    println!("{}", written.summary.display());
    let classes = written.trend.host_classes.len();
    if classes > 1 {
        eprintln!(
            "bench trend: {classes} host classes in the history: one line per class, never joined (see {})",
            written.summary.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cli;
    use clap::Parser;

    #[test]
    fn trend_parses_filters_and_needs_out() {
        let cli = Cli::try_parse_from([
            "bench",
            "trend",
            "--out",
            "t",
            "--metric",
            "ready,start_to_exec_ms",
            "--backend",
            "runc",
            "--backend",
            "container",
            "--size",
            "960x540",
        ])
        .unwrap();
        let crate::Command::Trend(a) = cli.command else {
            panic!("not trend: {cli:?}");
        };
        assert_eq!(a.history, PathBuf::from(DEFAULT_HISTORY_FILE));
        assert_eq!(a.out, PathBuf::from("t"));
        assert_eq!(a.metric, vec!["ready", "start_to_exec_ms"]);
        assert_eq!(a.backend, vec!["runc", "container"]);
        assert_eq!(a.size, (960, 540));
        assert!(
            Cli::try_parse_from(["bench", "trend"]).is_err(),
            "--out is required"
        );
        assert!(Cli::try_parse_from(["bench", "trend", "--out", "t", "--theme", "blue"]).is_err());
    }

    #[test]
    fn metrics_are_named_by_name_or_label() {
        assert_eq!(metric_name("ready"), results::metrics::START_TO_READY_MS);
        assert_eq!(metric_name("start_to_exec_ms"), "start_to_exec_ms");
        assert_eq!(
            metric_name("PSS"),
            "PSS",
            "not a startup label: kept, then refused by the trend"
        );
    }
}
