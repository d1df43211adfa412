//! What the report shows, derived from a results file only: backends in a stable order (so a backend
//! keeps its colour in every chart), measured samples per metric, summaries recomputed from the raw
//! samples, and display names that say when figures are emulated. Colours and the emulated flag come
//! from each cell's recorded isolation; values are formatted by the metric registry
//! ([`results::metrics`]).

use results::disk::{disk_footprint, DiskFootprint, DISK_INSTANCE_COUNTS};
use results::isolation::{Isolation, IsolationKind};
use results::metrics::{self, Group, Quantity};
use results::schema::Summary;
use results::schema::{BenchmarkResult, ResultsFile};
use results::stats::{self, DEFAULT_SEED};

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

    /// The recorded isolation of `backend` (its first cell or curve).
    pub fn isolation(&self, backend: &str) -> Option<Isolation> {
        let cells = self
            .results
            .benchmarks
            .iter()
            .map(|c| (c.backend.as_str(), c.isolation));
        let curves = self
            .results
            .density
            .iter()
            .map(|d| (d.backend.as_str(), d.isolation));
        cells.chain(curves).find(|(b, _)| *b == backend).map(|(_, i)| i)
    }

    /// Palette index of a backend. The first backend of each isolation kind takes its kind's fixed
    /// colour (the position in [`IsolationKind::ALL`]), so a container is the same colour in every
    /// chart and every report and slides stay consistent; further backends of a kind already seen
    /// take the colours no kind of this file claims, in order of appearance.
    pub fn colour_index(&self, backend: &str) -> usize {
        let kind_slot = |k: IsolationKind| IsolationKind::ALL.iter().position(|a| *a == k).unwrap_or(0);
        let mut claimed: Vec<(&str, usize)> = Vec::new();
        let mut extras: Vec<&str> = Vec::new();
        for name in self.backends() {
            let Some(kind) = self.isolation(name).map(|i| i.kind) else {
                continue;
            };
            let slot = kind_slot(kind);
            if claimed.iter().any(|(_, s)| *s == slot) {
                extras.push(name);
            } else {
                claimed.push((name, slot));
            }
        }
        if let Some((_, slot)) = claimed.iter().find(|(b, _)| *b == backend) {
            return *slot;
        }
        let extra = extras.iter().position(|b| *b == backend).unwrap_or(0);
        (0..)
            .filter(|i| !claimed.iter().any(|(_, s)| s == i))
            .nth(extra)
            .unwrap_or(0)
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
            let name = display_name(&cell.backend, &cell.isolation);
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

    /// `hostname · CPU · N cores · X GiB · kernel K · KVM flavour`; for a merged file of several
    /// hosts, their count (no made-up common figure: each host's own are in the by-host table).
    pub fn host_line(&self) -> String {
        if let Some(n) = self.merged_host_count() {
            return format!("{n} hosts, measured separately (never pooled); see \"By host\"");
        }
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

    /// Number of source hosts of a merged file, when there are several.
    fn merged_host_count(&self) -> Option<usize> {
        let n = self.results.hosts.len();
        (n > 1).then_some(n)
    }

    /// Short form for chart subtitles.
    pub fn host_short(&self) -> String {
        if let Some(n) = self.merged_host_count() {
            return format!("{n} hosts, each measured separately");
        }
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

/// A cell's name in charts and tables: [`display_name`], plus `@ host` for a cell of a merged file.
pub fn cell_name(cell: &BenchmarkResult) -> String {
    let name = display_name(&cell.backend, &cell.isolation);
    match &cell.host_id {
        Some(host) => format!("{name} @ {host}"),
        None => name,
    }
}

/// `microvm (emulated)` when the figures are emulated (see [`Isolation::is_emulated`]),
/// `microvm (emulated, nested)` when they come from the nested-KVM L1 (function only), else the
/// backend name.
pub fn display_name(backend: &str, isolation: &Isolation) -> String {
    if isolation.kvm.is_nested() {
        format!("{backend} (emulated, nested)")
    } else if isolation.is_emulated() {
        format!("{backend} (emulated)")
    } else {
        backend.to_string()
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
            // Startup, then memory and disk together, then the workload's figures.
            let group = match metrics::group(m) {
                Group::Startup => 0u8,
                Group::Memory | Group::Disk => 1,
                Group::Workload | Group::WorkloadDetail => 2,
            };
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
pub fn caption_stats(quantity: Quantity, s: &Summary) -> String {
    format!(
        "n={}, p50 {} [95% CI {} – {}], p99 {}",
        s.n,
        quantity.format(s.p50),
        quantity.format(s.median_ci95[0]),
        quantity.format(s.median_ci95[1]),
        quantity.format(s.p99)
    )
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
    use results::schema::{HostInfo, ToolInfo};

    fn tool() -> ToolInfo {
        ToolInfo {
            name: "cvbench".into(),
            version: "0".into(),
            git_revision: None,
            argv: vec![],
        }
    }

    #[test]
    fn emulated_figures_are_named_so() {
        use results::isolation::KvmFlavour;
        let vm = |kvm| Isolation::vm(IsolationKind::MicroVm, kvm);
        assert_eq!(display_name("microvm", &vm(KvmFlavour::Hardware)), "microvm");
        assert_eq!(
            display_name("microvm", &vm(KvmFlavour::Pvm)),
            "microvm (emulated)"
        );
        assert_eq!(display_name("qemu", &vm(KvmFlavour::Tcg)), "qemu (emulated)");
        assert_eq!(
            display_name("microvm", &vm(KvmFlavour::NestedSvmTcg)),
            "microvm (emulated, nested)"
        );
    }

    #[test]
    fn a_merged_file_names_its_hosts_instead_of_inventing_a_common_one() {
        let host = |name: &str, cores: u32| HostInfo {
            hostname: name.into(),
            kernel: "k".into(),
            cpu_model: "c".into(),
            cores,
            memory_bytes: 1 << 30,
            cgroup_version: "v2".into(),
            kvm: "none".into(),
            os: "o".into(),
            arch: String::new(),
            dimensions: Default::default(),
        };
        let mut f = ResultsFile::new("merge", tool(), host("mixed", 1));
        assert!(
            Model::new(&f).host_line().contains("1 cores"),
            "one host: its own figures"
        );
        for (name, cores) in [("a", 1), ("b", 64)] {
            f.hosts.push(results::schema::HostSection {
                id: name.into(),
                run_id: name.into(),
                command: "run".into(),
                tool: tool(),
                started_at: String::new(),
                partial: false,
                host: host(name, cores),
            });
        }
        let m = Model::new(&f);
        assert!(m.host_line().starts_with("2 hosts"), "{}", m.host_line());
        assert!(!m.host_line().contains("cores"), "{}", m.host_line());
        assert!(!m.host_short().contains("cores"), "{}", m.host_short());
    }

    #[test]
    fn colours_come_from_the_isolation_kind_not_the_name() {
        use results::isolation::KvmFlavour;
        let host = HostInfo {
            hostname: "h".into(),
            kernel: "k".into(),
            cpu_model: "c".into(),
            cores: 2,
            memory_bytes: 1 << 30,
            cgroup_version: "v2".into(),
            kvm: "none".into(),
            os: "o".into(),
            arch: String::new(),
            dimensions: Default::default(),
        };
        let mut f = ResultsFile::new("compare", tool(), host);
        let spec = workload::WorkloadSpec::Idle;
        let vm = Isolation::vm(IsolationKind::MicroVm, KvmFlavour::Hardware);
        let oci = Isolation::host_kernel(IsolationKind::OciRuntime);
        for (name, isolation) in [("crun", oci), ("fc", vm), ("fc-probe", vm), ("youki", oci)] {
            f.benchmarks
                .push(BenchmarkResult::new(name, isolation, &spec, Default::default()));
        }
        let model = Model::new(&f);
        // Kind slots: OCI runtime 1, microVM 2; the two extras take the first unclaimed slots.
        assert_eq!(model.colour_index("crun"), 1);
        assert_eq!(model.colour_index("fc"), 2);
        assert_eq!(model.colour_index("fc-probe"), 0);
        assert_eq!(model.colour_index("youki"), 3);
    }

    #[test]
    fn only_backends_skipped_for_every_workload_are_skipped_backends() {
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
            arch: String::new(),
            dimensions: Default::default(),
        };
        let mut f = ResultsFile::new("compare", tool(), host);
        for kind in [WorkloadKind::Idle, WorkloadKind::Oltp] {
            let spec = WorkloadSpec::default_for(kind);
            let isolation = Isolation::vm(IsolationKind::MicroVm, results::isolation::KvmFlavour::Pvm);
            let mut vm = BenchmarkResult::new("microvm", isolation, &spec, Default::default());
            vm.skipped = Some("no kvm".into());
            let mut probe = BenchmarkResult::new("microvm-probe", isolation, &spec, Default::default());
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
