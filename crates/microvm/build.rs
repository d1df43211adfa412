//! Assembles the probe guest (guest/probe.S) into a static ELF at 1 MiB with the host's C compiler
//! driver (GNU as + ld). The result is embedded in the library as `probe::PROBE_ELF`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let source = manifest.join("guest/probe.S");
    let script = manifest.join("guest/probe.ld");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-env-changed=CC");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let output = out_dir.join("probe.elf");
    let status = Command::new(&cc)
        .args([
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,--build-id=none",
            "-Wl,-n",
            "-Wl,-z,noexecstack",
        ])
        .arg(format!("-Wl,-T,{}", script.display()))
        .arg("-o")
        .arg(&output)
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("running {cc} to assemble {}: {e}", source.display()));
    assert!(
        status.success(),
        "{cc} failed to assemble {} ({status})",
        source.display()
    );
}
