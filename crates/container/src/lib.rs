//! The built-in container runtime: namespaces, cgroups v1/v2, an overlayfs rootfs with pivot_root,
//! and the lifecycle of one container. No daemon and no OCI runtime: one `clone()` per container.
//!
//! ```no_run
//! # use container::{Container, ContainerConfig, ContainerDeps};
//! # fn main() -> Result<(), container::ContainerError> {
//! let deps = ContainerDeps::host()?;
//! let config = ContainerConfig::new("demo", "/var/cache/cvbench/image".as_ref(), vec!["/bin/cvbench-workload".into(), "idle".into()]);
//! let mut c = Container::create(config, deps)?;
//! c.start()?;
//! let stdout = c.take_stdout(); // READY/RESULT lines
//! c.stop(std::time::Duration::from_secs(1))?;
//! c.destroy()?;
//! # Ok(()) }
//! ```
//!
//! Module map: [`cgroup`] (manager trait, v1, v2, detection), [`setup`] (what the child does between
//! clone and exec), [`confine`] (the `--confinement` levels: capabilities, no_new_privs, masked and
//! read-only paths, rlimits, seccomp), [`seccomp`] (Docker's default profile as data), [`syscall`] (the kernel calls behind a trait, with a recording fake), [`spawn`]
//! (the clone and the CLOEXEC error pipe), [`container`] (lifecycle), [`state`] (state files and
//! cleanup of what a killed harness left), [`output`] (line reading with deadlines). Measuring (PSS,
//! allocated bytes) is the harness's job; [`Container::usage`] reads the cgroup's own figures.

pub mod cgroup;
pub mod confine;
pub mod container;
pub mod error;
pub mod output;
pub mod seccomp;
pub mod setup;
pub mod spawn;
pub mod state;
pub mod syscall;

pub use cgroup::{detect, detect_host, CgroupManager, CgroupVersion, CpuQuota, Limits, Usage};
pub use confine::Confinement;
pub use container::{
    check_host, Container, ContainerConfig, ContainerDeps, ContainerDirs, ExitStatus, LaunchEvents,
};
pub use error::ContainerError;
pub use output::{LineEvent, OutputLines};
pub use spawn::IdMap;
pub use state::{cleanup_all, cleanup_except, CleanupReport, DEFAULT_STATE_ROOT};
