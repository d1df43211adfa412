//! COM1: vm-superio's 8250/16550 emulation, its output going to the console sink and its interrupt
//! to IRQ 4 through an irqfd. The interrupt matters: once the guest's userspace writes to the tty,
//! Linux's 8250 driver waits for THRE interrupts instead of polling LSR.

use std::io::Write;
use std::sync::Arc;

use vm_superio::{Serial, Trigger};

use super::bus::{BusAction, BusDevice};
use super::Interrupt;
use crate::events::VmObserver;

/// Adapts an [`Interrupt`] to vm-superio's trigger.
pub struct SerialInterrupt(pub Arc<dyn Interrupt>);

impl Trigger for SerialInterrupt {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.trigger()
    }
}

pub type ConsoleSink = Box<dyn Write + Send>;

pub struct SerialConsole {
    uart: Serial<SerialInterrupt, vm_superio::serial::NoEvents, ConsoleSink>,
    observer: Arc<dyn VmObserver>,
    write_failed: bool,
}

impl SerialConsole {
    pub fn new(interrupt: Arc<dyn Interrupt>, sink: ConsoleSink, observer: Arc<dyn VmObserver>) -> Self {
        SerialConsole {
            uart: Serial::new(SerialInterrupt(interrupt), sink),
            observer,
            write_failed: false,
        }
    }
}

impl BusDevice for SerialConsole {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // The bus routes only offsets inside the 8-port range here; any other reads as no register.
        let Ok(register) = u8::try_from(offset) else {
            data.fill(0xff);
            return;
        };
        if let Some(first) = data.first_mut() {
            *first = self.uart.read(register);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> BusAction {
        // As in `read`: an offset outside the port range is no register; the write is dropped.
        let Ok(register) = u8::try_from(offset) else {
            return BusAction::Continue;
        };
        if let Some(&value) = data.first() {
            if let Err(err) = self.uart.write(register, value) {
                // A closed console (reader gone) must not stop the guest; say so once.
                if !self.write_failed {
                    self.write_failed = true;
                    self.observer
                        .warning(&format!("serial console output failed: {err:?}"));
                }
            }
        }
        BusAction::Continue
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    use super::*;
    use crate::devices::CountingInterrupt;
    use crate::events::NullObserver;

    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);
    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_reach_the_sink_and_thre_interrupts_fire_when_enabled() {
        let irq = Arc::new(CountingInterrupt::default());
        let out = SharedBuf::default();
        let mut serial = SerialConsole::new(irq.clone(), Box::new(out.clone()), Arc::new(NullObserver));
        // IER bit 1: transmitter-holding-register-empty interrupt.
        serial.write(1, &[0x02]);
        let mut iir = [0u8];
        serial.read(2, &mut iir);
        let after_enable = irq.0.load(Ordering::SeqCst);
        for (i, b) in b"hi\n".iter().enumerate() {
            serial.write(0, &[*b]);
            assert_eq!(
                irq.0.load(Ordering::SeqCst),
                after_enable + i + 1,
                "THRE interrupt after byte {i}"
            );
            // The driver's interrupt handler reads IIR (THR empty = 0x02), which acknowledges it.
            serial.read(2, &mut iir);
            assert_eq!(iir[0] & 0x0f, 0x02);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi\n");
        let mut lsr = [0u8];
        serial.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "THR empty");
    }
}
