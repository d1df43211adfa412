//! Comparable or refused: before two measurements of "the same" cell are compared (`bench check`
//! against a baseline, `bench ab` between two builds), the dimensions that decide what was measured
//! must agree. Like Firecracker's A/B tool, which asserts that A and B produced the same dimension
//! set, this lists every dimension that differs, so the caller can refuse (the default) or flag it.
//!
//! Dimensions:
//! - the host class: CPU model, kernel, KVM flavour, cgroup version and core count (not the hostname
//!   or the memory size: two runners of one machine type differ there and measure alike);
//! - per cell: its isolation (kind, confinement, KVM flavour), every label, and the workload spec.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::schema::{BenchmarkResult, HostInfo, ResultsFile};

/// One dimension whose value differs between the two sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `host.cpu_model`, `isolation.kvm`, `labels.runc_version`, `workload_spec`, ...
    pub dimension: String,
    /// The baseline's (or A's) value; `(absent)` for a label only the other side has.
    pub baseline: String,
    /// The current file's (or B's) value.
    pub current: String,
}

/// A cell present on both sides whose own dimensions differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellMismatch {
    pub backend: String,
    pub workload: String,
    pub differences: Vec<Difference>,
}

/// Everything that makes two results files (or two cells) not comparable; empty when they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Comparability {
    /// Host-class dimensions that differ (apply to every cell).
    pub host: Vec<Difference>,
    /// Cells matched by backend and workload whose isolation, labels or workload spec differ.
    pub cells: Vec<CellMismatch>,
}

const ABSENT: &str = "(absent)";

fn diff(out: &mut Vec<Difference>, dimension: &str, baseline: String, current: String) {
    if baseline != current {
        out.push(Difference {
            dimension: dimension.to_string(),
            baseline,
            current,
        });
    }
}

/// The host-class dimensions that differ between two hosts.
pub fn host_class_differences(baseline: &HostInfo, current: &HostInfo) -> Vec<Difference> {
    let mut out = Vec::new();
    diff(
        &mut out,
        "host.cpu_model",
        baseline.cpu_model.clone(),
        current.cpu_model.clone(),
    );
    diff(
        &mut out,
        "host.kernel",
        baseline.kernel.clone(),
        current.kernel.clone(),
    );
    diff(&mut out, "host.kvm", baseline.kvm.clone(), current.kvm.clone());
    diff(
        &mut out,
        "host.cgroup_version",
        baseline.cgroup_version.clone(),
        current.cgroup_version.clone(),
    );
    diff(
        &mut out,
        "host.cores",
        baseline.cores.to_string(),
        current.cores.to_string(),
    );
    out
}

fn json_word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("(unserialisable: {e})"),
    }
}

/// The dimensions of one cell that differ: isolation (kind, confinement, kvm), each label, and the
/// workload spec (compared as JSON values, so key order does not matter).
pub fn cell_differences(baseline: &BenchmarkResult, current: &BenchmarkResult) -> Vec<Difference> {
    let mut out = Vec::new();
    let (a, b) = (&baseline.isolation, &current.isolation);
    diff(&mut out, "isolation.kind", json_word(&a.kind), json_word(&b.kind));
    diff(
        &mut out,
        "isolation.confinement",
        json_word(&a.confinement),
        json_word(&b.confinement),
    );
    diff(&mut out, "isolation.kvm", json_word(&a.kvm), json_word(&b.kvm));
    let keys: BTreeSet<&String> = baseline.labels.keys().chain(current.labels.keys()).collect();
    for key in keys {
        let value = |cell: &BenchmarkResult| {
            cell.labels
                .get(key)
                .cloned()
                .unwrap_or_else(|| ABSENT.to_string())
        };
        diff(
            &mut out,
            &format!("labels.{key}"),
            value(baseline),
            value(current),
        );
    }
    if baseline.workload_spec != current.workload_spec {
        out.push(Difference {
            dimension: "workload_spec".to_string(),
            baseline: baseline.workload_spec.to_string(),
            current: current.workload_spec.to_string(),
        });
    }
    out
}

/// Host class and every cell present (not skipped) on both sides, matched by backend and workload.
pub fn comparability(baseline: &ResultsFile, current: &ResultsFile) -> Comparability {
    let host = host_class_differences(&baseline.host, &current.host);
    let mut cells = Vec::new();
    for base in baseline.benchmarks.iter().filter(|c| c.skipped.is_none()) {
        let Some(cur) = current
            .benchmarks
            .iter()
            .find(|c| c.skipped.is_none() && c.backend == base.backend && c.workload == base.workload)
        else {
            continue;
        };
        let differences = cell_differences(base, cur);
        if !differences.is_empty() {
            cells.push(CellMismatch {
                backend: base.backend.clone(),
                workload: base.workload.clone(),
                differences,
            });
        }
    }
    Comparability { host, cells }
}

impl Comparability {
    /// Whether nothing differs.
    pub fn is_comparable(&self) -> bool {
        self.host.is_empty() && self.cells.is_empty()
    }

    /// Whether this backend × workload cell is affected (by the host class or its own dimensions).
    pub fn affects(&self, backend: &str, workload: &str) -> bool {
        !self.host.is_empty()
            || self
                .cells
                .iter()
                .any(|c| c.backend == backend && c.workload == workload)
    }

    /// A Markdown section listing what differs, for a CI summary; empty when comparable.
    pub fn to_markdown(&self) -> String {
        if self.is_comparable() {
            return String::new();
        }
        let mut s = String::from(
            "### Not comparable\n\n| cell | dimension | baseline | current |\n|---|---|---|---|\n",
        );
        for d in &self.host {
            let _ = writeln!(s, "| (host) | {} | {} | {} |", d.dimension, d.baseline, d.current);
        }
        for c in &self.cells {
            for d in &c.differences {
                let _ = writeln!(
                    s,
                    "| {}/{} | {} | {} | {} |",
                    c.backend, c.workload, d.dimension, d.baseline, d.current
                );
            }
        }
        s
    }
}

impl fmt::Display for Comparability {
    /// One line per differing dimension: `host: host.kernel "6.1" vs "6.12"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        for d in &self.host {
            lines.push(format!(
                "host: {} {:?} vs {:?}",
                d.dimension, d.baseline, d.current
            ));
        }
        for c in &self.cells {
            for d in &c.differences {
                lines.push(format!(
                    "{}/{}: {} {:?} vs {:?}",
                    c.backend, c.workload, d.dimension, d.baseline, d.current
                ));
            }
        }
        f.write_str(&lines.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::{Isolation, IsolationKind, KvmFlavour};
    use crate::schema::ToolInfo;
    use std::collections::BTreeMap;
    use workload::WorkloadSpec;

    fn host() -> HostInfo {
        HostInfo {
            hostname: "runner-1".into(),
            kernel: "6.1.0-18-amd64".into(),
            cpu_model: "AMD EPYC 7763".into(),
            cores: 4,
            memory_bytes: 16 << 30,
            cgroup_version: "v2".into(),
            kvm: "hardware".into(),
            os: "Debian 12".into(),
            arch: "x86_64".into(),
            dimensions: BTreeMap::new(),
        }
    }

    fn file(host: HostInfo, cells: Vec<BenchmarkResult>) -> ResultsFile {
        let tool = ToolInfo {
            name: "cvbench".into(),
            version: "0".into(),
            git_revision: None,
            argv: vec![],
        };
        let mut f = ResultsFile::new("run", tool, host);
        f.benchmarks = cells;
        f
    }

    fn runc(version: &str, spec: &WorkloadSpec) -> BenchmarkResult {
        BenchmarkResult::new(
            "runc",
            Isolation::host_kernel(IsolationKind::OciRuntime),
            spec,
            BTreeMap::from([("runc_version".to_string(), version.to_string())]),
        )
    }

    fn microvm(kvm: KvmFlavour) -> BenchmarkResult {
        BenchmarkResult::new(
            "microvm",
            Isolation::vm(IsolationKind::MicroVm, kvm),
            &WorkloadSpec::Idle,
            BTreeMap::new(),
        )
    }

    #[test]
    fn identical_files_are_comparable_even_on_another_runner_of_the_same_class() {
        let a = file(
            host(),
            vec![runc("1.1.5", &WorkloadSpec::Idle), microvm(KvmFlavour::Hardware)],
        );
        let mut other = host();
        other.hostname = "runner-2".into();
        other.memory_bytes = 32 << 30;
        let b = file(
            other,
            vec![runc("1.1.5", &WorkloadSpec::Idle), microvm(KvmFlavour::Hardware)],
        );
        let c = comparability(&a, &b);
        assert!(c.is_comparable(), "{c}");
        assert!(c.to_markdown().is_empty());
        assert!(!c.affects("runc", "idle"));
    }

    #[test]
    fn a_different_host_class_names_each_dimension() {
        let a = file(host(), vec![runc("1.1.5", &WorkloadSpec::Idle)]);
        let mut other = host();
        other.kernel = "6.12.0".into();
        other.kvm = "pvm".into();
        other.cores = 2;
        let b = file(other, vec![runc("1.1.5", &WorkloadSpec::Idle)]);
        let c = comparability(&a, &b);
        let dims: Vec<&str> = c.host.iter().map(|d| d.dimension.as_str()).collect();
        assert_eq!(dims, ["host.kernel", "host.kvm", "host.cores"]);
        assert!(c.cells.is_empty());
        assert!(c.affects("runc", "idle"));
        let text = c.to_string();
        assert!(
            text.contains("host.kernel \"6.1.0-18-amd64\" vs \"6.12.0\""),
            "{text}"
        );
        assert!(c.to_markdown().contains("| (host) | host.kvm | hardware | pvm |"));
    }

    #[test]
    fn cell_isolation_labels_and_workload_spec_are_compared() {
        let oltp = |rows| WorkloadSpec::Oltp {
            rows,
            transactions: 200,
        };
        let a = file(
            host(),
            vec![runc("1.1.5", &oltp(10_000)), microvm(KvmFlavour::Hardware)],
        );
        let b = file(host(), vec![runc("1.1.12", &oltp(500)), microvm(KvmFlavour::Pvm)]);
        let c = comparability(&a, &b);
        assert!(c.host.is_empty());
        assert_eq!(c.cells.len(), 2, "{c:?}");
        let runc_dims: Vec<&str> = c.cells[0]
            .differences
            .iter()
            .map(|d| d.dimension.as_str())
            .collect();
        assert_eq!(runc_dims, ["labels.runc_version", "workload_spec"]);
        assert_eq!(c.cells[1].backend, "microvm");
        assert_eq!(c.cells[1].differences[0].dimension, "isolation.kvm");
        assert_eq!(c.cells[1].differences[0].baseline, "hardware");
        assert_eq!(c.cells[1].differences[0].current, "pvm");
        assert!(c.affects("microvm", "idle") && !c.affects("container", "idle"));
    }

    #[test]
    fn a_label_on_one_side_only_differs_and_skipped_cells_are_not_compared() {
        let mut with_label = microvm(KvmFlavour::Pvm);
        with_label.labels.insert("emulated".into(), "true".into());
        let mut skipped = microvm(KvmFlavour::Hardware);
        skipped.skipped = Some("no KVM".into());
        let c = comparability(
            &file(host(), vec![with_label.clone()]),
            &file(host(), vec![microvm(KvmFlavour::Pvm)]),
        );
        assert_eq!(
            c.cells[0].differences,
            vec![Difference {
                dimension: "labels.emulated".into(),
                baseline: "true".into(),
                current: ABSENT.into(),
            }]
        );
        let c = comparability(&file(host(), vec![with_label]), &file(host(), vec![skipped]));
        assert!(c.is_comparable(), "{c}");
    }
}
