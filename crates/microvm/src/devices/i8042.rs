//! The bits of the i8042 keyboard controller a guest uses to reset the machine: command 0xfe on port
//! 0x64 pulses the reset line, which this VMM treats as power-off (Linux with `reboot=k` does this).

use super::bus::{BusAction, BusDevice};
use crate::layout::{I8042_COMMAND_PORT, I8042_DATA_PORT, I8042_RESET_COMMAND};

/// Offset of the command/status port from the device's base ([`I8042_DATA_PORT`]).
pub const COMMAND_OFFSET: u64 = (I8042_COMMAND_PORT - I8042_DATA_PORT) as u64;
/// Ports 0x60..=0x64.
pub const PORT_RANGE_LEN: u64 = COMMAND_OFFSET + 1;

#[derive(Debug, Default)]
pub struct I8042 {}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty; data port: nothing pending.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> BusAction {
        if offset == COMMAND_OFFSET && data.first() == Some(&I8042_RESET_COMMAND) {
            BusAction::Reset
        } else {
            BusAction::Continue
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn only_fe_on_the_command_port_resets() {
        let mut dev = I8042::default();
        assert_eq!(dev.write(COMMAND_OFFSET, &[0xfe]), BusAction::Reset);
        assert_eq!(dev.write(COMMAND_OFFSET, &[0xd1]), BusAction::Continue);
        assert_eq!(dev.write(0, &[0xfe]), BusAction::Continue);
        let mut status = [0xffu8];
        dev.read(COMMAND_OFFSET, &mut status);
        assert_eq!(status, [0]);
    }
}
