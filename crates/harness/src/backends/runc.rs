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
use workload::{WorkloadResult, WorkloadSpec};

use super::lines::{self, Next, ReadySource};
use super::process::{die_with_harness, STOP_GRACE};
use crate::backend::{
    Backend, BackendError, ChildState, DiskProbe, Instance, LaunchSpec, MemoryProbe, PhaseMark, SharedImage,
    Stage, Unavailable,
};
use crate::cleanup::{remove_instance_dirs, CleanupReport, CleanupScope};
use crate::metrics::{CGROUP_MEMORY_BYTES, RUNTIME_PSS_BYTES, START_TO_NETWORK_READY_MS, START_TO_READY_MS};
use crate::probe;
use crate::results::{Isolation, IsolationKind};

/// Where bundles (config.json, overlay rootfs, upper/work dirs) live, one dir per instance.
pub const BUNDLES_DIR: &str = "/run/cvbench/runc";
/// runc's own state directory (`runc --root`), kept apart from any system runc.
pub const STATE_DIR: &str = "/run/cvbench/runc-state";
/// Upper bound on the CFS period-based quota computation.
const CPU_PERIOD_US: u64 = 100_000;

/// An OCI runtime binary and what cvbench needs to know to drive it. runc, crun, gVisor's runsc and
/// any `oci:<path>` runtime share one bundle implementation ([`RuncBackend`]); they differ only here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRuntime {
    /// Backend name in results and on the command line (`runc`, `crun`, `gvisor`, `oci:/path`).
    pub name: &'static str,
    /// The runtime binary (looked up in `PATH` when it has no `/`).
    pub binary: PathBuf,
    /// Flags before the subcommand, after `--root` (runsc's `--network=none`).
    pub global_args: Vec<String>,
    /// What kind of sandbox it makes (gVisor: a user-space kernel).
    pub kind: IsolationKind,
    /// Label key its version is recorded under (`runc_version`).
    pub version_label: &'static str,
    /// The Debian package that provides it, for the install hint.
    pub package: Option<&'static str>,
    /// Whether `check_host` starts a throw-away container to learn whether the runtime accepts this
    /// host (crun refuses hybrid cgroups only when it creates a container).
    pub probe_host: bool,
    /// Capabilities the runtime does not know and refuses the whole config for (runsc of 2022:
    /// `CAP_PERFMON`, `CAP_BPF`, `CAP_CHECKPOINT_RESTORE`); left out of every set it is given, which
    /// only matters at `--confinement none` (every capability the harness holds).
    pub unknown_capabilities: &'static [&'static str],
    /// Whether (and how) an instance's workload gets the interfaces of a prepared network namespace
    /// (the instance's veth to the client namespace).
    pub network: RuntimeNetwork,
}

/// How an OCI runtime's instances use a prepared network namespace given as a path in config.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeNetwork {
    /// Not tested end to end with this runtime: instances are not attached.
    Untested(&'static str),
    /// The workload sees the namespace's interfaces as they are (runc: the host kernel's stack).
    Namespace,
}

impl OciRuntime {
    /// runc, as Debian's `runc` package installs it.
    pub fn runc() -> Self {
        OciRuntime {
            name: "runc",
            binary: PathBuf::from("runc"),
            global_args: Vec::new(),
            kind: IsolationKind::OciRuntime,
            version_label: "runc_version",
            package: Some("runc"),
            probe_host: false,
            unknown_capabilities: &[],
            network: RuntimeNetwork::Namespace,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuncBackend {
    runtime: OciRuntime,
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
        RuncBackend::for_runtime(OciRuntime::runc(), STATE_DIR.into(), BUNDLES_DIR.into())
    }

    /// Bundles in `<root>/runc` and runc's state in `<root>/runc-state` (tests use a temp dir).
    pub fn with_root(root: &Path) -> Self {
        RuncBackend::for_runtime(OciRuntime::runc(), root.join("runc-state"), root.join("runc"))
    }

    /// Any OCI runtime over the same bundles, its state in `state_dir`, bundles in `bundles_dir`.
    pub fn for_runtime(runtime: OciRuntime, state_dir: PathBuf, bundles_dir: PathBuf) -> Self {
        RuncBackend {
            runtime,
            state_dir,
            bundles_dir,
        }
    }

    pub fn runtime(&self) -> &OciRuntime {
        &self.runtime
    }

    fn runc(&self) -> Command {
        runtime_command(&self.runtime, &self.state_dir)
    }

    /// The first line of `<runtime> --version`, without its `<name> version ` prefix (`1.1.5+ds1`).
    fn version(&self) -> Result<String, String> {
        let binary = &self.runtime.binary;
        let out = Command::new(binary)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run `{} --version`: {e}", binary.display()))?;
        if !out.status.success() {
            return Err(format!("`{} --version` failed: {}", binary.display(), out.status));
        }
        Ok(version_from_output(&String::from_utf8_lossy(&out.stdout)))
    }

    fn setup_err(&self, reason: impl Into<String>) -> BackendError {
        BackendError::setup(self.runtime.name, reason)
    }

    fn io_err(&self, context: String) -> impl FnOnce(std::io::Error) -> BackendError {
        BackendError::io(self.runtime.name, context)
    }

    /// The run root both directories are in (its lock marks this harness as live): cvbench's run
    /// dir for state under it (`/run/cvbench/oci/<runtime>/bundles` too), else the bundles' parent.
    fn run_root(&self) -> &Path {
        let run_root = Path::new(crate::rundir::RUN_ROOT);
        if self.bundles_dir.starts_with(run_root) {
            run_root
        } else {
            self.bundles_dir.parent().unwrap_or(&self.bundles_dir)
        }
    }
}

impl RuncBackend {
    /// Starts a throw-away container over an empty rootfs. A runtime that accepts this host gets as
    /// far as executing the workload, which the empty rootfs lacks, and its error names that path;
    /// one that refuses the host fails earlier, and its own message is the reason (crun on hybrid
    /// cgroups: "cgroups in hybrid mode not supported, drop all controllers from cgroupv2").
    fn probe_host(&self) -> Result<(), Unavailable> {
        let unavailable = |reason: String| Unavailable { reason };
        let name = crate::runner::instance_name(self.runtime.name, &WorkloadSpec::Idle, 0)
            .replacen("-idle-", "-probe-", 1);
        let bundle = self.bundles_dir.join(&name);
        let result = (|| {
            crate::rundir::create_dir(&bundle.join("rootfs"))
                .map_err(|e| format!("creating the probe bundle {}: {e}", bundle.display()))?;
            fs::create_dir_all(&self.state_dir)
                .map_err(|e| format!("creating {}: {e}", self.state_dir.display()))?;
            let spec = LaunchSpec {
                request: Instant::now(),
                image_dir: bundle.join("rootfs"),
                workload: WorkloadSpec::Idle,
                instance_name: name.clone(),
                memory_limit_bytes: None,
                cpu_limit: None,
                pids_limit: None,
                ready_timeout: Duration::from_secs(10),
                confinement: crate::backend::Confinement::default(),
                network: None,
            };
            let config =
                oci_config(&spec, None).map_err(|e| format!("building the probe's config.json: {e}"))?;
            config
                .save(bundle.join("config.json"))
                .map_err(|e| format!("writing the probe's config.json: {e}"))?;
            self.runc()
                .arg("run")
                .arg("--bundle")
                .arg(&bundle)
                .arg(&name)
                .stdin(Stdio::null())
                .process_group(0)
                .output()
                .map_err(|e| format!("starting `{} run`: {e}", self.runtime.binary.display()))
        })();
        // The probe never got a process running, but the runtime may have left state behind.
        let _ = self.runc().args(["delete", "--force", &name]).output();
        let _ = fs::remove_dir_all(&bundle);
        crate::rundir::prune(&self.bundles_dir);
        crate::rundir::prune(&self.state_dir);
        let out = result.map_err(unavailable)?;
        probe_verdict(
            self.runtime.name,
            out.status.success(),
            &String::from_utf8_lossy(&out.stderr),
        )
        .map_err(unavailable)
    }
}

/// Removes `names` (`CAP_PERFMON`) from every capability set of `config`'s process.
pub fn drop_capabilities(config: &mut Spec, names: &[&str]) {
    if names.is_empty() {
        return;
    }
    let Some(mut process) = config.process().clone() else {
        return;
    };
    let Some(mut caps) = process.capabilities().clone() else {
        return;
    };
    let keep = |set: &Option<oci_spec::runtime::Capabilities>| {
        set.as_ref().map(|set| {
            set.iter()
                .filter(|c| {
                    let name = serde_json::to_value(c).ok();
                    !names
                        .iter()
                        .any(|n| name.as_ref().and_then(|v| v.as_str()) == Some(*n))
                })
                .copied()
                .collect()
        })
    };
    caps.set_bounding(keep(caps.bounding()));
    caps.set_effective(keep(caps.effective()));
    caps.set_permitted(keep(caps.permitted()));
    caps.set_inheritable(keep(caps.inheritable()));
    caps.set_ambient(keep(caps.ambient()));
    process.set_capabilities(Some(caps));
    config.set_process(Some(process));
}

/// What a host probe's outcome means: the runtime reached the workload (it ran, or failed naming
/// the missing executable), or it refused the host with the error it printed.
pub fn probe_verdict(runtime: &str, success: bool, stderr: &str) -> Result<(), String> {
    if success || stderr.contains(WORKLOAD_PATH_IN_IMAGE) {
        return Ok(());
    }
    let message = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    Err(if message.is_empty() {
        format!("{runtime} refuses this host (no message)")
    } else {
        format!("{runtime} refuses this host: {message}")
    })
}

/// Whether the OCI runtime keeps state for container `name` in `state_dir`: runc and crun keep a
/// directory named after the container; runsc keeps files `<name>_sandbox:<name>.state` and `.lock`.
/// Teardown asks before `kill`/`delete`, so a runtime whose layout it did not know (runsc) had its
/// state left behind whenever `run` did not remove it itself.
fn runtime_has_state(state_dir: &Path, name: &str) -> bool {
    if state_dir.join(name).exists() {
        return true;
    }
    let prefix = format!("{name}_");
    fs::read_dir(state_dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_str().is_some_and(|f| f.starts_with(&prefix)))
    })
}

/// The containers an OCI runtime keeps state for in `state_dir`, in either layout of
/// [`runtime_has_state`], each once, sorted.
fn state_container_ids(state_dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(state_dir) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                Some(file)
            } else {
                file.split_once("_sandbox:").map(|(id, _)| id.to_string())
            }
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// `<runtime> --root <state_dir> <global args>`: every runtime subcommand starts so.
fn runtime_command(runtime: &OciRuntime, state_dir: &Path) -> Command {
    let mut c = Command::new(&runtime.binary);
    c.arg("--root").arg(state_dir).args(&runtime.global_args);
    c
}

/// The version in a runtime's `--version` output: its first line after `... version `
/// (`runc version 1.1.5+ds1`, `crun version 1.8.1`, `runsc version 0.0~20221219.0`).
pub fn version_from_output(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    first
        .split_once(" version ")
        .map_or(first, |(_, v)| v)
        .trim()
        .to_string()
}

impl Backend for RuncBackend {
    fn name(&self) -> &'static str {
        self.runtime.name
    }

    fn isolation(&self) -> Isolation {
        Isolation::host_kernel(self.runtime.kind)
    }

    fn check_host(&self) -> Result<(), Unavailable> {
        let name = self.runtime.name;
        if !nix::unistd::geteuid().is_root() {
            return Err(Unavailable {
                reason: format!("{name} needs root (run bench as root)"),
            });
        }
        self.version().map_err(|e| Unavailable {
            reason: match self.runtime.package {
                Some(package) => format!("{e}; install it with `apt-get install {package}`"),
                None => e,
            },
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
        if self.runtime.probe_host {
            self.probe_host()?;
        }
        Ok(())
    }

    fn applies_confinement(&self) -> bool {
        true
    }

    /// runc (the host kernel's stack in the prepared namespace); not gVisor, crun or `oci:` runtimes
    /// (their reasons: [`RuntimeNetwork::Untested`]).
    fn networking(&self) -> bool {
        !matches!(self.runtime.network, RuntimeNetwork::Untested(_))
    }

    fn no_network_reason(&self) -> Option<String> {
        match self.runtime.network {
            RuntimeNetwork::Untested(why) => Some(why.to_string()),
            RuntimeNetwork::Namespace => None,
        }
    }

    fn labels(&self) -> Vec<(String, String)> {
        let mut labels: Vec<(String, String)> = self
            .version()
            .map(|v| vec![(self.runtime.version_label.to_string(), v)])
            .unwrap_or_default();
        if self.runtime.name.starts_with("oci:") {
            labels.push((
                "oci_runtime".to_string(),
                self.runtime.binary.display().to_string(),
            ));
        }
        labels
    }

    fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
        super::check_image_workload(self.runtime.name, image_dir)?;
        crate::rundir::hold_shared(self.run_root()).map_err(self.io_err(format!(
            "locking {}",
            crate::rundir::lock_path(self.run_root()).display()
        )))?;
        for dir in [&self.state_dir, &self.bundles_dir] {
            crate::rundir::create_dir(dir).map_err(self.io_err(format!("creating {}", dir.display())))?;
        }
        let bytes = probe::allocated_bytes(image_dir)
            .map_err(BackendError::probe(self.runtime.name, Stage::Prepare))?;
        Ok(SharedImage {
            bytes,
            description: format!("rootfs directory {} (overlay lowerdir)", image_dir.display()),
        })
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
        crate::rundir::hold_shared(self.run_root()).map_err(self.io_err(format!(
            "locking {}",
            crate::rundir::lock_path(self.run_root()).display()
        )))?;
        let bundle = self.bundles_dir.join(&spec.instance_name);
        let net = super::attach_network(self.runtime.name, spec)?;
        let network_ready = Instant::now();
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
            net,
        };
        if instance.net.is_some() {
            instance.phases.push(PhaseMark::new(
                START_TO_NETWORK_READY_MS,
                spec.request,
                network_ready,
            ));
        }
        let rootfs = bundle.join("rootfs");
        for dir in ["upper", "work", "rootfs"] {
            let d = bundle.join(dir);
            crate::rundir::create_dir(&d).map_err(self.io_err(format!("creating {}", d.display())))?;
        }
        let lower = spec.image_dir.to_string_lossy();
        if lower.contains([',', ':']) {
            return Err(self.setup_err(format!(
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
        .map_err(|e| self.setup_err(format!("mounting overlay at {}: {e}", rootfs.display())))?;
        instance.rootfs_mounted = true;

        let oci_err = |source| BackendError::OciConfig {
            backend: self.runtime.name.into(),
            source,
        };
        let netns = instance.net.as_ref().map(crate::net::InstanceNet::netns_path);
        let mut config = oci_config(spec, netns.as_deref()).map_err(oci_err)?;
        drop_capabilities(&mut config, self.runtime.unknown_capabilities);
        let config_path = bundle.join("config.json");
        config
            .save(&config_path)
            .map_err(|e| self.setup_err(format!("writing {}: {e}", config_path.display())))?;

        // runc's and the workload's stderr: a pipe drained into a bounded tail (a file under /run
        // would grow in memory as fast as the workload writes).
        let (stderr_r, stderr_w) = std::io::pipe().map_err(self.io_err("creating the stderr pipe".into()))?;
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
        die_with_harness(&mut cmd, None)
            .map_err(self.io_err(format!("preparing `{} run`", self.runtime.name)))?;
        let spawned = cmd.spawn();
        // The parent's copy of the write end must close, or the reader never sees EOF.
        drop(cmd);
        let mut child = spawned
            .map_err(|e| self.setup_err(format!("starting `{} run`: {e}", self.runtime.binary.display())))?;
        drain_into_tail(
            fs::File::from(std::os::fd::OwnedFd::from(stderr_r)),
            Arc::clone(&instance.stderr),
        )
        .map_err(self.io_err("spawning the stderr reader".into()))?;
        let stdout = child.stdout.take();
        instance.child = Some(child);
        let Some(stdout) = stdout else {
            return Err(self.setup_err("the runtime's stdout was not captured"));
        };
        let (tx, rx) = lines::channel();
        lines::spawn_reader(
            format!("{}-stdout", spec.instance_name),
            stdout,
            tx,
            |at, line| (at, line),
        )
        .map_err(self.io_err("spawning the stdout reader".into()))?;
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
        Ok(super::line_before_ready(self.runtime_name(), &line)?.then_some(at))
    }

    fn exited_before_ready(&mut self) -> BackendError {
        BackendError::ExitedBeforeReady {
            backend: self.runtime_name().into(),
            status: self.wait_child(super::process::KILL_WAIT),
            output: self.output_tail(),
        }
    }

    fn ready_timeout(&self, timeout: Duration) -> BackendError {
        BackendError::ReadyTimeout {
            backend: self.runtime_name().into(),
            timeout,
            output: self.output_tail(),
        }
    }
}

/// The OCI runtime config for one instance: the workload as the only process, no terminal, its own
/// pid/mount/ipc/uts/network namespaces, the limits from the launch spec as cgroup limits, the
/// launch's `--confinement` (see [`super::oci_confine`]). With `netns`, the network namespace is that
/// prepared one (`{"type": "network", "path": "/run/netns/..."}`) instead of a new, empty one.
pub fn oci_config(spec: &LaunchSpec, netns: Option<&Path>) -> Result<Spec, oci_spec::OciSpecError> {
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
    .map(|typ| match (typ, netns) {
        (LinuxNamespaceType::Network, Some(path)) => LinuxNamespaceBuilder::default()
            .typ(typ)
            .path(path.to_path_buf())
            .build(),
        _ => LinuxNamespaceBuilder::default().typ(typ).build(),
    })
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
    /// The instance's network namespace and veth; fields drop after `Drop::drop`, so after runc's
    /// container is gone.
    net: Option<crate::net::InstanceNet>,
}

impl RuncInstance {
    fn runtime_name(&self) -> &'static str {
        self.backend.runtime.name
    }

    /// The runtime's own foreground process (`runc run`), counted as runtime overhead.
    fn runtime_pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

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
    /// `runc ps` (a Go program starting up) only when neither is there. The runtime's own `run`
    /// process is left out even when it sits in the cgroup (runsc moves itself there), so that it is
    /// counted once, as runtime overhead.
    fn container_pids(&self) -> Result<Vec<i32>, BackendError> {
        let cgroup_root = Path::new("/sys/fs/cgroup");
        for procs in [
            cgroup_root.join("memory").join(&self.name).join("cgroup.procs"),
            cgroup_root.join(&self.name).join("cgroup.procs"),
        ] {
            if let Ok(text) = fs::read_to_string(&procs) {
                let runtime_pid = self.runtime_pid();
                return Ok(text
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .filter(|pid| Some(*pid) != runtime_pid)
                    .collect());
            }
        }
        let out = self
            .backend
            .runc()
            .args(["ps", "--format", "json", &self.name])
            .output()
            .map_err(
                self.backend
                    .io_err(format!("running `{} ps {}`", self.runtime_name(), self.name)),
            )?;
        if !out.status.success() {
            return Err(self.backend.setup_err(format!(
                "`{} ps {}` failed: {}",
                self.runtime_name(),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice::<Vec<i32>>(&out.stdout).map_err(|e| {
            self.backend.setup_err(format!(
                "`{} ps {}` printed no pid list: {e}",
                self.runtime_name(),
                self.name
            ))
        })
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
            if runtime_has_state(&self.backend.state_dir, &self.name) {
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
                "{name} run {} did not exit after SIGKILL; killed {name} itself",
                self.name,
                name = self.runtime_name()
            ));
        }
        if runtime_has_state(&self.backend.state_dir, &self.name) {
            match self
                .backend
                .runc()
                .args(["delete", "--force", &self.name])
                .output()
            {
                Ok(out) if out.status.success() => {}
                Ok(out) => problems.push(format!(
                    "{} delete --force {}: {}",
                    self.runtime_name(),
                    self.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => problems.push(format!("running {} delete: {e}", self.runtime_name())),
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
    fn last_output(&self) -> Option<String> {
        Some(RuncInstance::output_tail(self))
    }

    fn phases(&self) -> Vec<PhaseMark> {
        self.phases.clone()
    }

    fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.net.as_ref().map(|n| n.addr)
    }

    fn host_pids(&self) -> Vec<i32> {
        self.container_pids().unwrap_or_default()
    }

    fn memory(&self) -> Result<MemoryProbe, BackendError> {
        let ended = || BackendError::EndedBeforeMemoryProbe {
            backend: self.runtime_name().to_string(),
            instance: self.name.clone(),
        };
        let probe_err = |e| BackendError::probe(self.runtime_name(), Stage::MemoryProbe)(e);
        let measured = super::container_memory(|| self.container_pids(), ended, probe_err)?;
        let pss_bytes = measured.pss_bytes;
        let mut extra = Vec::new();
        if let Some(bytes) = measured.cgroup_bytes {
            extra.push((CGROUP_MEMORY_BYTES.to_string(), bytes));
        }
        if let Some(runc_pid) = self.runtime_pid() {
            extra.push((
                RUNTIME_PSS_BYTES.to_string(),
                probe::pss_bytes(&[runc_pid]).map_err(probe_err)?,
            ));
        }
        Ok(MemoryProbe { pss_bytes, extra })
    }

    fn disk(&self) -> Result<DiskProbe, BackendError> {
        let upper = self.bundle.join("upper");
        let instance_bytes = probe::allocated_bytes(&upper)
            .map_err(BackendError::probe(self.runtime_name(), Stage::DiskProbe))?;
        Ok(DiskProbe { instance_bytes })
    }

    fn finish(&mut self, timeout: Duration) -> Result<Option<WorkloadResult>, BackendError> {
        let deadline = Instant::now() + timeout;
        let backend = self.runtime_name();
        let failed = move |reason: String| BackendError::WorkloadFailed {
            backend: backend.into(),
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
                    if let Some(r) = super::line_after_ready(backend, &line)? {
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
                "{backend} run ended with {status}: {}",
                self.stderr_tail()
            )));
        }
        result.map(Some).ok_or_else(|| {
            failed("the workload exited with status 0 but printed no CVBENCH RESULT line".into())
        })
    }

    fn destroy(mut self: Box<Self>) -> Result<(), BackendError> {
        self.teardown().map_err(|reason| BackendError::Teardown {
            backend: self.runtime_name().into(),
            reason,
        })
    }
}

impl Drop for RuncInstance {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("cvbench: {} teardown of {}: {e}", self.runtime_name(), self.name);
        }
    }
}

/// `bench cleanup` for runc (see [`cleanup_runtime_leftovers`]).
pub fn cleanup_leftovers(scope: &CleanupScope) -> CleanupReport {
    cleanup_runtime_leftovers(
        &OciRuntime::runc(),
        &scope.roots.relocate(STATE_DIR),
        &scope.roots.relocate(BUNDLES_DIR),
        scope,
    )
}

/// `bench cleanup` for one OCI runtime: `<runtime> delete --force` every container in its state dir
/// under cvbench's run dir, then unmount and remove every bundle, except those whose harness is still
/// running.
pub fn cleanup_runtime_leftovers(
    runtime: &OciRuntime,
    state: &Path,
    bundles: &Path,
    scope: &CleanupScope,
) -> CleanupReport {
    let mut report = CleanupReport::default();
    let name = runtime.name;
    for id in state_container_ids(state) {
        if (scope.keep)(&id) {
            report.in_use.push(format!("{name} container {id}"));
            continue;
        }
        let out = runtime_command(runtime, state)
            .args(["delete", "--force", &id])
            .output();
        match out {
            Ok(o) if o.status.success() => report.removed.push(format!("{name} container {id}")),
            // Deleted meanwhile (by its own harness's teardown): gone, but not by us.
            Ok(_) if !runtime_has_state(state, &id) => {}
            Ok(o) => report.problems.push(format!(
                "{name} delete --force {id}: {}",
                escape_output(o.stderr.trim_ascii())
            )),
            Err(e) => report.problems.push(format!("running {name} delete: {e}")),
        }
    }
    if let Ok(entries) = fs::read_dir(bundles) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rootfs = entry.path().join("rootfs");
            // Unmount first, so removing the bundle never walks into the overlay.
            if !(scope.keep)(&name) && umount2(&rootfs, MntFlags::MNT_DETACH).is_ok() {
                report.removed.push(format!("mount {}", rootfs.display()));
            }
        }
    }
    remove_instance_dirs(bundles, scope.keep, &mut report);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_state_is_found_in_runc_and_runsc_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let name = "cvbench-gvisor-idle-1-0";
        assert!(!runtime_has_state(dir.path(), name));
        // runsc: `<name>_sandbox:<name>.state`, no directory of the container's name.
        fs::write(dir.path().join(format!("{name}_sandbox:{name}.state")), b"{}").unwrap();
        assert!(runtime_has_state(dir.path(), name));
        // Another container's state is not this one's.
        assert!(!runtime_has_state(dir.path(), "cvbench-gvisor-idle-1-1"));
        // runc/crun: a directory named after the container.
        fs::create_dir(dir.path().join("cvbench-runc-idle-1-0")).unwrap();
        assert!(runtime_has_state(dir.path(), "cvbench-runc-idle-1-0"));
        assert!(!runtime_has_state(Path::new("/nonexistent/state"), name));
        // Cleanup finds both layouts, each container once (runsc has a .state and a .lock file).
        fs::write(dir.path().join(format!("{name}_sandbox:{name}.lock")), b"").unwrap();
        assert_eq!(
            state_container_ids(dir.path()),
            vec![name.to_string(), "cvbench-runc-idle-1-0".to_string()]
        );
    }
}
