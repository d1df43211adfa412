//! The kernel calls the container's child process makes to build its root filesystem, behind a small
//! trait: [`LinuxSyscall`] makes them, [`RecordingSyscall`] records them so unit tests can assert the
//! exact sequence without privileges.
//!
//! Every method takes `&CStr` and returns `Errno`, and the real implementation neither allocates nor
//! takes a lock: it runs in the child right after `clone()` of a possibly multi-threaded parent,
//! where another thread may have held the allocator's lock at the time of the clone.

use std::ffi::CStr;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

pub trait Syscall {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    fn umount2(&self, target: &CStr, flags: MntFlags) -> Result<(), Errno>;
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno>;
    fn chdir(&self, path: &CStr) -> Result<(), Errno>;
    /// `mkdir`; an existing entry is not an error.
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno>;
    /// `mknod` of a character device.
    fn mknod_char(&self, path: &CStr, perm: u32, major: u64, minor: u64) -> Result<(), Errno>;
    /// `mknod` of an empty regular file (a bind-mount target; allowed in a user namespace, unlike
    /// device nodes).
    fn mknod_file(&self, path: &CStr, perm: u32) -> Result<(), Errno>;
    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno>;
    fn sethostname(&self, name: &CStr) -> Result<(), Errno>;
    /// Sets the process umask (returns nothing: umask cannot fail).
    fn umask(&self, mask: u32);
    /// Brings the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> Result<(), Errno>;
}

/// The real kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &CStr, flags: MntFlags) -> Result<(), Errno> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }

    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn mknod_char(&self, path: &CStr, perm: u32, major: u64, minor: u64) -> Result<(), Errno> {
        let dev = nix::sys::stat::makedev(major, minor);
        nix::sys::stat::mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(perm), dev)
    }

    fn mknod_file(&self, path: &CStr, perm: u32) -> Result<(), Errno> {
        nix::sys::stat::mknod(path, SFlag::S_IFREG, Mode::from_bits_truncate(perm), 0)
    }

    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno> {
        nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link)
    }

    fn sethostname(&self, name: &CStr) -> Result<(), Errno> {
        use std::os::unix::ffi::OsStrExt;
        nix::unistd::sethostname(std::ffi::OsStr::from_bytes(name.to_bytes()))
    }

    fn umask(&self, mask: u32) {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    }

    fn loopback_up(&self) -> Result<(), Errno> {
        // SAFETY: plain socket(2); the result is checked and owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // IFF_UP | IFF_RUNNING = 0x41 fits in the short flags field.
        #[allow(clippy::cast_possible_truncation)]
        let flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        req.ifr_ifru.ifru_flags = flags;
        // SAFETY: SIOCSIFFLAGS reads a valid, NUL-terminated ifreq that outlives the call.
        let rc = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&sock), libc::SIOCSIFFLAGS, &req) };
        if rc < 0 {
            return Err(Errno::last());
        }
        Ok(())
    }
}

/// Records every call as one line (e.g. `mount overlay /m overlay [] lowerdir=...`) and succeeds, or
/// fails the call whose line starts with `fail_on` with `EPERM`.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: Mutex<Vec<String>>,
    fail_on: Option<String>,
}

impl RecordingSyscall {
    pub fn new() -> Self {
        RecordingSyscall::default()
    }

    /// A recorder that fails (with `EPERM`) the first call whose line starts with `prefix`.
    pub fn failing_on(prefix: &str) -> Self {
        RecordingSyscall {
            calls: Mutex::new(Vec::new()),
            fail_on: Some(prefix.to_string()),
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, line: String) -> Result<(), Errno> {
        let fail = self.fail_on.as_deref().is_some_and(|p| line.starts_with(p));
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(line);
        }
        if fail {
            Err(Errno::EPERM)
        } else {
            Ok(())
        }
    }
}

fn s(c: &CStr) -> std::borrow::Cow<'_, str> {
    c.to_string_lossy()
}

fn opt(c: Option<&CStr>) -> String {
    c.map_or_else(|| "-".to_string(), |c| c.to_string_lossy().into_owned())
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        self.record(format!(
            "mount {} {} {} {:#x} {}",
            opt(source),
            s(target),
            opt(fstype),
            flags.bits(),
            opt(data)
        ))
    }
    fn umount2(&self, target: &CStr, flags: MntFlags) -> Result<(), Errno> {
        self.record(format!("umount2 {} {:#x}", s(target), flags.bits()))
    }
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        self.record(format!("pivot_root {} {}", s(new_root), s(put_old)))
    }
    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        self.record(format!("chdir {}", s(path)))
    }
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        self.record(format!("mkdir {} {mode:o}", s(path)))
    }
    fn mknod_char(&self, path: &CStr, perm: u32, major: u64, minor: u64) -> Result<(), Errno> {
        self.record(format!("mknod {} c {major}:{minor} {perm:o}", s(path)))
    }
    fn mknod_file(&self, path: &CStr, perm: u32) -> Result<(), Errno> {
        self.record(format!("mknod {} f {perm:o}", s(path)))
    }
    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno> {
        self.record(format!("symlink {} {}", s(target), s(link)))
    }
    fn sethostname(&self, name: &CStr) -> Result<(), Errno> {
        self.record(format!("sethostname {}", s(name)))
    }
    fn umask(&self, mask: u32) {
        let _ = self.record(format!("umask {mask:o}"));
    }
    fn loopback_up(&self) -> Result<(), Errno> {
        self.record("loopback_up".to_string())
    }
}
