//! QEMU's `microvm` machine as a [`crate::Backend`]: the peer that users know, booting exactly what
//! the cvbench microVM boots — the same guest kernel (`vmlinux`, PVH entry), the same read-only ext4
//! image on `vda`, a per-instance scratch disk copied from the same template on `vdb`, the same guest
//! init and workload arguments — so the two VMMs can be compared.
//!
//! Acceleration: `-accel kvm -cpu host` where `/dev/kvm` is hardware KVM; otherwise (no KVM, or PVM,
//! where a stock kernel's ring-0 code runs far too slowly) `-accel tcg -cpu max`, pure emulation,
//! labelled `emulated = true`.
//!
//! Phases: `start_to_ready_ms` (and `start_to_network_ready_ms` with a network, below) (the READY line became readable on QEMU's stdout, which is the
//! guest's ttyS0). QEMU has no boot-timer device, so "guest init reached" is not observable and is
//! not reported. Memory: the QEMU process's PSS. Disk: the scratch disk's allocated bytes.
//!
//! QEMU's own `auto-kernel-cmdline` appends the virtio-mmio transports at the end of the command
//! line, i.e. after ` -- `, where the kernel passes them to init instead of parsing them; so it is
//! turned off and [`kernel_cmdline`] places them before ` -- ` itself.
//!
//! For a workload reached from outside: `-netdev tap,fd=` on the tap the harness bridged into the
//! instance's network namespace (see `vm_net`), a `virtio-net-device` on the third transport, and
//! `start_to_network_ready_ms` before READY.
//!
//! State that must survive a crashed harness: `/run/cvbench/qemu/<instance>/` holds `qemu.pid` and
//! the scratch disk; [`cleanup_leftover_qemus`] kills and removes what a dead harness left.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use workload::{WorkloadResult, WorkloadSpec};

use super::lines::{self, ReadySource};
use super::microvm::{guest_size, linux_cmdline_extra, linux_kernel, LinuxDisks};
use super::vm_net::VmNet;
use super::vm_process::{self, Next, Seen, VmProcess, VmmKind};
use crate::backend::{
    Backend, BackendError, DiskProbe, Instance, InstanceLimits, LaunchSpec, MemoryProbe, PhaseMark,
    SharedImage, Stage, Unavailable,
};
use crate::host::{self, HostRoots, KvmFlavour};
use crate::metrics::{START_TO_NETWORK_READY_MS, START_TO_READY_MS};
use crate::probe;
use crate::results::{self, Isolation, IsolationKind};

const NAME: &str = "qemu";
/// The QEMU binary, looked up in `PATH`.
pub const QEMU_BIN: &str = "qemu-system-x86_64";
/// Guest RAM when the launch spec sets no memory limit (the cvbench microVM's default).
pub const DEFAULT_MEMORY_MIB: u64 = super::microvm::DEFAULT_MEMORY_MIB;
/// Where instance state lives.
pub const RUN_DIR: &str = "/run/cvbench/qemu";
/// `/proc/PID/comm` of QEMU (the kernel truncates names to 15 bytes).
const QEMU_COMM: &str = "qemu-system-x86";
/// How long the host TSC is measured against the monotonic clock (error well under 0.1 %).
const TSC_WINDOW: Duration = Duration::from_millis(20);
/// QEMU as the shared VM instance code names it.
const QEMU: VmmKind = VmmKind {
    backend: NAME,
    program: QEMU_BIN,
    process: "QEMU",
    subject: "QEMU",
    pid_file: "qemu.pid",
    comm: QEMU_COMM,
    leftover: "qemu VM",
};

/// How QEMU runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware KVM (VT-x/AMD-V).
    Kvm,
    /// TCG: QEMU's binary translator. Emulation; figures are not comparable with KVM ones.
    Tcg,
}

impl Accel {
    /// KVM when [`host::kvm_flavour`] says the host's KVM is hardware (as the results' host record
    /// does), else TCG.
    pub fn detect_in(roots: &HostRoots, cpuinfo: &str) -> Accel {
        match host::kvm_flavour(roots, cpuinfo) {
            // Nested SVM on TCG is hardware-style KVM: QEMU runs its guest with -accel kvm there.
            KvmFlavour::Hardware | KvmFlavour::NestedSvmTcg => Accel::Kvm,
            KvmFlavour::Pvm | KvmFlavour::None => Accel::Tcg,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The CPU model: the host's under KVM; under TCG `max`, which includes RDRAND, so the guest's
    /// random pool is seeded at once instead of after seconds of jitter entropy.
    fn cpu(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }
}

/// `virtio_mmio.device=` for the `n`-th `-device virtio-blk-device` of a QEMU microvm with
/// `acpi=off,ioapic2=off`: eight 512-byte transports from 0xfeb00000 on IRQs 5..=12, filled from the
/// last one down, so the first device sits at 0xfeb00e00 on IRQ 12 (as QEMU 7.2 itself reports).
pub fn virtio_mmio_param(n: u64) -> String {
    format!("virtio_mmio.device=512@{:#x}:{}", 0xfeb0_0e00 - 0x200 * n, 12 - n)
}

/// The guest kernel command line: the cvbench microVM's (console, reset on reboot, root on vda,
/// guest init, ` -- ` and the workload's arguments) with QEMU's transport addresses before ` -- `.
///
/// `tsc_khz`: under TCG the guest cannot calibrate its TSC (no HPET/PM timer on microvm, and the
/// PIT is too irregular under emulation), so it falls back to jiffies, a 10 ms clock at HZ=100,
/// and the workloads' own latency figures become multiples of 10 ms. TCG's TSC is the host's, so
/// passing the host TSC rate (`tsc_early_khz`, `tsc=reliable`) gives the guest a microsecond clock.
///
/// `reboot=t`, where cvbench-vmm (like Firecracker) passes `reboot=k`: QEMU's microvm machine has no
/// i8042, so with `reboot=k` the guest's reset first polls the absent controller's status port
/// 0x64 tens of thousands of times before falling back to a triple fault. Each poll is a VM exit:
/// under hardware-style KVM nested on TCG that took 50 s per VM end, past the finish timeout. A
/// triple fault resets at once, and `-no-reboot` turns the reset into QEMU's exit.
pub fn kernel_cmdline(workload: &WorkloadSpec, tsc_khz: Option<u64>) -> String {
    kernel_cmdline_with(workload, tsc_khz, None)
}

/// [`kernel_cmdline`] for a guest with `net`: the third transport (the virtio-net device, attached
/// after the two disks) and guest init's `cvbench.ip=`/`cvbench.gw=` words, all before ` -- `.
pub fn kernel_cmdline_with(workload: &WorkloadSpec, tsc_khz: Option<u64>, net: Option<&QemuNet>) -> String {
    let tsc = tsc_khz
        .map(|khz| format!("tsc_early_khz={khz} tsc=reliable "))
        .unwrap_or_default();
    let net_words = net
        .map(|n| format!("{} {} ", virtio_mmio_param(2), n.guest_words.join(" ")))
        .unwrap_or_default();
    format!(
        "console=ttyS0 reboot=t panic=-1 {tsc}{} {} {net_words}{}",
        virtio_mmio_param(0),
        virtio_mmio_param(1),
        linux_cmdline_extra(workload)
    )
}

/// A QEMU guest's network: a virtio-net device on an inherited tap descriptor (see `vm_net`).
#[derive(Debug, Clone, PartialEq)]
pub struct QemuNet {
    /// The tap's descriptor number in QEMU (inherited).
    pub tap_fd: i32,
    /// The guest's MAC address.
    pub mac: String,
    /// Guest init's `cvbench.ip=`/`cvbench.gw=` words.
    pub guest_words: Vec<String>,
}

/// The host's TSC rate in kHz, measured against the monotonic clock over `window`; `None` unless
/// the CPU's TSC is invariant (`constant_tsc` and `nonstop_tsc` in `cpuinfo`).
pub fn host_tsc_khz(cpuinfo: &str, window: Duration) -> Option<u64> {
    let invariant = cpuinfo.lines().filter(|l| l.starts_with("flags")).any(|l| {
        let flags: Vec<&str> = l.split_whitespace().collect();
        flags.contains(&"constant_tsc") && flags.contains(&"nonstop_tsc")
    });
    if !invariant {
        return None;
    }
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(window);
    let (t1, c1) = (Instant::now(), rdtsc());
    let nanos = u64::try_from(t1.duration_since(t0).as_nanos())
        .ok()
        .filter(|&n| n > 0)?;
    // cycles per ms = cycles * 1e6 / ns; u128 keeps the product exact.
    u64::try_from(u128::from(c1.wrapping_sub(c0)) * 1_000_000 / u128::from(nanos))
        .ok()
        .filter(|&khz| khz > 0)
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter and touches no memory; every x86-64 CPU has it, and user-mode
    // RDTSC is only disabled by a seccomp TSC restriction, which cvbench never sets.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// What one QEMU instance boots.
#[derive(Debug, Clone, PartialEq)]
pub struct QemuVm<'a> {
    pub accel: Accel,
    pub kernel: &'a Path,
    pub memory_mib: u64,
    pub vcpus: u8,
    /// The shared ext4 image (read-only `vda`).
    pub image_disk: &'a Path,
    /// This instance's scratch disk (`vdb`).
    pub scratch_disk: &'a Path,
    pub workload: &'a WorkloadSpec,
    /// The host TSC rate to hand a TCG guest (see [`kernel_cmdline`]); `None` under KVM.
    pub tsc_khz: Option<u64>,
    /// For a workload reached from outside: eth0 on a tap.
    pub net: Option<QemuNet>,
}

impl QemuVm<'_> {
    /// QEMU's arguments: no defaults, no config files, the serial console on stdout, exit instead of
    /// rebooting (the guest resets when its workload ends).
    pub fn args(&self) -> Vec<OsString> {
        let mut drive_vda = OsString::from("id=vda,format=raw,if=none,readonly=on,file=");
        drive_vda.push(self.image_disk);
        let mut drive_vdb = OsString::from("id=vdb,format=raw,if=none,file=");
        drive_vdb.push(self.scratch_disk);
        let mut args: Vec<OsString> = [
            "-M",
            "microvm,acpi=off,ioapic2=off,auto-kernel-cmdline=off",
            "-accel",
            self.accel.as_str(),
            "-cpu",
            self.accel.cpu(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.extend(
            [
                "-m".to_string(),
                self.memory_mib.to_string(),
                "-smp".to_string(),
                self.vcpus.to_string(),
            ]
            .into_iter()
            .map(OsString::from),
        );
        for a in [
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
        ] {
            args.push(a.into());
        }
        args.push(self.kernel.as_os_str().to_owned());
        args.push("-append".into());
        args.push(kernel_cmdline_with(self.workload, self.tsc_khz, self.net.as_ref()).into());
        for (drive, device) in [
            (drive_vda, "virtio-blk-device,drive=vda"),
            (drive_vdb, "virtio-blk-device,drive=vdb"),
        ] {
            args.extend(["-drive".into(), drive, "-device".into(), device.into()]);
        }
        // After the disks: the third transport, which the command line names third. `fd=` excludes
        // ifname/script/downscript: QEMU neither creates nor configures the tap, the harness did.
        if let Some(net) = &self.net {
            args.extend([
                "-netdev".into(),
                format!("tap,id=net0,fd={}", net.tap_fd).into(),
                "-device".into(),
                format!("virtio-net-device,netdev=net0,mac={}", net.mac).into(),
            ]);
        }
        args
    }
}

/// What `prepare` built, reused by every launch.
#[derive(Debug, Clone)]
struct Prepared {
    kernel: PathBuf,
    image_disk: PathBuf,
    scratch_template: PathBuf,
}

pub struct QemuBackend {
    pub accel: Accel,
    /// The host's KVM flavour: under nested SVM on TCG even `-accel kvm` figures are emulated.
    pub host_kvm: KvmFlavour,
    /// Guest kernel; `None` = the newest built one.
    pub kernel: Option<PathBuf>,
    pub memory_mib: u64,
    pub vcpus: u8,
    pub cache_root: PathBuf,
    pub run_dir: PathBuf,
    /// Host TSC rate handed to TCG guests, measured once (see [`kernel_cmdline`]).
    pub tsc_khz: Option<u64>,
    prepared: Mutex<Option<Prepared>>,
}

impl Default for QemuBackend {
    fn default() -> Self {
        QemuBackend::new()
    }
}

impl QemuBackend {
    /// KVM or TCG as the host allows; caches and state in the standard places.
    pub fn new() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let host_kvm = host::kvm_flavour(&HostRoots::default(), &cpuinfo);
        let accel = Accel::detect_in(&HostRoots::default(), &cpuinfo);
        let tsc_khz = match accel {
            Accel::Kvm => None,
            Accel::Tcg => host_tsc_khz(&cpuinfo, TSC_WINDOW),
        };
        QemuBackend {
            accel,
            host_kvm,
            tsc_khz,
            kernel: None,
            memory_mib: DEFAULT_MEMORY_MIB,
            vcpus: 1,
            cache_root: PathBuf::from(rootfs::DEFAULT_CACHE_ROOT),
            run_dir: PathBuf::from(RUN_DIR),
            prepared: Mutex::new(None),
        }
    }

    fn setup_err(reason: impl Into<String>) -> BackendError {
        BackendError::setup(NAME, reason)
    }

    /// `qemu-system-x86_64 --version`'s version, e.g. `7.2.19`.
    fn version(&self) -> Result<String, String> {
        let out = Command::new(QEMU_BIN).arg("--version").output().map_err(|e| {
            format!(
                "cannot run `{QEMU_BIN} --version`: {e}; install it with `apt-get install qemu-system-x86`"
            )
        })?;
        if !out.status.success() {
            return Err(format!("`{QEMU_BIN} --version` failed: {}", out.status));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or_default();
        Ok(first.split_whitespace().nth(3).unwrap_or(first).to_string())
    }

    fn prepared(&self) -> Result<Prepared, BackendError> {
        self.prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Self::setup_err("launch before prepare"))
    }
}

impl Backend for QemuBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn set_cache_root(&mut self, root: &Path) {
        self.cache_root = root.to_path_buf();
    }

    /// eth0 is virtio-net on a tap bridged into the instance's namespace (see `vm_net`).
    fn networking(&self) -> bool {
        true
    }

    fn isolation(&self) -> Isolation {
        let kvm = match self.accel {
            // -accel kvm in the nested-KVM L1 runs on TCG's emulated SVM: still emulated.
            Accel::Kvm if self.host_kvm == KvmFlavour::NestedSvmTcg => results::KvmFlavour::NestedSvmTcg,
            Accel::Kvm => results::KvmFlavour::Hardware,
            Accel::Tcg => results::KvmFlavour::Tcg,
        };
        Isolation::vm(IsolationKind::OtherVmm, kvm)
    }

    fn check_host(&self) -> Result<(), Unavailable> {
        self.version().map_err(|reason| Unavailable { reason })?;
        linux_kernel(self.kernel.as_deref()).map_err(|reason| Unavailable { reason })?;
        rootfs::locate_binary(rootfs::GUEST_INIT_BIN).map_err(|e| Unavailable {
            reason: e.to_string(),
        })?;
        Ok(())
    }

    fn labels(&self) -> Vec<(String, String)> {
        self.labels_with(&InstanceLimits::default())
    }

    fn labels_with(&self, limits: &InstanceLimits) -> Vec<(String, String)> {
        let (memory_mib, vcpus) = guest_size(limits, self.memory_mib, self.vcpus);
        let mut labels = vec![
            ("accel".to_string(), self.accel.as_str().to_string()),
            ("vcpus".to_string(), vcpus.to_string()),
            // The guest's RAM (`--memory`, else the default): `pss_bytes` is QEMU's, which grows
            // towards it as the guest touches its memory.
            ("guest_memory_mib".to_string(), memory_mib.to_string()),
        ];
        if let Ok(version) = self.version() {
            labels.push(("qemu_version".to_string(), version));
        }
        if self.accel == Accel::Tcg {
            labels.push(("emulated".to_string(), "true".to_string()));
            let clock = if self.tsc_khz.is_some() { "tsc" } else { "jiffies" };
            labels.push(("guest_clocksource".to_string(), clock.to_string()));
            eprintln!(
                "WARNING: qemu runs with -accel tcg (no hardware KVM here): the guest is EMULATED by \
                 QEMU's binary translator, so its boot and workload figures are not comparable with KVM."
            );
        } else {
            labels.extend(host::emulation_labels(self.host_kvm));
        }
        labels
    }

    fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
        vm_process::hold_run_lock(QEMU, &self.run_dir)?;
        let kernel = linux_kernel(self.kernel.as_deref()).map_err(Self::setup_err)?;
        // The same disks as the microvm backend: both boot the very same disk image file.
        let (disks, shared) = LinuxDisks::prepare(NAME, image_dir, &self.cache_root)?;
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = Some(Prepared {
            kernel,
            image_disk: disks.image,
            scratch_template: disks.scratch_template,
        });
        Ok(shared)
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
        let prepared = self.prepared()?;
        // The network first, timed as its own phase; dropping it removes the namespace.
        let net = VmNet::attach(NAME, spec)?;
        let mut phases = Vec::new();
        if net.is_some() {
            phases.push(PhaseMark::new(
                START_TO_NETWORK_READY_MS,
                spec.request,
                Instant::now(),
            ));
        }
        // From here on, dropping `instance` removes whatever exists so far.
        let vm = VmProcess::create(QEMU, &self.run_dir, &spec.instance_name)?;
        let mut instance = QemuInstance {
            scratch: vm.dir().join("scratch.ext4"),
            vm,
            phases,
            exits_by_itself: spec.workload.exits_by_itself(),
            net: None,
        };
        rootfs::new_scratch_disk(&prepared.scratch_template, &instance.scratch)
            .map_err(BackendError::rootfs(NAME, Stage::Create))?;
        let (memory_mib, vcpus) = guest_size(&spec.limits(), self.memory_mib, self.vcpus);
        let vm = QemuVm {
            accel: self.accel,
            kernel: &prepared.kernel,
            memory_mib,
            vcpus,
            image_disk: &prepared.image_disk,
            scratch_disk: &instance.scratch,
            workload: &spec.workload,
            tsc_khz: self.tsc_khz,
            net: None,
        };
        let mut cmd = Command::new(QEMU_BIN);
        let vm = QemuVm {
            net: net.as_ref().map(|n| QemuNet {
                tap_fd: n.pass_tap(&mut cmd),
                mac: n.mac(),
                guest_words: n.guest_words(),
            }),
            ..vm
        };
        cmd.args(vm.args());
        instance
            .vm
            .start(&mut cmd, Line::Console, "stderr", |_, line| Line::Stderr(line))?;

        let ready = lines::wait_ready(
            &mut instance,
            spec.request + spec.ready_timeout,
            spec.ready_timeout,
        )?;
        instance
            .phases
            .push(PhaseMark::new(START_TO_READY_MS, spec.request, ready));
        instance.net = net;
        Ok(Box::new(instance))
    }
}

impl ReadySource for QemuInstance {
    type Message = Line;

    fn next(&mut self, deadline: Instant) -> Result<Next<Line>, BackendError> {
        Ok(self.vm.next(deadline))
    }

    fn on_message(&mut self, message: Line) -> Result<Option<Instant>, BackendError> {
        match message {
            Line::Console(at, line) => Ok(self.vm.console_line_before_ready(line)?.then_some(at)),
            Line::Stderr(line) => {
                self.vm.remember(&line);
                Ok(None)
            }
        }
    }

    fn exited_before_ready(&mut self) -> BackendError {
        self.vm.exited_before_ready()
    }

    fn ready_timeout(&self, timeout: Duration) -> BackendError {
        self.vm.ready_timeout(timeout)
    }
}

enum Line {
    /// A console line, timestamped when it became readable.
    Console(Instant, String),
    Stderr(String),
}

struct QemuInstance {
    /// Declared before `net`: QEMU (which holds the tap) stops before the namespace goes.
    vm: VmProcess<Line>,
    scratch: PathBuf,
    phases: Vec<PhaseMark>,
    exits_by_itself: bool,
    /// For a workload reached from outside: the tap bridged into the instance's namespace.
    net: Option<VmNet>,
}

impl Instance for QemuInstance {
    fn phases(&self) -> Vec<PhaseMark> {
        self.phases.clone()
    }

    fn last_output(&self) -> Option<String> {
        Some(self.vm.tail_with_pending(|line| match line {
            Line::Console(_, line) => Some(line),
            Line::Stderr(line) => Some(format!("qemu: {line}")),
        }))
    }

    fn host_pids(&self) -> Vec<i32> {
        self.vm.pid().into_iter().collect()
    }

    fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.net.as_ref().map(VmNet::guest_addr)
    }

    fn memory(&self) -> Result<MemoryProbe, BackendError> {
        let (_, pss_bytes) = self.vm.pss_bytes()?;
        Ok(MemoryProbe {
            pss_bytes,
            extra: Vec::new(),
        })
    }

    fn disk(&self) -> Result<DiskProbe, BackendError> {
        let instance_bytes =
            probe::allocated_bytes(&self.scratch).map_err(BackendError::probe(NAME, Stage::DiskProbe))?;
        Ok(DiskProbe { instance_bytes })
    }

    fn finish(&mut self, timeout: Duration) -> Result<Option<WorkloadResult>, BackendError> {
        // The guest init resets the VM when the workload ends; with -no-reboot QEMU then exits 0.
        self.vm.finish(self.exits_by_itself, timeout, |line| match line {
            Line::Console(_, line) => Seen::Console(line),
            Line::Stderr(line) => Seen::Other(line),
        })
    }

    fn destroy(mut self: Box<Self>) -> Result<(), BackendError> {
        self.vm.destroy()
    }
}

/// Kills the QEMU of every instance directory under `run_dir` (normally [`RUN_DIR`]) for which
/// `keep(name)` is false, and removes the directory. Returns one line per removed instance and one
/// per problem; instances whose harness runs are listed as in use. For `bench cleanup`.
pub fn cleanup_leftover_qemus(run_dir: &Path, keep: &dyn Fn(&str) -> bool) -> crate::cleanup::CleanupReport {
    vm_process::cleanup_leftovers(QEMU, run_dir, keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` still runs QEMU.
    fn is_qemu(pid: i32) -> bool {
        vm_process::runs(pid, QEMU_COMM)
    }

    #[test]
    fn transports_match_what_qemu_microvm_reports() {
        // QEMU 7.2 with auto-kernel-cmdline=on printed exactly these for two disks.
        assert_eq!(virtio_mmio_param(0), "virtio_mmio.device=512@0xfeb00e00:12");
        assert_eq!(virtio_mmio_param(1), "virtio_mmio.device=512@0xfeb00c00:11");
    }

    /// Differs from cvbench-vmm and Firecracker (`reboot=k`, through their i8042): QEMU's microvm
    /// has no i8042, so the guest must reset by triple fault rather than poll a missing controller.
    #[test]
    fn qemu_guest_resets_by_triple_fault_not_through_an_absent_i8042() {
        let line = kernel_cmdline(&WorkloadSpec::Idle, None);
        let words: Vec<&str> = line.split(' ').collect();
        assert!(words.contains(&"reboot=t"), "{line}");
        assert!(!words.iter().any(|w| w.starts_with("reboot=k")), "{line}");
    }

    /// `line` has each of `kernel_words` before ` -- ` and exactly `spec`'s arguments after it.
    fn assert_cmdline(line: &str, kernel_words: &[&str], spec: &WorkloadSpec) {
        let (kernel_part, init_part) = line.split_once(" -- ").unwrap();
        for word in kernel_words {
            assert!(
                kernel_part.split(' ').any(|w| w == *word),
                "{word} missing from {kernel_part}"
            );
        }
        assert_eq!(init_part, spec.to_args().join(" "));
    }

    #[test]
    fn cmdline_puts_devices_before_the_workload_arguments() {
        let spec = WorkloadSpec::Oltp {
            rows: 100,
            transactions: 5,
        };
        assert_cmdline(
            &kernel_cmdline(&spec, None),
            &[
                "console=ttyS0",
                "reboot=t",
                "panic=-1",
                "root=/dev/vda",
                "ro",
                "init=/cvbench/init",
                "virtio_mmio.device=512@0xfeb00e00:12",
                "virtio_mmio.device=512@0xfeb00c00:11",
            ],
            &spec,
        );
    }

    /// A TCG guest of 128 MiB and 2 vCPUs running `workload`, without a network.
    fn test_vm(workload: &WorkloadSpec) -> QemuVm<'_> {
        QemuVm {
            accel: Accel::Tcg,
            kernel: Path::new("/k/vmlinux"),
            memory_mib: 128,
            vcpus: 2,
            image_disk: Path::new("/cache/img.ext4"),
            scratch_disk: Path::new("/run/x/scratch.ext4"),
            workload,
            tsc_khz: None,
            net: None,
        }
    }

    /// QEMU's command line for `vm`, as strings.
    fn args_of(vm: &QemuVm) -> Vec<String> {
        vm.args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn args_select_accel_and_attach_vda_read_only() {
        let spec = WorkloadSpec::Idle;
        let vm = test_vm(&spec);
        let args = args_of(&vm);
        let after = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone());
        assert_eq!(after("-accel").as_deref(), Some("tcg"));
        assert_eq!(after("-cpu").as_deref(), Some("max"));
        assert_eq!(after("-m").as_deref(), Some("128"));
        assert_eq!(after("-smp").as_deref(), Some("2"));
        assert_eq!(after("-kernel").as_deref(), Some("/k/vmlinux"));
        assert!(args.contains(&"-no-reboot".to_string()));
        assert!(args.contains(&"id=vda,format=raw,if=none,readonly=on,file=/cache/img.ext4".to_string()));
        assert!(args.contains(&"id=vdb,format=raw,if=none,file=/run/x/scratch.ext4".to_string()));
        // vda is attached first: it gets the first transport, the one listed first on the cmdline.
        let vda = args
            .iter()
            .position(|a| a == "virtio-blk-device,drive=vda")
            .unwrap();
        let vdb = args
            .iter()
            .position(|a| a == "virtio-blk-device,drive=vdb")
            .unwrap();
        assert!(vda < vdb);
        let kvm = QemuVm {
            accel: Accel::Kvm,
            ..vm
        };
        let args = args_of(&kvm);
        assert!(
            args.windows(2).any(|w| w == ["-accel", "kvm"]) && args.windows(2).any(|w| w == ["-cpu", "host"])
        );
    }

    #[test]
    fn a_networked_guest_gets_a_tap_netdev_on_the_third_transport_and_its_address() {
        let spec = WorkloadSpec::HttpOutside {
            port: 8080,
            connections: 4,
            duration_s: 2,
            path: "/4k.bin".into(),
        };
        let vm = QemuVm {
            accel: Accel::Kvm,
            vcpus: 1,
            net: Some(QemuNet {
                tap_fd: 7,
                mac: "02:cb:c6:12:00:06".into(),
                guest_words: vec!["cvbench.ip=198.18.0.6/30".into(), "cvbench.gw=198.18.0.5".into()],
            }),
            ..test_vm(&spec)
        };
        let args = args_of(&vm);
        let after = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone());
        // fd= alone: QEMU runs no script and names no interface (the harness made and bridged it).
        assert_eq!(after("-netdev").as_deref(), Some("tap,id=net0,fd=7"));
        let net_device = args
            .iter()
            .position(|a| a == "virtio-net-device,netdev=net0,mac=02:cb:c6:12:00:06")
            .expect("the virtio-net device");
        let vdb = args
            .iter()
            .position(|a| a == "virtio-blk-device,drive=vdb")
            .unwrap();
        assert!(vdb < net_device, "the net device must take the third transport");
        assert_cmdline(
            &after("-append").unwrap(),
            &[
                "virtio_mmio.device=512@0xfeb00a00:10",
                "cvbench.ip=198.18.0.6/30",
                "cvbench.gw=198.18.0.5",
            ],
            &spec,
        );
        // Without a network: no netdev, no third transport, no address.
        let plain = QemuVm { net: None, ..vm };
        let args = args_of(&plain);
        assert!(!args
            .iter()
            .any(|a| a == "-netdev" || a.contains("cvbench.ip") || a.contains("0xfeb00a00")));
    }

    #[test]
    fn tsc_rate_goes_before_the_workload_arguments() {
        let line = kernel_cmdline(&WorkloadSpec::Idle, Some(2_445_406));
        let (kernel_part, init_part) = line.split_once(" -- ").unwrap();
        assert!(
            kernel_part.contains(" tsc_early_khz=2445406 tsc=reliable "),
            "{kernel_part}"
        );
        assert_eq!(init_part, "idle");
        assert!(!kernel_cmdline(&WorkloadSpec::Idle, None).contains("tsc"));
    }

    #[test]
    fn host_tsc_is_measured_only_when_invariant() {
        assert_eq!(
            host_tsc_khz("flags\t: fpu tsc sse\n", Duration::from_millis(1)),
            None
        );
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap();
        let Some(khz) = host_tsc_khz(&cpuinfo, Duration::from_millis(20)) else {
            testkit::skip(
                testkit::Requirement::HostFeature("invariant-tsc"),
                "this host's TSC is not invariant",
            );
            return;
        };
        // Any x86-64 CPU of the last two decades: between 500 MHz and 10 GHz.
        assert!((500_000..10_000_000).contains(&khz), "{khz} kHz");
    }

    #[test]
    fn kvm_on_the_nested_l1_is_recorded_as_nested_and_emulated() {
        let backend = QemuBackend {
            accel: Accel::Kvm,
            host_kvm: KvmFlavour::NestedSvmTcg,
            ..QemuBackend::new()
        };
        let isolation = backend.isolation();
        assert_eq!(isolation.kvm, results::KvmFlavour::NestedSvmTcg);
        assert!(isolation.is_emulated());
        let labels = backend.labels();
        for label in [("emulated", "true"), ("nested", "svm-tcg"), ("accel", "kvm")] {
            assert!(
                labels.iter().any(|(k, v)| (k.as_str(), v.as_str()) == label),
                "{label:?} missing from {labels:?}"
            );
        }
        let hardware = QemuBackend {
            accel: Accel::Kvm,
            host_kvm: KvmFlavour::Hardware,
            ..QemuBackend::new()
        };
        assert_eq!(hardware.isolation().kvm, results::KvmFlavour::Hardware);
        assert!(!hardware.labels().iter().any(|(k, _)| k == "emulated"));
    }

    #[test]
    fn the_vcpus_label_follows_the_cpu_quota() {
        let backend = QemuBackend::new();
        let vcpus = |cpus| {
            let limits = InstanceLimits {
                cpu_limit: cpus,
                ..InstanceLimits::default()
            };
            let labels = backend.labels_with(&limits);
            labels.into_iter().find(|(k, _)| k == "vcpus").map(|(_, v)| v)
        };
        assert_eq!(vcpus(None).as_deref(), Some("1"));
        assert_eq!(vcpus(Some(3.0)).as_deref(), Some("3"));
        assert_eq!(vcpus(Some(1.5)).as_deref(), Some("2"));
    }

    #[test]
    fn the_guest_memory_label_follows_the_memory_limit() {
        let backend = QemuBackend {
            memory_mib: 128,
            ..QemuBackend::new()
        };
        let memory = |bytes| {
            let limits = InstanceLimits {
                memory_limit_bytes: bytes,
                ..InstanceLimits::default()
            };
            let labels = backend.labels_with(&limits);
            labels
                .into_iter()
                .find(|(k, _)| k == "guest_memory_mib")
                .map(|(_, v)| v)
        };
        assert_eq!(memory(None).as_deref(), Some("128"));
        assert_eq!(memory(Some(512 << 20)).as_deref(), Some("512"));
        // Rounded up to whole MiB, as `-m` gets it.
        assert_eq!(memory(Some((256 << 20) + 1)).as_deref(), Some("257"));
    }

    #[test]
    fn accel_is_kvm_only_on_hardware_kvm() {
        let dir = tempfile::tempdir().unwrap();
        let roots = HostRoots::under(dir.path());
        let (dev, pvm) = (roots.dev.join("kvm"), roots.sys.join("module/kvm_pvm"));
        fs::create_dir_all(&roots.dev).unwrap();
        let vmx = "processor\t: 0\nflags\t\t: fpu vmx sse\n";
        assert_eq!(Accel::detect_in(&roots, vmx), Accel::Tcg, "no /dev/kvm");
        fs::write(&dev, "").unwrap();
        assert_eq!(Accel::detect_in(&roots, vmx), Accel::Kvm);
        assert_eq!(
            Accel::detect_in(&roots, "flags\t\t: fpu sse\n"),
            Accel::Tcg,
            "no vmx/svm"
        );
        // The L1 of scripts/nested-kvm.sh: kvm_amd on TCG's SVM is hardware-style KVM.
        let l1 = "processor\t: 0\nflags\t\t: fpu svm hypervisor\n";
        fs::create_dir_all(&roots.proc).unwrap();
        fs::write(roots.proc.join("cmdline"), host::NESTED_TCG_MARKER).unwrap();
        assert_eq!(Accel::detect_in(&roots, l1), Accel::Kvm, "nested SVM on TCG");
        fs::create_dir_all(&pvm).unwrap();
        assert_eq!(Accel::detect_in(&roots, vmx), Accel::Tcg, "PVM");
    }

    #[test]
    fn cleanup_removes_leftover_dirs_but_never_kills_a_non_qemu_pid() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("cvbench-qemu-idle-1-0");
        let kept = dir.path().join("cvbench-qemu-idle-2-0");
        fs::create_dir_all(&stale).unwrap();
        fs::create_dir_all(&kept).unwrap();
        // Our own pid: not QEMU, so it must survive the cleanup.
        fs::write(stale.join("qemu.pid"), format!("{}\n", std::process::id())).unwrap();
        let report = cleanup_leftover_qemus(dir.path(), &|name| name.ends_with("-2-0"));
        assert_eq!(report.removed, vec!["qemu VM cvbench-qemu-idle-1-0".to_string()]);
        assert_eq!(report.in_use, vec!["qemu VM cvbench-qemu-idle-2-0".to_string()]);
        assert!(report.problems.is_empty(), "{report:?}");
        assert!(!stale.exists() && kept.exists());
    }

    /// Launching through the trait, end to end, under whatever acceleration this host has (TCG here).
    mod launch {
        use super::*;
        use crate::backends::vm_net;

        fn backend_or_skip() -> Option<(QemuBackend, tempfile::TempDir, rootfs::Image)> {
            let backend = QemuBackend::new();
            if let Err(e) = backend.version() {
                testkit::skip(testkit::Requirement::Package("qemu-system-x86"), e);
                return None;
            }
            if let Err(e) = backend.check_host() {
                // QEMU is there: what is left to lack is the built kernel (or guest init).
                testkit::skip(testkit::Requirement::GuestKernel, e);
                return None;
            }
            let workload_bin = match rootfs::locate_binary(rootfs::WORKLOAD_BIN) {
                Ok(b) => b,
                Err(e) => {
                    testkit::skip(testkit::Requirement::Binaries, e);
                    return None;
                }
            };
            let root = tempfile::Builder::new()
                .prefix("cvbench-qemu-backend-")
                .tempdir()
                .unwrap();
            let image = rootfs::build_default_image(root.path(), &workload_bin).unwrap();
            let backend = QemuBackend {
                cache_root: root.path().join("cache"),
                run_dir: root.path().join("run"),
                ..QemuBackend::new()
            };
            Some((backend, root, image))
        }

        fn spec(name: &str, workload: WorkloadSpec) -> LaunchSpec {
            LaunchSpec {
                request: Instant::now(),
                image_dir: PathBuf::new(),
                workload,
                instance_name: name.to_string(),
                memory_limit_bytes: None,
                cpu_limit: None,
                pids_limit: None,
                ready_timeout: Duration::from_secs(240),
                confinement: Default::default(),
                network: None,
            }
        }

        #[test]
        fn oltp_reaches_ready_and_result_and_leaves_nothing() {
            let Some((backend, root, image)) = backend_or_skip() else {
                return;
            };
            let shared = backend.prepare(&image.dir).unwrap();
            assert!(shared.bytes > 0);
            let mut instance = backend
                .launch(&spec(
                    "cvbench-qemu-oltp-test-0",
                    WorkloadSpec::Oltp {
                        rows: 200,
                        transactions: 20,
                    },
                ))
                .unwrap();
            let phases = instance.phases();
            assert_eq!(
                phases.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                [START_TO_READY_MS]
            );
            let pid = instance.host_pids()[0];
            assert!(is_qemu(pid));
            assert!(instance.memory().unwrap().pss_bytes > 0);
            assert!(instance.disk().unwrap().instance_bytes > 0);
            let result = instance
                .finish(Duration::from_secs(240))
                .unwrap()
                .expect("a RESULT");
            assert_eq!(result.workload, "oltp");
            instance.destroy().unwrap();
            assert!(!Path::new(&format!("/proc/{pid}")).exists() || !is_qemu(pid));
            assert_eq!(fs::read_dir(root.path().join("run")).unwrap().count(), 0);
        }

        /// The network path under whatever acceleration this host has: the guest serves on its
        /// eth0 (virtio-net on the tap bridged into its namespace), wrk reaches it from the client
        /// namespace, and the namespace goes with the instance.
        #[test]
        fn http_outside_is_served_to_the_client_namespace() {
            if vm_net::testing::skip_without_http_outside() {
                return;
            }
            let Some((backend, root, image)) = backend_or_skip() else {
                return;
            };
            backend.prepare(&image.dir).unwrap();
            let m = vm_net::testing::serve_http_outside(
                &backend,
                &image.dir,
                &root.path().join("run-root"),
                Duration::from_secs(240),
            );
            use crate::metrics as mt;
            assert!(m[mt::OUTSIDE_BYTES_PER_S] > 1024.0, "{m:?}");
            assert!(
                m[mt::START_TO_NETWORK_READY_MS] <= m[mt::START_TO_READY_MS],
                "{m:?}"
            );
            assert_eq!(fs::read_dir(root.path().join("run")).unwrap().count(), 0);
        }

        #[test]
        fn idle_is_stopped_by_finish() {
            let Some((backend, root, image)) = backend_or_skip() else {
                return;
            };
            backend.prepare(&image.dir).unwrap();
            let mut instance = backend
                .launch(&spec("cvbench-qemu-idle-test-0", WorkloadSpec::Idle))
                .unwrap();
            let pid = instance.host_pids()[0];
            assert_eq!(instance.finish(Duration::from_secs(30)).unwrap(), None);
            assert!(!is_qemu(pid), "QEMU still running after finish");
            drop(instance);
            assert_eq!(fs::read_dir(root.path().join("run")).unwrap().count(), 0);
        }
    }
}
