//! The cvbench microVM as a [`crate::Backend`]: each instance is one `cvbench-vmm` process running one
//! KVM guest. A separate process keeps the VMM's memory figure honest (its PSS is the host's cost).
//!
//! Two guests: `linux` boots the cvbench guest kernel with the shared image read-only on `vda` and a
//! per-instance scratch disk on `vdb` (guest init builds its overlay there, then runs the workload);
//! `probe` boots the project's tiny probe payload (see `microvm::probe`), which only reaches READY,
//! so the VMM's own setup time and memory overhead are measured without a kernel.
//!
//! Phases come from the VMM's event lines (raw `CLOCK_MONOTONIC` nanoseconds, the clock behind
//! `Instant` on Linux): `start_to_vm_created_ms`, `start_to_first_vcpu_entry_ms`,
//! `start_to_guest_init_ms` (the boot-timer port write), and `start_to_ready_ms` (the READY line
//! became readable on the console pipe).
//!
//! For a workload reached from outside, the guest's eth0 is a virtio-net device on a tap bridged
//! into the instance's network namespace (see `vm_net`), and `start_to_network_ready_ms` comes first.
//!
//! State that must survive a crashed harness: `/run/cvbench/vms/<instance>/` holds the VMM's pid
//! file and the instance's disk; [`cleanup_leftover_vms`] kills and removes what a dead harness left.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use microvm::kernel::{locate_guest_kernel, DEFAULT_KERNEL_CACHE, GUEST_KERNEL_ENV};
use microvm::{EventKind, VmEvent};
use workload::{WorkloadResult, WorkloadSpec};

use super::lines::{self, ReadySource};
use super::vm_net::VmNet;
use super::vm_process::{self, Next, Seen, VmProcess, VmmKind};
use crate::backend::{
    Backend, BackendError, DiskProbe, Instance, InstanceLimits, LaunchSpec, MemoryProbe, PhaseMark,
    SharedImage, Stage, Unavailable,
};
use crate::host::{self, KvmFlavour as HostKvm};
use crate::metrics::{
    GUEST_RAM_RESIDENT_BYTES, START_TO_FIRST_VCPU_ENTRY_MS, START_TO_GUEST_INIT_MS,
    START_TO_NETWORK_READY_MS, START_TO_READY_MS, START_TO_VM_CREATED_MS, VMM_OVERHEAD_BYTES,
};
use crate::probe;
use crate::results::{Isolation, IsolationKind};

const NAME: &str = "microvm";
/// The same VMM booting the project's probe payload instead of Linux: the VMM's own cost.
pub const PROBE_NAME: &str = "microvm-probe";
/// Set to `1` to run the Linux guest on a PVM host anyway (its figures are labelled emulated).
pub const ALLOW_EMULATED_ENV: &str = "CVBENCH_ALLOW_EMULATED";
/// The VMM binary, found next to the harness like the other cvbench binaries.
pub const VMM_BIN: &str = "cvbench-vmm";
/// Selects the guest: `linux` (default) or `probe`.
pub const GUEST_ENV: &str = "CVBENCH_GUEST";
/// Guest RAM when the launch spec sets no memory limit.
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// Guest RAM of the probe guest (it needs less than 2 MiB).
pub const PROBE_MEMORY_MIB: u64 = 16;
/// Size of each instance's scratch disk (Linux guest).
pub const SCRATCH_DISK_MIB: u32 = 256;
/// Size of the probe's test disk.
const PROBE_DISK_SECTORS: usize = 2048;
/// After READY, how long to wait for event lines still in flight on the other pipe.
const EVENT_SETTLE: Duration = Duration::from_millis(500);
/// Where instance state lives.
pub const RUN_DIR: &str = "/run/cvbench/vms";
const KVM_DEVICE: &str = "/dev/kvm";
const PVM_MODULE: &str = "/sys/module/kvm_pvm";
/// The VMM as the shared VM instance code names it.
const VMM: VmmKind = VmmKind {
    backend: NAME,
    program: VMM_BIN,
    process: "VMM",
    subject: "the VMM",
    pid_file: "vmm.pid",
    comm: VMM_BIN,
    leftover: "microVM",
};

/// Which guest the VM boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    Linux,
    Probe,
}

impl GuestKind {
    pub fn parse(name: &str) -> Option<GuestKind> {
        match name {
            "linux" => Some(GuestKind::Linux),
            "probe" => Some(GuestKind::Probe),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Linux => "linux",
            GuestKind::Probe => "probe",
        }
    }
}

/// What `prepare` built, reused by every launch.
#[derive(Debug, Clone)]
struct Prepared {
    /// The VMM binary, located (and checked) once rather than on every launch's timed path.
    vmm: PathBuf,
    /// Whether KVM is PVM (the Linux guest then gets the PVM kernel words); checked once as well.
    pvm: bool,
    guest: GuestFiles,
}

/// The guest's files.
#[derive(Debug, Clone)]
struct GuestFiles {
    kernel: PathBuf,
    /// Linux: the shared ext4 image (read-only `vda`). Probe: the template of its test disk.
    shared_disk: PathBuf,
    /// Linux: the pre-formatted empty scratch disk copied per instance (`vdb`).
    scratch_template: Option<PathBuf>,
}

pub struct MicrovmBackend {
    pub guest: GuestKind,
    /// Guest kernel; `None` = the newest built one (Linux) or the embedded probe payload.
    pub kernel: Option<PathBuf>,
    /// Guest RAM when the launch spec sets none.
    pub memory_mib: u64,
    pub vcpus: u8,
    pub cache_root: PathBuf,
    pub run_dir: PathBuf,
    /// Command line of the probe guest (`probe.halt`: it halts after READY until stopped; tests use
    /// `probe.fault` for a guest that dies before READY).
    pub probe_cmdline: String,
    prepared: Mutex<Option<Prepared>>,
}

impl MicrovmBackend {
    pub fn new(guest: GuestKind) -> Self {
        let memory_mib = match guest {
            GuestKind::Linux => DEFAULT_MEMORY_MIB,
            GuestKind::Probe => PROBE_MEMORY_MIB,
        };
        MicrovmBackend {
            guest,
            kernel: None,
            memory_mib,
            vcpus: 1,
            cache_root: PathBuf::from(rootfs::DEFAULT_CACHE_ROOT),
            run_dir: PathBuf::from(RUN_DIR),
            probe_cmdline: microvm::probe::HALT_FLAG.to_string(),
            prepared: Mutex::new(None),
        }
    }

    /// The backend the command line selects: guest from `CVBENCH_GUEST` (`linux` unless `probe`).
    pub fn from_env() -> Self {
        let guest = std::env::var(GUEST_ENV)
            .ok()
            .and_then(|g| GuestKind::parse(&g))
            .unwrap_or(GuestKind::Linux);
        MicrovmBackend::new(guest)
    }

    fn setup_err(reason: impl Into<String>) -> BackendError {
        BackendError::setup(NAME, reason)
    }

    fn io_err(context: String) -> impl FnOnce(std::io::Error) -> BackendError {
        BackendError::io(NAME, context)
    }

    fn prepared(&self) -> Result<Prepared, BackendError> {
        self.prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Self::setup_err("launch before prepare"))
    }

    fn prepare_probe(&self) -> Result<(GuestFiles, SharedImage), BackendError> {
        let dir = self.cache_root.join("microvm");
        fs::create_dir_all(&dir).map_err(Self::io_err(format!("creating {}", dir.display())))?;
        let kernel = match &self.kernel {
            Some(k) => k.clone(),
            None => microvm::probe::write_payload(&dir).map_err(Self::io_err(format!(
                "writing the probe payload into {}",
                dir.display()
            )))?,
        };
        let disk = dir.join("probe-disk-sparse.img");
        let content = microvm::probe::disk_image("cvbench-probe-disk", PROBE_DISK_SECTORS);
        if fs::read(&disk).ok().as_deref() != Some(content.as_slice()) {
            write_sparse(&disk, &content).map_err(Self::io_err(format!("writing {}", disk.display())))?;
        }
        let bytes = probe::allocated_bytes(&disk).map_err(BackendError::probe(NAME, Stage::Prepare))?;
        let shared = SharedImage {
            bytes,
            description: format!("probe test disk {} (copied per VM)", disk.display()),
        };
        Ok((
            GuestFiles {
                kernel,
                shared_disk: disk,
                scratch_template: None,
            },
            shared,
        ))
    }

    fn prepare_linux(&self, image_dir: &Path) -> Result<(GuestFiles, SharedImage), BackendError> {
        let kernel = linux_kernel(self.kernel.as_deref()).map_err(Self::setup_err)?;
        let (disks, shared) = LinuxDisks::prepare(NAME, image_dir, &self.cache_root)?;
        Ok((
            GuestFiles {
                kernel,
                shared_disk: disks.image,
                scratch_template: Some(disks.scratch_template),
            },
            shared,
        ))
    }

    /// The VMM command line for one instance (with `net`: a virtio-net device on its tap, and the
    /// guest's address on the kernel command line).
    fn vmm_command(
        &self,
        prepared: &Prepared,
        spec: &LaunchSpec,
        instance_disk: &Path,
        net: Option<&VmNet>,
    ) -> Command {
        let (memory_mib, vcpus) = guest_size(&spec.limits(), self.memory_mib, self.vcpus);
        let mut cmd = Command::new(&prepared.vmm);
        cmd.arg("--kernel").arg(&prepared.guest.kernel);
        cmd.args([
            "--memory-mib",
            &memory_mib.to_string(),
            "--vcpus",
            &vcpus.to_string(),
        ]);
        match self.guest {
            GuestKind::Probe => {
                cmd.arg("--disk").arg(instance_disk);
                cmd.arg("--cmdline").arg(&self.probe_cmdline);
            }
            GuestKind::Linux => {
                cmd.arg("--disk-ro").arg(&prepared.guest.shared_disk);
                cmd.arg("--disk").arg(instance_disk);
                let net_words = net.map(VmNet::guest_words).unwrap_or_default();
                cmd.arg("--cmdline")
                    .arg(linux_cmdline_extra_with(&spec.workload, prepared.pvm, &net_words));
            }
        }
        if let Some(net) = net {
            let fd = net.pass_tap(&mut cmd);
            cmd.args(["--net-tap-fd", &fd.to_string(), "--net-mac", &net.mac()]);
        }
        cmd
    }
}

/// Kernel words that let a stock kernel run on a paravirtual KVM (PVM), which cannot emulate
/// `xsave`/`xrstor`, `popcnt`, `clac`/`stac`: the kernel then uses FXSAVE, the software popcount
/// and no SMAP/SMEP. (`int3` is handled by the VMM itself.)
pub const PVM_KERNEL_WORDS: &[&str] = &["noxsave", "clearcpuid=popcnt,smap,smep"];

/// The words the harness adds to the VMM's kernel command line for a Linux guest (the MicroVM
/// contract: root on the read-only `vda`, guest init, then ` -- ` and the workload's arguments).
/// Also what the QEMU backend passes.
pub fn linux_cmdline_extra(workload: &WorkloadSpec) -> String {
    linux_cmdline_extra_for(workload, false)
}

/// [`linux_cmdline_extra`], plus [`PVM_KERNEL_WORDS`] on a PVM host.
pub fn linux_cmdline_extra_for(workload: &WorkloadSpec, pvm: bool) -> String {
    linux_cmdline_extra_with(workload, pvm, &[])
}

/// [`linux_cmdline_extra_for`] with `kernel_words` (e.g. guest init's `cvbench.ip=`) before ` -- `.
pub fn linux_cmdline_extra_with(workload: &WorkloadSpec, pvm: bool, kernel_words: &[String]) -> String {
    let mut words: Vec<String> = Vec::new();
    if pvm {
        words.extend(PVM_KERNEL_WORDS.iter().map(|w| w.to_string()));
    }
    words.extend(kernel_words.iter().cloned());
    words.extend(
        [
            "root=/dev/vda",
            "ro",
            "rootfstype=ext4",
            "init=/cvbench/init",
            "quiet",
            "--",
        ]
        .map(String::from),
    );
    words.extend(workload.to_args());
    words.join(" ")
}

/// The Linux guest kernel: `explicit` if set, else the one [`GUEST_KERNEL_ENV`] names or the newest
/// one built.
/// Also what the QEMU backend boots.
pub(super) fn linux_kernel(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(kernel) = explicit {
        return Ok(kernel.to_path_buf());
    }
    let env = std::env::var_os(GUEST_KERNEL_ENV);
    locate_guest_kernel(env.as_deref(), Path::new(DEFAULT_KERNEL_CACHE)).ok_or_else(|| {
        format!(
            "no guest kernel built: run guest/kernel/build.sh (caches vmlinux under \
             {DEFAULT_KERNEL_CACHE}/<hash>/) or set {GUEST_KERNEL_ENV}"
        )
    })
}

/// Whether a memory limit of `bytes` gives guest RAM the VMM accepts (rounded up to whole MiB, as
/// [`guest_size`] does). Also QEMU's check: both boot the same guest layout.
pub(super) fn guest_memory_in_range(bytes: u64) -> Result<(), String> {
    let (min, max) = (microvm::builder::MIN_MEMORY_MIB, microvm::layout::MAX_MEMORY_MIB);
    let mib = bytes.div_ceil(1 << 20);
    if (min..=max).contains(&mib) {
        Ok(())
    } else {
        Err(format!(
            "guest RAM must be between {min} MiB and {max} MiB (the memory below the MMIO window); \
             {bytes} bytes is {mib} MiB"
        ))
    }
}

/// Guest RAM in MiB and vCPUs for `spec`: its memory limit rounded up to whole MiB and the smallest
/// vCPU count covering its CPU quota, else the backend's defaults. Also how QEMU sizes its guest.
pub(super) fn guest_size(limits: &InstanceLimits, default_mib: u64, default_vcpus: u8) -> (u64, u8) {
    let memory_mib = limits
        .memory_limit_bytes
        .map_or(default_mib, |b| b.div_ceil(1 << 20));
    let vcpus = limits.cpu_limit.map_or(default_vcpus, |c| {
        (1..=u8::MAX).find(|&n| f64::from(n) >= c).unwrap_or(u8::MAX)
    });
    (memory_mib, vcpus)
}

/// The disks a Linux guest boots from, the same files for both VMMs (the same cache keys).
pub(super) struct LinuxDisks {
    /// The shared ext4 image with guest init (read-only `vda`).
    pub image: PathBuf,
    /// The pre-formatted empty scratch disk copied per instance (`vdb`).
    pub scratch_template: PathBuf,
}

impl LinuxDisks {
    /// Builds (or finds in `cache_root`) the ext4 image of `image_dir` with guest init added, and the
    /// scratch disk template. `backend` names the backend in errors.
    pub(super) fn prepare(
        backend: &'static str,
        image_dir: &Path,
        cache_root: &Path,
    ) -> Result<(LinuxDisks, SharedImage), BackendError> {
        let setup_err = |reason: String| BackendError::setup(backend, reason);
        super::check_image_workload(backend, image_dir)?;
        let usage = rootfs::disk_usage(image_dir).map_err(BackendError::io(
            backend,
            format!("measuring {}", image_dir.display()),
        ))?;
        let digest = image_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| setup_err(format!("image directory {} has no name", image_dir.display())))?;
        let image = rootfs::Image {
            dir: image_dir.to_path_buf(),
            digest,
            allocated_bytes: usage.allocated_bytes,
            apparent_bytes: usage.apparent_bytes,
            files: usage.files,
        };
        let init = rootfs::locate_binary(rootfs::GUEST_INIT_BIN)
            .map_err(BackendError::rootfs(backend, Stage::Prepare))?;
        let disk = rootfs::ext4_disk_image(&image, &[(init, "/cvbench/init".to_string())], cache_root)
            .map_err(BackendError::rootfs(backend, Stage::Prepare))?;
        let scratch_template = rootfs::scratch_disk_template(SCRATCH_DISK_MIB, cache_root)
            .map_err(BackendError::rootfs(backend, Stage::Prepare))?;
        let shared = SharedImage {
            bytes: disk.allocated_bytes,
            description: format!("ext4 disk image {} (read-only vda)", disk.path.display()),
        };
        Ok((
            LinuxDisks {
                image: disk.path,
                scratch_template,
            },
            shared,
        ))
    }
}

/// Writes `content` to `path` leaving all-zero 4 KiB blocks as holes.
fn write_sparse(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = fs::File::create(path)?;
    file.set_len(content.len() as u64)?;
    for (i, block) in content.chunks(4096).enumerate() {
        if block.iter().any(|&b| b != 0) {
            file.write_all_at(block, (i * 4096) as u64)?;
        }
    }
    Ok(())
}

/// `kvm` label: `pvm` when the paravirtual module is loaded, else `hardware`.
fn kvm_flavour(pvm_module: &Path) -> &'static str {
    if pvm_module.exists() {
        "pvm"
    } else {
        "hardware"
    }
}

impl Backend for MicrovmBackend {
    fn name(&self) -> &'static str {
        match self.guest {
            GuestKind::Linux => NAME,
            GuestKind::Probe => PROBE_NAME,
        }
    }

    fn check_memory_limit(&self, bytes: u64) -> Result<(), String> {
        guest_memory_in_range(bytes)
    }

    fn runs_image(&self) -> bool {
        self.guest == GuestKind::Linux
    }

    fn set_cache_root(&mut self, root: &Path) {
        self.cache_root = root.to_path_buf();
    }

    fn supports(&self, workload: &WorkloadSpec) -> Result<(), Unavailable> {
        if self.guest == GuestKind::Probe && workload.exits_by_itself() {
            return Err(Unavailable {
                reason: "the probe guest measures the VMM alone and runs no workload (idle only)".into(),
            });
        }
        Ok(())
    }

    /// The Linux guest's eth0 is virtio-net on a tap bridged into the instance's namespace (see
    /// `vm_net`); the probe guest has no network stack.
    fn networking(&self) -> bool {
        self.guest == GuestKind::Linux
    }

    fn isolation(&self) -> Isolation {
        Isolation::vm(IsolationKind::MicroVm, host::detect_kvm_flavour().for_guest())
    }

    fn check_host(&self) -> Result<(), Unavailable> {
        if !Path::new(KVM_DEVICE).exists() {
            return Err(Unavailable {
                reason: format!("{KVM_DEVICE} does not exist (load kvm_intel/kvm_amd)"),
            });
        }
        microvm::builder::open_kvm().map_err(|e| Unavailable {
            reason: e.to_string(),
        })?;
        rootfs::locate_binary(VMM_BIN).map_err(|e| Unavailable {
            reason: e.to_string(),
        })?;
        if self.guest == GuestKind::Linux
            && kvm_flavour(Path::new(PVM_MODULE)) == "pvm"
            && std::env::var(ALLOW_EMULATED_ENV).as_deref() != Ok("1")
        {
            return Err(Unavailable {
                reason: format!(
                    "{KVM_DEVICE} is PVM (nested paravirtual KVM): a stock Linux guest runs emulated \
                     (~200x slower) and cannot enter user space (init's first syscall faults); \
                     needs hardware KVM (set {ALLOW_EMULATED_ENV}=1 to try anyway, figures labelled emulated)"
                ),
            });
        }
        if self.guest == GuestKind::Linux {
            linux_kernel(self.kernel.as_deref()).map_err(|reason| Unavailable { reason })?;
            rootfs::locate_binary(rootfs::GUEST_INIT_BIN).map_err(|e| Unavailable {
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    fn labels(&self) -> Vec<(String, String)> {
        self.labels_with(&InstanceLimits::default())
    }

    fn labels_with(&self, limits: &InstanceLimits) -> Vec<(String, String)> {
        let (memory_mib, vcpus) = guest_size(limits, self.memory_mib, self.vcpus);
        let flavour = host::detect_kvm_flavour();
        // Without /dev/kvm nothing runs; the label keeps saying what it always did then.
        let kvm = match flavour {
            HostKvm::None => "hardware",
            f => f.as_str(),
        };
        let mut labels = vec![
            ("kvm".to_string(), kvm.to_string()),
            ("guest".to_string(), self.guest.as_str().to_string()),
            ("vcpus".to_string(), vcpus.to_string()),
            // The guest's RAM (`--memory`, else the default); `pss_bytes` is the VMM's.
            ("guest_memory_mib".to_string(), memory_mib.to_string()),
            // cvbench-vmm filters its VMM and vCPU threads with seccomp unless --no-seccomp, which
            // this backend never passes.
            ("vmm_seccomp".to_string(), "on".to_string()),
        ];
        labels.extend(host::emulation_labels(flavour));
        if flavour == HostKvm::Pvm && self.guest == GuestKind::Linux {
            eprintln!(
                "WARNING: {KVM_DEVICE} is PVM (paravirtual nested KVM): the Linux guest's kernel runs \
                 under emulation, so its boot and workload figures are EMULATED and not comparable \
                 with hardware KVM."
            );
        }
        labels
    }

    fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
        vm_process::hold_run_lock(VMM, &self.run_dir)?;
        let vmm = rootfs::locate_binary(VMM_BIN).map_err(BackendError::rootfs(NAME, Stage::Prepare))?;
        let (guest, shared) = match self.guest {
            GuestKind::Probe => self.prepare_probe()?,
            GuestKind::Linux => self.prepare_linux(image_dir)?,
        };
        let prepared = Prepared {
            vmm,
            pvm: kvm_flavour(Path::new(PVM_MODULE)) == "pvm",
            guest,
        };
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = Some(prepared);
        Ok(shared)
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
        let prepared = self.prepared()?;
        if self.guest == GuestKind::Probe && spec.workload.exits_by_itself() {
            return Err(Self::setup_err(
                "the probe guest runs no workload; use the idle workload with --guest probe",
            ));
        }
        // The network first, timed as its own phase (as the container backends do); from here on,
        // dropping it removes the namespace, its bridge and the harness's copy of the tap.
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
        let vm = VmProcess::create(VMM, &self.run_dir, &spec.instance_name)?;
        let mut instance = MicrovmInstance {
            disk: vm.dir().join("disk.img"),
            vm,
            phases,
            guest_ram_host_addr: None,
            exits_by_itself: spec.workload.exits_by_itself(),
            net: None,
        };
        // Both guests get a sparse copy: the scratch template (Linux) or the probe's test disk.
        let files = &prepared.guest;
        let template = files.scratch_template.as_ref().unwrap_or(&files.shared_disk);
        rootfs::new_scratch_disk(template, &instance.disk)
            .map_err(BackendError::rootfs(NAME, Stage::Create))?;
        let mut cmd = self.vmm_command(&prepared, spec, &instance.disk, net.as_ref());
        let clock = ClockPair::now();
        instance.vm.start(
            &mut cmd,
            Message::Console,
            "events",
            |_at, line| match VmEvent::parse_line(&line) {
                Some(event) => Message::Event(event),
                None => Message::Stderr(line),
            },
        )?;

        let mut launching = Launching {
            instance,
            clock,
            request: spec.request,
        };
        let ready = lines::wait_ready(
            &mut launching,
            spec.request + spec.ready_timeout,
            spec.ready_timeout,
        )?;
        let mut instance = launching;
        instance
            .instance
            .phases
            .push(PhaseMark::new(START_TO_READY_MS, spec.request, ready));
        // Event lines still in flight on the other pipe: VM created, first vCPU entry, guest init.
        let settle = ready + EVENT_SETTLE;
        let expected = if net.is_some() { 5 } else { 4 };
        while instance.instance.phases.len() < expected {
            match instance.instance.vm.next(settle) {
                Next::Message(message) => {
                    instance.on_message(message)?;
                }
                Next::Timeout | Next::Eof => break,
            }
        }
        let mut instance = instance.instance;
        instance.phases.sort_by_key(|p| p.since_request);
        instance.net = net;
        Ok(Box::new(instance))
    }
}

/// A microVM between start and READY, with what places its events on the harness's clock.
struct Launching {
    instance: MicrovmInstance,
    clock: ClockPair,
    request: Instant,
}

impl ReadySource for Launching {
    type Message = Message;

    fn next(&mut self, deadline: Instant) -> Result<Next<Message>, BackendError> {
        Ok(self.instance.vm.next(deadline))
    }

    /// Records the VMM's phase events; `Some` for the READY line.
    fn on_message(&mut self, message: Message) -> Result<Option<Instant>, BackendError> {
        let instance = &mut self.instance;
        match message {
            Message::Event(event) => {
                let at = self.clock.instant_of(event.monotonic_ns);
                let phase = match &event.kind {
                    EventKind::VmCreatedKernelLoaded {
                        guest_ram_host_addr, ..
                    } => {
                        instance.guest_ram_host_addr = Some(*guest_ram_host_addr);
                        Some(START_TO_VM_CREATED_MS)
                    }
                    EventKind::FirstVcpuEntry => Some(START_TO_FIRST_VCPU_ENTRY_MS),
                    EventKind::BootTimer { .. } => Some(START_TO_GUEST_INIT_MS),
                    _ => None,
                };
                if let Some(name) = phase {
                    if !instance.phases.iter().any(|p| p.name == name) {
                        instance.phases.push(PhaseMark::new(name, self.request, at));
                    }
                }
                Ok(None)
            }
            Message::Stderr(line) => {
                instance.vm.remember(&line);
                Ok(None)
            }
            Message::Console(at, line) => Ok(instance.vm.console_line_before_ready(line)?.then_some(at)),
        }
    }

    fn exited_before_ready(&mut self) -> BackendError {
        self.instance.vm.exited_before_ready()
    }

    fn ready_timeout(&self, timeout: Duration) -> BackendError {
        self.instance.vm.ready_timeout(timeout)
    }
}

/// `Instant` and raw `CLOCK_MONOTONIC` read together, to place the VMM's event timestamps on this
/// process's `Instant` timeline (both are `CLOCK_MONOTONIC` on Linux).
#[derive(Debug, Clone, Copy)]
struct ClockPair {
    instant: Instant,
    monotonic_ns: u64,
}

impl ClockPair {
    fn now() -> Self {
        ClockPair {
            instant: Instant::now(),
            monotonic_ns: microvm::events::monotonic_now_ns(),
        }
    }

    fn instant_of(&self, monotonic_ns: u64) -> Instant {
        if monotonic_ns >= self.monotonic_ns {
            self.instant + Duration::from_nanos(monotonic_ns - self.monotonic_ns)
        } else {
            self.instant
                .checked_sub(Duration::from_nanos(self.monotonic_ns - monotonic_ns))
                .unwrap_or(self.instant)
        }
    }
}

enum Message {
    /// A console line, timestamped when it became readable.
    Console(Instant, String),
    Event(VmEvent),
    /// Any other stderr line (warnings, the VMM's error).
    Stderr(String),
}

struct MicrovmInstance {
    /// Declared before `net`: the VMM (which holds the tap) stops before the namespace goes.
    vm: VmProcess<Message>,
    disk: PathBuf,
    phases: Vec<PhaseMark>,
    guest_ram_host_addr: Option<u64>,
    exits_by_itself: bool,
    /// For a workload reached from outside: the tap bridged into the instance's namespace.
    net: Option<VmNet>,
}

/// Rss and Pss (bytes) of the mapping that starts at `start` in a `/proc/PID/smaps` text.
pub fn mapping_rss_pss_bytes(smaps: &str, start: u64) -> Option<(u64, u64)> {
    let mut in_mapping = false;
    let (mut rss, mut pss) = (None, None);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((from, _to)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            if in_mapping {
                break;
            }
            in_mapping = u64::from_str_radix(from, 16).ok() == Some(start);
            continue;
        }
        if !in_mapping {
            continue;
        }
        let kib = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .map(|k| k * 1024)
        };
        match first {
            "Rss:" => rss = kib(),
            "Pss:" => pss = kib(),
            _ => {}
        }
    }
    Some((rss?, pss?))
}

impl Instance for MicrovmInstance {
    fn phases(&self) -> Vec<PhaseMark> {
        self.phases.clone()
    }

    fn last_output(&self) -> Option<String> {
        Some(self.vm.tail_with_pending(|message| match message {
            Message::Console(_, line) => Some(line),
            Message::Stderr(line) => Some(format!("cvbench-vmm: {line}")),
            Message::Event(_) => None,
        }))
    }

    fn host_pids(&self) -> Vec<i32> {
        self.vm.pid().into_iter().collect()
    }

    fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.net.as_ref().map(VmNet::guest_addr)
    }

    fn memory(&self) -> Result<MemoryProbe, BackendError> {
        let (pid, pss_bytes) = self.vm.pss_bytes()?;
        let mut extra = Vec::new();
        if let Some(addr) = self.guest_ram_host_addr {
            let smaps_path = format!("/proc/{pid}/smaps");
            let smaps = fs::read_to_string(&smaps_path)
                .map_err(MicrovmBackend::io_err(format!("reading {smaps_path}")))?;
            let (rss, pss) = mapping_rss_pss_bytes(&smaps, addr).ok_or_else(|| {
                MicrovmBackend::setup_err(format!("no guest RAM mapping at {addr:#x} in {smaps_path}"))
            })?;
            extra.push((GUEST_RAM_RESIDENT_BYTES.to_string(), rss));
            extra.push((VMM_OVERHEAD_BYTES.to_string(), pss_bytes.saturating_sub(pss)));
        }
        Ok(MemoryProbe { pss_bytes, extra })
    }

    fn disk(&self) -> Result<DiskProbe, BackendError> {
        let instance_bytes =
            probe::allocated_bytes(&self.disk).map_err(BackendError::probe(NAME, Stage::DiskProbe))?;
        Ok(DiskProbe { instance_bytes })
    }

    fn finish(&mut self, timeout: Duration) -> Result<Option<WorkloadResult>, BackendError> {
        self.vm
            .finish(self.exits_by_itself, timeout, |message| match message {
                Message::Console(_, line) => Seen::Console(line),
                Message::Stderr(line) => Seen::Other(line),
                Message::Event(VmEvent {
                    kind: EventKind::Stopped { reason },
                    ..
                }) if reason != microvm::ExitReason::GuestReset => {
                    Seen::Failed(format!("the VM stopped: {reason}"))
                }
                Message::Event(_) => Seen::Nothing,
            })
    }

    fn destroy(mut self: Box<Self>) -> Result<(), BackendError> {
        self.vm.destroy()
    }
}

/// Kills the VMM of every instance directory under `run_dir` (normally [`RUN_DIR`]) for which
/// `keep(name)` is false, and removes the directory. Returns one line per removed instance and one
/// per problem; instances whose harness runs are listed as in use. For `bench cleanup`.
pub fn cleanup_leftover_vms(run_dir: &Path, keep: &dyn Fn(&str) -> bool) -> crate::cleanup::CleanupReport {
    vm_process::cleanup_leftovers(VMM, run_dir, keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::vm_net;

    const SMAPS: &str = "\
55d4c0000000-55d4c0100000 r-xp 00000000 08:01 123  /usr/bin/cvbench-vmm
Size:               1024 kB
Rss:                 600 kB
Pss:                 600 kB
7f0395000000-7f0396000000 rw-p 00000000 00:00 0
Size:              16384 kB
KernelPageSize:        4 kB
Rss:                 120 kB
Pss:                 116 kB
Shared_Clean:          0 kB
VmFlags: rd wr mr mw me ac sd
7f0396000000-7f0396021000 rw-p 00000000 00:00 0
Size:                132 kB
Rss:                   8 kB
Pss:                   8 kB
";

    #[test]
    fn the_vcpus_label_is_the_count_the_guest_is_launched_with() {
        use crate::runner::{cell_labels, RunOptions};
        let mut backend = MicrovmBackend::new(GuestKind::Probe);
        let vcpus_label = |backend: &MicrovmBackend, cpus: Option<f64>| {
            let opts = RunOptions {
                cpu_limit: cpus,
                ..RunOptions::default()
            };
            // What the VMM's --vcpus gets for an instance of these runs.
            let spec = opts.launch_spec(
                Path::new("/nonexistent"),
                &WorkloadSpec::Idle,
                "x",
                Instant::now(),
            );
            let (memory_mib, launched) = guest_size(&spec.limits(), backend.memory_mib, backend.vcpus);
            let labels = cell_labels(backend, &opts);
            assert_eq!(labels["guest_memory_mib"], memory_mib.to_string());
            let label = labels["vcpus"].clone();
            assert_eq!(label, launched.to_string(), "--cpus {cpus:?}");
            label
        };
        // --cpus sets the count (the smallest covering the quota), not the backend's default.
        assert_eq!(vcpus_label(&backend, None), "1");
        assert_eq!(vcpus_label(&backend, Some(0.5)), "1");
        assert_eq!(vcpus_label(&backend, Some(2.0)), "2");
        assert_eq!(vcpus_label(&backend, Some(2.5)), "3");
        backend.vcpus = 4;
        assert_eq!(vcpus_label(&backend, None), "4");
        assert_eq!(vcpus_label(&backend, Some(1.0)), "1");
    }

    #[test]
    fn memory_limits_outside_the_guest_layout_are_refused_before_launch() {
        let probe = MicrovmBackend::new(GuestKind::Probe);
        assert!(probe.check_memory_limit(16 << 20).is_ok());
        assert!(probe.check_memory_limit(2 << 20).is_ok());
        let too_big = probe.check_memory_limit(4 << 30).unwrap_err();
        assert!(
            too_big.contains("3328 MiB") && too_big.contains("4096 MiB"),
            "{too_big}"
        );
        let too_small = probe.check_memory_limit(1024).unwrap_err();
        assert!(too_small.contains("2 MiB"), "{too_small}");
        assert!(MicrovmBackend::new(GuestKind::Linux)
            .check_memory_limit(4 << 30)
            .is_err());
    }

    #[test]
    fn the_probe_runs_no_image_and_caches_under_the_given_root() {
        let mut probe = MicrovmBackend::new(GuestKind::Probe);
        assert!(!probe.runs_image());
        assert!(MicrovmBackend::new(GuestKind::Linux).runs_image());
        let tmp = tempfile::tempdir().unwrap();
        probe.set_cache_root(tmp.path());
        let (files, _) = probe.prepare_probe().unwrap();
        assert!(files.kernel.starts_with(tmp.path()), "{files:?}");
        assert!(files.shared_disk.starts_with(tmp.path()), "{files:?}");
    }

    #[test]
    fn guest_ram_mapping_is_found_by_start_address() {
        assert_eq!(
            mapping_rss_pss_bytes(SMAPS, 0x7f03_9500_0000),
            Some((120 * 1024, 116 * 1024))
        );
        assert_eq!(
            mapping_rss_pss_bytes(SMAPS, 0x55d4_c000_0000),
            Some((600 * 1024, 600 * 1024))
        );
        assert_eq!(mapping_rss_pss_bytes(SMAPS, 0x1234), None);
    }

    #[test]
    fn clock_pair_maps_monotonic_ns_onto_instants() {
        let pair = ClockPair::now();
        let later = pair.instant_of(pair.monotonic_ns + 5_000_000);
        assert_eq!(later.duration_since(pair.instant), Duration::from_millis(5));
        let earlier = pair.instant_of(pair.monotonic_ns - 1_000_000);
        assert_eq!(pair.instant.duration_since(earlier), Duration::from_millis(1));
        // The two clocks agree: an event stamped now lands within a few ms of Instant::now().
        let now = pair.instant_of(microvm::events::monotonic_now_ns());
        assert!(Instant::now().saturating_duration_since(now) < Duration::from_secs(1));
    }

    #[test]
    fn linux_cmdline_puts_workload_args_after_the_separator() {
        let extra = linux_cmdline_extra(&WorkloadSpec::Idle);
        assert_eq!(
            extra,
            "root=/dev/vda ro rootfstype=ext4 init=/cvbench/init quiet -- idle"
        );
        let extra = linux_cmdline_extra_for(&WorkloadSpec::Idle, true);
        assert!(
            extra.starts_with("noxsave clearcpuid=popcnt,smap,smep root=/dev/vda"),
            "{extra}"
        );
        assert!(extra.ends_with(" -- idle"));
        // Guest init's network words go among the kernel's, never to the workload.
        let words = [
            "cvbench.ip=198.18.0.2/30".to_string(),
            "cvbench.gw=198.18.0.1".to_string(),
        ];
        let extra = linux_cmdline_extra_with(&WorkloadSpec::Idle, false, &words);
        let (kernel_part, init_part) = extra.split_once(" -- ").unwrap();
        assert!(kernel_part.starts_with("cvbench.ip=198.18.0.2/30 cvbench.gw=198.18.0.1 root=/dev/vda"));
        assert_eq!(init_part, "idle");
    }

    #[test]
    fn only_the_linux_guest_has_a_network() {
        assert!(MicrovmBackend::new(GuestKind::Linux).networking());
        let probe = MicrovmBackend::new(GuestKind::Probe);
        assert!(!probe.networking());
        let outside = WorkloadSpec::default_for(workload::WorkloadKind::HttpOutside);
        let why = crate::backend::can_run(&probe, &outside).unwrap_err();
        assert!(why.reason.contains("http-outside"), "{why}");
    }

    #[test]
    fn guest_names_parse() {
        assert_eq!(GuestKind::parse("probe"), Some(GuestKind::Probe));
        assert_eq!(GuestKind::parse("linux"), Some(GuestKind::Linux));
        assert_eq!(GuestKind::parse("qemu"), None);
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(kvm_flavour(&tmp.path().join("kvm_pvm")), "hardware");
        assert_eq!(kvm_flavour(tmp.path()), "pvm");
    }

    #[test]
    fn leftover_instance_dirs_are_removed_unless_kept() {
        let run = tempfile::tempdir().unwrap();
        for name in ["cvbench-microvm-idle-1-0", "cvbench-microvm-idle-2-0"] {
            fs::create_dir(run.path().join(name)).unwrap();
            // A pid that is not a VMM (this test process) must not be killed.
            fs::write(
                run.path().join(name).join("vmm.pid"),
                format!("{}\n", std::process::id()),
            )
            .unwrap();
        }
        let report = cleanup_leftover_vms(run.path(), &|n| n.ends_with("-2-0"));
        assert_eq!(
            report.removed,
            vec!["microVM cvbench-microvm-idle-1-0".to_string()]
        );
        // A VM whose harness runs is listed as kept, not passed over in silence.
        assert_eq!(
            report.in_use,
            vec!["microVM cvbench-microvm-idle-2-0".to_string()]
        );
        assert!(report.problems.is_empty(), "{report:?}");
        assert!(run.path().join("cvbench-microvm-idle-2-0").exists());
    }

    /// `true` (after a counted skip) when the probe guest cannot run here: no usable `/dev/kvm` or
    /// no VMM binary.
    fn skip_without_kvm_and_vmm() -> bool {
        if let Err(e) = microvm::builder::open_kvm() {
            testkit::skip(testkit::Requirement::Kvm, e);
            return true;
        }
        if let Err(e) = rootfs::locate_binary(VMM_BIN) {
            testkit::skip(
                testkit::Requirement::Binaries,
                format!("{e} (build it: cargo build --workspace --bins)"),
            );
            return true;
        }
        false
    }

    #[test]
    fn a_guest_that_dies_before_ready_is_reported_with_its_console_lines_and_cleaned_up() {
        if skip_without_kvm_and_vmm() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut backend = MicrovmBackend::new(GuestKind::Probe);
        backend.cache_root = tmp.path().join("cache");
        backend.run_dir = tmp.path().join("run");
        backend.probe_cmdline = microvm::probe::FAULT_FLAG.to_string();
        backend.prepare(tmp.path()).unwrap();
        let spec = LaunchSpec {
            request: Instant::now(),
            image_dir: tmp.path().to_path_buf(),
            workload: WorkloadSpec::Idle,
            instance_name: format!("cvbench-microvm-idle-{}-7", std::process::id()),
            memory_limit_bytes: None,
            cpu_limit: None,
            pids_limit: None,
            ready_timeout: Duration::from_secs(30),
            confinement: Default::default(),
            network: None,
        };
        let err = match backend.launch(&spec) {
            Ok(_) => panic!("a triple-faulting guest became ready"),
            Err(e) => e,
        };
        let BackendError::ExitedBeforeReady { output, .. } = &err else {
            panic!("expected ExitedBeforeReady, got {err}");
        };
        assert!(
            output.contains("PROBE triple-faulting now"),
            "the guest's last console lines explain the failure: {output}"
        );
        assert!(!backend.run_dir.join(&spec.instance_name).exists());
    }

    #[test]
    fn probe_guest_launches_with_all_phases_memory_and_disk_figures_then_cleans_up() {
        if skip_without_kvm_and_vmm() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut backend = MicrovmBackend::new(GuestKind::Probe);
        backend.cache_root = tmp.path().join("cache");
        backend.run_dir = tmp.path().join("run");
        backend.check_host().unwrap();
        let shared = backend.prepare(tmp.path()).unwrap();
        assert!(shared.bytes > 0);
        let spec = LaunchSpec {
            request: Instant::now(),
            image_dir: tmp.path().to_path_buf(),
            workload: WorkloadSpec::Idle,
            instance_name: format!("cvbench-microvm-idle-{}-0", std::process::id()),
            memory_limit_bytes: None,
            cpu_limit: None,
            pids_limit: None,
            ready_timeout: Duration::from_secs(30),
            confinement: Default::default(),
            network: None,
        };
        let mut instance = backend.launch(&spec).unwrap();
        let names: Vec<String> = instance.phases().iter().map(|p| p.name.clone()).collect();
        assert_eq!(
            names,
            [
                START_TO_VM_CREATED_MS,
                START_TO_FIRST_VCPU_ENTRY_MS,
                START_TO_GUEST_INIT_MS,
                START_TO_READY_MS
            ]
        );
        let pid = instance.host_pids()[0];
        let memory = instance.memory().unwrap();
        let extra: std::collections::BTreeMap<_, _> = memory.extra.iter().cloned().collect();
        let guest = extra[GUEST_RAM_RESIDENT_BYTES];
        let overhead = extra[VMM_OVERHEAD_BYTES];
        assert!(
            guest > 0 && guest <= PROBE_MEMORY_MIB << 20,
            "guest RAM resident {guest}"
        );
        assert!(
            overhead > 0 && overhead < memory.pss_bytes,
            "overhead {overhead} of {}",
            memory.pss_bytes
        );
        assert!(instance.disk().unwrap().instance_bytes > 0);
        assert_eq!(instance.finish(Duration::from_secs(10)).unwrap(), None);
        instance.destroy().unwrap();
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "VMM {pid} still running"
        );
        assert!(!backend.run_dir.join(&spec.instance_name).exists());
    }

    #[test]
    fn probe_guest_refuses_self_ending_workloads_and_launch_needs_prepare() {
        let tmp = tempfile::tempdir().unwrap();
        let mut backend = MicrovmBackend::new(GuestKind::Probe);
        backend.cache_root = tmp.path().join("cache");
        backend.run_dir = tmp.path().join("run");
        let spec = LaunchSpec {
            request: Instant::now(),
            image_dir: tmp.path().to_path_buf(),
            workload: WorkloadSpec::Idle,
            instance_name: "cvbench-microvm-idle-1-0".into(),
            memory_limit_bytes: None,
            cpu_limit: None,
            pids_limit: None,
            ready_timeout: Duration::from_secs(1),
            confinement: Default::default(),
            network: None,
        };
        let err = backend.launch(&spec).err().unwrap();
        assert!(err.to_string().contains("before prepare"), "{err}");
        assert!(!backend.run_dir.exists());
    }

    /// Hardware KVM only: a stock kernel under PVM runs emulated and cannot take syscalls from init.
    fn hardware_kvm() -> Result<(), String> {
        let cpuinfo =
            fs::read_to_string("/proc/cpuinfo").map_err(|e| format!("reading /proc/cpuinfo: {e}"))?;
        let virt = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        if !virt {
            return Err("no vmx/svm in /proc/cpuinfo: KVM here is not hardware-backed".into());
        }
        if Path::new(PVM_MODULE).exists() {
            return Err(format!(
                "{KVM_DEVICE} is PVM: the Linux guest runs only emulated here"
            ));
        }
        Ok(())
    }

    /// The Linux-guest backend (instances under `tmp`/run) and the default image; `None` after a
    /// counted skip. Called with hardware KVM present, so what is left to lack is the built kernel
    /// (or guest init), or the image.
    fn linux_backend_or_skip(tmp: &Path) -> Option<(MicrovmBackend, rootfs::Image)> {
        let mut backend = MicrovmBackend::new(GuestKind::Linux);
        backend.run_dir = tmp.join("run");
        if let Err(u) = backend.check_host() {
            testkit::skip(testkit::Requirement::GuestKernel, u);
            return None;
        }
        match rootfs::default_image(&backend.cache_root) {
            Ok(image) => Some((backend, image)),
            Err(e) => {
                testkit::skip(testkit::Requirement::Binaries, format!("no image: {e}"));
                None
            }
        }
    }

    /// Hardware KVM only (the nested-KVM layer runs it): the guest serves http-outside on its
    /// virtio-net eth0 and wrk reaches it from the client namespace; the instance's namespace goes
    /// with the instance.
    #[test]
    fn linux_guest_serves_http_to_the_client_namespace_on_hardware_kvm() {
        if let Err(reason) = hardware_kvm() {
            testkit::skip(testkit::Requirement::HardwareKvm, reason);
            return;
        }
        if vm_net::testing::skip_without_http_outside() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let Some((backend, image)) = linux_backend_or_skip(tmp.path()) else {
            return;
        };
        backend.prepare(&image.dir).unwrap();
        let m = vm_net::testing::serve_http_outside(
            &backend,
            &image.dir,
            &tmp.path().join("run-root"),
            Duration::from_secs(120),
        );
        use crate::metrics as mt;
        assert!(
            m[mt::START_TO_NETWORK_READY_MS] <= m[mt::START_TO_VM_CREATED_MS],
            "{m:?}"
        );
        assert_eq!(fs::read_dir(&backend.run_dir).map(|d| d.count()).unwrap_or(0), 0);
    }

    #[test]
    fn linux_guest_reaches_ready_on_hardware_kvm() {
        if let Err(reason) = hardware_kvm() {
            testkit::skip(testkit::Requirement::HardwareKvm, reason);
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let Some((backend, image)) = linux_backend_or_skip(tmp.path()) else {
            return;
        };
        backend.prepare(&image.dir).unwrap();
        let spec = LaunchSpec {
            request: Instant::now(),
            image_dir: image.dir.clone(),
            workload: WorkloadSpec::Idle,
            instance_name: format!("cvbench-microvm-idle-{}-9", std::process::id()),
            memory_limit_bytes: None,
            cpu_limit: None,
            pids_limit: None,
            ready_timeout: Duration::from_secs(60),
            confinement: Default::default(),
            network: None,
        };
        let mut instance = backend.launch(&spec).unwrap();
        let names: Vec<String> = instance.phases().iter().map(|p| p.name.clone()).collect();
        assert!(names.contains(&START_TO_GUEST_INIT_MS.to_string()), "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some(START_TO_READY_MS));
        assert!(instance.disk().unwrap().instance_bytes > 0);
        assert_eq!(instance.finish(Duration::from_secs(20)).unwrap(), None);
        instance.destroy().unwrap();
    }
}
