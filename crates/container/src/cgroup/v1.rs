//! cgroup v1: one hierarchy per controller (memory, cpu, pids), each mounted at its own root
//! (`/sys/fs/cgroup/<controller>` on this host). The container's cgroup is
//! `<root>/cvbench/cvbench-<name>` in each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    check_name, leaf_name, make_dirs_then, read_usage, write_file, CgroupError, CgroupManager, CgroupVersion,
    Limits, Usage, PARENT_DIR,
};

/// The v1 controllers cvbench limits and reads.
pub const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

#[derive(Debug, Clone)]
pub struct CgroupV1 {
    /// Controller name → mount point of its hierarchy.
    roots: BTreeMap<String, PathBuf>,
}

impl CgroupV1 {
    /// `roots` maps each of [`CONTROLLERS`] to the mount point of its hierarchy.
    pub fn new(roots: BTreeMap<String, PathBuf>) -> Self {
        CgroupV1 { roots }
    }

    /// The usual layout: every controller at `<cgroup_root>/<controller>`.
    pub fn with_root(cgroup_root: &Path) -> Self {
        CgroupV1::new(
            CONTROLLERS
                .iter()
                .map(|c| (c.to_string(), cgroup_root.join(c)))
                .collect(),
        )
    }

    /// `<root>/cvbench/cvbench-<name>`: the cgroup of `name` in the hierarchy mounted at `root`.
    fn leaf(root: &Path, name: &str) -> PathBuf {
        root.join(PARENT_DIR).join(leaf_name(name))
    }

    fn dir(&self, controller: &str, name: &str) -> Result<PathBuf, CgroupError> {
        let root = self
            .roots
            .get(controller)
            .ok_or_else(|| CgroupError::MissingController {
                controller: controller.to_string(),
                path: PathBuf::from("/sys/fs/cgroup"),
            })?;
        Ok(Self::leaf(root, name))
    }

    fn apply(&self, name: &str, limits: &Limits) -> Result<(), CgroupError> {
        if let Some(bytes) = limits.memory_bytes {
            let dir = self.dir("memory", name)?;
            write_file(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // With swap accounting, memory+swap gets the same limit (no swap at all); without it,
            // swappiness 0 keeps the cgroup from swapping.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write_file(&memsw, &bytes.to_string())?;
            } else {
                write_file(&dir.join("memory.swappiness"), "0")?;
            }
        }
        if let Some(q) = limits.cpu {
            let dir = self.dir("cpu", name)?;
            write_file(&dir.join("cpu.cfs_period_us"), &q.period_us.to_string())?;
            write_file(&dir.join("cpu.cfs_quota_us"), &q.quota_us.to_string())?;
        }
        if let Some(pids) = limits.pids {
            write_file(&self.dir("pids", name)?.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }
}

impl CgroupManager for CgroupV1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    /// Creates the memory and pids cgroups always (usage read-out, process list) and the cpu cgroup
    /// only with a CPU quota: moving a task into a v1 cpu cgroup costs milliseconds (about 3 ms
    /// measured on the development host, against ~25 us for memory or pids), which would dominate
    /// a container's start.
    fn create(&self, name: &str, limits: &Limits) -> Result<Vec<PathBuf>, CgroupError> {
        check_name(name)?;
        let mut dirs = Vec::new();
        for (controller, root) in &self.roots {
            let dir = Self::leaf(root, name);
            if (controller != "cpu" || limits.cpu.is_some()) && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        make_dirs_then(&dirs, || self.apply(name, limits))?;
        Ok(dirs)
    }

    /// The leaf under each distinct parent directory (hierarchies may be co-mounted).
    fn paths(&self, name: &str) -> Vec<PathBuf> {
        let leaf = leaf_name(name);
        self.parent_dirs()
            .into_iter()
            .map(|mut parent| {
                parent.push(&leaf);
                parent
            })
            .collect()
    }

    fn parent_dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for root in self.roots.values() {
            let p = root.join(PARENT_DIR);
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    fn usage(&self, name: &str) -> Result<Usage, CgroupError> {
        let mem = self.dir("memory", name)?;
        read_usage(
            &mem,
            "memory.usage_in_bytes",
            "memory.oom_control",
            self.dir("pids", name),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::CpuQuota;
    use super::*;

    fn files_under(root: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                    out.push((rel, fs::read_to_string(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn limits_write_exactly_the_v1_files() {
        let root = tempfile::tempdir().unwrap();
        let m = CgroupV1::with_root(root.path());
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            cpu: Some(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000,
            }),
            pids: Some(32),
        };
        let dirs = m.create("t1", &limits).unwrap();
        assert_eq!(dirs.len(), 3, "a CPU quota needs the cpu hierarchy too");
        assert_eq!(
            files_under(root.path()),
            vec![
                ("cpu/cvbench/cvbench-t1/cpu.cfs_period_us".into(), "100000".into()),
                ("cpu/cvbench/cvbench-t1/cpu.cfs_quota_us".into(), "50000".into()),
                (
                    "memory/cvbench/cvbench-t1/memory.limit_in_bytes".into(),
                    "67108864".into()
                ),
                ("memory/cvbench/cvbench-t1/memory.swappiness".into(), "0".into()),
                ("pids/cvbench/cvbench-t1/pids.max".into(), "32".into()),
            ]
        );
    }

    #[test]
    fn memsw_is_limited_when_swap_accounting_exists() {
        let root = tempfile::tempdir().unwrap();
        let leaf = root.path().join("memory/cvbench/cvbench-t2");
        fs::create_dir_all(&leaf).unwrap();
        fs::write(leaf.join("memory.memsw.limit_in_bytes"), "9223372036854771712").unwrap();
        let m = CgroupV1::with_root(root.path());
        m.create(
            "t2",
            &Limits {
                memory_bytes: Some(1 << 30),
                ..Limits::default()
            },
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(leaf.join("memory.limit_in_bytes")).unwrap(),
            "1073741824"
        );
        assert_eq!(
            fs::read_to_string(leaf.join("memory.memsw.limit_in_bytes")).unwrap(),
            "1073741824"
        );
        assert!(!leaf.join("memory.swappiness").exists());
    }

    #[test]
    fn no_limits_writes_no_files() {
        let root = tempfile::tempdir().unwrap();
        let m = CgroupV1::with_root(root.path());
        let dirs = m.create("t3", &Limits::default()).unwrap();
        assert_eq!(files_under(root.path()), vec![]);
        // Without a CPU quota the (slow to join) cpu hierarchy is left out.
        assert_eq!(
            dirs,
            vec![
                root.path().join("memory/cvbench/cvbench-t3"),
                root.path().join("pids/cvbench/cvbench-t3")
            ]
        );
        assert!(!root.path().join("cpu/cvbench/cvbench-t3").exists());
        assert_eq!(m.list().unwrap(), vec!["cvbench-t3".to_string()]);
    }

    #[test]
    fn co_mounted_hierarchies_give_one_path_each_in_controller_order() {
        let m = CgroupV1::new(
            [("cpu", "/cg/cpu"), ("memory", "/cg/mp"), ("pids", "/cg/mp")]
                .into_iter()
                .map(|(c, r)| (c.to_string(), PathBuf::from(r)))
                .collect(),
        );
        assert_eq!(
            m.parent_dirs(),
            [PathBuf::from("/cg/cpu/cvbench"), PathBuf::from("/cg/mp/cvbench")]
        );
        assert_eq!(
            m.paths("a"),
            [
                PathBuf::from("/cg/cpu/cvbench/cvbench-a"),
                PathBuf::from("/cg/mp/cvbench/cvbench-a")
            ]
        );
    }

    #[test]
    fn usage_reads_oom_kill_and_pids_events() {
        let root = tempfile::tempdir().unwrap();
        let m = CgroupV1::with_root(root.path());
        m.create("t4", &Limits::default()).unwrap();
        let mem = root.path().join("memory/cvbench/cvbench-t4");
        fs::write(mem.join("memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(mem.join("memory.stat"), "cache 0\nrss 4096\n").unwrap();
        fs::write(root.path().join("pids/cvbench/cvbench-t4/pids.events"), "max 7\n").unwrap();
        let u = m.usage("t4").unwrap();
        assert_eq!((u.memory_bytes, u.oom_kills, u.pids_max_events), (4096, 2, 7));
        assert_eq!(u.memory_stat.get("rss"), Some(&4096));
    }

    #[test]
    fn processes_are_the_union_over_hierarchies() {
        let root = tempfile::tempdir().unwrap();
        let m = CgroupV1::with_root(root.path());
        let cpu = Limits {
            cpu: CpuQuota::from_cpus(1.0),
            ..Limits::default()
        };
        let dirs = m.create("t5", &cpu).unwrap();
        fs::write(dirs[0].join("cgroup.procs"), "12\n7\n").unwrap();
        fs::write(dirs[1].join("cgroup.procs"), "7\n").unwrap();
        assert_eq!(m.processes("t5").unwrap(), vec![7, 12]);
    }
}
