//! Startup phases: for one workload, one horizontal bar per backend, split at the median of each
//! phase boundary (`start_to_exec_ms`, `start_to_guest_init_ms`, ..., `start_to_ready_ms`), so where
//! the time goes is visible side by side. Segments are medians of each boundary, so they are a
//! description of the typical launch, not of any single one.
//!
//! Backends can be three orders of magnitude apart (qemu under TCG next to a container), which
//! leaves the fast bars invisible on a linear axis. When the slowest bar is more than
//! [`LOG_RATIO`] times the fastest, the time axis is logarithmic, like the startup CDFs: segments
//! still run between consecutive boundaries, the first from a floor below every first boundary
//! (stated in the caption), and a segment's length shows the ratio of its end to its start.

use plotters::coord::combinators::{BindKeyPoints, IntoLogRange};
use plotters::coord::ranged1d::Ranged;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::{hbar, hbar_chart, hbar_chart_over, hbar_totals, one_two_five, HBarChart};
use super::{fmt_tick, with_legend_row, Chart, ChartText, DrawError, LegendEntry, LOG_RATIO};
use crate::model::{self, caption_stats, Model};
use crate::style::Style;
use results::metrics;

/// The metric a bar ends at.
const READY: &str = metrics::START_TO_READY_MS;

pub struct Phases {
    workload: String,
    text: ChartText,
    /// Phase names of every workload, in the order they happen; a phase's colour is its index
    /// here, so it is the same in every workload's chart.
    phase_names: Vec<String>,
    bars: Vec<Bar>,
    axis: Axis,
}

struct Bar {
    label: String,
    /// `(phase index, from_ms, to_ms)`.
    segments: Vec<(usize, f64, f64)>,
    total_ms: f64,
}

/// The time axis of one chart.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Axis {
    Linear,
    /// Logarithmic from `floor_ms`, where every bar starts.
    Log {
        floor_ms: f64,
    },
}

/// One backend that ran the workload: its phase boundaries' medians, smallest first.
struct Cell {
    label: String,
    medians: Vec<(String, f64)>,
    caption: String,
    n: Option<usize>,
}

/// Short phase name, the registry's label: `start_to_guest_init_ms` -> `guest_init`.
fn phase_of(metric: &str) -> &str {
    metrics::label(metric)
}

/// One chart per workload with phase timings.
pub fn charts(model: &Model<'_>) -> Vec<Phases> {
    let per_workload: Vec<(&str, Vec<Cell>)> = model
        .workloads()
        .into_iter()
        .map(|w| (w, cells(model, w)))
        .filter(|(_, cells)| !cells.is_empty())
        .collect();
    let phase_names = phase_order(
        per_workload
            .iter()
            .flat_map(|(_, cells)| cells.iter().map(|c| c.medians.as_slice())),
    );
    per_workload
        .into_iter()
        .map(|(workload, cells)| chart(model, workload, cells, &phase_names))
        .collect()
}

fn cells(model: &Model<'_>, workload: &str) -> Vec<Cell> {
    let mut out = Vec::new();
    for cell in model.ran(workload) {
        let mut medians: Vec<(String, f64)> = model::metric_names(cell)
            .into_iter()
            .filter(|m| metrics::is_startup(m))
            .filter_map(|m| model::summary(cell, m).map(|s| (m.to_string(), s.p50)))
            .collect();
        if medians.is_empty() {
            continue;
        }
        medians.sort_by(|a, b| a.1.total_cmp(&b.1));
        let label = crate::model::cell_name(cell);
        let phases: Vec<String> = medians
            .iter()
            .map(|(m, v)| format!("{} {}", phase_of(m), metrics::format(m, *v)))
            .collect();
        let ready = model::summary(cell, READY);
        let ready_text = ready.as_ref().map_or(String::new(), |s| {
            format!("ready {}; ", caption_stats(metrics::quantity(READY), s))
        });
        out.push(Cell {
            caption: format!("{label}: {ready_text}phase medians: {}", phases.join(", ")),
            label,
            medians,
            n: ready.map(|s| s.n),
        });
    }
    out
}

/// Phase names by their mean position within the bars (fraction of the time to READY).
fn phase_order<'c>(bars: impl Iterator<Item = &'c [(String, f64)]>) -> Vec<String> {
    let mut names: Vec<(String, f64, u32)> = Vec::new();
    for medians in bars {
        let total = medians.last().map_or(1.0, |(_, v)| v.max(1e-9));
        for (m, v) in medians {
            let v = v / total;
            match names.iter_mut().find(|(n, _, _)| n == m) {
                Some(entry) => {
                    entry.1 += v;
                    entry.2 += 1;
                }
                None => names.push((m.clone(), v, 1)),
            }
        }
    }
    names.sort_by(|a, b| (a.1 / f64::from(a.2)).total_cmp(&(b.1 / f64::from(b.2))));
    names.into_iter().map(|(n, _, _)| n).collect()
}

fn chart(model: &Model<'_>, workload: &str, cells: Vec<Cell>, phase_names: &[String]) -> Phases {
    let mut captions = Vec::with_capacity(cells.len() + 1);
    let mut ns = Vec::with_capacity(cells.len());
    let bars: Vec<Bar> = cells
        .into_iter()
        .map(|cell| {
            captions.push(cell.caption);
            ns.extend(cell.n);
            let mut from = 0.0;
            let mut segments = Vec::with_capacity(cell.medians.len());
            for (m, v) in &cell.medians {
                let idx = phase_names.iter().position(|p| p == m).unwrap_or(0);
                segments.push((idx, from, *v));
                from = *v;
            }
            Bar {
                label: cell.label,
                segments,
                total_ms: from,
            }
        })
        .collect();
    let axis = axis_for(&bars);
    if let Axis::Log { floor_ms } = axis {
        captions.push(format!(
            "Log time axis (slowest bar {:.0}× the fastest): every bar starts at {} ms, not 0, and a \
             segment's length shows how many times later its phase ends than the one before, not \
             its duration; the phase medians above give the times.",
            spread(&bars).unwrap_or(LOG_RATIO),
            fmt_tick(floor_ms)
        ));
    }
    Phases {
        workload: workload.to_string(),
        text: ChartText::per_backend(model, &ns, &captions),
        phase_names: phase_names.to_vec(),
        bars,
        axis,
    }
}

/// Slowest bar over fastest, when the fastest took a positive time.
fn spread(bars: &[Bar]) -> Option<f64> {
    let totals = bars.iter().map(|b| b.total_ms);
    let fastest = totals.clone().fold(f64::INFINITY, f64::min);
    let slowest = totals.fold(0.0, f64::max);
    (fastest > 0.0 && fastest.is_finite()).then(|| slowest / fastest)
}

/// Logarithmic when the bars differ by more than [`LOG_RATIO`], from the floor of the earliest
/// first boundary.
fn axis_for(bars: &[Bar]) -> Axis {
    if spread(bars).is_none_or(|s| s <= LOG_RATIO) {
        return Axis::Linear;
    }
    let first = bars
        .iter()
        .filter_map(|b| b.segments.first().map(|s| s.2))
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    Axis::Log {
        floor_ms: log_floor(first),
    }
}

/// The largest power of ten at most half of `first_ms`, so the shortest first segment still spans
/// a factor of two; at least 1 µs.
fn log_floor(first_ms: f64) -> f64 {
    10f64.powf((first_ms / 2.0).log10().floor()).max(1e-3)
}

impl Chart for Phases {
    fn name(&self) -> String {
        format!("startup_phases_{}", self.workload)
    }
    fn title(&self) -> String {
        format!("Startup phases to READY, {} workload (medians)", self.workload)
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
            .filter(|(p, _)| self.bars.iter().any(|b| b.segments.iter().any(|s| s.0 == *p)))
            .map(|(p, name)| LegendEntry::new(style.series(p).filled(), format!("→ {}", phase_of(name))))
            .collect();
        let max = self.bars.iter().map(|b| b.total_ms).fold(0.0, f64::max).max(1e-3);
        let area = with_legend_row(area, &entries, style)?;
        let labels: Vec<String> = self.bars.iter().map(|b| b.label.clone()).collect();
        match self.axis {
            Axis::Linear => {
                let mut chart = hbar_chart(&area, style, &labels, max * 1.22, "time since request (ms)")?;
                self.plot(&mut chart, style, 0.0)
            }
            Axis::Log { floor_ms } => {
                // Room for the total labels: a fifth of the decades the bars span.
                let hi = max * (max / floor_ms).powf(0.2);
                let x = (floor_ms..hi)
                    .log_scale()
                    .with_key_points(one_two_five(floor_ms, hi));
                let mut chart =
                    hbar_chart_over(&area, style, &labels, x, "time since request (ms, log scale)")?;
                self.plot(&mut chart, style, floor_ms)
            }
        }
    }
}

impl Phases {
    /// The segments (none starting below `floor`) and the total of every bar.
    fn plot<DB: DrawingBackend, X: Ranged<ValueType = f64>>(
        &self,
        chart: &mut HBarChart<'_, DB, X>,
        style: &Style,
        floor: f64,
    ) -> Result<(), DrawError> {
        let rows = self.bars.len();
        for p in 0..self.phase_names.len() {
            let fill = style.series(p).filled();
            let rects = self.bars.iter().enumerate().flat_map(|(i, bar)| {
                bar.segments
                    .iter()
                    .filter(move |s| s.0 == p)
                    .map(move |&(_, from, to)| hbar(rows, i, (from.max(floor), to.max(floor)), fill, style))
            });
            chart.draw_series(rects)?;
        }
        let totals: Vec<(f64, String)> = self
            .bars
            .iter()
            .map(|b| (b.total_ms, metrics::format(READY, b.total_ms)))
            .collect();
        hbar_totals(chart, style, &totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(boundaries: &[f64]) -> Bar {
        let mut from = 0.0;
        let segments = boundaries
            .iter()
            .enumerate()
            .map(|(i, &to)| {
                let s = (i, from, to);
                from = to;
                s
            })
            .collect();
        Bar {
            label: String::new(),
            segments,
            total_ms: from,
        }
    }

    #[test]
    fn phase_names_are_shortened() {
        assert_eq!(phase_of(metrics::START_TO_GUEST_INIT_MS), "guest_init");
        assert_eq!(phase_of("odd"), "odd");
    }

    #[test]
    fn axis_turns_logarithmic_past_twenty_times_from_a_floor_below_every_first_boundary() {
        // The example run's idle workload: container, runc, qemu under TCG.
        let bars = [bar(&[2.68, 3.05, 3.33]), bar(&[21.81]), bar(&[1139.0])];
        assert_eq!(axis_for(&bars), Axis::Log { floor_ms: 1.0 });
        let close = [bar(&[2.0, 3.0]), bar(&[59.0])];
        assert_eq!(axis_for(&close), Axis::Linear, "19.7x stays linear");
        assert_eq!(axis_for(&[bar(&[0.0])]), Axis::Linear, "no positive bar");
    }

    #[test]
    fn log_floor_is_a_power_of_ten_at_most_half_the_first_boundary() {
        assert_eq!(log_floor(2.68), 1.0);
        assert_eq!(log_floor(21.81), 10.0);
        assert!((log_floor(1.5) - 0.1).abs() < 1e-12);
        assert_eq!(log_floor(1e-9), 1e-3);
    }

    #[test]
    fn phases_are_ordered_by_their_share_of_the_time_to_ready() {
        let a = [("exec".to_string(), 1.0), ("ready".to_string(), 4.0)];
        let b = [
            ("vm".to_string(), 1.0),
            ("init".to_string(), 5.0),
            ("ready".to_string(), 10.0),
        ];
        let order = phase_order([&a[..], &b[..]].into_iter());
        assert_eq!(order, ["vm", "exec", "init", "ready"]);
    }
}
