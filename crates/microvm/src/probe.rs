//! The probe guest payload (guest/probe.S, assembled by build.rs) and the disk format it expects.
//! Booted through the normal builder it checks the zero page, prints to COM1, hits the boot timer,
//! drives virtio-blk on `vda`, and resets — so the VMM's own cost can be measured without a kernel,
//! even where KVM is paravirtual.

use std::path::{Path, PathBuf};

/// The probe ELF (entry at 1 MiB, 64-bit).
pub const PROBE_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe.elf"));
/// Sector the probe reads; it must start with [`READ_MAGIC`].
pub const READ_SECTOR: u64 = 1;
/// Sector the probe writes: the read sector with [`WRITTEN_MAGIC`] in place of [`READ_MAGIC`].
pub const WRITTEN_SECTOR: u64 = 2;
pub const READ_MAGIC: &[u8; 8] = b"CVBPROBE";
pub const WRITTEN_MAGIC: &[u8; 8] = b"CVBWROTE";
/// Bytes of the read sector after the magic that the probe echoes (`PROBE sector1 <token>`).
pub const TOKEN_BYTES: usize = 32;
/// Command-line word: after READY, halt instead of resetting (the host stops the VM).
pub const HALT_FLAG: &str = "probe.halt";
/// Command-line word: after READY, spin in the guest forever without an exit (the host stops the VM).
pub const SPIN_FLAG: &str = "probe.spin";
/// Command-line word: spin forever right at entry, before the first exit to the VMM (the host stops
/// the VM).
pub const ENTRY_SPIN_FLAG: &str = "probe.entryspin";
/// Command-line word: install a #BP handler and execute `int3` before driving the disk.
pub const INT3_FLAG: &str = "probe.int3";
/// Command-line word: triple-fault right after the boot timer.
pub const FAULT_FLAG: &str = "probe.fault";
/// Line the probe prints when it is done (the READY protocol line).
pub const READY_LINE: &str = "CVBENCH READY probe";

/// A disk image of `sectors` sectors whose sector [`READ_SECTOR`] holds the magic and `token`
/// (padded with `.` to [`TOKEN_BYTES`]).
pub fn disk_image(token: &str, sectors: usize) -> Vec<u8> {
    let mut disk = vec![0u8; sectors.max(3) * 512];
    let start = crate::arch::x86_64::usize_from_u64(READ_SECTOR * 512);
    disk[start..start + 8].copy_from_slice(READ_MAGIC);
    let mut padded = token.as_bytes().to_vec();
    padded.resize(TOKEN_BYTES, b'.');
    disk[start + 8..start + 8 + TOKEN_BYTES].copy_from_slice(&padded[..TOKEN_BYTES]);
    disk
}

/// Writes [`PROBE_ELF`] to `dir/cvbench-probe.elf` (if not already there with the same bytes).
pub fn write_payload(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("cvbench-probe.elf");
    if std::fs::read(&path).ok().as_deref() != Some(PROBE_ELF) {
        let tmp = dir.join(format!(".cvbench-probe.elf.{}", std::process::id()));
        std::fs::write(&tmp, PROBE_ELF)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn disk_image_places_magic_and_token_in_sector_one() {
        let disk = disk_image("abc", 8);
        assert_eq!(disk.len(), 8 * 512);
        assert_eq!(&disk[512..520], READ_MAGIC);
        assert_eq!(&disk[520..523], b"abc");
        assert_eq!(disk[523], b'.');
        assert!(disk[..512].iter().all(|&b| b == 0));
    }

    #[test]
    fn payload_is_a_64bit_elf_entered_at_one_mib() {
        assert_eq!(&PROBE_ELF[..4], b"\x7fELF");
        assert_eq!(PROBE_ELF[4], 2, "ELFCLASS64");
        let entry = u64::from_le_bytes(PROBE_ELF[0x18..0x20].try_into().unwrap());
        assert_eq!(entry, crate::layout::HIMEM_START);
    }
}
