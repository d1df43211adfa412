//! The lifecycle of one container: [`Container::create`] (directories, cgroup with limits, state
//! file, the child's setup plan) → [`Container::start`] (clone into namespaces, rootfs, exec) →
//! [`Container::wait`] / [`Container::stop`] → [`Container::destroy`]. `Drop` destroys (best effort).

use std::ffi::{c_char, CString};
use std::fs::{self, File};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cgroup::{self, CgroupManager, Limits, Usage};
use crate::confine::{ConfinePlan, Confinement};
use crate::error::ContainerError;
use crate::output::{drain_into_tail, poll_timeout_until, Tail, TAIL_BYTES};
use crate::setup::{RootfsLayout, SetupPlan, Stage};
use crate::spawn::{self, IdMap, SpawnFailure, SpawnRequest};
use crate::state::{self, ContainerState, CONTAINERS_DIR, DEFAULT_STATE_ROOT, STATE_FILE};

/// What to run and how to confine it.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// Unique name: `[A-Za-z0-9._-]`, 1..=100 bytes. Used for the state directory, the cgroup
    /// (`cvbench-<name>`) and the default hostname.
    pub name: String,
    /// The shared read-only image (overlay lowerdir).
    pub image_dir: PathBuf,
    /// `args[0]` is the program's path inside the image; all of it is the program's argv.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Defaults to the name (cut to 64 bytes).
    pub hostname: Option<String>,
    pub limits: Limits,
    /// Root of runtime state (`/run/cvbench`); the container's directory is
    /// `<state_root>/containers/<name>`.
    pub state_root: PathBuf,
    /// Where the overlay upper and work directories live (`<scratch_root>/<name>/{upper,work}`);
    /// `None` = inside the container's state directory.
    pub scratch_root: Option<PathBuf>,
    /// Run in a user namespace with this id mapping (container root = `host_uid`); `None` = no user
    /// namespace (container root is host root, confined by the other namespaces and the cgroup).
    /// Tested with the identity mapping (`host_uid` 0: capabilities confined to the namespace); a
    /// mapping to an unprivileged host range currently fails at the overlay mount (EACCES).
    pub user_namespace: Option<IdMap>,
    /// Capabilities, no_new_privs, masked and read-only paths, rlimits, seccomp (see
    /// [`crate::confine`]); defaults to [`Confinement::OciDefault`], what runc gets from the OCI
    /// default spec.
    pub confinement: Confinement,
}

impl ContainerConfig {
    pub fn new(name: &str, image_dir: &Path, args: Vec<String>) -> Self {
        ContainerConfig {
            name: name.to_string(),
            image_dir: image_dir.to_path_buf(),
            args,
            env: vec![
                ("PATH".into(), "/bin:/usr/bin:/sbin:/usr/sbin".into()),
                ("HOME".into(), "/".into()),
            ],
            hostname: None,
            limits: Limits::default(),
            state_root: PathBuf::from(DEFAULT_STATE_ROOT),
            scratch_root: None,
            user_namespace: None,
            confinement: Confinement::default(),
        }
    }
}

/// The host the container runs on: the cgroup manager, `/proc`, and whether the kernel has cgroup
/// namespaces. Pass fakes (a manager over a fixture tree) in tests.
#[derive(Debug, Clone)]
pub struct ContainerDeps {
    pub cgroups: Arc<dyn CgroupManager>,
    pub proc_root: PathBuf,
    pub cgroup_namespace: bool,
}

impl ContainerDeps {
    /// The real host: detected cgroup layout, `/proc`.
    pub fn host() -> Result<Self, ContainerError> {
        Ok(ContainerDeps {
            cgroups: Arc::from(cgroup::detect_host()?),
            proc_root: PathBuf::from("/proc"),
            cgroup_namespace: Path::new("/proc/self/ns/cgroup").exists(),
        })
    }
}

/// The container's directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDirs {
    pub container_dir: PathBuf,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    pub merged_dir: PathBuf,
    /// `<scratch_root>/<name>` when the upper dir lives outside the container directory.
    pub scratch_dir: Option<PathBuf>,
}

/// Host-side timestamps of the launch, taken at the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaunchEvents {
    /// The child reported namespaces and rootfs ready (its record became readable).
    pub rootfs_ready: Option<Instant>,
    /// The child reported its confinement applied (masked/read-only paths, rlimits, capabilities,
    /// no_new_privs, seccomp), right before `execve`; `None` under `Confinement::None`.
    pub confined: Option<Instant>,
    /// The CLOEXEC pipe hit EOF: `execve` succeeded.
    pub exec: Option<Instant>,
}

/// How the container's first process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(Signal),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit status {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by {s}"),
        }
    }
}

#[derive(Debug)]
enum Process {
    NotStarted,
    Running { pid: Pid, pidfd: OwnedFd },
    Exited { pid: Pid, status: ExitStatus },
}

/// One container. See the module docs for the lifecycle.
#[derive(Debug)]
pub struct Container {
    config: ContainerConfig,
    deps: ContainerDeps,
    dirs: ContainerDirs,
    cgroup_paths: Vec<PathBuf>,
    plan: SetupPlan,
    confine: ConfinePlan,
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    process: Process,
    events: LaunchEvents,
    stdout: Option<File>,
    stderr_tail: Arc<Mutex<Tail>>,
    stderr_thread: Option<JoinHandle<()>>,
    destroyed: bool,
}

fn check_name(name: &str) -> Result<(), ContainerError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ContainerError::InvalidConfig {
            field: "name",
            reason: format!("{name:?} must be 1..=100 of [A-Za-z0-9._-] and not start with '.'"),
        })
    }
}

fn to_cstring(field: &'static str, s: &str) -> Result<CString, ContainerError> {
    CString::new(s).map_err(|_| ContainerError::InvalidConfig {
        field,
        reason: format!("{s:?} contains a NUL byte"),
    })
}

fn wait_status(pid: Pid, w: WaitStatus) -> Result<ExitStatus, ContainerError> {
    match w {
        WaitStatus::Exited(_, code) => Ok(ExitStatus::Exited(code)),
        WaitStatus::Signaled(_, sig, _) => Ok(ExitStatus::Signaled(sig)),
        _ => Err(ContainerError::Wait {
            pid: pid.as_raw(),
            source: Errno::EAGAIN,
        }),
    }
}

impl Container {
    /// Creates the directories, the cgroup with its limits and the state file, and prepares the
    /// child's setup. Nothing runs yet. On error, everything created is removed again.
    pub fn create(config: ContainerConfig, deps: ContainerDeps) -> Result<Container, ContainerError> {
        check_name(&config.name)?;
        if !config.image_dir.is_dir() {
            return Err(ContainerError::MissingImage {
                path: config.image_dir.clone(),
            });
        }
        let program = config.args.first().ok_or_else(|| ContainerError::InvalidConfig {
            field: "args",
            reason: "empty: args[0] must be the program's path inside the image".into(),
        })?;
        let program = to_cstring("args", program)?;
        let argv = config
            .args
            .iter()
            .map(|a| to_cstring("args", a))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = config
            .env
            .iter()
            .map(|(k, v)| to_cstring("env", &format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?;
        let containers = config.state_root.join(CONTAINERS_DIR);
        let container_dir = containers.join(&config.name);
        let scratch_dir = config.scratch_root.as_ref().map(|r| r.join(&config.name));
        let scratch = scratch_dir.clone().unwrap_or_else(|| container_dir.clone());
        let dirs = ContainerDirs {
            upper_dir: scratch.join("upper"),
            work_dir: scratch.join("work"),
            merged_dir: container_dir.join("merged"),
            container_dir,
            scratch_dir,
        };
        let hostname = config.hostname.clone().unwrap_or_else(|| {
            let mut h = config.name.clone();
            h.truncate(64);
            h
        });
        let profile = config.confinement.profile();
        let plan = SetupPlan::new(&RootfsLayout {
            image_dir: config.image_dir.clone(),
            upper_dir: dirs.upper_dir.clone(),
            work_dir: dirs.work_dir.clone(),
            merged_dir: dirs.merged_dir.clone(),
            hostname,
            user_namespace: config.user_namespace.is_some(),
            masked_paths: profile
                .map(|p| p.masked_paths.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            readonly_paths: profile
                .map(|p| p.readonly_paths.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        })?;
        let confine = ConfinePlan::new(config.confinement)?;
        // `containers/` is shared: a concurrent destroy or cleanup may remove it when it is empty,
        // between the two mkdirs; then it is made again.
        let mut attempts = 0;
        let made = loop {
            fs::create_dir_all(&containers).map_err(ContainerError::io("creating", &containers))?;
            match fs::create_dir(&dirs.container_dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 8 => attempts += 1,
                other => break other,
            }
        };
        match made {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ContainerError::AlreadyExists {
                    name: config.name.clone(),
                    path: dirs.container_dir,
                });
            }
            Err(e) => return Err(ContainerError::io("creating", &dirs.container_dir)(e)),
        }
        let mut container = Container {
            plan,
            confine,
            program,
            argv,
            envp,
            cgroup_paths: deps.cgroups.paths(&config.name),
            config,
            deps,
            dirs,
            process: Process::NotStarted,
            events: LaunchEvents::default(),
            stdout: None,
            stderr_tail: Arc::new(Mutex::new(Tail::new(TAIL_BYTES))),
            stderr_thread: None,
            destroyed: false,
        };
        // From here on, a failure drops `container`, which removes what exists so far.
        container.make_dirs_and_cgroup()?;
        Ok(container)
    }

    fn make_dirs_and_cgroup(&mut self) -> Result<(), ContainerError> {
        if let Some(s) = &self.dirs.scratch_dir {
            fs::create_dir_all(s).map_err(ContainerError::io("creating", s))?;
        }
        for d in [&self.dirs.upper_dir, &self.dirs.work_dir, &self.dirs.merged_dir] {
            fs::create_dir(d).map_err(ContainerError::io("creating", d))?;
        }
        if let Some(map) = self.config.user_namespace {
            // The overlay is mounted (and written) by the mapped container root.
            for d in [&self.dirs.upper_dir, &self.dirs.work_dir] {
                std::os::unix::fs::chown(d, Some(map.host_uid), Some(map.host_gid))
                    .map_err(ContainerError::io("chowning", d))?;
            }
        }
        self.write_state()?;
        self.cgroup_paths = self.deps.cgroups.create(&self.config.name, &self.config.limits)?;
        Ok(())
    }

    /// Records, before anything is mounted or created in a cgroup, what `cleanup_all` must undo.
    fn write_state(&self) -> Result<(), ContainerError> {
        let state = ContainerState {
            name: self.config.name.clone(),
            cgroup_paths: self.cgroup_paths.clone(),
            image_dir: self.config.image_dir.clone(),
            container_dir: self.dirs.container_dir.clone(),
            upper_dir: self.dirs.upper_dir.clone(),
            work_dir: self.dirs.work_dir.clone(),
            merged_dir: self.dirs.merged_dir.clone(),
        };
        state::write_state(&self.dirs.container_dir.join(STATE_FILE), &state)
    }

    /// Clones the container process into its namespaces, builds its root filesystem and execs the
    /// program; returns once `execve` succeeded (or the child reported why it failed). The launch
    /// timestamps are in [`Container::events`].
    pub fn start(&mut self) -> Result<(), ContainerError> {
        if !matches!(self.process, Process::NotStarted) {
            return Err(ContainerError::AlreadyStarted {
                name: self.config.name.clone(),
            });
        }
        let mut cgroup_procs = Vec::new();
        for file in self.cgroup_paths.iter().map(|d| d.join("cgroup.procs")) {
            let fd = nix::fcntl::open(&file, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(std::io::Error::from)
                .map_err(ContainerError::io("opening", &file))?;
            cgroup_procs.push(fd);
        }
        let sys = |context| move |source| ContainerError::Sys { context, source };
        let stdin = nix::fcntl::open("/dev/null", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(sys("opening /dev/null"))?;
        let (stdout_r, stdout_w) = spawn::cloexec_pipe().map_err(sys("creating the stdout pipe"))?;
        let (stderr_r, stderr_w) = spawn::cloexec_pipe().map_err(sys("creating the stderr pipe"))?;
        let mut argv: Vec<*const c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const c_char> = self.envp.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        let req = SpawnRequest {
            plan: &self.plan,
            confine: &self.confine,
            cgroup_procs: &cgroup_procs,
            cgroup_namespace: self.deps.cgroup_namespace,
            user_namespace: self.config.user_namespace,
            stdin: stdin.as_fd(),
            stdout: stdout_w.as_fd(),
            stderr: stderr_w.as_fd(),
            program: &self.program,
            argv: &argv,
            envp: &envp,
        };
        let result = spawn::spawn(&req);
        drop((stdout_w, stderr_w, stdin, cgroup_procs));
        let spawned = match result {
            Ok(s) => s,
            Err(f) => return Err(self.spawn_error(f)),
        };
        self.events = LaunchEvents {
            rootfs_ready: Some(spawned.rootfs_ready),
            confined: spawned.confined,
            exec: Some(spawned.exec),
        };
        let pidfd = match spawn::pidfd_open(spawned.pid) {
            Ok(fd) => fd,
            Err(source) => {
                let _ = kill(spawned.pid, Signal::SIGKILL);
                let _ = waitpid(spawned.pid, None);
                return Err(ContainerError::Sys {
                    context: "pidfd_open",
                    source,
                });
            }
        };
        self.process = Process::Running {
            pid: spawned.pid,
            pidfd,
        };
        self.stdout = Some(File::from(stdout_r));
        self.stderr_thread = drain_into_tail(File::from(stderr_r), Arc::clone(&self.stderr_tail)).ok();
        Ok(())
    }

    fn spawn_error(&self, f: SpawnFailure) -> ContainerError {
        match f {
            SpawnFailure::Pipe(source) => ContainerError::Sys {
                context: "creating the error pipe",
                source,
            },
            SpawnFailure::Clone(source) => ContainerError::Clone { source },
            SpawnFailure::Vanished { pid, status } => ContainerError::ChildVanished {
                pid: pid.as_raw(),
                status,
            },
            SpawnFailure::Parent {
                pid,
                stage,
                path,
                errno,
            } => ContainerError::ChildSetup {
                pid: pid.as_raw(),
                stage,
                path,
                errno,
            },
            SpawnFailure::Child {
                pid,
                stage: Stage::Exec,
                errno,
                ..
            } => ContainerError::Exec {
                pid: pid.as_raw(),
                path: format!(
                    "{} (in image {})",
                    self.program.to_string_lossy(),
                    self.config.image_dir.display()
                ),
                errno,
            },
            SpawnFailure::Child {
                pid,
                stage,
                step,
                errno,
            } => {
                let path = match (stage, step) {
                    (Stage::JoinCgroup, Some(i)) => self
                        .cgroup_paths
                        .get(i as usize)
                        .map(|p| p.join("cgroup.procs").display().to_string())
                        .unwrap_or_default(),
                    (_, Some(i)) => self.plan.describe(i).map(|(_, p)| p).unwrap_or_default(),
                    (_, None) => String::new(),
                };
                ContainerError::ChildSetup {
                    pid: pid.as_raw(),
                    stage,
                    path,
                    errno,
                }
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &ContainerConfig {
        &self.config
    }

    pub fn dirs(&self) -> &ContainerDirs {
        &self.dirs
    }

    pub fn cgroup_paths(&self) -> &[PathBuf] {
        &self.cgroup_paths
    }

    pub fn events(&self) -> LaunchEvents {
        self.events
    }

    /// Host pid of the container's first process (pid 1 inside), once started.
    pub fn pid(&self) -> Option<i32> {
        match &self.process {
            Process::NotStarted => None,
            Process::Running { pid, .. } | Process::Exited { pid, .. } => Some(pid.as_raw()),
        }
    }

    /// The read end of the workload's stdout (once; the caller reads the protocol lines from it).
    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdout.take()
    }

    /// The last few KiB the workload wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail.lock().map(|t| t.text()).unwrap_or_default()
    }

    /// Host pids of every process in the container's cgroup.
    pub fn processes(&self) -> Result<Vec<i32>, ContainerError> {
        Ok(self.deps.cgroups.processes(&self.config.name)?)
    }

    pub fn usage(&self) -> Result<Usage, ContainerError> {
        Ok(self.deps.cgroups.usage(&self.config.name)?)
    }

    /// The exit status, if the process has ended (non-blocking).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ContainerError> {
        match &self.process {
            Process::NotStarted => Err(ContainerError::NotStarted {
                name: self.config.name.clone(),
                what: "wait",
            }),
            Process::Exited { status, .. } => Ok(Some(*status)),
            Process::Running { pid, .. } => {
                let pid = *pid;
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => Ok(None),
                    Ok(w) => {
                        let status = wait_status(pid, w)?;
                        self.process = Process::Exited { pid, status };
                        Ok(Some(status))
                    }
                    Err(source) => Err(ContainerError::Wait {
                        pid: pid.as_raw(),
                        source,
                    }),
                }
            }
        }
    }

    /// Waits up to `timeout` for the process to end (on its pidfd; no sleeping).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ContainerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            let Process::Running { pid, pidfd } = &self.process else {
                continue;
            };
            let Some(timeout) = poll_timeout_until(deadline) else {
                return Ok(None);
            };
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(source) => {
                    return Err(ContainerError::Wait {
                        pid: pid.as_raw(),
                        source,
                    })
                }
            }
        }
    }

    /// Waits for the process to end.
    pub fn wait(&mut self) -> Result<ExitStatus, ContainerError> {
        if let Process::Running { pid, .. } = &self.process {
            let pid = *pid;
            let w = loop {
                match waitpid(pid, None) {
                    Err(Errno::EINTR) => continue,
                    other => break other,
                }
            };
            let status = wait_status(
                pid,
                w.map_err(|source| ContainerError::Wait {
                    pid: pid.as_raw(),
                    source,
                })?,
            )?;
            self.process = Process::Exited { pid, status };
        }
        match &self.process {
            Process::Exited { status, .. } => Ok(*status),
            _ => Err(ContainerError::NotStarted {
                name: self.config.name.clone(),
                what: "wait",
            }),
        }
    }

    /// Sends `signal` to the container's first process.
    pub fn signal(&self, signal: Signal) -> Result<(), ContainerError> {
        if let Process::Running { pid, .. } = &self.process {
            match kill(*pid, signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => {
                    return Err(ContainerError::Signal {
                        pid: pid.as_raw(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if the process has not ended after `grace`. Note that pid 1 of a pid
    /// namespace ignores SIGTERM unless it installed a handler.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, ContainerError> {
        if matches!(self.process, Process::NotStarted) {
            return Err(ContainerError::NotStarted {
                name: self.config.name.clone(),
                what: "stop",
            });
        }
        self.signal(Signal::SIGTERM)?;
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL)?;
        self.wait()
    }

    /// Kills what is still running and removes the cgroup, any mount left under the container's
    /// directories, and the directories (upper dir included). Reports every failure.
    pub fn destroy(mut self) -> Result<(), ContainerError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), ContainerError> {
        if self.destroyed {
            return Ok(());
        }
        self.destroyed = true;
        let mut errors = Vec::new();
        if matches!(self.process, Process::Running { .. }) {
            if let Err(e) = self
                .signal(Signal::SIGKILL)
                .and_then(|()| self.wait().map(|_| ()))
            {
                errors.push(e);
            }
        }
        self.stdout = None;
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        if let Err(e) = self.deps.cgroups.destroy(&self.config.name) {
            errors.push(e.into());
        }
        let mountinfo = self.deps.proc_root.join("self/mountinfo");
        let mut trees = vec![self.dirs.container_dir.clone()];
        trees.extend(self.dirs.scratch_dir.clone());
        for dir in &trees {
            if let Err(e) = state::unmount_under(&mountinfo, dir).and_then(|_| state::remove_tree(dir)) {
                errors.push(e);
            }
        }
        // Shared parents: removed only when empty (another container may be using them).
        let _ = fs::remove_dir(self.config.state_root.join(CONTAINERS_DIR));
        let _ = fs::remove_dir(&self.config.state_root);
        if let Some(root) = &self.config.scratch_root {
            let _ = fs::remove_dir(root);
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            count => Err(ContainerError::Destroy {
                name: self.config.name.clone(),
                count,
                first: Box::new(errors.remove(0)),
            }),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            eprintln!("cvbench: cleaning up container {}: {e}", self.config.name);
        }
    }
}

/// Checks the host for what [`Container`] needs; the reason names what is missing.
pub fn check_host(proc_root: &Path) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the built-in container runtime needs root (namespaces, mounts, cgroups)".into());
    }
    let filesystems = proc_root.join("filesystems");
    let fs_list =
        fs::read_to_string(&filesystems).map_err(|e| format!("reading {}: {e}", filesystems.display()))?;
    if !fs_list
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return Err(format!(
            "overlayfs is not available ({} has no overlay; try `modprobe overlay`)",
            filesystems.display()
        ));
    }
    cgroup::detect(Path::new("/sys/fs/cgroup"), &proc_root.join("self/mountinfo"))
        .map_err(|e| e.to_string())?;
    if !proc_root.join("self/ns/pid").exists() {
        return Err("the kernel has no pid namespaces".into());
    }
    Ok(())
}
