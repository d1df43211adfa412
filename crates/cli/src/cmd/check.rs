//! `bench check`: the CI gate. Compares every startup metric of the baseline with the current results
//! file and prints a Markdown table (for a CI step summary). Exit status: 1 when any metric regressed
//! or a baseline cell is missing, skipped or failed entirely in the current file (named in the table),
//! 0 otherwise, 2 when the input is unusable (unreadable file, schema mismatch, no cell in common).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use harness::check::{check, CheckOptions, Verdict};
use harness::results::ResultsFile;
use results::comparable::{comparability, Comparability};

use super::{UsageError, EXIT_FAILURE};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The reference results file (e.g. results/baselines/main.json).
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// The results file to judge.
    #[arg(long, value_name = "FILE")]
    pub current: PathBuf,
    /// Relative change treated as noise: a regression's whole 95% CI must lie beyond it (5% or 0.05).
    #[arg(long, default_value = "5%", value_parser = fraction, value_name = "PCT")]
    pub noise: f64,
    /// Significance level of the Mann–Whitney U test.
    #[arg(long, default_value_t = 0.01, value_parser = alpha, value_name = "P")]
    pub alpha: f64,
    /// Fewer measured runs than this on either side gives "not enough samples" instead of a verdict.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..), value_name = "N")]
    pub min_samples: u32,
    /// Also append the table to this file (e.g. "$GITHUB_STEP_SUMMARY").
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write the verdict as JSON here (every row with its ratio, CI, p-value and verdict), e.g. for
    /// `bench history append --verdict`.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Compare even when the host class (CPU model, kernel, KVM flavour, cgroup version, cores) or a
    /// cell's isolation, labels or workload spec differ: the differences are listed under the table
    /// instead of refusing with exit status 2.
    #[arg(long)]
    pub allow_mismatch: bool,
}

/// `5%` -> 0.05; `0.05` -> 0.05.
pub fn fraction(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, scale) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 0.01),
        None => (t, 1.0),
    };
    let v: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a percentage (e.g. 5% or 0.05)"))?;
    let v = v * scale;
    if !(0.0..1.0).contains(&v) {
        return Err(format!("{text:?} must be between 0% and 100%"));
    }
    Ok(v)
}

pub fn alpha(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a probability (e.g. 0.01)"))?;
    if !(v > 0.0 && v < 1.0) {
        return Err(format!("{text:?} must be strictly between 0 and 1"));
    }
    Ok(v)
}

pub fn execute(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.markdown {
        crate::preflight::output_file("--markdown", path)?;
    }
    if let Some(path) = &args.json {
        crate::preflight::output_file("--json", path)?;
    }
    let baseline = ResultsFile::read(&args.baseline).map_err(|e| UsageError(format!("baseline: {e}")))?;
    let current = ResultsFile::read(&args.current).map_err(|e| UsageError(format!("current: {e}")))?;
    let opts = CheckOptions {
        noise: args.noise,
        alpha: args.alpha,
        min_samples: args.min_samples as usize,
        ..CheckOptions::default()
    };
    let comparability = refuse_incomparable(&baseline, &current, args.allow_mismatch)?;
    let report = check(&baseline, &current, &opts).map_err(|e| UsageError(e.to_string()))?;
    let table = format!("{}{}", report.to_markdown(), comparability.to_markdown());
    print!("{table}");
    if let Some(path) = &args.markdown {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(table.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("serialising the verdict")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let regressed = report
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Regression)
        .count();
    if regressed > 0 {
        eprintln!(
            "bench: {regressed} startup metric(s) regressed beyond {:.1}% noise",
            args.noise * 100.0
        );
    }
    let mut unanswered: Vec<String> = report
        .gate_failures()
        .filter(|r| r.verdict != Verdict::Regression)
        .map(|r| format!("{}/{} ({} in current)", r.backend, r.workload, r.verdict))
        .collect();
    unanswered.dedup();
    if !unanswered.is_empty() {
        eprintln!(
            "bench: baseline cells without a current measurement: {}",
            unanswered.join(", ")
        );
    }
    if regressed > 0 || !unanswered.is_empty() {
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}

/// Comparable or refused (see `results::comparable`): a usage error naming every differing dimension,
/// unless `allow` (then the differences are returned, to be listed under the table).
pub fn refuse_incomparable(
    baseline: &ResultsFile,
    current: &ResultsFile,
    allow: bool,
) -> anyhow::Result<Comparability> {
    let c = comparability(baseline, current);
    if !c.is_comparable() && !allow {
        return Err(UsageError(format!(
            "the files are not comparable ({c}); compare on the same host class with the same \
             settings, or pass --allow-mismatch to compare anyway with the differences listed"
        ))
        .into());
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_fractions_parse() {
        assert_eq!(fraction("5%"), Ok(0.05));
        assert_eq!(fraction("0.1"), Ok(0.1));
        assert!(fraction("150%").is_err());
        assert!(fraction("five").is_err());
        assert!(alpha("0").is_err() && alpha("0.05").is_ok());
    }
}
