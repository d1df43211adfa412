//! virtio-blk backed by a host file: IN, OUT, FLUSH (fdatasync) and GET_ID, with the read-only feature
//! for the shared image. Every request is checked before any byte moves: the chain's shape (header,
//! data, status), each buffer inside guest memory, and the sector range inside the disk. The header
//! is parsed into a typed [`RequestHeader`]; a request that fails any check completes with
//! `VIRTIO_BLK_S_IOERR` or `VIRTIO_BLK_S_UNSUPP` (or is returned with length 0 when it has no usable
//! status byte), is counted under its [`RequestError`] kind in [`BlockCounters`], and never stops
//! the VMM.
//!
//! Data moves between the file and guest memory directly (vm-memory's volatile reads and writes on
//! the file, as Firecracker's `sync_io` does): no bounce buffer. Requests run on the I/O thread.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryMmap};

use super::VirtioDevice;

pub const SECTOR_BYTES: u64 = 512;
/// Queue size offered to the driver.
pub const QUEUE_MAX_SIZE: u16 = 256;
/// Size of `struct virtio_blk_outhdr` (type, reserved, sector).
pub const REQUEST_HEADER_BYTES: u32 = 16;

// The status byte of each outcome: virtio-blk's codes are 0..=2, typed `u32` by the bindings.
// (OK is 0.)
const _: () = assert!(VIRTIO_BLK_S_IOERR <= 0xff && VIRTIO_BLK_S_UNSUPP <= 0xff);
#[allow(clippy::cast_possible_truncation)] // asserted above
const STATUS_OK: u8 = VIRTIO_BLK_S_OK as u8;
#[allow(clippy::cast_possible_truncation)] // asserted above
const STATUS_IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
#[allow(clippy::cast_possible_truncation)] // asserted above
const STATUS_UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("opening disk image {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("disk image {path} is empty or smaller than one sector ({bytes} bytes)")]
    TooSmall { path: PathBuf, bytes: u64 },
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    In,
    Out,
    Flush,
    GetId,
}

/// `struct virtio_blk_outhdr`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub request_type: RequestType,
    pub sector: u64,
}

impl RequestHeader {
    /// Parses the header descriptor: device-readable, at least 16 bytes, inside guest memory, and of
    /// a known type.
    pub fn parse(desc: &Descriptor, mem: &GuestMemoryMmap) -> Result<Self, RequestError> {
        if desc.is_write_only() {
            return Err(RequestError::HeaderWriteOnly);
        }
        if desc.len() < REQUEST_HEADER_BYTES {
            return Err(RequestError::HeaderTooShort { len: desc.len() });
        }
        let mut raw = [0u8; REQUEST_HEADER_BYTES as usize];
        mem.read_slice(&mut raw, desc.addr())
            .map_err(|_| RequestError::HeaderOutsideMemory)?;
        let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = raw;
        let request_type = match u32::from_le_bytes([t0, t1, t2, t3]) {
            VIRTIO_BLK_T_IN => RequestType::In,
            VIRTIO_BLK_T_OUT => RequestType::Out,
            VIRTIO_BLK_T_FLUSH => RequestType::Flush,
            VIRTIO_BLK_T_GET_ID => RequestType::GetId,
            other => return Err(RequestError::Unsupported { request_type: other }),
        };
        Ok(RequestHeader {
            request_type,
            sector: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
        })
    }
}

/// Why a request failed; each kind is counted separately and reported to the guest as a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the header descriptor is device-writable")]
    HeaderWriteOnly,
    #[error("the header descriptor has {len} bytes, fewer than 16")]
    HeaderTooShort { len: u32 },
    #[error("the header lies outside guest memory")]
    HeaderOutsideMemory,
    #[error("request type {request_type} is not supported")]
    Unsupported { request_type: u32 },
    #[error("a data buffer lies outside guest memory")]
    DataOutsideMemory,
    #[error("a read into a device-readable buffer")]
    ReadIntoReadOnlyBuffer,
    #[error("a write from a device-writable buffer")]
    WriteFromWriteOnlyBuffer,
    #[error("GET_ID without a device-writable buffer")]
    GetIdWithoutBuffer,
    #[error("the sector's byte offset overflows")]
    SectorOverflow,
    #[error("the request runs past the end of the disk")]
    PastEnd,
    #[error("a write to a read-only disk")]
    ReadOnly,
    #[error("reading the disk file failed: {0:?}")]
    HostRead(std::io::ErrorKind),
    #[error("writing the disk file failed: {0:?}")]
    HostWrite(std::io::ErrorKind),
    #[error("fdatasync of the disk file failed: {0:?}")]
    HostFlush(std::io::ErrorKind),
}

impl RequestError {
    /// The counter this error is counted under.
    pub fn counter(&self) -> &'static str {
        match self {
            RequestError::HeaderWriteOnly => "err_header_write_only",
            RequestError::HeaderTooShort { .. } => "err_header_too_short",
            RequestError::HeaderOutsideMemory => "err_header_outside_memory",
            RequestError::Unsupported { .. } => "err_unsupported_type",
            RequestError::DataOutsideMemory => "err_data_outside_memory",
            RequestError::ReadIntoReadOnlyBuffer => "err_read_into_readable_buffer",
            RequestError::WriteFromWriteOnlyBuffer => "err_write_from_writable_buffer",
            RequestError::GetIdWithoutBuffer => "err_get_id_without_buffer",
            RequestError::SectorOverflow => "err_sector_overflow",
            RequestError::PastEnd => "err_past_end",
            RequestError::ReadOnly => "err_read_only",
            RequestError::HostRead(_) => "err_host_read",
            RequestError::HostWrite(_) => "err_host_write",
            RequestError::HostFlush(_) => "err_host_flush",
        }
    }

    fn status(&self) -> u8 {
        match self {
            RequestError::Unsupported { .. } => STATUS_UNSUPP,
            _ => STATUS_IOERR,
        }
    }
}

/// What the device served and refused, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockCounters {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub get_ids: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Chains without a writable status byte in guest memory: returned with length 0.
    pub chains_without_status: u64,
    /// Failed requests by [`RequestError::counter`].
    pub errors: BTreeMap<&'static str, u64>,
}

impl BlockCounters {
    pub fn error_count(&self, kind: &str) -> u64 {
        self.errors.get(kind).copied().unwrap_or(0)
    }

    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        let mut pairs = vec![
            ("reads", self.reads),
            ("writes", self.writes),
            ("flushes", self.flushes),
            ("get_ids", self.get_ids),
            ("bytes_read", self.bytes_read),
            ("bytes_written", self.bytes_written),
            ("chains_without_status", self.chains_without_status),
        ];
        pairs.extend(self.errors.iter().map(|(k, v)| (*k, *v)));
        pairs
    }
}

pub struct Block {
    file: File,
    read_only: bool,
    disk_bytes: u64,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    config: [u8; 8],
    counters: BlockCounters,
}

impl Block {
    /// Opens `path` (read-only when `read_only`); `serial` becomes the GET_ID answer (truncated to 20
    /// bytes).
    pub fn open(path: &Path, read_only: bool, serial: &str) -> Result<Self, BlockError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| BlockError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let bytes = file
            .metadata()
            .map_err(|source| BlockError::Open {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        if bytes < SECTOR_BYTES {
            return Err(BlockError::TooSmall {
                path: path.to_path_buf(),
                bytes,
            });
        }
        let disk_bytes = bytes - bytes % SECTOR_BYTES;
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        for (dst, src) in id.iter_mut().zip(serial.bytes()) {
            *dst = src;
        }
        let config = (disk_bytes / SECTOR_BYTES).to_le_bytes();
        Ok(Block {
            file,
            read_only,
            disk_bytes,
            id,
            config,
            counters: BlockCounters::default(),
        })
    }

    /// What the device counted so far.
    pub fn block_counters(&self) -> &BlockCounters {
        &self.counters
    }

    /// Serves one chain; returns the number of bytes written into guest memory (the used length).
    fn serve(&mut self, descriptors: &[Descriptor], mem: &GuestMemoryMmap) -> u32 {
        // The last descriptor must be a writable status byte inside guest memory; without it there is
        // nowhere to report an error, so the chain is returned unused.
        let Some(status) = descriptors.last().filter(|d| {
            descriptors.len() >= 2 && d.is_write_only() && d.len() >= 1 && mem.check_range(d.addr(), 1)
        }) else {
            self.counters.chains_without_status += 1;
            return 0;
        };
        let data = &descriptors[1..descriptors.len() - 1];
        let (code, written) = match RequestHeader::parse(&descriptors[0], mem)
            .and_then(|header| self.execute(header, data, mem))
        {
            Ok(written) => (STATUS_OK, written),
            Err(err) => {
                *self.counters.errors.entry(err.counter()).or_insert(0) += 1;
                (err.status(), 0)
            }
        };
        if mem.write_obj(code, status.addr()).is_err() {
            self.counters.chains_without_status += 1;
            return 0;
        }
        written.saturating_add(1)
    }

    fn execute(
        &mut self,
        header: RequestHeader,
        data: &[Descriptor],
        mem: &GuestMemoryMmap,
    ) -> Result<u32, RequestError> {
        for d in data {
            if !mem.check_range(d.addr(), d.len() as usize) {
                return Err(RequestError::DataOutsideMemory);
            }
        }
        match header.request_type {
            RequestType::In => {
                let n = self.read_sectors(header.sector, data, mem)?;
                self.counters.reads += 1;
                self.counters.bytes_read += u64::from(n);
                Ok(n)
            }
            RequestType::Out => {
                let n = self.write_sectors(header.sector, data, mem)?;
                self.counters.writes += 1;
                self.counters.bytes_written += n;
                Ok(0)
            }
            RequestType::Flush => {
                if !self.read_only {
                    self.file
                        .sync_data()
                        .map_err(|e| RequestError::HostFlush(e.kind()))?;
                }
                self.counters.flushes += 1;
                Ok(0)
            }
            RequestType::GetId => {
                let buf = data
                    .first()
                    .filter(|d| d.is_write_only())
                    .ok_or(RequestError::GetIdWithoutBuffer)?;
                let n = buf.len().min(VIRTIO_BLK_ID_BYTES);
                mem.write_slice(&self.id[..n as usize], buf.addr())
                    .map_err(|_| RequestError::DataOutsideMemory)?;
                self.counters.get_ids += 1;
                Ok(n)
            }
        }
    }

    /// The disk byte range `[offset, offset + len)` of a request, if it lies inside the disk.
    fn disk_range(&self, sector: u64, data: &[Descriptor]) -> Result<u64, RequestError> {
        let len: u64 = data.iter().map(|d| u64::from(d.len())).sum();
        let offset = sector
            .checked_mul(SECTOR_BYTES)
            .ok_or(RequestError::SectorOverflow)?;
        match offset.checked_add(len) {
            Some(end) if end <= self.disk_bytes => Ok(offset),
            _ => Err(RequestError::PastEnd),
        }
    }

    /// Reads the sectors into the guest's buffers straight from the file.
    fn read_sectors(
        &mut self,
        sector: u64,
        data: &[Descriptor],
        mem: &GuestMemoryMmap,
    ) -> Result<u32, RequestError> {
        if data.iter().any(|d| !d.is_write_only()) {
            return Err(RequestError::ReadIntoReadOnlyBuffer);
        }
        let offset = self.disk_range(sector, data)?;
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| RequestError::HostRead(e.kind()))?;
        let mut written: u32 = 0;
        for d in data {
            mem.read_exact_volatile_from(d.addr(), &mut self.file, d.len() as usize)
                .map_err(|e| RequestError::HostRead(guest_io_kind(&e)))?;
            written = written.saturating_add(d.len());
        }
        Ok(written)
    }

    /// Writes the guest's buffers straight to the file; returns the bytes written.
    fn write_sectors(
        &mut self,
        sector: u64,
        data: &[Descriptor],
        mem: &GuestMemoryMmap,
    ) -> Result<u64, RequestError> {
        if self.read_only {
            return Err(RequestError::ReadOnly);
        }
        if data.iter().any(|d| d.is_write_only()) {
            return Err(RequestError::WriteFromWriteOnlyBuffer);
        }
        let offset = self.disk_range(sector, data)?;
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| RequestError::HostWrite(e.kind()))?;
        let mut total = 0u64;
        for d in data {
            mem.write_all_volatile_to(d.addr(), &mut self.file, d.len() as usize)
                .map_err(|e| RequestError::HostWrite(guest_io_kind(&e)))?;
            total += u64::from(d.len());
        }
        Ok(total)
    }
}

/// The I/O error kind inside a guest-memory transfer error (a short read is `UnexpectedEof`).
fn guest_io_kind(err: &vm_memory::GuestMemoryError) -> std::io::ErrorKind {
    match err {
        vm_memory::GuestMemoryError::IOError(e) => e.kind(),
        vm_memory::GuestMemoryError::PartialBuffer { .. } => std::io::ErrorKind::UnexpectedEof,
        _ => std::io::ErrorKind::Other,
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_MAX_SIZE]
    }

    fn features(&self) -> u64 {
        let mut features = (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_BLK_F_FLUSH);
        if self.read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // Only `capacity` (u64 sectors) is offered; the rest of the config space reads as zero.
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|o| self.config.get(o + i))
                .copied()
                .unwrap_or(0);
        }
    }

    fn process_queue(&mut self, _index: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        let mut used_any = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            // The chain iterator stops after `queue size` descriptors, so a looping chain ends.
            let descriptors: Vec<Descriptor> = chain.collect();
            let used_len = self.serve(&descriptors, mem);
            if queue.add_used(mem, head, used_len).is_err() {
                // The used ring is outside guest memory; nothing more can be completed.
                break;
            }
            used_any = true;
        }
        used_any
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.counters.pairs()
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::io::Write;

    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    use super::*;

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;
    const HDR: u64 = 0x10_0000;
    const DATA: u64 = 0x20_0000;
    const STATUS: u64 = 0x30_0000;

    struct Fixture {
        mem: GuestMemoryMmap,
        disk: tempfile::NamedTempFile,
    }

    fn fixture(disk_sectors: u64) -> Fixture {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let mut disk = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..disk_sectors * SECTOR_BYTES)
            .map(|i| (i / SECTOR_BYTES) as u8 ^ (i as u8))
            .collect();
        disk.write_all(&content).unwrap();
        Fixture { mem, disk }
    }

    fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(addr, len, flags, 0))
    }

    /// Submits one chain (descriptors linked in order) and returns (used length, status byte).
    fn submit(f: &Fixture, block: &mut Block, descs: &[RawDescriptor]) -> (u32, u8) {
        let vq = MockSplitQueue::create(&f.mem, GuestAddress(0), 16);
        let linked: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let d = Descriptor::from(*d);
                let last = i == descs.len() - 1;
                let flags = if last {
                    d.flags() & !F_NEXT
                } else {
                    d.flags() | F_NEXT
                };
                RawDescriptor::from(Descriptor::new(
                    d.addr().0,
                    d.len(),
                    flags,
                    if last { 0 } else { i as u16 + 1 },
                ))
            })
            .collect();
        vq.add_desc_chains(&linked, 0).unwrap();
        let mut queue: Queue = vq.create_queue().unwrap();
        f.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
        assert!(block.process_queue(0, &mut queue, &f.mem));
        let used_len: u32 = f.mem.read_obj(vq.used_addr().unchecked_add(8)).unwrap();
        let status: u8 = f.mem.read_obj(GuestAddress(STATUS)).unwrap();
        (used_len, status)
    }

    /// Submits the usual three-descriptor request: the 16-byte header at `HDR`, `data`, and a
    /// device-writable status byte at `STATUS`; returns (used length, status byte).
    fn submit_request(f: &Fixture, block: &mut Block, data: RawDescriptor) -> (u32, u8) {
        submit(f, block, &[desc(HDR, 16, 0), data, desc(STATUS, 1, F_WRITE)])
    }

    fn header(f: &Fixture, request_type: u32, sector: u64) {
        f.mem.write_obj(request_type, GuestAddress(HDR)).unwrap();
        f.mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
        f.mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
    }

    use vm_memory::Address;

    #[test]
    fn read_write_flush_get_id_round_trip() {
        let f = fixture(8);
        let mut block = Block::open(f.disk.path(), false, "cvbench-test-disk").unwrap();
        let mut cap = [0u8; 8];
        block.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);

        // Read sectors 2..4 into guest memory.
        header(&f, VIRTIO_BLK_T_IN, 2);
        let (used, status) = submit_request(&f, &mut block, desc(DATA, 1024, F_WRITE));
        assert_eq!((used, u32::from(status)), (1025, VIRTIO_BLK_S_OK));
        let mut got = vec![0u8; 1024];
        f.mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        let on_disk = std::fs::read(f.disk.path()).unwrap();
        assert_eq!(got, on_disk[1024..2048]);

        // Write a pattern to sector 5 from two buffers.
        let pattern: Vec<u8> = (0..512u32).map(|i| (i * 7) as u8).collect();
        f.mem.write_slice(&pattern, GuestAddress(DATA)).unwrap();
        header(&f, VIRTIO_BLK_T_OUT, 5);
        let (used, status) = submit(
            &f,
            &mut block,
            &[
                desc(HDR, 16, 0),
                desc(DATA, 256, 0),
                desc(DATA + 256, 256, 0),
                desc(STATUS, 1, F_WRITE),
            ],
        );
        assert_eq!((used, u32::from(status)), (1, VIRTIO_BLK_S_OK));
        header(&f, VIRTIO_BLK_T_FLUSH, 0);
        let (_, status) = submit(&f, &mut block, &[desc(HDR, 16, 0), desc(STATUS, 1, F_WRITE)]);
        assert_eq!(u32::from(status), VIRTIO_BLK_S_OK);
        let on_disk = std::fs::read(f.disk.path()).unwrap();
        assert_eq!(&on_disk[5 * 512..6 * 512], pattern.as_slice());

        header(&f, VIRTIO_BLK_T_GET_ID, 0);
        let (used, status) = submit_request(&f, &mut block, desc(DATA, 20, F_WRITE));
        assert_eq!((used, u32::from(status)), (21, VIRTIO_BLK_S_OK));
        let mut id = [0u8; 17];
        f.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, b"cvbench-test-disk");
    }

    #[test]
    fn reads_past_the_end_and_bad_addresses_get_ioerr() {
        let f = fixture(4);
        let mut block = Block::open(f.disk.path(), false, "d").unwrap();
        // Sector 3 is the last one; reading two sectors from it runs past the end.
        header(&f, VIRTIO_BLK_T_IN, 3);
        let (_, status) = submit_request(&f, &mut block, desc(DATA, 1024, F_WRITE));
        assert_eq!(u32::from(status), VIRTIO_BLK_S_IOERR);
        // A sector number whose byte offset overflows u64.
        header(&f, VIRTIO_BLK_T_IN, u64::MAX / 2);
        let (_, status) = submit_request(&f, &mut block, desc(DATA, 512, F_WRITE));
        assert_eq!(u32::from(status), VIRTIO_BLK_S_IOERR);
        // A data buffer outside guest memory.
        header(&f, VIRTIO_BLK_T_IN, 0);
        let (_, status) = submit_request(&f, &mut block, desc(0xf000_0000, 512, F_WRITE));
        assert_eq!(u32::from(status), VIRTIO_BLK_S_IOERR);
        // A header outside guest memory.
        let (_, status) = submit(
            &f,
            &mut block,
            &[
                desc(0xf000_0000, 16, 0),
                desc(DATA, 512, F_WRITE),
                desc(STATUS, 1, F_WRITE),
            ],
        );
        assert_eq!(u32::from(status), VIRTIO_BLK_S_IOERR);
        // A header that is too short, and a read into a device-readable buffer.
        header(&f, VIRTIO_BLK_T_IN, 0);
        let (_, status) = submit(
            &f,
            &mut block,
            &[
                desc(HDR, 8, 0),
                desc(DATA, 512, F_WRITE),
                desc(STATUS, 1, F_WRITE),
            ],
        );
        assert_eq!(u32::from(status), VIRTIO_BLK_S_IOERR);
        let (_, status) = submit_request(&f, &mut block, desc(DATA, 512, 0));
        assert_eq!(u32::from(status), VIRTIO_BLK_S_IOERR);
        // Unknown request type.
        header(&f, 77, 0);
        let (_, status) = submit(&f, &mut block, &[desc(HDR, 16, 0), desc(STATUS, 1, F_WRITE)]);
        assert_eq!(u32::from(status), VIRTIO_BLK_S_UNSUPP);
    }

    #[test]
    fn each_malformed_request_is_counted_under_its_own_kind() {
        let f = fixture(4);
        let mut block = Block::open(f.disk.path(), false, "d").unwrap();
        let ioerr = |status: u8| assert_eq!(u32::from(status), VIRTIO_BLK_S_IOERR);
        header(&f, VIRTIO_BLK_T_IN, 0);
        ioerr(
            submit(
                &f,
                &mut block,
                &[desc(HDR, 16, F_WRITE), desc(STATUS, 1, F_WRITE)],
            )
            .1,
        );
        ioerr(submit(&f, &mut block, &[desc(HDR, 8, 0), desc(STATUS, 1, F_WRITE)]).1);
        ioerr(
            submit(
                &f,
                &mut block,
                &[desc(0xf000_0000, 16, 0), desc(STATUS, 1, F_WRITE)],
            )
            .1,
        );
        ioerr(submit_request(&f, &mut block, desc(0xf000_0000, 512, F_WRITE)).1);
        ioerr(submit_request(&f, &mut block, desc(DATA, 512, 0)).1);
        header(&f, VIRTIO_BLK_T_OUT, 0);
        ioerr(submit_request(&f, &mut block, desc(DATA, 512, F_WRITE)).1);
        header(&f, VIRTIO_BLK_T_IN, 3);
        ioerr(submit_request(&f, &mut block, desc(DATA, 1024, F_WRITE)).1);
        ioerr(submit_request(&f, &mut block, desc(DATA, 1024, F_WRITE)).1);
        header(&f, VIRTIO_BLK_T_IN, u64::MAX / 2);
        ioerr(submit_request(&f, &mut block, desc(DATA, 512, F_WRITE)).1);
        header(&f, VIRTIO_BLK_T_GET_ID, 0);
        ioerr(submit_request(&f, &mut block, desc(DATA, 20, 0)).1);
        header(&f, 77, 0);
        let (_, status) = submit(&f, &mut block, &[desc(HDR, 16, 0), desc(STATUS, 1, F_WRITE)]);
        assert_eq!(u32::from(status), VIRTIO_BLK_S_UNSUPP);
        submit(&f, &mut block, &[desc(HDR, 16, 0)]);
        // One good read among them.
        header(&f, VIRTIO_BLK_T_IN, 1);
        let (_, status) = submit_request(&f, &mut block, desc(DATA, 512, F_WRITE));
        assert_eq!(u32::from(status), VIRTIO_BLK_S_OK);

        let c = block.block_counters();
        let expected = [
            ("err_header_write_only", 1),
            ("err_header_too_short", 1),
            ("err_header_outside_memory", 1),
            ("err_data_outside_memory", 1),
            ("err_read_into_readable_buffer", 1),
            ("err_write_from_writable_buffer", 1),
            ("err_past_end", 2),
            ("err_sector_overflow", 1),
            ("err_get_id_without_buffer", 1),
            ("err_unsupported_type", 1),
        ];
        for (kind, n) in expected {
            assert_eq!(c.error_count(kind), n, "{kind}: {c:?}");
        }
        assert_eq!(c.errors.len(), expected.len(), "no other kind counted: {c:?}");
        assert_eq!(c.chains_without_status, 1);
        assert_eq!((c.reads, c.bytes_read, c.writes), (1, 512, 0));
        let report = super::super::format_counters(&block.counters());
        assert!(report.contains("err_past_end=2"), "{report}");
        assert!(report.contains("reads=1"), "{report}");
    }

    #[test]
    fn typed_headers_parse_type_and_sector() {
        let f = fixture(1);
        header(&f, VIRTIO_BLK_T_OUT, 0x1234_5678_9abc);
        let d = Descriptor::new(HDR, 16, 0, 0);
        assert_eq!(
            RequestHeader::parse(&d, &f.mem),
            Ok(RequestHeader {
                request_type: RequestType::Out,
                sector: 0x1234_5678_9abc
            })
        );
        header(&f, 99, 0);
        assert_eq!(
            RequestHeader::parse(&d, &f.mem),
            Err(RequestError::Unsupported { request_type: 99 })
        );
    }

    #[test]
    fn chains_without_a_status_byte_are_returned_unused() {
        let f = fixture(4);
        let mut block = Block::open(f.disk.path(), false, "d").unwrap();
        header(&f, VIRTIO_BLK_T_IN, 0);
        // Only a header.
        let (used, status) = submit(&f, &mut block, &[desc(HDR, 16, 0)]);
        assert_eq!((used, status), (0, 0xee));
        // Status descriptor not writable.
        let (used, status) = submit(&f, &mut block, &[desc(HDR, 16, 0), desc(STATUS, 1, 0)]);
        assert_eq!((used, status), (0, 0xee));
        // Status descriptor outside guest memory.
        let (used, _) = submit(&f, &mut block, &[desc(HDR, 16, 0), desc(0xf000_0000, 1, F_WRITE)]);
        assert_eq!(used, 0);
    }

    #[test]
    fn read_only_disks_refuse_writes_but_serve_reads() {
        let f = fixture(4);
        let before = std::fs::read(f.disk.path()).unwrap();
        let mut block = Block::open(f.disk.path(), true, "ro").unwrap();
        assert_ne!(block.features() & (1 << VIRTIO_BLK_F_RO), 0);
        header(&f, VIRTIO_BLK_T_OUT, 0);
        let (_, status) = submit_request(&f, &mut block, desc(DATA, 512, 0));
        assert_eq!(u32::from(status), VIRTIO_BLK_S_IOERR);
        assert_eq!(std::fs::read(f.disk.path()).unwrap(), before);
        header(&f, VIRTIO_BLK_T_IN, 1);
        let (_, status) = submit_request(&f, &mut block, desc(DATA, 512, F_WRITE));
        assert_eq!(u32::from(status), VIRTIO_BLK_S_OK);
    }

    #[test]
    fn missing_or_tiny_disks_are_typed_errors() {
        let missing = Path::new("/nonexistent/cvbench-disk.img");
        assert!(
            matches!(Block::open(missing, true, "x"), Err(BlockError::Open { path, .. }) if path == missing)
        );
        let tiny = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(
            Block::open(tiny.path(), true, "x"),
            Err(BlockError::TooSmall { bytes: 0, .. })
        ));
    }
}
