//! Drawing pieces several charts share, so they look alike: the plot's builder, the themed mesh,
//! labels on a category axis, the bars and value labels of horizontal and vertical bar charts, and
//! the ticks of logarithmic axes.

use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, SegmentedCoord, ValueFormatter};
use plotters::coord::types::{RangedCoordf64, RangedCoordu32};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{categories, fmt_tick, font, DrawError};
use crate::style::Style;

/// A chart with a value axis along x (linear unless `X` says otherwise) and one category per bar
/// along y, top to bottom.
pub type HBarChart<'a, DB, X = RangedCoordf64> =
    ChartContext<'a, DB, Cartesian2d<X, SegmentedCoord<RangedCoordu32>>>;

/// A chart with one category per bar along x and a linear value axis along y.
pub type VBarChart<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<SegmentedCoord<RangedCoordu32>, RangedCoordf64>>;

/// Label areas `(below, beside)` of a plot with an axis description on both axes.
pub fn axis_areas(style: &Style) -> (u32, u32) {
    (style.label_px() * 3, style.label_px() * 4)
}

/// A chart builder on `area` with the shared margin and label areas `(x, y)` pixels deep.
pub fn builder<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    style: &Style,
    (x_area, y_area): (u32, u32),
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .margin(style.margin());
    builder
}

/// The mesh in the theme's colours and fonts; the caller adds axis descriptions and labels, then
/// draws it.
pub fn mesh<'a, 'b, X, Y, DB>(
    chart: &'b mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    style: &Style,
) -> MeshStyle<'a, 'b, X, Y, DB>
where
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
    DB: DrawingBackend,
{
    let mut mesh = chart.configure_mesh();
    mesh.axis_desc_style(font(style.label_px(), style.foreground))
        .label_style(font(style.tick_px(), style.foreground))
        .axis_style(style.muted)
        .bold_line_style(style.grid)
        .light_line_style(style.background);
    mesh
}

/// Tick label of a [`categories`] axis: `labels[i]` for category `i`, nothing past the end.
pub fn category_label(labels: &[String], v: &SegmentValue<u32>) -> String {
    match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            labels.get(*i as usize).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    }
}

/// Axes of a horizontal bar chart: one row per label, listed top to bottom, with a label area
/// that fits the longest label, and a value axis from 0 to `x_max` described by `x_desc`.
pub fn hbar_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    style: &Style,
    labels: &[String],
    x_max: f64,
    x_desc: &str,
) -> Result<HBarChart<'a, DB>, DrawError> {
    hbar_chart_over(area, style, labels, 0.0..x_max, x_desc)
}

/// [`hbar_chart`] with any value axis over milliseconds, bytes, ... (`0.0..max`, or
/// `(lo..hi).log_scale()` with [`one_two_five`] key points).
pub fn hbar_chart_over<'a, DB, X>(
    area: &'a DrawingArea<DB, Shift>,
    style: &Style,
    labels: &[String],
    x: X,
    x_desc: &str,
) -> Result<HBarChart<'a, DB, X::CoordDescType>, DrawError>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(10);
    let y_area = super::px(longest).saturating_mul(style.tick_px() * 3 / 5) + style.margin();
    // Capped at half the width: a longer label is cut at the left edge rather than squeezing the bars.
    let mut chart = builder(area, style, (style.label_px() * 3, y_area.min(style.width / 2)))
        .build_cartesian_2d(x, categories(labels.len()))?;
    // Category 0 is at the bottom.
    let bottom_up: Vec<String> = labels.iter().rev().cloned().collect();
    mesh(&mut chart, style)
        .x_desc(x_desc)
        .disable_y_mesh()
        .x_label_formatter(&|v| fmt_tick(*v))
        .y_labels(labels.len())
        .y_label_formatter(&|v| category_label(&bottom_up, v))
        .draw()?;
    Ok(chart)
}

/// The y value of row `row` (counted from the top) of an [`hbar_chart`] with `rows` rows.
fn from_top(rows: usize, row: usize) -> u32 {
    super::px(rows - 1 - row)
}

/// A bar from `from` to `to` in row `row` of an [`hbar_chart`] with `rows` rows.
pub fn hbar(
    rows: usize,
    row: usize,
    (from, to): (f64, f64),
    fill: ShapeStyle,
    style: &Style,
) -> Rectangle<(f64, SegmentValue<u32>)> {
    let i = from_top(rows, row);
    let band = style.height / 60;
    let mut r = Rectangle::new(
        [(from, SegmentValue::Exact(i)), (to, SegmentValue::Exact(i + 1))],
        fill,
    );
    r.set_margin(band, band, 0, 0);
    r
}

/// Writes `text` just right of the end `x` of each row's bar, rows in order from the top.
pub fn hbar_totals<DB: DrawingBackend, X: Ranged<ValueType = f64>>(
    chart: &mut HBarChart<'_, DB, X>,
    style: &Style,
    totals: &[(f64, String)],
) -> Result<(), DrawError> {
    let font = font(style.tick_px(), style.foreground).pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(totals.iter().enumerate().map(|(row, (x, text))| {
        Text::new(
            format!(" {text}"),
            (*x, SegmentValue::CenterOf(from_top(totals.len(), row))),
            font.clone(),
        )
    }))?;
    Ok(())
}

/// A vertical bar from `lo` to `hi` over category `i`, inset by `(left, right)` pixels.
pub fn vbar(
    i: u32,
    (lo, hi): (f64, f64),
    fill: ShapeStyle,
    (left, right): (u32, u32),
) -> Rectangle<(SegmentValue<u32>, f64)> {
    let mut r = Rectangle::new(
        [(SegmentValue::Exact(i), lo), (SegmentValue::Exact(i + 1), hi)],
        fill,
    );
    r.set_margin(0, 0, left, right);
    r
}

/// Tick positions 1, 2, 5, 10, 20, 50, ... inside `[lo, hi]`, for log axes.
pub fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi && ticks.len() < 64 {
        for m in [1.0, 2.0, 5.0] {
            let t = decade * m;
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_labels_follow_the_index_and_stop_at_the_end() {
        let labels = ["a".to_string(), "b".to_string()];
        assert_eq!(category_label(&labels, &SegmentValue::CenterOf(1)), "b");
        assert_eq!(category_label(&labels, &SegmentValue::Exact(0)), "a");
        assert_eq!(category_label(&labels, &SegmentValue::Exact(2)), "");
        assert_eq!(category_label(&labels, &SegmentValue::Last), "");
    }

    #[test]
    fn log_ticks_follow_one_two_five() {
        assert_eq!(one_two_five(1.5, 60.0), vec![2.0, 5.0, 10.0, 20.0, 50.0]);
        assert_eq!(one_two_five(0.3, 0.9), vec![0.5]);
    }

    #[test]
    fn rows_count_from_the_top() {
        assert_eq!(from_top(3, 0), 2);
        assert_eq!(from_top(3, 2), 0);
    }
}
