//! Startup phases: one horizontal bar per backend × workload, split at the median of each phase
//! boundary (`start_to_exec_ms`, `start_to_guest_init_ms`, ..., `start_to_ready_ms`), so where the
//! time goes is visible side by side. Segments are medians of each boundary, so they are a
//! description of the typical launch, not of any single one.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::{hbar, hbar_chart, hbar_totals};
use super::{with_legend_row, Chart, ChartText, DrawError, LegendEntry};
use crate::model::{self, caption_stats, display_name, Model};
use crate::style::Style;

pub struct Phases {
    text: ChartText,
    /// Phase names in the order they happen (by mean median over all bars).
    phase_names: Vec<String>,
    bars: Vec<Bar>,
}

struct Bar {
    label: String,
    /// `(phase index, from_ms, to_ms)`.
    segments: Vec<(usize, f64, f64)>,
    total_ms: f64,
}

/// Short phase name: `start_to_guest_init_ms` -> `guest_init`.
fn phase_of(metric: &str) -> &str {
    metric
        .strip_prefix("start_to_")
        .and_then(|m| m.strip_suffix("_ms"))
        .unwrap_or(metric)
}

pub fn chart(model: &Model<'_>) -> Option<Phases> {
    // (label, [(metric, median)]) per cell that ran.
    let mut cells = Vec::new();
    let mut captions = Vec::new();
    let mut ns = Vec::new();
    for workload in model.workloads() {
        for cell in model.ran(workload) {
            let mut medians: Vec<(String, f64)> = model::metric_names(cell)
                .into_iter()
                .filter(|m| harness::check::is_startup_metric(m))
                .filter_map(|m| model::summary(cell, m).map(|s| (m.to_string(), s.p50)))
                .collect();
            if medians.is_empty() {
                continue;
            }
            medians.sort_by(|a, b| a.1.total_cmp(&b.1));
            let name = display_name(&cell.backend, &cell.labels);
            let label = format!("{name} · {}", cell.workload);
            let phases: Vec<String> = medians
                .iter()
                .map(|(m, v)| format!("{} {}", phase_of(m), model::fmt_value(m, *v)))
                .collect();
            let ready = model::summary(cell, "start_to_ready_ms");
            let ready_text = ready.as_ref().map_or(String::new(), |s| {
                ns.push(s.n);
                format!("ready {}; ", caption_stats("start_to_ready_ms", s))
            });
            captions.push(format!(
                "{label}: {ready_text}phase medians: {}",
                phases.join(", ")
            ));
            cells.push((label, medians));
        }
    }
    if cells.is_empty() {
        return None;
    }
    // Phase order: by their mean position within the bars (fraction of the time to READY).
    let mut names: Vec<(String, f64, u32)> = Vec::new();
    for (_, medians) in &cells {
        let total = medians.last().map_or(1.0, |(_, v)| v.max(1e-9));
        for (m, v) in medians {
            let v = &(v / total);
            match names.iter_mut().find(|(n, _, _)| n == m) {
                Some(entry) => {
                    entry.1 += v;
                    entry.2 += 1;
                }
                None => names.push((m.clone(), *v, 1)),
            }
        }
    }
    names.sort_by(|a, b| (a.1 / f64::from(a.2)).total_cmp(&(b.1 / f64::from(b.2))));
    let phase_names: Vec<String> = names.into_iter().map(|(n, _, _)| n).collect();
    let bars = cells
        .into_iter()
        .map(|(label, medians)| {
            let mut from = 0.0;
            let mut segments = Vec::new();
            for (m, v) in &medians {
                let idx = phase_names.iter().position(|p| p == m).unwrap_or(0);
                segments.push((idx, from, *v));
                from = *v;
            }
            Bar {
                label,
                segments,
                total_ms: from,
            }
        })
        .collect();
    Some(Phases {
        text: ChartText::per_backend(model, &ns, &captions),
        phase_names,
        bars,
    })
}

impl Chart for Phases {
    fn name(&self) -> String {
        "startup_phases".to_string()
    }
    fn title(&self) -> String {
        "Startup phases: where the time to READY goes (medians)".to_string()
    }
    fn text(&self) -> &ChartText {
        &self.text
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        style: &Style,
    ) -> Result<(), DrawError> {
        let entries: Vec<LegendEntry> = self
            .phase_names
            .iter()
            .enumerate()
            .map(|(p, name)| LegendEntry::new(style.series(p).filled(), format!("→ {}", phase_of(name))))
            .collect();
        let max = self.bars.iter().map(|b| b.total_ms).fold(0.0, f64::max).max(1e-3);
        let area = with_legend_row(area, &entries, style)?;
        let labels: Vec<String> = self.bars.iter().map(|b| b.label.clone()).collect();
        let mut chart = hbar_chart(&area, style, &labels, max * 1.22, "time since request (ms)")?;
        let rows = self.bars.len();
        for p in 0..self.phase_names.len() {
            let fill = style.series(p).filled();
            let rects = self.bars.iter().enumerate().flat_map(|(i, bar)| {
                bar.segments
                    .iter()
                    .filter(move |s| s.0 == p)
                    .map(move |&(_, from, to)| hbar(rows, i, (from, to), fill, style))
            });
            chart.draw_series(rects)?;
        }
        let totals: Vec<(f64, String)> = self
            .bars
            .iter()
            .map(|b| (b.total_ms, model::fmt_value("start_to_ready_ms", b.total_ms)))
            .collect();
        hbar_totals(&mut chart, style, &totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_are_shortened() {
        assert_eq!(phase_of("start_to_guest_init_ms"), "guest_init");
        assert_eq!(phase_of("odd"), "odd");
    }
}
