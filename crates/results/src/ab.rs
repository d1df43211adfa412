//! `bench ab`: the statistics and the verdict of a same-host A/B comparison, without running
//! anything. Firecracker's performance CI does it this way: both builds run interleaved on one host in
//! the same minutes, and a metric counts as changed only when a permutation test on the difference of
//! medians is significant (p < alpha) AND the relative change of the medians lies beyond the noise
//! threshold. The `cli` crate runs the trials and feeds the samples here.
//!
//! Verdicts (the same words as `bench check`):
//! - `regression`: p < alpha and B's median is more than `noise` above A's (slower);
//! - `improvement`: p < alpha and B's median is more than `noise` below A's (faster);
//! - `noise`: p < alpha but the change is within ±noise (real, too small to matter);
//! - `ok`: p >= alpha;
//! - `not enough samples`: fewer than `min_samples` samples on either side.

use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::check::Verdict;
use crate::comparable::{CellMismatch, Difference};
use crate::metrics;
use crate::stats::{self, RatioEstimate};

/// Permutation resamples per metric: p-values down to about 1e-4 are resolved.
pub const PERMUTATION_RESAMPLES: usize = 10_000;

/// Thresholds of the A/B verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AbOptions {
    /// Significance level of the permutation test.
    pub alpha: f64,
    /// Relative change of the medians treated as noise, e.g. `0.05` for 5%.
    pub noise: f64,
    /// Fewer samples than this on either side gives "not enough samples".
    pub min_samples: usize,
    /// Seed of the permutation test (and of nothing else).
    pub seed: u64,
}

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "A",
            Side::B => "B",
        }
    }
}

/// One invocation of a build: trial `trial` of cell `cell`, on `side`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub trial: u32,
    pub cell: usize,
    pub side: Side,
}

/// The interleaved schedule: for every trial and every cell, A and B once each, in an order drawn
/// from `seed` (A B or B A), so neither build always runs first and drift hits both alike. The same
/// seed gives the same schedule.
pub fn schedule(trials: u32, cells: usize, seed: u64) -> Vec<Slot> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(trials as usize * cells * 2);
    for trial in 0..trials {
        for cell in 0..cells {
            let first = if rng.gen_bool(0.5) { Side::A } else { Side::B };
            let second = match first {
                Side::A => Side::B,
                Side::B => Side::A,
            };
            out.push(Slot {
                trial,
                cell,
                side: first,
            });
            out.push(Slot {
                trial,
                cell,
                side: second,
            });
        }
    }
    out
}

/// The verdict on one metric of one cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbRow {
    pub backend: String,
    pub workload: String,
    pub metric: String,
    pub a_n: usize,
    pub b_n: usize,
    pub a_p50: Option<f64>,
    pub b_p50: Option<f64>,
    /// `median(B) / median(A) - 1`.
    pub change: Option<f64>,
    /// median(B) / median(A) with its bootstrap 95% CI (for the reader; the verdict uses `change`).
    pub ratio: Option<RatioEstimate>,
    /// Two-sided permutation test of the difference of medians.
    pub p_value: Option<f64>,
    pub verdict: Verdict,
}

/// Judges one metric from A's and B's samples; see the module documentation.
pub fn judge(backend: &str, workload: &str, metric: &str, a: &[f64], b: &[f64], opts: &AbOptions) -> AbRow {
    let (a_p50, b_p50) = (stats::median(a), stats::median(b));
    let change = match (a_p50, b_p50) {
        (Some(x), Some(y)) if x > 0.0 => Some(y / x - 1.0),
        _ => None,
    };
    let mut row = AbRow {
        backend: backend.to_string(),
        workload: workload.to_string(),
        metric: metric.to_string(),
        a_n: a.len(),
        b_n: b.len(),
        a_p50,
        b_p50,
        change,
        ratio: None,
        p_value: None,
        verdict: Verdict::NotEnoughSamples,
    };
    if a.len() < opts.min_samples || b.len() < opts.min_samples {
        return row;
    }
    row.ratio = stats::ratio_of_medians_ci(b, a, opts.seed);
    row.p_value = stats::permutation_test_median(b, a, PERMUTATION_RESAMPLES, opts.seed);
    row.verdict = match (change, row.p_value) {
        (Some(c), Some(p)) => {
            if p >= opts.alpha {
                Verdict::Ok
            } else if c > opts.noise {
                Verdict::Regression
            } else if c < -opts.noise {
                Verdict::Improvement
            } else {
                Verdict::Noise
            }
        }
        _ => Verdict::NotEnoughSamples,
    };
    row
}

/// What one side ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideInfo {
    /// As given: a path or a git revision.
    pub spec: String,
    /// The `bench` binary that ran.
    pub binary: String,
    /// The commit it was built from, for a revision.
    pub commit: Option<String>,
    /// Extra environment (`--a-env` / `--b-env`), `KEY=VALUE`.
    pub env: Vec<String>,
}

/// A trial invocation that failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialFailure {
    pub trial: u32,
    pub side: Side,
    pub backend: String,
    pub workload: String,
    pub error: String,
}

/// The JSON verdict of `bench ab`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbReport {
    pub a: SideInfo,
    pub b: SideInfo,
    pub host: String,
    pub alpha: f64,
    pub noise: f64,
    /// Seed of the schedule and of the permutation tests: the same seed gives the same order.
    pub seed: u64,
    pub trials: u32,
    pub runs_per_trial: u32,
    /// The order the invocations ran in, e.g. `["A", "B", "B", "A", ...]` (cells interleaved).
    pub order: Vec<Slot>,
    pub rows: Vec<AbRow>,
    pub failures: Vec<TrialFailure>,
    /// Host-class differences between what A and B recorded (refused unless allowed).
    pub host_differences: Vec<Difference>,
    /// Cells whose isolation, labels or workload spec differ between A and B.
    pub cell_differences: Vec<CellMismatch>,
    /// `regression` when any metric regressed or a trial failed, else `ok`.
    pub verdict: String,
    /// Wall-clock time of the trials, seconds.
    pub elapsed_s: f64,
}

impl AbReport {
    pub fn has_regression(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Regression)
    }

    /// Sets `verdict` from the rows and failures.
    pub fn decide(&mut self) {
        self.verdict = if self.has_regression() {
            "regression"
        } else if !self.failures.is_empty() {
            "failed trials"
        } else {
            "ok"
        }
        .to_string();
    }

    /// The table for a CI step summary.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let side = |x: &SideInfo| {
            let mut t = format!("`{}`", x.spec);
            if let Some(c) = &x.commit {
                let _ = write!(t, " (commit {})", &c[..c.len().min(12)]);
            }
            for e in &x.env {
                let _ = write!(t, " `{e}`");
            }
            t
        };
        let _ = writeln!(s, "## cvbench A/B\n");
        let _ = writeln!(s, "- A: {}", side(&self.a));
        let _ = writeln!(s, "- B: {}", side(&self.b));
        let _ = writeln!(s, "- host: {}", self.host);
        let _ = writeln!(
            s,
            "- {} trials × {} run(s) per side, interleaved in random order (seed {}), {:.0} s",
            self.trials, self.runs_per_trial, self.seed, self.elapsed_s
        );
        let _ = writeln!(
            s,
            "- rule: regression when the permutation test on the difference of medians gives p < {} and the \
             median changes by more than ±{:.1}%\n",
            self.alpha,
            self.noise * 100.0
        );
        let _ = writeln!(
            s,
            "| metric | A p50 | B p50 | change (95% CI) | p-value | verdict |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---|");
        for r in &self.rows {
            let change = match (r.change, r.ratio) {
                (Some(c), Some(ratio)) => {
                    let (_, ci) = ratio.relative_change();
                    format!("{} [{}, {}]", pct(c), pct(ci[0]), pct(ci[1]))
                }
                (Some(c), None) => pct(c),
                _ => "–".to_string(),
            };
            let p = r.p_value.map_or_else(|| "–".to_string(), |p| format!("{p:.2e}"));
            let verdict = match r.verdict {
                Verdict::NotEnoughSamples => format!("not enough samples (n = {} / {})", r.a_n, r.b_n),
                Verdict::Regression => "**regression**".to_string(),
                v => v.to_string(),
            };
            let _ = writeln!(
                s,
                "| {}/{} {} | {} (n={}) | {} (n={}) | {} | {} | {} |",
                r.backend,
                r.workload,
                r.metric,
                value(&r.metric, r.a_p50),
                r.a_n,
                value(&r.metric, r.b_p50),
                r.b_n,
                change,
                p,
                verdict
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "\n### Failed trials\n");
            for f in &self.failures {
                let _ = writeln!(
                    s,
                    "- trial {} {} {}/{}: {}",
                    f.trial,
                    f.side.as_str(),
                    f.backend,
                    f.workload,
                    f.error
                );
            }
        }
        let differences = crate::comparable::Comparability {
            host: self.host_differences.clone(),
            cells: self.cell_differences.clone(),
        };
        if !differences.is_comparable() {
            let _ = writeln!(s);
            s.push_str(
                &differences
                    .to_markdown()
                    .replace("| baseline | current |", "| A | B |"),
            );
        }
        s
    }
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

    const OPTS: AbOptions = AbOptions {
        alpha: 0.01,
        noise: 0.05,
        min_samples: 5,
        seed: 7,
    };

    /// `n` samples around `center` with ±`spread` deterministic jitter.
    fn samples(n: usize, center: f64, spread: f64, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| center * (1.0 + rng.gen_range(-spread..spread)))
            .collect()
    }

    #[test]
    fn the_schedule_runs_each_side_once_per_trial_and_cell_in_a_seeded_order() {
        let s = schedule(20, 3, 42);
        assert_eq!(s.len(), 120);
        for pair in s.chunks(2) {
            assert_eq!((pair[0].trial, pair[0].cell), (pair[1].trial, pair[1].cell));
            assert_ne!(pair[0].side, pair[1].side);
        }
        let a_first = s.chunks(2).filter(|p| p[0].side == Side::A).count();
        assert!(
            a_first > 0 && a_first < 60,
            "both orders occur: {a_first} of 60 start with A"
        );
        assert_eq!(schedule(20, 3, 42), s, "same seed, same order");
        assert_ne!(schedule(20, 3, 43), s, "another seed, another order");
    }

    #[test]
    fn a_clear_slowdown_beyond_the_noise_is_a_regression_and_the_reverse_an_improvement() {
        let a = samples(20, 10.0, 0.02, 1);
        let b = samples(20, 11.0, 0.02, 2);
        let row = judge("container", "idle", metrics::START_TO_READY_MS, &a, &b, &OPTS);
        assert_eq!(row.verdict, Verdict::Regression, "{row:?}");
        assert!(row.p_value.is_some_and(|p| p < 0.001), "{row:?}");
        assert!(row.change.is_some_and(|c| (c - 0.1).abs() < 0.03), "{row:?}");
        let row = judge("container", "idle", metrics::START_TO_READY_MS, &b, &a, &OPTS);
        assert_eq!(row.verdict, Verdict::Improvement, "{row:?}");
    }

    #[test]
    fn a_significant_change_inside_the_noise_band_is_noise_and_equal_sides_are_ok() {
        let a = samples(30, 10.0, 0.002, 3);
        let b = samples(30, 10.3, 0.002, 4);
        let row = judge("c", "idle", metrics::START_TO_READY_MS, &a, &b, &OPTS);
        assert!(row.p_value.is_some_and(|p| p < 0.01), "{row:?}");
        assert_eq!(row.verdict, Verdict::Noise, "3% < 5% noise: {row:?}");
        let same = vec![2.5; 10];
        let row = judge("c", "idle", metrics::START_TO_READY_MS, &same, &same, &OPTS);
        assert_eq!(row.verdict, Verdict::Ok);
        assert_eq!(row.p_value, Some(1.0));
    }

    #[test]
    fn a_large_change_that_is_not_significant_is_ok_and_few_samples_are_not_judged() {
        // Medians 10 and 12 but overlapping wildly: p >= alpha.
        let a = [5.0, 10.0, 20.0, 8.0, 30.0, 9.0];
        let b = [6.0, 12.0, 19.0, 7.0, 31.0, 13.0];
        let row = judge("c", "idle", metrics::START_TO_READY_MS, &a, &b, &OPTS);
        assert_eq!(row.verdict, Verdict::Ok, "{row:?}");
        let row = judge(
            "c",
            "idle",
            metrics::START_TO_READY_MS,
            &[1.0; 3],
            &[9.0; 3],
            &OPTS,
        );
        assert_eq!(row.verdict, Verdict::NotEnoughSamples);
    }

    #[test]
    fn markdown_names_sides_failures_and_differences() {
        let a = samples(10, 10.0, 0.01, 1);
        let b = samples(10, 12.0, 0.01, 2);
        let side = |spec: &str| SideInfo {
            spec: spec.into(),
            binary: "/x/bench".into(),
            commit: Some("0123456789abcdef".into()),
            env: vec!["CVBENCH_RUNC=/opt/runc".into()],
        };
        let mut r = AbReport {
            a: side("main"),
            b: side("HEAD"),
            host: "h".into(),
            alpha: 0.01,
            noise: 0.05,
            seed: 9,
            trials: 10,
            runs_per_trial: 1,
            order: schedule(10, 1, 9),
            rows: vec![judge("runc", "idle", metrics::START_TO_READY_MS, &a, &b, &OPTS)],
            failures: vec![TrialFailure {
                trial: 3,
                side: Side::B,
                backend: "runc".into(),
                workload: "idle".into(),
                error: "exit status 1".into(),
            }],
            host_differences: vec![],
            cell_differences: vec![CellMismatch {
                backend: "runc".into(),
                workload: "idle".into(),
                differences: vec![Difference {
                    dimension: "labels.runc_version".into(),
                    baseline: "1.1.5".into(),
                    current: "1.2.0".into(),
                }],
            }],
            verdict: String::new(),
            elapsed_s: 12.0,
        };
        r.decide();
        assert_eq!(r.verdict, "regression");
        let md = r.to_markdown();
        for needle in [
            "- A: `main` (commit 0123456789ab) `CVBENCH_RUNC=/opt/runc`",
            "**regression**",
            "trial 3 B runc/idle: exit status 1",
            "| cell | dimension | A | B |",
            "| runc/idle | labels.runc_version | 1.1.5 | 1.2.0 |",
        ] {
            assert!(md.contains(needle), "{needle:?} missing from\n{md}");
        }
        r.rows.clear();
        r.decide();
        assert_eq!(r.verdict, "failed trials");
    }
}
