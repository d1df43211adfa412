//! Memory per instance: one horizontal bar per backend × workload, the median PSS split into what
//! the workload itself uses, runtime or VMM overhead, and the guest kernel, where the backend's
//! metrics say so. Rules (medians of the measured runs):
//! - `guest_kernel_bytes` and `vmm_overhead_bytes` are parts of `pss_bytes` (the VMM process holds
//!   guest memory); the workload share is what remains;
//! - `runtime_pss_bytes` (e.g. the `runc` process) is outside the instance's processes and added;
//! - a VM backend with `vmm_overhead_bytes` but no kernel figure shows guest RAM (kernel + workload)
//!   as one segment; one that reports no part at all is drawn as one unsplit segment.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::{hbar, hbar_chart, hbar_totals};
use super::{with_legend_row, Chart, ChartText, DrawError, LegendEntry};
use crate::model::{self, caption_stats, display_name, Model, MIB};
use crate::style::Style;

/// Kinds of segment, in drawing order.
const PARTS: [&str; 5] = [
    "workload (instance processes)",
    "runtime / VMM overhead",
    "guest kernel",
    "guest RAM: kernel + workload (not split)",
    "VMM process incl. guest (not split)",
];

pub struct Memory {
    text: ChartText,
    bars: Vec<Bar>,
}

struct Bar {
    label: String,
    /// MiB per part, indexed like [`PARTS`].
    parts_mib: [f64; 5],
}

/// The split of one cell in bytes, indexed like [`PARTS`]; `None` without a `pss_bytes` sample.
pub fn split(cell: &results::schema::BenchmarkResult) -> Option<[f64; 5]> {
    let median = |m: &str| model::median_of(cell, m);
    let pss = median("pss_bytes")?;
    let kernel = median("guest_kernel_bytes");
    let vmm = median("vmm_overhead_bytes");
    let runtime = median("runtime_pss_bytes").unwrap_or(0.0);
    let is_vm = vmm.is_some()
        || kernel.is_some()
        || median("guest_ram_resident_bytes").is_some()
        || cell.labels.contains_key("guest")
        || cell.backend == "qemu";
    Some(match (is_vm, kernel, vmm) {
        (false, _, _) => [pss, runtime, 0.0, 0.0, 0.0],
        (true, Some(kernel), vmm) => {
            let vmm = vmm.unwrap_or(0.0);
            [(pss - kernel - vmm).max(0.0), vmm + runtime, kernel, 0.0, 0.0]
        }
        (true, None, Some(vmm)) => [0.0, vmm + runtime, 0.0, (pss - vmm).max(0.0), 0.0],
        (true, None, None) => [0.0, runtime, 0.0, 0.0, pss],
    })
}

pub fn chart(model: &Model<'_>) -> Option<Memory> {
    let mut bars = Vec::new();
    let mut captions = Vec::new();
    let mut ns = Vec::new();
    for workload in model.workloads() {
        for cell in model.ran(workload) {
            let Some(parts) = split(cell) else { continue };
            let label = format!(
                "{} · {}",
                display_name(&cell.backend, &cell.labels),
                cell.workload
            );
            if let Some(s) = model::summary(cell, "pss_bytes") {
                ns.push(s.n);
                captions.push(format!("{label}: PSS {}", caption_stats("pss_bytes", &s)));
            }
            bars.push(Bar {
                label,
                parts_mib: parts.map(|b| b / MIB),
            });
        }
    }
    if bars.is_empty() {
        return None;
    }
    Some(Memory {
        text: ChartText::per_backend(model, &ns, &captions),
        bars,
    })
}

impl Chart for Memory {
    fn name(&self) -> String {
        "memory_per_instance".to_string()
    }
    fn title(&self) -> String {
        "Memory per instance once ready (PSS, median)".to_string()
    }
    fn text(&self) -> &ChartText {
        &self.text
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        style: &Style,
    ) -> Result<(), DrawError> {
        let total = |b: &Bar| b.parts_mib.iter().sum::<f64>();
        let entries: Vec<LegendEntry> = PARTS
            .iter()
            .enumerate()
            .filter(|(p, _)| self.bars.iter().any(|b| b.parts_mib[*p] > 0.0))
            .map(|(p, part)| LegendEntry::new(style.series(p).filled(), *part))
            .collect();
        let max = self.bars.iter().map(total).fold(0.0, f64::max).max(1e-3);
        let area = with_legend_row(area, &entries, style)?;
        let labels: Vec<String> = self.bars.iter().map(|b| b.label.clone()).collect();
        let mut chart = hbar_chart(&area, style, &labels, max * 1.2, "memory (MiB)")?;
        let rows = self.bars.len();
        for p in 0..PARTS.len() {
            if self.bars.iter().all(|b| b.parts_mib[p] <= 0.0) {
                continue;
            }
            let fill = style.series(p).filled();
            let rects = self
                .bars
                .iter()
                .enumerate()
                .filter(|(_, b)| b.parts_mib[p] > 0.0)
                .map(|(i, b)| {
                    let from: f64 = b.parts_mib[..p].iter().sum();
                    hbar(rows, i, (from, from + b.parts_mib[p]), fill, style)
                });
            chart.draw_series(rects)?;
        }
        let totals: Vec<(f64, String)> = self
            .bars
            .iter()
            .map(|b| (total(b), format!("{:.2} MiB", total(b))))
            .collect();
        hbar_totals(&mut chart, style, &totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use results::schema::{BenchmarkResult, RunRecord};
    use std::collections::BTreeMap;

    fn cell(backend: &str, metrics: &[(&str, f64)]) -> BenchmarkResult {
        let mut c = BenchmarkResult::new(backend, &workload::WorkloadSpec::Idle, BTreeMap::new());
        c.runs.push(RunRecord {
            index: 0,
            warmup: false,
            metrics: metrics.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
            workload_result: None,
        });
        c
    }

    #[test]
    fn memory_is_split_by_what_the_backend_reports() {
        let runc = cell("runc", &[("pss_bytes", 2.0), ("runtime_pss_bytes", 9.0)]);
        assert_eq!(split(&runc), Some([2.0, 9.0, 0.0, 0.0, 0.0]));
        let vm = cell(
            "microvm",
            &[
                ("pss_bytes", 40.0),
                ("vmm_overhead_bytes", 3.0),
                ("guest_ram_resident_bytes", 37.0),
            ],
        );
        assert_eq!(split(&vm), Some([0.0, 3.0, 0.0, 37.0, 0.0]));
        let full = cell(
            "microvm",
            &[
                ("pss_bytes", 40.0),
                ("vmm_overhead_bytes", 3.0),
                ("guest_kernel_bytes", 22.0),
            ],
        );
        assert_eq!(split(&full), Some([15.0, 3.0, 22.0, 0.0, 0.0]));
        let qemu = cell("qemu", &[("pss_bytes", 100.0)]);
        assert_eq!(split(&qemu), Some([0.0, 0.0, 0.0, 0.0, 100.0]));
        assert_eq!(split(&cell("x", &[])), None);
    }
}
