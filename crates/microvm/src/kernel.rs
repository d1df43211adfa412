//! Recognises a guest kernel before any VM exists: an ELF64 x86-64 image (a `vmlinux`, or the probe
//! payload) entered at its 64-bit entry point, or a bzImage with a 64-bit entry (boot protocol ≥
//! 2.12, `XLF_KERNEL_64`). Also works out how much guest RAM the kernel needs, so a too-small
//! `memory_mib` is refused with a clear message instead of a failed load or a dead guest.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::layout::HIMEM_START;

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const ELFCLASS64: u8 = 2;
const EM_X86_64: u16 = 0x3e;
const PT_LOAD: u32 = 1;
const ELF_HEADER_BYTES: usize = 64;
const PHDR_BYTES: usize = 56;
const BZIMAGE_HEADER_BYTES: usize = 0x270;
const XLF_KERNEL_64: u16 = 1;
/// Boot protocol 2.12 introduced `xloadflags` and the 64-bit entry.
const MIN_BOOT_PROTOCOL: u16 = 0x020c;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    Elf,
    BzImage,
}

/// What the VMM knows about a kernel file before loading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    pub path: PathBuf,
    pub format: KernelFormat,
    /// Guest RAM the kernel needs, from physical 0 to the end of its loaded (and, for a bzImage,
    /// decompressed) image.
    pub needed_ram_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("kernel {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("kernel {path} is neither an x86-64 ELF nor a bzImage")]
    UnknownFormat { path: PathBuf },
    #[error("kernel {path} is a 32-bit or non-x86-64 ELF")]
    WrongElf { path: PathBuf },
    #[error("kernel {path} has no loadable segment")]
    NoLoadSegment { path: PathBuf },
    #[error("kernel {path} loads below 1 MiB ({paddr:#x}), over the boot structures")]
    LoadsTooLow { path: PathBuf, paddr: u64 },
    #[error("bzImage {path} uses boot protocol {version:#06x}; a 64-bit entry needs ≥ 2.12")]
    OldBootProtocol { path: PathBuf, version: u16 },
    #[error("bzImage {path} has no 64-bit entry point (XLF_KERNEL_64 unset)")]
    No64BitEntry { path: PathBuf },
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

impl KernelImage {
    pub fn inspect(path: &Path) -> Result<KernelImage, KernelError> {
        let io = |source| KernelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let mut head = vec![0u8; BZIMAGE_HEADER_BYTES];
        let got = read_up_to(&mut file, &mut head).map_err(io)?;
        head.truncate(got);
        if head.len() >= ELF_HEADER_BYTES && head[..4] == ELF_MAGIC {
            return Self::inspect_elf(path, &mut file, &head);
        }
        if head.len() == BZIMAGE_HEADER_BYTES
            && u16_at(&head, 0x1fe) == 0xaa55
            && u32_at(&head, 0x202) == 0x5372_6448
        {
            return Self::inspect_bzimage(path, &head);
        }
        Err(KernelError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }

    fn inspect_elf(path: &Path, file: &mut File, head: &[u8]) -> Result<KernelImage, KernelError> {
        let io = |source| KernelError::Io {
            path: path.to_path_buf(),
            source,
        };
        if head[4] != ELFCLASS64 || u16_at(head, 0x12) != EM_X86_64 {
            return Err(KernelError::WrongElf {
                path: path.to_path_buf(),
            });
        }
        let phoff = u64_at(head, 0x20);
        let phentsize = usize::from(u16_at(head, 0x36));
        let phnum = usize::from(u16_at(head, 0x38));
        if phentsize < PHDR_BYTES {
            return Err(KernelError::WrongElf {
                path: path.to_path_buf(),
            });
        }
        let mut needed: Option<u64> = None;
        let mut phdr = vec![0u8; phentsize];
        for i in 0..phnum as u64 {
            file.seek(SeekFrom::Start(phoff.saturating_add(i * phentsize as u64)))
                .map_err(io)?;
            file.read_exact(&mut phdr).map_err(io)?;
            let (p_type, paddr, memsz) = (u32_at(&phdr, 0), u64_at(&phdr, 0x18), u64_at(&phdr, 0x28));
            if p_type != PT_LOAD || memsz == 0 {
                continue;
            }
            if paddr < HIMEM_START {
                return Err(KernelError::LoadsTooLow {
                    path: path.to_path_buf(),
                    paddr,
                });
            }
            let end = paddr.saturating_add(memsz);
            needed = Some(needed.map_or(end, |n| n.max(end)));
        }
        let needed_ram_bytes = needed.ok_or_else(|| KernelError::NoLoadSegment {
            path: path.to_path_buf(),
        })?;
        Ok(KernelImage {
            path: path.to_path_buf(),
            format: KernelFormat::Elf,
            needed_ram_bytes,
        })
    }

    fn inspect_bzimage(path: &Path, head: &[u8]) -> Result<KernelImage, KernelError> {
        let version = u16_at(head, 0x206);
        if version < MIN_BOOT_PROTOCOL {
            return Err(KernelError::OldBootProtocol {
                path: path.to_path_buf(),
                version,
            });
        }
        if u16_at(head, 0x236) & XLF_KERNEL_64 == 0 {
            return Err(KernelError::No64BitEntry {
                path: path.to_path_buf(),
            });
        }
        let pref_address = u64_at(head, 0x258);
        let init_size = u64::from(u32_at(head, 0x260));
        let needed_ram_bytes = pref_address.max(HIMEM_START).saturating_add(init_size);
        Ok(KernelImage {
            path: path.to_path_buf(),
            format: KernelFormat::BzImage,
            needed_ram_bytes,
        })
    }
}

/// Environment variable naming the guest kernel: a directory holding `vmlinux` (as
/// guest/kernel/build.sh prints), or the kernel file itself.
pub const GUEST_KERNEL_ENV: &str = "CVBENCH_GUEST_KERNEL";
/// Where guest/kernel/build.sh caches kernels: `<root>/kernel/<config hash>/vmlinux`.
pub const DEFAULT_KERNEL_CACHE: &str = "/var/cache/cvbench/kernel";

/// The cvbench guest kernel, if one was built: `$CVBENCH_GUEST_KERNEL` (directory or file), else
/// the newest `vmlinux` under `cache_dir` (normally [`DEFAULT_KERNEL_CACHE`]).
pub fn locate_guest_kernel(env_value: Option<&std::ffi::OsStr>, cache_dir: &Path) -> Option<PathBuf> {
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        let file = if path.is_dir() { path.join("vmlinux") } else { path };
        return file.is_file().then_some(file);
    }
    std::fs::read_dir(cache_dir)
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("vmlinux"))
        .filter_map(|vmlinux| Some((vmlinux.metadata().ok()?.modified().ok()?, vmlinux)))
        .max()
        .map(|(_, vmlinux)| vmlinux)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::io::Write;

    use super::*;

    fn write_tmp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn the_probe_payload_is_an_elf_needing_a_little_ram() {
        let f = write_tmp(crate::probe::PROBE_ELF);
        let k = KernelImage::inspect(f.path()).unwrap();
        assert_eq!(k.format, KernelFormat::Elf);
        assert!(
            k.needed_ram_bytes > HIMEM_START && k.needed_ram_bytes < 2 << 20,
            "{:#x}",
            k.needed_ram_bytes
        );
    }

    #[test]
    fn bzimage_headers_are_checked() {
        let mut hdr = vec![0u8; 0x400];
        hdr[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        hdr[0x202..0x206].copy_from_slice(b"HdrS");
        hdr[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        hdr[0x236..0x238].copy_from_slice(&3u16.to_le_bytes());
        hdr[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        hdr[0x260..0x264].copy_from_slice(&0x80_0000u32.to_le_bytes());
        let k = KernelImage::inspect(write_tmp(&hdr).path()).unwrap();
        assert_eq!(
            (k.format, k.needed_ram_bytes),
            (KernelFormat::BzImage, 0x180_0000)
        );
        hdr[0x236] = 0;
        assert!(matches!(
            KernelImage::inspect(write_tmp(&hdr).path()),
            Err(KernelError::No64BitEntry { .. })
        ));
        hdr[0x206..0x208].copy_from_slice(&0x0204u16.to_le_bytes());
        assert!(matches!(
            KernelImage::inspect(write_tmp(&hdr).path()),
            Err(KernelError::OldBootProtocol { version: 0x0204, .. })
        ));
    }

    #[test]
    fn guest_kernel_is_found_from_env_or_newest_cache_entry() {
        let cache = tempfile::tempdir().unwrap();
        assert_eq!(locate_guest_kernel(None, cache.path()), None);
        for key in ["aaa", "bbb"] {
            std::fs::create_dir(cache.path().join(key)).unwrap();
            std::fs::write(cache.path().join(key).join("vmlinux"), key).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let newest = cache.path().join("bbb/vmlinux");
        assert_eq!(locate_guest_kernel(None, cache.path()), Some(newest));
        let dir = cache.path().join("aaa");
        assert_eq!(
            locate_guest_kernel(Some(dir.as_os_str()), cache.path()),
            Some(dir.join("vmlinux"))
        );
        let missing = cache.path().join("nope");
        assert_eq!(locate_guest_kernel(Some(missing.as_os_str()), cache.path()), None);
    }

    #[test]
    fn garbage_empty_and_missing_files_are_refused() {
        assert!(matches!(
            KernelImage::inspect(write_tmp(b"not a kernel").path()),
            Err(KernelError::UnknownFormat { .. })
        ));
        assert!(matches!(
            KernelImage::inspect(write_tmp(b"").path()),
            Err(KernelError::UnknownFormat { .. })
        ));
        let mut elf32 = vec![0u8; 64];
        elf32[..4].copy_from_slice(&ELF_MAGIC);
        elf32[4] = 1;
        assert!(matches!(
            KernelImage::inspect(write_tmp(&elf32).path()),
            Err(KernelError::WrongElf { .. })
        ));
        let missing = Path::new("/nonexistent/vmlinux");
        assert!(
            matches!(KernelImage::inspect(missing), Err(KernelError::Io { path, .. }) if path == missing)
        );
    }
}
