//! The one run engine behind `bench run`, `bench compare` and `bench density`, in the manner of
//! hyperfine's single executor loop: a [`Plan`] says which backends and workloads take part and in
//! which [`Mode`]; [`execute`] sets every backend up the same way, runs the plan, reports one stream of
//! [`Event`]s and hands the whole [`ResultsFile`] to the [`Observer`] after every step.
//!
//! Set-up, for every backend: `check_host` (a backend that cannot run here is recorded as skipped with
//! its reason, one cell per workload, never dropped; nothing else of it is asked — not even its
//! `labels()`, which may spawn a version query or print a warning); `supports` per workload (an
//! unsupported cell is skipped); `prepare` once (a failure is recorded in every cell of the backend).
//!
//! [`Mode::Runs`] (`run` is one backend and one workload, `compare` several): each run launches,
//! measures and destroys one instance. Backends are interleaved run by run — run k of every backend
//! before run k+1 of any, the starting backend rotated each round (A B C, B C A, C A B, ...) — so slow
//! drift of the host and "who runs right after whom" hit all backends alike. An optional [`Budget`]
//! caps the rounds per workload by time.
//!
//! [`Mode::Density`]: instances are launched one at a time and kept running; each launch adds a point
//! to the backend's curve (see [`crate::density`] for what a point measures and when the host is full);
//! the whole fleet is torn down at the end.
//!
//! One give-up policy for every mode: a backend whose launches fail [`Mode::give_up_after`] times in a
//! row takes no further part in that workload (recorded in the cell), and one that has never succeeded
//! is not run for later workloads either, so a broken backend costs a few runs, not the whole matrix.
//! A stop request (Ctrl-C, SIGTERM) is checked before every step.
//!
//! The results file says `partial: true` from the first update until the plan has completed without
//! a stop and without a failed run, so a file left behind by a killed harness or a full disk is never
//! mistaken for a complete one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use workload::WorkloadSpec;

use crate::backend::{Backend, SharedImage};
use crate::density::{self, DensityOptions, DensityRun};
use crate::results::{BenchmarkResult, DensityPoint, DensityResult, Isolation, ResultsFile, RunFailure};
use crate::runner::{cell_labels, run_into, RunOptions};

/// Failed runs in a row after which a backend is given up for a workload ([`Mode::Runs`]).
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;

/// The label of an `http` cell reached from outside that says how its `outside.*` figures were
/// obtained, or `missing: <why>` ([`crate::runner::outside_note`]).
pub use crate::metrics::OUTSIDE_LOAD_LABEL;

/// A time limit for a whole comparison: each workload gets an equal share of what is left when it
/// starts, and stops adding rounds once the next one would overrun its share — but never before
/// `min_runs` measured rounds. `RunOptions::runs` stays the maximum. Like hyperfine's time-based run
/// count, this keeps a default invocation short on slow backends without starving fast ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub total: Duration,
    pub min_runs: u32,
}

/// What each step of the plan does.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// `opts.warmup + opts.runs` rounds of launch, measure, destroy, interleaved across backends.
    Runs {
        opts: RunOptions,
        budget: Option<Budget>,
    },
    /// Launch and keep instances until the curve ends.
    Density(DensityOptions),
}

impl Mode {
    /// The options every launch of this plan gets: `--confinement`, `--memory`, `--cpus`, ...
    /// (recorded in each cell's labels).
    fn run_options(&self) -> &RunOptions {
        match self {
            Mode::Runs { opts, .. } => opts,
            Mode::Density(opts) => &opts.run,
        }
    }

    /// Failed launches in a row after which a backend is given up for a workload: three for runs
    /// (one bad run is noise, three are a broken backend), one for density (a failed launch ends the
    /// curve: the next point would not be "one more instance").
    pub fn give_up_after(&self) -> u32 {
        match self {
            Mode::Runs { .. } => MAX_CONSECUTIVE_FAILURES,
            Mode::Density(_) => 1,
        }
    }
}

/// Which backends run which workloads, how.
pub struct Plan<'a> {
    pub backends: Vec<&'a dyn Backend>,
    pub workloads: Vec<WorkloadSpec>,
    pub image_dir: &'a Path,
    pub mode: Mode,
}

impl<'a> Plan<'a> {
    /// `bench run`: one backend, one workload, N runs.
    pub fn run(backend: &'a dyn Backend, spec: &WorkloadSpec, image_dir: &'a Path, opts: RunOptions) -> Self {
        Plan {
            backends: vec![backend],
            workloads: vec![spec.clone()],
            image_dir,
            mode: Mode::Runs { opts, budget: None },
        }
    }

    /// `bench compare`: every backend × workload, interleaved.
    pub fn compare(
        backends: Vec<&'a dyn Backend>,
        workloads: &[WorkloadSpec],
        image_dir: &'a Path,
        opts: RunOptions,
        budget: Option<Budget>,
    ) -> Self {
        Plan {
            backends,
            workloads: workloads.to_vec(),
            image_dir,
            mode: Mode::Runs { opts, budget },
        }
    }

    /// `bench density` (and `compare --density`): one curve per backend.
    pub fn density(
        backends: Vec<&'a dyn Backend>,
        spec: &WorkloadSpec,
        image_dir: &'a Path,
        opts: DensityOptions,
    ) -> Self {
        Plan {
            backends,
            workloads: vec![spec.clone()],
            image_dir,
            mode: Mode::Density(opts),
        }
    }
}

/// One step of the plan: a run, or one more instance of a density curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub backend: String,
    pub workload: String,
    /// 0-based round (density: the instance index).
    pub round: u32,
    /// Rounds planned for this cell (warm-ups included; density: the maximum instances).
    pub rounds: u32,
    pub warmup: bool,
    /// 0-based position among `total_steps` steps of the whole plan.
    pub step: u32,
    pub total_steps: u32,
}

/// Progress of a plan, for display. One stream for every mode.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `backend` cannot run here (`workload: None`) or cannot run `workload`; recorded as skipped.
    Skipped {
        backend: String,
        workload: Option<String>,
        reason: String,
    },
    /// One-time preparation of `backend` is starting.
    Preparing {
        backend: String,
    },
    /// Preparation failed; the backend's cells record the error and it takes no further part.
    PrepareFailed {
        backend: String,
        error: String,
    },
    RunStarted(Step),
    /// That step ended; `error` is set when it failed (recorded in the cell).
    RunFinished {
        step: Step,
        error: Option<String>,
    },
    /// A density curve got a point.
    Point {
        backend: String,
        point: DensityPoint,
    },
    /// The time budget ended `workload` after `measured_runs` measured rounds; the plan now has
    /// `total_steps` steps in all.
    BudgetReached {
        workload: String,
        measured_runs: u32,
        total_steps: u32,
    },
    /// `backend` failed too often and takes no further part in `workload`.
    GaveUp {
        backend: String,
        workload: String,
        reason: String,
        total_steps: u32,
    },
    /// A density curve ended for `reason`; teardown of `running` instances starts.
    TearingDown {
        backend: String,
        running: u32,
        reason: String,
    },
    /// A stop was requested: `completed` of `total_steps` steps were done; the file is partial.
    Stopped {
        completed: u32,
        total_steps: u32,
    },
}

/// Watches a plan: progress, the whole results file after every step, and whether to stop.
pub trait Observer {
    fn event(&mut self, event: &Event);
    /// Called after every set-up, step and curve end with the results so far.
    fn updated(&mut self, results: &ResultsFile);
    /// Checked before every step; by default, whether Ctrl-C or SIGTERM arrived.
    fn should_stop(&self) -> bool {
        crate::interrupt::requested()
    }
}

/// An observer that shows nothing and never stops early.
#[derive(Debug, Default)]
pub struct SilentObserver;

impl Observer for SilentObserver {
    fn event(&mut self, _event: &Event) {}
    fn updated(&mut self, _results: &ResultsFile) {}
    fn should_stop(&self) -> bool {
        false
    }
}

/// How a backend came out of set-up.
enum Setup {
    Ready(SharedImage),
    Skipped(String),
    PrepareFailed(String),
}

/// A backend after set-up, with why each workload cannot run (`None`: it can).
struct Lane<'a> {
    backend: &'a dyn Backend,
    /// What the backend declares it is (recorded also for a skipped backend: a declaration, not a
    /// probe).
    isolation: Isolation,
    setup: Setup,
    labels: BTreeMap<String, String>,
    unsupported: Vec<Option<String>>,
}

impl Lane<'_> {
    fn name(&self) -> String {
        self.backend.name().to_string()
    }

    /// Whether cell `w` takes steps.
    fn runs(&self, w: usize) -> bool {
        matches!(self.setup, Setup::Ready(_)) && self.unsupported[w].is_none()
    }
}

fn set_up<'a>(
    backend: &'a dyn Backend,
    workloads: &[WorkloadSpec],
    image_dir: &Path,
    opts: &RunOptions,
    observer: &mut dyn Observer,
) -> Lane<'a> {
    let name = backend.name().to_string();
    if let Err(unavailable) = backend.check_host() {
        observer.event(&Event::Skipped {
            backend: name,
            workload: None,
            reason: unavailable.reason.clone(),
        });
        return Lane {
            backend,
            isolation: backend.isolation(),
            setup: Setup::Skipped(unavailable.reason),
            labels: BTreeMap::new(),
            unsupported: vec![None; workloads.len()],
        };
    }
    let unsupported: Vec<Option<String>> = workloads
        .iter()
        .map(|spec| {
            let why = crate::backend::can_run(backend, spec).err()?.reason;
            observer.event(&Event::Skipped {
                backend: name.clone(),
                workload: Some(spec.kind().name().to_string()),
                reason: why.clone(),
            });
            Some(why)
        })
        .collect();
    let labels = cell_labels(backend, opts);
    let setup = if unsupported.iter().all(Option::is_some) {
        // Nothing to run: no preparation either.
        Setup::Ready(SharedImage::default())
    } else {
        observer.event(&Event::Preparing {
            backend: name.clone(),
        });
        match backend.prepare(image_dir) {
            Ok(shared) => Setup::Ready(shared),
            Err(e) => {
                let error = format!("preparing the image: {e}");
                observer.event(&Event::PrepareFailed {
                    backend: name,
                    error: error.clone(),
                });
                Setup::PrepareFailed(error)
            }
        }
    };
    Lane {
        backend,
        isolation: backend.isolation(),
        setup,
        labels,
        unsupported,
    }
}

/// Runs `plan` into `results` (whose host, tool and command the caller has filled in; cells and
/// curves already there are kept). Never fails: skips, failed preparations and failed runs are
/// recorded in the cells. See the module documentation.
pub fn execute(plan: &Plan<'_>, mut results: ResultsFile, observer: &mut dyn Observer) -> ResultsFile {
    results.partial = true;
    let stopped = match &plan.mode {
        Mode::Runs { opts, budget } => run_rounds(plan, opts, *budget, &mut results, observer),
        Mode::Density(opts) => grow_curves(plan, opts, &mut results, observer),
    };
    results.partial = stopped || results.benchmarks.iter().any(|c| !c.failures.is_empty());
    observer.updated(&results);
    results
}

/// Per-backend state of the give-up policy.
struct GiveUpState {
    limit: u32,
    /// Consecutive failures in the current workload.
    consecutive: Vec<u32>,
    succeeded: Vec<bool>,
    /// Why a backend is not run for later workloads.
    abandoned: Vec<Option<String>>,
}

impl GiveUpState {
    fn new(limit: u32, backends: usize) -> Self {
        GiveUpState {
            limit: limit.max(1),
            consecutive: vec![0; backends],
            succeeded: vec![false; backends],
            abandoned: vec![None; backends],
        }
    }

    fn next_workload(&mut self) {
        self.consecutive.iter_mut().for_each(|c| *c = 0);
    }

    /// Records a step's outcome; returns the reason when backend `b` is given up now.
    fn record(&mut self, b: usize, failed: bool, backend: &str, workload: &str) -> Option<String> {
        if !failed {
            self.consecutive[b] = 0;
            self.succeeded[b] = true;
            return None;
        }
        self.consecutive[b] += 1;
        if self.consecutive[b] < self.limit {
            return None;
        }
        let reason = if self.limit == 1 {
            "gave up after a failed launch".to_string()
        } else {
            format!("gave up after {} consecutive failed runs", self.limit)
        };
        if !self.succeeded[b] {
            self.abandoned[b] = Some(format!(
                "{backend} {reason} of {workload} and no run of it has succeeded"
            ));
        }
        Some(reason)
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What every step of a plan shares: the observer, the give-up policy and the progress counters.
struct Pace<'o> {
    observer: &'o mut dyn Observer,
    policy: GiveUpState,
    /// Steps done.
    step: u32,
    /// Steps planned; shrinks when a backend is given up or a budget or a curve ends early.
    total_steps: u32,
}

impl<'o> Pace<'o> {
    fn new(observer: &'o mut dyn Observer, mode: &Mode, backends: usize, total_steps: u32) -> Self {
        Pace {
            observer,
            policy: GiveUpState::new(mode.give_up_after(), backends),
            step: 0,
            total_steps,
        }
    }

    /// Whether to stop now; announces the stop.
    fn stop_requested(&mut self) -> bool {
        let stop = self.observer.should_stop();
        if stop {
            self.observer.event(&Event::Stopped {
                completed: self.step,
                total_steps: self.total_steps,
            });
        }
        stop
    }

    fn step_at(&self, lane: &Lane<'_>, workload: &str, round: u32, rounds: u32, warmup: bool) -> Step {
        Step {
            backend: lane.name(),
            workload: workload.to_string(),
            round,
            rounds,
            warmup,
            step: self.step,
            total_steps: self.total_steps,
        }
    }

    fn gave_up(&mut self, backend: String, workload: &str, reason: String, steps_dropped: u32) {
        self.total_steps = self.total_steps.saturating_sub(steps_dropped);
        self.observer.event(&Event::GaveUp {
            backend,
            workload: workload.to_string(),
            reason,
            total_steps: self.total_steps,
        });
    }
}

/// Sets every backend of a [`Mode::Runs`] plan up and pushes its cells (backend-major: the cell of
/// backend `b` for workload `w` is `base + b * workloads + w`).
fn set_up_cells<'a>(
    plan: &Plan<'a>,
    results: &mut ResultsFile,
    observer: &mut dyn Observer,
) -> Vec<Lane<'a>> {
    let mut lanes = Vec::new();
    for backend in &plan.backends {
        let lane = set_up(
            *backend,
            &plan.workloads,
            plan.image_dir,
            plan.mode.run_options(),
            observer,
        );
        for (w, spec) in plan.workloads.iter().enumerate() {
            let mut labels = lane.labels.clone();
            if let Mode::Runs { opts, .. } = &plan.mode {
                if let Some(note) = crate::runner::outside_note(*backend, spec, opts) {
                    labels.insert(OUTSIDE_LOAD_LABEL.to_string(), note);
                }
            }
            // A service workload runs at `docker` (more capabilities than the default `oci-default`: its
            // daemons drop privileges themselves); the label records the level applied (see
            // services::confinement_for).
            if let Some(level) = labels.get_mut("confinement") {
                *level = crate::services::confinement_for(plan.mode.run_options().confinement, spec)
                    .name()
                    .to_string();
            }
            let mut cell = BenchmarkResult::new(backend.name(), lane.isolation, spec, labels);
            match (&lane.setup, &lane.unsupported[w]) {
                (Setup::Skipped(reason), _) | (Setup::Ready(_), Some(reason)) => {
                    cell.skipped = Some(reason.clone());
                }
                (Setup::Ready(shared), None) => cell.shared_image_bytes = Some(shared.bytes),
                (Setup::PrepareFailed(error), _) => cell.failures.push(RunFailure {
                    index: 0,
                    error: error.clone(),
                }),
            }
            results.benchmarks.push(cell);
        }
        lanes.push(lane);
        observer.updated(results);
    }
    lanes
}

/// [`Mode::Runs`]; returns whether a stop request ended it.
fn run_rounds(
    plan: &Plan<'_>,
    opts: &RunOptions,
    budget: Option<Budget>,
    results: &mut ResultsFile,
    observer: &mut dyn Observer,
) -> bool {
    let started = Instant::now();
    let workloads = plan.workloads.len();
    let base = results.benchmarks.len();
    let lanes = set_up_cells(plan, results, observer);
    let cell_index = |b: usize, w: usize| base + b * workloads + w;
    let rounds = opts.warmup.saturating_add(opts.runs);
    // Cells that cannot run take no rounds: counted out from the start, so the progress total only
    // shrinks for what could not be foreseen.
    let runnable: usize = lanes
        .iter()
        .map(|l| (0..workloads).filter(|&w| l.runs(w)).count())
        .sum();
    let mut pace = Pace::new(
        observer,
        &plan.mode,
        lanes.len(),
        count(runnable).saturating_mul(rounds),
    );
    let active: Vec<usize> = (0..lanes.len())
        .filter(|&b| matches!(lanes[b].setup, Setup::Ready(_)))
        .collect();
    for (w, spec) in plan.workloads.iter().enumerate() {
        let workload_started = Instant::now();
        let workload = spec.kind().name();
        pace.policy.next_workload();
        // Backends that take no (further) part in this workload.
        let mut out = vec![true; lanes.len()];
        for &b in active.iter().filter(|&&b| lanes[b].runs(w)) {
            match pace.policy.abandoned[b].clone() {
                Some(why) => {
                    let error = format!("not run: {why}");
                    results.benchmarks[cell_index(b, w)].failures.push(RunFailure {
                        index: 0,
                        error: error.clone(),
                    });
                    pace.gave_up(lanes[b].name(), workload, error, rounds);
                }
                None => out[b] = false,
            }
        }
        let share = budget.map(|b| b.total.saturating_sub(started.elapsed()) / count(workloads - w).max(1));
        for round in 0..rounds {
            let warmup = round < opts.warmup;
            if let Some(measured) = over_budget(budget, share, opts, round, workload_started.elapsed()) {
                let still_running = count(out.iter().filter(|&&o| !o).count());
                let dropped = (rounds - round).saturating_mul(still_running);
                pace.total_steps = pace.total_steps.saturating_sub(dropped);
                pace.observer.event(&Event::BudgetReached {
                    workload: workload.to_string(),
                    measured_runs: measured,
                    total_steps: pace.total_steps,
                });
                break;
            }
            for k in 0..active.len() {
                if pace.stop_requested() {
                    return true;
                }
                // Rotate who goes first each round.
                let b = active[(k + round as usize) % active.len()];
                if out[b] {
                    continue;
                }
                let at = pace.step_at(&lanes[b], workload, round, rounds, warmup);
                let cell = &mut results.benchmarks[cell_index(b, w)];
                out[b] = run_step(&mut pace, plan, opts, (b, lanes[b].backend), spec, at, cell);
                pace.observer.updated(results);
            }
        }
    }
    false
}

/// Whether the budget ends a workload before `round`, having spent `spent` on it against its `share`:
/// the measured rounds so far when it does (never before the budget's minimum, never in warm-ups).
fn over_budget(
    budget: Option<Budget>,
    share: Option<Duration>,
    opts: &RunOptions,
    round: u32,
    spent: Duration,
) -> Option<u32> {
    let (budget, share) = (budget?, share?);
    let measured = round.checked_sub(opts.warmup)?;
    let per_round = if round == 0 { Duration::ZERO } else { spent / round };
    (measured >= budget.min_runs.max(1) && spent + per_round > share).then_some(measured)
}

/// One run of backend `b` into `cell`; returns whether the backend is given up for this workload.
fn run_step(
    pace: &mut Pace<'_>,
    plan: &Plan<'_>,
    opts: &RunOptions,
    (b, backend): (usize, &dyn Backend),
    spec: &WorkloadSpec,
    at: Step,
    cell: &mut BenchmarkResult,
) -> bool {
    pace.observer.event(&Event::RunStarted(at.clone()));
    let (round, warmup) = (at.round, at.warmup);
    let error = run_into(backend, plan.image_dir, spec, opts, cell, round, warmup);
    let give_up = pace
        .policy
        .record(b, error.is_some(), backend.name(), &at.workload);
    if let Some(reason) = &give_up {
        cell.failures.push(RunFailure {
            index: round,
            error: reason.clone(),
        });
    }
    let (rounds, workload) = (at.rounds, at.workload.clone());
    pace.observer.event(&Event::RunFinished { step: at, error });
    pace.step += 1;
    match give_up {
        Some(reason) => {
            pace.gave_up(backend.name().to_string(), &workload, reason, rounds - round - 1);
            true
        }
        None => false,
    }
}

/// [`Mode::Density`]: one curve per backend × workload, one after the other; returns whether a stop
/// request ended it.
fn grow_curves(
    plan: &Plan<'_>,
    opts: &DensityOptions,
    results: &mut ResultsFile,
    observer: &mut dyn Observer,
) -> bool {
    let max = opts.max_instances;
    let curves = plan.backends.len().saturating_mul(plan.workloads.len());
    let mut pace = Pace::new(
        observer,
        &plan.mode,
        plan.backends.len(),
        count(curves).saturating_mul(max),
    );
    for (b, backend) in plan.backends.iter().enumerate() {
        let lane = set_up(
            *backend,
            &plan.workloads,
            plan.image_dir,
            plan.mode.run_options(),
            pace.observer,
        );
        for (w, spec) in plan.workloads.iter().enumerate() {
            pace.policy.next_workload();
            let not_run = match (&lane.setup, &lane.unsupported[w], &pace.policy.abandoned[b]) {
                (Setup::Skipped(reason), _, _) | (_, Some(reason), _) => Some(format!("skipped: {reason}")),
                (Setup::PrepareFailed(error), _, _) => Some(error.clone()),
                (Setup::Ready(_), None, Some(why)) => Some(format!("not run: {why}")),
                (Setup::Ready(_), None, None) => None,
            };
            results.density.push(DensityResult {
                backend: lane.name(),
                isolation: lane.isolation,
                workload: spec.kind().name().to_string(),
                labels: lane.labels.clone(),
                points: Vec::new(),
                stop_reason: not_run.clone().unwrap_or_default(),
                instances_per_gib: None,
                host_id: None,
                basis: Default::default(),
                instances_per_gib_pss: None,
            });
            pace.observer.updated(results);
            if not_run.is_some() {
                pace.total_steps = pace.total_steps.saturating_sub(max);
                continue;
            }
            let at = results.density.len() - 1;
            if grow_curve(&mut pace, plan, opts, (b, &lane), spec, results, at) {
                return true;
            }
        }
    }
    false
}

/// Grows curve `at` of `results.density` until it ends, then tears its fleet down; returns whether a
/// stop request ended it.
fn grow_curve(
    pace: &mut Pace<'_>,
    plan: &Plan<'_>,
    opts: &DensityOptions,
    (b, lane): (usize, &Lane<'_>),
    spec: &WorkloadSpec,
    results: &mut ResultsFile,
    at: usize,
) -> bool {
    let max = opts.max_instances;
    let workload = spec.kind().name();
    let mut fleet = DensityRun::new(lane.backend, plan.image_dir, spec, opts);
    let mut stop_reason = format!("max: {max} instances");
    let mut stopped = false;
    for index in 0..max {
        if pace.stop_requested() {
            stopped = true;
            stop_reason = "interrupted".to_string();
            break;
        }
        if let Some(full) = fleet.host_full() {
            stop_reason = full;
            break;
        }
        let this = pace.step_at(lane, workload, index, max, false);
        pace.observer.event(&Event::RunStarted(this.clone()));
        let outcome = fleet.add_instance(index);
        pace.step += 1;
        let error = outcome.as_ref().err().cloned();
        pace.observer.event(&Event::RunFinished { step: this, error });
        let give_up = pace.policy.record(b, outcome.is_err(), &lane.name(), workload);
        match outcome {
            Ok(point) => {
                pace.observer.event(&Event::Point {
                    backend: lane.name(),
                    point: point.clone(),
                });
                results.density[at].points.push(point);
                pace.observer.updated(results);
            }
            Err(error) if give_up.is_some() => {
                stop_reason = error;
                break;
            }
            Err(_) => {}
        }
    }
    let done = count(results.density[at].points.len());
    pace.total_steps = pace.total_steps.saturating_sub(max.saturating_sub(done));
    pace.observer.event(&Event::TearingDown {
        backend: lane.name(),
        running: count(fleet.running()),
        reason: stop_reason.clone(),
    });
    let errors = fleet.tear_down();
    if !errors.is_empty() {
        stop_reason = format!("{stop_reason}; teardown failed: {}", errors.join("; "));
    }
    let curve = &mut results.density[at];
    curve.stop_reason = stop_reason;
    density::set_headline(curve);
    pace.observer.updated(results);
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, Instance, LaunchSpec, SharedImage, Unavailable};
    use crate::backends::mock::{MockBackend, MockConfig};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn empty_results() -> ResultsFile {
        fixture::results("compare")
    }

    type CompareBudget = Budget;

    /// `bench compare`'s plan through the engine.
    fn run_compare_within(
        backends: &[Box<dyn Backend>],
        image_dir: &Path,
        workloads: &[WorkloadSpec],
        opts: &RunOptions,
        budget: Option<Budget>,
        results: ResultsFile,
        observer: &mut dyn Observer,
    ) -> ResultsFile {
        let backends = backends.iter().map(AsRef::as_ref).collect();
        let plan = Plan::compare(backends, workloads, image_dir, opts.clone(), budget);
        execute(&plan, results, observer)
    }

    fn run_compare(
        backends: &[Box<dyn Backend>],
        image_dir: &Path,
        workloads: &[WorkloadSpec],
        opts: &RunOptions,
        results: ResultsFile,
        observer: &mut dyn Observer,
    ) -> ResultsFile {
        run_compare_within(backends, image_dir, workloads, opts, None, results, observer)
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
        fn isolation(&self) -> Isolation {
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
        events: Vec<Event>,
        updates: usize,
        last: Option<ResultsFile>,
        stop_after_runs: Option<usize>,
    }

    impl Observer for Recorder {
        fn event(&mut self, event: &Event) {
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
                .filter(|e| matches!(e, Event::RunFinished { .. }))
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
        // One update per backend set-up, one per run and one at the end.
        assert_eq!(obs.updates, 3 + 9 + 1);
    }

    #[test]
    fn a_workload_a_backend_cannot_run_is_skipped_for_that_cell_only() {
        /// Runs idle only, like the microVM's probe guest.
        struct IdleOnly(MockBackend);
        impl Backend for IdleOnly {
            fn name(&self) -> &'static str {
                "idle-only"
            }
            fn isolation(&self) -> Isolation {
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
                Event::RunFinished {
                    step: Step { total_steps, .. },
                    ..
                } => Some(*total_steps),
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
        fn isolation(&self) -> Isolation {
            Isolation::host_kernel(crate::results::IsolationKind::Container)
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
            .any(|e| matches!(e, Event::BudgetReached { .. })));
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
            .filter(|e| matches!(e, Event::RunFinished { .. }))
            .count();
        let last_total = obs.events.iter().rev().find_map(|e| match e {
            Event::GaveUp { total_steps, .. }
            | Event::RunFinished {
                step: Step { total_steps, .. },
                ..
            } => Some(*total_steps),
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
            .filter(|e| matches!(e, Event::GaveUp { .. }))
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
        assert!(obs.events.contains(&Event::Stopped {
            completed: 3,
            total_steps: 10
        }));
        assert_eq!(obs.last.as_ref().map(|l| l.partial), Some(true));
    }

    #[test]
    fn a_broken_backend_is_given_up_in_a_single_run_too() {
        // `bench run` is the same engine: three failures in a row end it, not all N runs.
        let backends: Vec<Box<dyn Backend>> = vec![Box::new(MockBackend::new(MockConfig {
            never_ready: true,
            ..MockConfig::default()
        }))];
        let mut obs = Recorder::default();
        let r = run_compare(
            &backends,
            Path::new("/img"),
            &[WorkloadSpec::Idle],
            &opts(20, 1),
            empty_results(),
            &mut obs,
        );
        let finished = obs
            .events
            .iter()
            .filter(|e| matches!(e, Event::RunFinished { .. }))
            .count();
        assert_eq!(finished, 3);
        assert!(r.benchmarks[0]
            .failures
            .last()
            .is_some_and(|f| f.error.contains("gave up after 3")));
        assert!(r.partial, "a run with failures is not complete");
    }

    /// A backend that cannot run here and counts what else it is asked.
    struct Nowhere {
        asked: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Backend for Nowhere {
        fn name(&self) -> &'static str {
            "nowhere"
        }
        fn isolation(&self) -> Isolation {
            Isolation::vm(
                crate::results::IsolationKind::MicroVm,
                crate::results::KvmFlavour::Hardware,
            )
        }
        fn check_host(&self) -> Result<(), Unavailable> {
            Err(Unavailable {
                reason: "not here".into(),
            })
        }
        fn labels(&self) -> Vec<(String, String)> {
            if let Ok(mut a) = self.asked.lock() {
                a.push("labels");
            }
            vec![("version".into(), "from a subprocess".into())]
        }
        fn supports(&self, _: &WorkloadSpec) -> Result<(), Unavailable> {
            if let Ok(mut a) = self.asked.lock() {
                a.push("supports");
            }
            Ok(())
        }
        fn prepare(&self, _: &Path) -> Result<SharedImage, BackendError> {
            if let Ok(mut a) = self.asked.lock() {
                a.push("prepare");
            }
            Ok(SharedImage::default())
        }
        fn launch(&self, _: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
            if let Ok(mut a) = self.asked.lock() {
                a.push("launch");
            }
            Err(BackendError::Teardown {
                backend: "nowhere".into(),
                reason: "launched".into(),
            })
        }
    }

    #[test]
    fn a_skipped_backend_is_asked_nothing_after_check_host() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let backends: Vec<Box<dyn Backend>> = vec![Box::new(Nowhere {
            asked: Arc::clone(&asked),
        })];
        for mode in ["runs", "density"] {
            let refs: Vec<&dyn Backend> = backends.iter().map(AsRef::as_ref).collect();
            let plan = if mode == "runs" {
                Plan::compare(refs, &[WorkloadSpec::Idle], Path::new("/img"), opts(2, 0), None)
            } else {
                Plan::density(
                    refs,
                    &WorkloadSpec::Idle,
                    Path::new("/img"),
                    DensityOptions::default(),
                )
            };
            let r = execute(&plan, empty_results(), &mut Recorder::default());
            let labels = r
                .benchmarks
                .iter()
                .map(|c| &c.labels)
                .chain(r.density.iter().map(|d| &d.labels));
            assert!(labels.into_iter().all(BTreeMap::is_empty), "{mode}: {r:?}");
        }
        assert_eq!(
            asked.lock().map(|a| a.clone()).unwrap_or_default(),
            Vec::<&str>::new()
        );
    }

    /// Records whether every file handed out before the last said `partial`.
    #[derive(Default)]
    struct PartialWatch {
        seen: Vec<bool>,
    }

    impl Observer for PartialWatch {
        fn event(&mut self, _: &Event) {}
        fn updated(&mut self, results: &ResultsFile) {
            self.seen.push(results.partial);
        }
        fn should_stop(&self) -> bool {
            false
        }
    }

    #[test]
    fn results_are_partial_until_the_plan_completes() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let backends = journaled(&["a", "b"], &journal);
        let mut watch = PartialWatch::default();
        let r = run_compare(
            &backends,
            Path::new("/img"),
            &[WorkloadSpec::Idle],
            &opts(3, 0),
            empty_results(),
            &mut watch,
        );
        assert!(!r.partial);
        let (last, before) = watch.seen.split_last().expect("updates");
        assert!(!last);
        assert_eq!(before.len(), 2 + 6);
        assert!(before.iter().all(|&p| p), "{:?}", watch.seen);
        // A density plan likewise.
        let mut watch = PartialWatch::default();
        let refs: Vec<&dyn Backend> = backends.iter().map(AsRef::as_ref).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("meminfo"), "MemAvailable: 20000000 kB\n").expect("meminfo");
        let dopts = DensityOptions {
            max_instances: 2,
            mem_floor_bytes: 0,
            proc_root: dir.path().to_path_buf(),
            ..DensityOptions::default()
        };
        let plan = Plan::density(refs, &WorkloadSpec::Idle, Path::new("/img"), dopts);
        let r = execute(&plan, empty_results(), &mut watch);
        assert_eq!(r.density.len(), 2);
        assert!(r.density.iter().all(|d| d.points.len() == 2), "{:?}", r.density);
        let (last, before) = watch.seen.split_last().expect("updates");
        assert!(!last && before.iter().all(|&p| p), "{:?}", watch.seen);
    }
}

/// An empty results file for unit tests of the engine and its configurations.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::results::{HostInfo, ResultsFile, ToolInfo};

    pub fn results(command: &str) -> ResultsFile {
        let host = HostInfo {
            hostname: "h".into(),
            kernel: "6.1".into(),
            cpu_model: "cpu".into(),
            cores: 2,
            memory_bytes: 1 << 34,
            cgroup_version: "v1".into(),
            kvm: "pvm".into(),
            os: "Debian 12".into(),
            arch: String::new(),
            dimensions: Default::default(),
        };
        let tool = ToolInfo {
            name: "cvbench".into(),
            version: "0".into(),
            git_revision: None,
            argv: vec![],
        };
        ResultsFile::new(command, tool, host)
    }
}
