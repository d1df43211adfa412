//! `locate_binary` with environment overrides. One test in its own file (its own process), because
//! it changes the environment.

// An integration test file is its own crate, compiled only for tests; the workspace lint is meant
// for unit tests mixed into library code.
#![allow(clippy::tests_outside_test_module)]

use std::os::unix::fs::PermissionsExt;

use rootfs::{locate_binary, RootfsError, GUEST_INIT_BIN, WORKLOAD_BIN};

#[test]
fn overrides_win_and_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();
    let workload = tmp.path().join("my-workload");
    std::fs::copy(&me, &workload).unwrap();
    std::fs::set_permissions(&workload, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin_dir = tmp.path().join("bins");
    std::fs::create_dir(&bin_dir).unwrap();
    std::fs::copy(&me, bin_dir.join(GUEST_INIT_BIN)).unwrap();

    std::env::set_var("CVBENCH_WORKLOAD_BIN", &workload);
    std::env::set_var("CVBENCH_BIN_DIR", &bin_dir);
    assert_eq!(locate_binary(WORKLOAD_BIN).unwrap(), workload);
    assert_eq!(
        locate_binary(GUEST_INIT_BIN).unwrap(),
        bin_dir.join(GUEST_INIT_BIN)
    );
    // The bin dir has no workload-other: an override that does not hold the file is an error, not
    // a silent fall-through to some other build.
    let err = locate_binary("cvbench-other").unwrap_err();
    assert!(
        matches!(
            err,
            RootfsError::BadOverride {
                var: "CVBENCH_BIN_DIR",
                ..
            }
        ),
        "{err}"
    );

    std::env::set_var("CVBENCH_WORKLOAD_BIN", tmp.path().join("absent"));
    let err = locate_binary(WORKLOAD_BIN).unwrap_err();
    assert!(
        matches!(
            err,
            RootfsError::BadOverride {
                var: "CVBENCH_WORKLOAD_BIN",
                ..
            }
        ),
        "{err}"
    );

    std::env::remove_var("CVBENCH_WORKLOAD_BIN");
    std::env::remove_var("CVBENCH_BIN_DIR");
    // Without overrides: the workspace build, if there is one.
    match locate_binary(WORKLOAD_BIN) {
        Ok(path) => assert!(path.ends_with(WORKLOAD_BIN)),
        Err(RootfsError::BinaryNotFound { .. }) => testkit::skip(
            testkit::Requirement::Binaries,
            "cvbench-workload not built (cargo build --workspace --bins)",
        ),
        Err(e) => panic!("{e}"),
    }
}
