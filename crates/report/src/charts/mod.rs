//! One module per chart. Each builds [`Chart`] values from the [`Model`] (only when it has data to
//! show) and [`render`] draws every chart twice, as SVG and as PNG, inside the shared frame: the
//! theme's background, a bold title and a subtitle naming the host and n.

pub mod by_dimension;
mod common;
pub mod density;
pub mod disk;
pub mod memory;
pub mod phases;
pub mod spectrum;
pub mod startup_cdf;
pub mod trend;
pub mod workload;

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontDesc, FontFamily, FontStyle, RGBColor};

use crate::model::Model;
use crate::style::{Style, FONT_FAMILY};
use crate::ReportError;

/// A drawn chart: its files and the text that goes with it in Markdown and HTML.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// File stem, e.g. `startup_cdf_idle`.
    pub name: String,
    pub title: String,
    /// n, p50/p99 and the CI of what the chart shows, one line per series.
    pub caption: String,
    /// The SVG document (also written to `svg_path`).
    pub svg: String,
    pub svg_path: PathBuf,
    pub png_path: PathBuf,
}

/// Why drawing failed (plotters' error types are generic over the backend; the text is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DrawError(pub String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawError(e.to_string())
    }
}

/// The text a chart carries besides its title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartText {
    /// Second title line: host and n.
    pub subtitle: String,
    /// n, p50/p99 and the CI of what the chart shows, one line per series.
    pub caption: String,
}

impl ChartText {
    /// Subtitle with the host and n per backend; caption with one line per series, then the
    /// backends that were skipped.
    pub fn per_backend(model: &Model<'_>, ns: &[usize], captions: &[String]) -> Self {
        ChartText {
            subtitle: subtitle(model, &n_range(ns)),
            caption: format!("{}{}", captions.join("\n"), skipped_note(model)),
        }
    }
}

/// What every chart module provides.
pub trait Chart {
    fn name(&self) -> String;
    fn title(&self) -> String;
    /// Subtitle (second title line) and caption.
    fn text(&self) -> &ChartText;
    /// Draws the chart body into `area` (the frame and titles are already drawn).
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style)
        -> Result<(), DrawError>;
}

/// Slowest over fastest above which a time axis turns logarithmic (startup CDFs and phases).
pub const LOG_RATIO: f64 = 20.0;

/// Options that change what charts show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChartOptions {
    /// Logarithmic time axis for startup CDFs.
    pub log_x: bool,
}

/// Every figure the model has data for, drawn into `out_dir` as `<name>.svg` and `<name>.png`.
pub fn render_all(
    model: &Model<'_>,
    style: &Style,
    opts: ChartOptions,
    out_dir: &Path,
) -> Result<Vec<Figure>, ReportError> {
    let mut figures = Vec::new();
    for c in startup_cdf::charts(model, opts) {
        figures.push(render(&c, style, out_dir)?);
    }
    for c in phases::charts(model) {
        figures.push(render(&c, style, out_dir)?);
    }
    if let Some(c) = spectrum::chart(model) {
        figures.push(render(&c, style, out_dir)?);
    }
    if let Some(c) = memory::chart(model) {
        figures.push(render(&c, style, out_dir)?);
    }
    if let Some(c) = density::chart(model) {
        figures.push(render(&c, style, out_dir)?);
    }
    if let Some(c) = disk::chart(model) {
        figures.push(render(&c, style, out_dir)?);
    }
    for c in workload::charts(model) {
        figures.push(render(&c, style, out_dir)?);
    }
    Ok(figures)
}

/// Draws `chart` as SVG (kept in memory and written) and as PNG.
pub fn render<C: Chart>(chart: &C, style: &Style, out_dir: &Path) -> Result<Figure, ReportError> {
    let name = chart.name();
    let draw_err = |e: DrawError| ReportError::Draw {
        chart: name.clone(),
        reason: e.0,
    };
    let size = (style.width, style.height);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        frame(chart, &root, style).map_err(draw_err)?;
        root.present().map_err(|e| draw_err(e.into()))?;
    }
    let svg_path = out_dir.join(format!("{name}.svg"));
    crate::write_atomic(&svg_path, svg.as_bytes())?;

    let png_path = out_dir.join(format!("{name}.png"));
    let tmp = crate::temp_beside(&png_path);
    let drawn = {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        frame(chart, &root, style)
            .map_err(draw_err)
            .and_then(|()| root.present().map_err(|e| draw_err(e.into())))
    };
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    crate::commit_temp(&tmp, &png_path)?;
    Ok(Figure {
        name: name.clone(),
        title: chart.title(),
        caption: chart.text().caption.clone(),
        svg,
        svg_path,
        png_path,
    })
}

fn frame<C: Chart, DB: DrawingBackend>(
    chart: &C,
    root: &DrawingArea<DB, Shift>,
    style: &Style,
) -> Result<(), DrawError> {
    root.fill(&style.background)?;
    let m = px_offset(style.margin());
    let title_px = style.title_px();
    let sub_px = style.subtitle_px();
    let header = title_px + sub_px + 3 * style.margin() / 2;
    let (top, body) = root.split_vertically(header);
    top.draw(&Text::new(
        chart.title(),
        (m, m / 2),
        bold_font(title_px, style.foreground),
    ))?;
    let sub_y = m / 2 + px_offset(title_px) + m / 3;
    top.draw(&Text::new(
        chart.text().subtitle.clone(),
        (m, sub_y),
        font(sub_px, style.muted),
    ))?;
    let body = body.margin(0, style.margin(), style.margin(), style.margin());
    chart.draw(&body, style)
}

/// The chart font at `px` pixels in `colour`.
pub fn font(px: u32, colour: RGBColor) -> TextStyle<'static> {
    (FONT_FAMILY, f64::from(px)).into_font().color(&colour)
}

/// The chart font, bold.
pub fn bold_font(px: u32, colour: RGBColor) -> TextStyle<'static> {
    FontDesc::new(FontFamily::Name(FONT_FAMILY), f64::from(px), FontStyle::Bold).color(&colour)
}

/// One entry of a legend row: a swatch and its text.
pub struct LegendEntry {
    pub swatch: ShapeStyle,
    pub label: String,
}

impl LegendEntry {
    pub fn new(swatch: ShapeStyle, label: impl Into<String>) -> Self {
        LegendEntry {
            swatch,
            label: label.into(),
        }
    }
}

/// `v` (a count or pixel size) as `u32`, saturating. Chart geometry is bounded by the image (a few
/// thousand pixels) and by the number of backends, rows and labels (a handful), so saturation is
/// never reached; it is here so no value is invented if it were.
pub(crate) fn px(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A pixel offset as the `i32` plotters takes, saturating (as [`px`]: never reached).
pub(crate) fn px_offset(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Approximate width of `text` in pixels at `px` (DejaVu Sans averages ~0.6 em per character).
fn text_width(text: &str, px: u32) -> u32 {
    crate::charts::px(text.chars().count()).saturating_mul(px) * 3 / 5
}

/// Draws a legend below the plot (wrapping onto more lines when needed), so it never covers data,
/// and returns the area left above it.
pub fn with_legend_row<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    style: &Style,
) -> Result<DrawingArea<DB, Shift>, DrawError> {
    if entries.is_empty() {
        return Ok(area.clone());
    }
    let px = style.legend_px();
    let swatch = px;
    let gap = px * 2;
    let width = area.dim_in_pixel().0;
    // Lay out: (line, x) per entry.
    let mut placed = Vec::with_capacity(entries.len());
    let (mut line, mut x) = (0u32, 0u32);
    for e in entries {
        let w = swatch + px / 2 + text_width(&e.label, px);
        if x > 0 && x + w > width {
            line += 1;
            x = 0;
        }
        placed.push((line, x));
        x += w + gap;
    }
    let line_h = px * 3 / 2;
    let height = (line + 1) * line_h + px / 2;
    let (plot, legend_area) = area.split_vertically(area.dim_in_pixel().1.saturating_sub(height));
    let text = font(px, style.foreground).pos(Pos::new(HPos::Left, VPos::Center));
    for (e, (line, x)) in entries.iter().zip(placed) {
        let y = px_offset(px / 2 + line * line_h + line_h / 2);
        let (x, s) = (px_offset(x), px_offset(swatch));
        legend_area.draw(&Rectangle::new([(x, y - s / 2), (x + s, y + s / 2)], e.swatch))?;
        legend_area.draw(&Text::new(e.label.clone(), (x + s + s / 2, y), text.clone()))?;
    }
    Ok(plot)
}

/// Axis tick label: no decimals on large values, enough on small ones.
pub fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v == 0.0 || (a >= 1.0 && (v - v.round()).abs() < 1e-9) {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Segmented axis over `n` categories (plotters' integer ranges are inclusive). Category `i` spans
/// `Exact(i)..Exact(i + 1)`.
pub fn categories(
    n: usize,
) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordu32> {
    let last = px(n.saturating_sub(1));
    (0u32..last).into_segmented()
}

/// Subtitle with host and a description of n.
pub fn subtitle(model: &Model<'_>, n: &str) -> String {
    format!("{} · {n}", model.host_short())
}

/// `n = 10 per backend` or `n = 8–10 per backend`.
pub fn n_range(ns: &[usize]) -> String {
    match (ns.iter().min(), ns.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => format!("n = {lo} per backend"),
        (Some(lo), Some(hi)) => format!("n = {lo}–{hi} per backend"),
        _ => "n = 0".to_string(),
    }
}

/// Line listing skipped backends for a caption, empty when none.
pub fn skipped_note(model: &Model<'_>) -> String {
    let skipped = model.skipped_backends();
    if skipped.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = skipped.iter().map(|(b, r)| format!("{b} skipped: {r}")).collect();
    format!("\n{}", parts.join("\n"))
}
