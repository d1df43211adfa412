//! How much the container's process is confined beyond its namespaces and cgroup: the
//! `--confinement none|oci-default|docker` levels, each a [`Profile`] of plain data, and the
//! [`ConfinePlan`] the parent builds from it and the child applies right before `execve`.
//!
//! - `none`: root with every capability, no `no_new_privs`, nothing masked, no rlimits, no seccomp
//!   (what this runtime did before confinement existed).
//! - `oci-default` (the default): exactly what an OCI runtime gets from the OCI default spec, which is
//!   what the runc backend has always been given (`oci_spec::runtime::Spec::default()`, the same
//!   lists as `runc spec`): capabilities `CAP_AUDIT_WRITE`, `CAP_KILL`, `CAP_NET_BIND_SERVICE` in
//!   every set (`runc spec` leaves the inheritable set empty; the oci-spec crate fills all five),
//!   `no_new_privs`, the masked and read-only `/proc` and `/sys` paths, `RLIMIT_NOFILE` 1024:1024.
//! - `docker`: what `docker run` asks of runc by default: Docker's 14 default capabilities in the
//!   bounding, effective and permitted sets (none inheritable or ambient) and Docker's default
//!   seccomp profile ([`crate::seccomp`]), with oci-default's `no_new_privs`, masked and read-only
//!   paths and rlimits. (Docker itself sets no `no_new_privs` and inherits its daemon's rlimits; both
//!   are kept here so that `docker` differs from `oci-default` only in capabilities and seccomp.)
//!
//! The masked and read-only paths are mount steps at the end of the [`crate::setup::SetupPlan`]; the
//! rest is [`ConfinePlan::apply`]. Both run in the child without allocating.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use caps::Capability::{self, *};
use nix::errno::Errno;
use nix::sys::resource::Resource;
use seccompiler::BpfProgram;

use crate::setup::Stage;
use crate::syscall::Syscall;

/// A confinement level (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Confinement {
    None,
    #[default]
    OciDefault,
    Docker,
}

impl Confinement {
    pub const ALL: [Confinement; 3] = [Confinement::None, Confinement::OciDefault, Confinement::Docker];

    /// The command-line and label spelling: `none`, `oci-default`, `docker`.
    pub fn name(self) -> &'static str {
        match self {
            Confinement::None => "none",
            Confinement::OciDefault => "oci-default",
            Confinement::Docker => "docker",
        }
    }

    /// What this level applies; `None` for [`Confinement::None`].
    pub fn profile(self) -> Option<&'static Profile> {
        match self {
            Confinement::None => None,
            Confinement::OciDefault => Some(&OCI_DEFAULT),
            Confinement::Docker => Some(&DOCKER),
        }
    }
}

impl fmt::Display for Confinement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Confinement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Confinement::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("{s:?} is not a confinement level (none, oci-default, docker)"))
    }
}

/// The five capability sets of the process.
#[derive(Debug, Clone, Copy)]
pub struct CapabilitySets {
    pub bounding: &'static [Capability],
    pub effective: &'static [Capability],
    pub permitted: &'static [Capability],
    pub inheritable: &'static [Capability],
    pub ambient: &'static [Capability],
}

/// One resource limit, named as OCI names it.
#[derive(Debug, Clone, Copy)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE`.
    pub name: &'static str,
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// What one confinement level applies.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub capabilities: CapabilitySets,
    pub no_new_privileges: bool,
    /// `/dev/null` is bind-mounted over files, an empty read-only tmpfs over directories; paths that
    /// do not exist are skipped (as runc does).
    pub masked_paths: &'static [&'static str],
    /// Bind-mounted read-only over themselves; missing paths are skipped.
    pub readonly_paths: &'static [&'static str],
    pub rlimits: &'static [Rlimit],
    /// A seccomp profile (allow-list, default `EPERM`), or none.
    pub seccomp: Option<&'static [crate::seccomp::Group]>,
}

/// The OCI default spec's capabilities (`runc spec`, `oci_spec` `LinuxCapabilities::default`).
pub const OCI_DEFAULT_CAPS: &[Capability] = &[CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE];

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DOCKER_CAPS: &[Capability] = &[
    CAP_CHOWN,
    CAP_DAC_OVERRIDE,
    CAP_FSETID,
    CAP_FOWNER,
    CAP_MKNOD,
    CAP_NET_RAW,
    CAP_SETGID,
    CAP_SETUID,
    CAP_SETFCAP,
    CAP_SETPCAP,
    CAP_NET_BIND_SERVICE,
    CAP_SYS_CHROOT,
    CAP_KILL,
    CAP_AUDIT_WRITE,
];

/// The OCI default spec's `linux.maskedPaths` (identical in `runc spec` and the oci-spec crate).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// The OCI default spec's `linux.readonlyPaths`. All are under `/proc`, which this runtime mounts
/// `nosuid,nodev,noexec`; the read-only remount keeps those flags.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The OCI default spec's `process.rlimits`.
pub const RLIMITS: &[Rlimit] = &[Rlimit {
    name: "RLIMIT_NOFILE",
    resource: Resource::RLIMIT_NOFILE,
    soft: 1024,
    hard: 1024,
}];

pub const OCI_DEFAULT: Profile = Profile {
    capabilities: CapabilitySets {
        bounding: OCI_DEFAULT_CAPS,
        effective: OCI_DEFAULT_CAPS,
        permitted: OCI_DEFAULT_CAPS,
        inheritable: OCI_DEFAULT_CAPS,
        ambient: OCI_DEFAULT_CAPS,
    },
    no_new_privileges: true,
    masked_paths: MASKED_PATHS,
    readonly_paths: READONLY_PATHS,
    rlimits: RLIMITS,
    seccomp: None,
};

pub const DOCKER: Profile = Profile {
    capabilities: CapabilitySets {
        bounding: DOCKER_CAPS,
        effective: DOCKER_CAPS,
        permitted: DOCKER_CAPS,
        inheritable: &[],
        ambient: &[],
    },
    no_new_privileges: true,
    masked_paths: MASKED_PATHS,
    readonly_paths: READONLY_PATHS,
    rlimits: RLIMITS,
    seccomp: Some(crate::seccomp::DOCKER_DEFAULT),
};

/// A capability set as the kernel's 64-bit mask.
pub fn mask(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bitmask())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfineError {
    #[error("ambient capability {0} must also be permitted and inheritable")]
    AmbientNotPermitted(Capability),
    #[error("{0}")]
    Seccomp(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CapPlan {
    /// Supported capabilities outside the bounding set, dropped one by one.
    drop_bounding: Vec<u8>,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: Vec<u8>,
}

/// The process-wide part of a confinement level, prepared in the parent: everything the child needs
/// is already allocated and compiled (the seccomp filter is BPF by now).
#[derive(Debug, Clone, Default)]
pub struct ConfinePlan {
    rlimits: Vec<Rlimit>,
    caps: Option<CapPlan>,
    no_new_privs: bool,
    seccomp: Arc<[BpfProgram]>,
}

/// The seccomp filters of `level`, compiled once per process and level (a launch pays for compiling
/// only the first time).
fn filters(level: Confinement, profile: &Profile) -> Result<Arc<[BpfProgram]>, ConfineError> {
    static CACHE: [OnceLock<Result<Arc<[BpfProgram]>, String>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let Some(groups) = profile.seccomp else {
        return Ok(Arc::from(Vec::new()));
    };
    CACHE[level as usize]
        .get_or_init(|| {
            crate::seccomp::compile(groups, profile.capabilities.bounding)
                .map(Arc::from)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(ConfineError::Seccomp)
}

impl ConfinePlan {
    /// The plan for `level` on this host (the capabilities the running kernel knows).
    pub fn new(level: Confinement) -> Result<ConfinePlan, ConfineError> {
        static SUPPORTED: OnceLock<Vec<Capability>> = OnceLock::new();
        let supported = SUPPORTED.get_or_init(|| caps::runtime::thread_all_supported().into_iter().collect());
        ConfinePlan::with_supported(level, supported)
    }

    /// The plan for `level` on a kernel that supports the capabilities `supported`.
    pub fn with_supported(level: Confinement, supported: &[Capability]) -> Result<ConfinePlan, ConfineError> {
        let Some(profile) = level.profile() else {
            return Ok(ConfinePlan::default());
        };
        let sets = &profile.capabilities;
        let (permitted, inheritable) = (mask(sets.permitted), mask(sets.inheritable));
        if let Some(&c) = sets
            .ambient
            .iter()
            .find(|c| (permitted & inheritable & c.bitmask()) == 0)
        {
            return Err(ConfineError::AmbientNotPermitted(c));
        }
        let mut drop_bounding: Vec<u8> = supported
            .iter()
            .filter(|c| !sets.bounding.contains(c))
            .map(Capability::index)
            .collect();
        drop_bounding.sort_unstable();
        let seccomp = filters(level, profile)?;
        let mut ambient: Vec<u8> = sets.ambient.iter().map(Capability::index).collect();
        ambient.sort_unstable();
        Ok(ConfinePlan {
            rlimits: profile.rlimits.to_vec(),
            caps: Some(CapPlan {
                drop_bounding,
                effective: mask(sets.effective),
                permitted,
                inheritable,
                ambient,
            }),
            no_new_privs: profile.no_new_privileges,
            seccomp,
        })
    }

    /// Nothing to apply (`--confinement none`).
    pub fn is_empty(&self) -> bool {
        self.rlimits.is_empty() && self.caps.is_none() && !self.no_new_privs && self.seccomp.is_empty()
    }

    /// Applies the plan to the calling (single-threaded) process: rlimits, the capability bounding
    /// set, capset, ambient capabilities, `no_new_privs`, then the seccomp filters (last, so that
    /// the calls before it need not be allowed by it). Allocation-free as long as `sys` is.
    pub fn apply(&self, sys: &dyn Syscall) -> Result<(), (Stage, Errno)> {
        for r in &self.rlimits {
            sys.setrlimit(r.resource, r.soft, r.hard)
                .map_err(|e| (Stage::Rlimits, e))?;
        }
        if let Some(caps) = &self.caps {
            let fail = |e| (Stage::Capabilities, e);
            for &cap in &caps.drop_bounding {
                sys.capbset_drop(cap).map_err(fail)?;
            }
            sys.capset(caps.effective, caps.permitted, caps.inheritable)
                .map_err(fail)?;
            sys.ambient_clear().map_err(fail)?;
            for &cap in &caps.ambient {
                sys.ambient_raise(cap).map_err(fail)?;
            }
        }
        if self.no_new_privs {
            sys.set_no_new_privs().map_err(|e| (Stage::NoNewPrivs, e))?;
        }
        for program in self.seccomp.iter() {
            sys.seccomp_filter(program).map_err(|e| (Stage::Seccomp, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::RecordingSyscall;

    const SUPPORTED: &[Capability] = &[
        CAP_CHOWN,
        CAP_KILL,
        CAP_NET_BIND_SERVICE,
        CAP_SYS_ADMIN,
        CAP_AUDIT_WRITE,
    ];

    #[test]
    fn levels_parse_from_their_names() {
        for c in Confinement::ALL {
            assert_eq!(c.name().parse::<Confinement>(), Ok(c));
        }
        assert!("docker-ish"
            .parse::<Confinement>()
            .unwrap_err()
            .contains("oci-default"));
        assert_eq!(Confinement::default(), Confinement::OciDefault);
    }

    #[test]
    fn none_applies_nothing() {
        let plan = ConfinePlan::with_supported(Confinement::None, SUPPORTED).unwrap();
        assert!(plan.is_empty());
        let rec = RecordingSyscall::new();
        plan.apply(&rec).unwrap();
        assert!(rec.calls().is_empty());
    }

    #[test]
    fn oci_default_makes_exactly_these_calls() {
        let plan = ConfinePlan::with_supported(Confinement::OciDefault, SUPPORTED).unwrap();
        let rec = RecordingSyscall::new();
        plan.apply(&rec).unwrap();
        // AUDIT_WRITE (29), KILL (5), NET_BIND_SERVICE (10): 0x20000420, the CapEff runc gives.
        assert_eq!(
            rec.calls(),
            [
                "setrlimit RLIMIT_NOFILE 1024 1024",
                "capbset_drop 0",
                "capbset_drop 21",
                "capset e=0x20000420 p=0x20000420 i=0x20000420",
                "ambient_clear",
                "ambient_raise 5",
                "ambient_raise 10",
                "ambient_raise 29",
                "no_new_privs",
            ]
        );
    }

    #[test]
    fn docker_has_docker_caps_and_installs_its_filters_last() {
        let plan = ConfinePlan::with_supported(Confinement::Docker, SUPPORTED).unwrap();
        let rec = RecordingSyscall::new();
        plan.apply(&rec).unwrap();
        let calls = rec.calls();
        // Docker's well-known CapEff.
        assert!(
            calls.contains(&"capset e=0xa80425fb p=0xa80425fb i=0x0".to_string()),
            "{calls:?}"
        );
        assert!(!calls.iter().any(|c| c.starts_with("ambient_raise")));
        let n = calls.len();
        assert!(calls[n - 2].starts_with("seccomp ") && calls[n - 1].starts_with("seccomp "));
        assert_eq!(calls[n - 3], "no_new_privs");
    }

    #[test]
    fn a_failing_call_names_its_stage_and_stops() {
        let plan = ConfinePlan::with_supported(Confinement::OciDefault, SUPPORTED).unwrap();
        let rec = RecordingSyscall::failing_on("capset");
        assert_eq!(plan.apply(&rec), Err((Stage::Capabilities, Errno::EPERM)));
        assert_eq!(
            rec.calls().last().map(String::as_str),
            Some("capset e=0x20000420 p=0x20000420 i=0x20000420")
        );
    }
}
