//! Disk images for the microVM, made with `mkfs.ext4 -d` from e2fsprogs.
//!
//! * The shared image (`vda`): the same rootfs directory the container uses, plus extra files such
//!   as `/cvbench/init`, as a read-only ext4 file system. Options: 4 KiB blocks, no journal and no
//!   resize inode (it is never written or grown), no reserved blocks, and `assume_storage_prezeroed`
//!   (the backing file is a fresh sparse file, so mke2fs need not write zeros and the guest kernel
//!   starts no lazy inode-table zeroing). A fixed UUID, hash seed and `E2FSPROGS_FAKE_TIME` keep the
//!   bytes independent of when they were built. Size: the content's 4 KiB-rounded bytes × 1.3 plus
//!   8 MiB for metadata, rounded up to 1 MiB.
//! * The scratch template (`vdb`): an empty ext4 of a given size, pre-formatted once so a VM never
//!   waits for mkfs. It keeps the default journal: the guest's overlay upper dir lives on it, and the
//!   container's upper dir lives on the host's journaled ext4, so durable writes cost the same kind
//!   of work on both sides. `assume_storage_prezeroed` keeps the file sparse (well under 1 MiB
//!   allocated for 1 GiB) and `new_scratch_disk` copies only its data extents.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use sha2::{Digest, Sha256};

use crate::image::{Image, FIXED_MTIME_S};
use crate::publish::{cache_dir, rename_into_place, temp_sibling, TempGuard};
#[cfg(test)]
use crate::usage::allocated_bytes;
use crate::RootfsError;

/// Bump when the disk layout or options change: it is part of every disk's cache key.
pub const DISK_RECIPE_VERSION: &str = "cvbench-ext4-v2";
/// Directories guest init mounts on while the root is still the read-only image (`/proc`, `/sys`,
/// `/dev`), and `/tmp` for the workload. A read-only disk cannot grow them at boot, and a container
/// runtime creates them itself, so a minimal image that runs in a container must get them here.
pub const VM_MOUNT_POINTS: &[&str] = &["proc", "sys", "dev", "tmp"];
/// Smallest and largest scratch disks accepted.
pub const SCRATCH_MIN_MIB: u32 = 16;
pub const SCRATCH_MAX_MIB: u32 = 1 << 20;

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 4096;

/// An ext4 disk image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskImage {
    pub path: PathBuf,
    /// Blocks the file really occupies on the host.
    pub allocated_bytes: u64,
    /// The file's length: the disk size the guest sees.
    pub size_bytes: u64,
}

/// What tells the two kinds of disk apart in their `mkfs.ext4` options.
struct DiskKind {
    label: &'static str,
    /// `-O` feature changes from mke2fs's defaults, if any.
    features: Option<&'static str>,
}

/// The shared read-only image: no journal, no resize inode.
const IMAGE_DISK: DiskKind = DiskKind {
    label: "cvbench-image",
    features: Some("^has_journal,^resize_inode"),
};
/// The scratch template: mke2fs's default features (journal included).
const SCRATCH_DISK: DiskKind = DiskKind {
    label: "cvbench-scratch",
    features: None,
};

/// The `mkfs.ext4` options for a disk of `kind` with file system UUID (and hash seed) `uuid`.
fn mkfs_options(kind: &DiskKind, uuid: &str) -> Vec<String> {
    let mut v: Vec<String> = ["-q", "-F", "-L", kind.label, "-b", "4096", "-m", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(features) = kind.features {
        v.extend(["-O".to_string(), features.to_string()]);
    }
    v.extend([
        "-U".to_string(),
        uuid.to_string(),
        "-E".to_string(),
        format!("assume_storage_prezeroed=1,nodiscard,root_owner=0:0,hash_seed={uuid}"),
    ]);
    v
}

/// A UUID string made from the first 16 bytes of a hex digest.
fn uuid_from_hex(hex: &str) -> String {
    let h: String = hex.chars().chain(std::iter::repeat('0')).take(32).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `mkfs.ext4` from PATH, or from the sbin directories that a non-root PATH may lack.
fn find_mkfs() -> Result<PathBuf, RootfsError> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("mkfs.ext4"))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .ok_or(RootfsError::MkfsMissing)
}

fn run_mkfs(
    mkfs: &Path,
    options: &[String],
    source_dir: Option<&Path>,
    target: &Path,
) -> Result<(), RootfsError> {
    let mut cmd = Command::new(mkfs);
    cmd.args(options);
    if let Some(dir) = source_dir {
        cmd.arg("-d").arg(dir);
    }
    cmd.arg(target)
        .env("E2FSPROGS_FAKE_TIME", FIXED_MTIME_S.to_string());
    let out = cmd
        .output()
        .map_err(RootfsError::io("running mkfs.ext4 for", target))?;
    if !out.status.success() {
        return Err(RootfsError::MkfsFailed {
            path: target.to_path_buf(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().replace('\n', "; "),
        });
    }
    Ok(())
}

/// Formats a new sparse file of `size_bytes` (with `source_dir`'s tree, if given) under a temporary
/// name beside `path` and renames it to `path`; if another builder got there first, theirs stays.
fn mkfs_into_place(
    mkfs: &Path,
    options: &[String],
    source_dir: Option<&Path>,
    size_bytes: u64,
    path: &Path,
) -> Result<(), RootfsError> {
    let tmp = TempGuard::new(temp_sibling(path, "tmp"));
    let file = File::create_new(tmp.path()).map_err(RootfsError::io("creating", tmp.path()))?;
    file.set_len(size_bytes)
        .map_err(RootfsError::io("sizing", tmp.path()))?;
    drop(file);
    run_mkfs(mkfs, options, source_dir, tmp.path())?;
    if rename_into_place(tmp.path(), path)? {
        tmp.keep();
    }
    Ok(())
}

fn describe(path: PathBuf) -> Result<DiskImage, RootfsError> {
    let meta = std::fs::metadata(&path).map_err(RootfsError::io("reading", &path))?;
    Ok(DiskImage {
        allocated_bytes: meta.blocks() * 512,
        size_bytes: meta.len(),
        path,
    })
}

/// A checked extra file: where it goes (relative to the image root) and what it holds.
struct Extra {
    dest_rel: PathBuf,
    mode: u32,
    bytes: Vec<u8>,
}

fn read_extra(src: &Path, dest: &str) -> Result<Extra, RootfsError> {
    let invalid = |reason| RootfsError::InvalidExtraDest {
        dest: dest.to_string(),
        reason,
    };
    let dest_path = Path::new(dest);
    if !dest_path.is_absolute() {
        return Err(invalid("must be an absolute path in the image"));
    }
    let mut dest_rel = PathBuf::new();
    for c in dest_path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => dest_rel.push(n),
            Component::ParentDir | Component::Prefix(_) => return Err(invalid("must not contain `..`")),
        }
    }
    if dest_rel.as_os_str().is_empty() {
        return Err(invalid("names no file"));
    }
    let meta = std::fs::metadata(src).map_err(RootfsError::io("reading", src))?;
    if !meta.is_file() {
        return Err(RootfsError::Io {
            op: "reading",
            path: src.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        });
    }
    let bytes = std::fs::read(src).map_err(RootfsError::io("reading", src))?;
    Ok(Extra {
        dest_rel,
        mode: meta.permissions().mode() & 0o7777,
        bytes,
    })
}

/// Build (or reuse) the ext4 image of `image` plus `extra_files` (host source, absolute destination
/// in the image, e.g. `"/cvbench/init"`). Cached under `<cache_root>/disks/<key>.ext4`, where the
/// key hashes the disk recipe, the image digest and the extra files' destinations, modes and bytes.
pub fn ext4_disk_image(
    image: &Image,
    extra_files: &[(PathBuf, String)],
    cache_root: &Path,
) -> Result<DiskImage, RootfsError> {
    let mkfs = find_mkfs()?;
    let mut extras = extra_files
        .iter()
        .map(|(src, dest)| read_extra(src, dest))
        .collect::<Result<Vec<_>, _>>()?;
    extras.sort_by(|a, b| a.dest_rel.cmp(&b.dest_rel));

    let mut h = Sha256::new();
    h.update(DISK_RECIPE_VERSION.as_bytes());
    h.update([0]);
    h.update(mkfs_options(&IMAGE_DISK, "").join(" ").as_bytes());
    h.update([0]);
    h.update(image.digest.as_bytes());
    for e in &extras {
        h.update(e.dest_rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(e.mode.to_le_bytes());
        h.update((e.bytes.len() as u64).to_le_bytes());
        h.update(&e.bytes);
    }
    let key = hex::encode(h.finalize());

    let path = cache_dir(cache_root, "disks")?.join(format!("{key}.ext4"));
    if path.is_file() {
        return describe(path);
    }

    let staging = TempGuard::new(temp_sibling(&path, "staging"));
    copy_tree(&image.dir, staging.path())?;
    for e in &extras {
        place_extra(staging.path(), e)?;
    }
    for dir in VM_MOUNT_POINTS {
        let target = staging.path().join(dir);
        // An existing entry (a directory, or a symlink the image chose) is the image's own.
        if std::fs::symlink_metadata(&target).is_err() {
            create_dirs_0755(staging.path(), &target)?;
        }
    }
    let content = content_bytes(staging.path()).map_err(RootfsError::io("measuring", staging.path()))?;
    let size = (content * 13 / 10 + 8 * MIB).div_ceil(MIB) * MIB;

    let options = mkfs_options(&IMAGE_DISK, &uuid_from_hex(&key));
    mkfs_into_place(&mkfs, &options, Some(staging.path()), size, &path)?;
    drop(staging);
    describe(path)
}

/// Copy `src` (a rootfs directory) to `dest`, hard-linking regular files where the file system
/// allows (mkfs only reads them) and copying otherwise.
fn copy_tree(src: &Path, dest: &Path) -> Result<(), RootfsError> {
    let meta = std::fs::symlink_metadata(src).map_err(RootfsError::io("reading", src))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        std::fs::create_dir(dest).map_err(RootfsError::io("creating", dest))?;
        // Owners matter (the services image's /var/lib/mysql is the mysql user's); before the
        // chmod, which a chown could otherwise clear bits of.
        keep_owner(&meta, dest)?;
        std::fs::set_permissions(dest, Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(RootfsError::io("chmod", dest))?;
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .map_err(RootfsError::io("listing", src))?
            .collect::<Result<_, _>>()
            .map_err(RootfsError::io("listing", src))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            copy_tree(&entry.path(), &dest.join(entry.file_name()))?;
        }
        let times =
            std::fs::FileTimes::new().set_modified(meta.modified().map_err(RootfsError::io("reading", src))?);
        File::open(dest)
            .and_then(|f| f.set_times(times))
            .map_err(RootfsError::io("setting times on", dest))?;
    } else if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(RootfsError::io("reading", src))?;
        std::os::unix::fs::symlink(target, dest).map_err(RootfsError::io("creating", dest))?;
        keep_owner(&meta, dest)?;
    } else if std::fs::hard_link(src, dest).is_err() {
        std::fs::copy(src, dest).map_err(RootfsError::io("copying to", dest))?;
        keep_owner(&meta, dest)?;
    }
    Ok(())
}

/// Gives `dest` (not following a symlink) the owner in `meta` when it is not already ours.
fn keep_owner(meta: &std::fs::Metadata, dest: &Path) -> Result<(), RootfsError> {
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    if meta.uid() == uid && meta.gid() == gid {
        return Ok(());
    }
    std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))
        .map_err(RootfsError::io("chown", dest))
}

fn place_extra(root: &Path, extra: &Extra) -> Result<(), RootfsError> {
    let dest = root.join(&extra.dest_rel);
    if let Some(parent) = dest.parent() {
        create_dirs_0755(root, parent)?;
    }
    // Never write through a hard link into the cached rootfs: replace the entry instead.
    match std::fs::symlink_metadata(&dest) {
        Ok(m) if m.is_dir() => {
            return Err(RootfsError::InvalidExtraDest {
                dest: format!("/{}", extra.dest_rel.display()),
                reason: "is a directory in the image",
            })
        }
        Ok(_) => std::fs::remove_file(&dest).map_err(RootfsError::io("replacing", &dest))?,
        Err(_) => {}
    }
    std::fs::write(&dest, &extra.bytes).map_err(RootfsError::io("writing", &dest))?;
    std::fs::set_permissions(&dest, Permissions::from_mode(extra.mode))
        .map_err(RootfsError::io("chmod", &dest))
}

/// Create the missing directories from `root` down to `dir` with mode 0755 (not umask-dependent).
fn create_dirs_0755(root: &Path, dir: &Path) -> Result<(), RootfsError> {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        if !cur.is_dir() {
            std::fs::create_dir(&cur).map_err(RootfsError::io("creating", &cur))?;
            std::fs::set_permissions(&cur, Permissions::from_mode(0o755))
                .map_err(RootfsError::io("chmod", &cur))?;
        }
    }
    Ok(())
}

/// Bytes the tree needs as ext4 data: every file rounded up to a block (so never less than the
/// files' apparent size, hard links counted per name), one block per directory.
fn content_bytes(root: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        total += BLOCK;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let m = entry.metadata()?;
            if m.is_dir() {
                stack.push(entry.path());
            } else {
                total += m.len().div_ceil(BLOCK) * BLOCK;
            }
        }
    }
    Ok(total)
}

/// The cached empty, pre-formatted, sparse ext4 scratch disk of `size_mib` MiB.
pub fn scratch_disk_template(size_mib: u32, cache_root: &Path) -> Result<PathBuf, RootfsError> {
    if !(SCRATCH_MIN_MIB..=SCRATCH_MAX_MIB).contains(&size_mib) {
        return Err(RootfsError::InvalidScratchSize {
            size_mib,
            min: SCRATCH_MIN_MIB,
            max: SCRATCH_MAX_MIB,
        });
    }
    let disks = cache_dir(cache_root, "disks")?;
    let version = DISK_RECIPE_VERSION.trim_start_matches("cvbench-ext4-");
    let path = disks.join(format!("scratch-{size_mib}mib-{version}.ext4"));
    if path.is_file() {
        return Ok(path);
    }
    let mkfs = find_mkfs()?;
    let uuid = uuid_from_hex(&hex::encode(Sha256::digest(format!(
        "scratch {size_mib} {version}"
    ))));
    let options = mkfs_options(&SCRATCH_DISK, &uuid);
    mkfs_into_place(&mkfs, &options, None, u64::from(size_mib) * MIB, &path)?;
    Ok(path)
}

/// Copy a scratch template to `dest` (created or truncated), copying only the template's data
/// extents so the copy stays as sparse as the template. This is on the VM start path.
pub fn new_scratch_disk(template: &Path, dest: &Path) -> Result<(), RootfsError> {
    let src = File::open(template).map_err(RootfsError::io("opening", template))?;
    let len = src
        .metadata()
        .map_err(RootfsError::io("reading", template))?
        .len();
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dest)
        .map_err(RootfsError::io("creating", dest))?;
    out.set_len(len).map_err(RootfsError::io("sizing", dest))?;
    copy_data_extents(&src, &out, len).map_err(RootfsError::io("copying a scratch disk to", dest))
}

/// A file offset as `off_t`; one beyond its range is invalid input.
fn to_off(v: u64) -> io::Result<i64> {
    i64::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Walk the data extents with SEEK_DATA/SEEK_HOLE and copy each; without SEEK_DATA support, copy
/// block by block and skip all-zero blocks.
fn copy_data_extents(src: &File, out: &File, len: u64) -> io::Result<()> {
    let mut pos = 0u64;
    while pos < len {
        let data = match lseek(src, to_off(pos)?, Whence::SeekData) {
            Ok(d) => d.unsigned_abs(),
            Err(Errno::ENXIO) => return Ok(()), // only a hole remains
            Err(Errno::EINVAL | Errno::EOPNOTSUPP) => return copy_skipping_zeros(src, out, pos, len),
            Err(e) => return Err(e.into()),
        };
        let hole = match lseek(src, to_off(data)?, Whence::SeekHole) {
            Ok(h) => h.unsigned_abs().min(len),
            Err(e) => return Err(e.into()),
        };
        copy_range(src, out, data, hole)?;
        pos = hole;
    }
    Ok(())
}

/// Copy `[start, end)` with copy_file_range, falling back to pread/pwrite.
fn copy_range(src: &File, out: &File, start: u64, end: u64) -> io::Result<()> {
    let mut off_in = to_off(start)?;
    let mut off_out = off_in;
    let end_off = to_off(end)?;
    while off_in < end_off {
        let want = usize::try_from(end_off - off_in)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match nix::fcntl::copy_file_range(src, Some(&mut off_in), out, Some(&mut off_out), want) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(Errno::EXDEV | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EINVAL) => {
                return copy_skipping_zeros(src, out, off_in.unsigned_abs(), end);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_skipping_zeros(src: &File, out: &File, start: u64, end: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = start;
    while pos < end {
        let want = usize::try_from(end - pos).unwrap_or(usize::MAX).min(buf.len());
        let n = src.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        for (i, block) in buf[..n].chunks(4096).enumerate() {
            if block.iter().any(|&b| b != 0) {
                out.write_all_at(block, pos + (i as u64) * 4096)?;
            }
        }
        pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options are hashed into every image disk's cache key: any change to them (content or
    /// order) must come with a new [`DISK_RECIPE_VERSION`].
    #[test]
    fn mkfs_options_are_exactly_the_recipe() {
        let e = "assume_storage_prezeroed=1,nodiscard,root_owner=0:0,hash_seed=";
        assert_eq!(
            mkfs_options(&IMAGE_DISK, "U"),
            [
                "-q",
                "-F",
                "-L",
                "cvbench-image",
                "-b",
                "4096",
                "-m",
                "0",
                "-O",
                "^has_journal,^resize_inode",
                "-U",
                "U",
                "-E",
                &format!("{e}U"),
            ]
        );
        assert_eq!(
            mkfs_options(&SCRATCH_DISK, "U"),
            [
                "-q",
                "-F",
                "-L",
                "cvbench-scratch",
                "-b",
                "4096",
                "-m",
                "0",
                "-U",
                "U",
                "-E",
                &format!("{e}U"),
            ]
        );
        // What the cache key hashes.
        assert_eq!(
            mkfs_options(&IMAGE_DISK, "").join(" "),
            format!("-q -F -L cvbench-image -b 4096 -m 0 -O ^has_journal,^resize_inode -U  -E {e}")
        );
    }

    #[test]
    fn uuid_shape() {
        let u = uuid_from_hex(&"ab".repeat(32));
        assert_eq!(u, "abababab-abab-abab-abab-abababababab");
        assert_eq!(uuid_from_hex("1").len(), 36);
    }

    #[test]
    fn extra_destinations_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("init");
        std::fs::write(&src, b"x").unwrap();
        for bad in ["cvbench/init", "/../init", "/", "/a/../../b"] {
            assert!(
                matches!(read_extra(&src, bad), Err(RootfsError::InvalidExtraDest { .. })),
                "{bad}"
            );
        }
        let ok = read_extra(&src, "/cvbench/./init").unwrap();
        assert_eq!(ok.dest_rel, PathBuf::from("cvbench/init"));
        assert!(matches!(
            read_extra(&tmp.path().join("missing"), "/x"),
            Err(RootfsError::Io { .. })
        ));
    }

    #[test]
    fn sparse_copy_keeps_holes_and_data() {
        let tmp = tempfile::tempdir().unwrap();
        let src_path = tmp.path().join("src");
        let src = File::create(&src_path).unwrap();
        src.set_len(64 * MIB).unwrap();
        src.write_all_at(b"head", 0).unwrap();
        src.write_all_at(&[9u8; 8192], 40 * MIB).unwrap();
        src.sync_all().unwrap();
        let dest = tmp.path().join("dest");
        new_scratch_disk(&src_path, &dest).unwrap();
        let a = std::fs::read(&src_path).unwrap();
        let b = std::fs::read(&dest).unwrap();
        assert!(a == b, "copy differs from source");
        let alloc = allocated_bytes(&dest).unwrap();
        assert!(alloc < MIB, "copy allocated {alloc} bytes");
        // Zero-skipping fallback gives the same bytes.
        let dest2 = tmp.path().join("dest2");
        let out = File::create(&dest2).unwrap();
        out.set_len(64 * MIB).unwrap();
        copy_skipping_zeros(&File::open(&src_path).unwrap(), &out, 0, 64 * MIB).unwrap();
        assert!(std::fs::read(&dest2).unwrap() == a);
        assert!(allocated_bytes(&dest2).unwrap() < MIB);
    }
}
