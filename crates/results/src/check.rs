//! `bench check`: is the current results file slower than a baseline? For every startup metric
//! (`start_to_*_ms`) present in both files for the same backend and workload, the measured samples are
//! compared with a two-sided Mann–Whitney U test and a bootstrap CI of the ratio of medians
//! (current / baseline). A change counts only when it is statistically significant (p < alpha) AND
//! its whole CI lies beyond the noise threshold — the rule criterion and Firecracker's A/B tests use,
//! which keeps a noisy CI host from raising false alarms.
//!
//! Verdicts:
//! - `regression`: p < alpha and the CI's lower bound is above `1 + noise` (slower);
//! - `improvement`: p < alpha and the CI's upper bound is below `1 - noise` (faster);
//! - `noise`: p < alpha but the CI reaches into the noise band (a real but too small difference);
//! - `ok`: no significant difference (p >= alpha);
//! - `not enough samples`: fewer than `min_samples` measured runs on either side (no verdict);
//! - `zero baseline`: the baseline median is zero (or not finite), so there is no ratio to judge.
//!
//! A baseline cell that the current file cannot answer for fails the gate, one row per startup
//! metric of the baseline cell, so a backend that broke completely never passes silently:
//! - `missing`: the current file has no such cell, or the cell lacks the metric;
//! - `skipped`: the current cell was skipped (backend unavailable, workload unsupported);
//! - `failed`: the current cell has no measured run (every run failed, or it was given up).
//!
//! Only when no baseline cell has a counterpart in the current file at all is the input unusable
//! ([`CheckError::NoCommonMetrics`]): that is comparing the wrong files, not a regression.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::schema::{BenchmarkResult, ResultsFile};
use crate::stats::{self, RatioEstimate};

/// Thresholds of the check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckOptions {
    /// Relative change treated as noise, e.g. `0.05` for 5%.
    pub noise: f64,
    /// Significance level of the Mann–Whitney test.
    pub alpha: f64,
    /// Fewer measured samples than this on either side gives "not enough samples".
    pub min_samples: usize,
    pub seed: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            noise: 0.05,
            alpha: 0.01,
            min_samples: 5,
            seed: stats::DEFAULT_SEED,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Regression,
    Improvement,
    Noise,
    NotEnoughSamples,
    /// The baseline median is zero (or the ratio is not finite): no relative change exists.
    ZeroBaseline,
    /// The current file has no such cell or metric.
    Missing,
    /// The current cell was skipped.
    Skipped,
    /// The current cell has no measured run.
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::Noise => "noise",
            Verdict::NotEnoughSamples => "not enough samples",
            Verdict::ZeroBaseline => "zero baseline",
            Verdict::Missing => "missing",
            Verdict::Skipped => "skipped",
            Verdict::Failed => "failed",
        }
    }

    /// Whether this verdict fails the gate.
    pub fn fails_gate(self) -> bool {
        matches!(
            self,
            Verdict::Regression | Verdict::Missing | Verdict::Skipped | Verdict::Failed
        )
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The comparison of one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricCheck {
    pub backend: String,
    pub workload: String,
    pub metric: String,
    pub baseline_n: usize,
    pub current_n: usize,
    pub baseline_p50: Option<f64>,
    pub current_p50: Option<f64>,
    /// current / baseline, with its bootstrap CI; `None` with too few samples.
    pub ratio: Option<RatioEstimate>,
    pub p_value: Option<f64>,
    pub verdict: Verdict,
    /// Why a cell could not be compared (the skip reason, the first failure).
    pub note: Option<String>,
}

/// Every compared metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub noise: f64,
    pub alpha: f64,
    pub baseline_host: String,
    pub current_host: String,
    pub rows: Vec<MetricCheck>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    #[error(
        "no startup metric (start_to_*_ms) is present for the same backend and workload in both files \
         (baseline has {baseline_cells} cells, current has {current_cells})"
    )]
    NoCommonMetrics {
        baseline_cells: usize,
        current_cells: usize,
    },
    #[error("invalid {name} {value}: {why}")]
    InvalidOption {
        name: &'static str,
        value: f64,
        why: &'static str,
    },
}

/// Whether `metric` is a startup phase metric, as the registry says ([`metrics::is_startup`]).
pub fn is_startup_metric(metric: &str) -> bool {
    metrics::is_startup(metric)
}

/// Compares every startup metric present in both files; see the module documentation.
pub fn check(
    baseline: &ResultsFile,
    current: &ResultsFile,
    opts: &CheckOptions,
) -> Result<CheckReport, CheckError> {
    if !(opts.noise >= 0.0 && opts.noise < 1.0) {
        return Err(CheckError::InvalidOption {
            name: "noise",
            value: opts.noise,
            why: "must be in [0, 1)",
        });
    }
    if !(opts.alpha > 0.0 && opts.alpha < 1.0) {
        return Err(CheckError::InvalidOption {
            name: "alpha",
            value: opts.alpha,
            why: "must be in (0, 1)",
        });
    }
    let mut rows = Vec::new();
    let mut matched = false;
    for base_cell in baseline.benchmarks.iter().filter(|c| c.skipped.is_none()) {
        let base_metrics = metric_names(base_cell);
        let cur_cell = current
            .benchmarks
            .iter()
            .find(|c| c.backend == base_cell.backend && c.workload == base_cell.workload);
        matched |= cur_cell.is_some();
        for metric in base_metrics {
            rows.push(match cur_cell {
                None => unanswered(base_cell, metric, Verdict::Missing, None),
                Some(cur) => {
                    if let Some(reason) = &cur.skipped {
                        unanswered(base_cell, metric, Verdict::Skipped, Some(reason.clone()))
                    } else if cur.measured_runs() == 0 {
                        let first = cur.failures.first().map(|f| f.error.clone());
                        unanswered(base_cell, metric, Verdict::Failed, first)
                    } else if !metric_names(cur).contains(metric) {
                        unanswered(base_cell, metric, Verdict::Missing, None)
                    } else {
                        check_metric(base_cell, cur, metric, opts)
                    }
                }
            });
        }
    }
    if !matched {
        rows.clear();
    }
    if rows.is_empty() {
        return Err(CheckError::NoCommonMetrics {
            baseline_cells: baseline.benchmarks.len(),
            current_cells: current.benchmarks.len(),
        });
    }
    Ok(CheckReport {
        noise: opts.noise,
        alpha: opts.alpha,
        baseline_host: host_line(baseline),
        current_host: host_line(current),
        rows,
    })
}

fn host_line(f: &ResultsFile) -> String {
    format!(
        "{} ({}, {} cores, kernel {}, {})",
        f.host.hostname, f.host.cpu_model, f.host.cores, f.host.kernel, f.started_at
    )
}

fn metric_names(cell: &BenchmarkResult) -> BTreeSet<&str> {
    cell.runs
        .iter()
        .filter(|r| !r.warmup)
        .flat_map(|r| r.metrics.keys())
        .map(String::as_str)
        .filter(|m| is_startup_metric(m))
        .collect()
}

/// A row for a baseline metric the current file cannot answer for.
fn unanswered(
    base_cell: &BenchmarkResult,
    metric: &str,
    verdict: Verdict,
    note: Option<String>,
) -> MetricCheck {
    let base = base_cell.measured_samples(metric);
    MetricCheck {
        backend: base_cell.backend.clone(),
        workload: base_cell.workload.clone(),
        metric: metric.to_string(),
        baseline_n: base.len(),
        current_n: 0,
        baseline_p50: stats::median(&base),
        current_p50: None,
        ratio: None,
        p_value: None,
        verdict,
        note,
    }
}

fn check_metric(
    base_cell: &BenchmarkResult,
    cur_cell: &BenchmarkResult,
    metric: &str,
    opts: &CheckOptions,
) -> MetricCheck {
    let base = base_cell.measured_samples(metric);
    let cur = cur_cell.measured_samples(metric);
    let mut row = MetricCheck {
        backend: base_cell.backend.clone(),
        workload: base_cell.workload.clone(),
        metric: metric.to_string(),
        baseline_n: base.len(),
        current_n: cur.len(),
        baseline_p50: stats::median(&base),
        current_p50: stats::median(&cur),
        ratio: None,
        p_value: None,
        verdict: Verdict::NotEnoughSamples,
        note: None,
    };
    if base.len() < opts.min_samples || cur.len() < opts.min_samples {
        return row;
    }
    row.ratio = stats::ratio_of_medians_ci(&cur, &base, opts.seed);
    row.p_value = stats::mann_whitney_u(&cur, &base).map(|m| m.p_two_sided);
    row.verdict = match (row.ratio, row.p_value) {
        (Some(r), Some(p)) => verdict(r, p, opts),
        // A zero baseline median: no ratio to judge (the samples are plenty).
        _ => Verdict::ZeroBaseline,
    };
    row
}

fn verdict(ratio: RatioEstimate, p: f64, opts: &CheckOptions) -> Verdict {
    if p >= opts.alpha {
        Verdict::Ok
    } else if ratio.ci95[0] > 1.0 + opts.noise {
        Verdict::Regression
    } else if ratio.ci95[1] < 1.0 - opts.noise {
        Verdict::Improvement
    } else {
        Verdict::Noise
    }
}

impl CheckReport {
    pub fn has_regression(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Regression)
    }

    /// Rows that fail the gate: regressions, and baseline cells missing, skipped or failed in the
    /// current file.
    pub fn gate_failures(&self) -> impl Iterator<Item = &MetricCheck> {
        self.rows.iter().filter(|r| r.verdict.fails_gate())
    }

    /// The table for a CI step summary.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## cvbench check\n");
        let _ = writeln!(s, "- baseline: {}", self.baseline_host);
        let _ = writeln!(s, "- current: {}", self.current_host);
        let _ = writeln!(
            s,
            "- rule: regression when Mann–Whitney p < {} and the 95% CI of the change lies beyond ±{:.1}%\n",
            self.alpha,
            self.noise * 100.0
        );
        let _ = writeln!(
            s,
            "| metric | baseline p50 | current p50 | change (95% CI) | p-value | verdict |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---|");
        for r in &self.rows {
            let change = r.ratio.map_or_else(
                || "–".to_string(),
                |ratio| {
                    let (c, ci) = ratio.relative_change();
                    format!("{} [{}, {}]", pct(c), pct(ci[0]), pct(ci[1]))
                },
            );
            let p = r.p_value.map_or_else(|| "–".to_string(), |p| format!("{p:.2e}"));
            let verdict = match r.verdict {
                Verdict::NotEnoughSamples => {
                    format!("not enough samples (n = {} / {})", r.baseline_n, r.current_n)
                }
                Verdict::ZeroBaseline => {
                    format!("no ratio: baseline median is {}", r.baseline_p50.unwrap_or(0.0))
                }
                Verdict::Regression => "**regression**".to_string(),
                v @ (Verdict::Missing | Verdict::Skipped | Verdict::Failed) => match &r.note {
                    Some(note) => format!("**{v} in current**: {}", table_note(note)),
                    None => format!("**{v} in current**"),
                },
                v => v.to_string(),
            };
            let _ = writeln!(
                s,
                "| {}/{} {} | {} (n={}) | {} (n={}) | {} | {} | {} |",
                r.backend,
                r.workload,
                r.metric,
                value(&r.metric, r.baseline_p50),
                r.baseline_n,
                value(&r.metric, r.current_p50),
                r.current_n,
                change,
                p,
                verdict
            );
        }
        s
    }
}

/// Longest note shown in a table cell (the results file keeps the whole error).
const NOTE_CHARS: usize = 160;

/// A skip reason or error as one table cell: one line, `|` escaped, at most [`NOTE_CHARS`] characters.
fn table_note(note: &str) -> String {
    let line = note.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut: String = line.chars().take(NOTE_CHARS).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    cut.replace('|', "\\|")
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

fn value(metric: &str, x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |v| metrics::format(metric, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::{Isolation, IsolationKind};
    use crate::schema::{HostInfo, RunRecord, ToolInfo};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeMap;
    use workload::WorkloadSpec;

    fn file_with(cells: Vec<(&str, Vec<f64>)>) -> ResultsFile {
        let host = HostInfo {
            hostname: "ci".into(),
            kernel: "6.1".into(),
            cpu_model: "cpu".into(),
            cores: 2,
            memory_bytes: 1 << 34,
            cgroup_version: "v1".into(),
            kvm: "none".into(),
            os: "Debian 12".into(),
            arch: String::new(),
            dimensions: Default::default(),
        };
        let tool = ToolInfo {
            name: "cvbench".into(),
            version: "0".into(),
            git_revision: None,
            argv: vec![],
        };
        let mut f = ResultsFile::new("compare", tool, host);
        for (backend, values) in cells {
            let mut cell = BenchmarkResult::new(
                backend,
                Isolation::host_kernel(IsolationKind::Container),
                &WorkloadSpec::Idle,
                BTreeMap::new(),
            );
            for (i, v) in values.into_iter().enumerate() {
                cell.runs.push(RunRecord {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    warmup: false,
                    metrics: BTreeMap::from([
                        (metrics::START_TO_READY_MS.to_string(), v),
                        (metrics::PSS_BYTES.to_string(), 1e6),
                    ]),
                    workload_result: None,
                });
            }
            f.benchmarks.push(cell);
        }
        f
    }

    /// `n` deterministic samples around `center` with ±3% uniform jitter.
    fn synthetic(n: usize, center: f64, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| center * (1.0 + rng.gen_range(-0.03..0.03)))
            .collect()
    }

    fn only_row(r: &CheckReport) -> &MetricCheck {
        assert_eq!(r.rows.len(), 1, "{r:?}");
        &r.rows[0]
    }

    #[test]
    fn identical_distributions_pass() {
        let base = file_with(vec![("container", synthetic(30, 10.0, 1))]);
        let cur = file_with(vec![("container", synthetic(30, 10.0, 2))]);
        let r = check(&base, &cur, &CheckOptions::default()).expect("comparable");
        let row = only_row(&r);
        assert_eq!(row.metric, metrics::START_TO_READY_MS);
        assert!(matches!(row.verdict, Verdict::Ok | Verdict::Noise), "{row:?}");
        assert!(!r.has_regression());
    }

    #[test]
    fn twice_as_slow_is_a_regression() {
        let base = file_with(vec![("container", synthetic(30, 10.0, 1))]);
        let cur = file_with(vec![("container", synthetic(30, 20.0, 2))]);
        let r = check(&base, &cur, &CheckOptions::default()).expect("comparable");
        let row = only_row(&r);
        assert_eq!(row.verdict, Verdict::Regression, "{row:?}");
        let ratio = row.ratio.expect("ratio");
        assert!(ratio.ci95[0] > 1.8 && ratio.ci95[1] < 2.2, "{ratio:?}");
        assert!(row.p_value.is_some_and(|p| p < 1e-6));
        assert!(r.has_regression());
        let md = r.to_markdown();
        assert!(
            md.contains("**regression**") && md.contains("container/idle start_to_ready_ms"),
            "{md}"
        );
        // And the reverse direction is an improvement, not a regression.
        let r = check(&cur, &base, &CheckOptions::default()).expect("comparable");
        assert_eq!(only_row(&r).verdict, Verdict::Improvement);
        assert!(!r.has_regression());
    }

    #[test]
    fn a_significant_shift_inside_the_noise_band_passes() {
        // 2% slower with little jitter: significant, but within the 5% noise threshold.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let base: Vec<f64> = (0..40)
            .map(|_| 10.0 * (1.0 + rng.gen_range(-0.005..0.005)))
            .collect();
        let cur: Vec<f64> = (0..40)
            .map(|_| 10.2 * (1.0 + rng.gen_range(-0.005..0.005)))
            .collect();
        let r = check(
            &file_with(vec![("c", base)]),
            &file_with(vec![("c", cur)]),
            &CheckOptions::default(),
        )
        .expect("comparable");
        let row = only_row(&r);
        assert_eq!(row.verdict, Verdict::Noise, "{row:?}");
        assert!(row.p_value.is_some_and(|p| p < 0.01), "{row:?}");
        assert!(!r.has_regression());
    }

    #[test]
    fn tiny_samples_give_not_enough_samples_rather_than_an_alarm() {
        let base = file_with(vec![("c", vec![10.0, 10.1, 9.9])]);
        let cur = file_with(vec![("c", vec![30.0, 31.0, 29.0])]);
        let r = check(&base, &cur, &CheckOptions::default()).expect("comparable");
        let row = only_row(&r);
        assert_eq!(row.verdict, Verdict::NotEnoughSamples);
        assert!(!r.has_regression());
        assert!(r.to_markdown().contains("not enough samples (n = 3 / 3)"));
    }

    #[test]
    fn a_zero_baseline_median_says_so_instead_of_not_enough_samples() {
        let base = file_with(vec![("c", vec![0.0; 30])]);
        let cur = file_with(vec![("c", synthetic(30, 1.0, 3))]);
        let r = check(&base, &cur, &CheckOptions::default()).expect("comparable");
        let row = only_row(&r);
        assert_eq!(row.verdict, Verdict::ZeroBaseline, "{row:?}");
        let md = r.to_markdown();
        assert!(!md.contains("not enough samples"), "{md}");
        assert!(md.contains("baseline median is 0"), "{md}");
    }

    #[test]
    fn no_common_metric_is_an_error() {
        let base = file_with(vec![("container", synthetic(10, 10.0, 1))]);
        let cur = file_with(vec![("runc", synthetic(10, 10.0, 1))]);
        assert!(matches!(
            check(&base, &cur, &CheckOptions::default()),
            Err(CheckError::NoCommonMetrics { .. })
        ));
        let bad = CheckOptions {
            alpha: 0.0,
            ..CheckOptions::default()
        };
        assert!(matches!(
            check(&base, &base, &bad),
            Err(CheckError::InvalidOption { name: "alpha", .. })
        ));
    }

    #[test]
    fn skipped_cells_and_non_startup_metrics_are_ignored() {
        let base = file_with(vec![
            ("container", synthetic(10, 10.0, 1)),
            ("microvm", Vec::new()),
        ]);
        let mut cur = file_with(vec![
            ("container", synthetic(10, 10.0, 3)),
            ("microvm", Vec::new()),
        ]);
        cur.benchmarks[1].skipped = Some("no KVM".into());
        let r = check(&base, &cur, &CheckOptions::default()).expect("comparable");
        assert_eq!(r.rows.len(), 1);
        assert!(r.rows.iter().all(|row| is_startup_metric(&row.metric)));
        assert!(!is_startup_metric(metrics::PSS_BYTES) && is_startup_metric(metrics::START_TO_EXEC_MS));
        assert!(
            !is_startup_metric("start_to_unregistered_ms"),
            "the registry decides, not the name"
        );
    }

    #[test]
    fn cells_missing_skipped_or_failed_in_current_fail_the_gate() {
        let base = file_with(vec![
            ("container", synthetic(10, 10.0, 1)),
            ("runc", synthetic(10, 10.0, 2)),
            ("microvm", synthetic(10, 10.0, 3)),
            ("qemu", synthetic(10, 10.0, 4)),
        ]);
        // container fine; runc failed every run; microvm newly skipped; qemu absent.
        let mut cur = file_with(vec![
            ("container", synthetic(10, 10.0, 5)),
            ("runc", Vec::new()),
            ("microvm", Vec::new()),
        ]);
        cur.benchmarks[1].failures.push(crate::schema::RunFailure {
            index: 0,
            error: "runc create | failed\nexit 1".into(),
        });
        cur.benchmarks[2].skipped = Some("no /dev/kvm".into());
        let r = check(&base, &cur, &CheckOptions::default()).expect("comparable");
        let verdict = |backend: &str| {
            r.rows
                .iter()
                .find(|row| row.backend == backend)
                .map(|row| row.verdict)
        };
        assert!(matches!(verdict("container"), Some(Verdict::Ok | Verdict::Noise)));
        assert_eq!(verdict("runc"), Some(Verdict::Failed));
        assert_eq!(verdict("microvm"), Some(Verdict::Skipped));
        assert_eq!(verdict("qemu"), Some(Verdict::Missing));
        assert!(!r.has_regression());
        let failing: Vec<&str> = r.gate_failures().map(|row| row.backend.as_str()).collect();
        assert_eq!(failing, ["runc", "microvm", "qemu"]);
        let md = r.to_markdown();
        assert!(md.contains("| runc/idle start_to_ready_ms |"), "{md}");
        assert!(
            md.contains("**failed in current**: runc create \\| failed exit 1"),
            "{md}"
        );
        assert!(md.contains("**skipped in current**: no /dev/kvm"), "{md}");
        assert!(md.contains("**missing in current**"), "{md}");
        assert_eq!(md.lines().filter(|l| l.starts_with("| ")).count(), 1 + 4, "{md}");
    }
}
