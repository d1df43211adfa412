//! Memory per instance: one horizontal bar per backend × workload, the median PSS split into what
//! the workload itself uses, runtime or VMM overhead, and guest RAM. Whether a cell is a VM comes
//! from its recorded isolation kind. Rules (medians of the measured runs):
//! - on the host kernel (containers, OCI runtimes, ...), `pss_bytes` is the workload's own;
//! - in a VM, the VMM process holds guest memory: `vmm_overhead_bytes` is the part of `pss_bytes`
//!   that is not guest RAM, the rest is guest RAM (kernel + workload, not split); a VM that reports
//!   no overhead figure is drawn as one unsplit segment;
//! - `runtime_pss_bytes` (e.g. the `runc` process) is outside the instance's processes and added.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::{hbar, hbar_chart, hbar_totals};
use super::{with_legend_row, Chart, ChartText, DrawError, LegendEntry};
use crate::model::{self, caption_stats, Model, MIB};
use crate::style::Style;
use results::metrics::{self, PSS_BYTES, RUNTIME_PSS_BYTES, VMM_OVERHEAD_BYTES};

/// Kinds of segment, in drawing order, with the palette index each is drawn in (fixed, so a part
/// keeps its colour whichever parts a report has).
const PARTS: [(&str, usize); 4] = [
    ("workload (instance processes)", 0),
    ("runtime / VMM overhead", 1),
    ("guest RAM: kernel + workload (not split)", 3),
    ("VMM process incl. guest (not split)", 4),
];

pub struct Memory {
    text: ChartText,
    bars: Vec<Bar>,
}

struct Bar {
    label: String,
    /// MiB per part, indexed like [`PARTS`].
    parts_mib: [f64; 4],
}

/// The split of one cell in bytes, indexed like [`PARTS`]; `None` without a `pss_bytes` sample.
pub fn split(cell: &results::schema::BenchmarkResult) -> Option<[f64; 4]> {
    let median = |m: &str| model::median_of(cell, m);
    let pss = median(PSS_BYTES)?;
    let runtime = median(RUNTIME_PSS_BYTES).unwrap_or(0.0);
    if !cell.isolation.kind.is_vm() {
        return Some([pss, runtime, 0.0, 0.0]);
    }
    Some(match median(VMM_OVERHEAD_BYTES) {
        Some(vmm) => [0.0, vmm + runtime, (pss - vmm).max(0.0), 0.0],
        None => [0.0, runtime, 0.0, pss],
    })
}

pub fn chart(model: &Model<'_>) -> Option<Memory> {
    let mut bars = Vec::new();
    let mut captions = Vec::new();
    let mut ns = Vec::new();
    for workload in model.workloads() {
        for cell in model.ran(workload) {
            let Some(parts) = split(cell) else { continue };
            let label = format!("{} · {}", crate::model::cell_name(cell), cell.workload);
            if let Some(s) = model::summary(cell, PSS_BYTES) {
                ns.push(s.n);
                captions.push(format!(
                    "{label}: {} {}",
                    metrics::label(PSS_BYTES),
                    caption_stats(metrics::quantity(PSS_BYTES), &s)
                ));
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
            .map(|(_, (part, colour))| LegendEntry::new(style.series(*colour).filled(), *part))
            .collect();
        let max = self.bars.iter().map(total).fold(0.0, f64::max).max(1e-3);
        let area = with_legend_row(area, &entries, style)?;
        let labels: Vec<String> = self.bars.iter().map(|b| b.label.clone()).collect();
        let mut chart = hbar_chart(&area, style, &labels, max * 1.2, "memory (MiB)")?;
        let rows = self.bars.len();
        for (p, (_, colour)) in PARTS.iter().enumerate() {
            if self.bars.iter().all(|b| b.parts_mib[p] <= 0.0) {
                continue;
            }
            let fill = style.series(*colour).filled();
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
    use results::isolation::{Isolation, IsolationKind, KvmFlavour};
    use results::schema::{BenchmarkResult, RunRecord};
    use std::collections::BTreeMap;

    fn cell(isolation: Isolation, metrics: &[(&str, f64)]) -> BenchmarkResult {
        let mut c = BenchmarkResult::new("any", isolation, &workload::WorkloadSpec::Idle, BTreeMap::new());
        c.runs.push(RunRecord {
            index: 0,
            warmup: false,
            metrics: metrics.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
            workload_result: None,
        });
        c
    }

    #[test]
    fn memory_is_split_by_the_recorded_isolation_kind() {
        let oci = Isolation::host_kernel(IsolationKind::OciRuntime);
        let runc = cell(oci, &[(PSS_BYTES, 2.0), (RUNTIME_PSS_BYTES, 9.0)]);
        assert_eq!(split(&runc), Some([2.0, 9.0, 0.0, 0.0]));
        let own_vmm = Isolation::vm(IsolationKind::MicroVm, KvmFlavour::Hardware);
        let vm = cell(
            own_vmm,
            &[
                (PSS_BYTES, 40.0),
                (VMM_OVERHEAD_BYTES, 3.0),
                (metrics::GUEST_RAM_RESIDENT_BYTES, 37.0),
            ],
        );
        assert_eq!(split(&vm), Some([0.0, 3.0, 37.0, 0.0]));
        // A VM that reports no part is one unsplit segment, whatever its name; a container named
        // "qemu" is still a container.
        let other_vmm = Isolation::vm(IsolationKind::OtherVmm, KvmFlavour::Tcg);
        assert_eq!(
            split(&cell(other_vmm, &[(PSS_BYTES, 100.0)])),
            Some([0.0, 0.0, 0.0, 100.0])
        );
        let mut named_qemu = cell(
            Isolation::host_kernel(IsolationKind::Container),
            &[(PSS_BYTES, 5.0)],
        );
        named_qemu.backend = "qemu".into();
        assert_eq!(split(&named_qemu), Some([5.0, 0.0, 0.0, 0.0]));
        assert_eq!(split(&cell(oci, &[])), None);
    }
}
