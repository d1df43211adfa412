//! The results of a cvbench run and everything derived from them without running anything: the
//! schema of `results.json` ([`schema`]) with what isolated each cell ([`isolation`]), the metric
//! registry and its one unit formatter ([`metrics`]), statistics ([`stats`]), the CI regression gate
//! ([`check`]), the disk-footprint arithmetic ([`disk`]) and the startup history behind `bench trend`
//! ([`history`]).
//!
//! `harness` writes these files, `report` and `cli` read them; this crate links no KVM, namespace or
//! OCI code, so rendering or checking a results file needs none of it.

pub mod ab;
pub mod check;
pub mod comparable;
pub mod dimensions;
pub mod disk;
pub mod history;
pub mod isolation;
pub mod merge;
pub mod metrics;
pub mod schema;
pub mod stats;
