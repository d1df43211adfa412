//! The boot timer: guest init writes one byte to [`crate::layout::BOOT_TIMER_PORT`] as early as it
//! can, and the device timestamps that port exit (as Firecracker's boot timer does). The timestamp is
//! taken inside the exit handling, before anything else happens.

use std::sync::Arc;

use super::bus::{BusAction, BusDevice};
use crate::events::{EventKind, VmEvent, VmObserver};

pub struct BootTimer {
    observer: Arc<dyn VmObserver>,
}

impl BootTimer {
    pub fn new(observer: Arc<dyn VmObserver>) -> Self {
        BootTimer { observer }
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> BusAction {
        let event = VmEvent::now(EventKind::BootTimer {
            value: data.first().copied().unwrap_or(0),
        });
        self.observer.event(event);
        BusAction::Continue
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<VmEvent>>);
    impl VmObserver for Recorder {
        fn event(&self, event: VmEvent) {
            self.0.lock().unwrap().push(event);
        }
        fn warning(&self, _message: &str) {}
    }

    #[test]
    fn a_write_is_timestamped_with_its_value() {
        let recorder = Arc::new(Recorder::default());
        let mut timer = BootTimer::new(recorder.clone());
        let before = crate::events::monotonic_now_ns();
        timer.write(0, &[0x7b]);
        let events = recorder.0.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::BootTimer { value: 0x7b });
        assert!(events[0].monotonic_ns >= before);
    }
}
