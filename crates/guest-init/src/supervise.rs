//! Running the workload as init's child: its output goes straight to the console, zombies (the
//! workload's orphans, re-parented to PID 1) are reaped while waiting, and SIGTERM/SIGINT sent to
//! init are passed on to the workload.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::InitError;

/// How the workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadExit {
    Exited(i32),
    Killed(Signal),
}

/// Holds SIGCHLD, SIGTERM and SIGINT blocked in the calling thread (init is single-threaded), so
/// they are collected by [`Supervisor::wait`] instead of being dropped: PID 1 ignores signals it has
/// no handler for, but never a blocked one. Dropping it restores the previous mask.
pub struct Supervisor {
    signals: SigSet,
    previous: SigSet,
}

/// How often the wait loop reaps even without a SIGCHLD: a safety net, since a process-directed
/// SIGCHLD may be taken by another thread when this runs inside a multi-threaded process (tests).
const REAP_INTERVAL: Duration = Duration::from_millis(500);

impl Supervisor {
    pub fn block_signals() -> nix::Result<Supervisor> {
        let mut signals = SigSet::empty();
        for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
            signals.add(s);
        }
        let mut previous = SigSet::empty();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), Some(&mut previous))?;
        Ok(Supervisor { signals, previous })
    }

    /// Starts `program` with `args`, stdin from /dev/null and stdout/stderr on `console`, with a
    /// minimal environment and an empty signal mask.
    pub fn spawn(&self, program: &Path, args: &[OsString], console: &File) -> Result<Pid, InitError> {
        let spawn_err = |source| InitError::Spawn {
            path: program.to_path_buf(),
            source,
        };
        let stdout = console.try_clone().map_err(spawn_err)?;
        let stderr = console.try_clone().map_err(spawn_err)?;
        let mut command = Command::new(program);
        // std leaves the parent's signal mask in place across exec (measured: a child spawned here
        // had SIGINT, SIGTERM and SIGCHLD blocked, and SIGTERM did not stop it), so clear it.
        // SAFETY: the closure runs between fork and exec and only calls sigprocmask, which is
        // async-signal-safe; it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(|| {
                nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
                Ok(())
            });
        }
        let child = command
            .args(args)
            .env_clear()
            .env("PATH", "/bin:/usr/bin")
            .env("HOME", "/")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(spawn_err)?;
        let pid = i32::try_from(child.id()).map_err(|_| {
            spawn_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "pid out of range",
            ))
        })?;
        // Reaped by `wait` through waitpid; `Child` neither waits nor kills on drop.
        drop(child);
        Ok(Pid::from_raw(pid))
    }

    /// Waits for `workload` to end, reaping every other child that ends meanwhile and forwarding
    /// SIGTERM/SIGINT to `workload` as SIGTERM.
    pub fn wait(&self, workload: Pid) -> Result<WorkloadExit, InitError> {
        loop {
            if let Some(exit) = reap(workload)? {
                return Ok(exit);
            }
            match self.next_signal(REAP_INTERVAL) {
                Some(Signal::SIGTERM) | Some(Signal::SIGINT) => {
                    // The workload may have exited already; the next reap finds out.
                    let _ = kill(workload, Signal::SIGTERM);
                }
                _ => {}
            }
        }
    }

    /// The next of our signals, or `None` after `timeout` (or on EINTR).
    fn next_signal(&self, timeout: Duration) -> Option<Signal> {
        // Saturates: a wait longer than time_t can hold is a wait forever.
        let timeout = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
        };
        // SAFETY: the set and timespec are valid for the call; a null siginfo pointer is allowed.
        let signo = unsafe { libc::sigtimedwait(self.signals.as_ref(), std::ptr::null_mut(), &timeout) };
        Signal::try_from(signo).ok()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.previous), None);
    }
}

/// Reaps every child that has ended; returns how `workload` ended if it was among them.
fn reap(workload: Pid) -> Result<Option<WorkloadExit>, InitError> {
    let mut exit = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == workload => exit = Some(WorkloadExit::Exited(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == workload => {
                exit = Some(WorkloadExit::Killed(signal))
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(exit),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(source) => {
                return Err(InitError::Wait {
                    pid: workload.as_raw(),
                    source,
                })
            }
        }
    }
}

impl WorkloadExit {
    /// `Ok` for a clean exit, otherwise the error init reports.
    pub fn into_result(self, program: &Path) -> Result<(), InitError> {
        let path = PathBuf::from(program);
        match self {
            WorkloadExit::Exited(0) => Ok(()),
            WorkloadExit::Exited(code) => Err(InitError::WorkloadExited { path, code }),
            WorkloadExit::Killed(signal) => Err(InitError::WorkloadKilled {
                path,
                signal: signal.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, because `wait` reaps every child of the process: two such tests running in
    /// parallel threads of one process would reap each other's children.
    #[test]
    fn waits_reaps_orphans_and_forwards_sigterm() {
        let console = tempfile::tempfile().unwrap();
        let sh = Path::new("/bin/sh");
        let supervisor = Supervisor::block_signals().unwrap();

        // Exit status, with a grandchild orphaned on the way (reaped by us only if we were PID 1 or a
        // subreaper; here it is re-parented to the real init, and must not confuse the wait).
        let args: Vec<OsString> = ["-c", "sleep 0.1 & echo out; exit 3"]
            .iter()
            .map(OsString::from)
            .collect();
        let pid = supervisor.spawn(sh, &args, &console).unwrap();
        let exit = supervisor.wait(pid).unwrap();
        assert_eq!(exit, WorkloadExit::Exited(3));
        let err = exit.into_result(sh).unwrap_err();
        assert_eq!(err.to_string(), "workload: /bin/sh exited with status 3");

        // SIGTERM sent to "init" (this thread) ends up killing the workload.
        let sleep = Path::new("/bin/sleep");
        let pid = supervisor
            .spawn(sleep, &[OsString::from("30")], &console)
            .unwrap();
        // SAFETY: pthread_kill on the calling thread with a signal that is blocked in it: it stays
        // pending until `wait` collects it.
        let rc = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGTERM) };
        assert_eq!(rc, 0);
        assert_eq!(
            supervisor.wait(pid).unwrap(),
            WorkloadExit::Killed(Signal::SIGTERM)
        );

        // The console got the workload's stdout.
        use std::io::{Read, Seek};
        let mut console = console;
        console.rewind().unwrap();
        let mut text = String::new();
        console.read_to_string(&mut text).unwrap();
        assert_eq!(text, "out\n");
    }

    #[test]
    fn missing_program_is_a_spawn_error_naming_it() {
        let console = tempfile::tempfile().unwrap();
        let supervisor = Supervisor::block_signals().unwrap();
        let err = supervisor
            .spawn(Path::new("/nonexistent/cvbench-workload"), &[], &console)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spawn-workload: starting /nonexistent/cvbench-workload: "),
            "{err}"
        );
    }

    #[test]
    fn clean_exit_is_ok() {
        assert!(WorkloadExit::Exited(0).into_result(Path::new("/bin/w")).is_ok());
    }
}
