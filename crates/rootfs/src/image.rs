//! The default image: a recipe (every directory and file, with modes and bytes, in one list) that is
//! hashed into the image's digest and materialised under `<cache_root>/images/<digest>/`. Building
//! from the same list that is hashed is what makes the digest trustworthy.

use std::collections::BTreeMap;
use std::fs::{File, FileTimes, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use workload::spec::{DATA_DIR_IN_IMAGE, WORKLOAD_PATH_IN_IMAGE, WWW_DIR_IN_IMAGE};

use crate::locate::{check_static_executable, elf_static_check, locate_binary, WORKLOAD_BIN};
use crate::publish::{cache_dir, discard, rename_into_place, temp_sibling, TempGuard};
use crate::usage::disk_usage;
use crate::RootfsError;

/// Bump when anything about the image's layout or content changes: it is part of the digest.
pub const RECIPE_VERSION: &str = "cvbench-rootfs-v1";
/// The manifest inside every image, relative to its root; written last, checked on reuse.
pub const IMAGE_MANIFEST_PATH: &str = "etc/cvbench-image.json";
/// The static files under `/srv/www` besides `index.html`: name and length in bytes.
pub const WWW_FILES: [(&str, usize); 6] = [
    ("1k.bin", 1024),
    ("4k.bin", 4 * 1024),
    ("16k.bin", 16 * 1024),
    ("64k.bin", 64 * 1024),
    ("256k.bin", 256 * 1024),
    ("1m.bin", 1024 * 1024),
];
/// Every file and directory gets this modification time, so the tree (and an ext4 image of it) does
/// not depend on when it was built. 2024-01-01T00:00:00Z.
pub(crate) const FIXED_MTIME_S: u64 = 1_704_067_200;

/// A built rootfs directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `<cache_root>/images/<digest>`: use it as a read-only overlay lower dir.
    pub dir: PathBuf,
    /// Hex SHA-256 of the recipe version, the workload binary and the www content.
    pub digest: String,
    /// Blocks on disk (`st_blocks * 512`), hard links once.
    pub allocated_bytes: u64,
    /// Sum of file lengths.
    pub apparent_bytes: u64,
    /// Regular files in the tree.
    pub files: usize,
}

/// Build (or reuse) the default image with the workload binary found by [`locate_binary`].
pub fn default_image(cache_root: &Path) -> Result<Image, RootfsError> {
    let bin = locate_binary(WORKLOAD_BIN)?;
    build_default_image(cache_root, &bin)
}

/// Build the default image from `workload_bin` under `cache_root`, or reuse it if a complete copy
/// with the same digest is already there.
pub fn build_default_image(cache_root: &Path, workload_bin: &Path) -> Result<Image, RootfsError> {
    check_static_executable(workload_bin)?;
    // Read once: what is hashed is exactly what is written, even if the file is rebuilt meanwhile.
    let binary = std::fs::read(workload_bin).map_err(RootfsError::io("reading", workload_bin))?;
    elf_static_check(&binary).map_err(|reason| RootfsError::NotStaticElf {
        path: workload_bin.to_path_buf(),
        reason,
    })?;
    let recipe = default_recipe(binary);
    let digest = recipe_digest(&recipe);

    let dir = cache_dir(cache_root, "images")?.join(&digest);
    if dir.exists() {
        match verify(&dir, &digest) {
            Ok(()) => return measure(dir, digest),
            Err(_) => discard(&dir)?,
        }
    }
    let tmp = TempGuard::new(temp_sibling(&dir, "tmp"));
    materialize(&recipe, tmp.path())?;
    write_manifest(tmp.path(), &recipe, &digest)?;
    set_fixed_times(&recipe, tmp.path())?;
    if !rename_into_place(tmp.path(), &dir)? {
        // A concurrent build finished first; ours is dropped with the guard.
        drop(tmp);
        verify(&dir, &digest)?;
    } else {
        tmp.keep();
    }
    measure(dir, digest)
}

/// Describe an existing rootfs directory as an [`Image`]. A cvbench-built image is recognised by its
/// manifest (and verified); any other tree gets a digest hashed from its contents (every path, file
/// type, mode, symlink target and file byte, in name order), so disks cached from it are keyed by
/// what is in it rather than by its name.
pub fn image_from_dir(dir: &Path) -> Result<Image, RootfsError> {
    let manifest_path = dir.join(IMAGE_MANIFEST_PATH);
    let digest = if manifest_path.is_file() {
        let json = std::fs::read(&manifest_path).map_err(RootfsError::io("reading", &manifest_path))?;
        let manifest = parse_manifest(dir, &manifest_path, &json)?;
        check_manifest(dir, &manifest, &manifest.digest)?;
        manifest.digest
    } else {
        let mut h = Sha256::new();
        h.update(b"cvbench-tree-v1\0");
        hash_tree(dir, Path::new(""), &mut h)?;
        hex::encode(h.finalize())
    };
    measure(dir.to_path_buf(), digest)
}

fn hash_tree(root: &Path, rel: &Path, h: &mut Sha256) -> Result<(), RootfsError> {
    use std::os::unix::fs::MetadataExt;
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path).map_err(RootfsError::io("reading", &path))?;
    h.update(rel.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(meta.mode().to_le_bytes());
    let ft = meta.file_type();
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(&path)
            .map_err(RootfsError::io("listing", &path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(RootfsError::io("listing", &path))?;
        names.sort();
        for name in names {
            hash_tree(root, &rel.join(name), h)?;
        }
    } else if ft.is_symlink() {
        let target = std::fs::read_link(&path).map_err(RootfsError::io("reading", &path))?;
        h.update(target.as_os_str().as_encoded_bytes());
    } else if ft.is_file() {
        h.update(meta.len().to_le_bytes());
        let mut f = File::open(&path).map_err(RootfsError::io("opening", &path))?;
        std::io::copy(&mut f, h).map_err(RootfsError::io("reading", &path))?;
    }
    Ok(())
}

fn measure(dir: PathBuf, digest: String) -> Result<Image, RootfsError> {
    let usage = disk_usage(&dir).map_err(RootfsError::io("measuring", &dir))?;
    Ok(Image {
        dir,
        digest,
        allocated_bytes: usage.allocated_bytes,
        apparent_bytes: usage.apparent_bytes,
        files: usage.files,
    })
}

/// One entry of a recipe, its path relative to the image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir { path: String, mode: u32 },
    File { path: String, mode: u32, bytes: Vec<u8> },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } => path,
        }
    }
}

fn rel(in_image: &str) -> String {
    in_image.trim_start_matches('/').to_string()
}

/// The default image's recipe. Parent directories come before their children.
pub(crate) fn default_recipe(workload_binary: Vec<u8>) -> Vec<Entry> {
    let dir = |path: &str, mode: u32| Entry::Dir {
        path: path.to_string(),
        mode,
    };
    let text = |path: &str, s: &str| Entry::File {
        path: path.to_string(),
        mode: 0o644,
        bytes: s.as_bytes().to_vec(),
    };
    let www = rel(WWW_DIR_IN_IMAGE);
    let mut entries = vec![
        dir("bin", 0o755),
        dir("dev", 0o755),
        dir("etc", 0o755),
        dir("mnt", 0o755),
        dir("mnt/root", 0o755),
        dir("mnt/scratch", 0o755),
        dir("proc", 0o555),
        dir("root", 0o700),
        dir("run", 0o755),
        dir("srv", 0o755),
        dir(&www, 0o755),
        dir("sys", 0o555),
        dir("tmp", 0o1777),
        dir("var", 0o755),
        dir("var/lib", 0o755),
        dir(&rel(DATA_DIR_IN_IMAGE), 0o755),
        Entry::File {
            path: rel(WORKLOAD_PATH_IN_IMAGE),
            mode: 0o755,
            bytes: workload_binary,
        },
        text("etc/hostname", "cvbench\n"),
        text("etc/hosts", "127.0.0.1\tlocalhost cvbench\n::1\tlocalhost\n"),
        text("etc/passwd", "root:x:0:0:root:/root:/bin/cvbench-workload\n"),
        text("etc/group", "root:x:0:\n"),
        text(&format!("{www}/index.html"), &index_html()),
    ];
    for (name, len) in WWW_FILES {
        entries.push(Entry::File {
            path: format!("{www}/{name}"),
            mode: 0o644,
            bytes: www_bytes(name, len),
        });
    }
    entries
}

fn index_html() -> String {
    let mut s = String::from("<!doctype html>\n<html><head><title>cvbench</title></head><body>\n<ul>\n");
    for (name, len) in WWW_FILES {
        s.push_str(&format!(
            "<li><a href=\"/{name}\">{name}</a> ({len} bytes)</li>\n"
        ));
    }
    s.push_str("</ul>\n</body></html>\n");
    s
}

/// Deterministic, incompressible bytes: xorshift64* seeded from the file name.
pub(crate) fn www_bytes(name: &str, len: usize) -> Vec<u8> {
    // FNV-1a of the name as the seed.
    let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    state |= 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// SHA-256 over the recipe version and every entry (kind, path, mode, length, bytes).
pub(crate) fn recipe_digest(recipe: &[Entry]) -> String {
    let mut h = Sha256::new();
    h.update(RECIPE_VERSION.as_bytes());
    h.update([0]);
    for e in recipe {
        match e {
            Entry::Dir { path, mode } => {
                h.update(b"D");
                h.update(path.as_bytes());
                h.update([0]);
                h.update(mode.to_le_bytes());
            }
            Entry::File { path, mode, bytes } => {
                h.update(b"F");
                h.update(path.as_bytes());
                h.update([0]);
                h.update(mode.to_le_bytes());
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
        }
    }
    hex::encode(h.finalize())
}

fn materialize(recipe: &[Entry], root: &Path) -> Result<(), RootfsError> {
    std::fs::create_dir(root).map_err(RootfsError::io("creating", root))?;
    std::fs::set_permissions(root, Permissions::from_mode(0o755)).map_err(RootfsError::io("chmod", root))?;
    for e in recipe {
        let path = root.join(e.path());
        match e {
            Entry::Dir { mode, .. } => {
                std::fs::create_dir(&path).map_err(RootfsError::io("creating", &path))?;
                // Explicitly, so the umask cannot change the image.
                std::fs::set_permissions(&path, Permissions::from_mode(*mode))
                    .map_err(RootfsError::io("chmod", &path))?;
            }
            Entry::File { mode, bytes, .. } => {
                let mut f = File::create_new(&path).map_err(RootfsError::io("creating", &path))?;
                f.write_all(bytes).map_err(RootfsError::io("writing", &path))?;
                f.set_permissions(Permissions::from_mode(*mode))
                    .map_err(RootfsError::io("chmod", &path))?;
            }
        }
    }
    Ok(())
}

/// Files and directories get [`FIXED_MTIME_S`], deepest first so a parent's time is set last.
fn set_fixed_times(recipe: &[Entry], root: &Path) -> Result<(), RootfsError> {
    let when = UNIX_EPOCH + Duration::from_secs(FIXED_MTIME_S);
    let times = FileTimes::new().set_modified(when).set_accessed(when);
    let mut paths: Vec<PathBuf> = recipe.iter().map(|e| PathBuf::from(e.path())).collect();
    paths.push(PathBuf::from(IMAGE_MANIFEST_PATH));
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    paths.push(PathBuf::new());
    for p in paths {
        let full = root.join(&p);
        File::open(&full)
            .and_then(|f| f.set_times(times))
            .map_err(RootfsError::io("setting times on", &full))?;
    }
    Ok(())
}

/// `etc/cvbench-image.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    recipe: String,
    digest: String,
    /// Path relative to the root → length in bytes.
    files: BTreeMap<String, u64>,
}

fn write_manifest(root: &Path, recipe: &[Entry], digest: &str) -> Result<(), RootfsError> {
    let files = recipe
        .iter()
        .filter_map(|e| match e {
            Entry::File { path, bytes, .. } => Some((path.clone(), bytes.len() as u64)),
            Entry::Dir { .. } => None,
        })
        .collect();
    let manifest = Manifest {
        recipe: RECIPE_VERSION.to_string(),
        digest: digest.to_string(),
        files,
    };
    let path = root.join(IMAGE_MANIFEST_PATH);
    let mut json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    json.push(b'\n');
    std::fs::write(&path, json).map_err(RootfsError::io("writing", &path))?;
    std::fs::set_permissions(&path, Permissions::from_mode(0o644)).map_err(RootfsError::io("chmod", &path))
}

fn corrupt(dir: &Path, reason: String) -> RootfsError {
    RootfsError::CorruptImage {
        dir: dir.to_path_buf(),
        reason,
    }
}

/// Writes `etc/cvbench-image.json` for an image built by another recipe (the services image).
pub(crate) fn write_manifest_files(
    root: &Path,
    recipe: &str,
    digest: &str,
    files: BTreeMap<String, u64>,
) -> Result<(), RootfsError> {
    let manifest = Manifest {
        recipe: recipe.to_string(),
        digest: digest.to_string(),
        files,
    };
    let path = root.join(IMAGE_MANIFEST_PATH);
    let mut json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    json.push(b'\n');
    std::fs::write(&path, json).map_err(RootfsError::io("writing", &path))?;
    std::fs::set_permissions(&path, Permissions::from_mode(0o644)).map_err(RootfsError::io("chmod", &path))
}

/// The manifest of the image in `dir`, from the bytes `json` read from `path`.
fn parse_manifest(dir: &Path, path: &Path, json: &[u8]) -> Result<Manifest, RootfsError> {
    serde_json::from_slice(json).map_err(|e| corrupt(dir, format!("parsing {}: {e}", path.display())))
}

/// A cached image is reused only if its manifest names the same digest and every file it lists is
/// there with the right length.
fn verify(dir: &Path, digest: &str) -> Result<(), RootfsError> {
    let path = dir.join(IMAGE_MANIFEST_PATH);
    let json = std::fs::read(&path).map_err(|e| corrupt(dir, format!("reading {}: {e}", path.display())))?;
    check_manifest(dir, &parse_manifest(dir, &path, &json)?, digest)
}

/// [`verify`] with the manifest already read: it names `digest` and this recipe version, and every
/// file it lists is there with the right length.
fn check_manifest(dir: &Path, manifest: &Manifest, digest: &str) -> Result<(), RootfsError> {
    let known = [RECIPE_VERSION, crate::services::SERVICES_RECIPE_VERSION];
    if manifest.digest != digest || !known.contains(&manifest.recipe.as_str()) {
        return Err(corrupt(
            dir,
            format!("manifest says {} {}", manifest.recipe, manifest.digest),
        ));
    }
    for (file, len) in &manifest.files {
        let p = dir.join(file);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() && m.len() == *len => {}
            Ok(m) => {
                return Err(corrupt(
                    dir,
                    format!("{file} has {} bytes, expected {len}", m.len()),
                ))
            }
            Err(e) => return Err(corrupt(dir, format!("{file}: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn www_content_is_deterministic_and_sized() {
        for (name, len) in WWW_FILES {
            let a = www_bytes(name, len);
            assert_eq!(a.len(), len);
            assert_eq!(a, www_bytes(name, len));
        }
        assert_ne!(www_bytes("1k.bin", 64), www_bytes("4k.bin", 64));
    }

    #[test]
    fn digest_covers_binary_and_layout() {
        let a = recipe_digest(&default_recipe(b"one".to_vec()));
        assert_eq!(a, recipe_digest(&default_recipe(b"one".to_vec())));
        assert_ne!(a, recipe_digest(&default_recipe(b"two".to_vec())));
        let mut r = default_recipe(b"one".to_vec());
        if let Some(Entry::Dir { mode, .. }) = r.iter_mut().find(|e| e.path() == "tmp") {
            *mode = 0o755;
        }
        assert_ne!(a, recipe_digest(&r));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn recipe_lists_parents_first() {
        let r = default_recipe(Vec::new());
        for (i, e) in r.iter().enumerate() {
            if let Some((parent, _)) = e.path().rsplit_once('/') {
                let pos = r.iter().position(|x| x.path() == parent);
                assert!(pos.is_some_and(|p| p < i), "{} before its parent", e.path());
            }
        }
    }
}
