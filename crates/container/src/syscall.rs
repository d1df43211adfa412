//! The kernel calls the container's child process makes to build its root filesystem and confine
//! itself, behind a small trait: [`LinuxSyscall`] makes them, [`RecordingSyscall`] records them so unit tests can assert the
//! exact sequence without privileges.
//!
//! Every method takes `&CStr` and returns `Errno`, and the real implementation neither allocates nor
//! takes a lock: it runs in the child right after `clone()` of a possibly multi-threaded parent,
//! where another thread may have held the allocator's lock at the time of the clone.

use std::ffi::CStr;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::resource::Resource;
use nix::sys::stat::{Mode, SFlag};
use seccompiler::sock_filter;

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
    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> Result<(), Errno>;
    /// `prctl(PR_CAPBSET_DROP, cap)`.
    fn capbset_drop(&self, cap: u8) -> Result<(), Errno>;
    /// `capset(2)` (version 3, this process) with 64-bit masks.
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno>;
    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`.
    fn ambient_clear(&self) -> Result<(), Errno>;
    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)`.
    fn ambient_raise(&self, cap: u8) -> Result<(), Errno>;
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    fn set_no_new_privs(&self) -> Result<(), Errno>;
    /// Installs a seccomp BPF filter on this thread (`seccomp(SECCOMP_SET_MODE_FILTER)`).
    fn seccomp_filter(&self, program: &[sock_filter]) -> Result<(), Errno>;
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; version 3 takes two (low and high 32 bits).
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `prctl` with integer arguments.
fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: the prctl options used here take integer arguments only; no memory is passed.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    Errno::result(rc).map(drop)
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

    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> Result<(), Errno> {
        nix::sys::resource::setrlimit(resource, soft, hard)
    }

    fn capbset_drop(&self, cap: u8) -> Result<(), Errno> {
        prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0)
    }

    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        // Splitting a 64-bit mask into its two 32-bit halves.
        #[allow(clippy::cast_possible_truncation)]
        let half = |m: u64, shift: u32| (m >> shift) as u32;
        let data = [0, 32].map(|shift| CapData {
            effective: half(effective, shift),
            permitted: half(permitted, shift),
            inheritable: half(inheritable, shift),
        });
        // SAFETY: capset reads one header and, for version 3, two data structs, all of which live
        // on this stack frame for the duration of the call.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
        Errno::result(rc).map(drop)
    }

    fn ambient_clear(&self) -> Result<(), Errno> {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
        )
    }

    fn ambient_raise(&self, cap: u8) -> Result<(), Errno> {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            libc::c_ulong::from(cap),
        )
    }

    fn set_no_new_privs(&self) -> Result<(), Errno> {
        nix::sys::prctl::set_no_new_privs()
    }

    fn seccomp_filter(&self, program: &[sock_filter]) -> Result<(), Errno> {
        // seccompiler installs with seccomp(SECCOMP_SET_MODE_FILTER) (after setting no_new_privs,
        // which every level with a filter sets anyway); it neither allocates nor locks.
        seccompiler::apply_filter(program).map_err(|e| match e {
            seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => {
                Errno::from_raw(io.raw_os_error().unwrap_or(libc::EINVAL))
            }
            _ => Errno::EINVAL,
        })
    }
}

/// Records every call as one line (e.g. `mount overlay /m overlay [] lowerdir=...`) and succeeds, or
/// fails the calls whose line starts with a prefix with an errno.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: Mutex<Vec<String>>,
    fail_on: Option<(String, Errno)>,
}

impl RecordingSyscall {
    pub fn new() -> Self {
        RecordingSyscall::default()
    }

    /// A recorder that fails (with `EPERM`) every call whose line starts with `prefix`.
    pub fn failing_on(prefix: &str) -> Self {
        RecordingSyscall::failing_with(prefix, Errno::EPERM)
    }

    /// A recorder that fails every call whose line starts with `prefix` with `errno`.
    pub fn failing_with(prefix: &str, errno: Errno) -> Self {
        RecordingSyscall {
            calls: Mutex::new(Vec::new()),
            fail_on: Some((prefix.to_string(), errno)),
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, line: String) -> Result<(), Errno> {
        let fail = self
            .fail_on
            .as_ref()
            .filter(|(p, _)| line.starts_with(p.as_str()))
            .map(|(_, e)| *e);
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(line);
        }
        match fail {
            Some(e) => Err(e),
            None => Ok(()),
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
    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> Result<(), Errno> {
        self.record(format!("setrlimit {resource:?} {soft} {hard}"))
    }
    fn capbset_drop(&self, cap: u8) -> Result<(), Errno> {
        self.record(format!("capbset_drop {cap}"))
    }
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
        self.record(format!(
            "capset e={effective:#x} p={permitted:#x} i={inheritable:#x}"
        ))
    }
    fn ambient_clear(&self) -> Result<(), Errno> {
        self.record("ambient_clear".to_string())
    }
    fn ambient_raise(&self, cap: u8) -> Result<(), Errno> {
        self.record(format!("ambient_raise {cap}"))
    }
    fn set_no_new_privs(&self) -> Result<(), Errno> {
        self.record("no_new_privs".to_string())
    }
    fn seccomp_filter(&self, program: &[sock_filter]) -> Result<(), Errno> {
        self.record(format!("seccomp {} instructions", program.len()))
    }
}
