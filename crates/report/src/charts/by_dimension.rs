//! `bench report --by DIM`: startup and memory as grouped bars, one group per value of the host
//! dimension `DIM` (for example one group per instance type), one bar per backend and host inside
//! a group, each bar the median of that host's measured runs with its bootstrap 95% CI as a
//! whisker. Samples of different hosts are never pooled: two hosts with the same value of `DIM`
//! are two bars, each tagged with its host. Dimensions that never vary are not shown; those that
//! vary besides `DIM` are named per host in the caption.
//!
//! The chart model ([`PivotChart`]: groups, bars, labels) is public so it can be checked without
//! looking at pixels.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::common::{builder, category_label, mesh, vbar};
use super::{
    categories, fmt_tick, font, px, px_offset, with_legend_row, Chart, ChartText, DrawError, LegendEntry,
};
use crate::model::{self, caption_stats, display_name, Model, MIB};
use crate::pivot::{self, UnknownDimension};
use crate::style::Style;
use results::dimensions::HOST;
use results::metrics::{self, PSS_BYTES, START_TO_READY_MS};
use results::schema::ResultsFile;

/// What is pivoted: (metric, file-name part, title, value axis, divisor from the metric's unit to
/// the axis unit).
const PIVOTED: [(&str, &str, &str, &str, f64); 2] = [
    (
        START_TO_READY_MS,
        "startup",
        "Startup (start → ready)",
        "start → ready (ms)",
        1.0,
    ),
    (
        PSS_BYTES,
        "memory",
        "Memory per instance (PSS of the instance's processes)",
        "PSS (MiB)",
        MIB,
    ),
];

pub use crate::pivot::NO_VALUE;

/// One grouped-bar chart: a metric of one workload, by one host dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct PivotChart {
    /// The host dimension the groups are values of.
    pub by: String,
    pub metric: String,
    pub workload: String,
    /// File-name part and title of the metric.
    pub kind: &'static str,
    pub metric_title: &'static str,
    /// Value-axis description (unit included).
    pub axis: &'static str,
    /// Backends (display names, plus the workload-configuration hash when a workload ran with
    /// several), in first-seen order: one legend entry and one colour each.
    pub series: Vec<PivotSeries>,
    /// One group per value of `by`, sorted by value.
    pub groups: Vec<PivotGroup>,
    text: ChartText,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PivotSeries {
    pub label: String,
    pub colour: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PivotGroup {
    /// The value of the pivot dimension (the axis label).
    pub value: String,
    /// The hosts with this value, each with the other dimensions that vary between hosts (never
    /// the constant ones, never `by` itself).
    pub hosts: Vec<GroupHost>,
    /// Bars in drawing order: by series, then by host.
    pub bars: Vec<PivotBar>,
}

/// A host of a group: its name and the other dimensions that vary between hosts.
pub type GroupHost = (String, BTreeMap<String, String>);

#[derive(Debug, Clone, PartialEq)]
pub struct PivotBar {
    /// Index into [`PivotChart::series`].
    pub series: usize,
    /// The host the figures come from (its `host` dimension).
    pub host: String,
    /// Tag drawn over the bar: the host when its group has several, else empty.
    pub tag: String,
    /// Median and bootstrap 95% CI of the median, in the axis unit.
    pub median: f64,
    pub ci95: [f64; 2],
    pub n: usize,
}

/// The grouped-bar charts of `results` by the host dimension `by`: startup and memory, one chart
/// per workload that has the metric. An unknown dimension is refused, naming the known ones.
pub fn charts(results: &ResultsFile, by: &str) -> Result<Vec<PivotChart>, UnknownDimension> {
    // The tables' check and error: one message for both.
    pivot::section(results, by)?;
    let model = Model::new(results);
    let hosts = pivot::hosts(results);
    let (varying, _constant) = pivot::split_dimensions(&hosts);
    let shown: Vec<&String> = varying
        .iter()
        .filter(|d| d.as_str() != HOST && d.as_str() != by)
        .collect();
    let value_of = |id: &str| pivot::find(&hosts, id).map(|h| h.value(by));
    let host_of = |id: &str| {
        pivot::find(&hosts, id)
            .map(pivot::HostDims::name)
            .unwrap_or_default()
    };
    // Groups: the values of `by`, each with its hosts in file order.
    let mut groups: BTreeMap<String, Vec<GroupHost>> = BTreeMap::new();
    for h in &hosts {
        let value = h.value(by);
        let others = shown
            .iter()
            .map(|d| {
                let v = h.dims.get(*d).cloned().unwrap_or_else(|| "-".into());
                ((*d).clone(), v)
            })
            .collect();
        groups.entry(value).or_default().push((h.name(), others));
    }

    let mut out = Vec::new();
    for workload in model.workloads() {
        let cells = model.ran(workload);
        let configs: std::collections::BTreeSet<String> = cells.iter().map(|c| c.config_hash()).collect();
        // A backend's label, with its configuration when the workload ran with several.
        let label_of = |name: String, hash: &str| {
            if configs.len() > 1 {
                format!("{name} [{hash}]")
            } else {
                name
            }
        };
        for (metric, kind, metric_title, axis, divisor) in PIVOTED {
            // Series: backend × configuration, in first-seen order, among cells with the metric.
            let mut series: Vec<(String, String, usize)> = Vec::new();
            let mut bars: Vec<(String, PivotBar)> = Vec::new();
            let mut captions = Vec::new();
            let mut ns = Vec::new();
            for cell in &cells {
                let Some(s) = model::summary(cell, metric) else {
                    continue;
                };
                let host_id = cell.host_id.as_deref().unwrap_or("");
                let Some(value) = value_of(host_id) else {
                    continue;
                };
                let name = display_name(&cell.backend, &cell.isolation);
                let hash = cell.config_hash();
                let i = match series.iter().position(|(n, h, _)| *n == name && *h == hash) {
                    Some(i) => i,
                    None => {
                        series.push((name.clone(), hash.clone(), model.colour_index(&cell.backend)));
                        series.len() - 1
                    }
                };
                let host = host_of(host_id);
                let label = label_of(name, &hash);
                captions.push(format!(
                    "{by} = {value} · {label} @ {host}: {}",
                    caption_stats(metrics::quantity(metric), &s)
                ));
                ns.push(s.n);
                bars.push((
                    value,
                    PivotBar {
                        series: i,
                        host,
                        tag: String::new(),
                        median: s.p50 / divisor,
                        ci95: s.median_ci95.map(|v| v / divisor),
                        n: s.n,
                    },
                ));
            }
            if bars.is_empty() {
                continue;
            }
            let groups: Vec<PivotGroup> = groups
                .iter()
                .map(|(value, hosts)| {
                    let mut in_group: Vec<PivotBar> = bars
                        .iter()
                        .filter(|(v, _)| v == value)
                        .map(|(_, b)| b.clone())
                        .collect();
                    // By series, then by host in file order (a stable sort keeps the file order).
                    in_group.sort_by_key(|b| b.series);
                    if hosts.len() > 1 {
                        for b in &mut in_group {
                            b.tag.clone_from(&b.host);
                        }
                    }
                    PivotGroup {
                        value: value.clone(),
                        hosts: hosts.clone(),
                        bars: in_group,
                    }
                })
                .collect();
            let mut hosts_note: Vec<String> = Vec::new();
            if !shown.is_empty() {
                for (host, others) in groups.iter().flat_map(|g| &g.hosts) {
                    let dims: Vec<String> = others.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                    hosts_note.push(format!("{host}: {}", dims.join(", ")));
                }
            }
            let mut caption = captions.join("\n");
            if !hosts_note.is_empty() {
                caption.push_str(&format!(
                    "\nOther dimensions that vary: {}",
                    hosts_note.join("; ")
                ));
            }
            caption.push_str(&super::skipped_note(&model));
            let n_hosts = hosts.len();
            let subtitle = format!(
                "{n_hosts} host{}, each measured separately (never pooled) · one group per {by} · {} · median, 95% CI",
                if n_hosts == 1 { "" } else { "s" },
                super::n_range(&ns).replace("per backend", "per bar")
            );
            out.push(PivotChart {
                by: by.to_string(),
                metric: metric.to_string(),
                workload: workload.to_string(),
                kind,
                metric_title,
                axis,
                series: series
                    .into_iter()
                    .map(|(name, hash, colour)| PivotSeries {
                        label: label_of(name, &hash),
                        colour,
                    })
                    .collect(),
                groups,
                text: ChartText { subtitle, caption },
            });
        }
    }
    Ok(out)
}

/// Draws every chart of [`charts`] into `out_dir` (SVG and PNG).
pub fn render_all(
    results: &ResultsFile,
    by: &str,
    style: &Style,
    out_dir: &std::path::Path,
) -> Result<Vec<super::Figure>, crate::ReportError> {
    let charts = charts(results, by).map_err(|e| crate::ReportError::Results {
        reason: e.to_string(),
    })?;
    charts.iter().map(|c| super::render(c, style, out_dir)).collect()
}

/// `by` as part of a file name: letters, digits, `-` and `_`; anything else becomes `_`.
fn file_part(by: &str) -> String {
    by.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Chart for PivotChart {
    fn name(&self) -> String {
        format!(
            "by_{}_{}_{}",
            file_part(&self.by),
            self.kind,
            file_part(&self.workload)
        )
    }
    fn title(&self) -> String {
        format!(
            "{} per backend, by {} — {}",
            self.metric_title, self.by, self.workload
        )
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
            .series
            .iter()
            .map(|s| LegendEntry::new(style.series(s.colour).filled(), s.label.clone()))
            .collect();
        let area = with_legend_row(area, &entries, style)?;
        let max = self
            .groups
            .iter()
            .flat_map(|g| &g.bars)
            .map(|b| b.ci95[1].max(b.median))
            .fold(1e-3, f64::max);
        let labels: Vec<String> = self.groups.iter().map(|g| g.value.clone()).collect();
        let mut chart = builder(&area, style, (style.label_px() * 3, style.label_px() * 4))
            .build_cartesian_2d(categories(labels.len()), 0.0..max * 1.25)?;
        mesh(&mut chart, style)
            .x_desc(self.by.as_str())
            .y_desc(self.axis)
            .disable_x_mesh()
            .x_labels(labels.len())
            .x_label_formatter(&|v| category_label(&labels, v))
            .y_label_formatter(&|v| fmt_tick(*v))
            .draw()?;
        let band = chart.plotting_area().dim_in_pixel().0 / px(labels.len()).max(1);
        let widest = self.groups.iter().map(|g| g.bars.len()).max().unwrap_or(1).max(1);
        let pad = band / 10;
        let slot = (band - 2 * pad) / px(widest);
        let value_text =
            font(style.tick_px() * 4 / 5, style.foreground).pos(Pos::new(HPos::Center, VPos::Bottom));
        let tag_text = font(style.tick_px() * 3 / 4, style.muted).pos(Pos::new(HPos::Center, VPos::Bottom));
        let line = style.foreground.stroke_width(style.stroke().div_ceil(2));
        for (gi, g) in (0u32..).zip(&self.groups) {
            // The group's bars are centred in its band.
            let start = pad + (band - 2 * pad - px(g.bars.len()) * slot) / 2;
            for (k, b) in (0u32..).zip(&g.bars) {
                let colour = self.series.get(b.series).map_or(0, |s| s.colour);
                let left = start + k * slot + slot / 10;
                let width = slot - slot / 5;
                let right = band.saturating_sub(left + width);
                chart.draw_series([vbar(
                    gi,
                    (0.0, b.median),
                    style.series(colour).filled(),
                    (left, right),
                )])?;
                // The CI of the median: a vertical whisker with caps at the bar's centre.
                let dx = px_offset(left + width / 2);
                let cap = px_offset(width / 4);
                let at = |y: f64| EmptyElement::at((SegmentValue::Exact(gi), y));
                let [lo, hi] = b.ci95;
                let lo_y = chart.backend_coord(&(SegmentValue::Exact(gi), lo)).1;
                let hi_y = chart.backend_coord(&(SegmentValue::Exact(gi), hi)).1;
                chart.draw_series([at(lo) + PathElement::new(vec![(dx, 0), (dx, hi_y - lo_y)], line)])?;
                for y in [lo, hi] {
                    chart
                        .draw_series([at(y) + PathElement::new(vec![(dx - cap, 0), (dx + cap, 0)], line)])?;
                }
                let above = -px_offset(style.margin() / 3);
                let top = hi.max(b.median);
                chart.draw_series([
                    at(top) + Text::new(fmt_tick(b.median), (dx, above), value_text.clone())
                ])?;
                if !b.tag.is_empty() {
                    let higher = above - px_offset(style.tick_px());
                    chart
                        .draw_series([at(top) + Text::new(b.tag.clone(), (dx, higher), tag_text.clone())])?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pivot::fixture::{host_file, merged};

    /// Hosts a and b are the same instance type on different kernels; c is another type.
    fn three_hosts() -> ResultsFile {
        merged(&[
            ("a", "m7i.metal", "6.1", 10.0),
            ("b", "m7i.metal", "6.5", 20.0),
            ("c", "c7a.metal", "6.1", 30.0),
        ])
    }

    fn bars(g: &PivotGroup, c: &PivotChart) -> Vec<(String, String, String, f64)> {
        g.bars
            .iter()
            .map(|b| {
                (
                    c.series[b.series].label.clone(),
                    b.host.clone(),
                    b.tag.clone(),
                    b.median,
                )
            })
            .collect()
    }

    #[test]
    fn startup_by_instance_is_one_group_per_instance_type_and_one_bar_per_backend_and_host() {
        let merged = three_hosts();
        let charts = charts(&merged, "instance").unwrap();
        let kinds: Vec<(&str, &str)> = charts.iter().map(|c| (c.kind, c.workload.as_str())).collect();
        assert_eq!(kinds, [("startup", "idle"), ("memory", "idle")]);
        let startup = &charts[0];
        assert_eq!(startup.name(), "by_instance_startup_idle");
        assert!(startup.title().contains("by instance"), "{}", startup.title());
        let legend: Vec<&str> = startup.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(legend, ["container", "runc"]);
        let values: Vec<&str> = startup.groups.iter().map(|g| g.value.as_str()).collect();
        assert_eq!(values, ["c7a.metal", "m7i.metal"]);
        // One host in the group: one bar per backend, no host tag.
        assert_eq!(
            bars(&startup.groups[0], startup),
            [
                ("container".into(), "run-c".into(), String::new(), 31.0),
                ("runc".into(), "run-c".into(), String::new(), 91.0),
            ]
        );
        // Two hosts of one type: a bar per host, tagged, never one pooled median (16 ms).
        assert_eq!(
            bars(&startup.groups[1], startup),
            [
                ("container".into(), "run-a".into(), "run-a".into(), 11.0),
                ("container".into(), "run-b".into(), "run-b".into(), 21.0),
                ("runc".into(), "run-a".into(), "run-a".into(), 31.0),
                ("runc".into(), "run-b".into(), "run-b".into(), 61.0),
            ]
        );
        for b in startup.groups.iter().flat_map(|g| &g.bars) {
            assert_eq!(b.n, 3);
            assert!(b.ci95[0] <= b.median && b.median <= b.ci95[1], "{b:?}");
        }
        // The memory chart is in MiB.
        let memory = &charts[1];
        assert_eq!(memory.axis, "PSS (MiB)");
        let medians: Vec<f64> = memory.groups[1].bars.iter().map(|b| b.median).collect();
        assert_eq!(medians, [2.0, 2.0, 6.0, 6.0]);
    }

    #[test]
    fn only_dimensions_that_vary_are_shown() {
        let merged = three_hosts();
        let charts = charts(&merged, "instance").unwrap();
        let c = &charts[0];
        // kernel and hostname vary besides the instance type; arch, cgroup and CPU never do.
        let (host, others) = &c.groups[1].hosts[1];
        assert_eq!(host, "run-b");
        let names: Vec<&str> = others.keys().map(String::as_str).collect();
        assert_eq!(names, ["host_kernel", "hostname"]);
        assert_eq!(others["host_kernel"], "6.5");
        let text = format!("{}\n{}", c.text().subtitle, c.text().caption);
        assert!(text.contains("host_kernel = 6.5"), "{text}");
        assert!(!text.contains("x86_64"), "a constant dimension is shown: {text}");
        assert!(!text.contains("Xeon"), "a constant dimension is shown: {text}");
        assert!(text.contains("3 hosts"), "{text}");
        assert!(
            text.contains("instance = m7i.metal · container @ run-b: n=3, p50 21.00 ms"),
            "{text}"
        );
    }

    #[test]
    fn by_host_is_one_group_per_host_and_unknown_dimensions_are_refused() {
        let merged = three_hosts();
        let charts = charts(&merged, "host").unwrap();
        let values: Vec<&str> = charts[0].groups.iter().map(|g| g.value.as_str()).collect();
        assert_eq!(values, ["run-a", "run-b", "run-c"]);
        assert!(charts[0]
            .groups
            .iter()
            .all(|g| g.bars.len() == 2 && g.bars.iter().all(|b| b.tag.is_empty())));
        let err = super::charts(&merged, "rack").unwrap_err();
        assert!(err.to_string().contains("instance"), "{err}");
    }

    #[test]
    fn a_single_host_file_is_one_group() {
        let f = host_file("solo", "x", "6.1", 5.0);
        let charts = charts(&f, "instance").unwrap();
        assert_eq!(charts[0].groups.len(), 1);
        assert_eq!(charts[0].groups[0].value, "x");
        assert_eq!(charts[0].groups[0].hosts[0].0, "solo");
        assert!(
            charts[0].text().subtitle.starts_with("1 host,"),
            "{}",
            charts[0].text().subtitle
        );
    }

    #[test]
    fn dimension_names_are_safe_in_file_names() {
        assert_eq!(file_part("site/rack 1"), "site_rack_1");
        assert_eq!(file_part("instance"), "instance");
    }
}

#[cfg(test)]
mod committed_example {
    use super::*;

    /// results/example-merged: this machine three times (`--label site=a`, `site=b`, and once
    /// inside the deploy/Dockerfile image), merged and pivoted by site.
    #[test]
    fn the_merged_example_pivots_into_one_group_per_site() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../results/example-merged/results.json");
        let results = ResultsFile::read(&path).unwrap();
        let charts = charts(&results, "site").unwrap();
        let names: Vec<String> = charts.iter().map(Chart::name).collect();
        assert_eq!(names, ["by_site_startup_idle", "by_site_memory_idle"]);
        for c in &charts {
            let values: Vec<&str> = c.groups.iter().map(|g| g.value.as_str()).collect();
            assert_eq!(values, ["a", "b", "image"]);
            let legend: Vec<&str> = c.series.iter().map(|s| s.label.as_str()).collect();
            assert_eq!(legend, ["container", "runc", "microvm-probe (emulated)"]);
            for g in &c.groups {
                assert_eq!(g.hosts.len(), 1, "one host per site");
                let series: Vec<usize> = g.bars.iter().map(|b| b.series).collect();
                assert_eq!(series, [0, 1, 2]);
                assert!(g.bars.iter().all(|b| b.n == 3 && b.tag.is_empty()));
            }
        }
    }

    #[test]
    fn report_by_draws_the_pivoted_charts_beside_the_others() {
        if !crate::font::FONT_CANDIDATES
            .iter()
            .any(|p| std::path::Path::new(p).is_file())
        {
            testkit::skip(
                testkit::Requirement::Package("fonts-dejavu-core"),
                "no system TTF (install fonts-dejavu-core)",
            );
            return;
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../results/example-merged/results.json");
        let results = ResultsFile::read(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::ReportOptions {
            size: (640, 360),
            ..crate::ReportOptions::default()
        };
        let written = crate::write_report_by(&results, dir.path(), &opts, Some("site")).unwrap();
        let names: Vec<&str> = written.figures.iter().map(|f| f.name.as_str()).collect();
        assert!(names.contains(&"startup_cdf_idle"), "{names:?}");
        let pivoted = written
            .figures
            .iter()
            .find(|f| f.name == "by_site_startup_idle")
            .unwrap();
        assert!(pivoted.png_path.is_file() && pivoted.svg_path.is_file());
        for text in [
            ">\na\n<",
            ">\nb\n<",
            ">\nimage\n<",
            "runc",
            "microvm-probe (emulated)",
        ] {
            assert!(pivoted.svg.contains(text), "{text} missing from the SVG");
        }
        let md = std::fs::read_to_string(&written.markdown).unwrap();
        assert!(
            md.contains("(by_site_memory_idle.png)"),
            "the Markdown shows the memory pivot"
        );
        // Without --by nothing is pivoted.
        let plain = crate::write_report(&results, dir.path(), &opts).unwrap();
        assert!(plain.figures.iter().all(|f| !f.name.starts_with("by_")));
    }
}
