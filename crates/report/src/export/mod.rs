//! Exports behind one [`Exporter`] trait returning bytes (hyperfine's shape): Markdown, a
//! self-contained HTML page, a JSON digest and a CSV table of the summaries. Markdown and HTML
//! render the same [`Block`]s, built once by [`document`], so the two never disagree.

pub mod csv;
pub mod html;
pub mod json;
pub mod markdown;

use results::disk::DISK_INSTANCE_COUNTS;
use results::metrics::{self, Group, Quantity, TimeUnit};
use results::schema::BenchmarkResult;
use results::stats::{self, BOOTSTRAP_RESAMPLES, DEFAULT_SEED};

use crate::charts::Figure;
use crate::model::{self, display_name, Model};
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

/// Metrics shown in the summary tables, in this order, when present: every registered group but the
/// workload's details (sizes, durations, counts).
fn table_metric(metric: &str) -> bool {
    metrics::group(metric) != Group::WorkloadDetail
}

/// The headline metrics of the "Relative to" table.
const RATIO_METRICS: [&str; 4] = [
    metrics::START_TO_READY_MS,
    metrics::PSS_BYTES,
    metrics::WORKLOAD_REQUESTS_PER_S,
    metrics::WORKLOAD_TPS,
];

/// The report as blocks; `figures` are the rendered charts the document refers to by index.
pub fn document(m: &Model<'_>, figures: &[Figure]) -> Vec<Block> {
    document_with(m, figures, Vec::new())
}

/// [`document`] with `pivot` (see [`crate::pivot`]) right after the preamble.
pub fn document_with(m: &Model<'_>, figures: &[Figure], pivot: Vec<Block>) -> Vec<Block> {
    let mut doc = preamble(m);
    doc.extend(pivot);
    doc.extend(skipped_section(m));
    doc.extend(summary_section(m));
    doc.extend(ratio_section(m));
    doc.extend(network_path_section(m));
    doc.extend(anchors_section(m));
    doc.extend(disk_section(m));
    doc.extend(density_section(m));
    doc.extend(failures_section(m));
    if !figures.is_empty() {
        doc.push(Block::Heading(2, "Figures".to_string()));
        doc.extend((0..figures.len()).map(Block::Figure));
    }
    doc
}

fn table(head: &[&str], rows: Vec<Vec<String>>) -> Block {
    Block::Table {
        head: head.iter().map(|h| (*h).to_string()).collect(),
        rows,
    }
}

/// Title, host, command line, the statistics used, and warnings (partial, emulated).
fn preamble(m: &Model<'_>) -> Vec<Block> {
    let r = m.results;
    let argv = if r.tool.argv.is_empty() {
        r.command.clone()
    } else {
        r.tool.argv.join(" ")
    };
    let revision = r
        .tool
        .git_revision
        .as_deref()
        .map(|g| format!(" ({g})"))
        .unwrap_or_default();
    let mut doc = vec![
        Block::Heading(1, format!("cvbench report: {}", r.command)),
        Block::Paragraph(format!("Host: {}", m.host_line())),
        Block::Paragraph(format!(
            "Run: `{argv}` · {} {}{revision} · started {}",
            r.tool.name, r.tool.version, r.started_at
        )),
        Block::Paragraph(format!(
            "Statistics: n measured runs (warm-ups excluded), percentiles by linear interpolation, \
             mean ± sample sd, bootstrap 95% CI of the median ({BOOTSTRAP_RESAMPLES} resamples, fixed seed), \
             Tukey outliers flagged and kept."
        )),
    ];
    if r.partial {
        doc.push(Block::Warning(
            "Partial results: the run was interrupted or failed part-way.".to_string(),
        ));
    }
    let mut emulated: Vec<&str> = Vec::new();
    for c in r.benchmarks.iter().filter(|c| c.isolation.is_emulated()) {
        if !emulated.contains(&c.backend.as_str()) {
            emulated.push(c.backend.as_str());
        }
    }
    let nested: Vec<&str> = emulated
        .iter()
        .copied()
        .filter(|b| {
            r.benchmarks
                .iter()
                .any(|c| c.backend == *b && c.isolation.kvm.is_nested())
        })
        .collect();
    if !nested.is_empty() || r.host.kvm == "nested-svm-tcg" {
        doc.push(Block::Warning(format!(
            "Function only: this run happened inside a nested-KVM L1 (scripts/nested-kvm.sh), whose AMD \
             SVM is emulated by QEMU's TCG. Its guests really booted and ran their workloads, but the \
             figures of {} are emulated twice over and say nothing about speed; they are labelled \
             \"(emulated, nested)\".",
            if nested.is_empty() {
                "every backend".to_string()
            } else {
                nested.join(", ")
            }
        )));
    } else if !emulated.is_empty() {
        doc.push(Block::Warning(format!(
            "Figures of {} are emulated (KVM {} on this host: guest kernel code runs far slower than on hardware); \
             they are labelled \"(emulated)\" everywhere.",
            emulated.join(", "),
            r.host.kvm
        )));
    }
    doc
}

fn skipped_section(m: &Model<'_>) -> Vec<Block> {
    let skipped = m.skipped();
    if skipped.is_empty() {
        return Vec::new();
    }
    let rows = skipped
        .iter()
        .map(|(b, w, why)| vec![(*b).to_string(), (*w).to_string(), (*why).to_string()])
        .collect();
    vec![
        Block::Heading(2, "Skipped".to_string()),
        table(&["backend", "workload", "reason"], rows),
    ]
}

/// Per workload, every table metric of every cell that ran.
fn summary_section(m: &Model<'_>) -> Vec<Block> {
    const HEAD: [&str; 11] = [
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
    let mut doc = vec![Block::Heading(2, "Summary".to_string())];
    for workload in m.workloads() {
        let cells = m.ran(workload);
        if cells.is_empty() {
            continue;
        }
        doc.push(Block::Heading(3, format!("{workload} workload")));
        let rows = cells
            .into_iter()
            .flat_map(|cell| {
                model::metric_names(cell)
                    .into_iter()
                    .filter(|x| table_metric(x))
                    .filter_map(move |metric| summary_row(cell, metric))
            })
            .collect();
        doc.push(table(&HEAD, rows));
    }
    doc
}

fn summary_row(cell: &BenchmarkResult, metric: &str) -> Option<Vec<String>> {
    let s = model::summary(cell, metric)?;
    let q = metrics::quantity(metric);
    Some(vec![
        crate::model::cell_name(cell),
        metric.to_string(),
        s.n.to_string(),
        q.format(s.min),
        q.format(s.p50),
        q.format(s.p90),
        q.format(s.p99),
        q.format(s.max),
        format!("{} ± {}", q.format(s.mean), q.format(s.sd)),
        format!("{} – {}", q.format(s.median_ci95[0]), q.format(s.median_ci95[1])),
        s.outliers.len().to_string(),
    ])
}

fn ratio_section(m: &Model<'_>) -> Vec<Block> {
    let ratios = ratio_rows(m);
    if ratios.is_empty() {
        return Vec::new();
    }
    let reference = m.backends().first().map(|b| (*b).to_string()).unwrap_or_default();
    vec![
        Block::Heading(2, format!("Relative to {reference}")),
        Block::Paragraph(
            "Ratio of medians (other / reference) with its bootstrap 95% CI; > 1 means larger (slower, more memory).".to_string(),
        ),
        table(&["workload", "backend", "metric", "ratio", "95% CI"], ratios),
    ]
}

/// In-sandbox vs from outside: per workload whose cells were reached from outside (their
/// `outside_load` label), each backend's self-test figures beside wrk's of the same server, the
/// ratio of the medians (outside / inside) with its CI, and how the outside load was made — or why
/// it is missing. What the network path costs, per backend.
fn network_path_section(m: &Model<'_>) -> Vec<Block> {
    let mut rows = Vec::new();
    let mut notes: Vec<Vec<String>> = Vec::new();
    for workload in m.workloads() {
        for cell in m.ran(workload) {
            let Some(how) = cell.labels.get(metrics::OUTSIDE_LOAD_LABEL) else {
                continue;
            };
            let median = |metric: &str| {
                model::summary(cell, metric)
                    .map(|s| {
                        format!(
                            "{} ({} – {})",
                            metrics::format(metric, s.p50),
                            metrics::format(metric, s.median_ci95[0]),
                            metrics::format(metric, s.median_ci95[1])
                        )
                    })
                    .unwrap_or_else(|| "–".to_string())
            };
            let ratio = |outside: &str, inside: &str| {
                stats::ratio_of_medians_ci(
                    &cell.measured_samples(outside),
                    &cell.measured_samples(inside),
                    DEFAULT_SEED,
                )
                .map(|r| {
                    format!(
                        "{} ({:.2} – {:.2})",
                        Quantity::Ratio.format(r.ratio),
                        r.ci95[0],
                        r.ci95[1]
                    )
                })
                .unwrap_or_else(|| "–".to_string())
            };
            let name = model::cell_name(cell);
            rows.push(vec![
                workload.to_string(),
                name.clone(),
                median(metrics::WORKLOAD_REQUESTS_PER_S),
                median(metrics::OUTSIDE_REQUESTS_PER_S),
                ratio(metrics::OUTSIDE_REQUESTS_PER_S, metrics::WORKLOAD_REQUESTS_PER_S),
                median(metrics::WORKLOAD_LATENCY_P99_US),
                median(metrics::OUTSIDE_LATENCY_P99_US),
                ratio(metrics::OUTSIDE_LATENCY_P99_US, metrics::WORKLOAD_LATENCY_P99_US),
                median(metrics::OUTSIDE_TCP_CONNECT_US),
            ]);
            let note = vec![workload.to_string(), name, how.clone()];
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    if rows.is_empty() {
        return Vec::new();
    }
    vec![
        Block::Heading(2, "Network path: in-sandbox vs from outside".to_string()),
        Block::Paragraph(
            "The same server measured twice in each run: first loaded from outside (wrk in the harness's \
             client network namespace, over the instance's veth), then by its own self-test over the \
             sandbox's loopback, with the same requests, connections and files. Medians over runs with \
             their bootstrap 95% CI; the ratio is outside / in-sandbox. It compares two clients as well \
             as two paths (wrk: one event-loop thread on the host; the self-test: a thread per \
             connection inside the sandbox), so it bounds what the network path costs rather than \
             isolating it; TCP connect is a path-only figure. \"–\": not measured for that backend \
             (why: below)."
                .to_string(),
        ),
        table(
            &[
                "workload",
                "backend",
                "req/s in-sandbox",
                "req/s from outside",
                "outside / in-sandbox",
                "p99 in-sandbox",
                "p99 from outside",
                "outside / in-sandbox",
                "TCP connect",
            ],
            rows,
        ),
        table(&["workload", "backend", "how the outside load was made"], notes),
    ]
}

/// Published figures, quoted with their sources, beside this report's own median of the same
/// quantity (idle) for the same backend where it ran. Only in reports that measured something.
fn anchors_section(m: &Model<'_>) -> Vec<Block> {
    if m.backends().is_empty() {
        return Vec::new();
    }
    let idle = m.ran("idle");
    let measured = |a: &crate::anchors::Anchor| {
        let cell = idle.iter().find(|c| Some(c.backend.as_str()) == a.backend)?;
        let s = crate::model::summary(cell, a.metric)?;
        Some(format!(
            "{} {} p50 (idle, n = {})",
            metrics::format(a.metric, s.p50),
            metrics::label(a.metric),
            s.n
        ))
    };
    let rows = crate::anchors::ANCHORS
        .iter()
        .map(|a| {
            vec![
                a.subject.to_string(),
                a.figure.to_string(),
                measured(a).unwrap_or_else(|| "–".to_string()),
                a.source.to_string(),
                a.conditions.to_string(),
            ]
        })
        .collect();
    vec![
        Block::Heading(2, "Published anchors (quoted, not measured)".to_string()),
        Block::Paragraph(
            "Figures others published, with their sources and conditions, for orientation only: they were not measured here, come from other machines and other definitions of start, and enter no chart or statistic of this report.".to_string(),
        ),
        table(&["subject", "quoted figure", "measured here", "source", "conditions"], rows),
    ]
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
            for metric in RATIO_METRICS {
                let (a, b) = (other.measured_samples(metric), base.measured_samples(metric));
                let Some(r) = stats::ratio_of_medians_ci(&a, &b, DEFAULT_SEED) else {
                    continue;
                };
                rows.push(vec![
                    workload.to_string(),
                    crate::model::cell_name(other),
                    metric.to_string(),
                    Quantity::Ratio.format(r.ratio),
                    format!("{:.2} – {:.2}", r.ci95[0], r.ci95[1]),
                ]);
            }
        }
    }
    rows
}

fn disk_section(m: &Model<'_>) -> Vec<Block> {
    let rows = disk_rows(m);
    if rows.is_empty() {
        return Vec::new();
    }
    let mut head = vec![
        "backend".to_string(),
        "image (shared, once)".to_string(),
        "per instance (p50)".to_string(),
    ];
    head.extend(DISK_INSTANCE_COUNTS.iter().map(|&n| instances(n)));
    if let Some(&most) = DISK_INSTANCE_COUNTS.last() {
        head.push(format!("{most} naive full copies"));
    }
    vec![Block::Heading(2, "Disk".to_string()), Block::Table { head, rows }]
}

/// `1 instance`, `10 instances`.
fn instances(n: u32) -> String {
    if n == 1 {
        "1 instance".to_string()
    } else {
        format!("{n} instances")
    }
}

/// One row per backend: the image, the layer per instance, the total at each of
/// [`DISK_INSTANCE_COUNTS`], and naive full copies at the largest count.
fn disk_rows(m: &Model<'_>) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for model::DiskEntry { name, footprint, .. } in m.disk_entries() {
        let (Some(first), Some(last)) = (footprint.first(), footprint.last()) else {
            continue;
        };
        let mb = |b: u64| format!("{:.2} MiB", model::mib(b));
        let mut row = vec![
            name,
            mb(first.shared_image_bytes),
            format!("{:.1} KiB", model::bytes_f64(first.per_instance_bytes) / 1024.0),
        ];
        row.extend(footprint.iter().map(|f| mb(f.total_bytes)));
        row.push(mb(last.naive_full_copy_bytes));
        rows.push(row);
    }
    rows
}

fn density_section(m: &Model<'_>) -> Vec<Block> {
    let r = m.results;
    if r.density.is_empty() {
        return Vec::new();
    }
    let launch = Quantity::Time(TimeUnit::Milliseconds);
    let per_instance = |v: Option<f64>| v.map_or("–".to_string(), |b| Quantity::Bytes.format(b));
    let rows = r
        .density
        .iter()
        .map(|d| {
            let launch_ms: Vec<f64> = d.points.iter().map(|p| p.launch_ms).collect();
            let s = model::summarize_memo(&launch_ms);
            let split = crate::charts::density::split_per_instance(d);
            vec![
                display_name(&d.backend, &d.isolation),
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
                    format!("{} / {}", launch.format(s.p50), launch.format(s.p99))
                }),
                d.stop_reason.clone(),
            ]
        })
        .collect();
    vec![
        Block::Heading(2, "Density".to_string()),
        Block::Paragraph(
            "Per instance, at the end of each curve. Host lost = user space + kernel: it is the \
             headline, because it counts the kernel memory (page tables, unreclaimable slab, \
             namespaces, cgroups, per-CPU and vmalloc memory, KVM) that PSS never sees. User space \
             (PSS): the instances' processes and runtime (for VMs the VMM, guest RAM included). \
             Kernel: growth of the host's unreclaimable kernel memory in /proc/meminfo, measured \
             from just before to just after each launch. Cross-checks: the MemAvailable drop over \
             the same windows (noisy on a shared host) and the memory cgroup charge (kernel memory \
             included where the controller accounts it)."
                .to_string(),
        ),
        table(
            &[
                "backend",
                "workload",
                "instances",
                "host lost / instance",
                "user space (PSS) / instance",
                "of which guest RAM",
                "kernel / instance",
                "MemAvailable drop / instance",
                "cgroup charge / instance",
                "instances / GiB",
                "counted from",
                "instances / GiB (PSS only)",
                "launch p50 / p99",
                "stopped because",
            ],
            rows,
        ),
    ]
}

fn failures_section(m: &Model<'_>) -> Vec<Block> {
    let rows: Vec<Vec<String>> = m
        .results
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
    if rows.is_empty() {
        return Vec::new();
    }
    vec![
        Block::Heading(2, "Failed runs".to_string()),
        table(&["backend", "workload", "run", "error"], rows),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use results::isolation::{Isolation, IsolationKind, KvmFlavour};
    use results::schema::{BenchmarkResult, HostInfo, ResultsFile, ToolInfo};
    use workload::WorkloadSpec;

    use super::*;

    fn results_on(host_kvm: &str, kvm: KvmFlavour) -> ResultsFile {
        let host = HostInfo {
            hostname: "h".into(),
            kernel: "k".into(),
            cpu_model: "c".into(),
            cores: 1,
            memory_bytes: 1 << 30,
            cgroup_version: "v2".into(),
            kvm: host_kvm.into(),
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
        let mut f = ResultsFile::new("compare", tool, host);
        f.benchmarks.push(BenchmarkResult::new(
            "microvm",
            Isolation::vm(IsolationKind::MicroVm, kvm),
            &WorkloadSpec::Idle,
            BTreeMap::new(),
        ));
        f
    }

    fn warnings(f: &ResultsFile) -> Vec<String> {
        preamble(&Model::new(f))
            .into_iter()
            .filter_map(|b| match b {
                Block::Warning(w) => Some(w),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_nested_run_says_its_figures_are_function_only() {
        let w = warnings(&results_on("nested-svm-tcg", KvmFlavour::NestedSvmTcg));
        assert!(
            w.iter().any(|w| w.starts_with("Function only")
                && w.contains("microvm")
                && w.contains("nested-kvm.sh")),
            "{w:?}"
        );
        let w = warnings(&results_on("pvm", KvmFlavour::Pvm));
        assert!(w.iter().all(|w| !w.contains("Function only")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("emulated")), "{w:?}");
    }

    #[test]
    fn the_network_path_table_pairs_inside_and_outside_and_says_why_one_is_missing() {
        let mut f = results_on("pvm", KvmFlavour::Pvm);
        let http = WorkloadSpec::default_for(workload::WorkloadKind::Http);
        let cell = |backend: &str, label: &str, outside: bool| {
            let labels = BTreeMap::from([(metrics::OUTSIDE_LOAD_LABEL.to_string(), label.to_string())]);
            let mut c = BenchmarkResult::new(
                backend,
                Isolation::host_kernel(IsolationKind::OciRuntime),
                &http,
                labels,
            );
            for (i, k) in [1.0, 1.1, 0.9].into_iter().enumerate() {
                let mut m = BTreeMap::from([
                    (metrics::WORKLOAD_REQUESTS_PER_S.to_string(), 8000.0 * k),
                    (metrics::WORKLOAD_LATENCY_P99_US.to_string(), 1000.0 * k),
                ]);
                if outside {
                    m.insert(metrics::OUTSIDE_REQUESTS_PER_S.to_string(), 2000.0 * k);
                    m.insert(metrics::OUTSIDE_LATENCY_P99_US.to_string(), 4000.0 * k);
                }
                c.runs.push(results::schema::RunRecord {
                    index: u32::try_from(i).unwrap(),
                    warmup: false,
                    metrics: m,
                    workload_result: None,
                });
            }
            c.recompute_summary(results::stats::DEFAULT_SEED);
            c
        };
        f.benchmarks.push(cell("runc", "wrk -t1 ...", true));
        f.benchmarks
            .push(cell("gvisor", "missing: gvisor: no netstack here", false));
        let blocks = network_path_section(&Model::new(&f));
        let tables: Vec<&Vec<Vec<String>>> = blocks
            .iter()
            .filter_map(|b| match b {
                Block::Table { rows, .. } => Some(rows),
                _ => None,
            })
            .collect();
        let [figures, how] = tables[..] else {
            panic!("two tables expected: {blocks:?}")
        };
        let runc = figures.iter().find(|r| r[1] == "runc").unwrap();
        // Outside / in-sandbox: 2000/8000 for req/s, 4000/1000 for p99, exactly (same spread).
        assert!(runc[4].starts_with("0.25×"), "{runc:?}");
        assert!(runc[7].starts_with("4.00×"), "{runc:?}");
        let gvisor = figures.iter().find(|r| r[1] == "gvisor").unwrap();
        assert_eq!(gvisor[3], "–");
        assert!(how
            .iter()
            .any(|r| r[1] == "gvisor" && r[2] == "missing: gvisor: no netstack here"));
        // Cells without the label (other workloads, older files) make no section.
        let mut plain = results_on("pvm", KvmFlavour::Pvm);
        plain.benchmarks.retain(|c| c.workload != "http");
        assert!(network_path_section(&Model::new(&plain)).is_empty());
    }

    #[test]
    fn anchors_are_quoted_apart_with_this_runs_figure_beside_them() {
        let mut f = results_on("pvm", KvmFlavour::Pvm);
        let mut runc = BenchmarkResult::new(
            "runc",
            Isolation::host_kernel(IsolationKind::OciRuntime),
            &WorkloadSpec::Idle,
            BTreeMap::new(),
        );
        for (i, ms) in [20.0, 22.0, 24.0].into_iter().enumerate() {
            runc.runs.push(results::schema::RunRecord {
                index: u32::try_from(i).unwrap(),
                warmup: false,
                metrics: BTreeMap::from([(metrics::START_TO_READY_MS.to_string(), ms)]),
                workload_result: None,
            });
        }
        runc.recompute_summary(results::stats::DEFAULT_SEED);
        f.benchmarks.push(runc);
        let blocks = anchors_section(&Model::new(&f));
        assert!(
            matches!(&blocks[0], Block::Heading(2, h) if h.contains("quoted, not measured")),
            "{blocks:?}"
        );
        let Some(Block::Table { rows, .. }) = blocks.last() else {
            panic!("no table: {blocks:?}")
        };
        let runc_row = rows.iter().find(|r| r[0] == "runc").unwrap();
        assert!(runc_row[1].contains("224.6 ms"), "{runc_row:?}");
        assert!(
            runc_row[2].starts_with("22.00 ms") && runc_row[2].contains("n = 3"),
            "{runc_row:?}"
        );
        // No measured row for a backend that did not run here: a dash, never a number.
        let youki = rows.iter().find(|r| r[0] == "youki").unwrap();
        assert_eq!(youki[2], "–");
        // A report with nothing in it gets no anchors.
        let mut empty = results_on("pvm", KvmFlavour::Pvm);
        empty.benchmarks.clear();
        assert!(anchors_section(&Model::new(&empty)).is_empty());
    }
}
