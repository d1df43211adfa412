//! Test layer 4.3: the guest artifacts without our VMM. The built kernel, the guest init and the
//! default image boot under `qemu-system-x86_64 -M microvm` with the same two virtio-mmio disks our
//! VMM gives a guest (vda = the shared read-only image, vdb = a fresh scratch disk), and the
//! workload must say READY (and RESULT where it ends by itself) on the serial console.
//!
//! On this host QEMU runs with `-accel tcg` (pure emulation; /dev/kvm is PVM), so boots take
//! seconds: the timeout is generous and nothing here asserts a duration.
//!
//! Skipped, with the reason printed, when the kernel is not built (`guest/kernel/build.sh`), QEMU or
//! mkfs.ext4 is missing, or the workload binary is not built.

#![allow(clippy::tests_outside_test_module)] // an integration test is its own crate

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use testkit::Requirement;
use workload::{parse_line, ProtocolLine, WorkloadResult, WorkloadSpec};

/// Generous: a TCG boot to READY takes ~10 s here when the host is idle, several times that when
/// other tests compete for the two cores.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const GUEST_RAM_MIB: u32 = 256;
const SCRATCH_MIB: u32 = 64;

/// The kernel directory: `$CVBENCH_GUEST_KERNEL`, else the newest `/var/cache/cvbench/kernel/*/`.
fn kernel_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CVBENCH_GUEST_KERNEL").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let entries = std::fs::read_dir("/var/cache/cvbench/kernel").ok()?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("vmlinux").is_file())
        .max_by_key(|p| p.join("vmlinux").metadata().and_then(|m| m.modified()).ok())
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Everything a boot needs.
struct Artifacts {
    vmlinux: PathBuf,
    image_disk: PathBuf,
    scratch_template: PathBuf,
    /// Holds the image and disks of this test; removed on drop.
    cache: tempfile::TempDir,
}

/// Everything a boot needs, or what this host lacks for one. Building the image and disks from
/// what is there must work: a failure there fails the test.
fn artifacts() -> Result<Artifacts, (Requirement, String)> {
    let kernel = kernel_dir().ok_or((
        Requirement::GuestKernel,
        "no guest kernel built (run guest/kernel/build.sh)".to_string(),
    ))?;
    let vmlinux = kernel.join("vmlinux");
    if !vmlinux.is_file() {
        return Err((Requirement::GuestKernel, format!("{} missing", vmlinux.display())));
    }
    if !in_path("qemu-system-x86_64") {
        return Err((
            Requirement::Package("qemu-system-x86"),
            "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)".into(),
        ));
    }
    if !in_path("mkfs.ext4") {
        return Err((
            Requirement::Package("e2fsprogs"),
            "mkfs.ext4 not installed (apt-get install e2fsprogs)".into(),
        ));
    }
    let workload_bin =
        rootfs::locate_binary(rootfs::WORKLOAD_BIN).map_err(|e| (Requirement::Binaries, e.to_string()))?;
    let init_bin = PathBuf::from(env!("CARGO_BIN_EXE_cvbench-guest-init"));
    let cache = tempfile::Builder::new()
        .prefix("cvbench-qemu-test-")
        .tempdir()
        .expect("creating the test's cache dir");
    let image = rootfs::build_default_image(cache.path(), &workload_bin).expect("building the image");
    let disk = rootfs::ext4_disk_image(&image, &[(init_bin, "/cvbench/init".to_string())], cache.path())
        .expect("building the image disk");
    let scratch_template =
        rootfs::scratch_disk_template(SCRATCH_MIB, cache.path()).expect("building the scratch template");
    Ok(Artifacts {
        vmlinux,
        image_disk: disk.path,
        scratch_template,
        cache,
    })
}

/// `virtio_mmio.device=` for the `n`-th `-device virtio-blk-device` of a QEMU 7.2 microvm with
/// `acpi=off,ioapic2=off`: eight 512-byte transports from 0xfeb00000 on IRQs 5.., filled from the last one down,
/// so the first device sits at 0xfeb00e00 on IRQ 12. (QEMU's own `auto-kernel-cmdline` appends these
/// after ` -- `, where the kernel hands them to init instead of parsing them, so we pass them.)
fn qemu_virtio_mmio_param(n: u64) -> String {
    format!("virtio_mmio.device=512@{:#x}:{}", 0xfeb0_0e00 - 0x200 * n, 12 - n)
}

/// The contract's kernel command line with QEMU's transport addresses.
fn cmdline(spec: &WorkloadSpec) -> String {
    format!(
        "console=ttyS0 reboot=k panic=-1 root=/dev/vda ro rootfstype=ext4 init=/cvbench/init {} {} -- {}",
        qemu_virtio_mmio_param(0),
        qemu_virtio_mmio_param(1),
        spec.to_args().join(" ")
    )
}

fn qemu_command(vmlinux: &Path, image: &Path, scratch: &Path, spec: &WorkloadSpec) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-M",
        "microvm,acpi=off,ioapic2=off,auto-kernel-cmdline=off",
        "-accel",
        "tcg",
        "-cpu",
        "max",
    ])
    .args(["-m", &GUEST_RAM_MIB.to_string(), "-smp", "1"])
    .args([
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-serial",
        "stdio",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(vmlinux)
    .args(["-append", &cmdline(spec)])
    .arg("-drive")
    .arg(format!(
        "id=vda,file={},format=raw,if=none,readonly=on",
        image.display()
    ))
    .args(["-device", "virtio-blk-device,drive=vda"])
    .arg("-drive")
    .arg(format!("id=vdb,file={},format=raw,if=none", scratch.display()))
    .args(["-device", "virtio-blk-device,drive=vdb"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// A running QEMU, killed and reaped on drop whatever happened.
struct Qemu {
    child: Child,
    lines: mpsc::Receiver<String>,
    console: Vec<String>,
}

impl Qemu {
    fn start(mut cmd: Command) -> Qemu {
        let mut child = cmd.spawn().expect("spawning qemu-system-x86_64");
        let (tx, lines) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Qemu {
            child,
            lines,
            console: Vec::new(),
        }
    }

    /// Reads console lines until `want` matches a protocol line; panics with the console on timeout,
    /// on `CVBENCH ERROR`, or when QEMU ends first.
    fn wait_for(&mut self, deadline: Instant, want: impl Fn(&ProtocolLine) -> bool) -> ProtocolLine {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.console.push(line.clone());
                    match parse_line(&line) {
                        Ok(Some(ProtocolLine::Error(e))) => {
                            panic!("guest reported an error: {e}\n{}", self.dump())
                        }
                        Ok(Some(l)) if want(&l) => return l,
                        Ok(_) => {}
                        Err(e) => panic!("{e}\n{}", self.dump()),
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("timed out after {BOOT_TIMEOUT:?}\n{}", self.dump())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("QEMU ended first\n{}", self.dump()),
            }
        }
    }

    /// Waits for QEMU to exit on its own (the guest reset, with -no-reboot).
    fn wait_exit(&mut self, deadline: Instant) -> std::process::ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for qemu") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "QEMU still running after the workload ended\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn dump(&mut self) -> String {
        self.console.extend(self.lines.try_iter());
        format!("--- console ---\n{}", self.console.join("\n"))
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Boots `spec` and returns the QEMU (still running or ended) once READY was seen.
fn boot(art: &Artifacts, spec: &WorkloadSpec, scratch: &Path) -> (Qemu, Instant) {
    rootfs::new_scratch_disk(&art.scratch_template, scratch).expect("creating the scratch disk");
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut qemu = Qemu::start(qemu_command(&art.vmlinux, &art.image_disk, scratch, spec));
    let kind = spec.kind().name();
    qemu.wait_for(
        deadline,
        |l| matches!(l, ProtocolLine::Ready { workload } if workload == kind),
    );
    (qemu, deadline)
}

fn artifacts_or_skip() -> Option<Artifacts> {
    match artifacts() {
        Ok(a) => Some(a),
        Err((requirement, reason)) => {
            testkit::skip(requirement, reason);
            None
        }
    }
}

#[test]
fn oltp_boots_to_ready_and_result_then_resets() {
    let Some(art) = artifacts_or_skip() else { return };
    let scratch = art.cache.path().join("scratch-oltp.ext4");
    let template_bytes = rootfs::allocated_bytes(&art.scratch_template).unwrap();
    let spec = WorkloadSpec::Oltp {
        rows: 200,
        transactions: 20,
    };
    let (mut qemu, deadline) = boot(&art, &spec, &scratch);
    let line = qemu.wait_for(deadline, |l| matches!(l, ProtocolLine::Result(_)));
    let ProtocolLine::Result(WorkloadResult {
        workload, metrics, ..
    }) = line
    else {
        unreachable!()
    };
    assert_eq!(workload, "oltp");
    assert!(metrics.get("tps").is_some_and(|tps| *tps > 0.0), "{metrics:?}");
    // Init syncs and resets the VM; with -no-reboot that ends QEMU cleanly.
    let status = qemu.wait_exit(deadline);
    assert!(status.success(), "QEMU exited with {status}\n{}", qemu.dump());
    // The database went to the overlay's upper dir, on the scratch disk.
    let scratch_bytes = rootfs::allocated_bytes(&scratch).unwrap();
    assert!(
        scratch_bytes > template_bytes,
        "scratch disk unchanged: {scratch_bytes} <= {template_bytes} bytes"
    );
}

#[test]
fn idle_boots_to_ready() {
    let Some(art) = artifacts_or_skip() else { return };
    let scratch = art.cache.path().join("scratch-idle.ext4");
    let (mut qemu, _) = boot(&art, &WorkloadSpec::Idle, &scratch);
    assert!(
        qemu.child.try_wait().unwrap().is_none(),
        "idle must keep running after READY"
    );
}

#[test]
fn http_selftest_runs_over_guest_loopback() {
    let Some(art) = artifacts_or_skip() else { return };
    let scratch = art.cache.path().join("scratch-http.ext4");
    let spec = WorkloadSpec::Http {
        port: WorkloadSpec::DEFAULT_HTTP_PORT,
        selftest: Some(workload::spec::HttpSelftest {
            requests: 200,
            connections: 2,
        }),
        from_outside: None,
    };
    let (mut qemu, deadline) = boot(&art, &spec, &scratch);
    let line = qemu.wait_for(deadline, |l| matches!(l, ProtocolLine::Result(_)));
    let ProtocolLine::Result(result) = line else {
        unreachable!()
    };
    assert_eq!(result.workload, "http");
    let status = qemu.wait_exit(deadline);
    assert!(status.success(), "QEMU exited with {status}\n{}", qemu.dump());
}

#[test]
fn virtio_mmio_params_match_qemu_microvm_transports() {
    // What QEMU 7.2 itself printed for two disks with auto-kernel-cmdline=on.
    assert_eq!(qemu_virtio_mmio_param(0), "virtio_mmio.device=512@0xfeb00e00:12");
    assert_eq!(qemu_virtio_mmio_param(1), "virtio_mmio.device=512@0xfeb00c00:11");
    let line = cmdline(&WorkloadSpec::Idle);
    let (kernel_part, init_part) = line.split_once(" -- ").unwrap();
    assert!(kernel_part.contains("virtio_mmio.device=512@0xfeb00e00:12"));
    assert_eq!(init_part, "idle");
}
