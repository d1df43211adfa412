//! The vCPU run loop: one thread per vCPU, each running `KVM_RUN` and dispatching port and MMIO exits
//! to the buses. Every way a guest can stop — i8042 reset, triple fault, a failed entry, an internal
//! KVM error — ends as an [`ExitReason`] handed to the VM, never as a panic. Unknown port and MMIO
//! accesses are answered with all-ones (reads) or dropped (writes) and reported, rate-limited.
//!
//! Stopping a vCPU ("the kick") follows Firecracker: the stopper sets `stopping`, then sends each
//! vCPU thread one [`kick_signal`]. The handler, running on the vCPU thread, sets `immediate_exit` in
//! that thread's `kvm_run`, so whichever side of `KVM_RUN` the signal lands on, the vCPU leaves the
//! guest: inside `KVM_RUN` the signal itself forces the exit; between the `stopping` check and
//! `KVM_RUN` the flag makes the next `KVM_RUN` return `EINTR` at once. One signal per thread is
//! enough and nothing polls.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::devices::bus::{Bus, BusAction};
use crate::events::{EventKind, VmEvent, VmObserver};

/// Why a VM stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExitReason {
    #[error("guest reset (i8042 0xfe), treated as power-off")]
    GuestReset,
    #[error("stopped by the host")]
    Stopped,
    #[error("vCPU {vcpu} triple-faulted (KVM_EXIT_SHUTDOWN)")]
    TripleFault { vcpu: u8 },
    #[error("vCPU {vcpu} failed to enter the guest (hardware reason {hardware_reason:#x})")]
    FailEntry { vcpu: u8, hardware_reason: u64 },
    #[error(
        "vCPU {vcpu}: KVM internal error (KVM_EXIT_INTERNAL_ERROR, suberror {suberror}) at rip {rip:#x}"
    )]
    InternalError { vcpu: u8, suberror: u32, rip: u64 },
    #[error("vCPU {vcpu} halted with interrupts off and no in-kernel wake-up")]
    Halted { vcpu: u8 },
    #[error("vCPU {vcpu}: system event {kind} from KVM")]
    SystemEvent { vcpu: u8, kind: u32 },
    #[error("vCPU {vcpu}: KVM_RUN failed: {errno}")]
    RunFailed { vcpu: u8, errno: i32 },
    #[error("vCPU {vcpu}: unhandled exit {exit}")]
    UnhandledExit { vcpu: u8, exit: String },
}

impl ExitReason {
    /// A reset or a host stop is the normal end of a VM; anything else is a guest or VMM failure.
    pub fn is_clean(&self) -> bool {
        matches!(self, ExitReason::GuestReset | ExitReason::Stopped)
    }
}

/// Reports the first few unknown accesses, then every power of two, so a guest probing ports cannot
/// flood the log.
#[derive(Default)]
pub struct UnknownAccessLimiter {
    count: AtomicU64,
}

impl UnknownAccessLimiter {
    /// Whether access number `n` (counting from 1) should be reported.
    pub fn should_report(&self) -> bool {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        n <= 16 || n.is_power_of_two()
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// State shared by all vCPU threads of one VM.
pub struct VcpuShared {
    /// Guest RAM, for reading the instruction at a failed vCPU's rip.
    pub mem: GuestMemoryMmap,
    pub pio: Bus,
    pub mmio: Bus,
    pub observer: Arc<dyn VmObserver>,
    pub unknown: UnknownAccessLimiter,
    pub stopping: AtomicBool,
    /// The first exit reason wins; later ones (other vCPUs kicked out) are dropped.
    pub exit_tx: Mutex<Option<Sender<ExitReason>>>,
    /// Kick signals sent to vCPU threads: one per thread per stop (more would mean polling).
    pub kicks_sent: AtomicU64,
}

impl VcpuShared {
    /// Records `reason` as the VM's exit reason if none was recorded yet, and asks every vCPU to stop.
    pub fn stop(&self, reason: ExitReason) {
        self.stopping.store(true, Ordering::SeqCst);
        let tx = self.exit_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = tx {
            // The receiver lives as long as the VM runs; a failed send means nobody is waiting.
            let _ = tx.send(reason);
        }
    }

    fn unknown_access(&self, what: &str, addr: u64, len: usize) {
        if self.unknown.should_report() {
            self.observer.warning(&format!(
                "{what} of {len} byte(s) at {addr:#x}: no device (access #{})",
                self.unknown.count()
            ));
        }
    }

    /// Handles one read on `bus`: the device's answer, or all-ones.
    fn bus_read(&self, bus: &Bus, what: &str, addr: u64, data: &mut [u8]) {
        if !bus.read(addr, data) {
            data.fill(0xff);
            self.unknown_access(what, addr, data.len());
        }
    }

    /// Handles one write on `bus`; `Some` when the guest asked the VM to stop.
    fn bus_write(&self, bus: &Bus, what: &str, addr: u64, data: &[u8]) -> Option<ExitReason> {
        match bus.write(addr, data) {
            Some(BusAction::Reset) => Some(ExitReason::GuestReset),
            Some(BusAction::Continue) => None,
            None => {
                self.unknown_access(what, addr, data.len());
                None
            }
        }
    }

    /// Handles one port read: the device's answer, or all-ones.
    pub fn port_in(&self, port: u16, data: &mut [u8]) {
        self.bus_read(&self.pio, "port read", u64::from(port), data);
    }

    /// Handles one port write; `Some` when the guest asked the VM to stop.
    pub fn port_out(&self, port: u16, data: &[u8]) -> Option<ExitReason> {
        self.bus_write(&self.pio, "port write", u64::from(port), data)
    }

    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        self.bus_read(&self.mmio, "MMIO read", addr, data);
    }

    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> Option<ExitReason> {
        self.bus_write(&self.mmio, "MMIO write", addr, data)
    }
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

thread_local! {
    /// This thread's `kvm_run`, while [`run_vcpu`] runs on it; null otherwise. A const initialiser and
    /// no destructor, so reading it from a signal handler allocates nothing and takes no lock.
    static KICK_TARGET: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// `immediate_exit` of `run` as an atomic: the signal handler and the vCPU loop share it on one
/// thread, and the kernel reads it at the next `KVM_RUN`.
///
/// # Safety
/// `run` must point to a live, mapped `kvm_run`.
unsafe fn immediate_exit<'a>(run: *mut kvm_run) -> &'a AtomicU8 {
    // SAFETY: the caller guarantees `run` is live; `immediate_exit` is a `u8`, which has the size and
    // alignment of `AtomicU8`, and every access to it in this process goes through this atomic.
    unsafe { AtomicU8::from_ptr(std::ptr::addr_of_mut!((*run).immediate_exit)) }
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // `try_with` fails only while the thread's TLS is being torn down, when there is no vCPU left.
    let run = KICK_TARGET.try_with(Cell::get).unwrap_or(std::ptr::null_mut());
    if !run.is_null() {
        // SAFETY: KICK_TARGET is non-null only while `run_vcpu` on this thread owns the `VcpuFd`
        // whose mapping `run` points into (KickTarget clears it before the `VcpuFd` is dropped).
        unsafe { immediate_exit(run) }.store(1, Ordering::SeqCst);
    }
}

/// Installs the kick handler (process-wide; idempotent).
pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    register_signal_handler(kick_signal(), on_kick)
}

/// Stops every vCPU thread: `stopping` first, then one kick per thread, then joins them. Returns
/// when all have ended.
pub fn stop_and_join(threads: Vec<std::thread::JoinHandle<ExitReason>>, shared: &VcpuShared) {
    shared.stopping.store(true, Ordering::SeqCst);
    for thread in &threads {
        // A thread that has already returned cannot be signalled and needs no kick; its handle is
        // not joined yet, so the pthread id is still valid.
        if thread.kill(kick_signal()).is_ok() {
            shared.kicks_sent.fetch_add(1, Ordering::SeqCst);
        }
    }
    for thread in threads {
        // A vCPU thread never panics by design; if one did, its reason is lost but the VM is down.
        let _ = thread.join();
    }
}

/// Publishes a vCPU's `kvm_run` to the kick handler for as long as it lives.
struct KickTarget;

impl KickTarget {
    fn publish(vcpu: &mut VcpuFd) -> KickTarget {
        let run: *mut kvm_run = vcpu.get_kvm_run();
        KICK_TARGET.with(|target| target.set(run));
        KickTarget
    }
}

impl Drop for KickTarget {
    fn drop(&mut self) {
        KICK_TARGET.with(|target| target.set(std::ptr::null_mut()));
    }
}

/// Runs `vcpu` until the VM stops; returns why this vCPU stopped (also recorded in `shared`).
pub fn run_vcpu(index: u8, mut vcpu: VcpuFd, shared: &VcpuShared) -> ExitReason {
    // Before the first `stopping` check: a kick that lands from here on sets `immediate_exit`; one
    // that landed earlier is covered by that check, since `stopping` is set before any kick is sent.
    // Dropped (cleared) before `vcpu`, which the function owns.
    let _kick_target = KickTarget::publish(&mut vcpu);
    let mut first_entry = index == 0;
    let reason = loop {
        if shared.stopping.load(Ordering::SeqCst) {
            break ExitReason::Stopped;
        }
        if first_entry {
            first_entry = false;
            shared.observer.event(VmEvent::now(EventKind::FirstVcpuEntry));
        }
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(err) if err.errno() == libc::EINTR || err.errno() == libc::EAGAIN => {
                // A kick (or any signal) ended this entry. Clear the flag so a later entry is not
                // refused for nothing; `stopping`, checked next, says whether to go on.
                // SAFETY: the pointer comes from `vcpu`, which is alive and mapped here.
                unsafe { immediate_exit(vcpu.get_kvm_run()) }.store(0, Ordering::SeqCst);
                continue;
            }
            Err(err) => {
                break ExitReason::RunFailed {
                    vcpu: index,
                    errno: err.errno(),
                }
            }
        };
        let stop = match exit {
            VcpuExit::IoIn(port, data) => {
                shared.port_in(port, data);
                None
            }
            VcpuExit::IoOut(port, data) => shared.port_out(port, data),
            VcpuExit::MmioRead(addr, data) => {
                shared.mmio_read(addr, data);
                None
            }
            VcpuExit::MmioWrite(addr, data) => shared.mmio_write(addr, data),
            VcpuExit::Hlt => Some(ExitReason::Halted { vcpu: index }),
            VcpuExit::Shutdown => Some(ExitReason::TripleFault { vcpu: index }),
            VcpuExit::FailEntry(hardware_reason, _) => Some(ExitReason::FailEntry {
                vcpu: index,
                hardware_reason,
            }),
            VcpuExit::InternalError => {
                if emulate_int3(&mut vcpu, &shared.mem) {
                    continue;
                }
                Some(internal_error(index, &mut vcpu))
            }
            VcpuExit::SystemEvent(kind, _) => Some(ExitReason::SystemEvent { vcpu: index, kind }),
            VcpuExit::Intr | VcpuExit::IrqWindowOpen => None,
            other => Some(ExitReason::UnhandledExit {
                vcpu: index,
                exit: format!("{other:?}"),
            }),
        };
        if let Some(reason) = stop {
            break reason;
        }
    };
    if reason == ExitReason::GuestReset {
        shared.observer.event(VmEvent::now(EventKind::GuestReset));
    }
    shared.stop(reason.clone());
    reason
}

/// `int3` opcode.
const INT3: u8 = 0xcc;
/// #BP exception vector.
const BREAKPOINT_VECTOR: u8 = 3;

/// A paravirtual KVM (PVM) cannot emulate `int3` and reports an internal error, although Linux uses
/// `int3` routinely (its boot-time self-test, text patching). When the faulting instruction is an
/// `int3`, deliver the #BP trap to the guest ourselves: advance rip past it (a trap reports the next
/// instruction) and inject vector 3. Returns whether it did. Never triggers on hardware KVM, which
/// handles `int3` in the guest.
fn emulate_int3(vcpu: &mut VcpuFd, mem: &GuestMemoryMmap) -> bool {
    let Ok(mut regs) = vcpu.get_regs() else {
        return false;
    };
    let Ok(translation) = vcpu.translate_gva(regs.rip) else {
        return false;
    };
    if translation.valid == 0 {
        return false;
    }
    let opcode: Result<u8, _> = mem.read_obj(GuestAddress(translation.physical_address));
    if opcode.ok() != Some(INT3) {
        return false;
    }
    let Ok(mut events) = vcpu.get_vcpu_events() else {
        return false;
    };
    regs.rip += 1;
    events.exception.injected = 1;
    events.exception.nr = BREAKPOINT_VECTOR;
    events.exception.has_error_code = 0;
    events.exception.pending = 0;
    vcpu.set_regs(&regs).is_ok() && vcpu.set_vcpu_events(&events).is_ok()
}

/// The stop reason for a KVM internal error, with what KVM can still tell about the failed vCPU (the
/// suberror, the guest rip) so it says where the guest was.
fn internal_error(index: u8, vcpu: &mut VcpuFd) -> ExitReason {
    // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, so `internal` is the active member of the
    // kvm_run union, and the struct is plain integers.
    let suberror = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
    let rip = vcpu.get_regs().map_or(0, |r| r.rip);
    ExitReason::InternalError {
        vcpu: index,
        suberror,
        rip,
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::devices::i8042::{I8042, PORT_RANGE_LEN};
    use crate::events::NullObserver;
    use crate::layout::I8042_DATA_PORT;

    fn shared() -> (VcpuShared, mpsc::Receiver<ExitReason>) {
        let (tx, rx) = mpsc::channel();
        let mut pio = Bus::new();
        pio.insert(
            u64::from(I8042_DATA_PORT),
            PORT_RANGE_LEN,
            Arc::new(Mutex::new(I8042::default())),
        )
        .unwrap();
        let shared = VcpuShared {
            mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap(),
            pio,
            mmio: Bus::new(),
            observer: Arc::new(NullObserver),
            unknown: UnknownAccessLimiter::default(),
            stopping: AtomicBool::new(false),
            exit_tx: Mutex::new(Some(tx)),
            kicks_sent: AtomicU64::new(0),
        };
        (shared, rx)
    }

    #[test]
    fn unknown_ports_and_mmio_read_as_ones_and_writes_are_dropped() {
        let (shared, _rx) = shared();
        let mut data = [0u8; 4];
        shared.port_in(0x80, &mut data[..1]);
        assert_eq!(data[0], 0xff);
        shared.mmio_read(0xdead_0000, &mut data);
        assert_eq!(data, [0xff; 4]);
        assert_eq!(shared.port_out(0xcf8, &[1, 2, 3, 4]), None);
        assert_eq!(shared.mmio_write(0xfee0_1000, &[1]), None);
        assert_eq!(shared.unknown.count(), 4);
        assert!(!shared.stopping.load(Ordering::SeqCst));
    }

    #[test]
    fn i8042_reset_stops_the_vm_and_the_first_reason_wins() {
        let (shared, rx) = shared();
        let reason = shared.port_out(0x64, &[0xfe]);
        assert_eq!(reason, Some(ExitReason::GuestReset));
        shared.stop(ExitReason::GuestReset);
        shared.stop(ExitReason::TripleFault { vcpu: 1 });
        assert_eq!(rx.recv().unwrap(), ExitReason::GuestReset);
        assert!(rx.try_recv().is_err());
        assert!(shared.stopping.load(Ordering::SeqCst));
    }

    #[test]
    fn the_limiter_reports_the_first_sixteen_then_powers_of_two() {
        let limiter = UnknownAccessLimiter::default();
        let reported: Vec<u64> = (1..=1000)
            .filter(|_| limiter.should_report())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|x| x as u64)
            .collect();
        let expected: Vec<u64> = (1..=16).chain([32, 64, 128, 256, 512]).collect();
        assert_eq!(reported, expected);
    }
}
