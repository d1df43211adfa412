//! Emulated devices, one file per device, and the bus that routes port and MMIO accesses to them.

pub mod boot_timer;
pub mod bus;
pub mod i8042;
pub mod serial;
pub mod virtio;

use std::io;

use vmm_sys_util::eventfd::EventFd;

/// A guest interrupt line as a device sees it. The VMM passes an irqfd-registered [`EventFd`];
/// tests pass a counter.
pub trait Interrupt: Send + Sync {
    fn trigger(&self) -> io::Result<()>;
}

impl Interrupt for EventFd {
    fn trigger(&self) -> io::Result<()> {
        self.write(1)
    }
}

/// The tests' interrupt line: counts how often a device raised it.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct CountingInterrupt(pub std::sync::atomic::AtomicUsize);

#[cfg(test)]
impl Interrupt for CountingInterrupt {
    fn trigger(&self) -> io::Result<()> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
