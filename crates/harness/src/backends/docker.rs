//! Docker (Debian's `docker.io`) over the same image, as a [`crate::Backend`]: `docker create` and
//! `docker start --attach`, as a user runs `docker run --rm --network none` on a laptop. A workload
//! reached from outside joins a holder container's namespace instead (`--network container:<holder>`,
//! the holder started with `--network none` and the veth moved into its namespace first; see
//! [`engine::Holder`]).
//!
//! The daemon: a dockerd answering on the system socket is used as it is. Otherwise the harness
//! starts its own on first `prepare` — data root `/var/lib/cvbench/docker/<daemon>/`, exec root,
//! socket, pid files and log in `/run/cvbench/docker/<daemon>/`, `--iptables=false --bridge=none`,
//! containers under the cgroup `/<daemon>` — and stops it when the backend is dropped, removing
//! both directories. `<daemon>` is `cvbench-dockerd-<harness pid>-<n>`, so `bench cleanup` leaves a
//! running harness's daemon alone and stops a dead one's: the directory exists before dockerd is
//! spawned, and every process whose command line names it (dockerd, its containerd, the shims) is
//! found by scanning `/proc`, so a harness killed at any moment leaves nothing cleanup cannot find.
//!
//! The image is imported by content digest (see `engine`); memory counts the container's shim and
//! the daemons (dockerd + containerd) as runtime overhead. The daemons serve every container, so
//! `daemon_pss_bytes` is a shared cost counted whole in each instance's `runtime_pss_bytes`.

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::engine::{self, EngineCli, ENGINE_CONFINEMENT};
use crate::backend::{Backend, BackendError, Instance, LaunchSpec, SharedImage, Unavailable};
use crate::cleanup::{CleanupReport, CleanupScope};
use crate::results::{Isolation, IsolationKind};

pub const NAME: &str = "docker";
/// Per-daemon run state: `<RUN_DIR>/<daemon>/{docker.sock, exec/, dockerd.pid, spawned.pid, ...}`.
pub const RUN_DIR: &str = "/run/cvbench/docker";
/// Per-daemon data roots (images, layers, containers).
pub const DATA_DIR: &str = "/var/lib/cvbench/docker";
/// Where a system dockerd listens.
pub const SYSTEM_SOCKET: &str = "/var/run/docker.sock";
/// The file in a daemon's run dir that names its data root (so cleanup finds it wherever it is).
const DATA_ROOT_FILE: &str = "data-root";
/// The pid of the spawned dockerd, written by the harness right after spawning it.
const SPAWNED_PID_FILE: &str = "spawned.pid";
/// How long a fresh dockerd may take to answer.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dockerd gets to stop its containers and containerd after SIGTERM.
const DAEMON_STOP_GRACE: Duration = Duration::from_secs(20);
/// How long a `docker version` probe of a socket may take.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Distinguishes the daemons one harness starts (several backends in one process, parallel tests).
static DAEMON_INDEX: AtomicU32 = AtomicU32::new(0);

pub struct DockerBackend {
    cli_program: PathBuf,
    dockerd: PathBuf,
    run_dir: PathBuf,
    data_dir: PathBuf,
    system_socket: PathBuf,
    /// The engine once prepared: the system daemon or our own.
    engine: Mutex<Option<Engine>>,
}

struct Engine {
    cli: EngineCli,
    /// The daemon the harness started, stopped when the backend is dropped.
    own: Option<OwnDaemon>,
    images: engine::ImportedImages,
}

/// A dockerd the harness started.
struct OwnDaemon {
    name: String,
    run_dir: PathBuf,
    data_root: PathBuf,
    child: Child,
}

impl Default for DockerBackend {
    fn default() -> Self {
        DockerBackend::new()
    }
}

impl DockerBackend {
    /// Own daemons under `/run/cvbench/docker` and `/var/lib/cvbench/docker`.
    pub fn new() -> Self {
        DockerBackend::with_dirs(Path::new(RUN_DIR), Path::new(DATA_DIR), Path::new(SYSTEM_SOCKET))
    }

    /// Own daemons' state under `run_dir` and data roots under `data_dir`; `system_socket` is where a
    /// running dockerd would answer (tests point it at a path that does not exist).
    pub fn with_dirs(run_dir: &Path, data_dir: &Path, system_socket: &Path) -> Self {
        DockerBackend {
            cli_program: docker_cli(),
            dockerd: PathBuf::from("dockerd"),
            run_dir: run_dir.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            system_socket: system_socket.to_path_buf(),
            engine: Mutex::new(None),
        }
    }

    fn setup_err(reason: impl Into<String>) -> BackendError {
        BackendError::setup(NAME, reason)
    }

    fn cli_for(&self, socket: &Path) -> EngineCli {
        EngineCli {
            backend: NAME,
            program: self.cli_program.clone(),
            global_args: host_args(socket),
        }
    }

    /// Whether a dockerd answers on `socket`.
    fn answers(&self, socket: &Path) -> bool {
        socket.exists()
            && engine::output_within(
                self.cli_for(socket)
                    .command()
                    .args(["version", "--format", "{{.Server.Version}}"]),
                PING_TIMEOUT,
            )
            .is_ok_and(|o| o.status.success())
    }

    /// The system daemon if it answers, else a daemon of our own, started now.
    fn connect(&self) -> Result<Engine, BackendError> {
        if self.answers(&self.system_socket) {
            return Ok(Engine {
                cli: self.cli_for(&self.system_socket),
                own: None,
                images: engine::ImportedImages::default(),
            });
        }
        let own = self.start_daemon()?;
        Ok(Engine {
            cli: self.cli_for(&own.run_dir.join("docker.sock")),
            own: Some(own),
            images: engine::ImportedImages::default(),
        })
    }

    /// Starts `dockerd` with everything of its own under cvbench's dirs and waits until it answers.
    fn start_daemon(&self) -> Result<OwnDaemon, BackendError> {
        let name = format!(
            "cvbench-dockerd-{}-{}",
            std::process::id(),
            DAEMON_INDEX.fetch_add(1, Ordering::Relaxed)
        );
        let run_dir = self.run_dir.join(&name);
        let data_root = self.data_dir.join(&name);
        // The run dir (which cleanup scans) and the data-root record exist before the daemon does.
        crate::rundir::create_dir(&run_dir)
            .map_err(BackendError::io(NAME, format!("creating {}", run_dir.display())))?;
        let write = |file: &str, text: &[u8]| {
            fs::write(run_dir.join(file), text).map_err(BackendError::io(NAME, format!("writing {file}")))
        };
        write(DATA_ROOT_FILE, data_root.as_os_str().as_encoded_bytes())?;
        write("daemon.json", b"{}\n")?;
        fs::create_dir_all(&data_root).map_err(BackendError::io(
            NAME,
            format!("creating {}", data_root.display()),
        ))?;
        let log = fs::File::create(run_dir.join("dockerd.log"))
            .map_err(BackendError::io(NAME, "creating dockerd.log"))?;
        let log_err = log
            .try_clone()
            .map_err(BackendError::io(NAME, "duplicating the log fd"))?;
        let child = Command::new(&self.dockerd)
            .args(dockerd_args(&name, &run_dir, &data_root))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // A Ctrl-C on the terminal must not stop the daemon under a run that is finishing.
            .process_group(0)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                let problems = stop_daemon(
                    &run_dir,
                    &data_root,
                    &name,
                    None,
                    &self.cli_program,
                    Path::new(CGROUP_ROOT),
                );
                return Err(Self::setup_err(format!(
                    "starting `{}`: {e}{}",
                    self.dockerd.display(),
                    problems_suffix(&problems)
                )));
            }
        };
        let mut daemon = OwnDaemon {
            name,
            run_dir,
            data_root,
            child,
        };
        let _ = fs::write(
            daemon.run_dir.join(SPAWNED_PID_FILE),
            format!("{}\n", daemon.child.id()),
        );
        let socket = daemon.run_dir.join("docker.sock");
        let deadline = Instant::now() + DAEMON_START_TIMEOUT;
        loop {
            if self.answers(&socket) {
                return Ok(daemon);
            }
            let exited = matches!(daemon.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= deadline {
                let log = fs::read_to_string(daemon.run_dir.join("dockerd.log")).unwrap_or_default();
                let what = if exited {
                    "exited"
                } else {
                    "did not answer in time"
                };
                let reason = format!("dockerd {what}: {}", engine::one_line(&log));
                let problems = daemon.stop(&self.cli_program);
                return Err(Self::setup_err(format!("{reason}{}", problems_suffix(&problems))));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The docker CLI's version (`20.10.24+dfsg1`), from `docker --version`.
    fn client_version(&self) -> Result<String, String> {
        let out = Command::new(&self.cli_program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `{} --version`: {e}", self.cli_program.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`{} --version` failed: {}",
                self.cli_program.display(),
                out.status
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let v = text.trim().strip_prefix("Docker version ").unwrap_or(text.trim());
        Ok(v.split(',').next().unwrap_or(v).trim().to_string())
    }
}

/// Debian's docker CLI (`/usr/bin/docker`, from `docker.io`, matching its dockerd) when it is
/// there, else whatever `docker` the `PATH` holds.
fn docker_cli() -> PathBuf {
    let debian = Path::new("/usr/bin/docker");
    if debian.is_file() {
        debian.to_path_buf()
    } else {
        PathBuf::from("docker")
    }
}

/// `-H unix://<socket>`.
fn host_args(socket: &Path) -> Vec<OsString> {
    let mut host = OsString::from("unix://");
    host.push(socket);
    vec![OsString::from("-H"), host]
}

/// dockerd's command line for a daemon of our own named `name`.
pub fn dockerd_args(name: &str, run_dir: &Path, data_root: &Path) -> Vec<OsString> {
    let mut host = OsString::from("unix://");
    host.push(run_dir.join("docker.sock"));
    let mut args: Vec<OsString> = Vec::new();
    let mut pair = |flag: &str, value: OsString| {
        args.push(flag.into());
        args.push(value);
    };
    pair("--config-file", run_dir.join("daemon.json").into());
    pair("--data-root", data_root.into());
    pair("--exec-root", run_dir.join("exec").into());
    pair("--pidfile", run_dir.join("dockerd.pid").into());
    pair("-H", host);
    pair("--cgroup-parent", format!("/{name}").into());
    for flag in [
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--userland-proxy=false",
    ] {
        args.push(flag.into());
    }
    args
}

fn problems_suffix(problems: &[String]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!(" (stopping it: {})", problems.join("; "))
    }
}

impl OwnDaemon {
    fn stop(&mut self, cli_program: &Path) -> Vec<String> {
        stop_daemon(
            &self.run_dir,
            &self.data_root,
            &self.name,
            Some(&mut self.child),
            cli_program,
            Path::new(CGROUP_ROOT),
        )
    }
}

/// Stops a cvbench dockerd and removes everything it had: its containers (`docker rm -f`, while it
/// still answers), dockerd (SIGTERM, then SIGKILL), every process whose command line names its run
/// dir (containerd, shims), processes left in its cgroups, mounts under its dirs, the dirs and its
/// cgroups. Returns what could not be done.
fn stop_daemon(
    run_dir: &Path,
    data_root: &Path,
    name: &str,
    child: Option<&mut Child>,
    cli_program: &Path,
    cgroup_root: &Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    let proc_root = Path::new("/proc");
    let needle = daemon_needle(run_dir);
    let socket = run_dir.join("docker.sock");
    if socket.exists() {
        let cli = EngineCli {
            backend: NAME,
            program: cli_program.to_path_buf(),
            global_args: host_args(&socket),
        };
        if let Ok(ids) = cli.run(&["ps", "--all", "--quiet"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "--force"];
                args.extend(ids);
                if let Err(e) = cli.run(&args) {
                    problems.push(e.to_string());
                }
            }
        }
    }
    let spawned: Option<i32> = child.as_ref().and_then(|c| i32::try_from(c.id()).ok());
    let daemons: Vec<i32> = spawned
        .into_iter()
        .chain(pids_named(proc_root, &needle, "dockerd"))
        .collect();
    for &pid in &daemons {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let mut child = child;
    let deadline = Instant::now() + DAEMON_STOP_GRACE;
    while Instant::now() < deadline {
        if let Some(c) = child.as_deref_mut() {
            let _ = c.try_wait();
        }
        if engine::pids_mentioning(proc_root, &needle).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stragglers = engine::pids_mentioning(proc_root, &needle);
    for &pid in &stragglers {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if let Some(c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
    if !stragglers.is_empty() {
        problems.push(format!(
            "killed {} process(es) still running after SIGTERM: {stragglers:?}",
            stragglers.len()
        ));
    }
    engine::remove_state(&[run_dir, data_root], name, cgroup_root, &mut problems);
    problems
}

/// What every command line of a daemon's processes contains: its run dir with a trailing `/` (so
/// daemon `...-1` never matches `...-10`).
fn daemon_needle(run_dir: &Path) -> String {
    format!("{}/", run_dir.display())
}

/// Pids whose command line names `needle` and whose command is `comm`.
fn pids_named(proc_root: &Path, needle: &str, comm: &str) -> Vec<i32> {
    engine::pids_mentioning(proc_root, needle)
        .into_iter()
        .filter(|pid| {
            fs::read_to_string(proc_root.join(pid.to_string()).join("comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        let engine = self
            .engine
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mut own) = engine.take().and_then(|e| e.own) {
            let problems = own.stop(&self.cli_program);
            if !problems.is_empty() {
                eprintln!("cvbench: stopping dockerd {}: {}", own.name, problems.join("; "));
            }
        }
    }
}

impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn isolation(&self) -> Isolation {
        Isolation::host_kernel(IsolationKind::DaemonContainer)
    }

    /// Docker joins no namespace by path, and a container's own namespace exists only once its
    /// workload started: each instance joins a holder container's namespace instead
    /// (`--network container:<holder>`, as Kubernetes' pause container), into which the veth is
    /// moved and configured before the instance's container is created. The holder's start is
    /// part of the network phase, its PSS part of the instance's runtime overhead.
    fn networking(&self) -> bool {
        true
    }

    fn check_host(&self) -> Result<(), Unavailable> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Unavailable {
                reason: "docker needs root here (run bench as root)".into(),
            });
        }
        self.client_version().map_err(|e| Unavailable {
            reason: format!("{e}; install it with `apt-get install docker.io`"),
        })?;
        if self.answers(&self.system_socket) {
            return Ok(());
        }
        let out = Command::new(&self.dockerd)
            .arg("--version")
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(()),
            _ => Err(Unavailable {
                reason: format!(
                    "no dockerd answers on {} and `{} --version` fails; install it with `apt-get install docker.io`",
                    self.system_socket.display(),
                    self.dockerd.display()
                ),
            }),
        }
    }

    fn labels(&self) -> Vec<(String, String)> {
        let mut labels = Vec::new();
        if let Ok(v) = self.client_version() {
            labels.push(("docker_version".to_string(), v));
        }
        let daemon = if self.answers(&self.system_socket) {
            "system dockerd"
        } else {
            "dockerd started by cvbench"
        };
        labels.push(("docker_daemon".to_string(), daemon.to_string()));
        labels.push(("confinement".to_string(), ENGINE_CONFINEMENT.to_string()));
        labels
    }

    fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
        engine::hold_run_lock(NAME, &self.run_dir)?;
        let mut guard = self
            .engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(self.connect()?);
        }
        let Some(engine) = guard.as_mut() else {
            return Err(Self::setup_err("no docker engine"));
        };
        engine.images.get_or_import(&engine.cli, image_dir)
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
        let (cli, tag, daemon_pids) = {
            let guard = self
                .engine
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(engine) = guard.as_ref() else {
                return Err(Self::setup_err("launch before prepare"));
            };
            let tag = engine.images.tag(&engine.cli, &spec.image_dir)?;
            let daemon_pids = match &engine.own {
                Some(own) => {
                    let needle = daemon_needle(&own.run_dir);
                    let proc_root = Path::new("/proc");
                    let mut pids = pids_named(proc_root, &needle, "dockerd");
                    pids.extend(pids_named(proc_root, &needle, "containerd"));
                    pids
                }
                None => system_daemon_pids(Path::new("/proc")),
            };
            (engine.cli.clone(), tag, daemon_pids)
        };
        let network = match (&spec.network, spec.workload.reached_from_outside()) {
            (Some(network), true) => {
                // The holder's namespace comes first; attaching configures the veth in it, all
                // before the instance's own container is created.
                let holder = engine::Holder::start(&cli, &holder_name(&spec.instance_name), &tag)?;
                let net = network
                    .attach_to_process(holder.pid)
                    .map_err(|e| Self::setup_err(format!("network: {e}")))?;
                engine::EngineNetwork::Holder(net, holder)
            }
            _ => engine::EngineNetwork::None,
        };
        engine::launch(&cli, spec, &tag, &[], daemon_pids, network)
    }
}

/// The holder container of instance `instance` (`cvbench-docker-<rest>` becomes
/// `cvbench-docker-net-<rest>`): the `cvbench-docker-` prefix and the `-<pid>-<index>` suffix stay,
/// so cleanups find it as they find the instance.
fn holder_name(instance: &str) -> String {
    match instance.strip_prefix("cvbench-docker-") {
        Some(rest) => format!("cvbench-docker-net-{rest}"),
        None => format!("{instance}-net"),
    }
}

/// A system dockerd and containerd: processes of those names not started by cvbench.
fn system_daemon_pids(proc_root: &Path) -> Vec<i32> {
    let Ok(entries) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let dir = proc_root.join(pid.to_string());
            let comm = fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
            matches!(comm.trim(), "dockerd" | "containerd")
                && !String::from_utf8_lossy(&cmdline).contains(crate::rundir::RUN_ROOT)
        })
        .collect()
}

/// `bench cleanup` for docker: stops every dockerd a dead harness started (with its containers,
/// containerd, shims, mounts, cgroups and directories), and removes `cvbench-docker-*` containers a
/// dead harness left in a system daemon.
pub fn cleanup_leftovers(scope: &CleanupScope) -> CleanupReport {
    let mut report = CleanupReport::default();
    let run_dir = scope.roots.relocate(RUN_DIR);
    let cli_program = docker_cli();
    if let Ok(entries) = fs::read_dir(&run_dir) {
        for entry in entries.flatten().filter(|e| e.path().is_dir()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if (scope.keep)(&name) {
                report.in_use.push(format!("dockerd {name}"));
                continue;
            }
            let data_root = fs::read(entry.path().join(DATA_ROOT_FILE))
                .map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()))
                .unwrap_or_else(|_| Path::new(DATA_DIR).join(&name));
            let problems = stop_daemon(
                &entry.path(),
                &data_root,
                &name,
                None,
                &cli_program,
                &scope.roots.cgroup_root,
            );
            report.removed.push(format!("dockerd {name} and its state"));
            report.problems.extend(problems);
        }
    }
    crate::rundir::prune(&run_dir);
    // Containers left in a system daemon (only when it answers; never waits long on it).
    let socket = Path::new(SYSTEM_SOCKET);
    if socket.exists() && run_dir.starts_with(crate::rundir::RUN_ROOT) {
        let cli = EngineCli {
            backend: NAME,
            program: cli_program,
            global_args: host_args(socket),
        };
        if let Ok(names) = cli.run(&[
            "ps",
            "--all",
            "--filter",
            "name=cvbench-docker-",
            "--format",
            "{{.Names}}",
        ]) {
            for name in names.split_whitespace() {
                if (scope.keep)(name) {
                    report.in_use.push(format!("docker container {name}"));
                    continue;
                }
                match cli.run(&["rm", "--force", name]) {
                    Ok(_) => report.removed.push(format!("docker container {name}")),
                    Err(e) => report.problems.push(e.to_string()),
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerd_gets_its_own_roots_socket_cgroup_and_no_network_setup() {
        let run = Path::new("/run/cvbench/docker/cvbench-dockerd-7-0");
        let data = Path::new("/var/lib/cvbench/docker/cvbench-dockerd-7-0");
        let args: Vec<String> = dockerd_args("cvbench-dockerd-7-0", run, data)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        for part in [
            "--config-file /run/cvbench/docker/cvbench-dockerd-7-0/daemon.json",
            "--data-root /var/lib/cvbench/docker/cvbench-dockerd-7-0",
            "--exec-root /run/cvbench/docker/cvbench-dockerd-7-0/exec",
            "--pidfile /run/cvbench/docker/cvbench-dockerd-7-0/dockerd.pid",
            "-H unix:///run/cvbench/docker/cvbench-dockerd-7-0/docker.sock",
            "--cgroup-parent /cvbench-dockerd-7-0",
            "--iptables=false",
            "--bridge=none",
        ] {
            assert!(line.contains(part), "{part} missing from {line}");
        }
        // Everything the daemon owns is under one of its two dirs: cleanup finds it by them.
        for (flag, value) in args.iter().zip(args.iter().skip(1)) {
            if value.starts_with('/') && flag.starts_with("--") && flag != "--cgroup-parent" {
                assert!(
                    Path::new(value).starts_with(run) || Path::new(value).starts_with(data),
                    "{flag} {value}"
                );
            }
        }
    }

    #[test]
    fn the_cli_reaches_the_daemon_by_its_socket() {
        let args = host_args(Path::new("/run/cvbench/docker/d/docker.sock"));
        assert_eq!(args, ["-H", "unix:///run/cvbench/docker/d/docker.sock"]);
    }

    #[test]
    fn without_root_or_tools_the_reason_says_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = DockerBackend::with_dirs(tmp.path(), tmp.path(), &tmp.path().join("no.sock"));
        b.cli_program = tmp.path().join("no-docker");
        let reason = b.check_host().unwrap_err().reason;
        if nix::unistd::geteuid().is_root() {
            assert!(reason.contains("apt-get install docker.io"), "{reason}");
            assert!(reason.contains("no-docker"), "{reason}");
        } else {
            assert!(reason.contains("root"), "{reason}");
        }
    }

    #[test]
    fn cleanup_leaves_a_live_harness_daemon_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let run_dir = tmp.path().join("run");
        let daemon = run_dir
            .join("docker")
            .join(format!("cvbench-dockerd-{}-0", std::process::id()));
        fs::create_dir_all(&daemon).unwrap();
        let roots = crate::cleanup::CleanupRoots {
            run_dir: run_dir.clone(),
            cgroup_root: tmp.path().join("cg"),
            mountinfo: tmp.path().join("mountinfo"),
        };
        let keep = |n: &str| n.contains(&format!("-{}-", std::process::id()));
        let report = cleanup_leftovers(&CleanupScope {
            roots: &roots,
            keep: &keep,
            exclusive: true,
        });
        assert_eq!(report.in_use.len(), 1, "{report:?}");
        assert!(daemon.exists());
    }

    #[test]
    fn cleanup_removes_a_dead_harness_daemon_dir_and_its_data_root() {
        let tmp = tempfile::tempdir().unwrap();
        let run_dir = tmp.path().join("run");
        let name = "cvbench-dockerd-999999999-0";
        let daemon = run_dir.join("docker").join(name);
        let data_root = tmp.path().join("data").join(name);
        fs::create_dir_all(daemon.join("exec")).unwrap();
        fs::create_dir_all(data_root.join("overlay2")).unwrap();
        fs::write(
            daemon.join(DATA_ROOT_FILE),
            data_root.as_os_str().as_encoded_bytes(),
        )
        .unwrap();
        let roots = crate::cleanup::CleanupRoots {
            run_dir: run_dir.clone(),
            cgroup_root: tmp.path().join("cg"),
            mountinfo: tmp.path().join("mountinfo"),
        };
        let keep = |_: &str| false;
        let report = cleanup_leftovers(&CleanupScope {
            roots: &roots,
            keep: &keep,
            exclusive: true,
        });
        assert!(report.removed.iter().any(|r| r.contains(name)), "{report:?}");
        assert!(report.problems.is_empty(), "{report:?}");
        assert!(!daemon.exists() && !data_root.exists());
    }
}
