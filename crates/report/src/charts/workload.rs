//! Workload figures per backend: throughput (median over runs with its 95% CI as an error bar) and
//! latency p50/p99 (medians over runs, each with its 95% CI), for each workload that reports them.
//! Two families, one chart each: the workload's own figures (`workload.*`, measured inside the
//! sandbox) and the load driven from outside (`outside.*`, wrk in the client network namespace:
//! the "http from outside" chart).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::common::{builder, category_label, mesh, vbar, VBarChart};
use super::{categories, fmt_tick, font, px, px_offset, Chart, ChartText, DrawError};
use crate::model::{self, caption_stats, Model};
use crate::style::Style;
use results::metrics::{self, workload_figure, Quantity, WORKLOAD_LATENCY_P50_US, WORKLOAD_LATENCY_P99_US};

const LATENCY: [&str; 2] = [WORKLOAD_LATENCY_P50_US, WORKLOAD_LATENCY_P99_US];
/// For a load driven from outside (`outside.requests_per_s`): the latency wrk saw.
const OUTSIDE_LATENCY: [&str; 2] = [metrics::OUTSIDE_LATENCY_P50_US, metrics::OUTSIDE_LATENCY_P99_US];

/// sysbench against MariaDB from outside reports one latency percentile, p95 in ms (the second slot
/// names no metric, so it stays empty).
const SYSBENCH_LATENCY: [&str; 2] = [metrics::OUTSIDE_SYSBENCH_P95_MS, ""];

/// Whether `throughput_metric` is sysbench's (the mariadb workload's load from outside).
fn is_sysbench(throughput_metric: &str) -> bool {
    throughput_metric.starts_with("outside.sysbench_")
}

/// The latency pair that goes with `throughput_metric`.
fn latency_metrics(throughput_metric: &str) -> [&'static str; 2] {
    if is_sysbench(throughput_metric) {
        SYSBENCH_LATENCY
    } else if throughput_metric.starts_with(metrics::OUTSIDE_PREFIX) {
        OUTSIDE_LATENCY
    } else {
        LATENCY
    }
}

pub struct Workload {
    workload: String,
    /// Whether this chart shows the load from outside (`outside.*`).
    outside: bool,
    throughput_metric: String,
    text: ChartText,
    rows: Vec<Row>,
}

struct Row {
    name: String,
    colour: usize,
    /// Median throughput and its CI.
    throughput: Option<(f64, [f64; 2])>,
    /// Medians of the latency p50 and p99 in ms, each with its 95% CI in ms.
    latency_ms: [Option<(f64, [f64; 2])>; 2],
}

/// The throughput metric a cell reports in one family (`outside`: the load from outside): the
/// first registered as a rate of events (`workload.requests_per_s`, `workload.tps`,
/// `outside.requests_per_s`, ...).
fn throughput_metric(names: &[&str], outside: bool) -> Option<String> {
    names
        .iter()
        .filter(|m| m.starts_with(metrics::OUTSIDE_PREFIX) == outside)
        .find(|m| matches!(metrics::quantity(m), Quantity::Rate(_)))
        .map(|m| (*m).to_string())
}

pub fn charts(model: &Model<'_>) -> Vec<Workload> {
    let mut out = Vec::new();
    for workload in model.workloads() {
        for outside in [false, true] {
            out.extend(chart(model, workload, outside));
        }
    }
    out
}

/// The chart of one family of `workload`'s figures, if a cell reports its throughput.
fn chart(model: &Model<'_>, workload: &str, outside: bool) -> Option<Workload> {
    let cells = model.ran(workload);
    let metric = cells
        .iter()
        .find_map(|c| throughput_metric(&model::metric_names(c), outside))?;
    let mut rows = Vec::new();
    let mut captions = Vec::new();
    let mut ns = Vec::new();
    for cell in cells {
        let name = crate::model::cell_name(cell);
        let t = model::summary(cell, &metric);
        let latency = latency_metrics(&metric);
        let lat = latency.map(|m| model::summary(cell, m));
        if t.is_none() && lat.iter().all(Option::is_none) {
            // A row without these figures says why, when its cell recorded it.
            if let Some(why) = cell
                .labels
                .get(metrics::OUTSIDE_LOAD_LABEL)
                .filter(|_| outside)
                .and_then(|l| l.strip_prefix("missing: "))
            {
                captions.push(format!("{name}: no figures from outside ({why})"));
            }
            continue;
        }
        let mut parts = Vec::new();
        if let Some(s) = &t {
            ns.push(s.n);
            parts.push(format!(
                "throughput {}",
                caption_stats(metrics::quantity(&metric), s)
            ));
        }
        for (m, s) in latency.iter().zip(&lat) {
            if let Some(s) = s {
                parts.push(format!(
                    "{} {}",
                    workload_figure(m),
                    caption_stats(metrics::quantity(m), s)
                ));
            }
        }
        captions.push(format!("{name}: {}", parts.join("; ")));
        rows.push(Row {
            name,
            colour: model.colour_index(&cell.backend),
            throughput: t.map(|s| (s.p50, s.median_ci95)),
            latency_ms: [0, 1].map(|k| {
                let per_ms = ms_per_unit(latency[k]);
                lat[k]
                    .as_ref()
                    .map(|s| (s.p50 * per_ms, s.median_ci95.map(|v| v * per_ms)))
            }),
        });
    }
    if rows.is_empty() {
        return None;
    }
    Some(Workload {
        workload: workload.to_string(),
        outside,
        throughput_metric: metric,
        text: ChartText::per_backend(model, &ns, &captions),
        rows,
    })
}

/// Milliseconds per recorded unit of a latency metric (µs figures by default).
fn ms_per_unit(metric: &str) -> f64 {
    match metrics::quantity(metric) {
        Quantity::Time(metrics::TimeUnit::Milliseconds) => 1.0,
        Quantity::Time(metrics::TimeUnit::Seconds) => 1e3,
        _ => 1e-3,
    }
}

/// `p50`, `p95`, `p99` from a latency metric's name.
fn percentile_tag(metric: &str) -> &'static str {
    ["p50", "p90", "p95", "p99"]
        .into_iter()
        .find(|p| metric.contains(p))
        .unwrap_or("")
}

impl Chart for Workload {
    fn name(&self) -> String {
        if self.outside {
            format!("outside_{}", self.workload)
        } else {
            format!("workload_{}", self.workload)
        }
    }
    fn title(&self) -> String {
        if self.outside && is_sysbench(&self.throughput_metric) {
            format!(
                "{} from outside (sysbench oltp_read_write): queries/s and p95",
                self.workload
            )
        } else if self.outside {
            format!(
                "{} from outside (wrk, client network namespace): requests/s and latency",
                self.workload
            )
        } else {
            format!("{} workload: throughput and latency per backend", self.workload)
        }
    }
    fn text(&self) -> &ChartText {
        &self.text
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        style: &Style,
    ) -> Result<(), DrawError> {
        let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
        self.draw_throughput(&left, style)?;
        self.draw_latency(&right, style)
    }
}

impl Workload {
    fn names(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.name.clone()).collect()
    }

    /// Left panel: median throughput per backend with its 95% CI as an error bar.
    fn draw_throughput<DB: DrawingBackend>(
        &self,
        left: &DrawingArea<DB, Shift>,
        style: &Style,
    ) -> Result<(), DrawError> {
        let n = px(self.rows.len());
        let names = self.names();
        let value_text = font(style.tick_px(), style.foreground).pos(Pos::new(HPos::Center, VPos::Bottom));
        let throughput = metrics::quantity(&self.throughput_metric);
        let max_t = self
            .rows
            .iter()
            .filter_map(|r| r.throughput.map(|t| t.1[1].max(t.0)))
            .fold(1e-3, f64::max);
        let mut chart = panel(
            left,
            style,
            "throughput (median, 95% CI)",
            &names,
            max_t,
            metrics::label(&self.throughput_metric),
        )?;
        let w = left.dim_in_pixel().0 / (6 * n.max(1));
        for (i, r) in (0u32..).zip(&self.rows) {
            let Some((median, ci)) = r.throughput else {
                continue;
            };
            let colour = style.series(r.colour);
            chart.draw_series([vbar(i, (0.0, median), colour.filled(), (w, w))])?;
            error_bar(&mut chart, style, (i, 0), ci, w)?;
            let above = -px_offset(style.margin() / 2);
            chart.draw_series([EmptyElement::at((SegmentValue::CenterOf(i), ci[1].max(median)))
                + Text::new(throughput.format_number(median), (0, above), value_text.clone())])?;
        }

        Ok(())
    }

    /// Right panel: the workload's latency p50 and p99 per backend (medians over runs).
    fn draw_latency<DB: DrawingBackend>(
        &self,
        right: &DrawingArea<DB, Shift>,
        style: &Style,
    ) -> Result<(), DrawError> {
        let n = px(self.rows.len());
        let names = self.names();
        let value_text = font(style.tick_px(), style.foreground).pos(Pos::new(HPos::Center, VPos::Bottom));
        let max_l = self
            .rows
            .iter()
            .flat_map(|r| r.latency_ms.iter().flatten().map(|(v, ci)| v.max(ci[1])))
            .fold(1e-3, f64::max);
        let mut chart = panel(
            right,
            style,
            if is_sysbench(&self.throughput_metric) {
                "latency p95 seen by sysbench from outside (median, 95% CI)"
            } else if self.throughput_metric.starts_with(metrics::OUTSIDE_PREFIX) {
                "latency p50 / p99 seen by wrk from outside (median, 95% CI)"
            } else {
                "workload latency p50 / p99 (median, 95% CI)"
            },
            &names,
            max_l,
            "latency (ms)",
        )?;
        let w = right.dim_in_pixel().0 / (6 * n.max(1));
        for (i, r) in (0u32..).zip(&self.rows) {
            let colour = style.series(r.colour);
            for (k, value) in r.latency_ms.iter().enumerate() {
                let Some((v, ci)) = *value else { continue };
                // p50 on the left half of the band (solid), p99 on the right (lighter).
                let (fill, margins) = if k == 0 {
                    (colour.filled(), (w, w * 3))
                } else {
                    (colour.mix(0.45).filled(), (w * 3, w))
                };
                chart.draw_series([vbar(i, (0.0, v), fill, margins)])?;
                // The CI bar at the middle of the bar (p50: w..3w of a 6w band, p99: 3w..5w).
                let dx = if k == 0 { -px_offset(w) } else { px_offset(w) };
                error_bar(&mut chart, style, (i, dx), ci, w)?;
                let tag = percentile_tag(latency_metrics(&self.throughput_metric)[k]);
                let pos = if k == 0 { HPos::Right } else { HPos::Left };
                chart.draw_series([Text::new(
                    format!(" {tag} {v:.2} "),
                    (SegmentValue::CenterOf(i), v),
                    value_text.clone().pos(Pos::new(pos, VPos::Bottom)),
                )])?;
            }
        }
        Ok(())
    }
}

/// The 95% CI `ci` of a median as a vertical line with caps `cap_px` wide, on category `i`,
/// `dx` pixels right of its centre.
fn error_bar<DB: DrawingBackend>(
    chart: &mut VBarChart<'_, DB>,
    style: &Style,
    (i, dx): (u32, i32),
    ci: [f64; 2],
    cap_px: u32,
) -> Result<(), DrawError> {
    let line = style.foreground.stroke_width(style.stroke().div_ceil(2));
    let centre = SegmentValue::CenterOf(i);
    let top = chart.backend_coord(&(centre.clone(), ci[1]));
    let bottom = chart.backend_coord(&(centre.clone(), ci[0]));
    chart.draw_series([EmptyElement::at((centre.clone(), ci[0]))
        + PathElement::new(vec![(dx, 0), (dx, top.1 - bottom.1)], line)])?;
    let cap = px_offset(cap_px / 3);
    for y in ci {
        chart.draw_series([EmptyElement::at((centre.clone(), y))
            + PathElement::new(vec![(dx - cap, 0), (dx + cap, 0)], line)])?;
    }
    Ok(())
}

/// One half of the figure, titled `caption`: a category per backend (`names` under the axis) and
/// values from 0 to a fifth above `y_max`, described by `y_desc`.
fn panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    style: &Style,
    caption: &str,
    names: &[String],
    y_max: f64,
    y_desc: &str,
) -> Result<VBarChart<'a, DB>, DrawError> {
    let mut chart = builder(area, style, (style.tick_px() * 2, style.label_px() * 4))
        .caption(caption, font(style.label_px(), style.foreground))
        .build_cartesian_2d(categories(names.len()), 0.0..y_max * 1.2)?;
    mesh(&mut chart, style)
        .y_desc(y_desc)
        .disable_x_mesh()
        .x_labels(names.len())
        .x_label_formatter(&|v| category_label(names, v))
        .y_label_formatter(&|v| fmt_tick(*v))
        .draw()?;
    Ok(chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysbench_pairs_with_its_p95_in_milliseconds() {
        use results::metrics::*;
        assert_eq!(
            latency_metrics(OUTSIDE_SYSBENCH_QPS),
            [OUTSIDE_SYSBENCH_P95_MS, ""]
        );
        assert_eq!(percentile_tag(OUTSIDE_SYSBENCH_P95_MS), "p95");
        assert_eq!(percentile_tag(OUTSIDE_LATENCY_P99_US), "p99");
        assert_eq!(ms_per_unit(OUTSIDE_SYSBENCH_P95_MS), 1.0);
        assert_eq!(ms_per_unit(OUTSIDE_LATENCY_P50_US), 1e-3);
    }

    #[test]
    fn a_load_from_outside_pairs_with_the_latency_wrk_saw() {
        use results::metrics::*;
        assert_eq!(
            latency_metrics(OUTSIDE_REQUESTS_PER_S),
            [OUTSIDE_LATENCY_P50_US, OUTSIDE_LATENCY_P99_US]
        );
        assert_eq!(
            latency_metrics(WORKLOAD_REQUESTS_PER_S),
            [WORKLOAD_LATENCY_P50_US, WORKLOAD_LATENCY_P99_US]
        );
    }

    #[test]
    fn the_two_families_each_find_their_own_throughput() {
        use results::metrics::*;
        let both = [WORKLOAD_REQUESTS_PER_S, OUTSIDE_REQUESTS_PER_S, PSS_BYTES];
        assert_eq!(
            throughput_metric(&both, false).as_deref(),
            Some(WORKLOAD_REQUESTS_PER_S)
        );
        assert_eq!(
            throughput_metric(&both, true).as_deref(),
            Some(OUTSIDE_REQUESTS_PER_S)
        );
        assert_eq!(throughput_metric(&[WORKLOAD_REQUESTS_PER_S], true), None);
    }

    #[test]
    fn throughput_metric_is_the_first_registered_event_rate() {
        use results::metrics::*;
        assert_eq!(
            throughput_metric(&[PSS_BYTES, WORKLOAD_TPS], false).as_deref(),
            Some(WORKLOAD_TPS)
        );
        assert_eq!(
            throughput_metric(&[WORKLOAD_BYTES_PER_S, WORKLOAD_REQUESTS_PER_S], false).as_deref(),
            Some(WORKLOAD_REQUESTS_PER_S)
        );
        // Not guessed from a suffix: an unregistered rate is no throughput.
        assert_eq!(
            throughput_metric(&["workload.widgets_per_s", START_TO_READY_MS], false),
            None
        );
    }
}
