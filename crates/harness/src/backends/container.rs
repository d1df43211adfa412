//! The built-in container runtime (`crates/container`) as a [`crate::Backend`].
//!
//! One instance = one [`::container::Container`]: its own mount/pid/uts/ipc/net namespaces, an
//! overlay of the shared image, a `cvbench-<instance>` cgroup with the launch limits. Phases, all
//! measured on the host at the event from `LaunchSpec::request`:
//! `start_to_rootfs_ready_ms` (the child reported namespaces and rootfs ready),
//! `start_to_confined_ms` (it reported the `--confinement` applied: masked and read-only paths,
//! rlimits, capabilities, no_new_privs, seccomp; absent at `none`), `start_to_exec_ms` (its CLOEXEC error pipe closed: execve succeeded) and `start_to_ready_ms`
//! (the `CVBENCH READY` line was read from its stdout pipe).
//!
//! Memory: PSS summed over the processes in the container's cgroup, plus the cgroup's own usage
//! figure as `cgroup_memory_bytes`. Disk: allocated bytes of the overlay upper dir.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ::container::{Container, ContainerConfig, ContainerDeps, CpuQuota, Limits, LineEvent, OutputLines};
use workload::spec::WORKLOAD_PATH_IN_IMAGE;
use workload::WorkloadResult;

use super::lines::{self, Next, ReadySource};
use super::process::{KILL_WAIT, STOP_GRACE};
use crate::backend::{
    Backend, BackendError, ChildState, DiskProbe, Instance, LaunchSpec, MemoryProbe, PhaseMark, SharedImage,
    Stage, Unavailable,
};
use crate::metrics::{
    CGROUP_MEMORY_BYTES, START_TO_CONFINED_MS, START_TO_EXEC_MS, START_TO_NETWORK_READY_MS,
    START_TO_READY_MS, START_TO_ROOTFS_READY_MS,
};
use crate::net::InstanceNet;
use crate::probe;
use crate::results::{Isolation, IsolationKind};

const NAME: &str = "container";

/// The built-in runtime. State lives under `<state_root>/containers/` (default `/run/cvbench`).
#[derive(Debug)]
pub struct ContainerBackend {
    state_root: PathBuf,
    /// Detected once (cgroup layout, cgroup namespace support); launches reuse it.
    deps: OnceLock<Result<ContainerDeps, String>>,
}

impl Default for ContainerBackend {
    fn default() -> Self {
        ContainerBackend::new()
    }
}

impl ContainerBackend {
    pub fn new() -> Self {
        ContainerBackend::with_state_root(Path::new(::container::DEFAULT_STATE_ROOT))
    }

    /// State under `state_root` instead of `/run/cvbench` (tests use a temporary directory).
    pub fn with_state_root(state_root: &Path) -> Self {
        ContainerBackend {
            state_root: state_root.to_path_buf(),
            deps: OnceLock::new(),
        }
    }

    fn deps(&self) -> Result<ContainerDeps, BackendError> {
        self.deps
            .get_or_init(|| ContainerDeps::host().map_err(|e| e.to_string()))
            .clone()
            .map_err(|reason| setup_err(format!("detecting the host's cgroups: {reason}")))
    }

    /// Marks this process as a live harness for `bench cleanup` (see [`crate::rundir`]).
    fn hold_run_lock(&self) -> Result<(), BackendError> {
        crate::rundir::hold_shared(&self.state_root).map_err(BackendError::io(
            NAME,
            format!("locking {}", crate::rundir::lock_path(&self.state_root).display()),
        ))
    }

    fn config(&self, spec: &LaunchSpec, net: Option<&InstanceNet>) -> ContainerConfig {
        let mut args = vec![WORKLOAD_PATH_IN_IMAGE.to_string()];
        args.extend(spec.workload.to_args());
        let mut config = ContainerConfig::new(&spec.instance_name, &spec.image_dir, args);
        config.state_root = self.state_root.clone();
        config.limits = Limits {
            memory_bytes: spec.memory_limit_bytes,
            cpu: spec.cpu_limit.and_then(CpuQuota::from_cpus),
            pids: spec.pids_limit,
        };
        config.confinement = spec.confinement;
        config.net_namespace = net.map(InstanceNet::netns_path);
        config
    }
}

fn setup_err(reason: impl Into<String>) -> BackendError {
    BackendError::setup(NAME, reason)
}

fn failed(reason: impl Into<String>) -> BackendError {
    BackendError::WorkloadFailed {
        backend: NAME.into(),
        reason: reason.into(),
    }
}

/// Stdout and stderr tails (each bounded and escaped) on one line, for error messages.
fn output_tail(lines: &OutputLines, container: &Container) -> String {
    let (stdout, stderr) = (lines.tail(), container.stderr_tail());
    match (stdout.is_empty(), stderr.is_empty()) {
        (false, false) => format!("{stdout} | stderr: {stderr}"),
        (true, false) => stderr,
        _ => stdout,
    }
}

impl Backend for ContainerBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn isolation(&self) -> Isolation {
        Isolation::host_kernel(IsolationKind::Container)
    }

    fn check_host(&self) -> Result<(), Unavailable> {
        ::container::check_host(Path::new("/proc")).map_err(|reason| Unavailable { reason })
    }

    fn labels(&self) -> Vec<(String, String)> {
        match self.deps() {
            Ok(d) => vec![
                ("cgroup_version".to_string(), d.cgroups.version().to_string()),
                ("cgroup_namespace".to_string(), d.cgroup_namespace.to_string()),
            ],
            Err(_) => Vec::new(),
        }
    }

    fn applies_confinement(&self) -> bool {
        true
    }

    fn networking(&self) -> bool {
        true
    }

    fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
        super::check_image_workload(NAME, image_dir)?;
        self.deps()?;
        self.hold_run_lock()?;
        let bytes = probe::allocated_bytes(image_dir).map_err(BackendError::probe(NAME, Stage::Prepare))?;
        Ok(SharedImage {
            bytes,
            description: format!("rootfs directory {} (overlay lowerdir)", image_dir.display()),
        })
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
        let deps = self.deps()?;
        self.hold_run_lock()?;
        let mut phases = Vec::with_capacity(5);
        // Made before the container, so dropped after it on any early return.
        let net = super::attach_network(NAME, spec)?;
        if net.is_some() {
            phases.push(PhaseMark::new(
                START_TO_NETWORK_READY_MS,
                spec.request,
                Instant::now(),
            ));
        }
        // Any early return drops `container`, which kills and removes everything it created.
        let mut container = Container::create(self.config(spec, net.as_ref()), deps)
            .map_err(BackendError::container(NAME, Stage::Create))?;
        container
            .start()
            .map_err(BackendError::container(NAME, Stage::Start))?;
        let events = container.events();
        if let Some(at) = events.rootfs_ready {
            phases.push(PhaseMark::new(START_TO_ROOTFS_READY_MS, spec.request, at));
        }
        if let Some(at) = events.confined {
            phases.push(PhaseMark::new(START_TO_CONFINED_MS, spec.request, at));
        }
        if let Some(at) = events.exec {
            phases.push(PhaseMark::new(START_TO_EXEC_MS, spec.request, at));
        }
        let stdout = container
            .take_stdout()
            .ok_or_else(|| setup_err("the workload's stdout was not captured"))?;
        let mut launching = Launching {
            container,
            lines: OutputLines::new(stdout),
        };
        let ready = lines::wait_ready(
            &mut launching,
            spec.request + spec.ready_timeout,
            spec.ready_timeout,
        )?;
        phases.push(PhaseMark::new(START_TO_READY_MS, spec.request, ready));
        Ok(Box::new(ContainerInstance {
            container: Some(launching.container),
            lines: launching.lines,
            phases,
            exits_by_itself: spec.workload.exits_by_itself(),
            net,
        }))
    }
}

/// A container between start and READY.
struct Launching {
    container: Container,
    lines: OutputLines,
}

impl ReadySource for Launching {
    type Message = (Instant, String);

    fn next(&mut self, deadline: Instant) -> Result<Next<Self::Message>, BackendError> {
        let event = self.lines.next_line(Some(deadline)).map_err(BackendError::io(
            NAME,
            format!("reading the stdout of {}", self.container.name()),
        ))?;
        Ok(match event {
            LineEvent::Line { text, at } => Next::Message((at, text)),
            LineEvent::Eof => Next::Eof,
            LineEvent::TimedOut => Next::Timeout,
        })
    }

    fn on_message(&mut self, (at, line): Self::Message) -> Result<Option<Instant>, BackendError> {
        Ok(super::line_before_ready(NAME, &line)?.then_some(at))
    }

    fn exited_before_ready(&mut self) -> BackendError {
        let status = match self.container.wait_timeout(KILL_WAIT) {
            Ok(Some(status)) => status.into(),
            Ok(None) => ChildState::Running,
            Err(e) => ChildState::Unknown(container_error_kind(&e)),
        };
        BackendError::ExitedBeforeReady {
            backend: NAME.into(),
            status,
            output: output_tail(&self.lines, &self.container),
        }
    }

    fn ready_timeout(&self, timeout: Duration) -> BackendError {
        BackendError::ReadyTimeout {
            backend: NAME.into(),
            timeout,
            output: output_tail(&self.lines, &self.container),
        }
    }
}

/// The I/O error kind behind a container error (`Other` when it has none).
fn container_error_kind(e: &::container::ContainerError) -> std::io::ErrorKind {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .map_or(std::io::ErrorKind::Other, std::io::Error::kind)
}

struct ContainerInstance {
    /// `None` once destroyed.
    container: Option<Container>,
    lines: OutputLines,
    phases: Vec<PhaseMark>,
    /// Self-ending workloads are read until EOF; the others are stopped with a signal.
    exits_by_itself: bool,
    /// The instance's network namespace and veth (dropped after the container is destroyed).
    net: Option<InstanceNet>,
}

impl ContainerInstance {
    fn container(&self) -> Result<&Container, BackendError> {
        self.container
            .as_ref()
            .ok_or_else(|| setup_err("the container was already destroyed"))
    }
}

impl Instance for ContainerInstance {
    fn last_output(&self) -> Option<String> {
        self.container.as_ref().map(|c| c.stderr_tail())
    }

    fn phases(&self) -> Vec<PhaseMark> {
        self.phases.clone()
    }

    fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.net.as_ref().map(|n| n.addr)
    }

    fn host_pids(&self) -> Vec<i32> {
        self.container
            .as_ref()
            .and_then(|c| c.processes().ok())
            .unwrap_or_default()
    }

    fn memory(&self) -> Result<MemoryProbe, BackendError> {
        let c = self.container()?;
        let pids = c
            .processes()
            .map_err(BackendError::container(NAME, Stage::MemoryProbe))?;
        let pss_bytes = probe::pss_bytes(&pids).map_err(BackendError::probe(NAME, Stage::MemoryProbe))?;
        let usage = c
            .usage()
            .map_err(BackendError::container(NAME, Stage::MemoryProbe))?;
        Ok(MemoryProbe {
            pss_bytes,
            extra: vec![(CGROUP_MEMORY_BYTES.to_string(), usage.memory_bytes)],
        })
    }

    fn disk(&self) -> Result<DiskProbe, BackendError> {
        let upper = &self.container()?.dirs().upper_dir;
        let instance_bytes =
            probe::allocated_bytes(upper).map_err(BackendError::probe(NAME, Stage::DiskProbe))?;
        Ok(DiskProbe { instance_bytes })
    }

    fn finish(&mut self, timeout: Duration) -> Result<Option<WorkloadResult>, BackendError> {
        let deadline = Instant::now() + timeout;
        let Some(container) = self.container.as_mut() else {
            return Err(setup_err("the container was already destroyed"));
        };
        if !self.exits_by_itself {
            container
                .stop(STOP_GRACE.min(timeout))
                .map_err(BackendError::container(NAME, Stage::Stop))?;
            return Ok(None);
        }
        let mut result = None;
        loop {
            let event = self
                .lines
                .next_line(Some(deadline))
                .map_err(BackendError::io(NAME, "reading the workload's stdout"))?;
            match event {
                LineEvent::Line { text, .. } => {
                    if let Some(r) = super::line_after_ready(NAME, &text)? {
                        result = Some(r);
                    }
                }
                LineEvent::Eof => break,
                LineEvent::TimedOut => return Err(failed(format!("no exit within {timeout:?} after READY"))),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let status = container
            .wait_timeout(left)
            .map_err(BackendError::container(NAME, Stage::Wait))?;
        match status {
            Some(s) if s.success() => {}
            Some(s) => {
                return Err(failed(format!(
                    "the workload ended with {s}: {}",
                    container.stderr_tail()
                )))
            }
            None => {
                return Err(failed(format!(
                    "the workload closed stdout but did not exit within {timeout:?}"
                )))
            }
        }
        match result {
            Some(r) => Ok(Some(r)),
            None => Err(failed(
                "the workload exited with status 0 but printed no CVBENCH RESULT line",
            )),
        }
    }

    fn destroy(mut self: Box<Self>) -> Result<(), BackendError> {
        match self.container.take() {
            Some(c) => c.destroy().map_err(|e| BackendError::Teardown {
                backend: NAME.into(),
                reason: e.to_string(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_spec_limits_become_container_limits() {
        let backend = ContainerBackend::with_state_root(Path::new("/tmp/cvbench-test-state"));
        let spec = LaunchSpec {
            request: Instant::now(),
            image_dir: PathBuf::from("/img"),
            workload: workload::WorkloadSpec::Idle,
            instance_name: "cvbench-container-idle-1-0".into(),
            memory_limit_bytes: Some(128 << 20),
            cpu_limit: Some(0.5),
            pids_limit: Some(64),
            ready_timeout: Duration::from_secs(5),
            confinement: crate::Confinement::Docker,
            network: None,
        };
        let c = backend.config(&spec, None);
        assert_eq!(
            c.args,
            vec![WORKLOAD_PATH_IN_IMAGE.to_string(), "idle".to_string()]
        );
        assert_eq!(c.name, "cvbench-container-idle-1-0");
        assert_eq!(c.confinement, crate::Confinement::Docker);
        assert_eq!(c.state_root, PathBuf::from("/tmp/cvbench-test-state"));
        assert_eq!(
            c.limits,
            Limits {
                memory_bytes: Some(128 << 20),
                cpu: Some(CpuQuota {
                    quota_us: 50_000,
                    period_us: 100_000
                }),
                pids: Some(64)
            }
        );
    }

    #[test]
    fn container_cells_say_which_confinement_they_ran_under() {
        let backend = ContainerBackend::with_state_root(Path::new("/tmp/cvbench-test-state"));
        let opts = |confinement| crate::runner::RunOptions {
            confinement,
            ..crate::runner::RunOptions::default()
        };
        let labels = crate::runner::cell_labels(&backend, &opts(crate::Confinement::None));
        assert_eq!(labels.get("confinement").map(String::as_str), Some("none"));
        // A backend that does not apply it (the mock, like the VMs) gets no such label.
        let mock = crate::backends::mock::MockBackend::from_env();
        assert!(
            !crate::runner::cell_labels(&mock, &opts(crate::Confinement::Docker)).contains_key("confinement")
        );
    }

    #[test]
    fn an_image_without_the_workload_is_refused_by_prepare() {
        let image = tempfile::tempdir().unwrap();
        let err = ContainerBackend::new().prepare(image.path()).unwrap_err();
        assert!(err.to_string().contains(WORKLOAD_PATH_IN_IMAGE), "{err}");
    }

    #[test]
    fn a_script_workload_without_its_interpreter_is_named_by_prepare() {
        let image = tempfile::tempdir().unwrap();
        let workload = image.path().join(WORKLOAD_PATH_IN_IMAGE.trim_start_matches('/'));
        std::fs::create_dir_all(workload.parent().unwrap()).unwrap();
        std::fs::write(&workload, "#!/bin/sh\necho CVBENCH READY\n").unwrap();
        for backend in [
            Box::new(ContainerBackend::new()) as Box<dyn Backend>,
            crate::backend_by_name("runc").unwrap(),
        ] {
            let err = backend.prepare(image.path()).unwrap_err().to_string();
            assert!(
                err.contains("/bin/sh") && err.contains("interpreter") && err.contains("static binary"),
                "{}: {err}",
                backend.name()
            );
        }
    }

    /// Launches through the backend with the real workload image (root, built binaries).
    mod launch {
        use super::*;

        struct Setup {
            _cache: tempfile::TempDir,
            state: tempfile::TempDir,
            image_dir: PathBuf,
            backend: ContainerBackend,
        }

        fn setup() -> Option<Setup> {
            if testkit::skip_unless_root("namespaces, mounts, cgroups") {
                return None;
            }
            let bin = match rootfs::locate_binary(rootfs::WORKLOAD_BIN) {
                Ok(b) => b,
                Err(e) => {
                    testkit::skip(testkit::Requirement::Binaries, e);
                    return None;
                }
            };
            let cache = tempfile::tempdir().unwrap();
            let image = rootfs::build_default_image(cache.path(), &bin).unwrap();
            let state = tempfile::tempdir().unwrap();
            let backend = ContainerBackend::with_state_root(state.path());
            Some(Setup {
                image_dir: image.dir,
                _cache: cache,
                state,
                backend,
            })
        }

        fn spec(s: &Setup, tag: &str, workload: workload::WorkloadSpec, timeout: Duration) -> LaunchSpec {
            LaunchSpec {
                request: Instant::now(),
                image_dir: s.image_dir.clone(),
                workload,
                instance_name: format!("cvbench-container-{tag}-{}-0", std::process::id()),
                memory_limit_bytes: Some(256 << 20),
                cpu_limit: None,
                pids_limit: Some(128),
                ready_timeout: timeout,
                confinement: crate::Confinement::default(),
                network: None,
            }
        }

        fn leftovers(s: &Setup) -> Vec<String> {
            std::fs::read_dir(s.state.path().join("containers"))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        }

        #[test]
        fn idle_reports_ordered_phases_memory_and_disk_then_stops() {
            let Some(s) = setup() else { return };
            assert!(s.backend.prepare(&s.image_dir).unwrap().bytes > 0);
            let mut inst = s
                .backend
                .launch(&spec(
                    &s,
                    "idle",
                    workload::WorkloadSpec::Idle,
                    Duration::from_secs(10),
                ))
                .unwrap();
            let phases = inst.phases();
            let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    START_TO_ROOTFS_READY_MS,
                    START_TO_CONFINED_MS,
                    START_TO_EXEC_MS,
                    START_TO_READY_MS
                ]
            );
            assert!(
                phases
                    .windows(2)
                    .all(|w| w[0].since_request <= w[1].since_request),
                "{phases:?}"
            );
            assert_eq!(inst.host_pids().len(), 1);
            let mem = inst.memory().unwrap();
            assert!(mem.pss_bytes > 0);
            assert!(
                mem.extra.iter().any(|(k, v)| k == CGROUP_MEMORY_BYTES && *v > 0),
                "{mem:?}"
            );
            inst.disk().unwrap();
            assert_eq!(inst.finish(Duration::from_secs(10)).unwrap(), None);
            inst.destroy().unwrap();
            assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
        }

        #[test]
        fn oltp_reports_its_result_and_exits_zero() {
            let Some(s) = setup() else { return };
            let w = workload::WorkloadSpec::Oltp {
                rows: 200,
                transactions: 20,
            };
            let mut inst = s
                .backend
                .launch(&spec(&s, "oltp", w, Duration::from_secs(30)))
                .unwrap();
            let result = inst.finish(Duration::from_secs(60)).unwrap().unwrap();
            assert_eq!(result.workload, "oltp");
            assert!(result.metrics.get("tps").is_some_and(|t| *t > 0.0), "{result:?}");
            assert!(
                inst.disk().unwrap().instance_bytes > 0,
                "the database lives in the upper dir"
            );
            inst.destroy().unwrap();
            assert!(leftovers(&s).is_empty());
        }

        /// An image whose `cvbench-workload` is the container crate's static test helper; `None`
        /// (after printing why) when it is not built.
        fn testproc_image() -> Option<tempfile::TempDir> {
            let testproc = match rootfs::locate_binary("cvbench-testproc") {
                Ok(p) => p,
                Err(e) => {
                    testkit::skip(testkit::Requirement::Binaries, e);
                    return None;
                }
            };
            let image = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(image.path().join("bin")).unwrap();
            std::fs::copy(&testproc, image.path().join("bin/cvbench-workload")).unwrap();
            Some(image)
        }

        #[test]
        fn a_workload_that_exits_before_ready_is_reported_with_its_output() {
            let Some(s) = setup() else { return };
            // The container crate's test helper in place of the workload: it does not know `oltp`,
            // says so on stderr and exits 2.
            let Some(image) = testproc_image() else { return };
            let mut launch = spec(
                &s,
                "early",
                workload::WorkloadSpec::Oltp {
                    rows: 1,
                    transactions: 1,
                },
                Duration::from_secs(10),
            );
            launch.image_dir = image.path().to_path_buf();
            let err = s.backend.launch(&launch).err().unwrap();
            match &err {
                BackendError::ExitedBeforeReady { status, output, .. } => {
                    assert_eq!(*status, ChildState::Exited(2));
                    assert!(output.contains("unknown subcommand"), "{output}");
                }
                other => panic!("expected ExitedBeforeReady, got {other}"),
            }
            assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
        }

        #[test]
        fn a_self_ending_workload_without_a_result_line_fails_the_run() {
            let Some(s) = setup() else { return };
            // The container crate's test helper as `cvbench-workload http`: READY, then exit 0.
            let Some(image) = testproc_image() else { return };
            let http = workload::WorkloadSpec::default_for(workload::WorkloadKind::Http);
            let mut launch = spec(&s, "noresult", http, Duration::from_secs(10));
            launch.image_dir = image.path().to_path_buf();
            let mut inst = s.backend.launch(&launch).unwrap();
            let err = inst.finish(Duration::from_secs(10)).unwrap_err().to_string();
            assert!(err.contains("no CVBENCH RESULT line"), "{err}");
            inst.destroy().unwrap();
            assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
        }

        #[test]
        fn a_workload_flooding_nul_bytes_before_ready_gets_an_escaped_bounded_error() {
            let Some(s) = setup() else { return };
            let busybox = Path::new("/usr/bin/busybox");
            if !busybox.is_file() {
                println!("skipped: no static /usr/bin/busybox (apt-get install busybox-static)");
                return;
            }
            // NUL bytes on stdout and stderr as fast as it can, never READY.
            let image = tempfile::tempdir().unwrap();
            let bin = image.path().join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::copy(busybox, bin.join("busybox")).unwrap();
            std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
            let script = bin.join("cvbench-workload");
            std::fs::write(
                &script,
                "#!/bin/sh\n/bin/busybox cat /dev/zero >&2 &\nexec /bin/busybox cat /dev/zero\n",
            )
            .unwrap();
            std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            let mut launch = spec(&s, "zeros", workload::WorkloadSpec::Idle, Duration::from_secs(3));
            launch.image_dir = image.path().to_path_buf();
            let err = s.backend.launch(&launch).err().expect("never READY");
            let text = err.to_string();
            println!("error ({} bytes): {text:.300}", text.len());
            assert!(matches!(err, BackendError::ReadyTimeout { .. }), "{text:.300}");
            assert!(!text.contains('\0'), "raw NUL bytes in the error");
            assert!(text.len() < 16 * 1024, "error of {} bytes", text.len());
            assert!(text.contains("\\x00×"), "{text:.300}");
            assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
        }

        #[test]
        fn a_ready_timeout_is_reported_and_leaves_nothing() {
            let Some(s) = setup() else { return };
            let err = s
                .backend
                .launch(&spec(&s, "timeout", workload::WorkloadSpec::Idle, Duration::ZERO))
                .err()
                .unwrap();
            assert!(matches!(err, BackendError::ReadyTimeout { .. }), "{err}");
            assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
        }
    }
}
