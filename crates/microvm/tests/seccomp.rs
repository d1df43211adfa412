//! `cvbench-vmm`'s seccomp filters, on the real binary booting the probe (needs KVM): on by default
//! with one filter on the VMM threads and two (VMM + vCPU) on each vCPU thread; a forbidden call ends
//! the VMM with exit status 148 and one line naming the thread and the call; `--no-seccomp` turns
//! them off.

// Integration tests live at the top level of their own crate by cargo convention.
#![allow(clippy::tests_outside_test_module)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use microvm::probe;

/// The probe kernel and a disk for it, or `None` (after printing why) without usable KVM.
fn fixture() -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    if let Err(e) = microvm::builder::open_kvm() {
        println!("skipped: {e}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = probe::write_payload(dir.path()).unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, probe::disk_image("seccomp", 16)).unwrap();
    Some((dir, kernel, disk))
}

fn vmm(kernel: &PathBuf, disk: &PathBuf, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cvbench-vmm"));
    c.arg("--kernel")
        .arg(kernel)
        .args(["--memory-mib", "16", "--disk"])
        .arg(disk)
        .args(extra);
    c
}

#[test]
fn a_forbidden_syscall_ends_the_vmm_with_a_clear_error() {
    let Some((_dir, kernel, disk)) = fixture() else {
        return;
    };
    let out = vmm(&kernel, &disk, &["--seccomp-selftest"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(microvm::seccomp::EXIT_FORBIDDEN_SYSCALL),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("cvbench-vmm-event"))
        .collect();
    assert_eq!(
        errors,
        [
            "cvbench-vmm: seccomp: thread cvbench-vmm made system call 41, which its filter forbids; \
          exiting (--no-seccomp turns the filters off)"
        ],
        "socket(2) is 41 on x86_64"
    );
    // Without the filters the same call goes through (and the hook says so).
    let out = vmm(&kernel, &disk, &["--seccomp-selftest", "--no-seccomp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("socket(2) was allowed"));
}

/// `Seccomp_filters` of each thread of `pid`, by thread name.
fn filters_per_thread(pid: u32) -> Vec<(String, u32)> {
    let mut seen = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let n = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp_filters:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        seen.push((comm.trim().to_string(), n));
    }
    seen.sort();
    seen
}

/// Boots a halting two-vCPU probe, waits until both vCPU threads run, returns the filters per thread
/// and stops the VMM with SIGTERM (which must still end it cleanly).
fn observe(kernel: &PathBuf, disk: &PathBuf, extra: &[&str]) -> Vec<(String, u32)> {
    let mut args = vec!["--vcpus", "2", "--cmdline", probe::HALT_FLAG];
    args.extend_from_slice(extra);
    let mut child = vmm(kernel, disk, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let seen = filters_per_thread(child.id());
        if seen.iter().filter(|(n, _)| n.starts_with("vcpu")).count() == 2 || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{seen:?}");
    seen
}

#[test]
fn vmm_and_vcpu_threads_are_filtered_by_default_and_not_with_no_seccomp() {
    let Some((_dir, kernel, disk)) = fixture() else {
        return;
    };
    let on = observe(&kernel, &disk, &[]);
    for (name, n) in &on {
        let expected = if name.starts_with("vcpu") { 2 } else { 1 };
        // Kernel helper threads KVM attaches to the process (kvm-nx-lpage-re) inherit a filter too.
        if name.starts_with("vcpu") || name == "cvbench-vmm" {
            assert_eq!(*n, expected, "{name}: {on:?}");
        }
    }
    assert_eq!(
        on.iter().filter(|(n, _)| n.starts_with("vcpu")).count(),
        2,
        "{on:?}"
    );
    let off = observe(&kernel, &disk, &["--no-seccomp"]);
    assert!(off.iter().all(|(_, n)| *n == 0), "{off:?}");
}
