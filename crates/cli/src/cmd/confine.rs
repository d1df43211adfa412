//! `--confinement`, shared by `run`, `compare` and `density`.

use clap::Args;
use harness::Confinement;

#[derive(Debug, Args)]
pub struct ConfinementArgs {
    /// How the container runtimes (built-in and runc alike) confine the workload: `none` (root with
    /// every capability, nothing masked), `oci-default` (the OCI default spec's capabilities,
    /// no_new_privs, masked and read-only paths, RLIMIT_NOFILE 1024: what runc gets from `runc
    /// spec`) or `docker` (oci-default with Docker's 14 capabilities and its default seccomp
    /// profile). VMs ignore it. Recorded as each container cell's `confinement` label.
    #[arg(long, value_parser = confinement, default_value = "oci-default", value_name = "LEVEL")]
    pub confinement: Confinement,
}

fn confinement(text: &str) -> Result<Confinement, String> {
    text.parse()
}
