//! Termination signals, handled by waiting for them rather than by their default action.
//!
//! In a container the workload is PID 1 of its pid namespace, where the kernel drops signals whose
//! action is the default one, so a plain `SIGTERM` would never stop it. Blocking SIGTERM/SIGINT in
//! every thread (the mask is inherited by threads spawned afterwards) and collecting them with
//! `sigwait` works everywhere: the kernel never treats a blocked signal as ignored.

use nix::sys::signal::{SigSet, Signal};

/// SIGTERM and SIGINT, blocked in the calling thread and every thread it spawns afterwards.
pub struct TerminationSignals {
    set: SigSet,
}

impl TerminationSignals {
    /// Block the signals. Call before spawning any thread.
    pub fn block() -> nix::Result<Self> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.thread_block()?;
        Ok(TerminationSignals { set })
    }

    /// Wait until one of the signals arrives.
    pub fn wait(&self) -> nix::Result<Signal> {
        self.set.wait()
    }

    /// For workloads that end by themselves: a background thread that, if a termination signal
    /// arrives first, reports the interruption and exits with the conventional `128 + signo`.
    pub fn exit_on_signal_in_background(self, workload: &'static str) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Ok(signal) = self.wait() {
                    crate::output::error(&format!("{workload}: interrupted by {signal}"));
                    std::process::exit(128 + signal as i32);
                }
            })?;
        Ok(())
    }
}
