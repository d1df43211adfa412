//! Boots the probe guest through the normal builder on this host's KVM (hardware or paravirtual) and
//! checks what it did: serial output, the boot-timer event, the sector it read, the sector it wrote,
//! and how the VM stopped. Skips with a printed reason when /dev/kvm cannot be used.

#![allow(clippy::tests_outside_test_module)] // integration tests are their own crate

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use microvm::events::VmObserver;
use microvm::{probe, DiskConfig, EventKind, ExitReason, Vm, VmConfig, VmEvent};

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<VmEvent>>,
    warnings: Mutex<Vec<String>>,
}

impl VmObserver for Recorder {
    fn event(&self, event: VmEvent) {
        self.events.lock().unwrap().push(event);
    }
    fn warning(&self, message: &str) {
        self.warnings.lock().unwrap().push(message.to_string());
    }
}

/// The guest's serial output, which a test can wait on.
#[derive(Clone, Default)]
struct Console(Arc<(Mutex<Vec<u8>>, Condvar)>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 .0.lock().unwrap().extend_from_slice(buf);
        self.0 .1.notify_all();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Console {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0 .0.lock().unwrap()).into_owned()
    }

    /// Whether `needle` appeared before `watchdog` ran out.
    fn wait_for(&self, needle: &str, watchdog: Duration) -> bool {
        let (bytes, written) = &*self.0;
        let guard = bytes.lock().unwrap();
        let (guard, _) = written
            .wait_timeout_while(guard, watchdog, |b| !String::from_utf8_lossy(b).contains(needle))
            .unwrap();
        String::from_utf8_lossy(&guard).contains(needle)
    }
}

fn kvm_unavailable() -> Option<String> {
    microvm::builder::open_kvm().err().map(|e| e.to_string())
}

/// The probe's kernel and a disk holding `token`, or `None` (after printing why) when KVM cannot be
/// used here.
fn kvm_fixture(token: &str) -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    if let Some(reason) = kvm_unavailable() {
        testkit::skip(testkit::Requirement::Kvm, reason);
        return None;
    }
    Some(fixture(token))
}

struct ProbeRun {
    exit: ExitReason,
    console: String,
    recorder: Arc<Recorder>,
}

fn fixture(token: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let kernel = probe::write_payload(dir.path()).unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, probe::disk_image(token, 16)).unwrap();
    (dir, kernel, disk)
}

/// A 16 MiB probe VM with `disk` as vda, its serial output going to `console`.
fn probe_config(
    kernel: &Path,
    disk: &Path,
    read_only: bool,
    vcpus: u8,
    cmdline: &str,
    console: &Console,
) -> VmConfig {
    VmConfig {
        kernel: kernel.to_path_buf(),
        cmdline_extra: cmdline.to_string(),
        memory_mib: 16,
        vcpus,
        disks: vec![DiskConfig {
            path: disk.to_path_buf(),
            read_only,
        }],
        net: None,
        console: Box::new(console.clone()),
    }
}

fn boot(kernel: &Path, disk: &Path, read_only: bool, vcpus: u8, cmdline: &str) -> ProbeRun {
    let console = Console::default();
    let recorder = Arc::new(Recorder::default());
    let config = probe_config(kernel, disk, read_only, vcpus, cmdline, &console);
    let vm = Vm::create(config, recorder.clone()).unwrap();
    let exit = vm.run().unwrap();
    ProbeRun {
        exit,
        console: console.text(),
        recorder,
    }
}

fn token() -> String {
    format!(
        "tok-{}-{}",
        std::process::id(),
        microvm::events::monotonic_now_ns() % 1_000_000_007
    )
}

#[test]
fn probe_reads_and_writes_its_disk_then_resets_cleanly() {
    let token = token();
    let Some((_dir, kernel, disk)) = kvm_fixture(&token) else {
        return;
    };
    let run = boot(&kernel, &disk, false, 1, "");

    assert_eq!(run.exit, ExitReason::GuestReset, "console:\n{}", run.console);
    // `Vm::run` returned: the vCPU threads and the I/O thread are gone (this test has its own
    // process under nextest, so no other VM's threads are counted).
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| c == "vm-io" || c.starts_with("vcpu"))
        .collect();
    assert!(threads.is_empty(), "left running: {threads:?}");
    assert!(run.console.contains("PROBE zeropage ok"), "{}", run.console);
    assert!(run
        .console
        .contains("PROBE cmdline console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd virtio_mmio.device=4K@0xd0000000:5"));
    assert!(
        run.console.contains(&format!("PROBE sector1 {token}")),
        "{}",
        run.console
    );
    assert!(run.console.contains("PROBE virtio-blk ok"));
    assert!(run.console.contains(probe::READY_LINE));

    let disk_bytes = std::fs::read(&disk).unwrap();
    let read = &disk_bytes[512..1024];
    let written = &disk_bytes[1024..1536];
    assert_eq!(&written[..8], probe::WRITTEN_MAGIC);
    assert_eq!(
        &written[8..],
        &read[8..],
        "sector 2 = sector 1 with the magic replaced"
    );

    let events = run.recorder.events.lock().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        [
            "vm_created_kernel_loaded",
            "first_vcpu_entry",
            "boot_timer",
            "guest_reset"
        ]
    );
    assert_eq!(events[2].kind, EventKind::BootTimer { value: 0x7b });
    assert!(events.windows(2).all(|w| w[0].monotonic_ns <= w[1].monotonic_ns));
}

#[test]
fn read_only_disk_refuses_the_probe_write() {
    let Some((_dir, kernel, disk)) = kvm_fixture("ro") else {
        return;
    };
    let before = std::fs::read(&disk).unwrap();
    let run = boot(&kernel, &disk, true, 1, "");
    assert_eq!(run.exit, ExitReason::GuestReset);
    assert!(run.console.contains("PROBE sector1 ro"), "{}", run.console);
    assert!(run.console.contains("PROBE FAIL write"), "{}", run.console);
    assert_eq!(std::fs::read(&disk).unwrap(), before);
}

#[test]
fn triple_fault_stops_the_vm_with_a_typed_reason() {
    let Some((_dir, kernel, disk)) = kvm_fixture("fault") else {
        return;
    };
    let run = boot(&kernel, &disk, false, 1, probe::FAULT_FLAG);
    assert_eq!(
        run.exit,
        ExitReason::TripleFault { vcpu: 0 },
        "console:\n{}",
        run.console
    );
    assert!(!run.exit.is_clean());
    assert!(run.console.contains("PROBE triple-faulting now"));
}

#[test]
fn int3_reaches_the_guest_handler_even_where_kvm_cannot_emulate_it() {
    let Some((_dir, kernel, disk)) = kvm_fixture("int3") else {
        return;
    };
    let run = boot(&kernel, &disk, false, 1, probe::INT3_FLAG);
    assert_eq!(run.exit, ExitReason::GuestReset, "console:\n{}", run.console);
    let handled = run.console.find("PROBE int3 handled").expect("handler ran");
    let returned = run
        .console
        .find("PROBE int3 returned")
        .expect("execution resumed after int3");
    assert!(handled < returned);
    assert!(run.console.contains(probe::READY_LINE));
}

#[test]
fn two_vcpus_boot_with_the_second_waiting_for_sipi() {
    let Some((_dir, kernel, disk)) = kvm_fixture("smp") else {
        return;
    };
    let run = boot(&kernel, &disk, false, 2, "");
    assert_eq!(run.exit, ExitReason::GuestReset, "console:\n{}", run.console);
    assert!(run.console.contains(probe::READY_LINE));
}

/// How long a stop may take before the test calls the kick lost. Not a performance bound: a stop
/// that works ends in microseconds; a lost kick never ends.
const STOP_WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `vm` on a thread; the returned receiver yields its result.
fn run_in_background(vm: Vm) -> std::sync::mpsc::Receiver<ExitReason> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(vm.run().unwrap());
    });
    rx
}

fn await_stop(rx: &std::sync::mpsc::Receiver<ExitReason>, what: &str) -> ExitReason {
    rx.recv_timeout(STOP_WATCHDOG)
        .unwrap_or_else(|e| panic!("{what}: the VM did not stop ({e}): a kick was lost"))
}

#[test]
fn a_stop_ends_a_spinning_or_halted_guest_every_time_with_one_kick_per_vcpu() {
    let Some((_dir, kernel, disk)) = kvm_fixture("stop") else {
        return;
    };
    // Two vCPUs: the boot vCPU spins or halts in the guest after READY, the other waits for a SIPI
    // inside KVM_RUN. Half the stops land after READY, half right after `run` starts, at whatever
    // point the vCPU threads are (not started, between the stopping check and KVM_RUN, in an exit).
    for flag in [probe::SPIN_FLAG, probe::HALT_FLAG] {
        for round in 0..60 {
            let console = Console::default();
            let config = probe_config(&kernel, &disk, false, 2, flag, &console);
            let vm = Vm::create(config, Arc::new(Recorder::default())).unwrap();
            let stop = vm.stop_handle();
            let result = run_in_background(vm);
            let after_ready = round % 2 == 0;
            if after_ready {
                assert!(
                    console.wait_for(probe::READY_LINE, STOP_WATCHDOG),
                    "{flag} round {round}: {}",
                    console.text()
                );
            }
            stop.stop();
            let what = format!("{flag} round {round} (after READY: {after_ready})");
            assert_eq!(await_stop(&result, &what), ExitReason::Stopped, "{what}");
            assert!(stop.kicks_sent() <= 2, "{what}: {} kicks", stop.kicks_sent());
            if after_ready {
                // Both vCPU threads were inside KVM_RUN: each got exactly one kick, never a repeat.
                assert_eq!(stop.kicks_sent(), 2, "{what}");
            }
        }
    }
}

/// Stops the VM from inside the first-entry event, which the boot vCPU reports after its `stopping`
/// check and before its first `KVM_RUN`, and returns only once the kick signal has been handled on
/// that thread: exactly the window in which a plain signal is lost.
#[derive(Default)]
struct StopBeforeFirstEntry {
    stop: std::sync::OnceLock<microvm::StopHandle>,
    events: Mutex<Vec<String>>,
}

impl VmObserver for StopBeforeFirstEntry {
    fn event(&self, event: VmEvent) {
        self.events.lock().unwrap().push(event.kind.name().to_string());
        if event.kind != EventKind::FirstVcpuEntry {
            return;
        }
        let stop = self.stop.get().expect("set before run");
        stop.stop();
        let deadline = Instant::now() + STOP_WATCHDOG;
        while stop.kicks_sent() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The kick is queued for this thread; the return from this syscall runs its handler.
        std::thread::sleep(Duration::from_millis(1));
    }
    fn warning(&self, _: &str) {}
}

#[test]
fn a_kick_landing_before_kvm_run_is_not_lost() {
    let Some((_dir, kernel, disk)) = kvm_fixture("race") else {
        return;
    };
    for round in 0..20 {
        let console = Console::default();
        let observer = Arc::new(StopBeforeFirstEntry::default());
        // The guest spins from its first instruction: once in KVM_RUN, only a kick brings it out.
        let config = probe_config(&kernel, &disk, false, 1, probe::ENTRY_SPIN_FLAG, &console);
        let vm = Vm::create(config, observer.clone()).unwrap();
        let stop = vm.stop_handle();
        assert!(observer.stop.set(stop.clone()).is_ok());
        let result = run_in_background(vm);
        let what = format!("round {round}");
        assert_eq!(await_stop(&result, &what), ExitReason::Stopped);
        assert_eq!(stop.kicks_sent(), 1, "{what}: one kick, no repeats");
        assert_eq!(console.text(), "", "{what}");
        assert_eq!(
            *observer.events.lock().unwrap(),
            ["vm_created_kernel_loaded", "first_vcpu_entry"],
            "{what}"
        );
    }
}

#[test]
fn vmm_binary_reports_events_and_exits_zero_on_sigterm() {
    let Some((_dir, kernel, disk)) = kvm_fixture("bin") else {
        return;
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cvbench-vmm"))
        .arg("--kernel")
        .arg(&kernel)
        .args(["--memory-mib", "16", "--cmdline", probe::HALT_FLAG, "--disk"])
        .arg(&disk)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains(probe::READY_LINE) {
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        assert!(n > 0, "VMM closed stdout before READY: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut stderr_pipe, &mut stderr).unwrap();
    let events: Vec<VmEvent> = stderr.lines().filter_map(VmEvent::parse_line).collect();
    let names: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        [
            "vm_created_kernel_loaded",
            "first_vcpu_entry",
            "boot_timer",
            "device_counters",
            "vm_stopped"
        ],
        "{stderr}"
    );
    // The probe read one sector, wrote one and flushed before halting; nothing was malformed.
    assert_eq!(
        events[3].kind,
        EventKind::DeviceCounters {
            device: "vda".into(),
            counters: "reads=1 writes=1 flushes=1 bytes_read=512 bytes_written=512".into()
        },
        "{stderr}"
    );
    assert_eq!(
        events[4].kind,
        EventKind::Stopped {
            reason: ExitReason::Stopped
        }
    );
}

#[test]
fn vmm_binary_fails_with_one_line_for_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"not a kernel at all").unwrap();
    let kernel = probe::write_payload(dir.path()).unwrap();
    for (args, expected) in [
        (vec!["--kernel", "/nonexistent/vmlinux"], "/nonexistent/vmlinux"),
        (
            vec!["--kernel", garbage.to_str().unwrap()],
            "neither an x86-64 ELF nor a bzImage",
        ),
        (
            vec!["--kernel", garbage.to_str().unwrap(), "--memory-mib", "1"],
            "memory_mib 1",
        ),
        (
            vec![
                "--kernel",
                kernel.to_str().unwrap(),
                "--disk",
                "/nonexistent/disk.img",
            ],
            "/nonexistent/disk.img",
        ),
        (
            vec!["--kernel", kernel.to_str().unwrap(), "--net-tap-fd", "999"],
            "--net-tap-fd 999 is not an open file descriptor",
        ),
        (
            vec![
                "--kernel",
                kernel.to_str().unwrap(),
                "--net-tap-fd",
                "0",
                "--net-mac",
                "01:00:00:00:00:01",
            ],
            "not six colon-separated hex bytes of a unicast address",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cvbench-vmm"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cvbench-vmm"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
