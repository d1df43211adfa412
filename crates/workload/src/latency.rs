//! Latency samples and their percentiles, as the workloads report them in RESULT.
//!
//! The harness keeps its own statistics over runs; this is only the per-run summary a workload
//! computes over its own requests or transactions.

use std::time::Duration;

/// Per-operation latencies of one run.
#[derive(Debug, Default, Clone)]
pub struct LatencySamples {
    micros: Vec<f64>,
}

impl LatencySamples {
    pub fn with_capacity(n: usize) -> Self {
        LatencySamples {
            micros: Vec::with_capacity(n),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        self.micros.push(latency.as_secs_f64() * 1e6);
    }

    pub fn merge(&mut self, other: LatencySamples) {
        self.micros.extend(other.micros);
    }

    /// `(p50, p99)` in microseconds, or `None` with no samples.
    pub fn p50_p99_us(&self) -> Option<(f64, f64)> {
        let mut sorted = self.micros.clone();
        sorted.sort_by(f64::total_cmp);
        Some((percentile(&sorted, 50.0)?, percentile(&sorted, 99.0)?))
    }
}

/// The `p`-th percentile (0..=100) of ascending `sorted` values, interpolating linearly between the
/// two closest ranks (the definition numpy uses by default). `None` for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = p.clamp(0.0, 100.0) / 100.0 * last as f64;
    // rank is within 0..=last, so the float-to-index conversions below cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let frac = rank - rank.floor();
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_known_values() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        // numpy.percentile(range(1, 101), [0, 50, 99, 100]) == [1, 50.5, 99.01, 100]
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 50.0), Some(50.5));
        assert!((percentile(&v, 99.0).unwrap() - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0, 3.0], 50.0), Some(2.0));
    }

    #[test]
    fn samples_are_sorted_before_summarising() {
        let mut s = LatencySamples::default();
        assert_eq!(s.p50_p99_us(), None);
        for us in [300u64, 100, 200] {
            s.record(Duration::from_micros(us));
        }
        let (p50, p99) = s.p50_p99_us().unwrap();
        assert!((p50 - 200.0).abs() < 1e-6);
        assert!((p99 - 298.0).abs() < 1e-6);
    }
}
