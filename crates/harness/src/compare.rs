//! `bench compare`: every backend × workload in one results file. Backends are interleaved run by
//! run — run k of every backend before run k+1 of any, with the starting backend rotated each round
//! (A B C, B C A, C A B, ...) — so slow drift of the host (page cache, thermal state, background
//! work) and "who runs right after whom" hit all backends alike instead of biasing whichever ran last.
//!
//! A backend that cannot run on this host is recorded as skipped with its reason, one cell per
//! workload, never dropped. The results file is handed to the observer after every run so the caller
//! can rewrite it; a stop request (Ctrl-C) ends the loop between runs and marks the file partial.

use std::path::Path;
use std::time::{Duration, Instant};

use workload::WorkloadSpec;

use crate::backend::Backend;
use crate::results::{BenchmarkResult, ResultsFile, RunFailure};
use crate::runner::{run_into, RunOptions};

/// Progress of a comparison, for display.
#[derive(Debug, Clone, PartialEq)]
pub enum CompareEvent {
    /// `backend` cannot run here; its cells are recorded as skipped.
    Skipped { backend: String, reason: String },
    /// One-time preparation of `backend` is starting.
    Preparing { backend: String },
    /// Preparation failed; the backend's cells record the error and it takes no further part.
    PrepareFailed { backend: String, error: String },
    /// One run is starting: `step` (0-based) of `total_steps` runs in the whole comparison.
    RunStarted {
        backend: String,
        workload: String,
        round: u32,
        warmup: bool,
        step: u32,
        total_steps: u32,
    },
    /// That run ended; `error` is set when it failed (recorded in the cell's `failures`).
    RunFinished {
        backend: String,
        workload: String,
        round: u32,
        warmup: bool,
        step: u32,
        total_steps: u32,
        error: Option<String>,
    },
    /// The time budget ended `workload` after `measured_runs` measured rounds (at least the budget's
    /// minimum); the comparison now has `total_steps` runs in all.
    BudgetReached {
        workload: String,
        measured_runs: u32,
        total_steps: u32,
    },
    /// `backend` failed too often and takes no further part in `workload` (recorded in the cell's
    /// failures); the comparison now has `total_steps` runs in all.
    GaveUp {
        backend: String,
        workload: String,
        reason: String,
        total_steps: u32,
    },
    /// A stop was requested: `completed` of `total_steps` runs were done; the file is partial.
    Stopped { completed: u32, total_steps: u32 },
}

/// Watches a comparison: progress, the whole results file after every run, and whether to stop.
pub trait CompareObserver {
    fn event(&mut self, event: &CompareEvent);
    /// Called after every run, skip and failed preparation with the results so far.
    fn updated(&mut self, results: &ResultsFile);
    /// Checked before every run; by default, whether Ctrl-C or SIGTERM arrived.
    fn should_stop(&self) -> bool {
        crate::interrupt::requested()
    }
}

/// Failed runs in a row after which a backend is given up for a workload.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;

/// A time limit for a whole comparison: each workload gets an equal share of what is left when it
/// starts, and stops adding rounds once the next one would overrun its share — but never before
/// `min_runs` measured rounds. `opts.runs` stays the maximum. Like hyperfine's time-based run count,
/// this keeps a default invocation short on slow backends without starving fast ones of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompareBudget {
    pub total: Duration,
    pub min_runs: u32,
}

/// Runs `opts.warmup + opts.runs` rounds of every workload on every backend that can run here, into
/// `results` (whose host, tool and command the caller has filled in). Never fails: skips, failed
/// preparations and failed runs are recorded in the cells. Summaries are recomputed after every
/// measured run with [`crate::stats::DEFAULT_SEED`].
pub fn run_compare(
    backends: &[Box<dyn Backend>],
    image_dir: &Path,
    workloads: &[WorkloadSpec],
    opts: &RunOptions,
    results: ResultsFile,
    observer: &mut dyn CompareObserver,
) -> ResultsFile {
    run_compare_within(backends, image_dir, workloads, opts, None, results, observer)
}

/// [`run_compare`] with an optional [`CompareBudget`].
pub fn run_compare_within(
    backends: &[Box<dyn Backend>],
    image_dir: &Path,
    workloads: &[WorkloadSpec],
    opts: &RunOptions,
    budget: Option<CompareBudget>,
    mut results: ResultsFile,
    observer: &mut dyn CompareObserver,
) -> ResultsFile {
    let started = Instant::now();
    // Host check and preparation, once per backend; which backends take part in the runs.
    let mut active = Vec::new();
    for (b, backend) in backends.iter().enumerate() {
        let labels = crate::runner::cell_labels(backend.as_ref(), opts.confinement);
        let cells: Vec<BenchmarkResult> = workloads
            .iter()
            .map(|spec| BenchmarkResult::new(backend.name(), backend.isolation(), spec, labels.clone()))
            .collect();
        let name = backend.name().to_string();
        let prepared = match backend.check_host() {
            Err(unavailable) => {
                observer.event(&CompareEvent::Skipped {
                    backend: name,
                    reason: unavailable.reason.clone(),
                });
                Err(CellSetup::Skipped(unavailable.reason))
            }
            Ok(()) => {
                observer.event(&CompareEvent::Preparing {
                    backend: name.clone(),
                });
                backend.prepare(image_dir).map_err(|e| {
                    let error = format!("preparing the image: {e}");
                    observer.event(&CompareEvent::PrepareFailed {
                        backend: name,
                        error: error.clone(),
                    });
                    CellSetup::PrepareFailed(error)
                })
            }
        };
        for (mut cell, spec) in cells.into_iter().zip(workloads) {
            match (&prepared, backend.supports(spec)) {
                (Ok(_), Err(unsupported)) => cell.skipped = Some(unsupported.reason),
                (Ok(shared), Ok(())) => cell.shared_image_bytes = Some(shared.bytes),
                (Err(CellSetup::Skipped(reason)), _) => cell.skipped = Some(reason.clone()),
                (Err(CellSetup::PrepareFailed(error)), _) => cell.failures.push(RunFailure {
                    index: 0,
                    error: error.clone(),
                }),
            }
            results.benchmarks.push(cell);
        }
        if prepared.is_ok() {
            active.push(b);
        }
        observer.updated(&results);
    }

    // Cell of backend `b` for workload `w`, as pushed above (backend-major).
    let base = results.benchmarks.len() - backends.len() * workloads.len();
    let cell_index = |b: usize, w: usize| base + b * workloads.len() + w;
    let rounds = opts.warmup.saturating_add(opts.runs);
    // Cells a backend cannot run (skipped with their reason above) take no rounds: counted out
    // from the start, so the progress total only shrinks for what could not be foreseen.
    let runnable_cells = active
        .iter()
        .flat_map(|&b| (0..workloads.len()).map(move |w| (b, w)))
        .filter(|&(b, w)| results.benchmarks[cell_index(b, w)].skipped.is_none())
        .count();
    let mut total_steps = u32::try_from(runnable_cells)
        .unwrap_or(u32::MAX)
        .saturating_mul(rounds);
    let mut step = 0u32;
    // A backend that fails MAX_CONSECUTIVE_FAILURES runs in a row is given up for that workload;
    // one that has never succeeded is then given up for the rest of the comparison too, so a broken
    // backend costs three runs, not the whole matrix.
    let mut succeeded = vec![false; backends.len()];
    let mut abandoned: Vec<Option<String>> = vec![None; backends.len()];
    for (w, spec) in workloads.iter().enumerate() {
        let workload_started = Instant::now();
        let workload_name = spec.kind().name().to_string();
        let mut consecutive = vec![0u32; backends.len()];
        let mut gave_up = vec![false; backends.len()];
        for &b in &active {
            if results.benchmarks[cell_index(b, w)].skipped.is_some() {
                gave_up[b] = true;
            } else if let Some(why) = &abandoned[b] {
                gave_up[b] = true;
                total_steps = total_steps.saturating_sub(rounds);
                let error = format!("not run: {why}");
                results.benchmarks[cell_index(b, w)].failures.push(RunFailure {
                    index: 0,
                    error: error.clone(),
                });
                observer.event(&CompareEvent::GaveUp {
                    backend: backends[b].name().to_string(),
                    workload: workload_name.clone(),
                    reason: error,
                    total_steps,
                });
            }
        }
        let share = budget.map(|b| {
            let left = b.total.saturating_sub(started.elapsed());
            left / u32::try_from(workloads.len() - w).unwrap_or(1).max(1)
        });
        for round in 0..rounds {
            let warmup = round < opts.warmup;
            if let (Some(b), Some(share)) = (budget, share) {
                let measured = round.saturating_sub(opts.warmup);
                let spent = workload_started.elapsed();
                let per_round = if round == 0 { Duration::ZERO } else { spent / round };
                if !warmup && measured >= b.min_runs.max(1) && spent + per_round > share {
                    let still_running = active.iter().filter(|&&b| !gave_up[b]).count();
                    let still_running = u32::try_from(still_running).unwrap_or(u32::MAX);
                    total_steps = total_steps.saturating_sub((rounds - round).saturating_mul(still_running));
                    observer.event(&CompareEvent::BudgetReached {
                        workload: spec.kind().name().to_string(),
                        measured_runs: measured,
                        total_steps,
                    });
                    break;
                }
            }
            for k in 0..active.len() {
                if observer.should_stop() {
                    results.partial = true;
                    observer.event(&CompareEvent::Stopped {
                        completed: step,
                        total_steps,
                    });
                    observer.updated(&results);
                    return results;
                }
                // Rotate who goes first each round.
                let b = active[(k + round as usize) % active.len()];
                if gave_up[b] {
                    continue;
                }
                let backend = backends[b].as_ref();
                let backend_name = backend.name().to_string();
                observer.event(&CompareEvent::RunStarted {
                    backend: backend_name.clone(),
                    workload: workload_name.clone(),
                    round,
                    warmup,
                    step,
                    total_steps,
                });
                let cell = &mut results.benchmarks[cell_index(b, w)];
                let error = run_into(backend, image_dir, spec, opts, cell, round, warmup);
                if error.is_some() {
                    consecutive[b] += 1;
                } else {
                    consecutive[b] = 0;
                    succeeded[b] = true;
                }
                let give_up = (consecutive[b] >= MAX_CONSECUTIVE_FAILURES)
                    .then(|| format!("gave up after {MAX_CONSECUTIVE_FAILURES} consecutive failed runs"));
                if let Some(reason) = &give_up {
                    gave_up[b] = true;
                    cell.failures.push(RunFailure {
                        index: round,
                        error: reason.clone(),
                    });
                    if !succeeded[b] {
                        abandoned[b] = Some(format!(
                            "{backend_name} {reason} of {workload_name} and no run of it has succeeded"
                        ));
                    }
                }
                observer.event(&CompareEvent::RunFinished {
                    backend: backend_name.clone(),
                    workload: workload_name.clone(),
                    round,
                    warmup,
                    step,
                    total_steps,
                    error,
                });
                step += 1;
                if let Some(reason) = give_up {
                    total_steps = total_steps.saturating_sub(rounds - round - 1);
                    observer.event(&CompareEvent::GaveUp {
                        backend: backend_name,
                        workload: workload_name.clone(),
                        reason,
                        total_steps,
                    });
                }
                observer.updated(&results);
            }
        }
    }
    results
}

enum CellSetup {
    Skipped(String),
    PrepareFailed(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, Instance, LaunchSpec, SharedImage, Unavailable};
    use crate::backends::mock::{MockBackend, MockConfig};
    use crate::results::{HostInfo, ToolInfo};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn empty_results() -> ResultsFile {
        let host = HostInfo {
            hostname: "h".into(),
            kernel: "6.1".into(),
            cpu_model: "cpu".into(),
            cores: 2,
            memory_bytes: 1 << 34,
            cgroup_version: "v1".into(),
            kvm: "pvm".into(),
            os: "Debian 12".into(),
        };
        let tool = ToolInfo {
            name: "cvbench".into(),
            version: "0".into(),
            git_revision: None,
            argv: vec![],
        };
        ResultsFile::new("compare", tool, host)
    }

    fn opts(runs: u32, warmup: u32) -> RunOptions {
        RunOptions {
            runs,
            warmup,
            ready_timeout: Duration::from_millis(20),
            ..RunOptions::default()
        }
    }

    /// A backend that logs the order of launches into a shared journal, delegating to the mock.
    struct Journaled {
        name: &'static str,
        inner: MockBackend,
        journal: Arc<Mutex<Vec<String>>>,
    }

    impl Backend for Journaled {
        fn name(&self) -> &'static str {
            self.name
        }
        fn isolation(&self) -> crate::results::Isolation {
            self.inner.isolation()
        }
        fn check_host(&self) -> Result<(), Unavailable> {
            self.inner.check_host()
        }
        fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
            self.inner.prepare(image_dir)
        }
        fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
            if let Ok(mut j) = self.journal.lock() {
                j.push(format!("{}:{}", self.name, spec.workload.kind().name()));
            }
            self.inner.launch(spec)
        }
    }

    #[derive(Default)]
    struct Recorder {
        events: Vec<CompareEvent>,
        updates: usize,
        last: Option<ResultsFile>,
        stop_after_runs: Option<usize>,
    }

    impl CompareObserver for Recorder {
        fn event(&mut self, event: &CompareEvent) {
            self.events.push(event.clone());
        }
        fn updated(&mut self, results: &ResultsFile) {
            self.updates += 1;
            self.last = Some(results.clone());
        }
        fn should_stop(&self) -> bool {
            let finished = self
                .events
                .iter()
                .filter(|e| matches!(e, CompareEvent::RunFinished { .. }))
                .count();
            self.stop_after_runs.is_some_and(|n| finished >= n)
        }
    }

    fn journaled(names: &[&'static str], journal: &Arc<Mutex<Vec<String>>>) -> Vec<Box<dyn Backend>> {
        names
            .iter()
            .map(|&name| {
                Box::new(Journaled {
                    name,
                    inner: MockBackend::new(MockConfig::default()),
                    journal: Arc::clone(journal),
                }) as Box<dyn Backend>
            })
            .collect()
    }

    #[test]
    fn backends_are_interleaved_run_by_run_with_rotation() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let backends = journaled(&["a", "b", "c"], &journal);
        let specs = [WorkloadSpec::Idle];
        let mut obs = Recorder::default();
        let r = run_compare(
            &backends,
            Path::new("/img"),
            &specs,
            &opts(2, 1),
            empty_results(),
            &mut obs,
        );
        let order = journal.lock().map(|j| j.clone()).unwrap_or_default();
        assert_eq!(
            order,
            ["a:idle", "b:idle", "c:idle", "b:idle", "c:idle", "a:idle", "c:idle", "a:idle", "b:idle"]
        );
        assert_eq!(r.benchmarks.len(), 3);
        for cell in &r.benchmarks {
            assert_eq!(cell.runs.len(), 3);
            assert_eq!(cell.measured_runs(), 2);
            assert_eq!(cell.summary[crate::metrics::START_TO_READY_MS].n, 2);
            assert_eq!(
                cell.shared_image_bytes,
                Some(MockConfig::default().shared_image_bytes)
            );
        }
        assert!(!r.partial);
        assert_eq!(obs.last.as_ref(), Some(&r));
        // One update per backend set-up and one per run.
        assert_eq!(obs.updates, 3 + 9);
    }

    #[test]
    fn a_workload_a_backend_cannot_run_is_skipped_for_that_cell_only() {
        /// Runs idle only, like the microVM's probe guest.
        struct IdleOnly(MockBackend);
        impl Backend for IdleOnly {
            fn name(&self) -> &'static str {
                "idle-only"
            }
            fn isolation(&self) -> crate::results::Isolation {
                self.0.isolation()
            }
            fn check_host(&self) -> Result<(), Unavailable> {
                self.0.check_host()
            }
            fn supports(&self, w: &WorkloadSpec) -> Result<(), Unavailable> {
                match w {
                    WorkloadSpec::Idle => Ok(()),
                    _ => Err(Unavailable {
                        reason: "idle only".into(),
                    }),
                }
            }
            fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
                self.0.prepare(image_dir)
            }
            fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
                assert_eq!(
                    spec.workload,
                    WorkloadSpec::Idle,
                    "an unsupported cell was launched"
                );
                self.0.launch(spec)
            }
        }
        let backends: Vec<Box<dyn Backend>> = vec![
            Box::new(MockBackend::new(MockConfig::default())),
            Box::new(IdleOnly(MockBackend::new(MockConfig::default()))),
        ];
        let specs = [
            WorkloadSpec::Idle,
            WorkloadSpec::default_for(workload::WorkloadKind::Oltp),
        ];
        let mut obs = Recorder::default();
        let r = run_compare(
            &backends,
            Path::new("/img"),
            &specs,
            &opts(3, 1),
            empty_results(),
            &mut obs,
        );
        // The skipped cell is counted out from the first run on: the total never changes.
        let totals: Vec<u32> = obs
            .events
            .iter()
            .filter_map(|e| match e {
                CompareEvent::RunFinished { total_steps, .. } => Some(*total_steps),
                _ => None,
            })
            .collect();
        assert_eq!(totals.len(), 12, "3 cells x (1 warm-up + 3 runs)");
        assert!(totals.iter().all(|&t| t == 12), "{totals:?}");
        let cell = |b: &str, w: &str| {
            r.benchmarks
                .iter()
                .find(|c| c.backend == b && c.workload == w)
                .expect("cell")
        };
        assert_eq!(cell("idle-only", "oltp").skipped.as_deref(), Some("idle only"));
        assert!(cell("idle-only", "oltp").runs.is_empty() && cell("idle-only", "oltp").failures.is_empty());
        assert_eq!(cell("idle-only", "idle").runs.len(), 4);
        assert_eq!(cell("mock", "oltp").runs.len(), 4);
        assert!(!r.partial);
    }

    #[test]
    fn skipped_backends_are_kept_with_their_reason_for_every_workload() {
        let backends: Vec<Box<dyn Backend>> = vec![
            Box::new(MockBackend::new(MockConfig::default())),
            Box::new(MockBackend::new(MockConfig {
                unavailable: Some("no /dev/kvm".into()),
                ..MockConfig::default()
            })),
        ];
        let specs = [
            WorkloadSpec::Idle,
            WorkloadSpec::default_for(workload::WorkloadKind::Oltp),
        ];
        let r = run_compare(
            &backends,
            Path::new("/img"),
            &specs,
            &opts(2, 0),
            empty_results(),
            &mut Recorder::default(),
        );
        assert_eq!(r.benchmarks.len(), 4);
        let skipped: Vec<_> = r.benchmarks.iter().filter(|c| c.skipped.is_some()).collect();
        assert_eq!(skipped.len(), 2);
        assert!(skipped
            .iter()
            .all(|c| c.skipped.as_deref() == Some("no /dev/kvm") && c.runs.is_empty()));
        let ran: Vec<_> = r.benchmarks.iter().filter(|c| c.skipped.is_none()).collect();
        assert!(ran.iter().all(|c| c.runs.len() == 2));
        assert_eq!(ran[1].workload, "oltp");
        assert!(ran[1].summary.contains_key(crate::metrics::WORKLOAD_OPS_PER_S));
    }

    #[test]
    fn failed_runs_are_recorded_and_the_comparison_goes_on() {
        let backends: Vec<Box<dyn Backend>> = vec![Box::new(MockBackend::new(MockConfig {
            fail_launches: vec![0],
            ..MockConfig::default()
        }))];
        let r = run_compare(
            &backends,
            Path::new("/img"),
            &[WorkloadSpec::Idle],
            &opts(3, 0),
            empty_results(),
            &mut Recorder::default(),
        );
        let cell = &r.benchmarks[0];
        assert_eq!(cell.failures.len(), 1);
        assert_eq!(cell.runs.len(), 2);
    }

    /// A backend whose launches take `ms` milliseconds.
    struct Slow {
        inner: MockBackend,
        ms: u64,
    }

    impl Backend for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn isolation(&self) -> crate::results::Isolation {
            crate::results::Isolation::host_kernel(crate::results::IsolationKind::Container)
        }
        fn check_host(&self) -> Result<(), Unavailable> {
            Ok(())
        }
        fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
            self.inner.prepare(image_dir)
        }
        fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
            std::thread::sleep(Duration::from_millis(self.ms));
            self.inner.launch(spec)
        }
    }

    #[test]
    fn a_budget_caps_rounds_but_keeps_the_minimum() {
        let backends: Vec<Box<dyn Backend>> = vec![Box::new(Slow {
            inner: MockBackend::new(MockConfig::default()),
            ms: 20,
        })];
        let specs = [
            WorkloadSpec::Idle,
            WorkloadSpec::default_for(workload::WorkloadKind::Oltp),
        ];
        // 20 ms per run, 10 runs + 1 warm-up each would take ~440 ms; the budget allows ~200.
        let budget = CompareBudget {
            total: Duration::from_millis(200),
            min_runs: 3,
        };
        let mut obs = Recorder::default();
        let r = run_compare_within(
            &backends,
            Path::new("/img"),
            &specs,
            &opts(10, 1),
            Some(budget),
            empty_results(),
            &mut obs,
        );
        for cell in &r.benchmarks {
            let n = cell.measured_runs();
            assert!((3..10).contains(&n), "{}: {n} measured runs", cell.workload);
        }
        assert!(!r.partial, "a budget is by design, not an interruption");
        assert!(obs
            .events
            .iter()
            .any(|e| matches!(e, CompareEvent::BudgetReached { .. })));
        // A zero budget still gives the minimum.
        let zero = CompareBudget {
            total: Duration::ZERO,
            min_runs: 2,
        };
        let r = run_compare_within(
            &backends,
            Path::new("/img"),
            &specs[..1],
            &opts(10, 1),
            Some(zero),
            empty_results(),
            &mut Recorder::default(),
        );
        assert_eq!(r.benchmarks[0].measured_runs(), 2);
    }

    #[test]
    fn failing_backends_are_given_up_without_stopping_the_others() {
        let broken = MockBackend::new(MockConfig {
            fail_launches: (0..100).collect(),
            ..MockConfig::default()
        });
        // Succeeds on launch 0, then fails launches 1-3: given up for idle only.
        let flaky = MockBackend::new(MockConfig {
            fail_launches: vec![1, 2, 3],
            ..MockConfig::default()
        });
        let backends: Vec<Box<dyn Backend>> = vec![
            Box::new(broken),
            Box::new(flaky),
            Box::new(MockBackend::new(MockConfig::default())),
        ];
        let specs = [
            WorkloadSpec::Idle,
            WorkloadSpec::default_for(workload::WorkloadKind::Oltp),
        ];
        let mut obs = Recorder::default();
        let r = run_compare(
            &backends,
            Path::new("/img"),
            &specs,
            &opts(6, 0),
            empty_results(),
            &mut obs,
        );
        // The announced total ends up equal to the runs actually made.
        let made = obs
            .events
            .iter()
            .filter(|e| matches!(e, CompareEvent::RunFinished { .. }))
            .count();
        let last_total = obs.events.iter().rev().find_map(|e| match e {
            CompareEvent::GaveUp { total_steps, .. } | CompareEvent::RunFinished { total_steps, .. } => {
                Some(*total_steps)
            }
            _ => None,
        });
        assert_eq!(last_total, u32::try_from(made).ok());
        // Cells are backend-major: [broken idle, broken oltp, flaky idle, flaky oltp, ok idle, ok oltp].
        let attempts = |c: &BenchmarkResult| {
            c.runs.len()
                + c.failures
                    .iter()
                    .filter(|f| !f.error.starts_with("gave up") && !f.error.starts_with("not run"))
                    .count()
        };
        assert_eq!(attempts(&r.benchmarks[0]), 3);
        assert!(r.benchmarks[0]
            .failures
            .iter()
            .any(|f| f.error.contains("gave up after 3")));
        assert_eq!(
            attempts(&r.benchmarks[1]),
            0,
            "never succeeded: not run for later workloads"
        );
        assert!(
            r.benchmarks[1].failures[0]
                .error
                .starts_with("not run: mock gave up"),
            "{:?}",
            r.benchmarks[1].failures
        );
        assert_eq!(r.benchmarks[2].runs.len(), 1);
        assert_eq!(
            r.benchmarks[3].runs.len(),
            6,
            "a backend that worked once gets its next workload"
        );
        assert_eq!(r.benchmarks[4].runs.len(), 6);
        assert_eq!(r.benchmarks[5].runs.len(), 6);
        let gave_up = obs
            .events
            .iter()
            .filter(|e| matches!(e, CompareEvent::GaveUp { .. }))
            .count();
        assert_eq!(gave_up, 3);
    }

    #[test]
    fn a_stop_request_keeps_partial_results() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let backends = journaled(&["a", "b"], &journal);
        let mut obs = Recorder {
            stop_after_runs: Some(3),
            ..Recorder::default()
        };
        let r = run_compare(
            &backends,
            Path::new("/img"),
            &[WorkloadSpec::Idle],
            &opts(5, 0),
            empty_results(),
            &mut obs,
        );
        assert!(r.partial);
        let runs: usize = r.benchmarks.iter().map(|c| c.runs.len()).sum();
        assert_eq!(runs, 3);
        assert!(obs.events.contains(&CompareEvent::Stopped {
            completed: 3,
            total_steps: 10
        }));
        assert_eq!(obs.last.as_ref().map(|l| l.partial), Some(true));
    }
}
