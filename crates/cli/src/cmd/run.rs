//! `bench run`: one backend × one workload, N runs, a table on stdout and a JSON results file that is
//! rewritten after every run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use harness::results::{BenchmarkResult, ResultsFile, ToolInfo};
use harness::{Backend, RunEvent, RunObserver, RunOptions};
use workload::{WorkloadKind, WorkloadSpec};

use super::compare::ImageArgs;
use super::{UsageError, EXIT_INTERRUPTED};
use crate::output::{summary_table, Progress, ResultsWriter};
use crate::parse;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Isolation mechanism: container, runc, microvm, ...
    #[arg(long, value_parser = backend_name)]
    pub backend: String,
    /// microVM guest: `linux` (the workload in a Linux guest) or `probe` (the project's tiny payload:
    /// the VMM's own setup time and memory overhead, no kernel; idle only). Same as `--backend
    /// microvm-probe`.
    #[arg(long, value_parser = ["linux", "probe"], value_name = "GUEST")]
    pub guest: Option<String>,
    /// Workload: idle, http or oltp.
    #[arg(long)]
    pub workload: WorkloadKind,
    /// Measured runs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Warm-up runs before the measured ones (recorded, flagged, not summarised).
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Memory limit per instance, e.g. 256M, 1GiB.
    #[arg(long, value_parser = parse::size, value_name = "SIZE")]
    pub memory: Option<u64>,
    /// CPU quota per instance in CPUs, e.g. 1.5.
    #[arg(long, value_parser = parse::cpus, value_name = "CPUS")]
    pub cpus: Option<f64>,
    /// Maximum number of processes per instance.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub pids: Option<u64>,
    /// How long to wait for the workload's READY line, e.g. 10s, 500ms.
    #[arg(long, value_parser = parse::duration, default_value = "10s", value_name = "DURATION")]
    pub ready_timeout: Duration,
    /// How long a self-ending workload may run after READY.
    #[arg(long, value_parser = parse::duration, default_value = "120s", value_name = "DURATION")]
    pub finish_timeout: Duration,
    /// Write the results (rewritten after every run) to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub confine: super::confine::ConfinementArgs,
}

fn backend_name(name: &str) -> Result<String, String> {
    harness::backend_by_name(name)
        .map(|b| b.name().to_string())
        .map_err(|e| e.to_string())
}

pub fn execute(args: RunArgs) -> anyhow::Result<ExitCode> {
    harness::interrupt::install().context("installing the Ctrl-C handler")?;
    let backend_name = match (args.guest.as_deref(), args.backend.as_str()) {
        (None, name) | (Some("linux"), name @ "microvm") => name,
        (Some("probe"), "microvm" | "microvm-probe") => harness::backends::microvm::PROBE_NAME,
        (Some(guest), name) => {
            return Err(UsageError(format!(
                "--guest {guest} applies to --backend microvm, not {name}"
            ))
            .into())
        }
    };
    let backend = harness::backend_by_name(backend_name).map_err(|e| UsageError(e.to_string()))?;
    let spec = WorkloadSpec::default_for(args.workload);
    // Explicitly requested, so a backend that cannot run here is a failure, not a skip.
    backend
        .check_host()
        .and_then(|()| backend.supports(&spec))
        .map_err(|u| anyhow::anyhow!("{}: backend unavailable on this host: {u}", backend.name()))?;
    let image_dir = args.image.resolve()?;
    let opts = RunOptions {
        runs: args.runs,
        warmup: args.warmup,
        memory_limit_bytes: args.memory,
        cpu_limit: args.cpus,
        pids_limit: args.pids,
        ready_timeout: args.ready_timeout,
        finish_timeout: args.finish_timeout,
        confinement: args.confine.confinement,
    };
    let host = harness::host::detect().context("detecting the host")?;
    let results = ResultsFile::new("run", ToolInfo::current(std::env::args().collect()), host);
    let mut observer = ResultsObserver {
        progress: Progress::new(
            format!("{} {}", backend.name(), spec.kind()),
            u64::from(opts.runs.saturating_add(opts.warmup)),
        ),
        results,
        writer: args.json.clone().map(ResultsWriter::new),
    };
    let result = harness::run_benchmark(backend.as_ref(), &image_dir, &spec, &opts, &mut observer);
    observer.progress.finish();
    let interrupted = harness::interrupt::requested();
    observer.results.partial = interrupted || result.measured_runs() < opts.runs as usize;
    observer.write(&result);

    print!("{}", summary_table(&result));
    if let Some(e) = observer.writer.as_mut().and_then(ResultsWriter::take_error) {
        return Err(e);
    }
    if let Some(path) = &args.json {
        eprintln!("results written to {}", path.display());
    }
    outcome(backend.as_ref(), &result, interrupted)
}

/// Maps a finished benchmark to an exit status.
fn outcome(backend: &dyn Backend, result: &BenchmarkResult, interrupted: bool) -> anyhow::Result<ExitCode> {
    if let Some(reason) = &result.skipped {
        anyhow::bail!("{}: backend unavailable on this host: {reason}", backend.name());
    }
    if interrupted {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if result.runs.is_empty() {
        match result.failures.first() {
            Some(f) => anyhow::bail!("every run failed; first: {}", f.error),
            None => anyhow::bail!("no run completed"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows progress and rewrites the results file after every run, so a crash loses nothing.
struct ResultsObserver {
    progress: Progress,
    results: ResultsFile,
    /// With `--json`.
    writer: Option<ResultsWriter>,
}

impl ResultsObserver {
    fn write(&mut self, result: &BenchmarkResult) {
        self.results.benchmarks = vec![result.clone()];
        if let Some(writer) = &mut self.writer {
            writer.write(&self.results);
        }
    }
}

impl RunObserver for ResultsObserver {
    fn event(&mut self, event: &RunEvent) {
        self.progress.event(event);
    }

    fn updated(&mut self, result: &BenchmarkResult) {
        self.write(result);
    }
}
