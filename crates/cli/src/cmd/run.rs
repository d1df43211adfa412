//! `bench run`: one backend × one workload, N runs (the engine's plan with one backend), a table on
//! stdout and a JSON results file that is rewritten after every run. Exits 1 when any run failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use harness::results::BenchmarkResult;
use harness::{Plan, RunOptions};
use workload::{WorkloadKind, WorkloadSpec};

use super::compare::ImageArgs;
use super::UsageError;
use crate::output::{summary_table, PlanProgress};
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
    /// Workload: idle, http, oltp, http-outside (http served until stopped, loaded by wrk from a client network namespace), nginx or mariadb (Debian's daemons, with --image services).
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
    /// mariadb: start on an empty data directory and run mariadb-install-db first, as the official
    /// container images do on their first start (default: the data directory made at build time).
    #[arg(long)]
    pub first_start_init: bool,
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
    #[command(flatten)]
    pub fleet: super::fleet::FleetArgs,
}

fn backend_name(name: &str) -> Result<String, String> {
    harness::backend_by_name(name)
        .map(|b| b.name().to_string())
        .map_err(|e| e.to_string())
}

pub fn execute(args: RunArgs) -> anyhow::Result<ExitCode> {
    harness::interrupt::install().context("installing the Ctrl-C handler")?;
    super::check_warmup(args.warmup, args.runs)?;
    if let Some(path) = &args.json {
        crate::preflight::output_file("--json", path)?;
    }
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
    let mut backends = [harness::backend_by_name(backend_name).map_err(|e| UsageError(e.to_string()))?];
    super::compare::configure_backends(&mut backends, &args.image, args.memory)?;
    let [backend] = backends;
    args.image.check_workloads(&[args.workload])?;
    let spec = WorkloadSpec::for_bench(args.workload).with_first_start_init(args.first_start_init);
    // Explicitly requested, so a backend that cannot run here is a failure, not a skip.
    if let Err(u) = backend
        .check_host()
        .and_then(|()| harness::backend::can_run(backend.as_ref(), &spec))
    {
        if args.fleet.record_failures {
            // The file says why nothing ran, so a fleet's merge shows this host's skip.
            let mut results = args.fleet.results_file("run")?;
            let mut cell =
                BenchmarkResult::new(backend.name(), backend.isolation(), &spec, Default::default());
            cell.skipped = Some(u.to_string());
            results.benchmarks.push(cell);
            if let Some(path) = &args.json {
                results.write_atomic(path)?;
            }
        }
        let e = anyhow::anyhow!("{}: backend unavailable on this host: {u}", backend.name());
        return args.fleet.outcome(Err(e));
    }
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
        network: harness::net::for_workloads([&spec]).context("making the client network namespace")?,
    };
    let results = args.fleet.results_file("run")?;
    let mut progress = PlanProgress::new(&format!("{} {}", backend.name(), spec.kind()), args.json.clone());
    let plan = Plan::run(backend.as_ref(), &spec, &image_dir, opts);
    let results = harness::engine::execute(&plan, results, &mut progress);
    progress.finish();
    if let Some(cell) = results.benchmarks.first() {
        print!("{}", summary_table(cell));
    }
    if let Some(e) = progress.take_error() {
        return Err(e);
    }
    if let Some(path) = &args.json {
        eprintln!("results written to {}", path.display());
    }
    if let Some(reason) = results.benchmarks.first().and_then(|c| c.skipped.as_ref()) {
        let e = anyhow::anyhow!("{}: backend unavailable on this host: {reason}", backend.name());
        return args.fleet.outcome(Err(e));
    }
    args.fleet.outcome(super::plan_outcome(&results))
}
