//! Docker's default seccomp profile, as data, and its compilation into BPF with `seccompiler`.
//!
//! The table below is moby's `profiles/seccomp/default.json` (the profile `docker run` applies unless
//! told otherwise) for x86_64: an allow-list whose default action is `errno EPERM`. Names that exist
//! only on other ABIs (the `*32`, `*64`, `*_time64` variants of 32-bit systems, `socketcall`, `ipc`,
//! `_llseek`, `_newselect`, `mmap2`, `send`, `recv`, `sigreturn`, `waitpid`, ...) are left out: they
//! have no x86_64 number. Unlike Docker, the i386 and x32 ABIs are not allowed at all (seccompiler
//! checks the audit architecture first), which only makes the filter stricter.
//!
//! Docker makes some groups depend on the container's capabilities (`CAP_SYS_ADMIN` allows `mount`,
//! `unshare`, `clone` with namespace flags, ...); [`compile`] takes the bounding set and includes a
//! group exactly when Docker would. `clone3` gets `ENOSYS` instead of `EPERM` without
//! `CAP_SYS_ADMIN` (so that glibc falls back to `clone`, whose flags the filter can inspect):
//! seccompiler has one match action per filter, so that rule is a second, small filter; the kernel
//! runs both and the errno wins over the allow.
//!
//! The same table is translated into an OCI `linux.seccomp` section for runc (see
//! `harness::backends::runc`), so `--confinement docker` means the same filter for both runtimes.

use std::collections::BTreeMap;

use caps::Capability;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

/// What Docker's default action returns: `EPERM`.
pub const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// How a group of syscalls is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Allowed unconditionally.
    Allow,
    /// Allowed when argument 0 compares with `value` as `op` says.
    AllowIfArg0(ArgOp, u64),
    /// Fails with this errno (and is never allowed, even if another group lists it).
    Errno(u32),
}

/// The argument comparisons the profile uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgOp {
    Eq,
    Ne,
    /// `arg & mask == value`.
    MaskedEq(u64),
}

/// When a group applies, given the container's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Only if the capability is in the set.
    Has(Capability),
    /// Only if the capability is not in the set.
    Lacks(Capability),
}

/// One row of the profile.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// `(libc constant name, number)`, e.g. `("SYS_read", 0)`; [`Group::names`] gives `read`.
    pub syscalls: &'static [(&'static str, i64)],
    pub action: Action,
    pub when: When,
}

impl Group {
    /// The syscall names as the kernel and OCI call them (`read`, `clone3`).
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        self.syscalls
            .iter()
            .map(|(n, _)| n.strip_prefix("SYS_").unwrap_or(n))
    }
}

/// libc's syscall numbers, plus the few x86_64 ones this libc lacks.
mod nr {
    pub use libc::*;
    /// `arch/x86/entry/syscalls/syscall_64.tbl`.
    #[allow(non_upper_case_globals)] // named as libc names the others
    pub const SYS_io_pgetevents: c_long = 333;
}

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), nr::$name)),*]
    };
}

/// The namespace flags `clone` must not carry without `CAP_SYS_ADMIN` (Docker's 2114060288):
/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// `socket(AF_VSOCK, ...)` is refused.
const AF_VSOCK: u64 = 40;

/// Docker's default profile, row by row (x86_64 names; see the module docs).
pub const DOCKER_DEFAULT: &[Group] = &[
    Group {
        action: Action::Allow,
        when: When::Always,
        syscalls: syscalls![
            SYS_accept,
            SYS_accept4,
            SYS_access,
            SYS_adjtimex,
            SYS_alarm,
            SYS_bind,
            SYS_brk,
            SYS_capget,
            SYS_capset,
            SYS_chdir,
            SYS_chmod,
            SYS_chown,
            SYS_clock_adjtime,
            SYS_clock_getres,
            SYS_clock_gettime,
            SYS_clock_nanosleep,
            SYS_close,
            SYS_close_range,
            SYS_connect,
            SYS_copy_file_range,
            SYS_creat,
            SYS_dup,
            SYS_dup2,
            SYS_dup3,
            SYS_epoll_create,
            SYS_epoll_create1,
            SYS_epoll_ctl,
            SYS_epoll_ctl_old,
            SYS_epoll_pwait,
            SYS_epoll_pwait2,
            SYS_epoll_wait,
            SYS_epoll_wait_old,
            SYS_eventfd,
            SYS_eventfd2,
            SYS_execve,
            SYS_execveat,
            SYS_exit,
            SYS_exit_group,
            SYS_faccessat,
            SYS_faccessat2,
            SYS_fadvise64,
            SYS_fallocate,
            SYS_fanotify_mark,
            SYS_fchdir,
            SYS_fchmod,
            SYS_fchmodat,
            SYS_fchown,
            SYS_fchownat,
            SYS_fcntl,
            SYS_fdatasync,
            SYS_fgetxattr,
            SYS_flistxattr,
            SYS_flock,
            SYS_fork,
            SYS_fremovexattr,
            SYS_fsetxattr,
            SYS_fstat,
            SYS_fstatfs,
            SYS_fsync,
            SYS_ftruncate,
            SYS_futex,
            SYS_futex_waitv,
            SYS_futimesat,
            SYS_getcpu,
            SYS_getcwd,
            SYS_getdents,
            SYS_getdents64,
            SYS_getegid,
            SYS_geteuid,
            SYS_getgid,
            SYS_getgroups,
            SYS_getitimer,
            SYS_getpeername,
            SYS_getpgid,
            SYS_getpgrp,
            SYS_getpid,
            SYS_getppid,
            SYS_getpriority,
            SYS_getrandom,
            SYS_getresgid,
            SYS_getresuid,
            SYS_getrlimit,
            SYS_get_robust_list,
            SYS_getrusage,
            SYS_getsid,
            SYS_getsockname,
            SYS_getsockopt,
            SYS_get_thread_area,
            SYS_gettid,
            SYS_gettimeofday,
            SYS_getuid,
            SYS_getxattr,
            SYS_inotify_add_watch,
            SYS_inotify_init,
            SYS_inotify_init1,
            SYS_inotify_rm_watch,
            SYS_io_cancel,
            SYS_ioctl,
            SYS_io_destroy,
            SYS_io_getevents,
            SYS_io_pgetevents,
            SYS_ioprio_get,
            SYS_ioprio_set,
            SYS_io_setup,
            SYS_io_submit,
            SYS_io_uring_enter,
            SYS_io_uring_register,
            SYS_io_uring_setup,
            SYS_kill,
            SYS_landlock_add_rule,
            SYS_landlock_create_ruleset,
            SYS_landlock_restrict_self,
            SYS_lchown,
            SYS_lgetxattr,
            SYS_link,
            SYS_linkat,
            SYS_listen,
            SYS_listxattr,
            SYS_llistxattr,
            SYS_lremovexattr,
            SYS_lseek,
            SYS_lsetxattr,
            SYS_lstat,
            SYS_madvise,
            SYS_membarrier,
            SYS_memfd_create,
            SYS_memfd_secret,
            SYS_mincore,
            SYS_mkdir,
            SYS_mkdirat,
            SYS_mknod,
            SYS_mknodat,
            SYS_mlock,
            SYS_mlock2,
            SYS_mlockall,
            SYS_mmap,
            SYS_mprotect,
            SYS_mq_getsetattr,
            SYS_mq_notify,
            SYS_mq_open,
            SYS_mq_timedreceive,
            SYS_mq_timedsend,
            SYS_mq_unlink,
            SYS_mremap,
            SYS_msgctl,
            SYS_msgget,
            SYS_msgrcv,
            SYS_msgsnd,
            SYS_msync,
            SYS_munlock,
            SYS_munlockall,
            SYS_munmap,
            SYS_name_to_handle_at,
            SYS_nanosleep,
            SYS_newfstatat,
            SYS_open,
            SYS_openat,
            SYS_openat2,
            SYS_pause,
            SYS_pidfd_open,
            SYS_pidfd_send_signal,
            SYS_pipe,
            SYS_pipe2,
            SYS_pkey_alloc,
            SYS_pkey_free,
            SYS_pkey_mprotect,
            SYS_poll,
            SYS_ppoll,
            SYS_prctl,
            SYS_pread64,
            SYS_preadv,
            SYS_preadv2,
            SYS_prlimit64,
            SYS_process_mrelease,
            SYS_pselect6,
            SYS_pwrite64,
            SYS_pwritev,
            SYS_pwritev2,
            SYS_read,
            SYS_readahead,
            SYS_readlink,
            SYS_readlinkat,
            SYS_readv,
            SYS_recvfrom,
            SYS_recvmmsg,
            SYS_recvmsg,
            SYS_remap_file_pages,
            SYS_removexattr,
            SYS_rename,
            SYS_renameat,
            SYS_renameat2,
            SYS_restart_syscall,
            SYS_rmdir,
            SYS_rseq,
            SYS_rt_sigaction,
            SYS_rt_sigpending,
            SYS_rt_sigprocmask,
            SYS_rt_sigqueueinfo,
            SYS_rt_sigreturn,
            SYS_rt_sigsuspend,
            SYS_rt_sigtimedwait,
            SYS_rt_tgsigqueueinfo,
            SYS_sched_getaffinity,
            SYS_sched_getattr,
            SYS_sched_getparam,
            SYS_sched_get_priority_max,
            SYS_sched_get_priority_min,
            SYS_sched_getscheduler,
            SYS_sched_rr_get_interval,
            SYS_sched_setaffinity,
            SYS_sched_setattr,
            SYS_sched_setparam,
            SYS_sched_setscheduler,
            SYS_sched_yield,
            SYS_seccomp,
            SYS_select,
            SYS_semctl,
            SYS_semget,
            SYS_semop,
            SYS_semtimedop,
            SYS_sendfile,
            SYS_sendmmsg,
            SYS_sendmsg,
            SYS_sendto,
            SYS_setfsgid,
            SYS_setfsuid,
            SYS_setgid,
            SYS_setgroups,
            SYS_setitimer,
            SYS_setpgid,
            SYS_setpriority,
            SYS_setregid,
            SYS_setresgid,
            SYS_setresuid,
            SYS_setreuid,
            SYS_setrlimit,
            SYS_set_robust_list,
            SYS_setsid,
            SYS_setsockopt,
            SYS_set_thread_area,
            SYS_set_tid_address,
            SYS_setuid,
            SYS_setxattr,
            SYS_shmat,
            SYS_shmctl,
            SYS_shmdt,
            SYS_shmget,
            SYS_shutdown,
            SYS_sigaltstack,
            SYS_signalfd,
            SYS_signalfd4,
            SYS_socketpair,
            SYS_splice,
            SYS_stat,
            SYS_statfs,
            SYS_statx,
            SYS_symlink,
            SYS_symlinkat,
            SYS_sync,
            SYS_sync_file_range,
            SYS_syncfs,
            SYS_sysinfo,
            SYS_tee,
            SYS_tgkill,
            SYS_time,
            SYS_timer_create,
            SYS_timer_delete,
            SYS_timer_getoverrun,
            SYS_timer_gettime,
            SYS_timer_settime,
            SYS_timerfd_create,
            SYS_timerfd_gettime,
            SYS_timerfd_settime,
            SYS_times,
            SYS_tkill,
            SYS_truncate,
            SYS_umask,
            SYS_uname,
            SYS_unlink,
            SYS_unlinkat,
            SYS_utime,
            SYS_utimensat,
            SYS_utimes,
            SYS_vfork,
            SYS_vmsplice,
            SYS_wait4,
            SYS_waitid,
            SYS_write,
            SYS_writev,
        ],
    },
    // Docker: "minKernel 4.8" (ptrace cannot bypass seccomp from then on).
    Group {
        action: Action::Allow,
        when: When::Always,
        syscalls: syscalls![SYS_process_vm_readv, SYS_process_vm_writev, SYS_ptrace],
    },
    Group {
        action: Action::AllowIfArg0(ArgOp::Ne, AF_VSOCK),
        when: When::Always,
        syscalls: syscalls![SYS_socket],
    },
    // personality(2) with the domains Docker allows: PER_LINUX, UNAME26, PER_LINUX32,
    // UNAME26|PER_LINUX32, and the query 0xffffffff.
    Group {
        action: Action::AllowIfArg0(ArgOp::Eq, 0),
        when: When::Always,
        syscalls: syscalls![SYS_personality],
    },
    Group {
        action: Action::AllowIfArg0(ArgOp::Eq, 8),
        when: When::Always,
        syscalls: syscalls![SYS_personality],
    },
    Group {
        action: Action::AllowIfArg0(ArgOp::Eq, 0x2_0000),
        when: When::Always,
        syscalls: syscalls![SYS_personality],
    },
    Group {
        action: Action::AllowIfArg0(ArgOp::Eq, 0x2_0008),
        when: When::Always,
        syscalls: syscalls![SYS_personality],
    },
    Group {
        action: Action::AllowIfArg0(ArgOp::Eq, 0xffff_ffff),
        when: When::Always,
        syscalls: syscalls![SYS_personality],
    },
    // x86 only.
    Group {
        action: Action::Allow,
        when: When::Always,
        syscalls: syscalls![SYS_arch_prctl, SYS_modify_ldt],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_DAC_READ_SEARCH),
        syscalls: syscalls![SYS_open_by_handle_at],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYS_ADMIN),
        syscalls: syscalls![
            SYS_bpf,
            SYS_clone,
            SYS_clone3,
            SYS_fanotify_init,
            SYS_fsconfig,
            SYS_fsmount,
            SYS_fsopen,
            SYS_fspick,
            SYS_lookup_dcookie,
            SYS_mount,
            SYS_mount_setattr,
            SYS_move_mount,
            SYS_open_tree,
            SYS_perf_event_open,
            SYS_quotactl,
            SYS_quotactl_fd,
            SYS_setdomainname,
            SYS_sethostname,
            SYS_setns,
            SYS_syslog,
            SYS_umount2,
            SYS_unshare,
        ],
    },
    Group {
        action: Action::AllowIfArg0(ArgOp::MaskedEq(CLONE_NAMESPACE_FLAGS), 0),
        when: When::Lacks(Capability::CAP_SYS_ADMIN),
        syscalls: syscalls![SYS_clone],
    },
    Group {
        action: Action::Errno(libc::ENOSYS as u32),
        when: When::Lacks(Capability::CAP_SYS_ADMIN),
        syscalls: syscalls![SYS_clone3],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYS_BOOT),
        syscalls: syscalls![SYS_reboot],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYS_CHROOT),
        syscalls: syscalls![SYS_chroot],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYS_MODULE),
        syscalls: syscalls![SYS_delete_module, SYS_init_module, SYS_finit_module],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYS_PACCT),
        syscalls: syscalls![SYS_acct],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYS_PTRACE),
        syscalls: syscalls![
            SYS_kcmp,
            SYS_pidfd_getfd,
            SYS_process_madvise,
            SYS_process_vm_readv,
            SYS_process_vm_writev,
            SYS_ptrace,
        ],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYS_RAWIO),
        syscalls: syscalls![SYS_iopl, SYS_ioperm],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYS_TIME),
        syscalls: syscalls![SYS_settimeofday, SYS_clock_settime],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYS_TTY_CONFIG),
        syscalls: syscalls![SYS_vhangup],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYS_NICE),
        syscalls: syscalls![
            SYS_get_mempolicy,
            SYS_mbind,
            SYS_set_mempolicy,
            SYS_set_mempolicy_home_node,
        ],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_SYSLOG),
        syscalls: syscalls![SYS_syslog],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_BPF),
        syscalls: syscalls![SYS_bpf],
    },
    Group {
        action: Action::Allow,
        when: When::Has(Capability::CAP_PERFMON),
        syscalls: syscalls![SYS_perf_event_open],
    },
];

impl When {
    pub fn applies(self, caps: &[Capability]) -> bool {
        match self {
            When::Always => true,
            When::Has(c) => caps.contains(&c),
            When::Lacks(c) => !caps.contains(&c),
        }
    }
}

/// The groups of `profile` that apply to a container with capabilities `caps`.
pub fn applicable<'a>(
    profile: &'static [Group],
    caps: &'a [Capability],
) -> impl Iterator<Item = &'static Group> + 'a {
    profile.iter().filter(move |g| g.when.applies(caps))
}

#[derive(Debug, thiserror::Error)]
#[error("compiling the seccomp filter: {0}")]
pub struct CompileError(#[from] seccompiler::BackendError);

fn condition(op: ArgOp, value: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    let (op, value) = match op {
        ArgOp::Eq => (SeccompCmpOp::Eq, value),
        ArgOp::Ne => (SeccompCmpOp::Ne, value),
        ArgOp::MaskedEq(mask) => (SeccompCmpOp::MaskedEq(mask), value),
    };
    SeccompCondition::new(0, SeccompCmpArgLen::Qword, op, value)
}

/// Compiles `profile` for a container with capabilities `caps` into the BPF programs to install, in
/// order: the allow-list (mismatch → `EPERM`), then one filter per errno rule.
pub fn compile(profile: &'static [Group], caps: &[Capability]) -> Result<Vec<BpfProgram>, CompileError> {
    let mut allow: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    // A syscall allowed unconditionally by one group must not be narrowed by another's condition.
    let mut unconditional = std::collections::BTreeSet::new();
    let mut errno: BTreeMap<u32, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    for group in applicable(profile, caps) {
        for &(_, nr) in group.syscalls {
            match group.action {
                Action::Allow => {
                    unconditional.insert(nr);
                    allow.insert(nr, Vec::new());
                }
                Action::AllowIfArg0(op, value) => {
                    if !unconditional.contains(&nr) {
                        allow
                            .entry(nr)
                            .or_default()
                            .push(SeccompRule::new(vec![condition(op, value)?])?);
                    }
                }
                Action::Errno(e) => {
                    errno.entry(e).or_default().insert(nr, Vec::new());
                }
            }
        }
    }
    let arch = TargetArch::x86_64;
    let mut programs = vec![BpfProgram::try_from(SeccompFilter::new(
        allow,
        SeccompAction::Errno(DEFAULT_ERRNO),
        SeccompAction::Allow,
        arch,
    )?)?];
    for (e, rules) in errno {
        programs.push(BpfProgram::try_from(SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(e),
            arch,
        )?)?);
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_profile_compiles_and_denies_by_omission() {
        let caps = [Capability::CAP_CHOWN, Capability::CAP_SYS_CHROOT];
        let programs = compile(DOCKER_DEFAULT, &caps).unwrap();
        // The allow-list and the clone3 → ENOSYS filter.
        assert_eq!(programs.len(), 2);
        let allowed: Vec<&str> = applicable(DOCKER_DEFAULT, &caps)
            .filter(|g| g.action != Action::Errno(libc::ENOSYS as u32))
            .flat_map(Group::names)
            .collect();
        for denied in ["keyctl", "add_key", "mount", "unshare", "reboot"] {
            assert!(!allowed.contains(&denied), "{denied} must not be allowed");
        }
        assert!(allowed.contains(&"chroot"), "CAP_SYS_CHROOT allows chroot");
        assert!(allowed.contains(&"clone"), "clone without namespace flags");
        assert!(allowed.contains(&"read") && allowed.contains(&"execve"));
    }

    #[test]
    fn cap_sys_admin_opens_mount_and_drops_the_clone_conditions() {
        let caps = [Capability::CAP_SYS_ADMIN];
        let groups: Vec<&Group> = applicable(DOCKER_DEFAULT, &caps).collect();
        assert!(groups.iter().any(|g| g.names().any(|n| n == "mount")));
        assert!(!groups.iter().any(|g| matches!(
            g.action,
            Action::Errno(_) | Action::AllowIfArg0(ArgOp::MaskedEq(_), _)
        )));
        assert_eq!(compile(DOCKER_DEFAULT, &caps).unwrap().len(), 1);
    }
}
