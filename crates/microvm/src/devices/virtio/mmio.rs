//! The virtio-mmio (version 2) transport: the register window at `0xd000_0000 + 4 KiB * n` and the
//! device-status state machine of virtio 1.x §3.1 / §4.2.
//!
//! The driver resets (status 0), sets ACKNOWLEDGE and DRIVER, reads device features, writes the
//! features it accepts, sets FEATURES_OK (which the device keeps only if the accepted features are a
//! subset of the offered ones and include VERSION_1), configures each queue (size, three ring
//! addresses, ready) and sets DRIVER_OK. Anything out of order is ignored (and reported), never fatal.
//!
//! Requests are not served here. Each queue has an eventfd: the VMM registers it with KVM as an
//! ioeventfd on QueueNotify (matching the queue number), so a notification never leaves the kernel
//! and wakes the I/O thread ([`super::event_loop`]) instead of the vCPU. A QueueNotify write that does
//! reach the transport (no ioeventfd, a value that matches no queue) is forwarded to the same eventfd.
//! The device and its queues live in [`VirtioShared`] behind one lock, which the vCPU thread takes
//! only for configuration (queue registers, config space, status changes); the interrupt status is
//! an atomic both sides update without it.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED,
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::VirtioDevice;
use crate::devices::bus::{BusAction, BusDevice};
use crate::devices::Interrupt;
use crate::events::VmObserver;

/// "virt" in little-endian.
pub const MMIO_MAGIC: u32 = 0x7472_6976;
/// The modern (non-legacy) virtio-mmio layout.
pub const MMIO_VERSION: u32 = 2;
/// Vendor ID reported to the guest ("CVB").
pub const VENDOR_ID: u32 = 0x0042_5643;

/// The device and its queues, behind [`VirtioShared`]'s lock.
pub struct DeviceState {
    pub device: Box<dyn VirtioDevice>,
    pub queues: Vec<Queue>,
    /// DRIVER_OK was accepted and no reset since: requests may be served.
    active: bool,
}

/// Everything the I/O thread needs to serve one device: the device with its queues, the queues'
/// notification eventfds, the interrupt, and the interrupt status register shared with the
/// transport.
pub struct VirtioShared {
    name: String,
    state: Mutex<DeviceState>,
    interrupt_status: AtomicU32,
    interrupt: Arc<dyn Interrupt>,
    mem: GuestMemoryMmap,
    observer: Arc<dyn VmObserver>,
    queue_events: Vec<EventFd>,
    /// A duplicate of the device's host descriptor (the tap), for the I/O thread's epoll set.
    host_fd: Option<OwnedFd>,
}

impl VirtioShared {
    /// A device named `name` (in reports), with one eventfd per queue.
    pub fn new(
        name: &str,
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn Interrupt>,
        observer: Arc<dyn VmObserver>,
    ) -> std::io::Result<Self> {
        let queues: Vec<Queue> = device
            .queue_max_sizes()
            .iter()
            .filter_map(|&max| Queue::new(max).ok())
            .collect();
        let queue_events = queues
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<std::io::Result<Vec<_>>>()?;
        let host_fd = device.host_fd().map(|fd| fd.try_clone_to_owned()).transpose()?;
        Ok(VirtioShared {
            name: name.to_string(),
            state: Mutex::new(DeviceState {
                device,
                queues,
                active: false,
            }),
            interrupt_status: AtomicU32::new(0),
            interrupt,
            mem,
            observer,
            queue_events,
            host_fd,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// One eventfd per queue, in queue order: the ioeventfds of QueueNotify.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    pub fn host_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.host_fd.as_ref().map(AsFd::as_fd)
    }

    /// The device lock; a panic elsewhere while holding it leaves state a reset can recover.
    pub fn lock(&self) -> MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device's counters.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        self.lock().device.counters()
    }

    fn signal_used(&self) {
        self.interrupt_status
            .fetch_or(VIRTIO_MMIO_INT_VRING, Ordering::SeqCst);
        if let Err(err) = self.interrupt.trigger() {
            self.observer
                .warning(&format!("{}: interrupt failed: {err}", self.name));
        }
    }

    /// Serves queue `index` (its notification was consumed by the caller).
    pub fn serve_queue(&self, index: usize) {
        let mut guard = self.lock();
        let state = &mut *guard;
        if !state.active {
            self.observer.warning(&format!(
                "{}: notify of queue {index} before DRIVER_OK ignored",
                self.name
            ));
            return;
        }
        let Some(queue) = state.queues.get_mut(index) else {
            return;
        };
        if !queue.ready() {
            return;
        }
        if state.device.process_queue(index, queue, &self.mem) {
            drop(guard);
            self.signal_used();
        }
    }

    /// Serves the host descriptor's readiness.
    pub fn serve_host_fd(&self) {
        let mut guard = self.lock();
        let state = &mut *guard;
        if !state.active {
            return;
        }
        if state.device.process_host_fd(&mut state.queues, &self.mem) {
            drop(guard);
            self.signal_used();
        }
    }

    /// Serves every queue whose eventfd has a pending notification. The I/O thread's last pass
    /// before it ends (nothing notified is left unserved), and the tests' stand-in for it.
    pub fn serve_pending(&self) {
        for index in 0..self.queue_events.len() {
            // Non-blocking: `Err(WouldBlock)` means no notification is pending.
            if self.queue_events[index].read().is_ok() {
                self.serve_queue(index);
            }
        }
    }
}

pub struct MmioTransport {
    shared: Arc<VirtioShared>,
    device_type: u32,
    offered_features: u64,
    observer: Arc<dyn VmObserver>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    config_generation: u32,
}

impl MmioTransport {
    pub fn new(shared: Arc<VirtioShared>) -> Self {
        let (device_type, offered_features) = {
            let state = shared.lock();
            (state.device.device_type(), state.device.features())
        };
        let observer = shared.observer.clone();
        MmioTransport {
            shared,
            device_type,
            offered_features,
            observer,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            config_generation: 0,
        }
    }

    /// The state the I/O thread serves.
    pub fn shared(&self) -> &Arc<VirtioShared> {
        &self.shared
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    fn reset(&mut self) {
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.shared.interrupt_status.store(0, Ordering::SeqCst);
        let mut state = self.shared.lock();
        state.active = false;
        for queue in &mut state.queues {
            queue.reset();
        }
        state.device.reset();
    }

    /// Queue registers may change only between FEATURES_OK and DRIVER_OK.
    fn queue_configurable(&self) -> bool {
        self.status & VIRTIO_CONFIG_S_FEATURES_OK != 0 && self.status & VIRTIO_CONFIG_S_DRIVER_OK == 0
    }

    fn set_status(&mut self, new: u32) {
        if new == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        if new & old != old {
            self.observer.warning(&format!(
                "virtio-mmio: status {old:#x} -> {new:#x} clears bits; ignored"
            ));
            return;
        }
        let added = new & !old;
        let mut accepted = old | (added & (VIRTIO_CONFIG_S_FAILED | VIRTIO_CONFIG_S_ACKNOWLEDGE));
        if added & VIRTIO_CONFIG_S_DRIVER != 0 && accepted & VIRTIO_CONFIG_S_ACKNOWLEDGE != 0 {
            accepted |= VIRTIO_CONFIG_S_DRIVER;
        }
        if added & VIRTIO_CONFIG_S_FEATURES_OK != 0 && accepted & VIRTIO_CONFIG_S_DRIVER != 0 {
            let offered = self.offered_features;
            let subset = self.driver_features & !offered == 0;
            let modern = self.driver_features & (1 << VIRTIO_F_VERSION_1) != 0;
            if subset && modern {
                accepted |= VIRTIO_CONFIG_S_FEATURES_OK;
            } else {
                self.observer.warning(&format!(
                    "virtio-mmio: driver features {:#x} not acceptable (offered {offered:#x}); FEATURES_OK refused",
                    self.driver_features
                ));
            }
        }
        if added & VIRTIO_CONFIG_S_DRIVER_OK != 0 && accepted & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            let mut state = self.shared.lock();
            let mem = &self.shared.mem;
            let all_valid = state.queues.iter().all(|q| !q.ready() || q.is_valid(mem));
            if all_valid {
                accepted |= VIRTIO_CONFIG_S_DRIVER_OK;
                state.active = accepted & VIRTIO_CONFIG_S_FAILED == 0;
            } else {
                self.observer
                    .warning("virtio-mmio: DRIVER_OK with a queue outside guest memory; device FAILED");
                accepted |= VIRTIO_CONFIG_S_FAILED;
            }
        }
        if added & VIRTIO_CONFIG_S_FAILED != 0 {
            self.shared.lock().active = false;
        }
        if accepted != new {
            self.observer.warning(&format!(
                "virtio-mmio: status {old:#x} -> {new:#x} accepted as {accepted:#x}"
            ));
        }
        self.status = accepted;
    }

    /// A QueueNotify write that reached the transport: hand it to the I/O thread.
    fn notify(&mut self, index: u32) {
        let Some(event) = usize::try_from(index)
            .ok()
            .and_then(|i| self.shared.queue_events.get(i))
        else {
            self.observer
                .warning(&format!("virtio-mmio: notify of missing queue {index} ignored"));
            return;
        };
        if let Err(err) = event.write(1) {
            self.observer
                .warning(&format!("virtio-mmio: queue {index} notification lost: {err}"));
        }
    }

    fn read_register(&mut self, offset: u32) -> u32 {
        match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MMIO_MAGIC,
            VIRTIO_MMIO_VERSION => MMIO_VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device_type,
            VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => {
                let [l0, l1, l2, l3, h0, h1, h2, h3] = self.offered_features.to_le_bytes();
                match self.device_features_sel {
                    0 => u32::from_le_bytes([l0, l1, l2, l3]),
                    1 => u32::from_le_bytes([h0, h1, h2, h3]),
                    _ => 0,
                }
            }
            VIRTIO_MMIO_QUEUE_NUM_MAX => {
                let sel = self.queue_sel as usize;
                self.shared
                    .lock()
                    .queues
                    .get(sel)
                    .map_or(0, |q| u32::from(q.max_size()))
            }
            VIRTIO_MMIO_QUEUE_READY => {
                let sel = self.queue_sel as usize;
                self.shared
                    .lock()
                    .queues
                    .get(sel)
                    .map_or(0, |q| u32::from(q.ready()))
            }
            VIRTIO_MMIO_INTERRUPT_STATUS => self.shared.interrupt_status.load(Ordering::SeqCst),
            VIRTIO_MMIO_STATUS => self.status,
            VIRTIO_MMIO_CONFIG_GENERATION => self.config_generation,
            _ => {
                self.observer
                    .warning(&format!("virtio-mmio: read of register {offset:#x} answered 0"));
                0
            }
        }
    }

    fn write_register(&mut self, offset: u32, value: u32) {
        let configurable = self.queue_configurable();
        match offset {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES => {
                if self.status & VIRTIO_CONFIG_S_DRIVER == 0 || self.status & VIRTIO_CONFIG_S_FEATURES_OK != 0
                {
                    self.observer
                        .warning("virtio-mmio: driver features written outside feature negotiation");
                    return;
                }
                match self.driver_features_sel {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
                    1 => {
                        self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                    }
                    _ => {}
                }
            }
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = value,
            VIRTIO_MMIO_STATUS => self.set_status(value),
            VIRTIO_MMIO_INTERRUPT_ACK => {
                self.shared.interrupt_status.fetch_and(!value, Ordering::SeqCst);
            }
            VIRTIO_MMIO_QUEUE_NOTIFY => self.notify(value),
            VIRTIO_MMIO_QUEUE_NUM
            | VIRTIO_MMIO_QUEUE_READY
            | VIRTIO_MMIO_QUEUE_DESC_LOW
            | VIRTIO_MMIO_QUEUE_DESC_HIGH
            | VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | VIRTIO_MMIO_QUEUE_USED_LOW
            | VIRTIO_MMIO_QUEUE_USED_HIGH => {
                if !configurable {
                    self.observer.warning(&format!(
                        "virtio-mmio: queue register {offset:#x} written in status {:#x}; ignored",
                        self.status
                    ));
                    return;
                }
                let sel = self.queue_sel as usize;
                let mut state = self.shared.lock();
                let Some(queue) = state.queues.get_mut(sel) else {
                    return;
                };
                match offset {
                    VIRTIO_MMIO_QUEUE_NUM => match u16::try_from(value) {
                        Ok(size) => queue.set_size(size),
                        Err(_) => self.observer.warning(&format!(
                            "virtio-mmio: queue size {value} does not fit 16 bits; ignored"
                        )),
                    },
                    VIRTIO_MMIO_QUEUE_READY => queue.set_ready(value == 1),
                    VIRTIO_MMIO_QUEUE_DESC_LOW => queue.set_desc_table_address(Some(value), None),
                    VIRTIO_MMIO_QUEUE_DESC_HIGH => queue.set_desc_table_address(None, Some(value)),
                    VIRTIO_MMIO_QUEUE_AVAIL_LOW => queue.set_avail_ring_address(Some(value), None),
                    VIRTIO_MMIO_QUEUE_AVAIL_HIGH => queue.set_avail_ring_address(None, Some(value)),
                    VIRTIO_MMIO_QUEUE_USED_LOW => queue.set_used_ring_address(Some(value), None),
                    _ => queue.set_used_ring_address(None, Some(value)),
                }
            }
            _ => self.observer.warning(&format!(
                "virtio-mmio: write of {value:#x} to register {offset:#x} ignored"
            )),
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let register = match u32::try_from(offset) {
            Ok(register) if register < VIRTIO_MMIO_CONFIG => register,
            _ => {
                self.shared
                    .lock()
                    .device
                    .read_config(offset - u64::from(VIRTIO_MMIO_CONFIG), data);
                return;
            }
        };
        if data.len() != 4 || !offset.is_multiple_of(4) {
            self.observer.warning(&format!(
                "virtio-mmio: {}-byte read at {offset:#x} answered 0xff",
                data.len()
            ));
            data.fill(0xff);
            return;
        }
        let value = self.read_register(register);
        data.copy_from_slice(&value.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> BusAction {
        let Some(register) = u32::try_from(offset).ok().filter(|&r| r < VIRTIO_MMIO_CONFIG) else {
            self.observer.warning(&format!(
                "virtio-mmio: config write at {offset:#x} ignored (read-only config)"
            ));
            return BusAction::Continue;
        };
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            self.observer.warning(&format!(
                "virtio-mmio: {}-byte write at {offset:#x} ignored",
                data.len()
            ));
            return BusAction::Continue;
        };
        if !offset.is_multiple_of(4) {
            self.observer
                .warning(&format!("virtio-mmio: unaligned write at {offset:#x} ignored"));
            return BusAction::Continue;
        }
        self.write_register(register, u32::from_le_bytes(bytes));
        BusAction::Continue
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use vm_memory::GuestAddress;

    use super::*;
    use crate::devices::CountingInterrupt;

    #[derive(Default)]
    struct Warnings(Mutex<Vec<String>>);
    impl VmObserver for Warnings {
        fn event(&self, _event: crate::events::VmEvent) {}
        fn warning(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }

    /// A device that uses every available chain with length 0.
    struct EchoDevice {
        processed: Arc<AtomicUsize>,
    }
    impl VirtioDevice for EchoDevice {
        fn device_type(&self) -> u32 {
            2
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn features(&self) -> u64 {
            (1 << VIRTIO_F_VERSION_1) | (1 << 9)
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn process_queue(&mut self, _index: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool {
            let mut used = false;
            while let Some(chain) = queue.pop_descriptor_chain(mem) {
                let _ = queue.add_used(mem, chain.head_index(), 0);
                self.processed.fetch_add(1, Ordering::SeqCst);
                used = true;
            }
            used
        }
    }

    fn transport() -> (
        MmioTransport,
        Arc<CountingInterrupt>,
        Arc<Warnings>,
        Arc<AtomicUsize>,
    ) {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let irq = Arc::new(CountingInterrupt::default());
        let warnings = Arc::new(Warnings::default());
        let processed = Arc::new(AtomicUsize::new(0));
        let dev = Box::new(EchoDevice {
            processed: processed.clone(),
        });
        (
            MmioTransport::new(Arc::new(
                VirtioShared::new("test", dev, mem, irq.clone(), warnings.clone()).unwrap(),
            )),
            irq,
            warnings,
            processed,
        )
    }

    fn rd(t: &mut MmioTransport, offset: u32) -> u32 {
        let mut b = [0u8; 4];
        t.read(u64::from(offset), &mut b);
        u32::from_le_bytes(b)
    }

    /// Writes a register; a QueueNotify is then served as the I/O thread would.
    fn wr(t: &mut MmioTransport, offset: u32, value: u32) {
        t.write(u64::from(offset), &value.to_le_bytes());
        if offset == VIRTIO_MMIO_QUEUE_NOTIFY {
            t.shared().serve_pending();
        }
    }

    fn negotiate(t: &mut MmioTransport) {
        wr(t, VIRTIO_MMIO_STATUS, 0);
        wr(t, VIRTIO_MMIO_STATUS, 1);
        wr(t, VIRTIO_MMIO_STATUS, 3);
        wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        wr(t, VIRTIO_MMIO_DRIVER_FEATURES, 1);
        wr(t, VIRTIO_MMIO_STATUS, 0xb);
    }

    fn setup_queue(t: &mut MmioTransport) {
        wr(t, VIRTIO_MMIO_QUEUE_SEL, 0);
        wr(t, VIRTIO_MMIO_QUEUE_NUM, 8);
        wr(t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1_0000);
        wr(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x1_1000);
        wr(t, VIRTIO_MMIO_QUEUE_USED_LOW, 0x1_2000);
        wr(t, VIRTIO_MMIO_QUEUE_READY, 1);
    }

    #[test]
    fn identification_registers() {
        let (mut t, ..) = transport();
        assert_eq!(rd(&mut t, VIRTIO_MMIO_MAGIC_VALUE), MMIO_MAGIC);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_VERSION), 2);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_DEVICE_ID), 2);
        wr(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
        wr(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_DEVICE_FEATURES), 1 << 9);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 16);
        let mut cfg = [0u8; 4];
        t.read(0x104, &mut cfg);
        assert_eq!(cfg, [4; 4]);
    }

    #[test]
    fn full_handshake_reaches_driver_ok_and_notify_uses_buffers() {
        let (mut t, irq, _w, processed) = transport();
        negotiate(&mut t);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_STATUS), 0xb);
        setup_queue(&mut t);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_QUEUE_READY), 1);
        wr(&mut t, VIRTIO_MMIO_STATUS, 0xf);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_STATUS), 0xf);
        // One single-descriptor chain: descriptor 0, avail ring entry 0, avail idx 1.
        let mem = t.shared().mem.clone();
        use vm_memory::Bytes;
        mem.write_obj(0x2_0000u64, GuestAddress(0x1_0000)).unwrap();
        mem.write_obj(16u32, GuestAddress(0x1_0008)).unwrap();
        mem.write_obj(0u16, GuestAddress(0x1_1004)).unwrap();
        mem.write_obj(1u16, GuestAddress(0x1_1002)).unwrap();
        wr(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(processed.load(Ordering::SeqCst), 1);
        assert_eq!(irq.0.load(Ordering::SeqCst), 1);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
        let used_idx: u16 = mem.read_obj(GuestAddress(0x1_2002)).unwrap();
        assert_eq!(used_idx, 1);
        wr(&mut t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        // Reset clears everything.
        wr(&mut t, VIRTIO_MMIO_STATUS, 0);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_STATUS), 0);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_QUEUE_READY), 0);
    }

    #[test]
    fn out_of_order_steps_are_refused() {
        let (mut t, _irq, warnings, processed) = transport();
        // DRIVER without ACKNOWLEDGE.
        wr(&mut t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_DRIVER);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_STATUS), 0);
        // FEATURES_OK without VERSION_1.
        wr(&mut t, VIRTIO_MMIO_STATUS, 1);
        wr(&mut t, VIRTIO_MMIO_STATUS, 3);
        wr(&mut t, VIRTIO_MMIO_STATUS, 0xb);
        assert_eq!(
            rd(&mut t, VIRTIO_MMIO_STATUS),
            3,
            "FEATURES_OK refused without VERSION_1"
        );
        // Features the device does not offer.
        wr(&mut t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        wr(&mut t, VIRTIO_MMIO_DRIVER_FEATURES, 1 | 2);
        wr(&mut t, VIRTIO_MMIO_STATUS, 0xb);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_STATUS), 3);
        // Queue registers before FEATURES_OK are ignored.
        wr(&mut t, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_eq!(rd(&mut t, VIRTIO_MMIO_QUEUE_READY), 0);
        // Notify before DRIVER_OK does nothing.
        wr(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(processed.load(Ordering::SeqCst), 0);
        // Unknown registers, odd sizes and notify of a missing queue never panic.
        assert_eq!(rd(&mut t, 0x0c8), 0);
        let mut two = [0u8; 2];
        t.read(0x70, &mut two);
        assert_eq!(two, [0xff, 0xff]);
        t.write(0x70, &[1, 2]);
        wr(&mut t, 0x0c8, 5);
        wr(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 7);
        assert!(warnings.0.lock().unwrap().len() >= 6);
    }

    #[test]
    fn a_queue_size_beyond_16_bits_is_refused_loudly_not_truncated() {
        let (mut t, _irq, warnings, _) = transport();
        negotiate(&mut t);
        wr(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
        wr(&mut t, VIRTIO_MMIO_QUEUE_NUM, 8);
        // Truncated, 0x1_0004 would be a valid size 4.
        wr(&mut t, VIRTIO_MMIO_QUEUE_NUM, 0x1_0004);
        assert_eq!(t.shared().lock().queues[0].size(), 8);
        let warnings = warnings.0.lock().unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("queue size 65540")),
            "{warnings:?}"
        );
    }

    #[test]
    fn queue_outside_guest_memory_fails_the_device() {
        let (mut t, ..) = transport();
        negotiate(&mut t);
        setup_queue(&mut t);
        wr(&mut t, VIRTIO_MMIO_QUEUE_USED_LOW, 0xfff0_0000);
        wr(&mut t, VIRTIO_MMIO_STATUS, 0xf);
        let status = rd(&mut t, VIRTIO_MMIO_STATUS);
        assert_eq!(status & VIRTIO_CONFIG_S_DRIVER_OK, 0);
        assert_ne!(status & VIRTIO_CONFIG_S_FAILED, 0);
    }

    /// After a device reset, a well-behaved driver's handshake and one read of `sector` through a
    /// clean queue: asserts the request was served (used ring advanced with the data and status
    /// bytes, status OK, the sector's bytes as the disk file holds them now, interrupt raised).
    fn assert_a_clean_read_is_served(
        t: &mut MmioTransport,
        irq: &CountingInterrupt,
        disk: &std::path::Path,
        sector: u64,
        context: &str,
    ) {
        use vm_memory::Bytes;
        const F_NEXT: u16 = 1;
        const F_WRITE: u16 = 2;
        let (desc, avail, used) = (0x1_0000u64, 0x1_1000u64, 0x1_2000u64);
        let (header, data, status) = (0x2_0000u64, 0x3_0000u64, 0x4_0000u64);
        let mem = t.shared().mem.clone();
        let put_desc = |i: u64, addr: u64, len: u32, flags: u16, next: u16| {
            let at = desc + 16 * i;
            mem.write_obj(addr, GuestAddress(at)).unwrap();
            mem.write_obj(len, GuestAddress(at + 8)).unwrap();
            mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
            mem.write_obj(next, GuestAddress(at + 14)).unwrap();
        };
        put_desc(0, header, 16, F_NEXT, 1);
        put_desc(1, data, 512, F_NEXT | F_WRITE, 2);
        put_desc(2, status, 1, F_WRITE, 0);
        mem.write_obj(0u32, GuestAddress(header)).unwrap(); // VIRTIO_BLK_T_IN
        mem.write_obj(0u32, GuestAddress(header + 4)).unwrap();
        mem.write_obj(sector, GuestAddress(header + 8)).unwrap();
        mem.write_slice(&[0xee; 512], GuestAddress(data)).unwrap();
        mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
        mem.write_obj(0u16, GuestAddress(avail)).unwrap(); // flags
        mem.write_obj(1u16, GuestAddress(avail + 2)).unwrap(); // idx
        mem.write_obj(0u16, GuestAddress(avail + 4)).unwrap(); // ring[0] = head 0
        mem.write_obj(0u16, GuestAddress(used + 2)).unwrap();

        wr(t, VIRTIO_MMIO_STATUS, 0);
        negotiate(t);
        wr(t, VIRTIO_MMIO_QUEUE_SEL, 0);
        wr(t, VIRTIO_MMIO_QUEUE_NUM, 8);
        wr(t, VIRTIO_MMIO_QUEUE_DESC_LOW, desc as u32);
        wr(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail as u32);
        wr(t, VIRTIO_MMIO_QUEUE_USED_LOW, used as u32);
        wr(t, VIRTIO_MMIO_QUEUE_READY, 1);
        wr(t, VIRTIO_MMIO_STATUS, 0xf);
        assert_eq!(t.status(), 0xf, "{context}: DRIVER_OK after a clean handshake");
        let interrupts = irq.0.load(Ordering::SeqCst);
        wr(t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);

        let used_idx: u16 = mem.read_obj(GuestAddress(used + 2)).unwrap();
        assert_eq!(used_idx, 1, "{context}: the request was not used");
        let used_id: u32 = mem.read_obj(GuestAddress(used + 4)).unwrap();
        let used_len: u32 = mem.read_obj(GuestAddress(used + 8)).unwrap();
        assert_eq!((used_id, used_len), (0, 513), "{context}: used element");
        let status_byte: u8 = mem.read_obj(GuestAddress(status)).unwrap();
        assert_eq!(status_byte, 0, "{context}: VIRTIO_BLK_S_OK");
        let mut got = [0u8; 512];
        mem.read_slice(&mut got, GuestAddress(data)).unwrap();
        let file = std::fs::read(disk).unwrap();
        let at = usize::try_from(sector * 512).unwrap();
        assert!(got[..] == file[at..at + 512], "{context}: sector {sector} data");
        assert!(
            irq.0.load(Ordering::SeqCst) > interrupts,
            "{context}: no interrupt"
        );
    }

    /// A guest writing garbage everywhere: random register accesses of every size, random ring and
    /// descriptor contents, notifications in every state. The transport and the block device must
    /// survive all of it (no panic), the status register must stay a valid combination, and after
    /// every stretch of garbage a reset and a clean handshake must get a read served again.
    #[test]
    fn random_guest_behaviour_never_panics_and_a_reset_device_still_serves_reads() {
        use std::io::Write as _;
        use vm_memory::Bytes;

        const SECTORS: u64 = 64;
        let mut disk = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..SECTORS * 512)
            .map(|i| (i / 512) as u8 ^ (i as u8) ^ 0x5a)
            .collect();
        disk.write_all(&content).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let block = crate::devices::virtio::block::Block::open(disk.path(), false, "fuzz").unwrap();
        let irq = Arc::new(CountingInterrupt::default());
        let mut t = MmioTransport::new(Arc::new(
            VirtioShared::new(
                "vda",
                Box::new(block),
                mem.clone(),
                irq.clone(),
                Arc::new(Warnings::default()),
            )
            .unwrap(),
        ));
        // xorshift64: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let registers = [
            0x00u64, 0x04, 0x08, 0x10, 0x14, 0x20, 0x24, 0x30, 0x34, 0x38, 0x44, 0x50, 0x60, 0x64, 0x70,
            0x80, 0x84, 0x90, 0x94, 0xa0, 0xa4, 0xfc, 0x100, 0x104,
        ];
        assert_a_clean_read_is_served(&mut t, &irq, disk.path(), 1, "before any garbage");
        let mut served = 1;
        for round in 0..20_000 {
            if round % 500 == 499 {
                let sector = next() % SECTORS;
                assert_a_clean_read_is_served(
                    &mut t,
                    &irq,
                    disk.path(),
                    sector,
                    &format!("after round {round}"),
                );
                served += 1;
            }
            // Sometimes drive the handshake properly so the queue paths are reached.
            if round % 500 == 0 {
                negotiate(&mut t);
                wr(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
                wr(&mut t, VIRTIO_MMIO_QUEUE_NUM, 1 << (next() % 9));
                wr(
                    &mut t,
                    VIRTIO_MMIO_QUEUE_DESC_LOW,
                    (next() % 0x10_0000) as u32 & !0xf,
                );
                wr(
                    &mut t,
                    VIRTIO_MMIO_QUEUE_AVAIL_LOW,
                    (next() % 0x10_0000) as u32 & !0x1,
                );
                wr(
                    &mut t,
                    VIRTIO_MMIO_QUEUE_USED_LOW,
                    (next() % 0x10_0000) as u32 & !0x3,
                );
                wr(&mut t, VIRTIO_MMIO_QUEUE_READY, 1);
                wr(&mut t, VIRTIO_MMIO_STATUS, 0xf);
            }
            // Scribble over guest memory where rings and descriptors may live.
            for _ in 0..8 {
                let addr = next() % ((1 << 20) - 8);
                let _ = mem.write_obj(next(), GuestAddress(addr));
            }
            let offset = if next() % 4 == 0 {
                next() % 0x200
            } else {
                registers[(next() % registers.len() as u64) as usize]
            };
            let len = [1usize, 2, 4, 8][(next() % 4) as usize];
            let value = next().to_le_bytes();
            if next() % 2 == 0 {
                let mut buf = [0u8; 8];
                t.read(offset, &mut buf[..len]);
            } else if offset == u64::from(VIRTIO_MMIO_QUEUE_NOTIFY) {
                wr(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, (next() % 3) as u32);
            } else {
                t.write(offset, &value[..len]);
            }
            let status = t.status();
            assert_eq!(
                status & !0xcf,
                0,
                "status {status:#x} has bits the device never sets"
            );
        }
        assert_eq!(served, 41);
    }
}
