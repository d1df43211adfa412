//! Startup CDF: for one workload, the cumulative distribution of `start_to_ready_ms` per backend —
//! what fraction of launches were ready within x ms. Steps, with a marker per run, so n is visible.

use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::{axis_areas, builder, mesh, one_two_five};
use super::{fmt_tick, with_legend_row, Chart, ChartOptions, ChartText, DrawError, LegendEntry, LOG_RATIO};
use crate::model::{self, caption_stats, Model};
use crate::style::Style;
use results::metrics;

/// The metric drawn.
pub const METRIC: &str = results::metrics::START_TO_READY_MS;

pub struct StartupCdf {
    workload: String,
    text: ChartText,
    log_x: bool,
    series: Vec<Series>,
    /// Backends that did not run this workload, with why: listed in the legend.
    missing: Vec<String>,
}

struct Series {
    label: String,
    colour: usize,
    sorted: Vec<f64>,
}

/// One chart per workload that has startup samples.
pub fn charts(model: &Model<'_>, opts: ChartOptions) -> Vec<StartupCdf> {
    let mut out = Vec::new();
    let skipped = model.skipped();
    for workload in model.workloads() {
        let mut series = Vec::new();
        let mut captions = Vec::new();
        let mut ns = Vec::new();
        for cell in model.ran(workload) {
            let mut sorted = cell.measured_samples(METRIC);
            sorted.retain(|x| x.is_finite());
            sorted.sort_by(f64::total_cmp);
            let Some(s) = model::summary(cell, METRIC) else {
                continue;
            };
            let name = crate::model::cell_name(cell);
            captions.push(format!(
                "{name}: {}",
                caption_stats(metrics::quantity(METRIC), &s)
            ));
            series.push(Series {
                label: format!(
                    "{name}  p50 {}  p99 {}",
                    metrics::format(METRIC, s.p50),
                    metrics::format(METRIC, s.p99)
                ),
                colour: model.colour_index(&cell.backend),
                sorted,
            });
            ns.push(s.n);
        }
        if series.is_empty() {
            continue;
        }
        out.push(StartupCdf {
            workload: workload.to_string(),
            text: ChartText::per_backend(model, &ns, &captions),
            log_x: opts.log_x,
            series,
            missing: skipped
                .iter()
                .filter(|(_, w, _)| *w == workload)
                .map(|(backend, _, reason)| {
                    // The legend has one line per entry: the full reason is in the report's
                    // "Skipped" table.
                    model::shorten(&format!("{backend}: skipped ({reason})"), LEGEND_SKIP_CHARS)
                })
                .collect(),
        });
    }
    out
}

/// Longest legend line for a skipped backend (fits a 1280-pixel-wide chart at the default font).
const LEGEND_SKIP_CHARS: usize = 100;

impl Chart for StartupCdf {
    fn name(&self) -> String {
        format!("startup_cdf_{}", self.workload)
    }
    fn title(&self) -> String {
        format!("Startup: request → READY, {} workload (CDF)", self.workload)
    }
    fn text(&self) -> &ChartText {
        &self.text
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        style: &Style,
    ) -> Result<(), DrawError> {
        let all = self.series.iter().flat_map(|s| s.sorted.iter().copied());
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        if !(lo.is_finite() && hi.is_finite()) {
            return Ok(());
        }
        let mut entries: Vec<LegendEntry> = self
            .series
            .iter()
            .map(|s| LegendEntry::new(style.series(s.colour).filled(), s.label.clone()))
            .collect();
        entries.extend(
            self.missing
                .iter()
                .map(|m| LegendEntry::new(style.grid.filled(), m.clone())),
        );
        let area = with_legend_row(area, &entries, style)?;
        // Backends an order of magnitude apart are unreadable on a linear axis.
        let log_x = self.log_x || hi > LOG_RATIO * lo.max(1e-9);
        let x_desc = if log_x {
            "time to READY (ms, log scale)"
        } else {
            "time to READY (ms)"
        };
        let mut axes = builder(&area, style, axis_areas(style));
        if log_x {
            let lo = (lo * 0.8).max(1e-3);
            let hi = hi * 1.25;
            let chart = axes.build_cartesian_2d(
                (lo..hi).log_scale().with_key_points(one_two_five(lo, hi)),
                0.0..100.0,
            )?;
            self.plot(chart, style, x_desc)
        } else {
            let span = (hi - lo).max(hi * 0.05).max(1e-3);
            let chart = axes.build_cartesian_2d((lo - span * 0.05).max(0.0)..hi + span * 0.05, 0.0..100.0)?;
            self.plot(chart, style, x_desc)
        }
    }
}

impl StartupCdf {
    fn plot<'a, DB, X>(
        &self,
        mut chart: ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>,
        style: &Style,
        x_desc: &str,
    ) -> Result<(), DrawError>
    where
        DB: DrawingBackend + 'a,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        mesh(&mut chart, style)
            .x_desc(x_desc)
            .y_desc("launches ready (%)")
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for s in &self.series {
            let colour = style.series(s.colour);
            let n = s.sorted.len();
            #[allow(clippy::cast_precision_loss)] // run counts are small
            let pct = |i: usize| (i as f64 + 1.0) * 100.0 / n as f64;
            let mut steps = Vec::with_capacity(2 * n + 1);
            if let Some(first) = s.sorted.first() {
                steps.push((*first, 0.0));
            }
            for (i, x) in s.sorted.iter().enumerate() {
                let below = if i == 0 { 0.0 } else { pct(i - 1) };
                steps.push((*x, below));
                steps.push((*x, pct(i)));
            }
            let line = ShapeStyle::from(&colour).stroke_width(style.stroke());
            chart.draw_series(LineSeries::new(steps, line))?;
            let r = style.stroke() + 2;
            chart.draw_series(
                s.sorted
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Circle::new((*x, pct(i)), r, colour.filled())),
            )?;
        }
        Ok(())
    }
}
