//! What the report shows, derived from a results file only: backends in a stable order (so a backend
//! keeps its colour in every chart), measured samples per metric, summaries recomputed from the raw
//! samples, display names that say when figures are emulated, and value formatting by unit suffix.

use results::disk::{disk_footprint, DiskFootprint, DISK_INSTANCE_COUNTS};
use results::schema::Summary;
use results::schema::{BenchmarkResult, ResultsFile};
use results::stats::{self, DEFAULT_SEED};

/// Backends with a fixed colour (palette index = position).
pub const KNOWN_BACKENDS: [&str; 4] = ["container", "runc", "microvm", "qemu"];

/// Label a backend sets when its figures come from emulation (microVM on a PVM host).
pub const EMULATED_LABEL: &str = "emulated";

/// The disk footprint shown for one backend.
#[derive(Debug, Clone)]
pub struct DiskEntry<'a> {
    /// Display name of the backend (see [`display_name`]); one entry per name.
    pub name: String,
    /// The cell the figures come from.
    pub cell: &'a BenchmarkResult,
    /// Footprint at each of [`DISK_INSTANCE_COUNTS`] (never empty).
    pub footprint: Vec<DiskFootprint>,
}

/// A results file with the lookups charts and exporters share.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    pub results: &'a ResultsFile,
}

impl<'a> Model<'a> {
    pub fn new(results: &'a ResultsFile) -> Self {
        Model { results }
    }

    /// Backend names in order of first appearance (benchmarks, then density curves).
    pub fn backends(&self) -> Vec<&'a str> {
        let mut names: Vec<&str> = Vec::new();
        let all = self.results.benchmarks.iter().map(|c| c.backend.as_str());
        for name in all.chain(self.results.density.iter().map(|d| d.backend.as_str())) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Workload names in order of first appearance.
    pub fn workloads(&self) -> Vec<&'a str> {
        let mut names: Vec<&str> = Vec::new();
        for c in &self.results.benchmarks {
            if !names.contains(&c.workload.as_str()) {
                names.push(c.workload.as_str());
            }
        }
        names
    }

    /// Palette index of a backend: well-known backends keep their colour in every chart and every
    /// report (slides stay consistent); others follow in order of appearance.
    pub fn colour_index(&self, backend: &str) -> usize {
        if let Some(i) = KNOWN_BACKENDS.iter().position(|b| *b == backend) {
            return i;
        }
        let others: Vec<&str> = self
            .backends()
            .into_iter()
            .filter(|b| !KNOWN_BACKENDS.contains(b))
            .collect();
        KNOWN_BACKENDS.len() + others.iter().position(|b| *b == backend).unwrap_or(0)
    }

    /// Cells that ran (not skipped) for `workload`.
    pub fn ran(&self, workload: &str) -> Vec<&'a BenchmarkResult> {
        self.results
            .benchmarks
            .iter()
            .filter(|c| c.skipped.is_none() && c.workload == workload)
            .collect()
    }

    /// Cells that were skipped, with their reason.
    pub fn skipped(&self) -> Vec<(&'a str, &'a str, &'a str)> {
        self.results
            .benchmarks
            .iter()
            .filter_map(|c| {
                c.skipped
                    .as_deref()
                    .map(|r| (c.backend.as_str(), c.workload.as_str(), r))
            })
            .collect()
    }

    /// Backends skipped for every workload, with the reason (one line each). A backend skipped for
    /// some workloads only (the probe guest runs idle alone) is not listed: those cells are in the
    /// report's "Skipped" table.
    pub fn skipped_backends(&self) -> Vec<(&'a str, &'a str)> {
        let cells = &self.results.benchmarks;
        let mut out: Vec<(&str, &str)> = Vec::new();
        for (backend, _, reason) in self.skipped() {
            let everywhere = cells
                .iter()
                .filter(|c| c.backend == backend)
                .all(|c| c.skipped.is_some());
            if everywhere && !out.iter().any(|(b, _)| *b == backend) {
                out.push((backend, reason));
            }
        }
        out
    }

    /// One disk entry per backend (by display name): the first cell, in results order, that has
    /// disk figures.
    pub fn disk_entries(&self) -> Vec<DiskEntry<'a>> {
        let mut out: Vec<DiskEntry<'a>> = Vec::new();
        for cell in &self.results.benchmarks {
            let name = display_name(&cell.backend, &cell.labels);
            if out.iter().any(|e| e.name == name) {
                continue;
            }
            let footprint = disk_footprint(cell, &DISK_INSTANCE_COUNTS);
            if footprint.is_empty() {
                continue;
            }
            out.push(DiskEntry {
                name,
                cell,
                footprint,
            });
        }
        out
    }

    /// `hostname · CPU · N cores · X GiB · kernel K · KVM flavour`.
    pub fn host_line(&self) -> String {
        let h = &self.results.host;
        format!(
            "{} · {} · {} cores · {:.0} GiB · kernel {} · cgroup {} · KVM {} · {}",
            h.hostname,
            h.cpu_model,
            h.cores,
            gib(h.memory_bytes),
            h.kernel,
            h.cgroup_version,
            h.kvm,
            h.os
        )
    }

    /// Short form for chart subtitles.
    pub fn host_short(&self) -> String {
        let h = &self.results.host;
        format!(
            "host {} ({}, {} cores, KVM {})",
            h.hostname,
            shorten(&h.cpu_model, 40),
            h.cores,
            h.kvm
        )
    }
}

/// Whether a cell's or curve's labels mark its figures as emulated.
pub fn is_emulated(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.get(EMULATED_LABEL).is_some_and(|v| v == "true")
}

/// The label of figures taken inside the nested-KVM L1 (`scripts/nested-kvm.sh`): function only.
pub const NESTED_LABEL: &str = "nested";

/// Whether a cell's or curve's figures come from nested SVM on TCG (function only, never speed).
pub fn is_nested(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.contains_key(NESTED_LABEL)
}

/// `microvm (emulated)` when the figures are emulated, `microvm (emulated, nested)` when they come
/// from nested SVM on TCG, else the backend name.
pub fn display_name(backend: &str, labels: &std::collections::BTreeMap<String, String>) -> String {
    match (is_emulated(labels), is_nested(labels)) {
        (_, true) => format!("{backend} (emulated, nested)"),
        (true, false) => format!("{backend} (emulated)"),
        (false, false) => backend.to_string(),
    }
}

/// Summary recomputed from the raw samples (the stored one is never trusted alone).
pub fn summary(cell: &BenchmarkResult, metric: &str) -> Option<Summary> {
    summarize_memo(&cell.measured_samples(metric))
}

thread_local! {
    /// Summaries by the exact samples they were computed from. `summarize` is a pure function of
    /// (samples, seed), so this cannot go stale; it spares the charts, tables and exporters
    /// recomputing the same 2000-resample bootstrap many times over.
    static SUMMARIES: std::cell::RefCell<std::collections::HashMap<Vec<u64>, Option<Summary>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// [`stats::summarize`] with [`DEFAULT_SEED`], memoised per thread.
pub fn summarize_memo(samples: &[f64]) -> Option<Summary> {
    let key: Vec<u64> = samples.iter().map(|x| x.to_bits()).collect();
    if let Some(hit) = SUMMARIES.with(|m| m.borrow().get(&key).cloned()) {
        return hit;
    }
    let computed = stats::summarize(samples, DEFAULT_SEED);
    SUMMARIES.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(key, computed.clone());
    });
    computed
}

/// Metric names that occur in a cell's measured runs: startup phases first (in the order they
/// happen), then memory and disk, then the workload's own figures.
pub fn metric_names(cell: &BenchmarkResult) -> Vec<&str> {
    let mut names: Vec<&str> = cell
        .runs
        .iter()
        .filter(|r| !r.warmup)
        .flat_map(|r| r.metrics.keys())
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names.dedup();
    // (group, median for startup phases, name): each median computed once, before sorting.
    let mut keyed: Vec<(u8, f64, &str)> = names
        .into_iter()
        .map(|m| {
            let group = u8::from(!m.starts_with("start_to_")) + u8::from(m.starts_with("workload."));
            let by_time = if group == 0 {
                median_of(cell, m).unwrap_or(0.0)
            } else {
                0.0
            };
            (group, by_time, m)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(b.2)));
    keyed.into_iter().map(|(_, _, m)| m).collect()
}

/// Median of a metric's measured samples (cheap: no bootstrap).
pub fn median_of(cell: &BenchmarkResult, metric: &str) -> Option<f64> {
    stats::median(&cell.measured_samples(metric))
}

/// `n=10, p50 2.50 ms [95% CI 2.40–2.61], p99 3.10 ms`
pub fn caption_stats(metric: &str, s: &Summary) -> String {
    format!(
        "n={}, p50 {} [95% CI {} – {}], p99 {}",
        s.n,
        fmt_value(metric, s.p50),
        fmt_value(metric, s.median_ci95[0]),
        fmt_value(metric, s.median_ci95[1]),
        fmt_value(metric, s.p99)
    )
}

/// Unit of a metric from its name's suffix, for axis labels and tables.
pub fn unit_of(metric: &str) -> &'static str {
    if metric.ends_with("bytes_per_s") {
        "MiB/s"
    } else if metric.ends_with("_ms") {
        "ms"
    } else if metric.ends_with("_bytes") {
        "MiB"
    } else if metric.ends_with("_us") {
        "µs"
    } else if metric.ends_with("_per_s") {
        "/s"
    } else if metric.ends_with("tps") {
        "tx/s"
    } else if metric.ends_with("_s") {
        "s"
    } else {
        ""
    }
}

/// The number in the unit of [`unit_of`] (bytes become MiB).
pub fn scaled(metric: &str, v: f64) -> f64 {
    if metric.ends_with("_bytes") || metric.ends_with("bytes_per_s") {
        v / MIB
    } else {
        v
    }
}

/// Value without unit, precision chosen by magnitude.
pub fn fmt_number(metric: &str, v: f64) -> String {
    let x = scaled(metric, v);
    let a = x.abs();
    if !x.is_finite() {
        "–".to_string()
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// Value with unit, e.g. `2.50 ms`, `1.50 MiB`, `12.0 KiB`, `1234 /s`. Byte counts pick the unit
/// by magnitude.
pub fn fmt_value(metric: &str, v: f64) -> String {
    if metric.ends_with("_bytes") && v.is_finite() {
        let a = v.abs();
        return if a >= MIB * 1024.0 {
            format!("{:.2} GiB", v / (MIB * 1024.0))
        } else if a >= MIB {
            format!("{} MiB", fmt_number("x", v / MIB))
        } else if a >= 1024.0 {
            format!("{} KiB", fmt_number("x", v / 1024.0))
        } else {
            format!("{v:.0} B")
        };
    }
    let unit = unit_of(metric);
    if unit.is_empty() {
        fmt_number(metric, v)
    } else {
        format!("{} {unit}", fmt_number(metric, v))
    }
}

pub const MIB: f64 = 1024.0 * 1024.0;

#[allow(clippy::cast_precision_loss)] // byte counts stay far below 2^53
pub fn bytes_f64(b: u64) -> f64 {
    b as f64
}

pub fn mib(b: u64) -> f64 {
    bytes_f64(b) / MIB
}

pub fn gib(b: u64) -> f64 {
    bytes_f64(b) / (MIB * 1024.0)
}

pub fn shorten(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max_chars.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_by_unit_suffix() {
        assert_eq!(fmt_value("start_to_ready_ms", 2.5), "2.50 ms");
        assert_eq!(fmt_value("pss_bytes", 1_572_864.0), "1.50 MiB");
        assert_eq!(fmt_value("instance_disk_bytes", 12288.0), "12.00 KiB");
        assert_eq!(fmt_value("instance_disk_bytes", 512.0), "512 B");
        assert_eq!(fmt_value("workload.bytes_per_s", 2.0 * 1048576.0), "2.00 MiB/s");
        assert_eq!(fmt_value("workload.requests_per_s", 12345.4), "12345 /s");
        assert_eq!(fmt_value("workload.latency_p99_us", 250.0), "250.0 µs");
        assert_eq!(fmt_value("workload.tps", 0.5), "0.500 tx/s");
        assert_eq!(fmt_value("workload.rows", 7.0), "7.00");
    }

    #[test]
    fn emulated_figures_are_named_so() {
        let mut labels = std::collections::BTreeMap::new();
        assert_eq!(display_name("microvm", &labels), "microvm");
        labels.insert("emulated".to_string(), "true".to_string());
        assert_eq!(display_name("microvm", &labels), "microvm (emulated)");
        labels.insert(NESTED_LABEL.to_string(), "svm-tcg".to_string());
        assert_eq!(display_name("microvm", &labels), "microvm (emulated, nested)");
    }

    #[test]
    fn only_backends_skipped_for_every_workload_are_skipped_backends() {
        use results::schema::{BenchmarkResult, HostInfo, ResultsFile, ToolInfo};
        use workload::{WorkloadKind, WorkloadSpec};
        let host = HostInfo {
            hostname: "h".into(),
            kernel: "k".into(),
            cpu_model: "c".into(),
            cores: 2,
            memory_bytes: 1 << 30,
            cgroup_version: "v2".into(),
            kvm: "pvm".into(),
            os: "o".into(),
        };
        let tool = ToolInfo {
            name: "cvbench".into(),
            version: "0".into(),
            git_revision: None,
            argv: vec![],
        };
        let mut f = ResultsFile::new("compare", tool, host);
        for kind in [WorkloadKind::Idle, WorkloadKind::Oltp] {
            let spec = WorkloadSpec::default_for(kind);
            let mut vm = BenchmarkResult::new("microvm", &spec, Default::default());
            vm.skipped = Some("no kvm".into());
            let mut probe = BenchmarkResult::new("microvm-probe", &spec, Default::default());
            if kind != WorkloadKind::Idle {
                probe.skipped = Some("idle only".into());
            }
            f.benchmarks.extend([vm, probe]);
        }
        let model = Model::new(&f);
        assert_eq!(model.skipped_backends(), vec![("microvm", "no kvm")]);
        assert_eq!(model.skipped().len(), 3, "every skipped cell is still listed");
    }

    #[test]
    fn long_names_are_shortened() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
