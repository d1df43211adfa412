//! Cgroups: one [`CgroupManager`] interface with a v1 and a v2 implementation, plus the detector
//! that picks one for the host.
//!
//! Every container gets a cgroup named `cvbench-<instance>` under a `cvbench` parent directory (per
//! controller in v1, once in v2). Hierarchy roots are parameters, so unit tests run against fixture
//! trees in temporary directories and assert the exact files written.

mod v1;
mod v2;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use v1::CgroupV1;
pub use v2::CgroupV2;

/// The directory under each hierarchy root that holds every cvbench cgroup.
pub const PARENT_DIR: &str = "cvbench";
/// Prefix of every cvbench cgroup leaf.
pub const LEAF_PREFIX: &str = "cvbench-";
/// `CGROUP2_SUPER_MAGIC` from `linux/magic.h`.
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// How long [`CgroupManager::destroy`] waits for killed processes to leave and for `rmdir` to stop
/// returning `EBUSY`.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(3);
const DESTROY_RETRY: Duration = Duration::from_millis(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// A CPU bandwidth limit: `quota_us` of CPU time per `period_us` of wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

impl CpuQuota {
    /// Default CFS period (100 ms), as the kernel uses.
    pub const DEFAULT_PERIOD_US: u64 = 100_000;

    /// A quota of `cpus` CPUs (e.g. 0.5 = half a core) over the default period; `None` when `cpus` is
    /// not a positive finite number.
    pub fn from_cpus(cpus: f64) -> Option<CpuQuota> {
        if !cpus.is_finite() || cpus <= 0.0 {
            return None;
        }
        let quota = (cpus * Self::DEFAULT_PERIOD_US as f64).round();
        // The kernel's minimum quota is 1 ms; the cast is in range because of the clamp.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let quota_us = quota.clamp(1_000.0, u64::MAX as f64 / 2.0) as u64;
        Some(CpuQuota {
            quota_us,
            period_us: Self::DEFAULT_PERIOD_US,
        })
    }
}

/// Resource limits for one container. `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes; swap is disabled for the cgroup when set.
    pub memory_bytes: Option<u64>,
    pub cpu: Option<CpuQuota>,
    pub pids: Option<u64>,
}

/// Usage figures read from a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// `memory.usage_in_bytes` (v1) or `memory.current` (v2).
    pub memory_bytes: u64,
    /// How many processes the OOM killer killed in this cgroup.
    pub oom_kills: u64,
    /// How many times a fork failed because of `pids.max` (`pids.events` "max").
    pub pids_max_events: u64,
    /// `memory.stat`, key by key.
    pub memory_stat: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no usable cgroup hierarchy: {reason}")]
    NoHierarchy { reason: String },
    #[error("controller {controller} is not available in {path} (the limit cannot be applied)")]
    MissingController { controller: String, path: PathBuf },
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("creating cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("killing pid {pid} of cgroup {path}: {source}")]
    Kill {
        path: PathBuf,
        pid: i32,
        source: nix::errno::Errno,
    },
    #[error("cgroup {path} still has processes {pids:?} after {waited:?}")]
    NotEmpty {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
    #[error("removing cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}

/// One interface over cgroup v1 and v2. Names are container names; the manager turns them into
/// `cvbench-<name>` directories (see [`leaf_name`]).
pub trait CgroupManager: fmt::Debug + Send + Sync {
    fn version(&self) -> CgroupVersion;
    /// Creates the cgroup (every hierarchy it needs) and applies `limits`. Returns the directories
    /// created. On error, what was created is removed again.
    fn create(&self, name: &str, limits: &Limits) -> Result<Vec<PathBuf>, CgroupError>;
    /// The directories that may make up the cgroup of `name` (whether or not they exist; `create`
    /// returns those it made).
    fn paths(&self, name: &str) -> Vec<PathBuf>;
    /// The `cgroup.procs` files a process must be written to (one per hierarchy the cgroup exists
    /// in) to join the cgroup. A process may write `0` to each to move itself.
    fn procs_files(&self, name: &str) -> Vec<PathBuf> {
        self.paths(name)
            .into_iter()
            .filter(|p| p.is_dir())
            .map(|p| p.join("cgroup.procs"))
            .collect()
    }
    /// Moves `pid` into the cgroup.
    fn add_process(&self, name: &str, pid: i32) -> Result<(), CgroupError> {
        for file in self.procs_files(name) {
            write_file(&file, &pid.to_string())?;
        }
        Ok(())
    }
    /// Every process in the cgroup (the union over hierarchies), sorted.
    fn processes(&self, name: &str) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in self.paths(name) {
            for pid in read_pids(&dir.join("cgroup.procs"))? {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }
    fn usage(&self, name: &str) -> Result<Usage, CgroupError>;
    /// Kills every process left in the cgroup, waits until it is empty and removes its directories.
    /// Missing directories are not an error (destroy is idempotent).
    fn destroy(&self, name: &str) -> Result<(), CgroupError> {
        destroy_dirs(&self.paths(name))?;
        for parent in self.parent_dirs() {
            // Best effort: the parent is shared with concurrent containers and stays while in use.
            let _ = fs::remove_dir(parent);
        }
        Ok(())
    }
    /// The `cvbench` parent directories (one per hierarchy).
    fn parent_dirs(&self) -> Vec<PathBuf>;
    /// Names (leaf directory names, `cvbench-...`) of every cvbench cgroup that exists, for cleanup.
    fn list(&self) -> Result<Vec<String>, CgroupError> {
        let mut names = Vec::new();
        for parent in self.parent_dirs() {
            let entries = match fs::read_dir(&parent) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(CgroupError::Read { path: parent, source }),
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(LEAF_PREFIX) && entry.path().is_dir() && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }
}

/// The leaf directory name for a container: `cvbench-<name>`, without doubling the prefix when the
/// name already carries it (e.g. `cvbench-container-idle-3`).
pub fn leaf_name(name: &str) -> String {
    if name.starts_with(LEAF_PREFIX) {
        name.to_string()
    } else {
        format!("{LEAF_PREFIX}{name}")
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), CgroupError> {
    let bad = |reason| {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.contains('/') || name == "." || name == ".." || name.contains('\0') || name.contains('\n') {
        return bad("must be a single path component");
    }
    Ok(())
}

/// Detects the host's cgroup layout from `mountinfo` (normally `/proc/self/mountinfo`), looking for
/// hierarchies mounted under `cgroup_root` (normally `/sys/fs/cgroup`).
///
/// - a cgroup2 mount at `cgroup_root` itself: pure v2 (what current distributions use);
/// - otherwise v1 hierarchies carrying memory, cpu and pids: v1 (this host). A hybrid cgroup2 mount
///   (e.g. `/sys/fs/cgroup/unified`) without controllers cannot limit anything and is not used.
pub fn detect(cgroup_root: &Path, mountinfo: &Path) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let text = fs::read_to_string(mountinfo).map_err(|source| CgroupError::Read {
        path: mountinfo.to_path_buf(),
        source,
    })?;
    let mounts = parse_cgroup_mounts(&text);
    if let Some(m) = mounts
        .iter()
        .find(|m| m.fstype == "cgroup2" && m.mount_point == cgroup_root)
    {
        return Ok(Box::new(CgroupV2::new(m.mount_point.clone())));
    }
    let mut v1_roots = BTreeMap::new();
    for m in mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" && m.mount_point.starts_with(cgroup_root))
    {
        for ctrl in &m.controllers {
            if v1::CONTROLLERS.contains(&ctrl.as_str()) {
                v1_roots
                    .entry(ctrl.clone())
                    .or_insert_with(|| m.mount_point.clone());
            }
        }
    }
    let missing: Vec<&str> = v1::CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !v1_roots.contains_key(*c))
        .collect();
    if missing.is_empty() {
        return Ok(Box::new(CgroupV1::new(v1_roots)));
    }
    Err(CgroupError::NoHierarchy {
        reason: format!(
            "no cgroup2 mount at {} and no cgroup v1 hierarchies for {} under it (see {})",
            cgroup_root.display(),
            missing.join(", "),
            mountinfo.display()
        ),
    })
}

/// [`detect`] on the host's real paths.
pub fn detect_host() -> Result<Box<dyn CgroupManager>, CgroupError> {
    detect(Path::new("/sys/fs/cgroup"), Path::new("/proc/self/mountinfo"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    pub mount_point: PathBuf,
    pub fstype: String,
    /// Controllers named in the super options (v1 only).
    pub controllers: Vec<String>,
}

/// The cgroup and cgroup2 mounts in a mountinfo text.
pub(crate) fn parse_cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let (Some(fstype), Some(_source), Some(opts)) = (right.next(), right.next(), right.next()) else {
            continue;
        };
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let controllers = if fstype == "cgroup" {
            opts.split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        out.push(CgroupMount {
            mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
            fstype: fstype.into(),
            controllers,
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`; anything that is not a byte in
/// octal stays as it is.
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\')
            .then(|| b.get(i + 1..i + 4))
            .flatten()
            .filter(|digits| digits.iter().all(u8::is_ascii_digit))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        if let Some(byte) = octal {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read_file(path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text,
    })
}

/// Reads a `key value` per line file (`memory.stat`, `memory.events`, `pids.events`,
/// `memory.oom_control`).
pub(crate) fn read_keyed(path: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    let text = read_file(path)?;
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let Ok(v) = v.parse() {
                map.insert(k.to_string(), v);
            }
        }
    }
    Ok(map)
}

/// `read_keyed` for a file that may be absent (older kernels): absent = empty.
pub(crate) fn read_keyed_optional(path: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    match read_keyed(path) {
        Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(BTreeMap::new())
        }
        other => other,
    }
}

/// The pids in a `cgroup.procs` file; a missing file (cgroup already gone) is an empty list.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The usage figures of one cgroup. `memory_dir` holds `current_file` (bytes in use), `oom_file`
/// (a keyed file with `oom_kill`) and `memory.stat`; `pids_dir` holds `pids.events` (absent = 0).
/// Files are read in that order: `oom_file`, `pids.events`, `current_file`, `memory.stat`, and an
/// error in `pids_dir` is returned only once `oom_file` has been read.
pub(crate) fn read_usage(
    memory_dir: &Path,
    current_file: &str,
    oom_file: &str,
    pids_dir: Result<PathBuf, CgroupError>,
) -> Result<Usage, CgroupError> {
    let oom = read_keyed(&memory_dir.join(oom_file))?;
    let pids = read_keyed_optional(&pids_dir?.join("pids.events"))?;
    Ok(Usage {
        memory_bytes: read_u64(&memory_dir.join(current_file))?,
        oom_kills: oom.get("oom_kill").copied().unwrap_or(0),
        pids_max_events: pids.get("max").copied().unwrap_or(0),
        memory_stat: read_keyed(&memory_dir.join("memory.stat"))?,
    })
}

/// Creates `dirs` in order, then runs `apply` (writing the limits). If a `mkdir` or `apply` fails,
/// the directories created so far are removed again (best effort) and the error is returned.
pub(crate) fn make_dirs_then(
    dirs: &[PathBuf],
    apply: impl FnOnce() -> Result<(), CgroupError>,
) -> Result<(), CgroupError> {
    for (made, dir) in dirs.iter().enumerate() {
        if let Err(e) = make_dir(dir) {
            let _ = destroy_dirs(&dirs[..made]);
            return Err(e);
        }
    }
    if let Err(e) = apply() {
        let _ = destroy_dirs(dirs);
        return Err(e);
    }
    Ok(())
}

/// Creates `dir` (and its parent), tolerating a concurrent destroy removing the shared parent between
/// the two `mkdir`s.
pub(crate) fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    let mut last = None;
    for _ in 0..3 {
        match fs::create_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => last = Some(e),
            Err(source) => {
                return Err(CgroupError::Create {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    Err(CgroupError::Create {
        path: dir.to_path_buf(),
        source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)),
    })
}

/// Kill, wait until empty, rmdir (retrying briefly on `EBUSY`), for every directory.
pub(crate) fn destroy_dirs(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let start = Instant::now();
    for dir in dirs {
        if !dir.exists() {
            continue;
        }
        let procs = dir.join("cgroup.procs");
        let kill_file = dir.join("cgroup.kill");
        loop {
            let pids = read_pids(&procs)?;
            if pids.is_empty() {
                break;
            }
            if start.elapsed() > DESTROY_TIMEOUT {
                return Err(CgroupError::NotEmpty {
                    path: dir.clone(),
                    pids,
                    waited: start.elapsed(),
                });
            }
            if kill_file.exists() {
                write_file(&kill_file, "1")?;
            } else {
                for &pid in &pids {
                    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL) {
                        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                        Err(source) => {
                            return Err(CgroupError::Kill {
                                path: dir.clone(),
                                pid,
                                source,
                            })
                        }
                    }
                }
            }
            std::thread::sleep(DESTROY_RETRY);
        }
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < DESTROY_TIMEOUT => {
                    std::thread::sleep(DESTROY_RETRY);
                }
                Err(source) => {
                    return Err(CgroupError::Remove {
                        path: dir.clone(),
                        source,
                    })
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn write_mountinfo(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mountinfo");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn hybrid_host_is_v1_with_each_controller_root() {
        let (_d, mi) = write_mountinfo(HOST_MOUNTINFO);
        let m = detect(Path::new("/sys/fs/cgroup"), &mi).unwrap();
        assert_eq!(m.version(), CgroupVersion::V1);
        assert_eq!(
            m.paths("a"),
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu/cvbench/cvbench-a"),
                PathBuf::from("/sys/fs/cgroup/memory/cvbench/cvbench-a"),
                PathBuf::from("/sys/fs/cgroup/pids/cvbench/cvbench-a"),
            ]
        );
    }

    #[test]
    fn pure_v2_host_is_v2() {
        let (_d, mi) =
            write_mountinfo("30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
        let m = detect(Path::new("/sys/fs/cgroup"), &mi).unwrap();
        assert_eq!(m.version(), CgroupVersion::V2);
        assert_eq!(
            m.paths("cvbench-x"),
            vec![PathBuf::from("/sys/fs/cgroup/cvbench/cvbench-x")]
        );
    }

    #[test]
    fn comounted_cpu_cpuacct_is_found() {
        let text = HOST_MOUNTINFO.replace(
            "/sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
            "/sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
        );
        let (_d, mi) = write_mountinfo(&text);
        let m = detect(Path::new("/sys/fs/cgroup"), &mi).unwrap();
        assert_eq!(
            m.paths("a")[0],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/cvbench/cvbench-a")
        );
    }

    #[test]
    fn no_usable_hierarchy_names_what_is_missing() {
        let (_d, mi) = write_mountinfo("41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
        let err = detect(Path::new("/sys/fs/cgroup"), &mi).unwrap_err().to_string();
        assert!(err.contains("memory, cpu, pids"), "{err}");
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/run/cvbench\\040x"), "/run/cvbench x");
        // Not a byte in octal: kept literally (no overflow).
        assert_eq!(unescape_mountinfo("/a\\777"), "/a\\777");
        assert_eq!(unescape_mountinfo("/a\\08"), "/a\\08");
        assert_eq!(unescape_mountinfo("/a\\04"), "/a\\04");
        assert_eq!(unescape_mountinfo("/a\\+12"), "/a\\+12");
    }

    #[test]
    fn cpu_quota_from_cpus() {
        assert_eq!(
            CpuQuota::from_cpus(1.5),
            Some(CpuQuota {
                quota_us: 150_000,
                period_us: 100_000
            })
        );
        assert_eq!(CpuQuota::from_cpus(0.001).map(|q| q.quota_us), Some(1_000));
        assert_eq!(CpuQuota::from_cpus(0.0), None);
        assert_eq!(CpuQuota::from_cpus(f64::NAN), None);
    }

    #[test]
    fn leaf_names_are_prefixed_once() {
        assert_eq!(leaf_name("x"), "cvbench-x");
        assert_eq!(leaf_name("cvbench-x"), "cvbench-x");
        assert!(check_name("a/b").is_err());
        assert!(check_name("..").is_err());
    }
}
