//! State that outlives a crashed harness: `/run/cvbench/containers/<name>/state.json` names the
//! container's pid, cgroup directories and scratch directories, and [`cleanup_all`] removes
//! everything a killed harness left behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};
use serde::{Deserialize, Serialize};

use crate::cgroup::{self, CgroupManager};
use crate::error::ContainerError;

/// Default root of all cvbench runtime state.
pub const DEFAULT_STATE_ROOT: &str = "/run/cvbench";
/// Subdirectory of the state root holding one directory per container.
pub const CONTAINERS_DIR: &str = "containers";
pub const STATE_FILE: &str = "state.json";

/// What `state.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub name: String,
    pub cgroup_paths: Vec<PathBuf>,
    pub image_dir: PathBuf,
    pub container_dir: PathBuf,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    pub merged_dir: PathBuf,
}

/// Writes `state` to `path` atomically (temporary file + rename).
pub fn write_state(path: &Path, state: &ContainerState) -> Result<(), ContainerError> {
    let json = serde_json::to_vec_pretty(state).map_err(|source| ContainerError::StateFile {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, json).map_err(ContainerError::io("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(ContainerError::io("renaming", tmp))
}

pub fn read_state(path: &Path) -> Result<ContainerState, ContainerError> {
    let bytes = fs::read(path).map_err(ContainerError::io("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|source| ContainerError::StateFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Mount points at or below `dir` in a mountinfo text, deepest first (the order to unmount them).
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(cgroup::unescape_mountinfo(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out.dedup();
    out
}

/// Lazily unmounts everything at or below `dir` that `mountinfo` (a path like `/proc/self/mountinfo`)
/// lists. Returns what was unmounted.
pub fn unmount_under(mountinfo: &Path, dir: &Path) -> Result<Vec<PathBuf>, ContainerError> {
    let text = fs::read_to_string(mountinfo).map_err(ContainerError::io("reading", mountinfo))?;
    let mut done = Vec::new();
    for m in mounts_under(&text, dir) {
        match umount2(&m, MntFlags::MNT_DETACH) {
            Ok(()) => done.push(m),
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(source) => return Err(ContainerError::Unmount { path: m, source }),
        }
    }
    Ok(done)
}

/// Removes a directory tree; a missing one is fine.
pub fn remove_tree(dir: &Path) -> Result<(), ContainerError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ContainerError::io("removing", dir)(source)),
    }
}

/// What [`cleanup_all`] found and removed.
#[derive(Debug, Default)]
pub struct CleanupReport {
    /// Container directories removed (with their state).
    pub containers: Vec<PathBuf>,
    /// Cgroups destroyed (leaf names), including ones without a state directory.
    pub cgroups: Vec<String>,
    /// Mount points unmounted.
    pub unmounted: Vec<PathBuf>,
    /// Failures; cleanup carries on past each one.
    pub errors: Vec<ContainerError>,
}

impl CleanupReport {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Removes everything containers left behind under `state_root` and in `cgroups`: kills processes
/// still in cvbench cgroups, unmounts anything under the container directories, removes the cgroups
/// and the directories. Safe to run when nothing is left (reports nothing).
pub fn cleanup_all(state_root: &Path, cgroups: &dyn CgroupManager, mountinfo: &Path) -> CleanupReport {
    cleanup_except(state_root, cgroups, mountinfo, &|_| false, true)
}

/// [`cleanup_all`], leaving alone every container whose name `keep` accepts; the shared parent
/// directories (`containers/`, the state root) are only removed, when empty, with `remove_parents`
/// (a live harness may be about to create a container in them). A container is reported as removed
/// only once all of it is gone.
pub fn cleanup_except(
    state_root: &Path,
    cgroups: &dyn CgroupManager,
    mountinfo: &Path,
    keep: &dyn Fn(&str) -> bool,
    remove_parents: bool,
) -> CleanupReport {
    let mut report = CleanupReport::default();
    let containers = state_root.join(CONTAINERS_DIR);
    let entries: Vec<PathBuf> = match fs::read_dir(&containers) {
        Ok(rd) => rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            report
                .errors
                .push(ContainerError::io("listing", &containers)(source));
            Vec::new()
        }
    };
    for dir in entries {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if keep(&name) {
            continue;
        }
        let errors_before = report.errors.len();
        let state = read_state(&dir.join(STATE_FILE)).ok();
        // Processes first (so nothing holds the mounts), then mounts, then directories.
        let had_cgroup = cgroups.paths(&name).iter().any(|p| p.exists());
        match cgroups.destroy(&name) {
            Ok(()) if had_cgroup => report.cgroups.push(cgroup::leaf_name(&name)),
            Ok(()) => {}
            Err(e) => report.errors.push(e.into()),
        }
        if let Some(state) = &state {
            // Cgroup directories recorded by a different manager (e.g. written before a host change).
            let own = cgroups.paths(&name);
            let extra: Vec<PathBuf> = state
                .cgroup_paths
                .iter()
                .filter(|p| !own.contains(p))
                .cloned()
                .collect();
            if let Err(e) = cgroup::destroy_dirs(&extra) {
                report.errors.push(e.into());
            }
        }
        let mut scratch = vec![dir.clone()];
        if let Some(state) = &state {
            for d in [&state.upper_dir, &state.work_dir, &state.merged_dir] {
                if !d.starts_with(&dir) {
                    scratch.push(d.clone());
                }
            }
        }
        for d in &scratch {
            match unmount_under(mountinfo, d) {
                Ok(m) => report.unmounted.extend(m),
                Err(e) => report.errors.push(e),
            }
            if let Err(e) = remove_tree(d) {
                report.errors.push(e);
            }
        }
        if report.errors.len() == errors_before {
            report.containers.push(dir);
        }
    }
    match cgroups.list() {
        Ok(names) => {
            for name in names.into_iter().filter(|n| !keep(n)) {
                match cgroups.destroy(&name) {
                    Ok(()) => report.cgroups.push(name),
                    Err(e) => report.errors.push(e.into()),
                }
            }
        }
        Err(e) => report.errors.push(e.into()),
    }
    if remove_parents {
        for parent in cgroups.parent_dirs() {
            let _ = fs::remove_dir(parent);
        }
        let _ = fs::remove_dir(&containers);
        let _ = fs::remove_dir(state_root);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_under_a_dir_come_deepest_first() {
        let mi = "\
22 1 0:20 / / rw - ext4 /dev/vda rw
90 22 0:50 / /run/cvbench/containers/a/merged rw - overlay overlay rw
91 90 0:51 / /run/cvbench/containers/a/merged/proc rw - proc proc rw
92 22 0:52 / /run/cvbench/containers/ab/merged rw - overlay overlay rw
";
        assert_eq!(
            mounts_under(mi, Path::new("/run/cvbench/containers/a")),
            vec![
                PathBuf::from("/run/cvbench/containers/a/merged/proc"),
                PathBuf::from("/run/cvbench/containers/a/merged"),
            ]
        );
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContainerState {
            name: "x".into(),
            cgroup_paths: vec!["/sys/fs/cgroup/pids/cvbench/cvbench-x".into()],
            image_dir: "/img".into(),
            container_dir: dir.path().into(),
            upper_dir: dir.path().join("upper"),
            work_dir: dir.path().join("work"),
            merged_dir: dir.path().join("merged"),
        };
        let p = dir.path().join(STATE_FILE);
        write_state(&p, &s).unwrap();
        assert_eq!(read_state(&p).unwrap(), s);
    }

    #[test]
    fn cleanup_removes_left_over_dirs_and_fixture_cgroups() {
        let state_root = tempfile::tempdir().unwrap();
        let cg_root = tempfile::tempdir().unwrap();
        let cgroups = crate::cgroup::CgroupV1::with_root(cg_root.path());
        // A leftover cgroup (empty, so rmdir works on a plain directory) and a container dir.
        cgroups.create("left", &crate::cgroup::Limits::default()).unwrap();
        let cdir = state_root.path().join("containers/left");
        fs::create_dir_all(cdir.join("upper/etc")).unwrap();
        fs::write(cdir.join("upper/etc/x"), "y").unwrap();
        let mountinfo = state_root.path().join("mountinfo");
        fs::write(&mountinfo, "22 1 0:20 / / rw - ext4 /dev/vda rw\n").unwrap();
        let report = cleanup_all(state_root.path(), &cgroups, &mountinfo);
        assert!(report.is_clean(), "{:?}", report.errors);
        assert_eq!(report.containers, vec![cdir.clone()]);
        assert!(report.cgroups.contains(&"cvbench-left".to_string()));
        assert!(!cdir.exists());
        assert!(!cg_root.path().join("memory/cvbench").exists());
    }
}
