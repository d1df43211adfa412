//! `bench report --by DIM` and `bench merge`: tables pivoted on one host dimension.
//!
//! Rows are series (backend × workload-configuration hash), columns the values `DIM` takes, one
//! metric per table. A cell lists the median of every host with that value, each labelled with
//! its host when there is more than one: samples of different hosts are never pooled. The host
//! table shows only the dimensions that vary; the constant ones are said once.

use std::collections::{BTreeMap, BTreeSet};

use results::dimensions::HOST;
use results::metrics::{self, Group};
use results::schema::{HostInfo, ResultsFile};

use crate::export::Block;
use crate::model::{self, display_name};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no host dimension {by:?} in these results; known: {}", known.join(", "))]
pub struct UnknownDimension {
    pub by: String,
    pub known: Vec<String>,
}

/// A value of the pivot dimension on a host without one.
pub const NO_VALUE: &str = "(none)";

/// One source host: its id and its dimensions (plus the `host` pseudo-dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct HostDims {
    pub id: String,
    pub dims: BTreeMap<String, String>,
}

impl HostDims {
    /// The host's value of dimension `by`, [`NO_VALUE`] without one.
    pub fn value(&self, by: &str) -> String {
        self.dims.get(by).cloned().unwrap_or_else(|| NO_VALUE.to_string())
    }

    /// The host as shown: its `host` pseudo-dimension.
    pub fn name(&self) -> String {
        self.dims.get(HOST).cloned().unwrap_or_default()
    }
}

/// The host of `hosts` a cell with `host_id` (`""` for none) was measured on.
pub fn find<'a>(hosts: &'a [HostDims], host_id: &str) -> Option<&'a HostDims> {
    hosts.iter().find(|h| h.id == host_id)
}

/// The hosts of `results`: a merged file's sections, or the one host of a single-host file (id
/// `""`, which cells without `host_id` match).
pub fn hosts(results: &ResultsFile) -> Vec<HostDims> {
    let with_host = |id: &str, host: &HostInfo| {
        let mut dims = host.dimensions();
        let shown = if id.is_empty() {
            host.hostname.clone()
        } else {
            id.to_string()
        };
        dims.insert(HOST.to_string(), shown);
        HostDims {
            id: id.to_string(),
            dims,
        }
    };
    if results.hosts.is_empty() {
        vec![with_host("", &results.host)]
    } else {
        results.hosts.iter().map(|h| with_host(&h.id, &h.host)).collect()
    }
}

/// Dimensions whose value differs between hosts (a dimension missing on some host varies), and
/// the constant ones with their value.
pub fn split_dimensions(hosts: &[HostDims]) -> (Vec<String>, BTreeMap<String, String>) {
    let names: BTreeSet<&String> = hosts.iter().flat_map(|h| h.dims.keys()).collect();
    let mut varying = Vec::new();
    let mut constant = BTreeMap::new();
    for name in names {
        let values: BTreeSet<Option<&String>> = hosts.iter().map(|h| h.dims.get(name)).collect();
        match values.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(v)] => {
                constant.insert(name.clone(), (*v).clone());
            }
            _ => varying.push(name.clone()),
        }
    }
    (varying, constant)
}

/// The pivot tables on dimension `by`.
pub fn section(results: &ResultsFile, by: &str) -> Result<Vec<Block>, UnknownDimension> {
    let hosts = hosts(results);
    if !hosts.iter().any(|h| h.dims.contains_key(by)) {
        let known: BTreeSet<String> = hosts.iter().flat_map(|h| h.dims.keys().cloned()).collect();
        return Err(UnknownDimension {
            by: by.to_string(),
            known: known.into_iter().collect(),
        });
    }
    let (varying, constant) = split_dimensions(&hosts);
    let mut doc = vec![Block::Heading(2, format!("By {by}"))];
    if !constant.is_empty() {
        doc.push(Block::Paragraph(format!(
            "Same on every host: {}.",
            constant
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let shown: Vec<&String> = varying.iter().filter(|d| d.as_str() != HOST).collect();
    let mut head = vec!["host".to_string()];
    head.extend(shown.iter().map(|d| (*d).clone()));
    let rows = hosts
        .iter()
        .map(|h| {
            let mut row = vec![h.name()];
            row.extend(
                shown
                    .iter()
                    .map(|d| h.dims.get(*d).cloned().unwrap_or_else(|| "-".into())),
            );
            row
        })
        .collect();
    doc.push(Block::Table { head, rows });

    let value_of =
        |host_id: &str| find(&hosts, host_id).map_or_else(|| NO_VALUE.to_string(), |h| h.value(by));
    let host_name = |host_id: &str| find(&hosts, host_id).map(HostDims::name).unwrap_or_default();
    let columns: BTreeSet<String> = hosts.iter().map(|h| h.value(by)).collect();
    let ran: Vec<_> = results.benchmarks.iter().filter(|c| !c.runs.is_empty()).collect();
    let workloads: BTreeSet<&str> = ran.iter().map(|c| c.workload.as_str()).collect();
    for workload in workloads {
        let cells: Vec<_> = ran.iter().filter(|c| c.workload == workload).collect();
        let metric_names: BTreeSet<&str> = cells
            .iter()
            .flat_map(|c| model::metric_names(c))
            .filter(|m| metrics::group(m) != Group::WorkloadDetail)
            .collect();
        // Series: backend × configuration hash, in first-seen order.
        let mut series: Vec<(String, String)> = Vec::new();
        for c in &cells {
            let key = (display_name(&c.backend, &c.isolation), c.config_hash());
            if !series.contains(&key) {
                series.push(key);
            }
        }
        let configs: BTreeSet<&String> = series.iter().map(|(_, h)| h).collect();
        for metric in metric_names {
            let mut head = vec!["backend".to_string()];
            if configs.len() > 1 {
                head.push("config".to_string());
            }
            head.extend(columns.iter().map(|c| format!("{by} = {c}")));
            let mut rows = Vec::new();
            for (name, hash) in &series {
                let mut row = vec![name.clone()];
                if configs.len() > 1 {
                    row.push(hash.clone());
                }
                for column in &columns {
                    let entries: Vec<(String, String)> = cells
                        .iter()
                        .filter(|c| {
                            display_name(&c.backend, &c.isolation) == *name && c.config_hash() == *hash
                        })
                        .filter(|c| value_of(c.host_id.as_deref().unwrap_or("")) == *column)
                        .filter_map(|c| {
                            let s = model::summary(c, metric)?;
                            Some((
                                host_name(c.host_id.as_deref().unwrap_or("")),
                                metrics::format(metric, s.p50),
                            ))
                        })
                        .collect();
                    row.push(match entries.as_slice() {
                        [] => "-".to_string(),
                        [(_, v)] => v.clone(),
                        many => many
                            .iter()
                            .map(|(h, v)| format!("{v} ({h})"))
                            .collect::<Vec<_>>()
                            .join("; "),
                    });
                }
                rows.push(row);
            }
            doc.push(Block::Heading(
                3,
                format!("{} (median) — {workload}, by {by}", metrics::label(metric)),
            ));
            doc.push(Block::Table { head, rows });
        }
    }
    Ok(doc)
}

/// Multi-host results for the pivot's tests (tables here, charts in `charts::by_dimension`).
#[cfg(test)]
pub(crate) mod fixture {
    use std::collections::BTreeMap;

    use results::isolation::{Isolation, IsolationKind};
    use results::merge::{merge, MergeInput, MergeOptions};
    use results::metrics::{PSS_BYTES, START_TO_READY_MS};
    use results::schema::{BenchmarkResult, HostInfo, ResultsFile, RunRecord, ToolInfo};
    use workload::WorkloadSpec;

    use crate::model::MIB;

    fn tool() -> ToolInfo {
        ToolInfo {
            name: "cvbench".into(),
            version: "0.1.0".into(),
            git_revision: None,
            argv: vec![],
        }
    }

    /// One host's file: `container` and `runc` (3× slower, 2× the memory) ran idle 3 times; the
    /// container's startup samples are `ms`, `ms + 1`, `ms + 2`, its PSS 2 MiB.
    pub(crate) fn host_file(hostname: &str, instance: &str, kernel: &str, ms: f64) -> ResultsFile {
        let mut host = HostInfo {
            hostname: hostname.into(),
            kernel: kernel.into(),
            cpu_model: "Xeon".into(),
            cores: 2,
            memory_bytes: 1 << 30,
            cgroup_version: "v2".into(),
            kvm: "hardware".into(),
            os: "Debian".into(),
            arch: "x86_64".into(),
            dimensions: BTreeMap::new(),
        };
        host.set_dimensions(&BTreeMap::from([("instance".to_string(), instance.to_string())]));
        let mut f = ResultsFile::new("run", tool(), host);
        f.run_id = format!("run-{hostname}");
        for (backend, kind, scale) in [
            ("container", IsolationKind::Container, 1.0),
            ("runc", IsolationKind::OciRuntime, 3.0),
        ] {
            let mut cell = BenchmarkResult::new(
                backend,
                Isolation::host_kernel(kind),
                &WorkloadSpec::Idle,
                BTreeMap::new(),
            );
            for i in 0..3 {
                cell.runs.push(RunRecord {
                    index: i,
                    warmup: false,
                    metrics: BTreeMap::from([
                        (START_TO_READY_MS.to_string(), ms * scale + f64::from(i)),
                        (PSS_BYTES.to_string(), scale * 2.0 * MIB),
                    ]),
                    workload_result: None,
                });
            }
            f.benchmarks.push(cell);
        }
        f
    }

    /// [`host_file`] of each (hostname, instance, kernel, ms), merged.
    pub(crate) fn merged(hosts: &[(&str, &str, &str, f64)]) -> ResultsFile {
        let inputs: Vec<MergeInput> = hosts
            .iter()
            .map(|&(h, i, k, ms)| MergeInput {
                name: format!("{h}.json"),
                file: host_file(h, i, k, ms),
            })
            .collect();
        merge(&inputs, MergeOptions::default(), tool()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{host_file, merged};
    use super::*;

    fn three_hosts() -> ResultsFile {
        merged(&[
            ("a", "m7i.metal", "6.1", 10.0),
            ("b", "m7i.metal", "6.1", 20.0),
            ("c", "c7a.metal", "6.1", 30.0),
        ])
    }

    fn tables(doc: &[Block]) -> Vec<(&Vec<String>, &Vec<Vec<String>>)> {
        doc.iter()
            .filter_map(|b| match b {
                Block::Table { head, rows } => Some((head, rows)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pivot_by_instance_groups_hosts_without_pooling_them() {
        let merged = three_hosts();
        let doc = section(&merged, "instance").unwrap();
        let t = tables(&doc);
        // Host table: only the varying dimensions (hostname, instance), not kernel or arch.
        assert_eq!(*t[0].0, vec!["host", "hostname", "instance"]);
        assert_eq!(t[0].1.len(), 3);
        let said = doc.iter().any(|b| {
            matches!(b, Block::Paragraph(p) if p.contains("host_kernel = 6.1") && p.contains("arch = x86_64"))
        });
        assert!(said, "{doc:?}");
        // Then one table per metric, by name: memory (pss_bytes), then startup.
        let memory = &t[1].1;
        assert_eq!(memory[0][1..], ["2.00 MiB", "2.00 MiB (run-a); 2.00 MiB (run-b)"]);
        // Startup table: one row per backend, one column per instance type.
        let (head, rows) = t[2];
        assert_eq!(
            *head,
            vec!["backend", "instance = c7a.metal", "instance = m7i.metal"]
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], "container");
        assert_eq!(rows[0][1], "31.00 ms");
        // Two hosts of one instance type: two medians, each named, never one pooled median.
        assert_eq!(rows[0][2], "11.00 ms (run-a); 21.00 ms (run-b)");
        assert_eq!(rows[1][0], "runc");
        assert_eq!(rows[1][1], "91.00 ms");
    }

    #[test]
    fn pivot_by_host_has_one_column_per_host_and_unknown_dimensions_are_named() {
        let merged = three_hosts();
        let doc = section(&merged, "host").unwrap();
        let t = tables(&doc);
        assert_eq!(
            *t[2].0,
            vec!["backend", "host = run-a", "host = run-b", "host = run-c"]
        );
        assert_eq!(t[2].1[0][1..], ["11.00 ms", "21.00 ms", "31.00 ms"]);
        let err = section(&merged, "rack").unwrap_err();
        assert!(err.to_string().contains("instance"), "{err}");
        assert!(err.to_string().contains("host_kernel"), "{err}");
    }

    #[test]
    fn different_workload_configurations_are_separate_rows() {
        let mut merged = three_hosts();
        merged.benchmarks[0].workload_spec = serde_json::json!({"other": 1});
        let doc = section(&merged, "host").unwrap();
        let t = tables(&doc);
        let (head, rows) = t[2];
        assert_eq!(head[1], "config");
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0][2], "11.00 ms");
        assert_eq!(rows[0][3], "-");
    }

    #[test]
    fn a_single_host_file_pivots_with_its_hostname() {
        let f = host_file("solo", "x", "6.1", 5.0);
        let doc = section(&f, "instance").unwrap();
        let t = tables(&doc);
        assert_eq!(t[0].1[0][0], "solo");
        assert_eq!(*t[2].0, vec!["backend", "instance = x"]);
    }
}
