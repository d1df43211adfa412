//! Finding the cvbench binaries that go into images: the workload and the guest init.
//!
//! Order: an explicit environment override, then beside the running executable, then its parent
//! (test executables live in `.../debug/deps/`), then the workspace's own
//! `target/x86_64-unknown-linux-gnu/{release,debug}`. Whatever is found must be a statically linked
//! ELF executable: it is copied into an image that has no dynamic loader.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::RootfsError;

/// The workload binary's name.
pub const WORKLOAD_BIN: &str = "cvbench-workload";
/// The guest init's name.
pub const GUEST_INIT_BIN: &str = "cvbench-guest-init";

/// Environment variable naming one binary's path, if it has one.
fn override_var(name: &str) -> Option<&'static str> {
    match name {
        WORKLOAD_BIN => Some("CVBENCH_WORKLOAD_BIN"),
        GUEST_INIT_BIN => Some("CVBENCH_GUEST_INIT_BIN"),
        _ => None,
    }
}

/// Directory holding all cvbench binaries, overriding the search for every name.
const BIN_DIR_VAR: &str = "CVBENCH_BIN_DIR";

/// Find the binary `name` (e.g. [`WORKLOAD_BIN`]) and check it is a static ELF executable.
pub fn locate_binary(name: &str) -> Result<PathBuf, RootfsError> {
    let env = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(var) = override_var(name) {
        if let Some(path) = env(var) {
            return check_override(var, path);
        }
    }
    if let Some(dir) = env(BIN_DIR_VAR) {
        return check_override(BIN_DIR_VAR, dir.join(name));
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    locate_in(name, exe_dir.as_deref(), &workspace)
}

fn check_override(var: &'static str, path: PathBuf) -> Result<PathBuf, RootfsError> {
    check_static_executable(&path).map_err(|e| RootfsError::BadOverride {
        var,
        path,
        reason: e.to_string(),
    })
}

/// The search without the environment: `exe_dir`, its parent, then `workspace/target/...`.
fn locate_in(name: &str, exe_dir: Option<&Path>, workspace: &Path) -> Result<PathBuf, RootfsError> {
    let mut candidates = Vec::new();
    if let Some(dir) = exe_dir {
        candidates.push(dir.join(name));
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join(name));
        }
    }
    for profile in ["release", "debug"] {
        candidates.push(
            workspace
                .join("target/x86_64-unknown-linux-gnu")
                .join(profile)
                .join(name),
        );
    }
    // The first existing candidate decides: a broken binary there is reported, not skipped, so
    // nobody benchmarks a stale build by accident.
    match candidates.iter().find(|c| c.exists()) {
        Some(found) => check_static_executable(found),
        None => Err(RootfsError::BinaryNotFound {
            name: name.to_string(),
            searched: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// A regular file, executable, ELF, and without a program interpreter (`PT_INTERP`).
pub(crate) fn check_static_executable(path: &Path) -> Result<PathBuf, RootfsError> {
    let not_exec = |reason: &str| RootfsError::NotExecutable {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|e| not_exec(&e.to_string()))?;
    if !meta.is_file() {
        return Err(not_exec("not a regular file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(not_exec("no execute permission"));
    }
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| not_exec(&e.to_string()))?;
    elf_static_check(&head).map_err(|reason| RootfsError::NotStaticElf {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(path.to_path_buf())
}

const PT_INTERP: u32 = 3;

/// Check an ELF64 little-endian header and its program headers (which must lie in `head`).
pub(crate) fn elf_static_check(head: &[u8]) -> Result<(), String> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Err("no ELF header".into());
    }
    if head[4] != 2 || head[5] != 1 {
        return Err("not a little-endian 64-bit ELF".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
    let e_type = u16_at(16);
    if e_type != 2 && e_type != 3 {
        return Err(format!("ELF type {e_type} is not an executable"));
    }
    let mut phoff_bytes = [0u8; 8];
    phoff_bytes.copy_from_slice(&head[32..40]);
    let phoff =
        usize::try_from(u64::from_le_bytes(phoff_bytes)).map_err(|_| "program header offset too large")?;
    let phentsize = usize::from(u16_at(54));
    let phnum = usize::from(u16_at(56));
    if phentsize < 4 {
        return Err("program header entries too small".into());
    }
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let Some(p_type) = head.get(at..at + 4) else {
            return Err("program headers beyond the first 64 KiB".into());
        };
        let p_type = u32::from_le_bytes([p_type[0], p_type[1], p_type[2], p_type[3]]);
        if p_type == PT_INTERP {
            return Err("it is dynamically linked (has PT_INTERP)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_exec(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A minimal ELF64 header with one program header of the given type.
    fn elf_with_phdr(p_type: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16] = 2; // ET_EXEC
        b[32] = 64; // e_phoff
        b[54] = 56; // e_phentsize
        b[56] = 1; // e_phnum
        b[64..68].copy_from_slice(&p_type.to_le_bytes());
        b
    }

    #[test]
    fn elf_checks() {
        assert!(elf_static_check(&elf_with_phdr(1)).is_ok());
        assert!(elf_static_check(&elf_with_phdr(PT_INTERP))
            .unwrap_err()
            .contains("dynamically"));
        assert!(elf_static_check(b"#!/bin/sh\necho hi\n").is_err());
    }

    #[test]
    fn real_binaries_are_classified() {
        // /bin/sh on Debian is dynamically linked.
        if Path::new("/bin/sh").exists() {
            assert!(matches!(
                check_static_executable(Path::new("/bin/sh")),
                Err(RootfsError::NotStaticElf { .. })
            ));
        }
        // This test executable is built with crt-static (see .cargo/config.toml).
        let me = std::env::current_exe().unwrap();
        assert_eq!(check_static_executable(&me).unwrap(), me);
    }

    #[test]
    fn search_order_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let exe_dir = tmp.path().join("t/debug/deps");
        std::fs::create_dir_all(&exe_dir).unwrap();
        let elf = elf_with_phdr(1);

        let err = locate_in("x", Some(&exe_dir), &ws).unwrap_err();
        assert!(matches!(err, RootfsError::BinaryNotFound { .. }));
        assert!(err.to_string().contains(crate::BUILD_HINT), "{err}");

        let release = ws.join("target/x86_64-unknown-linux-gnu/release/x");
        write_exec(&release, &elf);
        assert_eq!(locate_in("x", Some(&exe_dir), &ws).unwrap(), release);

        let parent = tmp.path().join("t/debug/x");
        write_exec(&parent, &elf);
        assert_eq!(locate_in("x", Some(&exe_dir), &ws).unwrap(), parent);

        let beside = exe_dir.join("x");
        std::fs::write(&beside, &elf).unwrap(); // not executable: reported, not skipped
        assert!(matches!(
            locate_in("x", Some(&exe_dir), &ws),
            Err(RootfsError::NotExecutable { .. })
        ));
    }
}
