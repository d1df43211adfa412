//! virtio-blk backed by a host file: IN, OUT, FLUSH (fdatasync) and GET_ID, with the read-only feature
//! for the shared image. Every request is checked before any byte moves: the chain's shape (header,
//! data, status), each buffer inside guest memory, and the sector range inside the disk. A request that
//! fails any check completes with `VIRTIO_BLK_S_IOERR` (or is dropped with length 0 when it has no
//! usable status byte); it never stops the VMM.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

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

/// Why a request failed (reported to the guest as a status byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestError {
    /// Bad chain, bad addresses, out-of-range sectors, host I/O failure.
    Io,
    Unsupported,
}

pub struct Block {
    file: File,
    read_only: bool,
    disk_bytes: u64,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    config: [u8; 8],
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
        })
    }

    /// Serves one chain; returns the number of bytes written into guest memory (the used length).
    fn serve(&mut self, descriptors: &[Descriptor], mem: &GuestMemoryMmap) -> u32 {
        // The last descriptor must be a writable status byte inside guest memory; without it there is
        // nowhere to report an error, so the chain is returned unused.
        let Some(status) = descriptors.last().filter(|d| {
            descriptors.len() >= 2 && d.is_write_only() && d.len() >= 1 && mem.check_range(d.addr(), 1)
        }) else {
            return 0;
        };
        let data = &descriptors[1..descriptors.len() - 1];
        let (code, written) = match self.execute(&descriptors[0], data, mem) {
            Ok(written) => (STATUS_OK, written),
            Err(RequestError::Io) => (STATUS_IOERR, 0),
            Err(RequestError::Unsupported) => (STATUS_UNSUPP, 0),
        };
        if mem.write_obj(code, status.addr()).is_err() {
            return 0;
        }
        written.saturating_add(1)
    }

    fn execute(
        &mut self,
        header: &Descriptor,
        data: &[Descriptor],
        mem: &GuestMemoryMmap,
    ) -> Result<u32, RequestError> {
        if header.is_write_only() || header.len() < REQUEST_HEADER_BYTES {
            return Err(RequestError::Io);
        }
        let request_type: u32 = mem.read_obj(header.addr()).map_err(|_| RequestError::Io)?;
        let sector: u64 = mem
            .read_obj(
                header
                    .addr()
                    .0
                    .checked_add(8)
                    .map(GuestAddress)
                    .ok_or(RequestError::Io)?,
            )
            .map_err(|_| RequestError::Io)?;
        for d in data {
            if !mem.check_range(d.addr(), d.len() as usize) {
                return Err(RequestError::Io);
            }
        }
        match request_type {
            VIRTIO_BLK_T_IN => self.read_sectors(sector, data, mem),
            VIRTIO_BLK_T_OUT => self.write_sectors(sector, data, mem),
            VIRTIO_BLK_T_FLUSH => {
                if !self.read_only {
                    self.file.sync_data().map_err(|_| RequestError::Io)?;
                }
                Ok(0)
            }
            VIRTIO_BLK_T_GET_ID => {
                let buf = data
                    .first()
                    .filter(|d| d.is_write_only())
                    .ok_or(RequestError::Io)?;
                let n = buf.len().min(VIRTIO_BLK_ID_BYTES);
                mem.write_slice(&self.id[..n as usize], buf.addr())
                    .map_err(|_| RequestError::Io)?;
                Ok(n)
            }
            _ => Err(RequestError::Unsupported),
        }
    }

    /// The disk byte range `[offset, offset + len)` of a request, if it lies inside the disk.
    fn disk_range(&self, sector: u64, data: &[Descriptor]) -> Result<u64, RequestError> {
        let len: u64 = data.iter().map(|d| u64::from(d.len())).sum();
        let offset = sector.checked_mul(SECTOR_BYTES).ok_or(RequestError::Io)?;
        match offset.checked_add(len) {
            Some(end) if end <= self.disk_bytes => Ok(offset),
            _ => Err(RequestError::Io),
        }
    }

    fn read_sectors(
        &self,
        sector: u64,
        data: &[Descriptor],
        mem: &GuestMemoryMmap,
    ) -> Result<u32, RequestError> {
        if data.iter().any(|d| !d.is_write_only()) {
            return Err(RequestError::Io);
        }
        let mut offset = self.disk_range(sector, data)?;
        let mut written: u32 = 0;
        for d in data {
            let mut buf = vec![0u8; d.len() as usize];
            self.file
                .read_exact_at(&mut buf, offset)
                .map_err(|_| RequestError::Io)?;
            mem.write_slice(&buf, d.addr()).map_err(|_| RequestError::Io)?;
            offset += u64::from(d.len());
            written = written.saturating_add(d.len());
        }
        Ok(written)
    }

    fn write_sectors(
        &self,
        sector: u64,
        data: &[Descriptor],
        mem: &GuestMemoryMmap,
    ) -> Result<u32, RequestError> {
        if self.read_only || data.iter().any(|d| d.is_write_only()) {
            return Err(RequestError::Io);
        }
        let mut offset = self.disk_range(sector, data)?;
        for d in data {
            let mut buf = vec![0u8; d.len() as usize];
            mem.read_slice(&mut buf, d.addr()).map_err(|_| RequestError::Io)?;
            self.file
                .write_all_at(&buf, offset)
                .map_err(|_| RequestError::Io)?;
            offset += u64::from(d.len());
        }
        Ok(0)
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
