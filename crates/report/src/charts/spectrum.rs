//! The isolation spectrum: every backend that ran the `idle` workload (else the first workload),
//! ordered from the lightest sandbox to the heaviest by its recorded isolation kind — cvbench's
//! container, OCI runtimes, daemon-managed containers, a user-space kernel, microVMs, other VMMs —
//! each row labelled with its kind, confinement and KVM flavour. Left: startup p50 with its 95% CI
//! (log scale: the spectrum spans orders of magnitude). Right: memory per instance (median PSS of
//! the instance's processes) with the runtime overhead (`runtime_pss_bytes`: `runc run`, a shim or
//! conmon, and a daemon's shared PSS) stacked on it.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::{hbar, hbar_chart, hbar_chart_over, hbar_totals, one_two_five};
use super::{with_legend_row, Chart, ChartText, DrawError, LegendEntry};
use crate::model::{self, caption_stats, display_name, Model, MIB};
use crate::style::Style;
use results::isolation::{Isolation, IsolationKind};
use results::metrics::{self, PSS_BYTES, RUNTIME_PSS_BYTES, START_TO_READY_MS};

/// Lightest to heaviest sandbox: the order rows are drawn in.
const SPECTRUM: [IsolationKind; 6] = [
    IsolationKind::Container,
    IsolationKind::OciRuntime,
    IsolationKind::DaemonContainer,
    IsolationKind::UserSpaceKernel,
    IsolationKind::MicroVm,
    IsolationKind::OtherVmm,
];

pub struct Spectrum {
    workload: String,
    text: ChartText,
    rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: String,
    /// Startup p50 and its 95% CI, ms.
    pub ready_ms: (f64, [f64; 2]),
    /// Median PSS of the instance's processes, MiB (0 when not measured).
    pub instance_mib: f64,
    /// Median runtime overhead, MiB (0 when none).
    pub runtime_mib: f64,
}

/// `OCI runtime · ns+cgroup · no KVM`: what isolates a row, from the recorded isolation, short
/// enough for a row label.
pub fn isolation_label(isolation: &Isolation) -> String {
    let word = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let kind = match isolation.kind {
        IsolationKind::DaemonContainer => "daemon",
        IsolationKind::MicroVm => "microVM",
        IsolationKind::OtherVmm => "other VMM",
        k => k.as_str(),
    };
    let confinement = match word(serde_json::to_value(isolation.confinement)).as_str() {
        "namespaces_and_cgroup" => "ns+cgroup".to_string(),
        other => other.replace('_', " "),
    };
    let kvm = match word(serde_json::to_value(isolation.kvm)).as_str() {
        "not_used" => "no KVM".to_string(),
        other => format!("KVM {other}"),
    };
    format!("{kind} · {confinement} · {kvm}")
}

/// The spectrum chart when at least two backends ran the chosen workload with a startup figure.
pub fn chart(model: &Model<'_>) -> Option<Spectrum> {
    let workloads = model.workloads();
    let workload = workloads
        .iter()
        .find(|w| **w == "idle")
        .or(workloads.first())?
        .to_string();
    let mut keyed: Vec<(usize, f64, Row)> = Vec::new();
    let mut captions = Vec::new();
    let mut ns = Vec::new();
    for cell in model.ran(&workload) {
        let Some(ready) = model::summary(cell, START_TO_READY_MS) else {
            continue;
        };
        let label = format!(
            "{} · {}",
            display_name(&cell.backend, &cell.isolation),
            isolation_label(&cell.isolation)
        );
        ns.push(ready.n);
        captions.push(format!(
            "{}: ready {}",
            cell.backend,
            caption_stats(metrics::quantity(START_TO_READY_MS), &ready)
        ));
        let median_mib = |m: &str| model::median_of(cell, m).unwrap_or(0.0) / MIB;
        let rank = SPECTRUM
            .iter()
            .position(|k| *k == cell.isolation.kind)
            .unwrap_or(SPECTRUM.len());
        keyed.push((
            rank,
            ready.p50,
            Row {
                label,
                ready_ms: (ready.p50, ready.median_ci95),
                instance_mib: median_mib(PSS_BYTES),
                runtime_mib: median_mib(RUNTIME_PSS_BYTES),
            },
        ));
    }
    if keyed.len() < 2 {
        return None;
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut text = ChartText::per_backend(model, &ns, &captions);
    text.caption.push_str(
        "\nMemory: median PSS of the instance's processes, plus runtime overhead (`runc run`, a shim \
         or conmon, and for Docker the daemons' PSS, which every instance shares).",
    );
    Some(Spectrum {
        workload,
        text,
        rows: keyed.into_iter().map(|(_, _, r)| r).collect(),
    })
}

impl Spectrum {
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
}

impl Chart for Spectrum {
    fn name(&self) -> String {
        format!("isolation_spectrum_{}", self.workload)
    }
    fn title(&self) -> String {
        format!(
            "Isolation spectrum ({}): startup p50 with 95% CI, and memory per instance",
            self.workload
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
        let entries = vec![
            LegendEntry::new(style.series(0).filled(), "startup p50 (whisker: 95% CI)"),
            LegendEntry::new(style.series(2).filled(), "instance PSS"),
            LegendEntry::new(style.series(1).filled(), "runtime overhead"),
        ];
        let area = with_legend_row(area, &entries, style)?;
        let (w, _) = area.dim_in_pixel();
        let (left, right) = area.split_horizontally(w * 2 / 3);
        let labels: Vec<String> = self.rows.iter().map(|r| r.label.clone()).collect();
        let rows = self.rows.len();

        // Startup, log scale.
        let lo = self
            .rows
            .iter()
            .map(|r| r.ready_ms.1[0].min(r.ready_ms.0))
            .fold(f64::INFINITY, f64::min)
            .max(1e-3);
        let hi = self
            .rows
            .iter()
            .map(|r| r.ready_ms.1[1].max(r.ready_ms.0))
            .fold(0.0, f64::max)
            .max(lo * 10.0);
        let floor = 10f64.powf(lo.log10().floor());
        let top = hi * (hi / floor).powf(0.25);
        // 1-2-5 ticks over two decades or less, one per decade beyond (else their labels collide).
        let mut ticks = one_two_five(floor, top);
        if top / floor > 100.0 {
            ticks.retain(|t| (t.log10() - t.log10().round()).abs() < 1e-9);
        }
        let x = (floor..top).log_scale().with_key_points(ticks);
        let mut chart = hbar_chart_over(&left, style, &labels, x, "request → READY (ms, log scale)")?;
        let bar = style.series(0).filled();
        chart.draw_series(
            self.rows
                .iter()
                .enumerate()
                .map(|(i, r)| hbar(rows, i, (floor, r.ready_ms.0), bar, style)),
        )?;
        let whisker = ShapeStyle::from(style.foreground).stroke_width(style.stroke());
        chart.draw_series(self.rows.iter().enumerate().map(|(i, r)| {
            let y = SegmentValue::CenterOf(u32::try_from(rows - 1 - i).unwrap_or(0));
            PathElement::new(vec![(r.ready_ms.1[0], y.clone()), (r.ready_ms.1[1], y)], whisker)
        }))?;
        let totals: Vec<(f64, String)> = self
            .rows
            .iter()
            .map(|r| {
                (
                    r.ready_ms.1[1].max(r.ready_ms.0),
                    metrics::format(START_TO_READY_MS, r.ready_ms.0),
                )
            })
            .collect();
        hbar_totals(&mut chart, style, &totals)?;

        // Memory, linear, without row labels of its own (the rows line up with the left panel).
        let max = self
            .rows
            .iter()
            .map(|r| r.instance_mib + r.runtime_mib)
            .fold(0.0, f64::max)
            .max(1e-3);
        let blank: Vec<String> = vec![String::new(); rows];
        let mut chart = hbar_chart(&right, style, &blank, max * 1.5, "memory per instance (MiB)")?;
        let (instance, runtime) = (style.series(2).filled(), style.series(1).filled());
        chart.draw_series(
            self.rows
                .iter()
                .enumerate()
                .map(|(i, r)| hbar(rows, i, (0.0, r.instance_mib), instance, style)),
        )?;
        chart.draw_series(
            self.rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.runtime_mib > 0.0)
                .map(|(i, r)| {
                    hbar(
                        rows,
                        i,
                        (r.instance_mib, r.instance_mib + r.runtime_mib),
                        runtime,
                        style,
                    )
                }),
        )?;
        let totals: Vec<(f64, String)> = self
            .rows
            .iter()
            .map(|r| {
                let text = if r.runtime_mib > 0.0 {
                    format!("{:.1} + {:.1} MiB", r.instance_mib, r.runtime_mib)
                } else {
                    format!("{:.1} MiB", r.instance_mib)
                };
                (r.instance_mib + r.runtime_mib, text)
            })
            .collect();
        hbar_totals(&mut chart, style, &totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use results::isolation::KvmFlavour;
    use results::schema::{BenchmarkResult, HostInfo, ResultsFile, RunRecord, ToolInfo};
    use std::collections::BTreeMap;

    fn results_file() -> ResultsFile {
        let tool = ToolInfo {
            name: "cvbench".into(),
            version: "0".into(),
            git_revision: None,
            argv: vec![],
        };
        let host = HostInfo {
            hostname: "h".into(),
            kernel: "k".into(),
            cpu_model: "c".into(),
            cores: 2,
            memory_bytes: 1 << 30,
            cgroup_version: "v1".into(),
            kvm: "none".into(),
            os: "o".into(),
            arch: "x86_64".into(),
            dimensions: Default::default(),
        };
        ResultsFile::new("compare", tool, host)
    }

    fn cell(backend: &str, isolation: Isolation, ready_ms: f64, pss: f64, runtime: f64) -> BenchmarkResult {
        let mut c = BenchmarkResult::new(backend, isolation, &workload::WorkloadSpec::Idle, BTreeMap::new());
        for i in 0..5 {
            let mut m = BTreeMap::new();
            m.insert(START_TO_READY_MS.to_string(), ready_ms + f64::from(i) * 0.01);
            m.insert(PSS_BYTES.to_string(), pss);
            if runtime > 0.0 {
                m.insert(RUNTIME_PSS_BYTES.to_string(), runtime);
            }
            c.runs.push(RunRecord {
                index: i,
                warmup: false,
                metrics: m,
                workload_result: None,
            });
        }
        c
    }

    #[test]
    fn rows_run_from_the_lightest_sandbox_to_the_heaviest_whatever_their_order_or_speed() {
        let mut results = results_file();
        results.benchmarks = vec![
            cell(
                "qemu",
                Isolation::vm(IsolationKind::OtherVmm, KvmFlavour::Tcg),
                1000.0,
                100.0 * MIB,
                0.0,
            ),
            cell(
                "gvisor",
                Isolation::host_kernel(IsolationKind::UserSpaceKernel),
                90.0,
                30.0 * MIB,
                5.0 * MIB,
            ),
            cell(
                "docker",
                Isolation::host_kernel(IsolationKind::DaemonContainer),
                200.0,
                1.0 * MIB,
                60.0 * MIB,
            ),
            cell(
                "runc",
                Isolation::host_kernel(IsolationKind::OciRuntime),
                20.0,
                1.0 * MIB,
                9.0 * MIB,
            ),
            cell(
                "container",
                Isolation::host_kernel(IsolationKind::Container),
                3.0,
                1.0 * MIB,
                0.0,
            ),
        ];
        let model = Model::new(&results);
        let chart = chart(&model).unwrap();
        let order: Vec<&str> = chart
            .rows()
            .iter()
            .map(|r| r.label.split(' ').next().unwrap())
            .collect();
        assert_eq!(order, ["container", "runc", "docker", "gvisor", "qemu"]);
        let docker = &chart.rows()[2];
        assert!((docker.runtime_mib - 60.0).abs() < 1e-9 && (docker.instance_mib - 1.0).abs() < 1e-9);
        assert!(
            chart.rows()[4].label.contains("emulated"),
            "{}",
            chart.rows()[4].label
        );
        assert!(
            chart.rows()[4].label.contains("KVM tcg"),
            "{}",
            chart.rows()[4].label
        );
        assert!(
            chart.rows()[3].label.contains("user-space kernel"),
            "{}",
            chart.rows()[3].label
        );
        assert_eq!(chart.name(), "isolation_spectrum_idle");
    }

    #[test]
    fn one_backend_is_no_spectrum() {
        let mut results = results_file();
        results.benchmarks = vec![cell(
            "runc",
            Isolation::host_kernel(IsolationKind::OciRuntime),
            20.0,
            1.0,
            0.0,
        )];
        assert!(chart(&Model::new(&results)).is_none());
    }

    #[test]
    fn labels_name_kind_confinement_and_kvm() {
        assert_eq!(
            isolation_label(&Isolation::host_kernel(IsolationKind::Container)),
            "container · ns+cgroup · no KVM"
        );
        assert_eq!(
            isolation_label(&Isolation::vm(IsolationKind::MicroVm, KvmFlavour::Pvm)),
            "microVM · host process · KVM pvm"
        );
    }
}
