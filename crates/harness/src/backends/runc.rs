//! runc over the same image, as a [`crate::Backend`]: the peer users know.
//!
//! Per instance, what Docker does underneath: an overlay mount (the shared image as lowerdir, upper and
//! work dirs under `/run/cvbench/runc/<name>/`) as the bundle's rootfs, a `config.json` written with
//! the `oci-spec` crate, and `runc --root /run/cvbench/runc-state run --bundle <dir> <name>` in the
//! foreground with the workload's stdout on a pipe. runc does not report when it execs the workload,
//! so the only phase it shows is `start_to_ready_ms` (the READY line became readable).
//!
//! Memory: PSS of the container's processes (`runc ps`), the cgroup's usage, and the PSS of the
//! `runc run` process that stays alive as the container's parent (`runtime_pss_bytes`).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, Spec,
};
use workload::spec::WORKLOAD_PATH_IN_IMAGE;
use workload::{parse_line, ProtocolLine, WorkloadResult};

use super::lines::{self, Next};
use crate::backend::{
    Backend, BackendError, DiskProbe, Instance, LaunchSpec, MemoryProbe, PhaseMark, SharedImage, Unavailable,
};
use crate::cleanup::{remove_instance_dirs, CleanupReport, CleanupScope};
use crate::metrics::{CGROUP_MEMORY_BYTES, RUNTIME_PSS_BYTES, START_TO_READY_MS};
use crate::probe;
use crate::results::{Isolation, IsolationKind};

const NAME: &str = "runc";
/// Where bundles (config.json, overlay rootfs, upper/work dirs, stderr log) live, one dir per instance.
pub const BUNDLES_DIR: &str = "/run/cvbench/runc";
/// runc's own state directory (`runc --root`), kept apart from any system runc.
pub const STATE_DIR: &str = "/run/cvbench/runc-state";
/// How long an idle workload gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Upper bound on the CFS period-based quota computation.
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone)]
pub struct RuncBackend {
    runc: PathBuf,
    state_dir: PathBuf,
    bundles_dir: PathBuf,
}

impl Default for RuncBackend {
    fn default() -> Self {
        RuncBackend::new()
    }
}

impl RuncBackend {
    /// State under `/run/cvbench` (where `bench cleanup` looks).
    pub fn new() -> Self {
        RuncBackend {
            runc: PathBuf::from("runc"),
            state_dir: STATE_DIR.into(),
            bundles_dir: BUNDLES_DIR.into(),
        }
    }

    /// Bundles in `<root>/runc` and runc's state in `<root>/runc-state` (tests use a temp dir).
    pub fn with_root(root: &Path) -> Self {
        RuncBackend {
            runc: PathBuf::from("runc"),
            state_dir: root.join("runc-state"),
            bundles_dir: root.join("runc"),
        }
    }

    fn runc(&self) -> Command {
        let mut c = Command::new(&self.runc);
        c.arg("--root").arg(&self.state_dir);
        c
    }

    /// `runc --version`'s first line's version, e.g. `1.1.5+ds1`.
    fn version(&self) -> Result<String, String> {
        let out = Command::new(&self.runc)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run `{} --version`: {e}", self.runc.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`{} --version` failed: {}",
                self.runc.display(),
                out.status
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or_default();
        Ok(first
            .strip_prefix("runc version ")
            .unwrap_or(first)
            .trim()
            .to_string())
    }

    fn setup_err(reason: impl Into<String>) -> BackendError {
        BackendError::setup(NAME, reason)
    }

    fn io_err(context: String) -> impl FnOnce(std::io::Error) -> BackendError {
        BackendError::io(NAME, context)
    }
}

impl Backend for RuncBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn isolation(&self) -> Isolation {
        Isolation::host_kernel(IsolationKind::OciRuntime)
    }

    fn check_host(&self) -> Result<(), Unavailable> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Unavailable {
                reason: "runc needs root (run bench as root)".into(),
            });
        }
        self.version().map_err(|e| Unavailable {
            reason: format!("{e}; install it with `apt-get install runc`"),
        })?;
        let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
        {
            return Err(Unavailable {
                reason: "the kernel has no overlayfs (modprobe overlay)".into(),
            });
        }
        Ok(())
    }

    fn applies_confinement(&self) -> bool {
        true
    }

    fn labels(&self) -> Vec<(String, String)> {
        self.version()
            .map(|v| vec![("runc_version".to_string(), v)])
            .unwrap_or_default()
    }

    fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
        super::check_image_workload(NAME, image_dir)?;
        for dir in [&self.state_dir, &self.bundles_dir] {
            fs::create_dir_all(dir).map_err(Self::io_err(format!("creating {}", dir.display())))?;
        }
        let bytes = probe::allocated_bytes(image_dir).map_err(|e| Self::setup_err(e.to_string()))?;
        Ok(SharedImage {
            bytes,
            description: format!("rootfs directory {} (overlay lowerdir)", image_dir.display()),
        })
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
        let bundle = self.bundles_dir.join(&spec.instance_name);
        // From here on, dropping `instance` tears down whatever exists so far.
        let mut instance = RuncInstance {
            backend: self.clone(),
            name: spec.instance_name.clone(),
            bundle: bundle.clone(),
            rootfs_mounted: false,
            child: None,
            lines: None,
            phases: Vec::new(),
            exits_by_itself: spec.workload.exits_by_itself(),
            torn_down: false,
        };
        let rootfs = bundle.join("rootfs");
        for dir in ["upper", "work", "rootfs"] {
            let d = bundle.join(dir);
            crate::rundir::create_dir(&d).map_err(Self::io_err(format!("creating {}", d.display())))?;
        }
        let lower = spec.image_dir.to_string_lossy();
        if lower.contains([',', ':']) {
            return Err(Self::setup_err(format!(
                "image path {lower} contains ',' or ':' (overlayfs cannot take it)"
            )));
        }
        let options = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            bundle.join("upper").display(),
            bundle.join("work").display()
        );
        mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| Self::setup_err(format!("mounting overlay at {}: {e}", rootfs.display())))?;
        instance.rootfs_mounted = true;

        let config = oci_config(spec).map_err(|e| Self::setup_err(format!("building config.json: {e}")))?;
        let config_path = bundle.join("config.json");
        config
            .save(&config_path)
            .map_err(|e| Self::setup_err(format!("writing {}: {e}", config_path.display())))?;

        let stderr_path = bundle.join("stderr.log");
        let stderr = fs::File::create(&stderr_path)
            .map_err(Self::io_err(format!("creating {}", stderr_path.display())))?;
        let mut child = self
            .runc()
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&spec.instance_name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Its own process group: a Ctrl-C on the terminal reaches only the harness, which then
            // finishes the current run cleanly instead of runc forwarding the signal to the workload.
            .process_group(0)
            .spawn()
            .map_err(|e| Self::setup_err(format!("starting `{} run`: {e}", self.runc.display())))?;
        let stdout = child.stdout.take();
        instance.child = Some(child);
        let Some(stdout) = stdout else {
            return Err(Self::setup_err("runc's stdout was not captured"));
        };
        let (tx, rx) = mpsc::channel();
        lines::spawn_reader(
            format!("{}-stdout", spec.instance_name),
            stdout,
            tx,
            |at, line| (at, line),
        )
        .map_err(Self::io_err("spawning the stdout reader".into()))?;
        instance.lines = Some(rx);

        let deadline = spec.request + spec.ready_timeout;
        loop {
            match instance.next_line(deadline) {
                Next::Message((at, line)) => match parse_line(&line) {
                    Ok(Some(ProtocolLine::Ready { .. })) => {
                        instance
                            .phases
                            .push(PhaseMark::new(START_TO_READY_MS, spec.request, at));
                        return Ok(Box::new(instance));
                    }
                    Ok(Some(ProtocolLine::Error(text))) => {
                        return Err(BackendError::WorkloadFailed {
                            backend: NAME.into(),
                            reason: text,
                        })
                    }
                    Ok(Some(ProtocolLine::Result(_)) | None) => {}
                    Err(e) => return Err(Self::setup_err(e.to_string())),
                },
                Next::Eof => {
                    let status = instance.wait_child(Duration::from_secs(5));
                    return Err(BackendError::ExitedBeforeReady {
                        backend: NAME.into(),
                        status: status_text(status.as_ref()),
                        output: instance.stderr_tail(),
                    });
                }
                Next::Timeout => {
                    return Err(BackendError::ReadyTimeout {
                        backend: NAME.into(),
                        timeout: spec.ready_timeout,
                        output: instance.stderr_tail(),
                    })
                }
            }
        }
    }
}

/// The OCI runtime config for one instance: the workload as the only process, no terminal, its own
/// pid/mount/ipc/uts/network namespaces, the limits from the launch spec as cgroup limits, the
/// launch's `--confinement` (see [`super::oci_confine`]).
pub fn oci_config(spec: &LaunchSpec) -> Result<Spec, oci_spec::OciSpecError> {
    let mut config = Spec::default();
    super::oci_confine::apply(&mut config, spec.confinement)?;
    config.set_hostname(Some(spec.instance_name.clone()));
    let mut root = config.root().clone().unwrap_or_default();
    root.set_readonly(Some(false));
    root.set_path(PathBuf::from("rootfs"));
    config.set_root(Some(root));

    let mut process = config.process().clone().unwrap_or_default();
    let mut args = vec![WORKLOAD_PATH_IN_IMAGE.to_string()];
    args.extend(spec.workload.to_args());
    process.set_args(Some(args));
    process.set_terminal(Some(false));
    process.set_env(Some(vec!["PATH=/bin".to_string()]));
    config.set_process(Some(process));

    let mut mounts = config.mounts().clone().unwrap_or_default();
    mounts.push(tmp_mount()?);
    config.set_mounts(Some(mounts));

    let mut linux = config.linux().clone().unwrap_or_default();
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .collect::<Result<Vec<_>, _>>()?;
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(PathBuf::from(format!("/{}", spec.instance_name))));

    let mut resources = LinuxResourcesBuilder::default().devices(Vec::new());
    if let Some(limit) = spec.memory_limit_bytes {
        let limit = i64::try_from(limit).map_err(|_| {
            oci_spec::OciSpecError::Other(format!("memory limit {limit} bytes exceeds OCI's i64"))
        })?;
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if let Some(cpus) = spec.cpu_limit {
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let quota = (cpus * CPU_PERIOD_US as f64).round() as i64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_US)
                .build()?,
        );
    }
    if let Some(pids) = spec.pids_limit {
        let pids = i64::try_from(pids)
            .map_err(|_| oci_spec::OciSpecError::Other(format!("pids limit {pids} exceeds OCI's i64")))?;
        resources = resources.pids(LinuxPidsBuilder::default().limit(pids).build()?);
    }
    linux.set_resources(Some(resources.build()?));
    config.set_linux(Some(linux));
    Ok(config)
}

/// `/tmp` as tmpfs, as the built-in runtime gives its containers.
fn tmp_mount() -> Result<Mount, oci_spec::OciSpecError> {
    MountBuilder::default()
        .destination("/tmp")
        .typ("tmpfs")
        .source("tmpfs")
        .options(vec![
            "nosuid".to_string(),
            "nodev".to_string(),
            "mode=1777".to_string(),
        ])
        .build()
}

fn status_text(status: Option<&ExitStatus>) -> String {
    status.map_or_else(|| "still running".to_string(), ToString::to_string)
}

struct RuncInstance {
    backend: RuncBackend,
    name: String,
    bundle: PathBuf,
    rootfs_mounted: bool,
    child: Option<Child>,
    lines: Option<Receiver<(Instant, String)>>,
    phases: Vec<PhaseMark>,
    /// Self-ending workloads are read until EOF; the others are stopped with a signal.
    exits_by_itself: bool,
    torn_down: bool,
}

impl RuncInstance {
    fn next_line(&self, deadline: Instant) -> Next<(Instant, String)> {
        lines::next(self.lines.as_ref(), deadline)
    }

    /// Waits up to `timeout` for `runc run` to exit; `None` while it is still running (or cannot be
    /// waited for).
    fn wait_child(&mut self, timeout: Duration) -> Option<ExitStatus> {
        lines::wait_timeout(self.child.as_mut()?, timeout).ok().flatten()
    }

    fn child_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// The last few hundred bytes of runc's and the workload's stderr, on one line.
    fn stderr_tail(&self) -> String {
        let text = fs::read_to_string(self.bundle.join("stderr.log")).unwrap_or_default();
        let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let start = one_line.char_indices().rev().nth(400).map_or(0, |(i, _)| i);
        one_line[start..].to_string()
    }

    fn runc_signal(&self, signal: &str) {
        let _ = self
            .backend
            .runc()
            .args(["kill", &self.name, signal])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Pids of the container's processes (host pid namespace): read from the container's cgroup
    /// (`cgroupsPath` is `/<name>`; v1 memory controller, else the v2 root), which takes microseconds;
    /// `runc ps` (a Go program starting up) only when neither is there.
    fn container_pids(&self) -> Result<Vec<i32>, BackendError> {
        let cgroup_root = Path::new("/sys/fs/cgroup");
        for procs in [
            cgroup_root.join("memory").join(&self.name).join("cgroup.procs"),
            cgroup_root.join(&self.name).join("cgroup.procs"),
        ] {
            if let Ok(text) = fs::read_to_string(&procs) {
                return Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect());
            }
        }
        let out = self
            .backend
            .runc()
            .args(["ps", "--format", "json", &self.name])
            .output()
            .map_err(RuncBackend::io_err(format!("running `runc ps {}`", self.name)))?;
        if !out.status.success() {
            return Err(RuncBackend::setup_err(format!(
                "`runc ps {}` failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice::<Vec<i32>>(&out.stdout)
            .map_err(|e| RuncBackend::setup_err(format!("`runc ps {}` printed no pid list: {e}", self.name)))
    }

    /// Idempotent: stops the container and its `runc run`, deletes runc's state, unmounts the rootfs
    /// and removes the bundle. Collects every failure instead of stopping at the first.
    fn teardown(&mut self) -> Result<(), String> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        // The container may not exist yet (a ready timeout can hit while runc is still creating
        // it), so keep killing until `runc run` has exited.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.child_exited() && Instant::now() < deadline {
            if self.backend.state_dir.join(&self.name).exists() {
                self.runc_signal("KILL");
            }
            self.wait_child(Duration::from_millis(20));
        }
        if !self.child_exited() {
            if let Some(child) = self.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            problems.push(format!(
                "runc run {} did not exit after SIGKILL; killed runc itself",
                self.name
            ));
        }
        if self.backend.state_dir.join(&self.name).exists() {
            match self
                .backend
                .runc()
                .args(["delete", "--force", &self.name])
                .output()
            {
                Ok(out) if out.status.success() => {}
                Ok(out) => problems.push(format!(
                    "runc delete --force {}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => problems.push(format!("running runc delete: {e}")),
            }
        }
        if self.rootfs_mounted {
            let rootfs = self.bundle.join("rootfs");
            match umount2(&rootfs, MntFlags::empty()).or_else(|_| umount2(&rootfs, MntFlags::MNT_DETACH)) {
                Ok(()) => self.rootfs_mounted = false,
                Err(e) => problems.push(format!("unmounting {}: {e}", rootfs.display())),
            }
        }
        if !self.rootfs_mounted {
            super::teardown::remove_dir(&self.bundle, &mut problems);
            crate::rundir::prune(&self.backend.bundles_dir);
            crate::rundir::prune(&self.backend.state_dir);
        }
        super::teardown::outcome(problems)
    }
}

impl Instance for RuncInstance {
    fn phases(&self) -> Vec<PhaseMark> {
        self.phases.clone()
    }

    fn host_pids(&self) -> Vec<i32> {
        self.container_pids().unwrap_or_default()
    }

    fn memory(&self) -> Result<MemoryProbe, BackendError> {
        let pids = self.container_pids()?;
        if pids.is_empty() {
            return Err(RuncBackend::setup_err(format!(
                "memory probe: container {} has no processes left",
                self.name
            )));
        }
        let probe_err = |e: probe::ProbeError| RuncBackend::setup_err(format!("memory probe: {e}"));
        let pss_bytes = probe::pss_bytes(&pids).map_err(probe_err)?;
        let mut extra = Vec::new();
        if let Some(&first) = pids.first() {
            extra.push((
                CGROUP_MEMORY_BYTES.to_string(),
                probe::cgroup_memory_bytes(first).map_err(probe_err)?,
            ));
        }
        if let Some(child) = &self.child {
            // Linux pids are below pid_max (at most 2^22): the cast is lossless.
            #[allow(clippy::cast_possible_wrap)]
            let runc_pid = child.id() as i32;
            extra.push((
                RUNTIME_PSS_BYTES.to_string(),
                probe::pss_bytes(&[runc_pid]).map_err(probe_err)?,
            ));
        }
        Ok(MemoryProbe { pss_bytes, extra })
    }

    fn disk(&self) -> Result<DiskProbe, BackendError> {
        let upper = self.bundle.join("upper");
        let instance_bytes =
            probe::allocated_bytes(&upper).map_err(|e| RuncBackend::setup_err(format!("disk probe: {e}")))?;
        Ok(DiskProbe { instance_bytes })
    }

    fn finish(&mut self, timeout: Duration) -> Result<Option<WorkloadResult>, BackendError> {
        let deadline = Instant::now() + timeout;
        let failed = |reason: String| BackendError::WorkloadFailed {
            backend: NAME.into(),
            reason,
        };
        if !self.exits_by_itself {
            self.runc_signal("TERM");
            if self.wait_child(STOP_GRACE.min(timeout)).is_none() {
                self.runc_signal("KILL");
                if self
                    .wait_child(deadline.saturating_duration_since(Instant::now()))
                    .is_none()
                {
                    return Err(failed(format!("did not stop within {timeout:?} after SIGKILL")));
                }
            }
            return Ok(None);
        }
        let mut result = None;
        loop {
            match self.next_line(deadline) {
                Next::Message((_, line)) => match parse_line(&line) {
                    Ok(Some(ProtocolLine::Result(r))) => result = Some(r),
                    Ok(Some(ProtocolLine::Error(text))) => return Err(failed(text)),
                    Ok(_) => {}
                    Err(e) => return Err(failed(e.to_string())),
                },
                Next::Eof => break,
                Next::Timeout => return Err(failed(format!("no exit within {timeout:?} after READY"))),
            }
        }
        let status = self.wait_child(deadline.saturating_duration_since(Instant::now()));
        if !status.is_some_and(|s| s.success()) {
            return Err(failed(format!(
                "runc run ended with {}: {}",
                status_text(status.as_ref()),
                self.stderr_tail()
            )));
        }
        result.map(Some).ok_or_else(|| {
            failed("the workload exited with status 0 but printed no CVBENCH RESULT line".into())
        })
    }

    fn destroy(mut self: Box<Self>) -> Result<(), BackendError> {
        self.teardown().map_err(|reason| BackendError::Teardown {
            backend: NAME.into(),
            reason,
        })
    }
}

impl Drop for RuncInstance {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("cvbench: runc teardown of {}: {e}", self.name);
        }
    }
}

/// `bench cleanup` for runc: `runc delete --force` every container in cvbench's runc state dir, then
/// unmount and remove every bundle, except those whose harness is still running.
pub fn cleanup_leftovers(scope: &CleanupScope) -> CleanupReport {
    let mut report = CleanupReport::default();
    let state = scope.roots.relocate(STATE_DIR);
    if let Ok(entries) = fs::read_dir(&state) {
        for entry in entries.flatten().filter(|e| e.path().is_dir()) {
            let id = entry.file_name().to_string_lossy().into_owned();
            if (scope.keep)(&id) {
                report.in_use.push(format!("runc container {id}"));
                continue;
            }
            let out = Command::new("runc")
                .arg("--root")
                .arg(&state)
                .args(["delete", "--force", &id])
                .output();
            match out {
                Ok(o) if o.status.success() => report.removed.push(format!("runc container {id}")),
                Ok(o) => report.problems.push(format!(
                    "runc delete --force {id}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => report.problems.push(format!("running runc delete: {e}")),
            }
        }
    }
    let bundles = scope.roots.relocate(BUNDLES_DIR);
    if let Ok(entries) = fs::read_dir(&bundles) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rootfs = entry.path().join("rootfs");
            // Unmount first, so removing the bundle never walks into the overlay.
            if !(scope.keep)(&name) && umount2(&rootfs, MntFlags::MNT_DETACH).is_ok() {
                report.removed.push(format!("mount {}", rootfs.display()));
            }
        }
    }
    remove_instance_dirs(&bundles, scope.keep, &mut report);
    report
}
