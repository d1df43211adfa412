//! What isolates a benchmark cell: the kind of sandbox, what confines it on the host, and which
//! KVM (if any) ran its guest. Every backend declares it (`harness::Backend::isolation`), every cell
//! and density curve records it, and readers decide from it — never from a backend's name — how to
//! colour a backend, split its memory, or flag its figures as emulated.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kind of sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IsolationKind {
    /// A container set up by cvbench itself (namespaces, cgroup, overlay root).
    Container,
    /// A container started by an OCI runtime binary (runc, crun, youki).
    OciRuntime,
    /// A container managed by a daemon (Docker, podman's service).
    DaemonContainer,
    /// A user-space kernel intercepting the workload's system calls (gVisor).
    UserSpaceKernel,
    /// A microVM run by cvbench's own VMM.
    #[serde(rename = "microvm")]
    MicroVm,
    /// A VM run by another VMM (QEMU, Firecracker, cloud-hypervisor).
    OtherVmm,
}

impl IsolationKind {
    /// Every kind, in the order of their fixed chart colours.
    pub const ALL: [IsolationKind; 6] = [
        IsolationKind::Container,
        IsolationKind::OciRuntime,
        IsolationKind::MicroVm,
        IsolationKind::OtherVmm,
        IsolationKind::DaemonContainer,
        IsolationKind::UserSpaceKernel,
    ];

    /// Whether the workload runs on a guest kernel in a VM, so that the instance's memory holds
    /// guest RAM (and the VMM process's PSS includes it).
    pub fn is_vm(self) -> bool {
        matches!(self, IsolationKind::MicroVm | IsolationKind::OtherVmm)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IsolationKind::Container => "container",
            IsolationKind::OciRuntime => "OCI runtime",
            IsolationKind::DaemonContainer => "daemon-managed container",
            IsolationKind::UserSpaceKernel => "user-space kernel",
            IsolationKind::MicroVm => "microVM (cvbench VMM)",
            IsolationKind::OtherVmm => "VM (other VMM)",
        }
    }
}

/// What confines the instance's host processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Confinement {
    /// Linux namespaces and a cgroup of its own.
    NamespacesAndCgroup,
    /// A plain host process: a VMM run without jailer or namespaces (cvbench-vmm installs its own
    /// seccomp filters, recorded as the label `vmm_seccomp`; QEMU runs without one).
    HostProcess,
}

/// Which KVM ran the instance's guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KvmFlavour {
    /// No guest: the workload runs on the host kernel.
    NotUsed,
    /// Hardware KVM (VT-x / AMD-V).
    Hardware,
    /// Paravirtual nested KVM (PVM): guest kernel code runs emulated, far slower than on hardware.
    Pvm,
    /// No KVM: a binary translator (QEMU's TCG) runs the guest.
    Tcg,
    /// Hardware-style KVM (`kvm_amd`) in an L1 whose AMD SVM QEMU's TCG emulates
    /// (`scripts/nested-kvm.sh`): stock guest kernels really run, but every instruction of L1 and of
    /// its guests is emulated. Figures show function only, never speed.
    NestedSvmTcg,
}

impl KvmFlavour {
    /// Whether guest figures come from emulation and are not comparable with hardware KVM.
    pub fn is_emulated(self) -> bool {
        matches!(self, KvmFlavour::Pvm | KvmFlavour::Tcg | KvmFlavour::NestedSvmTcg)
    }

    /// Whether the figures come from the nested-KVM L1: function only.
    pub fn is_nested(self) -> bool {
        self == KvmFlavour::NestedSvmTcg
    }
}

/// How one benchmark cell was isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Isolation {
    pub kind: IsolationKind,
    pub confinement: Confinement,
    pub kvm: KvmFlavour,
}

impl Isolation {
    /// A container-like sandbox on the host kernel, confined by namespaces and a cgroup.
    pub const fn host_kernel(kind: IsolationKind) -> Self {
        Isolation {
            kind,
            confinement: Confinement::NamespacesAndCgroup,
            kvm: KvmFlavour::NotUsed,
        }
    }

    /// A VM whose VMM is a plain host process.
    pub const fn vm(kind: IsolationKind, kvm: KvmFlavour) -> Self {
        Isolation {
            kind,
            confinement: Confinement::HostProcess,
            kvm,
        }
    }

    /// Whether the figures are emulated (see [`KvmFlavour::is_emulated`]).
    pub fn is_emulated(&self) -> bool {
        self.kvm.is_emulated()
    }
}

/// Legacy reading only: the isolation of a cell written before results recorded it (schema 1
/// files without `isolation`, such as `results/example` and `results/baselines/main.json` of
/// 2026-11). Inferred from the names and labels the backends of that time wrote; `None` for a
/// backend name cvbench never had.
pub fn infer_legacy(backend: &str, labels: &BTreeMap<String, String>) -> Option<Isolation> {
    let label = |k: &str| labels.get(k).map(String::as_str);
    Some(match backend {
        "container" | "mock" => Isolation::host_kernel(IsolationKind::Container),
        "runc" => Isolation::host_kernel(IsolationKind::OciRuntime),
        "microvm" | "microvm-probe" => {
            let kvm = match label("kvm") {
                Some("pvm") => KvmFlavour::Pvm,
                Some("nested-svm-tcg") => KvmFlavour::NestedSvmTcg,
                _ => KvmFlavour::Hardware,
            };
            Isolation::vm(IsolationKind::MicroVm, kvm)
        }
        "qemu" => {
            let kvm = match label("accel") {
                Some("kvm") => KvmFlavour::Hardware,
                _ => KvmFlavour::Tcg,
            };
            Isolation::vm(IsolationKind::OtherVmm, kvm)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_cells_get_the_isolation_their_backend_had() {
        let labels = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        let none = BTreeMap::new();
        assert_eq!(
            infer_legacy("runc", &none),
            Some(Isolation::host_kernel(IsolationKind::OciRuntime))
        );
        let probe = infer_legacy("microvm-probe", &labels(&[("kvm", "pvm"), ("emulated", "true")]));
        assert_eq!(
            probe,
            Some(Isolation::vm(IsolationKind::MicroVm, KvmFlavour::Pvm))
        );
        assert!(probe.is_some_and(|i| i.is_emulated()));
        let qemu = infer_legacy("qemu", &labels(&[("accel", "kvm")]));
        assert_eq!(
            qemu,
            Some(Isolation::vm(IsolationKind::OtherVmm, KvmFlavour::Hardware))
        );
        assert!(!qemu.is_some_and(|i| i.is_emulated()));
        assert_eq!(infer_legacy("lxc", &none), None);
    }

    #[test]
    fn isolation_serialises_as_snake_case_words() {
        let json = serde_json::to_value(Isolation::vm(IsolationKind::OtherVmm, KvmFlavour::Tcg)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "other_vmm", "confinement": "host_process", "kvm": "tcg"})
        );
    }
}
