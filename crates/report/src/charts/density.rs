//! Density: instances kept running vs the summed PSS of all of them, one curve per backend, with
//! instances per GiB annotated at the end of each curve.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::common::{axis_areas, builder, mesh};
use super::{fmt_tick, font, subtitle, with_legend_row, Chart, ChartText, DrawError, LegendEntry};
use crate::model::{self, caption_stats, display_name, Model};
use crate::style::Style;
use results::metrics::{Quantity, TimeUnit};

/// What `DensityPoint::launch_ms` measures.
const LAUNCH: Quantity = Quantity::Time(TimeUnit::Milliseconds);

pub struct Density {
    text: ChartText,
    curves: Vec<Curve>,
}

struct Curve {
    label: String,
    colour: usize,
    /// `(instances, total PSS MiB)`.
    points: Vec<(f64, f64)>,
    per_gib: Option<f64>,
}

pub fn chart(model: &Model<'_>) -> Option<Density> {
    let mut curves = Vec::new();
    let mut captions = Vec::new();
    let mut max_n = 0;
    for d in &model.results.density {
        let name = format!("{} · {}", display_name(&d.backend, &d.isolation), d.workload);
        let launch_ms: Vec<f64> = d.points.iter().map(|p| p.launch_ms).collect();
        let marginal: Vec<f64> = d.points.iter().map(|p| bytes_i64(p.marginal_pss_bytes)).collect();
        let launch = model::summarize_memo(&launch_ms).map_or_else(
            || "no launches".to_string(),
            |s| format!("launch {}", caption_stats(LAUNCH, &s)),
        );
        let marginal = results::stats::median(&marginal).map_or_else(String::new, |m| {
            format!("; marginal PSS p50 {}", Quantity::Bytes.format(m))
        });
        let per_gib = d
            .instances_per_gib
            .map_or_else(String::new, |v| format!("; {v:.1} instances/GiB"));
        captions.push(format!(
            "{name}: {} instances; {launch}{marginal}{per_gib}; stopped: {}",
            d.points.len(),
            d.stop_reason
        ));
        max_n = max_n.max(d.points.len());
        if d.points.is_empty() {
            continue;
        }
        curves.push(Curve {
            label: match d.instances_per_gib {
                Some(v) => format!("{name}: {v:.1} instances/GiB"),
                None => name,
            },
            colour: model.colour_index(&d.backend),
            points: d
                .points
                .iter()
                .map(|p| (f64::from(p.instances), model::mib(p.total_pss_bytes)))
                .collect(),
            per_gib: d.instances_per_gib,
        });
    }
    if curves.is_empty() {
        return None;
    }
    Some(Density {
        text: ChartText {
            subtitle: subtitle(model, &format!("up to {max_n} instances per backend")),
            caption: captions.join("\n"),
        },
        curves,
    })
}

#[allow(clippy::cast_precision_loss)] // byte counts stay far below 2^53
fn bytes_i64(b: i64) -> f64 {
    b as f64
}

impl Chart for Density {
    fn name(&self) -> String {
        "density".to_string()
    }
    fn title(&self) -> String {
        "Density: instances kept running vs memory they use".to_string()
    }
    fn text(&self) -> &ChartText {
        &self.text
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        style: &Style,
    ) -> Result<(), DrawError> {
        let all = self.curves.iter().flat_map(|c| c.points.iter());
        let (max_x, max_y) = all.fold((1.0f64, 1e-3f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
        let entries: Vec<LegendEntry> = self
            .curves
            .iter()
            .map(|c| LegendEntry::new(style.series(c.colour).filled(), c.label.clone()))
            .collect();
        let area = with_legend_row(area, &entries, style)?;
        let mut chart = builder(&area, style, axis_areas(style))
            .build_cartesian_2d(0.0..max_x * 1.3 + 0.5, 0.0..max_y * 1.15)?;
        mesh(&mut chart, style)
            .x_desc("instances running")
            .y_desc("summed PSS (MiB)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| fmt_tick(*v))
            .draw()?;
        for c in &self.curves {
            let colour = style.series(c.colour);
            chart.draw_series(LineSeries::new(
                c.points.iter().copied(),
                colour.stroke_width(style.stroke()),
            ))?;
            chart.draw_series(
                c.points
                    .iter()
                    .map(|p| Circle::new(*p, style.stroke() + 2, colour.filled())),
            )?;
            if let (Some(last), Some(v)) = (c.points.last(), c.per_gib) {
                let text = font(style.legend_px(), style.foreground).pos(Pos::new(HPos::Left, VPos::Center));
                chart.draw_series(std::iter::once(Text::new(
                    format!("   {v:.1} instances/GiB"),
                    *last,
                    text,
                )))?;
            }
        }
        Ok(())
    }
}
