//! `bench compare`: every backend × workload, interleaved run by run, into `DIR/results.json`
//! (rewritten after every run) and the report of `bench report` in the same directory. Backends that
//! cannot run here are reported as skipped, with their reason, in the table, the JSON and the report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use harness::density::DensityOptions;
use harness::engine::Budget;
use harness::metrics;
use harness::results::ResultsFile;
use harness::{Backend, Plan, RunOptions};
use workload::{WorkloadKind, WorkloadSpec};

use super::UsageError;
use crate::output::PlanProgress;
use crate::parse;

/// Measured runs without `--runs`, at most and at least (the budget decides in between).
pub const DEFAULT_MAX_RUNS: u32 = 10;
pub const DEFAULT_MIN_RUNS: u32 = 3;

/// Default output directory of `bench compare`.
pub const DEFAULT_OUT: &str = "cvbench-results";

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Backends to compare, comma-separated [default: container,microvm,microvm-probe,runc, and
    /// crun,docker,podman,gvisor where their programs are installed]. `oci:<path>` runs any OCI
    /// runtime binary over runc's bundles.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub backends: Vec<String>,
    /// Workloads, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LIST",
        default_value = "idle,http,oltp"
    )]
    pub workloads: Vec<WorkloadKind>,
    /// Measured runs per backend × workload. Without it: up to 10, fewer (at least 3) when the
    /// whole comparison would exceed --budget.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: Option<u32>,
    /// Time budget for the default run count (ignored when --runs is given).
    #[arg(long, value_parser = parse::duration, default_value = "90s", value_name = "DURATION")]
    pub budget: Duration,
    /// Warm-up runs before the measured ones (recorded, flagged, not summarised).
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Output directory for results.json and the report.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Also run a density curve of up to N idle instances per backend.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub density: Option<u32>,
    /// Density stops when the host's MemAvailable falls below this.
    #[arg(long, value_parser = parse::size, value_name = "SIZE", default_value = "2G")]
    pub mem_floor: u64,
    /// mariadb: start on an empty data directory and run mariadb-install-db first, as the official
    /// container images do on their first start (default: the data directory made at build time).
    #[arg(long)]
    pub first_start_init: bool,
    /// Memory limit per instance, e.g. 256M.
    #[arg(long, value_parser = parse::size, value_name = "SIZE")]
    pub memory: Option<u64>,
    /// How long to wait for the workload's READY line.
    #[arg(long, value_parser = parse::duration, default_value = "30s", value_name = "DURATION")]
    pub ready_timeout: Duration,
    /// How long a self-ending workload may run after READY.
    #[arg(long, value_parser = parse::duration, default_value = "120s", value_name = "DURATION")]
    pub finish_timeout: Duration,
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

/// How the report looks (shared by `compare`, `density` and `report`).
#[derive(Debug, Clone, Args)]
pub struct ReportLook {
    /// Chart theme: light or dark.
    #[arg(long, default_value = "light", value_parser = parse_theme)]
    pub theme: report::Theme,
    /// Chart size in pixels, e.g. 1920x1080.
    #[arg(long, default_value = "1920x1080", value_parser = report::parse_size, value_name = "WxH")]
    pub size: (u32, u32),
    /// Logarithmic time axis on startup CDFs (used automatically when backends differ by >20x).
    #[arg(long)]
    pub log_x: bool,
    /// TrueType font for the charts (default: DejaVu Sans from fonts-dejavu-core).
    #[arg(long, value_name = "TTF")]
    pub font: Option<PathBuf>,
}

impl ReportLook {
    pub fn options(&self) -> report::ReportOptions {
        report::ReportOptions {
            theme: self.theme,
            size: self.size,
            log_x: self.log_x,
            font: self.font.clone(),
        }
    }
}

fn parse_theme(s: &str) -> Result<report::Theme, String> {
    s.parse()
}

/// Which image the instances run.
#[derive(Debug, Clone, Args)]
pub struct ImageArgs {
    /// Where the default image is built and cached.
    #[arg(long, value_name = "DIR", default_value = rootfs::DEFAULT_CACHE_ROOT)]
    pub image_cache: PathBuf,
    /// Use this existing rootfs directory instead of the default image; `services` builds (or
    /// reuses) the services image of `bench image build services` (write `./services` for a
    /// directory of that name).
    #[arg(long, value_name = "DIR|services")]
    pub image: Option<PathBuf>,
}

impl ImageArgs {
    /// `--image services`.
    pub fn is_services(&self) -> bool {
        self.image.as_deref() == Some(std::path::Path::new(rootfs::services::SERVICES_IMAGE))
    }

    /// Service workloads (nginx, mariadb) run only the services image: a usage error otherwise.
    pub fn check_workloads(&self, kinds: &[WorkloadKind]) -> anyhow::Result<()> {
        match kinds.iter().find(|k| k.is_service()) {
            Some(k) if self.image.is_none() => Err(UsageError(format!(
                "the {k} workload runs Debian's daemon from the services image: add --image services"
            ))
            .into()),
            _ => Ok(()),
        }
    }

    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        if self.is_services() {
            let build = super::image::build_services(&self.image_cache, false)?;
            return Ok(build.image.dir);
        }
        if let Some(dir) = &self.image {
            if !dir.is_dir() {
                return Err(UsageError(format!("image directory {} does not exist", dir.display())).into());
            }
            return Ok(dir.clone());
        }
        let image = rootfs::default_image(&self.image_cache)
            .with_context(|| format!("building the default image in {}", self.image_cache.display()))?;
        Ok(image.dir)
    }
}

/// Applies `--image-cache` to every backend and checks, before any launch, what a backend could never
/// honour: a `--memory` outside its range, or an explicit `--image` it would not run (the probe
/// guest boots its built-in payload). `--image` with only such backends is a usage error; mixed with
/// backends that do run it, a note says which ignore it.
pub fn configure_backends(
    backends: &mut [Box<dyn Backend>],
    image: &ImageArgs,
    memory_limit_bytes: Option<u64>,
) -> Result<(), UsageError> {
    for backend in backends.iter_mut() {
        backend.set_cache_root(&image.image_cache);
        if let Some(bytes) = memory_limit_bytes {
            backend
                .check_memory_limit(bytes)
                .map_err(|reason| UsageError(format!("--memory for {}: {reason}", backend.name())))?;
        }
    }
    if let Some(dir) = &image.image {
        let ignoring: Vec<&str> = backends
            .iter()
            .filter(|b| !b.runs_image())
            .map(|b| b.name())
            .collect();
        let names = ignoring.join(", ");
        if !ignoring.is_empty() && ignoring.len() == backends.len() {
            return Err(UsageError(format!(
                "--image {} does not apply to {names}: it boots its built-in probe payload, not an image",
                dir.display()
            )));
        }
        if !ignoring.is_empty() {
            eprintln!(
                "note: {names} boots its built-in probe payload and ignores --image {}",
                dir.display()
            );
        }
    }
    Ok(())
}

/// What `bench compare` runs without `--backends`: the built-in runtime, the built-in microVM (with
/// a Linux guest, and with the probe payload that measures the VMM alone), and runc as the
/// well-known peer. Slower peers (qemu) run only when named.
pub const DEFAULT_BACKENDS: [&str; 4] = ["container", "microvm", "microvm-probe", "runc"];

/// The peers people run, in the default comparison when the program each needs is installed (a
/// fresh machine gets them from `scripts/setup.sh`): backend name and program. One that is installed
/// but refuses the host (crun on hybrid cgroups) is a skipped row with its reason.
pub const DEFAULT_PEERS: [(&str, &str); 4] = [
    ("crun", "crun"),
    ("docker", "docker"),
    ("podman", "podman"),
    ("gvisor", "runsc"),
];

/// The default backends: [`DEFAULT_BACKENDS`], then each of [`DEFAULT_PEERS`] whose program
/// `installed` says is there; only names this build knows.
pub fn default_backend_names(installed: &dyn Fn(&str) -> bool) -> Vec<String> {
    let known = harness::backend_names();
    DEFAULT_BACKENDS
        .iter()
        .copied()
        .chain(
            DEFAULT_PEERS
                .iter()
                .filter(|(_, program)| installed(program))
                .map(|(name, _)| *name),
        )
        .filter(|b| known.contains(b))
        .map(str::to_string)
        .collect()
}

/// Whether `program` is an executable file in one of `PATH`'s directories.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The backends named on the command line (or the defaults this host has), without duplicates.
pub fn backends(names: &[String]) -> anyhow::Result<Vec<Box<dyn Backend>>> {
    let names: Vec<String> = if names.is_empty() {
        default_backend_names(&on_path)
    } else {
        names
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()
    };
    let mut out: Vec<Box<dyn Backend>> = Vec::new();
    for name in names {
        let backend = harness::backend_by_name(&name).map_err(|e| UsageError(e.to_string()))?;
        if !out.iter().any(|b| b.name() == backend.name()) {
            out.push(backend);
        }
    }
    if out.is_empty() {
        return Err(UsageError("no backend to compare".to_string()).into());
    }
    Ok(out)
}

pub fn execute(args: CompareArgs) -> anyhow::Result<ExitCode> {
    harness::interrupt::install().context("installing the Ctrl-C handler")?;
    super::check_warmup(args.warmup, args.runs.unwrap_or(DEFAULT_MAX_RUNS))?;
    let mut backends = backends(&args.backends)?;
    configure_backends(&mut backends, &args.image, args.memory)?;
    args.image.check_workloads(&args.workloads)?;
    // After the flags themselves are known good, so a mistyped flag creates no directory.
    crate::preflight::output_dir("--out", &args.out)?;
    let _out_lock = crate::preflight::lock_output_dir("--out", &args.out)?;
    if !args.no_report {
        crate::preflight::report_font(args.look.font.as_deref())?;
    }
    // Each workload once, in the order first named (as for backends).
    let mut specs: Vec<WorkloadSpec> = Vec::new();
    for kind in &args.workloads {
        let spec = WorkloadSpec::for_bench(*kind).with_first_start_init(args.first_start_init);
        if !specs.contains(&spec) {
            specs.push(spec);
        }
    }
    let image_dir = args.image.resolve()?;
    let (runs, budget) = match args.runs {
        Some(n) => (n, None),
        None => (
            DEFAULT_MAX_RUNS,
            Some(Budget {
                total: args.budget,
                min_runs: DEFAULT_MIN_RUNS,
            }),
        ),
    };
    let opts = RunOptions {
        runs,
        warmup: args.warmup,
        memory_limit_bytes: args.memory,
        ready_timeout: args.ready_timeout,
        finish_timeout: args.finish_timeout,
        confinement: args.confine.confinement,
        network: harness::net::for_workloads(&specs).context("making the client network namespace")?,
        ..RunOptions::default()
    };
    let results_path = args.out.join("results.json");
    let base = args.fleet.results_file("compare")?;
    let mut progress = PlanProgress::new("compare", Some(results_path.clone()));
    let refs: Vec<&dyn Backend> = backends.iter().map(AsRef::as_ref).collect();
    let plan = Plan::compare(refs.clone(), &specs, &image_dir, opts.clone(), budget);
    let mut results = harness::engine::execute(&plan, base, &mut progress);
    progress.finish();
    if let Some(max) = args.density {
        if !harness::interrupt::requested() {
            let density_opts = DensityOptions {
                max_instances: max,
                mem_floor_bytes: args.mem_floor,
                run: opts.clone(),
                ..DensityOptions::default()
            };
            let mut progress = PlanProgress::new("density", Some(results_path.clone()));
            let plan = Plan::density(refs, &WorkloadSpec::Idle, &image_dir, density_opts);
            results = harness::engine::execute(&plan, results, &mut progress);
            progress.finish();
            if let Some(e) = progress.take_error() {
                return Err(e);
            }
        }
    }
    if let Some(e) = progress.take_error() {
        return Err(e);
    }

    print!("{}", compare_table(&results));
    eprintln!("results written to {}", results_path.display());
    if !args.no_report {
        super::report::write_and_say(&results, &args.out, &args.look)?;
    }
    args.fleet.outcome(super::plan_outcome(&results))
}

/// One line per backend × workload: runs, failures, startup and memory medians, or why it was skipped.
pub fn compare_table(results: &ResultsFile) -> String {
    let header = [
        "backend",
        "workload",
        "runs",
        "failed",
        "ready p50",
        "ready p99",
        "PSS p50",
        "note",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for c in &results.benchmarks {
        let s = |m: &str| c.summary.get(m);
        let ready = s(metrics::START_TO_READY_MS);
        let note = match &c.skipped {
            Some(reason) => format!("skipped: {reason}"),
            None if c.isolation.kvm.is_nested() => "emulated (nested): function only".to_string(),
            None if c.isolation.is_emulated() => "emulated".to_string(),
            None => String::new(),
        };
        // A real daemon: READY only says it was launched; when it answered is the figure to read.
        let note = match s(metrics::START_TO_SERVICE_READY_MS) {
            Some(r) => format!(
                "service ready p50 {}{}{note}",
                metrics::format(metrics::START_TO_SERVICE_READY_MS, r.p50),
                if note.is_empty() { "" } else { "; " }
            ),
            None => note,
        };
        rows.push(vec![
            c.backend.clone(),
            c.workload.clone(),
            c.measured_runs().to_string(),
            c.failures.len().to_string(),
            ready.map_or("-".into(), |r| metrics::format(metrics::START_TO_READY_MS, r.p50)),
            ready.map_or("-".into(), |r| metrics::format(metrics::START_TO_READY_MS, r.p99)),
            s(metrics::PSS_BYTES).map_or("-".into(), |p| metrics::format(metrics::PSS_BYTES, p.p50)),
            note,
        ]);
    }
    for d in &results.density {
        rows.push(vec![
            d.backend.clone(),
            format!("density/{}", d.workload),
            d.points.len().to_string(),
            String::new(),
            String::new(),
            String::new(),
            d.instances_per_gib
                .map_or("-".into(), |v| format!("{v:.1}/GiB ({})", d.basis.describe())),
            d.stop_reason.clone(),
        ]);
    }
    let mut widths = vec![0; header.len()];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_workloads_need_the_services_image() {
        let args = |image: Option<&str>| ImageArgs {
            image_cache: PathBuf::from("/nonexistent"),
            image: image.map(PathBuf::from),
        };
        let err = args(None)
            .check_workloads(&[WorkloadKind::Idle, WorkloadKind::Mariadb])
            .unwrap_err();
        assert!(err.chain().any(|c| c.is::<UsageError>()), "{err}");
        assert!(err.to_string().contains("--image services"), "{err}");
        assert!(args(None).check_workloads(&[WorkloadKind::Http]).is_ok());
        assert!(args(Some("services")).is_services());
        assert!(!args(Some("./services")).is_services());
        assert!(args(Some("services"))
            .check_workloads(&[WorkloadKind::Nginx])
            .is_ok());
    }

    #[test]
    fn installed_peers_join_the_default_comparison() {
        let none = default_backend_names(&|_| false);
        assert_eq!(none, DEFAULT_BACKENDS.map(str::to_string));
        let all = default_backend_names(&|_| true);
        for peer in ["crun", "docker", "podman", "gvisor"] {
            assert!(all.iter().any(|b| b == peer), "{peer} missing from {all:?}");
        }
        // gVisor comes with runsc: the program decides, not the backend's name.
        let runsc_only = default_backend_names(&|p| p == "runsc");
        assert_eq!(runsc_only.last().map(String::as_str), Some("gvisor"));
        assert!(!runsc_only.iter().any(|b| b == "docker"));
    }

    #[test]
    fn on_path_finds_executables_only() {
        assert!(on_path("sh"));
        assert!(!on_path("cvbench-no-such-program"));
    }
}
