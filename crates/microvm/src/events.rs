//! What a running VM reports to whoever drives it, and the line format the `cvbench-vmm` binary uses
//! to pass those reports to another process.
//!
//! Every event carries the raw `CLOCK_MONOTONIC` time in nanoseconds at which it happened, taken at
//! the event itself (the port exit, the ioctl) so another process on the same host can place it on
//! its own monotonic clock (`std::time::Instant` is `CLOCK_MONOTONIC` on Linux).

use std::fmt;

use crate::vcpu::ExitReason;

/// Prefix of every event line the VMM binary writes.
pub const EVENT_LINE_PREFIX: &str = "cvbench-vmm-event";

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Guest memory exists, the kernel and boot structures are in it, vCPUs are configured. Carries
    /// where guest RAM is mapped in the VMM process, so a prober can find it in `/proc/PID/smaps`.
    VmCreatedKernelLoaded {
        guest_ram_host_addr: u64,
        guest_ram_bytes: u64,
    },
    /// The boot vCPU is about to enter the guest for the first time.
    FirstVcpuEntry,
    /// The guest wrote `value` to the boot-timer port.
    BootTimer { value: u8 },
    /// The guest asked for a reset (i8042 0xfe); the VMM treats it as power-off.
    GuestReset,
    /// The VM stopped, for this reason (in the event line as a stable name and `key=value` fields).
    Stopped { reason: ExitReason },
    /// A virtio device's counters at the end of the run (`name=value` words; `idle` when all are
    /// zero): requests served and each kind of malformed request, by name.
    DeviceCounters { device: String, counters: String },
}

impl EventKind {
    /// The event's name in event lines.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::VmCreatedKernelLoaded { .. } => "vm_created_kernel_loaded",
            EventKind::FirstVcpuEntry => "first_vcpu_entry",
            EventKind::BootTimer { .. } => "boot_timer",
            EventKind::GuestReset => "guest_reset",
            EventKind::Stopped { .. } => "vm_stopped",
            EventKind::DeviceCounters { .. } => "device_counters",
        }
    }
}

/// One event with its `CLOCK_MONOTONIC` timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEvent {
    pub kind: EventKind,
    pub monotonic_ns: u64,
}

impl VmEvent {
    /// Timestamps `kind` now.
    pub fn now(kind: EventKind) -> Self {
        VmEvent {
            kind,
            monotonic_ns: monotonic_now_ns(),
        }
    }

    /// Parses a line written by [`fmt::Display`]; `None` for any other line.
    pub fn parse_line(line: &str) -> Option<VmEvent> {
        let mut words = line.trim_end().splitn(4, ' ');
        if words.next()? != EVENT_LINE_PREFIX {
            return None;
        }
        let name = words.next()?;
        let monotonic_ns = words.next()?.parse().ok()?;
        let detail = words.next().unwrap_or("");
        let kind = match name {
            "vm_created_kernel_loaded" => {
                let (addr, bytes) = detail.strip_prefix("guest_ram=")?.split_once('+')?;
                EventKind::VmCreatedKernelLoaded {
                    guest_ram_host_addr: u64::from_str_radix(addr.trim_start_matches("0x"), 16).ok()?,
                    guest_ram_bytes: u64::from_str_radix(bytes.trim_start_matches("0x"), 16).ok()?,
                }
            }
            "first_vcpu_entry" => EventKind::FirstVcpuEntry,
            "boot_timer" => EventKind::BootTimer {
                value: u8::from_str_radix(detail.trim_start_matches("0x"), 16).ok()?,
            },
            "guest_reset" => EventKind::GuestReset,
            "vm_stopped" => EventKind::Stopped {
                reason: parse_exit_reason(detail)?,
            },
            "device_counters" => {
                let (device, counters) = detail.split_once(' ')?;
                EventKind::DeviceCounters {
                    device: device.to_string(),
                    counters: counters.to_string(),
                }
            }
            _ => return None,
        };
        Some(VmEvent { kind, monotonic_ns })
    }
}

impl fmt::Display for VmEvent {
    /// `cvbench-vmm-event <name> <monotonic ns>[ <detail>]`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{EVENT_LINE_PREFIX} {} {}",
            self.kind.name(),
            self.monotonic_ns
        )?;
        match &self.kind {
            EventKind::VmCreatedKernelLoaded {
                guest_ram_host_addr,
                guest_ram_bytes,
            } => {
                write!(f, " guest_ram={guest_ram_host_addr:#x}+{guest_ram_bytes:#x}")
            }
            EventKind::BootTimer { value } => write!(f, " {value:#04x}"),
            EventKind::Stopped { reason } => write!(f, " {}", exit_reason_words(reason)),
            EventKind::DeviceCounters { device, counters } => write!(
                f,
                " {} {}",
                device.replace([' ', '\n'], "_"),
                counters.replace('\n', " ")
            ),
            _ => Ok(()),
        }
    }
}

/// `reason` as event-line words: a stable name, then `key=value` fields (`exit=` last: it takes the
/// rest of the line).
fn exit_reason_words(reason: &ExitReason) -> String {
    match reason {
        ExitReason::GuestReset => "guest_reset".into(),
        ExitReason::Stopped => "host_stop".into(),
        ExitReason::TripleFault { vcpu } => format!("triple_fault vcpu={vcpu}"),
        ExitReason::FailEntry {
            vcpu,
            hardware_reason,
        } => format!("fail_entry vcpu={vcpu} hardware_reason={hardware_reason:#x}"),
        ExitReason::InternalError { vcpu, suberror, rip } => {
            format!("internal_error vcpu={vcpu} suberror={suberror} rip={rip:#x}")
        }
        ExitReason::Halted { vcpu } => format!("halted vcpu={vcpu}"),
        ExitReason::SystemEvent { vcpu, kind } => format!("system_event vcpu={vcpu} kind={kind}"),
        ExitReason::RunFailed { vcpu, errno } => format!("run_failed vcpu={vcpu} errno={errno}"),
        ExitReason::UnhandledExit { vcpu, exit } => {
            format!(
                "unhandled_exit vcpu={vcpu} exit={}",
                exit.replace(['\n', '\r'], " ")
            )
        }
    }
}

/// The reason [`exit_reason_words`] wrote; `None` for anything else.
fn parse_exit_reason(words: &str) -> Option<ExitReason> {
    let (name, fields) = words.split_once(' ').unwrap_or((words, ""));
    let field = |key: &str| {
        fields
            .split(' ')
            .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let vcpu = || field("vcpu")?.parse::<u8>().ok();
    let hex = |key: &str| u64::from_str_radix(field(key)?.trim_start_matches("0x"), 16).ok();
    Some(match name {
        "guest_reset" => ExitReason::GuestReset,
        "host_stop" => ExitReason::Stopped,
        "triple_fault" => ExitReason::TripleFault { vcpu: vcpu()? },
        "fail_entry" => ExitReason::FailEntry {
            vcpu: vcpu()?,
            hardware_reason: hex("hardware_reason")?,
        },
        "internal_error" => ExitReason::InternalError {
            vcpu: vcpu()?,
            suberror: field("suberror")?.parse().ok()?,
            rip: hex("rip")?,
        },
        "halted" => ExitReason::Halted { vcpu: vcpu()? },
        "system_event" => ExitReason::SystemEvent {
            vcpu: vcpu()?,
            kind: field("kind")?.parse().ok()?,
        },
        "run_failed" => ExitReason::RunFailed {
            vcpu: vcpu()?,
            errno: field("errno")?.parse().ok()?,
        },
        "unhandled_exit" => ExitReason::UnhandledExit {
            vcpu: vcpu()?,
            exit: fields.split_once("exit=")?.1.to_string(),
        },
        _ => return None,
    })
}

/// Receives events and diagnostics from a VM. Called from vCPU threads.
pub trait VmObserver: Send + Sync {
    fn event(&self, event: VmEvent);
    /// Something odd the guest did that the VMM survived (unknown port, malformed request).
    fn warning(&self, message: &str);
}

/// An observer that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullObserver;

impl VmObserver for NullObserver {
    fn event(&self, _event: VmEvent) {}
    fn warning(&self, _message: &str) {}
}

/// Raw `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec() as u64),
        // CLOCK_MONOTONIC always exists on Linux.
        Err(_) => 0,
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_round_trip() {
        for kind in [
            EventKind::VmCreatedKernelLoaded {
                guest_ram_host_addr: 0x7f12_3456_7000,
                guest_ram_bytes: 16 << 20,
            },
            EventKind::FirstVcpuEntry,
            EventKind::BootTimer { value: 0x7b },
            EventKind::GuestReset,
            EventKind::Stopped {
                reason: ExitReason::GuestReset,
            },
            EventKind::Stopped {
                reason: ExitReason::Stopped,
            },
            EventKind::Stopped {
                reason: ExitReason::TripleFault { vcpu: 1 },
            },
            EventKind::Stopped {
                reason: ExitReason::FailEntry {
                    vcpu: 0,
                    hardware_reason: 0x21,
                },
            },
            EventKind::Stopped {
                reason: ExitReason::InternalError {
                    vcpu: 2,
                    suberror: 1,
                    rip: 0xffff_ffff_8100_0000,
                },
            },
            EventKind::Stopped {
                reason: ExitReason::Halted { vcpu: 0 },
            },
            EventKind::Stopped {
                reason: ExitReason::SystemEvent { vcpu: 0, kind: 3 },
            },
            EventKind::Stopped {
                reason: ExitReason::RunFailed { vcpu: 0, errno: 4 },
            },
            EventKind::Stopped {
                reason: ExitReason::UnhandledExit {
                    vcpu: 0,
                    exit: "IoIn(0x3f8, 1) with spaces".into(),
                },
            },
            EventKind::DeviceCounters {
                device: "vda".into(),
                counters: "reads=3 bytes_read=1536 err_past_end=1".into(),
            },
        ] {
            let event = VmEvent {
                kind,
                monotonic_ns: 123_456_789_012,
            };
            assert_eq!(VmEvent::parse_line(&format!("{event}\n")), Some(event));
        }
        assert_eq!(VmEvent::parse_line("PROBE hello"), None);
        assert_eq!(VmEvent::parse_line("cvbench-vmm-event boot_timer x"), None);
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_now_ns();
        let b = monotonic_now_ns();
        assert!(a > 0 && b >= a);
    }
}
