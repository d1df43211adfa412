//! Creating the container's first process: one raw `clone()` into new namespaces, the [`SetupPlan`]
//! in the child, then `execve()`; the parent learns what happened over one CLOEXEC pipe.
//!
//! Why a raw `clone()` without `CLONE_VM` (fork-like, on a copy of the calling thread's stack): it
//! creates the process and all its namespaces in one system call (the pid namespace needs a fork
//! anyway, so `fork()` + `unshare()` + a second `fork()` costs an extra process and an extra
//! page-table copy). Measured on the development host (`examples/launch_latency.rs`, 50 runs, until
//! the namespaced process runs): one clone p50 0.64 ms, fork+unshare+fork p50 0.88 ms. It skips glibc's fork handlers, so in a multi-threaded parent another thread may
//! hold the allocator's lock at the time of the clone: the child therefore never allocates, locks or
//! panics. Everything it needs (the plan's C strings, argv, envp, file descriptors) is prepared by the
//! parent before the clone, and the child only makes system calls (see [`crate::syscall`]).
//!
//! The error pipe protocol: the child writes fixed-size [`Record`]s. `Stage::Ready` once namespaces,
//! rootfs and stdio are set up (the parent timestamps it when it becomes readable); then, if a
//! confinement applies, the masked/read-only path steps and the [`ConfinePlan`] run and
//! `Stage::Confined` follows right before `execve` (its timestamp minus Ready's is what confinement
//! costs). On a failure one record names the stage, the plan step and the errno, then `_exit(127)`.
//! The write end is CLOEXEC, so a successful `execve` closes it: the parent sees EOF, which is the
//! exec timestamp.
//!
//! The child dies with the harness: its first act is `PR_SET_PDEATHSIG` (SIGKILL), kept across the
//! `execve` into the workload; then it checks, through a pidfd of the harness opened before the
//! clone, that the harness did not die before that (in its new pid namespace `getppid` says 0, so
//! the pidfd is the check that works). The signal fires when the thread that cloned ends, so a
//! container is started from the thread that owns it.

use std::ffi::{c_char, CStr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::confine::ConfinePlan;
use crate::setup::{SetupPlan, Stage};
use crate::syscall::LinuxSyscall;

/// Namespaces every container gets.
pub const NAMESPACE_FLAGS: libc::c_int =
    libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET;

/// Marks "no plan step" in a record.
const NO_STEP: u32 = u32::MAX;
const RECORD_LEN: usize = 12;

/// One message on the error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub stage: u32,
    pub step: u32,
    pub errno: i32,
}

impl Record {
    fn to_bytes(self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..4].copy_from_slice(&self.stage.to_ne_bytes());
        b[4..8].copy_from_slice(&self.step.to_ne_bytes());
        b[8..12].copy_from_slice(&self.errno.to_ne_bytes());
        b
    }

    fn from_bytes(b: &[u8; RECORD_LEN]) -> Record {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Record {
            stage: u32::from_ne_bytes(word(0)),
            step: u32::from_ne_bytes(word(4)),
            errno: i32::from_ne_bytes(word(8)),
        }
    }
}

/// A user namespace mapping: container ids `0..count` are host ids `host_uid..` / `host_gid..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub host_uid: u32,
    pub host_gid: u32,
    pub count: u32,
}

/// Everything the child needs, prepared by the parent.
pub struct SpawnRequest<'a> {
    pub plan: &'a SetupPlan,
    /// Applied after the plan, right before `execve`.
    pub confine: &'a ConfinePlan,
    /// `cgroup.procs` files opened for writing; the child writes `0` to each to join.
    pub cgroup_procs: &'a [OwnedFd],
    /// Also create a cgroup namespace (after joining the cgroup, so the container sees it as `/`).
    pub cgroup_namespace: bool,
    /// Also create a user namespace with this mapping. The parent then writes the id maps and moves
    /// the child into the cgroup (the mapped child may lack the permission), and releases it over a
    /// second pipe.
    pub user_namespace: Option<IdMap>,
    pub stdin: BorrowedFd<'a>,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
    pub program: &'a CStr,
    /// NULL-terminated, pointing into C strings the caller keeps alive.
    pub argv: &'a [*const c_char],
    /// NULL-terminated, pointing into C strings the caller keeps alive.
    pub envp: &'a [*const c_char],
}

/// A child that reached `execve` successfully.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    pub rootfs_ready: Instant,
    /// The child reported itself confined (`None` when no confinement applies).
    pub confined: Option<Instant>,
    pub exec: Instant,
}

/// What went wrong, before or in the child. The child has been reaped.
#[derive(Debug)]
pub enum SpawnFailure {
    Pipe(Errno),
    Clone(Errno),
    /// The child reported a failure at `stage` (plan step `step`, if any).
    Child {
        pid: Pid,
        stage: Stage,
        step: Option<u32>,
        errno: Errno,
    },
    /// The child ended without reporting (killed, or the protocol broke).
    Vanished {
        pid: Pid,
        status: String,
    },
    /// The parent's part of setting the child up failed (the child has been killed and reaped).
    Parent {
        pid: Pid,
        stage: Stage,
        path: String,
        errno: Errno,
    },
}

/// Clones the child and waits until it has exec'd (or failed).
pub fn spawn(req: &SpawnRequest<'_>) -> Result<Spawned, SpawnFailure> {
    let (err_r, err_w) = cloexec_pipe().map_err(SpawnFailure::Pipe)?;
    // Without pidfds (Linux < 5.3) the child still gets its death signal, just without the check.
    let harness = pidfd_open(nix::unistd::getpid()).ok();
    let go = match req.user_namespace {
        Some(_) => Some(cloexec_pipe().map_err(SpawnFailure::Pipe)?),
        None => None,
    };
    let mut flags = NAMESPACE_FLAGS | libc::SIGCHLD;
    if req.user_namespace.is_some() {
        flags |= libc::CLONE_NEWUSER;
    }
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child runs on a private copy of this
    // thread's memory. The child branch below only calls `child_main`, which never returns, never
    // allocates and never unwinds (see the module docs).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_ulong::from(flags.unsigned_abs()),
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret < 0 {
        return Err(SpawnFailure::Clone(Errno::last()));
    }
    if ret == 0 {
        child_main(
            req,
            err_w.as_raw_fd(),
            go.as_ref().map(|(r, _)| r.as_raw_fd()),
            harness.as_ref().map(AsRawFd::as_raw_fd),
        );
    }
    // clone returns a pid, which fits in pid_t.
    #[allow(clippy::cast_possible_truncation)]
    let pid = Pid::from_raw(ret as libc::pid_t);
    drop((err_w, harness));
    if let (Some(map), Some((go_r, go_w))) = (req.user_namespace, go) {
        drop(go_r);
        if let Err(e) = release_user_namespace_child(pid, map, req.cgroup_procs, go_w) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(e);
        }
    }
    let fail = |rec: Record| {
        let _ = waitpid(pid, None);
        let stage = Stage::from_u32(rec.stage).unwrap_or(Stage::Exec);
        let step = (rec.step != NO_STEP).then_some(rec.step);
        SpawnFailure::Child {
            pid,
            stage,
            step,
            errno: Errno::from_raw(rec.errno),
        }
    };
    let vanished = || SpawnFailure::Vanished {
        pid,
        status: describe_wait(waitpid(pid, None)),
    };
    let ready = match read_record(&err_r) {
        Ok(Some(rec)) if rec.stage == Stage::Ready as u32 => Instant::now(),
        Ok(Some(rec)) => return Err(fail(rec)),
        Ok(None) | Err(_) => return Err(vanished()),
    };
    let mut confined = None;
    let exec = loop {
        match read_record(&err_r) {
            Ok(None) => break Instant::now(),
            Ok(Some(rec)) if rec.stage == Stage::Confined as u32 && confined.is_none() => {
                confined = Some(Instant::now());
            }
            Ok(Some(rec)) => return Err(fail(rec)),
            Err(_) => return Err(vanished()),
        }
    };
    Ok(Spawned {
        pid,
        rootfs_ready: ready,
        confined,
        exec,
    })
}

/// The parent's half of a user-namespaced start: id maps, cgroup membership, then the go byte.
fn release_user_namespace_child(
    pid: Pid,
    map: IdMap,
    cgroup_procs: &[OwnedFd],
    go_w: OwnedFd,
) -> Result<(), SpawnFailure> {
    let fail = |stage, path: String, errno| SpawnFailure::Parent {
        pid,
        stage,
        path,
        errno,
    };
    for (file, host) in [("uid_map", map.host_uid), ("gid_map", map.host_gid)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, format!("0 {host} {}\n", map.count)).map_err(|e| {
            fail(
                Stage::UserNamespace,
                path.clone(),
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
    }
    let pid_text = pid.as_raw().to_string();
    for fd in cgroup_procs {
        nix::unistd::write(fd, pid_text.as_bytes()).map_err(|e| {
            fail(
                Stage::JoinCgroup,
                format!("cgroup.procs (fd {})", fd.as_raw_fd()),
                e,
            )
        })?;
    }
    nix::unistd::write(&go_w, b"g").map_err(|e| fail(Stage::UserNamespace, "the go pipe".into(), e))?;
    Ok(())
}

fn describe_wait(w: nix::Result<WaitStatus>) -> String {
    match w {
        Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig}"),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("wait failed: {e}"),
    }
}

/// Reads one record; `None` on EOF.
fn read_record(fd: &OwnedFd) -> Result<Option<Record>, Errno> {
    let mut buf = [0u8; RECORD_LEN];
    let mut got = 0;
    while got < RECORD_LEN {
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(Errno::EPIPE),
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(Record::from_bytes(&buf)))
}

/// Reports a failure to the parent and exits. Never returns, never allocates.
fn child_fail(err_w: RawFd, stage: Stage, step: u32, errno: Errno) -> ! {
    child_write(
        err_w,
        Record {
            stage: stage as u32,
            step,
            errno: errno as i32,
        },
    );
    // SAFETY: _exit is async-signal-safe and skips atexit handlers and stdio flushing, which must
    // not run in this copy of the parent.
    unsafe { libc::_exit(127) }
}

fn child_write(err_w: RawFd, rec: Record) {
    let bytes = rec.to_bytes();
    // SAFETY: `err_w` is the open write end of the error pipe; 12 bytes < PIPE_BUF are written
    // atomically. A failure cannot be reported anywhere, so the result is ignored.
    let _ = unsafe { libc::write(err_w, bytes.as_ptr().cast(), bytes.len()) };
}

/// The child: die with the harness, join the cgroup, apply the plan, set up stdio, report ready,
/// exec.
fn child_main(req: &SpawnRequest<'_>, err_w: RawFd, go_r: Option<RawFd>, harness: Option<RawFd>) -> ! {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        child_fail(err_w, Stage::Signals, NO_STEP, e);
    }
    if let Some(harness) = harness {
        // SAFETY: the pidfd opened by the parent before the clone; this copy stays open here.
        let harness = unsafe { BorrowedFd::borrow_raw(harness) };
        let mut fds = [nix::poll::PollFd::new(harness, nix::poll::PollFlags::POLLIN)];
        // Readable once the harness has exited: it died before the death signal was set.
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0) {
            child_fail(err_w, Stage::Signals, NO_STEP, Errno::ESRCH);
        }
    }
    if let Some(go_r) = go_r {
        // Wait until the parent has written the id maps and moved this process into the cgroup.
        let mut byte = 0u8;
        // SAFETY: reading one byte into a stack variable from an open descriptor.
        let n = unsafe { libc::read(go_r, (&raw mut byte).cast(), 1) };
        if n != 1 {
            child_fail(
                err_w,
                Stage::UserNamespace,
                NO_STEP,
                if n < 0 { Errno::last() } else { Errno::EPIPE },
            );
        }
    }
    let own_cgroup_join: &[OwnedFd] = if go_r.is_some() { &[] } else { req.cgroup_procs };
    for (i, fd) in own_cgroup_join.iter().enumerate() {
        // SAFETY: writes one byte, the "0" (this process) of a static one-byte buffer that outlives the
        // call, to a descriptor `req.cgroup_procs` keeps open.
        let n = unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) };
        if n != 1 {
            // A handful of cgroup files; the index fits.
            #[allow(clippy::cast_possible_truncation)]
            child_fail(err_w, Stage::JoinCgroup, i as u32, Errno::last());
        }
    }
    if req.cgroup_namespace {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
            child_fail(err_w, Stage::JoinCgroup, NO_STEP, e);
        }
    }
    if let Err(f) = req.plan.apply_range(&LinuxSyscall, req.plan.rootfs_steps()) {
        let stage = req.plan.stage_of(f.index).unwrap_or(Stage::Exec);
        child_fail(err_w, stage, f.index, f.errno);
    }
    // The parent (Rust's runtime) ignores SIGPIPE and may block signals; the workload must start
    // with default dispositions and an empty mask, as after a normal fork+exec.
    let empty = nix::sys::signal::SigSet::empty();
    if let Err(e) =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&empty), None)
    {
        child_fail(err_w, Stage::Signals, NO_STEP, e);
    }
    use nix::sys::signal::{signal, SigHandler, SIGPIPE};
    // SAFETY: restoring the default disposition installs no handler.
    let reset = unsafe { signal(SIGPIPE, SigHandler::SigDfl) };
    if let Err(e) = reset {
        child_fail(err_w, Stage::Signals, NO_STEP, e);
    }
    for (fd, target) in [(req.stdin, 0), (req.stdout, 1), (req.stderr, 2)] {
        // SAFETY: dup2 onto the standard descriptors of this (single-threaded) child; the old ones
        // are replaced atomically. Both descriptors are open.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            child_fail(err_w, Stage::Stdio, NO_STEP, Errno::last());
        }
    }
    child_write(
        err_w,
        Record {
            stage: Stage::Ready as u32,
            step: NO_STEP,
            errno: 0,
        },
    );
    let confinement = req.plan.confinement_steps();
    if !confinement.is_empty() || !req.confine.is_empty() {
        if let Err(f) = req.plan.apply_range(&LinuxSyscall, confinement) {
            let stage = req.plan.stage_of(f.index).unwrap_or(Stage::Exec);
            child_fail(err_w, stage, f.index, f.errno);
        }
        if let Err((stage, errno)) = req.confine.apply(&LinuxSyscall) {
            child_fail(err_w, stage, NO_STEP, errno);
        }
        child_write(
            err_w,
            Record {
                stage: Stage::Confined as u32,
                step: NO_STEP,
                errno: 0,
            },
        );
    }
    // SAFETY: program, argv and envp are NUL-terminated C strings and NULL-terminated pointer
    // arrays kept alive by the parent's copy of the request (this memory is the child's copy).
    unsafe { libc::execve(req.program.as_ptr(), req.argv.as_ptr(), req.envp.as_ptr()) };
    child_fail(err_w, Stage::Exec, NO_STEP, Errno::last())
}

/// A pipe whose both ends are CLOEXEC: (read, write).
pub fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits (Linux 5.3+).
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // A descriptor number fits in an int.
    #[allow(clippy::cast_possible_truncation)]
    // SAFETY: the kernel just returned this new descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = Record {
            stage: Stage::MountOverlay as u32,
            step: 2,
            errno: libc::ENOENT,
        };
        assert_eq!(Record::from_bytes(&r.to_bytes()), r);
    }
}
