//! The results file: what `bench run` and `bench compare` write and `bench report` / `bench check`
//! read. One schema family for every command; documented in the README ("Results schema").
//!
//! Raw samples are always kept (`runs[].metrics`); `summary` is derived from them by
//! [`BenchmarkResult::recompute_summary`] and can be recomputed by any reader.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use workload::WorkloadSpec;

use crate::isolation::{infer_legacy, Isolation};

/// Bumped on any incompatible change; readers refuse other versions with a clear error.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResultsFile {
    pub schema_version: u32,
    /// `bench run`, `bench compare`, `bench density`.
    pub command: String,
    /// cvbench version and git revision, and the exact command line.
    pub tool: ToolInfo,
    pub host: HostInfo,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// Unique identity of this run (`<UTC time>-<hostname>-<random>`): `bench merge` refuses two
    /// files with the same one. Empty in files written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    /// True when the run was interrupted or failed part-way: what is here is real, but not all of it.
    #[serde(default)]
    pub partial: bool,
    pub benchmarks: Vec<BenchmarkResult>,
    /// Density curves (`bench density`, `bench compare --density N`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub density: Vec<DensityResult>,
    /// `bench merge` output only: one entry per source host; cells name theirs in `host_id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostSection>,
}

/// One source host of a merged results file (`bench merge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostSection {
    /// What cells refer to in `host_id`: the source's `run_id` (prefixed on a kept collision).
    pub id: String,
    pub run_id: String,
    /// The source file's command, tool and start time.
    pub command: String,
    pub tool: ToolInfo,
    pub started_at: String,
    #[serde(default)]
    pub partial: bool,
    pub host: HostInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    pub git_revision: Option<String>,
    pub argv: Vec<String>,
}

/// The host the figures came from; every report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostInfo {
    pub hostname: String,
    /// `uname -r`
    pub kernel: String,
    pub cpu_model: String,
    pub cores: u32,
    pub memory_bytes: u64,
    /// `v1`, `v2` or `hybrid` (v1 controllers with a v2 `unified` mount).
    pub cgroup_version: String,
    /// `hardware`, `pvm` (paravirtual, nested: guest kernels run emulated) or `none`.
    pub kvm: String,
    pub os: String,
    /// `uname -m`; empty in files written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arch: String,
    /// What identifies this host in a fleet: the [`crate::dimensions::BUILTIN`] facts plus the
    /// user's `--label key=value` pairs. Every series is keyed by these (see
    /// [`crate::dimensions::SeriesKey`]). Files written before it get it from the fields above
    /// ([`HostInfo::dimensions`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, String>,
}

/// One backend × workload cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BenchmarkResult {
    pub backend: String,
    /// What kind of sandbox the backend is, what confines it and which KVM ran it (from
    /// `Backend::isolation`). Files written before it was recorded get it from
    /// [`crate::isolation::infer_legacy`] when read.
    pub isolation: Isolation,
    pub workload: String,
    /// The workload's parameters as launched (`WorkloadSpec` serialised).
    pub workload_spec: serde_json::Value,
    /// Further facts from `Backend::labels`, e.g. `runc_version = "1.1.5"`, `vcpus = "1"`. Readers
    /// take a backend's kind from `isolation`, never from these.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Set when the backend could not run on this host; `runs` is then empty.
    #[serde(default)]
    pub skipped: Option<String>,
    /// Failures of individual runs (the run is recorded here and not in `runs`).
    #[serde(default)]
    pub failures: Vec<RunFailure>,
    /// Bytes shared by every instance of this backend (the image, counted once).
    pub shared_image_bytes: Option<u64>,
    /// Measured runs, warm-up runs included but flagged.
    pub runs: Vec<RunRecord>,
    /// Per metric, derived from the non-warm-up runs.
    pub summary: BTreeMap<String, Summary>,
    /// Merged files only: the [`HostSection::id`] this cell was measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunRecord {
    pub index: u32,
    pub warmup: bool,
    /// Every figure of this run, unit in the name: `start_to_exec_ms`, `start_to_ready_ms`,
    /// `pss_bytes`, `cgroup_memory_bytes`, `instance_disk_bytes`, `workload.requests_per_s`, ...
    pub metrics: BTreeMap<String, f64>,
    /// The workload's RESULT as it printed it.
    #[serde(default)]
    pub workload_result: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunFailure {
    pub index: u32,
    pub error: String,
}

/// Summary statistics of one metric over the measured runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    pub sd: f64,
    /// Bootstrap 95% confidence interval of the median `[low, high]`.
    pub median_ci95: [f64; 2],
    /// Indices (into the measured samples) of Tukey outliers; kept, never dropped.
    #[serde(default)]
    pub outliers: Vec<usize>,
}

/// `bench density`: one launch after another, all kept running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DensityResult {
    pub backend: String,
    /// As in [`BenchmarkResult::isolation`].
    pub isolation: Isolation,
    pub workload: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub points: Vec<DensityPoint>,
    /// Why the curve ended: `max`, `memory floor`, or the failure that stopped it.
    pub stop_reason: String,
    /// The headline: instances per GiB at the end of the curve, of the memory named by `basis`.
    pub instances_per_gib: Option<f64>,
    /// Merged files only: the [`HostSection::id`] this curve was measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// What `instances_per_gib` divides by. Files written before this field existed counted summed
    /// PSS, hence the default.
    #[serde(default)]
    pub basis: DensityBasis,
    /// Instances per GiB of summed PSS (user space only) at the end of the curve, whatever the basis.
    #[serde(default)]
    pub instances_per_gib_pss: Option<f64>,
}

/// The memory a density figure is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DensityBasis {
    /// Summed PSS of the instances' host processes: user-space memory only.
    #[default]
    SummedPss,
    /// What the host lost: summed PSS plus the growth of the host's unreclaimable kernel memory
    /// over the launches (`/proc/meminfo`: unreclaimable slab, page tables, kernel stacks, vmalloc,
    /// per-CPU), i.e. namespaces, cgroups, page tables and KVM's allocations as well.
    PssPlusKernel,
}

impl DensityBasis {
    pub fn describe(self) -> &'static str {
        match self {
            DensityBasis::SummedPss => "summed PSS (user space only)",
            DensityBasis::PssPlusKernel => "host memory lost (PSS + kernel memory)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DensityPoint {
    /// 1-based count of running instances after this launch.
    pub instances: u32,
    pub launch_ms: f64,
    /// Summed PSS of every running instance's host processes (and its runtime process): the
    /// user-space part of what the host lost. For VMs the VMM's PSS, guest RAM included.
    pub total_pss_bytes: u64,
    pub host_mem_available_bytes: u64,
    /// PSS total now minus PSS total before this launch.
    pub marginal_pss_bytes: i64,
    /// The drop of `MemAvailable` from just before each launch to just after it returned, summed
    /// over the launches so far: a cross-check of the host loss, noisy on a shared host (other
    /// processes allocate and free inside the windows too; it can even be negative).
    #[serde(default)]
    pub host_used_bytes: Option<i64>,
    /// Growth of the host's unreclaimable kernel memory over the same launch windows
    /// (`SUnreclaim`, `PageTables`, `SecPageTables`, `KernelStack`, `VmallocUsed`, `Percpu` in
    /// `/proc/meminfo`): namespaces, cgroups, page tables, KVM.
    #[serde(default)]
    pub host_kernel_bytes: Option<i64>,
    /// Summed memory cgroup charge of the instances (kernel memory included where the controller
    /// accounts it); `None` for backends without a cgroup per instance (VMs).
    #[serde(default)]
    pub cgroup_memory_bytes: Option<u64>,
    /// Summed resident guest RAM (VMs; part of `total_pss_bytes`).
    #[serde(default)]
    pub guest_ram_bytes: Option<u64>,
}

impl DensityPoint {
    /// What the host lost to the running instances: summed PSS (user space) plus the growth of
    /// unreclaimable kernel memory (never counted below zero); `None` without a kernel reading.
    pub fn host_lost_bytes(&self) -> Option<u64> {
        let kernel = u64::try_from(self.host_kernel_bytes?.max(0)).unwrap_or(0);
        Some(self.total_pss_bytes.saturating_add(kernel))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot read results file {path}: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a JSON results file: {source}")]
    NotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has no schema_version: not a cvbench results file")]
    NoSchemaVersion { path: PathBuf },
    #[error("{path} has a schema_version of the wrong type ({found}); expected the number {expected}")]
    SchemaVersionType {
        path: PathBuf,
        /// The JSON value found, as written (shortened).
        found: String,
        expected: u32,
    },
    #[error("{path} has schema_version {found}, this cvbench reads version {expected}")]
    SchemaMismatch {
        path: PathBuf,
        found: u64,
        expected: u32,
    },
    #[error("{path} does not match results schema version {expected}: {source}")]
    Invalid {
        path: PathBuf,
        expected: u32,
        source: serde_json::Error,
    },
    #[error(
        "{path} predates the isolation record and names backend {backend:?}, whose kind this cvbench \
         cannot infer"
    )]
    UnknownLegacyBackend { path: PathBuf, backend: String },
    #[error("cannot write results file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl ResultsFile {
    /// A new, empty results file for `command`, started now.
    pub fn new(command: &str, tool: ToolInfo, host: HostInfo) -> Self {
        ResultsFile {
            schema_version: SCHEMA_VERSION,
            command: command.to_string(),
            tool,
            host,
            started_at: rfc3339_utc(SystemTime::now()),
            run_id: String::new(),
            partial: false,
            benchmarks: Vec::new(),
            density: Vec::new(),
            hosts: Vec::new(),
        }
    }

    /// Reads and validates a results file; refuses other schema versions, naming both.
    pub fn read(path: &Path) -> Result<Self, ResultsError> {
        let text = fs::read_to_string(path).map_err(|source| ResultsError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let mut value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ResultsError::NotJson {
                path: path.to_path_buf(),
                source,
            })?;
        let version = value
            .get("schema_version")
            .ok_or_else(|| ResultsError::NoSchemaVersion {
                path: path.to_path_buf(),
            })?;
        let found = version.as_u64().ok_or_else(|| ResultsError::SchemaVersionType {
            path: path.to_path_buf(),
            found: version.to_string().chars().take(40).collect(),
            expected: SCHEMA_VERSION,
        })?;
        if found != u64::from(SCHEMA_VERSION) {
            return Err(ResultsError::SchemaMismatch {
                path: path.to_path_buf(),
                found,
                expected: SCHEMA_VERSION,
            });
        }
        fill_legacy_isolation(&mut value).map_err(|backend| ResultsError::UnknownLegacyBackend {
            path: path.to_path_buf(),
            backend,
        })?;
        serde_json::from_value(value).map_err(|source| ResultsError::Invalid {
            path: path.to_path_buf(),
            expected: SCHEMA_VERSION,
            source,
        })
    }

    /// Writes the file atomically (temporary file in the same directory, fsync, rename), so a reader or
    /// a crash never sees half a file. Creates the parent directory if needed.
    pub fn write_atomic(&self, path: &Path) -> Result<(), ResultsError> {
        let err = |source| ResultsError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(err)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let json = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let written = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(err)
    }
}

/// Where the published JSON Schema of results files lives, relative to the repository root.
pub const SCHEMA_FILE: &str = "results/schema/results.schema.json";

/// The JSON Schema (draft 2020-12) of a results file, generated from these types with `schemars`;
/// published as [`SCHEMA_FILE`] (a test regenerates it and fails when the committed copy is stale).
/// It describes files as this cvbench writes them: files from before the isolation record validate
/// after [`fill_legacy_isolation`], which is what [`ResultsFile::read`] does.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ResultsFile)).unwrap_or(serde_json::Value::Null)
}

/// Legacy reading: gives every benchmark cell and density curve without an `isolation` record (files
/// written before it existed) the one its backend had, from [`infer_legacy`]. Entries that have one
/// are left alone. Errs with the backend name when it cannot be inferred.
pub fn fill_legacy_isolation(file: &mut serde_json::Value) -> Result<(), String> {
    for section in ["benchmarks", "density"] {
        let Some(entries) = file.get_mut(section).and_then(serde_json::Value::as_array_mut) else {
            continue;
        };
        for entry in entries {
            let Some(obj) = entry.as_object_mut() else {
                continue;
            };
            if obj.contains_key("isolation") {
                continue;
            }
            let backend = obj
                .get("backend")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            let labels: BTreeMap<String, String> = obj
                .get("labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            let isolation = infer_legacy(backend, &labels).ok_or_else(|| backend.to_string())?;
            let isolation = serde_json::to_value(isolation).map_err(|_| backend.to_string())?;
            obj.insert("isolation".to_string(), isolation);
        }
    }
    Ok(())
}

impl ToolInfo {
    /// This build of cvbench, with the command line it was started with. The git revision is read
    /// from the source tree the binary was built from, if it is still there.
    pub fn current(argv: Vec<String>) -> Self {
        let git_revision = std::process::Command::new("git")
            .args([
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short=12",
                "HEAD",
            ])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty());
        ToolInfo {
            name: "cvbench".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision,
            argv,
        }
    }
}

impl BenchmarkResult {
    /// An empty cell for `backend` × `spec`.
    pub fn new(
        backend: &str,
        isolation: Isolation,
        spec: &WorkloadSpec,
        labels: BTreeMap<String, String>,
    ) -> Self {
        BenchmarkResult {
            backend: backend.to_string(),
            isolation,
            workload: spec.kind().name().to_string(),
            workload_spec: serde_json::to_value(spec).unwrap_or(serde_json::Value::Null),
            labels,
            skipped: None,
            failures: Vec::new(),
            shared_image_bytes: None,
            runs: Vec::new(),
            summary: BTreeMap::new(),
            host_id: None,
        }
    }

    /// Number of runs that counted (measured, not warm-up).
    pub fn measured_runs(&self) -> usize {
        self.runs.iter().filter(|r| !r.warmup).count()
    }

    /// Measured (non-warm-up) samples of `metric`, in run order.
    pub fn measured_samples(&self, metric: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| !r.warmup)
            .filter_map(|r| r.metrics.get(metric).copied())
            .collect()
    }

    /// Recomputes `summary` from the measured (non-warm-up) runs. A metric missing from some runs is
    /// summarised over the runs that have it.
    pub fn recompute_summary(&mut self, seed: u64) {
        let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for run in self.runs.iter().filter(|r| !r.warmup) {
            for (name, value) in &run.metrics {
                samples.entry(name.as_str()).or_default().push(*value);
            }
        }
        self.summary = samples
            .into_iter()
            .filter_map(|(name, values)| {
                crate::stats::summarize(&values, seed).map(|s| (name.to_string(), s))
            })
            .collect();
    }
}

/// `2026-11-23T09:30:00Z` for a system time (UTC, second precision).
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // At most u64::MAX / 86400 < 2^48 days: the cast is lossless.
    #[allow(clippy::cast_possible_wrap)]
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::{IsolationKind, KvmFlavour};
    use std::time::Duration;

    const MOCK: Isolation = Isolation::host_kernel(IsolationKind::Container);

    fn sample_file() -> ResultsFile {
        let host = HostInfo {
            hostname: "h".into(),
            kernel: "6.1".into(),
            cpu_model: "cpu".into(),
            cores: 2,
            memory_bytes: 1 << 30,
            cgroup_version: "v2".into(),
            kvm: "none".into(),
            os: "Debian".into(),
            arch: String::new(),
            dimensions: BTreeMap::new(),
        };
        let tool = ToolInfo {
            name: "cvbench".into(),
            version: "0.1.0".into(),
            git_revision: None,
            argv: vec![],
        };
        let mut f = ResultsFile::new("run", tool, host);
        let mut b = BenchmarkResult::new("mock", MOCK, &WorkloadSpec::Idle, BTreeMap::new());
        b.runs.push(RunRecord {
            index: 0,
            warmup: false,
            metrics: BTreeMap::from([(crate::metrics::START_TO_READY_MS.to_string(), 1.5)]),
            workload_result: None,
        });
        f.benchmarks.push(b);
        f
    }

    #[test]
    fn write_atomic_then_read_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/results.json");
        let f = sample_file();
        f.write_atomic(&path).unwrap();
        f.write_atomic(&path).unwrap();
        assert_eq!(ResultsFile::read(&path).unwrap(), f);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("results.json")]);
    }

    #[test]
    fn read_errors_name_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        assert!(matches!(
            ResultsFile::read(&missing),
            Err(ResultsError::Unreadable { .. })
        ));

        let garbage = dir.path().join("garbage.json");
        fs::write(&garbage, "not json").unwrap();
        assert!(matches!(
            ResultsFile::read(&garbage),
            Err(ResultsError::NotJson { .. })
        ));

        let no_version = dir.path().join("nover.json");
        fs::write(&no_version, "{\"command\": \"run\"}").unwrap();
        assert!(matches!(
            ResultsFile::read(&no_version),
            Err(ResultsError::NoSchemaVersion { .. })
        ));

        let string_version = dir.path().join("string.json");
        let mut v = serde_json::to_value(sample_file()).unwrap();
        v["schema_version"] = serde_json::json!("1");
        fs::write(&string_version, v.to_string()).unwrap();
        let err = ResultsFile::read(&string_version).unwrap_err();
        assert!(matches!(err, ResultsError::SchemaVersionType { .. }), "{err}");
        assert!(
            err.to_string().contains("wrong type") && err.to_string().contains("\"1\""),
            "{err}"
        );

        let other = dir.path().join("other.json");
        let mut v = serde_json::to_value(sample_file()).unwrap();
        v["schema_version"] = serde_json::json!(99);
        fs::write(&other, v.to_string()).unwrap();
        let err = ResultsFile::read(&other).unwrap_err();
        assert!(matches!(
            err,
            ResultsError::SchemaMismatch {
                found: 99,
                expected: SCHEMA_VERSION,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("99") && msg.contains(&SCHEMA_VERSION.to_string()),
            "{msg}"
        );

        let broken = dir.path().join("broken.json");
        fs::write(&broken, format!("{{\"schema_version\": {SCHEMA_VERSION}}}")).unwrap();
        assert!(matches!(
            ResultsFile::read(&broken),
            Err(ResultsError::Invalid { .. })
        ));
    }

    #[test]
    fn density_files_without_the_host_memory_fields_still_read_as_pss_based() {
        let old = serde_json::json!({
            "backend": "container", "isolation": MOCK, "workload": "idle", "points": [{
                "instances": 1, "launch_ms": 2.0, "total_pss_bytes": 1024,
                "host_mem_available_bytes": 4096, "marginal_pss_bytes": 1024
            }],
            "stop_reason": "max", "instances_per_gib": 8.0
        });
        let d: DensityResult = serde_json::from_value(old).unwrap();
        assert_eq!(d.basis, DensityBasis::SummedPss);
        assert_eq!(d.points[0].host_used_bytes, None);
        assert_eq!(d.points[0].host_lost_bytes(), None);
        let mut p = d.points[0].clone();
        p.host_kernel_bytes = Some(3072);
        assert_eq!(p.host_lost_bytes(), Some(4096));
        p.host_kernel_bytes = Some(-5000);
        assert_eq!(
            p.host_lost_bytes(),
            Some(1024),
            "kernel memory freed is not a gain"
        );
        let v = serde_json::to_value(DensityResult {
            basis: DensityBasis::PssPlusKernel,
            ..d
        })
        .unwrap();
        assert_eq!(v["basis"], "pss_plus_kernel");
    }

    #[test]
    fn files_without_isolation_get_it_from_their_backend_and_unknown_backends_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(sample_file()).unwrap();
        let cell = v["benchmarks"][0].clone();
        let mut qemu = cell.clone();
        qemu["backend"] = serde_json::json!("qemu");
        qemu["labels"] = serde_json::json!({"accel": "tcg", "emulated": "true"});
        v["benchmarks"] = serde_json::json!([cell, qemu]);
        v["density"] = serde_json::json!([{
            "backend": "runc", "workload": "idle", "points": [], "stop_reason": "max",
            "instances_per_gib": null
        }]);
        for entry in v["benchmarks"].as_array_mut().unwrap() {
            entry.as_object_mut().unwrap().remove("isolation");
        }
        let legacy = dir.path().join("legacy.json");
        fs::write(&legacy, v.to_string()).unwrap();
        let read = ResultsFile::read(&legacy).unwrap();
        assert_eq!(read.benchmarks[0].isolation, MOCK);
        assert_eq!(
            read.benchmarks[1].isolation,
            Isolation::vm(IsolationKind::OtherVmm, KvmFlavour::Tcg)
        );
        assert_eq!(read.density[0].isolation.kind, IsolationKind::OciRuntime);

        // A recorded isolation wins over what the name would say.
        let mut recorded = v.clone();
        recorded["benchmarks"][1]["isolation"] =
            serde_json::to_value(Isolation::vm(IsolationKind::OtherVmm, KvmFlavour::Hardware)).unwrap();
        fs::write(&legacy, recorded.to_string()).unwrap();
        let read = ResultsFile::read(&legacy).unwrap();
        assert_eq!(read.benchmarks[1].isolation.kvm, KvmFlavour::Hardware);

        v["benchmarks"][1]["backend"] = serde_json::json!("lxc");
        fs::write(&legacy, v.to_string()).unwrap();
        let err = ResultsFile::read(&legacy).unwrap_err();
        assert!(
            matches!(&err, ResultsError::UnknownLegacyBackend { backend, .. } if backend == "lxc"),
            "{err}"
        );
    }

    #[test]
    fn the_committed_legacy_files_still_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
        for file in ["example/results.json", "baselines/main.json"] {
            let f = ResultsFile::read(&root.join(file)).unwrap();
            let qemu = f.benchmarks.iter().find(|c| c.backend == "qemu").unwrap();
            assert_eq!(
                qemu.isolation,
                Isolation::vm(IsolationKind::OtherVmm, KvmFlavour::Tcg)
            );
        }
    }

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_published_schema_is_current() {
        let path = repo_root().join(SCHEMA_FILE);
        let fresh = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        let committed = fs::read_to_string(&path).unwrap_or_default();
        if committed != fresh {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &fresh).unwrap();
            panic!(
                "{} was stale and has been regenerated from the Rust types: review and commit it",
                path.display()
            );
        }
    }

    fn validator() -> jsonschema::Validator {
        jsonschema::validator_for(&json_schema()).expect("the generated schema is a valid JSON Schema")
    }

    fn schema_errors(v: &jsonschema::Validator, value: &serde_json::Value) -> Vec<String> {
        v.iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect()
    }

    #[test]
    fn committed_results_files_validate_against_the_schema() {
        let v = validator();
        for file in [
            "results/example/results.json",
            "results/baselines/main.json",
            "results/example-merged/results.json",
        ] {
            let text = fs::read_to_string(repo_root().join(file)).unwrap();
            let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
            fill_legacy_isolation(&mut value).unwrap();
            let errors = schema_errors(&v, &value);
            assert!(errors.is_empty(), "{file}: {errors:#?}");
        }
        let written = serde_json::to_value(sample_file()).unwrap();
        assert!(schema_errors(&v, &written).is_empty());
    }

    #[test]
    fn the_schema_rejects_what_the_reader_rejects() {
        let v = validator();
        let good = serde_json::to_value(sample_file()).unwrap();
        let mut no_host = good.clone();
        no_host.as_object_mut().unwrap().remove("host");
        assert!(!schema_errors(&v, &no_host).is_empty());
        let mut bad_kind = good.clone();
        bad_kind["benchmarks"][0]["isolation"]["kind"] = serde_json::json!("lxc");
        assert!(!schema_errors(&v, &bad_kind).is_empty());
        let mut bad_sample = good;
        bad_sample["benchmarks"][0]["runs"][0]["metrics"]["start_to_ready_ms"] = serde_json::json!("fast");
        assert!(!schema_errors(&v, &bad_sample).is_empty());
        // And the reader agrees on each.
        for bad in [&no_host, &bad_kind, &bad_sample] {
            assert!(serde_json::from_value::<ResultsFile>(bad.clone()).is_err());
        }
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_utc(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29 01:01:01
        assert_eq!(rfc3339_utc(t), "2000-02-29T01:01:01Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339_utc(t), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn new_benchmark_records_the_workload_spec() {
        let b = BenchmarkResult::new(
            "x",
            MOCK,
            &WorkloadSpec::Oltp {
                rows: 5,
                transactions: 7,
            },
            BTreeMap::new(),
        );
        assert_eq!(b.workload, "oltp");
        assert_eq!(b.workload_spec["rows"], 5);
    }
}
