//! The runtime against the real kernel (root): limits, isolation, rootfs, errors, cleanup. Each test
//! runs `cvbench-testproc` (a static helper binary of this crate) inside a container built over a
//! temporary image directory, and checks afterwards that nothing of it is left.

// Integration tests live at the top level of their own crate by cargo convention.
#![allow(clippy::tests_outside_test_module)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use container::cgroup::{CgroupManager, CgroupV2, Limits};
use container::{
    cleanup_all, Container, ContainerConfig, ContainerDeps, ContainerError, ExitStatus, LineEvent,
    OutputLines,
};
use nix::sys::signal::Signal;

const TESTPROC_IN_IMAGE: &str = "/bin/cvbench-testproc";

fn skip_unless_root() -> bool {
    testkit::skip_unless_root("namespaces, mounts, cgroups")
}

/// A temporary image (the test helper binary and nothing else) and state root.
struct Fixture {
    image: tempfile::TempDir,
    state_root: tempfile::TempDir,
    deps: ContainerDeps,
}

impl Fixture {
    fn new() -> Fixture {
        let image = tempfile::tempdir().unwrap();
        fs::create_dir_all(image.path().join("bin")).unwrap();
        fs::create_dir_all(image.path().join("etc")).unwrap();
        fs::copy(
            env!("CARGO_BIN_EXE_cvbench-testproc"),
            image.path().join("bin/cvbench-testproc"),
        )
        .unwrap();
        Fixture {
            image,
            state_root: tempfile::tempdir().unwrap(),
            deps: ContainerDeps::host().unwrap(),
        }
    }

    fn config(&self, name: &str, args: &[&str]) -> ContainerConfig {
        let mut argv = vec![TESTPROC_IN_IMAGE.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut c = ContainerConfig::new(&unique(name), self.image.path(), argv);
        c.state_root = self.state_root.path().to_path_buf();
        c
    }
}

/// `Pss:` of `/proc/<pid>/smaps_rollup`, in KiB.
fn pss_kib(pid: i32) -> u64 {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a Pss line")
}

fn unique(name: &str) -> String {
    format!("test-{name}-{}", std::process::id())
}

/// Reads stdout to EOF.
fn all_lines(c: &mut Container) -> Vec<String> {
    let mut lines = OutputLines::new(c.take_stdout().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    loop {
        match lines.next_line(Some(deadline)).unwrap() {
            LineEvent::Line { text, .. } => out.push(text),
            LineEvent::Eof => return out,
            LineEvent::TimedOut => panic!("no EOF within 30 s; got {out:?}"),
        }
    }
}

fn line_with<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("no line starting with {key:?} in {lines:?}"))
}

/// Nothing of the container named `name` is left: no mount, no cgroup directory, no state dir.
fn assert_nothing_left(name: &str, cgroup_paths: &[PathBuf], container_dir: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(name),
        "a mount of {name} is left:\n{mountinfo}"
    );
    for p in cgroup_paths {
        assert!(!p.exists(), "cgroup {} is left", p.display());
    }
    assert!(
        !container_dir.exists(),
        "state dir {} is left",
        container_dir.display()
    );
}

/// Runs a container to completion and returns its output, exit status and what it leaves to check.
fn run_to_exit(fx: &Fixture, config: ContainerConfig) -> (Vec<String>, ExitStatus, container::Usage) {
    let name = config.name.clone();
    let mut c = Container::create(config, fx.deps.clone()).unwrap();
    let (paths, dir) = (c.cgroup_paths().to_vec(), c.dirs().container_dir.clone());
    c.start().unwrap();
    let lines = all_lines(&mut c);
    let status = c.wait().unwrap();
    let usage = c.usage().unwrap();
    c.destroy().unwrap();
    assert_nothing_left(&name, &paths, &dir);
    (lines, status, usage)
}

#[test]
fn memory_limit_oom_kills_an_allocating_process() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let mut config = fx.config("oom", &["alloc", "512"]);
    config.limits = Limits {
        memory_bytes: Some(32 << 20),
        ..Limits::default()
    };
    let (lines, status, usage) = run_to_exit(&fx, config);
    assert_eq!(status, ExitStatus::Signaled(Signal::SIGKILL), "output: {lines:?}");
    assert!(usage.oom_kills >= 1, "oom_kill counter is {}", usage.oom_kills);
    assert!(!lines.iter().any(|l| l.starts_with("allocated-all")), "{lines:?}");
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let mut config = fx.config("pids", &["forkbomb"]);
    config.limits = Limits {
        pids: Some(16),
        ..Limits::default()
    };
    let (lines, status, usage) = run_to_exit(&fx, config);
    let failed = line_with(&lines, "fork-failed");
    let (errno, forked) = failed.split_once(' ').unwrap();
    assert_eq!(errno, "EAGAIN");
    let forked: u64 = forked.parse().unwrap();
    assert!(forked < 16, "forked {forked} children under pids.max 16");
    assert!(
        usage.pids_max_events >= 1,
        "pids.events max = {}",
        usage.pids_max_events
    );
    assert_eq!(status, ExitStatus::Exited(0));
}

#[test]
fn host_processes_are_invisible_and_the_workload_is_pid_1() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let (lines, status, _) = run_to_exit(&fx, fx.config("ps", &["ps"]));
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(line_with(&lines, "self"), "1");
    assert_eq!(line_with(&lines, "pids"), "1");
}

#[test]
fn a_write_inside_does_not_reach_the_image() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let config = fx.config("write", &["write", "/etc/written"]);
    let name = config.name.clone();
    let mut c = Container::create(config, fx.deps.clone()).unwrap();
    c.start().unwrap();
    let lines = all_lines(&mut c);
    assert_eq!(
        c.wait().unwrap(),
        ExitStatus::Exited(0),
        "{lines:?} {}",
        c.stderr_tail()
    );
    assert_eq!(line_with(&lines, "wrote"), "/etc/written");
    assert!(
        c.dirs().upper_dir.join("etc/written").exists(),
        "the write is in the upper dir"
    );
    assert!(rootfs::allocated_bytes(&c.dirs().upper_dir).unwrap() > 0);
    assert!(
        !fx.image.path().join("etc/written").exists(),
        "the write reached the image"
    );
    let (paths, dir) = (c.cgroup_paths().to_vec(), c.dirs().container_dir.clone());
    c.destroy().unwrap();
    assert_nothing_left(&name, &paths, &dir);
}

#[test]
fn hostname_is_set() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let mut config = fx.config("host", &["hostname"]);
    config.hostname = Some("cvbench-box".into());
    let (lines, status, _) = run_to_exit(&fx, config);
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(line_with(&lines, "hostname"), "cvbench-box");
}

#[test]
fn a_user_namespace_maps_container_root_through_its_id_map() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    // Identity-mapped root (capabilities confined to the user namespace). Mapping to an unprivileged
    // host range (e.g. 100000) currently fails at the overlay mount with EACCES.
    let mut config = fx.config("userns", &["ids"]);
    config.user_namespace = Some(container::IdMap {
        host_uid: 0,
        host_gid: 0,
        count: 65_536,
    });
    config.limits = Limits {
        pids: Some(8),
        ..Limits::default()
    };
    let (lines, status, _) = run_to_exit(&fx, config);
    assert_eq!(status, ExitStatus::Exited(0), "{lines:?}");
    assert_eq!(line_with(&lines, "uid "), "0");
    assert_eq!(line_with(&lines, "uid_map"), "0 0 65536");
}

#[test]
fn network_namespace_has_only_loopback_and_it_is_up() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let (lines, status, _) = run_to_exit(&fx, fx.config("net", &["net"]));
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(line_with(&lines, "ifaces"), "lo");
    assert_eq!(line_with(&lines, "lo"), "up");
}

#[test]
fn exec_of_a_missing_binary_is_an_exec_error_naming_the_path() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let mut config = fx.config("noexec", &[]);
    config.args = vec!["/bin/does-not-exist".into()];
    let name = config.name.clone();
    let mut c = Container::create(config, fx.deps.clone()).unwrap();
    let (paths, dir) = (c.cgroup_paths().to_vec(), c.dirs().container_dir.clone());
    let err = c.start().unwrap_err();
    match &err {
        ContainerError::Exec { path, errno, .. } => {
            assert!(path.contains("/bin/does-not-exist"), "{err}");
            assert_eq!(*errno, nix::errno::Errno::ENOENT);
        }
        other => panic!("expected an exec error, got {other}"),
    }
    c.destroy().unwrap();
    assert_nothing_left(&name, &paths, &dir);
}

#[test]
fn idle_is_ready_then_stops_on_sigterm_with_ordered_timestamps() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let config = fx.config("idle", &["idle"]);
    let name = config.name.clone();
    let request = Instant::now();
    let mut c = Container::create(config, fx.deps.clone()).unwrap();
    let (paths, dir) = (c.cgroup_paths().to_vec(), c.dirs().container_dir.clone());
    c.start().unwrap();
    let ev = c.events();
    let (ready, exec) = (ev.rootfs_ready.unwrap(), ev.exec.unwrap());
    assert!(request <= ready && ready <= exec);
    let mut lines = OutputLines::new(c.take_stdout().unwrap());
    match lines
        .next_line(Some(Instant::now() + Duration::from_secs(10)))
        .unwrap()
    {
        LineEvent::Line { text, at } => {
            assert_eq!(text, "CVBENCH READY idle");
            assert!(at >= exec);
        }
        other => panic!("expected READY, got {other:?}"),
    }
    let pid = c.pid().unwrap();
    assert_eq!(c.processes().unwrap(), vec![pid]);
    assert!(pss_kib(pid) > 0);
    assert_eq!(c.stop(Duration::from_secs(5)).unwrap(), ExitStatus::Exited(0));
    c.destroy().unwrap();
    assert_nothing_left(&name, &paths, &dir);
}

#[test]
fn a_container_that_ignores_sigterm_is_killed_after_the_grace_period() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    // `stubborn` installs no SIGTERM handler; as pid 1 of its namespace it never sees SIGTERM.
    let mut c = Container::create(fx.config("stubborn", &["stubborn"]), fx.deps.clone()).unwrap();
    c.start().unwrap();
    let mut lines = OutputLines::new(c.take_stdout().unwrap());
    let first = lines
        .next_line(Some(Instant::now() + Duration::from_secs(10)))
        .unwrap();
    assert!(
        matches!(&first, LineEvent::Line { text, .. } if text == "CVBENCH READY stubborn"),
        "{first:?}"
    );
    assert_eq!(
        c.stop(Duration::from_millis(200)).unwrap(),
        ExitStatus::Signaled(Signal::SIGKILL)
    );
    c.destroy().unwrap();
}

#[test]
fn dropping_a_running_container_removes_everything() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let config = fx.config("drop", &["idle"]);
    let name = config.name.clone();
    let mut c = Container::create(config, fx.deps.clone()).unwrap();
    let (paths, dir) = (c.cgroup_paths().to_vec(), c.dirs().container_dir.clone());
    c.start().unwrap();
    let pid = c.pid().unwrap();
    drop(c);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} survived the drop"
    );
    assert_nothing_left(&name, &paths, &dir);
}

/// The host's cgroup manager, listing only one leaf (so cleanup leaves concurrent tests alone).
#[derive(Debug)]
struct OnlyNamed {
    inner: Arc<dyn CgroupManager>,
    leaf: String,
}

impl CgroupManager for OnlyNamed {
    fn version(&self) -> container::CgroupVersion {
        self.inner.version()
    }
    fn create(&self, name: &str, limits: &Limits) -> Result<Vec<PathBuf>, container::cgroup::CgroupError> {
        self.inner.create(name, limits)
    }
    fn paths(&self, name: &str) -> Vec<PathBuf> {
        self.inner.paths(name)
    }
    fn usage(&self, name: &str) -> Result<container::Usage, container::cgroup::CgroupError> {
        self.inner.usage(name)
    }
    fn parent_dirs(&self) -> Vec<PathBuf> {
        self.inner.parent_dirs()
    }
    fn list(&self) -> Result<Vec<String>, container::cgroup::CgroupError> {
        Ok(self
            .inner
            .list()?
            .into_iter()
            .filter(|n| *n == self.leaf)
            .collect())
    }
}

#[test]
fn cleanup_all_removes_what_a_killed_harness_left() {
    if skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let config = fx.config("crash", &["idle"]);
    let name = config.name.clone();
    let mut c = Container::create(config, fx.deps.clone()).unwrap();
    let (paths, dir) = (c.cgroup_paths().to_vec(), c.dirs().container_dir.clone());
    c.start().unwrap();
    let pid = nix::unistd::Pid::from_raw(c.pid().unwrap());
    // A killed harness runs no destructor.
    std::mem::forget(c);
    assert!(dir.join("state.json").exists());
    // Other tests run containers at the same time: let cleanup see only this test's cgroup.
    let only_ours = OnlyNamed {
        inner: Arc::clone(&fx.deps.cgroups),
        leaf: format!("cvbench-{name}"),
    };
    let report = cleanup_all(
        fx.state_root.path(),
        &only_ours,
        Path::new("/proc/self/mountinfo"),
    );
    assert!(report.is_clean(), "{:?}", report.errors);
    assert_eq!(report.containers, vec![dir.clone()]);
    // The process was killed through its cgroup; reap it (we are still its parent).
    let w = nix::sys::wait::waitpid(pid, None).unwrap();
    assert!(
        matches!(w, nix::sys::wait::WaitStatus::Signaled(_, Signal::SIGKILL, _)),
        "{w:?}"
    );
    assert_nothing_left(&name, &paths, &dir);
}

#[test]
fn v2_backend_on_the_real_unified_mount_creates_moves_and_removes() {
    if skip_unless_root() {
        return;
    }
    let root = Path::new("/sys/fs/cgroup/unified");
    let is_cgroup2 = nix::sys::statfs::statfs(root)
        .map(|s| s.filesystem_type().0 == container::cgroup::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if !is_cgroup2 {
        testkit::skip(
            testkit::Requirement::HostFeature("cgroup2-mount"),
            format!("no cgroup2 mount at {}", root.display()),
        );
        return;
    }
    let v2: Arc<dyn CgroupManager> = Arc::new(CgroupV2::new(root.to_path_buf()));
    let name = unique("v2");
    let dirs = v2.create(&name, &Limits::default()).unwrap();
    assert!(dirs[0].is_dir());
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    v2.add_process(&name, pid).unwrap();
    assert_eq!(v2.processes(&name).unwrap(), vec![pid]);
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        own.lines()
            .any(|l| l.starts_with("0::") && l.ends_with(&format!("/cvbench/cvbench-{name}"))),
        "{own}"
    );
    v2.destroy(&name).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert!(!dirs[0].exists());
}

const PDEATH_HELPER_ENV: &str = "CVBENCH_TEST_CONTAINER_PDEATH_HELPER";

fn is_alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// A helper process starts a container and is SIGKILLed: the container's process must die with it
/// (its parent-death signal), not stay behind for `bench cleanup` to find.
#[test]
fn the_container_dies_with_the_harness() {
    if std::env::var_os(PDEATH_HELPER_ENV).is_some() || skip_unless_root() {
        return;
    }
    let fx = Fixture::new();
    let name = unique("pdeath");
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "container_pdeath_helper", "--nocapture"])
        .env(
            PDEATH_HELPER_ENV,
            format!(
                "{}\n{}\n{name}",
                fx.image.path().display(),
                fx.state_root.path().display()
            ),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(helper.stdout.take().unwrap());
    let pid = std::io::BufRead::lines(out).map_while(Result::ok).find_map(|l| {
        l.strip_prefix("CONTAINER PID ")
            .and_then(|p| p.trim().parse::<i32>().ok())
    });
    let Some(pid) = pid else {
        let _ = helper.kill();
        panic!("the helper printed no container pid");
    };
    assert!(is_alive(pid));
    helper.kill().unwrap();
    helper.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let survived = is_alive(pid);
    // What the killed helper left (state dir, cgroup), and only that.
    let report = container::cleanup_except(
        fx.state_root.path(),
        fx.deps.cgroups.as_ref(),
        Path::new("/proc/self/mountinfo"),
        &|n| !n.contains(&name),
        false,
    );
    assert!(report.is_clean(), "{:?}", report.errors);
    assert!(
        !survived,
        "container process {pid} outlived its SIGKILLed harness"
    );
}

/// Only does something as the helper of `the_container_dies_with_the_harness`.
#[test]
fn container_pdeath_helper() {
    let Some(setup) = std::env::var_os(PDEATH_HELPER_ENV) else {
        return;
    };
    let setup = setup.to_string_lossy().into_owned();
    let mut parts = setup.lines();
    let (image, state_root, name) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let argv = vec![TESTPROC_IN_IMAGE.to_string(), "idle".to_string()];
    let mut config = ContainerConfig::new(name, Path::new(image), argv);
    config.state_root = PathBuf::from(state_root);
    let mut c = Container::create(config, ContainerDeps::host().unwrap()).unwrap();
    c.start().unwrap();
    println!("CONTAINER PID {}", c.pid().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}
