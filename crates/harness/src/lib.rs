//! Everything between "run this workload in that sandbox" and a results file: the [`Backend`] trait
//! every isolation mechanism implements, phase timing, memory and disk probes, statistics, host
//! metadata and the results schema.

pub mod backend;
pub mod backends;
pub mod results;
pub mod stats;

pub use backend::{
    Backend, BackendError, DiskProbe, Instance, LaunchSpec, MemoryProbe, PhaseMark, SharedImage, Unavailable,
};
