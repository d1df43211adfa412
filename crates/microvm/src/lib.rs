//! A minimal KVM microVM on the rust-vmm crates: guest memory, the x86_64 boot path (64-bit Linux
//! boot protocol), vCPU threads, an 8250 serial console, i8042 reset, a boot-timer port and
//! virtio-mmio block and net devices served by one I/O thread. [`builder::Vm::create`] turns a [`builder::VmConfig`] into a VM and
//! [`builder::Vm::run`] runs it until it stops; the `cvbench-vmm` binary wraps that as one process
//! per VM.
//!
//! The crate never prints: events (with `CLOCK_MONOTONIC` timestamps) and warnings go to a
//! [`events::VmObserver`].

pub mod arch;
pub mod builder;
pub mod devices;
pub mod events;
pub mod kernel;
pub mod layout;
pub mod probe;
pub mod seccomp;
pub mod vcpu;

pub use builder::{DeviceReport, DiskConfig, NetConfig, StopHandle, TapSource, Vm, VmConfig, VmError};
pub use events::{EventKind, VmEvent, VmObserver};
pub use vcpu::ExitReason;
