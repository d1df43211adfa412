//! Everything between "run this workload in that sandbox" and a results file: the [`Backend`] trait
//! every isolation mechanism implements, phase timing, memory and disk probes, statistics, host
//! metadata and the results schema.

pub mod backend;
pub mod backends;
pub mod cleanup;
pub mod density;
pub mod engine;
pub mod host;
pub mod interrupt;
pub mod net;
pub mod probe;
pub mod rundir;
pub mod runner;
pub mod services;

/// The results crate's modules under their old names, so `harness::results::*`, `harness::stats` and
/// `harness::check` stay valid paths.
pub use ::results::{check, stats};
pub mod results {
    pub use ::results::disk::*;
    pub use ::results::isolation::*;
    pub use ::results::schema::*;
}
pub use ::results::metrics;

pub use backend::Confinement;
pub use backend::{
    Backend, BackendError, ChildState, DiskProbe, Instance, LaunchSpec, MemoryProbe, PhaseMark, SharedImage,
    Stage, Unavailable,
};
pub use backends::{backend_by_name, backend_names, UnknownBackend};
pub use engine::{Event, Observer, Plan};
pub use runner::{run_once, RunMeasurement, RunOptions};
