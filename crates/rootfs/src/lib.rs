//! Builds the shared image: a content-addressed rootfs directory holding the static workload binary
//! and the static files it serves, and (for the microVM) the same tree as an ext4 disk image.
//! Also finds the cvbench binaries (workload, guest init) that the image is made from.
//!
//! # Layout of the default image
//!
//! ```text
//! bin/cvbench-workload             the static workload binary (0755)
//! srv/www/index.html, 1k.bin, 4k.bin, 16k.bin, 64k.bin, 256k.bin, 1m.bin   deterministic content
//! etc/hostname, etc/passwd, etc/group, etc/hosts
//! etc/cvbench-image.json           manifest: recipe, digest, every file and its size (written last)
//! proc sys dev tmp run mnt/scratch mnt/root var/lib/cvbench root   empty mount points / data dirs
//! ```
//!
//! # Cache
//!
//! Everything is built under a cache root ([`DEFAULT_CACHE_ROOT`] in production, a temp dir in
//! tests), in a temporary sibling first and then renamed into place, so a reader only ever sees a
//! complete result and two concurrent builders cannot corrupt each other (the loser discards its
//! copy):
//!
//! ```text
//! <cache_root>/images/<digest>/               rootfs directories (digest: recipe + binary + www)
//! <cache_root>/disks/<key>.ext4               read-only ext4 images of a rootfs plus extra files
//! <cache_root>/disks/scratch-<N>mib-v1.ext4   empty, pre-formatted, sparse scratch templates
//! ```

mod disk;
mod exec;
mod image;
mod locate;
mod publish;
pub mod services;
mod usage;

use std::path::PathBuf;

pub use disk::{ext4_disk_image, new_scratch_disk, scratch_disk_template, DiskImage, VM_MOUNT_POINTS};
pub use exec::exec_problem;
pub use image::{
    build_default_image, default_image, image_from_dir, Image, IMAGE_MANIFEST_PATH, RECIPE_VERSION, WWW_FILES,
};
pub use locate::{locate_binary, GUEST_INIT_BIN, WORKLOAD_BIN};
pub use usage::{allocated_bytes, disk_usage, DiskUsage};

/// Where `bench` keeps images and disks unless told otherwise.
pub const DEFAULT_CACHE_ROOT: &str = "/var/cache/cvbench";

/// The command that builds every binary `locate_binary` can find.
pub const BUILD_HINT: &str = "cargo build --release --workspace --bins";

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{name} not found (looked in {searched}); build it with `{BUILD_HINT}`")]
    BinaryNotFound { name: String, searched: String },
    #[error("${var} points to {path}, which is unusable: {reason}")]
    BadOverride {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{path} is not an executable file: {reason}")]
    NotExecutable { path: PathBuf, reason: String },
    #[error("{path} is not a statically linked ELF executable: {reason}; build it with `{BUILD_HINT}`")]
    NotStaticElf { path: PathBuf, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cached image {dir} is incomplete or corrupt: {reason}")]
    CorruptImage { dir: PathBuf, reason: String },
    #[error("mkfs.ext4 not found in PATH; install e2fsprogs (apt-get install e2fsprogs)")]
    MkfsMissing,
    #[error("mkfs.ext4 failed to build {path} ({status}): {stderr}")]
    MkfsFailed {
        path: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("extra file destination {dest:?} is invalid: {reason}")]
    InvalidExtraDest { dest: String, reason: &'static str },
    #[error("scratch disk size {size_mib} MiB is outside {min}..={max} MiB")]
    InvalidScratchSize { size_mib: u32, min: u32, max: u32 },
}

impl RootfsError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> RootfsError {
        let path = path.into();
        move |source| RootfsError::Io { op, path, source }
    }
}
