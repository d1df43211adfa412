//! The bits of the i8042 keyboard controller a Linux guest touches: command 0xfe on port 0x64
//! pulses the reset line, which this VMM treats as power-off (Linux with `reboot=k` does this), and
//! the controller configuration byte (CTR) can be read and written, as Firecracker's i8042 allows.
//!
//! Why the CTR: Linux's i8042 driver starts by reading it (command 0x20, then waiting for the
//! output-buffer-full status bit). A controller that never answers makes the driver poll port 0x64
//! for its whole timeout, 10 000 rounds of `udelay(50)`: half a second of every boot even on
//! hardware KVM, seen as 2.6 s without console output in the nested-KVM L1 before
//! "i8042: Can't read CTR while initializing i8042". With the CTR answered and Firecracker's
//! `i8042.noaux i8042.nomux i8042.dumbkbd` on the command line (see
//! [`crate::builder::BASE_CMDLINE`]), the driver asks nothing else that waits.

use super::bus::{BusAction, BusDevice};
use crate::layout::{I8042_COMMAND_PORT, I8042_DATA_PORT, I8042_RESET_COMMAND};

/// Offset of the command/status port from the device's base ([`I8042_DATA_PORT`]).
pub const COMMAND_OFFSET: u64 = (I8042_COMMAND_PORT - I8042_DATA_PORT) as u64;
/// Ports 0x60..=0x64.
pub const PORT_RANGE_LEN: u64 = COMMAND_OFFSET + 1;

/// Command: put the CTR in the output buffer.
pub const CMD_READ_CTR: u8 = 0x20;
/// Command: the next data-port byte is the new CTR.
pub const CMD_WRITE_CTR: u8 = 0x60;
/// Command: put the output port in the output buffer.
pub const CMD_READ_OUTP: u8 = 0xd0;
/// Command: the next data-port byte is the new output port.
pub const CMD_WRITE_OUTP: u8 = 0xd1;
/// Status: the output buffer holds a byte for the guest.
pub const STATUS_OUTPUT_FULL: u8 = 0x01;
/// Status: the last write to the input buffer was a command (its data byte is awaited).
pub const STATUS_COMMAND: u8 = 0x08;
/// Status: keyboard not inhibited.
pub const STATUS_KBD_ENABLED: u8 = 0x10;
/// CTR at power-on: keyboard interrupt enabled, POST passed (Firecracker's initial value).
pub const CTR_INITIAL: u8 = 0x01 | 0x04;

#[derive(Debug)]
pub struct I8042 {
    status: u8,
    ctr: u8,
    output_port: u8,
    /// The command whose data byte the next data-port write carries.
    pending: Option<u8>,
    /// The byte waiting in the output buffer.
    output: Option<u8>,
}

impl Default for I8042 {
    fn default() -> Self {
        I8042 {
            status: STATUS_KBD_ENABLED,
            ctr: CTR_INITIAL,
            output_port: 0,
            pending: None,
            output: None,
        }
    }
}

impl I8042 {
    fn put_output(&mut self, byte: u8) {
        self.output = Some(byte);
        self.status |= STATUS_OUTPUT_FULL;
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let byte = match offset {
            COMMAND_OFFSET => self.status,
            0 => {
                self.status &= !STATUS_OUTPUT_FULL;
                // No keyboard behind it: an empty buffer reads as 0.
                self.output.take().unwrap_or(0)
            }
            _ => 0,
        };
        if let Some(first) = data.first_mut() {
            *first = byte;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> BusAction {
        let Some(&byte) = data.first() else {
            return BusAction::Continue;
        };
        match offset {
            COMMAND_OFFSET => {
                self.pending = None;
                self.status &= !STATUS_COMMAND;
                match byte {
                    I8042_RESET_COMMAND => return BusAction::Reset,
                    CMD_READ_CTR => self.put_output(self.ctr),
                    CMD_READ_OUTP => self.put_output(self.output_port),
                    CMD_WRITE_CTR | CMD_WRITE_OUTP => {
                        self.pending = Some(byte);
                        self.status |= STATUS_COMMAND;
                    }
                    // Self-tests, port enables, LEDs: nothing behind them to act on.
                    _ => {}
                }
            }
            0 => {
                match self.pending.take() {
                    Some(CMD_WRITE_CTR) => self.ctr = byte,
                    Some(CMD_WRITE_OUTP) => self.output_port = byte,
                    // A byte for the (absent) keyboard: dropped.
                    _ => {}
                }
                self.status &= !STATUS_COMMAND;
            }
            _ => {}
        }
        BusAction::Continue
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn read(dev: &mut I8042, offset: u64) -> u8 {
        let mut b = [0xffu8];
        dev.read(offset, &mut b);
        b[0]
    }

    #[test]
    fn only_fe_on_the_command_port_resets() {
        let mut dev = I8042::default();
        assert_eq!(dev.write(COMMAND_OFFSET, &[0xfe]), BusAction::Reset);
        assert_eq!(dev.write(COMMAND_OFFSET, &[0xd1]), BusAction::Continue);
        assert_eq!(dev.write(0, &[0xfe]), BusAction::Continue);
        assert_eq!(read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
    }

    /// Linux's i8042 probe: read the CTR (must answer at once, or the driver polls for half a
    /// second), write it back changed, read it again. Firecracker's i8042 answers the same way.
    #[test]
    fn the_ctr_is_answered_and_can_be_rewritten_as_linux_probes_it() {
        let mut dev = I8042::default();
        assert_eq!(
            read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL,
            0,
            "nothing pending"
        );
        dev.write(COMMAND_OFFSET, &[CMD_READ_CTR]);
        assert_ne!(
            read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL,
            0,
            "the CTR is waiting"
        );
        assert_eq!(read(&mut dev, 0), CTR_INITIAL);
        assert_eq!(
            read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL,
            0,
            "and was taken"
        );

        dev.write(COMMAND_OFFSET, &[CMD_WRITE_CTR]);
        assert_ne!(read(&mut dev, COMMAND_OFFSET) & STATUS_COMMAND, 0);
        dev.write(0, &[0x45]);
        assert_eq!(read(&mut dev, COMMAND_OFFSET) & STATUS_COMMAND, 0);
        dev.write(COMMAND_OFFSET, &[CMD_READ_CTR]);
        assert_eq!(read(&mut dev, 0), 0x45);

        // A data byte with no command pending goes to the absent keyboard, not into the CTR.
        dev.write(0, &[0xff]);
        dev.write(COMMAND_OFFSET, &[CMD_READ_CTR]);
        assert_eq!(read(&mut dev, 0), 0x45);

        dev.write(COMMAND_OFFSET, &[CMD_WRITE_OUTP]);
        dev.write(0, &[0x03]);
        dev.write(COMMAND_OFFSET, &[CMD_READ_OUTP]);
        assert_eq!(read(&mut dev, 0), 0x03);
    }
}
