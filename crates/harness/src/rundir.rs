//! The run directory `/run/cvbench`: per-instance state that must survive a crashed harness so that
//! `bench cleanup` finds it. An instance's directory is removed at teardown, and so are the backend
//! directories above it once they are empty, so a finished run leaves `/run/cvbench` empty.
//!
//! Several harnesses (or parallel tests) may create and prune at once: pruning only ever removes
//! *empty* directories (`rmdir`), and creating retries when a parent vanished under it.

use std::io;
use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;

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
