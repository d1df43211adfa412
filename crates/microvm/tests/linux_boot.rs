//! Full Linux boot through the VMM to the guest init's boot-timer write. Runs only where KVM is
//! hardware-backed (vmx/svm in /proc/cpuinfo and no paravirtual kvm_pvm module) and a guest kernel
//! has been built (guest/kernel/build.sh, or CVBENCH_GUEST_KERNEL); otherwise prints why it skipped.

#![allow(clippy::tests_outside_test_module)] // integration tests are their own crate

use std::path::Path;
use std::sync::{Arc, Mutex};

use microvm::events::VmObserver;
use microvm::kernel::{locate_guest_kernel, DEFAULT_KERNEL_CACHE, GUEST_KERNEL_ENV};
use microvm::{EventKind, Vm, VmConfig, VmEvent};

fn hardware_kvm() -> Result<(), String> {
    let cpuinfo =
        std::fs::read_to_string("/proc/cpuinfo").map_err(|e| format!("reading /proc/cpuinfo: {e}"))?;
    let virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !virt {
        return Err("no vmx/svm in /proc/cpuinfo: KVM here is not hardware-backed".into());
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Err("/dev/kvm is PVM (paravirtual); a stock kernel boots only under slow emulation".into());
    }
    microvm::builder::open_kvm().map(drop).map_err(|e| e.to_string())
}

#[derive(Default)]
struct Recorder(Mutex<Vec<VmEvent>>);
impl VmObserver for Recorder {
    fn event(&self, event: VmEvent) {
        self.0.lock().unwrap().push(event);
    }
    fn warning(&self, _message: &str) {}
}

#[test]
fn linux_reaches_the_boot_timer() {
    if let Err(reason) = hardware_kvm() {
        testkit::skip(testkit::Requirement::HardwareKvm, reason);
        return;
    }
    let env = std::env::var_os(GUEST_KERNEL_ENV);
    let Some(kernel) = locate_guest_kernel(env.as_deref(), Path::new(DEFAULT_KERNEL_CACHE)) else {
        testkit::skip(
            testkit::Requirement::GuestKernel,
            format!("no guest kernel built (run guest/kernel/build.sh or set {GUEST_KERNEL_ENV})"),
        );
        return;
    };
    // No root disk: the kernel boots, panics for want of a root filesystem and, with panic=-1 and
    // reboot=k, resets through the i8042 — which proves boot params, interrupts and the console.
    let console = Arc::new(Mutex::new(Vec::new()));
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let recorder = Arc::new(Recorder::default());
    let config = VmConfig {
        kernel: kernel.clone(),
        cmdline_extra: String::new(),
        memory_mib: 128,
        vcpus: 1,
        disks: Vec::new(),
        net: None,
        console: Box::new(Sink(console.clone())),
    };
    let vm = Vm::create(config, recorder.clone()).unwrap();
    let exit = vm.run().unwrap();
    let text = String::from_utf8_lossy(&console.lock().unwrap()).into_owned();
    assert!(exit.is_clean(), "{exit}\n{text}");
    assert!(text.contains("Linux version"), "{text}");
    assert!(
        recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::GuestReset),
        "{text}"
    );
}
