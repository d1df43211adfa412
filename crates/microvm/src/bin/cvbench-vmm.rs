//! `cvbench-vmm`: one microVM per process. Prints the guest console on stdout and event lines
//! (`cvbench-vmm-event <name> <CLOCK_MONOTONIC ns> [detail]`) on stderr, or on `--events-fd`; at the
//! end, one `device_counters` line per virtio device (requests served, each kind of error).
//! SIGTERM or SIGINT stops the vCPUs and exits 0. Exit status: 0 when the guest reset or the host
//! stopped it, 1 for any other stop (triple fault, KVM error) or a setup failure, 2 for bad usage,
//! 148 when a thread made a system call its seccomp filter forbids (see `microvm::seccomp`; the
//! filters are installed once the VM is created, unless `--no-seccomp`).

use std::fs::File;
use std::io::{LineWriter, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use microvm::devices::virtio::net::parse_mac;
use microvm::{DiskConfig, EventKind, NetConfig, TapSource, Vm, VmConfig, VmEvent, VmObserver};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Debug, Parser)]
#[command(name = "cvbench-vmm", about = "Run one cvbench microVM")]
struct Args {
    /// Guest kernel: an ELF vmlinux (64-bit entry), a bzImage, or the probe payload.
    #[arg(long)]
    kernel: PathBuf,
    /// Words appended to the kernel command line (after the console and virtio-mmio words).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    cmdline: String,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 128)]
    memory_mib: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u8,
    /// A disk image, writable (vda, vdb, ... in order).
    #[arg(long = "disk")]
    disks: Vec<PathBuf>,
    /// A disk image, read-only. Read-only disks come before writable ones.
    #[arg(long = "disk-ro")]
    disks_ro: Vec<PathBuf>,
    /// File descriptor (inherited) for event lines instead of stderr.
    #[arg(long)]
    events_fd: Option<RawFd>,
    /// Run without the seccomp filters on the VMM and vCPU threads (for debugging).
    #[arg(long)]
    no_seccomp: bool,
    /// Test hook: once confined, make a system call the VMM filter forbids (`socket`).
    #[arg(long, hide = true)]
    seccomp_selftest: bool,
    /// A virtio-net device (the guest's eth0) on the tap of this name, in the VMM's network
    /// namespace (created if absent).
    #[arg(long, conflicts_with = "net_tap_fd")]
    net_tap: Option<String>,
    /// A virtio-net device on an inherited, already attached tap descriptor.
    #[arg(long)]
    net_tap_fd: Option<RawFd>,
    /// The guest's MAC address (aa:bb:cc:dd:ee:ff, unicast).
    #[arg(long, default_value = "02:cb:00:00:00:02")]
    net_mac: String,
}

/// Takes ownership of an inherited descriptor after checking it is open.
fn inherited_fd(fd: RawFd, option: &str) -> anyhow::Result<OwnedFd> {
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        anyhow::bail!("{option} {fd} is not an open file descriptor");
    }
    // SAFETY: `fd` is open (checked above); the caller passed it for us and nothing else in this
    // process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes event lines and warnings, one line per write, to the events stream.
struct LineObserver {
    out: Mutex<Box<dyn Write + Send>>,
}

impl LineObserver {
    fn line(&self, line: &str) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A vanished reader must not stop the VM.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

impl VmObserver for LineObserver {
    fn event(&self, event: VmEvent) {
        self.line(&event.to_string());
    }
    fn warning(&self, message: &str) {
        self.line(&format!("cvbench-vmm: warning: {message}"));
    }
}

fn main() {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    match run(args) {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(err) => {
            // Library errors already quote their cause, so the context and the first cause suffice.
            let line: Vec<String> = err.chain().take(2).map(|e| e.to_string()).collect();
            eprintln!("cvbench-vmm: {}", line.join(": "));
            std::process::exit(1);
        }
    }
}

fn run(args: Args) -> anyhow::Result<bool> {
    let events: Box<dyn Write + Send> = match args.events_fd {
        Some(fd) => Box::new(File::from(inherited_fd(fd, "--events-fd")?)),
        None => Box::new(std::io::stderr()),
    };
    let observer = Arc::new(LineObserver {
        out: Mutex::new(events),
    });
    let disks = args
        .disks_ro
        .iter()
        .map(|path| DiskConfig {
            path: path.clone(),
            read_only: true,
        })
        .chain(args.disks.iter().map(|path| DiskConfig {
            path: path.clone(),
            read_only: false,
        }))
        .collect();
    let tap = match (args.net_tap, args.net_tap_fd) {
        (Some(name), _) => Some(TapSource::Name(name)),
        (None, Some(fd)) => Some(TapSource::Fd(inherited_fd(fd, "--net-tap-fd")?)),
        (None, None) => None,
    };
    let net = match tap {
        Some(tap) => Some(NetConfig {
            tap,
            mac: parse_mac(&args.net_mac)?,
        }),
        None => None,
    };
    let config = VmConfig {
        kernel: args.kernel.clone(),
        cmdline_extra: args.cmdline,
        memory_mib: args.memory_mib,
        vcpus: args.vcpus,
        disks,
        net,
        console: Box::new(LineWriter::new(std::io::stdout())),
    };
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("installing SIGTERM/SIGINT handlers")?;
    let vm = Vm::create(config, observer.clone())
        .with_context(|| format!("creating the VM for kernel {}", args.kernel.display()))?;
    if !args.no_seccomp {
        let filters = microvm::seccomp::Filters::compile()?;
        microvm::seccomp::confine_vmm(filters)?;
    }
    if args.seccomp_selftest {
        // SAFETY: a plain socket(2) call; with the filter installed it never returns.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        anyhow::bail!("--seccomp-selftest: socket(2) was allowed (returned {fd})");
    }
    let stop = vm.stop_handle();
    let devices = vm.device_report();
    let signal_handle = signals.handle();
    let signal_thread = std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stop.stop();
        }
    });
    let reason = vm.run().context("running the VM")?;
    signal_handle.close();
    let _ = signal_thread.join();
    for kind in devices.events() {
        observer.event(VmEvent::now(kind));
    }
    observer.event(VmEvent::now(EventKind::Stopped {
        reason: reason.clone(),
    }));
    if !reason.is_clean() {
        eprintln!("cvbench-vmm: the VM stopped: {reason}");
    }
    Ok(reason.is_clean())
}
