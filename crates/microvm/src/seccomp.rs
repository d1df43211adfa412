//! Seccomp filters for `cvbench-vmm`'s own threads, as Firecracker confines its VMM: one allow-list
//! for the VMM threads (main and signal thread) and a narrower one for each vCPU thread, compiled with
//! `seccompiler`; any other system call raises `SIGSYS`, whose handler prints which thread made which
//! call and exits with [`EXIT_FORBIDDEN_SYSCALL`].
//!
//! The lists are what the VMM really calls once the VM is created, taken from
//! `strace -f cvbench-vmm --kernel <probe> ...` of a probe boot that resets and of a two-vCPU probe
//! boot stopped with SIGTERM (threads' start and exit in glibc and std, the KVM ioctls, virtio-blk
//! I/O, the event and console writes, the kick signal), plus the few calls of the same family a
//! path the probe does not take may make (vectored I/O, `fsync`, sleeping, `sched_yield`). `ioctl` is
//! allowed on any descriptor: every VMM ioctl is a KVM one, but the request numbers are not filtered
//! yet.
//!
//! Filters stack: the vCPU threads are created after the VMM filter is installed, inherit it and add
//! their own, so a vCPU thread may only make calls on both lists.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// Exit status after a forbidden system call (the same as Firecracker's).
pub const EXIT_FORBIDDEN_SYSCALL: i32 = 148;

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name)),*]
    };
}

/// What a vCPU thread calls in its run loop and on its way out.
pub const VCPU_SYSCALLS: &[(&str, i64)] = syscalls![
    // KVM_RUN and the rest of the vCPU's KVM ioctls.
    SYS_ioctl,
    // Console and event lines; irqfd/eventfd signalling.
    SYS_write,
    SYS_writev,
    // No device I/O: virtio requests are served by the I/O thread (a QueueNotify is an ioeventfd, or
    // at worst an eventfd `write` above).
    // Locks, the kick signal, the allocator.
    SYS_futex,
    SYS_rt_sigreturn,
    SYS_rt_sigprocmask,
    SYS_mmap,
    SYS_munmap,
    SYS_mprotect,
    SYS_madvise,
    SYS_brk,
    SYS_sched_yield,
    SYS_getrandom,
    SYS_clock_gettime,
    // Thread exit (glibc, std) and the SIGSYS report.
    SYS_sigaltstack,
    SYS_rseq,
    SYS_set_robust_list,
    SYS_sched_getaffinity,
    SYS_gettid,
    SYS_prctl,
    SYS_close,
    SYS_fcntl,
    SYS_exit,
    SYS_exit_group,
];

/// What the VMM threads call besides: starting, confining, kicking and joining the vCPU threads, the
/// signal thread's self-pipe, sleeping, and the I/O thread's device work (it is started after the
/// VMM filter is installed, so it runs under it).
pub const VMM_EXTRA_SYSCALLS: &[(&str, i64)] = syscalls![
    // Each vCPU thread installs its own filter on top of the inherited one.
    SYS_seccomp,
    SYS_clone3,
    SYS_clone,
    SYS_tgkill,
    SYS_getpid,
    SYS_rt_sigaction,
    SYS_recvfrom,
    SYS_sendto,
    SYS_read,
    SYS_poll,
    SYS_ppoll,
    SYS_nanosleep,
    SYS_clock_nanosleep,
    // The I/O thread (devices/virtio/event_loop.rs): waiting on its epoll set, and virtio-blk's
    // direct reads and writes of the disk file (`read`/`write` after `lseek`) and FLUSH.
    SYS_epoll_wait,
    SYS_epoll_pwait,
    SYS_lseek,
    SYS_fdatasync,
    SYS_fsync,
];

/// The compiled filters.
#[derive(Debug, Clone)]
pub struct Filters {
    pub vmm: BpfProgram,
    pub vcpu: BpfProgram,
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("compiling the seccomp filters: {0}")]
    Compile(#[from] seccompiler::BackendError),
    #[error("installing the {what} seccomp filter: {source}")]
    Install {
        what: &'static str,
        source: seccompiler::Error,
    },
    #[error("installing the SIGSYS handler: {0}")]
    Handler(nix::errno::Errno),
}

fn allow_list(lists: &[&[(&str, i64)]]) -> Result<BpfProgram, SeccompError> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = lists
        .iter()
        .flat_map(|l| l.iter())
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    Ok(BpfProgram::try_from(SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )?)?)
}

impl Filters {
    pub fn compile() -> Result<Filters, SeccompError> {
        Ok(Filters {
            vmm: allow_list(&[VCPU_SYSCALLS, VMM_EXTRA_SYSCALLS])?,
            vcpu: allow_list(&[VCPU_SYSCALLS])?,
        })
    }
}

/// The vCPU filter every vCPU thread started from now on installs first (see [`vcpu_thread`]).
static VCPU_FILTER: OnceLock<BpfProgram> = OnceLock::new();

/// Confines the calling thread (and threads it starts later) with the VMM filter, and makes every
/// vCPU thread started from now on add the vCPU filter. Installs the SIGSYS reporter first.
pub fn confine_vmm(filters: Filters) -> Result<(), SeccompError> {
    install_sigsys_reporter()?;
    // A second call keeps the first vCPU filter; both come from `Filters::compile`.
    let _ = VCPU_FILTER.set(filters.vcpu);
    seccompiler::apply_filter(&filters.vmm).map_err(|source| SeccompError::Install { what: "VMM", source })
}

/// Runs `body` on a vCPU thread, confined by the vCPU filter when [`confine_vmm`] registered one. A
/// filter that cannot be installed ends the process: a VMM asked to confine its vCPUs must not run
/// them unconfined.
pub fn vcpu_thread<T>(body: impl FnOnce() -> T) -> T {
    if let Some(filter) = VCPU_FILTER.get() {
        if let Err(e) = seccompiler::apply_filter(filter) {
            eprintln!("cvbench-vmm: installing the vCPU seccomp filter: {e}");
            std::process::exit(1);
        }
    }
    body()
}

/// Writes `n` in decimal into `buf`, returning the digits (no allocation).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        // A digit fits in u8.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (n % 10) as u8;
        buf[i] = b'0' + digit;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

fn raw_write(bytes: &[u8]) {
    // SAFETY: writing a valid buffer to stderr; the result cannot be reported anywhere.
    let _ = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
}

/// `SIGSYS` from a seccomp `Trap`: says which thread made which call, then exits. Async-signal-safe:
/// only `prctl(PR_GET_NAME)`, `write` and `_exit`, no allocation.
extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // siginfo_t for SIGSYS: si_signo, si_errno, si_code (3 ints, padded to 16 bytes), then
    // void *si_call_addr, int si_syscall, unsigned int si_arch.
    const SI_SYSCALL_OFFSET: usize = 24;
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler; si_syscall is an int at
    // this offset on x86_64 for SIGSYS.
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<libc::c_int>()
            .read_unaligned()
    };
    let mut name = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes and a NUL into the 17-byte buffer.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr(), 0, 0, 0) };
    let name_len = name.iter().position(|&b| b == 0).unwrap_or(16);
    let mut digits = [0u8; 20];
    raw_write(b"cvbench-vmm: seccomp: thread ");
    raw_write(&name[..name_len]);
    raw_write(b" made system call ");
    raw_write(decimal(u64::try_from(nr).unwrap_or(0), &mut digits));
    raw_write(b", which its filter forbids; exiting (--no-seccomp turns the filters off)\n");
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(EXIT_FORBIDDEN_SYSCALL) };
}

fn install_sigsys_reporter() -> Result<(), SeccompError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::SigAction(on_sigsys),
        SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    // SAFETY: the handler is async-signal-safe (see `on_sigsys`).
    unsafe { sigaction(Signal::SIGSYS, &action) }
        .map(drop)
        .map_err(SeccompError::Handler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filters_compile_and_the_vcpu_list_is_inside_the_vmm_list() {
        let f = Filters::compile().unwrap();
        assert!(!f.vmm.is_empty() && f.vcpu.len() < f.vmm.len());
        fn names(l: &'static [(&'static str, i64)]) -> Vec<&'static str> {
            l.iter().map(|(n, _)| *n).collect()
        }
        for n in names(VCPU_SYSCALLS) {
            assert!(!names(VMM_EXTRA_SYSCALLS).contains(&n), "{n} listed twice");
        }
        for forbidden in ["SYS_socket", "SYS_execve", "SYS_fork", "SYS_openat", "SYS_mount"] {
            assert!(
                !names(VCPU_SYSCALLS).contains(&forbidden) && !names(VMM_EXTRA_SYSCALLS).contains(&forbidden),
                "{forbidden}"
            );
        }
        // A vCPU thread cannot start threads or signal others.
        assert!(!names(VCPU_SYSCALLS).contains(&"SYS_clone3"));
    }

    #[test]
    fn decimal_digits() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(41, &mut b), b"41");
        assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
    }
}
