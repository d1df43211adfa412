//! crun (Debian's `crun`) over the runc backend's bundles, as a [`crate::Backend`]: the C runtime
//! youki's and crun's own READMEs compare against runc. crun creates no container on hosts whose
//! cgroup v2 mount holds no controllers beside v1 ones ("hybrid" layout); `check_host` starts a
//! throw-away container to learn that, and the row is skipped with crun's own message.

use std::path::{Path, PathBuf};

use super::runc::{cleanup_runtime_leftovers, OciRuntime, RuncBackend};
use crate::cleanup::{CleanupReport, CleanupScope};
use crate::results::IsolationKind;

pub const NAME: &str = "crun";
/// Bundles, one dir per instance.
pub const BUNDLES_DIR: &str = "/run/cvbench/crun";
/// crun's own state directory (`crun --root`).
pub const STATE_DIR: &str = "/run/cvbench/crun-state";

/// crun as Debian installs it.
pub fn runtime() -> OciRuntime {
    OciRuntime {
        name: NAME,
        binary: PathBuf::from("crun"),
        global_args: Vec::new(),
        kind: IsolationKind::OciRuntime,
        version_label: "crun_version",
        package: Some("crun"),
        probe_host: true,
    }
}

/// The backend with its state under `/run/cvbench`.
pub fn backend() -> RuncBackend {
    RuncBackend::for_runtime(runtime(), STATE_DIR.into(), BUNDLES_DIR.into())
}

/// The backend with its state under `root` (tests).
pub fn backend_with_root(root: &Path) -> RuncBackend {
    RuncBackend::for_runtime(runtime(), root.join("crun-state"), root.join("crun"))
}

/// `bench cleanup` for crun.
pub fn cleanup_leftovers(scope: &CleanupScope) -> CleanupReport {
    cleanup_runtime_leftovers(
        &runtime(),
        &scope.roots.relocate(STATE_DIR),
        &scope.roots.relocate(BUNDLES_DIR),
        scope,
    )
}
