//! Ctrl-C and SIGTERM: the first one asks the harness to stop cleanly (the current run finishes and is
//! torn down, the results so far are kept and marked partial); a second one exits at once (what is
//! left behind is for `bench cleanup`). Loops poll [`requested`] between runs, and backends may poll it
//! while waiting for an instance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Exit status after a second signal (128 + SIGINT, as shells report it).
pub const FORCED_EXIT_STATUS: i32 = 130;

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the handlers (idempotent per signal registration; call once at start-up).
pub fn install() -> Result<(), std::io::Error> {
    let stop = flag();
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was *before* this delivery: exits only when a
        // previous signal already set it.
        signal_hook::flag::register_conditional_shutdown(signal, FORCED_EXIT_STATUS, Arc::clone(stop))?;
        signal_hook::flag::register(signal, Arc::clone(stop))?;
    }
    Ok(())
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
    }
}
