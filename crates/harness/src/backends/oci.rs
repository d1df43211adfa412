//! `oci:<path>`: any OCI runtime binary (youki, kata-runtime, a user's own build) over the runc
//! backend's bundles, as a [`crate::Backend`]. The runtime must take runc's command line
//! (`--root <dir> run --bundle <dir> <id>`, `kill`, `delete --force`), as the OCI runtimes named above
//! do. `check_host` starts a throw-away container, so a runtime that refuses the host is skipped
//! with its own message.
//!
//! State lives in `/run/cvbench/oci/<path with '%' and '/' escaped>/{bundles,state}/`: the directory
//! name says which binary made it, so `bench cleanup` calls the right runtime's `delete`, and an
//! empty one is pruned at teardown like every other backend's.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::runc::{cleanup_runtime_leftovers, OciRuntime, RuncBackend, RuntimeNetwork};
use crate::cleanup::{CleanupReport, CleanupScope};
use crate::results::IsolationKind;

/// `oci:<path>` on the command line.
pub const PREFIX: &str = "oci:";
/// One directory per runtime binary.
pub const RUN_DIR: &str = "/run/cvbench/oci";

/// The runtime at `path`, named `oci:<path>`.
pub fn runtime(path: &Path) -> OciRuntime {
    OciRuntime {
        name: intern(format!("{PREFIX}{}", path.display())),
        binary: path.to_path_buf(),
        global_args: Vec::new(),
        kind: IsolationKind::OciRuntime,
        version_label: "oci_runtime_version",
        package: None,
        probe_host: true,
        unknown_capabilities: &[],
        network: RuntimeNetwork::Untested("an arbitrary OCI runtime's networking is not known"),
    }
}

/// The backend for the runtime at `path`, its state under `/run/cvbench/oci/`.
pub fn backend(path: &Path) -> RuncBackend {
    backend_in(Path::new(RUN_DIR), path)
}

/// The backend for the runtime at `path` with its state under `run_dir` (tests).
pub fn backend_in(run_dir: &Path, path: &Path) -> RuncBackend {
    let dir = run_dir.join(dir_name(path));
    RuncBackend::for_runtime(runtime(path), dir.join("state"), dir.join("bundles"))
}

/// The runtime's directory name: its path with `%` and `/` escaped (`%2Fusr%2Fbin%2Fyouki`).
pub fn dir_name(path: &Path) -> OsString {
    let mut out = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'/' => out.extend_from_slice(b"%2F"),
            _ => out.push(b),
        }
    }
    OsString::from_vec(out)
}

/// The path a [`dir_name`] came from; `None` for a name it cannot have made.
pub fn path_from_dir_name(name: &std::ffi::OsStr) -> Option<PathBuf> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            match bytes.get(i + 1..i + 3)? {
                b"25" => out.push(b'%'),
                b"2F" => out.push(b'/'),
                _ => return None,
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(OsString::from_vec(out)))
}

/// `Backend::name` returns `&'static str`; a name made at run time is kept once for the whole
/// process (a few bytes per distinct runtime path).
fn intern(name: String) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = names.get(name.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// `bench cleanup` for every `oci:<path>` runtime that left a directory under the run dir.
pub fn cleanup_leftovers(scope: &CleanupScope) -> CleanupReport {
    let mut report = CleanupReport::default();
    let run_dir = scope.roots.relocate(RUN_DIR);
    let Ok(entries) = fs::read_dir(&run_dir) else {
        return report;
    };
    for entry in entries.flatten().filter(|e| e.path().is_dir()) {
        let dir = entry.path();
        let Some(binary) = path_from_dir_name(&entry.file_name()) else {
            report.problems.push(format!(
                "{}: not an OCI runtime's directory; left alone",
                dir.display()
            ));
            continue;
        };
        report.merge(cleanup_runtime_leftovers(
            &runtime(&binary),
            &dir.join("state"),
            &dir.join("bundles"),
            scope,
        ));
        for sub in ["state", "bundles", ""] {
            let _ = fs::remove_dir(dir.join(sub));
        }
    }
    let _ = fs::remove_dir(&run_dir);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip_and_hold_no_slash() {
        for p in ["/usr/bin/youki", "/opt/a%2Fb/kata-runtime", "relative/runc"] {
            let name = dir_name(Path::new(p));
            assert!(!name.as_bytes().contains(&b'/'), "{name:?}");
            assert_eq!(path_from_dir_name(&name).unwrap(), Path::new(p));
        }
        assert_eq!(dir_name(Path::new("/usr/bin/youki")), "%2Fusr%2Fbin%2Fyouki");
        assert_eq!(path_from_dir_name(std::ffi::OsStr::new("bad%zz")), None);
    }

    #[test]
    fn the_name_is_the_command_line_spelling_and_interned_once() {
        let a = runtime(Path::new("/usr/bin/youki"));
        let b = runtime(Path::new("/usr/bin/youki"));
        assert_eq!(a.name, "oci:/usr/bin/youki");
        assert!(std::ptr::eq(a.name, b.name));
        assert!(a.probe_host, "a foreign runtime is probed before it is trusted");
    }

    #[test]
    fn state_and_bundles_live_under_the_runtime_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = backend_in(tmp.path(), Path::new("/usr/bin/youki"));
        use crate::Backend;
        assert_eq!(backend.name(), "oci:/usr/bin/youki");
        assert!(
            !tmp.path().join("%2Fusr%2Fbin%2Fyouki").exists(),
            "nothing made before prepare"
        );
    }

    #[test]
    fn cleanup_deletes_through_the_runtime_the_dir_names() {
        // A fake runtime that records its arguments, and a leftover container of a dead harness.
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("calls");
        let fake = tmp.path().join("fake-runtime");
        fs::write(&fake, format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display())).unwrap();
        fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let run_dir = tmp.path().join("run");
        let dir = run_dir.join("oci").join(dir_name(&fake));
        let id = "cvbench-oci_x-idle-999999999-0";
        fs::create_dir_all(dir.join("state").join(id)).unwrap();
        fs::create_dir_all(dir.join("bundles").join(id)).unwrap();
        let roots = crate::cleanup::CleanupRoots {
            run_dir: run_dir.clone(),
            cgroup_root: tmp.path().join("cg"),
            mountinfo: tmp.path().join("mountinfo"),
        };
        let keep = |_: &str| false;
        let report = cleanup_leftovers(&CleanupScope {
            roots: &roots,
            keep: &keep,
            exclusive: true,
        });
        let calls = fs::read_to_string(&log).unwrap();
        assert!(calls.contains(&format!("delete --force {id}")), "{calls}");
        assert!(
            calls.contains(&format!("--root {}", dir.join("state").display())),
            "{calls}"
        );
        assert!(report.removed.iter().any(|r| r.contains(id)), "{report:?}");
        assert!(!dir.join("bundles").join(id).exists());
    }
}
