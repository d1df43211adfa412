//! `bench merge`: results files from many hosts in one file, one [`HostSection`] per source host.
//!
//! Nothing is pooled: every cell and density curve is copied as measured and names its host in
//! `host_id`, so a series (see [`crate::dimensions::SeriesKey`]) never mixes samples of two hosts.
//! Series are matched across hosts on the workload-configuration hash (Phoronix's `merge-results`
//! does the same). Two sources with the same identity — the same `run_id`, or the same dimension
//! set — are refused unless the caller asks to keep both, which prefixes the later one's id and adds
//! a `merge_input` dimension so the two stay apart.

use std::collections::BTreeMap;

use crate::schema::{HostInfo, HostSection, ResultsFile, ToolInfo, SCHEMA_VERSION};

/// One input of a merge: a name for messages (its path) and its contents.
#[derive(Debug, Clone)]
pub struct MergeInput {
    pub name: String,
    pub file: ResultsFile,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeOptions {
    /// Keep both sources of a duplicate identity, the later one's id prefixed `inN-`.
    pub prefix_on_collision: bool,
}

/// The extra dimension that tells apart two sources kept with `--prefix-on-collision`.
pub const MERGE_INPUT: &str = "merge_input";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge: give at least one results file")]
    Empty,
    #[error("{name} has schema_version {found}, the other inputs (and this cvbench) {expected}: re-run or convert it first")]
    SchemaMismatch { name: String, found: u32, expected: u32 },
    #[error(
        "{second} and {first} come from the same host identity ({why}); refusing to merge them \
         (pass --prefix-on-collision to keep both)"
    )]
    DuplicateHost {
        first: String,
        second: String,
        why: String,
    },
}

/// Where a host section came from, for collision messages.
struct Seen {
    input: String,
    run_id: String,
    dimensions: BTreeMap<String, String>,
}

/// Merges `inputs` (single-host files or earlier merges) into one file.
pub fn merge(inputs: &[MergeInput], opts: MergeOptions, tool: ToolInfo) -> Result<ResultsFile, MergeError> {
    let first = inputs.first().ok_or(MergeError::Empty)?;
    for input in inputs {
        if input.file.schema_version != SCHEMA_VERSION {
            return Err(MergeError::SchemaMismatch {
                name: input.name.clone(),
                found: input.file.schema_version,
                expected: SCHEMA_VERSION,
            });
        }
    }
    let mut merged = ResultsFile::new("merge", tool, first.file.host.clone());
    let mut seen: Vec<Seen> = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        for (section, cells, curves) in sections_of(&input.file) {
            let mut section = section;
            let dims = section.host.dimensions();
            let clash = seen.iter().find_map(|s| {
                if !section.run_id.is_empty() && s.run_id == section.run_id {
                    Some((s, format!("run_id {}", section.run_id)))
                } else if s.dimensions == dims {
                    Some((s, "identical dimensions".to_string()))
                } else {
                    None
                }
            });
            if let Some((s, why)) = clash {
                if !opts.prefix_on_collision {
                    return Err(MergeError::DuplicateHost {
                        first: s.input.clone(),
                        second: input.name.clone(),
                        why,
                    });
                }
                let prefix = format!("in{}", index + 1);
                section.id = format!("{prefix}-{}", section.id);
                let mut dims = section.host.dimensions();
                dims.insert(MERGE_INPUT.to_string(), prefix);
                section.host.dimensions = dims;
            }
            // A prefixed id can still clash with an earlier literal one: number it until unique.
            let base = section.id.clone();
            let mut n = 2;
            while merged.hosts.iter().any(|h| h.id == section.id) {
                section.id = format!("{base}-{n}");
                n += 1;
            }
            seen.push(Seen {
                input: input.name.clone(),
                run_id: section.run_id.clone(),
                dimensions: section.host.dimensions(),
            });
            let id = section.id.clone();
            merged.partial |= section.partial;
            merged.benchmarks.extend(cells.into_iter().map(|mut c| {
                c.host_id = Some(id.clone());
                c
            }));
            merged.density.extend(curves.into_iter().map(|mut d| {
                d.host_id = Some(id.clone());
                d
            }));
            merged.hosts.push(section);
        }
    }
    merged.host = common_host(merged.hosts.iter().map(|h| &h.host));
    merged.run_id = format!(
        "merge-{}",
        merged
            .hosts
            .iter()
            .map(|h| h.id.as_str())
            .collect::<Vec<_>>()
            .join("+")
    );
    Ok(merged)
}

type Split = (
    HostSection,
    Vec<crate::schema::BenchmarkResult>,
    Vec<crate::schema::DensityResult>,
);

/// A file's host sections with their cells: a merged file's own sections, or one for a single-host
/// file (its id is its run_id, or `<hostname>@<started_at>` for files that predate run ids).
fn sections_of(file: &ResultsFile) -> Vec<Split> {
    if file.hosts.is_empty() {
        let id = if file.run_id.is_empty() {
            format!("{}@{}", file.host.hostname, file.started_at)
        } else {
            file.run_id.clone()
        };
        let section = HostSection {
            id,
            run_id: file.run_id.clone(),
            command: file.command.clone(),
            tool: file.tool.clone(),
            started_at: file.started_at.clone(),
            partial: file.partial,
            host: file.host.clone(),
        };
        return vec![(section, file.benchmarks.clone(), file.density.clone())];
    }
    file.hosts
        .iter()
        .map(|h| {
            let mine = |id: &Option<String>| id.as_deref() == Some(h.id.as_str());
            (
                h.clone(),
                file.benchmarks
                    .iter()
                    .filter(|c| mine(&c.host_id))
                    .cloned()
                    .collect(),
                file.density
                    .iter()
                    .filter(|d| mine(&d.host_id))
                    .cloned()
                    .collect(),
            )
        })
        .collect()
}

/// The merged file's `host`: each field's value when every host agrees, else `mixed`.
fn common_host<'a>(mut hosts: impl Iterator<Item = &'a HostInfo>) -> HostInfo {
    let Some(first) = hosts.next() else {
        return HostInfo {
            hostname: String::new(),
            kernel: String::new(),
            cpu_model: String::new(),
            cores: 0,
            memory_bytes: 0,
            cgroup_version: String::new(),
            kvm: String::new(),
            os: String::new(),
            arch: String::new(),
            dimensions: BTreeMap::new(),
        };
    };
    let mut common = first.clone();
    common.dimensions = BTreeMap::new();
    let mixed = || "mixed".to_string();
    for h in hosts {
        if h.hostname != common.hostname {
            common.hostname = mixed();
        }
        if h.kernel != common.kernel {
            common.kernel = mixed();
        }
        if h.cpu_model != common.cpu_model {
            common.cpu_model = mixed();
        }
        if h.cgroup_version != common.cgroup_version {
            common.cgroup_version = mixed();
        }
        if h.kvm != common.kvm {
            common.kvm = mixed();
        }
        if h.os != common.os {
            common.os = mixed();
        }
        if h.arch != common.arch {
            common.arch = mixed();
        }
        common.cores = common.cores.min(h.cores);
        common.memory_bytes = common.memory_bytes.min(h.memory_bytes);
    }
    common
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::isolation::{Isolation, IsolationKind};
    use crate::schema::{BenchmarkResult, RunRecord};
    use workload::WorkloadSpec;

    fn tool() -> ToolInfo {
        ToolInfo {
            name: "cvbench".into(),
            version: "0.1.0".into(),
            git_revision: None,
            argv: vec![],
        }
    }

    /// A single-host results file: `hostname`, `instance` label, one container/idle cell whose
    /// startup samples are `samples`.
    pub(crate) fn host_file(hostname: &str, instance: &str, samples: &[f64]) -> ResultsFile {
        let mut host = HostInfo {
            hostname: hostname.into(),
            kernel: "6.1.0".into(),
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
        f.run_id = format!("20261129T000000Z-{hostname}-00000001");
        let mut cell = BenchmarkResult::new(
            "container",
            Isolation::host_kernel(IsolationKind::Container),
            &WorkloadSpec::Idle,
            BTreeMap::new(),
        );
        for (i, s) in samples.iter().enumerate() {
            cell.runs.push(RunRecord {
                index: u32::try_from(i).unwrap(),
                warmup: false,
                metrics: BTreeMap::from([(crate::metrics::START_TO_READY_MS.to_string(), *s)]),
                workload_result: None,
            });
        }
        cell.recompute_summary(1);
        f.benchmarks.push(cell);
        f
    }

    pub(crate) fn three_hosts() -> Vec<MergeInput> {
        vec![
            MergeInput {
                name: "a.json".into(),
                file: host_file("node-a", "m7i.metal", &[10.0, 11.0, 12.0]),
            },
            MergeInput {
                name: "b.json".into(),
                file: host_file("node-b", "m7i.metal", &[20.0, 21.0, 22.0]),
            },
            MergeInput {
                name: "c.json".into(),
                file: host_file("node-c", "c7a.metal", &[30.0, 31.0, 32.0]),
            },
        ]
    }

    #[test]
    fn merge_keeps_one_cell_per_host_and_never_pools_samples() {
        let merged = merge(&three_hosts(), MergeOptions::default(), tool()).unwrap();
        assert_eq!(merged.command, "merge");
        assert_eq!(merged.hosts.len(), 3);
        assert_eq!(merged.benchmarks.len(), 3);
        for (cell, (host, lo)) in
            merged
                .benchmarks
                .iter()
                .zip([("node-a", 10.0), ("node-b", 20.0), ("node-c", 30.0)])
        {
            let id = cell.host_id.as_deref().unwrap();
            let section = merged.hosts.iter().find(|h| h.id == id).unwrap();
            assert_eq!(section.host.hostname, host);
            // Each cell's samples are its own host's, unchanged.
            assert_eq!(
                cell.measured_samples(crate::metrics::START_TO_READY_MS),
                vec![lo, lo + 1.0, lo + 2.0]
            );
        }
        // Same workload configuration everywhere: one config hash, so one series per host.
        let hashes: std::collections::BTreeSet<_> = merged
            .benchmarks
            .iter()
            .map(BenchmarkResult::config_hash)
            .collect();
        assert_eq!(hashes.len(), 1);
        assert_eq!(merged.host.hostname, "mixed");
        assert_eq!(merged.host.kernel, "6.1.0");
    }

    #[test]
    fn a_merged_file_round_trips_and_merges_again_without_change() {
        let merged = merge(&three_hosts(), MergeOptions::default(), tool()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merged.json");
        merged.write_atomic(&path).unwrap();
        let read = ResultsFile::read(&path).unwrap();
        assert_eq!(read, merged);
        let again = merge(
            &[MergeInput {
                name: "merged.json".into(),
                file: read,
            }],
            MergeOptions::default(),
            tool(),
        )
        .unwrap();
        assert_eq!(again.hosts, merged.hosts);
        assert_eq!(again.benchmarks, merged.benchmarks);
    }

    #[test]
    fn duplicate_hosts_are_refused_unless_prefixed() {
        let mut inputs = three_hosts();
        inputs[2].file.run_id = inputs[0].file.run_id.clone();
        let err = merge(&inputs, MergeOptions::default(), tool()).unwrap_err();
        assert!(
            matches!(&err, MergeError::DuplicateHost { first, second, .. } if first == "a.json" && second == "c.json"),
            "{err}"
        );
        assert!(err.to_string().contains("--prefix-on-collision"));

        // Same dimensions, different run ids: the same host measured twice is refused too.
        let mut inputs = three_hosts();
        inputs[1].file = host_file("node-a", "m7i.metal", &[40.0]);
        inputs[1].file.run_id = "other".into();
        let err = merge(&inputs, MergeOptions::default(), tool()).unwrap_err();
        assert!(err.to_string().contains("identical dimensions"), "{err}");

        let kept = merge(
            &inputs,
            MergeOptions {
                prefix_on_collision: true,
            },
            tool(),
        )
        .unwrap();
        assert_eq!(kept.hosts.len(), 3);
        assert_eq!(kept.hosts[1].id, "in2-other");
        assert_eq!(kept.hosts[1].host.dimensions[MERGE_INPUT], "in2");
        assert_ne!(kept.hosts[0].host.dimensions(), kept.hosts[1].host.dimensions());
    }

    #[test]
    fn other_schema_versions_are_refused_by_name() {
        let mut inputs = three_hosts();
        inputs[1].file.schema_version = SCHEMA_VERSION + 1;
        let err = merge(&inputs, MergeOptions::default(), tool()).unwrap_err();
        assert!(matches!(&err, MergeError::SchemaMismatch { name, .. } if name == "b.json"));
        assert!(matches!(
            merge(&[], MergeOptions::default(), tool()),
            Err(MergeError::Empty)
        ));
    }

    #[test]
    fn files_without_run_ids_get_distinct_ids_from_host_and_time() {
        let mut inputs = three_hosts();
        for i in &mut inputs {
            i.file.run_id.clear();
        }
        let merged = merge(&inputs, MergeOptions::default(), tool()).unwrap();
        assert!(merged.hosts[0].id.starts_with("node-a@"));
        assert_ne!(merged.hosts[0].id, merged.hosts[1].id);
    }
}
