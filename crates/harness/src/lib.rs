//! Everything between "run this workload in that sandbox" and a results file: the [`Backend`] trait
//! every isolation mechanism implements, phase timing, memory and disk probes, statistics, host
//! metadata and the results schema.

pub mod backend;
pub mod backends;
pub mod check;
pub mod cleanup;
pub mod compare;
pub mod density;
pub mod host;
pub mod interrupt;
pub mod probe;
pub mod results;
pub mod rundir;
pub mod runner;
pub mod stats;

pub use backend::{
    Backend, BackendError, DiskProbe, Instance, LaunchSpec, MemoryProbe, PhaseMark, SharedImage, Unavailable,
};
pub use backends::{backend_by_name, backend_names, UnknownBackend};
pub use runner::{run_benchmark, run_once, RunEvent, RunMeasurement, RunObserver, RunOptions};
