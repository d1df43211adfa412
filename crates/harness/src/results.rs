//! The results file: what `bench run` and `bench compare` write and `bench report` / `bench check`
//! read. One schema family for every command; documented in the README ("Results schema").
//!
//! Raw samples are always kept (`runs[].metrics`); `summary` is derived from them by
//! [`BenchmarkResult::recompute_summary`] and can be recomputed by any reader.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; readers refuse other versions with a clear error.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsFile {
    pub schema_version: u32,
    /// `bench run`, `bench compare`, `bench density`.
    pub command: String,
    /// cvbench version and git revision, and the exact command line.
    pub tool: ToolInfo,
    pub host: HostInfo,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// True when the run was interrupted or failed part-way: what is here is real, but not all of it.
    #[serde(default)]
    pub partial: bool,
    pub benchmarks: Vec<BenchmarkResult>,
    /// Density curves (`bench density`, `bench compare --density N`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub density: Vec<DensityResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    pub git_revision: Option<String>,
    pub argv: Vec<String>,
}

/// The host the figures came from; every report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// One backend × workload cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkResult {
    pub backend: String,
    pub workload: String,
    /// The workload's parameters as launched (`WorkloadSpec` serialised).
    pub workload_spec: serde_json::Value,
    /// Facts from `Backend::labels`, e.g. `emulated = "true"`.
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFailure {
    pub index: u32,
    pub error: String,
}

/// Summary statistics of one metric over the measured runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DensityResult {
    pub backend: String,
    pub workload: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub points: Vec<DensityPoint>,
    /// Why the curve ended: `max`, `memory floor`, or the failure that stopped it.
    pub stop_reason: String,
    /// Instances per GiB of summed PSS at the end of the curve.
    pub instances_per_gib: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DensityPoint {
    /// 1-based count of running instances after this launch.
    pub instances: u32,
    pub launch_ms: f64,
    pub total_pss_bytes: u64,
    pub host_mem_available_bytes: u64,
    /// PSS total now minus PSS total before this launch.
    pub marginal_pss_bytes: i64,
}
