//! One run of a workload on a backend, turned into samples ([`run_once`]: launch, phases, memory and
//! disk probes, the workload's RESULT, destroy) and recorded into its cell ([`run_into`]). The loop
//! that arranges runs (`bench run`, `compare`, `density`) is the engine's ([`crate::engine`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use workload::WorkloadSpec;

use crate::backend::{Backend, BackendError, Confinement, Instance, LaunchSpec};
use crate::metrics;
use crate::results::{BenchmarkResult, RunFailure, RunRecord};

/// How to run a benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// Measured runs.
    pub runs: u32,
    /// Runs before the measured ones, recorded but flagged and left out of the summary.
    pub warmup: u32,
    pub memory_limit_bytes: Option<u64>,
    /// CPU quota in CPUs.
    pub cpu_limit: Option<f64>,
    pub pids_limit: Option<u64>,
    /// How long to wait for `CVBENCH READY`.
    pub ready_timeout: Duration,
    /// How long a self-ending workload may take after READY (or an idle one to stop).
    pub finish_timeout: Duration,
    /// `--confinement` of the container runtimes (built-in and runc).
    pub confinement: Confinement,
    /// The run's client network namespace, made when a workload is reached from outside
    /// (`http-outside`); `None` otherwise.
    pub network: Option<crate::net::Network>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            runs: 10,
            warmup: 1,
            memory_limit_bytes: None,
            cpu_limit: None,
            pids_limit: None,
            ready_timeout: Duration::from_secs(10),
            finish_timeout: Duration::from_secs(120),
            confinement: Confinement::default(),
            network: None,
        }
    }
}

impl RunOptions {
    /// The per-instance limits of these runs.
    pub fn limits(&self) -> crate::backend::InstanceLimits {
        crate::backend::InstanceLimits {
            memory_limit_bytes: self.memory_limit_bytes,
            cpu_limit: self.cpu_limit,
        }
    }

    /// The launch request for one instance, measured from `request`.
    pub fn launch_spec(
        &self,
        image_dir: &Path,
        spec: &WorkloadSpec,
        instance_name: &str,
        request: Instant,
    ) -> LaunchSpec {
        LaunchSpec {
            request,
            image_dir: image_dir.to_path_buf(),
            workload: spec.clone(),
            instance_name: instance_name.to_string(),
            memory_limit_bytes: self.memory_limit_bytes,
            cpu_limit: self.cpu_limit,
            pids_limit: self.pids_limit,
            ready_timeout: self.ready_timeout,
            confinement: crate::services::confinement_for(self.confinement, spec),
            network: self.network.clone(),
        }
    }
}

/// The labels of a result cell of `backend` run with `opts`: the backend's own for the run's limits
/// (see [`Backend::labels_with`]), plus `confinement` (`none`, `oci-default`, `docker`) when the
/// backend applies it, so every row says what it paid for.
pub fn cell_labels(backend: &dyn Backend, opts: &RunOptions) -> BTreeMap<String, String> {
    let confinement = opts.confinement;
    let mut labels: BTreeMap<String, String> = backend.labels_with(&opts.limits()).into_iter().collect();
    if backend.applies_confinement() {
        labels.insert("confinement".to_string(), confinement.name().to_string());
    }
    labels
}

/// Unique instance name: `cvbench-<backend>-<workload>-<pid>-<index>` (the harness pid keeps two
/// concurrent harnesses apart; `bench cleanup` matches the `cvbench-` prefix).
pub fn instance_name(backend: &str, workload: &WorkloadSpec, index: u32) -> String {
    // `oci:/usr/bin/youki` becomes `oci__usr_bin_youki`: the name is a path component.
    let backend: String = backend
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "cvbench-{backend}-{}-{}-{index}",
        workload.kind().name(),
        std::process::id()
    )
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunMeasurement {
    /// `start_to_*_ms`, `pss_bytes` and the backend's extra memory figures, `instance_disk_bytes`,
    /// `workload.<name>` for each RESULT figure.
    pub metrics: BTreeMap<String, f64>,
    /// The RESULT object as the workload printed it.
    pub workload_result: Option<serde_json::Value>,
}

/// One run recorded into `cell`: instance `index` of `spec` is launched, measured and torn down
/// ([`run_once`]); its figures or its failure are recorded, and the summary is refreshed after a
/// measured run. Returns the failure's text.
pub fn run_into(
    backend: &dyn Backend,
    image_dir: &Path,
    spec: &WorkloadSpec,
    opts: &RunOptions,
    cell: &mut BenchmarkResult,
    index: u32,
    warmup: bool,
) -> Option<String> {
    let name = instance_name(backend.name(), spec, index);
    let outcome = run_once(backend, image_dir, spec, opts, &name);
    let error = outcome.as_ref().err().map(ToString::to_string);
    record_run(cell, index, warmup, outcome);
    if !warmup {
        cell.recompute_summary(crate::stats::DEFAULT_SEED);
    }
    error
}

/// Launches one instance, measures it, lets the workload finish, and destroys it — always, also when
/// a step failed. A teardown failure fails the run (something may be left behind).
pub fn run_once(
    backend: &dyn Backend,
    image_dir: &Path,
    spec: &WorkloadSpec,
    opts: &RunOptions,
    instance_name: &str,
) -> Result<RunMeasurement, BackendError> {
    let spec = &launched_spec(backend, spec, opts);
    let request = Instant::now();
    let launch = opts.launch_spec(image_dir, spec, instance_name, request);
    let mut instance = backend.launch(&launch)?;
    let measured = measure(
        backend.name(),
        instance.as_mut(),
        spec,
        opts,
        (image_dir, request),
    );
    let destroyed = instance.destroy();
    match (measured, destroyed) {
        (Ok(m), Ok(())) => Ok(m),
        (Ok(_), Err(teardown)) => Err(teardown),
        (Err(run), Ok(())) => Err(run),
        (Err(run), Err(teardown)) => Err(BackendError::Teardown {
            backend: backend.name().to_string(),
            reason: format!("{teardown} (after the run failed: {run})"),
        }),
    }
}

/// `spec` as launched on `backend`: `http`'s load from outside is dropped (its self-test runs at
/// once) when there is no client namespace or the backend has no network path; [`outside_note`]
/// records why in the cell.
pub fn launched_spec(backend: &dyn Backend, spec: &WorkloadSpec, opts: &RunOptions) -> WorkloadSpec {
    match spec {
        WorkloadSpec::Http {
            from_outside: Some(_),
            ..
        } if opts.network.is_none() || !backend.networking() => spec.without_outside(),
        _ => spec.clone(),
    }
}

/// The `outside_load` label of an `http` cell reached from outside: how the outside figures were
/// obtained, or `missing: <why>` (no client namespace on this host, or no network path on this
/// backend). `None` for other workloads.
pub fn outside_note(backend: &dyn Backend, spec: &WorkloadSpec, opts: &RunOptions) -> Option<String> {
    let WorkloadSpec::Http {
        selftest,
        from_outside: Some(_),
        ..
    } = spec
    else {
        return None;
    };
    if opts.network.is_none() {
        let why = crate::net::unavailable_reason()
            .unwrap_or_else(|| "no client network namespace was made for this run".into());
        return Some(format!("missing: {why}"));
    }
    if !backend.networking() {
        let why = backend
            .no_network_reason()
            .unwrap_or_else(|| "no network path to the client namespace yet".into());
        return Some(format!("missing: {}: {why}", backend.name()));
    }
    Some(match selftest {
        Some(s) => format!(
            "wrk -t1 from the client network namespace over the instance's veth, before the self-test: the \
             self-test's {} requests over {} connections, the same files in the same order; \
             client wrk (event loop, 1 thread) vs in-process (1 thread per connection)",
            s.requests, s.connections
        ),
        None => "reachability from the client network namespace only".to_string(),
    })
}

fn measure(
    backend: &str,
    instance: &mut dyn Instance,
    spec: &WorkloadSpec,
    opts: &RunOptions,
    (image_dir, request): (&Path, Instant),
) -> Result<RunMeasurement, BackendError> {
    let mut m = RunMeasurement::default();
    for phase in instance.phases() {
        m.metrics.insert(phase.name.clone(), phase.ms());
    }
    // A real daemon: its service answers from outside before anything is probed.
    crate::services::await_ready(backend, instance, spec, opts, request, &mut m)?;
    match instance.memory() {
        Ok(memory) => {
            m.metrics
                .insert(metrics::PSS_BYTES.to_string(), to_f64(memory.pss_bytes));
            for (name, bytes) in memory.extra {
                m.metrics.insert(name, to_f64(bytes));
            }
        }
        // A self-ending workload already done: this run has no memory figure (fewer samples in
        // the memory summaries), its other figures stand.
        Err(BackendError::EndedBeforeMemoryProbe { .. }) => {}
        Err(e) => return Err(e),
    }
    let disk = instance.disk()?;
    m.metrics.insert(
        metrics::INSTANCE_DISK_BYTES.to_string(),
        to_f64(disk.instance_bytes),
    );
    // While it serves: the load from outside, for a workload reached that way.
    outside(backend, instance, spec, opts, request, &mut m)?;
    http_outside(backend, instance, spec, opts, (image_dir, request), &mut m)?;
    crate::services::load(backend, instance, spec, opts, &mut m)?;
    if let Some(result) = instance.finish(opts.finish_timeout)? {
        for (name, value) in &result.metrics {
            m.metrics.insert(metrics::workload_metric(name), *value);
        }
        m.workload_result = serde_json::to_value(&result).ok();
    }
    Ok(m)
}

/// For a workload reached from outside: the first HTTP 200 from the client namespace
/// (`start_to_first_response_ms`), the median of 5 TCP connects, then `wrk`. Runs after the probes
/// and before the workload is stopped.
fn outside(
    backend: &str,
    instance: &dyn Instance,
    spec: &WorkloadSpec,
    opts: &RunOptions,
    request: Instant,
    m: &mut RunMeasurement,
) -> Result<(), BackendError> {
    let WorkloadSpec::HttpOutside {
        port,
        connections,
        duration_s,
        path,
    } = spec
    else {
        return Ok(());
    };
    let failed = |reason: String| BackendError::WorkloadFailed {
        backend: backend.to_string(),
        reason,
    };
    let (Some(network), Some(ip)) = (opts.network.as_ref(), instance.address()) else {
        return Err(failed(
            "http-outside needs the instance attached to the client network namespace".into(),
        ));
    };
    let addr = std::net::SocketAddrV4::new(ip, *port);
    let deadline = Instant::now() + opts.ready_timeout;
    first_response_and_connect(network, addr, path.clone(), (request, deadline), m).map_err(failed)?;
    let wrk = crate::net::run_wrk(
        network,
        addr,
        path,
        *connections,
        Duration::from_secs(u64::from(*duration_s)),
    )
    .map_err(failed)?;
    record_wrk(m, &wrk);
    Ok(())
}

/// For `http` reached from outside: the first HTTP 200 and TCP connects as for `http-outside`, then
/// the self-test's load from the client namespace ([`crate::net::run_wrk_walk`]), then the trigger
/// connection that starts the self-test inside (its RESULT comes through `finish`).
fn http_outside(
    backend: &str,
    instance: &dyn Instance,
    spec: &WorkloadSpec,
    opts: &RunOptions,
    (image_dir, request): (&Path, Instant),
    m: &mut RunMeasurement,
) -> Result<(), BackendError> {
    let WorkloadSpec::Http {
        port,
        selftest: Some(selftest),
        from_outside: Some(from_outside),
    } = spec
    else {
        return Ok(());
    };
    let failed = |reason: String| BackendError::WorkloadFailed {
        backend: backend.to_string(),
        reason,
    };
    let (Some(network), Some(ip)) = (opts.network.as_ref(), instance.address()) else {
        return Err(failed(
            "http from outside needs the instance attached to the client network namespace".into(),
        ));
    };
    let files = crate::net::www_files(image_dir).map_err(|e| {
        failed(format!(
            "listing the image's {}: {e}",
            workload::spec::WWW_DIR_IN_IMAGE
        ))
    })?;
    let first_path = files
        .first()
        .map(|f| f.0.clone())
        .ok_or_else(|| failed("the image serves no files".into()))?;
    let addr = std::net::SocketAddrV4::new(ip, *port);
    let trigger = std::net::SocketAddr::from((ip, from_outside.trigger_port));
    let deadline = Instant::now() + opts.ready_timeout;
    first_response_and_connect(network, addr, first_path, (request, deadline), m).map_err(failed)?;
    let wrk = crate::net::run_wrk_walk(
        network,
        addr,
        &files,
        selftest.requests,
        selftest.connections,
        opts.finish_timeout,
    )
    .map_err(failed)?;
    record_wrk(m, &wrk);
    // Now the self-test inside: one connection to the trigger port starts it.
    network
        .in_client(move || {
            std::net::TcpStream::connect_timeout(&trigger, Duration::from_secs(5))
                .map(drop)
                .map_err(|e| format!("starting the self-test through {trigger}: {e}"))
        })
        .map_err(|e| failed(e.to_string()))?
        .map_err(failed)
}

/// From the client namespace: polls `path` at `addr` until the first HTTP 200 (or `deadline`), then
/// times TCP connects; records `start_to_first_response_ms` (from `request`) and the connect latency.
fn first_response_and_connect(
    network: &crate::net::Network,
    addr: std::net::SocketAddrV4,
    path: String,
    (request, deadline): (Instant, Instant),
    m: &mut RunMeasurement,
) -> Result<(), String> {
    let (first, connect) = network
        .in_client(move || {
            let first = crate::net::first_response(addr.into(), &path, deadline)?;
            let connect = crate::net::connect_latency_us(addr.into(), 5)
                .map_err(|e| format!("TCP connects to {addr}: {e}"))?;
            Ok::<_, String>((first, connect))
        })
        .map_err(|e| e.to_string())??;
    m.metrics.insert(
        metrics::START_TO_FIRST_RESPONSE_MS.to_string(),
        first.saturating_duration_since(request).as_secs_f64() * 1e3,
    );
    m.metrics
        .insert(metrics::OUTSIDE_TCP_CONNECT_US.to_string(), connect);
    Ok(())
}

/// wrk's figures as the run's `outside.*` metrics.
pub(crate) fn record_wrk(m: &mut RunMeasurement, wrk: &crate::net::OutsideFigures) {
    for (name, v) in [
        (metrics::OUTSIDE_REQUESTS_PER_S, wrk.requests_per_s),
        (metrics::OUTSIDE_BYTES_PER_S, wrk.bytes_per_s),
        (metrics::OUTSIDE_LATENCY_P50_US, wrk.latency_p50_us),
        (metrics::OUTSIDE_LATENCY_P90_US, wrk.latency_p90_us),
        (metrics::OUTSIDE_LATENCY_P99_US, wrk.latency_p99_us),
        (metrics::OUTSIDE_ERRORS, wrk.errors),
    ] {
        m.metrics.insert(name.to_string(), v);
    }
}

#[allow(clippy::cast_precision_loss)] // byte counts stay far below 2^53
fn to_f64(bytes: u64) -> f64 {
    bytes as f64
}

/// Records the outcome of run `index` in `cell`: a measurement becomes a [`RunRecord`], an error a
/// [`RunFailure`]. The summary is not touched (call `recompute_summary`).
pub fn record_run(
    cell: &mut BenchmarkResult,
    index: u32,
    warmup: bool,
    outcome: Result<RunMeasurement, BackendError>,
) {
    match outcome {
        Ok(m) => cell.runs.push(RunRecord {
            index,
            warmup,
            metrics: m.metrics,
            workload_result: m.workload_result,
        }),
        Err(e) => cell.failures.push(RunFailure {
            index,
            error: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::mock::{MockBackend, MockConfig};
    use crate::engine::{self, Event, Observer, Plan, SilentObserver};
    use crate::results::ResultsFile;

    #[derive(Default)]
    struct Recorder {
        events: Vec<Event>,
        updates: Vec<BenchmarkResult>,
        stop_after_runs: Option<usize>,
    }

    impl Observer for Recorder {
        fn event(&mut self, event: &Event) {
            self.events.push(event.clone());
        }
        fn updated(&mut self, results: &ResultsFile) {
            self.updates.extend(results.benchmarks.first().cloned());
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

    /// `bench run`'s plan through the engine; the one cell and whether the file is partial.
    fn run_benchmark(
        backend: &dyn Backend,
        image_dir: &Path,
        spec: &WorkloadSpec,
        opts: &RunOptions,
        observer: &mut dyn Observer,
    ) -> BenchmarkResult {
        let plan = Plan::run(backend, spec, image_dir, opts.clone());
        let mut r = engine::execute(&plan, engine::fixture::results("run"), observer);
        r.benchmarks.remove(0)
    }

    fn opts(runs: u32, warmup: u32) -> RunOptions {
        RunOptions {
            runs,
            warmup,
            ready_timeout: Duration::from_millis(20),
            ..RunOptions::default()
        }
    }

    #[test]
    fn http_without_a_network_path_runs_its_self_test_at_once_and_says_why() {
        let backend = MockBackend::new(MockConfig::default());
        assert!(!backend.networking());
        let http = WorkloadSpec::for_bench(workload::WorkloadKind::Http);
        let o = opts(1, 0);
        // No client namespace: launched without the trigger, the cell says the figures are missing.
        let launched = launched_spec(&backend, &http, &o);
        assert_eq!(launched, http.without_outside());
        assert!(!launched.to_args().iter().any(|a| a == "--selftest-trigger"));
        let note = outside_note(&backend, &http, &o).unwrap();
        assert!(note.starts_with("missing: "), "{note}");
        // Other workloads: untouched, no note.
        for spec in [
            WorkloadSpec::Idle,
            WorkloadSpec::default_for(workload::WorkloadKind::Http),
            WorkloadSpec::default_for(workload::WorkloadKind::HttpOutside),
        ] {
            assert_eq!(launched_spec(&backend, &spec, &o), spec);
            assert_eq!(outside_note(&backend, &spec, &o), None);
        }
        // The run itself goes on with the in-sandbox figures only.
        let m = run_once(&backend, Path::new("/img"), &http, &o, "cvbench-mock-http-1-0").unwrap();
        assert!(
            !m.metrics.keys().any(|k| k.starts_with(metrics::OUTSIDE_PREFIX)),
            "{m:?}"
        );
    }

    #[test]
    fn run_once_collects_phases_memory_disk_and_workload_figures() {
        let backend = MockBackend::new(MockConfig::default());
        let spec = WorkloadSpec::default_for(workload::WorkloadKind::Oltp);
        let m = run_once(
            &backend,
            Path::new("/img"),
            &spec,
            &opts(1, 0),
            "cvbench-mock-oltp-1-0",
        )
        .unwrap();
        let cfg = MockConfig::default();
        assert_eq!(m.metrics[crate::metrics::START_TO_EXEC_MS], cfg.exec_ms);
        assert_eq!(m.metrics[crate::metrics::START_TO_READY_MS], cfg.ready_ms);
        assert_eq!(m.metrics[crate::metrics::PSS_BYTES], to_f64(cfg.pss_bytes));
        assert_eq!(
            m.metrics[crate::metrics::CGROUP_MEMORY_BYTES],
            to_f64(cfg.pss_bytes * 2)
        );
        assert_eq!(
            m.metrics[crate::metrics::INSTANCE_DISK_BYTES],
            to_f64(cfg.disk_bytes)
        );
        assert!(m.metrics.contains_key(crate::metrics::WORKLOAD_OPS_PER_S));
        assert_eq!(m.workload_result.as_ref().unwrap()["workload"], "oltp");
        assert_eq!(backend.log().destroyed, vec!["cvbench-mock-oltp-1-0".to_string()]);
    }

    #[test]
    fn idle_runs_have_no_workload_figures() {
        let backend = MockBackend::new(MockConfig::default());
        let m = run_once(&backend, Path::new("/img"), &WorkloadSpec::Idle, &opts(1, 0), "i").unwrap();
        assert!(m.workload_result.is_none());
        assert!(!m
            .metrics
            .keys()
            .any(|k| k.starts_with(crate::metrics::WORKLOAD_PREFIX)));
    }

    #[test]
    fn instances_are_destroyed_even_when_a_probe_fails() {
        let backend = MockBackend::new(MockConfig {
            fail_memory_probe: true,
            ..MockConfig::default()
        });
        let err = run_once(&backend, Path::new("/img"), &WorkloadSpec::Idle, &opts(1, 0), "x").unwrap_err();
        assert!(err.to_string().contains("memory probe"), "{err}");
        assert_eq!(backend.log().destroyed, vec!["x".to_string()]);
    }

    #[test]
    fn a_workload_gone_before_the_memory_probe_keeps_its_run_without_a_memory_figure() {
        let backend = MockBackend::new(MockConfig {
            ended_before_memory_probe: true,
            ..MockConfig::default()
        });
        let m = run_once(&backend, Path::new("/img"), &WorkloadSpec::Idle, &opts(1, 0), "x").unwrap();
        assert!(m.metrics.contains_key(crate::metrics::START_TO_READY_MS), "{m:?}");
        assert!(
            m.metrics.contains_key(crate::metrics::INSTANCE_DISK_BYTES),
            "{m:?}"
        );
        assert!(
            !m.metrics.contains_key(crate::metrics::PSS_BYTES),
            "no invented PSS: {m:?}"
        );
        assert_eq!(backend.log().destroyed, vec!["x".to_string()]);
    }

    #[test]
    fn a_failed_teardown_fails_the_run() {
        let backend = MockBackend::new(MockConfig {
            fail_destroy: true,
            ..MockConfig::default()
        });
        let err = run_once(&backend, Path::new("/img"), &WorkloadSpec::Idle, &opts(1, 0), "x").unwrap_err();
        assert!(matches!(err, BackendError::Teardown { .. }), "{err}");
    }

    #[test]
    fn names_are_unique_per_index_and_carry_the_prefix() {
        let a = instance_name("runc", &WorkloadSpec::Idle, 0);
        let b = instance_name("runc", &WorkloadSpec::Idle, 1);
        assert_ne!(a, b);
        assert!(a.starts_with("cvbench-runc-idle-"), "{a}");
        assert!(a.ends_with("-0"));
    }

    #[test]
    fn benchmark_flags_warmups_records_failures_and_continues() {
        let backend = MockBackend::new(MockConfig {
            fail_launches: vec![1, 3],
            ..MockConfig::default()
        });
        let mut obs = Recorder::default();
        let r = run_benchmark(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &opts(4, 2),
            &mut obs,
        );
        assert_eq!(r.backend, "mock");
        assert_eq!(
            r.shared_image_bytes,
            Some(MockConfig::default().shared_image_bytes)
        );
        let failed: Vec<u32> = r.failures.iter().map(|f| f.index).collect();
        assert_eq!(failed, vec![1, 3]);
        let runs: Vec<(u32, bool)> = r.runs.iter().map(|x| (x.index, x.warmup)).collect();
        assert_eq!(runs, vec![(0, true), (2, false), (4, false), (5, false)]);
        // One update after set-up, one per run, one at the end.
        assert_eq!(obs.updates.len(), 1 + 6 + 1);
        assert_eq!(obs.updates.last(), Some(&r));
        let finished = obs
            .events
            .iter()
            .filter(|e| matches!(e, Event::RunFinished { .. }))
            .count();
        assert_eq!(finished, 6);
        // Every launched instance was destroyed.
        assert_eq!(backend.log().launched, backend.log().destroyed);
    }

    /// The mock, declaring itself a VM under TCG: a cell must record what the backend declares.
    struct MockVm(MockBackend);

    impl Backend for MockVm {
        fn name(&self) -> &'static str {
            "mock-vm"
        }
        fn isolation(&self) -> crate::results::Isolation {
            use crate::results::{Isolation, IsolationKind, KvmFlavour};
            Isolation::vm(IsolationKind::OtherVmm, KvmFlavour::Tcg)
        }
        fn check_host(&self) -> Result<(), crate::Unavailable> {
            self.0.check_host()
        }
        fn prepare(&self, image_dir: &Path) -> Result<crate::SharedImage, BackendError> {
            self.0.prepare(image_dir)
        }
        fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
            self.0.launch(spec)
        }
    }

    #[test]
    fn cells_record_the_isolation_the_backend_declares() {
        let backend = MockVm(MockBackend::new(MockConfig::default()));
        let r = run_benchmark(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &opts(1, 0),
            &mut SilentObserver,
        );
        assert_eq!(r.isolation, backend.isolation());
        assert!(r.isolation.is_emulated());
    }

    #[test]
    fn summary_covers_measured_runs_only() {
        let backend = MockBackend::new(MockConfig::default());
        let r = run_benchmark(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &opts(3, 2),
            &mut SilentObserver,
        );
        assert_eq!(r.runs.len(), 5);
        assert_eq!(r.measured_runs(), 3);
        assert_eq!(r.summary[crate::metrics::START_TO_READY_MS].n, 3);
    }

    #[test]
    fn unavailable_backends_are_skipped_with_their_reason() {
        let backend = MockBackend::new(MockConfig {
            unavailable: Some("no KVM here".into()),
            ..MockConfig::default()
        });
        let mut obs = Recorder::default();
        let r = run_benchmark(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &opts(3, 0),
            &mut obs,
        );
        assert_eq!(r.skipped.as_deref(), Some("no KVM here"));
        assert!(r.runs.is_empty() && r.failures.is_empty());
        assert_eq!(
            obs.events,
            vec![Event::Skipped {
                backend: "mock".into(),
                workload: None,
                reason: "no KVM here".into()
            }]
        );
        // Set-up and the end; labels are not asked of a backend that is skipped.
        assert_eq!(obs.updates.len(), 2);
        assert!(r.labels.is_empty(), "{:?}", r.labels);
    }

    #[test]
    fn a_stop_request_ends_the_loop_between_runs() {
        let backend = MockBackend::new(MockConfig::default());
        let mut obs = Recorder {
            stop_after_runs: Some(2),
            ..Recorder::default()
        };
        let r = run_benchmark(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &opts(10, 0),
            &mut obs,
        );
        assert_eq!(r.runs.len(), 2);
        assert!(obs.events.contains(&Event::Stopped {
            completed: 2,
            total_steps: 10
        }));
    }

    #[test]
    fn never_ready_fails_every_run_with_a_timeout() {
        let backend = MockBackend::new(MockConfig {
            never_ready: true,
            ..MockConfig::default()
        });
        let r = run_benchmark(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &opts(2, 0),
            &mut SilentObserver,
        );
        assert!(r.runs.is_empty());
        assert_eq!(r.failures.len(), 2);
        assert!(
            r.failures[0].error.contains("not ready"),
            "{}",
            r.failures[0].error
        );
    }
}
