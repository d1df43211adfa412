//! The Intel MultiProcessor Specification 1.4 table, written into the EBDA.
//!
//! Without ACPI, Linux learns from this table how many CPUs there are, where the IOAPIC is and how ISA
//! IRQs 0..23 are routed to its pins (1:1 here, matching KVM's in-kernel IOAPIC). It is written for any
//! number of vCPUs, since even a single-CPU guest needs the IOAPIC entry to use virtio IRQs 5 and up.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{addr32, mem_err, ArchError};
use crate::layout::{APIC_START, EBDA_START, IOAPIC_PINS, IOAPIC_START};

const FLOATING_POINTER_BYTES: usize = 16;
const CONFIG_HEADER_BYTES: usize = 44;
const PROCESSOR_ENTRY_BYTES: usize = 20;
const SHORT_ENTRY_BYTES: usize = 8;
/// The largest configuration table [`build`] writes (at [`MAX_VCPUS`]); its length field is 16 bits.
const MAX_CONFIG_BYTES: usize = CONFIG_HEADER_BYTES
    + MAX_VCPUS as usize * PROCESSOR_ENTRY_BYTES
    + (4 + IOAPIC_PINS as usize) * SHORT_ENTRY_BYTES;
const _: () = assert!(MAX_CONFIG_BYTES <= u16::MAX as usize);
const SPEC_REVISION: u8 = 4;
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOT_PROCESSOR: u8 = 2;
/// Family 6 in the CPUID signature format.
const CPU_SIGNATURE: u32 = 0x600;
/// FPU and APIC feature flags.
const CPU_FEATURES: u32 = 0x201;
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const ISA_BUS_ID: u8 = 0;
/// Largest vCPU count: APIC IDs 0..n-1 plus the IOAPIC's ID n must fit in a byte.
pub const MAX_VCPUS: u8 = 254;

/// The IOAPIC's MP-table ID (one past the last CPU's APIC ID).
pub fn ioapic_id(vcpus: u8) -> u8 {
    vcpus + 1
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// Serialises the MP floating pointer followed by the configuration table, as placed at
/// [`EBDA_START`].
pub fn build(vcpus: u8) -> Result<Vec<u8>, ArchError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(ArchError::TooManyVcpus {
            vcpus,
            max: MAX_VCPUS,
        });
    }
    let ioapic = ioapic_id(vcpus);
    let mut entries: Vec<u8> = Vec::new();
    let mut entry_count: u16 = 0;
    for cpu in 0..vcpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOT_PROCESSOR } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, cpu, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0u8; 8]);
        entry_count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, ISA_BUS_ID]);
    entries.extend_from_slice(b"ISA   ");
    entry_count += 1;
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&addr32(IOAPIC_START).to_le_bytes());
    entry_count += 1;
    for pin in 0..IOAPIC_PINS {
        entries.extend_from_slice(&[
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0,
            0,
            ISA_BUS_ID,
            pin,
            ioapic,
            pin,
        ]);
        entry_count += 1;
    }
    // LINT0 = ExtINT (the PIC), LINT1 = NMI, on every local APIC.
    entries.extend_from_slice(&[
        ENTRY_LOCAL_INTERRUPT,
        INT_TYPE_EXTINT,
        0,
        0,
        ISA_BUS_ID,
        0,
        0xff,
        0,
    ]);
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, 0, 0, ISA_BUS_ID, 0, 0xff, 1]);
    entry_count += 2;
    debug_assert_eq!(
        entries.len(),
        vcpus as usize * PROCESSOR_ENTRY_BYTES + (4 + usize::from(IOAPIC_PINS)) * SHORT_ENTRY_BYTES
    );

    let config_addr = EBDA_START + FLOATING_POINTER_BYTES as u64;
    let mut config = Vec::with_capacity(CONFIG_HEADER_BYTES + entries.len());
    config.extend_from_slice(b"PCMP");
    // At most MAX_CONFIG_BYTES (vcpus was checked against MAX_VCPUS above), which fits in 16 bits.
    #[allow(clippy::cast_possible_truncation)]
    let config_bytes = (CONFIG_HEADER_BYTES + entries.len()) as u16;
    config.extend_from_slice(&config_bytes.to_le_bytes());
    config.push(SPEC_REVISION);
    config.push(0); // checksum, patched below
    config.extend_from_slice(b"CVBENCH ");
    config.extend_from_slice(b"MICROVM     ");
    config.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    config.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    config.extend_from_slice(&entry_count.to_le_bytes());
    config.extend_from_slice(&addr32(APIC_START).to_le_bytes());
    config.extend_from_slice(&[0, 0, 0, 0]); // extended table length, checksum, reserved
    debug_assert_eq!(config.len(), CONFIG_HEADER_BYTES);
    config.extend_from_slice(&entries);
    config[7] = checksum(&config);

    let mut table = Vec::with_capacity(FLOATING_POINTER_BYTES + config.len());
    table.extend_from_slice(b"_MP_");
    table.extend_from_slice(&addr32(config_addr).to_le_bytes());
    table.push(1); // length in 16-byte units
    table.push(SPEC_REVISION);
    table.push(0); // checksum, patched below
    table.extend_from_slice(&[0u8; 5]);
    table[10] = checksum(&table);
    table.extend_from_slice(&config);
    Ok(table)
}

/// Writes the MP table for `vcpus` CPUs at [`EBDA_START`].
pub fn write(mem: &GuestMemoryMmap, vcpus: u8) -> Result<(), ArchError> {
    let table = build(vcpus)?;
    let addr = GuestAddress(EBDA_START);
    mem.write_slice(&table, addr).map_err(mem_err("MP table", addr))
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
    }

    #[test]
    fn checksums_make_both_structures_sum_to_zero() {
        for vcpus in [1u8, 2, 8, MAX_VCPUS] {
            let table = build(vcpus).unwrap();
            assert_eq!(&table[0..4], b"_MP_");
            assert_eq!(sum(&table[..16]), 0, "floating pointer checksum, {vcpus} vCPUs");
            let config = &table[16..];
            assert_eq!(&config[0..4], b"PCMP");
            let len = u16::from_le_bytes([config[4], config[5]]) as usize;
            assert_eq!(len, config.len());
            assert_eq!(sum(config), 0, "config table checksum, {vcpus} vCPUs");
            let entry_count = u16::from_le_bytes([config[34], config[35]]);
            assert_eq!(
                entry_count as u32,
                u32::from(vcpus) + 2 + u32::from(IOAPIC_PINS) + 2
            );
        }
    }

    #[test]
    fn floating_pointer_points_at_config_table_and_processors_are_listed() {
        let table = build(2).unwrap();
        let ptr = u32::from_le_bytes([table[4], table[5], table[6], table[7]]);
        assert_eq!(u64::from(ptr), EBDA_START + 16);
        let first_entry = &table[16 + CONFIG_HEADER_BYTES..];
        assert_eq!(first_entry[0], ENTRY_PROCESSOR);
        assert_eq!(first_entry[1], 0);
        assert_eq!(first_entry[3], CPU_ENABLED | CPU_BOOT_PROCESSOR);
        let second = &first_entry[PROCESSOR_ENTRY_BYTES..];
        assert_eq!(
            (second[0], second[1], second[3]),
            (ENTRY_PROCESSOR, 1, CPU_ENABLED)
        );
    }

    #[test]
    fn zero_or_too_many_vcpus_are_rejected() {
        assert!(matches!(build(0), Err(ArchError::TooManyVcpus { vcpus: 0, .. })));
        assert!(matches!(
            build(255),
            Err(ArchError::TooManyVcpus { vcpus: 255, .. })
        ));
    }
}
