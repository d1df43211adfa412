//! The startup history: one JSON line per measured commit (`results/history.jsonl`), written by
//! `bench history append` and read by `bench trend`. A line keeps, per backend × workload cell of one
//! results file, each startup metric's n, median and bootstrap 95% CI of the median — computed by
//! [`crate::stats::summarize`] from the measured samples with [`crate::stats::DEFAULT_SEED`], exactly
//! as `bench report` computes them — plus the commit, the host and the regressions or improvements a
//! `bench ab` / `bench check` verdict file marked for that commit.
//!
//! Lines are versioned ([`HISTORY_VERSION`]) and validated on read: a malformed line is refused with
//! its line number, never skipped. The store is append-only; [`append_entry`] rewrites the file
//! atomically with the new line at the end, after validating what is already there.
//!
//! [`trend`] turns entries into series for plotting. A series is one backend × workload × workload
//! configuration × metric on one **host class** (the dimensions [`crate::comparable`] compares: CPU
//! model, kernel, KVM flavour, cgroup version, cores), so a line is never drawn, and no change is ever
//! computed, between two host classes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::check::Verdict;
use crate::isolation::Isolation;
use crate::metrics;
use crate::schema::{HostInfo, ResultsFile};
use crate::stats::{self, RatioEstimate};

/// Version of a history line; bumped on any incompatible change. Readers refuse other versions.
pub const HISTORY_VERSION: u32 = 1;

/// Where this repository keeps its own history, relative to the repository root.
pub const DEFAULT_HISTORY_FILE: &str = "results/history.jsonl";

/// Where the published JSON Schema of one history line lives, relative to the repository root.
pub const HISTORY_SCHEMA_FILE: &str = "results/schema/history.schema.json";

/// The JSON Schema (draft 2020-12) of one history line, generated from these types with `schemars`
/// and published as [`HISTORY_SCHEMA_FILE`] (a test regenerates it and fails when the committed copy
/// is stale). [`parse`] checks more than the schema can say ([`HistoryEntry::validate`]).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(HistoryEntry)).unwrap_or(serde_json::Value::Null)
}

/// One line of the history: one results file of one commit, reduced to its startup figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// [`HISTORY_VERSION`] when written.
    pub history_version: u32,
    /// The commit measured, 40 hex digits (or as given when it was not in the repository).
    pub commit: String,
    /// The commit's committer date (RFC 3339), when git knew the commit; orders the trend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_date: Option<String>,
    /// The working tree had uncommitted changes to tracked files (`--allow-dirty`).
    #[serde(default)]
    pub dirty: bool,
    /// When the line was appended (RFC 3339 UTC).
    pub recorded_at: String,
    /// The results file's `run_id` (`<started_at>-<hostname>` for files written before it existed);
    /// a history refuses the same run twice.
    pub run_id: String,
    /// The results file's `started_at`.
    pub started_at: String,
    /// The cvbench version that measured.
    pub tool_version: String,
    /// The host as the results file recorded it; its class is [`HostClass::of`].
    pub host: HostInfo,
    /// Free text about the conditions, e.g. "host loaded: 4 parallel cargo builds".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The results file was partial (interrupted or failed part-way; `--allow-partial`).
    #[serde(default)]
    pub partial: bool,
    /// One per backend × workload cell of the results file.
    pub cells: Vec<CellSummary>,
    /// Verdict files (`--verdict`) about this commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<VerdictRecord>,
}

/// One backend × workload cell: what ran and its startup metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CellSummary {
    pub backend: String,
    pub workload: String,
    /// [`crate::dimensions::config_hash`] of the workload and its parameters: another configuration
    /// is another series.
    pub config_hash: String,
    pub isolation: Isolation,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Why the backend did not run (then `metrics` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Measured (non-warm-up) runs.
    pub measured_runs: usize,
    /// Runs that failed.
    pub failed_runs: usize,
    /// Every startup metric (`start_to_*_ms`) the measured runs have.
    pub metrics: BTreeMap<String, MetricPoint>,
}

/// One metric of one cell: what `bench report` shows for it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricPoint {
    /// Measured samples.
    pub n: usize,
    /// Median of the measured samples (linear interpolation, see [`crate::stats`]).
    pub median: f64,
    /// Percentile-bootstrap 95% CI of the median ([`stats::BOOTSTRAP_RESAMPLES`] resamples, seed
    /// [`stats::DEFAULT_SEED`]).
    pub ci95: [f64; 2],
}

/// Which command wrote a verdict file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictSource {
    /// `bench ab --json`: this commit (B) against another build (A) on the same host.
    Ab,
    /// `bench check --json`: this run against a stored baseline.
    Check,
}

impl VerdictSource {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictSource::Ab => "bench ab",
            VerdictSource::Check => "bench check",
        }
    }
}

/// A verdict file, reduced to what the trend marks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictRecord {
    pub source: VerdictSource,
    /// The file as given.
    pub file: String,
    /// What this commit was compared with: A's revision (and commit) for `ab`, the baseline's host
    /// for `check`.
    pub against: String,
    pub alpha: f64,
    pub noise: f64,
    /// Metric rows the file judged.
    pub judged: usize,
    /// The rows that matter for the trend: regressions, improvements, and cells the gate found
    /// missing, skipped or failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<VerdictMark>,
}

/// One marked metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictMark {
    pub backend: String,
    pub workload: String,
    pub metric: String,
    pub verdict: Verdict,
    /// Relative change of the median (`0.12` = 12% slower), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
}

/// The host dimensions two measurements must share to be compared: those of
/// [`crate::comparable::host_class_differences`] (not the hostname or memory size: two runners of
/// one machine type measure alike).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct HostClass {
    pub cpu_model: String,
    pub kernel: String,
    pub kvm: String,
    pub cgroup_version: String,
    pub cores: u32,
}

impl HostClass {
    pub fn of(host: &HostInfo) -> Self {
        HostClass {
            cpu_model: host.cpu_model.clone(),
            kernel: host.kernel.clone(),
            kvm: host.kvm.clone(),
            cgroup_version: host.cgroup_version.clone(),
            cores: host.cores,
        }
    }
}

impl fmt::Display for HostClass {
    /// `AMD EPYC, 2 cores, kernel 6.1.0, KVM pvm, cgroup v2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {} cores, kernel {}, KVM {}, cgroup {}",
            self.cpu_model, self.cores, self.kernel, self.kvm, self.cgroup_version
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read history {path}: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: not a JSON object: {source}")]
    NotJson {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}:{line}: no history_version: not a cvbench history line")]
    NoVersion { path: PathBuf, line: usize },
    #[error("{path}:{line}: history_version {found}, this cvbench reads version {expected}")]
    VersionMismatch {
        path: PathBuf,
        line: usize,
        /// As written (shortened).
        found: String,
        expected: u32,
    },
    #[error("{path}:{line}: does not match history version {expected}: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        expected: u32,
        reason: String,
    },
    #[error("{path}:{line}: run {run_id} is already recorded on line {first_line}")]
    DuplicateRun {
        path: PathBuf,
        line: usize,
        first_line: usize,
        run_id: String,
    },
    #[error("{path} holds no history entry")]
    Empty { path: PathBuf },
    #[error("cannot write history {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Why a results file or a verdict file cannot become a history line.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(
        "the results file merges {hosts} hosts (bench merge); append each host's own results file \
         instead, so each line has one host class"
    )]
    Merged { hosts: usize },
    #[error(
        "the results file is partial (interrupted or failed part-way); re-run, or pass \
         --allow-partial to record it marked partial"
    )]
    Partial,
    #[error("the results file has no measured startup metric (start_to_*_ms) in any cell")]
    NoStartupMetric,
    #[error(
        "the results were measured by a bench built from {measured}, not from commit {commit}; pass \
         --commit with the commit that was measured"
    )]
    RevisionMismatch { measured: String, commit: String },
    #[error("{commit:?} is not a commit id (7 to 40 hex digits)")]
    BadCommit { commit: String },
    #[error("cannot read verdict file {path}: {source}")]
    VerdictUnreadable { path: PathBuf, source: std::io::Error },
    #[error(
        "verdict file {path} is neither a `bench ab --json` nor a `bench check --json` verdict: {reason}"
    )]
    VerdictInvalid { path: PathBuf, reason: String },
    #[error(
        "verdict file {path} judged commit {judged} (its B side), not the commit recorded here, \
         {commit}"
    )]
    VerdictCommit {
        path: PathBuf,
        judged: String,
        commit: String,
    },
}

/// The commit a line is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub sha: String,
    pub date: Option<String>,
    pub dirty: bool,
}

/// Whether `text` is a (possibly abbreviated) commit id: 7 to 40 hex digits.
pub fn is_commit_id(text: &str) -> bool {
    (7..=40).contains(&text.len()) && text.chars().all(|c| c.is_ascii_hexdigit())
}

impl HistoryEntry {
    /// The line for `results` measured at `commit`. Every startup metric of every cell is summarised
    /// as `bench report` does ([`stats::summarize`] with [`stats::DEFAULT_SEED`] over the measured
    /// samples). Refuses merged files, partial files (unless `allow_partial`), files without a
    /// startup metric, and results whose recorded build revision is not `commit`.
    pub fn from_results(
        results: &ResultsFile,
        commit: CommitInfo,
        note: Option<String>,
        verdicts: Vec<VerdictRecord>,
        allow_partial: bool,
        recorded_at: String,
    ) -> Result<Self, EntryError> {
        if !is_commit_id(&commit.sha) {
            return Err(EntryError::BadCommit { commit: commit.sha });
        }
        if !results.hosts.is_empty() {
            return Err(EntryError::Merged {
                hosts: results.hosts.len(),
            });
        }
        if results.partial && !allow_partial {
            return Err(EntryError::Partial);
        }
        if let Some(measured) = &results.tool.git_revision {
            let (a, b) = (measured.to_ascii_lowercase(), commit.sha.to_ascii_lowercase());
            if !(a.starts_with(&b) || b.starts_with(&a)) {
                return Err(EntryError::RevisionMismatch {
                    measured: measured.clone(),
                    commit: commit.sha,
                });
            }
        }
        let cells: Vec<CellSummary> = results.benchmarks.iter().map(cell_summary).collect();
        if cells.iter().all(|c| c.metrics.is_empty()) {
            return Err(EntryError::NoStartupMetric);
        }
        let run_id = if results.run_id.is_empty() {
            format!("{}-{}", results.started_at, results.host.hostname)
        } else {
            results.run_id.clone()
        };
        Ok(HistoryEntry {
            history_version: HISTORY_VERSION,
            commit: commit.sha.to_ascii_lowercase(),
            commit_date: commit.date,
            dirty: commit.dirty,
            recorded_at,
            run_id,
            started_at: results.started_at.clone(),
            tool_version: results.tool.version.clone(),
            host: results.host.clone(),
            note: note.filter(|n| !n.trim().is_empty()),
            partial: results.partial,
            cells,
            verdicts,
        })
    }

    /// [`HostClass::of`] this entry's host.
    pub fn host_class(&self) -> HostClass {
        HostClass::of(&self.host)
    }

    /// The first 7 digits of the commit.
    pub fn short_commit(&self) -> &str {
        &self.commit[..self.commit.len().min(7)]
    }

    /// The commit date's day (`2026-11-29`), else the day the line was recorded.
    pub fn day(&self) -> &str {
        let date = self.commit_date.as_deref().unwrap_or(&self.recorded_at);
        &date[..date.len().min(10)]
    }

    /// The checks serde cannot make: a commit id, sane figures, one cell per series.
    pub fn validate(&self) -> Result<(), String> {
        if !is_commit_id(&self.commit) {
            return Err(format!("commit {:?} is not 7 to 40 hex digits", self.commit));
        }
        if self.run_id.trim().is_empty() {
            return Err("run_id is empty".to_string());
        }
        let mut seen = BTreeSet::new();
        for cell in &self.cells {
            let key = (&cell.backend, &cell.workload, &cell.config_hash);
            if !seen.insert(key) {
                return Err(format!(
                    "cell {}/{} (config {}) appears twice",
                    cell.backend, cell.workload, cell.config_hash
                ));
            }
            if cell.skipped.is_some() && !cell.metrics.is_empty() {
                return Err(format!(
                    "cell {}/{} is skipped but has metrics",
                    cell.backend, cell.workload
                ));
            }
            for (name, m) in &cell.metrics {
                let what = || format!("{}/{} {name}", cell.backend, cell.workload);
                if m.n == 0 {
                    return Err(format!("{}: n is 0", what()));
                }
                if !m.median.is_finite() || !m.ci95.iter().all(|v| v.is_finite()) {
                    return Err(format!("{}: median or CI is not a finite number", what()));
                }
                if m.ci95[0] > m.ci95[1] {
                    return Err(format!(
                        "{}: CI [{}, {}] runs backwards",
                        what(),
                        m.ci95[0],
                        m.ci95[1]
                    ));
                }
            }
        }
        Ok(())
    }

    /// This entry as one JSON line (no newline).
    pub fn to_line(&self) -> String {
        // Only strings, numbers, maps and sequences: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The startup figures of one cell, as `bench report` computes them.
fn cell_summary(cell: &crate::schema::BenchmarkResult) -> CellSummary {
    let names: BTreeSet<&String> = cell
        .runs
        .iter()
        .filter(|r| !r.warmup)
        .flat_map(|r| r.metrics.keys())
        .filter(|m| metrics::is_startup(m))
        .collect();
    let metrics = names
        .into_iter()
        .filter_map(|name| {
            let s = stats::summarize(&cell.measured_samples(name), stats::DEFAULT_SEED)?;
            Some((
                name.clone(),
                MetricPoint {
                    n: s.n,
                    median: s.p50,
                    ci95: s.median_ci95,
                },
            ))
        })
        .collect();
    CellSummary {
        backend: cell.backend.clone(),
        workload: cell.workload.clone(),
        config_hash: cell.config_hash(),
        isolation: cell.isolation,
        labels: cell.labels.clone(),
        skipped: cell.skipped.clone(),
        measured_runs: cell.measured_runs(),
        failed_runs: cell.failures.len(),
        metrics,
    }
}

/// Parses a history file's text; `path` names it in errors. Blank lines are allowed; anything else
/// that is not a valid line of this version is an error naming the line.
pub fn parse(text: &str, path: &Path) -> Result<Vec<HistoryEntry>, HistoryError> {
    let mut entries = Vec::new();
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|source| HistoryError::NotJson {
                path: path.to_path_buf(),
                line: line_no,
                source,
            })?;
        if !value.is_object() {
            return Err(HistoryError::Invalid {
                path: path.to_path_buf(),
                line: line_no,
                expected: HISTORY_VERSION,
                reason: "the line is not a JSON object".to_string(),
            });
        }
        let version = value
            .get("history_version")
            .ok_or_else(|| HistoryError::NoVersion {
                path: path.to_path_buf(),
                line: line_no,
            })?;
        if version.as_u64() != Some(u64::from(HISTORY_VERSION)) {
            return Err(HistoryError::VersionMismatch {
                path: path.to_path_buf(),
                line: line_no,
                found: version.to_string().chars().take(40).collect(),
                expected: HISTORY_VERSION,
            });
        }
        let invalid = |reason: String| HistoryError::Invalid {
            path: path.to_path_buf(),
            line: line_no,
            expected: HISTORY_VERSION,
            reason,
        };
        let entry: HistoryEntry = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        entry.validate().map_err(invalid)?;
        if let Some(first_line) = runs.insert(entry.run_id.clone(), line_no) {
            return Err(HistoryError::DuplicateRun {
                path: path.to_path_buf(),
                line: line_no,
                first_line,
                run_id: entry.run_id,
            });
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads and validates a history file; an empty one is an error ([`HistoryError::Empty`]).
pub fn read(path: &Path) -> Result<Vec<HistoryEntry>, HistoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let entries = parse(&text, path)?;
    if entries.is_empty() {
        return Err(HistoryError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(entries)
}

/// Appends `entry` to the history at `path` (created, with its directory, when missing). What is
/// there is validated first, so a line is never added to a corrupt file, and the same run is never
/// recorded twice; the file is then replaced atomically (temporary file, fsync, rename), so a crash
/// leaves the old history or the new one, never half a line. Returns the new line's number.
pub fn append_entry(path: &Path, entry: &HistoryEntry) -> Result<usize, HistoryError> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(HistoryError::Unreadable {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let line_no = text.lines().count() + 1;
    text.push_str(&entry.to_line());
    text.push('\n');
    // Validates the old lines and the new one together: version, shape, duplicate runs.
    parse(&text, path)?;
    write_atomic(path, text.as_bytes()).map_err(|source| HistoryError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(line_no)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

// ---------------------------------------------------------------------------------------------
// Verdict files

#[derive(Deserialize)]
struct AbFile {
    a: AbSideIn,
    b: AbSideIn,
    alpha: f64,
    noise: f64,
    rows: Vec<AbRowIn>,
}

#[derive(Deserialize)]
struct AbSideIn {
    spec: String,
    commit: Option<String>,
}

#[derive(Deserialize)]
struct AbRowIn {
    backend: String,
    workload: String,
    metric: String,
    change: Option<f64>,
    p_value: Option<f64>,
    verdict: Verdict,
}

#[derive(Deserialize)]
struct CheckFile {
    alpha: f64,
    noise: f64,
    baseline_host: String,
    rows: Vec<CheckRowIn>,
}

#[derive(Deserialize)]
struct CheckRowIn {
    backend: String,
    workload: String,
    metric: String,
    ratio: Option<RatioEstimate>,
    p_value: Option<f64>,
    verdict: Verdict,
}

/// Whether a verdict is worth a mark on the trend.
fn marked(v: Verdict) -> bool {
    v.fails_gate() || v == Verdict::Improvement
}

impl VerdictRecord {
    /// The record of a verdict file that judged `rows`: every row counts as judged, the marked
    /// ones are kept.
    fn of_rows(
        source: VerdictSource,
        file: String,
        against: String,
        alpha: f64,
        noise: f64,
        rows: impl ExactSizeIterator<Item = VerdictMark>,
    ) -> Self {
        let judged = rows.len();
        let marks = rows.filter(|m| marked(m.verdict)).collect();
        VerdictRecord {
            source,
            file,
            against,
            alpha,
            noise,
            judged,
            marks,
        }
    }
}

/// Reads a `bench ab --json` or `bench check --json` verdict about `commit`. An A/B verdict whose B
/// side names another commit is refused.
pub fn read_verdict(path: &Path, commit: &str) -> Result<VerdictRecord, EntryError> {
    let text = std::fs::read_to_string(path).map_err(|source| EntryError::VerdictUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    parse_verdict(&text, path, commit)
}

/// [`read_verdict`] of text already read.
pub fn parse_verdict(text: &str, path: &Path, commit: &str) -> Result<VerdictRecord, EntryError> {
    let invalid = |reason: String| EntryError::VerdictInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let file = path.display().to_string();
    if value.get("a").is_some() && value.get("b").is_some() {
        let ab: AbFile =
            serde_json::from_value(value).map_err(|e| invalid(format!("as an A/B verdict: {e}")))?;
        if let Some(judged) = &ab.b.commit {
            let (j, c) = (judged.to_ascii_lowercase(), commit.to_ascii_lowercase());
            if !(j.starts_with(&c) || c.starts_with(&j)) {
                return Err(EntryError::VerdictCommit {
                    path: path.to_path_buf(),
                    judged: judged.clone(),
                    commit: commit.to_string(),
                });
            }
        }
        let against = match &ab.a.commit {
            Some(c) => format!("A = {} (commit {})", ab.a.spec, &c[..c.len().min(12)]),
            None => format!("A = {}", ab.a.spec),
        };
        let rows = ab.rows.into_iter().map(|r| VerdictMark {
            backend: r.backend,
            workload: r.workload,
            metric: r.metric,
            verdict: r.verdict,
            change: r.change,
            p_value: r.p_value,
        });
        return Ok(VerdictRecord::of_rows(
            VerdictSource::Ab,
            file,
            against,
            ab.alpha,
            ab.noise,
            rows,
        ));
    }
    if value.get("baseline_host").is_some() {
        let check: CheckFile =
            serde_json::from_value(value).map_err(|e| invalid(format!("as a check verdict: {e}")))?;
        let rows = check.rows.into_iter().map(|r| VerdictMark {
            backend: r.backend,
            workload: r.workload,
            metric: r.metric,
            verdict: r.verdict,
            change: r.ratio.map(|x| x.ratio - 1.0),
            p_value: r.p_value,
        });
        return Ok(VerdictRecord::of_rows(
            VerdictSource::Check,
            file,
            format!("baseline measured on {}", check.baseline_host),
            check.alpha,
            check.noise,
            rows,
        ));
    }
    Err(invalid(
        "it has neither the `a`/`b` sides of an A/B verdict nor the `baseline_host` of a check".to_string(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Trend series

/// What to plot: empty lists mean everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrendFilter {
    pub backends: Vec<String>,
    pub metrics: Vec<String>,
}

/// Why the history cannot give the trend asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrendError {
    #[error("the history has no backend {wanted:?} (it has: {known})")]
    UnknownBackend { wanted: String, known: String },
    #[error("the history has no startup metric {wanted:?} (it has: {known})")]
    UnknownMetric { wanted: String, known: String },
    #[error("the history has no startup figure to plot")]
    Nothing,
}

/// One commit on the x axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Index of the entry in the history file.
    pub entry: usize,
    pub short_commit: String,
    pub day: String,
    /// Index into [`Trend::host_classes`].
    pub host_class: usize,
}

/// How a verdict file marked a point.
#[derive(Debug, Clone, PartialEq)]
pub struct PointMark {
    pub source: VerdictSource,
    pub verdict: Verdict,
    pub change: Option<f64>,
    pub p_value: Option<f64>,
    pub against: String,
}

/// One commit's figure in a series.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendPoint {
    /// Position on the x axis (index into [`Trend::ticks`]).
    pub x: usize,
    pub n: usize,
    pub median: f64,
    pub ci95: [f64; 2],
    pub marks: Vec<PointMark>,
    /// Labels of the cell that differ from the previous point of the series (`runc_version 1.1.5 →
    /// 1.1.12`): the environment moved there.
    pub changed_labels: Vec<String>,
}

/// One metric of one backend × workload configuration on one host class, across commits.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendSeries {
    pub backend: String,
    pub workload: String,
    pub config_hash: String,
    pub metric: String,
    /// Index into [`Trend::host_classes`]: every point is on this class.
    pub host_class: usize,
    pub points: Vec<TrendPoint>,
}

impl TrendSeries {
    /// Relative change of the last median from the one before, within this series (never across host
    /// classes); `None` with fewer than two points or a zero median.
    pub fn last_change(&self) -> Option<f64> {
        let [.., prev, last] = self.points.as_slice() else {
            return None;
        };
        (prev.median > 0.0).then(|| last.median / prev.median - 1.0)
    }
}

/// The history as series, with the x axis they share.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// Commits in order: by commit date when every entry has one, else in file order.
    pub ticks: Vec<Tick>,
    /// Host classes in order of first appearance.
    pub host_classes: Vec<HostClass>,
    /// Per backend, workload, configuration, metric (registry order), host class.
    pub series: Vec<TrendSeries>,
    /// `(short commit, note)` of entries that carry a note, in x order.
    pub notes: Vec<(String, String)>,
    /// Entries recorded from a dirty tree or a partial run, as `(short commit, what)`.
    pub caveats: Vec<(String, String)>,
}

impl Trend {
    /// Backend × workload pairs with at least one series, in series order.
    pub fn cells(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for s in &self.series {
            let pair = (s.backend.as_str(), s.workload.as_str());
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
        out
    }

    /// The series of one backend × workload.
    pub fn series_of<'a>(
        &'a self,
        backend: &'a str,
        workload: &'a str,
    ) -> impl Iterator<Item = &'a TrendSeries> {
        self.series
            .iter()
            .filter(move |s| s.backend == backend && s.workload == workload)
    }
}

/// The order entries appear along the x axis: by commit date (RFC 3339 UTC strings sort as time;
/// ties keep file order) when every entry has one, else file order, which is commit order when CI
/// appends on each push to main.
pub fn x_order(entries: &[HistoryEntry]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    if entries.iter().all(|e| e.commit_date.is_some()) {
        order.sort_by(|&a, &b| entries[a].commit_date.cmp(&entries[b].commit_date));
    }
    order
}

/// Builds the series of `entries` selected by `filter`; see [`Trend`]. A backend or metric named in
/// the filter that the history does not have is an error naming those it has.
pub fn trend(entries: &[HistoryEntry], filter: &TrendFilter) -> Result<Trend, TrendError> {
    let known_backends: BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| e.cells.iter().filter(|c| !c.metrics.is_empty()))
        .map(|c| c.backend.as_str())
        .collect();
    let known_metrics: BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| e.cells.iter())
        .flat_map(|c| c.metrics.keys())
        .map(String::as_str)
        .collect();
    let list = |s: &BTreeSet<&str>| s.iter().copied().collect::<Vec<_>>().join(", ");
    for wanted in &filter.backends {
        if !known_backends.contains(wanted.as_str()) {
            return Err(TrendError::UnknownBackend {
                wanted: wanted.clone(),
                known: list(&known_backends),
            });
        }
    }
    for wanted in &filter.metrics {
        if !known_metrics.contains(wanted.as_str()) {
            return Err(TrendError::UnknownMetric {
                wanted: wanted.clone(),
                known: list(&known_metrics),
            });
        }
    }
    let order = x_order(entries);
    let mut host_classes: Vec<HostClass> = Vec::new();
    let mut ticks = Vec::new();
    let mut notes = Vec::new();
    let mut caveats = Vec::new();
    for &i in &order {
        let e = &entries[i];
        let class = e.host_class();
        let host_class = host_classes.iter().position(|c| *c == class).unwrap_or_else(|| {
            host_classes.push(class);
            host_classes.len() - 1
        });
        ticks.push(Tick {
            entry: i,
            short_commit: e.short_commit().to_string(),
            day: e.day().to_string(),
            host_class,
        });
        if let Some(note) = &e.note {
            notes.push((e.short_commit().to_string(), note.clone()));
        }
        if e.dirty {
            caveats.push((
                e.short_commit().to_string(),
                "measured from a dirty tree".to_string(),
            ));
        }
        if e.partial {
            caveats.push((e.short_commit().to_string(), "partial run".to_string()));
        }
    }

    // Series key: backend, workload, config, metric, host class. Kept in a map while building, then
    // ordered by backend/workload (first appearance), metric (registry order), host class.
    type Key = (String, String, String, String, usize);
    let mut building: BTreeMap<Key, (TrendSeries, BTreeMap<String, String>)> = BTreeMap::new();
    let mut cell_order: Vec<(String, String)> = Vec::new();
    for (x, tick) in ticks.iter().enumerate() {
        let e = &entries[tick.entry];
        for cell in &e.cells {
            if !filter.backends.is_empty() && !filter.backends.contains(&cell.backend) {
                continue;
            }
            for (metric, m) in &cell.metrics {
                if !filter.metrics.is_empty() && !filter.metrics.contains(metric) {
                    continue;
                }
                let pair = (cell.backend.clone(), cell.workload.clone());
                if !cell_order.contains(&pair) {
                    cell_order.push(pair);
                }
                let key = (
                    cell.backend.clone(),
                    cell.workload.clone(),
                    cell.config_hash.clone(),
                    metric.clone(),
                    tick.host_class,
                );
                let (series, last_labels) = building.entry(key).or_insert_with(|| {
                    (
                        TrendSeries {
                            backend: cell.backend.clone(),
                            workload: cell.workload.clone(),
                            config_hash: cell.config_hash.clone(),
                            metric: metric.clone(),
                            host_class: tick.host_class,
                            points: Vec::new(),
                        },
                        cell.labels.clone(),
                    )
                });
                let changed_labels = if series.points.is_empty() {
                    Vec::new()
                } else {
                    label_changes(last_labels, &cell.labels)
                };
                *last_labels = cell.labels.clone();
                let marks = e
                    .verdicts
                    .iter()
                    .flat_map(|v| {
                        v.marks
                            .iter()
                            .filter(|mk| {
                                mk.backend == cell.backend
                                    && mk.workload == cell.workload
                                    && mk.metric == *metric
                            })
                            .map(|mk| PointMark {
                                source: v.source,
                                verdict: mk.verdict,
                                change: mk.change,
                                p_value: mk.p_value,
                                against: v.against.clone(),
                            })
                    })
                    .collect();
                series.points.push(TrendPoint {
                    x,
                    n: m.n,
                    median: m.median,
                    ci95: m.ci95,
                    marks,
                    changed_labels,
                });
            }
        }
    }
    let mut series: Vec<TrendSeries> = building.into_values().map(|(s, _)| s).collect();
    let metric_rank = |name: &str| {
        metrics::REGISTRY
            .iter()
            .position(|m| m.name == name)
            .unwrap_or(usize::MAX)
    };
    series.sort_by(|a, b| {
        let cell = |s: &TrendSeries| {
            cell_order
                .iter()
                .position(|(bk, w)| *bk == s.backend && *w == s.workload)
                .unwrap_or(usize::MAX)
        };
        (
            cell(a),
            &a.config_hash,
            metric_rank(&a.metric),
            &a.metric,
            a.host_class,
        )
            .cmp(&(
                cell(b),
                &b.config_hash,
                metric_rank(&b.metric),
                &b.metric,
                b.host_class,
            ))
    });
    if series.is_empty() {
        return Err(TrendError::Nothing);
    }
    Ok(Trend {
        ticks,
        host_classes,
        series,
        notes,
        caveats,
    })
}

/// `key old → new` for every label that differs (`(absent)` for one side missing).
fn label_changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (b, a) = (before.get(k), after.get(k));
            (b != a).then(|| {
                format!(
                    "{k} {} → {}",
                    b.map_or("(absent)", String::as_str),
                    a.map_or("(absent)", String::as_str)
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comparable::host_class_differences;
    use crate::isolation::IsolationKind;
    use crate::schema::{BenchmarkResult, RunFailure, RunRecord, ToolInfo};
    use crate::stats::DEFAULT_SEED;
    use workload::WorkloadSpec;

    const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const SHA_C: &str = "cccccccccccccccccccccccccccccccccccccccc";

    fn host(cpu: &str) -> HostInfo {
        HostInfo {
            hostname: "runner-1".into(),
            kernel: "6.1.0".into(),
            cpu_model: cpu.into(),
            cores: 2,
            memory_bytes: 1 << 33,
            cgroup_version: "v2".into(),
            kvm: "none".into(),
            os: "Debian".into(),
            arch: "x86_64".into(),
            dimensions: BTreeMap::new(),
        }
    }

    /// A results file with a container and a runc idle cell whose `start_to_ready_ms` samples are
    /// `ready` (and exec at half of it), plus a skipped microvm cell.
    fn results(cpu: &str, run_id: &str, revision: Option<&str>, ready: &[f64]) -> ResultsFile {
        let tool = ToolInfo {
            name: "cvbench".into(),
            version: "0.1.0".into(),
            git_revision: revision.map(str::to_string),
            argv: vec![],
        };
        let mut f = ResultsFile::new("compare", tool, host(cpu));
        f.run_id = run_id.to_string();
        for backend in ["container", "runc"] {
            let kind = if backend == "runc" {
                IsolationKind::OciRuntime
            } else {
                IsolationKind::Container
            };
            let mut cell = BenchmarkResult::new(
                backend,
                Isolation::host_kernel(kind),
                &WorkloadSpec::Idle,
                BTreeMap::from([("runtime".to_string(), "1.0".to_string())]),
            );
            cell.runs.push(RunRecord {
                index: 0,
                warmup: true,
                metrics: BTreeMap::from([(metrics::START_TO_READY_MS.to_string(), 1000.0)]),
                workload_result: None,
            });
            for (i, v) in ready.iter().enumerate() {
                cell.runs.push(RunRecord {
                    index: u32::try_from(i + 1).unwrap(),
                    warmup: false,
                    metrics: BTreeMap::from([
                        (metrics::START_TO_READY_MS.to_string(), *v),
                        (metrics::START_TO_EXEC_MS.to_string(), v / 2.0),
                        (metrics::PSS_BYTES.to_string(), 1e6),
                    ]),
                    workload_result: None,
                });
            }
            cell.failures.push(RunFailure {
                index: 99,
                error: "x".into(),
            });
            f.benchmarks.push(cell);
        }
        let mut skipped = BenchmarkResult::new(
            "microvm",
            Isolation::host_kernel(IsolationKind::Container),
            &WorkloadSpec::Idle,
            BTreeMap::new(),
        );
        skipped.skipped = Some("no /dev/kvm".into());
        f.benchmarks.push(skipped);
        f
    }

    fn commit(sha: &str, date: Option<&str>) -> CommitInfo {
        CommitInfo {
            sha: sha.to_string(),
            date: date.map(str::to_string),
            dirty: false,
        }
    }

    fn entry(sha: &str, date: &str, cpu: &str, ready: &[f64]) -> HistoryEntry {
        HistoryEntry::from_results(
            &results(cpu, &format!("run-{sha}-{cpu}"), Some(&sha[..12]), ready),
            commit(sha, Some(date)),
            None,
            Vec::new(),
            false,
            "2026-11-29T22:00:00Z".into(),
        )
        .unwrap()
    }

    const READY: [f64; 6] = [10.0, 11.0, 12.0, 13.0, 14.0, 40.0];

    #[test]
    fn an_entry_holds_the_reports_median_and_ci_of_every_startup_metric_and_nothing_else() {
        let f = results("cpu", "r1", Some("aaaaaaaaaaaa"), &READY);
        let e = HistoryEntry::from_results(
            &f,
            commit(SHA_A, Some("2026-11-29T21:00:00Z")),
            Some("host loaded".into()),
            Vec::new(),
            false,
            "2026-11-29T22:00:00Z".into(),
        )
        .unwrap();
        assert_eq!(e.cells.len(), 3);
        let container = &e.cells[0];
        assert_eq!(
            container.metrics.keys().collect::<Vec<_>>(),
            vec![metrics::START_TO_EXEC_MS, metrics::START_TO_READY_MS],
            "startup metrics only: no pss_bytes"
        );
        let ready = container.metrics[metrics::START_TO_READY_MS];
        // The report's figure: stats::summarize over the measured samples (the warm-up's 1000 left out).
        let want = stats::summarize(&READY, DEFAULT_SEED).unwrap();
        assert_eq!(ready.n, 6);
        assert_eq!(ready.median, 12.5);
        assert_eq!(ready.median, want.p50);
        assert_eq!(ready.ci95, want.median_ci95);
        assert_eq!((container.measured_runs, container.failed_runs), (6, 1));
        assert_eq!(container.config_hash, f.benchmarks[0].config_hash());
        let skipped = &e.cells[2];
        assert_eq!(skipped.skipped.as_deref(), Some("no /dev/kvm"));
        assert!(skipped.metrics.is_empty());
        assert_eq!(e.note.as_deref(), Some("host loaded"));
        assert_eq!(e.short_commit(), "aaaaaaa");
        assert_eq!(e.day(), "2026-11-29");
    }

    #[test]
    fn lines_round_trip_through_append_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/history.jsonl");
        let a = entry(SHA_A, "2026-11-29T20:00:00Z", "cpu", &READY);
        let mut b = entry(
            SHA_B,
            "2026-11-29T21:00:00Z",
            "cpu",
            &[20.0, 21.0, 22.0, 23.0, 24.0],
        );
        b.verdicts.push(VerdictRecord {
            source: VerdictSource::Ab,
            file: "ab.json".into(),
            against: "A = main".into(),
            alpha: 0.01,
            noise: 0.05,
            judged: 4,
            marks: vec![VerdictMark {
                backend: "container".into(),
                workload: "idle".into(),
                metric: metrics::START_TO_READY_MS.into(),
                verdict: Verdict::Regression,
                change: Some(0.8),
                p_value: Some(1e-4),
            }],
        });
        assert_eq!(append_entry(&path, &a).unwrap(), 1);
        assert_eq!(append_entry(&path, &b).unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "one line per entry");
        assert!(text.ends_with('\n'));
        assert_eq!(read(&path).unwrap(), vec![a.clone(), b]);
        // The same run twice is refused, and the file is left as it was.
        let err = append_entry(&path, &a).unwrap_err();
        assert!(
            matches!(
                &err,
                HistoryError::DuplicateRun {
                    line: 3,
                    first_line: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    }

    fn parse_err(text: &str) -> HistoryError {
        parse(text, Path::new("h.jsonl")).unwrap_err()
    }

    #[test]
    fn malformed_lines_are_refused_with_their_line_number() {
        let good = entry(SHA_A, "2026-11-29T20:00:00Z", "cpu", &READY).to_line();
        // Blank lines are fine.
        assert_eq!(parse(&format!("\n{good}\n\n"), Path::new("h")).unwrap().len(), 1);

        let err = parse_err(&format!("{good}\n{{not json\n"));
        assert!(matches!(err, HistoryError::NotJson { line: 2, .. }), "{err}");
        assert!(
            err.to_string().starts_with("h.jsonl:2: not a JSON object"),
            "{err}"
        );

        let err = parse_err("[1, 2]\n");
        assert!(matches!(err, HistoryError::Invalid { line: 1, .. }), "{err}");

        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v.as_object_mut().unwrap().remove("history_version");
        let err = parse_err(&format!("{good}\n\n{v}"));
        assert!(matches!(err, HistoryError::NoVersion { line: 3, .. }), "{err}");

        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v["history_version"] = serde_json::json!(2);
        let err = parse_err(&v.to_string());
        assert!(
            err.to_string()
                .contains("history_version 2, this cvbench reads version 1"),
            "{err}"
        );
        v["history_version"] = serde_json::json!("1");
        assert!(matches!(
            parse_err(&v.to_string()),
            HistoryError::VersionMismatch { .. }
        ));

        // Wrong types, unknown fields and impossible figures name the line and the cause.
        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v["cells"][0]["metrics"][metrics::START_TO_READY_MS]["median"] = serde_json::json!("fast");
        let err = parse_err(&v.to_string());
        assert!(matches!(err, HistoryError::Invalid { line: 1, .. }), "{err}");
        assert!(err.to_string().contains("invalid type"), "{err}");

        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v["comit"] = serde_json::json!(SHA_A);
        assert!(parse_err(&v.to_string())
            .to_string()
            .contains("unknown field `comit`"));

        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v["commit"] = serde_json::json!("main");
        assert!(parse_err(&v.to_string())
            .to_string()
            .contains("not 7 to 40 hex digits"));

        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v["cells"][0]["metrics"][metrics::START_TO_READY_MS]["ci95"] = serde_json::json!([20.0, 10.0]);
        assert!(parse_err(&v.to_string()).to_string().contains("runs backwards"));

        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v["cells"][0]["metrics"][metrics::START_TO_READY_MS]["n"] = serde_json::json!(0);
        assert!(parse_err(&v.to_string()).to_string().contains("n is 0"));

        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        let first = v["cells"][0].clone();
        v["cells"][1] = first;
        assert!(parse_err(&v.to_string()).to_string().contains("appears twice"));

        // A corrupt file is never appended to.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        std::fs::write(&path, format!("{good}\ngarbage\n")).unwrap();
        let err = append_entry(&path, &entry(SHA_B, "2026-11-29T21:00:00Z", "cpu", &READY)).unwrap_err();
        assert!(matches!(err, HistoryError::NotJson { line: 2, .. }), "{err}");
        assert!(matches!(
            read(&dir.path().join("none")),
            Err(HistoryError::Unreadable { .. })
        ));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(read(&path), Err(HistoryError::Empty { .. })));
    }

    #[test]
    fn results_that_cannot_be_a_line_are_refused() {
        let f = results("cpu", "r", Some("aaaaaaaaaaaa"), &READY);
        let make = |f: &ResultsFile, sha: &str, allow_partial: bool| {
            HistoryEntry::from_results(f, commit(sha, None), None, Vec::new(), allow_partial, "t".into())
        };
        assert!(matches!(
            make(&f, SHA_B, false),
            Err(EntryError::RevisionMismatch { .. })
        ));
        assert!(
            make(&f, "aaaaaaa", false).is_ok(),
            "an abbreviated commit matches"
        );
        assert!(matches!(
            make(&f, "HEAD", false),
            Err(EntryError::BadCommit { .. })
        ));
        let mut partial = f.clone();
        partial.partial = true;
        assert!(matches!(make(&partial, SHA_A, false), Err(EntryError::Partial)));
        assert!(make(&partial, SHA_A, true).unwrap().partial);
        let mut merged = f.clone();
        merged.hosts.push(crate::schema::HostSection {
            id: "x".into(),
            run_id: "x".into(),
            command: "compare".into(),
            tool: f.tool.clone(),
            started_at: String::new(),
            partial: false,
            host: f.host.clone(),
        });
        assert!(matches!(
            make(&merged, SHA_A, false),
            Err(EntryError::Merged { hosts: 1 })
        ));
        let mut empty = f.clone();
        for c in &mut empty.benchmarks {
            c.runs.clear();
        }
        assert!(matches!(
            make(&empty, SHA_A, false),
            Err(EntryError::NoStartupMetric)
        ));
        // A file without a run id (written before it existed) gets one from its start and host.
        let mut old = f;
        old.run_id.clear();
        old.tool.git_revision = None;
        let e = make(&old, SHA_C, false).unwrap();
        assert_eq!(e.run_id, format!("{}-runner-1", old.started_at));
    }

    #[test]
    fn the_host_class_is_what_comparable_compares() {
        let base = host("cpu");
        let same_class = |h: &HostInfo| HostClass::of(h) == HostClass::of(&base);
        let mut other_name = base.clone();
        other_name.hostname = "runner-2".into();
        other_name.memory_bytes = 1 << 34;
        other_name.os = "other".into();
        assert!(same_class(&other_name));
        assert!(host_class_differences(&base, &other_name).is_empty());
        let variants: [fn(&mut HostInfo); 5] = [
            |h| h.cpu_model = "other".into(),
            |h| h.kernel = "6.12".into(),
            |h| h.kvm = "hardware".into(),
            |h| h.cgroup_version = "v1".into(),
            |h| h.cores = 4,
        ];
        for change in variants {
            let mut h = base.clone();
            change(&mut h);
            assert!(!same_class(&h), "{h:?}");
            assert!(!host_class_differences(&base, &h).is_empty(), "{h:?}");
        }
    }

    fn ab_verdict(b_commit: &str, verdict: &str) -> String {
        serde_json::json!({
            "a": {"spec": "main", "binary": "/x", "commit": SHA_A, "env": []},
            "b": {"spec": "HEAD", "binary": "/y", "commit": b_commit, "env": []},
            "host": "h", "alpha": 0.01, "noise": 0.05, "seed": 1, "trials": 10, "runs_per_trial": 1,
            "order": [], "failures": [], "host_differences": [], "cell_differences": [],
            "verdict": "regression", "elapsed_s": 3.0,
            "rows": [
                {"backend": "container", "workload": "idle", "metric": "start_to_ready_ms", "a_n": 10,
                 "b_n": 10, "a_p50": 10.0, "b_p50": 12.0, "change": 0.2, "ratio": null, "p_value": 0.001,
                 "verdict": verdict},
                {"backend": "container", "workload": "idle", "metric": "start_to_exec_ms", "a_n": 10,
                 "b_n": 10, "a_p50": 5.0, "b_p50": 5.0, "change": 0.0, "ratio": null, "p_value": 0.9,
                 "verdict": "ok"}
            ]
        })
        .to_string()
    }

    #[test]
    fn verdict_files_of_ab_and_check_become_marks() {
        let p = Path::new("ab.json");
        let v = parse_verdict(&ab_verdict(SHA_B, "regression"), p, SHA_B).unwrap();
        assert_eq!((v.source, v.judged, v.marks.len()), (VerdictSource::Ab, 2, 1));
        assert_eq!(v.marks[0].verdict, Verdict::Regression);
        assert_eq!(v.marks[0].change, Some(0.2));
        assert!(
            v.against.contains("main") && v.against.contains("aaaaaaaaaaaa"),
            "{}",
            v.against
        );
        // A verdict about another commit is refused.
        let err = parse_verdict(&ab_verdict(SHA_C, "regression"), p, SHA_B).unwrap_err();
        assert!(matches!(err, EntryError::VerdictCommit { .. }), "{err}");

        let check = serde_json::json!({
            "noise": 0.05, "alpha": 0.01, "baseline_host": "vm (AMD)", "current_host": "vm (AMD)",
            "rows": [{"backend": "runc", "workload": "idle", "metric": "start_to_ready_ms",
                      "baseline_n": 10, "current_n": 10, "baseline_p50": 10.0, "current_p50": 8.0,
                      "ratio": {"ratio": 0.8, "ci95": [0.7, 0.9]}, "p_value": 0.001,
                      "verdict": "improvement", "note": null},
                     {"backend": "qemu", "workload": "idle", "metric": "start_to_ready_ms",
                      "baseline_n": 10, "current_n": 0, "baseline_p50": 10.0, "current_p50": null,
                      "ratio": null, "p_value": null, "verdict": "missing", "note": null}]
        });
        let v = parse_verdict(&check.to_string(), Path::new("check.json"), SHA_B).unwrap();
        assert_eq!((v.source, v.judged), (VerdictSource::Check, 2));
        assert_eq!(
            v.marks.iter().map(|m| m.verdict).collect::<Vec<_>>(),
            vec![Verdict::Improvement, Verdict::Missing]
        );
        assert!((v.marks[0].change.unwrap() + 0.2).abs() < 1e-12);

        for bad in ["{}", "not json", r#"{"a": 1, "b": 2}"#] {
            let err = parse_verdict(bad, Path::new("x.json"), SHA_B).unwrap_err();
            assert!(matches!(err, EntryError::VerdictInvalid { .. }), "{err}");
        }
        let err = parse_verdict(&ab_verdict(SHA_B, "worse"), p, SHA_B).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn the_trend_keeps_host_classes_apart_and_orders_by_commit_date() {
        // Appended out of order: c (newest) first. Host class "big" only at b.
        let mut c = entry(SHA_C, "2026-11-29T22:00:00Z", "small", &[30.0; 5]);
        c.note = Some("host loaded".into());
        let a = entry(SHA_A, "2026-11-29T20:00:00Z", "small", &[10.0; 5]);
        let b = entry(SHA_B, "2026-11-29T21:00:00Z", "big", &[20.0; 5]);
        let history = vec![c, a, b];
        let t = trend(&history, &TrendFilter::default()).unwrap();
        let commits: Vec<&str> = t.ticks.iter().map(|t| t.short_commit.as_str()).collect();
        assert_eq!(commits, vec!["aaaaaaa", "bbbbbbb", "ccccccc"]);
        assert_eq!(t.host_classes.len(), 2);
        assert_eq!(t.host_classes[0].cpu_model, "small");
        assert_eq!(t.notes, vec![("ccccccc".to_string(), "host loaded".to_string())]);

        // container and runc × exec and ready × two classes; the skipped microvm has none.
        assert_eq!(t.series.len(), 8);
        assert_eq!(t.cells(), vec![("container", "idle"), ("runc", "idle")]);
        for s in &t.series {
            for p in &s.points {
                assert_eq!(
                    t.ticks[p.x].host_class, s.host_class,
                    "a series only holds points of its own host class"
                );
            }
        }
        let ready: Vec<&TrendSeries> = t
            .series_of("container", "idle")
            .filter(|s| s.metric == metrics::START_TO_READY_MS)
            .collect();
        assert_eq!(ready.len(), 2);
        let small = ready.iter().find(|s| s.host_class == 0).unwrap();
        assert_eq!(
            small.points.iter().map(|p| (p.x, p.median)).collect::<Vec<_>>(),
            vec![(0, 10.0), (2, 30.0)]
        );
        assert_eq!(
            small.last_change(),
            Some(2.0),
            "c against a, skipping the other class's b"
        );
        let big = ready.iter().find(|s| s.host_class == 1).unwrap();
        assert_eq!(big.points.len(), 1);
        assert_eq!(big.last_change(), None, "nothing to compare within its class");
        // Registry order: exec before ready.
        let metrics_of_container: Vec<&str> = t
            .series_of("container", "idle")
            .map(|s| s.metric.as_str())
            .collect();
        assert_eq!(
            metrics_of_container,
            vec![
                metrics::START_TO_EXEC_MS,
                metrics::START_TO_EXEC_MS,
                metrics::START_TO_READY_MS,
                metrics::START_TO_READY_MS
            ]
        );
    }

    #[test]
    fn the_trend_filters_marks_and_notes_label_changes() {
        let a = entry(SHA_A, "2026-11-29T20:00:00Z", "cpu", &[10.0; 5]);
        let mut b = entry(SHA_B, "2026-11-29T21:00:00Z", "cpu", &[20.0; 5]);
        b.cells[1].labels.insert("runtime".into(), "1.1".into());
        b.verdicts
            .push(parse_verdict(&ab_verdict(SHA_B, "regression"), Path::new("ab.json"), SHA_B).unwrap());
        let history = vec![a, b];
        let filter = TrendFilter {
            backends: vec!["runc".into()],
            metrics: vec![metrics::START_TO_READY_MS.into()],
        };
        let t = trend(&history, &filter).unwrap();
        assert_eq!(t.series.len(), 1);
        let s = &t.series[0];
        assert_eq!(
            (s.backend.as_str(), s.metric.as_str()),
            ("runc", metrics::START_TO_READY_MS)
        );
        assert_eq!(s.points[1].changed_labels, vec!["runtime 1.0 → 1.1".to_string()]);
        assert!(
            s.points.iter().all(|p| p.marks.is_empty()),
            "the mark is container's"
        );

        let t = trend(&history, &TrendFilter::default()).unwrap();
        let marked: Vec<(&str, &str, usize)> = t
            .series
            .iter()
            .flat_map(|s| {
                s.points
                    .iter()
                    .filter(|p| !p.marks.is_empty())
                    .map(move |p| (s.backend.as_str(), s.metric.as_str(), p.x))
            })
            .collect();
        assert_eq!(marked, vec![("container", metrics::START_TO_READY_MS, 1)]);

        let err = trend(
            &history,
            &TrendFilter {
                backends: vec!["qemu".into()],
                metrics: vec![],
            },
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("no backend \"qemu\" (it has: container, runc)"),
            "{err}"
        );
        let err = trend(
            &history,
            &TrendFilter {
                backends: vec![],
                metrics: vec!["pss_bytes".into()],
            },
        )
        .unwrap_err();
        assert!(matches!(err, TrendError::UnknownMetric { .. }), "{err}");
    }

    #[test]
    fn without_commit_dates_the_file_order_is_the_commit_order() {
        let mut b = entry(SHA_B, "2026-11-29T21:00:00Z", "cpu", &READY);
        b.commit_date = None;
        let a = entry(SHA_A, "2026-11-29T20:00:00Z", "cpu", &READY);
        assert_eq!(x_order(&[b.clone(), a.clone()]), vec![0, 1]);
        b.commit_date = Some("2026-11-29T21:00:00Z".into());
        assert_eq!(x_order(&[b, a]), vec![1, 0]);
    }

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_published_history_schema_is_current() {
        let path = repo_root().join(HISTORY_SCHEMA_FILE);
        let fresh = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != fresh {
            std::fs::write(&path, &fresh).unwrap();
            panic!(
                "{} was stale and has been regenerated from the Rust types: review and commit it",
                path.display()
            );
        }
    }

    #[test]
    fn written_and_committed_history_lines_match_the_schema() {
        let validator = jsonschema::validator_for(&json_schema()).expect("a valid JSON Schema");
        let errors = |v: &serde_json::Value| -> Vec<String> {
            validator
                .iter_errors(v)
                .map(|e| format!("{e} at {}", e.instance_path))
                .collect()
        };
        let mut e = entry(SHA_A, "2026-11-29T20:00:00Z", "cpu", &READY);
        e.verdicts
            .push(parse_verdict(&ab_verdict(SHA_A, "regression"), Path::new("ab.json"), SHA_A).unwrap());
        let written: serde_json::Value = serde_json::from_str(&e.to_line()).unwrap();
        assert!(errors(&written).is_empty(), "{:#?}", errors(&written));
        let mut unknown = written.clone();
        unknown["comit"] = serde_json::json!("x");
        assert!(
            !errors(&unknown).is_empty(),
            "unknown fields are refused by the schema too"
        );
        let committed = repo_root().join(DEFAULT_HISTORY_FILE);
        let text = std::fs::read_to_string(&committed).unwrap();
        let lines = parse(&text, &committed).unwrap();
        assert!(lines.len() >= 4, "the repository keeps at least four commits");
        for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(errors(&v).is_empty(), "line {}: {:#?}", i + 1, errors(&v));
        }
    }
}
