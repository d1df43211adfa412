//! The confinement levels seen from inside a container (root): capabilities, no_new_privs, rlimits,
//! masked and read-only paths, seccomp. Each test runs `cvbench-testproc` at a level and, where it
//! makes the test able to fail, at `none` too, to show the difference comes from the confinement.

// Integration tests live at the top level of their own crate by cargo convention.
#![allow(clippy::tests_outside_test_module)]

use std::fs;
use std::time::{Duration, Instant};

use container::confine::{mask, DOCKER_CAPS, OCI_DEFAULT_CAPS};
use container::{Confinement, Container, ContainerConfig, ContainerDeps, ExitStatus, LineEvent, OutputLines};

fn skip_unless_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    println!("skipped: needs root (namespaces, mounts, cgroups)");
    true
}

struct Run {
    lines: Vec<String>,
    status: ExitStatus,
    events: container::LaunchEvents,
}

impl Run {
    fn value(&self, key: &str) -> &str {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {key:?} line in {:?}", self.lines))
    }
}

/// Runs `cvbench-testproc <args>` at `level` over a temporary image and returns what it printed.
fn run(level: Confinement, args: &[&str]) -> Run {
    let image = tempfile::tempdir().unwrap();
    let state_root = tempfile::tempdir().unwrap();
    fs::create_dir_all(image.path().join("bin")).unwrap();
    fs::copy(
        env!("CARGO_BIN_EXE_cvbench-testproc"),
        image.path().join("bin/cvbench-testproc"),
    )
    .unwrap();
    let mut argv = vec!["/bin/cvbench-testproc".to_string()];
    argv.extend(args.iter().map(ToString::to_string));
    let name = format!("test-confine-{}-{}-{}", level.name(), args[0], std::process::id());
    let mut config = ContainerConfig::new(&name, image.path(), argv);
    config.state_root = state_root.path().to_path_buf();
    config.confinement = level;
    let mut c = Container::create(config, ContainerDeps::host().unwrap()).unwrap();
    c.start().unwrap();
    let mut out = OutputLines::new(c.take_stdout().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        match out.next_line(Some(deadline)).unwrap() {
            LineEvent::Line { text, .. } => lines.push(text),
            LineEvent::Eof => break,
            LineEvent::TimedOut => panic!("no EOF within 30 s; got {lines:?}"),
        }
    }
    let status = c.wait().unwrap();
    let events = c.events();
    c.destroy().unwrap();
    Run {
        lines,
        status,
        events,
    }
}

fn hex(m: u64) -> String {
    format!("{m:016x}")
}

#[test]
fn oci_default_caps_no_new_privs_and_nofile_are_what_runc_gives() {
    if skip_unless_root() {
        return;
    }
    let r = run(Confinement::OciDefault, &["confinement"]);
    assert_eq!(r.status, ExitStatus::Exited(0));
    // CAP_AUDIT_WRITE | CAP_KILL | CAP_NET_BIND_SERVICE, as `runc spec` asks.
    assert_eq!(hex(mask(OCI_DEFAULT_CAPS)), "0000000020000420");
    for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(r.value(set), "0000000020000420", "{set}");
    }
    assert_eq!(r.value("NoNewPrivs"), "1");
    assert_eq!(r.value("Seccomp"), "0");
    assert_eq!(r.value("nofile"), "1024 1024");
    // Confinement is its own phase, between the rootfs report and exec.
    let (ready, confined, exec) = (
        r.events.rootfs_ready.unwrap(),
        r.events.confined.unwrap(),
        r.events.exec.unwrap(),
    );
    assert!(ready <= confined && confined <= exec);
}

#[test]
fn docker_has_dockers_caps_and_a_seccomp_filter() {
    if skip_unless_root() {
        return;
    }
    let r = run(Confinement::Docker, &["confinement"]);
    assert_eq!(r.status, ExitStatus::Exited(0));
    assert_eq!(hex(mask(DOCKER_CAPS)), "00000000a80425fb");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(r.value(set), "00000000a80425fb", "{set}");
    }
    assert_eq!(r.value("CapInh"), "0000000000000000");
    assert_eq!(r.value("CapAmb"), "0000000000000000");
    assert_eq!(r.value("NoNewPrivs"), "1");
    // 2 = SECCOMP_MODE_FILTER.
    assert_eq!(r.value("Seccomp"), "2");
    assert_eq!(r.value("nofile"), "1024 1024");
}

#[test]
fn none_leaves_root_unconfined() {
    if skip_unless_root() {
        return;
    }
    let r = run(Confinement::None, &["confinement"]);
    let own = fs::read_to_string("/proc/self/status").unwrap();
    let own_bnd = own
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(r.value("CapEff"), own_bnd);
    assert_eq!(r.value("NoNewPrivs"), "0");
    assert_eq!(r.value("Seccomp"), "0");
    assert!(r.events.confined.is_none());
}

#[test]
fn a_masked_file_reads_empty() {
    if skip_unless_root() {
        return;
    }
    // /proc/timer_list is on the OCI list and exists on most kernels; /proc/keys as a fallback.
    let path = ["/proc/timer_list", "/proc/keys"]
        .into_iter()
        .find(|p| fs::read(p).is_ok_and(|b| !b.is_empty()))
        .unwrap_or("/proc/timer_list");
    let open = run(Confinement::None, &["read", path]);
    let bytes: u64 = open
        .value(&format!("read {path}"))
        .parse()
        .unwrap_or_else(|_| panic!("{:?}", open.lines));
    assert!(bytes > 0, "{path} is empty even unconfined: {:?}", open.lines);
    for level in [Confinement::OciDefault, Confinement::Docker] {
        let masked = run(level, &["read", path]);
        assert_eq!(masked.value(&format!("read {path}")), "0", "{level}");
    }
}

#[test]
fn proc_sys_is_read_only() {
    if skip_unless_root() {
        return;
    }
    // The hostname is per UTS namespace: unconfined, root may write it through /proc/sys.
    let path = "/proc/sys/kernel/hostname";
    let open = run(Confinement::None, &["write", path]);
    assert_eq!(open.status, ExitStatus::Exited(0), "{:?}", open.lines);
    let ro = run(Confinement::OciDefault, &["write", path]);
    assert_eq!(ro.status, ExitStatus::Exited(1), "{:?}", ro.lines);
    let failed = ro.value(&format!("write-failed {path}"));
    assert!(failed.contains("os error 30"), "EROFS expected: {failed}");
}

#[test]
fn a_syscall_outside_dockers_profile_gets_eperm() {
    if skip_unless_root() {
        return;
    }
    // keyctl needs no capability: without the filter it does not fail with EPERM.
    let unfiltered = run(Confinement::OciDefault, &["keyctl"]);
    assert_ne!(unfiltered.value("keyctl"), "errno 1", "{:?}", unfiltered.lines);
    let filtered = run(Confinement::Docker, &["keyctl"]);
    assert_eq!(filtered.value("keyctl"), "errno 1");
}

#[test]
fn threads_still_start_under_dockers_profile() {
    if skip_unless_root() {
        return;
    }
    // clone3 gets ENOSYS (not EPERM), so glibc falls back to clone, which the filter allows.
    let r = run(Confinement::Docker, &["thread"]);
    assert_eq!(r.value("thread"), "ok");
}
