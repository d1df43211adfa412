//! Startup trend across commits (`bench trend`): for one backend × workload, each startup metric's
//! median per commit with its bootstrap 95% CI as a band and error bar, x = commits in order. One
//! colour per metric; one line (and marker shape) per **host class**: a line joins only commits
//! measured on the same class, since figures of two machine types are not one series (see
//! [`results::history`]). Regressions and improvements that a `bench ab` / `bench check` verdict
//! recorded for a commit are marked at its point. With [`TrendOptions::per_metric`] each metric gets
//! its own chart.
//!
//! [`write_trend`] draws every chart (SVG and PNG) and writes `trend.md`, a summary for a PR comment.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::common::{axis_areas, builder, category_label, mesh};
use super::{
    categories, fmt_tick, font, px, render, with_legend_row, Chart, ChartText, DrawError, Figure, LegendEntry,
};
use crate::style::Style;
use crate::{ReportError, ReportOptions};
use results::history::{self, HistoryEntry, PointMark, Trend, TrendFilter, TrendSeries};
use results::metrics;

/// Name of the Markdown summary [`write_trend`] writes.
pub const SUMMARY_FILE: &str = "trend.md";

/// What [`write_trend`] draws.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrendOptions {
    /// Backends and metrics to draw (empty: all).
    pub filter: TrendFilter,
    /// One chart per backend × workload × metric instead of one per backend × workload.
    pub per_metric: bool,
}

/// One drawn line: a metric on one host class.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendLine {
    pub metric: String,
    /// `hc1`, `hc2`, ...: index + 1 into [`Trend::host_classes`].
    pub host_class: usize,
    /// Colour index (per metric, in the order metrics appear).
    pub colour: usize,
    pub label: String,
    pub points: Vec<LinePoint>,
}

/// One commit's figure on a line.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePoint {
    /// Category on the x axis (index into the chart's ticks).
    pub x: usize,
    pub median: f64,
    pub ci95: [f64; 2],
    /// The text of the verdict marks at this point (`regression +12% (bench ab)`), empty when none.
    pub marks: Vec<String>,
    /// A regression (or a gate failure) is among the marks.
    pub regressed: bool,
}

/// The trend of one backend × workload (and metric, with [`TrendOptions::per_metric`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrendChart {
    pub backend: String,
    pub workload: String,
    /// Set for a per-metric chart.
    pub metric: Option<String>,
    /// x tick labels: `abc1234 11-29`.
    pub ticks: Vec<String>,
    /// The unit of every line's values (startup phases are all milliseconds).
    pub unit: &'static str,
    pub lines: Vec<TrendLine>,
    text: ChartText,
}

/// `hc1`, the name of host class `i` (0-based) in charts and the summary.
pub fn class_name(i: usize) -> String {
    format!("hc{}", i + 1)
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// `regression +12.0% (bench ab)`.
fn mark_text(m: &PointMark) -> String {
    let change = m.change.map_or_else(String::new, |c| format!(" {}", pct(c)));
    format!("{}{change} ({})", m.verdict, m.source.as_str())
}

/// File-name-safe text: letters, digits, `-` and `_`; anything else becomes `_`.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every chart of `trend`: one per backend × workload, or per backend × workload × metric.
pub fn charts(trend: &Trend, per_metric: bool) -> Vec<TrendChart> {
    let ticks: Vec<String> = trend
        .ticks
        .iter()
        .map(|t| format!("{} {}", t.short_commit, t.day.get(5..).unwrap_or(&t.day)))
        .collect();
    let mut out = Vec::new();
    for (backend, workload) in trend.cells() {
        let series: Vec<&TrendSeries> = trend.series_of(backend, workload).collect();
        let mut metric_names: Vec<&str> = Vec::new();
        for s in &series {
            if !metric_names.contains(&s.metric.as_str()) {
                metric_names.push(&s.metric);
            }
        }
        let groups: Vec<(Option<&str>, Vec<&TrendSeries>)> = if per_metric {
            metric_names
                .iter()
                .map(|m| {
                    (
                        Some(*m),
                        series.iter().copied().filter(|s| s.metric == *m).collect(),
                    )
                })
                .collect()
        } else {
            vec![(None, series.clone())]
        };
        for (metric, group) in groups {
            out.push(chart(
                trend,
                backend,
                workload,
                metric,
                &group,
                &metric_names,
                &ticks,
            ));
        }
    }
    out
}

fn chart(
    trend: &Trend,
    backend: &str,
    workload: &str,
    metric: Option<&str>,
    series: &[&TrendSeries],
    metric_names: &[&str],
    ticks: &[String],
) -> TrendChart {
    let several_classes = series.iter().any(|s| s.host_class != series[0].host_class);
    let configs: Vec<&str> = {
        let mut c: Vec<&str> = series.iter().map(|s| s.config_hash.as_str()).collect();
        c.dedup();
        c
    };
    let mut lines = Vec::new();
    let mut captions = Vec::new();
    for s in series {
        let colour = metric_names.iter().position(|m| *m == s.metric).unwrap_or(0);
        let mut label = metrics::label(&s.metric).to_string();
        if several_classes {
            let _ = write!(
                label,
                " · {} {}",
                marker_symbol(s.host_class),
                class_name(s.host_class)
            );
        }
        if configs.len() > 1 {
            let _ = write!(
                label,
                " · config {}",
                &s.config_hash[..s.config_hash.len().min(6)]
            );
        }
        let points: Vec<LinePoint> = s
            .points
            .iter()
            .map(|p| LinePoint {
                x: p.x,
                median: p.median,
                ci95: p.ci95,
                marks: p.marks.iter().map(mark_text).collect(),
                regressed: p.marks.iter().any(|m| m.verdict.fails_gate()),
            })
            .collect();
        captions.push(series_caption(trend, s, &label));
        lines.push(TrendLine {
            metric: s.metric.clone(),
            host_class: s.host_class,
            colour,
            label,
            points,
        });
    }
    let unit = series.first().map_or("", |s| metrics::quantity(&s.metric).unit());
    let ns: Vec<usize> = series.iter().flat_map(|s| s.points.iter().map(|p| p.n)).collect();
    let n = match (ns.iter().min(), ns.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => format!("n = {lo} per point"),
        (Some(lo), Some(hi)) => format!("n = {lo}–{hi} per point"),
        _ => "no points".to_string(),
    };
    let classes: Vec<usize> = {
        let mut c: Vec<usize> = series.iter().map(|s| s.host_class).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let class_text = if let [only] = classes.as_slice() {
        let c = &trend.host_classes[*only];
        format!(
            "{}, {} cores, KVM {}, kernel {}",
            c.cpu_model, c.cores, c.kvm, c.kernel
        )
    } else {
        let shapes: Vec<String> = classes
            .iter()
            .map(|c| format!("{} {}", marker_symbol(*c), class_name(*c)))
            .collect();
        format!(
            "{} host classes, never joined: {}",
            classes.len(),
            shapes.join(", ")
        )
    };
    let loaded = if trend.notes.is_empty() {
        String::new()
    } else {
        format!(" · {} noted (trend.md)", trend.notes.len())
    };
    TrendChart {
        backend: backend.to_string(),
        workload: workload.to_string(),
        metric: metric.map(str::to_string),
        ticks: ticks.to_vec(),
        unit,
        lines,
        text: ChartText {
            subtitle: format!("median, bootstrap 95% CI · {n} · {class_text}{loaded}"),
            caption: captions.join("\n"),
        },
    }
}

/// `ready · hc1: 5 commits; latest 12.3 ms [11.9, 12.8] (n = 10) at fac6c16; from previous +2.0%`.
fn series_caption(trend: &Trend, s: &TrendSeries, label: &str) -> String {
    let Some(last) = s.points.last() else {
        return format!("{label}: no points");
    };
    let f = |v: f64| metrics::format(&s.metric, v);
    let num = |v: f64| metrics::quantity(&s.metric).format_number(v);
    let mut text = format!(
        "{label} on {}: {} commit(s); latest {} [{}, {}] (n = {}) at {}",
        class_name(s.host_class),
        s.points.len(),
        f(last.median),
        num(last.ci95[0]),
        num(last.ci95[1]),
        last.n,
        trend.ticks[last.x].short_commit
    );
    if let Some(c) = s.last_change() {
        let _ = write!(text, "; from the previous commit on this host class {}", pct(c));
    }
    for p in &s.points {
        for m in &p.marks {
            let _ = write!(text, "; {}: {}", trend.ticks[p.x].short_commit, mark_text(m));
        }
        if !p.changed_labels.is_empty() {
            let _ = write!(
                text,
                "; {}: labels changed ({})",
                trend.ticks[p.x].short_commit,
                p.changed_labels.join(", ")
            );
        }
    }
    text
}

/// The marker of host class `i` as text, for subtitles and legends.
fn marker_symbol(i: usize) -> &'static str {
    match i % 3 {
        0 => "●",
        1 => "▲",
        _ => "✕",
    }
}

impl TrendChart {
    /// Every line, for tests and captions.
    pub fn lines(&self) -> &[TrendLine] {
        &self.lines
    }
}

impl Chart for TrendChart {
    fn name(&self) -> String {
        match &self.metric {
            Some(m) => format!(
                "trend_{}_{}_{}",
                slug(&self.backend),
                slug(&self.workload),
                slug(m)
            ),
            None => format!("trend_{}_{}", slug(&self.backend), slug(&self.workload)),
        }
    }

    fn title(&self) -> String {
        let what = self
            .metric
            .as_deref()
            .map_or_else(|| "startup phases".to_string(), |m| metrics::label(m).to_string());
        format!("{} · {}: {what} across commits", self.backend, self.workload)
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
            .lines
            .iter()
            .map(|l| LegendEntry::new(style.series(l.colour).filled(), l.label.clone()))
            .collect();
        let area = with_legend_row(area, &entries, style)?;
        let y_max = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.ci95[1].max(p.median)))
            .fold(1e-3f64, f64::max);
        let n = self.ticks.len().max(1);
        let mut chart =
            builder(&area, style, axis_areas(style)).build_cartesian_2d(categories(n), 0.0..y_max * 1.2)?;
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.unit)
        };
        mesh(&mut chart, style)
            .x_desc("commit, oldest to newest")
            .y_desc(format!("time from start{unit}"))
            .x_labels(n.min(12))
            .x_label_formatter(&|v| category_label(&self.ticks, v))
            .y_label_formatter(&|v| fmt_tick(*v))
            .disable_x_mesh()
            .draw()?;
        let at = |x: usize| SegmentValue::CenterOf(px(x));
        let stroke = style.stroke();
        // Bands of several metrics overlap: lighter, so the lines stay readable.
        let band = if self.lines.len() > 2 { 0.07 } else { 0.18 };
        for line in &self.lines {
            let colour = style.series(line.colour);
            if line.points.len() >= 2 {
                let upper = line.points.iter().map(|p| (at(p.x), p.ci95[1]));
                let lower = line.points.iter().rev().map(|p| (at(p.x), p.ci95[0]));
                chart.draw_series(std::iter::once(Polygon::new(
                    upper.chain(lower).collect::<Vec<_>>(),
                    colour.mix(band).filled(),
                )))?;
            }
            let path = line.points.iter().map(|p| (at(p.x), p.median));
            if line.host_class == 0 {
                chart.draw_series(LineSeries::new(path, colour.stroke_width(stroke)))?;
            } else {
                chart.draw_series(DashedLineSeries::new(
                    path,
                    stroke * 4,
                    stroke * 2,
                    colour.stroke_width(stroke),
                ))?;
            }
            // Error bars: the CI at every point, also where a single point has no band.
            chart.draw_series(line.points.iter().map(|p| {
                PathElement::new(
                    vec![(at(p.x), p.ci95[0]), (at(p.x), p.ci95[1])],
                    colour.stroke_width((stroke / 2).max(1)),
                )
            }))?;
            let size = stroke + 4;
            for p in &line.points {
                let pt = (at(p.x), p.median);
                match line.host_class % 3 {
                    0 => chart.draw_series(std::iter::once(Circle::new(pt, size, colour.filled())))?,
                    1 => chart.draw_series(std::iter::once(TriangleMarker::new(
                        pt,
                        size + 2,
                        colour.filled(),
                    )))?,
                    _ => chart.draw_series(std::iter::once(Cross::new(
                        pt,
                        size,
                        colour.stroke_width(stroke),
                    )))?,
                };
            }
            for p in line.points.iter().filter(|p| !p.marks.is_empty()) {
                let ring = ShapeStyle {
                    color: style.foreground.to_rgba(),
                    filled: false,
                    stroke_width: stroke,
                };
                chart.draw_series(std::iter::once(Circle::new((at(p.x), p.median), size * 3, ring)))?;
                let symbol = if p.regressed { "▲" } else { "▼" };
                let text =
                    font(style.legend_px(), style.foreground).pos(Pos::new(HPos::Center, VPos::Bottom));
                chart.draw_series(std::iter::once(Text::new(
                    format!("{symbol} {}", p.marks.join("; ")),
                    (at(p.x), p.ci95[1].max(p.median) + y_max * 0.04),
                    text,
                )))?;
            }
        }
        Ok(())
    }
}

/// What [`write_trend`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenTrend {
    pub summary: PathBuf,
    /// The summary's Markdown (also in `summary`).
    pub markdown: String,
    pub figures: Vec<Figure>,
    pub trend: Trend,
}

/// Draws the trend of `entries` into `dir` (`trend_<backend>_<workload>[_<metric>].svg/.png`) and
/// writes [`SUMMARY_FILE`]. `source` names the history in the summary.
pub fn write_trend(
    entries: &[HistoryEntry],
    source: &str,
    dir: &Path,
    trend_opts: &TrendOptions,
    opts: &ReportOptions,
) -> Result<WrittenTrend, ReportError> {
    let trend = history::trend(entries, &trend_opts.filter).map_err(|e| ReportError::Results {
        reason: e.to_string(),
    })?;
    crate::font::register(opts.font.as_deref())?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let style = Style::new(opts.theme, opts.size);
    let mut figures = Vec::new();
    for c in charts(&trend, trend_opts.per_metric) {
        figures.push(render(&c, &style, dir)?);
    }
    let markdown = summary(entries, &trend, &figures, source);
    let path = dir.join(SUMMARY_FILE);
    crate::write_atomic(&path, markdown.as_bytes())?;
    Ok(WrittenTrend {
        summary: path,
        markdown,
        figures,
        trend,
    })
}

/// The Markdown summary: what a point is, the host classes, notes, a table per backend × workload
/// with its chart, and every marked regression or improvement.
pub fn summary(entries: &[HistoryEntry], trend: &Trend, figures: &[Figure], source: &str) -> String {
    let mut s = String::from("## cvbench startup trend\n\n");
    let (first, last) = (trend.ticks.first(), trend.ticks.last());
    if let (Some(first), Some(last)) = (first, last) {
        let _ = writeln!(
            s,
            "From `{source}`: {} entries, commits {} ({}) to {} ({}).",
            entries.len(),
            first.short_commit,
            first.day,
            last.short_commit,
            last.day
        );
    }
    let order = if entries.iter().all(|e| e.commit_date.is_some()) {
        "ordered by commit date"
    } else {
        "in the order they were appended"
    };
    let _ = writeln!(
        s,
        "Each point is one commit's median of its measured runs with the bootstrap 95% CI of that \
         median, as `bench report` computes them; commits are {order}. A line joins only commits \
         measured on the same host class, and no change is computed across two classes. The change \
         from the previous commit describes; it is not a verdict (`bench ab` decides regressions).\n"
    );
    let _ = writeln!(s, "Host classes:\n");
    for (i, class) in trend.host_classes.iter().enumerate() {
        let count = trend.ticks.iter().filter(|t| t.host_class == i).count();
        let _ = writeln!(
            s,
            "- {} {}: {class} ({count} commit(s))",
            marker_symbol(i),
            class_name(i)
        );
    }
    if !trend.notes.is_empty() || !trend.caveats.is_empty() {
        let _ = writeln!(s, "\nNotes:\n");
        for (commit, note) in trend.notes.iter().chain(trend.caveats.iter()) {
            let _ = writeln!(s, "- {commit}: {note}");
        }
    }
    for (backend, workload) in trend.cells() {
        let _ = writeln!(s, "\n### {backend} · {workload}\n");
        for f in figures.iter().filter(|f| {
            f.name == format!("trend_{}_{}", slug(backend), slug(workload))
                || f.name
                    .starts_with(&format!("trend_{}_{}_", slug(backend), slug(workload)))
        }) {
            let file = f
                .png_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = writeln!(s, "![{}]({file})\n", f.title);
        }
        let _ = writeln!(
            s,
            "| metric | host class | commits | first | latest (95% CI) | from previous | marks |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---|");
        for series in trend.series_of(backend, workload) {
            let (Some(f0), Some(fl)) = (series.points.first(), series.points.last()) else {
                continue;
            };
            let fmt = |v: f64| metrics::format(&series.metric, v);
            let num = |v: f64| metrics::quantity(&series.metric).format_number(v);
            let marks: Vec<String> = series
                .points
                .iter()
                .flat_map(|p| {
                    p.marks
                        .iter()
                        .map(move |m| format!("{}: {}", trend.ticks[p.x].short_commit, mark_text(m)))
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} ({}) | {} [{}, {}] ({}, n = {}) | {} | {} |",
                metrics::label(&series.metric),
                class_name(series.host_class),
                series.points.len(),
                fmt(f0.median),
                trend.ticks[f0.x].short_commit,
                fmt(fl.median),
                num(fl.ci95[0]),
                num(fl.ci95[1]),
                trend.ticks[fl.x].short_commit,
                fl.n,
                series.last_change().map_or_else(|| "–".to_string(), pct),
                if marks.is_empty() {
                    "–".to_string()
                } else {
                    marks.join("; ")
                }
            );
        }
        let changes: Vec<String> = trend
            .series_of(backend, workload)
            .flat_map(|se| {
                se.points
                    .iter()
                    .filter(|p| !p.changed_labels.is_empty())
                    .map(|p| {
                        format!(
                            "{}: {}",
                            trend.ticks[p.x].short_commit,
                            p.changed_labels.join(", ")
                        )
                    })
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !changes.is_empty() {
            let _ = writeln!(
                s,
                "\nThe environment moved: labels changed at {}.",
                changes.join("; ")
            );
        }
    }
    let _ = writeln!(s, "\n### Marked by `bench ab` / `bench check`\n");
    let mut any = false;
    for series in &trend.series {
        for p in &series.points {
            for m in &p.marks {
                any = true;
                let p_text = m.p_value.map_or_else(String::new, |p| format!(", p = {p:.1e}"));
                let _ = writeln!(
                    s,
                    "- {} {}/{} {} on {}: **{}**{} ({}, {}{p_text})",
                    trend.ticks[p.x].short_commit,
                    series.backend,
                    series.workload,
                    metrics::label(&series.metric),
                    class_name(series.host_class),
                    m.verdict,
                    m.change.map_or_else(String::new, |c| format!(" {}", pct(c))),
                    m.source.as_str(),
                    m.against
                );
            }
        }
    }
    if !any {
        let judged: usize = entries.iter().map(|e| e.verdicts.len()).sum();
        if judged == 0 {
            let _ = writeln!(s, "Nothing: no verdict file was recorded with these entries.");
        } else {
            let _ = writeln!(
                s,
                "Nothing: {judged} verdict file(s) recorded, none found a regression or improvement."
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture() -> Vec<HistoryEntry> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trend-history.jsonl");
        history::read(&path).expect("the fixture history is valid")
    }

    #[test]
    fn one_chart_per_backend_with_one_line_per_metric_and_host_class() {
        let entries = fixture();
        let trend = history::trend(&entries, &TrendFilter::default()).unwrap();
        let charts = charts(&trend, false);
        let names: Vec<String> = charts.iter().map(Chart::name).collect();
        assert_eq!(names, vec!["trend_container_idle", "trend_runc_idle"]);
        assert_eq!(
            charts[0].ticks,
            vec!["1111111 11-26", "2222222 11-27", "3333333 11-28", "4444444 11-29"]
        );
        let container = &charts[0];
        let lines: Vec<(&str, usize, Vec<usize>)> = container
            .lines()
            .iter()
            .map(|l| {
                (
                    l.label.as_str(),
                    l.host_class,
                    l.points.iter().map(|p| p.x).collect(),
                )
            })
            .collect();
        // exec and ready; host class 1 measured commits 1, 2 and 4, class 2 only commit 3.
        assert_eq!(
            lines,
            vec![
                ("exec · ● hc1", 0, vec![0, 1, 3]),
                ("exec · ▲ hc2", 1, vec![2]),
                ("ready · ● hc1", 0, vec![0, 1, 3]),
                ("ready · ▲ hc2", 1, vec![2]),
            ]
        );
        // Colour per metric, the same on both classes.
        assert_eq!(
            container.lines().iter().map(|l| l.colour).collect::<Vec<_>>(),
            vec![0, 0, 1, 1]
        );
        let ready = &container.lines()[2];
        assert_eq!(
            ready.points.iter().map(|p| p.median).collect::<Vec<_>>(),
            vec![10.0, 10.5, 13.0]
        );
        assert_eq!(ready.points[2].ci95, [12.0, 14.0]);
        assert_eq!(
            ready.points[2].marks,
            vec!["regression +23.8% (bench ab)".to_string()]
        );
        assert!(ready.points[2].regressed);
        assert!(ready.points[..2].iter().all(|p| p.marks.is_empty()));
        assert!(container.text().subtitle.contains("2 host classes, never joined"));
        assert!(container.text().subtitle.contains("n = 10 per point"));
    }

    #[test]
    fn per_metric_charts_and_filters() {
        let entries = fixture();
        let filter = TrendFilter {
            backends: vec!["runc".into()],
            metrics: vec![metrics::START_TO_READY_MS.into()],
        };
        let trend = history::trend(&entries, &filter).unwrap();
        let charts = charts(&trend, true);
        assert_eq!(charts.len(), 1);
        assert_eq!(charts[0].name(), "trend_runc_idle_start_to_ready_ms");
        assert_eq!(charts[0].lines().len(), 2);
        assert!(charts[0]
            .lines()
            .iter()
            .all(|l| l.metric == metrics::START_TO_READY_MS));
    }

    #[test]
    fn the_trend_is_drawn_and_summarised() {
        let entries = fixture();
        let dir = tempfile::tempdir().unwrap();
        let written = match write_trend(
            &entries,
            "fixture.jsonl",
            dir.path(),
            &TrendOptions::default(),
            &ReportOptions {
                size: (960, 540),
                ..ReportOptions::default()
            },
        ) {
            Err(ReportError::FontMissing { .. }) => {
                testkit::skip(
                    testkit::Requirement::Package("fonts-dejavu-core"),
                    "no chart font",
                );
                return;
            }
            other => other.unwrap(),
        };
        assert_eq!(written.figures.len(), 2);
        for f in &written.figures {
            let png = std::fs::read(&f.png_path).unwrap();
            assert_eq!(&png[1..4], b"PNG");
            let decoder = png::Decoder::new(png.as_slice());
            let info = decoder.read_info().unwrap();
            assert_eq!((info.info().width, info.info().height), (960, 540));
            assert!(f.svg.contains("1111111 11-26"), "tick labels are commits");
        }
        let md = std::fs::read_to_string(&written.summary).unwrap();
        assert_eq!(md, written.markdown);
        assert!(md.contains("![container · idle: startup phases across commits](trend_container_idle.png)"));
        assert!(
            md.contains("- ● hc1: Fixture CPU A, 2 cores, kernel 6.1.0, KVM none, cgroup v2 (3 commit(s))")
        );
        assert!(md.contains("- 3333333: host loaded: 4 parallel builds"), "{md}");
        // ready on hc1: 10.0 at 1111111 -> 13.0 at 4444444, +23.8% from 10.5 (2222222): never from
        // the hc2 point of 3333333 in between.
        assert!(
            md.contains("| ready | hc1 | 3 | 10.00 ms (1111111) | 13.00 ms [12.00, 14.00] (4444444, n = 10) | +23.8% |"),
            "{md}"
        );
        assert!(md.contains("| ready | hc2 | 1 |"), "{md}");
        assert!(
            md.contains("- 4444444 container/idle ready on hc1: **regression** +23.8% (bench ab, A = main"),
            "{md}"
        );
        assert!(
            md.contains("labels changed at 4444444: runc_version 1.1.5 → 1.1.12"),
            "{md}"
        );
    }
}
