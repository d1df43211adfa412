//! How much disk a tree really costs: allocated blocks (what `du` reports), not file lengths, with
//! hard links counted once, symlinks not followed and other mounts not entered. The harness uses it
//! for images, container upper dirs and VM scratch disks alike, so the figures compare.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Disk usage of a file or tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// `st_blocks * 512` summed over every inode (directories included), hard links once.
    pub allocated_bytes: u64,
    /// Lengths of regular files and symlinks, hard links once (a sparse file counts in full).
    pub apparent_bytes: u64,
    /// Regular files, hard links once.
    pub files: usize,
}

/// Allocated bytes of `path` (a file or a tree): see [`DiskUsage::allocated_bytes`].
pub fn allocated_bytes(path: &Path) -> io::Result<u64> {
    disk_usage(path).map(|u| u.allocated_bytes)
}

/// Walk `path` without following symlinks or crossing into other file systems.
pub fn disk_usage(path: &Path) -> io::Result<DiskUsage> {
    let meta = std::fs::symlink_metadata(path)?;
    let mut walk = Walk {
        dev: meta.dev(),
        seen: HashSet::new(),
        usage: DiskUsage::default(),
    };
    walk.visit(path, &meta)?;
    Ok(walk.usage)
}

struct Walk {
    dev: u64,
    seen: HashSet<(u64, u64)>,
    usage: DiskUsage,
}

impl Walk {
    fn visit(&mut self, path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
        if meta.nlink() > 1 && !meta.is_dir() && !self.seen.insert((meta.dev(), meta.ino())) {
            return Ok(());
        }
        self.usage.allocated_bytes += meta.blocks() * 512;
        let ft = meta.file_type();
        if ft.is_file() {
            self.usage.apparent_bytes += meta.len();
            self.usage.files += 1;
        } else if ft.is_symlink() {
            self.usage.apparent_bytes += meta.len();
        } else if ft.is_dir() {
            for entry in std::fs::read_dir(path)? {
                let entry = entry?;
                let child = entry.path();
                let child_meta = match std::fs::symlink_metadata(&child) {
                    Ok(m) => m,
                    // Deleted while walking (a live upper dir): it no longer costs anything.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                // A mount point (another device): neither its blocks nor its contents are ours.
                if child_meta.dev() != self.dev {
                    continue;
                }
                self.visit(&child, &child_meta)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn sparse_file_costs_its_blocks_not_its_length() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sparse");
        let mut f = std::fs::File::create(&path).unwrap();
        f.seek(SeekFrom::Start(64 << 20)).unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        f.sync_all().unwrap();
        let u = disk_usage(&path).unwrap();
        assert_eq!(u.apparent_bytes, (64 << 20) + 4096);
        assert!(u.allocated_bytes >= 4096, "{u:?}");
        assert!(u.allocated_bytes < 1 << 20, "{u:?}");
        assert_eq!(u.files, 1);
    }

    #[test]
    fn hard_links_count_once_and_symlinks_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tree");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a"), vec![3u8; 256 * 1024]).unwrap();
        let one = disk_usage(&dir).unwrap();
        std::fs::hard_link(dir.join("a"), dir.join("sub/b")).unwrap();
        let outside = tmp.path().join("big");
        std::fs::write(&outside, vec![5u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        let two = disk_usage(&dir).unwrap();
        assert_eq!(two.files, 1);
        // Only the symlink itself was added (its target path as length, and no data blocks).
        let link_len = outside.as_os_str().len() as u64;
        assert_eq!(two.apparent_bytes, one.apparent_bytes + link_len);
        assert!(two.allocated_bytes < one.allocated_bytes + (1 << 20));
        assert!(one.allocated_bytes >= 256 * 1024);
        assert_eq!(allocated_bytes(&dir).unwrap(), two.allocated_bytes);
    }

    #[test]
    fn missing_path_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            allocated_bytes(&tmp.path().join("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
