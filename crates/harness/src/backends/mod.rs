//! One file per isolation mechanism, each implementing [`crate::Backend`], and the one registry that
//! maps command-line names to them. Adding a peer is one new file here plus one line in [`REGISTRY`].

pub mod container;
pub mod crun;
pub mod docker;
mod engine;
pub mod gvisor;
mod lines;
pub mod microvm;
pub mod mock;
pub mod oci;
pub mod oci_confine;
pub mod podman;
mod process;
pub mod qemu;
pub mod runc;
mod teardown;
mod vm_net;
mod vm_process;

use workload::{parse_line, ProtocolLine, WorkloadResult};

use crate::backend::{Backend, BackendError};
use crate::cleanup::{CleanupReport, CleanupScope};

/// What a workload's output line means before READY, the same in every backend: `true` for the
/// READY line; the workload's failure for an ERROR line; a protocol error for a malformed
/// `CVBENCH` line; `false` for anything else (ordinary output, a RESULT that came early).
fn line_before_ready(backend: &str, line: &str) -> Result<bool, BackendError> {
    match parse_line(line) {
        Ok(Some(ProtocolLine::Ready { .. })) => Ok(true),
        Ok(Some(ProtocolLine::Error(text))) => Err(workload_failed(backend, text)),
        Ok(Some(ProtocolLine::Result(_)) | None) => Ok(false),
        Err(source) => Err(BackendError::Protocol {
            backend: backend.into(),
            source,
        }),
    }
}

/// What a workload's output line means after READY, the same in every backend: its result, if it
/// is the RESULT line; the workload's failure for an ERROR line; a protocol error for a malformed
/// `CVBENCH` line.
fn line_after_ready(backend: &str, line: &str) -> Result<Option<WorkloadResult>, BackendError> {
    match parse_line(line) {
        Ok(Some(ProtocolLine::Result(result))) => Ok(Some(result)),
        Ok(Some(ProtocolLine::Error(text))) => Err(workload_failed(backend, text)),
        Ok(Some(ProtocolLine::Ready { .. }) | None) => Ok(None),
        Err(source) => Err(BackendError::Protocol {
            backend: backend.into(),
            source,
        }),
    }
}

fn workload_failed(backend: &str, reason: String) -> BackendError {
    BackendError::WorkloadFailed {
        backend: backend.into(),
        reason,
    }
}

/// Removes what a killed harness left of this backend's instances (for `bench cleanup`).
pub type CleanupFn = fn(&CleanupScope) -> CleanupReport;

/// A backend the command line can name.
struct Entry {
    name: &'static str,
    /// Hidden entries (the mock) work by name but are not offered in help or `backend_names`.
    listed: bool,
    make: fn() -> Box<dyn Backend>,
    /// The backend's own leftover cleanup, if it keeps state under the run dir.
    cleanup: Option<CleanupFn>,
}

const REGISTRY: &[Entry] = &[
    Entry {
        name: "container",
        listed: true,
        make: || Box::new(self::container::ContainerBackend::new()),
        cleanup: Some(crate::cleanup::container_leftovers),
    },
    Entry {
        name: "runc",
        listed: true,
        make: || Box::new(runc::RuncBackend::new()),
        cleanup: Some(runc::cleanup_leftovers),
    },
    Entry {
        name: crun::NAME,
        listed: true,
        make: || Box::new(crun::backend()),
        cleanup: Some(crun::cleanup_leftovers),
    },
    Entry {
        name: gvisor::NAME,
        listed: true,
        make: || Box::new(gvisor::backend()),
        cleanup: Some(gvisor::cleanup_leftovers),
    },
    Entry {
        name: docker::NAME,
        listed: true,
        make: || Box::new(docker::DockerBackend::new()),
        cleanup: Some(docker::cleanup_leftovers),
    },
    Entry {
        name: podman::NAME,
        listed: true,
        make: || Box::new(podman::PodmanBackend::new()),
        cleanup: Some(podman::cleanup_leftovers),
    },
    Entry {
        name: "microvm",
        listed: true,
        make: || Box::new(microvm::MicrovmBackend::from_env()),
        cleanup: Some(|scope| {
            let dir = scope.roots.relocate(microvm::RUN_DIR);
            microvm::cleanup_leftover_vms(&dir, scope.keep)
        }),
    },
    Entry {
        name: microvm::PROBE_NAME,
        listed: true,
        make: || Box::new(microvm::MicrovmBackend::new(microvm::GuestKind::Probe)),
        cleanup: None,
    },
    Entry {
        name: "qemu",
        listed: true,
        make: || Box::new(qemu::QemuBackend::new()),
        cleanup: Some(|scope| {
            let dir = scope.roots.relocate(qemu::RUN_DIR);
            qemu::cleanup_leftover_qemus(&dir, scope.keep)
        }),
    },
    Entry {
        name: "oci:<path>",
        listed: true,
        // Made by `backend_by_name` from the path after `oci:`; this entry lists the spelling and
        // holds the cleanup of every runtime named so.
        make: || Box::new(oci::backend(std::path::Path::new("runc"))),
        cleanup: Some(oci::cleanup_leftovers),
    },
    Entry {
        name: "mock",
        listed: false,
        make: || Box::new(mock::MockBackend::from_env()),
        cleanup: None,
    },
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {name:?} (expected one of: {})", backend_names().join(", "))]
pub struct UnknownBackend {
    pub name: String,
}

/// The backend called `name` on the command line.
pub fn backend_by_name(name: &str) -> Result<Box<dyn Backend>, UnknownBackend> {
    if let Some(path) = name
        .strip_prefix(oci::PREFIX)
        .filter(|p| !p.is_empty() && *p != "<path>")
    {
        return Ok(Box::new(oci::backend(std::path::Path::new(path))));
    }
    REGISTRY
        .iter()
        .find(|e| e.name == name && !e.name.starts_with(oci::PREFIX))
        .map(|e| (e.make)())
        .ok_or_else(|| UnknownBackend {
            name: name.to_string(),
        })
}

/// Every backend's leftover cleanup, in registry order, with the backend's name.
pub fn backend_cleanups() -> impl Iterator<Item = (&'static str, CleanupFn)> {
    REGISTRY.iter().filter_map(|e| e.cleanup.map(|c| (e.name, c)))
}

/// What a memory probe of a container's own processes reads: their pids, summed PSS and (from the
/// first) the memory cgroup charge.
pub(crate) struct ContainerMemory {
    pub pids: Vec<i32>,
    pub pss_bytes: u64,
    pub cgroup_bytes: Option<u64>,
}

/// Measures the processes `list` gives, for a probe that races a self-ending workload (the http
/// self-test can finish between READY and the probe; an exiting process stays listed in
/// `cgroup.procs` for a moment after its /proc files are gone). A vanished process makes it list
/// once more; an empty list, or a process vanishing again, is [`BackendError::EndedBeforeMemoryProbe`]
/// (`ended`): no figure is invented. Other probe failures go through `probe_err`.
pub(crate) fn container_memory(
    list: impl Fn() -> Result<Vec<i32>, BackendError>,
    ended: impl Fn() -> BackendError,
    probe_err: impl Fn(crate::probe::ProbeError) -> BackendError,
) -> Result<ContainerMemory, BackendError> {
    use crate::probe::{self, ProbeError};
    let listed = || match list() {
        Ok(pids) if pids.is_empty() => Err(ended()),
        other => other,
    };
    let mut pids = listed()?;
    let pss_bytes = match probe::pss_bytes(&pids) {
        Err(ProbeError::ProcessGone { .. }) => {
            pids = listed()?;
            match probe::pss_bytes(&pids) {
                Err(ProbeError::ProcessGone { .. }) => return Err(ended()),
                other => other.map_err(&probe_err)?,
            }
        }
        other => other.map_err(&probe_err)?,
    };
    let cgroup_bytes = match pids.first().map(|&first| probe::cgroup_memory_bytes(first)) {
        Some(Err(ProbeError::ProcessGone { .. })) => return Err(ended()),
        other => other.transpose().map_err(&probe_err)?,
    };
    Ok(ContainerMemory {
        pids,
        pss_bytes,
        cgroup_bytes,
    })
}

/// Checks, in `prepare`, that the image's workload can be executed inside it: present, and a static
/// binary or a program whose interpreter the image holds. Otherwise every launch would fail as
/// "could not exec ... No such file or directory".
pub(crate) fn check_image_workload(backend: &str, image_dir: &std::path::Path) -> Result<(), BackendError> {
    match rootfs::exec_problem(image_dir, workload::spec::WORKLOAD_PATH_IN_IMAGE) {
        None => Ok(()),
        Some(why) => Err(BackendError::setup(
            backend,
            format!("image {}: {why}", image_dir.display()),
        )),
    }
}

/// Names of the selectable backends, in registry order.
pub fn backend_names() -> Vec<&'static str> {
    REGISTRY.iter().filter(|e| e.listed).map(|e| e.name).collect()
}

/// For a workload reached from outside with a client namespace given: the instance's network
/// namespace, veth and addresses, configured (see [`crate::net::Network::attach`]). `None` otherwise.
pub(crate) fn attach_network(
    backend: &str,
    spec: &crate::backend::LaunchSpec,
) -> Result<Option<crate::net::InstanceNet>, crate::backend::BackendError> {
    match (&spec.network, &spec.workload) {
        (Some(network), w) if w.reached_from_outside() => network
            .attach()
            .map(Some)
            .map_err(|e| crate::backend::BackendError::setup(backend, format!("network: {e}"))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_line_is_the_same_protocol_error_before_and_after_ready() {
        let line = "CVBENCH RESULT {not json";
        let before = line_before_ready("runc", line).unwrap_err();
        let after = line_after_ready("runc", line).unwrap_err();
        assert!(matches!(before, BackendError::Protocol { .. }), "{before}");
        assert_eq!(before.to_string(), after.to_string());
        assert!(line_before_ready("qemu", "CVBENCH READY idle").unwrap());
        assert!(!line_before_ready("qemu", "[ 0.1] booting").unwrap());
        let failed = line_after_ready("qemu", "CVBENCH ERROR disk full").unwrap_err();
        assert!(matches!(failed, BackendError::WorkloadFailed { .. }), "{failed}");
    }

    #[test]
    fn every_entry_builds_the_backend_it_names() {
        for e in REGISTRY.iter().filter(|e| !e.name.starts_with(oci::PREFIX)) {
            assert_eq!((e.make)().name(), e.name);
        }
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = backend_by_name("lxc").err().unwrap();
        assert_eq!(err.name, "lxc");
        assert!(err.to_string().contains("runc"), "{err}");
        assert!(!backend_names().contains(&"mock"));
        assert!(backend_by_name("mock").is_ok());
    }

    #[test]
    fn oci_names_build_a_runtime_backend_for_that_path() {
        let b = backend_by_name("oci:/usr/local/bin/youki").unwrap();
        assert_eq!(b.name(), "oci:/usr/local/bin/youki");
        assert_eq!(b.isolation().kind, crate::results::IsolationKind::OciRuntime);
        assert!(backend_by_name("oci:").is_err(), "a path is required");
        assert!(
            backend_by_name("oci:<path>").is_err(),
            "the placeholder is no path"
        );
        assert!(backend_names().contains(&"oci:<path>"));
    }

    #[test]
    fn the_new_peers_are_registered_with_their_kinds() {
        use crate::results::IsolationKind;
        for (name, kind) in [
            ("crun", IsolationKind::OciRuntime),
            ("gvisor", IsolationKind::UserSpaceKernel),
            ("docker", IsolationKind::DaemonContainer),
            ("podman", IsolationKind::DaemonContainer),
        ] {
            let b = backend_by_name(name).unwrap();
            assert_eq!(b.isolation().kind, kind, "{name}");
        }
        let cleanups: Vec<&str> = backend_cleanups().map(|(n, _)| n).collect();
        for name in ["crun", "gvisor", "docker", "podman", "oci:<path>"] {
            assert!(cleanups.contains(&name), "{name} has no cleanup");
        }
    }
}
