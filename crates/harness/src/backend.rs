//! The one trait every isolation mechanism implements (built-in container, runc, microVM, QEMU, ...).
//! `bench run`, `compare`, `density` and `check` only ever see `dyn Backend`, so adding a peer is one
//! new file in `backends/` and never a `match` on a backend's name.
//!
//! Timing contract: the harness takes `request = Instant::now()` and passes it in [`LaunchSpec`];
//! backends record each phase with `Instant::now()` *at the event* (pipe readable, port exit) and
//! report it as a [`PhaseMark`] relative to `request`. Nothing is reconstructed afterwards.

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use container::Confinement;

use results::isolation::Isolation;
use workload::{WorkloadResult, WorkloadSpec};

/// Why a backend cannot run on this host (reported as "skipped" with this reason, never dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Unavailable {
    pub reason: String,
}

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The moment the harness asked for the instance; every phase is measured from here.
    pub request: Instant,
    /// Root of the shared, read-only image (a directory built by the `rootfs` crate).
    pub image_dir: PathBuf,
    /// The workload and its arguments (identical for every backend).
    pub workload: WorkloadSpec,
    /// Unique name of this instance, e.g. `cvbench-container-idle-3`; used for state under
    /// `/run/cvbench/`, cgroup names and hostnames.
    pub instance_name: String,
    /// Memory limit for the instance (container cgroup limit; VM guest RAM).
    pub memory_limit_bytes: Option<u64>,
    /// CPU quota in CPUs (e.g. 1.0 = one core); `None` = unlimited.
    pub cpu_limit: Option<f64>,
    /// Limit on the number of processes (containers only).
    pub pids_limit: Option<u64>,
    /// How long to wait for `CVBENCH READY` before giving up.
    pub ready_timeout: Duration,
    /// Capabilities, no_new_privs, masked/read-only paths, rlimits and seccomp for backends that
    /// [`Backend::applies_confinement`] (the built-in runtime and runc alike); VMs ignore it.
    pub confinement: Confinement,
}

/// One phase boundary, measured from `LaunchSpec::request`.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseMark {
    /// Metric name: a startup phase of the registry (`results::metrics::START_TO_EXEC_MS`,
    /// `START_TO_READY_MS`, ...), always `start_to_<phase>_ms`.
    pub name: String,
    pub since_request: Duration,
}

impl PhaseMark {
    pub fn new(name: &str, request: Instant, at: Instant) -> Self {
        PhaseMark {
            name: name.to_string(),
            since_request: at.saturating_duration_since(request),
        }
    }
    pub fn ms(&self) -> f64 {
        self.since_request.as_secs_f64() * 1e3
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend unavailable on this host: {0}")]
    Unavailable(#[from] Unavailable),
    #[error("{backend}: failed to set up the instance: {reason}")]
    Setup { backend: String, reason: String },
    #[error("{backend}: the workload exited before it was ready (status {status}); last output: {output}")]
    ExitedBeforeReady {
        backend: String,
        status: String,
        output: String,
    },
    #[error("{backend}: the workload was not ready after {timeout:?}; last output: {output}")]
    ReadyTimeout {
        backend: String,
        timeout: Duration,
        output: String,
    },
    #[error("{backend}: the workload failed: {reason}")]
    WorkloadFailed { backend: String, reason: String },
    #[error("{backend}: teardown failed: {reason}")]
    Teardown { backend: String, reason: String },
    #[error("{backend}: {context}: {source}")]
    Io {
        backend: String,
        context: String,
        source: std::io::Error,
    },
}

impl BackendError {
    /// `Setup` for `backend`.
    pub fn setup(backend: &str, reason: impl Into<String>) -> Self {
        BackendError::Setup {
            backend: backend.into(),
            reason: reason.into(),
        }
    }

    /// `Io` for `backend`, in `context`, as a `map_err` argument.
    pub fn io(backend: &str, context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let (backend, context) = (backend.to_string(), context.into());
        move |source| BackendError::Io {
            backend,
            context,
            source,
        }
    }
}

/// An isolation mechanism.
pub trait Backend {
    /// Short stable name used in results and on the command line (`container`, `runc`, `microvm`).
    fn name(&self) -> &'static str;
    /// What kind of sandbox this is, what confines it and which KVM runs its guest on this host.
    /// Recorded in every cell; reports colour, split memory and flag emulated figures by it.
    fn isolation(&self) -> Isolation;
    /// Checks the host (root, binaries, /dev/kvm, cgroups) and says why this backend cannot run here.
    fn check_host(&self) -> Result<(), Unavailable>;
    /// Whether this backend can run `workload` at all (e.g. the microVM's probe guest has no workload
    /// of its own to run). A cell it cannot run is reported as skipped with this reason.
    fn supports(&self, workload: &WorkloadSpec) -> Result<(), Unavailable> {
        let _ = workload;
        Ok(())
    }
    /// Further facts that qualify this backend's figures, e.g. `("runc_version", "1.1.5")`,
    /// `("vcpus", "1")`. Copied into the results; what isolates the cell is [`Backend::isolation`].
    fn labels(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Whether `LaunchSpec::confinement` applies to this backend's instances (then every result cell
    /// carries a `confinement` label).
    fn applies_confinement(&self) -> bool {
        false
    }
    /// One-time, untimed preparation before the first launch (e.g. turning the image directory into a
    /// disk image, writing an OCI bundle template). Idempotent; backends cache what they build.
    /// Returns the bytes every instance shares (the image as this backend stores it, counted once).
    fn prepare(&self, image_dir: &std::path::Path) -> Result<SharedImage, BackendError>;
    /// Launches one instance and returns once the workload printed `CVBENCH READY` (or fails, having
    /// released everything it created).
    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError>;
}

/// What all instances of a backend share on disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedImage {
    /// Allocated bytes of the shared image in the form this backend uses (directory tree, disk file).
    pub bytes: u64,
    /// What the bytes are, e.g. `rootfs directory /var/cache/cvbench/images/ab12...`.
    pub description: String,
}

/// Memory figures for one running instance, taken once it is ready.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryProbe {
    /// Sum of PSS over every host process that makes up the instance (container processes; the VMM).
    pub pss_bytes: u64,
    /// Further named figures in bytes, e.g. `cgroup_memory_bytes`, `guest_ram_resident_bytes`,
    /// `vmm_overhead_bytes`.
    pub extra: Vec<(String, u64)>,
}

/// Disk figures for one instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskProbe {
    /// Bytes this instance added on top of the shared image (upper dir / scratch disk), counted as
    /// allocated blocks.
    pub instance_bytes: u64,
}

/// A launched, ready instance. Dropping it must release everything (best effort); `destroy` does the
/// same and reports errors.
pub trait Instance {
    /// Phase marks recorded so far, in order; the last one is `START_TO_READY_MS`.
    fn phases(&self) -> Vec<PhaseMark>;
    /// Host PIDs of every process that makes up the instance (for probes and leak checks).
    fn host_pids(&self) -> Vec<i32>;
    fn memory(&self) -> Result<MemoryProbe, BackendError>;
    fn disk(&self) -> Result<DiskProbe, BackendError>;
    /// For workloads that end by themselves: waits for `CVBENCH RESULT` and a zero exit status.
    /// For `idle`: stops the workload (signal, then kill after a grace period) and returns `None`.
    fn finish(&mut self, timeout: Duration) -> Result<Option<WorkloadResult>, BackendError>;
    /// Releases every resource (processes, mounts, cgroup, scratch files) and reports failures.
    fn destroy(self: Box<Self>) -> Result<(), BackendError>;
}
