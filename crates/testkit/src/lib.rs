//! Test support shared by the workspace's tests: a skip that is visible and counted.
//!
//! A test that cannot run on this host calls [`skip`] (or [`skip_unless_root`]) and returns. The
//! skip prints `skipped: <reason>`, appends one record (test, requirement, reason) to the file named
//! by [`SKIP_LOG_ENV`] — `scripts/test.sh` sets it and prints how many tests skipped and why after the
//! suite (the `cvbench-skips` binary) — and, when the requirement's class is listed in
//! [`REQUIRE_ENV`], fails the test instead. `.ci/run` lists there what the CI host is expected to
//! provide (root, a `/dev/kvm` the probe can use, the packages `scripts/setup.sh` installs, the built
//! guest kernel and binaries), so a test that should run there but skips is a CI failure, while
//! what is genuinely unavailable (hardware KVM on a paravirtual-KVM host) stays a skip.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;

/// Names the file skip records are appended to (one tab-separated line each).
pub const SKIP_LOG_ENV: &str = "CVBENCH_SKIP_LOG";
/// Comma-separated requirement classes (see [`Requirement::class`]) whose absence fails a test.
pub const REQUIRE_ENV: &str = "CVBENCH_REQUIRE";

/// What a test needs and this host may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Root (namespaces, mounts, cgroups, runc).
    Root,
    /// A `/dev/kvm` this process can open with the API version and capabilities the VMM needs
    /// (paravirtual KVM is enough for the probe guest).
    Kvm,
    /// Hardware-backed KVM (vmx/svm, not PVM): what a stock Linux guest needs to run at speed.
    HardwareKvm,
    /// A tool from a Debian package that `scripts/setup.sh` installs, named by the package.
    Package(&'static str),
    /// The guest kernel `guest/kernel/build.sh` builds.
    GuestKernel,
    /// The workspace's binaries (`cargo build --workspace --bins`, which `scripts/test.sh` runs).
    Binaries,
    /// A property of the host hardware or kernel configuration, named (e.g. `invariant-tsc`).
    HostFeature(&'static str),
    /// The test running in a process of its own, as under nextest.
    OwnProcess,
}

/// Every class name [`REQUIRE_ENV`] accepts.
pub const CLASSES: [&str; 8] = [
    "root",
    "kvm",
    "hardware-kvm",
    "package",
    "guest-kernel",
    "binaries",
    "host",
    "own-process",
];

impl Requirement {
    /// The class [`REQUIRE_ENV`] names: one of [`CLASSES`].
    pub fn class(&self) -> &'static str {
        match self {
            Requirement::Root => "root",
            Requirement::Kvm => "kvm",
            Requirement::HardwareKvm => "hardware-kvm",
            Requirement::Package(_) => "package",
            Requirement::GuestKernel => "guest-kernel",
            Requirement::Binaries => "binaries",
            Requirement::HostFeature(_) => "host",
            Requirement::OwnProcess => "own-process",
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Package(name) | Requirement::HostFeature(name) => {
                write!(f, "{}:{name}", self.class())
            }
            _ => f.write_str(self.class()),
        }
    }
}

/// What the environment says to do with a skip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipPolicy {
    /// Where records go; `None` when [`SKIP_LOG_ENV`] is unset or empty.
    pub log: Option<PathBuf>,
    /// Classes whose absence is a failure.
    pub required: Vec<String>,
}

/// One skipped test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipRecord {
    pub test: String,
    /// [`Requirement`]'s display form, e.g. `package:runc`.
    pub requirement: String,
    pub reason: String,
}

impl SkipRecord {
    /// One line of the skip log: the three fields separated by tabs (tabs and newlines in a field
    /// become spaces).
    pub fn to_line(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        format!(
            "{}\t{}\t{}\n",
            clean(&self.test),
            clean(&self.requirement),
            clean(&self.reason)
        )
    }

    /// Parses a line written by [`SkipRecord::to_line`].
    pub fn parse_line(line: &str) -> Option<SkipRecord> {
        let mut fields = line.trim_end_matches('\n').splitn(3, '\t');
        Some(SkipRecord {
            test: fields.next()?.to_string(),
            requirement: fields.next()?.to_string(),
            reason: fields.next()?.to_string(),
        })
    }
}

impl SkipPolicy {
    /// Reads [`SKIP_LOG_ENV`] and [`REQUIRE_ENV`]; an unknown class in the latter is an error.
    pub fn from_env() -> Result<SkipPolicy, String> {
        let log = std::env::var_os(SKIP_LOG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let required = std::env::var(REQUIRE_ENV).unwrap_or_default();
        SkipPolicy::new(log, &required)
    }

    /// A policy writing to `log` and requiring the comma-separated `required` classes.
    pub fn new(log: Option<PathBuf>, required: &str) -> Result<SkipPolicy, String> {
        let required: Vec<String> = required
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(unknown) = required.iter().find(|c| !CLASSES.contains(&c.as_str())) {
            return Err(format!(
                "{REQUIRE_ENV} names the unknown requirement class {unknown:?} (known: {})",
                CLASSES.join(", ")
            ));
        }
        Ok(SkipPolicy { log, required })
    }

    /// Records that `test` skips for want of `requirement`, or, when this host must provide it,
    /// returns the failure message instead.
    pub fn apply(&self, test: &str, requirement: Requirement, reason: &str) -> Result<SkipRecord, String> {
        if self.required.iter().any(|c| c == requirement.class()) {
            return Err(format!(
                "{test} needs {requirement}, which {REQUIRE_ENV} says this host provides, but: \
                 {reason}"
            ));
        }
        let record = SkipRecord {
            test: test.to_string(),
            requirement: requirement.to_string(),
            reason: reason.to_string(),
        };
        if let Some(log) = &self.log {
            // One write of one line with O_APPEND: records from tests running in parallel processes
            // do not interleave.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .and_then(|mut f| f.write_all(record.to_line().as_bytes()))
                .map_err(|e| format!("appending to the skip log {}: {e}", log.display()))?;
        }
        Ok(record)
    }
}

/// The running test's name as the test harness gave it to the thread, prefixed with the source
/// file that skipped (which names the test binary).
fn current_test(file: &str) -> String {
    let thread = std::thread::current();
    format!("{file}: {}", thread.name().unwrap_or("<unnamed>"))
}

/// Skips the calling test: prints `skipped: <reason>` and records it, or panics when
/// [`REQUIRE_ENV`] says this host provides `requirement`. The caller returns right after.
#[track_caller]
pub fn skip(requirement: Requirement, reason: impl fmt::Display) {
    let test = current_test(std::panic::Location::caller().file());
    let reason = reason.to_string();
    let outcome = SkipPolicy::from_env().and_then(|p| p.apply(&test, requirement, &reason));
    match outcome {
        Ok(_) => println!("skipped: {reason}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `true` (after [`skip`]ping with `why`) when not root: `if skip_unless_root("...") { return; }`.
#[track_caller]
pub fn skip_unless_root(why: &str) -> bool {
    if is_root() {
        return false;
    }
    skip(Requirement::Root, format!("needs root ({why})"));
    true
}

/// The skip log's summary: how many tests skipped, then one group per reason (most frequent first),
/// each with its requirement and tests.
pub fn summary(records: &[SkipRecord]) -> String {
    let mut groups: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for r in records {
        match groups
            .iter_mut()
            .find(|(req, reason, _)| *req == r.requirement && *reason == r.reason)
        {
            Some((_, _, tests)) => tests.push(&r.test),
            None => groups.push((&r.requirement, &r.reason, vec![&r.test])),
        }
    }
    groups.sort_by(|a, b| b.2.len().cmp(&a.2.len()).then(a.0.cmp(b.0)).then(a.1.cmp(b.1)));
    let noun = if records.len() == 1 { "test" } else { "tests" };
    let mut out = format!("skips: {} {noun} skipped\n", records.len());
    for (requirement, reason, mut tests) in groups {
        tests.sort_unstable();
        out.push_str(&format!("  {} x [{requirement}] {reason}\n", tests.len()));
        for test in tests {
            out.push_str(&format!("      {test}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_log(path: &std::path::Path) -> Vec<SkipRecord> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| SkipRecord::parse_line(l).unwrap())
            .collect()
    }

    #[test]
    fn a_skip_is_appended_to_the_log_with_test_requirement_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips.tsv");
        let policy = SkipPolicy::new(Some(log.clone()), "").unwrap();
        policy
            .apply("a.rs: t1", Requirement::HardwareKvm, "no vmx/svm\tin cpuinfo")
            .unwrap();
        policy
            .apply("a.rs: t2", Requirement::Package("runc"), "runc not found")
            .unwrap();
        assert_eq!(
            read_log(&log),
            [
                SkipRecord {
                    test: "a.rs: t1".into(),
                    requirement: "hardware-kvm".into(),
                    reason: "no vmx/svm in cpuinfo".into(),
                },
                SkipRecord {
                    test: "a.rs: t2".into(),
                    requirement: "package:runc".into(),
                    reason: "runc not found".into(),
                },
            ]
        );
    }

    #[test]
    fn a_required_class_fails_and_records_nothing_while_others_still_skip() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips.tsv");
        let policy = SkipPolicy::new(Some(log.clone()), "root, package,kvm").unwrap();
        let err = policy
            .apply("b.rs: t", Requirement::Package("e2fsprogs"), "mkfs.ext4 missing")
            .unwrap_err();
        assert!(
            err.contains("package:e2fsprogs") && err.contains("mkfs.ext4 missing"),
            "{err}"
        );
        assert!(policy.apply("b.rs: t", Requirement::Root, "not root").is_err());
        assert!(!log.exists(), "a failure is not a skip");
        policy.apply("b.rs: t", Requirement::HardwareKvm, "PVM").unwrap();
        assert_eq!(read_log(&log).len(), 1);
    }

    #[test]
    fn an_unknown_required_class_is_refused() {
        let err = SkipPolicy::new(None, "root,kvmm").unwrap_err();
        assert!(err.contains("\"kvmm\"") && err.contains("hardware-kvm"), "{err}");
        for class in CLASSES {
            assert!(SkipPolicy::new(None, class).is_ok());
        }
    }

    #[test]
    fn every_requirement_has_a_listed_class() {
        for r in [
            Requirement::Root,
            Requirement::Kvm,
            Requirement::HardwareKvm,
            Requirement::Package("p"),
            Requirement::GuestKernel,
            Requirement::Binaries,
            Requirement::HostFeature("f"),
            Requirement::OwnProcess,
        ] {
            assert!(CLASSES.contains(&r.class()), "{r}");
        }
    }

    #[test]
    fn the_summary_counts_skips_and_groups_them_by_reason() {
        let rec = |test: &str, requirement: &str, reason: &str| SkipRecord {
            test: test.into(),
            requirement: requirement.into(),
            reason: reason.into(),
        };
        let records = [
            rec("x.rs: b", "hardware-kvm", "PVM"),
            rec("y.rs: c", "host:invariant-tsc", "TSC not invariant"),
            rec("x.rs: a", "hardware-kvm", "PVM"),
        ];
        assert_eq!(
            summary(&records),
            "skips: 3 tests skipped\n\
             \x20 2 x [hardware-kvm] PVM\n\
             \x20     x.rs: a\n\
             \x20     x.rs: b\n\
             \x20 1 x [host:invariant-tsc] TSC not invariant\n\
             \x20     y.rs: c\n"
        );
        assert_eq!(summary(&[]), "skips: 0 tests skipped\n");
    }

    #[test]
    fn the_test_name_comes_from_the_harness_thread() {
        let name = current_test("crates/testkit/src/lib.rs");
        assert!(
            name.ends_with("the_test_name_comes_from_the_harness_thread"),
            "{name}"
        );
    }
}
