//! `bench density`: how many instances fit. Instances are launched one at a time (by the run engine,
//! [`crate::engine::Mode::Density`]) and all kept running; after each launch the curve gets a point (that instance's launch latency, the summed PSS
//! of every running instance, the host's `MemAvailable`, and the marginal PSS of the last one). The
//! curve ends at the requested maximum, when `MemAvailable` drops below a floor, at the first failure
//! (recorded as the reason, not fatal) or on a stop request. Every instance is torn down at the end —
//! also on an early return or a panic, because the running set is a [`Fleet`] whose `Drop` destroys
//! what is left.
//!
//! The headline (instances per GiB) divides by what the host lost, not by PSS alone: summed PSS
//! (the user-space part) plus the growth of the host's unreclaimable kernel memory (`meminfo`:
//! unreclaimable slab, page tables, kernel stacks, vmalloc, per-CPU), i.e. the namespaces, cgroups,
//! page tables and KVM allocations each instance costs that PSS never sees. Kernel growth is
//! measured only inside each launch's window (just before to just after, summed), so other
//! processes' churn between launches stays out. Each point also records the `MemAvailable` drop over
//! the same windows, the summed cgroup charge (kernel memory included where accounted) and, for
//! VMs, resident guest RAM, as cross-checks and for the split.
//!
//! The disk arithmetic (what N instances cost in storage) lives in `results::disk`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use workload::WorkloadSpec;

use crate::backend::{Backend, BackendError, Instance};
use crate::probe;
use crate::results::{DensityBasis, DensityPoint, DensityResult};
use crate::runner::{instance_name, RunOptions};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Summed memory figures of every running instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetMemory {
    /// PSS of the instances' processes plus their runtime processes.
    pub pss_bytes: u64,
    /// Summed cgroup charge, when every instance reports one.
    pub cgroup_memory_bytes: Option<u64>,
    /// Summed resident guest RAM, when every instance reports it.
    pub guest_ram_bytes: Option<u64>,
}

/// How far to go.
#[derive(Debug, Clone, PartialEq)]
pub struct DensityOptions {
    /// Stop after this many running instances.
    pub max_instances: u32,
    /// Stop before launching another instance when the host's `MemAvailable` is below this.
    pub mem_floor_bytes: u64,
    /// Limits and timeouts for each launch (`runs`/`warmup` are not used).
    pub run: RunOptions,
    /// Where `meminfo` is read (`/proc`; a fixture directory in tests).
    pub proc_root: PathBuf,
}

impl Default for DensityOptions {
    fn default() -> Self {
        DensityOptions {
            max_instances: 50,
            mem_floor_bytes: 2 * 1024 * 1024 * 1024,
            run: RunOptions::default(),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Running instances; dropping the fleet destroys every instance still in it (best effort, errors
/// printed to stderr since `Drop` cannot return them). [`Fleet::destroy_all`] reports them.
#[derive(Default)]
pub struct Fleet {
    instances: Vec<Box<dyn Instance>>,
}

impl Fleet {
    pub fn push(&mut self, instance: Box<dyn Instance>) {
        self.instances.push(instance);
    }

    /// The addresses of instances attached to the client network namespace.
    pub fn addresses(&self) -> Vec<std::net::Ipv4Addr> {
        self.instances.iter().filter_map(|i| i.address()).collect()
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Summed PSS of every running instance (measured now, so shared pages are split correctly),
    /// including a per-instance runtime process outside the instance (`runtime_pss_bytes`, e.g. the
    /// `runc run` parent) so that every backend is charged for everything it keeps running.
    pub fn total_pss_bytes(&self) -> Result<u64, BackendError> {
        Ok(self.memory()?.pss_bytes)
    }

    /// [`Fleet::total_pss_bytes`] with the summed cgroup charge and guest RAM, from one probe of
    /// each instance.
    pub fn memory(&self) -> Result<FleetMemory, BackendError> {
        let mut total = FleetMemory {
            pss_bytes: 0,
            cgroup_memory_bytes: Some(0),
            guest_ram_bytes: Some(0),
        };
        let add = |sum: Option<u64>, value: Option<u64>| Some(sum?.saturating_add(value?));
        for instance in &self.instances {
            let probe = instance.memory()?;
            let extra = |metric: &str| -> Option<u64> {
                probe
                    .extra
                    .iter()
                    .filter(|(name, _)| name == metric)
                    .map(|(_, b)| *b)
                    .reduce(u64::saturating_add)
            };
            let runtime = extra(crate::metrics::RUNTIME_PSS_BYTES).unwrap_or(0);
            total.pss_bytes = total
                .pss_bytes
                .saturating_add(probe.pss_bytes)
                .saturating_add(runtime);
            total.cgroup_memory_bytes = add(
                total.cgroup_memory_bytes,
                extra(crate::metrics::CGROUP_MEMORY_BYTES),
            );
            total.guest_ram_bytes = add(
                total.guest_ram_bytes,
                extra(crate::metrics::GUEST_RAM_RESIDENT_BYTES),
            );
        }
        if self.instances.is_empty() {
            total.cgroup_memory_bytes = None;
            total.guest_ram_bytes = None;
        }
        Ok(total)
    }

    /// Destroys every instance, newest first, and returns the errors (every instance is attempted).
    pub fn destroy_all(&mut self) -> Vec<BackendError> {
        let mut errors = Vec::new();
        while let Some(instance) = self.instances.pop() {
            if let Err(e) = instance.destroy() {
                errors.push(e);
            }
        }
        errors
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for e in self.destroy_all() {
            eprintln!("cvbench: teardown of a density instance failed: {e}");
        }
    }
}

/// One density curve being grown: the running [`Fleet`] and what the next point is measured
/// against. The engine ([`crate::engine`], [`crate::engine::Mode::Density`]) decides when to stop;
/// this type launches and measures.
pub struct DensityRun<'a> {
    backend: &'a dyn Backend,
    image_dir: &'a Path,
    spec: &'a WorkloadSpec,
    opts: &'a DensityOptions,
    fleet: Fleet,
    pss_before: u64,
    /// What the host lost inside the launch windows so far.
    host_loss: probe::LaunchLoss,
}

impl<'a> DensityRun<'a> {
    pub fn new(
        backend: &'a dyn Backend,
        image_dir: &'a Path,
        spec: &'a WorkloadSpec,
        opts: &'a DensityOptions,
    ) -> Self {
        DensityRun {
            backend,
            image_dir,
            spec,
            opts,
            fleet: Fleet::default(),
            pss_before: 0,
            host_loss: probe::LaunchLoss::default(),
        }
    }

    /// Why no further instance may be launched (the host's `MemAvailable` is below the floor, or
    /// cannot be read); `None` when there is room.
    pub fn host_full(&self) -> Option<String> {
        match probe::mem_available_bytes_in(&self.opts.proc_root) {
            Ok(available) if available < self.opts.mem_floor_bytes => Some(format!(
                "memory floor: MemAvailable {available} B < {} B",
                self.opts.mem_floor_bytes
            )),
            Ok(_) => None,
            Err(e) => Some(format!("reading MemAvailable failed: {e}")),
        }
    }

    /// Launches instance `index` (0-based), keeps it running and measures the curve's next point.
    /// The error is the curve's stop reason.
    pub fn add_instance(&mut self, index: u32) -> Result<DensityPoint, String> {
        let (backend, spec, opts) = (self.backend, self.spec, self.opts);
        let instances = index + 1;
        let request = Instant::now();
        let name = instance_name(backend.name(), spec, index);
        let launch = opts.run.launch_spec(self.image_dir, spec, &name, request);
        let host_before_launch = probe::host_memory_in(&opts.proc_root).ok();
        let instance = match backend.launch(&launch) {
            Ok(instance) => instance,
            Err(e) => return Err(format!("launch {instances} failed: {e}")),
        };
        let returned_ms = request.elapsed().as_secs_f64() * 1e3;
        self.host_loss
            .add(host_before_launch, probe::host_memory_in(&opts.proc_root).ok());
        let launch_ms = instance
            .phases()
            .iter()
            .find(|p| p.name == crate::metrics::START_TO_READY_MS)
            .map_or(returned_ms, crate::backend::PhaseMark::ms);
        self.fleet.push(instance);
        self.check_reachable(instances)?;
        let memory = match self.fleet.memory() {
            Ok(memory) => memory,
            Err(e) => return Err(format!("memory probe after launch {instances} failed: {e}")),
        };
        let host_now = match probe::host_memory_in(&opts.proc_root) {
            Ok(host) => host,
            Err(e) => return Err(format!("reading MemAvailable failed: {e}")),
        };
        let loss = self.host_loss.total();
        let total_pss_bytes = memory.pss_bytes;
        let marginal_pss_bytes = signed_difference(total_pss_bytes, self.pss_before);
        self.pss_before = total_pss_bytes;
        Ok(DensityPoint {
            instances,
            launch_ms,
            total_pss_bytes,
            host_mem_available_bytes: host_now.available_bytes,
            marginal_pss_bytes,
            host_used_bytes: loss.map(|l| l.used_bytes),
            host_kernel_bytes: loss.map(|l| l.kernel_bytes),
            cgroup_memory_bytes: memory.cgroup_memory_bytes,
            guest_ram_bytes: memory.guest_ram_bytes,
        })
    }

    /// For a workload reached from outside: every running instance answers `GET path` with a 200
    /// from the client namespace (the new one polled until the ready timeout, as a run does).
    fn check_reachable(&self, instances: u32) -> Result<(), String> {
        let Some(network) = self.opts.run.network.as_ref() else {
            return Ok(());
        };
        let (port, path) = match self.spec {
            workload::WorkloadSpec::HttpOutside { port, path, .. } => (port, path.clone()),
            workload::WorkloadSpec::Http {
                port,
                from_outside: Some(_),
                ..
            } => (port, "/index.html".to_string()),
            _ => return Ok(()),
        };
        let addresses = self.fleet.addresses();
        if addresses.len() != self.fleet.len() {
            return Err(format!(
                "instance {instances} has no address in the client namespace"
            ));
        }
        let port = *port;
        let deadline = Instant::now() + self.opts.run.ready_timeout;
        network
            .in_client(move || {
                let last = addresses.len().saturating_sub(1);
                for (i, ip) in addresses.into_iter().enumerate() {
                    let addr = std::net::SocketAddr::from((ip, port));
                    let answered = if i == last {
                        crate::net::first_response(addr, &path, deadline).map(|_| ())
                    } else {
                        match crate::net::get_ok(addr, &path, Duration::from_secs(2)) {
                            Ok(true) => Ok(()),
                            Ok(false) => Err("a response other than 200".to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                    };
                    answered.map_err(|e| {
                        format!("instance {} at {addr} is not reachable from outside: {e}", i + 1)
                    })?;
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?
    }

    /// Instances running now.
    pub fn running(&self) -> usize {
        self.fleet.len()
    }

    /// Destroys every instance and returns the teardown errors (every instance is attempted).
    pub fn tear_down(&mut self) -> Vec<String> {
        self.fleet.destroy_all().iter().map(ToString::to_string).collect()
    }
}

fn signed_difference(now: u64, before: u64) -> i64 {
    if now >= before {
        i64::try_from(now - before).unwrap_or(i64::MAX)
    } else {
        i64::try_from(before - now).map_or(i64::MIN, |d| -d)
    }
}

/// Instances per GiB of summed PSS at `point`; `None` when the PSS total is zero.
pub fn instances_per_gib(point: &DensityPoint) -> Option<f64> {
    per_gib(point.instances, point.total_pss_bytes)
}

/// The memory the headline divides by at `point`, and what it is: summed PSS plus the growth of
/// unreclaimable kernel memory when `meminfo` was read around every launch, else summed PSS.
///
/// Not the `MemAvailable` drop, although it is the most complete figure on a quiet host: on a
/// shared one its per-launch deltas spread from -10 to +12 MiB (other processes allocate and free
/// inside the launch window), while the kernel-memory fields moved by a few hundred KiB.
pub fn headline_bytes(point: &DensityPoint) -> (u64, DensityBasis) {
    match point.host_lost_bytes() {
        Some(lost) => (lost, DensityBasis::PssPlusKernel),
        None => (point.total_pss_bytes, DensityBasis::SummedPss),
    }
}

/// Sets the curve's headline from its last point: instances per GiB of [`headline_bytes`], and of
/// summed PSS alongside.
pub fn set_headline(result: &mut DensityResult) {
    let Some(last) = result.points.last() else {
        result.instances_per_gib = None;
        result.instances_per_gib_pss = None;
        return;
    };
    let (bytes, basis) = headline_bytes(last);
    result.instances_per_gib = per_gib(last.instances, bytes);
    result.basis = basis;
    result.instances_per_gib_pss = instances_per_gib(last);
}

fn per_gib(instances: u32, bytes: u64) -> Option<f64> {
    (bytes > 0).then(|| f64::from(instances) / (to_f64(bytes) / GIB))
}

#[allow(clippy::cast_precision_loss)] // byte counts stay far below 2^53
fn to_f64(bytes: u64) -> f64 {
    bytes as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{LaunchSpec, SharedImage, Unavailable};
    use crate::backends::mock::{MockBackend, MockConfig};
    use crate::engine::{self, Event, Observer, Plan};
    use crate::results::{DensityResult, ResultsFile};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A fixture `/proc` whose `MemAvailable` drops by `step_kib` each time it is read.
    struct FakeProc {
        dir: tempfile::TempDir,
    }

    impl FakeProc {
        fn with_available_kib(kib: u64) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let p = FakeProc { dir };
            p.set_available_kib(kib);
            p
        }
        fn set_available_kib(&self, kib: u64) {
            self.set_kib(kib, 0);
        }
        fn set_kib(&self, available: u64, unreclaimable_slab: u64) {
            let text = format!(
                "MemTotal:       24000000 kB\nMemFree:        1000 kB\nMemAvailable:   {available} kB\n\
                 SReclaimable:   9999 kB\nSUnreclaim:     {unreclaimable_slab} kB\n"
            );
            std::fs::write(self.dir.path().join("meminfo"), text).expect("write meminfo");
        }
        fn opts(&self, max: u32, floor: u64) -> DensityOptions {
            DensityOptions {
                max_instances: max,
                mem_floor_bytes: floor,
                run: RunOptions::default(),
                proc_root: self.dir.path().to_path_buf(),
            }
        }
    }

    /// One curve of `backend` through the engine.
    fn run_density(
        backend: &dyn Backend,
        image_dir: &Path,
        spec: &WorkloadSpec,
        opts: &DensityOptions,
        observer: &mut dyn Observer,
    ) -> DensityResult {
        let plan = Plan::density(vec![backend], spec, image_dir, opts.clone());
        let mut r = engine::execute(&plan, engine::fixture::results("density"), observer);
        r.density.remove(0)
    }

    #[derive(Default)]
    struct Recorder {
        events: Vec<Event>,
        stop_after_points: Option<usize>,
        on_point: Option<Box<dyn FnMut(usize)>>,
    }

    impl Observer for Recorder {
        fn event(&mut self, event: &Event) {
            if matches!(event, Event::Point { .. }) {
                let points = self
                    .events
                    .iter()
                    .filter(|e| matches!(e, Event::Point { .. }))
                    .count()
                    + 1;
                if let Some(f) = self.on_point.as_mut() {
                    f(points);
                }
            }
            self.events.push(event.clone());
        }
        fn updated(&mut self, _results: &ResultsFile) {}
        fn should_stop(&self) -> bool {
            let points = self
                .events
                .iter()
                .filter(|e| matches!(e, Event::Point { .. }))
                .count();
            self.stop_after_points.is_some_and(|n| points >= n)
        }
    }

    #[test]
    fn stops_at_max_and_tears_everything_down() {
        let proc_ = FakeProc::with_available_kib(20_000_000);
        let backend = MockBackend::new(MockConfig::default());
        let r = run_density(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &proc_.opts(4, 1 << 30),
            &mut Recorder::default(),
        );
        assert_eq!(r.points.len(), 4);
        assert!(r.stop_reason.starts_with("max"), "{}", r.stop_reason);
        let pss = MockConfig::default().pss_bytes;
        let totals: Vec<u64> = r.points.iter().map(|p| p.total_pss_bytes).collect();
        assert_eq!(totals, vec![pss, 2 * pss, 3 * pss, 4 * pss]);
        assert!(r
            .points
            .iter()
            .all(|p| p.marginal_pss_bytes == i64::try_from(pss).unwrap_or(0)));
        assert!(r
            .points
            .iter()
            .all(|p| p.host_mem_available_bytes == 20_000_000 * 1024));
        // Mock launches report ready at 2.5 ms + 0.25 ms × (k mod 5).
        assert!((r.points[1].launch_ms - 2.75).abs() < 1e-6);
        let per_gib = r.instances_per_gib_pss.unwrap_or(0.0);
        assert!(
            (per_gib - 4.0 / (4.0 * pss as f64 / GIB)).abs() < 1e-9,
            "{per_gib}"
        );
        // Kernel memory never grew here, so what the host lost is the PSS.
        assert_eq!(r.basis, DensityBasis::PssPlusKernel);
        assert_eq!(r.instances_per_gib, r.instances_per_gib_pss);
        let log = backend.log();
        assert_eq!(log.launched.len(), 4);
        let mut destroyed = log.destroyed.clone();
        destroyed.sort();
        let mut launched = log.launched.clone();
        launched.sort();
        assert_eq!(launched, destroyed);
    }

    #[test]
    fn stops_at_the_memory_floor() {
        let proc_ = Arc::new(FakeProc::with_available_kib(3_000_000));
        let backend = MockBackend::new(MockConfig::default());
        let p = Arc::clone(&proc_);
        // After the second point the host "runs low".
        let mut obs = Recorder {
            on_point: Some(Box::new(move |n| {
                if n == 2 {
                    p.set_available_kib(500_000);
                }
            })),
            ..Recorder::default()
        };
        let r = run_density(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &proc_.opts(10, 1 << 30),
            &mut obs,
        );
        assert_eq!(r.points.len(), 2);
        assert!(r.stop_reason.starts_with("memory floor"), "{}", r.stop_reason);
        assert_eq!(backend.log().destroyed.len(), 2);
    }

    #[test]
    fn the_first_failure_ends_the_curve_and_is_recorded() {
        let proc_ = FakeProc::with_available_kib(20_000_000);
        let backend = MockBackend::new(MockConfig {
            fail_launches: vec![3],
            ..MockConfig::default()
        });
        let r = run_density(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &proc_.opts(10, 0),
            &mut Recorder::default(),
        );
        assert_eq!(r.points.len(), 3);
        assert!(
            r.stop_reason.contains("launch 4 failed") && r.stop_reason.contains("fails as configured"),
            "{}",
            r.stop_reason
        );
        assert_eq!(backend.log().destroyed.len(), 3);
    }

    #[test]
    fn a_stop_request_tears_down_and_keeps_the_points() {
        let proc_ = FakeProc::with_available_kib(20_000_000);
        let backend = MockBackend::new(MockConfig::default());
        let mut obs = Recorder {
            stop_after_points: Some(2),
            ..Recorder::default()
        };
        let r = run_density(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &proc_.opts(10, 0),
            &mut obs,
        );
        assert_eq!((r.points.len(), r.stop_reason.as_str()), (2, "interrupted"));
        assert_eq!(backend.log().destroyed.len(), 2);
    }

    #[test]
    fn unavailable_backends_give_an_empty_curve_with_the_reason() {
        let proc_ = FakeProc::with_available_kib(20_000_000);
        let backend = MockBackend::new(MockConfig {
            unavailable: Some("no KVM".into()),
            ..MockConfig::default()
        });
        let r = run_density(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &proc_.opts(3, 0),
            &mut Recorder::default(),
        );
        assert!(r.points.is_empty());
        assert_eq!(r.stop_reason, "skipped: no KVM");
        assert_eq!(r.instances_per_gib, None);
    }

    /// A backend whose instances count how many are alive.
    struct Counting {
        alive: Arc<AtomicU32>,
    }
    struct CountedInstance {
        alive: Arc<AtomicU32>,
    }
    impl Backend for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn isolation(&self) -> crate::results::Isolation {
            crate::results::Isolation::host_kernel(crate::results::IsolationKind::Container)
        }
        fn check_host(&self) -> Result<(), Unavailable> {
            Ok(())
        }
        fn prepare(&self, _: &Path) -> Result<SharedImage, BackendError> {
            Ok(SharedImage::default())
        }
        fn launch(&self, _: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
            self.alive.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(CountedInstance {
                alive: Arc::clone(&self.alive),
            }))
        }
    }
    impl Instance for CountedInstance {
        fn phases(&self) -> Vec<crate::PhaseMark> {
            Vec::new()
        }
        fn host_pids(&self) -> Vec<i32> {
            Vec::new()
        }
        fn memory(&self) -> Result<crate::MemoryProbe, BackendError> {
            Ok(crate::MemoryProbe {
                pss_bytes: 1 << 20,
                extra: vec![
                    (crate::metrics::RUNTIME_PSS_BYTES.to_string(), 1 << 19),
                    (crate::metrics::CGROUP_MEMORY_BYTES.to_string(), 99),
                ],
            })
        }
        fn disk(&self) -> Result<crate::DiskProbe, BackendError> {
            Ok(crate::DiskProbe::default())
        }
        fn finish(
            &mut self,
            _: std::time::Duration,
        ) -> Result<Option<workload::WorkloadResult>, BackendError> {
            Ok(None)
        }
        fn destroy(self: Box<Self>) -> Result<(), BackendError> {
            Ok(()) // Drop does the counting
        }
    }
    impl Drop for CountedInstance {
        fn drop(&mut self) {
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_panic_while_instances_run_still_tears_them_down() {
        let alive = Arc::new(AtomicU32::new(0));
        let backend = Counting {
            alive: Arc::clone(&alive),
        };
        let proc_ = FakeProc::with_available_kib(20_000_000);
        let opts = proc_.opts(5, 0);
        let mut obs = Recorder {
            on_point: Some(Box::new(|n| {
                if n == 3 {
                    panic!("observer panics after 3 points (test)");
                }
            })),
            ..Recorder::default()
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_density(&backend, Path::new("/img"), &WorkloadSpec::Idle, &opts, &mut obs)
        }));
        assert!(outcome.is_err());
        assert_eq!(alive.load(Ordering::SeqCst), 0);
        // Without the panic, launch_ms falls back to the time launch() took.
        let r = run_density(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &proc_.opts(2, 0),
            &mut Recorder::default(),
        );
        assert!(r.points.iter().all(|p| p.launch_ms >= 0.0));
        // Summed PSS charges the runtime process too, and nothing else from the extras.
        let totals: Vec<u64> = r.points.iter().map(|p| p.total_pss_bytes).collect();
        assert_eq!(totals, vec![(1 << 20) + (1 << 19), 2 * ((1 << 20) + (1 << 19))]);
        assert_eq!(alive.load(Ordering::SeqCst), 0);
    }

    /// The mock backend, with every launch growing the fixture host's unreclaimable slab by
    /// `kernel_kib` and taking `available_kib` of its MemAvailable.
    struct Draining {
        inner: MockBackend,
        proc_: Arc<FakeProc>,
        start_kib: u64,
        available_kib: u64,
        kernel_kib: u64,
        launched: AtomicU32,
    }
    impl Backend for Draining {
        fn name(&self) -> &'static str {
            "draining"
        }
        fn isolation(&self) -> crate::results::Isolation {
            self.inner.isolation()
        }
        fn check_host(&self) -> Result<(), Unavailable> {
            Ok(())
        }
        fn prepare(&self, image: &Path) -> Result<SharedImage, BackendError> {
            self.inner.prepare(image)
        }
        fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
            let instance = self.inner.launch(spec)?;
            let n = u64::from(self.launched.fetch_add(1, Ordering::SeqCst) + 1);
            self.proc_
                .set_kib(self.start_kib - n * self.available_kib, n * self.kernel_kib);
            Ok(instance)
        }
    }

    fn draining_curve(available_kib: u64, kernel_kib: u64) -> DensityResult {
        let start_kib = 20_000_000;
        let proc_ = Arc::new(FakeProc::with_available_kib(start_kib));
        let backend = Draining {
            inner: MockBackend::new(MockConfig::default()),
            proc_: Arc::clone(&proc_),
            start_kib,
            available_kib,
            kernel_kib,
            launched: AtomicU32::new(0),
        };
        run_density(
            &backend,
            Path::new("/img"),
            &WorkloadSpec::Idle,
            &proc_.opts(4, 0),
            &mut Recorder::default(),
        )
    }

    #[test]
    fn the_headline_counts_kernel_memory_not_only_pss() {
        let pss = MockConfig::default().pss_bytes; // 1.5 MiB; the mock's cgroup charge is 2 × PSS
                                                   // Each launch costs the kernel 3 × PSS; MemAvailable drops by 4 × PSS.
        let r = draining_curve(4 * pss / 1024, 3 * pss / 1024);
        assert_eq!(r.points.len(), 4);
        let last = r.points.last().unwrap();
        assert_eq!(last.host_kernel_bytes, Some(i64::try_from(4 * 3 * pss).unwrap()));
        assert_eq!(last.host_used_bytes, Some(i64::try_from(4 * 4 * pss).unwrap()));
        assert_eq!(last.host_lost_bytes(), Some(4 * 4 * pss));
        assert_eq!(last.cgroup_memory_bytes, Some(4 * 2 * pss));
        assert_eq!(last.guest_ram_bytes, None);
        assert_eq!(r.basis, DensityBasis::PssPlusKernel);
        let headline = r.instances_per_gib.unwrap();
        let pss_only = r.instances_per_gib_pss.unwrap();
        assert!((headline - GIB / (4.0 * pss as f64)).abs() < 1e-9, "{headline}");
        assert!(
            (pss_only / headline - 4.0).abs() < 1e-9,
            "{pss_only} vs {headline}"
        );
    }

    #[test]
    fn without_kernel_growth_the_host_loses_the_pss() {
        let pss = MockConfig::default().pss_bytes;
        let r = draining_curve(0, 0);
        assert_eq!(r.instances_per_gib, r.instances_per_gib_pss);
        assert!(r
            .instances_per_gib
            .is_some_and(|v| (v - GIB / pss as f64).abs() < 1e-9));
    }

    #[test]
    fn marginal_cost_can_be_negative() {
        assert_eq!(signed_difference(5, 7), -2);
        assert_eq!(signed_difference(7, 5), 2);
    }
}
