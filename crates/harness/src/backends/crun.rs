//! crun (Debian's `crun`) over the runc backend's bundles, as a [`crate::Backend`]: the C runtime
//! youki's and crun's own READMEs compare against runc. crun creates no container on hosts whose
//! cgroup v2 mount holds no controllers beside v1 ones ("hybrid" layout); `check_host` starts a
//! throw-away container to learn that, and the row is skipped with crun's own message.

use std::path::{Path, PathBuf};

use super::runc::{cleanup_runtime_leftovers, OciRuntime, RuncBackend, RuntimeNetwork};
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
        unknown_capabilities: &[],
        network: RuntimeNetwork::Untested(
            "crun refuses hybrid cgroup hosts such as this one: not tested end to end",
        ),
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

#[cfg(test)]
mod tests {
    use super::super::runc::{probe_verdict, version_from_output};
    use super::*;
    use crate::Backend;

    #[test]
    fn a_runtime_that_reaches_the_missing_workload_accepts_the_host() {
        let exec_failed =
            "executable file `/bin/cvbench-workload` not found in $PATH: No such file or directory";
        assert_eq!(probe_verdict("crun", false, exec_failed), Ok(()));
        assert_eq!(probe_verdict("crun", true, ""), Ok(()));
    }

    #[test]
    fn a_runtime_that_fails_earlier_refuses_the_host_in_its_own_words_on_one_line() {
        let hybrid = "cgroups in hybrid mode not supported,\n drop all controllers from cgroupv2\n";
        assert_eq!(
            probe_verdict("crun", false, hybrid),
            Err("crun refuses this host: cgroups in hybrid mode not supported, drop all controllers from cgroupv2".into())
        );
        assert_eq!(
            probe_verdict("crun", false, "  \n"),
            Err("crun refuses this host (no message)".into())
        );
    }

    #[test]
    fn versions_are_read_from_each_runtimes_first_line() {
        assert_eq!(version_from_output("crun version 1.8.1\ncommit: abc\n"), "1.8.1");
        assert_eq!(
            version_from_output("runc version 1.1.5+ds1\ncommit: x\n"),
            "1.1.5+ds1"
        );
        assert_eq!(
            version_from_output("runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n"),
            "0.0~20221219.0"
        );
        assert_eq!(version_from_output("youki 0.3.0\n"), "youki 0.3.0");
    }

    #[test]
    fn crun_is_probed_and_missing_crun_says_what_to_install() {
        assert!(runtime().probe_host);
        let tmp = tempfile::tempdir().unwrap();
        let mut rt = runtime();
        rt.binary = tmp.path().join("no-crun");
        let b = RuncBackend::for_runtime(rt, tmp.path().join("s"), tmp.path().join("b"));
        let reason = b.check_host().unwrap_err().reason;
        if nix::unistd::geteuid().is_root() {
            assert!(
                reason.contains("apt-get install crun") && reason.contains("no-crun"),
                "{reason}"
            );
        }
    }
}
