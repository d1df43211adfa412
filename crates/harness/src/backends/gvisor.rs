//! gVisor (Debian's `runsc`) over the runc backend's bundles, as a [`crate::Backend`]: the middle
//! ground between a container and a VM. The workload's system calls go to gVisor's user-space kernel
//! (the Sentry, in the `runsc-sandbox` process) instead of the host kernel; file access goes through
//! its gofer. `--network=none` gives the sandbox a loopback device only, as the other rows have;
//! `--oci-seccomp` makes the Sentry apply the bundle's seccomp filter (`--confinement`), which runsc
//! otherwise ignores.
//!
//! Memory: `runsc run --bundle` moves itself into the container's cgroup; it stays the container's
//! parent and is counted as runtime overhead (`runtime_pss_bytes`), while the sandbox and gofer
//! processes — the per-instance kernel — count as the instance's PSS.

use std::path::{Path, PathBuf};

use super::runc::{cleanup_runtime_leftovers, OciRuntime, RuncBackend, RuntimeNetwork};
use crate::cleanup::{CleanupReport, CleanupScope};
use crate::results::IsolationKind;

pub const NAME: &str = "gvisor";
/// Bundles, one dir per instance.
pub const BUNDLES_DIR: &str = "/run/cvbench/gvisor";
/// runsc's own state directory (`runsc --root`).
pub const STATE_DIR: &str = "/run/cvbench/gvisor-state";

/// Why gVisor rows have no network path. Tried: the instance's namespace as a path in config.json
/// with `--network=sandbox` (the Sentry's netstack takes over the veth). runsc 20221219 then
/// refuses every launch with "cannot run with network enabled in root network namespace": it
/// decides it is in the root namespace when `/proc/sys/net/core/rmem_default` exists, which this
/// kernel (6.18) shows in every network namespace. `--network=host` would measure the host
/// kernel's sockets, not gVisor's netstack, so it is not used.
pub const NO_NETWORK: &str =
    "runsc 20221219 refuses --network=sandbox on this kernel ('cannot run with network \
     enabled in root network namespace': its check reads /proc/sys/net/core/rmem_default, present in every \
     namespace here); --network=host would bypass gVisor's netstack";

/// runsc as Debian installs it, with networking off (loopback only).
pub fn runtime() -> OciRuntime {
    OciRuntime {
        name: NAME,
        binary: PathBuf::from("runsc"),
        // Without --oci-seccomp runsc ignores the config's seccomp filter: the row would not pay for
        // the confinement level it is labelled with.
        global_args: vec!["--network=none".to_string(), "--oci-seccomp".to_string()],
        kind: IsolationKind::UserSpaceKernel,
        version_label: "runsc_version",
        package: Some("runsc"),
        probe_host: false,
        unknown_capabilities: &["CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"],
        network: RuntimeNetwork::Untested(NO_NETWORK),
    }
}

/// The backend with its state under `/run/cvbench`.
pub fn backend() -> RuncBackend {
    RuncBackend::for_runtime(runtime(), STATE_DIR.into(), BUNDLES_DIR.into())
}

/// The backend with its state under `root` (tests).
pub fn backend_with_root(root: &Path) -> RuncBackend {
    RuncBackend::for_runtime(runtime(), root.join("gvisor-state"), root.join("gvisor"))
}

/// `bench cleanup` for gVisor.
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
    use super::super::runc::{drop_capabilities, oci_config};
    use super::*;
    use crate::runner::RunOptions;

    #[test]
    fn capabilities_runsc_does_not_know_are_left_out_of_every_set() {
        let spec = RunOptions {
            confinement: crate::Confinement::None,
            ..RunOptions::default()
        }
        .launch_spec(
            Path::new("/img"),
            &workload::WorkloadSpec::Idle,
            "cvbench-gvisor-idle-1-0",
            std::time::Instant::now(),
        );
        let mut config = oci_config(&spec, None).unwrap();
        let names = |config: &oci_spec::runtime::Spec| {
            serde_json::to_value(config).unwrap()["process"]["capabilities"].to_string()
        };
        drop_capabilities(&mut config, runtime().unknown_capabilities);
        let after = names(&config);
        for cap in runtime().unknown_capabilities {
            assert!(!after.contains(cap), "{cap} still in {after}");
        }
        assert!(after.contains("CAP_SYS_ADMIN"), "the rest stays: {after}");
        // The other runtimes drop nothing.
        let mut untouched = oci_config(&spec, None).unwrap();
        let before = names(&untouched);
        drop_capabilities(
            &mut untouched,
            super::super::runc::OciRuntime::runc().unknown_capabilities,
        );
        assert_eq!(names(&untouched), before);
    }
}
