//! The guest init binary on the host: it must refuse to run unless it is PID 1, since it mounts over
//! `/` and resets the machine.

#![allow(clippy::tests_outside_test_module)] // an integration test is its own crate

use std::process::Command;

#[test]
fn refuses_to_run_unless_pid_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_cvbench-guest-init"))
        .args(["idle"])
        .output()
        .expect("running cvbench-guest-init");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must run as PID 1"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
