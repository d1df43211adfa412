//! The real kernel calls behind [`crate::plan::Syscalls`].

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags};
use nix::unistd::{chdir, pivot_root};

use crate::plan::{MountOp, Syscalls};

/// Mounts, directories and the root switch on the running kernel.
#[derive(Debug, Default)]
pub struct RealSyscalls;

impl Syscalls for RealSyscalls {
    fn mount(&mut self, m: &MountOp) -> io::Result<()> {
        mount(
            Some(m.source.as_path()),
            m.target.as_path(),
            Some(m.fstype.as_str()),
            m.flags,
            m.data.as_deref(),
        )?;
        Ok(())
    }

    /// A directory is a mount point when it sits on another device than its parent.
    fn is_mount_point(&mut self, path: &Path) -> io::Result<bool> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        Ok(std::fs::metadata(path)?.dev() != std::fs::metadata(parent)?.dev())
    }

    fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    /// `pivot_root(".", ".")` stacks the old root on top of the new one at `/`, and detaching it
    /// leaves only the new root: no directory for the old root is needed inside the new one.
    fn pivot_into(&mut self, new_root: &Path) -> io::Result<()> {
        chdir(new_root)?;
        pivot_root(".", ".")?;
        umount2(".", MntFlags::MNT_DETACH)?;
        chdir("/")?;
        Ok(())
    }
}
