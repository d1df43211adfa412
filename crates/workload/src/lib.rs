//! The identical workloads cvbench runs under every isolation mechanism, and the line protocol they
//! speak to whoever launched them (a container's stdout pipe, a VM's serial console).
//!
//! Only [`protocol`] and [`spec`] are the contract other crates rely on; the workloads themselves live
//! in the binary `cvbench-workload`.

pub mod protocol;
pub mod spec;

pub use protocol::{parse_line, ProtocolError, ProtocolLine, WorkloadResult};
pub use spec::{WorkloadKind, WorkloadSpec};
