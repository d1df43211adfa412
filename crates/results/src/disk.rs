//! Disk footprint arithmetic: what N instances of one backend cost on disk, from one benchmark cell's
//! shared image size and measured per-instance writable layer.

use crate::schema::BenchmarkResult;

/// What N instances of one backend cost on disk (issue §3): the image is shared and counted once;
/// each instance adds its own writable layer (container upper dir, VM scratch disk), counted as
/// allocated blocks. `naive_full_copy_bytes` is what N full copies (image + layer each) would take —
/// the figure a VM with a private copy of its disk image pays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskFootprint {
    pub instances: u32,
    pub shared_image_bytes: u64,
    /// Median of the measured `instance_disk_bytes`.
    pub per_instance_bytes: u64,
    /// `shared + instances × per_instance`.
    pub total_bytes: u64,
    /// `instances × (shared + per_instance)`.
    pub naive_full_copy_bytes: u64,
}

/// Instance counts the disk figures are given for.
pub const DISK_INSTANCE_COUNTS: [u32; 3] = [1, 10, 100];

/// Disk footprint of a benchmark cell for each of `counts`; empty when the cell has no shared image
/// size or no `instance_disk_bytes` sample (skipped, or every run failed).
pub fn disk_footprint(cell: &BenchmarkResult, counts: &[u32]) -> Vec<DiskFootprint> {
    let Some(shared) = cell.shared_image_bytes else {
        return Vec::new();
    };
    let Some(per_instance) =
        crate::stats::median(&cell.measured_samples(crate::metrics::INSTANCE_DISK_BYTES))
    else {
        return Vec::new();
    };
    // A byte count: non-negative and far below 2^64 (the median of non-negative samples).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let per_instance = per_instance.max(0.0).round() as u64;
    counts
        .iter()
        .map(|&n| {
            let n64 = u64::from(n);
            DiskFootprint {
                instances: n,
                shared_image_bytes: shared,
                per_instance_bytes: per_instance,
                total_bytes: shared.saturating_add(n64.saturating_mul(per_instance)),
                naive_full_copy_bytes: n64.saturating_mul(shared.saturating_add(per_instance)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::{Isolation, IsolationKind};
    use crate::metrics::INSTANCE_DISK_BYTES;
    use crate::schema::RunRecord;
    use std::collections::BTreeMap;
    use workload::WorkloadSpec;

    #[test]
    fn disk_footprint_counts_the_image_once() {
        let mut cell = BenchmarkResult::new(
            "mock",
            Isolation::host_kernel(IsolationKind::Container),
            &WorkloadSpec::Idle,
            BTreeMap::new(),
        );
        assert!(disk_footprint(&cell, &DISK_INSTANCE_COUNTS).is_empty());
        cell.shared_image_bytes = Some(1_000_000);
        for (i, bytes) in [4096.0, 8192.0, 8192.0].into_iter().enumerate() {
            cell.runs.push(RunRecord {
                index: u32::try_from(i).unwrap_or(0),
                warmup: false,
                metrics: BTreeMap::from([(INSTANCE_DISK_BYTES.to_string(), bytes)]),
                workload_result: None,
            });
        }
        let f = disk_footprint(&cell, &DISK_INSTANCE_COUNTS);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].total_bytes, 1_000_000 + 8192);
        assert_eq!(f[2].instances, 100);
        assert_eq!(f[2].total_bytes, 1_000_000 + 100 * 8192);
        assert_eq!(f[2].naive_full_copy_bytes, 100 * 1_008_192);
    }
}
