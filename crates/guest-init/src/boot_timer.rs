//! The boot timer: one byte written to an I/O port that the VMM timestamps when the write exits,
//! as Firecracker's boot timer does. It marks "guest init reached" on the host's clock.
//!
//! The port and value are the VMM's (`microvm::layout::BOOT_TIMER_PORT` and
//! `BOOT_TIMER_INIT_VALUE`); they are repeated here because the guest init must not link the VMM.
//! Under a VMM without the device (QEMU) the write goes to an unassigned port and is ignored.

use std::arch::asm;
use std::io;

/// I/O port of the boot timer (`microvm::layout::BOOT_TIMER_PORT`).
pub const BOOT_TIMER_PORT: u16 = 0x440;
/// The byte init writes (`microvm::layout::BOOT_TIMER_INIT_VALUE`).
pub const BOOT_TIMER_INIT_VALUE: u8 = 0x7b;

/// Signals the boot timer. Needs CAP_SYS_RAWIO (init runs as root).
pub fn signal() -> io::Result<()> {
    // SAFETY: ioperm only changes this process's I/O permission bitmap; it touches no memory of ours.
    let rc = unsafe { libc::ioperm(libc::c_ulong::from(BOOT_TIMER_PORT), 1, 1) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ioperm above granted access to exactly this port, so `out` cannot fault, and the boot
    // timer is write-only: the write has no effect on this process's memory or state.
    unsafe { outb(BOOT_TIMER_PORT, BOOT_TIMER_INIT_VALUE) };
    Ok(())
}

/// Writes `value` to I/O port `port`.
///
/// # Safety
/// The caller must have I/O permission for `port` (ioperm/iopl), or the instruction raises #GP
/// (SIGSEGV), and the write must not reconfigure hardware the process relies on.
unsafe fn outb(port: u16, value: u8) {
    // SAFETY: upheld by the caller (see above); the instruction touches no memory and no stack.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}
