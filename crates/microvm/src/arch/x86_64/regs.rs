//! The boot vCPU's architectural state for the Linux 64-bit boot protocol: a flat GDT, an
//! identity-mapped 4 GiB with 2 MiB pages, long mode enabled, `rip` at the kernel's 64-bit entry and
//! `rsi` at the zero page; plus FPU defaults, a few boot MSRs and the local APIC's LINT pins.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{mem_err, ArchError};
use crate::layout::{
    BOOT_GDT_ENTRIES, BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_COUNT, PDE_START, PDPTE_START,
    PML4_START, ZERO_PAGE_START,
};

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;
const PAGE_PRESENT_WRITABLE: u64 = 0x3;
const PAGE_HUGE: u64 = 0x80;
const PAGE_BYTES: u64 = 0x1000;
const HUGE_PAGE_BYTES: u64 = 2 << 20;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;
/// How many MSRs [`setup_fpu_and_msrs`] sets (`IA32_MISC_ENABLE`, `MTRR_DEF_TYPE`).
pub const BOOT_MSR_COUNT: usize = 2;
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 4;
const APIC_MODE_EXTINT: u32 = 7;

/// Packs a segment descriptor (`flags` = access byte in bits 0..7, granularity/size in 12..15).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (flags as u64, base as u64, limit as u64);
    ((base & 0xff00_0000) << (56 - 24))
        | ((flags & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// The boot GDT: null, 64-bit code (selector 0x08), data (0x10), TSS (0x18).
/// The GDT limit register: the table's size in bytes minus one.
const BOOT_GDT_LIMIT: u16 = {
    assert!(BOOT_GDT_ENTRIES * 8 - 1 <= u16::MAX as usize);
    #[allow(clippy::cast_possible_truncation)] // asserted just above
    let limit = (BOOT_GDT_ENTRIES * 8 - 1) as u16;
    limit
};

pub const BOOT_GDT: [u64; BOOT_GDT_ENTRIES] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// Unpacks descriptor `index` of `table` into the form KVM takes.
pub fn segment_from_gdt(table: &[u64], index: u8) -> kvm_segment {
    let entry = table[usize::from(index)];
    let bit = |shift: u64| ((entry >> shift) & 1) as u8;
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    // 20 bits (16 from the low word, 4 from the high): lossless.
    #[allow(clippy::cast_possible_truncation)]
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let granular = bit(55) == 1;
    let limit = if granular {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = bit(47);
    kvm_segment {
        base,
        limit,
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: bit(55),
        avl: bit(52),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Writes the GDT and an empty IDT into guest memory.
pub fn write_gdt_and_idt(mem: &GuestMemoryMmap) -> Result<(), ArchError> {
    for (i, entry) in BOOT_GDT.iter().enumerate() {
        let addr = GuestAddress(BOOT_GDT_START + (i * 8) as u64);
        mem.write_obj(*entry, addr).map_err(mem_err("GDT", addr))?;
    }
    let idt = GuestAddress(BOOT_IDT_START);
    mem.write_obj(0u64, idt).map_err(mem_err("IDT", idt))
}

/// Writes PML4 → PDPT → [`PDE_COUNT`] page directories identity-mapping the low 4 GiB.
pub fn write_page_tables(mem: &GuestMemoryMmap) -> Result<(), ArchError> {
    let pml4 = GuestAddress(PML4_START);
    mem.write_obj(PDPTE_START | PAGE_PRESENT_WRITABLE, pml4)
        .map_err(mem_err("PML4", pml4))?;
    for gib in 0..PDE_COUNT {
        let pdpte = GuestAddress(PDPTE_START + gib * 8);
        let pd = PDE_START + gib * PAGE_BYTES;
        mem.write_obj(pd | PAGE_PRESENT_WRITABLE, pdpte)
            .map_err(mem_err("PDPT", pdpte))?;
        let entries: Vec<u8> = (0..512u64)
            .flat_map(|i| {
                let phys = (gib << 30) + i * HUGE_PAGE_BYTES;
                (phys | PAGE_PRESENT_WRITABLE | PAGE_HUGE).to_le_bytes()
            })
            .collect();
        mem.write_slice(&entries, GuestAddress(pd))
            .map_err(mem_err("page directory", GuestAddress(pd)))?;
    }
    Ok(())
}

/// Long-mode special registers on top of what KVM reports for a fresh vCPU.
pub fn long_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    let code = segment_from_gdt(&BOOT_GDT, 1);
    let data = segment_from_gdt(&BOOT_GDT, 2);
    let tss = segment_from_gdt(&BOOT_GDT, 3);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = BOOT_GDT_LIMIT;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr3 = PML4_START;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// General registers at the kernel's 64-bit entry.
pub fn boot_regs(entry: GuestAddress) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry.0,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        ..Default::default()
    }
}

fn kvm_err(ioctl: &'static str, vcpu: u8) -> impl FnOnce(kvm_ioctls::Error) -> ArchError {
    move |source| ArchError::Kvm { ioctl, vcpu, source }
}

/// Sets FPU defaults and the boot MSRs. Returns how many MSRs KVM accepted (a paravirtual KVM may
/// refuse some; the guest then runs with its defaults).
pub fn setup_fpu_and_msrs(vcpu: &VcpuFd, index: u8) -> Result<usize, ArchError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_err("KVM_SET_FPU", index))?;
    let entries: [kvm_msr_entry; BOOT_MSR_COUNT] = [
        kvm_msr_entry {
            index: MSR_IA32_MISC_ENABLE,
            data: MISC_ENABLE_FAST_STRING,
            ..Default::default()
        },
        kvm_msr_entry {
            index: MSR_MTRR_DEF_TYPE,
            data: MTRR_ENABLE_WRITEBACK,
            ..Default::default()
        },
    ];
    let msrs = Msrs::from_entries(&entries).map_err(|_| ArchError::MsrsRejected {
        vcpu: index,
        set: 0,
        wanted: BOOT_MSR_COUNT,
    })?;
    vcpu.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS", index))
}

/// Sets the boot vCPU's registers for the 64-bit entry.
pub fn setup_boot_registers(vcpu: &VcpuFd, index: u8, entry: GuestAddress) -> Result<(), ArchError> {
    let sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS", index))?;
    vcpu.set_sregs(&long_mode_sregs(sregs))
        .map_err(kvm_err("KVM_SET_SREGS", index))?;
    vcpu.set_regs(&boot_regs(entry))
        .map_err(kvm_err("KVM_SET_REGS", index))
}

/// Routes LINT0 to ExtINT (the legacy PIC) and LINT1 to NMI, as a BIOS would.
pub fn setup_lapic_lint(vcpu: &VcpuFd, index: u8) -> Result<(), ArchError> {
    let mut lapic = vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC", index))?;
    for (offset, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let reg = &mut lapic.regs[offset..offset + 4];
        let bytes: [u8; 4] = [reg[0] as u8, reg[1] as u8, reg[2] as u8, reg[3] as u8];
        let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (dst, src) in reg.iter_mut().zip(value.to_le_bytes()) {
            *dst = src as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC", index))
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn page_tables_identity_map_four_gib_with_2mib_pages() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 * MIB)]).unwrap();
        write_page_tables(&mem).unwrap();
        let read = |addr: u64| -> u64 { mem.read_obj(GuestAddress(addr)).unwrap() };
        assert_eq!(read(PML4_START), PDPTE_START | 0x3);
        for gib in 0..4 {
            assert_eq!(read(PDPTE_START + gib * 8), (PDE_START + gib * 0x1000) | 0x3);
        }
        assert_eq!(read(PDPTE_START + 4 * 8), 0, "nothing mapped past 4 GiB");
        // Walk a virtual address the way the MMU does: the MMIO window must map to itself.
        let walk = |va: u64| -> u64 {
            let pdpt = read(PML4_START + ((va >> 39) & 0x1ff) * 8) & !0xfff;
            let pd = read(pdpt + ((va >> 30) & 0x1ff) * 8) & !0xfff;
            let pde = read(pd + ((va >> 21) & 0x1ff) * 8);
            assert_eq!(pde & 0x83, 0x83, "present, writable, 2 MiB page at {va:#x}");
            (pde & !0x1f_ffff & !0x83) | (va & 0x1f_ffff)
        };
        for va in [0u64, 0x7000, 0x10_0000, 0x3fff_ffff, 0xd000_0040, 0xffff_f000] {
            assert_eq!(walk(va), va);
        }
    }

    #[test]
    fn gdt_round_trips_into_long_mode_segments() {
        let code = segment_from_gdt(&BOOT_GDT, 1);
        assert_eq!(
            (code.selector, code.l, code.db, code.present, code.s, code.type_),
            (0x08, 1, 0, 1, 1, 0xb)
        );
        assert_eq!(code.limit, 0xffff_ffff);
        let data = segment_from_gdt(&BOOT_GDT, 2);
        assert_eq!((data.selector, data.l, data.db, data.type_), (0x10, 0, 1, 0x3));
        let tss = segment_from_gdt(&BOOT_GDT, 3);
        assert_eq!((tss.selector, tss.type_, tss.s), (0x18, 0xb, 0));
        let null = segment_from_gdt(&BOOT_GDT, 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn sregs_enable_paging_long_mode_and_point_at_tables() {
        let sregs = long_mode_sregs(kvm_sregs::default());
        assert_eq!(sregs.cr3, PML4_START);
        assert_ne!(sregs.cr0 & X86_CR0_PG, 0);
        assert_ne!(sregs.cr0 & X86_CR0_PE, 0);
        assert_ne!(sregs.cr4 & X86_CR4_PAE, 0);
        assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(sregs.gdt.base, BOOT_GDT_START);
        let regs = boot_regs(GuestAddress(0x10_0000));
        assert_eq!((regs.rip, regs.rsi, regs.rflags), (0x10_0000, ZERO_PAGE_START, 2));
    }
}
