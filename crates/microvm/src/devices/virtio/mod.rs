//! Virtio devices behind the virtio-mmio transport. The transport ([`mmio`]) owns the register state
//! machine and the queues; a device ([`block`]) only knows how to serve requests from a queue.

pub mod block;
pub mod mmio;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

/// A virtio device as the transport sees it.
pub trait VirtioDevice: Send {
    /// Virtio device ID (2 = block).
    fn device_type(&self) -> u32;
    /// Largest size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers.
    fn features(&self) -> u64;
    /// Reads from the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Serves every available request on queue `index`. Returns whether any buffer was used (the
    /// transport then raises the used-buffer interrupt).
    fn process_queue(&mut self, index: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool;
}
