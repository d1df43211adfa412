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

/// The per-instance limits of a run (`--memory`, `--cpus`), which size a VM's guest.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InstanceLimits {
    pub memory_limit_bytes: Option<u64>,
    /// CPU quota in CPUs; `None` = unlimited.
    pub cpu_limit: Option<f64>,
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
    /// The run's client network namespace, for workloads reached from outside
    /// ([`WorkloadSpec::HttpOutside`]): the backend attaches the instance to it
    /// ([`crate::net::Network::attach`]) and reports the address ([`Instance::address`]).
    pub network: Option<crate::net::Network>,
}

impl LaunchSpec {
    /// The limits that size this instance.
    pub fn limits(&self) -> InstanceLimits {
        InstanceLimits {
            memory_limit_bytes: self.memory_limit_bytes,
            cpu_limit: self.cpu_limit,
        }
    }
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

/// Where a backend's child process (the workload, runc, a VMM) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    /// It was never spawned.
    NotStarted,
    /// It had not exited when last waited for.
    Running,
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it (the raw number, so that real-time signals are kept too).
    Signaled(i32),
    /// Waiting for it failed.
    Unknown(std::io::ErrorKind),
}

impl ChildState {
    /// Exited with status 0.
    pub fn success(self) -> bool {
        self == ChildState::Exited(0)
    }

    /// It has not (yet) ended.
    pub fn is_running(self) -> bool {
        self == ChildState::Running
    }
}

impl From<std::process::ExitStatus> for ChildState {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ChildState::Exited(code),
            (None, Some(signal)) => ChildState::Signaled(signal),
            // `wait` reported a stop or continue; the child still exists.
            (None, None) => ChildState::Running,
        }
    }
}

impl From<container::ExitStatus> for ChildState {
    fn from(status: container::ExitStatus) -> Self {
        match status {
            container::ExitStatus::Exited(code) => ChildState::Exited(code),
            container::ExitStatus::Signaled(signal) => ChildState::Signaled(signal as i32),
        }
    }
}

impl std::fmt::Display for ChildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildState::NotStarted => write!(f, "not started"),
            ChildState::Running => write!(f, "still running"),
            ChildState::Exited(code) => write!(f, "exit status {code}"),
            ChildState::Signaled(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(name) => write!(f, "killed by {name}"),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
            ChildState::Unknown(kind) => write!(f, "unknown ({kind})"),
        }
    }
}

/// What a backend was doing when it failed, for errors that keep their source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `prepare`: checking and converting the image, locating binaries.
    Prepare,
    /// Creating the instance's state, disks and mounts.
    Create,
    /// Starting its first process.
    Start,
    MemoryProbe,
    DiskProbe,
    /// Stopping a workload that runs until stopped.
    Stop,
    /// Waiting for the workload to exit.
    Wait,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Prepare => "preparing",
            Stage::Create => "creating the instance",
            Stage::Start => "starting the instance",
            Stage::MemoryProbe => "memory probe",
            Stage::DiskProbe => "disk probe",
            Stage::Stop => "stopping the workload",
            Stage::Wait => "waiting for the workload",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend unavailable on this host: {0}")]
    Unavailable(#[from] Unavailable),
    #[error("{backend}: failed to set up the instance: {reason}")]
    Setup { backend: String, reason: String },
    #[error("{backend}: the workload exited before it was ready ({status}); last output: {output}")]
    ExitedBeforeReady {
        backend: String,
        status: ChildState,
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
    /// The workload printed a `CVBENCH` line that does not parse: the same error in every backend.
    #[error("{backend}: the workload broke the protocol: {source}")]
    Protocol {
        backend: String,
        source: workload::ProtocolError,
    },
    #[error("{backend}: teardown failed: {reason}")]
    Teardown { backend: String, reason: String },
    /// A `/proc` or allocated-bytes probe failed (the error names the pid and path).
    #[error("{backend}: {stage}: {source}")]
    Probe {
        backend: String,
        stage: Stage,
        source: crate::probe::ProbeError,
    },
    /// The built-in runtime failed (the error names the path, syscall or step).
    #[error("{backend}: {stage}: {source}")]
    Container {
        backend: String,
        stage: Stage,
        source: container::ContainerError,
    },
    /// Building or locating an image, disk or binary failed.
    #[error("{backend}: {stage}: {source}")]
    Rootfs {
        backend: String,
        stage: Stage,
        source: rootfs::RootfsError,
    },
    /// The OCI runtime config could not be built or written.
    #[error("{backend}: config.json: {source}")]
    OciConfig {
        backend: String,
        source: oci_spec::OciSpecError,
    },
    #[error("{backend}: {context}: {source}")]
    Io {
        backend: String,
        context: String,
        source: std::io::Error,
    },
    /// The instance had no process left to measure when its memory was probed: a self-ending
    /// workload (the http self-test) finished before an engine's slower READY path let the harness
    /// look. Not a failed run: the run records no memory figure (its `n` says so), never a guess.
    #[error("{backend}: memory probe: instance {instance} had already ended its workload")]
    EndedBeforeMemoryProbe { backend: String, instance: String },
}

impl BackendError {
    /// `Setup` for `backend`.
    pub fn setup(backend: &str, reason: impl Into<String>) -> Self {
        BackendError::Setup {
            backend: backend.into(),
            reason: reason.into(),
        }
    }

    /// `Probe` for `backend` at `stage`, as a `map_err` argument.
    pub fn probe(backend: &str, stage: Stage) -> impl FnOnce(crate::probe::ProbeError) -> Self {
        let backend = backend.to_string();
        move |source| BackendError::Probe {
            backend,
            stage,
            source,
        }
    }

    /// `Container` for `backend` at `stage`, as a `map_err` argument.
    pub fn container(backend: &str, stage: Stage) -> impl FnOnce(container::ContainerError) -> Self {
        let backend = backend.to_string();
        move |source| BackendError::Container {
            backend,
            stage,
            source,
        }
    }

    /// `Rootfs` for `backend` at `stage`, as a `map_err` argument.
    pub fn rootfs(backend: &str, stage: Stage) -> impl FnOnce(rootfs::RootfsError) -> Self {
        let backend = backend.to_string();
        move |source| BackendError::Rootfs {
            backend,
            stage,
            source,
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
    /// Whether this backend attaches instances to `LaunchSpec::network` (a workload reached from
    /// outside is skipped, with the reason, on backends that do not).
    fn networking(&self) -> bool {
        false
    }
    /// Why this backend has no network path (when [`Backend::networking`] is false), recorded where
    /// its outside figures are missing; `None` for the generic "not yet".
    fn no_network_reason(&self) -> Option<String> {
        None
    }
    /// Further facts that qualify this backend's figures, e.g. `("runc_version", "1.1.5")`,
    /// `("vcpus", "1")`. Copied into the results; what isolates the cell is [`Backend::isolation`].
    fn labels(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// [`Backend::labels`] of instances launched with `limits`: a backend that sizes its instances
    /// from them (a VM's vCPUs from `--cpus`) labels the size it launches, not its default.
    fn labels_with(&self, limits: &InstanceLimits) -> Vec<(String, String)> {
        let _ = limits;
        self.labels()
    }
    /// Checks a memory limit before any launch: a value this backend can never honour (guest RAM the
    /// VMM refuses) is a usage error up front instead of a failure of every run. The reason names
    /// the accepted range.
    fn check_memory_limit(&self, bytes: u64) -> Result<(), String> {
        let _ = bytes;
        Ok(())
    }
    /// Whether instances run the image given to [`Backend::prepare`]. The microVM's probe guest
    /// boots its built-in payload instead, so an explicit `--image` means nothing to it.
    fn runs_image(&self) -> bool {
        true
    }
    /// Where this backend builds and caches what it derives from the image (disks, payloads); the
    /// command line's `--image-cache`. Backends that build nothing ignore it.
    fn set_cache_root(&mut self, root: &std::path::Path) {
        let _ = root;
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

/// Whether `backend` can run `workload` here: [`Backend::supports`], and for a workload reached from
/// outside, [`Backend::networking`].
pub fn can_run(backend: &dyn Backend, workload: &WorkloadSpec) -> Result<(), Unavailable> {
    // `http` reached from outside still runs without a network path (its outside figures are then
    // missing, see runner::outside_note); these three are nothing without one.
    let needs_network = matches!(workload, WorkloadSpec::HttpOutside { .. }) || workload.kind().is_service();
    if needs_network && !backend.networking() {
        return Err(Unavailable {
            reason: format!(
                "{} has no network path to the client namespace yet ({} needs one)",
                backend.name(),
                workload.kind()
            ),
        });
    }
    backend.supports(workload)
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
    /// The last output of the instance's workload (a tail of its stderr, on one line), for the error
    /// of a served workload that ended after READY. `None` where the backend keeps none.
    fn last_output(&self) -> Option<String> {
        None
    }
    /// The instance's address as seen from the client network namespace (`None` without networking).
    fn address(&self) -> Option<std::net::Ipv4Addr> {
        None
    }
    /// Releases every resource (processes, mounts, cgroup, scratch files) and reports failures.
    fn destroy(self: Box<Self>) -> Result<(), BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeError;

    #[test]
    fn errors_keep_their_source_with_stage_pid_and_path() {
        let err = BackendError::probe("runc", Stage::MemoryProbe)(ProbeError::ProcessGone {
            pid: 42,
            path: PathBuf::from("/proc/42/smaps_rollup"),
        });
        assert_eq!(
            err.to_string(),
            "runc: memory probe: process 42 is gone (no /proc/42/smaps_rollup)"
        );
        let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<ProbeError>());
        assert!(
            matches!(source, Some(ProbeError::ProcessGone { pid: 42, .. })),
            "{source:?}"
        );
    }

    #[test]
    fn child_states_are_typed_and_read_as_words() {
        use std::os::unix::process::ExitStatusExt;
        let exited = ChildState::from(std::process::ExitStatus::from_raw(3 << 8));
        assert_eq!(exited, ChildState::Exited(3));
        assert!(!exited.success() && !exited.is_running());
        assert!(ChildState::from(std::process::ExitStatus::from_raw(0)).success());
        let killed = ChildState::from(std::process::ExitStatus::from_raw(15));
        assert_eq!(killed, ChildState::Signaled(15));
        assert_eq!(killed.to_string(), "killed by SIGTERM");
        assert_eq!(ChildState::Signaled(40).to_string(), "killed by signal 40");
        assert_eq!(exited.to_string(), "exit status 3");
        assert_eq!(
            ChildState::from(container::ExitStatus::Signaled(nix::sys::signal::Signal::SIGKILL)),
            ChildState::Signaled(9)
        );
    }
}
