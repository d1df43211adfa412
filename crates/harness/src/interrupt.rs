//! Ctrl-C and SIGTERM: the first one asks the harness to stop cleanly (the current run finishes and is
//! torn down, the results so far are kept and marked partial); a second one exits at once (what is
//! left behind is for `bench cleanup`). Loops poll [`requested`] between runs, and backends may poll it
//! while waiting for an instance.
//!
//! Exit statuses follow the shell's convention, 128 + the signal: 130 for SIGINT, 143 for SIGTERM —
//! for the clean stop ([`exit_status`]) and the forced exit alike.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Exit status after SIGINT (128 + 2), also used for a stop requested without a signal.
pub const SIGINT_EXIT_STATUS: u8 = 130;
/// Exit status after SIGTERM (128 + 15).
pub const SIGTERM_EXIT_STATUS: u8 = 143;

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// The last stop signal received (0: none).
static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

fn last_signal() -> &'static Arc<AtomicUsize> {
    SIGNAL.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

fn status_for(signal: i32) -> u8 {
    if signal == SIGTERM {
        SIGTERM_EXIT_STATUS
    } else {
        SIGINT_EXIT_STATUS
    }
}

/// Installs the handlers (idempotent per signal registration; call once at start-up).
pub fn install() -> Result<(), std::io::Error> {
    let stop = flag();
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was *before* this delivery: exits only when a
        // previous signal already set it.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            i32::from(status_for(signal)),
            Arc::clone(stop),
        )?;
        let number = usize::try_from(signal).map_err(std::io::Error::other)?;
        signal_hook::flag::register_usize(signal, Arc::clone(last_signal()), number)?;
        signal_hook::flag::register(signal, Arc::clone(stop))?;
    }
    Ok(())
}

/// The exit status for a clean stop: 128 + the signal that asked for it (130 for SIGINT or a stop
/// requested without a signal, 143 for SIGTERM).
pub fn exit_status() -> u8 {
    let signal = last_signal().load(Ordering::SeqCst);
    status_for(i32::try_from(signal).unwrap_or(SIGINT))
}

/// Whether a stop was requested (by a signal or by [`request_stop`]).
pub fn requested() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// Asks every loop to stop, as the first signal does.
pub fn request_stop() {
    flag().store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sigterm_sets_the_stop_flag_without_exiting() {
        install().unwrap();
        assert!(!requested());
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
        // Handlers run synchronously on the raising thread before raise() returns.
        assert!(requested());
        assert_eq!(exit_status(), SIGTERM_EXIT_STATUS);
    }
}
