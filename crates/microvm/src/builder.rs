//! Turns a [`VmConfig`] into a [`Vm`] ready to run: host checks first (kernel readable and
//! recognised, enough memory for it, `/dev/kvm` openable, KVM API version and capabilities), then
//! the VM, guest memory, boot structures, devices and vCPUs. [`Vm::run`] starts one thread per vCPU
//! and returns why the VM stopped; a [`StopHandle`] stops it from another thread (e.g. on SIGTERM).

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuFd, VmFd};
use linux_loader::loader::{bzimage::BzImage, elf::Elf, KernelLoader};
use virtio_bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::arch::x86_64::{boot_params, cpuid, mptable, regs, usize_from_u64, ArchError};
use crate::devices::boot_timer::BootTimer;
use crate::devices::bus::{Bus, BusError};
use crate::devices::i8042::{self, I8042};
use crate::devices::serial::{ConsoleSink, SerialConsole};
use crate::devices::virtio::block::{Block, BlockError};
use crate::devices::virtio::event_loop::{IoThread, IoThreadError};
use crate::devices::virtio::mmio::{MmioTransport, VirtioShared};
use crate::devices::virtio::net::{Net, NetError, Tap};
use crate::devices::virtio::{format_counters, VirtioDevice};
use crate::events::{EventKind, VmEvent, VmObserver};
use crate::kernel::{KernelError, KernelFormat, KernelImage};
use crate::layout;
use crate::vcpu::{
    install_kick_handler, run_vcpu, stop_and_join, ExitReason, UnknownAccessLimiter, VcpuShared,
};

/// The only KVM API version there has ever been.
pub const KVM_API_VERSION: i32 = 12;
/// Capabilities the VMM relies on. `KVM_CAP_IMMEDIATE_EXIT` (Linux 4.11) is what lets a stop reach a
/// vCPU without polling (see `vcpu.rs`).
pub const REQUIRED_CAPS: [(Cap, &str); 7] = [
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::Pit2, "KVM_CAP_PIT2"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];
/// Offset of the 64-bit entry point from a bzImage's protected-mode code (boot.rst, "64-bit BOOT
/// PROTOCOL").
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// Smallest guest RAM: the boot structures below 1 MiB plus room for a payload.
pub const MIN_MEMORY_MIB: u64 = 2;
/// The base of every command line; Linux-specific words are harmless to the probe payload.
/// `i8042.noaux i8042.nomux i8042.dumbkbd` are Firecracker's words too: with them Linux's i8042
/// driver asks the controller only for its CTR, which [`crate::devices::i8042`] answers, instead of
/// probing mouse and multiplexer ports that nothing answers (each a half-second timeout).
pub const BASE_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd";
const KVM_DEVICE: &str = "/dev/kvm";

/// One block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
}

/// Where the virtio-net device's tap comes from.
#[derive(Debug)]
pub enum TapSource {
    /// Attach to (or create) the tap of this name in the VMM's network namespace.
    Name(String),
    /// A tap descriptor the caller attached and passed down.
    Fd(std::os::fd::OwnedFd),
}

/// The virtio-net device: its tap and the guest's MAC address.
#[derive(Debug)]
pub struct NetConfig {
    pub tap: TapSource,
    pub mac: [u8; 6],
}

/// Everything needed to create a VM.
pub struct VmConfig {
    pub kernel: PathBuf,
    /// Appended to [`BASE_CMDLINE`] and the `virtio_mmio.device=` words (e.g. `root=/dev/vda ... -- args`).
    pub cmdline_extra: String,
    pub memory_mib: u64,
    pub vcpus: u8,
    /// `vda`, `vdb`, ... in order.
    pub disks: Vec<DiskConfig>,
    /// A virtio-net device after the disks (the guest's `eth0`), if any.
    pub net: Option<NetConfig>,
    /// Where the guest's serial output goes.
    pub console: ConsoleSink,
}

impl fmt::Debug for VmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmConfig")
            .field("kernel", &self.kernel)
            .field("cmdline_extra", &self.cmdline_extra)
            .field("memory_mib", &self.memory_mib)
            .field("vcpus", &self.vcpus)
            .field("disks", &self.disks)
            .field("net", &self.net)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("memory_mib {memory_mib} is outside {min}..={max}")]
    MemoryOutOfRange { memory_mib: u64, min: u64, max: u64 },
    #[error("kernel {path} needs {needed_mib} MiB of guest RAM but memory_mib is {memory_mib}")]
    MemoryTooSmall {
        path: PathBuf,
        needed_mib: u64,
        memory_mib: u64,
    },
    #[error("vcpus {vcpus} is outside 1..={max}")]
    VcpusOutOfRange { vcpus: u8, max: u8 },
    #[error("{count} virtio devices (disks and net) given; at most {max} virtio-mmio devices fit")]
    TooManyDisks { count: usize, max: usize },
    #[error(transparent)]
    Disk(#[from] BlockError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    IoThread(#[from] IoThreadError),
    #[error("cannot open {KVM_DEVICE}: {source} (is the kvm module loaded, and may this user open it?)")]
    KvmOpen { source: kvm_ioctls::Error },
    #[error("{KVM_DEVICE} reports KVM API version {version}, expected {KVM_API_VERSION}")]
    KvmApiVersion { version: i32 },
    #[error(
        "{KVM_DEVICE} lacks the required capability {cap} (the host kernel's KVM is too old or a \
         paravirtual KVM without it; run on Linux 4.11 or later with the kvm_intel or kvm_amd module)"
    )]
    KvmCapMissing { cap: &'static str },
    #[error("KVM ioctl {ioctl} failed: {source}")]
    Kvm {
        ioctl: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("allocating {memory_mib} MiB of guest memory: {reason}")]
    GuestMemory { memory_mib: u64, reason: String },
    #[error("loading kernel {path}: {reason}")]
    KernelLoad { path: PathBuf, reason: String },
    #[error("kernel command line of {len} bytes exceeds {max} (or contains a NUL byte)")]
    Cmdline { len: usize, max: usize },
    #[error(transparent)]
    Arch(#[from] ArchError),
    #[error("creating an eventfd for {what}: {source}")]
    EventFd {
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("starting the kernel loader thread: {source}")]
    LoaderThread { source: std::io::Error },
    #[error("starting the thread of vCPU {vcpu}: {source}")]
    VcpuThread { vcpu: u8, source: std::io::Error },
    #[error("installing the vCPU kick signal handler: {source}")]
    KickSignal { source: vmm_sys_util::errno::Error },
}

fn kvm_err(ioctl: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { ioctl, source }
}

/// Opens `/dev/kvm` and checks the API version and the capabilities the VMM needs.
pub fn open_kvm() -> Result<Kvm, VmError> {
    let kvm = Kvm::new().map_err(|source| VmError::KvmOpen { source })?;
    let version = kvm.get_api_version();
    if version != KVM_API_VERSION {
        return Err(VmError::KvmApiVersion { version });
    }
    for (cap, name) in REQUIRED_CAPS {
        if !kvm.check_extension(cap) {
            return Err(VmError::KvmCapMissing { cap: name });
        }
    }
    Ok(kvm)
}

/// The full command line for `config`: base words, one `virtio_mmio.device=` per virtio device (the
/// disks, then the net device), then the caller's extra words.
pub fn build_cmdline(disk_count: usize, extra: &str) -> Result<CString, VmError> {
    let mut cmdline = BASE_CMDLINE.to_string();
    for index in 0..disk_count {
        cmdline.push_str(&format!(
            " virtio_mmio.device=4K@{:#x}:{}",
            layout::virtio_mmio_base(index),
            layout::virtio_mmio_irq(index)
        ));
    }
    if !extra.trim().is_empty() {
        cmdline.push(' ');
        cmdline.push_str(extra.trim());
    }
    let len = cmdline.len();
    if len + 1 > layout::CMDLINE_MAX_BYTES {
        return Err(VmError::Cmdline {
            len,
            max: layout::CMDLINE_MAX_BYTES - 1,
        });
    }
    CString::new(cmdline).map_err(|_| VmError::Cmdline {
        len,
        max: layout::CMDLINE_MAX_BYTES - 1,
    })
}

/// Checks everything about `config` that can be checked without KVM; returns the inspected kernel
/// and the guest command line.
pub fn validate(config: &VmConfig) -> Result<(KernelImage, CString), VmError> {
    let max_mib = layout::MAX_MEMORY_MIB;
    if !(MIN_MEMORY_MIB..=max_mib).contains(&config.memory_mib) {
        return Err(VmError::MemoryOutOfRange {
            memory_mib: config.memory_mib,
            min: MIN_MEMORY_MIB,
            max: max_mib,
        });
    }
    if config.vcpus == 0 || config.vcpus > mptable::MAX_VCPUS {
        return Err(VmError::VcpusOutOfRange {
            vcpus: config.vcpus,
            max: mptable::MAX_VCPUS,
        });
    }
    let virtio_devices = config.disks.len() + usize::from(config.net.is_some());
    if virtio_devices > layout::VIRTIO_MMIO_MAX_DEVICES {
        return Err(VmError::TooManyDisks {
            count: virtio_devices,
            max: layout::VIRTIO_MMIO_MAX_DEVICES,
        });
    }
    let kernel = KernelImage::inspect(&config.kernel)?;
    let ram_bytes = config.memory_mib << 20;
    if kernel.needed_ram_bytes > ram_bytes {
        return Err(VmError::MemoryTooSmall {
            path: config.kernel.clone(),
            needed_mib: kernel.needed_ram_bytes.div_ceil(1 << 20),
            memory_mib: config.memory_mib,
        });
    }
    let cmdline = build_cmdline(virtio_devices, &config.cmdline_extra)?;
    Ok((kernel, cmdline))
}

/// Loads the kernel and returns the guest address of its 64-bit entry and, for a bzImage, its setup
/// header.
fn load_kernel(
    mem: &GuestMemoryMmap,
    kernel: &KernelImage,
) -> Result<
    (
        GuestAddress,
        Option<linux_loader::loader::bootparam::setup_header>,
    ),
    VmError,
> {
    let load_err = |reason: String| VmError::KernelLoad {
        path: kernel.path.clone(),
        reason,
    };
    let mut file = File::open(&kernel.path).map_err(|e| load_err(e.to_string()))?;
    let himem = Some(GuestAddress(layout::HIMEM_START));
    match kernel.format {
        KernelFormat::Elf => {
            let loaded = Elf::load(mem, None, &mut file, himem).map_err(|e| load_err(format!("{e:?}")))?;
            Ok((loaded.kernel_load, None))
        }
        KernelFormat::BzImage => {
            let loaded =
                BzImage::load(mem, None, &mut file, himem).map_err(|e| load_err(format!("{e:?}")))?;
            let entry = GuestAddress(loaded.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET);
            Ok((entry, loaded.setup_header))
        }
    }
}

/// Loads the kernel and writes the command line, zero page, MP table, GDT/IDT and page tables into
/// `mem`. Returns the kernel's 64-bit entry point.
fn write_guest_image(
    mem: &GuestMemoryMmap,
    kernel: &KernelImage,
    cmdline: &CString,
    ram_bytes: u64,
    vcpus: u8,
) -> Result<GuestAddress, VmError> {
    let (entry, setup_header) = load_kernel(mem, kernel)?;
    let params = boot_params::build_boot_params(setup_header, cmdline.as_bytes_with_nul().len(), ram_bytes);
    boot_params::write_boot_params(mem, &params, cmdline)?;
    mptable::write(mem, vcpus)?;
    regs::write_gdt_and_idt(mem)?;
    regs::write_page_tables(mem)?;
    Ok(entry)
}

/// Registers each region of `mem` with KVM as a memory slot; returns where guest RAM is mapped in
/// this process (to find it in `/proc/PID/smaps`).
///
/// # Safety
/// `mem` must stay mapped for as long as `vm_fd` (and thus the slots) exists.
unsafe fn register_memory(vm_fd: &VmFd, mem: &GuestMemoryMmap, memory_mib: u64) -> Result<u64, VmError> {
    let mut guest_ram_host_addr = 0;
    for (slot, region) in (0u32..).zip(mem.iter()) {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|e| VmError::GuestMemory {
                memory_mib,
                reason: e.to_string(),
            })? as u64;
        if region.start_addr() == GuestAddress(layout::RAM_START) {
            guest_ram_host_addr = host;
        }
        let region_desc = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the caller keeps for as long as
        // `vm_fd` exists.
        unsafe { vm_fd.set_user_memory_region(region_desc) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(guest_ram_host_addr)
}

/// The port bus (serial console, i8042, boot timer) and the MMIO bus (one virtio-mmio transport per
/// virtio device: the disks, then net), each interrupt an irqfd registered with `vm_fd` and owned by
/// the device that raises it, each queue's QueueNotify an ioeventfd the I/O thread waits on. Returns
/// the virtio devices for the I/O thread.
fn build_buses(
    vm_fd: &VmFd,
    mem: &GuestMemoryMmap,
    console: ConsoleSink,
    virtio: Vec<(String, Box<dyn VirtioDevice>)>,
    observer: &Arc<dyn VmObserver>,
) -> Result<(Bus, Bus, Vec<Arc<VirtioShared>>), VmError> {
    let new_irq = |what: &'static str, gsi: u32| -> Result<Arc<EventFd>, VmError> {
        let fd = EventFd::new(EFD_NONBLOCK).map_err(|source| VmError::EventFd { what, source })?;
        vm_fd.register_irqfd(&fd, gsi).map_err(kvm_err("KVM_IRQFD"))?;
        Ok(Arc::new(fd))
    };
    let mut pio = Bus::new();
    let serial_irq = new_irq("serial", layout::SERIAL_IRQ)?;
    let serial = SerialConsole::new(serial_irq, console, observer.clone());
    pio.insert(
        u64::from(layout::SERIAL_PORT_BASE),
        u64::from(layout::SERIAL_PORT_LEN),
        Arc::new(Mutex::new(serial)),
    )?;
    pio.insert(
        u64::from(layout::I8042_DATA_PORT),
        i8042::PORT_RANGE_LEN,
        Arc::new(Mutex::new(I8042::default())),
    )?;
    pio.insert(
        u64::from(layout::BOOT_TIMER_PORT),
        1,
        Arc::new(Mutex::new(BootTimer::new(observer.clone()))),
    )?;
    let mut mmio = Bus::new();
    let mut shared_devices = Vec::with_capacity(virtio.len());
    for (index, (name, device)) in virtio.into_iter().enumerate() {
        let base = layout::virtio_mmio_base(index);
        let irq = new_irq("virtio", layout::virtio_mmio_irq(index))?;
        let shared =
            VirtioShared::new(&name, device, mem.clone(), irq, observer.clone()).map_err(|source| {
                VmError::EventFd {
                    what: "virtio queue notification",
                    source,
                }
            })?;
        let notify = IoEventAddress::Mmio(base + u64::from(VIRTIO_MMIO_QUEUE_NOTIFY));
        for (queue, event) in (0u32..).zip(shared.queue_events()) {
            // Without the ioeventfd the write still reaches the transport, which forwards it to the
            // same eventfd: slower (a VM exit per notification), never wrong.
            if let Err(err) = vm_fd.register_ioevent(event, &notify, queue) {
                observer.warning(&format!(
                    "{name}: KVM_IOEVENTFD for queue {queue} failed ({err}); notifications exit to the VMM"
                ));
            }
        }
        let shared = Arc::new(shared);
        mmio.insert(
            base,
            layout::VIRTIO_MMIO_DEVICE_BYTES,
            Arc::new(Mutex::new(MmioTransport::new(shared.clone()))),
        )?;
        shared_devices.push(shared);
    }
    Ok((pio, mmio, shared_devices))
}

/// Creates `count` vCPUs with their CPUID, FPU, MSRs and LAPIC set up; vCPU 0 also gets the boot
/// registers that enter the kernel at `entry`.
fn create_vcpus(
    kvm: &Kvm,
    vm_fd: &VmFd,
    count: u8,
    entry: GuestAddress,
    observer: &dyn VmObserver,
) -> Result<Vec<(u8, VcpuFd)>, VmError> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    let mut vcpus = Vec::with_capacity(usize::from(count));
    for index in 0..count {
        let vcpu = vm_fd
            .create_vcpu(u64::from(index))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let mut cpuid = supported.clone();
        cpuid::patch_for_vcpu(&mut cpuid, index, count);
        vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
        let accepted = regs::setup_fpu_and_msrs(&vcpu, index)?;
        if accepted < regs::BOOT_MSR_COUNT {
            observer.warning(&format!(
                "vCPU {index}: KVM accepted {accepted} of {} boot MSRs",
                regs::BOOT_MSR_COUNT
            ));
        }
        regs::setup_lapic_lint(&vcpu, index)?;
        if index == 0 {
            regs::setup_boot_registers(&vcpu, index, entry)?;
        }
        vcpus.push((index, vcpu));
    }
    Ok(vcpus)
}

/// A created VM, not yet running. Owns the KVM descriptors, guest memory and devices.
pub struct Vm {
    _kvm: Kvm,
    _vm_fd: VmFd,
    _mem: GuestMemoryMmap,
    /// Each vCPU with its index (a `u8`, as `VmConfig::vcpus` is).
    vcpus: Vec<(u8, VcpuFd)>,
    shared: Arc<VcpuShared>,
    exit_rx: mpsc::Receiver<ExitReason>,
    /// Serves the virtio devices; stopped and joined after the vCPUs (also when `Vm` is dropped).
    io_thread: IoThread,
}

/// The virtio devices' counters, readable after the VM stopped (see [`Vm::device_report`]).
#[derive(Clone)]
pub struct DeviceReport {
    devices: Vec<Arc<VirtioShared>>,
}

impl DeviceReport {
    /// Each device's name and counters.
    pub fn counters(&self) -> Vec<(String, Vec<(&'static str, u64)>)> {
        self.devices
            .iter()
            .map(|d| (d.name().to_string(), d.counters()))
            .collect()
    }

    /// One `EventKind::DeviceCounters` per device.
    pub fn events(&self) -> Vec<EventKind> {
        self.counters()
            .into_iter()
            .map(|(device, counters)| EventKind::DeviceCounters {
                device,
                counters: format_counters(&counters),
            })
            .collect()
    }
}

/// Stops a running VM from any thread.
#[derive(Clone)]
pub struct StopHandle {
    shared: Arc<VcpuShared>,
}

impl StopHandle {
    pub fn stop(&self) {
        self.shared.stop(ExitReason::Stopped);
    }

    /// Kick signals sent to vCPU threads so far: at most one per vCPU thread for a stop, however
    /// long a thread takes to notice it.
    pub fn kicks_sent(&self) -> u64 {
        self.shared.kicks_sent.load(Ordering::SeqCst)
    }
}

impl Vm {
    /// Validates `config`, then creates and configures the VM. Reports
    /// [`EventKind::VmCreatedKernelLoaded`] to `observer` when done.
    pub fn create(config: VmConfig, observer: Arc<dyn VmObserver>) -> Result<Vm, VmError> {
        let (kernel, cmdline) = validate(&config)?;
        let disks = config
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| {
                Block::open(
                    &d.path,
                    d.read_only,
                    &format!("cvbench-vd{}", (b'a'..=b'z').nth(i).map_or('?', char::from)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ram_bytes = config.memory_mib << 20;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(
            GuestAddress(layout::RAM_START),
            usize_from_u64(ram_bytes),
        )])
        .map_err(|e| VmError::GuestMemory {
            memory_mib: config.memory_mib,
            reason: e.to_string(),
        })?;
        // Loading the kernel (megabytes for a vmlinux) and writing the boot structures only needs the
        // memory mapping, so it runs while KVM creates the VM; both are on the path to first entry.
        let guest_image = {
            let (mem, kernel, vcpus) = (mem.clone(), kernel.clone(), config.vcpus);
            std::thread::Builder::new()
                .name("kernel-loader".into())
                .spawn(move || write_guest_image(&mem, &kernel, &cmdline, ram_bytes, vcpus))
                .map_err(|source| VmError::LoaderThread { source })?
        };

        let kvm = open_kvm()?;
        let vm_fd = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        vm_fd
            .set_tss_address(usize_from_u64(layout::KVM_TSS_ADDRESS))
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm_fd.create_irq_chip().map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm_fd.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        // SAFETY: the returned `Vm` keeps `mem` for as long as `vm_fd` (and thus the slots) exists.
        let guest_ram_host_addr = unsafe { register_memory(&vm_fd, &mem, config.memory_mib) }?;
        let entry = guest_image.join().map_err(|_| VmError::KernelLoad {
            path: kernel.path.clone(),
            reason: "the kernel loader thread panicked".into(),
        })??;

        let mut virtio: Vec<(String, Box<dyn VirtioDevice>)> = disks
            .into_iter()
            .enumerate()
            .map(|(i, block)| {
                let name = format!("vd{}", (b'a'..=b'z').nth(i).map_or('?', char::from));
                (name, Box::new(block) as Box<dyn VirtioDevice>)
            })
            .collect();
        if let Some(net) = config.net {
            let tap = match net.tap {
                TapSource::Name(name) => Tap::open(&name)?,
                TapSource::Fd(fd) => Tap::from_fd(fd)?,
            };
            virtio.push(("eth0".to_string(), Box::new(Net::new(Box::new(tap), net.mac))));
        }
        let (pio, mmio, virtio) = build_buses(&vm_fd, &mem, config.console, virtio, &observer)?;
        let io_thread = IoThread::new(virtio, observer.clone())?;
        let vcpus = create_vcpus(&kvm, &vm_fd, config.vcpus, entry, observer.as_ref())?;

        let (exit_tx, exit_rx) = mpsc::channel();
        let shared = Arc::new(VcpuShared {
            mem: mem.clone(),
            pio,
            mmio,
            observer: observer.clone(),
            unknown: UnknownAccessLimiter::default(),
            stopping: AtomicBool::new(false),
            exit_tx: Mutex::new(Some(exit_tx)),
            kicks_sent: AtomicU64::new(0),
        });
        let vm = Vm {
            _kvm: kvm,
            _vm_fd: vm_fd,
            _mem: mem,
            vcpus,
            shared,
            exit_rx,
            io_thread,
        };
        observer.event(VmEvent::now(EventKind::VmCreatedKernelLoaded {
            guest_ram_host_addr,
            guest_ram_bytes: ram_bytes,
        }));
        Ok(vm)
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: self.shared.clone(),
        }
    }

    /// The virtio devices' counters (read them after [`Vm::run`] returns for the final figures).
    pub fn device_report(&self) -> DeviceReport {
        DeviceReport {
            devices: self.io_thread.devices().to_vec(),
        }
    }

    /// Runs the vCPUs until the guest resets, faults, or a [`StopHandle`] stops the VM, and returns
    /// why. All vCPU threads and the I/O thread have ended when this returns; the I/O thread served
    /// every notification the guest made before its vCPUs stopped.
    pub fn run(mut self) -> Result<ExitReason, VmError> {
        install_kick_handler().map_err(|source| VmError::KickSignal { source })?;
        // Before the vCPUs: a notification has a thread to wake from the first guest instruction.
        self.io_thread.start()?;
        let mut threads = Vec::with_capacity(self.vcpus.len());
        for (index, vcpu) in self.vcpus {
            let shared = self.shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || crate::seccomp::vcpu_thread(|| run_vcpu(index, vcpu, &shared)));
            match thread {
                Ok(handle) => threads.push(handle),
                Err(source) => {
                    self.shared.stop(ExitReason::Stopped);
                    stop_and_join(threads, &self.shared);
                    self.io_thread.stop_and_join();
                    return Err(VmError::VcpuThread { vcpu: index, source });
                }
            }
        }
        // Every path that stops a vCPU records a reason first, so this only fails if all senders
        // are gone, which cannot happen while `shared` holds one; treat it as a host stop.
        let reason = self.exit_rx.recv().unwrap_or(ExitReason::Stopped);
        stop_and_join(threads, &self.shared);
        self.io_thread.stop_and_join();
        Ok(reason)
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn config(kernel: PathBuf, memory_mib: u64, vcpus: u8) -> VmConfig {
        VmConfig {
            kernel,
            cmdline_extra: String::new(),
            memory_mib,
            vcpus,
            disks: Vec::new(),
            net: None,
            console: Box::new(std::io::sink()),
        }
    }

    fn probe_file() -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, crate::probe::PROBE_ELF).unwrap();
        f
    }

    #[test]
    fn the_vcpu_kick_depends_on_immediate_exit_and_its_absence_is_named() {
        assert!(REQUIRED_CAPS
            .iter()
            .any(|(cap, name)| *cap == Cap::ImmediateExit && *name == "KVM_CAP_IMMEDIATE_EXIT"));
        let err = VmError::KvmCapMissing {
            cap: "KVM_CAP_IMMEDIATE_EXIT",
        }
        .to_string();
        assert!(err.contains("KVM_CAP_IMMEDIATE_EXIT"), "{err}");
        assert!(err.contains("Linux 4.11"), "{err}");
    }

    #[test]
    fn cmdline_lists_each_disk_and_appends_extra_words_last() {
        let c = build_cmdline(2, "root=/dev/vda ro -- idle --x").unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            "console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd virtio_mmio.device=4K@0xd0000000:5 \
             virtio_mmio.device=4K@0xd0001000:6 root=/dev/vda ro -- idle --x"
        );
        assert!(matches!(
            build_cmdline(0, &"x".repeat(3000)),
            Err(VmError::Cmdline { .. })
        ));
        assert!(matches!(build_cmdline(0, "a\0b"), Err(VmError::Cmdline { .. })));
    }

    #[test]
    fn validation_names_the_bad_value() {
        let probe = probe_file();
        assert!(validate(&config(probe.path().to_path_buf(), 16, 1)).is_ok());
        assert!(matches!(
            validate(&config(probe.path().to_path_buf(), 1, 1)),
            Err(VmError::MemoryOutOfRange { memory_mib: 1, .. })
        ));
        assert!(matches!(
            validate(&config(probe.path().to_path_buf(), 8192, 1)),
            Err(VmError::MemoryOutOfRange { memory_mib: 8192, .. })
        ));
        assert!(matches!(
            validate(&config(probe.path().to_path_buf(), 16, 0)),
            Err(VmError::VcpusOutOfRange { vcpus: 0, .. })
        ));
        let missing = PathBuf::from("/nonexistent/vmlinux");
        let err = validate(&config(missing.clone(), 16, 1)).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vmlinux"), "{err}");
    }

    #[test]
    fn a_kernel_larger_than_guest_ram_is_refused_before_kvm() {
        // An ELF whose segment ends at 64 MiB.
        let mut elf = crate::probe::PROBE_ELF.to_vec();
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        elf[phoff + 0x28..phoff + 0x30].copy_from_slice(&(64u64 << 20).to_le_bytes());
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &elf).unwrap();
        let err = validate(&config(f.path().to_path_buf(), 16, 1)).unwrap_err();
        assert!(
            matches!(err, VmError::MemoryTooSmall { memory_mib: 16, .. }),
            "{err}"
        );
    }
}
