//! What the docker and podman backends share: both CLIs take the same verbs (`import`, `create`,
//! `start -a`, `kill`, `rm -f`, `inspect`), so one instance implementation drives either, given the
//! command that reaches its engine (`docker -H unix://...`, `podman --root ... --runroot ...`).
//!
//! Image: the image directory is imported as a single-layer image (`tar -c | <cli> import -`) tagged
//! by its content digest, so every engine runs the same bytes as every other backend and nothing is
//! pulled from a registry.
//!
//! Startup: `<cli> create` (phase `start_to_created_ms`), then `<cli> start -a` in the foreground
//! with the workload's stdout on a pipe, to READY (`start_to_ready_ms`).
//!
//! Memory: the container's processes (its memory cgroup, found from its init pid) are the instance's
//! PSS; the init's parent (containerd-shim or conmon) plus the engine's daemons (dockerd and
//! containerd; podman has none) are `runtime_pss_bytes`, the daemons alone `daemon_pss_bytes`.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use workload::spec::WORKLOAD_PATH_IN_IMAGE;
use workload::{parse_line, ProtocolLine, WorkloadResult};

use super::lines::{self, Next};
use crate::backend::{
    BackendError, ChildState, DiskProbe, Instance, LaunchSpec, MemoryProbe, PhaseMark, SharedImage,
};
use crate::metrics::{
    CGROUP_MEMORY_BYTES, DAEMON_PSS_BYTES, RUNTIME_PSS_BYTES, START_TO_CREATED_MS, START_TO_NETWORK_READY_MS,
    START_TO_READY_MS,
};
use crate::net::InstanceNet;
use crate::probe;

/// How long an idle workload gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Longest a management command (`inspect`, `kill`, `rm -f`, `import`) may take before it is killed.
pub(super) const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of the engine's stderr kept for error messages.
const STDERR_TAIL_BYTES: usize = 2048;
/// The `confinement` label of engine rows: `--confinement` does not reach them; the engine applies
/// its own default profile (seccomp filter, capability set, masked paths), which the `docker` level
/// mirrors.
pub(super) const ENGINE_CONFINEMENT: &str = "engine default";
/// Where engines keep their per-harness data roots (`/var/lib/cvbench/<backend>/<name>`).
pub(super) const CVBENCH_DATA_DIR: &str = "/var/lib/cvbench";
/// Repository name of imported images; the tag is the image's content digest.
pub(super) const IMAGE_REPOSITORY: &str = "cvbench-rootfs";

/// A container engine's command line: the program and the global flags that select its engine
/// (daemon socket, storage roots).
#[derive(Debug, Clone)]
pub(super) struct EngineCli {
    /// Backend name, for errors.
    pub backend: &'static str,
    pub program: PathBuf,
    pub global_args: Vec<OsString>,
}

impl EngineCli {
    /// `<program> <global args>` with stdin closed (the import gives its own).
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.global_args).stdin(Stdio::null());
        c
    }

    fn setup_err(&self, reason: impl Into<String>) -> BackendError {
        BackendError::setup(self.backend, reason)
    }

    /// Runs `<cli> args...` to completion within [`CLI_TIMEOUT`]; its stdout, trimmed, or an error
    /// naming the command and the engine's stderr.
    pub fn run(&self, args: &[&str]) -> Result<String, BackendError> {
        let out = output_within(self.command().args(args), CLI_TIMEOUT).map_err(|e| {
            self.setup_err(format!(
                "running `{} {}`: {e}",
                self.program.display(),
                args.join(" ")
            ))
        })?;
        if !out.status.success() {
            return Err(self.setup_err(format!(
                "`{} {}` failed ({}): {}",
                self.program.display(),
                args.join(" "),
                out.status,
                one_line(&String::from_utf8_lossy(&out.stderr))
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// `cmd` with both outputs captured, killed when it outlives `timeout`. The outputs are read on
/// threads, so a chatty command never blocks on a full pipe.
pub(super) fn output_within(cmd: &mut Command, timeout: Duration) -> std::io::Result<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let stdout = child.stdout.take().map(read_on_thread);
    let stderr = child.stderr.take().map(read_on_thread);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait()? {
            Some(status) => break status,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no exit within {timeout:?}; killed"),
                ));
            }
        }
    };
    let collect =
        |h: Option<std::thread::JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn read_on_thread(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Text on one line (whitespace runs become one space), at most its last 400 characters.
pub(super) fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let start = joined.char_indices().rev().nth(400).map_or(0, |(i, _)| i);
    joined[start..].to_string()
}

/// The run root a backend's state dir is in, whose lock marks a live harness: cvbench's run dir when
/// the state is under it, else the state dir's parent (a test's temp root).
pub(super) fn run_root_of(state_dir: &Path) -> &Path {
    let run_root = Path::new(crate::rundir::RUN_ROOT);
    if state_dir.starts_with(run_root) {
        run_root
    } else {
        state_dir.parent().unwrap_or(state_dir)
    }
}

/// The tag an image directory with content digest `digest` is imported under.
pub(super) fn image_tag(digest: &str) -> String {
    format!("{IMAGE_REPOSITORY}:{digest}")
}

/// Marks this harness as live for `bench cleanup` (which waits while it holds the run lock).
pub(super) fn hold_run_lock(backend: &str, run_dir: &Path) -> Result<(), BackendError> {
    let run_root = run_root_of(run_dir);
    crate::rundir::hold_shared(run_root).map_err(BackendError::io(
        backend,
        format!("locking {}", crate::rundir::lock_path(run_root).display()),
    ))
}

/// The images an engine (a dockerd, a podman store) has imported: image directory → tag by content
/// digest and what every instance shares.
#[derive(Default)]
pub(super) struct ImportedImages(std::collections::BTreeMap<PathBuf, (String, SharedImage)>);

impl ImportedImages {
    /// Imports `image_dir` into the engine behind `cli` once; later calls return the first import.
    pub(super) fn get_or_import(
        &mut self,
        cli: &EngineCli,
        image_dir: &Path,
    ) -> Result<SharedImage, BackendError> {
        if let Some((_, shared)) = self.0.get(image_dir) {
            return Ok(shared.clone());
        }
        let (tag, shared) = import_image(cli, image_dir)?;
        self.0.insert(image_dir.to_path_buf(), (tag, shared.clone()));
        Ok(shared)
    }

    /// The tag `image_dir` was imported as; an error when it was not prepared.
    pub(super) fn tag(&self, cli: &EngineCli, image_dir: &Path) -> Result<String, BackendError> {
        self.0
            .get(image_dir)
            .map(|(tag, _)| tag.clone())
            .ok_or_else(|| cli.setup_err(format!("image {} was not prepared", image_dir.display())))
    }
}

/// Imports `image_dir` into the engine as `cvbench-rootfs:<digest>` unless an image of that tag is
/// already there. Returns the tag and what every instance shares: the image's size as the engine
/// reports it.
pub(super) fn import_image(cli: &EngineCli, image_dir: &Path) -> Result<(String, SharedImage), BackendError> {
    super::check_image_workload(cli.backend, image_dir)?;
    let image = rootfs::image_from_dir(image_dir)
        .map_err(|e| cli.setup_err(format!("reading image {}: {e}", image_dir.display())))?;
    let tag = image_tag(&image.digest);
    if cli
        .run(&["image", "inspect", "--format", "{{.Id}}", &tag])
        .is_err()
    {
        import_tar(cli, image_dir, &tag)?;
    }
    let size = cli.run(&["image", "inspect", "--format", "{{.Size}}", &tag])?;
    let bytes = size
        .parse()
        .map_err(|e| cli.setup_err(format!("image size {size:?} of {tag}: {e}")))?;
    Ok((
        tag.clone(),
        SharedImage {
            bytes,
            description: format!("{tag} imported from {} (one layer)", image_dir.display()),
        },
    ))
}

/// `tar -C <dir> -c . | <cli> import - <tag>`, both within [`CLI_TIMEOUT`].
fn import_tar(cli: &EngineCli, image_dir: &Path, tag: &str) -> Result<(), BackendError> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(image_dir)
        .args(["--numeric-owner", "-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| cli.setup_err(format!("starting tar over {}: {e}", image_dir.display())))?;
    let Some(tar_out) = tar.stdout.take() else {
        let _ = tar.kill();
        let _ = tar.wait();
        return Err(cli.setup_err("tar's stdout was not captured"));
    };
    let result = output_within(
        cli.command().args(["import", "-", tag]).stdin(tar_out),
        CLI_TIMEOUT,
    );
    let tar_status = tar.wait();
    let out = result.map_err(|e| cli.setup_err(format!("importing {}: {e}", image_dir.display())))?;
    if !out.status.success() {
        return Err(cli.setup_err(format!(
            "importing {} as {tag}: {}",
            image_dir.display(),
            one_line(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    match tar_status {
        Ok(s) if s.success() => Ok(()),
        other => Err(cli.setup_err(format!("tar over {} ended with {other:?}", image_dir.display()))),
    }
}

/// `<cli> create` arguments for one instance: name, no network, the launch spec's limits, the
/// backend's own flags (`extra`), the image and the workload's command line.
///
/// With `network` (podman: `ns:<path>` of a prepared namespace; docker: `container:<holder>`),
/// the container joins that network instead of getting none.
pub(super) fn create_args(
    spec: &LaunchSpec,
    image_tag: &str,
    extra: &[String],
    network: Option<String>,
) -> Vec<String> {
    let network = network.unwrap_or_else(|| "none".to_string());
    let mut args = vec![
        "create".to_string(),
        "--name".to_string(),
        spec.instance_name.clone(),
        "--network".to_string(),
        network,
    ];
    if let Some(bytes) = spec.memory_limit_bytes {
        args.push(format!("--memory={bytes}"));
    }
    if let Some(cpus) = spec.cpu_limit {
        args.push(format!("--cpus={cpus}"));
    }
    if let Some(pids) = spec.pids_limit {
        args.push(format!("--pids-limit={pids}"));
    }
    args.extend(extra.iter().cloned());
    args.push(image_tag.to_string());
    args.push(WORKLOAD_PATH_IN_IMAGE.to_string());
    args.extend(spec.workload.to_args());
    args
}

/// Creates and starts one container and returns once its workload printed READY; on any failure
/// everything created so far is removed (the instance's `Drop`).
pub(super) fn launch(
    cli: &EngineCli,
    spec: &LaunchSpec,
    image_tag: &str,
    extra_create_args: &[String],
    daemon_pids: Vec<i32>,
    network: EngineNetwork,
) -> Result<Box<dyn Instance>, BackendError> {
    let mut phases = Vec::new();
    let (net, holder, join) = match network {
        EngineNetwork::None => (None, None, None),
        EngineNetwork::Namespace(net) => {
            let join = format!("ns:{}", net.netns_path().display());
            (Some(net), None, Some(join))
        }
        EngineNetwork::Holder(net, holder) => {
            let join = format!("container:{}", holder.name);
            (Some(net), Some(holder), Some(join))
        }
    };
    if net.is_some() {
        phases.push(PhaseMark::new(
            START_TO_NETWORK_READY_MS,
            spec.request,
            Instant::now(),
        ));
    }
    let mut instance = EngineInstance {
        cli: cli.clone(),
        name: spec.instance_name.clone(),
        created: false,
        child: None,
        lines: None,
        stderr_tail: Arc::new(Mutex::new(Vec::new())),
        phases,
        exits_by_itself: spec.workload.exits_by_itself(),
        daemon_pids,
        id: String::new(),
        cgroup_dir: OnceLock::new(),
        torn_down: false,
        holder,
        net,
    };
    let args = create_args(spec, image_tag, extra_create_args, join);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Marked created before the command runs: a create that fails half-way still gets `rm -f`.
    instance.created = true;
    instance.id = cli.run(&args)?;
    instance
        .phases
        .push(PhaseMark::new(START_TO_CREATED_MS, spec.request, Instant::now()));

    let mut child = cli
        .command()
        .args(["start", "--attach", &spec.instance_name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C on the terminal reaches only the harness.
        .process_group(0)
        .spawn()
        .map_err(|e| cli.setup_err(format!("starting `{} start`: {e}", cli.program.display())))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    instance.child = Some(child);
    let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
        return Err(cli.setup_err("the engine's stdout or stderr was not captured"));
    };
    let tail = Arc::clone(&instance.stderr_tail);
    std::thread::Builder::new()
        .name(format!("{}-stderr", spec.instance_name))
        .spawn(move || keep_tail(stderr, &tail))
        .map_err(BackendError::io(cli.backend, "spawning the stderr reader"))?;
    let (tx, rx) = lines::channel();
    lines::spawn_reader(
        format!("{}-stdout", spec.instance_name),
        stdout,
        tx,
        |at, line| (at, line),
    )
    .map_err(BackendError::io(cli.backend, "spawning the stdout reader"))?;
    instance.lines = Some(rx);

    let deadline = spec.request + spec.ready_timeout;
    loop {
        match lines::next(instance.lines.as_ref(), deadline) {
            Next::Message((at, line)) => match parse_line(&line) {
                Ok(Some(ProtocolLine::Ready { .. })) => {
                    instance
                        .phases
                        .push(PhaseMark::new(START_TO_READY_MS, spec.request, at));
                    // Found now, after the mark: a self-ending workload may be done before the
                    // runner probes it, and asking the engine (`inspect`) takes a Go program's start.
                    instance.cgroup_dir();
                    return Ok(Box::new(instance));
                }
                Ok(Some(ProtocolLine::Error(text))) => {
                    return Err(BackendError::WorkloadFailed {
                        backend: cli.backend.into(),
                        reason: text,
                    })
                }
                Ok(Some(ProtocolLine::Result(_)) | None) => {}
                Err(e) => return Err(cli.setup_err(e.to_string())),
            },
            Next::Eof => {
                let status = instance.wait_child(Duration::from_secs(5));
                return Err(BackendError::ExitedBeforeReady {
                    backend: cli.backend.into(),
                    status,
                    output: instance.stderr_text(),
                });
            }
            Next::Timeout => {
                return Err(BackendError::ReadyTimeout {
                    backend: cli.backend.into(),
                    timeout: spec.ready_timeout,
                    output: instance.stderr_text(),
                })
            }
        }
    }
}

/// Reads `pipe` to its end, keeping its last [`STDERR_TAIL_BYTES`].
fn keep_tail(mut pipe: impl Read, tail: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut t = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = t.write_all(&buf[..n]);
                let excess = t.len().saturating_sub(STDERR_TAIL_BYTES);
                t.drain(..excess);
            }
        }
    }
}

/// The memory cgroup of the container with id `id`: the directory under the v1 memory controller
/// (else the v2 tree) whose name contains the id, at most three levels down — `docker/<id>`,
/// `<parent>/<id>`, `<parent>/libpod-<id>`, `system.slice/docker-<id>.scope`. Reading it needs no
/// engine round trip.
pub(super) fn find_container_cgroup(cgroup_root: &Path, id: &str) -> Option<PathBuf> {
    if id.len() < 12 {
        return None;
    }
    let memory = cgroup_root.join("memory");
    let top = if memory.is_dir() {
        memory
    } else {
        cgroup_root.to_path_buf()
    };
    let mut level = vec![top];
    for _ in 0..3 {
        let mut next = Vec::new();
        for dir in &level {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if entry.file_name().to_string_lossy().contains(id) {
                    return Some(entry.path());
                }
                next.push(entry.path());
            }
        }
        level = next;
    }
    None
}

/// The parent pid of `pid`, from `<proc_root>/<pid>/stat` (the field after the command's `)`).
pub(super) fn parent_pid(proc_root: &Path, pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Pids (host namespace) whose command line contains `needle`, e.g. a daemon's state directory.
pub(super) fn pids_mentioning(proc_root: &Path, needle: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| u32::try_from(pid).ok() != Some(own))
        .filter(|pid| {
            let cmdline = fs::read(proc_root.join(pid.to_string()).join("cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(needle)
        })
        .collect()
}

/// Removes what an engine kept under `dirs` (run state, storage or data root) once its processes
/// are stopped: kills anything left in its cgroups `/<name>` and removes them, unmounts every
/// mount under the dirs (deepest first), removes the dirs, and prunes their parents when empty
/// (`/run/cvbench/<backend>`, `/var/lib/cvbench/<backend>`, `/var/lib/cvbench`).
pub(super) fn remove_state(dirs: &[&Path], name: &str, cgroup_root: &Path, problems: &mut Vec<String>) {
    let proc_root = Path::new("/proc");
    let mentioning = |dirs: &[&Path]| -> Vec<i32> {
        let mut pids: Vec<i32> = dirs
            .iter()
            .flat_map(|d| pids_mentioning(proc_root, &format!("{}/", d.display())))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    };
    let stragglers = mentioning(dirs);
    for &pid in &stragglers {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if !stragglers.is_empty() {
        problems.push(format!(
            "killed {} process(es) still running: {stragglers:?}",
            stragglers.len()
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !mentioning(dirs).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    kill_and_remove_cgroups(cgroup_root, name, problems);
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for dir in dirs {
        // Deepest first, so a mount inside another comes off before it.
        let mut points = container::state::mounts_under(&mountinfo, dir);
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for point in points {
            if let Err(e) = umount2(&point, MntFlags::MNT_DETACH) {
                problems.push(format!("unmounting {}: {e}", point.display()));
            }
        }
        super::teardown::remove_dir(dir, problems);
        if let Some(parent) = dir.parent() {
            crate::rundir::prune(parent);
            if parent.starts_with(CVBENCH_DATA_DIR) {
                let _ = fs::remove_dir(parent);
                let _ = fs::remove_dir(CVBENCH_DATA_DIR);
            }
        }
    }
}

/// Kills whatever is left in the cgroup `/<name>` (and below) of every controller, then removes
/// those cgroups, children first.
fn kill_and_remove_cgroups(cgroup_root: &Path, name: &str, problems: &mut Vec<String>) {
    let Ok(controllers) = fs::read_dir(cgroup_root) else {
        return;
    };
    for ctrl in controllers.flatten() {
        let top = ctrl.path().join(name);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = vec![top.clone()];
        if let Ok(children) = fs::read_dir(&top) {
            dirs.extend(children.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for dir in dirs.iter().rev() {
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        for dir in dirs.iter().rev() {
            let mut removed = false;
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    removed = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !removed {
                problems.push(format!("removing cgroup {}", dir.display()));
            }
        }
    }
}

/// A container created through an engine's CLI, with its `start --attach` client.
struct EngineInstance {
    cli: EngineCli,
    name: String,
    /// Whether `create` was run, so teardown must `rm -f`.
    created: bool,
    /// `<cli> start --attach`: ends when the container does.
    child: Option<Child>,
    lines: Option<Receiver<(Instant, String)>>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    phases: Vec<PhaseMark>,
    exits_by_itself: bool,
    /// The engine's daemons, counted (shared) as runtime overhead.
    daemon_pids: Vec<i32>,
    /// The full container id `create` printed.
    id: String,
    /// The container's memory cgroup, found once.
    cgroup_dir: OnceLock<Option<PathBuf>>,
    torn_down: bool,
    /// Docker's holder container whose namespace this one joined; removed (as a field) after
    /// `Drop::drop` removed this container.
    holder: Option<Holder>,
    /// The network namespace and veth the container joined (podman, docker); a field, so it goes
    /// after `Drop::drop` removed the container.
    net: Option<InstanceNet>,
}

/// How an engine's container gets its network.
pub(super) enum EngineNetwork {
    /// `--network none`: loopback only.
    None,
    /// A prepared namespace joined by path (podman's `--network ns:<path>`).
    Namespace(InstanceNet),
    /// Another container's namespace, prepared (docker's `--network container:<holder>`).
    Holder(InstanceNet, Holder),
}

/// A container that only holds a network namespace for an instance (as Kubernetes' pause
/// container): `--network none`, running the image's `idle` workload. Removed when dropped.
pub(super) struct Holder {
    cli: EngineCli,
    name: String,
    /// Its workload's host pid: the namespace is `/proc/<pid>/ns/net`; its PSS is counted as the
    /// instance's runtime overhead.
    pub pid: i32,
}

impl Holder {
    /// Starts the holder `name` from `image_tag` and learns its process.
    pub(super) fn start(cli: &EngineCli, name: &str, image_tag: &str) -> Result<Holder, BackendError> {
        let mut holder = Holder {
            cli: cli.clone(),
            name: name.to_string(),
            pid: 0,
        };
        cli.run(&[
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "none",
            image_tag,
            WORKLOAD_PATH_IN_IMAGE,
            "idle",
        ])?;
        let pid = cli.run(&["inspect", "--format", "{{.State.Pid}}", name])?;
        holder.pid =
            pid.parse::<i32>().ok().filter(|p| *p > 0).ok_or_else(|| {
                cli.setup_err(format!("holder container {name} has no process (pid {pid:?})"))
            })?;
        Ok(holder)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Err(e) = self.cli.run(&["rm", "--force", &self.name]) {
            eprintln!("cvbench: removing holder container {}: {e}", self.name);
        }
    }
}

impl EngineInstance {
    /// Where the `start --attach` client stands after waiting at most `timeout` for it to exit.
    fn wait_child(&mut self, timeout: Duration) -> ChildState {
        match self.child.as_mut() {
            Some(child) => lines::wait_timeout(child, timeout),
            None => ChildState::NotStarted,
        }
    }

    fn stderr_text(&self) -> String {
        let t = self
            .stderr_tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        one_line(&String::from_utf8_lossy(&t))
    }

    fn signal(&self, signal: &str) {
        let _ = output_within(
            self.cli.command().args(["kill", "--signal", signal, &self.name]),
            CLI_TIMEOUT,
        );
    }

    /// The container's memory cgroup, found once by its id (see [`find_container_cgroup`]).
    fn cgroup_dir(&self) -> Option<&PathBuf> {
        self.cgroup_dir
            .get_or_init(|| find_container_cgroup(Path::new("/sys/fs/cgroup"), &self.id))
            .as_ref()
    }

    /// The container's processes: its memory cgroup's members, read directly (microseconds).
    fn container_pids(&self) -> Result<Vec<i32>, BackendError> {
        let dir = self.cgroup_dir().ok_or_else(|| {
            self.cli.setup_err(format!(
                "no memory cgroup named after container {} ({})",
                self.name, self.id
            ))
        })?;
        let pids: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
            .map(|procs| procs.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default();
        if pids.is_empty() {
            return Err(BackendError::EndedBeforeMemoryProbe {
                backend: self.cli.backend.to_string(),
                instance: self.name.clone(),
            });
        }
        Ok(pids)
    }

    /// The process that holds the container (containerd-shim, conmon): the first ancestor of one of
    /// its processes that is not itself in the container.
    fn monitor_pid(&self, pids: &[i32]) -> Option<i32> {
        let proc_root = Path::new("/proc");
        let mut pid = *pids.first()?;
        for _ in 0..64 {
            let parent = parent_pid(proc_root, pid)?;
            if !pids.contains(&parent) {
                return (parent > 1).then_some(parent);
            }
            pid = parent;
        }
        None
    }

    /// Idempotent: `rm -f` the container, end the attached client.
    fn teardown(&mut self) -> Result<(), String> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        if self.created {
            match output_within(
                self.cli.command().args(["rm", "--force", &self.name]),
                CLI_TIMEOUT,
            ) {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    let err = String::from_utf8_lossy(&out.stderr);
                    // A create that failed before the container existed leaves nothing to remove.
                    if !err.contains("No such container") && !err.contains("no such container") {
                        problems.push(format!(
                            "{} rm --force {}: {}",
                            self.cli.backend,
                            self.name,
                            one_line(&err)
                        ));
                    }
                }
                Err(e) => problems.push(format!("{} rm --force {}: {e}", self.cli.backend, self.name)),
            }
        }
        if self.wait_child(Duration::from_secs(5)).is_running() {
            if let Some(child) = self.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        super::teardown::outcome(problems)
    }
}

impl Instance for EngineInstance {
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
            backend: self.cli.backend.to_string(),
            instance: self.name.clone(),
        };
        let probe_err = |e: probe::ProbeError| self.cli.setup_err(format!("memory probe: {e}"));
        let measured = super::container_memory(|| self.container_pids(), ended, probe_err)?;
        let (pids, pss_bytes) = (measured.pids, measured.pss_bytes);
        let mut extra = Vec::new();
        if let Some(bytes) = measured.cgroup_bytes {
            extra.push((CGROUP_MEMORY_BYTES.to_string(), bytes));
        }
        let shim = self
            .monitor_pid(&pids)
            .map(|p| probe::pss_bytes(&[p]))
            .transpose()
            .map_err(probe_err)?
            .unwrap_or(0);
        let daemons = probe::pss_bytes(&self.daemon_pids).map_err(probe_err)?;
        // Docker's holder container is the instance's too (its namespace's keeper).
        let holder = self
            .holder
            .as_ref()
            .map(|h| probe::pss_bytes(&[h.pid]))
            .transpose()
            .map_err(probe_err)?
            .unwrap_or(0);
        extra.push((RUNTIME_PSS_BYTES.to_string(), shim + daemons + holder));
        if !self.daemon_pids.is_empty() {
            extra.push((DAEMON_PSS_BYTES.to_string(), daemons));
        }
        Ok(MemoryProbe { pss_bytes, extra })
    }

    fn disk(&self) -> Result<DiskProbe, BackendError> {
        let upper = self.cli.run(&[
            "inspect",
            "--format",
            "{{.GraphDriver.Data.UpperDir}}",
            &self.name,
        ])?;
        let instance_bytes = probe::allocated_bytes(Path::new(&upper))
            .map_err(|e| self.cli.setup_err(format!("disk probe: {e}")))?;
        Ok(DiskProbe { instance_bytes })
    }

    fn finish(&mut self, timeout: Duration) -> Result<Option<WorkloadResult>, BackendError> {
        let deadline = Instant::now() + timeout;
        let backend = self.cli.backend;
        let failed = move |reason: String| BackendError::WorkloadFailed {
            backend: backend.into(),
            reason,
        };
        if !self.exits_by_itself {
            self.signal("TERM");
            if self.wait_child(STOP_GRACE.min(timeout)).is_running() {
                self.signal("KILL");
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
            match lines::next(self.lines.as_ref(), deadline) {
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
        if !status.success() {
            return Err(failed(format!(
                "{backend} start ended with {status}: {}",
                self.stderr_text()
            )));
        }
        result.map(Some).ok_or_else(|| {
            failed("the workload exited with status 0 but printed no CVBENCH RESULT line".into())
        })
    }

    fn destroy(mut self: Box<Self>) -> Result<(), BackendError> {
        self.teardown().map_err(|reason| BackendError::Teardown {
            backend: self.cli.backend.into(),
            reason,
        })
    }
}

impl Drop for EngineInstance {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("cvbench: {} teardown of {}: {e}", self.cli.backend, self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workload::WorkloadSpec;

    fn spec(workload: WorkloadSpec) -> LaunchSpec {
        LaunchSpec {
            request: Instant::now(),
            image_dir: PathBuf::from("/img"),
            workload,
            instance_name: "cvbench-docker-idle-7-0".into(),
            memory_limit_bytes: Some(64 << 20),
            cpu_limit: Some(0.5),
            pids_limit: Some(32),
            ready_timeout: Duration::from_secs(1),
            confinement: crate::backend::Confinement::default(),
            network: None,
        }
    }

    #[test]
    fn create_args_carry_name_no_network_limits_extras_image_and_workload() {
        let args = create_args(
            &spec(WorkloadSpec::Idle),
            "cvbench-rootfs:ab12",
            &["--ulimit=nofile=1024:1024".to_string()],
            None,
        );
        assert_eq!(
            args,
            [
                "create",
                "--name",
                "cvbench-docker-idle-7-0",
                "--network",
                "none",
                "--memory=67108864",
                "--cpus=0.5",
                "--pids-limit=32",
                "--ulimit=nofile=1024:1024",
                "cvbench-rootfs:ab12",
                "/bin/cvbench-workload",
                "idle",
            ]
        );
    }

    #[test]
    fn unlimited_specs_add_no_limit_flags() {
        let mut s = spec(WorkloadSpec::Idle);
        (s.memory_limit_bytes, s.cpu_limit, s.pids_limit) = (None, None, None);
        let args = create_args(&s, "t", &[], None);
        assert!(!args
            .iter()
            .any(|a| a.starts_with("--memory") || a.starts_with("--cpus") || a.starts_with("--pids")));
    }

    #[test]
    fn a_prepared_namespace_is_joined_by_path() {
        let args = create_args(
            &spec(WorkloadSpec::Idle),
            "t",
            &[],
            Some("ns:/run/netns/cvbench-net-7-3".to_string()),
        );
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--network" && w[1] == "ns:/run/netns/cvbench-net-7-3"),
            "{args:?}"
        );
        assert!(!args.iter().any(|a| a == "none"));
    }

    #[test]
    fn the_image_tag_is_the_digest() {
        assert_eq!(image_tag("ab12"), "cvbench-rootfs:ab12");
    }

    #[test]
    fn the_parent_comes_from_stat_even_when_the_command_holds_a_paren() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("42");
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("stat"), "42 (cvbench-work) load) S 17 42 42 0 -1\n").unwrap();
        assert_eq!(parent_pid(tmp.path(), 42), Some(17));
        assert_eq!(parent_pid(tmp.path(), 43), None);
    }

    #[test]
    fn the_container_cgroup_is_found_by_its_id_in_each_engines_layout() {
        let id = "0123456789abcdef0123456789abcdef";
        for layout in [
            format!("memory/docker/{id}"),
            format!("memory/cvbench-pm-1-0/libpod-{id}"),
            format!("memory/system.slice/docker-{id}.scope"),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir_all(tmp.path().join("memory/other/deeper")).unwrap();
            fs::create_dir_all(tmp.path().join(&layout)).unwrap();
            assert_eq!(
                find_container_cgroup(tmp.path(), id),
                Some(tmp.path().join(&layout))
            );
            assert_eq!(find_container_cgroup(tmp.path(), "ffffffffffffffff"), None);
        }
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("docker")).unwrap();
        assert_eq!(
            find_container_cgroup(tmp.path(), ""),
            None,
            "an empty id matches nothing"
        );
    }

    #[test]
    fn pids_mentioning_matches_command_lines() {
        let tmp = tempfile::tempdir().unwrap();
        for (pid, cmd) in [
            (10, "dockerd\0--exec-root\0/run/cvbench/docker/d-1-0/exec\0"),
            (11, "bash\0"),
        ] {
            let d = tmp.path().join(pid.to_string());
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("cmdline"), cmd).unwrap();
        }
        assert_eq!(pids_mentioning(tmp.path(), "/run/cvbench/docker/d-1-0"), vec![10]);
    }

    #[test]
    fn a_command_that_outlives_its_timeout_is_killed() {
        let err = output_within(Command::new("sleep").arg("30"), Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let out = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            CLI_TIMEOUT,
        )
        .unwrap();
        assert_eq!(
            (out.stdout.as_slice(), out.stderr.as_slice()),
            (&b"out\n"[..], &b"err\n"[..])
        );
    }
}
