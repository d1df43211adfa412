//! What every backend's child process (runc, the VMM, QEMU) shares: it dies with the harness, and
//! the pid file that lets `bench cleanup` find it is written by the child itself before it execs,
//! so there is no moment when the program runs and is not recorded. Also the one grace period every
//! backend gives a workload between SIGTERM and SIGKILL.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

/// How long a workload gets to exit after SIGTERM before SIGKILL, in every backend.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a process that is ending (SIGKILLed, or its pipes closed) is waited for.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(5);

/// Makes the child that `cmd` spawns die (SIGKILL) with the harness, and, with `pid_file`, write
/// its pid there before it execs.
///
/// `PR_SET_PDEATHSIG` fires when the thread that spawned the child ends, so a backend spawns from
/// the thread that owns the instance. The child checks that its parent is still the harness after
/// setting it: a harness killed in between would otherwise leave it running unnoticed.
pub(super) fn die_with_harness(cmd: &mut Command, pid_file: Option<&Path>) -> io::Result<()> {
    let harness = nix::unistd::getpid();
    let pid_file = pid_file
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .transpose()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: the closure runs in the forked child before exec. It allocates nothing (the path was
    // made into a C string above) and calls only async-signal-safe functions: prctl, getppid, getpid,
    // open, write and close.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != harness {
                return Err(Errno::ESRCH.into());
            }
            if let Some(path) = &pid_file {
                write_own_pid(path)?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// In the child: writes its pid and a newline to `path` (created or truncated). Allocation-free.
fn write_own_pid(path: &std::ffi::CStr) -> io::Result<()> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    let mut buf = [0u8; 24];
    let text = decimal_line(nix::unistd::getpid().as_raw().unsigned_abs(), &mut buf);
    let written = nix::unistd::write(&fd, text)?;
    if written != text.len() {
        return Err(Errno::EIO.into());
    }
    Ok(())
}

/// `n` and a newline in decimal, at the end of `buf`, without allocating.
fn decimal_line(mut n: u32, buf: &mut [u8; 24]) -> &[u8] {
    let mut start = buf.len() - 1;
    buf[start] = b'\n';
    loop {
        start -= 1;
        // A digit: n % 10 < 10 fits in u8.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (n % 10) as u8;
        buf[start] = b'0' + digit;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_lines() {
        let mut buf = [0u8; 24];
        assert_eq!(decimal_line(0, &mut buf), b"0\n");
        assert_eq!(decimal_line(4_194_304, &mut buf), b"4194304\n");
        assert_eq!(decimal_line(u32::MAX, &mut buf), b"4294967295\n");
    }

    #[test]
    fn the_child_writes_its_pid_file_before_exec() {
        let tmp = tempfile::tempdir().unwrap();
        let pid_file = tmp.path().join("child.pid");
        let mut cmd = Command::new("cat");
        cmd.arg(&pid_file);
        die_with_harness(&mut cmd, Some(&pid_file)).unwrap();
        let out = cmd.output().unwrap();
        // `cat` reads the file as its first act: it was there before `cat` ran.
        let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!(pid > 0);
        assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), format!("{pid}\n"));
    }

    /// A helper process spawns `sleep` through `die_with_harness`, prints its pid, and is SIGKILLed:
    /// the sleep must die too.
    #[test]
    fn the_child_dies_with_the_harness() {
        let Ok(exe) = std::env::current_exe() else {
            println!("skipped: no current exe");
            return;
        };
        if std::env::var_os(HELPER_ENV).is_some() {
            return;
        }
        let mut helper = Command::new(exe)
            .args([
                "--exact",
                "backends::process::tests::helper_spawns_a_sleep",
                "--nocapture",
            ])
            .env(HELPER_ENV, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(helper.stdout.take().unwrap());
        let mut pid = None;
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0 {
            if let Some(p) = line.trim().strip_prefix("SLEEP PID ") {
                pid = Some(p.parse::<i32>().unwrap());
                break;
            }
            line.clear();
        }
        let pid = pid.expect("the helper printed the sleep's pid");
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        helper.kill().unwrap();
        helper.wait().unwrap();
        // The kernel delivers the parent-death signal as the helper exits; reaping by init follows.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while is_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_alive(pid), "sleep {pid} outlived its SIGKILLed parent");
    }

    const HELPER_ENV: &str = "CVBENCH_TEST_PDEATHSIG_HELPER";

    fn is_alive(pid: i32) -> bool {
        crate::cleanup::process_running(pid)
    }

    /// Only does something as the helper of `the_child_dies_with_the_harness`.
    #[test]
    fn helper_spawns_a_sleep() {
        if std::env::var_os(HELPER_ENV).is_none() {
            return;
        }
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        die_with_harness(&mut cmd, None).unwrap();
        let mut child = cmd.spawn().unwrap();
        println!("SLEEP PID {}", child.id());
        // The test SIGKILLs this helper long before the sleep ends.
        let _ = child.wait();
    }
}
