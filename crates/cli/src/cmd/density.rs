//! `bench density`: launch instances of one backend one at a time and keep them running until N, a
//! memory floor or the first failure; then tear everything down. Writes `DIR/results.json` (the
//! curve, rewritten after every point) and the report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use harness::density::DensityOptions;
use harness::results::{DensityPoint, DensityResult};
use harness::{Plan, RunOptions};
use workload::{WorkloadKind, WorkloadSpec};

use super::compare::{ImageArgs, ReportLook};
use super::UsageError;
use crate::output::PlanProgress;
use crate::parse;

#[derive(Debug, Args)]
pub struct DensityArgs {
    /// Isolation mechanism: container, runc, microvm, ...
    #[arg(long)]
    pub backend: String,
    /// Workload every instance runs (idle keeps running until stopped).
    #[arg(long, default_value = "idle")]
    pub workload: WorkloadKind,
    /// Stop after this many running instances.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub max: u32,
    /// Stop before a launch when the host's MemAvailable is below this.
    #[arg(long, value_parser = parse::size, value_name = "SIZE", default_value = "2G")]
    pub mem_floor: u64,
    /// Memory limit per instance, e.g. 256M.
    #[arg(long, value_parser = parse::size, value_name = "SIZE")]
    pub memory: Option<u64>,
    /// How long to wait for each instance's READY line.
    #[arg(long, value_parser = parse::duration, default_value = "30s", value_name = "DURATION")]
    pub ready_timeout: Duration,
    /// Output directory for results.json and the report.
    #[arg(long, value_name = "DIR", default_value = "cvbench-density")]
    pub out: PathBuf,
    /// Skip writing the report (results.json only).
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub look: ReportLook,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub confine: super::confine::ConfinementArgs,
    #[command(flatten)]
    pub fleet: super::fleet::FleetArgs,
}

pub fn execute(args: DensityArgs) -> anyhow::Result<ExitCode> {
    harness::interrupt::install().context("installing the Ctrl-C handler")?;
    let mut backends = [harness::backend_by_name(&args.backend).map_err(|e| UsageError(e.to_string()))?];
    super::compare::configure_backends(&mut backends, &args.image, args.memory)?;
    let [backend] = backends;
    // After the flags themselves are known good, so a mistyped flag creates no directory.
    crate::preflight::output_dir("--out", &args.out)?;
    let _out_lock = crate::preflight::lock_output_dir("--out", &args.out)?;
    if !args.no_report {
        crate::preflight::report_font(args.look.font.as_deref())?;
    }
    backend
        .check_host()
        .map_err(|u| anyhow::anyhow!("{}: backend unavailable on this host: {u}", backend.name()))?;
    let image_dir = args.image.resolve()?;
    let spec = WorkloadSpec::density_for(args.workload);
    harness::backend::can_run(backend.as_ref(), &spec)
        .map_err(|u| anyhow::anyhow!("{}: backend unavailable on this host: {u}", backend.name()))?;
    let network = harness::net::for_workloads([&spec]).context("making the client network namespace")?;
    if spec.reached_from_outside() {
        // Density of a served workload counts instances that answer from outside: without a
        // client namespace or a network path that cannot be checked, so it is not run.
        if network.is_none() {
            let why = harness::net::unavailable_reason().unwrap_or_default();
            anyhow::bail!(
                "density --workload {}: every instance is checked from outside, but {why}",
                args.workload
            );
        }
        if !backend.networking() {
            let why = backend
                .no_network_reason()
                .unwrap_or_else(|| "no network path to the client namespace yet".into());
            anyhow::bail!(
                "density --workload {}: every instance is checked from outside, but {}: {why}",
                args.workload,
                backend.name()
            );
        }
    }
    let opts = DensityOptions {
        max_instances: args.max,
        mem_floor_bytes: args.mem_floor,
        run: RunOptions {
            memory_limit_bytes: args.memory,
            ready_timeout: args.ready_timeout,
            confinement: args.confine.confinement,
            network,
            ..RunOptions::default()
        },
        ..DensityOptions::default()
    };
    let path = args.out.join("results.json");
    let results = args.fleet.results_file("density")?;
    let mut progress = PlanProgress::new(&format!("density {}", backend.name()), Some(path.clone()));
    let plan = Plan::density(vec![backend.as_ref()], &spec, &image_dir, opts);
    let results = harness::engine::execute(&plan, results, &mut progress);
    progress.finish();
    if let Some(e) = progress.take_error() {
        return Err(e);
    }
    let Some(curve) = results.density.first() else {
        anyhow::bail!("no density curve was recorded");
    };
    println!(
        "{} · {} · {} instances · {} · stopped: {}",
        curve.backend,
        curve.workload,
        curve.points.len(),
        density_figure(curve),
        curve.stop_reason
    );
    eprintln!("results written to {}", path.display());
    if !args.no_report {
        super::report::write_and_say(&results, &args.out, &args.look)?;
    }
    if harness::interrupt::requested() {
        return Ok(ExitCode::from(harness::interrupt::exit_status()));
    }
    if curve.points.is_empty() {
        let e = anyhow::anyhow!("no instance could be launched: {}", curve.stop_reason);
        return args.fleet.outcome(Err(e));
    }
    Ok(ExitCode::SUCCESS)
}

/// `1400.0 instances/GiB of host memory lost (MemAvailable drop); 8054.5/GiB counting PSS only`.
pub fn density_figure(curve: &DensityResult) -> String {
    let Some(v) = curve.instances_per_gib else {
        return "-".to_string();
    };
    let mut text = format!("{v:.1} instances/GiB of {}", curve.basis.describe());
    if curve.basis != harness::results::DensityBasis::SummedPss {
        if let Some(pss) = curve.instances_per_gib_pss {
            text.push_str(&format!("; {pss:.1}/GiB counting PSS only"));
        }
    }
    text
}

/// A density point as one progress line (no progress bar).
pub fn point_line(p: &DensityPoint) -> String {
    format!(
        "{} running, launch {:.2} ms, summed PSS {}, host lost {}",
        p.instances,
        p.launch_ms,
        harness::metrics::Quantity::Bytes.format(p.total_pss_bytes as f64),
        p.host_lost_bytes().map_or("-".to_string(), |b| {
            harness::metrics::Quantity::Bytes.format(b as f64)
        })
    )
}

/// A density point as the progress bar's message.
pub fn point_brief(p: &DensityPoint) -> String {
    format!("{:.0} MiB", p.total_pss_bytes as f64 / 1048576.0)
}
