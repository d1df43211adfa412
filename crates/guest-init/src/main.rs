//! `cvbench-guest-init`: PID 1 in the cvbench microVM. See the library's documentation for what it
//! does; this file strings the steps together and powers the VM off at the end, whatever happened.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use guest_init::plan::Stage;
use guest_init::supervise::Supervisor;
use guest_init::sys::RealSyscalls;
use guest_init::{boot_plan, boot_timer, execute, net, workload_argv, InitError, Layout};

fn main() {
    // Everything below mounts over / and ends with a machine reset: never on a host by mistake.
    if std::process::id() != 1 {
        eprintln!("cvbench-guest-init: must run as PID 1 inside the cvbench microVM (it resets the machine)");
        std::process::exit(2);
    }
    // First, before anything that takes time: the host timestamps this write as "guest init reached".
    if let Err(e) = boot_timer::signal() {
        console(&format!("cvbench-init: boot timer not signalled: {e}"));
    }
    if let Err(e) = run() {
        console(&e.console_line());
    }
    power_off();
}

fn run() -> Result<(), InitError> {
    let argv = workload_argv(std::env::args_os())?;
    if !argv.ignored.is_empty() {
        console(&format!(
            "cvbench-init: ignoring kernel command-line words {:?}",
            argv.ignored
        ));
    }
    let layout = Layout::for_image(|p| p.is_dir());
    execute(&boot_plan(&layout), &mut RealSyscalls)?;
    net::bring_up("lo").map_err(InitError::Loopback)?;
    // /proc is mounted by the boot plan; the kernel keeps dotted words like cvbench.ip from init.
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(InitError::Network)?;
    if let Some(setup) = net::parse_net_setup(&cmdline)? {
        net::configure("eth0", &setup).map_err(InitError::Network)?;
    }

    let console_path = Path::new(guest_init::CONSOLE_PATH);
    let console_file = OpenOptions::new()
        .write(true)
        .open(console_path)
        .map_err(|source| InitError::Console {
            path: console_path.to_path_buf(),
            source,
        })?;
    let program = Path::new(guest_init::WORKLOAD_PATH);
    let supervisor = Supervisor::block_signals().map_err(|e| InitError::Spawn {
        path: program.to_path_buf(),
        source: e.into(),
    })?;
    let pid = supervisor.spawn(program, &argv.args, &console_file)?;
    supervisor.wait(pid)?.into_result(program)
}

/// One line on init's own stdout, which the kernel opened on the console before init started.
fn console(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Flushes the disks and resets the machine; with `reboot=k` the kernel resets through the i8042,
/// which the VMM treats as power-off.
fn power_off() -> ! {
    nix::unistd::sync();
    let err = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // Only reached if reboot failed; PID 1 exiting makes the kernel panic, and `panic=-1` resets.
    console(&format!(
        "cvbench-init: {}: reboot failed: {err:?}",
        Stage::Workload
    ));
    std::process::exit(1);
}
