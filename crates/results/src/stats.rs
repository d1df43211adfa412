//! Statistics: percentiles, bootstrap confidence intervals, outliers, comparisons. One place, unit
//! tested against known values (numpy/scipy), deterministic given a seed.
//!
//! Conventions used everywhere in cvbench:
//! - **Percentiles** use linear interpolation between closest ranks, numpy's default (`method =
//!   "linear"`, Hyndman & Fan type 7): for sorted `x[0..n]` and `q` in `[0, 1]`, `h = (n - 1) q`,
//!   `P(q) = x[⌊h⌋] + (h - ⌊h⌋)(x[⌊h⌋ + 1] - x[⌊h⌋])`. The median is `P(0.5)`.
//! - **Standard deviation** is the sample one (divisor `n - 1`); 0 for a single sample.
//! - **Confidence intervals** are percentile-bootstrap 95% intervals from [`BOOTSTRAP_RESAMPLES`]
//!   resamples drawn with a ChaCha8 generator seeded by the caller, so a given input and seed always
//!   give the same interval.
//! - **Outliers** follow Tukey's rule: outside `[Q1 - 1.5 IQR, Q3 + 1.5 IQR]`. They are flagged by
//!   index and kept in every figure.
//! - Non-finite samples (NaN, ±∞) are ignored by every function here.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::schema::Summary;

/// Seed used for bootstrap resampling so reports are reproducible.
pub const DEFAULT_SEED: u64 = 0x005e_edcb;

/// Number of bootstrap resamples behind every confidence interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Largest `n1 * n2` for which [`mann_whitney_u`] computes the exact null distribution (when there
/// are no ties); above it the normal approximation is accurate to well below the thresholds used.
pub const MANN_WHITNEY_EXACT_MAX_CELLS: usize = 2500;

/// Percentile `q` (in `[0, 1]`) of already **sorted** finite samples by linear interpolation between
/// closest ranks (numpy's default). `None` when `sorted` is empty.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let q = q.clamp(0.0, 1.0);
    let h = last as f64 * q;
    let lo_f = h.floor();
    let frac = h - lo_f;
    // `h` lies in [0, last], so the cast is in range.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let lo = (lo_f as usize).min(last);
    let hi = (lo + 1).min(last);
    Some(sorted[lo] + frac * (sorted[hi] - sorted[lo]))
}

/// Percentile `q` of unsorted samples (see [`percentile_sorted`]).
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    percentile_sorted(&sorted_finite(samples), q)
}

/// Median (the 50th percentile by linear interpolation).
pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 0.5)
}

fn sorted_finite(samples: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Summary of `samples`; `None` when there is no finite sample. Outlier indices refer to positions
/// in `samples` as given.
pub fn summarize(samples: &[f64], seed: u64) -> Option<Summary> {
    let sorted = sorted_finite(samples);
    let n = sorted.len();
    let p = |q: f64| percentile_sorted(&sorted, q);
    let (min, max) = (*sorted.first()?, *sorted.last()?);
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 {
        (sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let (low, high) = tukey_fences(&sorted)?;
    let outliers = samples
        .iter()
        .enumerate()
        .filter(|(_, x)| x.is_finite() && (**x < low || **x > high))
        .map(|(i, _)| i)
        .collect();
    Some(Summary {
        n,
        min,
        p50: p(0.5)?,
        p90: p(0.9)?,
        p99: p(0.99)?,
        max,
        mean,
        sd,
        median_ci95: bootstrap_median_ci(&sorted, seed)?,
        outliers,
    })
}

/// Tukey's fences `(Q1 - 1.5 IQR, Q3 + 1.5 IQR)` of sorted samples.
fn tukey_fences(sorted: &[f64]) -> Option<(f64, f64)> {
    let q1 = percentile_sorted(sorted, 0.25)?;
    let q3 = percentile_sorted(sorted, 0.75)?;
    let iqr = q3 - q1;
    Some((q1 - 1.5 * iqr, q3 + 1.5 * iqr))
}

/// Percentile-bootstrap 95% CI of the median of finite samples.
pub fn bootstrap_median_ci(samples: &[f64], seed: u64) -> Option<[f64; 2]> {
    let finite = sorted_finite(samples);
    if finite.is_empty() {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = vec![0.0; finite.len()];
    let mut medians: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| resampled_median(&finite, &mut buf, &mut rng))
        .collect();
    medians.sort_by(f64::total_cmp);
    Some([
        percentile_sorted(&medians, 0.025)?,
        percentile_sorted(&medians, 0.975)?,
    ])
}

/// Median of one resample (with replacement) of `from`, using `buf` (same length) as scratch.
fn resampled_median(from: &[f64], buf: &mut [f64], rng: &mut ChaCha8Rng) -> f64 {
    for slot in buf.iter_mut() {
        *slot = from[rng.gen_range(0..from.len())];
    }
    median_in_place(buf)
}

/// The median of `buf` by linear interpolation (as [`percentile_sorted`] at 0.5), reordering `buf`:
/// a selection instead of a sort, since the bootstrap needs thousands of them. NaN when empty.
fn median_in_place(buf: &mut [f64]) -> f64 {
    let Some(last) = buf.len().checked_sub(1) else {
        return f64::NAN;
    };
    let lo = last / 2;
    let (_, lo_value, above) = buf.select_nth_unstable_by(lo, f64::total_cmp);
    let lo_value = *lo_value;
    if last % 2 == 0 {
        return lo_value;
    }
    // Even count: interpolate halfway to the next order statistic, the smallest value above.
    let hi_value = above.iter().copied().fold(f64::INFINITY, f64::min);
    lo_value + 0.5 * (hi_value - lo_value)
}

/// Ratio of two medians with its bootstrap CI.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioEstimate {
    /// `median(numerator) / median(denominator)`.
    pub ratio: f64,
    /// Percentile-bootstrap 95% CI of the ratio, both samples resampled independently.
    pub ci95: [f64; 2],
}

impl RatioEstimate {
    /// The relative change `ratio - 1` and its CI, e.g. `0.10` = 10% larger.
    pub fn relative_change(&self) -> (f64, [f64; 2]) {
        (self.ratio - 1.0, [self.ci95[0] - 1.0, self.ci95[1] - 1.0])
    }
}

/// `median(numerator) / median(denominator)` with a percentile-bootstrap 95% CI (both samples
/// resampled independently, [`BOOTSTRAP_RESAMPLES`] times). For `bench check`, the numerator is the
/// current run and the denominator the baseline, so `ratio > 1` means slower. `None` when either side
/// has no finite sample or the denominator's median is not positive. Resamples whose denominator
/// median is 0 give an infinite ratio, which widens the interval rather than hiding it.
pub fn ratio_of_medians_ci(numerator: &[f64], denominator: &[f64], seed: u64) -> Option<RatioEstimate> {
    let num = sorted_finite(numerator);
    let den = sorted_finite(denominator);
    let ratio = percentile_sorted(&num, 0.5)? / percentile_sorted(&den, 0.5)?;
    if !ratio.is_finite() || percentile_sorted(&den, 0.5)? <= 0.0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut nbuf, mut dbuf) = (vec![0.0; num.len()], vec![0.0; den.len()]);
    let mut ratios: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let n = resampled_median(&num, &mut nbuf, &mut rng);
            let d = resampled_median(&den, &mut dbuf, &mut rng);
            if d == 0.0 {
                f64::INFINITY
            } else {
                n / d
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    Some(RatioEstimate {
        ratio,
        ci95: [
            percentile_sorted(&ratios, 0.025)?,
            percentile_sorted(&ratios, 0.975)?,
        ],
    })
}

/// How a Mann–Whitney p-value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PValueMethod {
    /// Exact null distribution of U (no ties, small samples).
    Exact,
    /// Normal approximation with tie and continuity correction.
    Asymptotic,
}

/// Result of a two-sided Mann–Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U statistic of the first sample (`R1 - n1 (n1 + 1) / 2`, scipy's `statistic`).
    pub u: f64,
    pub p_two_sided: f64,
    pub method: PValueMethod,
}

/// Two-sided Mann–Whitney U test of `a` against `b` (non-finite samples ignored; `None` when either
/// side is empty). Matches `scipy.stats.mannwhitneyu(a, b, alternative="two-sided")` with
/// `method="exact"` when there are no ties and `n1 * n2 <= MANN_WHITNEY_EXACT_MAX_CELLS`, and with
/// `method="asymptotic", use_continuity=True` (tie-corrected variance) otherwise.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let a: Vec<f64> = a.iter().copied().filter(|x| x.is_finite()).collect();
    let b: Vec<f64> = b.iter().copied().filter(|x| x.is_finite()).collect();
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Midranks over the pooled sample, remembering which side each value came from.
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = pooled.len();
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0; // Σ (t³ - t) over tie groups
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let midrank = (i + 1 + j) as f64 / 2.0; // ranks i+1 ..= j
        rank_sum_a += midrank * pooled[i..j].iter().filter(|p| p.1).count() as f64;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let u1 = rank_sum_a - n1f * (n1f + 1.0) / 2.0;
    let u_big = u1.max(n1f * n2f - u1);

    if tie_term == 0.0 && n1 * n2 <= MANN_WHITNEY_EXACT_MAX_CELLS {
        // With no ties, U takes integer values; P(U >= u_big) doubled, by symmetry of the null.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let u_big_int = u_big.round() as usize;
        let p = 2.0 * exact_u_sf(n1, n2, u_big_int);
        return Some(MannWhitney {
            u: u1,
            p_two_sided: p.min(1.0),
            method: PValueMethod::Exact,
        });
    }
    let mu = n1f * n2f / 2.0;
    let nf = n as f64;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    let p = if var <= 0.0 {
        1.0 // every value tied: no evidence of a difference
    } else {
        let z = (u_big - mu - 0.5) / var.sqrt();
        erfc(z / std::f64::consts::SQRT_2).min(1.0)
    };
    Some(MannWhitney {
        u: u1,
        p_two_sided: p,
        method: PValueMethod::Asymptotic,
    })
}

/// `P(U >= u)` under the null for sample sizes `m`, `n` without ties, from the exact distribution:
/// the number of arrangements with statistic `k` satisfies `f(i, j, k) = f(i-1, j, k-j) + f(i, j-1, k)`.
fn exact_u_sf(m: usize, n: usize, u: usize) -> f64 {
    let max_u = m * n;
    if u > max_u {
        return 0.0;
    }
    // prev[j][k] = f(i-1, j, k); cur[j][k] = f(i, j, k). Counts in f64: they exceed u64 for large
    // samples, and only their ratio matters.
    let width = max_u + 1;
    let mut prev = vec![0.0f64; (n + 1) * width];
    for j in 0..=n {
        prev[j * width] = 1.0; // f(0, j, 0) = 1
    }
    for _ in 1..=m {
        let mut cur = vec![0.0f64; (n + 1) * width];
        cur[0] = 1.0; // f(i, 0, 0) = 1
        for j in 1..=n {
            for k in 0..width {
                let from_prev = if k >= j { prev[j * width + k - j] } else { 0.0 };
                cur[j * width + k] = from_prev + cur[(j - 1) * width + k];
            }
        }
        prev = cur;
    }
    let dist = &prev[n * width..(n + 1) * width];
    let total: f64 = dist.iter().sum();
    dist[u..].iter().sum::<f64>() / total
}

/// Complementary error function, Chebyshev fit with fractional error below 1.2e-7 everywhere
/// (Numerical Recipes `erfcc`); enough for p-values compared against thresholds like 0.01.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Two-sided permutation test of the difference in medians: the fraction of `resamples` random
/// relabellings of the pooled samples whose |median difference| is at least the observed one
/// (with the +1 correction so p is never 0). Deterministic given `seed`. `None` when a side is empty.
pub fn permutation_test_median(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<f64> {
    let a = sorted_finite(a);
    let b = sorted_finite(b);
    let observed = (percentile_sorted(&a, 0.5)? - percentile_sorted(&b, 0.5)?).abs();
    let mut pooled: Vec<f64> = a.iter().chain(b.iter()).copied().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut at_least = 0usize;
    for _ in 0..resamples {
        // Fisher–Yates shuffle of the pooled samples.
        for i in (1..pooled.len()).rev() {
            let j = rng.gen_range(0..=i);
            pooled.swap(i, j);
        }
        let (mut pa, mut pb) = (pooled[..a.len()].to_vec(), pooled[a.len()..].to_vec());
        pa.sort_by(f64::total_cmp);
        pb.sort_by(f64::total_cmp);
        let diff = (percentile_sorted(&pa, 0.5)? - percentile_sorted(&pb, 0.5)?).abs();
        if diff >= observed - 1e-12 * observed.abs().max(1.0) {
            at_least += 1;
        }
    }
    Some((at_least + 1) as f64 / (resamples + 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([15, 20, 35, 40, 50], [0, 25, 50, 90, 99, 100])
        // -> [15, 20, 35, 46, 49.6, 50]
        let x = [40.0, 15.0, 50.0, 35.0, 20.0];
        let want = [
            (0.0, 15.0),
            (0.25, 20.0),
            (0.5, 35.0),
            (0.9, 46.0),
            (0.99, 49.6),
            (1.0, 50.0),
        ];
        for (q, w) in want {
            let got = percentile(&x, q).unwrap_or(f64::NAN);
            assert!(close(got, w, 1e-12), "q={q}: got {got}, want {w}");
        }
        // Even count: median interpolates the two middle values.
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), Some(2.5));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
    }

    #[test]
    fn summary_matches_numpy_and_flags_tukey_outliers() {
        // numpy: x = [10,11,12,12,13,14,15,16,50]
        // percentile 50/90/99 = 13, 22.8, 47.28; mean 17.0; std(ddof=1) 12.519984025548915
        // Q1 = 12, Q3 = 15, IQR 3 -> fences [7.5, 19.5] -> 50 (index 8) is the outlier.
        let x = [10.0, 11.0, 12.0, 12.0, 13.0, 14.0, 15.0, 16.0, 50.0];
        let s = summarize(&x, DEFAULT_SEED).expect("non-empty");
        assert_eq!(s.n, 9);
        assert_eq!((s.min, s.max), (10.0, 50.0));
        assert!(close(s.p50, 13.0, 1e-12));
        assert!(close(s.p90, 22.8, 1e-12), "{}", s.p90);
        assert!(close(s.p99, 47.28, 1e-12), "{}", s.p99);
        assert!(close(s.mean, 17.0, 1e-12));
        assert!(close(s.sd, 12.519_984_025_548_915, 1e-12), "{}", s.sd);
        assert_eq!(s.outliers, vec![8]);
        assert!(
            s.median_ci95[0] <= s.p50 && s.p50 <= s.median_ci95[1],
            "{:?}",
            s.median_ci95
        );
        assert!(
            s.median_ci95[0] >= 10.0 && s.median_ci95[1] <= 16.0,
            "{:?}",
            s.median_ci95
        );
    }

    #[test]
    fn selection_median_equals_the_sorted_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for n in 1..40 {
            let v: Vec<f64> = (0..n).map(|_| f64::from(rng.gen_range(0u32..20))).collect();
            let mut buf = v.clone();
            assert_eq!(Some(median_in_place(&mut buf)), median(&v), "{v:?}");
        }
        assert!(median_in_place(&mut []).is_nan());
    }

    #[test]
    fn summary_edge_cases() {
        assert_eq!(summarize(&[], 1), None);
        assert_eq!(summarize(&[f64::NAN], 1), None);
        let one = summarize(&[3.0], 1).expect("one sample");
        assert_eq!(
            (one.n, one.sd, one.median_ci95, one.outliers.len()),
            (1, 0.0, [3.0, 3.0], 0)
        );
        // NaN ignored, outlier index still refers to the input position.
        let s = summarize(&[1.0, f64::NAN, 1.0, 1.0, 1.0, 9.0], 1).expect("finite samples");
        assert_eq!(s.n, 5);
        assert_eq!(s.outliers, vec![5]);
    }

    #[test]
    fn bootstrap_is_deterministic_per_seed_and_covers_the_median() {
        let x: Vec<f64> = (0..200)
            .map(|i| f64::from(i % 37) * 1.5 + f64::from(i % 5))
            .collect();
        let a = summarize(&x, 42).expect("samples");
        let b = summarize(&x, 42).expect("samples");
        assert_eq!(a.median_ci95, b.median_ci95);
        let other = bootstrap_median_ci(&x, 43).expect("samples");
        assert!(a.median_ci95[0] <= a.p50 && a.p50 <= a.median_ci95[1]);
        // Different seeds give close, but generally not bit-identical, intervals.
        assert!((other[0] - a.median_ci95[0]).abs() < 5.0);
        // The CI of the median is much narrower than the range for n = 200.
        assert!(
            a.median_ci95[1] - a.median_ci95[0] < (a.max - a.min) / 3.0,
            "{:?}",
            a.median_ci95
        );
    }

    #[test]
    fn ratio_of_medians_detects_a_doubling() {
        let base: Vec<f64> = (0..30).map(|i| 10.0 + f64::from(i % 7) * 0.1).collect();
        let slow: Vec<f64> = base.iter().map(|x| 2.0 * x).collect();
        let r = ratio_of_medians_ci(&slow, &base, DEFAULT_SEED).expect("valid");
        assert!(close(r.ratio, 2.0, 1e-12), "{r:?}");
        assert!(r.ci95[0] > 1.9 && r.ci95[1] < 2.1, "{r:?}");
        let (change, ci) = r.relative_change();
        assert!(close(change, 1.0, 1e-12) && ci[0] > 0.9);
        assert_eq!(ratio_of_medians_ci(&[1.0], &[0.0], 1), None);
        assert_eq!(ratio_of_medians_ci(&[], &[1.0], 1), None);
    }

    #[test]
    fn mann_whitney_exact_matches_scipy() {
        // scipy.stats.mannwhitneyu(a, b, alternative="two-sided", method="exact")
        // -> statistic 1.0, pvalue 0.05714285714285714 (= 2 * 2/70)
        let a = [1.1, 2.3, 3.2, 4.8];
        let b = [3.9, 5.5, 6.1, 7.4];
        let r = mann_whitney_u(&a, &b).expect("non-empty");
        assert_eq!(r.method, PValueMethod::Exact);
        assert_eq!(r.u, 1.0);
        assert!(close(r.p_two_sided, 4.0 / 70.0, 1e-12), "{r:?}");
        // Complete separation of 5 vs 5: p = 2 / C(10,5) = 2/252.
        let r = mann_whitney_u(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).expect("ok");
        assert_eq!(r.u, 0.0);
        assert!(close(r.p_two_sided, 2.0 / 252.0, 1e-12), "{r:?}");
        // Symmetric: swapping the samples swaps U for n1 n2 - U, same p.
        let s = mann_whitney_u(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]).expect("ok");
        assert_eq!(s.u, 25.0);
        assert!(close(s.p_two_sided, r.p_two_sided, 1e-12));
    }

    #[test]
    fn mann_whitney_asymptotic_with_ties_matches_scipy() {
        // a = [1,2,2,3,3,3,4,5], b = [3,4,4,5,5,6,7,7]
        // scipy.stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
        // -> statistic 7.5, pvalue 0.010515245935858907
        let a = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0];
        let b = [3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 7.0, 7.0];
        let r = mann_whitney_u(&a, &b).expect("non-empty");
        assert_eq!(r.method, PValueMethod::Asymptotic);
        assert_eq!(r.u, 7.5);
        assert!(close(r.p_two_sided, SCIPY_TIES_P, 1e-5), "{r:?}");
        // Everything tied: no evidence either way.
        let all = mann_whitney_u(&[2.0; 6], &[2.0; 6]).expect("non-empty");
        assert_eq!(all.p_two_sided, 1.0);
        assert_eq!(mann_whitney_u(&[], &[1.0]), None);
    }

    /// See `mann_whitney_asymptotic_with_ties_matches_scipy`.
    const SCIPY_TIES_P: f64 = 0.010_515_245_935_858_907;

    #[test]
    fn mann_whitney_large_sample_uses_normal_approximation() {
        // 60 vs 60 without ties is beyond the exact limit: scipy asymptotic gives
        // statistic 780.0, pvalue 8.747567722893498e-08 for a = 0..60, b = 20.5..80.5
        let a: Vec<f64> = (0..60).map(f64::from).collect();
        let b: Vec<f64> = (0..60).map(|i| f64::from(i) + 20.5).collect();
        let r = mann_whitney_u(&a, &b).expect("non-empty");
        assert_eq!(r.method, PValueMethod::Asymptotic);
        assert_eq!(r.u, 780.0);
        assert!(close(r.p_two_sided, SCIPY_LARGE_P, 1e-5), "{r:?}");
    }

    /// See `mann_whitney_large_sample_uses_normal_approximation`.
    const SCIPY_LARGE_P: f64 = 8.747_567_722_893_498e-8;

    #[test]
    fn erfc_matches_reference_values() {
        // math.erfc
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
            (2.5, 0.000_406_952_017_444_959),
            (-1.0, 1.842_700_792_949_715),
        ] {
            assert!(close(erfc(x), want, 2e-7), "erfc({x}) = {}", erfc(x));
        }
    }

    #[test]
    fn permutation_test_separates_shifted_samples() {
        let a: Vec<f64> = (0..20).map(|i| f64::from(i % 5)).collect();
        let same = permutation_test_median(&a, &a, 999, 7).expect("ok");
        assert!(same > 0.5, "{same}");
        let b: Vec<f64> = a.iter().map(|x| x + 10.0).collect();
        let shifted = permutation_test_median(&a, &b, 999, 7).expect("ok");
        assert!(shifted <= 0.002, "{shifted}");
    }
}
