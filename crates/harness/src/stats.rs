//! Statistics: percentiles, bootstrap confidence intervals, outliers, comparisons. One place, unit
//! tested against known values, deterministic given a seed.

use crate::results::Summary;

/// Seed used for bootstrap resampling so reports are reproducible.
pub const DEFAULT_SEED: u64 = 0x5eed_cb;

/// Summary of `samples`; `None` when there are no samples.
pub fn summarize(samples: &[f64], seed: u64) -> Option<Summary> {
    let _ = (samples, seed);
    todo!("stats::summarize is being written (issue 4 §5)")
}
