//! What `bench` shows: the summary table (stdout) and progress (stderr: an `indicatif` bar on a
//! terminal, plain lines otherwise).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use harness::metrics::{self, Group};
use harness::results::{BenchmarkResult, ResultsFile, Summary};
use harness::{Event, Observer};
use indicatif::{ProgressBar, ProgressStyle};

/// `mean ± sd`, both with the metric's unit.
fn mean_sd(metric: &str, s: &Summary) -> String {
    let q = metrics::quantity(metric);
    format!("{} ± {}", q.format(s.mean), q.format(s.sd))
}

/// The human-readable table for one benchmark.
pub fn summary_table(result: &BenchmarkResult) -> String {
    let mut out = String::new();
    let warmups = result.runs.iter().filter(|r| r.warmup).count();
    let _ = writeln!(
        out,
        "{} · {} · {} measured runs ({} warm-up) · {} failed",
        result.backend,
        result.workload,
        result.measured_runs(),
        warmups,
        result.failures.len()
    );
    if let Some(reason) = &result.skipped {
        let _ = writeln!(out, "skipped: {reason}");
        return out;
    }
    if result.summary.is_empty() {
        let _ = writeln!(out, "no measured runs");
        return out;
    }
    let mut rows: Vec<(&String, &Summary)> = result.summary.iter().collect();
    // By group (startup, memory, disk, workload); phases in the order they happen (by median),
    // everything else by name.
    rows.sort_by(|a, b| {
        let (ga, gb) = (metrics::group(a.0), metrics::group(b.0));
        let by_time = if ga == Group::Startup && gb == Group::Startup {
            a.1.p50.total_cmp(&b.1.p50)
        } else {
            std::cmp::Ordering::Equal
        };
        ga.cmp(&gb).then(by_time).then(a.0.cmp(b.0))
    });
    let rows: Vec<[String; 6]> = rows
        .into_iter()
        .map(|(m, s)| {
            [
                m.clone(),
                s.n.to_string(),
                metrics::format(m, s.p50),
                metrics::format(m, s.p90),
                metrics::format(m, s.p99),
                mean_sd(m, s),
            ]
        })
        .collect();
    let header = ["metric", "n", "p50", "p90", "p99", "mean ± sd"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = format!("{:<w$}", row[0], w = widths[0]);
        for (cell, w) in row.iter().zip(widths).skip(1) {
            let pad = w.saturating_sub(cell.chars().count());
            let _ = write!(line, "  {}{cell}", " ".repeat(pad));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// A results file rewritten after every step so that a crash loses nothing. When a write fails
/// (the disk filled, the directory vanished), the results go to a fallback file in the temporary
/// directory from then on, so the run goes on and loses nothing; the command reports both paths at
/// the end.
pub struct ResultsWriter {
    /// Where the user asked for the results.
    requested: PathBuf,
    /// Where they go now: `requested`, or the fallback after a failure.
    path: PathBuf,
    /// The first failure at `requested`.
    error: Option<anyhow::Error>,
    /// Set when the fallback failed too.
    fallback_error: Option<anyhow::Error>,
}

impl ResultsWriter {
    pub fn new(path: PathBuf) -> Self {
        ResultsWriter {
            requested: path.clone(),
            path,
            error: None,
            fallback_error: None,
        }
    }

    pub fn write(&mut self, results: &ResultsFile) {
        if self.fallback_error.is_some() {
            return;
        }
        match results.write_atomic(&self.path) {
            Ok(()) => {}
            Err(e) if self.error.is_none() => {
                self.error = Some(anyhow::Error::new(e));
                self.path = fallback_path(&self.requested);
                if let Err(e) = results.write_atomic(&self.path) {
                    self.fallback_error = Some(anyhow::Error::new(e));
                }
            }
            Err(e) => self.fallback_error = Some(anyhow::Error::new(e)),
        }
    }

    /// The failure, if any, saying where the results are instead.
    pub fn take_error(&mut self) -> Option<anyhow::Error> {
        let error = self.error.take()?;
        Some(match self.fallback_error.take() {
            None => error.context(format!(
                "the results were written to {} instead of {}",
                self.path.display(),
                self.requested.display()
            )),
            Some(fallback) => error.context(format!(
                "the results could not be written to {} nor to the fallback {} ({})",
                self.requested.display(),
                self.path.display(),
                crate::cmd::error_line(&fallback)
            )),
        })
    }
}

/// Where results go when their path cannot be written: `$TMPDIR/cvbench-<pid>-<file name>`.
pub fn fallback_path(requested: &Path) -> PathBuf {
    let name = requested
        .file_name()
        .map_or_else(|| "results.json".into(), |n| n.to_string_lossy().into_owned());
    std::env::temp_dir().join(format!("cvbench-{}-{name}", std::process::id()))
}

/// A progress bar with ETA on stderr, labelled `prefix`; `None` when stderr is not a terminal.
pub fn styled_bar(prefix: &str, total: u64) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(prefix.to_string());
        bar
    })
}

/// Progress of a plan on stderr (a bar with ETA on a terminal, plain lines otherwise), and the results
/// file rewritten after every step so a crash loses nothing. One observer for `run`, `compare` and
/// `density`, as they share the engine.
pub struct PlanProgress {
    label: String,
    /// Made at the first step, when the number of steps is known.
    bar: Option<ProgressBar>,
    writer: Option<ResultsWriter>,
}

impl PlanProgress {
    /// Progress labelled `label`, rewriting the results file at `path` (if any).
    pub fn new(label: &str, path: Option<PathBuf>) -> Self {
        PlanProgress {
            label: label.to_string(),
            bar: None,
            writer: path.map(ResultsWriter::new),
        }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// The first error writing the results file.
    pub fn take_error(&mut self) -> Option<anyhow::Error> {
        self.writer.as_mut().and_then(ResultsWriter::take_error)
    }

    fn set_total(&self, total_steps: u32) {
        if let Some(bar) = &self.bar {
            bar.set_length(u64::from(total_steps));
        }
    }
}

impl Observer for PlanProgress {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Skipped {
                backend,
                workload: None,
                reason,
            } => self.line(format!("{backend}: skipped: {reason}")),
            Event::Skipped {
                backend,
                workload: Some(workload),
                reason,
            } => self.line(format!("{backend} {workload}: skipped: {reason}")),
            Event::Preparing { backend } => self.line(format!("{backend}: preparing the image")),
            Event::PrepareFailed { backend, error } => self.line(format!("{backend}: {error}")),
            Event::RunStarted(at) => {
                if self.bar.is_none() {
                    self.bar = styled_bar(&self.label, u64::from(at.total_steps));
                    if let Some(bar) = &self.bar {
                        bar.set_position(u64::from(at.step));
                    }
                }
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("{} {}", at.backend, at.workload));
                }
            }
            Event::RunFinished { step: at, error } => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                let kind = if at.warmup { " (warm-up)" } else { "" };
                let run = format!(
                    "{} {} run {}/{}{kind}",
                    at.backend,
                    at.workload,
                    at.round + 1,
                    at.rounds
                );
                match error {
                    Some(e) => self.line(format!("{run} failed: {e}")),
                    None if self.bar.is_none() => {
                        self.line(format!("[{}/{}] {run} done", at.step + 1, at.total_steps));
                    }
                    None => {}
                }
            }
            Event::Point { backend, point } => match &self.bar {
                Some(bar) => {
                    bar.set_message(format!("{backend} {}", crate::cmd::density::point_brief(point)))
                }
                None => self.line(format!("{backend}: {}", crate::cmd::density::point_line(point))),
            },
            Event::GaveUp {
                backend,
                workload,
                reason,
                total_steps,
            } => {
                self.set_total(*total_steps);
                self.line(format!("{backend} {workload}: {reason}"));
            }
            Event::BudgetReached {
                workload,
                measured_runs,
                total_steps,
            } => {
                self.set_total(*total_steps);
                self.line(format!(
                    "{workload}: time budget reached after {measured_runs} measured runs per backend"
                ));
            }
            Event::TearingDown {
                backend,
                running,
                reason,
            } => self.line(format!(
                "{backend}: stopping ({reason}); tearing down {running} instances"
            )),
            Event::Stopped {
                completed,
                total_steps,
            } => self.line(format!(
                "stopped after {completed}/{total_steps} steps; results so far are kept (partial)"
            )),
        }
    }

    fn updated(&mut self, results: &ResultsFile) {
        if let Some(writer) = &mut self.writer {
            writer.write(results);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_falls_back_and_says_where() {
        let tmp = tempfile::tempdir().unwrap();
        // A path under a regular file can never be written.
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let requested = blocker.join("results.json");
        let host = harness::results::HostInfo {
            hostname: "h".into(),
            kernel: "k".into(),
            cpu_model: "c".into(),
            cores: 1,
            memory_bytes: 1,
            cgroup_version: "v2".into(),
            kvm: "none".into(),
            os: "o".into(),
            arch: String::new(),
            dimensions: Default::default(),
        };
        let results = ResultsFile::new("run", harness::results::ToolInfo::current(vec![]), host);
        let mut writer = ResultsWriter::new(requested.clone());
        writer.write(&results);
        writer.write(&results);
        let err = writer.take_error().expect("the write failed");
        let fallback = fallback_path(&requested);
        let line = crate::cmd::error_line(&err);
        assert!(line.contains(&fallback.display().to_string()), "{line}");
        assert!(ResultsFile::read(&fallback).is_ok(), "{line}");
        let _ = std::fs::remove_file(&fallback);
    }

    #[test]
    fn table_lists_phases_first_with_aligned_columns() {
        let isolation = harness::results::Isolation::host_kernel(harness::results::IsolationKind::Container);
        let mut r = BenchmarkResult::new(
            "mock",
            isolation,
            &workload::WorkloadSpec::Idle,
            Default::default(),
        );
        for (i, v) in [1.0, 2.0, 3.0].into_iter().enumerate() {
            r.runs.push(harness::results::RunRecord {
                index: u32::try_from(i).unwrap(),
                warmup: false,
                metrics: [
                    (metrics::START_TO_READY_MS.to_string(), v),
                    (metrics::PSS_BYTES.to_string(), v * 1024.0),
                    ("workload.unregistered_ms".to_string(), 1500.0),
                ]
                .into(),
                workload_result: None,
            });
        }
        r.recompute_summary(1);
        let table = summary_table(&r);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("mock · idle · 3 measured runs"), "{table}");
        assert!(lines[1].starts_with("metric"));
        assert!(lines[2].starts_with("start_to_ready_ms"), "{table}");
        assert!(lines[3].starts_with("pss_bytes"), "{table}");
        assert!(lines[2].contains("2.00 ms"), "{table}");
        // The report's formatter: bytes by magnitude, two decimals.
        assert!(lines[3].contains("2.00 KiB"), "{table}");
        // An unregistered workload figure: last, a plain number, no unit guessed from `_ms`.
        assert!(lines[4].starts_with("workload.unregistered_ms"), "{table}");
        assert!(
            lines[4].contains("  1500  ") && !lines[4].contains(" ms"),
            "{table}"
        );
        assert_eq!(lines[1].len(), lines[2].len(), "{table}");
    }
}
