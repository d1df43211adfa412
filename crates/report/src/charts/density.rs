//! Density: instances kept running vs the memory they cost, one colour per backend. The solid line
//! is what the host lost (summed PSS plus unreclaimable kernel memory), the dashed line the summed
//! PSS (the user-space part), and for VMs a dotted line the resident guest RAM (part of the VMM's
//! PSS). The gap between solid and dashed is kernel memory: page tables, slab, namespaces,
//! cgroups, KVM. Files without host figures draw PSS alone, as they were measured. The headline
//! instances per GiB is annotated at the end of each curve.

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
    /// `(instances, MiB)` of the headline memory: host lost, or summed PSS in old files.
    points: Vec<(f64, f64)>,
    /// `(instances, summed PSS MiB)` when `points` is host memory lost (the user-space part).
    pss: Option<Vec<(f64, f64)>>,
    /// `(instances, resident guest RAM MiB)` for VMs.
    guest_ram: Option<Vec<(f64, f64)>>,
    per_gib: Option<f64>,
}

/// Per-instance split at the end of a curve, for the caption and the report's table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// PSS plus kernel memory: the headline's figure.
    pub host_lost_bytes: Option<f64>,
    pub pss_bytes: f64,
    pub guest_ram_bytes: Option<f64>,
    /// Growth of unreclaimable kernel memory (never below zero).
    pub kernel_bytes: Option<f64>,
    /// Cross-checks: the `MemAvailable` drop over the launch windows, and the cgroup charge.
    pub mem_available_drop_bytes: Option<f64>,
    pub cgroup_bytes: Option<f64>,
}

/// The per-instance split at the last point of `d`.
pub fn split_per_instance(d: &results::schema::DensityResult) -> Option<Split> {
    let last = d.points.last()?;
    let n = f64::from(last.instances.max(1));
    let per = |b: u64| model::bytes_f64(b) / n;
    Some(Split {
        host_lost_bytes: last.host_lost_bytes().map(per),
        pss_bytes: per(last.total_pss_bytes),
        guest_ram_bytes: last.guest_ram_bytes.map(per),
        kernel_bytes: last.host_kernel_bytes.map(|b| bytes_i64(b.max(0)) / n),
        mem_available_drop_bytes: last.host_used_bytes.map(|b| bytes_i64(b) / n),
        cgroup_bytes: last.cgroup_memory_bytes.map(per),
    })
}

/// `host lost 740 KiB = user space (PSS) 130 KiB + kernel 610 KiB; MemAvailable drop ...; cgroup ...`.
pub fn describe_split(split: &Split) -> String {
    let b = |v: f64| results::metrics::Quantity::Bytes.format(v);
    let pss = match split.guest_ram_bytes {
        Some(g) => format!(
            "user space (PSS) {} [guest RAM {}, VMM {}]",
            b(split.pss_bytes),
            b(g),
            b(split.pss_bytes - g)
        ),
        None => format!("user space (PSS) {}", b(split.pss_bytes)),
    };
    let mut text = match (split.host_lost_bytes, split.kernel_bytes) {
        (Some(lost), Some(kernel)) => format!("host lost {} = {pss} + kernel {}", b(lost), b(kernel)),
        _ => pss,
    };
    if let Some(d) = split.mem_available_drop_bytes {
        text.push_str(&format!("; MemAvailable drop {}", b(d)));
    }
    if let Some(c) = split.cgroup_bytes {
        text.push_str(&format!("; cgroup charge {}", b(c)));
    }
    text
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
        let per_gib = d.instances_per_gib.map_or_else(String::new, |v| {
            format!("; {v:.1} instances/GiB of {}", d.basis.describe())
        });
        let pss_per_gib = match (d.basis, d.instances_per_gib_pss) {
            (results::schema::DensityBasis::SummedPss, _) | (_, None) => String::new(),
            (_, Some(v)) => format!(" ({v:.1}/GiB counting PSS only)"),
        };
        let split = split_per_instance(d)
            .map_or_else(String::new, |s| format!("; per instance: {}", describe_split(&s)));
        captions.push(format!(
            "{name}: {} instances; {launch}{marginal}{per_gib}{pss_per_gib}{split}; stopped: {}",
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
                .map(|p| {
                    let bytes = p.host_lost_bytes().unwrap_or(p.total_pss_bytes);
                    (f64::from(p.instances), model::mib(bytes))
                })
                .collect(),
            pss: d.points.iter().all(|p| p.host_kernel_bytes.is_some()).then(|| {
                d.points
                    .iter()
                    .map(|p| (f64::from(p.instances), model::mib(p.total_pss_bytes)))
                    .collect()
            }),
            guest_ram: d.points.iter().all(|p| p.guest_ram_bytes.is_some()).then(|| {
                d.points
                    .iter()
                    .map(|p| (f64::from(p.instances), model::mib(p.guest_ram_bytes.unwrap_or(0))))
                    .collect()
            }),
            per_gib: d.instances_per_gib,
        });
    }
    if curves.is_empty() {
        return None;
    }
    Some(Density {
        text: ChartText {
            subtitle: subtitle(
                model,
                &format!(
                    "up to {max_n} instances; solid: host lost (PSS + kernel), dashed: PSS, \
                     dotted: guest RAM"
                ),
            ),
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
        let all = self.curves.iter().flat_map(|c| {
            c.points
                .iter()
                .chain(c.pss.iter().flatten())
                .chain(c.guest_ram.iter().flatten())
        });
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
            .y_desc("memory (MiB)")
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
            let dash = style.stroke() * 4;
            if let Some(pss) = &c.pss {
                chart.draw_series(DashedLineSeries::new(
                    pss.iter().copied(),
                    dash,
                    dash,
                    colour.stroke_width(style.stroke()),
                ))?;
            }
            if let Some(guest) = &c.guest_ram {
                chart.draw_series(DashedLineSeries::new(
                    guest.iter().copied(),
                    style.stroke(),
                    style.stroke() * 2,
                    colour.stroke_width(style.stroke()),
                ))?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use results::schema::{DensityBasis, DensityPoint, DensityResult, HostInfo, ResultsFile, ToolInfo};

    #[test]
    fn the_solid_curve_is_pss_plus_kernel_and_the_dashed_one_pss() {
        let host = HostInfo {
            hostname: "h".into(),
            kernel: "k".into(),
            cpu_model: "c".into(),
            cores: 1,
            memory_bytes: 1 << 30,
            cgroup_version: "v1".into(),
            kvm: "none".into(),
            os: "o".into(),
            arch: String::new(),
            dimensions: Default::default(),
        };
        let tool = ToolInfo {
            name: "cvbench".into(),
            version: "0".into(),
            git_revision: None,
            argv: vec![],
        };
        let mut results = ResultsFile::new("density", tool, host);
        let point = |n: u32| DensityPoint {
            instances: n,
            launch_ms: 1.0,
            total_pss_bytes: u64::from(n) << 20,
            host_mem_available_bytes: 0,
            marginal_pss_bytes: 1 << 20,
            // A noisy MemAvailable drop must not be what the solid line shows.
            host_used_bytes: Some(-(i64::from(n) << 30)),
            host_kernel_bytes: Some(i64::from(n) << 21),
            cgroup_memory_bytes: None,
            guest_ram_bytes: Some(u64::from(n) << 19),
        };
        results.density.push(DensityResult {
            backend: "microvm-probe".into(),
            isolation: results::isolation::Isolation::vm(
                results::isolation::IsolationKind::MicroVm,
                results::isolation::KvmFlavour::Pvm,
            ),
            workload: "idle".into(),
            labels: Default::default(),
            points: vec![point(1), point(2)],
            stop_reason: "max".into(),
            instances_per_gib: Some(341.3),
            basis: DensityBasis::PssPlusKernel,
            instances_per_gib_pss: Some(1024.0),
            host_id: None,
        });
        let model = Model::new(&results);
        let chart = chart(&model).expect("a density chart");
        let c = &chart.curves[0];
        assert_eq!(c.points, vec![(1.0, 3.0), (2.0, 6.0)]);
        assert_eq!(c.pss, Some(vec![(1.0, 1.0), (2.0, 2.0)]));
        assert_eq!(c.guest_ram, Some(vec![(1.0, 0.5), (2.0, 1.0)]));
        let split = split_per_instance(&results.density[0]).expect("split");
        assert_eq!(split.host_lost_bytes, Some(3.0 * 1048576.0));
        assert_eq!(split.kernel_bytes, Some(2.0 * 1048576.0));
        assert!(
            describe_split(&split).contains("guest RAM 512.0 KiB"),
            "{}",
            describe_split(&split)
        );
    }
}
