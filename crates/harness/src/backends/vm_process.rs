//! What the two VM backends (`microvm`, `qemu`) share about one instance: a VMM child process whose
//! stdout (the guest console) and stderr are read line by line on two threads into one channel; a
//! state directory `<run dir>/<instance>/` holding its pid file (written by the child itself before it
//! execs, see [`super::process`]), so that `bench cleanup` finds it
//! after a crashed harness; stopping with SIGTERM, then SIGKILL after a grace period; and a teardown
//! that removes the directory (and the backend directories above it once empty).
//!
//! Each backend describes its VMM once in a [`VmmKind`]; what the lines mean (READY, events) stays in
//! the backend.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use container::output::{Tail, TAIL_BYTES};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use workload::WorkloadResult;

use super::lines;
use super::process::{die_with_harness, KILL_WAIT, STOP_GRACE};
use crate::backend::{BackendError, ChildState, Stage};
use crate::cleanup::CleanupReport;
use crate::probe;

/// One backend's VMM, as its messages, pid file and `bench cleanup` name it.
#[derive(Debug, Clone, Copy)]
pub(super) struct VmmKind {
    /// The backend's name, carried by its errors.
    pub backend: &'static str,
    /// The binary, as error messages name it.
    pub program: &'static str,
    /// The process in a teardown problem (`"VMM"` gives `VMM pid ... survived SIGKILL`).
    pub process: &'static str,
    /// The process as the subject of a sentence (`"the VMM"`).
    pub subject: &'static str,
    /// The pid file in the instance directory.
    pub pid_file: &'static str,
    /// `/proc/PID/comm` of a running VMM: a recycled pid must not be killed.
    pub comm: &'static str,
    /// What `bench cleanup` calls a removed instance (`"microVM"` gives `microVM <name>`).
    pub leftover: &'static str,
}

pub(super) use super::lines::Next;

/// What a backend's message means to [`VmProcess::finish`].
pub(super) enum Seen {
    /// A line of the guest console: the workload's protocol lines arrive here.
    Console(String),
    /// Any other line worth showing in an error (the VMM's stderr).
    Other(String),
    /// The VM ended in a way that is a failure, for this reason.
    Failed(String),
    /// Nothing to act on.
    Nothing,
}

/// One instance's VMM process and state directory. Dropping it tears both down (best effort, logged);
/// [`VmProcess::destroy`] reports what could not be undone.
pub(super) struct VmProcess<M> {
    kind: VmmKind,
    name: String,
    dir: PathBuf,
    child: Option<Child>,
    messages: Option<Receiver<M>>,
    /// The last few KiB of console/stderr lines, for error messages.
    tail: Tail,
    torn_down: bool,
}

impl<M: Send + 'static> VmProcess<M> {
    /// Creates the instance directory `run_dir/name`; from here on, dropping the value removes it.
    pub fn create(kind: VmmKind, run_dir: &Path, name: &str) -> Result<Self, BackendError> {
        hold_run_lock(kind, run_dir)?;
        let dir = run_dir.join(name);
        crate::rundir::create_dir(&dir).map_err(io_err(kind, format!("creating {}", dir.display())))?;
        Ok(VmProcess {
            kind,
            name: name.to_string(),
            dir,
            child: None,
            messages: None,
            tail: Tail::new(TAIL_BYTES),
            torn_down: false,
        })
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Spawns `cmd` with piped stdout and stderr, dying with the harness and writing its own pid
    /// file before it execs (so `bench cleanup` always finds it), and reads both pipes into the
    /// channel behind [`VmProcess::next`]: stdout lines through `console` on a `<name>-console`
    /// thread, stderr lines through `stderr` on a `<name>-<stderr_what>` thread, each line
    /// timestamped when it became readable.
    pub fn start(
        &mut self,
        cmd: &mut Command,
        console: impl Fn(Instant, String) -> M + Send + 'static,
        stderr_what: &str,
        stderr: impl Fn(Instant, String) -> M + Send + 'static,
    ) -> Result<(), BackendError> {
        let kind = self.kind;
        let pid_file = self.dir.join(kind.pid_file);
        die_with_harness(cmd, Some(&pid_file))
            .map_err(io_err(kind, format!("preparing {}", pid_file.display())))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err(kind, format!("starting {}", kind.program)))?;
        let (stdout, stderr_pipe) = (child.stdout.take(), child.stderr.take());
        self.child = Some(child);
        let (Some(stdout), Some(stderr_pipe)) = (stdout, stderr_pipe) else {
            return Err(setup_err(
                kind,
                format!("{}'s stdout/stderr were not captured", kind.subject),
            ));
        };
        let (tx, rx) = lines::channel();
        self.spawn_reader("console", stdout, tx.clone(), console)?;
        self.spawn_reader(stderr_what, stderr_pipe, tx, stderr)?;
        self.messages = Some(rx);
        Ok(())
    }

    fn spawn_reader(
        &self,
        what: &str,
        pipe: impl Read + Send + 'static,
        tx: SyncSender<M>,
        wrap: impl Fn(Instant, String) -> M + Send + 'static,
    ) -> Result<(), BackendError> {
        lines::spawn_reader(format!("{}-{what}", self.name), pipe, tx, wrap)
            .map_err(io_err(self.kind, format!("spawning the {what} reader")))
    }
}

impl<M> VmProcess<M> {
    /// The next line from either pipe, waiting until `deadline` at most.
    pub fn next(&self, deadline: Instant) -> Next<M> {
        lines::next(self.messages.as_ref(), deadline)
    }

    /// Keeps `line` among the last few KiB shown by [`VmProcess::tail`].
    pub fn remember(&mut self, line: &str) {
        self.tail.push_line(line);
    }

    /// The remembered lines, escaped on one line.
    pub fn tail(&self) -> String {
        self.tail.text()
    }

    /// The remembered lines followed by the lines already read but not yet taken (after READY of a
    /// service, nobody takes the console until the instance is stopped): the guest's last words when
    /// its service never answered. Takes at most [`lines::QUEUE_LINES`] × 2 queued messages, so a
    /// guest that keeps writing cannot hold it up; `text` gives a message's line, if it has one.
    pub fn tail_with_pending(&self, text: impl Fn(M) -> Option<String>) -> String {
        let mut tail = self.tail.clone();
        if let Some(rx) = self.messages.as_ref() {
            for message in rx.try_iter().take(lines::QUEUE_LINES * 2) {
                if let Some(line) = text(message) {
                    tail.push_line(&line);
                }
            }
        }
        tail.text()
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// The VMM's pid and its PSS in bytes.
    pub fn pss_bytes(&self) -> Result<(i32, u64), BackendError> {
        let kind = self.kind;
        let pid = self
            .pid()
            .ok_or_else(|| setup_err(kind, format!("no {} process", kind.process)))?;
        let pss = probe::pss_bytes(&[pid]).map_err(BackendError::probe(kind.backend, Stage::MemoryProbe))?;
        Ok((pid, pss))
    }

    /// Where the VMM stands after waiting at most `timeout` for it to exit.
    pub fn wait_child(&mut self, timeout: Duration) -> ChildState {
        match self.child.as_mut() {
            Some(child) => lines::wait_timeout(child, timeout),
            None => ChildState::NotStarted,
        }
    }

    /// `ExitedBeforeReady` with the exit status (waited for a few seconds) and the last lines.
    pub fn exited_before_ready(&mut self) -> BackendError {
        let status = self.wait_child(KILL_WAIT);
        BackendError::ExitedBeforeReady {
            backend: self.kind.backend.into(),
            status,
            output: self.tail(),
        }
    }

    /// `ReadyTimeout` with the last lines.
    pub fn ready_timeout(&self, timeout: Duration) -> BackendError {
        BackendError::ReadyTimeout {
            backend: self.kind.backend.into(),
            timeout,
            output: self.tail(),
        }
    }

    /// For a workload that does not end by itself: stops the VMM (grace at most `timeout`); an error
    /// if it survived SIGKILL.
    pub fn stop_workload(&mut self, timeout: Duration) -> Result<(), BackendError> {
        if self.stop(STOP_GRACE.min(timeout)).is_running() {
            return Err(workload_failed(
                self.kind,
                format!(
                    "{} did not stop within {timeout:?} after SIGKILL",
                    self.kind.subject
                ),
            ));
        }
        Ok(())
    }

    /// A guest console line before READY: `true` for the READY line, an error for an ERROR or a
    /// malformed protocol line; any other line (kernel and init messages) is remembered, since the
    /// last few explain a guest that never gets ready.
    pub fn console_line_before_ready(&mut self, line: String) -> Result<bool, BackendError> {
        let ready = super::line_before_ready(self.kind.backend, &line)?;
        if !ready {
            self.remember(&line);
        }
        Ok(ready)
    }

    /// After READY. A workload that runs until stopped is stopped (`None`). Otherwise the console
    /// is read until the VMM closes its pipes (the guest init resets the VM when the workload ends),
    /// the VMM must then exit 0, and the workload must have printed a RESULT line; all by `timeout`.
    pub fn finish(
        &mut self,
        exits_by_itself: bool,
        timeout: Duration,
        classify: impl Fn(M) -> Seen,
    ) -> Result<Option<WorkloadResult>, BackendError> {
        let kind = self.kind;
        if !exits_by_itself {
            self.stop_workload(timeout)?;
            return Ok(None);
        }
        let deadline = Instant::now() + timeout;
        let mut result = None;
        loop {
            let message = match self.next(deadline) {
                Next::Message(message) => message,
                Next::Eof => break,
                Next::Timeout => {
                    return Err(workload_failed(
                        kind,
                        format!(
                            "the VM did not end within {timeout:?} after READY: {}",
                            self.tail()
                        ),
                    ))
                }
            };
            match classify(message) {
                Seen::Console(line) => match super::line_after_ready(kind.backend, &line)? {
                    Some(r) => result = Some(r),
                    None => self.remember(&line),
                },
                Seen::Other(line) => self.remember(&line),
                Seen::Failed(reason) => return Err(workload_failed(kind, reason)),
                Seen::Nothing => {}
            }
        }
        self.expect_clean_exit(deadline)?;
        result.map(Some).ok_or_else(|| {
            workload_failed(
                kind,
                format!("the VM ended without a CVBENCH RESULT line: {}", self.tail()),
            )
        })
    }

    /// After the guest ended its workload: the VMM must exit 0 by `deadline`.
    fn expect_clean_exit(&mut self, deadline: Instant) -> Result<(), BackendError> {
        let status = self.wait_child(deadline.saturating_duration_since(Instant::now()));
        if !status.success() {
            return Err(workload_failed(
                self.kind,
                format!("{} ended with {status}: {}", self.kind.program, self.tail()),
            ));
        }
        Ok(())
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// SIGTERM (the VMM then ends the VM), SIGKILL after the grace period; where the VMM stands.
    fn stop(&mut self, grace: Duration) -> ChildState {
        let now = self.wait_child(Duration::ZERO);
        if !now.is_running() {
            return now;
        }
        self.signal(Signal::SIGTERM);
        let status = self.wait_child(grace);
        if !status.is_running() {
            return status;
        }
        self.signal(Signal::SIGKILL);
        self.wait_child(KILL_WAIT)
    }

    /// Tears down and reports what could not be undone.
    pub fn destroy(&mut self) -> Result<(), BackendError> {
        self.teardown().map_err(|reason| BackendError::Teardown {
            backend: self.kind.backend.into(),
            reason,
        })
    }

    /// Idempotent: stops the VMM, removes the instance directory and prunes the empty ones above.
    fn teardown(&mut self) -> Result<(), String> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        if self.child.is_some() && self.stop(STOP_GRACE).is_running() {
            problems.push(format!(
                "{} pid {:?} survived SIGKILL",
                self.kind.process,
                self.pid()
            ));
        }
        super::teardown::remove_dir(&self.dir, &mut problems);
        if let Some(backend_dir) = self.dir.parent() {
            crate::rundir::prune(backend_dir);
        }
        super::teardown::outcome(problems)
    }
}

impl<M> Drop for VmProcess<M> {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("cvbench: {} teardown of {}: {e}", self.kind.backend, self.name);
        }
    }
}

/// Kills the VMM of every instance directory under `run_dir` for which `keep(name)` is false, and
/// removes the directory; the others are listed as in use. For `bench cleanup`.
///
/// The VMM writes its pid file itself before it execs (see [`VmProcess::start`]), so a directory
/// without one never has a running VMM.
pub(super) fn cleanup_leftovers(kind: VmmKind, run_dir: &Path, keep: &dyn Fn(&str) -> bool) -> CleanupReport {
    let mut report = CleanupReport::default();
    let Ok(entries) = fs::read_dir(run_dir) else {
        return report;
    };
    // Instances are directories (a test's run dir also holds its lock file).
    for entry in entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep(&name) {
            report.in_use.push(format!("{} {name}", kind.leftover));
            continue;
        }
        let dir = entry.path();
        let pid = fs::read_to_string(dir.join(kind.pid_file))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|&p| p > 0 && runs(p, kind.comm)) {
            if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGKILL) {
                if e != nix::errno::Errno::ESRCH {
                    report
                        .problems
                        .push(format!("killing {} pid {pid} of {name}: {e}", kind.process));
                    continue;
                }
            }
            let deadline = Instant::now() + KILL_WAIT;
            while runs(pid, kind.comm) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => report.removed.push(format!("{} {name}", kind.leftover)),
            // Its own harness's teardown got there first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report.problems.push(format!("removing {}: {e}", dir.display())),
        }
    }
    report
}

/// Marks this process as a live harness for `bench cleanup`: a shared lock on the lock file of the
/// run root above `run_dir` (see [`crate::rundir`]; tests give a run dir inside a temp dir).
pub(super) fn hold_run_lock(kind: VmmKind, run_dir: &Path) -> Result<(), BackendError> {
    let root = run_dir.parent().unwrap_or(run_dir);
    crate::rundir::hold_shared(root).map_err(io_err(
        kind,
        format!("locking {}", crate::rundir::lock_path(root).display()),
    ))
}

/// Whether `pid` still runs the program whose `/proc/PID/comm` is `comm`.
pub(super) fn runs(pid: i32, comm: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
}

fn setup_err(kind: VmmKind, reason: String) -> BackendError {
    BackendError::setup(kind.backend, reason)
}

fn io_err(kind: VmmKind, context: String) -> impl FnOnce(std::io::Error) -> BackendError {
    BackendError::io(kind.backend, context)
}

fn workload_failed(kind: VmmKind, reason: String) -> BackendError {
    BackendError::WorkloadFailed {
        backend: kind.backend.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE: VmmKind = VmmKind {
        backend: "fake-vm",
        program: "sh",
        process: "fake VMM",
        subject: "the fake VMM",
        pid_file: "fake.pid",
        comm: "sh",
        leftover: "fake VM",
    };

    enum Line {
        Console(String),
        Stderr(String),
    }

    fn classify(line: Line) -> Seen {
        match line {
            Line::Console(line) if line == "GUEST STOPPED" => Seen::Failed("the guest stopped".into()),
            Line::Console(line) => Seen::Console(line),
            Line::Stderr(line) => Seen::Other(line),
        }
    }

    /// A VM process whose "VMM" is `sh -c script`, in a fresh run directory.
    fn fake_vm(script: &str) -> (tempfile::TempDir, VmProcess<Line>) {
        let run_dir = tempfile::tempdir().unwrap();
        let mut vm = VmProcess::create(FAKE, &run_dir.path().join("fake-vms"), "vm-1").unwrap();
        vm.start(
            Command::new("sh").arg("-c").arg(script),
            |_, line| Line::Console(line),
            "stderr",
            |_, line| Line::Stderr(line),
        )
        .unwrap();
        assert!(vm.dir().join(FAKE.pid_file).is_file());
        (run_dir, vm)
    }

    fn finish(script: &str) -> Result<Option<WorkloadResult>, BackendError> {
        let (run_dir, mut vm) = fake_vm(script);
        let outcome = vm.finish(true, Duration::from_secs(10), classify);
        vm.destroy().unwrap();
        assert!(
            !run_dir.path().join("fake-vms/vm-1").exists(),
            "instance directory left behind"
        );
        outcome
    }

    #[test]
    fn finish_returns_the_result_line_of_a_vm_that_exits_cleanly() {
        let result = finish(
            "echo booting; echo 'CVBENCH RESULT {\"workload\":\"oltp\",\"metrics\":{\"tps\":12.5}}'; echo bye",
        )
        .unwrap()
        .expect("a result");
        assert_eq!(result.workload, "oltp");
        assert_eq!(result.metrics["tps"], 12.5);
    }

    #[test]
    fn finish_without_a_result_line_is_an_error_naming_the_last_lines() {
        let err = finish("echo 'last words'; echo 'warning on stderr' >&2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a CVBENCH RESULT line"), "{err}");
        assert!(err.contains("last words"), "{err}");
        assert!(err.contains("warning on stderr"), "{err}");
    }

    #[test]
    fn finish_reports_a_nonzero_vmm_exit_even_after_a_result() {
        let err = finish("echo 'CVBENCH RESULT {\"workload\":\"http\",\"metrics\":{}}'; exit 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exit status 3"), "{err}");
    }

    #[test]
    fn finish_passes_on_the_workload_error_and_the_backend_failure() {
        let err = finish("echo 'CVBENCH ERROR disk full'; exec sleep 30")
            .unwrap_err()
            .to_string();
        assert!(err.contains("disk full"), "{err}");
        let err = finish("echo 'GUEST STOPPED'; exec sleep 30")
            .unwrap_err()
            .to_string();
        assert!(err.contains("the guest stopped"), "{err}");
    }

    #[test]
    fn finish_times_out_on_a_vm_that_never_ends() {
        let (_run_dir, mut vm) = fake_vm("echo 'still here'; exec sleep 30");
        let err = vm
            .finish(true, Duration::from_millis(300), classify)
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not end within"), "{err}");
        assert!(err.contains("still here"), "{err}");
        vm.destroy().unwrap();
        assert_eq!(vm.wait_child(Duration::ZERO), ChildState::Signaled(15));
    }

    #[test]
    fn finish_stops_a_workload_that_runs_until_stopped() {
        let (_run_dir, mut vm) = fake_vm("exec sleep 30");
        assert!(vm
            .finish(false, Duration::from_secs(5), classify)
            .unwrap()
            .is_none());
        assert!(!vm.wait_child(Duration::ZERO).is_running());
        vm.destroy().unwrap();
    }
}
