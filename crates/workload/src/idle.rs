//! `idle`: announce ready, then wait to be stopped. What remains is pure start-up cost and footprint.

use anyhow::Context;

use crate::output;
use crate::signals::TerminationSignals;

pub fn run(signals: &TerminationSignals) -> anyhow::Result<()> {
    output::ready("idle").context("writing READY")?;
    signals.wait().context("waiting for SIGTERM/SIGINT")?;
    Ok(())
}
