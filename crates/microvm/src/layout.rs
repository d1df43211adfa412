//! Every guest-physical address, I/O port and interrupt line the VMM uses, in one place.
//!
//! The low-memory map follows the Linux x86 boot protocol and Firecracker's `arch/x86_64/layout.rs`:
//!
//! ```text
//! 0x0000_0500  GDT (4 entries)             0x0000_0520  IDT (empty)
//! 0x0000_7000  zero page (boot_params)     0x0000_8ff0  boot stack top
//! 0x0000_9000  PML4   0x0000_a000 PDPT     0x0000_b000..0x0000_f000 four PDs (2 MiB pages, 4 GiB)
//! 0x0002_0000  kernel command line         0x0009_fc00  EBDA: MP table
//! 0x0010_0000  high memory: kernel (ELF p_paddr or bzImage protected-mode code)
//! 0xd000_0000  virtio-mmio window, 4 KiB per device, IRQ 5, 6, ...
//! 0xfec0_0000  IOAPIC                      0xfee0_0000  local APIC
//! 0xfffb_d000  KVM's TSS (three pages)
//! ```

/// Guest RAM starts at guest-physical 0 and is one contiguous region below the MMIO window.
pub const RAM_START: u64 = 0;
/// The boot-time GDT.
pub const BOOT_GDT_START: u64 = 0x500;
/// Number of GDT entries: null, 64-bit code, data, TSS.
pub const BOOT_GDT_ENTRIES: usize = 4;
/// The boot-time IDT (a single zero entry; the guest installs its own).
pub const BOOT_IDT_START: u64 = 0x520;
/// The zero page (`struct boot_params`); `rsi` points here at the 64-bit entry.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer for the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 table.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// First of [`PDE_COUNT`] page directories, one per GiB identity-mapped with 2 MiB pages.
pub const PDE_START: u64 = 0xb000;
/// Page directories written: 4 GiB identity-mapped, so the MMIO window is reachable before the guest
/// builds its own tables.
pub const PDE_COUNT: u64 = 4;
/// The kernel command line (NUL-terminated).
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line the VMM writes (Linux x86 `COMMAND_LINE_SIZE`).
pub const CMDLINE_MAX_BYTES: usize = 2048;
/// Extended BIOS data area: the MP table lives here, and e820 RAM below 1 MiB ends here.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of high memory, where kernels are loaded.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the MMIO hole below 4 GiB; guest RAM must end below it.
pub const MMIO_WINDOW_START: u64 = 0xd000_0000;
/// Size of the register window of one virtio-mmio device.
pub const VIRTIO_MMIO_DEVICE_BYTES: u64 = 0x1000;
/// Largest number of virtio-mmio devices (IRQs 5..=23 on the IOAPIC).
pub const VIRTIO_MMIO_MAX_DEVICES: usize = 19;
/// IRQ of the first virtio-mmio device; device `n` uses `VIRTIO_IRQ_BASE + n`.
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// IOAPIC registers.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Local APIC registers.
pub const APIC_START: u64 = 0xfee0_0000;
/// KVM's three-page TSS region (`KVM_SET_TSS_ADDR`), just below the 4 GiB BIOS area.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// Number of IOAPIC pins (and thus GSIs) the in-kernel irqchip routes.
pub const IOAPIC_PINS: u8 = 24;

/// COM1 (8250 UART) base port.
pub const SERIAL_PORT_BASE: u16 = 0x3f8;
/// COM1 has eight registers.
pub const SERIAL_PORT_LEN: u16 = 8;
/// COM1's IRQ line.
pub const SERIAL_IRQ: u32 = 4;
/// i8042 command port; writing [`I8042_RESET_COMMAND`] resets (here: powers off) the machine.
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// The i8042 data port (reads answer "no data").
pub const I8042_DATA_PORT: u16 = 0x60;
/// The i8042 "pulse reset line" command Linux sends with `reboot=k`.
pub const I8042_RESET_COMMAND: u8 = 0xfe;
/// Boot-timer port: the guest init writes one byte here as soon as it runs.
pub const BOOT_TIMER_PORT: u16 = 0x440;
/// The byte guest init writes to the boot timer (the device accepts any value and reports it).
pub const BOOT_TIMER_INIT_VALUE: u8 = 0x7b;

/// Guest-physical base address of virtio-mmio device `index`.
pub const fn virtio_mmio_base(index: usize) -> u64 {
    MMIO_WINDOW_START + index as u64 * VIRTIO_MMIO_DEVICE_BYTES
}

/// IRQ line of virtio-mmio device `index`.
#[allow(clippy::cast_possible_truncation)] // index < VIRTIO_MMIO_MAX_DEVICES
pub const fn virtio_mmio_irq(index: usize) -> u32 {
    VIRTIO_IRQ_BASE + index as u32
}

/// Largest guest RAM the VMM supports: everything must fit below the MMIO window.
pub const MAX_MEMORY_MIB: u64 = (MMIO_WINDOW_START - RAM_START) >> 20;
