//! CPUID for each vCPU: what KVM supports, with the per-vCPU APIC ID and the hypervisor bit filled in.
//! Setting CPUID is not optional on this host: a vCPU without it triple-faults at its first
//! instruction.

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_TOPOLOGY: u32 = 0xb;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EBX_APIC_ID_SHIFT: u32 = 24;
const EBX_LOGICAL_COUNT_SHIFT: u32 = 16;

/// Adjusts `cpuid` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `index` of `vcpus`.
pub fn patch_for_vcpu(cpuid: &mut CpuId, index: u8, vcpus: u8) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => {
                entry.ebx = (entry.ebx & 0x0000_ffff)
                    | (u32::from(index) << EBX_APIC_ID_SHIFT)
                    | (u32::from(vcpus) << EBX_LOGICAL_COUNT_SHIFT);
                entry.ecx |= ECX_HYPERVISOR;
            }
            LEAF_TOPOLOGY => entry.edx = u32::from(index),
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use kvm_bindings::kvm_cpuid_entry2;

    use super::*;

    #[test]
    fn apic_id_count_and_hypervisor_bit_are_set() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xff00_0801,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                edx: 7,
                ..Default::default()
            },
        ];
        let mut cpuid = CpuId::from_entries(&entries).unwrap();
        patch_for_vcpu(&mut cpuid, 3, 4);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx, 0x0304_0801);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_eq!(e[1].edx, 3);
    }
}
