//! `bench cleanup`: removes what a killed harness left behind — runc containers in cvbench's runc
//! state dir, the built-in runtime's state, mounts under `/run/cvbench`, bundle and state directories,
//! and cgroups named `cvbench*` (their processes are killed first).
//!
//! Instance names end in `-<harness pid>-<index>`; anything whose harness is still alive is left
//! alone (reported as in use), so a cleanup never pulls instances from under a running benchmark or
//! a concurrently running test. `force` removes those too.
//!
//! What instances share (the backend directories under the run dir, the built-in runtime's parent
//! cgroups) is only removed while no harness runs: live harnesses hold a shared lock on the run
//! dir's lock file (see [`crate::rundir`]), and a cleanup removes shared things only when it gets
//! the lock exclusively. Something that vanishes while it is being removed (its own harness got
//! there first) counts as removed by nobody, not as a problem.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Why `bench cleanup` cannot run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CleanupError {
    #[error(
        "bench cleanup needs root (it kills processes, unmounts and removes cgroups that root made); \
         run it as root"
    )]
    NeedsRoot,
}

/// Where cvbench keeps state that must survive a crash, and where the host's cgroups are.
#[derive(Debug, Clone)]
pub struct CleanupRoots {
    pub run_dir: PathBuf,
    pub cgroup_root: PathBuf,
    pub mountinfo: PathBuf,
}

impl Default for CleanupRoots {
    fn default() -> Self {
        CleanupRoots {
            run_dir: PathBuf::from(crate::rundir::RUN_ROOT),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
        }
    }
}

impl CleanupRoots {
    /// A backend's default state path (`/run/cvbench/vms`) moved under `run_dir`.
    pub fn relocate(&self, default_path: &str) -> PathBuf {
        match Path::new(default_path).strip_prefix(crate::rundir::RUN_ROOT) {
            Ok(rest) => self.run_dir.join(rest),
            Err(_) => PathBuf::from(default_path),
        }
    }
}

/// What a backend's cleanup gets: where things are, and which instance names to leave alone.
pub struct CleanupScope<'a> {
    pub roots: &'a CleanupRoots,
    pub keep: &'a dyn Fn(&str) -> bool,
    /// No harness runs (the run dir's lock is held exclusively, or `--force`): what instances share
    /// may be removed too.
    pub exclusive: bool,
}

/// What a cleanup did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanupReport {
    /// One line per removed thing, e.g. `runc container cvbench-runc-idle-77-3`.
    pub removed: Vec<String>,
    /// Things left alone because the harness that made them is still running.
    pub in_use: Vec<String>,
    /// Things that could not be removed, with the reason.
    pub problems: Vec<String>,
}

impl CleanupReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn merge(&mut self, other: CleanupReport) {
        self.removed.extend(other.removed);
        self.in_use.extend(other.in_use);
        self.problems.extend(other.problems);
    }
}

/// Removes everything cvbench left on this host (see the module docs). Root only: checked first,
/// rather than failing on every kill, unmount and cgroup.
pub fn cleanup_all(force: bool) -> Result<CleanupReport, CleanupError> {
    require_root(nix::unistd::geteuid())?;
    Ok(cleanup_in(&CleanupRoots::default(), force))
}

/// `Ok` for root.
pub fn require_root(euid: nix::unistd::Uid) -> Result<(), CleanupError> {
    if euid.is_root() {
        Ok(())
    } else {
        Err(CleanupError::NeedsRoot)
    }
}

pub fn cleanup_in(roots: &CleanupRoots, force: bool) -> CleanupReport {
    let mut report = CleanupReport::default();
    let keep = |name: &str| !force && owner_alive(name);
    // Held until the end: a harness starting meanwhile waits for it before its first instance.
    let lock = if force {
        None
    } else {
        match crate::rundir::try_exclusive(&roots.run_dir) {
            Ok(lock) => lock,
            Err(e) => {
                report.problems.push(format!(
                    "locking {}: {e}; shared directories are left alone",
                    crate::rundir::lock_path(&roots.run_dir).display()
                ));
                None
            }
        }
    };
    let exclusive = force || lock.is_some();
    let scope = CleanupScope {
        roots,
        keep: &keep,
        exclusive,
    };
    // Each backend first (it knows its processes and state), then what is generic: any mount still
    // under the run dir, cgroups named cvbench*.
    for (_, cleanup) in crate::backends::backend_cleanups() {
        report.merge(cleanup(&scope));
    }
    // Network namespaces (and so the veths in them) once their instances are gone.
    report.merge(crate::net::cleanup(&scope));
    unmount_under(roots, &keep, &mut report);
    remove_cgroups(&roots.cgroup_root, &keep, &mut report);
    if !exclusive {
        // A harness runs: it may be between creating a backend directory and the instance in it.
        return report;
    }
    // Backend directories left empty (by this cleanup or an older cvbench): rmdir only removes
    // empty ones, so anything still in use stays.
    if let Ok(entries) = fs::read_dir(&roots.run_dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) && fs::remove_dir(entry.path()).is_ok() {
                report
                    .removed
                    .push(format!("empty directory {}", entry.path().display()));
            }
        }
    }
    report
}

/// The harness pid embedded in an instance name `cvbench-<backend>-<workload>-<pid>-<index>`.
pub fn owner_pid(name: &str) -> Option<i32> {
    let mut fields = name.rsplit('-');
    let _index: u32 = fields.next()?.parse().ok()?;
    fields.next()?.parse().ok()
}

/// Whether the harness that created `name` is still running (false when the name has no pid).
fn owner_alive(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| pid > 0 && process_running(pid))
}

/// Whether process `pid` exists and is not a zombie. A SIGKILLed harness stays in /proc as a zombie
/// until its parent reaps it, holding nothing any more: counted as running, `bench cleanup` run
/// right after the kill left its instances alone as "in use".
pub(crate) fn process_running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state is the first field after the parenthesised command name (which may hold ')').
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The built-in runtime's leftovers, through its own cleanup: containers whose harness is still
/// running are reported as in use and left alone, and the runtime's shared directories are removed
/// only when no harness runs.
pub fn container_leftovers(scope: &CleanupScope) -> CleanupReport {
    let mut report = CleanupReport::default();
    cleanup_containers(scope, &mut report);
    report
}

fn cleanup_containers(scope: &CleanupScope, report: &mut CleanupReport) {
    let roots = scope.roots;
    let dir = roots.run_dir.join(container::state::CONTAINERS_DIR);
    let Ok(entries) = fs::read_dir(&dir) else { return };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    report.in_use.extend(
        names
            .iter()
            .filter(|n| (scope.keep)(n))
            .map(|n| format!("container {n}")),
    );
    if names.iter().all(|n| (scope.keep)(n)) {
        return;
    }
    let cgroups = match container::cgroup::detect(&roots.cgroup_root, &roots.mountinfo) {
        Ok(c) => c,
        Err(e) => {
            report.problems.push(format!("built-in runtime cleanup: {e}"));
            return;
        }
    };
    let r = container::cleanup_except(
        &roots.run_dir,
        cgroups.as_ref(),
        &roots.mountinfo,
        scope.keep,
        scope.exclusive,
    );
    report
        .removed
        .extend(r.containers.iter().map(|d| format!("container {}", d.display())));
    report
        .removed
        .extend(r.cgroups.iter().map(|c| format!("container cgroup {c}")));
    report
        .removed
        .extend(r.unmounted.iter().map(|m| format!("mount {}", m.display())));
    report.problems.extend(r.errors.iter().map(ToString::to_string));
}

/// The instance a path under the run dir belongs to: the first component that parses as an instance
/// name (has an owner pid).
fn instance_of(path: &Path, run_dir: &Path) -> Option<String> {
    path.strip_prefix(run_dir)
        .ok()?
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .find(|c| owner_pid(c).is_some())
}

fn unmount_under(roots: &CleanupRoots, keep: &dyn Fn(&str) -> bool, report: &mut CleanupReport) {
    let Ok(mountinfo) = fs::read_to_string(&roots.mountinfo) else {
        return;
    };
    for point in container::state::mounts_under(&mountinfo, &roots.run_dir) {
        if instance_of(&point, &roots.run_dir).is_some_and(|name| keep(&name)) {
            report.in_use.push(format!("mount {}", point.display()));
            continue;
        }
        match umount2(&point, MntFlags::MNT_DETACH) {
            Ok(()) => report.removed.push(format!("mount {}", point.display())),
            // Unmounted meanwhile (by its own harness's teardown).
            Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(e) => report
                .problems
                .push(format!("unmounting {}: {e}", point.display())),
        }
    }
}

/// Removes per-instance directories under `dir` (bundles, upper/work dirs, VM state) whose harness
/// is gone. For backends' cleanup functions.
pub fn remove_instance_dirs(dir: &Path, keep: &dyn Fn(&str) -> bool, report: &mut CleanupReport) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep(&name) {
            report
                .in_use
                .push(format!("directory {}", entry.path().display()));
            continue;
        }
        match fs::remove_dir_all(entry.path()) {
            Ok(()) => report
                .removed
                .push(format!("directory {}", entry.path().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report
                .problems
                .push(format!("removing {}: {e}", entry.path().display())),
        }
    }
}

/// Cgroups named `cvbench*` directly under the v2 root or any v1 controller (and the unified mount),
/// removed leaf-first after killing what still runs in them.
fn remove_cgroups(cgroup_root: &Path, keep: &dyn Fn(&str) -> bool, report: &mut CleanupReport) {
    let mut hierarchies = vec![cgroup_root.to_path_buf()];
    if let Ok(entries) = fs::read_dir(cgroup_root) {
        hierarchies.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !is_cvbench(p)),
        );
    }
    for hierarchy in hierarchies {
        let Ok(entries) = fs::read_dir(&hierarchy) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && is_cvbench(&path) {
                remove_cgroup_tree(&path, keep, report);
            }
        }
    }
}

fn is_cvbench(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("cvbench"))
}

/// Removes `dir` and its child cgroups, leaf first. Returns whether `dir` is gone.
fn remove_cgroup_tree(dir: &Path, keep: &dyn Fn(&str) -> bool, report: &mut CleanupReport) -> bool {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if keep(&name) {
        report.in_use.push(format!("cgroup {}", dir.display()));
        return false;
    }
    let mut children_gone = true;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            // Control files are regular files; child cgroups are directories.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                children_gone &= remove_cgroup_tree(&entry.path(), keep, report);
            }
        }
    }
    if !children_gone {
        return false;
    }
    if let Err(e) = kill_cgroup_members(dir) {
        report
            .problems
            .push(format!("emptying cgroup {}: {e}", dir.display()));
        return false;
    }
    // A plain directory (a fixture tree) still holds its control files; a real cgroup does not care.
    let removed = fs::remove_dir(dir).or_else(|e| {
        if dir.join("cgroup.procs").is_file() && !is_cgroupfs(dir) {
            fs::remove_dir_all(dir)
        } else {
            Err(e)
        }
    });
    match removed {
        Ok(()) => {
            report.removed.push(format!("cgroup {}", dir.display()));
            true
        }
        // Removed meanwhile (by its own harness's teardown): gone, but not by us.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            report
                .problems
                .push(format!("removing cgroup {}: {e}", dir.display()));
            false
        }
    }
}

fn is_cgroupfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir).is_ok_and(|s| {
        let t = s.filesystem_type();
        t == nix::sys::statfs::CGROUP_SUPER_MAGIC || t == nix::sys::statfs::CGROUP2_SUPER_MAGIC
    })
}

/// SIGKILLs every process in the cgroup and waits (briefly) until it is empty. A kill that is not
/// permitted is an error at once (retrying cannot help).
fn kill_cgroup_members(dir: &Path) -> Result<(), String> {
    let procs = dir.join("cgroup.procs");
    let read = || -> Vec<i32> {
        fs::read_to_string(&procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let pids = read();
        if pids.is_empty() || !is_cgroupfs(dir) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("processes {pids:?} still in it after SIGKILL"));
        }
        for pid in pids {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => return Err(format!("killing pid {pid}: {e}")),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    const DEAD_PID: i32 = 999_999_999; // above any pid_max

    fn roots(dir: &Path) -> CleanupRoots {
        CleanupRoots {
            run_dir: dir.join("run"),
            cgroup_root: dir.join("cgroup"),
            mountinfo: dir.join("mountinfo"),
        }
    }

    #[test]
    fn owner_pid_comes_from_the_instance_name() {
        assert_eq!(owner_pid("cvbench-runc-idle-4242-7"), Some(4242));
        assert_eq!(owner_pid("cvbench-container-oltp-1-0"), Some(1));
        assert_eq!(owner_pid("cvbench"), None);
        assert_eq!(owner_pid("cvbench-runc-idle-x-0"), None);
    }

    #[test]
    fn a_killed_unreaped_harness_is_not_running() {
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let name = format!("cvbench-container-idle-{pid}-0");
        assert!(process_running(pid) && owner_alive(&name));
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        // Not reaped yet: a zombie in /proc until `wait`.
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "the zombie is still listed"
        );
        assert!(!process_running(pid) && !owner_alive(&name));
        child.wait().unwrap();
        assert!(!process_running(pid) && !process_running(DEAD_PID));
    }

    #[test]
    fn mounts_under_the_run_dir_deepest_first() {
        let info = "\
36 25 0:32 / /run rw - tmpfs tmpfs rw
90 36 0:50 / /run/cvbench/runc/a/rootfs rw - overlay overlay rw,lowerdir=/img
91 90 0:51 / /run/cvbench/runc/a/rootfs/proc rw - proc proc rw
92 36 0:52 / /run/cvbench\\040x rw - tmpfs tmpfs rw
";
        let got = container::state::mounts_under(info, Path::new("/run/cvbench"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/run/cvbench/runc/a/rootfs/proc"),
                PathBuf::from("/run/cvbench/runc/a/rootfs")
            ]
        );
    }

    #[test]
    fn removes_dead_instances_and_keeps_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        fs::write(&r.mountinfo, "").unwrap();
        let me = std::process::id();
        let dead = format!("cvbench-runc-idle-{DEAD_PID}-0");
        let live = format!("cvbench-runc-idle-{me}-0");
        for name in [&dead, &live] {
            fs::create_dir_all(r.run_dir.join("runc").join(name).join("upper/var")).unwrap();
            // v1 layout: controller dir / cgroup; v2 layout: root / cgroup.
            for cg in [r.cgroup_root.join("memory").join(name), r.cgroup_root.join(name)] {
                fs::create_dir_all(&cg).unwrap();
                fs::write(cg.join("cgroup.procs"), "").unwrap();
            }
        }
        fs::create_dir_all(r.cgroup_root.join("memory/system.slice")).unwrap();

        let report = cleanup_in(&r, false);
        assert!(report.is_clean(), "{report:?}");
        assert!(!r.run_dir.join("runc").join(&dead).exists());
        assert!(!r.cgroup_root.join("memory").join(&dead).exists());
        assert!(!r.cgroup_root.join(&dead).exists());
        assert!(r.run_dir.join("runc").join(&live).exists());
        assert!(r.cgroup_root.join("memory").join(&live).exists());
        assert!(
            r.cgroup_root.join("memory/system.slice").exists(),
            "foreign cgroups stay"
        );
        assert_eq!(report.removed.len(), 3, "{report:?}");
        assert_eq!(report.in_use.len(), 3, "{report:?}");

        let forced = cleanup_in(&r, true);
        assert!(forced.is_clean(), "{forced:?}");
        assert!(!r.run_dir.join("runc").join(&live).exists());
        assert!(!r.cgroup_root.join(&live).exists());
    }

    #[test]
    fn built_in_containers_of_a_live_harness_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        fs::write(&r.mountinfo, "").unwrap();
        let live = format!("cvbench-container-idle-{}-0", std::process::id());
        let state = r.run_dir.join("containers").join(&live);
        fs::create_dir_all(&state).unwrap();
        let report = cleanup_in(&r, false);
        assert!(state.exists());
        assert_eq!(report.in_use, vec![format!("container {live}")]);
    }

    #[test]
    fn backend_dirs_stay_while_a_harness_holds_the_run_lock() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        fs::write(&r.mountinfo, "").unwrap();
        // A live harness between its mkdirs: the backend dirs exist and are still empty.
        for backend in ["containers", "runc-state", "runc", "vms"] {
            fs::create_dir_all(r.run_dir.join(backend)).unwrap();
        }
        crate::rundir::hold_shared(&r.run_dir).unwrap();
        let report = cleanup_in(&r, false);
        assert!(report.is_clean(), "{report:?}");
        for backend in ["containers", "runc-state", "runc", "vms"] {
            assert!(
                r.run_dir.join(backend).is_dir(),
                "{backend} removed under a live harness"
            );
        }
        assert_eq!(report, CleanupReport::default());
    }

    #[test]
    fn empty_backend_dirs_go_when_no_harness_runs() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        fs::write(&r.mountinfo, "").unwrap();
        fs::create_dir_all(r.run_dir.join("runc-state")).unwrap();
        let report = cleanup_in(&r, false);
        assert!(!r.run_dir.join("runc-state").exists(), "{report:?}");
    }

    #[test]
    fn what_vanishes_while_being_removed_is_no_problem() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = CleanupReport::default();
        // A cgroup its own harness removed between the listing and the rmdir.
        let gone = dir.path().join("cvbench-runc-idle-999999999-0");
        assert!(remove_cgroup_tree(&gone, &|_| false, &mut report));
        assert!(report.is_clean(), "{report:?}");
        assert!(report.removed.is_empty(), "nothing was removed by us: {report:?}");
    }

    #[test]
    fn cleanup_needs_root_and_says_so() {
        assert_eq!(
            require_root(nix::unistd::Uid::from_raw(65534)),
            Err(CleanupError::NeedsRoot)
        );
        assert_eq!(require_root(nix::unistd::Uid::from_raw(0)), Ok(()));
        assert!(CleanupError::NeedsRoot.to_string().contains("needs root"));
    }

    const NON_ROOT_HELPER_ENV: &str = "CVBENCH_TEST_NON_ROOT_CLEANUP";

    /// Run as `nobody` over a root-owned fixture, a cleanup removes nothing and must say so: no
    /// "removed" line for what is still there.
    #[test]
    fn a_cleanup_that_cannot_remove_reports_nothing_removed() {
        if std::env::var_os(NON_ROOT_HELPER_ENV).is_some() {
            return;
        }
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: needs root (to run the cleanup as another user)");
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            println!("skipped: no current exe");
            return;
        };
        let dir = tempfile::Builder::new()
            .prefix("cvbench-cleanup-")
            .tempdir()
            .unwrap();
        // Readable by `nobody`, writable only by root.
        let mut perms = fs::metadata(dir.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(dir.path(), perms).unwrap();
        let r = roots(dir.path());
        // A cgroup2 mount at the fixture's cgroup root, so the built-in runtime's cleanup runs.
        fs::create_dir_all(&r.cgroup_root).unwrap();
        fs::write(
            &r.mountinfo,
            format!(
                "30 25 0:26 / {} rw - cgroup2 cgroup2 rw\n",
                r.cgroup_root.display()
            ),
        )
        .unwrap();
        let dead = format!("cvbench-runc-idle-{DEAD_PID}-0");
        let bundle = r.run_dir.join("runc").join(&dead);
        fs::create_dir_all(bundle.join("upper")).unwrap();
        let container = r
            .run_dir
            .join("containers")
            .join(format!("cvbench-container-idle-{DEAD_PID}-0"));
        fs::create_dir_all(&container).unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "cleanup::tests::non_root_cleanup_helper",
                "--nocapture",
            ])
            .env(NON_ROOT_HELPER_ENV, dir.path())
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("REPORT ")) else {
            panic!(
                "the helper printed no report: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        assert!(bundle.exists() && container.exists());
        assert!(
            line.starts_with("removed: []"),
            "claims to have removed what is still there: {line}"
        );
        assert!(
            line.contains("problems: [\""),
            "the failures are reported: {line}"
        );
    }

    /// Only does something as the helper of `a_cleanup_that_cannot_remove_reports_nothing_removed`.
    #[test]
    fn non_root_cleanup_helper() {
        let Some(dir) = std::env::var_os(NON_ROOT_HELPER_ENV) else {
            return;
        };
        let report = cleanup_in(&roots(Path::new(&dir)), false);
        let removed: Vec<&String> = report
            .removed
            .iter()
            .filter(|r| !r.starts_with("empty"))
            .collect();
        println!("REPORT removed: {removed:?} problems: {:?}", report.problems);
    }

    #[test]
    fn nothing_to_clean_is_an_empty_report() {
        let dir = tempfile::tempdir().unwrap();
        let report = cleanup_in(&roots(dir.path()), false);
        assert_eq!(report, CleanupReport::default());
    }
}
