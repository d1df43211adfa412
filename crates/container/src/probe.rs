//! Read-only figures about a container's processes and files: proportional set size from
//! `/proc/PID/smaps_rollup`, and the blocks a directory tree allocates.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} has no Pss line")]
    NoPss { path: PathBuf },
}

/// PSS of one process in bytes, from `<proc_root>/<pid>/smaps_rollup`.
pub fn pss_bytes(proc_root: &Path, pid: i32) -> Result<u64, ProbeError> {
    let path = proc_root.join(pid.to_string()).join("smaps_rollup");
    let text = fs::read_to_string(&path).map_err(|source| ProbeError::Read {
        path: path.clone(),
        source,
    })?;
    parse_pss_kib(&text)
        .map(|kib| kib * 1024)
        .ok_or(ProbeError::NoPss { path })
}

/// Sum of PSS over `pids`. A process that exited meanwhile (its smaps_rollup is gone or empty)
/// counts as zero.
pub fn pss_total_bytes(proc_root: &Path, pids: &[i32]) -> Result<u64, ProbeError> {
    let mut total = 0;
    for &pid in pids {
        match pss_bytes(proc_root, pid) {
            Ok(b) => total += b,
            Err(ProbeError::Read { source, .. })
                if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) => {
            }
            Err(ProbeError::NoPss { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

fn parse_pss_kib(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup.lines().find_map(|l| {
        let rest = l.strip_prefix("Pss:")?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Bytes allocated (st_blocks × 512) by everything under `root`, the root itself included; hard
/// links count once, symlinks are not followed. A missing root is 0.
pub fn allocated_bytes(root: &Path) -> Result<u64, ProbeError> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ProbeError::Read { path, source }),
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            let entries = fs::read_dir(&path).map_err(|source| ProbeError::Read {
                path: path.clone(),
                source,
            })?;
            for e in entries {
                let e = e.map_err(|source| ProbeError::Read {
                    path: path.clone(),
                    source,
                })?;
                stack.push(e.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_is_parsed_in_kib() {
        let text = "55d0-7ffc ---p 00000000 00:00 0 [rollup]\nRss:                1884 kB\nPss:                 381 kB\nPss_Dirty:            12 kB\n";
        assert_eq!(parse_pss_kib(text), Some(381));
        assert_eq!(parse_pss_kib("Rss: 1 kB\n"), None);
    }

    #[test]
    fn own_pss_is_positive_and_fixture_pss_is_read() {
        let own = pss_bytes(Path::new("/proc"), std::process::id().try_into().unwrap()).unwrap();
        assert!(own > 0);
        let root = tempfile::tempdir().unwrap();
        for (pid, kib) in [(10, 100), (11, 23)] {
            let d = root.path().join(pid.to_string());
            fs::create_dir(&d).unwrap();
            fs::write(d.join("smaps_rollup"), format!("Rss: 999 kB\nPss: {kib} kB\n")).unwrap();
        }
        assert_eq!(pss_total_bytes(root.path(), &[10, 11, 12]).unwrap(), 123 * 1024);
    }

    #[test]
    fn allocated_bytes_counts_blocks_and_hard_links_once() {
        let root = tempfile::tempdir().unwrap();
        let dir_only = allocated_bytes(root.path()).unwrap();
        fs::write(root.path().join("a"), vec![1u8; 64 * 1024]).unwrap();
        let with_file = allocated_bytes(root.path()).unwrap();
        assert!(with_file >= dir_only + 64 * 1024, "{dir_only} -> {with_file}");
        fs::hard_link(root.path().join("a"), root.path().join("b")).unwrap();
        assert_eq!(allocated_bytes(root.path()).unwrap(), with_file);
        assert_eq!(allocated_bytes(&root.path().join("missing")).unwrap(), 0);
    }
}
