//! virtio-net backed by a tap device (or anything else that passes whole Ethernet frames, behind
//! [`TapIo`]). Features are minimal: `VIRTIO_NET_F_MAC` and `VIRTIO_F_VERSION_1`, so every buffer
//! starts with a 12-byte `virtio_net_hdr_v1` that carries no offload (the device writes it zeroed
//! with `num_buffers = 1` on receive and skips it on transmit), and each received frame fills one
//! descriptor chain (no mergeable buffers). The tap is opened without `IFF_VNET_HDR`.
//!
//! Queue 0 is RX, queue 1 is TX. Both are served on the I/O thread: TX when the guest notifies
//! queue 1; RX when the tap becomes readable (edge-triggered) or when the guest adds RX buffers
//! (queue 0's notification). A frame read from the tap while the guest has no RX buffer waits in the
//! device (counted as `rx_waits_for_buffers`) and is delivered when buffers come; further frames
//! wait in the tap's own queue. Every frame or chain the device cannot use is counted by kind, never
//! dropped silently, and nothing a guest puts in the rings stops the VMM.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MAC;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryMmap};

use super::VirtioDevice;

/// Size of `struct virtio_net_hdr_v1` (VERSION_1 always includes `num_buffers`).
pub const NET_HDR_BYTES: usize = 12;
/// Largest frame the device moves: a tap's largest datagram (64 KiB) is far above any MTU the guest
/// can use without offloads.
pub const MAX_FRAME_BYTES: usize = 65_535;
/// Queue size offered for RX and TX.
pub const QUEUE_MAX_SIZE: u16 = 256;
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
/// Offset of `num_buffers` in the header.
const NUM_BUFFERS_OFFSET: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("opening /dev/net/tun: {0}")]
    OpenTun(io::Error),
    #[error("tap name {0:?} is empty or longer than 15 bytes")]
    TapName(String),
    #[error("TUNSETIFF for tap {name}: {source}")]
    SetIff { name: String, source: nix::Error },
    #[error("tap fd {fd}: {source}")]
    TapFd { fd: i32, source: nix::Error },
    #[error("MAC address {0:?} is not six colon-separated hex bytes of a unicast address")]
    Mac(String),
}

/// Where frames come from and go to: a tap, or in tests one end of a datagram socket pair. Both
/// directions are non-blocking; `recv_frame` answers `WouldBlock` when no frame is waiting.
pub trait TapIo: Send {
    fn recv_frame(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<usize>;
    /// The descriptor the I/O thread waits on for readability.
    fn fd(&self) -> BorrowedFd<'_>;
}

/// A tap device (`IFF_TAP | IFF_NO_PI`), non-blocking.
pub struct Tap {
    file: File,
}

nix::ioctl_write_ptr_bad!(tunsetiff, libc::TUNSETIFF, libc::ifreq);

impl Tap {
    /// Attaches to (or creates) the tap `name` in this process's network namespace.
    pub fn open(name: &str) -> Result<Tap, NetError> {
        // SAFETY: `ifreq` is plain old data (a name array and a union of integers); all-zero is valid.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        if name.is_empty() || name.len() >= request.ifr_name.len() || name.contains('\0') {
            return Err(NetError::TapName(name.to_string()));
        }
        for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        // IFF_TAP | IFF_NO_PI is 0x1002: fits the 16-bit `ifr_flags`.
        const FLAGS: libc::c_short = 0x1002;
        const _: () = assert!(FLAGS as libc::c_int == libc::IFF_TAP | libc::IFF_NO_PI);
        request.ifr_ifru.ifru_flags = FLAGS;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(NetError::OpenTun)?;
        // SAFETY: TUNSETIFF reads the `ifreq` (NUL-terminated name, flags) that `request` is, and
        // the descriptor is the tun control device just opened.
        unsafe { tunsetiff(file.as_raw_fd(), &request) }.map_err(|source| NetError::SetIff {
            name: name.to_string(),
            source,
        })?;
        Ok(Tap { file })
    }

    /// A tap the caller already attached (an inherited descriptor), made non-blocking.
    pub fn from_fd(fd: OwnedFd) -> Result<Tap, NetError> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let raw = fd.as_raw_fd();
        let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(|source| NetError::TapFd { fd: raw, source })?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(flags)).map_err(|source| NetError::TapFd { fd: raw, source })?;
        Ok(Tap { file: File::from(fd) })
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// The tap's descriptor, for a process that hands it to a VMM (the harness opens the tap in an
/// instance's network namespace and passes it on).
impl From<Tap> for OwnedFd {
    fn from(tap: Tap) -> OwnedFd {
        OwnedFd::from(tap.file)
    }
}

impl TapIo for Tap {
    fn recv_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.file.write(frame)
    }
    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// One end of a datagram socket pair as a tap (message boundaries are kept, as a tap keeps frames).
/// The caller sets it non-blocking.
impl TapIo for UnixDatagram {
    fn recv_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.send(frame)
    }
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`; refuses multicast addresses (low bit of the first byte).
pub fn parse_mac(text: &str) -> Result<[u8; 6], NetError> {
    let bad = || NetError::Mac(text.to_string());
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 {
        return Err(bad());
    }
    Ok(mac)
}

/// What the device moved and refused, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// A frame was read but the guest had no RX buffer: it waited in the device.
    pub rx_waits_for_buffers: u64,
    /// RX chains with a device-readable descriptor or a buffer outside guest memory; returned
    /// unused, the frame kept for the next chain.
    pub rx_bad_chains: u64,
    /// Frames larger than the RX chain offered (no mergeable buffers): dropped, counted.
    pub rx_dropped_buffer_too_small: u64,
    /// A frame waiting for a buffer when the driver reset the device.
    pub rx_dropped_reset: u64,
    pub rx_tap_errors: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// TX chains shorter than the 12-byte header.
    pub tx_shorter_than_header: u64,
    /// TX chains holding a header and no frame.
    pub tx_empty_frames: u64,
    /// TX chains longer than header + [`MAX_FRAME_BYTES`].
    pub tx_oversized: u64,
    /// TX chains with a device-writable descriptor or a buffer outside guest memory.
    pub tx_bad_chains: u64,
    /// The tap refused the frame (its queue full, or an error).
    pub tx_tap_errors: u64,
    /// The used ring lies outside guest memory: completions that could not be returned.
    pub used_ring_errors: u64,
}

impl NetCounters {
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("rx_frames", self.rx_frames),
            ("rx_bytes", self.rx_bytes),
            ("rx_waits_for_buffers", self.rx_waits_for_buffers),
            ("rx_bad_chains", self.rx_bad_chains),
            ("rx_dropped_buffer_too_small", self.rx_dropped_buffer_too_small),
            ("rx_dropped_reset", self.rx_dropped_reset),
            ("rx_tap_errors", self.rx_tap_errors),
            ("tx_frames", self.tx_frames),
            ("tx_bytes", self.tx_bytes),
            ("tx_shorter_than_header", self.tx_shorter_than_header),
            ("tx_empty_frames", self.tx_empty_frames),
            ("tx_oversized", self.tx_oversized),
            ("tx_bad_chains", self.tx_bad_chains),
            ("tx_tap_errors", self.tx_tap_errors),
            ("used_ring_errors", self.used_ring_errors),
        ]
    }
}

/// Why a TX chain was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxError {
    ShorterThanHeader,
    EmptyFrame,
    Oversized,
    BadChain,
}

/// Why an RX chain could not take the waiting frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxError {
    BadChain,
    TooSmall,
}

pub struct Net {
    tap: Box<dyn TapIo>,
    /// MAC (6 bytes) as the config space holds it.
    config: [u8; 6],
    /// `virtio_net_hdr_v1` followed by the frame read from the tap.
    rx_buf: Vec<u8>,
    /// Length of the frame in `rx_buf` waiting for an RX buffer, if any.
    rx_pending: Option<usize>,
    /// The frame gathered from a TX chain (header skipped).
    tx_buf: Vec<u8>,
    counters: NetCounters,
}

impl Net {
    pub fn new(tap: Box<dyn TapIo>, mac: [u8; 6]) -> Self {
        let mut rx_buf = vec![0u8; NET_HDR_BYTES + MAX_FRAME_BYTES];
        rx_buf[NUM_BUFFERS_OFFSET] = 1;
        Net {
            tap,
            config: mac,
            rx_buf,
            rx_pending: None,
            tx_buf: Vec::with_capacity(MAX_FRAME_BYTES),
            counters: NetCounters::default(),
        }
    }

    pub fn net_counters(&self) -> &NetCounters {
        &self.counters
    }

    /// Moves frames from the tap into RX buffers until the tap is empty or the guest has no buffer.
    fn process_rx(&mut self, rx: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        let mut used_any = false;
        loop {
            let frame_len = match self.rx_pending {
                Some(len) => len,
                None => match self.tap.recv_frame(&mut self.rx_buf[NET_HDR_BYTES..]) {
                    Ok(len) => len,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        // Non-transient (the tap went away): stop until the next readiness edge.
                        self.counters.rx_tap_errors += 1;
                        break;
                    }
                },
            };
            self.rx_pending = Some(frame_len);
            let Some(chain) = rx.pop_descriptor_chain(mem) else {
                self.counters.rx_waits_for_buffers += 1;
                break;
            };
            let head = chain.head_index();
            let descriptors: Vec<Descriptor> = chain.collect();
            let used_len = match self.fill(&descriptors, NET_HDR_BYTES + frame_len, mem) {
                Ok(len) => {
                    self.counters.rx_frames += 1;
                    self.counters.rx_bytes += frame_len as u64;
                    self.rx_pending = None;
                    len
                }
                Err(RxError::BadChain) => {
                    self.counters.rx_bad_chains += 1;
                    0
                }
                Err(RxError::TooSmall) => {
                    self.counters.rx_dropped_buffer_too_small += 1;
                    self.rx_pending = None;
                    0
                }
            };
            if rx.add_used(mem, head, used_len).is_err() {
                self.counters.used_ring_errors += 1;
                break;
            }
            used_any = true;
        }
        used_any
    }

    /// Writes header + frame (`len` bytes of `rx_buf`) into the chain; returns the used length.
    fn fill(&self, descriptors: &[Descriptor], len: usize, mem: &GuestMemoryMmap) -> Result<u32, RxError> {
        let mut capacity = 0usize;
        for d in descriptors {
            if !d.is_write_only() || !mem.check_range(d.addr(), d.len() as usize) {
                return Err(RxError::BadChain);
            }
            capacity = capacity.saturating_add(d.len() as usize);
        }
        if capacity < len {
            return Err(RxError::TooSmall);
        }
        let mut done = 0usize;
        for d in descriptors {
            if done == len {
                break;
            }
            let n = (d.len() as usize).min(len - done);
            mem.write_slice(&self.rx_buf[done..done + n], d.addr())
                .map_err(|_| RxError::BadChain)?;
            done += n;
        }
        u32::try_from(len).map_err(|_| RxError::TooSmall)
    }

    /// Sends every TX chain's frame to the tap; each chain is returned with length 0.
    fn process_tx(&mut self, tx: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        let mut used_any = false;
        while let Some(chain) = tx.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let descriptors: Vec<Descriptor> = chain.collect();
            match self.gather(&descriptors, mem) {
                Ok(()) => match self.tap.send_frame(&self.tx_buf) {
                    Ok(_) => {
                        self.counters.tx_frames += 1;
                        self.counters.tx_bytes += self.tx_buf.len() as u64;
                    }
                    Err(_) => self.counters.tx_tap_errors += 1,
                },
                Err(TxError::ShorterThanHeader) => self.counters.tx_shorter_than_header += 1,
                Err(TxError::EmptyFrame) => self.counters.tx_empty_frames += 1,
                Err(TxError::Oversized) => self.counters.tx_oversized += 1,
                Err(TxError::BadChain) => self.counters.tx_bad_chains += 1,
            }
            if tx.add_used(mem, head, 0).is_err() {
                self.counters.used_ring_errors += 1;
                break;
            }
            used_any = true;
        }
        used_any
    }

    /// Copies the chain's bytes after the header into `tx_buf`, after checking its shape and size.
    fn gather(&mut self, descriptors: &[Descriptor], mem: &GuestMemoryMmap) -> Result<(), TxError> {
        let mut total = 0u64;
        for d in descriptors {
            if d.is_write_only() || !mem.check_range(d.addr(), d.len() as usize) {
                return Err(TxError::BadChain);
            }
            total += u64::from(d.len());
        }
        if total < NET_HDR_BYTES as u64 {
            return Err(TxError::ShorterThanHeader);
        }
        if total == NET_HDR_BYTES as u64 {
            return Err(TxError::EmptyFrame);
        }
        if total > (NET_HDR_BYTES + MAX_FRAME_BYTES) as u64 {
            return Err(TxError::Oversized);
        }
        self.tx_buf.clear();
        let mut skip = NET_HDR_BYTES;
        for d in descriptors {
            let len = d.len() as usize;
            if skip >= len {
                skip -= len;
                continue;
            }
            let start = self.tx_buf.len();
            self.tx_buf.resize(start + len - skip, 0);
            let addr = d.addr().checked_add(skip as u64).ok_or(TxError::BadChain)?;
            mem.read_slice(&mut self.tx_buf[start..], addr)
                .map_err(|_| TxError::BadChain)?;
            skip = 0;
        }
        Ok(())
    }
}

use vm_memory::Address;

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_MAX_SIZE, QUEUE_MAX_SIZE]
    }

    fn features(&self) -> u64 {
        (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_NET_F_MAC)
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // Only `mac` is offered; the rest of `virtio_net_config` reads as zero.
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|o| self.config.get(o + i))
                .copied()
                .unwrap_or(0);
        }
    }

    fn process_queue(&mut self, index: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        match index {
            RX_QUEUE => self.process_rx(queue, mem),
            TX_QUEUE => self.process_tx(queue, mem),
            _ => false,
        }
    }

    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.tap.fd())
    }

    fn process_host_fd(&mut self, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let Some(rx) = queues.get_mut(RX_QUEUE) else {
            return false;
        };
        if !rx.ready() {
            return false;
        }
        self.process_rx(rx, mem)
    }

    fn reset(&mut self) {
        if self.rx_pending.take().is_some() {
            self.counters.rx_dropped_reset += 1;
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.counters.pairs()
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Address, GuestAddress};

    use super::*;

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;
    const RX_RING: u64 = 0;
    const TX_RING: u64 = 0x1_0000;
    const BUF: u64 = 0x10_0000;
    const MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 0, 2];

    struct Fixture {
        mem: GuestMemoryMmap,
        net: Net,
        peer: UnixDatagram,
    }

    fn fixture() -> Fixture {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let (device_end, peer) = UnixDatagram::pair().unwrap();
        device_end.set_nonblocking(true).unwrap();
        peer.set_nonblocking(true).unwrap();
        Fixture {
            mem,
            net: Net::new(Box::new(device_end), MAC),
            peer,
        }
    }

    /// Adds one chain of `descs` (addr, len, flags) at descriptor `offset`, linked in order.
    fn add_chain(vq: &MockSplitQueue<GuestMemoryMmap>, descs: &[(u64, u32, u16)], offset: u16) {
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, flags))| {
                let last = i == descs.len() - 1;
                let flags = if last { flags & !F_NEXT } else { flags | F_NEXT };
                let next = if last { 0 } else { offset + i as u16 + 1 };
                RawDescriptor::from(Descriptor::new(addr, len, flags, next))
            })
            .collect();
        vq.add_desc_chains(&raw, offset).unwrap();
    }

    fn used_idx(mem: &GuestMemoryMmap, vq: &MockSplitQueue<GuestMemoryMmap>) -> u16 {
        mem.read_obj(vq.used_addr().unchecked_add(2)).unwrap()
    }

    /// (id, len) of used element `n`.
    fn used_elem(mem: &GuestMemoryMmap, vq: &MockSplitQueue<GuestMemoryMmap>, n: u64) -> (u32, u32) {
        let at = vq.used_addr().unchecked_add(4 + 8 * n);
        (
            mem.read_obj(at).unwrap(),
            mem.read_obj(at.unchecked_add(4)).unwrap(),
        )
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    fn peer_frames(peer: &UnixDatagram) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 70_000];
        while let Ok(n) = peer.recv(&mut buf) {
            frames.push(buf[..n].to_vec());
        }
        frames
    }

    #[test]
    fn config_space_holds_the_mac_and_features_are_minimal() {
        let f = fixture();
        let mut mac = [0u8; 8];
        f.net.read_config(0, &mut mac);
        assert_eq!(&mac[..6], &MAC);
        assert_eq!(&mac[6..], &[0, 0]);
        assert_eq!(
            f.net.features(),
            (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_NET_F_MAC)
        );
        assert_eq!(f.net.device_type(), VIRTIO_ID_NET);
        assert_eq!(parse_mac("02:cb:00:00:00:02").unwrap(), MAC);
        for bad in [
            "",
            "02:cb:00:00:00",
            "02:cb:00:00:00:02:03",
            "03:cb:00:00:00:02",
            "zz:cb:00:00:00:02",
            "2:cb:0:0:0:2",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tx_sends_the_frame_behind_the_header_and_counts_each_bad_chain() {
        let mut f = fixture();
        let vq = MockSplitQueue::create(&f.mem, GuestAddress(TX_RING), 16);
        let good = frame(60, 7);
        // Header and the first 8 frame bytes in one descriptor, the rest in a second.
        let mut bytes = vec![0u8; NET_HDR_BYTES];
        bytes.extend_from_slice(&good);
        f.mem.write_slice(&bytes, GuestAddress(BUF)).unwrap();
        add_chain(&vq, &[(BUF, 20, 0), (BUF + 20, 52, 0)], 0);
        add_chain(&vq, &[(BUF, 8, 0)], 2); // shorter than the header
        add_chain(&vq, &[(BUF, 12, 0)], 3); // header, no frame
        add_chain(&vq, &[(BUF, 12, 0), (BUF + 12, 60, F_WRITE)], 4); // device-writable buffer
        add_chain(&vq, &[(BUF, 12, 0), (0xf000_0000, 60, 0)], 6); // outside guest memory
        add_chain(&vq, &[(BUF, 12, 0), (BUF, 65_536, 0)], 8); // oversized
        let mut q: Queue = vq.create_queue().unwrap();
        assert!(f.net.process_queue(TX_QUEUE, &mut q, &f.mem));
        assert_eq!(used_idx(&f.mem, &vq), 6, "every chain is returned");
        for n in 0..6 {
            assert_eq!(used_elem(&f.mem, &vq, n).1, 0);
        }
        assert_eq!(
            peer_frames(&f.peer),
            vec![good],
            "only the good frame reaches the tap"
        );
        let c = f.net.net_counters();
        assert_eq!((c.tx_frames, c.tx_bytes), (1, 60));
        assert_eq!(c.tx_shorter_than_header, 1);
        assert_eq!(c.tx_empty_frames, 1);
        assert_eq!(c.tx_bad_chains, 2);
        assert_eq!(c.tx_oversized, 1);
    }

    #[test]
    fn rx_writes_header_and_frame_into_one_chain() {
        let mut f = fixture();
        let vq = MockSplitQueue::create(&f.mem, GuestAddress(RX_RING), 16);
        add_chain(&vq, &[(BUF, 40, F_WRITE), (BUF + 0x1000, 1600, F_WRITE)], 0);
        let mut queues = vec![vq.create_queue::<Queue>().unwrap()];
        let sent = frame(100, 3);
        f.peer.send(&sent).unwrap();
        f.mem
            .write_slice(&[0xee; NET_HDR_BYTES], GuestAddress(BUF))
            .unwrap();
        assert!(f.net.process_host_fd(&mut queues, &f.mem));
        assert_eq!(used_idx(&f.mem, &vq), 1);
        assert_eq!(used_elem(&f.mem, &vq, 0), (0, 112));
        let mut hdr = [0u8; NET_HDR_BYTES];
        f.mem.read_slice(&mut hdr, GuestAddress(BUF)).unwrap();
        assert_eq!(
            hdr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            "zeroed header, num_buffers 1"
        );
        let mut got = vec![0u8; 100];
        f.mem.read_slice(&mut got[..28], GuestAddress(BUF + 12)).unwrap();
        f.mem
            .read_slice(&mut got[28..], GuestAddress(BUF + 0x1000))
            .unwrap();
        assert_eq!(got, sent);
        assert_eq!(f.net.net_counters().rx_frames, 1);
    }

    #[test]
    fn a_full_rx_queue_keeps_frames_waiting_counted_and_delivers_them_in_order_later() {
        let mut f = fixture();
        let vq = MockSplitQueue::create(&f.mem, GuestAddress(RX_RING), 16);
        let mut queues = vec![vq.create_queue::<Queue>().unwrap()];
        let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(64 + i, i as u8)).collect();
        for fr in &frames {
            f.peer.send(fr).unwrap();
        }
        // No buffers: nothing used, the first frame waits in the device, the rest in the "tap".
        assert!(!f.net.process_host_fd(&mut queues, &f.mem));
        assert_eq!(f.net.net_counters().rx_waits_for_buffers, 1);
        assert_eq!(f.net.net_counters().rx_frames, 0);
        // A second readiness edge with still no buffers: still waiting, nothing dropped.
        assert!(!f.net.process_host_fd(&mut queues, &f.mem));
        // The guest adds buffers and notifies the RX queue.
        for i in 0..3u16 {
            add_chain(&vq, &[(BUF + u64::from(i) * 0x1000, 1526, F_WRITE)], i);
        }
        assert!(f.net.process_queue(RX_QUEUE, &mut queues[0], &f.mem));
        assert_eq!(used_idx(&f.mem, &vq), 3);
        for (i, fr) in frames.iter().enumerate() {
            let (id, len) = used_elem(&f.mem, &vq, i as u64);
            assert_eq!((id, len as usize), (i as u32, NET_HDR_BYTES + fr.len()));
            let mut got = vec![0u8; fr.len()];
            f.mem
                .read_slice(&mut got, GuestAddress(BUF + i as u64 * 0x1000 + 12))
                .unwrap();
            assert_eq!(&got, fr, "frame {i} in order");
        }
        let c = f.net.net_counters();
        assert_eq!(c.rx_frames, 3);
        assert_eq!(
            c.rx_dropped_buffer_too_small + c.rx_bad_chains + c.rx_tap_errors,
            0
        );
    }

    #[test]
    fn malformed_and_too_small_rx_chains_are_counted_and_the_frame_survives_a_bad_chain() {
        let mut f = fixture();
        let vq = MockSplitQueue::create(&f.mem, GuestAddress(RX_RING), 16);
        add_chain(&vq, &[(BUF, 1526, 0)], 0); // device-readable: malformed
        add_chain(&vq, &[(0xf000_0000, 1526, F_WRITE)], 1); // outside guest memory
        add_chain(&vq, &[(BUF, 1526, F_WRITE)], 2); // good: takes the first frame
        add_chain(&vq, &[(BUF + 0x1000, 40, F_WRITE)], 3); // too small for the second frame
        let mut queues = vec![vq.create_queue::<Queue>().unwrap()];
        let first = frame(200, 1);
        f.peer.send(&first).unwrap();
        f.peer.send(&frame(200, 2)).unwrap();
        assert!(f.net.process_host_fd(&mut queues, &f.mem));
        assert_eq!(used_idx(&f.mem, &vq), 4);
        let lens: Vec<u32> = (0..4).map(|n| used_elem(&f.mem, &vq, n).1).collect();
        assert_eq!(lens, [0, 0, 212, 0]);
        let mut got = vec![0u8; 200];
        f.mem.read_slice(&mut got, GuestAddress(BUF + 12)).unwrap();
        assert_eq!(got, first);
        let c = f.net.net_counters();
        assert_eq!(
            (c.rx_bad_chains, c.rx_frames, c.rx_dropped_buffer_too_small),
            (2, 1, 1)
        );
    }

    /// A guest writing garbage into its rings and descriptors while frames flow both ways: the
    /// device never panics, and afterwards (rings reset, as a driver reset would) it still moves a
    /// frame each way.
    #[test]
    fn random_guest_rings_never_crash_the_device_and_it_still_serves_afterwards() {
        let mut f = fixture();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..300 {
            let size = 1u16 << (next() % 9).max(1);
            let rx_vq = MockSplitQueue::create(&f.mem, GuestAddress(RX_RING), size);
            let tx_vq = MockSplitQueue::create(&f.mem, GuestAddress(TX_RING), size);
            let mut queues = vec![
                rx_vq.create_queue::<Queue>().unwrap(),
                tx_vq.create_queue::<Queue>().unwrap(),
            ];
            // Scribble over the rings, the descriptor tables and some buffers.
            for _ in 0..64 {
                let base = [RX_RING, TX_RING, BUF][(next() % 3) as usize];
                let addr = base + next() % 0x8000;
                let _ = f.mem.write_obj(next(), GuestAddress(addr));
            }
            if round % 3 == 0 {
                let _ = f.peer.send(&frame((next() % 2000) as usize, round as u8));
            }
            for _ in 0..4 {
                match next() % 3 {
                    0 => {
                        f.net.process_queue(RX_QUEUE, &mut queues[0], &f.mem);
                    }
                    1 => {
                        f.net.process_queue(TX_QUEUE, &mut queues[1], &f.mem);
                    }
                    _ => {
                        f.net.process_host_fd(&mut queues, &f.mem);
                    }
                }
            }
            let _ = peer_frames(&f.peer);
        }
        // Drain anything still queued in either direction, then reset as a driver would.
        f.net.reset();
        while f.net.tap.recv_frame(&mut [0u8; 70_000]).is_ok() {}
        for b in 0..0x20_000u64 / 8 {
            f.mem.write_obj(0u64, GuestAddress(b * 8)).unwrap();
        }
        let before = f.net.net_counters().clone();
        let rx_vq = MockSplitQueue::create(&f.mem, GuestAddress(RX_RING), 16);
        let tx_vq = MockSplitQueue::create(&f.mem, GuestAddress(TX_RING), 16);
        let mut queues = vec![
            rx_vq.create_queue::<Queue>().unwrap(),
            tx_vq.create_queue::<Queue>().unwrap(),
        ];
        add_chain(&rx_vq, &[(BUF, 1526, F_WRITE)], 0);
        let inbound = frame(90, 0x5a);
        f.peer.send(&inbound).unwrap();
        assert!(f.net.process_host_fd(&mut queues, &f.mem));
        let mut got = vec![0u8; 90];
        f.mem.read_slice(&mut got, GuestAddress(BUF + 12)).unwrap();
        assert_eq!(got, inbound);
        let outbound = frame(70, 0xa5);
        let mut bytes = vec![0u8; NET_HDR_BYTES];
        bytes.extend_from_slice(&outbound);
        f.mem.write_slice(&bytes, GuestAddress(BUF + 0x4000)).unwrap();
        add_chain(&tx_vq, &[(BUF + 0x4000, 82, 0)], 0);
        assert!(f.net.process_queue(TX_QUEUE, &mut queues[1], &f.mem));
        assert_eq!(peer_frames(&f.peer), vec![outbound]);
        let after = f.net.net_counters();
        assert_eq!(after.rx_frames, before.rx_frames + 1);
        assert_eq!(after.tx_frames, before.tx_frames + 1);
    }

    /// The whole path off the vCPU thread: a transport set up through its registers, the I/O thread
    /// woken by the "tap" becoming readable (RX) and by the TX queue's notification eventfd, the
    /// interrupt raised, and the thread joined on stop with nothing left behind.
    #[test]
    fn the_io_thread_serves_rx_on_tap_readiness_and_tx_on_notification() {
        use crate::devices::bus::BusDevice;
        use crate::devices::virtio::event_loop::IoThread;
        use crate::devices::virtio::mmio::{MmioTransport, VirtioShared};
        use crate::devices::CountingInterrupt;
        use crate::events::NullObserver;
        use virtio_bindings::virtio_mmio::*;

        let f = fixture();
        let irq = Arc::new(CountingInterrupt::default());
        let shared = Arc::new(
            VirtioShared::new(
                "eth0",
                Box::new(f.net),
                f.mem.clone(),
                irq.clone(),
                Arc::new(NullObserver),
            )
            .unwrap(),
        );
        let mut t = MmioTransport::new(shared.clone());
        let wr = |t: &mut MmioTransport, reg: u32, v: u32| {
            t.write(u64::from(reg), &v.to_le_bytes());
        };
        let rx_vq = MockSplitQueue::create(&f.mem, GuestAddress(RX_RING), 16);
        let tx_vq = MockSplitQueue::create(&f.mem, GuestAddress(TX_RING), 16);
        wr(&mut t, VIRTIO_MMIO_STATUS, 1);
        wr(&mut t, VIRTIO_MMIO_STATUS, 3);
        wr(&mut t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        wr(&mut t, VIRTIO_MMIO_DRIVER_FEATURES, 1);
        wr(&mut t, VIRTIO_MMIO_STATUS, 0xb);
        for (q, vq) in [(0u32, &rx_vq), (1, &tx_vq)] {
            wr(&mut t, VIRTIO_MMIO_QUEUE_SEL, q);
            wr(&mut t, VIRTIO_MMIO_QUEUE_NUM, 16);
            wr(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW, vq.desc_table_addr().0 as u32);
            wr(&mut t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, vq.avail_addr().0 as u32);
            wr(&mut t, VIRTIO_MMIO_QUEUE_USED_LOW, vq.used_addr().0 as u32);
            wr(&mut t, VIRTIO_MMIO_QUEUE_READY, 1);
        }
        wr(&mut t, VIRTIO_MMIO_STATUS, 0xf);
        assert_eq!(t.status(), 0xf);
        let io = IoThread::spawn(vec![shared.clone()], Arc::new(NullObserver)).unwrap();
        let watchdog = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            while !done() {
                assert!(std::time::Instant::now() < watchdog, "watchdog: {what}");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };

        // RX: buffers first, then a frame arrives on the tap; the I/O thread alone delivers it.
        add_chain(&rx_vq, &[(BUF, 1526, F_WRITE)], 0);
        let inbound = frame(80, 9);
        f.peer.send(&inbound).unwrap();
        wait_for("RX frame delivered", &|| used_idx(&f.mem, &rx_vq) == 1);
        let mut got = vec![0u8; 80];
        f.mem.read_slice(&mut got, GuestAddress(BUF + 12)).unwrap();
        assert_eq!(got, inbound);
        wait_for("RX interrupt", &|| irq.0.load(Ordering::SeqCst) >= 1);

        // TX: the guest's QueueNotify write (forwarded to the eventfd, as KVM's ioeventfd would).
        let outbound = frame(66, 4);
        let mut bytes = vec![0u8; NET_HDR_BYTES];
        bytes.extend_from_slice(&outbound);
        f.mem.write_slice(&bytes, GuestAddress(BUF + 0x8000)).unwrap();
        add_chain(&tx_vq, &[(BUF + 0x8000, 78, 0)], 0);
        wr(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
        wait_for("TX used", &|| used_idx(&f.mem, &tx_vq) == 1);
        f.peer.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 200];
        let n = f.peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], outbound.as_slice());

        io.stop_and_join();
        let counters: std::collections::BTreeMap<_, _> = shared.counters().into_iter().collect();
        assert_eq!(counters["rx_frames"], 1);
        assert_eq!(counters["tx_frames"], 1);
    }

    /// A real tap: in a network namespace of this test thread's own (the kernel removes it, and the
    /// tap `cvbench-test-<pid>` with it, when the thread ends, on every path), addressed 198.18.0.1/30.
    /// The device sends the guest's ARP request for 198.18.0.1 through the tap; the host kernel's
    /// ARP reply comes back through the tap into an RX buffer.
    #[test]
    fn frames_cross_a_real_tap_both_ways() {
        if testkit::skip_unless_root("creates a tap in a private network namespace") {
            return;
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            testkit::skip(testkit::Requirement::HostFeature("tun"), "no /dev/net/tun");
            return;
        }
        let outcome = std::thread::spawn(|| -> Result<Vec<u8>, String> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
            // The namespace is this thread's alone, so the name cannot collide (IFNAMSIZ leaves 15).
            let name = "cvbench-test-0".to_string();
            let tap = Tap::open(&name).map_err(|e| e.to_string())?;
            // `ip` forks from this thread, so it runs in the thread's namespace.
            for args in [
                vec!["addr", "add", "198.18.0.1/30", "dev", name.as_str()],
                vec!["link", "set", name.as_str(), "up"],
            ] {
                let status = std::process::Command::new("ip")
                    .args(&args)
                    .status()
                    .map_err(|e| format!("ip {args:?}: {e}"))?;
                if !status.success() {
                    return Err(format!("ip {args:?}: {status}"));
                }
            }
            let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
            let tap_fd = tap.fd().try_clone_to_owned().map_err(|e| e.to_string())?;
            let mut net = Net::new(Box::new(tap), MAC);
            let rx_vq = MockSplitQueue::create(&mem, GuestAddress(RX_RING), 16);
            let tx_vq = MockSplitQueue::create(&mem, GuestAddress(TX_RING), 16);
            for i in 0..8u16 {
                add_chain(&rx_vq, &[(BUF + u64::from(i) * 0x1000, 1526, F_WRITE)], i);
            }
            let mut queues = vec![
                rx_vq.create_queue::<Queue>().unwrap(),
                tx_vq.create_queue::<Queue>().unwrap(),
            ];
            // ARP who-has 198.18.0.1 tell 198.18.0.2, from the guest's MAC.
            let mut arp = vec![0u8; NET_HDR_BYTES];
            arp.extend_from_slice(&[0xff; 6]);
            arp.extend_from_slice(&MAC);
            arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
            arp.extend_from_slice(&MAC);
            arp.extend_from_slice(&[198, 18, 0, 2]);
            arp.extend_from_slice(&[0; 6]);
            arp.extend_from_slice(&[198, 18, 0, 1]);
            mem.write_slice(&arp, GuestAddress(BUF + 0x10_000)).unwrap();
            add_chain(&tx_vq, &[(BUF + 0x10_000, arp.len() as u32, 0)], 0);
            net.process_queue(TX_QUEUE, &mut queues[1], &mem);
            if net.net_counters().tx_frames != 1 {
                return Err(format!("TX not sent: {:?}", net.net_counters()));
            }
            // Wait (watchdog, not a threshold) for frames and look for the ARP reply among them.
            let mut seen = 0u16;
            for _ in 0..50 {
                let mut fds = [nix::poll::PollFd::new(
                    tap_fd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
                net.process_host_fd(&mut queues, &mem);
                let used: u16 = mem.read_obj(rx_vq.used_addr().unchecked_add(2)).unwrap();
                while seen < used {
                    let (id, len) = used_elem(&mem, &rx_vq, u64::from(seen));
                    seen += 1;
                    let mut frame = vec![0u8; len as usize];
                    mem.read_slice(&mut frame, GuestAddress(BUF + u64::from(id) * 0x1000))
                        .unwrap();
                    let eth = &frame[NET_HDR_BYTES..];
                    if eth.len() >= 42 && eth[12..14] == [0x08, 0x06] && eth[20..22] == [0, 2] {
                        return Ok(eth.to_vec());
                    }
                }
            }
            Err(format!(
                "no ARP reply within 5 s; counters {:?}",
                net.net_counters()
            ))
        })
        .join()
        .unwrap();
        let reply = outcome.unwrap();
        assert_eq!(&reply[0..6], &MAC, "addressed to the guest");
        assert_eq!(&reply[28..32], &[198, 18, 0, 1], "sender 198.18.0.1");
        assert_eq!(&reply[32..38], &MAC, "target MAC the guest's");
        assert_eq!(&reply[38..42], &[198, 18, 0, 2], "target 198.18.0.2");
    }
}
