//! `--confinement` as an OCI runtime config: the same [`container::confine`] profiles the built-in
//! runtime applies, written into `config.json` (capabilities, `noNewPrivileges`, rlimits,
//! `maskedPaths`, `readonlyPaths`, `linux.seccomp`), so that runc and the built-in runtime are
//! compared on equal terms at every level.
//!
//! `oci-default` reproduces exactly what `oci_spec::runtime::Spec::default()` (the OCI default spec,
//! what this backend was always given) holds; `none` grants the capabilities the harness itself has in
//! its bounding set (what the built-in runtime's process keeps at `none`) and clears the rest.

use caps::Capability as KernelCap;
use container::confine::{Confinement, Profile};
use container::seccomp::{self, Action, ArgOp};
use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall, PosixRlimitBuilder, PosixRlimitType, Spec,
};
use oci_spec::OciSpecError;

fn oci_err(what: String) -> OciSpecError {
    OciSpecError::Other(what)
}

/// A kernel capability as oci-spec names it (`CAP_KILL`).
fn oci_capability(c: KernelCap) -> Result<Capability, OciSpecError> {
    serde_json::from_value(serde_json::Value::String(c.to_string()))
        .map_err(|e| oci_err(format!("capability {c} has no OCI name: {e}")))
}

fn oci_set(caps: &[KernelCap]) -> Result<Capabilities, OciSpecError> {
    caps.iter().map(|c| oci_capability(*c)).collect()
}

fn oci_rlimit(name: &str) -> Result<PosixRlimitType, OciSpecError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|e| oci_err(format!("rlimit {name} has no OCI name: {e}")))
}

/// Docker's profile (as [`container::seccomp`] holds it) as `linux.seccomp` for a container with
/// capabilities `caps`: default `SCMP_ACT_ERRNO` with `EPERM`, x86_64 only (as the built-in filter).
pub fn oci_seccomp(
    profile: &'static [seccomp::Group],
    caps: &[KernelCap],
) -> Result<LinuxSeccomp, OciSpecError> {
    let mut syscalls = Vec::new();
    for group in seccomp::applicable(profile, caps) {
        let names: Vec<String> = group.names().map(str::to_string).collect();
        let (action, errno, args) = match group.action {
            Action::Allow => (LinuxSeccompAction::ScmpActAllow, None, None),
            Action::Errno(e) => (LinuxSeccompAction::ScmpActErrno, Some(e), None),
            Action::AllowIfArg0(op, value) => {
                let arg = match op {
                    ArgOp::Eq => (value, None, LinuxSeccompOperator::ScmpCmpEq),
                    ArgOp::Ne => (value, None, LinuxSeccompOperator::ScmpCmpNe),
                    // libseccomp: (arg & value) == valueTwo.
                    ArgOp::MaskedEq(mask) => (mask, Some(value), LinuxSeccompOperator::ScmpCmpMaskedEq),
                };
                let mut a = LinuxSeccompArgBuilder::default()
                    .index(0usize)
                    .value(arg.0)
                    .op(arg.2);
                if let Some(two) = arg.1 {
                    a = a.value_two(two);
                }
                (LinuxSeccompAction::ScmpActAllow, None, Some(vec![a.build()?]))
            }
        };
        let mut s = LinuxSyscall::default();
        s.set_names(names);
        s.set_action(action);
        s.set_errno_ret(errno);
        s.set_args(args);
        syscalls.push(s);
    }
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActErrno);
    seccomp.set_default_errno_ret(Some(seccomp::DEFAULT_ERRNO));
    seccomp.set_architectures(Some(vec![Arch::ScmpArchX86_64]));
    seccomp.set_syscalls(Some(syscalls));
    Ok(seccomp)
}

fn apply_profile(config: &mut Spec, profile: &Profile) -> Result<(), OciSpecError> {
    let sets = &profile.capabilities;
    let mut process = config.process().clone().unwrap_or_default();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(oci_set(sets.bounding)?));
    caps.set_effective(Some(oci_set(sets.effective)?));
    caps.set_permitted(Some(oci_set(sets.permitted)?));
    caps.set_inheritable(Some(oci_set(sets.inheritable)?));
    caps.set_ambient(Some(oci_set(sets.ambient)?));
    process.set_capabilities(Some(caps));
    process.set_no_new_privileges(Some(profile.no_new_privileges));
    let rlimits = profile
        .rlimits
        .iter()
        .map(|r| {
            PosixRlimitBuilder::default()
                .typ(oci_rlimit(r.name)?)
                .soft(r.soft)
                .hard(r.hard)
                .build()
        })
        .collect::<Result<Vec<_>, OciSpecError>>()?;
    process.set_rlimits(Some(rlimits));
    config.set_process(Some(process));
    let mut linux = config.linux().clone().unwrap_or_default();
    linux.set_masked_paths(Some(profile.masked_paths.iter().map(|p| p.to_string()).collect()));
    linux.set_readonly_paths(Some(
        profile.readonly_paths.iter().map(|p| p.to_string()).collect(),
    ));
    linux.set_seccomp(match profile.seccomp {
        Some(p) => Some(oci_seccomp(p, sets.bounding)?),
        None => None,
    });
    config.set_linux(Some(linux));
    Ok(())
}

/// Writes `level` into `config` (replacing whatever confinement it held).
pub fn apply(config: &mut Spec, level: Confinement) -> Result<(), OciSpecError> {
    if let Some(profile) = level.profile() {
        return apply_profile(config, profile);
    }
    let mut process = config.process().clone().unwrap_or_default();
    // runc cannot grant what is outside its own bounding set (capset would fail), and the built-in
    // runtime's process keeps exactly that set at `none`.
    let own = caps::read(None, caps::CapSet::Bounding)
        .map_err(|e| oci_err(format!("reading the harness's capability bounding set: {e}")))?;
    let mut own: Vec<KernelCap> = own.into_iter().collect();
    own.sort_by_key(KernelCap::index);
    let all = oci_set(&own)?;
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(all.clone()));
    caps.set_effective(Some(all.clone()));
    caps.set_permitted(Some(all));
    caps.set_inheritable(Some(Capabilities::new()));
    caps.set_ambient(Some(Capabilities::new()));
    process.set_capabilities(Some(caps));
    process.set_no_new_privileges(Some(false));
    process.set_rlimits(None);
    config.set_process(Some(process));
    let mut linux = config.linux().clone().unwrap_or_default();
    linux.set_masked_paths(None);
    linux.set_readonly_paths(None);
    linux.set_seccomp(None);
    config.set_linux(Some(linux));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_default_is_exactly_what_the_oci_default_spec_holds() {
        let default = Spec::default();
        let mut config = Spec::default();
        // Start from a config that differs, so that `apply` has to write every field.
        apply(&mut config, Confinement::None).unwrap();
        apply(&mut config, Confinement::OciDefault).unwrap();
        let (p, d) = (
            config.process().as_ref().unwrap(),
            default.process().as_ref().unwrap(),
        );
        assert_eq!(p.capabilities(), d.capabilities());
        assert_eq!(p.no_new_privileges(), d.no_new_privileges());
        assert_eq!(p.rlimits(), d.rlimits());
        let (l, dl) = (
            config.linux().as_ref().unwrap(),
            default.linux().as_ref().unwrap(),
        );
        assert_eq!(l.masked_paths(), dl.masked_paths());
        assert_eq!(l.readonly_paths(), dl.readonly_paths());
        assert_eq!(l.seccomp(), &None);
    }

    #[test]
    fn docker_carries_dockers_caps_and_seccomp_profile() {
        let mut config = Spec::default();
        apply(&mut config, Confinement::Docker).unwrap();
        let v = serde_json::to_value(&config).unwrap();
        let mut eff: Vec<&str> = v["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        eff.sort_unstable();
        assert_eq!(eff.len(), 14);
        assert!(eff.contains(&"CAP_SYS_CHROOT") && !eff.contains(&"CAP_SYS_ADMIN"));
        assert_eq!(v["process"]["capabilities"]["ambient"], serde_json::json!([]));
        let sc = &v["linux"]["seccomp"];
        assert_eq!(sc["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(sc["defaultErrnoRet"], 1);
        let rules = sc["syscalls"].as_array().unwrap();
        let allowed = |name: &str| {
            rules.iter().any(|r| {
                r["action"] == "SCMP_ACT_ALLOW" && r["names"].as_array().unwrap().iter().any(|n| n == name)
            })
        };
        assert!(allowed("read") && allowed("chroot") && !allowed("keyctl") && !allowed("mount"));
        let clone = rules
            .iter()
            .find(|r| r["names"] == serde_json::json!(["clone"]))
            .unwrap();
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], 0x7E02_0000u64);
        assert_eq!(clone["args"][0]["valueTwo"], 0);
        let clone3 = rules
            .iter()
            .find(|r| r["names"] == serde_json::json!(["clone3"]))
            .unwrap();
        assert_eq!(clone3["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3["errnoRet"], 38);
    }

    #[test]
    fn none_grants_the_harness_bounding_set_and_clears_the_rest() {
        let mut config = Spec::default();
        apply(&mut config, Confinement::None).unwrap();
        let v = serde_json::to_value(&config).unwrap();
        assert_eq!(
            v["process"]["capabilities"]["bounding"].as_array().unwrap().len(),
            caps::read(None, caps::CapSet::Bounding).unwrap().len()
        );
        assert_eq!(v["process"]["noNewPrivileges"], false);
        assert!(v["process"]["rlimits"].is_null());
        assert!(v["linux"]["maskedPaths"].is_null() && v["linux"]["seccomp"].is_null());
    }
}
