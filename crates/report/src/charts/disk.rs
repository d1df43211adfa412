//! Disk: what 1, 10 and 100 instances of each backend take on disk — one shared image plus a
//! writable layer per instance — next to what naive full copies (image + layer per instance) would
//! take. Grouped bars on a log scale, so 6 MiB and 5 GiB are both readable; exact figures are in
//! the caption and the report's disk table.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use results::disk::{DiskFootprint, DISK_INSTANCE_COUNTS};
use results::metrics::{self, INSTANCE_DISK_BYTES};

use super::common::{axis_areas, builder, category_label, mesh, vbar};
use super::{
    categories, fmt_tick, font, subtitle, with_legend_row, Chart, ChartText, DrawError, LegendEntry,
};
use super::{px, px_offset};
use crate::model::{self, Model};
use crate::style::Style;

pub struct Disk {
    text: ChartText,
    /// `(display name, colour index, footprint per instance count)`.
    backends: Vec<(String, usize, Vec<DiskFootprint>)>,
}

pub fn chart(model: &Model<'_>) -> Option<Disk> {
    let mut backends: Vec<(String, usize, Vec<DiskFootprint>)> = Vec::new();
    let mut captions = Vec::new();
    for model::DiskEntry {
        name,
        cell,
        footprint,
    } in model.disk_entries()
    {
        let Some(first) = footprint.first() else { continue };
        let per = model::summary(cell, INSTANCE_DISK_BYTES).map_or_else(String::new, |s| {
            format!(
                "; {} {} (from {})",
                metrics::label(INSTANCE_DISK_BYTES),
                model::caption_stats(metrics::quantity(INSTANCE_DISK_BYTES), &s),
                cell.workload
            )
        });
        let list: Vec<String> = footprint
            .iter()
            .map(|x| {
                format!(
                    "{}× {:.1} MiB (full copies {:.1} MiB)",
                    x.instances,
                    model::mib(x.total_bytes),
                    model::mib(x.naive_full_copy_bytes)
                )
            })
            .collect();
        captions.push(format!(
            "{name}: image {:.2} MiB shared{per}; {}",
            model::mib(first.shared_image_bytes),
            list.join(", ")
        ));
        backends.push((name, model.colour_index(&cell.backend), footprint));
    }
    if backends.is_empty() {
        return None;
    }
    Some(Disk {
        text: ChartText {
            subtitle: subtitle(
                model,
                "image counted once, layers as allocated blocks (median over runs)",
            ),
            caption: captions.join("\n"),
        },
        backends,
    })
}

impl Chart for Disk {
    fn name(&self) -> String {
        "disk".to_string()
    }
    fn title(&self) -> String {
        "Disk for N instances: shared image + layers vs full copies".to_string()
    }
    fn text(&self) -> &ChartText {
        &self.text
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        style: &Style,
    ) -> Result<(), DrawError> {
        let mut entries: Vec<LegendEntry> = self
            .backends
            .iter()
            .map(|(name, c, _)| {
                LegendEntry::new(
                    style.series(*c).filled(),
                    format!("{name}: shared image + layers"),
                )
            })
            .collect();
        entries.push(LegendEntry::new(
            style.muted.mix(0.35).filled(),
            "pale: naive full copies of the same backend",
        ));
        let area = with_legend_row(area, &entries, style)?;
        let values = self
            .backends
            .iter()
            .flat_map(|(_, _, f)| f.iter())
            .flat_map(|f| [f.total_bytes, f.naive_full_copy_bytes]);
        let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), b| {
            (lo.min(model::mib(b)), hi.max(model::mib(b)))
        });
        let lo = (lo * 0.5).clamp(1e-3, 1.0);
        let groups = DISK_INSTANCE_COUNTS.len();
        let mut chart = builder(&area, style, axis_areas(style))
            .build_cartesian_2d(categories(groups), (lo..hi.max(lo * 10.0) * 3.0).log_scale())?;
        let labels: Vec<String> = DISK_INSTANCE_COUNTS
            .iter()
            .map(|n| format!("{n} × instance"))
            .collect();
        mesh(&mut chart, style)
            .x_desc("instances")
            .y_desc("disk used (MiB, log scale)")
            .disable_x_mesh()
            .x_labels(groups)
            .x_label_formatter(&|v| category_label(&labels, v))
            .y_label_formatter(&|v| fmt_tick(*v))
            .draw()?;
        // Each group is split into 2 slots per backend plus padding on both sides.
        let band = chart.plotting_area().dim_in_pixel().0 / px(groups).max(1);
        let slots = px(self.backends.len() * 2);
        let pad = band / 8;
        let slot = (band - 2 * pad) / slots.max(1);
        let text = font(style.tick_px() * 4 / 5, style.foreground).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (gi, g) in (0u32..).zip(0..groups) {
            for (b, (_, colour, footprints)) in (0u32..).zip(&self.backends) {
                let Some(f) = footprints.get(g) else { continue };
                let colour = style.series(*colour);
                for (k, (bytes, fill)) in [
                    (f.total_bytes, colour.filled()),
                    (f.naive_full_copy_bytes, colour.mix(0.35).filled()),
                ]
                .into_iter()
                .enumerate()
                {
                    let k = px(k);
                    let left = pad + (2 * b + k) * slot + slot / 10;
                    let right = band.saturating_sub(left + slot - slot / 5);
                    let top = model::mib(bytes).max(lo);
                    chart.draw_series([vbar(gi, (lo, top), fill, (left, right))])?;
                    // Label centred over the bar: an element anchored at the band's left edge, shifted.
                    let dx = px_offset(left + (slot - slot / 5) / 2);
                    chart.draw_series([EmptyElement::at((SegmentValue::Exact(gi), top))
                        + Text::new(fmt_tick(model::mib(bytes)), (dx, -4), text.clone())])?;
                }
            }
        }
        Ok(())
    }
}
