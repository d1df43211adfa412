//! x86_64 boot: the zero page with its e820 map and command line, the MP table, the boot GDT and
//! identity-mapped page tables, long-mode register state, CPUID and the in-kernel interrupt
//! controllers. Everything is written into guest memory or set on KVM file descriptors; nothing here
//! runs the guest.

pub mod boot_params;
pub mod cpuid;
pub mod mptable;
pub mod regs;

use vm_memory::GuestAddress;

/// Failures while writing x86 boot structures or configuring a vCPU's boot state.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error("guest memory write of {what} at {addr:#x} failed: {source}")]
    GuestMemory {
        what: &'static str,
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
    #[error("{vcpus} vCPUs do not fit the MP table (max {max})")]
    TooManyVcpus { vcpus: u8, max: u8 },
    #[error("KVM ioctl {ioctl} failed on vCPU {vcpu}: {source}")]
    Kvm {
        ioctl: &'static str,
        vcpu: u8,
        source: kvm_ioctls::Error,
    },
    #[error("KVM accepted {set} of {wanted} boot MSRs on vCPU {vcpu}")]
    MsrsRejected { vcpu: u8, set: usize, wanted: usize },
}

/// A guest address the layout places below 4 GiB, as the 32-bit field a boot structure stores.
#[allow(clippy::cast_possible_truncation)] // callers pass layout constants, all below 4 GiB
pub(crate) const fn addr32(addr: u64) -> u32 {
    addr as u32
}

// This VMM is x86-64 only: a `usize` is 64 bits, so every `u64` converts to one without loss.
const _: () = assert!(usize::BITS == u64::BITS);

/// `value` as a `usize`: lossless on this 64-bit target (asserted above at compile time).
#[allow(clippy::cast_possible_truncation)] // usize::BITS == u64::BITS, asserted above
pub(crate) const fn usize_from_u64(value: u64) -> usize {
    value as usize
}

pub(crate) fn mem_err(
    what: &'static str,
    addr: GuestAddress,
) -> impl FnOnce(vm_memory::GuestMemoryError) -> ArchError {
    move |source| ArchError::GuestMemory {
        what,
        addr: addr.0,
        source,
    }
}
