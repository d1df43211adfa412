//! `bench density`: launch instances of one backend one at a time and keep them running until N, a
//! memory floor or the first failure; then tear everything down. Writes `DIR/results.json` (the
//! curve, rewritten after every point) and the report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use harness::density::{run_density, DensityEvent, DensityObserver, DensityOptions};
use harness::results::{DensityResult, ResultsFile, ToolInfo};
use harness::RunOptions;
use workload::{WorkloadKind, WorkloadSpec};

use super::compare::{ImageArgs, ReportLook};
use super::{UsageError, EXIT_INTERRUPTED};
use crate::output::{Progress, ResultsWriter};
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
}

pub fn execute(args: DensityArgs) -> anyhow::Result<ExitCode> {
    harness::interrupt::install().context("installing the Ctrl-C handler")?;
    let backend = harness::backend_by_name(&args.backend).map_err(|e| UsageError(e.to_string()))?;
    backend
        .check_host()
        .map_err(|u| anyhow::anyhow!("{}: backend unavailable on this host: {u}", backend.name()))?;
    let image_dir = args.image.resolve()?;
    let opts = DensityOptions {
        max_instances: args.max,
        mem_floor_bytes: args.mem_floor,
        run: RunOptions {
            memory_limit_bytes: args.memory,
            ready_timeout: args.ready_timeout,
            confinement: args.confine.confinement,
            ..RunOptions::default()
        },
        ..DensityOptions::default()
    };
    let host = harness::host::detect().context("detecting the host")?;
    let path = args.out.join("results.json");
    let mut results = ResultsFile::new("density", ToolInfo::current(std::env::args().collect()), host);
    let mut progress = DensityProgress::new(backend.name(), args.max).writing(results.clone(), path.clone());
    let spec = WorkloadSpec::default_for(args.workload);
    let curve = run_density(backend.as_ref(), &image_dir, &spec, &opts, &mut progress);
    progress.finish();
    if let Some(e) = progress.file.as_mut().and_then(|(_, writer)| writer.take_error()) {
        return Err(e);
    }
    let interrupted = harness::interrupt::requested();
    results.partial = interrupted;
    results.density.push(curve.clone());
    results.write_atomic(&path)?;

    println!(
        "{} · {} · {} instances · {} · stopped: {}",
        curve.backend,
        curve.workload,
        curve.points.len(),
        curve
            .instances_per_gib
            .map_or("-".to_string(), |v| format!("{v:.1} instances/GiB")),
        curve.stop_reason
    );
    eprintln!("results written to {}", path.display());
    if !args.no_report {
        super::report::write_and_say(&results, &args.out, &args.look)?;
    }
    if interrupted {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if curve.points.is_empty() {
        anyhow::bail!("no instance could be launched: {}", curve.stop_reason);
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress of a density run on stderr, optionally rewriting a results file after every point.
pub struct DensityProgress {
    progress: Progress,
    file: Option<(ResultsFile, ResultsWriter)>,
}

impl DensityProgress {
    pub fn new(backend: &str, max: u32) -> Self {
        DensityProgress {
            progress: Progress::new(format!("density {backend}"), u64::from(max)),
            file: None,
        }
    }

    /// Also rewrite `results` (with the curve so far) at `path` after every point.
    pub fn writing(mut self, results: ResultsFile, path: PathBuf) -> Self {
        self.file = Some((results, ResultsWriter::new(path)));
        self
    }

    pub fn finish(&self) {
        self.progress.finish();
    }
}

impl DensityObserver for DensityProgress {
    fn event(&mut self, event: &DensityEvent) {
        match event {
            DensityEvent::Skipped { reason } => self.progress.line(&format!("skipped: {reason}")),
            DensityEvent::Launching { .. } => {}
            DensityEvent::Point(p) => match self.progress.bar() {
                Some(bar) => {
                    bar.set_position(u64::from(p.instances));
                    bar.set_message(format!("{:.0} MiB", p.total_pss_bytes as f64 / 1048576.0));
                }
                None => self.progress.line(&format!(
                    "{} running, launch {:.2} ms, summed PSS {}",
                    p.instances,
                    p.launch_ms,
                    harness::metrics::Quantity::Bytes.format(p.total_pss_bytes as f64)
                )),
            },
            DensityEvent::TearingDown { running, reason } => {
                self.progress
                    .line(&format!("stopping ({reason}); tearing down {running} instances"));
            }
        }
    }

    fn updated(&mut self, result: &DensityResult) {
        if let Some((results, writer)) = &mut self.file {
            results.density = vec![result.clone()];
            writer.write(results);
        }
    }
}
