//! Virtio devices behind the virtio-mmio transport. The transport ([`mmio`]) owns the register state
//! machine; the device ([`block`], [`net`]) and its queues live in a [`mmio::VirtioShared`] that the
//! I/O thread ([`event_loop`]) serves. The vCPU thread never serves a request: a queue notification
//! is an ioeventfd the I/O thread waits on, and completion raises the device's irqfd.

pub mod block;
pub mod event_loop;
pub mod mmio;
pub mod net;

use std::os::fd::BorrowedFd;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

/// A virtio device as the transport and the I/O thread see it. Called only with the device's lock
/// held, from the I/O thread (requests) or a vCPU thread (configuration, reset).
pub trait VirtioDevice: Send {
    /// Virtio device ID (1 = net, 2 = block).
    fn device_type(&self) -> u32;
    /// Largest size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers.
    fn features(&self) -> u64;
    /// Reads from the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Serves every available request on `queue` (queue number `index`). Returns whether any buffer
    /// was used (the transport then raises the used-buffer interrupt).
    fn process_queue(&mut self, index: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool;
    /// A host file descriptor the device waits on besides its queues (a tap), edge-triggered.
    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Serves the host descriptor's readiness (all `queues` of the device); returns whether any
    /// buffer was used.
    fn process_host_fd(&mut self, _queues: &mut [Queue], _mem: &GuestMemoryMmap) -> bool {
        false
    }
    /// The driver reset the device: forget anything in flight.
    fn reset(&mut self) {}
    /// What the device counted so far (requests served, each kind of error), for the VMM's report.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// `name=value` pairs separated by spaces, zero counters left out (the report's one-line form).
pub fn format_counters(counters: &[(&'static str, u64)]) -> String {
    let words: Vec<String> = counters
        .iter()
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if words.is_empty() {
        "idle".to_string()
    } else {
        words.join(" ")
    }
}
