//! The zero page (`struct boot_params`) of the Linux x86 boot protocol, its e820 memory map and the
//! command line it points to.
//!
//! The VMM enters the kernel at its 64-bit entry point with `rsi` = [`ZERO_PAGE_START`]; the kernel
//! reads the e820 map, the command-line pointer and, for a bzImage, the setup header it was built with.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{addr32, mem_err, ArchError};
use crate::layout::{CMDLINE_MAX_BYTES, CMDLINE_START, EBDA_START, HIMEM_START, RAM_START, ZERO_PAGE_START};

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;
/// `boot_flag` every valid setup header carries.
pub const BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `header` = "HdrS".
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader` for a loader without an assigned ID.
pub const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `kernel_alignment` Linux expects when the loader does not relocate.
pub const KERNEL_ALIGNMENT_BYTES: u32 = 0x100_0000;
/// `loadflags` bit: the protected-mode code is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 0x01;
/// `loadflags` bit: the heap end pointer is valid.
pub const CAN_USE_HEAP: u8 = 0x80;

/// One e820 entry, in host form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// Entries in [`e820_map`] (the zero page has room for 128).
pub const E820_ENTRIES: u8 = 3;
const _: () = assert!(CMDLINE_MAX_BYTES <= u32::MAX as usize);

/// The e820 map for `ram_bytes` of guest RAM starting at 0: conventional memory up to the EBDA, the
/// EBDA..1 MiB hole reserved, and everything from 1 MiB to the end of RAM.
pub fn e820_map(ram_bytes: u64) -> [E820Entry; E820_ENTRIES as usize] {
    let ram_end = RAM_START + ram_bytes;
    [
        E820Entry {
            addr: RAM_START,
            size: EBDA_START - RAM_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: EBDA_START,
            size: HIMEM_START - EBDA_START,
            kind: E820_RESERVED,
        },
        E820Entry {
            addr: HIMEM_START,
            size: ram_end.saturating_sub(HIMEM_START),
            kind: E820_RAM,
        },
    ]
}

/// Builds the zero page: the kernel's own setup header when it came from a bzImage (so the kernel
/// sees the fields it was built with), the loader fields, the command-line pointer and the e820 map.
pub fn build_boot_params(
    kernel_setup_header: Option<setup_header>,
    cmdline_len_with_nul: usize,
    ram_bytes: u64,
) -> boot_params {
    let mut params = boot_params::default();
    if let Some(hdr) = kernel_setup_header {
        params.hdr = hdr;
    }
    params.hdr.boot_flag = BOOT_FLAG_MAGIC;
    params.hdr.header = HDRS_MAGIC;
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.loadflags |= LOADED_HIGH | CAN_USE_HEAP;
    params.hdr.heap_end_ptr = 0xfe00;
    params.hdr.cmd_line_ptr = addr32(CMDLINE_START);
    // At most CMDLINE_MAX_BYTES, which fits in the 32-bit field (asserted below).
    #[allow(clippy::cast_possible_truncation)]
    let cmdline_size = cmdline_len_with_nul.min(CMDLINE_MAX_BYTES) as u32;
    params.hdr.cmdline_size = cmdline_size;
    if params.hdr.kernel_alignment == 0 {
        params.hdr.kernel_alignment = KERNEL_ALIGNMENT_BYTES;
    }
    let map = e820_map(ram_bytes);
    for (slot, entry) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind,
        };
    }
    params.e820_entries = E820_ENTRIES;
    params
}

/// Writes the command line (NUL-terminated) at [`CMDLINE_START`] and the zero page at
/// [`ZERO_PAGE_START`].
pub fn write_boot_params(
    mem: &GuestMemoryMmap,
    params: &boot_params,
    cmdline: &std::ffi::CStr,
) -> Result<(), ArchError> {
    let bytes = cmdline.to_bytes_with_nul();
    let cmdline_addr = GuestAddress(CMDLINE_START);
    mem.write_slice(bytes, cmdline_addr)
        .map_err(mem_err("command line", cmdline_addr))?;
    let zero_page = GuestAddress(ZERO_PAGE_START);
    mem.write_obj(*params, zero_page)
        .map_err(mem_err("zero page", zero_page))
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::ffi::CString;

    use vm_memory::GuestMemoryMmap;

    use super::*;

    const MIB: u64 = 1 << 20;

    fn read_u32(mem: &GuestMemoryMmap, addr: u64) -> u32 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    #[test]
    fn zero_page_bytes_carry_signature_cmdline_pointer_and_e820() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), (64 * MIB) as usize)]).unwrap();
        let cmdline = CString::new("console=ttyS0 reboot=k").unwrap();
        let params = build_boot_params(None, cmdline.as_bytes_with_nul().len(), 64 * MIB);
        write_boot_params(&mem, &params, &cmdline).unwrap();

        let zp = ZERO_PAGE_START;
        // Offsets from Documentation/arch/x86/zero-page.rst and boot.rst.
        let boot_flag: u16 = mem.read_obj(GuestAddress(zp + 0x1fe)).unwrap();
        assert_eq!(boot_flag, 0xaa55);
        assert_eq!(read_u32(&mem, zp + 0x202), 0x5372_6448);
        assert_eq!(read_u32(&mem, zp + 0x228), CMDLINE_START as u32);
        assert_eq!(
            read_u32(&mem, zp + 0x238),
            cmdline.as_bytes_with_nul().len() as u32
        );
        let loader: u8 = mem.read_obj(GuestAddress(zp + 0x210)).unwrap();
        assert_eq!(loader, 0xff);
        let entries: u8 = mem.read_obj(GuestAddress(zp + 0x1e8)).unwrap();
        assert_eq!(entries, 3);
        // e820_table at 0x2d0, 20 bytes per entry (addr u64, size u64, type u32).
        let entry = |i: u64| -> (u64, u64, u32) {
            let base = zp + 0x2d0 + 20 * i;
            (
                mem.read_obj(GuestAddress(base)).unwrap(),
                mem.read_obj(GuestAddress(base + 8)).unwrap(),
                mem.read_obj(GuestAddress(base + 16)).unwrap(),
            )
        };
        assert_eq!(entry(0), (0, EBDA_START, E820_RAM));
        assert_eq!(entry(1), (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED));
        assert_eq!(entry(2), (HIMEM_START, 64 * MIB - HIMEM_START, E820_RAM));

        let mut placed = vec![0u8; cmdline.as_bytes_with_nul().len()];
        mem.read_slice(&mut placed, GuestAddress(CMDLINE_START)).unwrap();
        assert_eq!(placed, cmdline.as_bytes_with_nul());
    }

    #[test]
    fn bzimage_setup_header_fields_are_kept() {
        let hdr = setup_header {
            version: 0x020f,
            setup_sects: 27,
            kernel_alignment: 0x20_0000,
            ..Default::default()
        };
        let params = build_boot_params(Some(hdr), 10, 32 * MIB);
        assert_eq!({ params.hdr.version }, 0x020f);
        assert_eq!({ params.hdr.setup_sects }, 27);
        assert_eq!({ params.hdr.kernel_alignment }, 0x20_0000);
        assert_eq!({ params.hdr.type_of_loader }, LOADER_TYPE_UNDEFINED);
    }
}
