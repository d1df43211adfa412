//! Memory and disk probes shared by every backend: PSS and RSS of a set of host processes from
//! `/proc/PID/smaps_rollup`, the host's `MemAvailable` and kernel memory (what density charges each
//! instance), cgroup memory, and the allocated bytes of a directory tree.
//! The `/proc` root is a parameter (`*_in` functions) so unit tests run against fixture files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::host::meminfo_kib;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("process {pid} is gone (no {path})")]
    ProcessGone { pid: i32, path: PathBuf },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: no {field} line (a zombie or kernel thread has no memory map)")]
    Missing { path: PathBuf, field: &'static str },
    #[error("{path}: malformed {field} value {value:?}")]
    Malformed {
        path: PathBuf,
        field: &'static str,
        value: String,
    },
}

/// Sum of the proportional set size over `pids`, in bytes. A pid that has exited is an error naming it.
pub fn pss_bytes(pids: &[i32]) -> Result<u64, ProbeError> {
    pss_bytes_in(Path::new("/proc"), pids)
}

/// Sum of the resident set size over `pids`, in bytes (shared pages counted once per process).
pub fn rss_bytes(pids: &[i32]) -> Result<u64, ProbeError> {
    rss_bytes_in(Path::new("/proc"), pids)
}

pub fn pss_bytes_in(proc_root: &Path, pids: &[i32]) -> Result<u64, ProbeError> {
    sum_rollup_field(proc_root, pids, "Pss")
}

pub fn rss_bytes_in(proc_root: &Path, pids: &[i32]) -> Result<u64, ProbeError> {
    sum_rollup_field(proc_root, pids, "Rss")
}

fn sum_rollup_field(proc_root: &Path, pids: &[i32], field: &'static str) -> Result<u64, ProbeError> {
    let mut total = 0u64;
    for &pid in pids {
        let path = proc_root.join(pid.to_string()).join("smaps_rollup");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            // ESRCH: the process exited between opening and reading.
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(ProbeError::ProcessGone { pid, path })
            }
            Err(source) => return Err(ProbeError::Read { path, source }),
        };
        let kib = meminfo_kib(&text, field)
            .ok_or_else(|| ProbeError::Missing {
                path: path.clone(),
                field,
            })?
            .map_err(|value| ProbeError::Malformed {
                path: path.clone(),
                field,
                value,
            })?;
        total = total.saturating_add(kib.saturating_mul(1024));
    }
    Ok(total)
}

/// The host's `MemAvailable`, in bytes.
pub fn mem_available_bytes() -> Result<u64, ProbeError> {
    mem_available_bytes_in(Path::new("/proc"))
}

pub fn mem_available_bytes_in(proc_root: &Path) -> Result<u64, ProbeError> {
    let path = proc_root.join("meminfo");
    let text = fs::read_to_string(&path).map_err(|source| ProbeError::Read {
        path: path.clone(),
        source,
    })?;
    let kib = meminfo_kib(&text, "MemAvailable")
        .ok_or_else(|| ProbeError::Missing {
            path: path.clone(),
            field: "MemAvailable",
        })?
        .map_err(|value| ProbeError::Malformed {
            path: path.clone(),
            field: "MemAvailable",
            value,
        })?;
    Ok(kib.saturating_mul(1024))
}

/// `/proc/meminfo` lines that are kernel memory an instance can cost and the host cannot reclaim:
/// unreclaimable slab (namespaces, cgroups, KVM's structures), page tables (KVM's shadow/EPT tables
/// are `SecPageTables` on kernels that have it), kernel stacks, vmalloc (KVM's per-VM state) and
/// per-CPU memory (memory cgroups' per-CPU statistics). Reclaimable slab (dentries, inodes) is left
/// out, as `MemAvailable` leaves it out. Missing lines count as zero.
pub const KERNEL_MEMINFO_FIELDS: &[&str] = &[
    "SUnreclaim",
    "PageTables",
    "SecPageTables",
    "KernelStack",
    "VmallocUsed",
    "Percpu",
];

/// The host's memory at one moment, as density needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemory {
    /// `MemAvailable`.
    pub available_bytes: u64,
    /// Sum of [`KERNEL_MEMINFO_FIELDS`].
    pub kernel_bytes: u64,
}

/// What the host lost between two [`HostMemory`] readings; negative when memory was freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemoryLoss {
    /// Drop of `MemAvailable`: everything the host can no longer hand out, kernel memory included.
    pub used_bytes: i64,
    /// Growth of kernel memory.
    pub kernel_bytes: i64,
}

impl HostMemory {
    /// What the host lost from `before` to `self`.
    pub fn lost_since(&self, before: &HostMemory) -> HostMemoryLoss {
        HostMemoryLoss {
            used_bytes: signed_sub(before.available_bytes, self.available_bytes),
            kernel_bytes: signed_sub(self.kernel_bytes, before.kernel_bytes),
        }
    }
}

/// What the host lost across launches, measured only inside each launch window: `MemAvailable` just
/// before a launch minus just after it returned, summed over launches. Memory other processes take
/// or free between launches (a build finishing on a shared host moved `MemAvailable` by a GiB
/// during one 200-instance curve) is left out, while everything the launch itself costs, kernel
/// memory included, is in. A window with a failed reading is skipped and counted in `missed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaunchLoss {
    sum: Option<HostMemoryLoss>,
    /// Launch windows without both readings.
    pub missed: u32,
}

impl LaunchLoss {
    /// Adds one launch window.
    pub fn add(&mut self, before: Option<HostMemory>, after: Option<HostMemory>) {
        let (Some(before), Some(after)) = (before, after) else {
            self.missed = self.missed.saturating_add(1);
            return;
        };
        let window = after.lost_since(&before);
        let sum = self.sum.get_or_insert(HostMemoryLoss {
            used_bytes: 0,
            kernel_bytes: 0,
        });
        sum.used_bytes = sum.used_bytes.saturating_add(window.used_bytes);
        sum.kernel_bytes = sum.kernel_bytes.saturating_add(window.kernel_bytes);
    }

    /// The summed loss; `None` before any complete window or when a window was missed (the sum
    /// would then undercount).
    pub fn total(&self) -> Option<HostMemoryLoss> {
        if self.missed > 0 {
            return None;
        }
        self.sum
    }
}

fn signed_sub(a: u64, b: u64) -> i64 {
    if a >= b {
        i64::try_from(a - b).unwrap_or(i64::MAX)
    } else {
        i64::try_from(b - a).map_or(i64::MIN, |d| -d)
    }
}

/// The host's memory now, from `/proc/meminfo`.
pub fn host_memory() -> Result<HostMemory, ProbeError> {
    host_memory_in(Path::new("/proc"))
}

pub fn host_memory_in(proc_root: &Path) -> Result<HostMemory, ProbeError> {
    let path = proc_root.join("meminfo");
    let text = fs::read_to_string(&path).map_err(|source| ProbeError::Read {
        path: path.clone(),
        source,
    })?;
    let field = |name: &'static str| -> Result<Option<u64>, ProbeError> {
        match meminfo_kib(&text, name) {
            None => Ok(None),
            Some(Ok(kib)) => Ok(Some(kib.saturating_mul(1024))),
            Some(Err(value)) => Err(ProbeError::Malformed {
                path: path.clone(),
                field: name,
                value,
            }),
        }
    };
    let available_bytes = field("MemAvailable")?.ok_or_else(|| ProbeError::Missing {
        path: path.clone(),
        field: "MemAvailable",
    })?;
    let mut kernel_bytes = 0u64;
    for name in KERNEL_MEMINFO_FIELDS {
        kernel_bytes = kernel_bytes.saturating_add(field(name)?.unwrap_or(0));
    }
    Ok(HostMemory {
        available_bytes,
        kernel_bytes,
    })
}

/// Allocated bytes (`st_blocks * 512`) of everything under `root`, the root itself included, without
/// following symlinks or entering other mounts, each hard-linked inode once: what the tree really
/// costs on disk (sparse files count only their written blocks). The walk is `rootfs`'s, so images,
/// upper dirs and scratch disks are measured alike.
pub fn allocated_bytes(root: &Path) -> Result<u64, ProbeError> {
    rootfs::allocated_bytes(root).map_err(|source| ProbeError::Read {
        path: root.to_path_buf(),
        source,
    })
}

/// The memory usage the kernel charges to the cgroup of `pid`: v1 `memory.usage_in_bytes` when a v1
/// memory controller holds the process (also on hybrid hosts), else v2 `memory.current`.
pub fn cgroup_memory_bytes(pid: i32) -> Result<u64, ProbeError> {
    cgroup_memory_bytes_in(Path::new("/proc"), Path::new("/sys/fs/cgroup"), pid)
}

pub fn cgroup_memory_bytes_in(proc_root: &Path, cgroup_root: &Path, pid: i32) -> Result<u64, ProbeError> {
    let path = proc_root.join(pid.to_string()).join("cgroup");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ProbeError::ProcessGone { pid, path }),
        Err(source) => return Err(ProbeError::Read { path, source }),
    };
    let mut v1 = None;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(cg)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let cg = cg.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(cgroup_root.join("memory").join(cg).join("memory.usage_in_bytes"));
        } else if controllers.is_empty() {
            v2 = Some(cgroup_root.join(cg).join("memory.current"));
        }
    }
    let file = v1.or(v2).ok_or(ProbeError::Missing {
        path,
        field: "memory cgroup",
    })?;
    let value = fs::read_to_string(&file).map_err(|source| ProbeError::Read {
        path: file.clone(),
        source,
    })?;
    value.trim().parse::<u64>().map_err(|_| ProbeError::Malformed {
        path: file,
        field: "memory usage",
        value: value.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const ROLLUP: &str = "55d0c0a00000-7ffc3b1f2000 ---p 00000000 00:00 0                          [rollup]
Rss:                4200 kB
Pss:                1500 kB
Pss_Anon:            800 kB
Shared_Clean:       2400 kB
";

    fn proc_fixture(pids: &[(i32, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, text) in pids {
            let d = dir.path().join(pid.to_string());
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("smaps_rollup"), text).unwrap();
        }
        dir
    }

    #[test]
    fn pss_and_rss_are_summed_over_pids_in_bytes() {
        let dir = proc_fixture(&[(10, ROLLUP), (11, &ROLLUP.replace("1500", "500"))]);
        assert_eq!(pss_bytes_in(dir.path(), &[10, 11]).unwrap(), 2000 * 1024);
        assert_eq!(rss_bytes_in(dir.path(), &[10, 11]).unwrap(), 8400 * 1024);
        assert_eq!(pss_bytes_in(dir.path(), &[]).unwrap(), 0);
    }

    #[test]
    fn a_vanished_pid_is_an_error_naming_it() {
        let dir = proc_fixture(&[(10, ROLLUP)]);
        let err = pss_bytes_in(dir.path(), &[10, 4242]).unwrap_err();
        assert!(matches!(err, ProbeError::ProcessGone { pid: 4242, .. }), "{err}");
        assert!(err.to_string().contains("4242"));
    }

    #[test]
    fn a_rollup_without_pss_is_an_error() {
        let dir = proc_fixture(&[(10, "")]);
        assert!(matches!(
            pss_bytes_in(dir.path(), &[10]),
            Err(ProbeError::Missing { field: "Pss", .. })
        ));
    }

    #[test]
    fn own_process_has_positive_pss_not_above_rss() {
        let me = i32::try_from(std::process::id()).unwrap();
        let pss = pss_bytes(&[me]).unwrap();
        let rss = rss_bytes(&[me]).unwrap();
        assert!(pss > 0);
        assert!(pss <= rss, "pss {pss} > rss {rss}");
    }

    #[test]
    fn mem_available_from_fixture_and_host() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("meminfo"),
            "MemTotal: 100 kB\nMemAvailable:  64 kB\n",
        )
        .unwrap();
        assert_eq!(mem_available_bytes_in(dir.path()).unwrap(), 64 * 1024);
        assert!(mem_available_bytes().unwrap() > 0);
    }

    #[test]
    fn host_memory_loss_counts_the_available_drop_and_kernel_growth() {
        let dir = tempfile::tempdir().unwrap();
        let write = |avail: u64, slab: u64| {
            fs::write(
                dir.path().join("meminfo"),
                format!(
                    "MemTotal: 1000000 kB\nMemAvailable: {avail} kB\nSUnreclaim: {slab} kB\n\
                     SReclaimable: 7777 kB\n\
                     KernelStack: 100 kB\nPageTables: 50 kB\n"
                ),
            )
            .unwrap();
        };
        write(900_000, 1_000);
        let before = host_memory_in(dir.path()).unwrap();
        assert_eq!(before.kernel_bytes, (1_000 + 100 + 50) * 1024);
        write(899_000, 1_300);
        let loss = host_memory_in(dir.path()).unwrap().lost_since(&before);
        assert_eq!(loss.used_bytes, 1_000 * 1024);
        assert_eq!(loss.kernel_bytes, 300 * 1024);
        // Memory freed by others shows as a negative loss, not a wrapped-around huge one.
        write(901_000, 900);
        let loss = host_memory_in(dir.path()).unwrap().lost_since(&before);
        assert_eq!((loss.used_bytes, loss.kernel_bytes), (-1_000 * 1024, -100 * 1024));
        fs::write(dir.path().join("meminfo"), "MemTotal: 1 kB\n").unwrap();
        assert!(matches!(
            host_memory_in(dir.path()),
            Err(ProbeError::Missing {
                field: "MemAvailable",
                ..
            })
        ));
        assert!(host_memory().unwrap().available_bytes > 0);
    }

    #[test]
    fn launch_loss_sums_launch_windows_and_ignores_drift_between_them() {
        let at = |avail_kib: u64, kernel_kib: u64| HostMemory {
            available_bytes: avail_kib * 1024,
            kernel_bytes: kernel_kib * 1024,
        };
        let mut loss = LaunchLoss::default();
        assert_eq!(loss.total(), None);
        loss.add(Some(at(1_000_000, 100)), Some(at(999_500, 150)));
        // Between launches another process freed 1 GiB: not the instances' doing.
        loss.add(Some(at(2_048_576, 150)), Some(at(2_048_076, 190)));
        assert_eq!(
            loss.total(),
            Some(HostMemoryLoss {
                used_bytes: 1_000 * 1024,
                kernel_bytes: 90 * 1024
            })
        );
        loss.add(None, Some(at(1, 1)));
        assert_eq!((loss.total(), loss.missed), (None, 1));
    }

    #[test]
    fn allocated_bytes_counts_written_blocks_and_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let empty = allocated_bytes(dir.path()).unwrap();
        let data = dir.path().join("data");
        let mut f = fs::File::create(&data).unwrap();
        f.write_all(&vec![7u8; 256 * 1024]).unwrap();
        f.sync_all().unwrap();
        let with_file = allocated_bytes(dir.path()).unwrap();
        assert!(with_file >= empty + 256 * 1024, "{with_file} vs {empty}");
        fs::hard_link(&data, dir.path().join("again")).unwrap();
        assert_eq!(allocated_bytes(dir.path()).unwrap(), with_file);
        // A sparse file costs (almost) nothing.
        let sparse = fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        assert!(allocated_bytes(dir.path()).unwrap() < with_file + (1 << 20));
    }

    #[test]
    fn allocated_bytes_of_a_missing_path_names_it() {
        let err = allocated_bytes(Path::new("/nonexistent/cvbench")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cvbench"));
    }

    #[test]
    fn cgroup_memory_prefers_the_v1_memory_controller() {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        let cg = dir.path().join("cg");
        fs::create_dir_all(proc_root.join("7")).unwrap();
        fs::create_dir_all(cg.join("memory/cvbench-x")).unwrap();
        fs::create_dir_all(cg.join("cvbench-y")).unwrap();
        fs::write(cg.join("memory/cvbench-x/memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(cg.join("cvbench-y/memory.current"), "8192\n").unwrap();
        fs::write(
            proc_root.join("7/cgroup"),
            "5:memory:/cvbench-x\n3:pids:/cvbench-x\n0::/cvbench-y\n",
        )
        .unwrap();
        assert_eq!(cgroup_memory_bytes_in(&proc_root, &cg, 7).unwrap(), 4096);
        fs::write(proc_root.join("7/cgroup"), "0::/cvbench-y\n").unwrap();
        assert_eq!(cgroup_memory_bytes_in(&proc_root, &cg, 7).unwrap(), 8192);
        assert!(matches!(
            cgroup_memory_bytes_in(&proc_root, &cg, 8),
            Err(ProbeError::ProcessGone { pid: 8, .. })
        ));
    }
}
