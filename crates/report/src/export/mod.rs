//! Exports behind one [`Exporter`] trait returning bytes (hyperfine's shape): Markdown, a
//! self-contained HTML page, and a JSON digest. Markdown and HTML render the same [`Block`]s, built
//! once by [`document`], so the two never disagree.

pub mod html;
pub mod json;
pub mod markdown;

use results::stats::{self, DEFAULT_SEED};

use crate::charts::Figure;
use crate::model::{self, display_name, fmt_value, Model};
use crate::ReportError;

/// Everything an exporter can draw on.
pub struct Report<'a> {
    pub model: Model<'a>,
    pub figures: Vec<Figure>,
    /// The document Markdown and HTML render, from [`document`].
    pub blocks: Vec<Block>,
    /// The charts' colours: the HTML page takes the same theme.
    pub style: crate::style::Style,
}

/// One output format.
pub trait Exporter {
    /// File the bytes are written to inside the report directory.
    fn file_name(&self) -> &'static str;
    fn export(&self, report: &Report<'_>) -> Result<Vec<u8>, ReportError>;
}

/// A piece of the report, independent of the output format.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(u8, String),
    Paragraph(String),
    /// Highlighted remark (partial results, emulated figures).
    Warning(String),
    Table {
        head: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// Index into `Report::figures`.
    Figure(usize),
}

/// Metrics shown in the summary tables, in this order, when present.
fn table_metric(metric: &str) -> bool {
    results::check::is_startup_metric(metric)
        || metric.ends_with("_bytes")
        || (metric.starts_with("workload.")
            && (metric.ends_with("_per_s") || metric.ends_with("tps") || metric.ends_with("_us")))
}

/// The report as blocks; `figures` are the rendered charts the document refers to by index.
pub fn document(m: &Model<'_>, figures: &[Figure]) -> Vec<Block> {
    let r = m.results;
    let mut doc = vec![
        Block::Heading(1, format!("cvbench report: {}", r.command)),
        Block::Paragraph(format!("Host: {}", m.host_line())),
        Block::Paragraph(format!(
            "Run: `{}` · {} {}{} · started {}",
            if r.tool.argv.is_empty() {
                r.command.clone()
            } else {
                r.tool.argv.join(" ")
            },
            r.tool.name,
            r.tool.version,
            r.tool
                .git_revision
                .as_deref()
                .map(|g| format!(" ({g})"))
                .unwrap_or_default(),
            r.started_at
        )),
        Block::Paragraph(
            "Statistics: n measured runs (warm-ups excluded), percentiles by linear interpolation, \
             mean ± sample sd, bootstrap 95% CI of the median (2000 resamples, fixed seed), \
             Tukey outliers flagged and kept."
                .to_string(),
        ),
    ];
    if r.partial {
        doc.push(Block::Warning(
            "Partial results: the run was interrupted or failed part-way.".to_string(),
        ));
    }
    let emulated: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for c in r.benchmarks.iter().filter(|c| model::is_emulated(&c.labels)) {
            if !v.contains(&c.backend.as_str()) {
                v.push(c.backend.as_str());
            }
        }
        v
    };
    if !emulated.is_empty() {
        doc.push(Block::Warning(format!(
            "Figures of {} are emulated (KVM {} on this host: guest kernel code runs far slower than on hardware); \
             they are labelled \"(emulated)\" everywhere.",
            emulated.join(", "),
            r.host.kvm
        )));
    }
    let skipped = m.skipped();
    if !skipped.is_empty() {
        doc.push(Block::Heading(2, "Skipped".to_string()));
        doc.push(Block::Table {
            head: vec!["backend".into(), "workload".into(), "reason".into()],
            rows: skipped
                .iter()
                .map(|(b, w, why)| vec![(*b).to_string(), (*w).to_string(), (*why).to_string()])
                .collect(),
        });
    }

    doc.push(Block::Heading(2, "Summary".to_string()));
    for workload in m.workloads() {
        let cells = m.ran(workload);
        if cells.is_empty() {
            continue;
        }
        doc.push(Block::Heading(3, format!("{workload} workload")));
        let head = [
            "backend",
            "metric",
            "n",
            "min",
            "p50",
            "p90",
            "p99",
            "max",
            "mean ± sd",
            "median 95% CI",
            "outliers",
        ];
        let mut rows = Vec::new();
        for cell in cells {
            for metric in model::metric_names(cell).into_iter().filter(|x| table_metric(x)) {
                let Some(s) = model::summary(cell, metric) else {
                    continue;
                };
                rows.push(vec![
                    display_name(&cell.backend, &cell.labels),
                    metric.to_string(),
                    s.n.to_string(),
                    fmt_value(metric, s.min),
                    fmt_value(metric, s.p50),
                    fmt_value(metric, s.p90),
                    fmt_value(metric, s.p99),
                    fmt_value(metric, s.max),
                    format!("{} ± {}", fmt_value(metric, s.mean), fmt_value(metric, s.sd)),
                    format!(
                        "{} – {}",
                        fmt_value(metric, s.median_ci95[0]),
                        fmt_value(metric, s.median_ci95[1])
                    ),
                    s.outliers.len().to_string(),
                ]);
            }
        }
        doc.push(Block::Table {
            head: head.map(String::from).to_vec(),
            rows,
        });
    }

    let ratios = ratio_rows(m);
    if !ratios.is_empty() {
        let reference = m.backends().first().map(|b| (*b).to_string()).unwrap_or_default();
        doc.push(Block::Heading(2, format!("Relative to {reference}")));
        doc.push(Block::Paragraph(
            "Ratio of medians (other / reference) with its bootstrap 95% CI; > 1 means larger (slower, more memory).".to_string(),
        ));
        doc.push(Block::Table {
            head: vec![
                "workload".into(),
                "backend".into(),
                "metric".into(),
                "ratio".into(),
                "95% CI".into(),
            ],
            rows: ratios,
        });
    }

    let disk = disk_rows(m);
    if !disk.is_empty() {
        doc.push(Block::Heading(2, "Disk".to_string()));
        doc.push(Block::Table {
            head: vec![
                "backend".into(),
                "image (shared, once)".into(),
                "per instance (p50)".into(),
                "1 instance".into(),
                "10 instances".into(),
                "100 instances".into(),
                "100 naive full copies".into(),
            ],
            rows: disk,
        });
    }

    if !r.density.is_empty() {
        doc.push(Block::Heading(2, "Density".to_string()));
        let per_instance = |v: Option<f64>| v.map_or("–".to_string(), |b| fmt_value("x_bytes", b));
        let rows = r
            .density
            .iter()
            .map(|d| {
                let launch: Vec<f64> = d.points.iter().map(|p| p.launch_ms).collect();
                let s = model::summarize_memo(&launch);
                let split = crate::charts::density::split_per_instance(d);
                vec![
                    display_name(&d.backend, &d.labels),
                    d.workload.clone(),
                    d.points.len().to_string(),
                    per_instance(split.and_then(|s| s.host_lost_bytes)),
                    per_instance(split.map(|s| s.pss_bytes)),
                    per_instance(split.and_then(|s| s.guest_ram_bytes)),
                    per_instance(split.and_then(|s| s.kernel_bytes)),
                    per_instance(split.and_then(|s| s.mem_available_drop_bytes)),
                    per_instance(split.and_then(|s| s.cgroup_bytes)),
                    d.instances_per_gib.map_or("–".into(), |v| format!("{v:.1}")),
                    d.basis.describe().to_string(),
                    d.instances_per_gib_pss.map_or("–".into(), |v| format!("{v:.1}")),
                    s.map_or("–".into(), |s| {
                        format!("{} / {}", fmt_value("x_ms", s.p50), fmt_value("x_ms", s.p99))
                    }),
                    d.stop_reason.clone(),
                ]
            })
            .collect();
        doc.push(Block::Paragraph(
            "Per instance, at the end of each curve. Host lost = user space + kernel: it is the \
             headline, because it counts the kernel memory (page tables, unreclaimable slab, \
             namespaces, cgroups, per-CPU and vmalloc memory, KVM) that PSS never sees. User space \
             (PSS): the instances' processes and runtime (for VMs the VMM, guest RAM included). \
             Kernel: growth of the host's unreclaimable kernel memory in /proc/meminfo, measured \
             from just before to just after each launch. Cross-checks: the MemAvailable drop over \
             the same windows (noisy on a shared host) and the memory cgroup charge (kernel memory \
             included where the controller accounts it)."
                .to_string(),
        ));
        doc.push(Block::Table {
            head: vec![
                "backend".into(),
                "workload".into(),
                "instances".into(),
                "host lost / instance".into(),
                "user space (PSS) / instance".into(),
                "of which guest RAM".into(),
                "kernel / instance".into(),
                "MemAvailable drop / instance".into(),
                "cgroup charge / instance".into(),
                "instances / GiB".into(),
                "counted from".into(),
                "instances / GiB (PSS only)".into(),
                "launch p50 / p99".into(),
                "stopped because".into(),
            ],
            rows,
        });
    }

    let failures: Vec<Vec<String>> = r
        .benchmarks
        .iter()
        .flat_map(|c| {
            c.failures.iter().map(move |f| {
                vec![
                    c.backend.clone(),
                    c.workload.clone(),
                    f.index.to_string(),
                    f.error.clone(),
                ]
            })
        })
        .collect();
    if !failures.is_empty() {
        doc.push(Block::Heading(2, "Failed runs".to_string()));
        doc.push(Block::Table {
            head: vec!["backend".into(), "workload".into(), "run".into(), "error".into()],
            rows: failures,
        });
    }

    if !figures.is_empty() {
        doc.push(Block::Heading(2, "Figures".to_string()));
        for i in 0..figures.len() {
            doc.push(Block::Figure(i));
        }
    }
    doc
}

/// Ratio of medians of each backend against the first one, for the headline metrics.
fn ratio_rows(m: &Model<'_>) -> Vec<Vec<String>> {
    let Some(reference) = m.backends().first().copied() else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for workload in m.workloads() {
        let cells = m.ran(workload);
        let Some(base) = cells.iter().find(|c| c.backend == reference) else {
            continue;
        };
        for other in cells.iter().filter(|c| c.backend != reference) {
            for metric in [
                "start_to_ready_ms",
                "pss_bytes",
                "workload.requests_per_s",
                "workload.tps",
            ] {
                let (a, b) = (other.measured_samples(metric), base.measured_samples(metric));
                let Some(r) = stats::ratio_of_medians_ci(&a, &b, DEFAULT_SEED) else {
                    continue;
                };
                rows.push(vec![
                    workload.to_string(),
                    display_name(&other.backend, &other.labels),
                    metric.to_string(),
                    format!("{:.2}×", r.ratio),
                    format!("{:.2} – {:.2}", r.ci95[0], r.ci95[1]),
                ]);
            }
        }
    }
    rows
}

fn disk_rows(m: &Model<'_>) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for model::DiskEntry { name, footprint, .. } in m.disk_entries() {
        let [one, ten, hundred, ..] = footprint.as_slice() else {
            continue;
        };
        let mb = |b: u64| format!("{:.2} MiB", model::mib(b));
        rows.push(vec![
            name,
            mb(one.shared_image_bytes),
            format!("{:.1} KiB", model::bytes_f64(one.per_instance_bytes) / 1024.0),
            mb(one.total_bytes),
            mb(ten.total_bytes),
            mb(hundred.total_bytes),
            mb(hundred.naive_full_copy_bytes),
        ]);
    }
    rows
}
