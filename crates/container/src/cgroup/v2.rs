//! cgroup v2: one unified hierarchy. The container's cgroup is `<root>/cvbench/cvbench-<name>`;
//! the controllers cvbench needs are enabled in `cgroup.subtree_control` of the root and of the
//! `cvbench` parent (only those the root offers in `cgroup.controllers`).

use std::path::PathBuf;

use super::{
    check_name, leaf_name, make_dir, make_dirs_then, read_file, read_usage, write_file, CgroupError,
    CgroupManager, CgroupVersion, Limits, Usage, PARENT_DIR,
};

/// The v2 controllers cvbench enables (when the root offers them).
pub const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

#[derive(Debug, Clone)]
pub struct CgroupV2 {
    root: PathBuf,
}

impl CgroupV2 {
    /// `root` is the cgroup2 mount point (`/sys/fs/cgroup` on a pure-v2 host).
    pub fn new(root: PathBuf) -> Self {
        CgroupV2 { root }
    }

    fn parent(&self) -> PathBuf {
        self.root.join(PARENT_DIR)
    }

    /// `<root>/cvbench/cvbench-<name>`.
    fn leaf(&self, name: &str) -> PathBuf {
        self.parent().join(leaf_name(name))
    }

    /// The controllers to enable: those cvbench uses that the root offers. A limit that needs a
    /// controller the root lacks is an error.
    fn controllers_for(&self, limits: &Limits) -> Result<Vec<&'static str>, CgroupError> {
        let path = self.root.join("cgroup.controllers");
        let offered = read_file(&path)?;
        let offered: Vec<&str> = offered.split_whitespace().collect();
        let needed = [
            ("memory", limits.memory_bytes.is_some()),
            ("cpu", limits.cpu.is_some()),
            ("pids", limits.pids.is_some()),
        ];
        for (controller, needed) in needed {
            if needed && !offered.contains(&controller) {
                return Err(CgroupError::MissingController {
                    controller: controller.to_string(),
                    path,
                });
            }
        }
        Ok(CONTROLLERS
            .iter()
            .copied()
            .filter(|c| offered.contains(c))
            .collect())
    }

    fn apply(&self, leaf: &std::path::Path, limits: &Limits) -> Result<(), CgroupError> {
        if let Some(bytes) = limits.memory_bytes {
            write_file(&leaf.join("memory.max"), &bytes.to_string())?;
            let swap = leaf.join("memory.swap.max");
            if swap.exists() {
                write_file(&swap, "0")?;
            }
        }
        if let Some(q) = limits.cpu {
            write_file(&leaf.join("cpu.max"), &format!("{} {}", q.quota_us, q.period_us))?;
        }
        if let Some(pids) = limits.pids {
            write_file(&leaf.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }
}

impl CgroupManager for CgroupV2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create(&self, name: &str, limits: &Limits) -> Result<Vec<PathBuf>, CgroupError> {
        check_name(name)?;
        let controllers = self.controllers_for(limits)?;
        let leaf = self.leaf(name);
        make_dir(&self.parent())?;
        if !controllers.is_empty() {
            let enable = controllers
                .iter()
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(" ");
            write_file(&self.root.join("cgroup.subtree_control"), &enable)?;
            write_file(&self.parent().join("cgroup.subtree_control"), &enable)?;
        }
        make_dirs_then(std::slice::from_ref(&leaf), || self.apply(&leaf, limits))?;
        Ok(vec![leaf])
    }

    fn paths(&self, name: &str) -> Vec<PathBuf> {
        vec![self.leaf(name)]
    }

    fn parent_dirs(&self) -> Vec<PathBuf> {
        vec![self.parent()]
    }

    fn usage(&self, name: &str) -> Result<Usage, CgroupError> {
        let leaf = self.leaf(name);
        read_usage(&leaf, "memory.current", "memory.events", Ok(leaf.clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::CpuQuota;
    use super::*;

    fn v2_tree(controllers: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), controllers).unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        root
    }

    #[test]
    fn limits_write_exactly_the_v2_files() {
        let root = v2_tree("cpuset cpu io memory hugetlb pids rdma misc\n");
        let leaf = root.path().join("cvbench/cvbench-t1");
        fs::create_dir_all(&leaf).unwrap();
        fs::write(leaf.join("memory.swap.max"), "max\n").unwrap();
        let m = CgroupV2::new(root.path().to_path_buf());
        let limits = Limits {
            memory_bytes: Some(256 << 20),
            cpu: Some(CpuQuota {
                quota_us: 150_000,
                period_us: 100_000,
            }),
            pids: Some(64),
        };
        assert_eq!(m.create("t1", &limits).unwrap(), vec![leaf.clone()]);
        let read = |p: &str| fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(read("cvbench/cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(read("cvbench/cvbench-t1/memory.max"), "268435456");
        assert_eq!(read("cvbench/cvbench-t1/memory.swap.max"), "0");
        assert_eq!(read("cvbench/cvbench-t1/cpu.max"), "150000 100000");
        assert_eq!(read("cvbench/cvbench-t1/pids.max"), "64");
        let mut written: Vec<String> = fs::read_dir(&leaf)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        written.sort();
        assert_eq!(written, ["cpu.max", "memory.max", "memory.swap.max", "pids.max"]);
    }

    #[test]
    fn a_limit_without_its_controller_is_refused() {
        let root = v2_tree("hugetlb\n");
        let m = CgroupV2::new(root.path().to_path_buf());
        let err = m
            .create(
                "t2",
                &Limits {
                    memory_bytes: Some(1 << 20),
                    ..Limits::default()
                },
            )
            .unwrap_err();
        assert!(
            matches!(err, CgroupError::MissingController { ref controller, .. } if controller == "memory")
        );
        assert!(!root.path().join("cvbench/cvbench-t2").exists());
    }

    #[test]
    fn no_controllers_offered_creates_only_the_directory() {
        let root = v2_tree("hugetlb\n");
        let m = CgroupV2::new(root.path().to_path_buf());
        m.create("t3", &Limits::default()).unwrap();
        assert!(root.path().join("cvbench/cvbench-t3").is_dir());
        assert_eq!(
            fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            ""
        );
    }

    #[test]
    fn usage_reads_v2_files() {
        let root = v2_tree("memory pids\n");
        let m = CgroupV2::new(root.path().to_path_buf());
        m.create("t4", &Limits::default()).unwrap();
        let leaf = root.path().join("cvbench/cvbench-t4");
        fs::write(leaf.join("memory.current"), "8192\n").unwrap();
        fs::write(
            leaf.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        fs::write(leaf.join("memory.stat"), "anon 4096\nfile 0\n").unwrap();
        fs::write(leaf.join("pids.events"), "max 0\n").unwrap();
        let u = m.usage("t4").unwrap();
        assert_eq!((u.memory_bytes, u.oom_kills, u.pids_max_events), (8192, 1, 0));
        assert_eq!(u.memory_stat.get("anon"), Some(&4096));
    }
}
