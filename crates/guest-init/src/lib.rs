//! The guest init of the cvbench microVM (PID 1, binary `cvbench-guest-init`, installed in the VM
//! image as `/cvbench/init`). It follows the microVM contract: signal the boot timer, mount /proc,
//! /sys and /dev, bring up `lo`, build an overlay root whose upper dir is on the scratch disk, pivot
//! into it, run `/bin/cvbench-workload` with init's arguments on the console, and reset the VM when
//! the workload exits. Any failure is one `CVBENCH ERROR <stage>: <reason>` line on the console.
//!
//! The pieces that decide something (argument handling, the mount plan, error lines) are plain data
//! and functions tested on the host; the binary only strings them together.

pub mod args;
pub mod boot_timer;
pub mod error;
pub mod net;
pub mod plan;
pub mod supervise;
pub mod sys;

pub use args::{workload_argv, ArgsError, WorkloadArgv};
pub use error::InitError;
pub use plan::{boot_plan, execute, Layout, Stage};

/// Where the workload binary is in every image.
pub const WORKLOAD_PATH: &str = workload::spec::WORKLOAD_PATH_IN_IMAGE;
/// The console the workload's output goes to (ttyS0 with `console=ttyS0`).
pub const CONSOLE_PATH: &str = "/dev/console";
