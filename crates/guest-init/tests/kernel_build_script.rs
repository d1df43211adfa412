//! guest/kernel/build.sh without building a kernel: the config check names every option that did not
//! survive `olddefconfig`, and `--print-path` fails on an empty cache.

#![allow(clippy::tests_outside_test_module)] // an integration test is its own crate

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest/kernel/build.sh")
}

/// Sources the script (which defines its functions without running) and runs `check_config` with
/// `fragment` as the fragment and `config` as the final .config.
fn check_config(fragment: &str, config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (frag, cfg) = (dir.path().join("fragment"), dir.path().join("config"));
    std::fs::write(&frag, fragment).unwrap();
    std::fs::write(&cfg, config).unwrap();
    Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1"; fragment="$2"; check_config "$3""#)
        .arg("check")
        .arg(script())
        .arg(&frag)
        .arg(&cfg)
        .output()
        .unwrap()
}

const FRAGMENT: &str = "# comment\nCONFIG_VIRTIO_BLK=y\nCONFIG_NR_CPUS=8\n# CONFIG_PCI is not set\n";

#[test]
fn a_config_holding_every_option_passes() {
    let out = check_config(
        FRAGMENT,
        "CONFIG_VIRTIO_BLK=y\nCONFIG_NR_CPUS=8\n# CONFIG_PCI is not set\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // An option to be off may also be absent altogether.
    let out = check_config(FRAGMENT, "CONFIG_VIRTIO_BLK=y\nCONFIG_NR_CPUS=8\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn each_lost_option_is_named() {
    let out = check_config(
        FRAGMENT,
        "# CONFIG_VIRTIO_BLK is not set\nCONFIG_NR_CPUS=64\nCONFIG_PCI=y\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for option in ["CONFIG_VIRTIO_BLK", "CONFIG_NR_CPUS", "CONFIG_PCI"] {
        assert!(
            stderr.contains(&format!("option {option} ")),
            "{option} not named in:\n{stderr}"
        );
    }
    assert!(stderr.contains("got 'CONFIG_NR_CPUS=64'"), "{stderr}");
}

#[test]
fn print_path_fails_on_an_empty_cache() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(script())
        .arg("--print-path")
        .env("CVBENCH_CACHE", cache.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no kernel built"));
}
