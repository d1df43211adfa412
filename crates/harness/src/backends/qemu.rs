//! QEMU's `microvm` machine as a [`crate::Backend`]: the peer that users know, booting exactly what
//! the cvbench microVM boots — the same guest kernel (`vmlinux`, PVH entry), the same read-only ext4
//! image on `vda`, a per-instance scratch disk copied from the same template on `vdb`, the same guest
//! init and workload arguments — so the two VMMs can be compared.
//!
//! Acceleration: `-accel kvm -cpu host` where `/dev/kvm` is hardware KVM; otherwise (no KVM, or PVM,
//! where a stock kernel's ring-0 code runs far too slowly) `-accel tcg -cpu max`, pure emulation,
//! labelled `emulated = true`.
//!
//! Phases: only `start_to_ready_ms` (the READY line became readable on QEMU's stdout, which is the
//! guest's ttyS0). QEMU has no boot-timer device, so "guest init reached" is not observable and is
//! not reported. Memory: the QEMU process's PSS. Disk: the scratch disk's allocated bytes.
//!
//! QEMU's own `auto-kernel-cmdline` appends the virtio-mmio transports at the end of the command
//! line, i.e. after ` -- `, where the kernel passes them to init instead of parsing them; so it is
//! turned off and [`kernel_cmdline`] places them before ` -- ` itself.
//!
//! State that must survive a crashed harness: `/run/cvbench/qemu/<instance>/` holds `qemu.pid` and
//! the scratch disk; [`cleanup_leftover_qemus`] kills and removes what a dead harness left.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use microvm::kernel::{locate_guest_kernel, DEFAULT_KERNEL_CACHE, GUEST_KERNEL_ENV};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use workload::{parse_line, ProtocolLine, WorkloadResult, WorkloadSpec};

use super::microvm::{linux_cmdline_extra, SCRATCH_DISK_MIB};
use crate::backend::{
    Backend, BackendError, DiskProbe, Instance, LaunchSpec, MemoryProbe, PhaseMark, SharedImage, Unavailable,
};
use crate::probe;

const NAME: &str = "qemu";
/// The QEMU binary, looked up in `PATH`.
pub const QEMU_BIN: &str = "qemu-system-x86_64";
/// Guest RAM when the launch spec sets no memory limit (the cvbench microVM's default).
pub const DEFAULT_MEMORY_MIB: u64 = super::microvm::DEFAULT_MEMORY_MIB;
/// Where instance state lives.
pub const RUN_DIR: &str = "/run/cvbench/qemu";
/// How long `finish` and teardown wait after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
const KVM_DEVICE: &str = "/dev/kvm";
const PVM_MODULE: &str = "/sys/module/kvm_pvm";
/// `/proc/PID/comm` of QEMU (the kernel truncates names to 15 bytes).
const QEMU_COMM: &str = "qemu-system-x86";
/// How long the host TSC is measured against the monotonic clock (error well under 0.1 %).
const TSC_WINDOW: Duration = Duration::from_millis(20);

/// How QEMU runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware KVM (VT-x/AMD-V).
    Kvm,
    /// TCG: QEMU's binary translator. Emulation; figures are not comparable with KVM ones.
    Tcg,
}

impl Accel {
    /// `kvm` when `/dev/kvm` is hardware KVM, else `tcg`.
    pub fn detect() -> Accel {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Accel::detect_in(Path::new(KVM_DEVICE), Path::new(PVM_MODULE), &cpuinfo)
    }

    /// The decision on explicit inputs: KVM only with the device present, no PVM module loaded, and
    /// vmx or svm among the CPU flags.
    pub fn detect_in(kvm_device: &Path, pvm_module: &Path, cpuinfo: &str) -> Accel {
        let virt = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        if kvm_device.exists() && !pvm_module.exists() && virt {
            Accel::Kvm
        } else {
            Accel::Tcg
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
pub fn kernel_cmdline(workload: &WorkloadSpec, tsc_khz: Option<u64>) -> String {
    let tsc = tsc_khz
        .map(|khz| format!("tsc_early_khz={khz} tsc=reliable "))
        .unwrap_or_default();
    format!(
        "console=ttyS0 reboot=k panic=-1 {tsc}{} {} {}",
        virtio_mmio_param(0),
        virtio_mmio_param(1),
        linux_cmdline_extra(workload)
    )
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
        args.push(kernel_cmdline(self.workload, self.tsc_khz).into());
        for (drive, device) in [
            (drive_vda, "virtio-blk-device,drive=vda"),
            (drive_vdb, "virtio-blk-device,drive=vdb"),
        ] {
            args.extend(["-drive".into(), drive, "-device".into(), device.into()]);
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
        let accel = Accel::detect();
        let tsc_khz = match accel {
            Accel::Kvm => None,
            Accel::Tcg => host_tsc_khz(
                &fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
                TSC_WINDOW,
            ),
        };
        QemuBackend {
            accel,
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
        BackendError::Setup {
            backend: NAME.into(),
            reason: reason.into(),
        }
    }

    fn io_err(context: String) -> impl FnOnce(std::io::Error) -> BackendError {
        move |source| BackendError::Io {
            backend: NAME.into(),
            context,
            source,
        }
    }

    fn kernel(&self) -> Result<PathBuf, String> {
        if let Some(kernel) = &self.kernel {
            return Ok(kernel.clone());
        }
        let env = std::env::var_os(GUEST_KERNEL_ENV);
        locate_guest_kernel(env.as_deref(), Path::new(DEFAULT_KERNEL_CACHE)).ok_or_else(|| {
            format!(
                "no guest kernel built: run guest/kernel/build.sh (caches vmlinux under \
                 {DEFAULT_KERNEL_CACHE}/<hash>/) or set {GUEST_KERNEL_ENV}"
            )
        })
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

    fn check_host(&self) -> Result<(), Unavailable> {
        self.version().map_err(|reason| Unavailable { reason })?;
        self.kernel().map_err(|reason| Unavailable { reason })?;
        rootfs::locate_binary(rootfs::GUEST_INIT_BIN).map_err(|e| Unavailable {
            reason: e.to_string(),
        })?;
        Ok(())
    }

    fn labels(&self) -> Vec<(String, String)> {
        let mut labels = vec![
            ("accel".to_string(), self.accel.as_str().to_string()),
            ("vcpus".to_string(), self.vcpus.to_string()),
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
        }
        labels
    }

    fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
        let kernel = self.kernel().map_err(Self::setup_err)?;
        let usage = rootfs::disk_usage(image_dir)
            .map_err(Self::io_err(format!("measuring {}", image_dir.display())))?;
        let digest = image_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Self::setup_err(format!("image directory {} has no name", image_dir.display())))?;
        let image = rootfs::Image {
            dir: image_dir.to_path_buf(),
            digest,
            allocated_bytes: usage.allocated_bytes,
            apparent_bytes: usage.apparent_bytes,
            files: usage.files,
        };
        let init =
            rootfs::locate_binary(rootfs::GUEST_INIT_BIN).map_err(|e| Self::setup_err(e.to_string()))?;
        // The same cache keys as the microvm backend: both boot the very same disk image file.
        let disk = rootfs::ext4_disk_image(&image, &[(init, "/cvbench/init".to_string())], &self.cache_root)
            .map_err(|e| Self::setup_err(format!("building the guest disk image: {e}")))?;
        let scratch_template = rootfs::scratch_disk_template(SCRATCH_DISK_MIB, &self.cache_root)
            .map_err(|e| Self::setup_err(format!("building the scratch disk template: {e}")))?;
        let shared = SharedImage {
            bytes: disk.allocated_bytes,
            description: format!("ext4 disk image {} (read-only vda)", disk.path.display()),
        };
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = Some(Prepared {
            kernel,
            image_disk: disk.path,
            scratch_template,
        });
        Ok(shared)
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
        let prepared = self.prepared()?;
        let dir = self.run_dir.join(&spec.instance_name);
        crate::rundir::create_dir(&dir).map_err(Self::io_err(format!("creating {}", dir.display())))?;
        // From here on, dropping `instance` removes whatever exists so far.
        let mut instance = QemuInstance {
            name: spec.instance_name.clone(),
            dir: dir.clone(),
            scratch: dir.join("scratch.ext4"),
            child: None,
            lines: None,
            phases: Vec::new(),
            tail: Vec::new(),
            exits_by_itself: spec.workload.exits_by_itself(),
            torn_down: false,
        };
        rootfs::new_scratch_disk(&prepared.scratch_template, &instance.scratch)
            .map_err(|e| Self::setup_err(format!("creating the scratch disk: {e}")))?;
        let memory_mib = spec
            .memory_limit_bytes
            .map_or(self.memory_mib, |b| b.div_ceil(1 << 20));
        let vcpus = spec.cpu_limit.map_or(self.vcpus, |c| {
            (1..=u8::MAX).find(|&n| f64::from(n) >= c).unwrap_or(u8::MAX)
        });
        let vm = QemuVm {
            accel: self.accel,
            kernel: &prepared.kernel,
            memory_mib,
            vcpus,
            image_disk: &prepared.image_disk,
            scratch_disk: &instance.scratch,
            workload: &spec.workload,
            tsc_khz: self.tsc_khz,
        };
        let mut child = Command::new(QEMU_BIN)
            .args(vm.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Self::io_err(format!("starting {QEMU_BIN}")))?;
        let pid = child.id();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        instance.child = Some(child);
        let pid_file = dir.join("qemu.pid");
        fs::write(&pid_file, format!("{pid}\n"))
            .map_err(Self::io_err(format!("writing {}", pid_file.display())))?;
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            return Err(Self::setup_err("QEMU's stdout/stderr were not captured"));
        };
        let (tx, rx) = mpsc::channel();
        spawn_reader(&spec.instance_name, "console", stdout, tx.clone(), Line::Console)?;
        spawn_reader(&spec.instance_name, "stderr", stderr, tx, |_, line| {
            Line::Stderr(line)
        })?;
        instance.lines = Some(rx);

        let deadline = spec.request + spec.ready_timeout;
        loop {
            match instance.next_line(deadline) {
                Next::Line(Line::Console(at, line)) => {
                    match parse_line(&line) {
                        Ok(Some(ProtocolLine::Ready { .. })) => {
                            instance
                                .phases
                                .push(PhaseMark::new("start_to_ready_ms", spec.request, at));
                            return Ok(Box::new(instance));
                        }
                        Ok(Some(ProtocolLine::Error(text))) => {
                            return Err(BackendError::WorkloadFailed {
                                backend: NAME.into(),
                                reason: text,
                            })
                        }
                        _ => {}
                    }
                    instance.remember(line);
                }
                Next::Line(Line::Stderr(line)) => instance.remember(line),
                Next::Eof => {
                    let status = instance.wait_child(Duration::from_secs(5));
                    return Err(BackendError::ExitedBeforeReady {
                        backend: NAME.into(),
                        status,
                        output: instance.tail(),
                    });
                }
                Next::Timeout => {
                    return Err(BackendError::ReadyTimeout {
                        backend: NAME.into(),
                        timeout: spec.ready_timeout,
                        output: instance.tail(),
                    })
                }
            }
        }
    }
}

enum Line {
    /// A console line, timestamped when it became readable.
    Console(Instant, String),
    Stderr(String),
}

enum Next {
    Line(Line),
    Timeout,
    Eof,
}

fn spawn_reader(
    instance: &str,
    what: &str,
    pipe: impl Read + Send + 'static,
    tx: Sender<Line>,
    wrap: impl Fn(Instant, String) -> Line + Send + 'static,
) -> Result<(), BackendError> {
    std::thread::Builder::new()
        .name(format!("{instance}-{what}"))
        .spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(wrap(Instant::now(), line)).is_err() {
                    break;
                }
            }
        })
        .map(drop)
        .map_err(QemuBackend::io_err(format!("spawning the {what} reader")))
}

struct QemuInstance {
    name: String,
    dir: PathBuf,
    scratch: PathBuf,
    child: Option<Child>,
    lines: Option<Receiver<Line>>,
    phases: Vec<PhaseMark>,
    /// The last console/stderr lines, for error messages.
    tail: Vec<String>,
    exits_by_itself: bool,
    torn_down: bool,
}

impl QemuInstance {
    fn next_line(&self, deadline: Instant) -> Next {
        let Some(rx) = &self.lines else { return Next::Eof };
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => Next::Line(line),
            Err(RecvTimeoutError::Timeout) => Next::Timeout,
            Err(RecvTimeoutError::Disconnected) => Next::Eof,
        }
    }

    fn remember(&mut self, line: String) {
        if self.tail.len() == 8 {
            self.tail.remove(0);
        }
        self.tail.push(line);
    }

    fn tail(&self) -> String {
        self.tail.join(" | ")
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// The exit status as text after at most `timeout`, or `still running`.
    fn wait_child(&mut self, timeout: Duration) -> String {
        let Some(child) = self.child.as_mut() else {
            return "not started".into();
        };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Ok(None) => return "still running".into(),
                Err(e) => return format!("unknown ({e})"),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// SIGTERM (QEMU then ends the VM), SIGKILL after the grace period; the exit status as text.
    fn stop_qemu(&mut self, grace: Duration) -> String {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
            return status.to_string();
        }
        self.signal(Signal::SIGTERM);
        let status = self.wait_child(grace);
        if status != "still running" {
            return status;
        }
        self.signal(Signal::SIGKILL);
        self.wait_child(Duration::from_secs(5))
    }

    fn teardown(&mut self) -> Result<(), String> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        if self.child.is_some() && self.stop_qemu(STOP_GRACE) == "still running" {
            problems.push(format!("QEMU pid {:?} survived SIGKILL", self.pid()));
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("removing {}: {e}", self.dir.display()));
            }
        }
        if let Some(backend_dir) = self.dir.parent() {
            crate::rundir::prune(backend_dir);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Instance for QemuInstance {
    fn phases(&self) -> Vec<PhaseMark> {
        self.phases.clone()
    }

    fn host_pids(&self) -> Vec<i32> {
        self.pid().into_iter().collect()
    }

    fn memory(&self) -> Result<MemoryProbe, BackendError> {
        let pid = self
            .pid()
            .ok_or_else(|| QemuBackend::setup_err("no QEMU process"))?;
        let pss_bytes =
            probe::pss_bytes(&[pid]).map_err(|e| QemuBackend::setup_err(format!("memory probe: {e}")))?;
        Ok(MemoryProbe {
            pss_bytes,
            extra: Vec::new(),
        })
    }

    fn disk(&self) -> Result<DiskProbe, BackendError> {
        let instance_bytes = probe::allocated_bytes(&self.scratch)
            .map_err(|e| QemuBackend::setup_err(format!("disk probe: {e}")))?;
        Ok(DiskProbe { instance_bytes })
    }

    fn finish(&mut self, timeout: Duration) -> Result<Option<WorkloadResult>, BackendError> {
        let failed = |reason: String| BackendError::WorkloadFailed {
            backend: NAME.into(),
            reason,
        };
        if !self.exits_by_itself {
            if self.stop_qemu(STOP_GRACE.min(timeout)) == "still running" {
                return Err(failed(format!(
                    "QEMU did not stop within {timeout:?} after SIGKILL"
                )));
            }
            return Ok(None);
        }
        let deadline = Instant::now() + timeout;
        let mut result = None;
        loop {
            match self.next_line(deadline) {
                Next::Line(Line::Console(_, line)) => match parse_line(&line) {
                    Ok(Some(ProtocolLine::Result(r))) => result = Some(r),
                    Ok(Some(ProtocolLine::Error(text))) => return Err(failed(text)),
                    Ok(_) => self.remember(line),
                    Err(e) => return Err(failed(e.to_string())),
                },
                Next::Line(Line::Stderr(line)) => self.remember(line),
                Next::Eof => break,
                Next::Timeout => {
                    return Err(failed(format!(
                        "the VM did not end within {timeout:?} after READY"
                    )))
                }
            }
        }
        // The guest init resets the VM when the workload ends; with -no-reboot QEMU then exits 0.
        let status = self.wait_child(deadline.saturating_duration_since(Instant::now()));
        if status != "exit status: 0" {
            return Err(failed(format!("{QEMU_BIN} ended with {status}: {}", self.tail())));
        }
        result
            .map(Some)
            .ok_or_else(|| failed(format!("the VM ended without a RESULT line: {}", self.tail())))
    }

    fn destroy(mut self: Box<Self>) -> Result<(), BackendError> {
        self.teardown().map_err(|reason| BackendError::Teardown {
            backend: NAME.into(),
            reason,
        })
    }
}

impl Drop for QemuInstance {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("cvbench: qemu teardown of {}: {e}", self.name);
        }
    }
}

/// Kills the QEMU of every instance directory under `run_dir` (normally [`RUN_DIR`]) for which
/// `keep(name)` is false, and removes the directory. Returns one line per removed instance and one
/// per problem. For `bench cleanup`.
pub fn cleanup_leftover_qemus(run_dir: &Path, keep: &dyn Fn(&str) -> bool) -> (Vec<String>, Vec<String>) {
    let (mut removed, mut problems) = (Vec::new(), Vec::new());
    let Ok(entries) = fs::read_dir(run_dir) else {
        return (removed, problems);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep(&name) {
            continue;
        }
        let dir = entry.path();
        let pid = fs::read_to_string(dir.join("qemu.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|&p| p > 0 && is_qemu(p)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(format!("qemu VM {name}")),
            Err(e) => problems.push(format!("removing {}: {e}", dir.display())),
        }
    }
    (removed, problems)
}

/// Whether `pid` still runs QEMU (a recycled pid must not be killed).
fn is_qemu(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == QEMU_COMM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_match_what_qemu_microvm_reports() {
        // QEMU 7.2 with auto-kernel-cmdline=on printed exactly these for two disks.
        assert_eq!(virtio_mmio_param(0), "virtio_mmio.device=512@0xfeb00e00:12");
        assert_eq!(virtio_mmio_param(1), "virtio_mmio.device=512@0xfeb00c00:11");
    }

    #[test]
    fn cmdline_puts_devices_before_the_workload_arguments() {
        let spec = WorkloadSpec::Oltp {
            rows: 100,
            transactions: 5,
        };
        let line = kernel_cmdline(&spec, None);
        let (kernel_part, init_part) = line.split_once(" -- ").unwrap();
        for word in [
            "console=ttyS0",
            "reboot=k",
            "panic=-1",
            "root=/dev/vda",
            "ro",
            "init=/cvbench/init",
            "virtio_mmio.device=512@0xfeb00e00:12",
            "virtio_mmio.device=512@0xfeb00c00:11",
        ] {
            assert!(
                kernel_part.split(' ').any(|w| w == word),
                "{word} missing from {kernel_part}"
            );
        }
        assert_eq!(init_part, spec.to_args().join(" "));
    }

    #[test]
    fn args_select_accel_and_attach_vda_read_only() {
        let spec = WorkloadSpec::Idle;
        let vm = QemuVm {
            accel: Accel::Tcg,
            kernel: Path::new("/k/vmlinux"),
            memory_mib: 128,
            vcpus: 2,
            image_disk: Path::new("/cache/img.ext4"),
            scratch_disk: Path::new("/run/x/scratch.ext4"),
            workload: &spec,
            tsc_khz: None,
        };
        let args: Vec<String> = vm
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
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
        let args: Vec<String> = kvm
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.windows(2).any(|w| w == ["-accel", "kvm"]) && args.windows(2).any(|w| w == ["-cpu", "host"])
        );
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
            println!("skipped: this host's TSC is not invariant");
            return;
        };
        // Any x86-64 CPU of the last two decades: between 500 MHz and 10 GHz.
        assert!((500_000..10_000_000).contains(&khz), "{khz} kHz");
    }

    #[test]
    fn accel_is_kvm_only_on_hardware_kvm() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("kvm");
        let pvm = dir.path().join("kvm_pvm");
        let vmx = "processor\t: 0\nflags\t\t: fpu vmx sse\n";
        assert_eq!(Accel::detect_in(&dev, &pvm, vmx), Accel::Tcg, "no /dev/kvm");
        fs::write(&dev, "").unwrap();
        assert_eq!(Accel::detect_in(&dev, &pvm, vmx), Accel::Kvm);
        assert_eq!(
            Accel::detect_in(&dev, &pvm, "flags\t\t: fpu sse\n"),
            Accel::Tcg,
            "no vmx/svm"
        );
        fs::create_dir(&pvm).unwrap();
        assert_eq!(Accel::detect_in(&dev, &pvm, vmx), Accel::Tcg, "PVM");
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
        let (removed, problems) = cleanup_leftover_qemus(dir.path(), &|name| name.ends_with("-2-0"));
        assert_eq!(removed, vec!["qemu VM cvbench-qemu-idle-1-0".to_string()]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!stale.exists() && kept.exists());
    }

    /// Launching through the trait, end to end, under whatever acceleration this host has (TCG here).
    mod launch {
        use super::*;

        fn backend_or_skip() -> Option<(QemuBackend, tempfile::TempDir, rootfs::Image)> {
            let backend = QemuBackend::new();
            if let Err(e) = backend.check_host() {
                println!("skipped: {e}");
                return None;
            }
            let workload_bin = match rootfs::locate_binary(rootfs::WORKLOAD_BIN) {
                Ok(b) => b,
                Err(e) => {
                    println!("skipped: {e}");
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
                ["start_to_ready_ms"]
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
