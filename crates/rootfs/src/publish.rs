//! Publishing a cache entry atomically: build under a unique temporary name beside the final one,
//! then `rename(2)` it into place. A half-built entry is never visible under its final name, and a
//! concurrent builder that loses the race just discards its copy.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::RootfsError;

/// A unique sibling name for work in progress: `.tmp-<stem>-<pid>-<nanos>-<n>`.
pub fn temp_sibling(final_path: &Path, tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = final_path.file_name().and_then(|s| s.to_str()).unwrap_or("entry");
    let stem: String = stem.chars().take(24).collect();
    final_path.with_file_name(format!(".{tag}-{stem}-{}-{nanos}-{n}", std::process::id()))
}

/// Removes a temporary file or directory when dropped, unless [`TempGuard::keep`] was called.
pub struct TempGuard {
    path: Option<PathBuf>,
}

impl TempGuard {
    pub fn new(path: PathBuf) -> Self {
        TempGuard { path: Some(path) }
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// The entry was renamed away: nothing to remove.
    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Best effort: a leftover `.tmp-*` entry wastes space but is never mistaken for a result.
            let _ = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(_) => Ok(()),
            };
        }
    }
}

/// Whether a rename failed because the destination already exists (another builder won).
pub fn lost_race(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(nix::libc::EEXIST | nix::libc::ENOTEMPTY))
}

/// Rename `tmp` onto `dest`. `Ok(true)` if ours is now in place, `Ok(false)` if `dest` already
/// existed (then `tmp` is left for its guard to remove).
pub fn rename_into_place(tmp: &Path, dest: &Path) -> Result<bool, RootfsError> {
    match std::fs::rename(tmp, dest) {
        Ok(()) => Ok(true),
        Err(e) if lost_race(&e) => Ok(false),
        Err(e) => Err(RootfsError::Io {
            op: "renaming into place",
            path: dest.to_path_buf(),
            source: e,
        }),
    }
}

/// Move a broken entry out of the way (atomically) and delete it.
pub fn discard(entry: &Path) -> Result<(), RootfsError> {
    let aside = temp_sibling(entry, "discard");
    match std::fs::rename(entry, &aside) {
        Ok(()) => {
            drop(TempGuard::new(aside));
            Ok(())
        }
        // Someone else discarded it first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RootfsError::Io {
            op: "discarding corrupt cache entry",
            path: entry.to_path_buf(),
            source: e,
        }),
    }
}

/// `<cache_root>/<name>` (e.g. `images`, `disks`), created if missing, with the work in progress of
/// crashed builders pruned (see [`prune_stale`]).
pub fn cache_dir(cache_root: &Path, name: &str) -> Result<PathBuf, RootfsError> {
    let dir = cache_root.join(name);
    std::fs::create_dir_all(&dir).map_err(RootfsError::io("creating", &dir))?;
    prune_stale(&dir);
    Ok(dir)
}

/// Work in progress older than this was left by a builder that died: no build takes this long.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Best effort: remove `.tmp-*`, `.staging-*` and `.discard-*` entries in `dir` that were left by
/// a crashed builder (older than [`STALE_AFTER`]). Younger ones may belong to a live build.
pub fn prune_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !([".tmp-", ".staging-", ".discard-"]
            .iter()
            .any(|p| name.starts_with(p)))
        {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if old {
            drop(TempGuard::new(entry.path()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_work_in_progress_is_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let old_dir = tmp.path().join(".tmp-abc-1-2-3");
        std::fs::create_dir(&old_dir).unwrap();
        std::fs::write(old_dir.join("f"), b"x").unwrap();
        let old_file = tmp.path().join(".staging-x");
        std::fs::write(&old_file, b"x").unwrap();
        let young = tmp.path().join(".tmp-live");
        std::fs::create_dir(&young).unwrap();
        let keep = tmp.path().join("0123abcd");
        std::fs::create_dir(&keep).unwrap();
        let long_ago = SystemTime::now() - STALE_AFTER * 2;
        for p in [&old_dir, &old_file, &keep] {
            std::fs::File::open(p).unwrap().set_modified(long_ago).unwrap();
        }
        prune_stale(tmp.path());
        assert!(!old_dir.exists() && !old_file.exists());
        assert!(young.exists() && keep.exists());
    }

    #[test]
    fn temp_siblings_are_unique_and_hidden() {
        let a = temp_sibling(Path::new("/c/images/abc"), "tmp");
        let b = temp_sibling(Path::new("/c/images/abc"), "tmp");
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/c/images")));
        assert!(a.file_name().unwrap().to_string_lossy().starts_with(".tmp-abc-"));
    }
}
