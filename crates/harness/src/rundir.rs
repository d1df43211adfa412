//! The run directory `/run/cvbench`: per-instance state that must survive a crashed harness so that
//! `bench cleanup` finds it. An instance's directory is removed at teardown, and so are the backend
//! directories above it once they are empty, so a finished run leaves `/run/cvbench` empty.
//!
//! Several harnesses (or parallel tests) may create and prune at once: pruning only ever removes
//! *empty* directories (`rmdir`), and creating retries when a parent vanished under it.
//!
//! A live harness holds a shared `flock` on the run root's [`lock_path`] (`/run/cvbench.lock`, a
//! sibling of the run root, so the root itself can still be pruned) from its first instance until it
//! exits; `bench cleanup` takes
//! the lock exclusively to know that no harness runs before it removes anything shared (backend
//! directories, the built-in runtime's parent cgroups), and otherwise removes only instances whose
//! harness is dead.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

/// Root of everything cvbench keeps at run time.
pub const RUN_ROOT: &str = "/run/cvbench";

/// How often creating retries when a concurrent prune removed a parent in between.
const CREATE_ATTEMPTS: u32 = 8;

/// `create_dir_all` that tolerates a concurrent [`prune`] of the parents it just created.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut attempt = 1;
    loop {
        match std::fs::create_dir_all(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < CREATE_ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

/// Removes `dir` and then each parent, as long as they are empty and inside [`RUN_ROOT`] (the root
/// itself included). Directories elsewhere (a test's temp root) are never touched. Best effort.
pub fn prune(dir: &Path) {
    prune_within(dir, Path::new(RUN_ROOT));
}

fn prune_within(dir: &Path, root: &Path) {
    let mut current = Some(dir);
    while let Some(d) = current {
        if !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            return;
        }
        current = d.parent();
    }
}

/// The lock file of the run root `root`: `/run/cvbench.lock` beside the real run root (which teardown
/// prunes when empty), and `<root>/.cvbench.lock` inside any other root (a test's temp dir, removed
/// with it).
pub fn lock_path(root: &Path) -> PathBuf {
    if root == Path::new(RUN_ROOT) {
        let mut name = root.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    } else {
        root.join(".cvbench.lock")
    }
}

/// Shared locks this process holds, by run root, until it exits.
static HELD: Mutex<BTreeMap<PathBuf, Flock<File>>> = Mutex::new(BTreeMap::new());

/// Marks this process as a live harness using `root` (a shared lock on [`lock_path`], taken once and
/// kept until the process exits). Waits while a cleanup holds the lock exclusively.
pub fn hold_shared(root: &Path) -> io::Result<()> {
    let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if held.contains_key(root) {
        return Ok(());
    }
    let lock = open_lock(root)?;
    let lock = Flock::lock(lock, FlockArg::LockShared).map_err(|(_, errno)| io::Error::from(errno))?;
    held.insert(root.to_path_buf(), lock);
    Ok(())
}

/// The exclusive lock on `root`'s lock file while no harness holds it shared, for a cleanup; `None`
/// while a harness runs.
pub fn try_exclusive(root: &Path) -> io::Result<Option<Flock<File>>> {
    let lock = open_lock(root)?;
    match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(errno.into()),
    }
}

/// [`prune`]s `dir` only while no other harness holds `root`'s lock: for a directory that a program
/// outside cvbench (runc) creates entries in, which cannot retry when it vanishes meanwhile. This
/// process's own shared lock is set aside for the check and taken again afterwards.
pub fn prune_when_alone(dir: &Path, root: &Path) {
    let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let ours = held.remove(root);
    drop(ours);
    if let Ok(Some(_alone)) = try_exclusive(root) {
        prune(dir);
    }
    drop(held);
    // A harness with live instances has its lock again; failing that, the next launch retakes it.
    let _ = hold_shared(root);
}

fn open_lock(root: &Path) -> io::Result<File> {
    let path = lock_path(root);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_holder_keeps_cleanup_from_taking_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cvbench");
        assert!(try_exclusive(&root).unwrap().is_some(), "nobody holds it yet");
        hold_shared(&root).unwrap();
        hold_shared(&root).unwrap();
        assert!(try_exclusive(&root).unwrap().is_none());
        assert_eq!(lock_path(&root), root.join(".cvbench.lock"));
        assert_eq!(lock_path(Path::new(RUN_ROOT)), Path::new("/run/cvbench.lock"));
    }

    #[test]
    fn prune_removes_empty_dirs_up_to_the_root_and_stops_at_a_non_empty_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cvbench");
        let a = root.join("vms/a");
        let b = root.join("vms/b");
        create_dir(&a).unwrap();
        create_dir(&b).unwrap();
        prune_within(&a, &root);
        assert!(!a.exists() && b.exists(), "a sibling keeps its parent");
        prune_within(&b, &root);
        assert!(!root.exists(), "empty backend dir and root are removed");
        assert!(tmp.path().exists(), "nothing above the root is touched");
    }

    #[test]
    fn prune_never_touches_dirs_outside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("empty");
        create_dir(&outside).unwrap();
        prune_within(&outside, &tmp.path().join("cvbench"));
        assert!(outside.exists());
    }

    #[test]
    fn prune_keeps_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cvbench");
        let dir = root.join("runc");
        create_dir(&dir).unwrap();
        std::fs::write(dir.join("state.json"), b"{}").unwrap();
        prune_within(&dir, &root);
        assert!(dir.join("state.json").exists());
    }
}
