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
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use container::output::{drain_into_tail, escape_output, Tail, TAIL_BYTES};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, Spec,
};
use workload::spec::WORKLOAD_PATH_IN_IMAGE;
use workload::WorkloadResult;

use super::lines::{self, Next, ReadySource};
use super::process::{die_with_harness, STOP_GRACE};
use crate::backend::{
    Backend, BackendError, ChildState, DiskProbe, Instance, LaunchSpec, MemoryProbe, PhaseMark, SharedImage,
    Stage, Unavailable,
};
use crate::cleanup::{remove_instance_dirs, CleanupReport, CleanupScope};
use crate::metrics::{CGROUP_MEMORY_BYTES, RUNTIME_PSS_BYTES, START_TO_READY_MS};
use crate::probe;
use crate::results::{Isolation, IsolationKind};

const NAME: &str = "runc";
/// Where bundles (config.json, overlay rootfs, upper/work dirs) live, one dir per instance.
pub const BUNDLES_DIR: &str = "/run/cvbench/runc";
/// runc's own state directory (`runc --root`), kept apart from any system runc.
pub const STATE_DIR: &str = "/run/cvbench/runc-state";
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

    /// The run root both directories are in (its lock marks this harness as live).
    fn run_root(&self) -> &Path {
        self.bundles_dir.parent().unwrap_or(&self.bundles_dir)
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
        crate::rundir::hold_shared(self.run_root()).map_err(Self::io_err(format!(
            "locking {}",
            crate::rundir::lock_path(self.run_root()).display()
        )))?;
        for dir in [&self.state_dir, &self.bundles_dir] {
            crate::rundir::create_dir(dir).map_err(Self::io_err(format!("creating {}", dir.display())))?;
        }
        let bytes = probe::allocated_bytes(image_dir).map_err(BackendError::probe(NAME, Stage::Prepare))?;
        Ok(SharedImage {
            bytes,
            description: format!("rootfs directory {} (overlay lowerdir)", image_dir.display()),
        })
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
        crate::rundir::hold_shared(self.run_root()).map_err(Self::io_err(format!(
            "locking {}",
            crate::rundir::lock_path(self.run_root()).display()
        )))?;
        let bundle = self.bundles_dir.join(&spec.instance_name);
        // From here on, dropping `instance` tears down whatever exists so far.
        let mut instance = RuncInstance {
            backend: self.clone(),
            name: spec.instance_name.clone(),
            bundle: bundle.clone(),
            rootfs_mounted: false,
            child: None,
            lines: None,
            stdout_tail: Tail::new(TAIL_BYTES),
            stderr: Arc::new(Mutex::new(Tail::new(TAIL_BYTES))),
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

        let oci_err = |source| BackendError::OciConfig {
            backend: NAME.into(),
            source,
        };
        let config = oci_config(spec).map_err(oci_err)?;
        let config_path = bundle.join("config.json");
        config
            .save(&config_path)
            .map_err(|e| Self::setup_err(format!("writing {}: {e}", config_path.display())))?;

        // runc's and the workload's stderr: a pipe drained into a bounded tail (a file under /run
        // would grow in memory as fast as the workload writes).
        let (stderr_r, stderr_w) =
            std::io::pipe().map_err(Self::io_err("creating the stderr pipe".into()))?;
        let mut cmd = self.runc();
        cmd.arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&spec.instance_name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr_w)
            // Its own process group: a Ctrl-C on the terminal reaches only the harness, which then
            // finishes the current run cleanly instead of runc forwarding the signal to the workload.
            .process_group(0);
        die_with_harness(&mut cmd, None).map_err(Self::io_err("preparing `runc run`".into()))?;
        let spawned = cmd.spawn();
        // The parent's copy of the write end must close, or the reader never sees EOF.
        drop(cmd);
        let mut child =
            spawned.map_err(|e| Self::setup_err(format!("starting `{} run`: {e}", self.runc.display())))?;
        drain_into_tail(
            fs::File::from(std::os::fd::OwnedFd::from(stderr_r)),
            Arc::clone(&instance.stderr),
        )
        .map_err(Self::io_err("spawning the stderr reader".into()))?;
        let stdout = child.stdout.take();
        instance.child = Some(child);
        let Some(stdout) = stdout else {
            return Err(Self::setup_err("runc's stdout was not captured"));
        };
        let (tx, rx) = lines::channel();
        lines::spawn_reader(
            format!("{}-stdout", spec.instance_name),
            stdout,
            tx,
            |at, line| (at, line),
        )
        .map_err(Self::io_err("spawning the stdout reader".into()))?;
        instance.lines = Some(rx);

        let ready = lines::wait_ready(
            &mut instance,
            spec.request + spec.ready_timeout,
            spec.ready_timeout,
        )?;
        instance
            .phases
            .push(PhaseMark::new(START_TO_READY_MS, spec.request, ready));
        Ok(Box::new(instance))
    }
}

impl ReadySource for RuncInstance {
    type Message = (Instant, String);

    fn next(&mut self, deadline: Instant) -> Result<Next<Self::Message>, BackendError> {
        Ok(self.next_line(deadline))
    }

    fn on_message(&mut self, (at, line): Self::Message) -> Result<Option<Instant>, BackendError> {
        self.stdout_tail.push_line(&line);
        Ok(super::line_before_ready(NAME, &line)?.then_some(at))
    }

    fn exited_before_ready(&mut self) -> BackendError {
        BackendError::ExitedBeforeReady {
            backend: NAME.into(),
            status: self.wait_child(super::process::KILL_WAIT),
            output: self.output_tail(),
        }
    }

    fn ready_timeout(&self, timeout: Duration) -> BackendError {
        BackendError::ReadyTimeout {
            backend: NAME.into(),
            timeout,
            output: self.output_tail(),
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

struct RuncInstance {
    backend: RuncBackend,
    name: String,
    bundle: PathBuf,
    rootfs_mounted: bool,
    child: Option<Child>,
    lines: Option<Receiver<(Instant, String)>>,
    /// The last few KiB of stdout lines read before READY, for error messages.
    stdout_tail: Tail,
    /// The last few KiB of runc's and the workload's stderr.
    stderr: Arc<Mutex<Tail>>,
    phases: Vec<PhaseMark>,
    /// Self-ending workloads are read until EOF; the others are stopped with a signal.
    exits_by_itself: bool,
    torn_down: bool,
}

impl RuncInstance {
    fn next_line(&self, deadline: Instant) -> Next<(Instant, String)> {
        lines::next(self.lines.as_ref(), deadline)
    }

    /// Where `runc run` stands after waiting at most `timeout` for it to exit.
    fn wait_child(&mut self, timeout: Duration) -> ChildState {
        match self.child.as_mut() {
            Some(child) => lines::wait_timeout(child, timeout),
            None => ChildState::NotStarted,
        }
    }

    fn child_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// The last few KiB of runc's and the workload's stderr, escaped on one line.
    fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|t| t.text()).unwrap_or_default()
    }

    /// The stdout and stderr tails, escaped on one line.
    fn output_tail(&self) -> String {
        let (stdout, stderr) = (self.stdout_tail.text(), self.stderr_tail());
        match (stdout.is_empty(), stderr.is_empty()) {
            (false, false) => format!("{stdout} | stderr: {stderr}"),
            (true, false) => stderr,
            _ => stdout,
        }
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
            // runc makes its entry in the state dir without retrying: prune it only when no other
            // harness may be about to run runc.
            crate::rundir::prune_when_alone(&self.backend.state_dir, self.backend.run_root());
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
        let probe_err = |e| BackendError::probe(NAME, Stage::MemoryProbe)(e);
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
            probe::allocated_bytes(&upper).map_err(BackendError::probe(NAME, Stage::DiskProbe))?;
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
            if self.wait_child(STOP_GRACE.min(timeout)).is_running() {
                self.runc_signal("KILL");
                if self
                    .wait_child(deadline.saturating_duration_since(Instant::now()))
                    .is_running()
                {
                    return Err(failed(format!("did not stop within {timeout:?} after SIGKILL")));
                }
            }
            return Ok(None);
        }
        let mut result = None;
        loop {
            match self.next_line(deadline) {
                Next::Message((_, line)) => {
                    if let Some(r) = super::line_after_ready(NAME, &line)? {
                        result = Some(r);
                    }
                }
                Next::Eof => break,
                Next::Timeout => return Err(failed(format!("no exit within {timeout:?} after READY"))),
            }
        }
        let status = self.wait_child(deadline.saturating_duration_since(Instant::now()));
        if !status.success() {
            return Err(failed(format!(
                "runc run ended with {status}: {}",
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
                // Deleted meanwhile (by its own harness's teardown): gone, but not by us.
                Ok(_) if !entry.path().exists() => {}
                Ok(o) => report.problems.push(format!(
                    "runc delete --force {id}: {}",
                    escape_output(o.stderr.trim_ascii())
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
