//! Routes a port or MMIO access to the device whose range contains it. One [`Bus`] for port I/O and
//! one for MMIO; vCPU threads share both.

use std::sync::{Arc, Mutex, MutexGuard};

/// What a write asks the VM to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusAction {
    Continue,
    /// The guest asked to reset the machine; the VMM powers it off.
    Reset,
}

/// A device on a bus. `offset` is relative to the start of the device's range.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]) -> BusAction;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    #[error("bus range {base:#x}+{len:#x} is empty or wraps around")]
    BadRange { base: u64, len: u64 },
}

struct BusRange {
    base: u64,
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// A set of non-overlapping ranges, each owned by one device.
#[derive(Default)]
pub struct Bus {
    ranges: Vec<BusRange>,
}

fn lock<'a>(device: &'a Mutex<dyn BusDevice + 'static>) -> MutexGuard<'a, dyn BusDevice + 'static> {
    // A device that panicked mid-access left consistent-enough state for further accesses; the VMM
    // keeps serving the guest rather than propagating the panic.
    device.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Bus {
    pub fn new() -> Self {
        Bus::default()
    }

    pub fn insert(&mut self, base: u64, len: u64, device: Arc<Mutex<dyn BusDevice>>) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::BadRange { base, len })?;
        if self.ranges.iter().any(|r| base < r.base + r.len && r.base < end) {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.push(BusRange { base, len, device });
        self.ranges.sort_by_key(|r| r.base);
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(&BusRange, u64)> {
        let idx = self.ranges.partition_point(|r| r.base <= addr).checked_sub(1)?;
        let range = &self.ranges[idx];
        (addr - range.base < range.len).then_some((range, addr - range.base))
    }

    /// Reads from the device at `addr`; `false` when no device claims it.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((range, offset)) => {
                lock(&range.device).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Writes to the device at `addr`; `None` when no device claims it.
    pub fn write(&self, addr: u64, data: &[u8]) -> Option<BusAction> {
        self.find(addr)
            .map(|(range, offset)| lock(&range.device).write(offset, data))
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    struct Recorder {
        last_write: Option<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> BusAction {
            self.last_write = Some((offset, data.to_vec()));
            BusAction::Continue
        }
    }

    #[test]
    fn accesses_route_by_range_and_unknown_addresses_are_reported() {
        let mut bus = Bus::new();
        let a = Arc::new(Mutex::new(Recorder { last_write: None }));
        bus.insert(0x3f8, 8, a.clone()).unwrap();
        bus.insert(0x440, 1, Arc::new(Mutex::new(Recorder { last_write: None })))
            .unwrap();
        let mut data = [0u8; 1];
        assert!(bus.read(0x3fd, &mut data));
        assert_eq!(data[0], 5);
        assert_eq!(bus.write(0x3f9, &[7]), Some(BusAction::Continue));
        assert_eq!(a.lock().unwrap().last_write, Some((1, vec![7])));
        assert!(!bus.read(0x400, &mut data));
        assert!(!bus.read(0x3f7, &mut data));
        assert_eq!(bus.write(0x441, &[1]), None);
        assert_eq!(
            bus.insert(0x3fc, 8, Arc::new(Mutex::new(Recorder { last_write: None }))),
            Err(BusError::Overlap { base: 0x3fc, len: 8 })
        );
        assert!(matches!(
            bus.insert(u64::MAX, 2, a.clone()),
            Err(BusError::BadRange { .. })
        ));
    }
}
