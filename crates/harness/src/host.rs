//! Detects the facts about the host that qualify every figure (kernel, CPU, memory, cgroup version,
//! KVM flavour) and fills [`HostInfo`]. The filesystem roots are parameters ([`HostRoots`]) so unit
//! tests run against fixture trees.

use std::fs;
use std::path::{Path, PathBuf};

use crate::results::HostInfo;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no {field} line")]
    Missing { path: PathBuf, field: &'static str },
    #[error("{path}: malformed {field} value {value:?}")]
    Malformed {
        path: PathBuf,
        field: &'static str,
        value: String,
    },
}

/// Where the host's pseudo-filesystems are; `HostRoots::default()` is the real host.
#[derive(Debug, Clone)]
pub struct HostRoots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub etc: PathBuf,
}

impl Default for HostRoots {
    fn default() -> Self {
        HostRoots::under(Path::new("/"))
    }
}

impl HostRoots {
    /// All roots below one directory (`<root>/proc`, `<root>/sys`, ...), as a fixture tree lays them out.
    pub fn under(root: &Path) -> Self {
        HostRoots {
            proc: root.join("proc"),
            sys: root.join("sys"),
            dev: root.join("dev"),
            etc: root.join("etc"),
        }
    }
}

/// The kernel command-line word `scripts/nested-kvm.sh` boots its L1 with: the L0 that runs this
/// kernel is QEMU's TCG emulating AMD SVM. The L0 launcher is the only party that knows how the CPU
/// under it is made, so it says so; detection also requires what that claim implies (`svm` among the
/// CPU flags, the `hypervisor` flag, `/dev/kvm`).
pub const NESTED_TCG_MARKER: &str = "cvbench.l0=tcg-svm";

/// The KVM flavour as recorded in results: `pvm`, `hardware`, `nested-svm-tcg` or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvmFlavour {
    /// Paravirtual nested KVM (`/sys/module/kvm_pvm`): guest kernels run, but emulated and slow.
    Pvm,
    /// `/dev/kvm` backed by VT-x/AMD-V.
    Hardware,
    /// `kvm_amd` on an AMD SVM that QEMU's TCG emulates (the L1 of `scripts/nested-kvm.sh`): it
    /// behaves as hardware KVM does, so a stock guest kernel runs, but every instruction of L1 and
    /// of its guests is emulated. Figures show function, never speed.
    NestedSvmTcg,
    None,
}

impl KvmFlavour {
    pub fn as_str(self) -> &'static str {
        match self {
            KvmFlavour::Pvm => "pvm",
            KvmFlavour::Hardware => "hardware",
            KvmFlavour::NestedSvmTcg => "nested-svm-tcg",
            KvmFlavour::None => "none",
        }
    }

    /// Whether guest code under this KVM runs emulated (figures labelled `emulated`).
    pub fn is_emulated(self) -> bool {
        matches!(self, KvmFlavour::Pvm | KvmFlavour::NestedSvmTcg)
    }

    /// The flavour a VM cell records (`results::KvmFlavour`) when its guest runs under this host KVM.
    /// Without KVM no guest runs at all; such a cell says hardware, as it always did.
    pub fn for_guest(self) -> crate::results::KvmFlavour {
        match self {
            KvmFlavour::Pvm => crate::results::KvmFlavour::Pvm,
            KvmFlavour::NestedSvmTcg => crate::results::KvmFlavour::NestedSvmTcg,
            KvmFlavour::Hardware | KvmFlavour::None => crate::results::KvmFlavour::Hardware,
        }
    }

    /// Whether `/dev/kvm` behaves as hardware KVM does (a stock guest kernel runs; QEMU can use
    /// `-accel kvm`), emulated or not.
    pub fn is_hardware_style(self) -> bool {
        matches!(self, KvmFlavour::Hardware | KvmFlavour::NestedSvmTcg)
    }
}

/// Detects the real host.
pub fn detect() -> Result<HostInfo, HostError> {
    detect_in(&HostRoots::default())
}

/// Detects the host whose pseudo-filesystems are at `roots`.
pub fn detect_in(roots: &HostRoots) -> Result<HostInfo, HostError> {
    let cpuinfo_path = roots.proc.join("cpuinfo");
    let cpuinfo = read(&cpuinfo_path)?;
    let meminfo_path = roots.proc.join("meminfo");
    let meminfo = read(&meminfo_path)?;
    let mountinfo = read(&roots.proc.join("self/mountinfo"))?;
    let kernel = read(&roots.proc.join("sys/kernel/osrelease"))?.trim().to_string();
    let hostname = read(&roots.proc.join("sys/kernel/hostname"))?.trim().to_string();
    let os = fs::read_to_string(roots.etc.join("os-release"))
        .ok()
        .and_then(|s| os_pretty_name(&s))
        .unwrap_or_else(|| "unknown".to_string());
    let cpu_model = cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_string());
    let cores = cpu_count(&cpuinfo);
    let memory_bytes = meminfo_kib(&meminfo, "MemTotal")
        .ok_or(HostError::Missing {
            path: meminfo_path.clone(),
            field: "MemTotal",
        })?
        .map_err(|value| HostError::Malformed {
            path: meminfo_path,
            field: "MemTotal",
            value,
        })?
        * 1024;
    Ok(HostInfo {
        hostname,
        kernel,
        cpu_model,
        cores,
        memory_bytes,
        cgroup_version: cgroup_version(&mountinfo).to_string(),
        kvm: kvm_flavour(roots, &cpuinfo).as_str().to_string(),
        os,
        arch: arch(roots),
        dimensions: Default::default(),
    })
}

/// `uname -m`: `/proc/sys/kernel/arch` (Linux 5.19+), else the architecture cvbench was built for.
fn arch(roots: &HostRoots) -> String {
    fs::read_to_string(roots.proc.join("sys/kernel/arch"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Detects the real host and records its dimensions with the user's `labels`.
pub fn detect_with_labels(
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<HostInfo, HostError> {
    let mut host = detect()?;
    host.set_dimensions(labels);
    Ok(host)
}

fn read(path: &Path) -> Result<String, HostError> {
    fs::read_to_string(path).map_err(|source| HostError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// First `model name` in /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo_values(cpuinfo, "model name").next().map(str::to_string)
}

/// Number of `processor` entries in /proc/cpuinfo (online logical CPUs).
fn cpu_count(cpuinfo: &str) -> u32 {
    let n = cpuinfo_values(cpuinfo, "processor").count();
    // Saturates, never reached: no host has 2^32 CPUs.
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn cpuinfo_values<'a>(cpuinfo: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    cpuinfo.lines().filter_map(move |line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// A `Key:   1234 kB` line of /proc/meminfo, in KiB. `None` when absent, `Err(value)` when malformed.
pub(crate) fn meminfo_kib(meminfo: &str, key: &str) -> Option<Result<u64, String>> {
    meminfo.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let number = v.trim().trim_end_matches("kB").trim();
        Some(number.parse::<u64>().map_err(|_| v.trim().to_string()))
    })
}

/// `v1`, `v2` or `hybrid` from the filesystem types in a mountinfo file; `none` if no cgroup fs.
fn cgroup_version(mountinfo: &str) -> &'static str {
    let mut v1 = false;
    let mut v2 = false;
    for line in mountinfo.lines() {
        // Fields after " - " are: fstype source superoptions.
        let Some((_, after)) = line.split_once(" - ") else {
            continue;
        };
        match after.split_whitespace().next() {
            Some("cgroup") => v1 = true,
            Some("cgroup2") => v2 = true,
            _ => {}
        }
    }
    match (v1, v2) {
        (true, true) => "hybrid",
        (true, false) => "v1",
        (false, true) => "v2",
        (false, false) => "none",
    }
}

/// The label every figure taken under nested SVM on TCG carries (besides `emulated = true`).
pub const NESTED_LABEL: &str = "nested";

/// Labels that qualify figures of guests run under `flavour`: `emulated = true` when guest code runs
/// emulated (PVM, nested SVM on TCG), and `nested = svm-tcg` for the latter, whose figures show
/// function only.
pub fn emulation_labels(flavour: KvmFlavour) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    if flavour.is_emulated() {
        labels.push(("emulated".to_string(), "true".to_string()));
    }
    if flavour == KvmFlavour::NestedSvmTcg {
        labels.push((NESTED_LABEL.to_string(), "svm-tcg".to_string()));
        eprintln!(
            "WARNING: KVM here is nested SVM emulated by QEMU's TCG (scripts/nested-kvm.sh): the guests \
             really run, but every figure is EMULATED and shows function only, never speed."
        );
    }
    labels
}

/// The real host's KVM flavour.
pub fn detect_kvm_flavour() -> KvmFlavour {
    let roots = HostRoots::default();
    let cpuinfo = fs::read_to_string(roots.proc.join("cpuinfo")).unwrap_or_default();
    kvm_flavour(&roots, &cpuinfo)
}

/// Hardware KVM needs `/dev/kvm`, vmx or svm among the CPU flags, and no PVM module loaded. It is
/// nested SVM on TCG when, besides, the kernel was booted with [`NESTED_TCG_MARKER`] on a CPU with
/// `svm` and the `hypervisor` flag.
pub(crate) fn kvm_flavour(roots: &HostRoots, cpuinfo: &str) -> KvmFlavour {
    if roots.sys.join("module/kvm_pvm").exists() {
        return KvmFlavour::Pvm;
    }
    let has_flag = |flag: &str| {
        cpuinfo_values(cpuinfo, "flags").any(|flags| flags.split_whitespace().any(|f| f == flag))
    };
    if !roots.dev.join("kvm").exists() || !(has_flag("vmx") || has_flag("svm")) {
        return KvmFlavour::None;
    }
    let marked = fs::read_to_string(roots.proc.join("cmdline"))
        .is_ok_and(|cmdline| cmdline.split_whitespace().any(|w| w == NESTED_TCG_MARKER));
    if marked && has_flag("svm") && has_flag("hypervisor") {
        KvmFlavour::NestedSvmTcg
    } else {
        KvmFlavour::Hardware
    }
}

/// `PRETTY_NAME` from an os-release file, quotes removed.
fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\nflags\t\t: fpu vme vmx sse\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\nflags\t\t: fpu vme vmx sse\n";
    const MEMINFO: &str =
        "MemTotal:       24599236 kB\nMemFree:        20000000 kB\nMemAvailable:   22000000 kB\n";
    const MOUNTINFO_HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
35 31 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
";

    fn fixture(mountinfo: &str, cpuinfo: &str, pvm: bool, dev_kvm: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("proc/self")).unwrap();
        fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
        fs::create_dir_all(root.join("sys/module")).unwrap();
        fs::create_dir_all(root.join("dev")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("proc/cpuinfo"), cpuinfo).unwrap();
        fs::write(root.join("proc/meminfo"), MEMINFO).unwrap();
        fs::write(root.join("proc/self/mountinfo"), mountinfo).unwrap();
        fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
        fs::write(root.join("proc/sys/kernel/hostname"), "bench-host\n").unwrap();
        fs::write(root.join("proc/sys/kernel/arch"), "aarch64\n").unwrap();
        fs::write(
            root.join("etc/os-release"),
            "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        )
        .unwrap();
        if pvm {
            fs::create_dir_all(root.join("sys/module/kvm_pvm")).unwrap();
        }
        if dev_kvm {
            fs::write(root.join("dev/kvm"), "").unwrap();
        }
        dir
    }

    #[test]
    fn detects_every_field_from_a_fixture_tree() {
        let dir = fixture(MOUNTINFO_HYBRID, CPUINFO, false, true);
        let host = detect_in(&HostRoots::under(dir.path())).unwrap();
        assert_eq!(host.kernel, "6.1.0-test");
        assert_eq!(host.hostname, "bench-host");
        assert_eq!(host.cpu_model, "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz");
        assert_eq!(host.cores, 2);
        assert_eq!(host.memory_bytes, 24_599_236 * 1024);
        assert_eq!(host.cgroup_version, "hybrid");
        assert_eq!(host.kvm, "hardware");
        assert_eq!(host.os, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(host.arch, "aarch64");
        let mut host = host;
        host.set_dimensions(&std::collections::BTreeMap::from([(
            "instance".to_string(),
            "m7i.metal".to_string(),
        )]));
        assert_eq!(host.dimensions["host_kernel"], "6.1.0-test");
        assert_eq!(host.dimensions["kvm"], "hardware");
        assert_eq!(host.dimensions["cgroup_version"], "hybrid");
        assert_eq!(host.dimensions["instance"], "m7i.metal");
    }

    #[test]
    fn pvm_module_wins_over_dev_kvm() {
        let dir = fixture(MOUNTINFO_HYBRID, CPUINFO, true, true);
        assert_eq!(detect_in(&HostRoots::under(dir.path())).unwrap().kvm, "pvm");
    }

    const CPUINFO_L1: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC Processor\nflags\t\t: fpu vme svm npt hypervisor\n";

    #[test]
    fn the_nested_l1_marker_on_svm_under_a_hypervisor_is_nested_svm_tcg() {
        let dir = fixture(MOUNTINFO_HYBRID, CPUINFO_L1, false, true);
        let cmdline = dir.path().join("proc/cmdline");
        fs::write(&cmdline, format!("console=ttyS0 panic=-1 {NESTED_TCG_MARKER}\n")).unwrap();
        assert_eq!(
            detect_in(&HostRoots::under(dir.path())).unwrap().kvm,
            "nested-svm-tcg"
        );
        let flavour = kvm_flavour(&HostRoots::under(dir.path()), CPUINFO_L1);
        assert!(flavour.is_emulated() && flavour.is_hardware_style());

        // Without the marker (a word that only contains it does not count) it is hardware KVM.
        fs::write(&cmdline, format!("console=ttyS0 x{NESTED_TCG_MARKER}\n")).unwrap();
        assert_eq!(detect_in(&HostRoots::under(dir.path())).unwrap().kvm, "hardware");
        // The marker on a CPU without the hypervisor flag, or with vmx only, is not believed.
        fs::write(&cmdline, format!("{NESTED_TCG_MARKER}\n")).unwrap();
        let bare = CPUINFO_L1.replace(" hypervisor", "");
        assert_eq!(
            kvm_flavour(&HostRoots::under(dir.path()), &bare),
            KvmFlavour::Hardware
        );
        assert_eq!(
            kvm_flavour(&HostRoots::under(dir.path()), CPUINFO),
            KvmFlavour::Hardware
        );
        // And without /dev/kvm there is no KVM at all.
        fs::remove_file(dir.path().join("dev/kvm")).unwrap();
        assert_eq!(
            kvm_flavour(&HostRoots::under(dir.path()), CPUINFO_L1),
            KvmFlavour::None
        );
    }

    #[test]
    fn dev_kvm_without_vmx_or_svm_is_none() {
        let dir = fixture(MOUNTINFO_HYBRID, &CPUINFO.replace(" vmx", ""), false, true);
        assert_eq!(detect_in(&HostRoots::under(dir.path())).unwrap().kvm, "none");
        let dir = fixture(MOUNTINFO_HYBRID, CPUINFO, false, false);
        assert_eq!(detect_in(&HostRoots::under(dir.path())).unwrap().kvm, "none");
    }

    #[test]
    fn cgroup_versions() {
        let v1_only: String = MOUNTINFO_HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        let v2_only = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup_version(MOUNTINFO_HYBRID), "hybrid");
        assert_eq!(cgroup_version(&v1_only), "v1");
        assert_eq!(cgroup_version(v2_only), "v2");
        assert_eq!(cgroup_version("25 30 0:23 / /sys rw - sysfs sysfs rw\n"), "none");
    }

    #[test]
    fn missing_meminfo_is_an_error_naming_the_file() {
        let dir = fixture(MOUNTINFO_HYBRID, CPUINFO, false, false);
        fs::remove_file(dir.path().join("proc/meminfo")).unwrap();
        let err = detect_in(&HostRoots::under(dir.path())).unwrap_err();
        assert!(err.to_string().contains("proc/meminfo"), "{err}");
    }

    #[test]
    fn malformed_memtotal_is_reported() {
        let dir = fixture(MOUNTINFO_HYBRID, CPUINFO, false, false);
        fs::write(dir.path().join("proc/meminfo"), "MemTotal: lots kB\n").unwrap();
        let err = detect_in(&HostRoots::under(dir.path())).unwrap_err();
        assert!(
            matches!(
                err,
                HostError::Malformed {
                    field: "MemTotal",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn the_real_host_is_detected() {
        let host = detect().unwrap();
        assert!(host.cores >= 1);
        assert!(host.memory_bytes > 0);
        assert!(!host.kernel.is_empty());
        assert!(["pvm", "hardware", "nested-svm-tcg", "none"].contains(&host.kvm.as_str()));
    }
}
